"""Error types. Every expected failure is an EdgeqError: it names the input, says what is
wrong and what to do. The CLI prints it without a traceback and exits non-zero."""

from __future__ import annotations


class EdgeqError(Exception):
    """Base of all expected errors: `message` says what is wrong, `hint` what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str = ""):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  → {self.hint}" if self.hint else self.message


class UnknownBoardError(EdgeqError):
    pass


class UnknownModelError(EdgeqError):
    pass


class ModelLoadError(EdgeqError):
    """A model file that is missing, truncated, not Keras, or unsafe to deserialize."""


class UnsupportedLayerError(EdgeqError):
    pass


class UnsupportedOpError(EdgeqError):
    """A .tflite operator or tensor type that edgeq cannot read, run or generate."""


class TFLiteFormatError(EdgeqError):
    """A .tflite file that is corrupt, truncated or violates the TFLite/TFLM rules."""


class DataError(EdgeqError):
    """Missing, empty or unreadable data; shapes that do not match; NaN/Inf."""


class BoardFitError(EdgeqError):
    """The model does not fit the board's flash or RAM."""


class OutputError(EdgeqError):
    """The output folder cannot be written."""


class ToolchainError(EdgeqError):
    """A missing external tool (compiler, emulator, flasher) or a tool that failed."""


class RuntimeMissingError(EdgeqError):
    """No TFLite runtime (ai_edge_litert / tflite_runtime) or TFLM is installed."""
