"""Builders of single-op (or tiny multi-op) integer Model IRs with seeded random shapes,
scales, zero points and weights, for the op-level exactness tests (TFLM vs LiteRT vs edgeq's
interpreter vs the generated C engine).

Every builder takes a numpy Generator and keyword options and returns an edgeq Model whose
input is int8 (float32 for `quantize`). `random_input(model, rng)` makes a matching input.
`CASES` lists (name, builder, options) for the sweeps.
"""

from __future__ import annotations

import numpy as np

from edgeq import intmath
from edgeq.tflite.model import Model, Op, Tensor

# Cases built to drive most outputs to a clamp (a tiny output scale): the varied-output checks
# expect both clamps from them instead of many values.
SATURATING = " (saturating)"

class _Builder:
    """Collects tensors and ops of one small model."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def activation(self, name: str, shape, lo: float | None = None, hi: float | None = None,
                   scale: float | None = None, zero_point: int | None = None) -> int:
        """An int8 activation with a random range (or the given one)."""
        if scale is None:
            lo = -self.rng.uniform(0.0, 3.0) if lo is None else lo
            hi = self.rng.uniform(0.5, 4.0) if hi is None else hi
            scale, zero_point = intmath.activation_qparams(lo, hi)
        return self.add(Tensor(name, tuple(int(d) for d in shape), "int8",
                               scale=np.array([scale], dtype=np.float32),
                               zero_point=np.array([zero_point], dtype=np.int64)))

    def span(self, index: int) -> tuple[float, float]:
        """The real range int8 tensor `index` can hold."""
        t = self.tensors[index]
        scale, zero_point = float(t.scale[0]), int(t.zero_point[0])
        return scale * (-128 - zero_point), scale * (127 - zero_point)

    def like(self, name: str, shape, index: int) -> int:
        """An int8 activation with the same scale and zero point as tensor `index`."""
        ref = self.tensors[index]
        return self.activation(name, shape, scale=float(ref.scale[0]),
                               zero_point=int(ref.zero_point[0]))

    def weights(self, name: str, shape, bits: int, axis: int | None) -> int:
        w = self.rng.normal(0.0, 1.0, size=shape).astype(np.float32)
        w *= self.rng.uniform(0.2, 2.0, size=[1] * (len(shape) - 1) + [1]).astype(np.float32)
        scales = intmath.weight_scales(w, bits, axis)
        q = intmath.quantize_weights(w, scales, bits, axis)
        if bits == 4:
            # Reach -8 too (learned rounding can), so the packed low nibble's sign is tested.
            q.reshape(-1)[self.rng.integers(q.size)] = -8
        return self.add(Tensor(name, tuple(shape), "int8" if bits == 8 else "int4",
                               scale=scales, zero_point=np.zeros(len(scales), dtype=np.int64),
                               quantized_dimension=0 if axis is None else axis % len(shape),
                               data=q))

    def bias(self, name: str, input_index: int, weights_index: int, channels: int,
             magnitude: float = 0.0, values: np.ndarray | None = None) -> int:
        """int32 bias with scale s_in * s_w (one scale per tensor when the weights have one),
        from float `values` or random ones of the given magnitude."""
        in_scale = float(self.tensors[input_index].scale[0])
        w_scales = self.tensors[weights_index].scale
        b = self.rng.normal(0.0, magnitude, size=channels) if values is None else values
        q = intmath.quantize_bias(b, in_scale, np.broadcast_to(w_scales, (channels,)))
        scales = intmath.bias_scales(in_scale, w_scales)
        return self.add(Tensor(name, (channels,), "int32", scale=scales,
                               zero_point=np.zeros(len(scales), dtype=np.int64), data=q))

    def const_int32(self, name: str, values) -> int:
        values = np.asarray(values, dtype=np.int32)
        return self.add(Tensor(name, values.shape, "int32", data=values))

    def op(self, kind: str, inputs: list[int], output: int, **options) -> None:
        self.ops.append(Op(kind, list(inputs), [output], options))

    def model(self, inputs: list[int], outputs: list[int], description: str) -> Model:
        return Model(self.tensors, self.ops, inputs, outputs, description=description)

    def output_scale(self, input_index: int, weights_index: int, fan_in: int) -> float:
        """A plausible output range for a conv/dense: ~3 std of the float result, jittered so
        that some cases saturate."""
        x = self.tensors[input_index]
        w = self.tensors[weights_index]
        x_std = float(x.scale[0]) * 74.0
        w_rms = float(np.sqrt(np.mean(np.square(w.data, dtype=np.float64))))
        w_std = float(np.mean(w.scale)) * w_rms
        std = x_std * w_std * np.sqrt(fan_in)
        return float(6 * std / 255 * self.rng.uniform(0.5, 2.0))

    def out_activation(self, name: str, shape, scale: float) -> int:
        zero_point = int(self.rng.integers(-40, 41))
        return self.activation(name, shape, scale=scale, zero_point=zero_point)


def _spatial(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "SAME":
        return -(-size // stride)
    return (size - (kernel - 1) * dilation - 1) // stride + 1


def conv2d(rng, weight_bits=8, padding="SAME", stride=1, dilation=1, activation="NONE",
           per_channel=True, out_scale_factor=1.0) -> Model:
    """out_scale_factor < 1 shrinks the output scale: effective multipliers above 1 (a left
    shift in TFLM's requantization) and saturation."""
    b = _Builder(rng)
    h, w = (int(v) for v in rng.integers(5, 12, size=2))
    cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 13))
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    x = b.activation("input", (1, h, w, cin))
    wt = b.weights("weights", (cout, kh, kw, cin), weight_bits, 0 if per_channel else None)
    scale = b.output_scale(x, wt, kh * kw * cin) * out_scale_factor
    bias = b.bias("bias", x, wt, cout, magnitude=scale * 20)
    oh = _spatial(h, kh, stride, dilation, padding)
    ow = _spatial(w, kw, stride, dilation, padding)
    y = b.out_activation("output", (1, oh, ow, cout), scale)
    b.op("CONV_2D", [x, wt, bias], y, padding=padding, stride_w=stride, stride_h=stride,
         dilation_w_factor=dilation, dilation_h_factor=dilation,
         fused_activation_function=activation)
    return b.model([x], [y], f"conv2d int{weight_bits} {padding} s{stride} d{dilation} "
                   f"{activation}{SATURATING if out_scale_factor < 0.1 else ''}")


