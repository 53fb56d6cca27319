"""The element-wise, pooling, reduction, shape and (de)quantization ops of the reference
interpreter, each as TFLM's int8 reference kernel computes it."""

from __future__ import annotations

import numpy as np

from edgeq.deploy.interp_common import INT8_MAX, INT8_MIN, OpContext, clamp_int8
from edgeq.intmath import (
    activation_range,
    exp_on_negative_values,
    hard_swish_parameters,
    hard_swish_table,
    leading_padding,
    leaky_relu_table,
    logistic_table,
    multiply_by_quantized_multiplier,
    nearest_indices,
    output_size,
    quantize_multiplier,
    reciprocal,
    round_half_away,
    rounding_divide_by_pot,
    softmax_scaling,
    srdhm,
    tanh_table,
    wrap_int32,
)


def _int8_operands(ctx: OpContext, a, b, out):
    """The (scale, zero point) of a binary op's int8 per-tensor inputs and output."""
    roles = ((a, "input 0"), (b, "input 1"), (out, "output"))
    for tensor, role in roles:
        ctx.expect_dtype(tensor, role, "int8")
    return [ctx.per_tensor(tensor, role) for tensor, role in roles]


def _broadcast_shape(ctx: OpContext, a, b) -> tuple[int, ...]:
    """The output shape of an element-wise op on `a` and `b`, checked against its tensor."""
    try:
        shape = np.broadcast_shapes(a.shape, b.shape)
    except ValueError as exc:
        raise ctx.invalid(f"input shapes {a.shape} and {b.shape} do not broadcast") from exc
    ctx.check_shape(shape)
    return shape


def _activation(ctx: OpContext, scale, zero_point) -> tuple[int, int]:
    return activation_range(ctx.op.options.get("fused_activation_function", "NONE"),
                            scale, zero_point)


def prepare_add(ctx: OpContext, sign: int = 1):
    """reference_integer_ops Add (and Sub, sign -1: the second rescaled input subtracted): both
    inputs shifted left by 20 and rescaled to 1 / (2 * max scale), then to the output."""
    a, b, out = ctx.input(0), ctx.input(1), ctx.output
    (scale_a, zp_a), (scale_b, zp_b), (scale_out, zp_out) = _int8_operands(ctx, a, b, out)
    left_shift = 20
    twice_max = 2.0 * float(max(scale_a, scale_b))
    mult_a, shift_a = quantize_multiplier(float(scale_a) / twice_max)
    mult_b, shift_b = quantize_multiplier(float(scale_b) / twice_max)
    mult_out, shift_out = quantize_multiplier(twice_max / ((1 << left_shift) * float(scale_out)))
    act_min, act_max = _activation(ctx, scale_out, zp_out)
    shape = _broadcast_shape(ctx, a, b)

    def run(inputs):
        x = (inputs[0].astype(np.int64) - zp_a) << left_shift
        y = (inputs[1].astype(np.int64) - zp_b) << left_shift
        total = (multiply_by_quantized_multiplier(x, mult_a, shift_a)
                 + sign * multiply_by_quantized_multiplier(y, mult_b, shift_b))
        result = multiply_by_quantized_multiplier(wrap_int32(total), mult_out, shift_out) + zp_out
        return clamp_int8(np.broadcast_to(result, shape), act_min, act_max)

    return run


def prepare_sub(ctx: OpContext):
    return prepare_add(ctx, sign=-1)


def _pool_geometry(ctx: OpContext):
    x = ctx.input(0)
    opts = ctx.op.options
    if len(x.shape) != 4:
        raise ctx.invalid(f"needs a 4-D input, got {x.shape}")
    kernel_h, kernel_w = opts.get("filter_height", 0), opts.get("filter_width", 0)
    stride_h, stride_w = opts.get("stride_h", 0), opts.get("stride_w", 0)
    padding = opts.get("padding", "VALID")
    if min(kernel_h, kernel_w, stride_h, stride_w) < 1 or padding not in ("SAME", "VALID"):
        raise ctx.invalid(f"invalid pooling options {opts}")
    _, height, width, _ = x.shape
    out_h = output_size(padding, height, kernel_h, stride_h, 1)
    out_w = output_size(padding, width, kernel_w, stride_w, 1)
    pad_h = leading_padding(height, kernel_h, stride_h, 1, out_h)
    pad_w = leading_padding(width, kernel_w, stride_w, 1, out_w)
    ctx.check_shape((x.shape[0], out_h, out_w, x.shape[3]))

    def windows(values: np.ndarray, fill):
        """Yield the input under each pooling tap, `fill` where the window leaves the image."""
        need_h = (out_h - 1) * stride_h + kernel_h
        need_w = (out_w - 1) * stride_w + kernel_w
        padded = np.pad(values, ((0, 0), (pad_h, max(0, need_h - pad_h - height)),
                                 (pad_w, max(0, need_w - pad_w - width)), (0, 0)),
                        constant_values=fill)
        for ky in range(kernel_h):
            for kx in range(kernel_w):
                yield padded[:, ky:ky + (out_h - 1) * stride_h + 1:stride_h,
                             kx:kx + (out_w - 1) * stride_w + 1:stride_w, :]

    return windows


