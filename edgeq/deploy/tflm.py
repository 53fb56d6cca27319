"""The TFLM tensor arena a model really needs, as TFLite Micro's own allocator reports it.

TFLM's recording allocator prints "Arena allocation total N bytes" with print_allocations(); it
writes to the C-level stderr, which Python's sys.stderr redirection does not see, so the file
descriptor 2 is captured instead. The arena handed to TFLM must be large enough first: allocation
fails with an exception when it is too small, so sizes are tried in increasing order.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

from ..errors import TFLiteFormatError
from ..runtimes import tflm_interpreter, tflm_module

FIRST_TRY = 16 * 1024
LARGEST_TRY = 512 * 1024 * 1024  # beyond any microcontroller; a failure there is not about size
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_TOO_SMALL = re.compile(r"missing: \d+|Failed to (resize buffer|allocate)")


@contextmanager
def captured_fd(fd: int = 2):
    """Collect what C code writes to file descriptor `fd` (stderr by default).

    Yields a list that holds the captured text once the block has finished."""
    out: list[str] = []
    stream = sys.stderr if fd == 2 else sys.stdout if fd == 1 else None
    if stream is not None:
        stream.flush()
    saved = os.dup(fd)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), fd)
        try:
            yield out
        finally:
            if stream is not None:
                stream.flush()
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode("utf-8", "replace"))


def fit_arena(model_bytes: bytes):
    """(TFLM interpreter, arena bytes actually used) with an arena found by doubling its size.

    The failed attempts' "Failed to resize buffer" messages are swallowed with the capture."""
    tflm_module()  # raise RuntimeMissingError early, outside the capture
    size = FIRST_TRY
    while True:
        with captured_fd(2) as log:
            try:
                interpreter = tflm_interpreter(model_bytes, size)
                error = None
            except RuntimeError as e:
                interpreter, error = None, e
            except Exception as e:  # noqa: BLE001 - tflite_micro's Python flatbuffer parsing
                raise TFLiteFormatError(f"TFLM cannot read the model ({type(e).__name__}: {e})",
                                        "check that the file is a complete, valid .tflite") from None
            if interpreter is not None:
                interpreter.print_allocations()
        said = log[0].strip()
        if interpreter is not None:
            match = _TOTAL.search(said)
            if match is None:
                raise TFLiteFormatError("TFLM did not report its arena allocation",
                                        f"tflite_micro printed: {said[:300]!r}")
            return interpreter, int(match.group(1))
        if not _TOO_SMALL.search(said) or size >= LARGEST_TRY:
            # Not a matter of size: an unsupported operator or type, or a broken model.
            raise TFLiteFormatError(f"TFLM cannot prepare the model ({error}): {said[:400]}",
                                    "the model uses an operator or tensor type TFLM does not "
                                    "support, or it is invalid; TFLM's message names which")
        size *= 2


def measure_arena(model_bytes: bytes) -> int:
    """Bytes of tensor arena that TFLM uses for `model_bytes` (head + tail of its allocator)."""
    return fit_arena(model_bytes)[1]
