"""The generated C engine (contract 1): compiled on the host with warnings as errors and
AddressSanitizer/UBSan, it gives int8 outputs identical to TFLM's for every supported op (INT8 and
INT4 weights, seeded random shapes, scales and inputs) and for the MLPerf vww_96_int8.tflite; it
also compiles warning-free for Cortex-M7 and Cortex-M4 with arm-none-eabi-gcc."""

from __future__ import annotations

import copy
import shutil
import subprocess

import numpy as np
import opmodels
import pytest

from edgeq import intmath
from edgeq.deploy import cgen
from edgeq.errors import OutputError, UnsupportedOpError
from edgeq.tflite.model import Model, Op, Tensor
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model

SEEDS = range(10)  # as the reference interpreter's sweep (test_ops_exact)
INPUTS_PER_MODEL = 3
FLOAT_IO = ("quantize", "dequantize")  # float32 graph inputs/outputs: the engine is int8-only
ARM_TARGETS = {
    "cortex-m7": ["-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"],
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"],
    # no DSP extension (portable kernels only) and Armv8-M
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
    "cortex-m33": ["-mcpu=cortex-m33", "-mthumb", "-mfloat-abi=soft"],
}


def _depthwise3x3(rng, channels=12, stride=1, padding="SAME", activation="RELU6",
                  bits=8, h=None, w=None) -> Model:
    """A 3x3 depthwise convolution with a given channel count: the shape of the DSP fast path
    (four channels at once, the rest one by one, border pixels included); h, w random in 5..9
    unless given."""
    b = opmodels._Builder(rng)
    rh, rw = (int(v) for v in rng.integers(5, 10, size=2))
    h, w = h or rh, w or rw
    x = b.activation("input", (1, h, w, channels))
    wt = b.weights("weights", (1, 3, 3, channels), bits, 3)
    scale = b.output_scale(x, wt, 9)
    bias = b.bias("bias", x, wt, channels, magnitude=scale * 20)
    oh, ow = (opmodels._spatial(n, 3, stride, 1, padding) for n in (h, w))
    y = b.out_activation("output", (1, oh, ow, channels), scale)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bias], y, padding=padding, stride_w=stride,
         stride_h=stride, dilation_w_factor=1, dilation_h_factor=1, depth_multiplier=1,
         fused_activation_function=activation)
    return b.model([x], [y], f"depthwise3x3 int{bits} c{channels} s{stride} {padding}")


def _conv(rng, cin=16, cout=7, kernel=1, bits=4, stride=1, padding="SAME", h=5, w=7,
          activation="RELU") -> Model:
    """A convolution with chosen depth and kernel: K = kernel^2 * cin a multiple of 8 takes the
    INT4 fast path (nibbles unpacked in registers), an odd cout and pixel count the tails."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, h, w, cin))
    wt = b.weights("weights", (cout, kernel, kernel, cin), bits, 0)
    scale = b.output_scale(x, wt, kernel * kernel * cin)
    bias = b.bias("bias", x, wt, cout, magnitude=scale * 20)
    oh, ow = (opmodels._spatial(n, kernel, stride, 1, padding) for n in (h, w))
    y = b.out_activation("output", (1, oh, ow, cout), scale)
    b.op("CONV_2D", [x, wt, bias], y, padding=padding, stride_w=stride, stride_h=stride,
         dilation_w_factor=1, dilation_h_factor=1, fused_activation_function=activation)
    return b.model([x], [y], f"conv int{bits} k{kernel} cin{cin} s{stride} {padding} {h}x{w} "
                             f"{activation}")


# Output-stage regimes, as real multipliers (s_in * s_w / s_out) and bias magnitudes, that the
# fast kernels treat differently (eq_rqc_make): right shifts with the offset folded in (r <= 22)
# or added after (r up to 30, biases up to ~1.5 * 2^30), left shifts 0..4 (SMMLAR on acc << l),
# multipliers that underflow to 0 (constant output), and the general path (r = 31, a left shift
# of 6, a bias beyond 1.5 * 2^30).
STAGE_REGIMES = [
    (0.004, None),          # folded right shift, ordinary bias
    (2.0 ** -26.5, 2**30),  # r = 26: offset after the shift, bias 2^30 as in vww_96's dead channels
    (0.7, 3_000),           # shift 0
    (3.0, 300),             # left shift 2
    (2.0 ** -31.5, 2**30),  # r = 31: general path
    (1e-12, 2**30),         # underflows to multiplier 0: the output is the zero point
    (48.0, 10),             # left shift 6: general path
    (0.02, 1_700_000_000),  # bias beyond the fast bound: general path
]


def _stress_output_stage(model: Model, rng, regimes=STAGE_REGIMES) -> Model:
    """The same single-op model with per-channel weight scales and biases cycling through
    STAGE_REGIMES (channel c gets regime c mod len), the rest of the op untouched."""
    m = copy.deepcopy(model)
    op = m.ops[0]
    x, w, y = (m.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    b = m.tensors[op.inputs[2]]
    channels = len(w.scale)
    s_in, s_out = float(x.scale[0]), float(y.scale[0])
    reals = np.array([regimes[c % len(regimes)][0] for c in range(channels)])
    w.scale = (reals * s_out / s_in).astype(np.float32)
    bias = np.asarray(b.data, dtype=np.int64).copy()
    for c in range(channels):
        magnitude = regimes[c % len(regimes)][1]
        if magnitude is not None:
            bias[c] = int(rng.choice([-1, 1])) * int(rng.integers(magnitude * 15 // 16,
                                                                  magnitude + 1))
    b.data = bias.astype(np.int32)
    b.scale = (s_in * w.scale.astype(np.float64)).astype(np.float32)
    m.description = model.description + " stressed output stage"
    return m


def _conv_stress(rng, cin=12, cout=11, kernel=1, bits=8, stride=1, padding="SAME", h=5, w=7,
                 activation="NONE") -> Model:
    """A convolution whose channels cover every output-stage regime; h * w pixels that are not
    a multiple of the six-pixel blocks (and 9 pixels: one block of six, one of three)."""
    model = _conv(rng, cin, cout, kernel, bits, stride, padding, h, w, activation)
    return _stress_output_stage(model, rng)


def _depthwise_stress(rng, channels=20, stride=1, bits=8, activation="NONE", h=None,
                      w=None) -> Model:
    """A 3x3 depthwise convolution whose channel quads take each output stage of the fast path:
    folded right shifts only, right shifts with the offset after, left shifts among them, and
    channels for the general path (a quad that goes channel by channel)."""
    model = _depthwise3x3(rng, channels=channels, stride=stride, bits=bits, activation=activation,
                          h=h, w=w)
    folded, after = STAGE_REGIMES[0], STAGE_REGIMES[1]
    regimes = [folded] * 4 + [folded, after, folded, after] + STAGE_REGIMES
    return _stress_output_stage(model, rng, regimes)


def _depthwise1x3(rng, channels=12, stride=1, padding="SAME", activation="NONE", bits=8, h=1,
                  w=20, stress=False) -> Model:
    """A 1x3 depthwise convolution (a 1-D one when h = 1): the 3x3 strips with the filter as
    their middle row; stress cycles the channels through the output-stage regimes."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, h, w, channels))
    wt = b.weights("weights", (1, 1, 3, channels), bits, 3)
    scale = b.output_scale(x, wt, 3)
    bias = b.bias("bias", x, wt, channels, magnitude=scale * 20)
    ow = opmodels._spatial(w, 3, stride, 1, padding)
    y = b.out_activation("output", (1, h, ow, channels), scale)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bias], y, padding=padding, stride_w=stride, stride_h=1,
         dilation_w_factor=1, dilation_h_factor=1, depth_multiplier=1,
         fused_activation_function=activation)
    model = b.model([x], [y], f"depthwise1x3 int{bits} c{channels} s{stride} {padding} {h}x{w}")
    return _stress_output_stage(model, rng) if stress else model


