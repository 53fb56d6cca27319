"""The TFLite integer quantization grid, in numpy: weight scales and rounding, activation
scale/zero point, bias, INT4 packing, and the fixed-point requantization that TFLM does.

This is the single home of edgeq's integer arithmetic: the simulated model, the reference
interpreter and the C generator all take their numbers from here, so that what is optimized
on the host is bit for bit what runs on the board.

Conventions follow the TFLite quantization spec:
- weights: symmetric (zero point 0), per output channel, int8 in [-127, 127], int4 in [-8, 7];
- activations: int8 asymmetric per tensor, real = scale * (q - zero_point), 0 exactly
  representable;
- bias: int32, zero point 0, scale = input scale * weight scale (per channel).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edgeq.errors import DataError

# Integer range of weights per bit width. The scale from min/max uses the symmetric part only
# (scale = max|w| / 127 for 8 bits, max|w| / 7 for 4 bits), so the most negative value (-8 for
# 4 bits) is reached only when learned rounding (AdaRound, ...) pushes a weight there. INT8 is
# narrow ([-127, 127]) as the TFLite spec requires.
WEIGHT_RANGES = {8: (-127, 127), 4: (-8, 7), 3: (-4, 3), 2: (-2, 1)}

INT32_MIN = -(2**31)
INT32_MAX = 2**31 - 1
# The TFLite converter clips bias to the symmetric int32 range.
BIAS_RANGE = (-INT32_MAX, INT32_MAX)


def weight_qrange(bits: int, narrow: bool = False) -> tuple[int, int]:
    """(qmin, qmax) of `bits`-bit weights; `narrow` drops the most negative value so the grid
    is symmetric (e.g. [-7, 7] for 4 bits). INT8 is always narrow."""
    if bits not in WEIGHT_RANGES:
        raise DataError(
            f"unsupported weight bit width {bits}",
            hint=f"use one of {sorted(WEIGHT_RANGES)}",
        )
    qmin, qmax = WEIGHT_RANGES[bits]
    return (-qmax, qmax) if narrow else (qmin, qmax)


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round half away from zero, like C's std::round (numpy's round goes to even)."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def _channel_max(w: np.ndarray, axis: int | None) -> np.ndarray:
    w = np.abs(np.asarray(w, dtype=np.float32))
    if axis is None:
        return np.array([w.max() if w.size else 0.0], dtype=np.float32)
    axis = axis % w.ndim
    other = tuple(i for i in range(w.ndim) if i != axis)
    return w.max(axis=other).astype(np.float32) if other else w.astype(np.float32)


def weight_scales(w: np.ndarray, bits: int, axis: int | None) -> np.ndarray:
    """Symmetric float32 scales, one per slice along `axis` (per tensor when axis is None):
    max|w| / qmax, computed in float32 as the TFLite converter does.

    An all-zero channel gets the smallest scale of the other channels (1.0 if all are zero)
    rather than a tiny one: any scale quantizes zeros exactly, and a tiny scale would make
    that channel's bias (scale s_in * s_w) overflow int32.
    """
    _, qmax = weight_qrange(bits)
    peak = _channel_max(w, axis)
    if not np.all(np.isfinite(peak)):
        raise DataError("weights contain NaN or Inf", hint="check the model's weights")
    scales = (peak / np.float32(qmax)).astype(np.float32)
    positive = scales[scales > 0]
    fill = positive.min() if positive.size else np.float32(1.0)
    return np.where(scales > 0, scales, fill).astype(np.float32)


def _broadcast(scales: np.ndarray, ndim: int, axis: int | None) -> np.ndarray:
    scales = np.asarray(scales, dtype=np.float64).reshape(-1)
    if axis is None or scales.size == 1:
        return scales.reshape((1,) * ndim) if ndim else scales.reshape(())
    shape = [1] * ndim
    shape[axis % ndim] = scales.size
    return scales.reshape(shape)


def quantize_weights(
    w: np.ndarray, scales: np.ndarray, bits: int, axis: int | None, narrow: bool = False
) -> np.ndarray:
    """Integer weights (int8 array, also for 4/3/2 bits): round(w / scale) half away from
    zero, clipped to the bit width's range."""
    w = np.asarray(w, dtype=np.float64)
    qmin, qmax = weight_qrange(bits, narrow)
    q = round_half_away(w / _broadcast(scales, w.ndim, axis))
    return np.clip(q, qmin, qmax).astype(np.int8)


def dequantize_weights(q: np.ndarray, scales: np.ndarray, axis: int | None) -> np.ndarray:
    """float32 weights q * scale (the values the integer model effectively uses)."""
    q = np.asarray(q)
    return (q.astype(np.float64) * _broadcast(scales, q.ndim, axis)).astype(np.float32)