def _pool_setup(ctx: OpContext):
    """(input, output, window iterator, activation clamp) of an int8 pooling op."""
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    act_min, act_max = _activation(ctx, *ctx.per_tensor(out, "output"))
    return x, out, _pool_geometry(ctx), act_min, act_max


def prepare_average_pool_2d(ctx: OpContext):
    x, out, windows, act_min, act_max = _pool_setup(ctx)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=np.int64)
    count = sum(windows(ones, 0))
    if np.any(count == 0):
        raise ctx.invalid("a pooling window lies entirely in the padding")

    def run(inputs):
        total = sum(windows(inputs[0].astype(np.int64), 0))
        half = count // 2
        # C's truncating division of the rounded sum, away from zero at halves
        average = np.where(total > 0, (total + half) // count, -((half - total) // count))
        return clamp_int8(average, act_min, act_max)

    return run


def prepare_max_pool_2d(ctx: OpContext):
    x, out, windows, act_min, act_max = _pool_setup(ctx)

    def run(inputs):
        # The reference starts from the int8 minimum, so padding with it changes nothing.
        peak = np.full((x.shape[0], *out.shape[1:]), INT8_MIN, dtype=np.int8)
        for window in windows(inputs[0], INT8_MIN):
            np.maximum(peak, window, out=peak)
        return clamp_int8(peak, act_min, act_max)

    return run


def prepare_mean(ctx: OpContext):
    """int8 MEAN over any axes. TFLM (since 2023, "Align mean kernel to TFL") always takes
    QuantizedMeanOrSum for int8: sum in int32, fold 1/count into the multiplier, requantize.
    Its special case for axes (1, 2) with keep_dims exists only for float32 inputs, and the
    older same-scale integer shortcut is gone, so there is one integer path here."""
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    axis_tensor = ctx.input(1)
    ctx.expect_dtype(axis_tensor, "axis", "int32", "int64")
    rank = len(x.shape)
    axes = []
    for axis in ctx.constant(axis_tensor, "axis").reshape(-1).tolist():
        resolved = axis + rank if axis < 0 else axis
        if not 0 <= resolved < rank:
            raise ctx.invalid(f"axis {axis} is out of range for input shape {x.shape}")
        if resolved not in axes:
            axes.append(resolved)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64)) if axes else 1
    kept = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    if out.num_elements != int(np.prod(kept, dtype=np.int64)):
        raise ctx.invalid(f"output shape {out.shape} does not match the reduced shape {kept}")
    in_scale, in_zp = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    multiplier, shift = quantize_multiplier(float(in_scale) / float(out_scale))
    if count > 0:
        # Fold 1/count into the multiplier the way QuantizedMeanOrSum does.
        extra = min(count.bit_length() - 1, 32, 31 + shift)
        multiplier = (multiplier << extra) // count
        shift -= extra

    def run(inputs):
        total = inputs[0].astype(np.int64).sum(axis=tuple(axes)) if axes else \
            inputs[0].astype(np.int64)
        centered = wrap_int32(total - in_zp * count)
        result = multiply_by_quantized_multiplier(centered, multiplier, shift) + out_zp
        return clamp_int8(result).reshape(out.shape)

    return run