def _conv_right_stages(rng, **options) -> Model:
    """A convolution whose channels all have right-shift output stages, folded and with the
    offset after (the 1x1 eight-channel records take only those)."""
    return _stress_output_stage(_conv(rng, **options), rng, STAGE_REGIMES[:2])


def _conv_folded_bias(rng, bias, **options) -> Model:
    """A convolution whose channels all fold the offset into the rounding term, channel 1 with
    `bias`: the 1x1 records double the sums (the five-instruction stage) while |bias| < 2^30 -
    2^21, and keep them as they are (the stage with the offset after) from there."""
    m = _stress_output_stage(_conv(rng, **options), rng, STAGE_REGIMES[:1])
    b = m.tensors[m.ops[0].inputs[2]]
    data = np.asarray(b.data, dtype=np.int32).copy()
    data[1] = bias
    b.data = data
    m.description += f" bias {bias}"
    return m


def _add_same_scales(rng) -> Model:
    """ADD of two inputs with the same scale: input multipliers of exactly 1/2 (shift 0)."""
    b = opmodels._Builder(rng)
    x1 = b.activation("input_a", (1, 3, 5, 7))
    x2 = b.like("input_b", (1, 3, 5, 7), x1)
    (lo, hi) = b.span(x1)
    y = b.activation("output", (1, 3, 5, 7), lo=2 * lo, hi=2 * hi)
    b.op("ADD", [x1, x2], y, fused_activation_function="RELU")
    return b.model([x1, x2], [y], "add of same-scale inputs")


def _add_constant(rng) -> Model:
    """ADD of an activation and a broadcast constant (a per-channel int8 tensor in flash)."""
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 4, 5, 6))
    c = b.activation("constant", (1, 1, 1, 6))
    b.tensors[c].data = rng.integers(-128, 128, size=(1, 1, 1, 6)).astype(np.int8)
    # The output holds the sum's range (a random one clamped most sums for some seeds).
    (xlo, xhi), (clo, chi) = b.span(x), b.span(c)
    y = b.activation("output", (1, 4, 5, 6), lo=xlo + clo, hi=xhi + chi)
    b.op("ADD", [x, c], y, fused_activation_function="NONE")
    return b.model([x], [y], "add of a constant")

# The 1x1 records with every offset folded (doubled sums, eq_pw*_row_folded: the
# five-instruction stage) over 8, 16 and 32 channels, and a folded bias at the doubling bound:
# the most negative still doubled, the first that keeps the sums as they are. Host and QEMU.
FOLDED_1X1_CASES = [
    ("conv", _conv, {"cin": 8, "cout": 6, "kernel": 1, "bits": 8, "activation": "NONE"}),
    ("conv", _conv, {"cin": 16, "cout": 12, "kernel": 1, "bits": 8, "activation": "NONE"}),
    ("conv", _conv, {"cin": 32, "cout": 9, "kernel": 1, "bits": 8, "h": 16, "w": 17,
                     "activation": "NONE"}),
    ("conv", _conv_folded_bias, {"bias": -(2**30 - 2**21) + 1, "cin": 8, "cout": 6,
                                 "kernel": 1, "bits": 8, "activation": "NONE"}),
    ("conv", _conv_folded_bias, {"bias": 2**30 - 2**21, "cin": 16, "cout": 5, "kernel": 1,
                                 "bits": 8, "activation": "NONE"}),
    ("conv", _conv_folded_bias, {"bias": -(2**30 - 2**21), "cin": 32, "cout": 6, "kernel": 1,
                                 "bits": 4, "h": 16, "w": 16, "activation": "NONE"}),
]


