"""CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED as TFLM's int8 reference kernels compute them
(reference_integer_ops ConvPerChannel / DepthwiseConvPerChannel / FullyConnected[PerChannel]).

The integer sums are formed with float64 matrix products: every term is an integer below 2^16
and a sum below 2^53 is exact in float64 whatever the order, so the product gives the exact
int32 accumulator quickly. The accumulator then wraps to int32 as on the target.
"""

from __future__ import annotations

import numpy as np

from edgeq.deploy.interp_common import OpContext, clamp_int8
from edgeq.intmath import (
    activation_range,
    leading_padding,
    multiply_by_quantized_multiplier,
    output_size,
    quantize_multipliers,
    wrap_int32,
)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b without BLAS: these products are small, and a multi-threaded BLAS on a busy
    machine makes them a hundred times slower. einsum's own loop is steady and exact."""
    return np.einsum("ij,jk->ik", a, b)


def _channel_multipliers(ctx: OpContext, input_scale: np.float32, filter_scales: np.ndarray,
                         output_scale: np.float32, channels: int):
    """Per-output-channel (multiplier, shift) from s_in * s_w / s_out in double, as
    PopulateConvolutionQuantizationParams does (a per-tensor filter scale is broadcast)."""
    if filter_scales is None or len(filter_scales) == 0:
        raise ctx.invalid("the filter has no quantization parameters")
    scales = np.asarray(filter_scales, dtype=np.float32).astype(np.float64).reshape(-1)
    if scales.size == 1:
        scales = np.full(channels, scales[0])
    elif scales.size != channels:
        raise ctx.invalid(f"filter has {scales.size} scales for {channels} output channels")
    real = float(input_scale) * scales / float(output_scale)
    return quantize_multipliers(real)


def _bias(ctx: OpContext, channels: int) -> np.ndarray:
    if not ctx.has_input(2):
        return np.zeros(channels, dtype=np.int64)
    bias = ctx.input(2)
    ctx.expect_dtype(bias, "bias", "int32")
    values = ctx.constant(bias, "bias").astype(np.int64).reshape(-1)
    if values.size != channels:
        raise ctx.invalid(f"bias '{bias.name}' has {values.size} values for {channels} channels")
    return values


def _spatial(ctx: OpContext, input_shape, kernel_h, kernel_w):
    """Output size and leading padding along H and W."""
    opts = ctx.op.options
    padding = opts.get("padding", "SAME")
    stride_h, stride_w = opts.get("stride_h", 1), opts.get("stride_w", 1)
    dil_h, dil_w = opts.get("dilation_h_factor", 1), opts.get("dilation_w_factor", 1)
    if min(stride_h, stride_w, dil_h, dil_w) < 1 or padding not in ("SAME", "VALID"):
        raise ctx.invalid(f"invalid strides/dilations/padding {opts}")
    _, height, width, _ = input_shape
    out_h = output_size(padding, height, kernel_h, stride_h, dil_h)
    out_w = output_size(padding, width, kernel_w, stride_w, dil_w)
    pad_h = leading_padding(height, kernel_h, stride_h, dil_h, out_h)
    pad_w = leading_padding(width, kernel_w, stride_w, dil_w, out_w)
    return (out_h, out_w), (pad_h, pad_w), (stride_h, stride_w), (dil_h, dil_w)


def _taps(centered: np.ndarray, kernel_h, kernel_w, out_hw, pad, stride, dilation):
    """Yield (ky, kx, window) for every filter tap; window[n, oy, ox, c] is the zero-point-
    centred input under that tap (zero outside the image, which the kernels skip)."""
    (out_h, out_w), (pad_h, pad_w), (stride_h, stride_w), (dil_h, dil_w) = (
        out_hw, pad, stride, dilation)
    _, height, width, _ = centered.shape
    need_h = (out_h - 1) * stride_h + (kernel_h - 1) * dil_h + 1
    need_w = (out_w - 1) * stride_w + (kernel_w - 1) * dil_w + 1
    padded = np.pad(centered, ((0, 0), (pad_h, max(0, need_h - pad_h - height)),
                               (pad_w, max(0, need_w - pad_w - width)), (0, 0)))
    for ky in range(kernel_h):
        for kx in range(kernel_w):
            y0, x0 = ky * dil_h, kx * dil_w
            yield ky, kx, padded[:, y0:y0 + (out_h - 1) * stride_h + 1:stride_h,
                                 x0:x0 + (out_w - 1) * stride_w + 1:stride_w, :]