def depthwise(rng, weight_bits=8, depth_multiplier=1, padding="SAME", stride=1, dilation=1,
              activation="NONE", kernel=None, cin=None, size=None) -> Model:
    """kernel, cin, size (h, w): fixed instead of drawn (3 reaches the 3x3 fast path)."""
    b = _Builder(rng)
    h, w = (int(v) for v in rng.integers(5, 12, size=2))
    if size is not None:
        h, w = size
    cin = int(rng.integers(1, 9)) if cin is None else cin
    cout = cin * depth_multiplier
    kh, kw = (int(v) for v in rng.integers(1, 4, size=2))
    if kernel is not None:
        kh = kw = kernel
    x = b.activation("input", (1, h, w, cin))
    wt = b.weights("weights", (1, kh, kw, cout), weight_bits, 3)
    scale = b.output_scale(x, wt, kh * kw)
    bias = b.bias("bias", x, wt, cout, magnitude=scale * 20)
    oh = _spatial(h, kh, stride, dilation, padding)
    ow = _spatial(w, kw, stride, dilation, padding)
    y = b.out_activation("output", (1, oh, ow, cout), scale)
    b.op("DEPTHWISE_CONV_2D", [x, wt, bias], y, padding=padding, stride_w=stride,
         stride_h=stride, dilation_w_factor=dilation, dilation_h_factor=dilation,
         depth_multiplier=depth_multiplier, fused_activation_function=activation)
    return b.model([x], [y], f"depthwise int{weight_bits} dm{depth_multiplier} {padding} "
                   f"s{stride} d{dilation} {activation} {h}x{w}x{cin} k{kh}x{kw}")


def fully_connected(rng, weight_bits=8, per_channel=True, activation="NONE",
                    with_bias=True, input_4d=False, out_scale_factor=1.0, depth=None) -> Model:
    """input_4d feeds a [1, h, w, c] tensor, which FULLY_CONNECTED flattens itself; `depth`
    fixes the input length of a 2-D input."""
    b = _Builder(rng)
    units = int(rng.integers(2, 33))
    if input_4d:
        in_shape = (1, int(rng.integers(1, 4)), int(rng.integers(1, 4)), int(rng.integers(1, 9)))
        depth = int(np.prod(in_shape))
    else:
        depth = depth or int(rng.integers(4, 65))
        in_shape = (1, depth)
    x = b.activation("input", in_shape)
    wt = b.weights("weights", (units, depth), weight_bits, 0 if per_channel else None)
    scale = b.output_scale(x, wt, depth) * out_scale_factor
    inputs = [x, wt, b.bias("bias", x, wt, units, magnitude=scale * 20) if with_bias else -1]
    y = b.out_activation("output", (1, units), scale)
    b.op("FULLY_CONNECTED", inputs, y, fused_activation_function=activation,
         keep_num_dims=False)
    return b.model([x], [y], f"fully_connected int{weight_bits} "
                   f"{'per-channel' if per_channel else 'per-tensor'} {activation}"
                   f"{SATURATING if out_scale_factor < 0.1 else ''}")


