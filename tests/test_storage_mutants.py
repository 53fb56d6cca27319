"""What the engine stores, value by value: the functions of edgeq.intmath that size and pack
2/3-bit weights and per-channel parameters, the resize index rule, and op_channel_values, held
to exact results (written for the mutants of their 2026-12-02 run that the earlier tests let
live; TESTING.md lists the ones that are equivalent). Numpy only: part of `make mutation`."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.tflite.model import Model, Op, Tensor


def test_channel_fields_of_a_layer_with_only_dead_channels():
    """No live channel: nothing to store but the dead marks (one shift bit each)."""
    assert intmath.channel_fields([5, 6], [0, 0], [3, 4]) == ((0, 0, 1), (0, 0, 0), True)


def test_channel_fields_of_an_int32_bias_of_the_full_span():
    """An int32 array (as a .tflite holds biases) spanning the whole range needs 32 bits:
    the difference is taken in int64, not wrapped in int32."""
    bias = np.array([-(1 << 31), (1 << 31) - 1], np.int32)
    fields, bases, dead = intmath.channel_fields(bias, [1 << 30, 1 << 30], [1, 1])
    assert (fields, bases, dead) == ((32, 0, 0), (-(1 << 31), 1 << 30, 1), False)


def test_channel_param_bytes_without_a_bias():
    assert intmath.channel_param_bytes(8, (5, 3, 2), bias=False) == 18 + 8 * 5 // 8
    assert intmath.channel_param_bytes(8, (5, 3, 2)) == 18 + 8 * 10 // 8


def test_pack_channels_writes_code_zero_for_a_dead_channel():
    """bias 10, 13, (dead); multiplier 2^30, 2^30 + 5, 0; shift -2, 1, (dead): widths (2, 3, 3),
    bases (10, 2^30, -3). Stream, least significant bit first: per channel bias then shift
    code (0|1, 3|4, 0|0), then the multiplier codes (0, 5, 0): bytes 100, 2, 20; then the
    header."""
    packed = intmath.pack_channels([10, 13, 99], [1 << 30, (1 << 30) + 5, 0], [-2, 1, 7])
    assert packed.dtype == np.uint8
    assert packed.tolist() == [100, 2, 20, 10, 0, 0, 0, 0, 0, 0, 64, 0, 0, 0, 0, 0, 0, 253, 2,
                               3, 3 | 0x80]


def test_pack_channels_header_of_mantissa_codes():
    """Scales 0.75 and 0.625 (3 significant bits) at ratio 0.5: TFLM's multipliers 3 * 2^29
    and 5 * 2^28 (shift -1) are mantissa codes 6 and 5 with residual 0 (fewer bits would need
    a residual of 2^28): codes 1 and 0 above base 5 in one bit. Header: bias base 0,
    multiplier base 5, K = 0.5 * 2^(31 + 16) (16 more bits: 6 * K < 2^62), shift base -1,
    widths 0 and 1, then shift width 0 and residual width 0."""
    mult, shift = zip(*(intmath.quantize_multiplier(0.5 * s) for s in (0.75, 0.625)),
                      strict=True)
    assert mult == (3 << 29, 5 << 28) and shift == (-1, -1)
    packed = intmath.pack_channels(None, mult, shift, 0.5)
    assert packed.tolist() == [1, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 64, 255, 0, 1, 0]


def test_conv_row_values_pads_to_the_run_of_the_width():
    assert intmath.conv_row_values(27, 8) == 28
    assert [intmath.conv_row_values(27, bits) for bits in (4, 3, 2)] == [32, 32, 32]
    assert intmath.conv_row_values(27, 8, grouped=True) == 27
    assert intmath.conv_row_values(1150, 8) == 1152  # padded to exactly FAST_MAX_FILTER
    assert intmath.conv_row_values(1153, 8) == 1153  # longer: the portable path, unpadded


def test_engine_layer_bytes_of_each_option():
    # grouped convolutions keep their rows unpadded; the width picks the run
    assert intmath.engine_layer_bytes("conv", 4, 27, 8, grouped=True)[0] == 4 * 27
    assert intmath.engine_layer_bytes("conv", 4, 27, 8)[0] == 4 * 28
    assert intmath.engine_layer_bytes("conv", 4, 27, 4)[0] == 4 * 32 // 2
    # an RGB 3x3 first layer's INT8 weights are int16 on the board (INT4 ones are not widened)
    assert intmath.engine_layer_bytes("conv", 4, 27, 8, widened=True)[0] == 4 * 28 * 2
    assert intmath.engine_layer_bytes("conv", 4, 27, 4, widened=True)[0] == 4 * 32 // 2
    assert intmath.widened_rgb_filter(3, 3, 3, 3)
    assert not any(intmath.widened_rgb_filter(*s) for s in
                   [(1, 3, 3, 3), (3, 1, 3, 3), (3, 3, 4, 4), (3, 3, 1, 3), (3, 3, 3, 6)])
    # per channel by default: the widest fields (32 + 30 + 6 bits a channel)
    assert intmath.engine_layer_bytes("dense", 10, 5, 8) == (50, 18 + 85)
    # one multiplier and shift: 32 bias bits a channel
    assert intmath.engine_layer_bytes("dense", 10, 5, 8, per_channel=False) == (50, 18 + 40)
    # no bias: multiplier and shift bits only
    assert intmath.engine_layer_bytes("dense", 10, 5, 8, bias=False) == (50, 18 + 45)


def test_unpack_bits_refuses_a_short_buffer_and_returns_int8():
    with pytest.raises(DataError, match="2-bit buffer of 1 bytes is too short for 5 values"):
        intmath.unpack_bits(np.zeros(1, np.uint8), 5, 2)
    got = intmath.unpack_bits([0b00111001, 0b01], 5, 2)  # a list of bytes is read as uint8
    assert got.dtype == np.int8 and got.tolist() == [1, -2, -1, 0, 1]


def test_pack_bits_error_says_what_to_do():
    with pytest.raises(DataError) as e:
        intmath.pack_bits([2], 2)
    assert e.value.hint == "quantize with bits=2 first"


def test_softmax_scaling_error_says_what_to_do():
    with pytest.raises(DataError) as e:
        intmath.softmax_scaling(1.0, np.float32(2.0 ** -28))
    assert e.value.hint == ("calibrate the layer before the softmax on data with a wider range "
                            "(its input scale times beta must be at least 2^-27)")


@pytest.mark.parametrize("case, expected", [
    ((10, 6, False, False), [0, 1, 3, 5, 6, 8]),  # float32: 3 * (10 / 6) is 5.0, not 4.99..
    ((5, 2, True, False), [0, 4]),                # align corners: scale (5 - 1) / (2 - 1)
    ((3, 5, True, False), [0, 1, 1, 2, 2]),       # align corners: rounded half away from 0
    ((3, 2, False, True), [0, 2]),                # half-pixel centres: (x + 0.5) * scale
    ((2, 2, True, True), [1, 1]),                 # both: rounded up to 2, clamped to 1
    ((7, 1, True, False), [0]),                   # one output: no align-corners division
])
def test_nearest_indices_as_tflite_computes_them(case, expected):
    assert intmath.nearest_indices(*case).tolist() == expected


def _model(kind, weight_shape, weight_scales, bias=True, bias_index=None):
    """A one-op model: input scale 0.5, output scale 0.25, the given weight scales; the bias
    at index 3 (absent, or -1 with bias_index=-1)."""
    tensors = [Tensor("x", (1, 4, 4, 3), "int8", np.array([0.5], np.float32), np.zeros(1)),
               Tensor("w", weight_shape, "int8", np.asarray(weight_scales, np.float32),
                      np.zeros(len(weight_scales)), data=np.zeros(weight_shape, np.int8)),
               Tensor("y", (1, 4, 4, 3), "int8", np.array([0.25], np.float32), np.zeros(1))]
    inputs = [0, 1]
    if kind == "TRANSPOSE_CONV":
        tensors.append(Tensor("shape", (4,), "int32", data=np.array([1, 4, 4, 3], np.int32)))
        inputs = [3, 1, 0]
    if bias:
        channels = 3 if kind != "FULLY_CONNECTED" else weight_shape[0]
        tensors.append(Tensor("b", (channels,), "int32",
                              data=(np.arange(channels) * 7 - 5).astype(np.int32)))
        inputs.append(len(tensors) - 1)
    elif bias_index is not None:
        inputs.append(bias_index)
    return Model(tensors, [Op(kind, inputs, [2])], [0], [2])


def _expected(scales):
    pairs = [intmath.quantize_multiplier(0.5 * float(np.float32(s)) / 0.25) for s in scales]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.mark.parametrize("kind, shape, scales", [
    ("CONV_2D", (3, 3, 3, 3), [0.1, 0.3, 0.02]),
    ("DEPTHWISE_CONV_2D", (1, 3, 3, 3), [0.1, 0.3, 0.02]),  # channels last, shape[0] is 1
    ("TRANSPOSE_CONV", (3, 3, 3, 3), [0.1, 0.3, 0.02]),     # input 2, bias 3
    ("FULLY_CONNECTED", (2, 48), [0.1, 0.3]),               # per channel, two scales
])
def test_op_channel_values_per_channel(kind, shape, scales):
    model = _model(kind, shape, scales)
    bias, mult, shift = intmath.op_channel_values(model, model.ops[0])
    assert bias.dtype == np.int64 and bias.tolist() == (np.arange(len(scales)) * 7 - 5).tolist()
    assert (mult, shift) == _expected(scales)


def test_op_channel_values_of_a_per_tensor_fully_connected_repeats_its_one_pair():
    model = _model("FULLY_CONNECTED", (4, 48), [0.3])
    bias, mult, shift = intmath.op_channel_values(model, model.ops[0])
    m, s = _expected([0.3])
    assert bias.tolist() == [-5, 2, 9, 16] and mult == m * 4 and shift == s * 4


@pytest.mark.parametrize("bias_index", [None, -1])
def test_op_channel_values_without_a_bias(bias_index):
    model = _model("CONV_2D", (3, 3, 3, 3), [0.1, 0.3, 0.02], bias=False, bias_index=bias_index)
    bias, mult, shift = intmath.op_channel_values(model, model.ops[0])
    assert bias is None and (mult, shift) == _expected([0.1, 0.3, 0.02])


@pytest.mark.parametrize("kind, shape, channels", [("FULLY_CONNECTED", (4, 48), 1),
                                                    ("CONV_2D", (3, 3, 3, 3), 3)])
def test_op_channel_values_of_per_tensor_weights_without_a_bias(kind, shape, channels):
    """FULLY_CONNECTED: TFLM's one multiplier for the tensor; a convolution: one per output
    channel, all the same."""
    model = _model(kind, shape, [0.3], bias=False)
    bias, mult, shift = intmath.op_channel_values(model, model.ops[0])
    m, s = _expected([0.3])
    assert bias is None and mult == m * channels and shift == s * channels


def test_op_channel_values_reads_a_bias_that_is_tensor_0():
    model = _model("CONV_2D", (3, 3, 3, 3), [0.1, 0.3, 0.02])
    order = [3, 0, 1, 2]  # the bias first
    model.tensors = [model.tensors[i] for i in order]
    model.ops[0].inputs, model.ops[0].outputs = [1, 2, 0], [3]
    bias, mult, shift = intmath.op_channel_values(model, model.ops[0])
    assert bias.tolist() == [-5, 2, 9] and (mult, shift) == _expected([0.1, 0.3, 0.02])