def activation_qparams(lo: float, hi: float, bits: int = 8) -> tuple[np.float32, int]:
    """int8 (or `bits`-bit signed) asymmetric per-tensor (scale, zero_point) for the range
    [lo, hi], as the TFLite converter computes them from calibration min/max.

    The range is widened to include 0; scale = (hi - lo) / (qmax - qmin) in float32; the zero
    point qmin - lo / scale is clamped into [qmin, qmax] and rounded half away from zero, so
    0.0 is exactly representable. A degenerate range (hi == lo == 0) gives scale 1, zp qmin.
    """
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        raise DataError(
            f"invalid activation range [{lo}, {hi}]",
            hint="calibrate on finite data; the range must satisfy lo <= hi",
        )
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    lo = np.float32(min(float(lo), 0.0))
    hi = np.float32(max(float(hi), 0.0))
    scale = np.float32((hi - lo) / np.float32(qmax - qmin))
    if scale == 0:
        return np.float32(1.0), qmin
    zp_from_min = np.float32(np.float32(qmin) - lo / scale)
    if zp_from_min < qmin:
        zero_point = qmin
    elif zp_from_min > qmax:
        zero_point = qmax
    else:
        zero_point = int(round_half_away(zp_from_min))
    return scale, zero_point


def quantize_activations(x: np.ndarray, scale: float, zero_point: int, bits: int = 8) -> np.ndarray:
    """float -> int8 as TFLite's QUANTIZE op: round(x / scale) + zp, clipped."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q = round_half_away(np.asarray(x, dtype=np.float32) / np.float32(scale)) + zero_point
    return np.clip(q, qmin, qmax).astype(np.int8)


def bias_scales(input_scale: float, weight_scales: np.ndarray) -> np.ndarray:
    """float32 bias scale(s) s_in * s_w, one per weight scale."""
    ws = np.asarray(weight_scales, dtype=np.float32).reshape(-1)
    return (np.float32(input_scale) * ws).astype(np.float32)


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> np.ndarray:
    """int32 bias: round(b / (s_in * s_w)) half away from zero, clipped to +-(2^31 - 1)."""
    b = np.asarray(b, dtype=np.float64).reshape(-1)
    scales = bias_scales(input_scale, weight_scales).astype(np.float64)
    q = round_half_away(b / scales)
    return np.clip(q, *BIAS_RANGE).astype(np.int32)


# ---------------------------------------------------------------------------------------------
# INT4 packing (two values per byte, first value in the low nibble, as TFLite stores INT4).


def pack_int4(values: np.ndarray) -> np.ndarray:
    """Pack int values in [-8, 7] into uint8 bytes, two per byte, first in the low nibble;
    an odd count leaves the last high nibble 0."""
    v = np.asarray(values).reshape(-1).astype(np.int16)
    if v.size and (v.min() < -8 or v.max() > 7):
        raise DataError("INT4 values outside [-8, 7]", hint="quantize with bits=4 first")
    nibbles = (v & 0x0F).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """Inverse of pack_int4: `count` int8 values in [-8, 7]."""
    p = np.asarray(packed, dtype=np.uint8).reshape(-1)
    if p.size * 2 < count:
        raise DataError(f"INT4 buffer of {p.size} bytes is too short for {count} values")
    nibbles = np.empty(p.size * 2, dtype=np.int16)
    nibbles[0::2] = p & 0x0F
    nibbles[1::2] = p >> 4
    nibbles = nibbles[:count]
    return np.where(nibbles > 7, nibbles - 16, nibbles).astype(np.int8)


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """Signed `bits`-bit values (2, 3 or 4) as a dense little-endian bit stream: value k in
    bits [bits*k, bits*(k+1)), least significant bit first; the last byte padded with zeros.
    For 4 bits this is pack_int4's layout. How the C engine stores 2- and 3-bit weights
    (eq_weight in edgeq/kernels/eq_internal.h reads it)."""
    qmin, qmax = WEIGHT_RANGES[bits]
    v = np.asarray(values).reshape(-1).astype(np.int64)
    if v.size and (v.min() < qmin or v.max() > qmax):
        raise DataError(f"values outside the {bits}-bit range [{qmin}, {qmax}]",
                        hint=f"quantize with bits={bits} first")
    fields = (v & ((1 << bits) - 1)).astype(np.uint8)
    stream = ((fields[:, None] >> np.arange(bits, dtype=np.uint8)) & 1).reshape(-1)
    return np.packbits(stream, bitorder="little")


def unpack_bits(packed: np.ndarray, count: int, bits: int) -> np.ndarray:
    """Inverse of pack_bits: `count` signed values."""
    stream = np.unpackbits(np.asarray(packed, dtype=np.uint8).reshape(-1), bitorder="little")
    if stream.size < count * bits:
        raise DataError(f"{bits}-bit buffer of {stream.size // 8} bytes is too short for "
                        f"{count} values")
    fields = stream[:count * bits].reshape(count, bits).astype(np.int64) << np.arange(bits)
    v = fields.sum(axis=1)
    return np.where(v >= 1 << (bits - 1), v - (1 << bits), v).astype(np.int8)


# What the C engine (edgeq.deploy.cgen) stores in flash per weighted layer. The planner
# (edgeq.learn.quant.mixed), the report and cgen all count with engine_layer_bytes.
FAST_MAX_FILTER = 1152  # EQ_GATHER_MAX in the kernels: longer filter rows take the portable path
# Per-channel parameters (bias, Q31 multiplier, shift) as one array per layer: each field
# stored as value - base at the layer's width for it, least significant bit first, in one bit
# stream: per channel its (bias, shift) pair, then per channel its multiplier code and
# residual; then an 18-byte header: int32 bias base, uint32 multiplier base, uint48 K, int8
# shift base, bias width, multiplier code width, and a byte of shift width (bits 0-2),
# residual width (bits 3-6) and dead flag (bit 7). After the stream, it lets eq_channels.c read
# each field with one 4-byte load without leaving the array. K = 0: a multiplier is
# base + code. Otherwise K is the mantissa of the layer's input scale / output scale (31 bits
# and up to 16 more, while code * K < 2^62) and a multiplier is
# predict_multiplier(base + code, K) + residual (signed, at its width): TFLM's multiplier is
# that ratio times the weight scale's mantissa, normalized to Q31, so the code is that mantissa
# (snap_weight_scales shortens it) and the residual is almost always 0.
# A dead channel (multiplier 0: TFLM outputs the zero point whatever the bias and shift) stores
# code 0 and no bias (the base), so it widens no field.
CHANNEL_HEADER_BYTES = 18
# Field widths when the values are unknown: they hold any int32 bias, Q31 multiplier in
# [2^30, 2^31) and shift in [-31, 30] (or dead): an upper bound of channel_param_bytes.
WIDEST_CHANNEL_FIELDS = (32, 30, 6)
MAX_RESIDUAL_BITS = 15
# Significant bits of the float32 weight scales as snap_weight_scales leaves them, per weight
# width: the multiplier code is that many bits minus one. Relative scale change at most
# 2^-bits (the integer weights do not change). Measured on the Fashion-MNIST QGT models
# (integer top-1 on 10,000 test images): W2 88.56% unsnapped, 88.64 / 88.48 / 88.16% at 6 / 5
# / 4 bits; W4 92.28% unsnapped, 92.36% at 10 bits; W3 92.30% unsnapped, 92.32 / 92.36 /
# 92.35% at 6 / 7 / 8 bits (scripts/measure_snap_bits.py 3 0 6 7 8).
SNAP_SCALE_BITS = {2: 5, 3: 7, 4: 10, 8: 12}


def stored_weight_bytes(count: int, bits: int) -> int:
    """Bytes of `count` weights at `bits` (8: one a byte; 4: two; 3 and 2: a dense stream)."""
    return -(-int(count) * int(bits) // 8)


def conv_row_values(values: int, bits: int, grouped: bool = False) -> int:
    """Values per stored CONV_2D filter row of `values` taps: padded with zeros to the DSP
    fast path's run (4 for int8, 8 for int4 and the 2/3-bit widths, which unpack to int4)
    unless the convolution is grouped or the padded row is longer than FAST_MAX_FILTER."""
    run = 4 if bits == 8 else 8
    padded = -(-int(values) // run) * run
    return padded if not grouped and padded <= FAST_MAX_FILTER else int(values)


def widened_rgb_filter(filter_h: int, filter_w: int, filter_channels: int,
                       in_channels: int) -> bool:
    """A 3x3 CONV_2D filter over three input channels (an RGB first layer): the engine stores
    its INT8 weights as int16 by default, a few hundred bytes for a faster dot product."""
    return filter_h == filter_w == 3 and filter_channels == in_channels == 3


def engine_layer_bytes(kind: str, channels: int, values_per_channel: int, bits: int,
                       grouped: bool = False, bias: bool = True,
                       per_channel: bool = True,
                       fields: tuple[int, int, int] | None = None,
                       widened: bool = False) -> tuple[int, int]:
    """(weight bytes, per-channel parameter bytes) the engine stores for one layer: `kind`
    "conv" (rows padded as conv_row_values), "depthwise" or "dense"; `channels` output
    channels of `values_per_channel` weights each, at `bits`; `fields`: the parameters' field
    widths (channel_fields; None: the widest, an upper bound); `widened`: INT8 conv weights
    stored as int16 (widened_rgb_filter)."""
    if kind == "conv":
        values_per_channel = conv_row_values(values_per_channel, bits, grouped)
    elif kind not in ("depthwise", "dense"):
        raise DataError(f"unknown layer kind {kind!r}", hint="use conv, depthwise or dense")
    weights = stored_weight_bytes(channels * values_per_channel, bits)
    if widened and kind == "conv" and bits == 8:
        weights *= 2
    if fields is None and not per_channel:  # one multiplier and shift: zero bits a channel
        fields = (WIDEST_CHANNEL_FIELDS[0], 0, 0)
    params = channel_param_bytes(channels if per_channel or bias else 1, fields, bias)
    return weights, params


def channel_param_bytes(channels: int, fields: tuple[int, int, int] | None = None,
                        bias: bool = True) -> int:
    """Bytes of one layer's packed per-channel parameters (see CHANNEL_HEADER_BYTES) with field
    widths `fields` (bias, multiplier, shift; channel_fields gives them for known values, None
    the widest)."""
    b, m, s = WIDEST_CHANNEL_FIELDS if fields is None else fields
    return CHANNEL_HEADER_BYTES + -(-int(channels) * ((b if bias else 0) + m + s) // 8)


def _width(span: int) -> int:
    return int(span).bit_length()


def _signed_width(r: np.ndarray) -> int:
    """Bits of two's complement that hold every value of r (0 when all are zero)."""
    if not r.size or not r.any():
        return 0
    return max(int(r.max()).bit_length(), int(-r.min() - 1).bit_length()) + 1