EXTRA_CASES = [
    ("add_constant", _add_constant, {}),
    ("conv", _conv, {"cin": 16, "kernel": 1, "bits": 4}),
    ("conv", _conv, {"cin": 8, "kernel": 3, "bits": 4, "stride": 2}),
    ("conv", _conv, {"cin": 12, "kernel": 1, "bits": 8}),
    ("depthwise3x3", _depthwise3x3, {"channels": 12, "bits": 4}),
    ("depthwise3x3", _depthwise3x3, {"channels": 6, "bits": 4, "stride": 2}),
    ("depthwise3x3", _depthwise3x3, {"channels": 12}),
    ("depthwise3x3", _depthwise3x3, {"channels": 7, "stride": 2}),
    ("depthwise3x3", _depthwise3x3, {"channels": 4, "padding": "VALID", "activation": "NONE"}),
    # every output-stage regime of the fast kernels, full and narrow clamps, block tails
    ("conv", _conv_stress, {}),
    ("conv", _conv_stress, {"activation": "RELU6"}),
    ("conv", _conv_stress, {"bits": 4, "cin": 16}),
    ("conv", _conv_stress, {"h": 3, "w": 3, "cin": 8, "cout": 9}),
    ("conv", _conv_stress, {"h": 3, "w": 3, "cin": 16, "bits": 4}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "stride": 2, "h": 11, "w": 9}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 8, "cout": 5, "bits": 4, "padding": "VALID"}),
    ("depthwise3x3", _depthwise_stress, {}),
    ("depthwise3x3", _depthwise_stress, {"stride": 2, "bits": 4}),
    ("depthwise3x3", _depthwise_stress, {"channels": 18, "activation": "RELU6"}),
    # filter lines that are not whole words (row_words): the 3x3 RGB columns, the general
    # line-word columns (leftovers of 1, 2 and 3 bytes a line, several leftover runs), borders
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 5, "h": 3, "w": 4}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 4, "padding": "VALID", "h": 5,
                            "w": 6, "activation": "RELU6"}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 5, "cout": 7, "h": 4, "w": 5}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 6, "cout": 6, "stride": 2, "h": 7, "w": 6}),
    ("conv", _conv_stress, {"kernel": 5, "cin": 1, "cout": 3, "h": 6, "w": 6}),
    # the 3x3 RGB blocks of six pixels in one output row (eq_conv2d_rgb): stride 2 with the
    # padding at the bottom and right, stride 1 with it on every side, VALID, rows of 7, 13, 14
    # output pixels (blocks that cross rows) and of 12 and 18 (runs of whole blocks), every
    # stage regime, stages all folded, and a narrow clamp
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "stride": 2, "h": 9, "w": 27}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 6, "h": 5, "w": 13,
                            "activation": "RELU6"}),
    ("conv", _conv, {"kernel": 3, "cin": 3, "cout": 8, "bits": 8, "stride": 2, "h": 10,
                     "w": 28, "padding": "VALID"}),
    ("conv", _conv, {"kernel": 3, "cin": 3, "cout": 3, "bits": 8, "h": 6, "w": 7}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "h": 4, "w": 18}),
    ("conv", _conv_right_stages, {"kernel": 3, "cin": 3, "cout": 8, "bits": 8, "h": 5,
                                  "w": 12, "activation": "NONE"}),
    ("conv", _conv, {"kernel": 3, "cin": 3, "cout": 8, "bits": 8, "stride": 2, "h": 7,
                     "w": 24, "activation": "NONE"}),
    # the row-by-row depthwise over channel quads: widths 1 to 5, odd channel counts (quads
    # plus leftovers, fewer than four channels), strides 1 and 2, INT4, narrow clamps
    ("depthwise3x3", _depthwise3x3, {"channels": 5, "h": 3, "w": 1}),
    ("depthwise3x3", _depthwise3x3, {"channels": 3, "h": 2, "w": 2, "activation": "NONE"}),
    ("depthwise3x3", _depthwise3x3, {"channels": 9, "h": 4, "w": 3, "stride": 2}),
    ("depthwise3x3", _depthwise3x3, {"channels": 13, "h": 5, "w": 4, "bits": 4}),
    ("depthwise3x3", _depthwise3x3, {"channels": 8, "h": 1, "w": 5, "stride": 2,
                                     "activation": "NONE"}),
    ("depthwise3x3", _depthwise_stress, {"h": 3, "w": 2}),
    ("depthwise3x3", _depthwise_stress, {"h": 4, "w": 5, "stride": 2, "channels": 23}),
] + [("depthwise3x3",) + case for case in (
    # the strips of wide outputs (out_w >= 12, >= 24 at stride 2: an int16 ring per channel,
    # one strip per channel and row): odd and even widths, channel counts that are not whole
    # quads, every output-stage regime, narrow clamps, INT4, stride 2 with the image starting on
    # an odd and an even ring position, VALID padding, and rows too wide for the assembly's
    # 256-byte ring rows (the C strips)
    (_depthwise_stress, {"h": 3, "w": 13}),
    (_depthwise_stress, {"h": 4, "w": 12, "channels": 23, "activation": "RELU6"}),
    (_depthwise3x3, {"channels": 13, "h": 3, "w": 16, "bits": 4}),
    (_depthwise3x3, {"channels": 8, "h": 5, "w": 49, "stride": 2, "activation": "NONE"}),
    (_depthwise_stress, {"h": 4, "w": 50, "stride": 2, "channels": 6, "bits": 4}),
    (_depthwise3x3, {"channels": 4, "h": 3, "w": 14, "padding": "VALID", "activation": "NONE"}),
    (_depthwise3x3, {"channels": 5, "h": 2, "w": 130}),
    # the 64-byte plane rows (15 to 32 values) over several bands, odd widths, strides 1 and 2
    (_depthwise3x3, {"channels": 12, "h": 26, "w": 17, "activation": "NONE"}),
    (_depthwise_stress, {"h": 30, "w": 19, "stride": 2, "channels": 8}),
    # 1x3 (1-D) depthwise through the same strips: strides 1 and 2, INT4, images taller than one
    # row, every stage regime, VALID padding
    (_depthwise1x3, {}),
    (_depthwise1x3, {"channels": 6, "stride": 2, "w": 33, "bits": 4}),
    (_depthwise1x3, {"channels": 13, "h": 3, "w": 7, "stress": True}),
    (_depthwise1x3, {"channels": 5, "w": 9, "padding": "VALID", "activation": "RELU6"}),
)] + [
    # 1x1 over eight input channels (eq_conv1x1_in8): INT8 and INT4, stride 2, all stages right
    # shifts (the records), and a mix that falls back to the general fast path
    ("conv", _conv, {"cin": 8, "cout": 6, "kernel": 1, "bits": 8, "activation": "NONE"}),
    ("conv", _conv, {"cin": 8, "cout": 4, "kernel": 1, "bits": 4, "stride": 2, "h": 7, "w": 6,
                     "activation": "NONE"}),
    ("conv", _conv_right_stages, {"cin": 8, "cout": 10, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv_stress, {"cin": 8, "cout": 10}),
    # the same over 16 input channels (twelve-word records; any output channel count)
    ("conv", _conv_right_stages, {"cin": 16, "cout": 7, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv, {"cin": 16, "cout": 5, "kernel": 1, "bits": 4, "stride": 2, "h": 7,
                     "w": 5, "activation": "NONE"}),
    ("conv", _conv_right_stages, {"cin": 16, "cout": 8, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    # and over 32 (two passes, the first pass's sums in the records)
    ("conv", _conv_right_stages, {"cin": 32, "cout": 9, "kernel": 1, "bits": 8, "h": 16,
                                  "w": 17, "activation": "NONE"}),
    ("conv", _conv, {"cin": 32, "cout": 6, "kernel": 1, "bits": 4, "stride": 2, "h": 33,
                     "w": 32, "activation": "NONE"}),
    # filter rows longer than 512 values (3x3 over 64 and 72 channels) on the fast path
    ("conv", _conv_stress, {"kernel": 3, "cin": 64, "cout": 5, "h": 4, "w": 5}),
    ("conv", _conv, {"kernel": 3, "cin": 72, "cout": 3, "bits": 4, "h": 3, "w": 4}),
    # ADD's fast path with input multipliers of exactly 1/2
    ("add", _add_same_scales, {}),
    *FOLDED_1X1_CASES,
    # AVERAGE_POOL_2D four channels a word: channel counts not a multiple of 4 (the rest one
    # by one), windows clipped by SAME padding, a narrow clamp (one by one), a window as wide
    # as the image (one run of taps), 256 taps (the most the int16 sums hold) and 289 (one by
    # one)
    ("avg_pool", opmodels.avg_pool, {"size": 3, "stride": 1, "channels": 13}),
    ("avg_pool", opmodels.avg_pool, {"padding": "SAME", "size": 3, "channels": 12,
                                     "activation": "RELU"}),
    ("avg_pool", opmodels.avg_pool, {"size": 3, "channels": 22, "hw": (3, 3)}),
    ("avg_pool", opmodels.avg_pool, {"size": 5, "stride": 3, "channels": 7, "hw": (11, 5)}),
    ("avg_pool", opmodels.avg_pool, {"size": 16, "channels": 8, "hw": (16, 16)}),
    ("avg_pool", opmodels.avg_pool, {"size": 17, "channels": 6, "hw": (17, 17)}),
    # CONV_2D with every channel's offset folded (eq_conv6_hot_folded under QEMU)
    ("conv", _conv, {"cin": 12, "cout": 9, "kernel": 3, "bits": 8, "h": 7, "w": 8,
                     "activation": "NONE"}),
    ("conv", _conv, {"cin": 20, "cout": 7, "kernel": 1, "bits": 8, "activation": "NONE"}),
    # FULLY_CONNECTED four int8 values a step: 256 (vww's classifier), a tail of 3, only a tail
    ("fully_connected", opmodels.fully_connected, {"depth": 256}),
    ("fully_connected", opmodels.fully_connected, {"depth": 39, "per_channel": False,
                                                   "activation": "RELU"}),
    ("fully_connected", opmodels.fully_connected, {"depth": 3}),
]


def int4_variant(model: Model) -> Model:
    """The same network with every convolution but the first requantized to INT4 weights (per
    channel; biases to the new scales): a whole INT4 model to check exactness, flash and speed
    on. Its accuracy is beside the point here."""
    m = copy.deepcopy(model)
    convs = [op for op in m.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    for op in convs[1:]:
        x, w, b = (m.tensors[i] for i in op.inputs[:3])
        axis = 0 if op.kind == "CONV_2D" else 3
        shape = [1] * w.data.ndim
        shape[axis] = -1
        real = w.data.astype(np.float32) * w.scale.reshape(shape)
        scales = intmath.weight_scales(real, 4, axis)
        w.data = intmath.quantize_weights(real, scales, 4, axis)
        b.data = intmath.quantize_bias(b.data.astype(np.float64) * b.scale.astype(np.float64),
                                    float(x.scale[0]), scales)
        b.scale = intmath.bias_scales(float(x.scale[0]), scales)
        w.scale, w.dtype = scales, "int4"
    m.description = "vww_96 with INT4 weights"
    return m


def _tflm_outputs(model_bytes: bytes, inputs: list[list[np.ndarray]]) -> list[np.ndarray]:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=512 * 1024)
    outputs = []
    for xs in inputs:
        for i, x in enumerate(xs):
            interpreter.set_input(x, i)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).copy())
    return outputs


def _dispatcher(names: list[str]) -> str:
    """One host program for many engines: `runner K in.bin out.bin` runs engine K."""
    includes = "\n".join(f'#include "{n}_model.h"' for n in names)
    table = ",\n".join(f"    {{{n}_invoke, {n.upper()}_INPUT_SIZE, {n.upper()}_OUTPUT_SIZE}}"
                       for n in names)
    return f"""#include <stdio.h>
#include <stdlib.h>
{includes}
typedef int (*invoke_fn)(const int8_t *, int8_t *);
static const struct {{ invoke_fn invoke; size_t in_size, out_size; }} engines[] = {{
{table}
}};
int main(int argc, char **argv)
{{
    FILE *fin, *fout;
    int8_t *in, *out;
    int k;
    if (argc != 4) return 2;
    k = atoi(argv[1]);
    fin = fopen(argv[2], "rb");
    fout = fopen(argv[3], "wb");
    if (fin == NULL || fout == NULL) return 2;
    in = (int8_t *)malloc(engines[k].in_size);
    out = (int8_t *)malloc(engines[k].out_size);
    if (in == NULL || out == NULL) return 2;
    while (fread(in, 1, engines[k].in_size, fin) == engines[k].in_size) {{
        if (engines[k].invoke(in, out) != 0) return 1;
        fwrite(out, 1, engines[k].out_size, fout);
    }}
    free(in);
    free(out);
    fclose(fin);
    fclose(fout);
    return 0;
}}
"""


COMPILE_CHUNK = 256  # engines a gcc call


@pytest.fixture(scope="module")
def op_engines(tmp_path_factory):
    """Every op case x seed as an engine named caseK, all linked into one sanitized runner."""
    work = tmp_path_factory.mktemp("op_engines")
    cases = []
    for case in opmodels.CASES + EXTRA_CASES:
        name, build, options = case
        if name in FLOAT_IO:
            continue
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            model = build(rng, **options)
            inputs = [[opmodels.random_input(model, rng, i) for i in range(len(model.inputs))]
                      for _ in range(INPUTS_PER_MODEL)]
            engine_name = f"case{len(cases)}"
            files = cgen.generate_engine(model, work, name=engine_name)
            cases.append((f"{model.description} seed {seed}", model, inputs, engine_name, files))
    (work / "dispatch.c").write_text(_dispatcher([c[3] for c in cases]))
    sources = [work / "dispatch.c"] + [c[4].source for c in cases]
    objects = work / "engines.a"
    # Compiled a chunk at a time so that the timeout (against a hung compiler) does not grow
    # with the number of cases: ~1,700 engines take about 3 minutes on a loaded core.
    for at in range(0, len(sources), COMPILE_CHUNK):
        subprocess.run(["gcc", *cgen.HOST_CFLAGS, "-I", str(work), "-c",
                        *map(str, sources[at:at + COMPILE_CHUNK])],
                       check=True, timeout=240, cwd=work)
    subprocess.run(["ar", "rcs", str(objects), *[str(p.with_suffix(".o").name)
                                                 for p in sources]], check=True, cwd=work)
    runners = {}
    # The same engines with the portable kernels, and with the DSP fast paths (their
    # instructions emulated in C), so that both paths are checked against TFLM here.
    for variant, flags in (("portable", ["-DEDGEQ_PORTABLE"]), ("fast", ["-DEDGEQ_FAST_EMULATED"])):
        runners[variant] = work / f"runner_{variant}"
        subprocess.run(["gcc", *cgen.HOST_CFLAGS, *flags, "-I", str(work),
                        str(work / "edgeq_kernels.c"), str(objects), "-o", str(runners[variant])],
                       check=True, timeout=240)
    return work, runners, cases


@pytest.mark.parametrize("variant", ["portable", "fast"])
def test_every_op_matches_tflm_exactly(op_engines, variant):
    work, runners, cases = op_engines
    for k, (where, model, inputs, _, _) in enumerate(cases):
        assert_case_matches_tflm(runners[variant], k, where, model, inputs, work)


def assert_case_matches_tflm(exe, k, where, model, inputs, work):
    """Case `k` of a multi-case host runner on `inputs` gives TFLM's outputs, and they vary."""
    expected = _tflm_outputs(write_model(model), inputs)
    flat = b"".join(b"".join(x.astype(np.int8).tobytes() for x in xs) for xs in inputs)
    (work / "in.bin").write_bytes(flat)
    subprocess.run([str(exe), str(k), str(work / "in.bin"), str(work / "out.bin")],
                   check=True, timeout=60)
    got = np.frombuffer((work / "out.bin").read_bytes(), dtype=np.int8)
    got = got.reshape(len(inputs), -1)
    for trial, want in enumerate(expected):
        mismatch = np.flatnonzero(got[trial] != want.reshape(-1))
        assert mismatch.size == 0, (
            f"{where}, input {trial}: C engine differs from TFLM at {mismatch.size} of "
            f"{want.size} values, first at {mismatch[0]}: {got[trial][mismatch[0]]} vs "
            f"{want.reshape(-1)[mismatch[0]]}")
    _assert_varied(where, np.stack([w.reshape(-1) for w in expected]))


def _assert_varied(where: str, outputs: np.ndarray) -> None:
    """A case must exercise its op, not compare constants: per case (not pooled per op kind),
    the outputs take several values and most are not stuck at a clamp. Saturating cases are
    built to hit the clamps, and must hit both; a softmax of a high beta is nearly one-hot,
    which is right (its -128 is probability 0, a value and not a clamp)."""
    values = set(np.unique(outputs).tolist())
    if opmodels.SATURATING in where:
        assert {-128, 127} <= values, f"{where}: never saturates both ways"
        return
    softmax = where.startswith("softmax")
    wanted = 2 if softmax else min(4, outputs.size // 4)
    assert len(values) >= wanted, f"{where}: outputs take only {values}"
    clamped = np.mean(np.isin(outputs, (127,) if softmax else (-128, 127)))
    assert clamped < 0.7, f"{where}: {clamped:.0%} of the outputs sit at a clamp"


def test_softmax_cases_reach_the_cut_off(op_engines):
    """TFLM's int8 SOFTMAX gives exp 0 to inputs below max + diff_min; the sweep's high-beta,
    wide-range cases must have such inputs, so the C branch for them is compared with TFLM."""
    _, _, cases = op_engines
    reached = 0
    for _where, model, inputs, _, _ in cases:
        op = model.ops[0]
        if op.kind != "SOFTMAX":
            continue
        scale = model.tensors[op.inputs[0]].scale[0]
        _, _, diff_min = intmath.softmax_scaling(op.options["beta"], np.float32(scale))
        for (x,) in inputs:
            rows = x.reshape(-1, x.shape[-1]).astype(np.int32)
            below = rows - rows.max(axis=1, keepdims=True) < diff_min
            reached += int(below.any())
    assert reached >= 10, reached


@pytest.fixture(scope="module")
def vww_engine(vww_int8_path, tmp_path_factory):
    model = read_model(vww_int8_path)
    files = cgen.generate_engine(model, tmp_path_factory.mktemp("vww"),
                                 source=vww_int8_path.name)
    return model, files


def test_vww_plan_reaches_the_layer_by_layer_bound(vww_engine):
    model, files = vww_engine
    # 55,296 bytes of tensors (see test_plan) + the first pointwise convolution's scratch (its
    # 16 output channels' 32-byte records of the eight-channel 1x1 path, more than six int16
    # columns of 8 values and 16 output stages of 16 bytes) and its 16 channels' unpacked
    # parameters (9 bytes each): still the layer-by-layer bound, and well under TFLM's 103,680
    assert cgen.scratch_bytes(model)[2] == max(12 * 8 + 16 * 16, 32 * 16)
    assert files.arena_size == 55_296 + 512 + 9 * 16 == files.plan.lower_bound
    assert files.plan.scratch[2] >= 0
    assert files.macs == 7_489_664


def test_vww_host_engine_matches_tflm(vww_engine, vww_int8_path, coco_vww_dir):
    from PIL import Image

    model, files = vww_engine
    exe = cgen.build_host_runner(files)
    rng = np.random.default_rng(7)
    images = sorted(coco_vww_dir.rglob("*.jpg"))[:3]
    real = [np.asarray(Image.open(p).convert("RGB").resize((96, 96)), dtype=np.int16) - 128
            for p in images]
    noise = [rng.integers(-128, 128, size=(96, 96, 3)) for _ in range(2)]
    inputs = np.stack([x.astype(np.int8).reshape(1, 96, 96, 3) for x in real + noise])
    expected = _tflm_outputs(vww_int8_path.read_bytes(), [[x] for x in inputs])
    assert len(images) == 3 and len(np.unique([e[0, 0] for e in expected])) > 1
    got = cgen.run_host(exe, inputs, output_size=2)
    np.testing.assert_array_equal(got, np.stack([e.reshape(-1) for e in expected]))
    fast = cgen.build_host_runner(files, files.out_dir / "host_fast",
                                  cflags=(*cgen.HOST_CFLAGS, "-DEDGEQ_FAST_EMULATED"))
    got = cgen.run_host(fast, inputs, output_size=2)
    np.testing.assert_array_equal(got, np.stack([e.reshape(-1) for e in expected]))


def test_int4_vww_host_engine_matches_tflm(vww_int8_path, tmp_path):
    """A whole INT4 model: portable kernels and the (emulated) DSP paths, both exact."""
    model = int4_variant(read_model(vww_int8_path))
    files = cgen.generate_engine(model, tmp_path)
    assert files.weight_bytes < 140_000  # INT4 weights stay packed in flash
    inputs = np.random.default_rng(3).integers(-128, 128, size=(2, 1, 96, 96, 3), dtype=np.int8)
    expected = np.stack([e.reshape(-1) for e in _tflm_outputs(write_model(model),
                                                               [[x] for x in inputs])])
    for name, flags in (("portable", ()), ("fast", ("-DEDGEQ_FAST_EMULATED",))):
        exe = cgen.build_host_runner(files, tmp_path / name, cflags=(*cgen.HOST_CFLAGS, *flags))
        np.testing.assert_array_equal(cgen.run_host(exe, inputs, output_size=2), expected)


WIDE_CASES = [  # 1x1 and 3x3 RGB line words, tails of 3 and 5 pixels, every stage regime
    (_conv_stress, {}),
    (_conv_stress, {"activation": "RELU6", "h": 3, "w": 3, "cin": 8, "cout": 9}),
    (_conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "stride": 2, "h": 11, "w": 9}),
    (_conv_stress, {"kernel": 5, "cin": 1, "cout": 3, "h": 6, "w": 6}),
    (_conv, {"cin": 12, "kernel": 1, "bits": 8}),
]


def test_wide_int8_weights_are_exact_on_both_paths(tmp_path):
    """engine_options(wide_int8_weights=True): INT8 CONV_2D weights as int16 pairs
    (eq_conv2d_wide), twice their flash, outputs identical to TFLM (portable and DSP paths)."""
    for k, (build, options) in enumerate(WIDE_CASES):
        rng = np.random.default_rng(40 + k)
        model = build(rng, **options)
        inputs = np.stack([opmodels.random_input(model, rng) for _ in range(3)])
        expected = np.stack([e.reshape(-1) for e in _tflm_outputs(write_model(model),
                                                                   [[x] for x in inputs])])
        narrow = cgen.generate_engine(model, tmp_path / f"narrow{k}")
        with cgen.engine_options(wide_int8_weights=True):
            files = cgen.generate_engine(model, tmp_path / f"wide{k}")
        # a 3x3 filter over three channels is widened by default (cgen: rgb)
        rgb = options.get("kernel") == 3 and options.get("cin") == 3
        assert "eq_conv2d_wide(" in files.source.read_text()
        assert ("eq_conv2d_wide(" in narrow.source.read_text()) == rgb
        assert (files.weight_bytes > narrow.weight_bytes) != rgb
        for name, flags in (("portable", ("-DEDGEQ_PORTABLE",)),
                            ("fast", ("-DEDGEQ_FAST_EMULATED",))):
            exe = cgen.build_host_runner(files, tmp_path / f"{name}{k}",
                                         cflags=(*cgen.HOST_CFLAGS, *flags))
            got = cgen.run_host(exe, inputs, output_size=expected.shape[1])
            np.testing.assert_array_equal(got, expected, err_msg=f"{model.description} {name}")
    assert not cgen._OPTIONS["wide_int8_weights"]  # the option ends with its block


def test_wide_weights_leave_int4_weights_packed(vww_int8_path, tmp_path):
    model = int4_variant(read_model(vww_int8_path))
    packed = cgen.lower_model(model).weight_bytes
    with cgen.engine_options(wide_int8_weights=True):
        engine = cgen.lower_model(model)
    # the INT8 first convolution (3x3 over RGB) is widened by default and the option widens no
    # INT4 layer
    assert engine.weight_bytes == packed
    wide = [s.function for s in engine.steps if s.function == "eq_conv2d_wide"]
    assert len(wide) == 1 and engine.steps[0].function == "eq_conv2d_wide"


@pytest.mark.parametrize("target", sorted(ARM_TARGETS))
def test_engine_cross_compiles_without_warnings(vww_engine, target):
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc is required (apt-get install gcc-arm-none-eabi)")
    _, files = vww_engine
    for source in files.sources:
        subprocess.run(["arm-none-eabi-gcc", *ARM_TARGETS[target], "-std=c99", "-O2", "-Wall",
                        "-Wextra", "-Werror", "-c", str(source), "-o",
                        str(source.with_suffix(f".{target}.o"))],
                       check=True, timeout=120, capture_output=True)


def test_sanitize_identifier_and_comment():
    assert cgen.sanitize_identifier("model/conv 1;Relu") == "model_conv_1_Relu"
    assert cgen.sanitize_identifier("3x3") == "x_3x3"
    assert cgen.sanitize_identifier("int") == "x_int"
    assert cgen.sanitize_identifier("__secret") == "secret"
    assert cgen.sanitize_identifier("while", "t") == "t_while"
    assert cgen.sanitize_identifier("_Bool") == "Bool"
    assert cgen.sanitize_identifier("") == "x"
    assert cgen.c_comment("a */ b\nc") == "a * / b?c"
    with pytest.raises(OutputError, match="not a C identifier"):
        cgen.render_engine(opmodels.reshape(np.random.default_rng(0)), name="my model")


def test_hostile_names_compile(tmp_path):
    """Tensor names and a description with C syntax in them end up as safe identifiers and
    comments."""
    model = opmodels.conv2d(np.random.default_rng(3), weight_bits=8)
    for i, t in enumerate(model.tensors):
        t.name = f"*/ int main(void) {{ return {i}; }} /* ;\n#define"
    model.description = "evil */ #include <stdio.h> /*"
    files = cgen.generate_engine(model, tmp_path, source=model.description)
    exe = cgen.build_host_runner(files)
    x = opmodels.random_input(model, np.random.default_rng(0))[None]
    got = cgen.run_host(exe, x, output_size=model.output_tensors[0].nbytes)
    expected = _tflm_outputs(write_model(model), [[x[0]]])[0]
    np.testing.assert_array_equal(got[0], expected.reshape(-1))


def test_unsupported_op_and_float_io_are_named():
    rng = np.random.default_rng(0)
    with pytest.raises(UnsupportedOpError, match=r"op 0 \(QUANTIZE\).*float32"):
        cgen.lower_model(opmodels.quantize(rng))
    t = [Tensor("x", (1, 4), "int8", np.array([0.1], np.float32), np.array([0])),
         Tensor("y", (1, 4), "int8", np.array([0.1], np.float32), np.array([0]))]
    model = Model(t, [Op("SQUARED_DIFFERENCE", [0, 0], [1])], [0], [1])
    with pytest.raises(UnsupportedOpError, match="op 0: SQUARED_DIFFERENCE is not supported"):
        cgen.lower_model(model)


def test_reshaped_constant_operand_stays_in_flash(tmp_path):
    """ADD(x, RESHAPE(constant)): the reshaped constant is read from flash, not planned."""
    rng = np.random.default_rng(8)
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 3, 4, 5))
    c = b.activation("constant", (60,))
    b.tensors[c].data = rng.integers(-128, 128, size=(60,)).astype(np.int8)
    shape = b.const_int32("shape", [1, 3, 4, 5])
    r = b.like("reshaped", (1, 3, 4, 5), c)
    b.op("RESHAPE", [c, shape], r, new_shape=[1, 3, 4, 5])
    y = b.activation("output", (1, 3, 4, 5))
    b.op("ADD", [x, r], y, fused_activation_function="RELU")
    model = b.model([x], [y], "add of a reshaped constant")
    files = cgen.generate_engine(model, tmp_path)
    # the arena holds the input only (60 bytes, aligned to 64): the ADD writes its output over
    # the input, which dies with it, and the reshaped constant is read in flash
    assert files.arena_size == 64 and files.plan.location[r] == ("constant", c)
    inputs = np.stack([opmodels.random_input(model, rng) for _ in range(2)])
    expected = np.stack([e.reshape(-1) for e in _tflm_outputs(write_model(model),
                                                               [[v] for v in inputs])])
    got = cgen.run_host(cgen.build_host_runner(files), inputs, output_size=60)
    np.testing.assert_array_equal(got, expected)