def add(rng, activation="NONE", broadcast=False) -> Model:
    """Two model inputs with different scales; `broadcast` makes the second [1, 1, 1, c]."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 9)))
    x1 = b.activation("input_a", shape)
    x2 = b.activation("input_b", (1, 1, 1, shape[3]) if broadcast else shape)
    # The output holds the sum's range (a random one left most sums at a clamp).
    (lo1, hi1), (lo2, hi2) = b.span(x1), b.span(x2)
    y = b.activation("output", shape, lo=lo1 + lo2, hi=hi1 + hi2)
    b.op("ADD", [x1, x2], y, fused_activation_function=activation)
    return b.model([x1, x2], [y], f"add {activation}{' broadcast' if broadcast else ''}")


def _pool(rng, kind, padding="VALID", stride=2, size=2, channels=None, hw=None,
          activation="NONE") -> Model:
    b = _Builder(rng)
    h, w = hw or (int(v) for v in rng.integers(size, 12, size=2))
    c = channels or int(rng.integers(1, 9))
    x = b.activation("input", (1, h, w, c))
    oh, ow = _spatial(h, size, stride, 1, padding), _spatial(w, size, stride, 1, padding)
    y = b.like("output", (1, oh, ow, c), x)
    b.op(kind, [x], y, padding=padding, stride_w=stride, stride_h=stride, filter_width=size,
         filter_height=size, fused_activation_function=activation)
    return b.model([x], [y], f"{kind.lower()} {padding} s{stride} k{size} c{c} {h}x{w} "
                             f"{activation}")


def avg_pool(rng, padding="VALID", stride=2, size=2, **options) -> Model:
    return _pool(rng, "AVERAGE_POOL_2D", padding, stride, size, **options)


def max_pool(rng, padding="VALID", stride=2, size=2) -> Model:
    return _pool(rng, "MAX_POOL_2D", padding, stride, size)


def mean(rng, keep_dims=True, same_qparams=False) -> Model:
    b = _Builder(rng)
    h, w, c = int(rng.integers(1, 10)), int(rng.integers(1, 10)), int(rng.integers(1, 17))
    x = b.activation("input", (1, h, w, c))
    axes = b.const_int32("axes", [1, 2])
    shape = (1, 1, 1, c) if keep_dims else (1, c)
    y = b.like("output", shape, x) if same_qparams else b.activation("output", shape)
    b.op("MEAN", [x, axes], y, keep_dims=keep_dims)
    return b.model([x], [y], f"mean keep_dims={keep_dims}")


def pad(rng) -> Model:
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 5)))
    pads = [[0, 0], *rng.integers(0, 3, size=(2, 2)).tolist(), [0, 0]]
    x = b.activation("input", shape)
    paddings = b.const_int32("paddings", pads)
    out = tuple(d + p[0] + p[1] for d, p in zip(shape, pads, strict=True))
    y = b.like("output", out, x)
    b.op("PAD", [x, paddings], y)
    return b.model([x], [y], "pad")


def reshape(rng) -> Model:
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 6)), int(rng.integers(1, 6)), int(rng.integers(1, 6)))
    new_shape = [1, int(np.prod(shape))]
    x = b.activation("input", shape)
    target = b.const_int32("shape", new_shape)
    y = b.like("output", tuple(new_shape), x)
    b.op("RESHAPE", [x, target], y, new_shape=new_shape)
    return b.model([x], [y], "reshape")


def concatenation(rng, same_scales=True, count=2) -> Model:
    """Concatenate `count` inputs along the channels. With different input scales each input is
    first requantized to the output's scale by a QUANTIZE (int8 -> int8), as the converter
    does: the int8 CONCATENATION kernels of TFLite and TFLM copy bytes and do not rescale."""
    b = _Builder(rng)
    h, w = int(rng.integers(1, 7)), int(rng.integers(1, 7))
    channels = [int(c) for c in rng.integers(1, 6, size=count)]
    y = b.activation("output", (1, h, w, sum(channels)))
    inputs, parts = [], []
    for i, c in enumerate(channels):
        if same_scales:
            x = b.like(f"input_{i}", (1, h, w, c), y)
            part = x
        else:
            # ranges near the output's: requantized, some beyond it (clamped), most inside
            factor = rng.uniform(0.5, 1.5)
            lo, hi = b.span(y)
            x = b.activation(f"input_{i}", (1, h, w, c), lo=lo * factor, hi=hi * factor)
            part = b.like(f"requantized_{i}", (1, h, w, c), y)
            b.op("QUANTIZE", [x], part)
        inputs.append(x)
        parts.append(part)
    b.op("CONCATENATION", parts, y, axis=3, fused_activation_function="NONE")
    return b.model(inputs, [y], f"concatenation {'same' if same_scales else 'different'} scales")


def softmax(rng, beta=1.0, rank=2, spread=1.0) -> Model:
    """SOFTMAX over the last axis of a [1, n] or [1, h, w, n] input. A large `spread` (a wide
    input range) with a large beta puts TFLM's diff_min inside the int8 range, so inputs far
    below their row's maximum take the cut-off branch (exp = 0)."""
    b = _Builder(rng)
    n = int(rng.integers(2, 33))
    shape = (1, n) if rank == 2 else (1, int(rng.integers(1, 4)), int(rng.integers(1, 4)), n)
    x = b.activation("input", shape, lo=-rng.uniform(2, 12) * spread,
                     hi=rng.uniform(0.5, 12) * spread)
    y = b.activation("output", shape, scale=1.0 / 256, zero_point=-128)
    b.op("SOFTMAX", [x], y, beta=beta)
    return b.model([x], [y], f"softmax beta={beta}")


