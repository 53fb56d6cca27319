"""TFLite runtimes without TensorFlow: LiteRT (ai_edge_litert, else tflite_runtime) and TFLM
(tflite_micro). This module never imports tensorflow or keras, not even indirectly, so that
`edgeq check` runs on a device with only numpy and a runtime installed.

`litert_interpreter(model_bytes)` and `tflm_interpreter(model_bytes, arena_size)` return the
packages' own interpreters; `RuntimeMissingError` says which pip command installs a missing one.
"""

from __future__ import annotations

import importlib
from importlib import metadata

from edgeq.errors import RuntimeMissingError, TFLiteFormatError

LITERT_INSTALL = "pip install ai-edge-litert"
TFLM_INSTALL = "pip install tflite-micro"

# (module, distribution) in order of preference.
_LITERT_MODULES = (
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tflite_runtime.interpreter", "tflite-runtime"),
)


def _import_optional(module: str):
    """The module, or None when it is absent or breaks while importing.

    Broken is common: tflite-runtime 2.14 was built against numpy 1 and raises ImportError or
    AttributeError (sometimes even SystemError) when imported beside numpy 2.
    """
    try:
        return importlib.import_module(module)
    except Exception:  # noqa: BLE001 - any import-time failure means "not usable here"
        return None


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "unknown"


def litert_module():
    """(interpreter module, "package version") of the first usable LiteRT-compatible runtime."""
    for module, distribution in _LITERT_MODULES:
        found = _import_optional(module)
        if found is not None and hasattr(found, "Interpreter"):
            return found, f"{distribution} {_version(distribution)}"
    raise RuntimeMissingError(
        "no TFLite runtime found: neither ai_edge_litert nor tflite_runtime can be imported",
        f"{LITERT_INSTALL}  (or pip install tflite-runtime on platforms without LiteRT wheels)",
    )


def litert_interpreter(model_bytes: bytes):
    """An allocated LiteRT interpreter for `model_bytes`, with the builtin reference-style kernels
    and no default delegate (XNNPACK rounds differently more often)."""
    module, _ = litert_module()
    kwargs = {}
    resolver = getattr(module, "OpResolverType", None)
    if resolver is not None:
        kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = module.Interpreter(model_content=bytes(model_bytes), **kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise TFLiteFormatError(f"LiteRT cannot load the model: {e}",
                                "the model uses an operator LiteRT lacks (a custom op?), or the "
                                "file is not a complete .tflite flatbuffer") from None
    return interpreter


def tflm_module():
    """(tflite_micro runtime module, "tflite-micro version")."""
    runtime = _import_optional("tflite_micro.python.tflite_micro.runtime")
    if runtime is None or not hasattr(runtime, "Interpreter"):
        raise RuntimeMissingError("TFLite Micro (tflite_micro) is not installed or cannot be imported",
                                  TFLM_INSTALL)
    return runtime, f"tflite-micro {_version('tflite-micro')}"


def tflm_interpreter(model_bytes: bytes, arena_size: int):
    """A TFLM interpreter with a tensor arena of `arena_size` bytes. Raises RuntimeError (from
    tflite_micro) when the arena is too small; see edgeq.deploy.tflm.fit_arena to size it."""
    runtime, _ = tflm_module()
    return runtime.Interpreter.from_bytes(bytes(model_bytes), arena_size=int(arena_size))


def available_runtimes() -> dict[str, str | None]:
    """{"litert": "ai-edge-litert 2.3.0" | None, "tflm": "tflite-micro ..." | None}."""
    found: dict[str, str | None] = {}
    for key, probe in (("litert", litert_module), ("tflm", tflm_module)):
        try:
            found[key] = probe()[1]
        except RuntimeMissingError:
            found[key] = None
    return found