def test_two_outputs_are_packed_back_to_back(tmp_path):
    """A model with two outputs (a max pool and an average pool of the same input): `out`
    holds the first output's bytes, then the second's, each identical to TFLM's."""
    from tflite_micro.python.tflite_micro import runtime

    rng = np.random.default_rng(9)
    b = opmodels._Builder(rng)
    x = b.activation("input", (1, 6, 6, 3))
    y1 = b.like("max", (1, 3, 3, 3), x)
    y2 = b.like("avg", (1, 3, 3, 3), x)
    pool = dict(padding="VALID", stride_w=2, stride_h=2, filter_width=2, filter_height=2,
                fused_activation_function="NONE")
    b.op("MAX_POOL_2D", [x], y1, **pool)
    b.op("AVERAGE_POOL_2D", [x], y2, **pool)
    model = b.model([x], [y1, y2], "two outputs")
    files = cgen.generate_engine(model, tmp_path)
    header = files.header.read_text()
    assert "#define EDGEQ_OUTPUT_SIZE 54" in header and "#define EDGEQ_OUTPUT1_SIZE 27" in header
    inputs = np.stack([opmodels.random_input(model, rng) for _ in range(2)])
    got = cgen.run_host(cgen.build_host_runner(files), inputs, output_size=54)
    interpreter = runtime.Interpreter.from_bytes(write_model(model), arena_size=64 * 1024)
    for k, xk in enumerate(inputs):
        interpreter.set_input(xk, 0)
        interpreter.invoke()
        want = np.concatenate([interpreter.get_output(0).reshape(-1),
                               interpreter.get_output(1).reshape(-1)])
        np.testing.assert_array_equal(got[k], want)