def quantize(rng) -> Model:
    """float32 -> int8 at the model input."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 5)))
    x = b.add(Tensor("input", shape, "float32"))
    y = b.activation("output", shape)
    b.op("QUANTIZE", [x], y)
    return b.model([x], [y], "quantize float32->int8")


def requantize(rng) -> Model:
    """int8 -> int8 QUANTIZE (what the converter inserts to change scale and zero point)."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 9)), int(rng.integers(1, 9)), int(rng.integers(1, 5)))
    x = b.activation("input", shape)
    y = b.activation("output", shape)
    b.op("QUANTIZE", [x], y)
    return b.model([x], [y], "quantize int8->int8")


def dequantize(rng) -> Model:
    """int8 -> float32 at the model output."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 33)))
    x = b.activation("input", shape)
    y = b.add(Tensor("output", shape, "float32"))
    b.op("DEQUANTIZE", [x], y)
    return b.model([x], [y], "dequantize int8->float32")


def _real(b: _Builder, index: int, q: np.ndarray) -> np.ndarray:
    t = b.tensors[index]
    scale = t.scale if len(t.scale) == 1 else t.scale.reshape(-1, *[1] * (q.ndim - 1))
    return (q.astype(np.float64) - t.zero_point.reshape(scale.shape)) * scale


def conv_pool_fc(rng, weight_bits=8) -> Model:
    """A tiny multi-op chain: CONV_2D(3x3, SAME, RELU) -> MAX_POOL_2D -> RESHAPE ->
    FULLY_CONNECTED -> SOFTMAX. Its intermediate scales are calibrated with a float forward
    pass on random inputs, so that the chain neither saturates nor collapses."""
    b = _Builder(rng)
    x = b.activation("input", (1, 8, 8, 3))
    wt = b.weights("conv/weights", (4, 3, 3, 3), weight_bits, 0)
    fw = b.weights("fc/weights", (10, 64), weight_bits, None if weight_bits == 4 else 0)
    # Float forward pass on a few random int8 inputs.
    xs = _real(b, x, rng.integers(-128, 128, size=(4, 8, 8, 3)))
    kernel = _real(b, wt, b.tensors[wt].data)  # [out, 3, 3, in]
    padded = np.pad(xs, ((0, 0), (1, 1), (1, 1), (0, 0)))
    conv = sum(np.einsum("nhwc,oc->nhwo", padded[:, i:i + 8, j:j + 8, :], kernel[:, i, j, :])
               for i in range(3) for j in range(3))
    s1 = float(np.abs(conv).max()) / 127
    conv_bias = b.bias("conv/bias", x, wt, 4, s1 * 10)
    conv = np.maximum(conv + _real(b, conv_bias, b.tensors[conv_bias].data), 0)
    pooled = conv.reshape(4, 4, 2, 4, 2, 4).max(axis=(2, 4)).reshape(4, 64)
    c = b.activation("conv", (1, 8, 8, 4), lo=0.0, hi=float(conv.max()))
    b.op("CONV_2D", [x, wt, conv_bias], c, padding="SAME", stride_w=1, stride_h=1,
         fused_activation_function="RELU")
    p = b.like("pool", (1, 4, 4, 4), c)
    b.op("MAX_POOL_2D", [c], p, padding="VALID", stride_w=2, stride_h=2, filter_width=2,
         filter_height=2, fused_activation_function="NONE")
    r = b.like("flatten", (1, 64), p)
    b.op("RESHAPE", [p, b.const_int32("flatten/shape", [1, 64])], r, new_shape=[1, 64])
    raw = pooled @ _real(b, fw, b.tensors[fw].data).T
    fc_bias = b.bias("fc/bias", r, fw, 10, values=-raw.mean(axis=0))  # centres the logits
    logits = raw - raw.mean(axis=0)
    y_logits = b.activation("logits", (1, 10), lo=float(logits.min()), hi=float(logits.max()))
    b.op("FULLY_CONNECTED", [r, fw, fc_bias], y_logits, fused_activation_function="NONE")
    y = b.activation("probs", (1, 10), scale=1.0 / 256, zero_point=-128)
    # beta scales the logits into a range where softmax is neither flat nor one-hot.
    beta = float(np.float32(4.0 / max(np.abs(logits).max(), 1e-3)))  # as stored (float32)
    b.op("SOFTMAX", [y_logits], y, beta=beta)
    return b.model([x], [y], f"conv_pool_fc int{weight_bits}")


# Left shifts of the output stage: TFLM's QuantizeMultiplier gives shift = s for a real
# multiplier in [2^(s-1), 2^s); LEFT_SHIFTS are the ones the fast kernels shift the accumulator by.
LEFT_SHIFTS = (1, 2, 3, 4)
SHIFT_CYCLE = (1, 2, 1, 3, 1, 2, 1, 4)


def left_shift(rng, kind="conv", weight_bits=8, per_channel=True, kernel=1, cin=8,
               activation="NONE") -> Model:
    """A CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED whose requantization multipliers are all
    above 1 (a left shift of 1 to 4 bits, cycling over the channels; one multiplier for all
    with per_channel=False) and whose outputs are mostly not clamped: each output channel has
    two or three weights of +-1 (the others 0), so that the accumulator of full-range random
    inputs stays within a few hundred, and times 1 to 12 lands inside int8 for many inputs."""
    b = _Builder(rng)
    if kind == "fully_connected":
        in_shape, cout = (1, cin), int(rng.integers(8, 17))
        w_shape, axis, fan = (cout, cin), 0, cin
    elif kind == "depthwise":
        h, w = (int(v) for v in rng.integers(3, 8, size=2))
        in_shape, cout = (1, h, w, cin), cin
        w_shape, axis, fan = (1, kernel, kernel, cin), 3, kernel * kernel
    else:
        h, w = (int(v) for v in rng.integers(3, 8, size=2))
        in_shape, cout = (1, h, w, cin), int(rng.integers(3, 13))
        w_shape, axis, fan = (cout, kernel, kernel, cin), 0, kernel * kernel * cin
    x = b.activation("input", in_shape)
    s_in = float(b.tensors[x].scale[0])
    s_out = s_in * float(rng.uniform(0.02, 0.2))
    channels = cout if per_channel else 1
    # half the channels shift by 1, a quarter by 2, an eighth each by 3 and 4: the larger the
    # multiplier, the more outputs clamp (about 1 / multiplier of them stay inside)
    # (one multiplier for all channels: a shift of 1, which leaves most outputs inside)
    start = int(rng.integers(8)) if per_channel else 0
    shifts = np.array([SHIFT_CYCLE[(start + c) % 8] for c in range(channels)])
    reals = np.exp2(shifts - 1) * rng.uniform(1.0, 1.5, size=channels)
    w_scales = (reals * s_out / s_in).astype(np.float32)
    taps = np.zeros((cout, fan), dtype=np.int8)  # one row of filter taps per output channel
    for c in range(cout):
        # a third tap (the input zero point no longer cancels) on some shift-1 channels
        third = shifts[c % channels] == 1 and rng.integers(2) == 1
        count = min(fan, 3 if third else 2)
        values = [1, -1, int(rng.choice([-1, 1]))][:count]
        taps[c, rng.choice(fan, size=count, replace=False)] = values
    # channels first (CONV_2D, FULLY_CONNECTED) or last (DEPTHWISE_CONV_2D)
    q = (taps.T if axis == 3 else taps).reshape(w_shape)
    wt = b.add(Tensor("weights", w_shape, "int8" if weight_bits == 8 else "int4",
                      scale=w_scales, zero_point=np.zeros(channels, dtype=np.int64),
                      quantized_dimension=axis, data=q))
    bias_scales = intmath.bias_scales(s_in, w_scales)
    bias = b.add(Tensor("bias", (cout,), "int32", scale=bias_scales,
                        zero_point=np.zeros(channels, dtype=np.int64),
                        data=rng.integers(-20, 21, size=cout).astype(np.int32)))
    zero_point = int(rng.integers(-20, 21))
    if kind == "fully_connected":
        y = b.activation("output", (1, cout), scale=s_out, zero_point=zero_point)
        b.op("FULLY_CONNECTED", [x, wt, bias], y, fused_activation_function=activation,
             keep_num_dims=False)
    else:
        oh, ow = (_spatial(n, kernel, 1, 1, "SAME") for n in (h, w))
        y = b.activation("output", (1, oh, ow, cout), scale=s_out, zero_point=zero_point)
        options = dict(padding="SAME", stride_w=1, stride_h=1, dilation_w_factor=1,
                       dilation_h_factor=1, fused_activation_function=activation)
        if kind == "depthwise":
            options["depth_multiplier"] = 1
        b.op("DEPTHWISE_CONV_2D" if kind == "depthwise" else "CONV_2D", [x, wt, bias], y,
             **options)
    return b.model([x], [y], f"left_shift {kind} int{weight_bits} k{kernel} cin{cin} "
                             f"{'per-channel' if per_channel else 'per-tensor'} {activation}")


def mul(rng, activation="NONE", broadcast=False) -> Model:
    """MUL of two inputs with their own scales; `broadcast` makes the second [1, 1, 1, c], as
    a squeeze-and-excitation block scales a feature map per channel."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 9)))
    x1 = b.activation("input_a", shape)
    x2 = b.activation("input_b", (1, 1, 1, shape[3]) if broadcast else shape)
    (lo1, hi1), (lo2, hi2) = b.span(x1), b.span(x2)
    corners = [lo1 * lo2, lo1 * hi2, hi1 * lo2, hi1 * hi2]
    # a product range a little narrower than the extremes: most outputs inside, some clamped
    factor = rng.uniform(0.3, 0.8)
    y = b.activation("output", shape, lo=min(corners) * factor, hi=max(corners) * factor)
    b.op("MUL", [x1, x2], y, fused_activation_function=activation)
    return b.model([x1, x2], [y], f"mul {activation}{' broadcast' if broadcast else ''}")


