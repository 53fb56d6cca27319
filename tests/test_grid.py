"""edgeq.intmath: the TFLite integer spec (scales, rounding, packing, fixed-point math)."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from edgeq import intmath
from edgeq.errors import DataError

# --- QuantizeMultiplier ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        (0.25, (1 << 30, -1)),
        (0.5, (1 << 30, 0)),
        (0.75, (1610612736, 0)),
        (1.0, (1 << 30, 1)),
        (2.0, (1 << 30, 2)),
        # Values from TFLite's quantization_util_test: rounding to 2^31 carries into the shift.
        (0.50 - 5e-9, (2147483627, -1)),
        (0.50 - 1e-10, (1 << 30, 0)),
        (1 - 1e-9, (2147483646, 0)),
        (0.0, (0, 0)),
        (2.0**-32, (1 << 30, -31)),  # smallest shift kept
        (2.0**-33, (0, 0)),  # shift < -31 flushes to zero
    ],
)
def test_quantize_multiplier_known_values(real, expected):
    assert intmath.quantize_multiplier(real) == expected


def test_quantize_multiplier_represents_the_real_value():
    rng = np.random.default_rng(0)
    reals = np.exp(rng.uniform(np.log(1e-6), np.log(4.0), size=500))
    mult, shift = intmath.quantize_multipliers(reals)
    assert mult.dtype == np.int32 and shift.dtype == np.int32
    assert np.all((mult >= 1 << 30) & (mult.astype(np.int64) < 1 << 31))
    approx = mult.astype(np.float64) * np.exp2(shift.astype(np.float64) - 31)
    assert np.all(np.abs(approx - reals) <= reals * 2.0**-31)
    assert list(zip(mult.tolist(), shift.tolist(), strict=True)) == [
        intmath.quantize_multiplier(r) for r in reals]
    edge = np.array([0.0, 2.0**-33, 2.0**-32, 0.5 - 1e-10, 1 - 1e-9, 3.0])
    assert list(zip(*map(np.ndarray.tolist, intmath.quantize_multipliers(edge)), strict=True)) == [
        intmath.quantize_multiplier(r) for r in edge]


# --- MultiplyByQuantizedMultiplier ----------------------------------------------------------


def _half_up(f: Fraction) -> int:
    return (f + Fraction(1, 2)).__floor__()


def _half_away(f: Fraction) -> int:
    return _half_up(f) if f >= 0 else -_half_up(-f)


def _reference(x: int, mult: int, shift: int) -> int:
    """The spec in exact rationals: round(x * 2^left * m / 2^31) with ties toward +inf
    (SaturatingRoundingDoublingHighMul), then divide by 2^right with ties away from zero
    (RoundingDivideByPOT)."""
    left, right = max(shift, 0), max(-shift, 0)
    high = _half_up(Fraction(x * (1 << left) * mult, 1 << 31))
    return _half_away(Fraction(high, 1 << right))


def test_multiply_by_quantized_multiplier_matches_exact_reference():
    rng = np.random.default_rng(1)
    n = 4000
    mult = rng.integers(1 << 30, 1 << 31, size=n)
    shift = rng.integers(-31, 8, size=n)
    x = rng.integers(-(1 << 24), 1 << 24, size=n)
    # Exact ties of both roundings: odd x with m = 2^30 is a tie of the high multiply, and
    # small shifts make ties of the division frequent.
    x[:400] = rng.integers(-200, 200, size=400) | 1
    mult[:400] = 1 << 30
    shift[:400] = rng.integers(-4, 1, size=400)
    x = np.where(shift > 0, x >> np.maximum(shift, 0), x)  # keep x << left inside int32
    got = intmath.multiply_by_quantized_multiplier(x, mult, shift)
    expected = [_reference(int(a), int(m), int(s)) for a, m, s in zip(x, mult, shift, strict=True)]
    assert got.tolist() == expected


def test_multiply_by_quantized_multiplier_ties_and_saturation():
    half = np.array([1, -1, 3, -3])
    # m = 2^30 halves: 1 * 0.5 -> 1 (up), -1 * 0.5 -> 0 (toward +inf), 1.5 -> 2, -1.5 -> -1.
    assert intmath.multiply_by_quantized_multiplier(half, 1 << 30, 0).tolist() == [1, 0, 2, -1]
    # Then RoundingDivideByPOT rounds ties away from zero: 6 * 0.5 = 3, / 2 -> 2 and -2.
    assert intmath.multiply_by_quantized_multiplier(np.array([6, -6]), 1 << 30, -1).tolist() == [
        2, -2]
    assert intmath.saturating_rounding_doubling_high_mul(-(2**31), -(2**31)) == 2**31 - 1


def test_requantize_clamps_and_broadcasts_per_channel():
    acc = np.array([[1000, 1000], [-100000, 100000]])
    mult, shift = intmath.quantize_multipliers(np.array([0.01, 0.02]))
    out = intmath.requantize(acc, mult, shift, zero_point=5)
    assert out.dtype == np.int8
    assert out.tolist() == [[15, 25], [-128, 127]]


# --- weights, activations, bias -------------------------------------------------------------


def test_weight_ranges_and_scales():
    assert intmath.weight_qrange(8) == (-127, 127)
    assert intmath.weight_qrange(4) == (-8, 7)
    assert intmath.weight_qrange(4, narrow=True) == (-7, 7)
    with pytest.raises(DataError, match="bit width 5"):
        intmath.weight_qrange(5)
    rng = np.random.default_rng(2)
    w = rng.normal(size=(3, 3, 2, 6)).astype(np.float32)
    w[..., 4] = 0.0  # a dead channel
    scales = intmath.weight_scales(w, 4, axis=-1)
    assert scales.dtype == np.float32 and scales.shape == (6,)
    np.testing.assert_array_equal(scales[[0, 1, 2, 3, 5]],
                                  np.abs(w).max(axis=(0, 1, 2))[[0, 1, 2, 3, 5]] / np.float32(7))
    assert scales[4] == scales[[0, 1, 2, 3, 5]].min()  # not tiny: the bias must not overflow
    q = intmath.quantize_weights(w, scales, 4, axis=-1)
    assert q.dtype == np.int8 and q.min() >= -7 and q.max() <= 7  # minmax never reaches -8
    assert np.all(np.abs(q).max(axis=(0, 1, 2))[[0, 1, 2, 3, 5]] == 7)
    error = np.abs(intmath.dequantize_weights(q, scales, axis=-1) - w)
    assert np.all(error <= scales / 2 * (1 + 1e-6))
    assert np.all(q[..., 4] == 0)


def test_quantize_weights_rounds_half_away_from_zero():
    w = np.array([0.5, -0.5, 1.5, -1.5, 2.5, 1000.0, -1000.0])
    q = intmath.quantize_weights(w, np.array([1.0]), 8, axis=None)
    assert q.tolist() == [1, -1, 2, -2, 3, 127, -127]
    assert intmath.quantize_weights(w, np.array([1.0]), 4, axis=None).tolist()[-1] == -8
    assert intmath.quantize_weights(w, np.array([1.0]), 2, axis=None).tolist() == [1, -1, 1, -2, 1,
                                                                               1, -2]


def test_activation_qparams_properties():
    rng = np.random.default_rng(3)
    for _ in range(500):
        lo, hi = sorted(rng.normal(0, 3, size=2) * 10 ** rng.uniform(-3, 3))
        scale, zp = intmath.activation_qparams(lo, hi)
        assert isinstance(zp, int) and -128 <= zp <= 127  # 0.0 is exactly the code zp
        assert scale.dtype == np.float32 and scale > 0
        lo0, hi0 = min(lo, 0.0), max(hi, 0.0)
        assert float(scale) * (-128 - zp) <= lo0 + float(scale) / 2 + 1e-12
        assert float(scale) * (127 - zp) >= hi0 - float(scale) / 2 - 1e-12
        assert float(scale) == pytest.approx((hi0 - lo0) / 255, rel=1e-6)
    assert intmath.activation_qparams(0.0, 6.0) == (np.float32(6.0 / 255), -128)
    assert intmath.activation_qparams(-1.0, 1.0)[1] == -1
    assert intmath.activation_qparams(0.0, 0.0) == (np.float32(1.0), -128)
    with pytest.raises(DataError, match="invalid activation range"):
        intmath.activation_qparams(1.0, float("nan"))


def test_quantize_activations_matches_tflite_quantize():
    x = np.array([0.0, 0.05, -0.05, 0.15, 100.0, -100.0], dtype=np.float32)
    assert intmath.quantize_activations(x, 0.1, 3).tolist() == [3, 4, 2, 5, 127, -128]


def test_quantize_bias():
    q = intmath.quantize_bias([1.0, -1.0, 0.3, 1e9], 0.5, np.array([0.01, 0.02, 0.1, 1e-6]))
    assert q.dtype == np.int32
    assert q.tolist() == [200, -100, 6, 2**31 - 1]
    np.testing.assert_array_equal(intmath.bias_scales(0.5, [0.01]), np.float32(0.5) * np.float32(0.01))


# --- INT4 packing and QuantSpec -------------------------------------------------------------


def test_int4_packing_low_nibble_first():
    packed = intmath.pack_int4([1, -1, 7, -8, 3])
    assert packed.tolist() == [0xF1, 0x87, 0x03]
    assert intmath.unpack_int4(packed, 5).tolist() == [1, -1, 7, -8, 3]
    values = np.random.default_rng(4).integers(-8, 8, size=101)
    assert intmath.unpack_int4(intmath.pack_int4(values), 101).tolist() == values.tolist()
    with pytest.raises(DataError, match="outside"):
        intmath.pack_int4([8])


def test_quant_spec():
    spec = intmath.QuantSpec(default_weight_bits=4, weight_bits={"conv1": 8})
    assert spec.bits_for("conv1") == 8 and spec.bits_for("conv2") == 4
    with pytest.raises(DataError, match="'fc'"):
        intmath.QuantSpec(weight_bits={"fc": 6})


# --- the TFLite converter agrees ------------------------------------------------------------


def test_activation_and_weight_quantization_match_the_tflite_converter():
    """A Dense layer calibrated on data with known min/max: the converter's input scale/zero
    point, weight scales, int8 weights and int32 bias equal intmath's."""
    import tensorflow as tf

    rng = np.random.default_rng(5)
    inputs = tf.keras.Input((6,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(inputs))
    kernel = rng.normal(size=(6, 4)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    model.layers[-1].set_weights([kernel, bias])
    for lo, hi in [(-0.7312, 2.381), (0.1, 3.0), (-41.5, 17.25)]:
        data = np.full((2, 6), lo, dtype=np.float32)
        data[1] = hi

        def representative(data=data):
            for row in data:
                yield [row[None]]

        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        from edgeq.tflite.read import read_model

        converted = read_model(converter.convert())
        fc = next(op for op in converted.ops if op.kind == "FULLY_CONNECTED")
        x, w, b = (converted.tensors[i] for i in fc.inputs)
        scale, zp = intmath.activation_qparams(lo, hi)
        assert (x.scale[0], int(x.zero_point[0])) == (scale, zp)
        axis = 0 if w.per_channel else None
        w_scales = intmath.weight_scales(kernel.T, 8, axis)
        np.testing.assert_array_equal(w.scale, w_scales)
        np.testing.assert_array_equal(w.data, intmath.quantize_weights(kernel.T, w_scales, 8, axis))
        b_q = intmath.quantize_bias(bias, scale, np.broadcast_to(w_scales, (4,)))
        np.testing.assert_array_equal(b.data.astype(np.int64), b_q)


# --- extremes, against plain integer formulas (the mutation run's survivors) -----------------

_EDGES = [-(2**31), -(2**31) + 1, -(2**30) - 1, -(2**30), -3, -2, -1, 0, 1, 2, 3, 2**30,
          2**30 + 1, 2**31 - 2, 2**31 - 1]


def test_high_mul_and_divide_by_pot_at_the_int32_extremes():
    """SaturatingRoundingDoublingHighMul = floor(a·b / 2^31 + 1/2), saturated for
    INT32_MIN²; RoundingDivideByPOT = x / 2^e rounded half away from zero."""
    rng = np.random.default_rng(11)
    values = _EDGES + rng.integers(-(2**31), 2**31, size=60).tolist()
    a = np.array([x for x in values for _ in values], np.int64)
    b = np.array([y for _ in values for y in values], np.int64)
    expected = [2**31 - 1 if x == y == -(2**31) else (x * y + 2**30) >> 31
                for x, y in zip(a.tolist(), b.tolist(), strict=True)]
    assert intmath.saturating_rounding_doubling_high_mul(a, b).tolist() == expected
    for e in (0, 1, 2, 5, 30, 31):
        got = intmath.rounding_divide_by_pot(np.array(values, np.int64), e).tolist()
        want = []
        for x in values:
            q, r = divmod(abs(x), 2**e)
            want.append((q + (2 * r >= 2**e)) * (1 if x >= 0 else -1))
        assert got == want, e


def test_vectorized_multipliers_equal_the_scalar_ones_with_carry_and_flush():
    rng = np.random.default_rng(12)
    reals = np.concatenate([rng.uniform(1e-6, 4.0, 300), 2.0 ** rng.uniform(-40, 3, 300),
                            [0.0, 1 - 2**-33, 0.5 - 2**-34, 2.0**-32, 2.0**-33, 2.0**-31 - 2**-60]])
    m, s = intmath.quantize_multipliers(reals)
    assert m.dtype == np.int32 and s.dtype == np.int32
    for real, mi, si in zip(reals, m.tolist(), s.tolist(), strict=True):
        assert (mi, si) == intmath.quantize_multiplier(real), real
        if mi:
            assert 2**30 <= mi < 2**31
    assert intmath.quantize_multiplier(1 - 2**-33) == (1 << 30, 1)  # the 2^31 carry


def test_int4_range_padding_and_buffer_sizes():
    packed = intmath.pack_int4([-8, 7, -1])  # odd count: the last byte's high nibble is 0
    assert packed.dtype == np.uint8 and packed.tolist() == [0x78, 0x0F]
    with pytest.raises(DataError, match=r"INT4 values outside \[-8, 7\]") as e:
        intmath.pack_int4([0, -9])
    assert "bits=4" in e.value.hint
    assert intmath.unpack_int4(np.array([0x78, 0x0F], np.uint8), 4).tolist() == [-8, 7, -1, 0]
    unpacked = intmath.unpack_int4(np.array([0x78], np.uint8), 2)
    assert unpacked.dtype == np.int8 and unpacked.tolist() == [-8, 7]
    with pytest.raises(DataError, match="1 bytes is too short for 3 values"):
        intmath.unpack_int4(np.array([0x78], np.uint8), 3)


def test_dequantize_and_quantize_activation_dtypes():
    q = np.array([[-127, 3], [5, 127]], np.int8)
    w = intmath.dequantize_weights(q, np.array([0.5, 0.25], np.float32), axis=1)
    assert w.dtype == np.float32 and w.tolist() == [[-63.5, 0.75], [2.5, 31.75]]
    a = intmath.quantize_activations(np.array([-1e9, 0.05, 0.15, 1e9]), np.float32(0.1), -3)
    assert a.dtype == np.int8 and a.tolist() == [-128, -2, -1, 127]


def test_quant_spec_refuses_other_activation_widths():
    with pytest.raises(DataError, match="activation bit width 4") as e:
        intmath.QuantSpec(activation_bits=4)
    assert "int8" in e.value.hint
    with pytest.raises(DataError, match="'<default>': unsupported weight bit width 5") as e:
        intmath.QuantSpec(default_weight_bits=5)
    assert "[2, 3, 4, 8]" in e.value.hint


def test_output_size_and_padding_count_the_windows():
    """ComputeOutSize and ComputePadding against a count of the filter windows themselves."""
    for in_size in range(1, 14):
        for filter_size in range(1, 6):
            for stride in (1, 2, 3):
                for dilation in (1, 2, 3):
                    span = (filter_size - 1) * dilation + 1  # input positions one window covers
                    if span > in_size:
                        continue  # no VALID window fits: no model has such a layer
                    valid = sum(1 for start in range(0, in_size, stride)
                                if start + span <= in_size)
                    same = sum(1 for _ in range(0, in_size, stride))
                    assert intmath.output_size("VALID", in_size, filter_size, stride,
                                               dilation) == valid
                    assert intmath.output_size("SAME", in_size, filter_size, stride,
                                               dilation) == same
                    # the least total padding that lets the last window fit, half of it first
                    total = next(p for p in range(0, 4 * span)
                                 if (same - 1) * stride + span <= in_size + p)
                    assert intmath.leading_padding(in_size, filter_size, stride, dilation,
                                                   same) == total // 2


def test_wrap_int32_wraps_like_the_hardware():
    values = np.array([0, 1, -1, 2**31 - 1, 2**31, -(2**31), -(2**31) - 1, 2**32 + 5,
                       -(2**32) - 7, 3 * 2**31 + 11])
    expected = [int(np.array(v & 0xFFFFFFFF, np.uint32).view(np.int32)) for v in values.tolist()]
    assert intmath.wrap_int32(values).tolist() == expected
    assert intmath.wrap_int32(values).dtype == np.int64


def test_weight_scales_are_float32_per_channel_or_per_tensor():
    w = np.zeros((3, 3, 2, 4), np.float64)
    w[..., 1] = 2.54
    w[0, 0, 0, 3] = -1.27
    per_channel = intmath.weight_scales(w, 8, axis=-1)
    assert per_channel.dtype == np.float32 and per_channel.shape == (4,)
    # all-zero channels take the smallest scale of the others (a tiny one overflows the bias)
    np.testing.assert_allclose(per_channel, [0.01, 0.02, 0.01, 0.01], rtol=1e-6)
    per_tensor = intmath.weight_scales(w, 8, axis=None)
    assert per_tensor.dtype == np.float32 and per_tensor.tolist() == [np.float32(0.02)]
    assert intmath.weight_scales(np.zeros((2, 3)), 4, axis=0).tolist() == [1.0, 1.0]
    q = intmath.quantize_weights(w, per_channel, 8, axis=-1)
    assert q.dtype == np.int8 and q[0, 0, 0, 1] == 127 and q[0, 0, 0, 3] == -127 and q[..., 0].max() == 0