def test_kernel_files_are_short_documented_and_listed():
    """Each file of edgeq/kernels opens with a comment on its algorithm, stays under 600 lines
    and is in cgen.KERNEL_FILES (else no engine would ever copy it)."""
    files = sorted(p for p in cgen.kernel_dir().iterdir() if p.suffix in (".c", ".h"))
    assert {p.name for p in files} == {n for names in cgen.KERNEL_FILES.values() for n in names}
    for path in files:
        text = path.read_text()
        assert text.count("\n") <= 600, f"{path.name}: {text.count(chr(10))} lines"
        assert text.startswith("/* ") and text[:text.index("*/")].count("\n") >= 1, path.name


def _defined_kernels(unit, flags) -> set[str]:
    obj = unit.with_suffix(".o")
    subprocess.run(["gcc", *cgen.HOST_CFLAGS, *flags, "-c", str(unit), "-o", str(obj)],
                   check=True, timeout=120)
    nm = subprocess.run(["nm", "--defined-only", "-g", str(obj)], capture_output=True,
                        text=True, check=True).stdout
    return {line.split()[-1] for line in nm.splitlines() if line.split()[-1].startswith("eq_")}


ALWAYS = {"eq_multiply_by_quantized_multiplier", "eq_requantize", "eq_copy"}