def _unary(rng, kind, out=None, span=None, **options) -> Model:
    """A one-input element-wise op on a random 4-D (or 2-D) tensor; `out` fixes the output's
    (scale, zero point), else `span(lo, hi)` maps the input's real range to the output's
    (jittered, so that some outputs clamp)."""
    b = _Builder(rng)
    rank4 = bool(rng.integers(0, 2))
    shape = ((1, int(rng.integers(2, 7)), int(rng.integers(2, 7)), int(rng.integers(1, 9)))
             if rank4 else (1, int(rng.integers(8, 40))))
    lo = -rng.uniform(0.5, 10.0)
    x = b.activation("input", shape, lo=lo, hi=-lo * rng.uniform(0.5, 2.0))
    if out is None:
        lo, hi = span(*b.span(x))
        jitter = rng.uniform(0.7, 1.2)
        y = b.activation("output", shape, lo=lo * jitter, hi=hi * jitter)
    else:
        y = b.activation("output", shape, scale=out[0], zero_point=out[1])
    b.op(kind, [x], y, **options)
    return b.model([x], [y], f"{kind.lower()} {options or ''}".strip())


def leaky_relu(rng, alpha=None) -> Model:
    alpha = float(np.float32(rng.uniform(0.01, 0.5) if alpha is None else alpha))
    return _unary(rng, "LEAKY_RELU", span=lambda lo, hi: (alpha * lo - 0.1 * hi, hi),
                  alpha=alpha)


