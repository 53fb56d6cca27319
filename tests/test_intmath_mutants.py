"""edgeq.intmath: behaviours the mutation run (issue #18) found untested: the whole text of its
errors and hints, the narrow INT4 grid in quantize_weights, scales computed from the float32
values the file stores, and empty weights. TFLM's own code is the reference in
tests/test_intmath_tflm.py; tests/test_grid.py has the rest."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq import intmath
from edgeq.errors import DataError


def _error(call, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_every_message_and_hint_in_full():
    e = _error(intmath.weight_qrange, 6)
    assert (e.message, e.hint) == ("unsupported weight bit width 6", "use one of [2, 3, 4, 8]")
    e = _error(intmath.activation_qparams, 2.0, 1.0)
    assert (e.message, e.hint) == (
        "invalid activation range [2.0, 1.0]",
        "calibrate on finite data; the range must satisfy lo <= hi")
    e = _error(intmath.weight_scales, np.array([1.0, np.inf]), 8, None)
    assert (e.message, e.hint) == ("weights contain NaN or Inf", "check the model's weights")
    e = _error(intmath.pack_int4, [3, -9])
    assert (e.message, e.hint) == ("INT4 values outside [-8, 7]", "quantize with bits=4 first")
    e = _error(intmath.unpack_int4, np.array([1, 2], np.uint8), 5)
    assert (e.message, e.hint) == ("INT4 buffer of 2 bytes is too short for 5 values", "")
    e = _error(intmath.QuantSpec, activation_bits=16)
    assert (e.message, e.hint) == ("activation bit width 16 is not supported",
                                   "activations are int8 in TFLite/TFLM")
    e = _error(intmath.QuantSpec, weight_bits={"conv1": 8, "dense": 1})
    assert (e.message, e.hint) == ("layer 'dense': unsupported weight bit width 1",
                                   "use one of [2, 3, 4, 8]")


def test_narrow_grids_stop_at_minus_qmax():
    w = np.array([-1000.0, -7.5, -7.4, 7.5, 1000.0])
    assert intmath.quantize_weights(w, np.array([1.0]), 4, None).tolist() == [-8, -8, -7, 7, 7]
    assert intmath.quantize_weights(w, np.array([1.0]), 4, None, narrow=True).tolist() == [
        -7, -7, -7, 7, 7]
    assert intmath.quantize_weights(w, np.array([1.0]), 3, None, narrow=True).tolist() == [
        -3, -3, -3, 3, 3]
    assert intmath.quantize_weights(w, np.array([1.0]), 8, None, narrow=True).tolist() == [
        -127, -8, -7, 8, 127]


def test_scales_are_those_of_the_float32_values_the_file_stores():
    """Float64 weights and scales (folded BatchNorm, say) are taken as the float32 values the
    flatbuffer holds: max|w| rounded to float32 first, then divided in float32, and the bias
    scale the float32 product s_in * s_w, as TFLite's converter computes them."""
    rng = np.random.default_rng(30)
    w64 = rng.normal(size=(300, 4)) * 0.37
    for bits in (8, 4):
        qmax = np.float32(intmath.weight_qrange(bits)[1])
        peak32 = np.abs(w64.astype(np.float32)).max(axis=1)
        want = peak32 / qmax
        assert want.dtype == np.float32
        np.testing.assert_array_equal(intmath.weight_scales(w64, bits, axis=0), want)
        per_tensor = intmath.weight_scales(w64, bits, axis=None)
        assert per_tensor.tolist() == [np.abs(w64.astype(np.float32)).max() / qmax]
    # and at least one of those scales differs when computed in float64 and rounded once
    assert np.any((np.abs(w64).max(axis=1) / 127).astype(np.float32)
                  != intmath.weight_scales(w64, 8, axis=0))
    s_in, s_w = 0.3, rng.uniform(1e-4, 1e-2, size=200)
    got = intmath.bias_scales(s_in, s_w)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, np.float32(s_in) * s_w.astype(np.float32))
    assert np.any(got != (np.float32(s_in) * s_w).astype(np.float32))
    np.testing.assert_array_equal(
        intmath.quantize_bias(np.full(200, 0.01), s_in, s_w),
        np.clip(intmath.round_half_away(0.01 / got.astype(np.float64)), -(2**31 - 1),
                2**31 - 1))


def test_empty_and_all_zero_weights_get_scale_one():
    for w in (np.zeros(0), np.zeros((0, 3)), np.zeros((2, 2))):
        assert intmath.weight_scales(w, 8, axis=None).tolist() == [1.0]
    assert intmath.weight_scales(np.array([0.0, 0.0, 2.54]), 8, axis=0).tolist() == [
        np.float32(0.02)] * 3


def test_softmax_scaling_refuses_an_input_scale_tflite_cannot_shift():
    """Below 2^-27 (beta 1), TFLite's input radius would shift by a negative count: a named
    error instead of a Python shift error; 2^-27 itself is the last scale that works."""
    assert intmath.softmax_scaling(1.0, np.float32(2.0 ** -27))[1:] == (0, -2080374784)
    with pytest.raises(DataError, match=r"SOFTMAX input scale 3.73e-09 \(beta 1\) is too small"):
        intmath.softmax_scaling(1.0, np.float32(2.0 ** -28))
