"""The INT2 twin of an edgeq .tflite, for LiteRT: the FULLY_CONNECTED weights that the plan in
the metadata declares 2 bits wide stored as TensorType INT2 (four a byte) instead of their INT4
or INT8 container; everything else as in the standard file.

Why a second file (tests/test_int2.py measures it): LiteRT runs INT2 FULLY_CONNECTED weights
identically to the same values in an INT4 or INT8 container, but TFLM refuses INT2 tensors,
and LiteRT refuses them in CONV_2D and DEPTHWISE_CONV_2D. The standard file stays what TFLM
and the firmware run (the firmware is proven identical to TFLM on that file); the twin is only
smaller, and LiteRT is checked to give the standard file's outputs on it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from edgeq.deploy.cgen import plan_widths
from edgeq.deploy.check import litert_outputs
from edgeq.errors import EdgeqError
from edgeq.tflite.model import Model
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model

SUFFIX = "_int2fc"  # model.tflite -> model_int2fc.tflite


def int2_fully_connected(model: Model) -> tuple[Model, list[str]]:
    """A copy of `model` whose 2-bit FULLY_CONNECTED weights (edgeq.deploy.cgen.plan_widths)
    are INT2 tensors, and the names of those tensors (empty: the plan gives no FULLY_CONNECTED
    layer 2 bits, and the copy equals the model)."""
    two_bit = plan_widths(model, (2,))
    tensors = list(model.tensors)
    names = []
    for op in model.ops:
        index = op.inputs[1] if op.kind == "FULLY_CONNECTED" else -1
        if two_bit.get(index) == 2 and tensors[index].dtype != "int2":
            tensors[index] = dataclasses.replace(tensors[index], dtype="int2")
            names.append(tensors[index].name)
    return dataclasses.replace(model, tensors=tensors), names


def int2fc_file(standard: bytes, x: np.ndarray,
                expected: np.ndarray | None = None) -> tuple[bytes, list[str]] | None:
    """(the INT2 twin of the `standard` .tflite, its INT2 tensor names), checked: LiteRT gives
    identical outputs on both files for every input in `x`. `expected`: LiteRT's outputs of
    the standard file for `x` when the caller has them (the build's check), else they are
    computed. None when the plan gives no FULLY_CONNECTED layer 2 bits (the twin would be
    the same file). Raises EdgeqError when LiteRT's outputs differ."""
    model, names = int2_fully_connected(read_model(standard))
    if not names:
        return None
    twin = write_model(model)
    if expected is None:
        expected = litert_outputs(standard, x)
    got = litert_outputs(twin, x)
    if not np.array_equal(expected, got):
        rows = int(np.sum(np.any((expected != got).reshape(len(x), -1), axis=1)))
        raise EdgeqError(f"LiteRT's outputs on the INT2 FULLY_CONNECTED file differ from the "
                         f"standard file's on {rows} of {len(x)} inputs",
                         "build without --int2-fc; a LiteRT version that reads INT2 otherwise "
                         "than ai-edge-litert 2.3.0 (tests/test_int2.py tells)")
    return twin, names