def logistic(rng) -> Model:
    return _unary(rng, "LOGISTIC", out=(1 / 256, -128))


def tanh(rng) -> Model:
    return _unary(rng, "TANH", out=(1 / 128, 0))


def hard_swish(rng) -> Model:
    """hard_swish's output spans [-0.375, max(x, 0)]: a range near that, jittered."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9)))
    hi_in = rng.uniform(0.5, 12.0)
    x = b.activation("input", shape, lo=-rng.uniform(0.5, 8.0), hi=hi_in)
    y = b.activation("output", shape, lo=-0.375 * rng.uniform(0.5, 1.5),
                     hi=hi_in * rng.uniform(0.6, 1.2))
    b.op("HARD_SWISH", [x], y)
    return b.model([x], [y], "hard_swish")


def sub(rng, activation="NONE", broadcast=False) -> Model:
    """SUB of two inputs with their own scales; `broadcast` makes the second [1, 1, 1, c]."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 9)))
    x1 = b.activation("input_a", shape)
    x2 = b.activation("input_b", (1, 1, 1, shape[3]) if broadcast else shape)
    (lo1, hi1), (lo2, hi2) = b.span(x1), b.span(x2)
    factor = rng.uniform(0.6, 1.0)  # most differences inside, the extremes clamped
    y = b.activation("output", shape, lo=(lo1 - hi2) * factor, hi=(hi1 - lo2) * factor)
    b.op("SUB", [x1, x2], y, fused_activation_function=activation)
    return b.model([x1, x2], [y], f"sub {activation}{' broadcast' if broadcast else ''}")


def min_max(rng, kind="MAXIMUM", broadcast=False) -> Model:
    """MAXIMUM or MINIMUM; both inputs share the output's scale and zero point, as the
    converter writes them (it requantizes the inputs first)."""
    b = _Builder(rng)
    shape = (1, int(rng.integers(1, 8)), int(rng.integers(1, 8)), int(rng.integers(1, 9)))
    y = b.activation("output", shape)
    x1 = b.like("input_a", shape, y)
    x2 = b.like("input_b", (1, 1, 1, shape[3]) if broadcast else shape, y)
    b.op(kind, [x1, x2], y)
    return b.model([x1, x2], [y], f"{kind.lower()}{' broadcast' if broadcast else ''}")


def resize_nearest(rng, align_corners=False, half_pixel_centers=False, factor=None) -> Model:
    """RESIZE_NEAREST_NEIGHBOR by an integer `factor` (UpSampling2D) or to a random size."""
    b = _Builder(rng)
    h, w, c = int(rng.integers(1, 7)), int(rng.integers(1, 7)), int(rng.integers(1, 9))
    if factor is None:
        size = [int(rng.integers(1, 13)), int(rng.integers(1, 13))]
    else:
        size = [h * factor, w * factor]
    x = b.activation("input", (1, h, w, c))
    y = b.like("output", (1, *size, c), x)
    b.op("RESIZE_NEAREST_NEIGHBOR", [x, b.const_int32("size", size)], y,
         align_corners=align_corners, half_pixel_centers=half_pixel_centers)
    return b.model([x], [y], f"resize_nearest align={align_corners} half={half_pixel_centers} "
                             f"x{factor}")