def _finish(ctx: OpContext, acc: np.ndarray, bias: np.ndarray, multiplier, shift,
            act_min: int, act_max: int, output_zp: int) -> np.ndarray:
    acc = wrap_int32(acc + bias)
    scaled = multiply_by_quantized_multiplier(acc, multiplier, shift) + output_zp
    return clamp_int8(scaled, act_min, act_max)


def prepare_conv_2d(ctx: OpContext):
    x, w, out = ctx.input(0), ctx.input(1), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(w, "filter", "int8", "int4")
    ctx.expect_dtype(out, "output", "int8")
    if len(x.shape) != 4 or len(w.shape) != 4:
        raise ctx.invalid(f"needs 4-D input and filter, got {x.shape} and {w.shape}")
    weights = ctx.constant(w, "filter").astype(np.float64)
    out_ch, kernel_h, kernel_w, filter_depth = w.shape
    in_depth = x.shape[3]
    if filter_depth == 0 or in_depth % filter_depth or out_ch % (in_depth // filter_depth):
        raise ctx.invalid(f"input depth {in_depth} does not fit filter shape {w.shape}")
    groups = in_depth // filter_depth
    per_group = out_ch // groups
    in_zp, out_zp, bias, multiplier, shift, act_min, act_max = _requantization(
        ctx, x, w, out, out_ch)
    out_hw, pad, stride, dilation = _spatial(ctx, x.shape, kernel_h, kernel_w)
    ctx.check_shape((x.shape[0], *out_hw, out_ch))
    # [group][taps * filter_depth, per_group], rows ordered (ky, kx, c) like the im2col below
    group_weights = [
        weights[g * per_group:(g + 1) * per_group].reshape(per_group, -1).T
        for g in range(groups)
    ]

    def run(inputs):
        centered = inputs[0].astype(np.float64) - in_zp
        windows = [win for _, _, win in _taps(centered, kernel_h, kernel_w, out_hw, pad,
                                              stride, dilation)]
        batch = centered.shape[0]
        columns = np.stack(windows, axis=3)  # [N, OH, OW, taps, C]
        results = []
        for g in range(groups):
            part = columns[..., g * filter_depth:(g + 1) * filter_depth]
            rows = part.reshape(batch * out_hw[0] * out_hw[1], -1)
            results.append(_matmul(rows, group_weights[g]))
        acc = np.concatenate(results, axis=1) if groups > 1 else results[0]
        acc = np.rint(acc).astype(np.int64).reshape(batch, *out_hw, out_ch)
        return _finish(ctx, acc, bias, multiplier, shift, act_min, act_max, out_zp)

    return run


def _requantization(ctx: OpContext, x, w, out, out_ch: int):
    """What a convolution needs to requantize its int32 sums: (input zero point, output zero
    point, bias, per-channel multipliers and shifts, activation clamp)."""
    in_scale, in_zp = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    multiplier, shift = _channel_multipliers(ctx, in_scale, w.scale, out_scale, out_ch)
    act_min, act_max = activation_range(ctx.op.options.get("fused_activation_function", "NONE"),
                                        out_scale, out_zp)
    return in_zp, out_zp, _bias(ctx, out_ch), multiplier, shift, act_min, act_max


def prepare_depthwise_conv_2d(ctx: OpContext):
    x, w, out = ctx.input(0), ctx.input(1), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(w, "filter", "int8", "int4")
    ctx.expect_dtype(out, "output", "int8")
    if len(x.shape) != 4 or len(w.shape) != 4 or w.shape[0] != 1:
        raise ctx.invalid(f"needs a 4-D input and a [1, H, W, C] filter, got {x.shape} and "
                          f"{w.shape}")
    weights = ctx.constant(w, "filter").astype(np.int64)
    _, kernel_h, kernel_w, out_ch = w.shape
    in_depth = x.shape[3]
    multiplier_opt = ctx.op.options.get("depth_multiplier", 0)
    if in_depth == 0 or out_ch % in_depth:
        raise ctx.invalid(f"output depth {out_ch} is not a multiple of input depth {in_depth}")
    depth_multiplier = out_ch // in_depth
    if multiplier_opt not in (0, depth_multiplier):
        raise ctx.invalid(f"depth_multiplier {multiplier_opt} but channels say "
                          f"{depth_multiplier}")
    in_zp, out_zp, bias, multiplier, shift, act_min, act_max = _requantization(
        ctx, x, w, out, out_ch)
    out_hw, pad, stride, dilation = _spatial(ctx, x.shape, kernel_h, kernel_w)
    ctx.check_shape((x.shape[0], *out_hw, out_ch))

    def run(inputs):
        centered = inputs[0].astype(np.int64) - in_zp
        if depth_multiplier > 1:  # output channel c * M + m reads input channel c
            centered = np.repeat(centered, depth_multiplier, axis=3)
        acc = np.zeros((centered.shape[0], *out_hw, out_ch), dtype=np.int64)
        for ky, kx, window in _taps(centered, kernel_h, kernel_w, out_hw, pad, stride,
                                    dilation):
            acc += window * weights[0, ky, kx]
        return _finish(ctx, acc, bias, multiplier, shift, act_min, act_max, out_zp)

    return run


def prepare_fully_connected(ctx: OpContext):
    x, w, out = ctx.input(0), ctx.input(1), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(w, "weights", "int8", "int4")
    ctx.expect_dtype(out, "output", "int8")
    if len(w.shape) != 2:
        raise ctx.invalid(f"weights must be 2-D [units, depth], got {w.shape}")
    units, depth = w.shape
    if not out.shape or out.shape[-1] != units:
        raise ctx.invalid(f"output shape {out.shape} does not end in {units} units")
    batches = out.num_elements // units
    if x.num_elements != batches * depth:
        raise ctx.invalid(f"input '{x.name}' of shape {x.shape} cannot feed {batches} rows of "
                          f"{depth} values")
    in_scale, in_zp = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    weights = ctx.constant(w, "weights").astype(np.float64)
    if w.per_channel:
        if w.dtype == "int4":
            raise ctx.unsupported("INT4 weights quantized per channel; TFLM's FULLY_CONNECTED "
                                  "rejects them", hint="quantize INT4 FC weights per tensor")
        multiplier, shift = _channel_multipliers(ctx, in_scale, w.scale, out_scale, units)
    else:
        w_scale, w_zp = ctx.per_tensor(w, "weights")
        # TFLM's source (GetQuantizedConvolutionMultipler) reads as if s_in * s_w were
        # multiplied in float32, but the tflite_micro build this contract is measured against
        # gives the double product, like convolutions: measured on scales where the two differ
        # (see test_fully_connected_multiplier_is_the_double_product).
        multiplier, shift = _channel_multipliers(ctx, in_scale, np.array([w_scale]),
                                                 out_scale, 1)
        weights = weights - w_zp
    bias = _bias(ctx, units)
    act_min, act_max = activation_range(ctx.op.options.get("fused_activation_function", "NONE"),
                                        out_scale, out_zp)
    weights_t = weights.T.copy()

    def run(inputs):
        rows = inputs[0].reshape(batches, depth).astype(np.float64) - in_zp
        acc = np.rint(_matmul(rows, weights_t)).astype(np.int64)
        result = _finish(ctx, acc, bias, multiplier, shift, act_min, act_max, out_zp)
        return result.reshape(out.shape)

    return run


def prepare_transpose_conv(ctx: OpContext):
    """reference_integer_ops::TransposeConv: inputs [output_shape, filter, input, bias?]; each
    input value times each filter tap is added into the output position it reaches (stride
    apart, shifted back by the padding TFLite computes from the output size), then the
    per-channel output stage of a convolution."""
    shape, w, x, out = ctx.input(0), ctx.input(1), ctx.input(2), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(w, "filter", "int8")
    ctx.expect_dtype(out, "output", "int8")
    if len(x.shape) != 4 or len(w.shape) != 4 or len(out.shape) != 4:
        raise ctx.invalid(f"needs 4-D input, filter and output, got {x.shape}, {w.shape}, "
                          f"{out.shape}")
    ctx.expect_dtype(shape, "output_shape", "int32")
    if tuple(int(v) for v in ctx.constant(shape, "output_shape").reshape(-1)) != out.shape:
        raise ctx.invalid(f"output_shape {shape.data.tolist()} is not the output's {out.shape}")
    out_ch, kernel_h, kernel_w, in_depth = w.shape
    if in_depth != x.shape[3] or out_ch != out.shape[3] or x.shape[0] != out.shape[0]:
        raise ctx.invalid(f"filter {w.shape} does not map input {x.shape} to output {out.shape}")
    weights = ctx.constant(w, "filter").astype(np.float64)
    in_scale, in_zp = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    multiplier, shift = _channel_multipliers(ctx, in_scale, w.scale, out_scale, out_ch)
    act_min, act_max = activation_range(ctx.op.options.get("fused_activation_function", "NONE"),
                                        out_scale, out_zp)
    bias = np.zeros(out_ch, dtype=np.int64)
    if ctx.has_input(3):
        b = ctx.input(3)
        ctx.expect_dtype(b, "bias", "int32")
        bias = ctx.constant(b, "bias").astype(np.int64).reshape(-1)
        if bias.size != out_ch:
            raise ctx.invalid(f"bias '{b.name}' has {bias.size} values for {out_ch} channels")
    opts = ctx.op.options
    stride_h, stride_w = int(opts.get("stride_h", 1)), int(opts.get("stride_w", 1))
    padding = opts.get("padding", "SAME")
    _, out_h, out_w, _ = out.shape
    # ComputePaddingHeightWidth over the output as the conv's input (dilation 1)
    pad_h = leading_padding(out_h, kernel_h, stride_h, 1,
                            output_size(padding, out_h, kernel_h, stride_h, 1))
    pad_w = leading_padding(out_w, kernel_w, stride_w, 1,
                            output_size(padding, out_w, kernel_w, stride_w, 1))
    _, in_h, in_w, _ = x.shape
    # a canvas wide enough for every tap; the output is its window from the padding on
    full_h = max((in_h - 1) * stride_h + kernel_h, pad_h + out_h)
    full_w = max((in_w - 1) * stride_w + kernel_w, pad_w + out_w)
    taps = weights.transpose(1, 2, 3, 0)  # [kh, kw, in_c, out_c]

    def run(inputs):
        centered = inputs[2].astype(np.float64) - in_zp
        batch = centered.shape[0]
        rows = centered.reshape(-1, in_depth)
        canvas = np.zeros((batch, full_h, full_w, out_ch), dtype=np.float64)
        for ky in range(kernel_h):
            for kx in range(kernel_w):
                part = _matmul(rows, taps[ky, kx]).reshape(batch, in_h, in_w, out_ch)
                canvas[:, ky:ky + (in_h - 1) * stride_h + 1:stride_h,
                       kx:kx + (in_w - 1) * stride_w + 1:stride_w, :] += part
        acc = np.rint(canvas[:, pad_h:pad_h + out_h, pad_w:pad_w + out_w, :]).astype(np.int64)
        return _finish(ctx, acc, bias, multiplier, shift, act_min, act_max, out_zp)

    return run