def _bit_length(x: np.ndarray) -> np.ndarray:
    """Bit length of positive int64 values below 2^62 (float64 exponent, corrected by one
    where the float rounded across a power of two)."""
    x = np.asarray(x, np.int64)
    n = np.frexp(x.astype(np.float64))[1].astype(np.int64)
    n = np.where((x >> np.maximum(n - 1, 0)) == 0, n - 1, n)
    return np.where((x >> n) != 0, n + 1, n)


def predict_multiplier(a, k: int) -> np.ndarray:
    """a * k normalized to a Q31 multiplier in [2^30, 2^31), rounded half up (the 2^31 carry
    halved): what eq_channels.c computes before adding the residual. a >= 1, k >= 2^30,
    a * k < 2^62."""
    p = np.asarray(a, np.int64) * np.int64(k)
    drop = np.maximum(_bit_length(p) - 31, 0)
    m = (p + ((np.int64(1) << drop) >> 1)) >> drop
    return np.where(m == 1 << 31, m >> 1, m)


def _multiplier_codes(m: np.ndarray, ratio: float | None):
    """(K, base, code width, codes, residual width, residuals) of live Q31 multipliers `m`:
    K = 0 stores them as base + code; with the layer's ratio (input scale / output scale) the
    code is a mantissa of n bits, the n of the fewest code + residual bits, and K the ratio's
    mantissa at 31 + e bits, e as large as a * K < 2^62 allows and K 48 bits (e <= 16)."""
    best = (0, int(m.min()), _width(m.max() - m.min()), m - m.min(), 0, np.zeros_like(m))
    k31 = quantize_multiplier(ratio)[0] if ratio else 0
    if not k31:
        return best
    mant = math.frexp(float(ratio))[0]
    for n in range(1, 25):
        up = np.where(m >= k31, n - 1, n)  # a in [2^(n-1), 2^n]
        a = ((m << up) + k31 // 2) // k31
        e = min(16, 62 - 32 - int(a.max()).bit_length())
        k = int(round(math.ldexp(mant, 31 + e)))
        r = m - predict_multiplier(a, k)
        wr = _signed_width(r)
        wm = _width(a.max() - a.min())
        if wr <= MAX_RESIDUAL_BITS and wm + wr < best[2] + best[4]:
            best = (k, int(a.min()), wm, a - a.min(), wr, r)
    return best


def _channel_arrays(bias, multipliers, shifts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bias, multipliers, shifts) as int64 vectors; no bias is zeros."""
    m = np.asarray(multipliers, np.int64).reshape(-1)
    s = np.asarray(shifts, np.int64).reshape(-1)
    b = np.zeros_like(m) if bias is None else np.asarray(bias, np.int64).reshape(-1)
    return b, m, s


def channel_fields(bias, multipliers, shifts, ratio: float | None = None
                   ) -> tuple[tuple[int, int, int], tuple, bool]:
    """((bias, multiplier, shift) widths, (bias, multiplier, shift) bases, dead) of one layer's
    packed parameters: each field stores value - base, the base the smallest live value; with
    dead channels (multiplier 0) shift code 0 marks them and the shift base is one lower.
    `ratio`: the layer's input scale / output scale (op_channel_ratio), which lets multipliers
    be stored as a mantissa code and a residual; the multiplier width is then their sum."""
    b, m, s = _channel_arrays(bias, multipliers, shifts)
    live = m != 0
    dead = not live.all()
    if not live.any():
        return (0, 0, 1), (0, 0, 0), True
    bl, ml, sl = b[live], m[live], s[live]
    _, mbase, wm, _, wr, _ = _multiplier_codes(ml, ratio)
    bases = (int(bl.min()), mbase, int(sl.min()) - int(dead))
    widths = (_width(bl.max() - bl.min()), wm + wr, _width(sl.max() - bases[2]))
    return widths, bases, dead


CHANNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV")


def _op_scales(model, op):
    if op.kind not in CHANNEL_OPS:
        raise DataError(f"{op.kind} has no per-channel parameters",
                        f"one of {', '.join(CHANNEL_OPS)}")
    x_at = 2 if op.kind == "TRANSPOSE_CONV" else 0
    return (model.tensors[op.inputs[x_at]], model.tensors[op.inputs[1]],
            model.tensors[op.outputs[0]])


def op_channel_ratio(model, op) -> float:
    """Input scale / output scale of a weighted op (channel_fields' and pack_channels' ratio)."""
    x, _, y = _op_scales(model, op)
    return float(x.scale[0]) / float(y.scale[0])


def op_channel_values(model, op) -> tuple[np.ndarray | None, list[int], list[int]]:
    """(int32 biases or None, Q31 multipliers, shifts) of a weighted op of a TFLite Model, as
    TFLM's Prepare computes them (quantize_multiplier of input scale * weight scale / output
    scale in double precision), one per output channel; a per-tensor layer with a bias
    repeats its one multiplier and shift per bias (zero bits a channel when packed)."""
    x, w, y = _op_scales(model, op)
    b_at = 3 if op.kind == "TRANSPOSE_CONV" else 2
    bias = None
    if len(op.inputs) > b_at and op.inputs[b_at] >= 0:
        bias = np.asarray(model.tensors[op.inputs[b_at]].data, np.int64).reshape(-1)
    scales = np.asarray(w.scale, dtype=np.float32)
    channels = w.shape[3] if op.kind == "DEPTHWISE_CONV_2D" else w.shape[0]
    if op.kind == "FULLY_CONNECTED" and len(scales) == 1:
        channels = 1  # GetQuantizedConvolutionMultipler: one multiplier for the tensor
    pairs = [quantize_multiplier(float(x.scale[0]) * float(scales[c if len(scales) > 1 else 0])
                                 / float(y.scale[0])) for c in range(channels)]
    if bias is not None and len(pairs) == 1:
        pairs *= bias.size
    return bias, [p[0] for p in pairs], [p[1] for p in pairs]


def op_channel_fields(model, op) -> tuple[tuple[int, int, int], tuple, bool]:
    """channel_fields of a weighted op of a TFLite Model, as the engine packs it."""
    return channel_fields(*op_channel_values(model, op), ratio=op_channel_ratio(model, op))


def pack_channels(bias, multipliers, shifts, ratio: float | None = None) -> np.ndarray:
    """One layer's per-channel parameters as the engine stores them (uint8: stream + header);
    `bias` None when the layer has none; `ratio` as in channel_fields."""
    (wb, _, ws), (bb, _, bs), dead = channel_fields(bias, multipliers, shifts)
    b, m, s = _channel_arrays(bias, multipliers, shifts)  # no bias: zeros, base 0, width 0
    live = m != 0
    k, bm, wm, mcode, wr, r = 0, 0, 0, np.zeros(0, np.int64), 0, np.zeros(0, np.int64)
    if live.any():
        k, bm, wm, mcode, wr, r = _multiplier_codes(m[live], ratio)
    mcodes, rcodes = np.zeros_like(m), np.zeros_like(m)
    mcodes[live], rcodes[live] = mcode, r & ((1 << wr) - 1)
    codes = [np.where(live, b - bb, 0), np.where(live, s - bs, 0)]
    header = np.concatenate([np.array([bb & 0xFFFFFFFF, bm], "<u4").view(np.uint8),
                             np.array([k], "<u8").view(np.uint8)[:6],
                             np.array([bs & 0xFF, wb, wm, ws | wr << 3 | (0x80 if dead else 0)],
                                      np.uint8)])

    def fields(code, width):  # [channels, width] bits, least significant first
        return (code.astype(np.uint64)[:, None] >> np.arange(width, dtype=np.uint64)) & 1

    pairs = np.concatenate([fields(codes[0], wb), fields(codes[1], ws)], axis=1).reshape(-1)
    mults = np.concatenate([fields(mcodes, wm), fields(rcodes, wr)], axis=1).reshape(-1)
    stream = np.packbits(np.concatenate([pairs, mults]).astype(np.uint8), bitorder="little")
    packed = np.concatenate([stream, header]).astype(np.uint8)
    assert packed.size == channel_param_bytes(m.size, (wb, wm + wr, ws)), packed.size
    return packed


def snap_weight_scales(scales, bits: int) -> np.ndarray:
    """float32 weight scales rounded to SNAP_SCALE_BITS[bits] significant bits (relative change
    at most 2^-that): the Q31 multipliers TFLM computes from them are then a short mantissa
    code and a residual of a few bits in pack_channels. Zero and tiny scales stay."""
    s = np.asarray(scales, np.float32)
    n = SNAP_SCALE_BITS.get(int(bits))
    if n is None:
        return s.copy()
    mant, exp = np.frexp(s.astype(np.float64))
    snapped = np.ldexp(np.round(mant * (1 << n)) / (1 << n), exp).astype(np.float32)
    return np.where(np.abs(s) >= np.finfo(np.float32).tiny, snapped, s).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Fixed-point requantization: what TFLM computes at Prepare time from the float scales in the
# flatbuffer, and the double-rounding multiply its reference kernels use at Eval time.


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier, shift) with real ~= multiplier * 2^(shift - 31), multiplier a Q31 int32
    in [2^30, 2^31), exactly as TFLite's QuantizeMultiplier: frexp, round half away from zero,
    the 2^31 carry, and shifts below -31 flushed to (0, 0)."""
    real = float(real)
    if real == 0.0:
        return 0, 0
    mantissa, shift = np.frexp(real)
    q_fixed = int(round_half_away(float(mantissa) * float(1 << 31)))
    shift = int(shift)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    return q_fixed, shift


