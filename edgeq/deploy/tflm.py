"""The TFLM tensor arena a model really needs, as TFLite Micro's own allocator reports it.

TFLM's recording allocator prints "Arena allocation total N bytes" with print_allocations(); it
writes to the C-level stderr, which Python's sys.stderr redirection does not see, so the file
descriptor 2 is captured instead. The arena handed to TFLM must be large enough first.

The first try is an upper estimate from the model itself (`arena_estimate`), not a small size:
TFLM's failure paths for a too-small arena are not safe. An op whose Prepare fails half-way
leaves temporary allocations behind (its early return skips DeallocateTempTfLiteTensor; then
"All temp buffers must be freed before calling ResetTempAllocations()"), and the process can
die with SIGSEGV: measured with tflite_micro on a REx model (a 32 KiB arena crashed, 16 KiB and
64 KiB failed cleanly). Only when the estimate is too small are larger sizes tried, doubling.

"Too many buffers (max is N)" also means "arena too small": the memory planner works in the
arena's free space (MicroAllocator::CommitStaticMemoryPlan hands the GreedyMemoryPlanner all
the remaining arena as scratch, and max_buffer_count = scratch bytes / bytes per buffer), so a
model with many tensors hits it in an arena that would otherwise almost fit; it is not a limit
of the model. The total TFLM reports after a successful allocation does not depend on the arena
it was given. It is enough to allocate again for real models (vww_96_int8, fmnist REx models),
but not for a model of many tiny tensors, whose planning scratch outgrows its plan: a chain of
120 ADDs on 8-byte tensors reports 19,968 bytes and needs a few KiB more to allocate.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from contextlib import contextmanager

import numpy as np

from edgeq.deploy.runtimes import tflm_interpreter, tflm_module
from edgeq.errors import TFLiteFormatError

FIRST_TRY = 16 * 1024
LARGEST_TRY = 512 * 1024 * 1024  # beyond any microcontroller; a failure there is not about size
_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_TOO_SMALL = re.compile(r"missing: \d+|Failed to (resize buffer|allocate)|Too many buffers")
ARENA_GRANULE = 16 * 1024


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


def arena_estimate(model_bytes: bytes) -> int:
    """An arena size that TFLM's allocation fits in, for a first try: twice the bytes of all
    activation tensors (the memory plan never needs more than their sum; the rest covers
    kernels' scratch buffers) plus generous per-op, per-tensor and per-channel allowances for
    TFLM's own structures. FIRST_TRY when edgeq cannot read the model (TFLM then says why)."""
    from edgeq.errors import EdgeqError
    from edgeq.tflite.read import read_model

    try:
        model = read_model(model_bytes)
    except EdgeqError:
        return FIRST_TRY
    activations = sum(t.nbytes for t in model.tensors if not t.is_constant)
    channels = sum(len(t.scale) for t in model.tensors if t.scale is not None)
    total = 2 * activations + 2048 * len(model.ops) + 256 * len(model.tensors) + 16 * channels
    return max(FIRST_TRY, -(-(total + ARENA_GRANULE) // ARENA_GRANULE) * ARENA_GRANULE)


def fit_arena(model_bytes: bytes, first_size: int | None = None):
    """(TFLM interpreter, arena bytes actually used), first with `first_size` bytes of arena
    (default: `arena_estimate`), then doubling it while TFLM says it is too small.

    The failed attempts' "Failed to resize buffer" messages are swallowed with the capture."""
    tflm_module()  # raise RuntimeMissingError early, outside the capture
    size = first_size or arena_estimate(model_bytes)
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


def tflm_outputs(model_bytes: bytes, inputs) -> np.ndarray:
    """TFLM's raw int8 outputs for int8 `inputs` [n, input bytes]: each row holds the model's
    inputs back to back, each result row its outputs back to back (as the generated engine's
    copying API packs them), [n, output bytes]. Run on an arena from `fit_arena`."""
    from edgeq.tflite.read import read_model

    model = read_model(model_bytes)
    in_sizes = [t.nbytes for t in model.input_tensors]
    rows = np.ascontiguousarray(inputs, dtype=np.int8).reshape(-1, sum(in_sizes))
    interpreter, _ = fit_arena(model_bytes)
    shapes = [interpreter.get_input_details(k)["shape"] for k in range(len(in_sizes))]
    cuts = np.cumsum(in_sizes)[:-1]
    results = []
    for row in rows:
        for k, part in enumerate(np.split(row, cuts)):
            interpreter.set_input(part.reshape(shapes[k]), k)
        interpreter.invoke()
        results.append(np.concatenate([np.asarray(interpreter.get_output(k)).reshape(-1)
                                       for k in range(len(model.outputs))]).astype(np.int8))
    size = sum(t.nbytes for t in model.output_tensors)
    return np.stack(results) if results else np.zeros((0, size), np.int8)
