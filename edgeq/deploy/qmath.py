"""Integer helpers of the reference interpreter that edgeq.quant.grid does not already hold:
int32 wrap-around, the fused-activation clamp range, padding, and gemmlowp's fixed-point
exp / reciprocal used by TFLM's int8 SOFTMAX.

All functions take and return int64 numpy arrays that hold int32 values, so that every
intermediate of the C code (which works in int32) is represented exactly.
"""

from __future__ import annotations

import math

import numpy as np

from edgeq.quant.grid import (
    INT32_MAX,
    INT32_MIN,
    quantize_multiplier,
    round_half_away,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

srdhm = saturating_rounding_doubling_high_mul


def wrap_int32(x: np.ndarray) -> np.ndarray:
    """Wrap int64 values into int32 the way two's-complement hardware does."""
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def quantize_float32(value: float, scale: np.float32, zero_point: int) -> int:
    """TFLite's Quantize() in CalculateActivationRangeQuantized: round(value / scale) in
    float32, half away from zero, plus the zero point."""
    quotient = np.float32(np.float32(value) / np.float32(scale))
    return int(zero_point) + int(round_half_away(float(quotient)))


def activation_range(activation: str, scale: np.float32, zero_point: int,
                     qmin: int = -128, qmax: int = 127) -> tuple[int, int]:
    """(min, max) of the output after a fused activation, in the quantized domain, as TFLM's
    CalculateActivationRangeQuantized computes it."""
    if activation == "NONE":
        return qmin, qmax
    if activation == "RELU":
        return max(qmin, quantize_float32(0.0, scale, zero_point)), qmax
    if activation == "RELU6":
        return (max(qmin, quantize_float32(0.0, scale, zero_point)),
                min(qmax, quantize_float32(6.0, scale, zero_point)))
    if activation == "RELU_N1_TO_1":
        return (max(qmin, quantize_float32(-1.0, scale, zero_point)),
                min(qmax, quantize_float32(1.0, scale, zero_point)))
    raise ValueError(f"unknown fused activation {activation!r}")


def output_size(padding: str, in_size: int, filter_size: int, stride: int, dilation: int) -> int:
    """Output length along one spatial axis (TFLite's ComputeOutSize)."""
    effective = (filter_size - 1) * dilation + 1
    if padding == "SAME":
        return (in_size + stride - 1) // stride
    return (in_size - effective + stride) // stride


def leading_padding(in_size: int, filter_size: int, stride: int, dilation: int,
                    out_size: int) -> int:
    """Padding before the first element (TFLite's ComputePadding); the reference kernels use
    only this one and clip windows at the far edge."""
    effective = (filter_size - 1) * dilation + 1
    total = max((out_size - 1) * stride + effective - in_size, 0)
    return total // 2


# --- gemmlowp fixed point, as TFLM's reference Softmax uses it --------------------------------


def _saturating_shift_left(x: np.ndarray, exponent: int) -> np.ndarray:
    """SaturatingRoundingMultiplyByPOT with a positive exponent on int32."""
    threshold = (1 << (31 - exponent)) - 1
    return np.where(x > threshold, INT32_MAX, np.where(x < -threshold, INT32_MIN, x << exponent))


def _exp_on_quarter_interval(a: np.ndarray) -> np.ndarray:
    """exp(a) for a in [-1/4, 0), Q0.31 in and out (Taylor series around -1/8)."""
    constant_term = 1895147668  # exp(-1/8) in Q0.31
    one_third = 715827883
    x = a + (1 << 28)  # a + 1/8
    x2 = srdhm(x, x)
    x3 = srdhm(x2, x)
    x4 = srdhm(x2, x2)
    x4_over_4 = rounding_divide_by_pot(x4, 2)
    poly = rounding_divide_by_pot(srdhm(x4_over_4 + x3, one_third) + x2, 1)
    return constant_term + srdhm(constant_term, x + poly)


# exp(-2^k) in Q0.31 for the barrel shifter, k = -2 .. 4.
_EXP_BARREL = ((-2, 1672461947), (-1, 1302514674), (0, 790015084), (1, 290630308),
               (2, 39332535), (3, 720401), (4, 242))


def exp_on_negative_values(a: np.ndarray, integer_bits: int) -> np.ndarray:
    """exp(a) for a <= 0 given in Q(integer_bits).(31 - integer_bits); result in Q0.31."""
    fractional_bits = 31 - integer_bits
    one_quarter = 1 << (fractional_bits - 2)
    a = np.asarray(a, dtype=np.int64)
    a_mod_quarter_minus_quarter = (a & (one_quarter - 1)) - one_quarter
    result = _exp_on_quarter_interval(_saturating_shift_left(a_mod_quarter_minus_quarter,
                                                             integer_bits))
    remainder = a_mod_quarter_minus_quarter - a
    for exponent, multiplier in _EXP_BARREL:
        if integer_bits > exponent:
            bit = (remainder >> (fractional_bits + exponent)) & 1
            result = np.where(bit != 0, srdhm(result, multiplier), result)
    if integer_bits > 5:
        clamp = -(1 << (36 - integer_bits))
        result = np.where(a < clamp, 0, result)
    return np.where(a == 0, INT32_MAX, result)


def _rounding_half_sum(a: np.ndarray, b: int) -> np.ndarray:
    total = a + b
    # (total + sign) / 2 with C's truncating division
    numerator = total + np.where(total >= 0, 1, -1)
    return np.sign(numerator) * (np.abs(numerator) // 2)


def one_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """1 / (1 + a) for a in [0, 1), Q0.31 in and out (three Newton-Raphson steps)."""
    half_denominator = _rounding_half_sum(np.asarray(a, dtype=np.int64), INT32_MAX)
    x = 1515870810 + srdhm(half_denominator, -1010580540)  # 48/17 - 32/17 * d, in Q2.29
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = one_q2 - half_denominator_times_x
        x = x + _saturating_shift_left(srdhm(x, one_minus), 2)
    return _saturating_shift_left(x, 1)


def reciprocal(x: np.ndarray, integer_digits: int) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's GetReciprocal: (1/x in Q0.31 scaled into [0.5, 1), num_bits_over_unit)."""
    x = np.asarray(x, dtype=np.int64)
    unsigned = x & 0xFFFFFFFF
    # count leading zeros of the 32-bit value
    _, bit_length = np.frexp(unsigned.astype(np.float64))  # exact for 32-bit integers
    leading_zeros = 32 - bit_length.astype(np.int64)
    bits_over_unit = integer_digits - leading_zeros
    shifted = ((unsigned << leading_zeros) - (1 << 31)) & 0xFFFFFFFF
    shifted_minus_one = np.where(shifted >= 1 << 31, shifted - (1 << 32), shifted)
    return one_over_one_plus_x(shifted_minus_one), bits_over_unit


def softmax_scaling(beta: float, input_scale: np.float32,
                    integer_bits: int = 5) -> tuple[int, int, int]:
    """TFLite's PreprocessSoftmaxScaling + CalculateInputRadius (double rounding build):
    (input multiplier, left shift, diff_min)."""
    real = min(float(np.float32(beta)) * float(np.float32(input_scale))
               * float(1 << (31 - integer_bits)), float((1 << 31) - 1))
    multiplier, left_shift = quantize_multiplier(real)
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits))
                        / (1 << left_shift))
    return multiplier, left_shift, -radius
