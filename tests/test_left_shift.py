"""Requantization multipliers above 1 (TFLM's QuantizeMultiplier gives a left shift) on outputs
that are not clamped, issue #18: the `left_shift` cases of tests/opmodels.py. Their place in the
sweeps is opmodels.CASES, so the reference interpreter (tests/test_ops_exact.py) and the host C
engine with the portable and the fast kernels (tests/test_cgen.py) are compared with TFLM on
them; here, first that the cases are what they claim (every channel shifts left by 1 to 4 bits,
every shift is taken, and every channel has outputs inside the int8 range, so the shifted
value is compared and not only a clamp), then the firmware under QEMU on them."""

from __future__ import annotations

import numpy as np
import opmodels
import pytest
from test_cgen import SEEDS, _assert_varied
from test_firmware import BOARD, WERROR, _tflm

from edgeq import intmath
from edgeq.deploy.firmware import build_firmware
from edgeq.deploy.interp import Interpreter
from edgeq.deploy.qemu import run_qemu
from edgeq.tflite.write import write_model

CASES = [case for case in opmodels.CASES if case[0] == "left_shift"]


def _case_id(case) -> str:
    return "-".join(f"{k}={v}" for k, v in case[2].items())


def _shifts(model) -> np.ndarray:
    """The shifts TFLM computes at Prepare: QuantizeMultiplier of the double product
    s_in * s_w / s_out of the float32 scales in the file."""
    op = model.ops[0]
    x, w, y = (model.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    real = (np.float64(x.scale[0]) * w.scale.astype(np.float64)) / np.float64(y.scale[0])
    return np.array([intmath.quantize_multiplier(r)[1] for r in real])


def test_the_sweep_has_left_shift_cases_of_every_op_kind():
    kinds = {opts.get("kind") for _, _, opts in CASES}
    assert kinds == {"conv", "depthwise", "fully_connected"}
    assert any(opts.get("weight_bits") == 4 for _, _, opts in CASES)
    assert any(opts.get("per_channel") is False for _, _, opts in CASES)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
def test_every_channel_shifts_left_and_has_outputs_inside_int8(case):
    _, build, options = case
    seen = set()
    for seed in SEEDS:
        rng = np.random.default_rng(seed)
        model = build(rng, **options)
        shifts = _shifts(model)
        assert set(shifts.tolist()) <= set(opmodels.LEFT_SHIFTS), (seed, shifts)
        seen.update(shifts.tolist())
        out = model.tensors[model.outputs[0]]
        lo, hi = intmath.activation_range(options.get("activation", "NONE"), out.scale[0],
                                          int(out.zero_point[0]))
        interpreter = Interpreter(model)
        outputs = np.stack([interpreter.invoke([opmodels.random_input(model, rng)])[0]
                            for _ in range(100)])
        channels = outputs.reshape(-1, outputs.shape[-1])
        inside = (channels > lo) & (channels < hi)
        assert inside.any(axis=0).all(), (
            f"{model.description} seed {seed}: channels {np.flatnonzero(~inside.any(axis=0))}"
            " never leave the clamps")
        # and the values inside are many, not a few stuck ones
        assert len(np.unique(channels[inside])) >= 8, model.description
    if options.get("per_channel", True):
        assert seen == set(opmodels.LEFT_SHIFTS), seen
    else:
        assert seen == {1}, seen


QEMU_CASES = [case for case in CASES if case[2] in (
    {"kind": "conv"}, {"kind": "conv", "kernel": 3, "cin": 5, "per_channel": False},
    {"kind": "depthwise", "kernel": 3, "cin": 7, "weight_bits": 4},
    {"kind": "fully_connected", "cin": 24})]


@pytest.mark.parametrize("case", QEMU_CASES, ids=_case_id)
def test_left_shifts_under_qemu_match_tflm(case, tmp_path):
    """The fast kernels with the Cortex-M7's real DSP instructions (the host emulates them)."""
    _, build, options = case
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        model = build(rng, **options)
        assert (_shifts(model) > 0).all()
        trials = np.stack([opmodels.random_input(model, rng) for _ in range(5)])
        fw = build_firmware(model, BOARD, tmp_path / f"fw{seed}", extra_cflags=WERROR)
        result = run_qemu(fw.elf, trials.reshape(len(trials), -1), timeout=60)
        expected = _tflm(write_model(model), trials)
        np.testing.assert_array_equal(result.outputs, expected)
        _assert_varied(f"{model.description} seed {seed}", np.asarray(expected))