@pytest.mark.parametrize("build, kernels", [
    (lambda rng: opmodels.conv2d(rng, weight_bits=4), {"eq_conv2d", "eq_conv2d_wide",
                                                       "eq_channels"}),
    (lambda rng: opmodels.depthwise(rng), {"eq_depthwise_conv2d", "eq_depthwise_conv2d_1x3",
                                           "eq_channels"}),
    (lambda rng: opmodels.softmax(rng), {"eq_softmax"}),
])
def test_engine_compiles_only_the_kernels_its_ops_use(tmp_path, build, kernels):
    """A model without DEPTHWISE_CONV_2D or SOFTMAX gets neither file, and its kernel unit
    defines only its own kernels; it still builds without warnings and matches TFLM on both
    paths."""
    rng = np.random.default_rng(2)
    model = build(rng)
    files = cgen.generate_engine(model, tmp_path)
    copied = {p.name for p in tmp_path.iterdir() if p.name.startswith(("eq_", "edgeq_kernels"))}
    assert copied == set(cgen.kernel_files({op.kind for op in model.ops})) | {cgen.KERNEL_UNIT}
    unit = tmp_path / cgen.KERNEL_UNIT
    x = opmodels.random_input(model, rng)[None]
    expected = _tflm_outputs(write_model(model), [[x[0]]])[0].reshape(-1)
    for flags in (["-DEDGEQ_PORTABLE"], ["-DEDGEQ_FAST_EMULATED"]):
        assert _defined_kernels(unit, flags) == ALWAYS | kernels
        exe = cgen.build_host_runner(files, tmp_path / f"host{flags[0]}",
                                     cflags=(*cgen.HOST_CFLAGS, *flags))
        np.testing.assert_array_equal(cgen.run_host(exe, x, output_size=expected.size)[0],
                                      expected)


def test_engines_sharing_a_folder_share_one_kernel_unit(tmp_path):
    rng = np.random.default_rng(0)
    cgen.generate_engine(opmodels.depthwise(rng), tmp_path, name="first")
    cgen.generate_engine(opmodels.softmax(rng), tmp_path, name="second")
    unit = (tmp_path / cgen.KERNEL_UNIT).read_text()
    assert '#include "eq_depthwise.c"' in unit and '#include "eq_softmax.c"' in unit
    assert "eq_conv.c" not in unit and (tmp_path / "eq_depthwise.c").is_file()