def prepare_pad(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    paddings_tensor = ctx.input(1)
    ctx.expect_dtype(paddings_tensor, "paddings", "int32", "int64")
    paddings = ctx.constant(paddings_tensor, "paddings").astype(np.int64).reshape(-1, 2)
    if paddings.shape[0] != len(x.shape) or np.any(paddings < 0):
        raise ctx.invalid(f"paddings {paddings.tolist()} do not fit input shape {x.shape}")
    ctx.check_shape(tuple(int(d + p.sum()) for d, p in zip(x.shape, paddings, strict=True)))
    _, out_zp = ctx.per_tensor(out, "output")
    if not INT8_MIN <= out_zp <= INT8_MAX:
        raise ctx.invalid(f"output zero point {out_zp} is outside int8")

    def run(inputs):
        return np.pad(inputs[0], [tuple(p) for p in paddings.tolist()], constant_values=out_zp)

    return run


def prepare_reshape(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    if x.num_elements != out.num_elements or x.dtype != out.dtype:
        raise ctx.invalid(f"cannot reshape {x.dtype}{list(x.shape)} into "
                          f"{out.dtype}{list(out.shape)}")

    def run(inputs):
        return inputs[0].reshape(out.shape).copy()  # never a view of a constant

    return run


def prepare_concatenation(ctx: OpContext):
    out = ctx.output
    parts = [ctx.input(i) for i in range(len(ctx.op.inputs))]
    if ctx.op.options.get("fused_activation_function", "NONE") != "NONE":
        raise ctx.unsupported("a fused activation on CONCATENATION", hint="TFLM requires NONE")
    rank = len(out.shape)
    axis = ctx.op.options.get("axis", 0)
    axis = axis + rank if axis < 0 else axis
    if not 0 <= axis < rank:
        raise ctx.invalid(f"axis {ctx.op.options.get('axis')} is out of range for {out.shape}")
    for i, part in enumerate(parts):
        ctx.expect_dtype(part, f"input {i}", out.dtype)
        if out.dtype == "int8" and ctx.per_tensor(part, f"input {i}") != ctx.per_tensor(
                out, "output"):
            raise ctx.unsupported(
                f"input {i} '{part.name}' has scale/zero point "
                f"{ctx.per_tensor(part, 'input')} but the output has "
                f"{ctx.per_tensor(out, 'output')}; TFLM's int8 CONCATENATION does not rescale",
                hint="quantize all inputs of a concatenation with the output's parameters")
    expected = list(parts[0].shape)
    expected[axis] = sum(p.shape[axis] for p in parts)
    ctx.check_shape(tuple(expected))

    def run(inputs):
        return np.concatenate(inputs, axis=axis)

    return run


def prepare_softmax(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    in_scale, _ = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    if out_zp != -128 or out_scale != np.float32(1.0 / 256):
        raise ctx.unsupported(f"int8 SOFTMAX output must have scale 1/256 and zero point -128, "
                              f"got {out_scale} and {out_zp}")
    if x.shape != out.shape or not x.shape:
        raise ctx.invalid(f"input shape {x.shape} and output shape {out.shape} differ")
    multiplier, left_shift, diff_min = softmax_scaling(ctx.op.options.get("beta", 1.0),
                                                       in_scale)
    depth = x.shape[-1]

    def run(inputs):
        rows = inputs[0].astype(np.int64).reshape(-1, depth)
        diff = rows - rows.max(axis=1, keepdims=True)
        used = diff >= diff_min
        rescaled = srdhm(wrap_int32(diff << left_shift), multiplier)
        exps = exp_on_negative_values(rescaled, 5)
        sum_of_exps = wrap_int32(np.where(used, rounding_divide_by_pot(exps, 12), 0)
                                 .sum(axis=1))
        scale, bits_over_unit = reciprocal(sum_of_exps, 12)
        exponent = bits_over_unit + 31 - 8
        if np.any((exponent < 0) | (exponent > 31)):
            raise ctx.invalid("softmax normalisation out of range (TFLM would abort)")
        unsaturated = rounding_divide_by_pot(srdhm(scale[:, None], exps), exponent[:, None])
        result = np.where(used, np.clip(unsaturated - 128, INT8_MIN, INT8_MAX), INT8_MIN)
        return result.astype(np.int8).reshape(out.shape)

    return run


def prepare_quantize(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "float32", "int8")
    ctx.expect_dtype(out, "output", "int8")
    if out.per_channel:
        raise ctx.unsupported("per-channel output quantization")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    if x.shape != out.shape:
        raise ctx.invalid(f"input shape {x.shape} and output shape {out.shape} differ")
    if x.dtype == "float32":
        def run(inputs):
            quotient = inputs[0].astype(np.float32) / out_scale  # float32 division, as in C
            return clamp_int8(round_half_away(quotient) + out_zp)

        return run

    in_scale, in_zp = ctx.per_tensor(x, "input")
    multiplier, shift = quantize_multiplier(float(in_scale) / float(out_scale))

    def requantize(inputs):
        centered = inputs[0].astype(np.int64) - in_zp
        return clamp_int8(multiply_by_quantized_multiplier(centered, multiplier, shift) + out_zp)

    return requantize


def prepare_dequantize(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "float32")
    if x.per_channel:
        raise ctx.unsupported("per-channel DEQUANTIZE of an activation")
    scale, zero_point = ctx.per_tensor(x, "input")

    def run(inputs):
        return (float(scale) * (inputs[0].astype(np.float64) - zero_point)).astype(np.float32)

    return run


def prepare_mul(ctx: OpContext):
    """reference_integer_ops::Mul / BroadcastMul4DSlow: (x1 - zp1) * (x2 - zp2) requantized
    by s1 * s2 / s_out (double-precision ratio of the float32 scales), then the clamp."""
    a, b, out = ctx.input(0), ctx.input(1), ctx.output
    (scale_a, zp_a), (scale_b, zp_b), (scale_out, zp_out) = _int8_operands(ctx, a, b, out)
    multiplier, shift = quantize_multiplier(float(scale_a) * float(scale_b) / float(scale_out))
    act_min, act_max = _activation(ctx, scale_out, zp_out)
    shape = _broadcast_shape(ctx, a, b)

    def run(inputs):
        product = (inputs[0].astype(np.int64) - zp_a) * (inputs[1].astype(np.int64) - zp_b)
        result = multiply_by_quantized_multiplier(product, multiplier, shift) + zp_out
        return clamp_int8(np.broadcast_to(result, shape), act_min, act_max)

    return run


def _table_op(ctx: OpContext, make_table):
    """An element-wise int8 op as its 256-entry table (edgeq.intmath), indexed by q + 128."""
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    if tuple(x.shape) != tuple(out.shape):
        raise ctx.invalid(f"input shape {x.shape} and output shape {out.shape} differ")
    in_scale, in_zp = ctx.per_tensor(x, "input")
    out_scale, out_zp = ctx.per_tensor(out, "output")
    table = make_table(in_scale, in_zp, out_scale, out_zp)

    def run(inputs):
        return table[inputs[0].astype(np.int64) + 128]

    return run


def prepare_leaky_relu(ctx: OpContext):
    alpha = float(ctx.op.options.get("alpha", 0.2))
    if alpha < 0:
        raise ctx.unsupported(f"alpha {alpha} < 0", hint="edgeq supports slopes alpha >= 0")
    return _table_op(ctx, lambda s, z, so, zo: leaky_relu_table(s, z, so, zo, alpha))


def _fixed_output(ctx: OpContext, scale: float, zero_point: int) -> None:
    out_scale, out_zp = ctx.per_tensor(ctx.output, "output")
    if out_zp != zero_point or abs(float(out_scale) - scale) > 1e-3 * scale:
        raise ctx.unsupported(f"int8 {ctx.op.kind} output must have scale {scale} and zero "
                              f"point {zero_point}, got {out_scale} and {out_zp}")


def prepare_logistic(ctx: OpContext):
    _fixed_output(ctx, 1 / 256, -128)
    return _table_op(ctx, lambda s, z, so, zo: logistic_table(s, z))


def prepare_tanh(ctx: OpContext):
    _fixed_output(ctx, 1 / 128, 0)
    return _table_op(ctx, lambda s, z, so, zo: tanh_table(s, z))


def prepare_hard_swish(ctx: OpContext):
    in_scale, _ = ctx.per_tensor(ctx.input(0), "input")
    out_scale, _ = ctx.per_tensor(ctx.output, "output")
    if hard_swish_parameters(in_scale, out_scale)[1] > 0:
        raise ctx.unsupported(f"output scale {out_scale} is below input scale / 128",
                              hint="TFLM refuses this HARD_SWISH; widen the output range")
    return _table_op(ctx, hard_swish_table)


def _min_max(ctx: OpContext, pick):
    """MAXIMUM / MINIMUM on int8: the larger (smaller) stored value, which is the larger
    (smaller) real value only when both inputs share the output's scale and zero point (the
    converter requantizes them so; TFLM's kernel compares the stored values)."""
    a, b, out = ctx.input(0), ctx.input(1), ctx.output
    params = _int8_operands(ctx, a, b, out)
    if params[0] != params[2] or params[1] != params[2]:
        raise ctx.unsupported("inputs and output have different scales or zero points",
                              hint="requantize the inputs to the output's parameters "
                                   "(QUANTIZE int8 -> int8), as TF's converter does")
    shape = _broadcast_shape(ctx, a, b)

    def run(inputs):
        return np.broadcast_to(pick(inputs[0], inputs[1]), shape).astype(np.int8)

    return run


def prepare_maximum(ctx: OpContext):
    return _min_max(ctx, np.maximum)


def prepare_minimum(ctx: OpContext):
    return _min_max(ctx, np.minimum)


def prepare_resize_nearest_neighbor(ctx: OpContext):
    x, out = ctx.input(0), ctx.output
    ctx.expect_dtype(x, "input", "int8")
    ctx.expect_dtype(out, "output", "int8")
    if len(x.shape) != 4:
        raise ctx.invalid(f"needs a 4-D input, got {x.shape}")
    size = ctx.input(1)
    ctx.expect_dtype(size, "size", "int32")
    out_h, out_w = (int(v) for v in ctx.constant(size, "size").reshape(-1))
    ctx.check_shape((x.shape[0], out_h, out_w, x.shape[3]))
    align = bool(ctx.op.options.get("align_corners", False))
    half = bool(ctx.op.options.get("half_pixel_centers", False))
    rows = nearest_indices(x.shape[1], out_h, align, half)
    cols = nearest_indices(x.shape[2], out_w, align, half)

    def run(inputs):
        return inputs[0][:, rows][:, :, cols]

    return run