def transpose_conv(rng, padding="SAME", stride=2, with_bias=True, activation="NONE",
                   kernel=None) -> Model:
    """TRANSPOSE_CONV (Conv2DTranspose): inputs [output_shape, weights, input, bias?], INT8
    per-channel weights [out_c, kh, kw, in_c]."""
    b = _Builder(rng)
    h, w = (int(v) for v in rng.integers(2, 7, size=2))
    cin, cout = int(rng.integers(1, 9)), int(rng.integers(1, 9))
    kh, kw = (kernel, kernel) if kernel else (int(v) for v in rng.integers(1, 5, size=2))
    if padding == "SAME":
        oh, ow = h * stride, w * stride
    else:
        oh, ow = (h - 1) * stride + kh, (w - 1) * stride + kw
    x = b.activation("input", (1, h, w, cin))
    wt = b.weights("weights", (cout, kh, kw, cin), 8, 0)
    # each output sums about kh * kw * cin / stride^2 products
    scale = b.output_scale(x, wt, max(1, kh * kw * cin // (stride * stride)))
    inputs = [b.const_int32("output_shape", [1, oh, ow, cout]), wt, x]
    if with_bias:
        inputs.append(b.bias("bias", x, wt, cout, magnitude=scale * 20))
    y = b.out_activation("output", (1, oh, ow, cout), scale)
    b.op("TRANSPOSE_CONV", inputs, y, padding=padding, stride_w=stride, stride_h=stride,
         fused_activation_function=activation)
    return b.model([x], [y], f"transpose_conv {padding} s{stride} k{kh}x{kw} "
                             f"{'bias' if with_bias else 'no bias'} {activation}")


def random_input(model: Model, rng: np.random.Generator, index: int = 0) -> np.ndarray:
    """A random input for model input `index`: int8 over the full range, or float32 values
    spanning a little beyond the quantized output range of a QUANTIZE."""
    tensor = model.tensors[model.inputs[index]]
    if tensor.dtype == "float32":
        return rng.uniform(-5.0, 5.0, size=tensor.shape).astype(np.float32)
    return rng.integers(-128, 128, size=tensor.shape, dtype=np.int64).astype(np.int8)


# (name, builder, options) for the sweeps; ids are "name-options".
CASES = [
    ("conv2d", conv2d, {"weight_bits": 8}),
    ("conv2d", conv2d, {"weight_bits": 4}),
    ("conv2d", conv2d, {"weight_bits": 8, "padding": "VALID", "stride": 2}),
    ("conv2d", conv2d, {"weight_bits": 4, "padding": "VALID", "stride": 2}),
    ("conv2d", conv2d, {"weight_bits": 8, "dilation": 2, "activation": "RELU6"}),
    ("conv2d", conv2d, {"weight_bits": 4, "dilation": 2, "activation": "RELU"}),
    ("conv2d", conv2d, {"weight_bits": 8, "per_channel": False, "activation": "RELU"}),
    ("conv2d", conv2d, {"weight_bits": 4, "per_channel": False}),
    ("conv2d", conv2d, {"weight_bits": 8, "stride": 2, "activation": "RELU6"}),
    ("conv2d", conv2d, {"weight_bits": 4, "stride": 2, "dilation": 2}),
    ("conv2d", conv2d, {"weight_bits": 8, "out_scale_factor": 0.002}),
    ("depthwise", depthwise, {"weight_bits": 8}),
    ("depthwise", depthwise, {"weight_bits": 4}),
    ("depthwise", depthwise, {"weight_bits": 8, "depth_multiplier": 2, "stride": 2,
                              "padding": "VALID"}),
    ("depthwise", depthwise, {"weight_bits": 4, "depth_multiplier": 2, "activation": "RELU6"}),
    ("depthwise", depthwise, {"weight_bits": 8, "dilation": 2, "activation": "RELU"}),
    ("depthwise", depthwise, {"weight_bits": 4, "stride": 2, "padding": "SAME"}),
    # 3x3, depth multiplier 1 (eq_depthwise3x3_pairs): channels not a multiple of 4, strides
    # 1 and 2, SAME and VALID, int4, odd and even widths, several bands of rows (plane rows of
    # 32 and 124 bytes), rows too long for the assembly's planes, an output one pixel wide, and
    # a clamp that is not the whole int8 range (C stage)
    ("depthwise", depthwise, {"kernel": 3, "cin": 7}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 12, "stride": 2, "padding": "VALID"}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 5, "stride": 2, "weight_bits": 4}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 8, "size": (70, 9)}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 4, "size": (20, 20)}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 4, "size": (34, 13), "stride": 2}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 6, "size": (6, 70)}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 4, "size": (7, 3), "padding": "VALID"}),
    ("depthwise", depthwise, {"kernel": 3, "cin": 9, "activation": "RELU6"}),
    ("fully_connected", fully_connected, {"weight_bits": 8, "per_channel": True}),
    ("fully_connected", fully_connected, {"weight_bits": 8, "per_channel": False}),
    ("fully_connected", fully_connected, {"weight_bits": 4, "per_channel": False}),
    ("fully_connected", fully_connected, {"weight_bits": 8, "per_channel": False,
                                          "activation": "RELU", "with_bias": False}),
    ("fully_connected", fully_connected, {"weight_bits": 4, "per_channel": False,
                                          "input_4d": True, "activation": "RELU6"}),
    ("fully_connected", fully_connected, {"weight_bits": 8, "out_scale_factor": 0.002}),
    ("add", add, {}),
    ("add", add, {"activation": "RELU"}),
    ("add", add, {"broadcast": True}),
    ("avg_pool", avg_pool, {}),
    ("avg_pool", avg_pool, {"padding": "SAME", "stride": 1, "size": 3}),
    ("max_pool", max_pool, {}),
    ("max_pool", max_pool, {"padding": "SAME", "stride": 1, "size": 3}),
    ("mean", mean, {"keep_dims": True}),
    ("mean", mean, {"keep_dims": False}),
    ("mean", mean, {"keep_dims": True, "same_qparams": True}),
    ("pad", pad, {}),
    ("reshape", reshape, {}),
    ("concatenation", concatenation, {"same_scales": True}),
    ("concatenation", concatenation, {"same_scales": False, "count": 3}),
    ("softmax", softmax, {}),
    ("softmax", softmax, {"beta": 0.5, "rank": 4}),
    ("softmax", softmax, {"beta": 2.0, "spread": 5.0}),  # diff_min about -60: cut-off taken
    ("softmax", softmax, {"beta": 8.0, "rank": 4, "spread": 4.0}),
    ("quantize", quantize, {}),
    ("requantize", requantize, {}),
    ("dequantize", dequantize, {}),
    # requantization multipliers above 1 (left shifts 1..4) on outputs that are not clamped
    ("left_shift", left_shift, {"kind": "conv"}),
    ("left_shift", left_shift, {"kind": "conv", "cin": 16, "weight_bits": 4}),
    ("left_shift", left_shift, {"kind": "conv", "kernel": 3, "cin": 3, "activation": "RELU6"}),
    ("left_shift", left_shift, {"kind": "conv", "kernel": 3, "cin": 5, "per_channel": False}),
    ("left_shift", left_shift, {"kind": "depthwise", "kernel": 3, "cin": 12}),
    ("left_shift", left_shift, {"kind": "depthwise", "kernel": 3, "cin": 7, "weight_bits": 4}),
    ("left_shift", left_shift, {"kind": "fully_connected", "cin": 24}),
    ("left_shift", left_shift, {"kind": "fully_connected", "cin": 9, "per_channel": False}),
    ("conv_pool_fc", conv_pool_fc, {"weight_bits": 8}),
    ("conv_pool_fc", conv_pool_fc, {"weight_bits": 4}),
    ("mul", mul, {}),
    ("mul", mul, {"broadcast": True}),
    ("mul", mul, {"activation": "RELU", "broadcast": True}),
    ("leaky_relu", leaky_relu, {}),
    ("leaky_relu", leaky_relu, {"alpha": 0.0}),
    ("logistic", logistic, {}),
    ("tanh", tanh, {}),
    ("hard_swish", hard_swish, {}),
    ("sub", sub, {}),
    ("sub", sub, {"broadcast": True}),
    ("sub", sub, {"activation": "RELU6"}),
    ("maximum", min_max, {"kind": "MAXIMUM"}),
    ("maximum", min_max, {"kind": "MAXIMUM", "broadcast": True}),
    ("minimum", min_max, {"kind": "MINIMUM"}),
    ("minimum", min_max, {"kind": "MINIMUM", "broadcast": True}),
    ("resize_nearest", resize_nearest, {"half_pixel_centers": True, "factor": 2}),
    ("resize_nearest", resize_nearest, {"factor": 3}),
    ("resize_nearest", resize_nearest, {"half_pixel_centers": True}),
    ("resize_nearest", resize_nearest, {"align_corners": True}),
    ("resize_nearest", resize_nearest, {}),
    ("transpose_conv", transpose_conv, {}),
    ("transpose_conv", transpose_conv, {"kernel": 3}),
    ("transpose_conv", transpose_conv, {"stride": 1}),
    ("transpose_conv", transpose_conv, {"padding": "VALID", "with_bias": False}),
    ("transpose_conv", transpose_conv, {"padding": "VALID", "stride": 1, "activation": "RELU"}),
    ("transpose_conv", transpose_conv, {"with_bias": False, "activation": "RELU6"}),
]