def quantize_multipliers(reals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized quantize_multiplier: (int32 multipliers, int32 shifts), same shape as reals."""
    reals = np.asarray(reals, dtype=np.float64)
    mantissa, shift = np.frexp(reals)
    q_fixed = round_half_away(mantissa * float(1 << 31)).astype(np.int64)
    shift = shift.astype(np.int64)
    carry = q_fixed == 1 << 31
    q_fixed = np.where(carry, q_fixed // 2, q_fixed)
    shift = np.where(carry, shift + 1, shift)
    flush = (reals == 0) | (shift < -31)
    return (np.where(flush, 0, q_fixed).astype(np.int32),
            np.where(flush, 0, shift).astype(np.int32))


def _wrap_int32(x: np.ndarray) -> np.ndarray:
    return ((x + (1 << 31)) & 0xFFFFFFFF) - (1 << 31)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int32 values (as int64 arrays)."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    overflow = (a == INT32_MIN) & (b == INT32_MIN)
    ab = a * b
    nudge = np.where(ab >= 0, np.int64(1 << 30), np.int64(1 - (1 << 30)))
    total = ab + nudge
    # C++ integer division truncates toward zero.
    high = np.sign(total) * (np.abs(total) >> 31)
    return np.where(overflow, np.int64(INT32_MAX), high)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """gemmlowp's RoundingDivideByPOT: x / 2^exponent rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray, shift: np.ndarray
) -> np.ndarray:
    """TFLM's MultiplyByQuantizedMultiplier (double rounding) for int32 accumulators:
    RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x << left, multiplier), right).

    x, multiplier and shift broadcast against each other (e.g. per-channel multipliers along
    the last axis); the result is an int64 array holding int32 values.
    """
    x = np.asarray(x, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    # The left shift happens in int32 in C; it wraps like the 32-bit target does.
    shifted = _wrap_int32(x << left)
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def requantize(
    acc: np.ndarray,
    multiplier: np.ndarray,
    shift: np.ndarray,
    zero_point: int,
    act_min: int = -128,
    act_max: int = 127,
) -> np.ndarray:
    """int32 accumulator -> int8 output: scale, add the output zero point, clamp."""
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + zero_point
    return np.clip(out, act_min, act_max).astype(np.int8)


# ---------------------------------------------------------------------------------------------


@dataclass
class QuantSpec:
    """Bit widths chosen for a model: weight bits per layer name (default_weight_bits for
    layers not listed) and the activation bit width. Which layers stay at 8 bits (first, last)
    is for the callers to decide."""

    default_weight_bits: int = 8
    weight_bits: dict[str, int] = field(default_factory=dict)
    activation_bits: int = 8

    def __post_init__(self) -> None:
        for name, bits in {"<default>": self.default_weight_bits, **self.weight_bits}.items():
            if bits not in WEIGHT_RANGES:
                raise DataError(
                    f"layer {name!r}: unsupported weight bit width {bits}",
                    hint=f"use one of {sorted(WEIGHT_RANGES)}",
                )
        if self.activation_bits != 8:
            raise DataError(
                f"activation bit width {self.activation_bits} is not supported",
                hint="activations are int8 in TFLite/TFLM",
            )

    def bits_for(self, layer: str) -> int:
        return self.weight_bits.get(layer, self.default_weight_bits)


# --------------------------------------------------------------------------- interpreter helpers
# int32 wrap-around, the fused-activation clamp range, padding, and gemmlowp's fixed-point exp /
# reciprocal used by TFLM's int8 SOFTMAX. They take and return int64 numpy arrays that hold
# int32 values, so every intermediate of the C code (which works in int32) is exact.

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


def nearest_indices(in_size: int, out_size: int, align_corners: bool,
                    half_pixel_centers: bool) -> np.ndarray:
    """GetNearestNeighbor of reference_ops::ResizeNearestNeighbor for every output position,
    in float32 as the kernel computes it (shared by the interpreter, the C generator
    and the Keras side's UpSampling2D)."""
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    offset = np.float32(0.5 if half_pixel_centers else 0.0)
    where = (np.arange(out_size, dtype=np.float32) + offset) * np.float32(scale)
    index = (round_half_away(where) if align_corners else np.floor(where)).astype(np.int64)
    index = np.minimum(index, in_size - 1)
    return np.maximum(index, 0) if half_pixel_centers else index


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
    if left_shift < 0:  # TFLite's CalculateInputRadius would shift by a negative count (UB)
        raise DataError(f"SOFTMAX input scale {float(input_scale):.3g} (beta {beta:g}) is too "
                        "small for TFLite's int8 softmax: its input multiplier needs a negative "
                        "left shift",
                        "calibrate the layer before the softmax on data with a wider range "
                        "(its input scale times beta must be at least 2^-27)")
    radius = math.floor(((1 << integer_bits) - 1) * (1 << (31 - integer_bits))
                        / (1 << left_shift))
    return multiplier, left_shift, -radius


# --- element-wise int8 activations, as TFLM's reference kernels compute them -----------------
#
# LEAKY_RELU, LOGISTIC, TANH and HARD_SWISH map one int8 value to one int8 value, so each is a
# 256-entry table of its input (index q + 128). The tables below are computed with the integer
# arithmetic of TFLM's reference kernels (the Prepare-time parameters from the float32 scales,
# the gemmlowp fixed point at Eval time), which the interpreter, the exact simulation and the
# C engine (a table lookup, eq_lut) all use.

INT8_VALUES = np.arange(-128, 128, dtype=np.int64)


def leaky_relu_table(in_scale, in_zp: int, out_scale, out_zp: int, alpha: float) -> np.ndarray:
    """reference_ops::QuantizeLeakyRelu with CalculateOpDataLeakyRelu's multipliers (the
    ratios in float32): x >= 0 rescaled by s_in / s_out, x < 0 by s_in * alpha / s_out."""
    s_in, s_out = np.float32(in_scale), np.float32(out_scale)
    alpha = np.float32(alpha)
    if alpha < 0:
        raise DataError(f"LEAKY_RELU alpha {float(alpha)} is negative",
                        "edgeq supports slopes alpha >= 0")
    m_alpha, s_alpha = quantize_multiplier(float(np.float32(s_in * alpha / s_out)))
    m_id, s_id = quantize_multiplier(float(np.float32(s_in / s_out)))
    x = INT8_VALUES - int(in_zp)
    y = np.where(x >= 0, multiply_by_quantized_multiplier(x, m_id, s_id),
                 multiply_by_quantized_multiplier(x, m_alpha, s_alpha)) + int(out_zp)
    return np.clip(y, -128, 127).astype(np.int8)


def _input_radius(integer_bits: int, left_shift: int, total_bits: int = 31) -> int:
    """TFLite's CalculateInputRadius (double arithmetic, floor)."""
    return int(math.floor(1.0 * ((1 << integer_bits) - 1) * (1 << (total_bits - integer_bits))
                          / (1 << left_shift) if left_shift >= 0 else
                          1.0 * ((1 << integer_bits) - 1) * (1 << (total_bits - integer_bits))
                          * (1 << -left_shift)))


def _frexp_multiplier(real: float) -> tuple[int, int]:
    """frexp(real) and round(q * 2^31) without the carry QuantizeMultiplier handles, as the
    LOGISTIC and TANH Prepare functions of TFLM compute their input multiplier."""
    mantissa, exponent = math.frexp(float(real))
    return int(round_half_away(mantissa * float(1 << 31))), int(exponent)


def logistic_table(in_scale, in_zp: int) -> np.ndarray:
    """reference_integer_ops::Logistic (int8, output scale 1/256, zero point -128): the input
    rescaled to Q4.27, gemmlowp's logistic, rounded to Q0.8."""
    multiplier, left_shift = _frexp_multiplier(float(np.float32(in_scale)) * float(1 << 27))
    radius = _input_radius(4, left_shift)
    x = INT8_VALUES - int(in_zp)
    q4 = multiply_by_quantized_multiplier(x, multiplier, left_shift)
    positive = q4 > 0
    magnitude = np.where(positive, q4, -q4)
    on_positive = one_over_one_plus_x(exp_on_negative_values(-magnitude, 4))
    value = np.where(q4 == 0, 1 << 30, np.where(positive, on_positive, INT32_MAX - on_positive))
    out = np.clip(rounding_divide_by_pot(value, 23) - 128, -128, 127)
    out = np.where(x <= -radius, -128, np.where(x >= radius, 127, out))
    return out.astype(np.int8)


def _one_minus_x_over_one_plus_x(a: np.ndarray) -> np.ndarray:
    """gemmlowp's one_minus_x_over_one_plus_x_for_x_in_0_1, Q0.31 in and out."""
    half_denominator = _rounding_half_sum(np.asarray(a, dtype=np.int64), INT32_MAX)
    x = 1515870810 + srdhm(half_denominator, -1010580540)
    one_q2 = 1 << 29
    for _ in range(3):
        half_denominator_times_x = srdhm(half_denominator, x)
        one_minus = one_q2 - half_denominator_times_x
        x = x + _saturating_shift_left(srdhm(x, one_minus), 2)
    return _saturating_shift_left(x - one_q2, 2)  # Rescale<0>(x - F2::One())


def tanh_table(in_scale, in_zp: int) -> np.ndarray:
    """reference_integer_ops::Tanh (int8, output scale 1/128, zero point 0): the input
    rescaled to Q4.27, gemmlowp's tanh, rounded to Q0.7 (no output zero point is added)."""
    multiplier, left_shift = _frexp_multiplier(float(np.float32(in_scale)) * float(1 << 27))
    radius = _input_radius(4, left_shift)
    x = INT8_VALUES - int(in_zp)
    q4 = multiply_by_quantized_multiplier(x, multiplier, left_shift)
    negative = q4 < 0
    n = np.where(negative, q4, -q4)  # <= 0
    exp2n = exp_on_negative_values(n, 5)  # ExactMulByPot<1>: the raw value in Q5.26
    t = _one_minus_x_over_one_plus_x(exp2n)  # tanh(-n) >= 0
    value = np.where(q4 == 0, 0, np.where(negative, -t, t))
    out = np.clip(rounding_divide_by_pot(value, 24), -128, 127)
    out = np.where(x <= -radius, -128, np.where(x >= radius, 127, out))
    return out.astype(np.int8)


def _int16_srdhm(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp's SaturatingRoundingDoublingHighMul on int16 values."""
    a = np.asarray(a, dtype=np.int64)
    ab = a * int(b)
    nudge = np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    total = ab + nudge
    high = np.sign(total) * (np.abs(total) // (1 << 15))  # C's truncating division
    return np.where((a == -32768) & (b == -32768), 32767, high)


def _int16_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """reference_ops::SaturatingDoublingHighMul (int16, truncating, no rounding)."""
    ab = np.asarray(a, dtype=np.int64) * np.asarray(b, dtype=np.int64)
    high = np.sign(ab) * (np.abs(ab) // (1 << 15))
    return np.where((a == -32768) & (b == -32768), 32767, high)


def _int16_saturating_left_shift(x: np.ndarray, amount: int) -> np.ndarray:
    return np.clip(np.asarray(x, dtype=np.int64) * (1 << amount), -32768, 32767)


def _downscale_to_int16(multiplier: int) -> int:
    """DownScaleInt32ToInt16Multiplier."""
    if multiplier >= INT32_MAX - (1 << 15):
        return 32767
    return (multiplier + (1 << 15)) >> 16


def hard_swish_parameters(in_scale, out_scale) -> tuple[int, int, int, int]:
    """HardSwishPrepare: (output multiplier int16, its exponent, reluish multiplier int16, its
    exponent), the ratios in float32 as TFLM computes them. The output exponent must be <= 0
    (TFLM refuses the model otherwise: the output scale must exceed s_in / 128)."""
    s_in, s_out = np.float32(in_scale), np.float32(out_scale)
    hires = np.float32(np.float32(1.0 / 128.0) * s_in)
    out_m, out_e = quantize_multiplier(float(np.float32(hires / s_out)))
    relu_m, relu_e = quantize_multiplier(float(np.float32(hires / np.float32(3.0 / 32768.0))))
    return _downscale_to_int16(out_m), out_e, _downscale_to_int16(relu_m), relu_e


def hard_swish_table(in_scale, in_zp: int, out_scale, out_zp: int) -> np.ndarray:
    """reference_ops::HardSwish (int8): x * relu6(x + 3) / 6 in int16 fixed point."""
    out_m, out_e, relu_m, relu_e = hard_swish_parameters(in_scale, out_scale)
    if out_e > 0:
        raise DataError(f"HARD_SWISH output scale {float(out_scale)} is below input scale / 128 "
                        f"({float(in_scale) / 128})", "TFLM refuses it; widen the output range")
    hires = (INT8_VALUES - int(in_zp)) * (1 << 7)
    preshift = _int16_srdhm(hires, out_m)
    reluish = hires
    if relu_e > 0:
        reluish = _int16_saturating_left_shift(reluish, relu_e - 1)
    reluish = _int16_srdhm(reluish, relu_m)
    if relu_e > 0:
        reluish = _int16_saturating_left_shift(reluish, 1)
    if relu_e < 0:
        reluish = rounding_divide_by_pot(reluish, -relu_e)
    reluish = (reluish + (1 << 15)) >> 1
    value = _int16_doubling_high_mul(reluish, preshift)
    value = rounding_divide_by_pot(value, -out_e) + int(out_zp)
    return np.clip(value, -128, 127).astype(np.int8)
