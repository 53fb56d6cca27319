"""Per-op acceptance (contract 1 of DESIGN.md): every supported op, with INT8 and INT4 weights,
over seeded random shapes, scales, zero points, weights and inputs, is written by edgeq's
writer and run in TFLM, LiteRT and edgeq's reference interpreter.

- edgeq's interpreter == TFLM (the definition), bit for bit;
- LiteRT (no delegates) within 1 LSB of TFLM (it rounds some kernels differently).
"""

from __future__ import annotations

import numpy as np
import opmodels
import pytest

from edgeq.deploy.interp import Interpreter as EdgeqInterpreter
from edgeq.tflite.write import write_model

SEEDS = range(10)
INPUTS_PER_MODEL = 3
ARENA_BYTES = 256 * 1024


def _case_id(case) -> str:
    name, _, options = case
    return name + "".join(f"-{k}={v}" for k, v in options.items())


def _tflm(data: bytes):
    from tflite_micro.python.tflite_micro import runtime

    return runtime.Interpreter.from_bytes(data, arena_size=ARENA_BYTES)


def _litert(data: bytes):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(
        model_content=data,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    return interpreter


def _run_tflm(interpreter, inputs):
    for i, x in enumerate(inputs):
        interpreter.set_input(x, i)
    interpreter.invoke()
    return interpreter.get_output(0)


def _run_litert(interpreter, inputs):
    for detail, x in zip(interpreter.get_input_details(), inputs, strict=True):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


@pytest.mark.parametrize("case", opmodels.CASES, ids=_case_id)
def test_op_matches_tflm_exactly_and_litert_within_one_lsb(case):
    _, build, options = case
    distinct = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        model = build(rng, **options)
        data = write_model(model)
        tflm, litert, edgeq = _tflm(data), _litert(data), EdgeqInterpreter(model)
        out = model.tensors[model.outputs[0]]
        for trial in range(INPUTS_PER_MODEL):
            inputs = [opmodels.random_input(model, rng, i) for i in range(len(model.inputs))]
            where = f"{model.description}, seed {seed}, input {trial}"
            expected = _run_tflm(tflm, inputs)
            got = edgeq.invoke(inputs)[0]
            assert got.dtype == expected.dtype and got.shape == expected.shape, where
            mismatch = np.flatnonzero(got != expected)
            assert mismatch.size == 0, (
                f"{where}: edgeq differs from TFLM at {mismatch.size} of {expected.size} "
                f"values, first at {mismatch[0]}: {got.flat[mismatch[0]]} vs "
                f"{expected.flat[mismatch[0]]}")
            lite = _run_litert(litert, inputs)
            lsb = 1.0  # int8 outputs; a float32 output's LSB is its DEQUANTIZE input's scale
            if out.dtype == "float32":
                lsb = float(model.tensors[model.ops[-1].inputs[0]].scale[0])
            difference = np.abs(lite.astype(np.float64) - expected.astype(np.float64)).max()
            assert difference <= lsb * (1 + 1e-6), f"{where}: LiteRT differs by {difference}"
            distinct.update(np.unique(expected).tolist())
    # The sweep must exercise the op, not compare saturated or constant outputs.
    assert len(distinct) > 4, f"{case[0]} {options}: outputs take only {sorted(distinct)}"
