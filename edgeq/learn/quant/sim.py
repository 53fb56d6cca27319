"""The quantized model, simulated in TensorFlow: what later engines (AdaRound/BRECQ, QGT)
optimize, and what the exported .tflite must agree with.

`QuantizedGraph` is the plain-data quantized model (integer weights, scales, activation
qparams); `SimModel` runs it with fake quantization that rounds, clamps and requantizes the way
the integer model does:

- weights: symmetric, per output channel (per tensor for dense, as TFLM needs for INT4 FC), at
  the node's bit width, rounded half away from zero like edgeq.intmath;
- bias: int32 at scale s_in * s_w;
- activations: int8 asymmetric per tensor at every tensor the integer model materializes: the
  input, after each op with its fused ReLU/ReLU6 as the clamp in the quantized domain, after
  add, pools, pad, reshape, mean, concat; softmax output at scale 1/256, zero point -128.

Rounding uses a straight-through gradient, and weights, weight scales and activation scales are
tf.Variables, so gradient-based engines can train them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.learn import tiesafe
from edgeq.learn.graph import Graph, Node, apply_node, check_input

SOFTMAX_QPARAMS = (np.float32(1.0 / 256.0), -128)
# Ops whose int8 output qparams TFLite fixes (TFLM and LiteRT check them).
FIXED_QPARAMS = {"softmax": SOFTMAX_QPARAMS, "logistic": SOFTMAX_QPARAMS,
                 "tanh": (np.float32(1.0 / 128.0), 0)}
# Element-wise ops computed as their 256-entry int8 table (edgeq.intmath).
TABLE_KINDS = ("leaky_relu", "logistic", "tanh", "hard_swish")
ACT_QMIN, ACT_QMAX = -128, 127
# Ops whose forward values the exact simulation computes with TFLM's integer arithmetic.
INTEGER_KINDS = ("conv2d", "depthwise_conv2d", "dense", "add", "avg_pool", "global_avg_pool",
                 "softmax", "mul", "sub", "conv2d_transpose", *TABLE_KINDS)
# Ops whose output the TFLite integer kernels write without requantizing: they share their
# input's qparams (pools, pad and reshape copy or average int8 values as they are).
SAME_AS_INPUT = ("avg_pool", "max_pool", "pad", "reshape", "clip", "resize_nearest")
# Ops whose inputs share their output's qparams (the int8 kernels copy or compare stored
# values; the converter requantizes the inputs first).
SAME_AS_OUTPUT = ("concat", "maximum", "minimum")


@dataclass
class QuantLayer:
    """A weighted node's integer weights. `qweight` has the Keras kernel layout and int8 dtype
    (also for 2..4 bits); `scales` run along the output channels (length 1 = per tensor)."""

    bits: int
    scales: np.ndarray  # float32
    qweight: np.ndarray  # int8
    bias: np.ndarray  # float32, quantized with s_in * s_w at export

    def dequantized(self, node: Node) -> np.ndarray:
        return (self.qweight.astype(np.float32)
                * self.scales.reshape(kernel_scale_shape(node, len(self.scales))))


@dataclass
class QuantizedGraph:
    """The quantized model as plain data: the folded float graph, each weighted node's integer
    weights and scales, and every tensor's activation (scale, zero point).

    edgeq.learn.export.quantize_minmax makes one; an engine improves it, typically by
    `sim = SimModel(qgraph)`, optimizing `sim.kernels` / `sim.weight_scales` /
    `sim.act_scales` with tf.GradientTape on `sim(x)`, then `sim.to_qgraph()`; and
    edgeq.learn.export.to_tflite_model writes it. Biases stay float and are quantized with the
    current input and weight scales wherever they are used, so they always match."""

    graph: Graph
    layers: dict[str, QuantLayer]  # weighted node name -> its integer weights
    act: dict[str, tuple[np.float32, int]]  # tensor (node) name -> (scale, zero point)
    plan: dict[str, int] = field(default_factory=dict)  # weighted node name -> bits

    def input_scale(self, node: Node) -> np.float32:
        return self.act[node.inputs[0]][0]

    def quantized_bias(self, name: str) -> np.ndarray:
        node = self.graph.node(name)
        layer = self.layers[name]
        return intmath.quantize_bias(layer.bias, self.input_scale(node), layer.scales)


def kernel_scale_shape(node: Node, count: int) -> tuple[int, ...]:
    """Shape that broadcasts `count` output-channel scales against the node's Keras kernel."""
    kernel = node.weights["kernel"]
    if count == 1:
        return (1,) * kernel.ndim
    if node.kind == "depthwise_conv2d":  # output channel c * multiplier + m
        return (1, 1, kernel.shape[2], kernel.shape[3])
    if node.kind == "conv2d_transpose":  # Keras [kh, kw, out_c, in_c]
        return (1, 1, kernel.shape[2], 1)
    return (1,) * (kernel.ndim - 1) + (kernel.shape[-1],)


def output_channels(node: Node) -> np.ndarray:
    """The kernel as (everything else, output channels), output channels in TFLite order."""
    kernel = node.weights["kernel"]
    if node.kind == "depthwise_conv2d":
        return kernel.reshape(-1, kernel.shape[2] * kernel.shape[3])
    if node.kind == "conv2d_transpose":
        return kernel.transpose(0, 1, 3, 2).reshape(-1, kernel.shape[2])
    return kernel.reshape(-1, kernel.shape[-1])


def quantize_layer(node: Node, bits: int, kernel: np.ndarray | None = None) -> QuantLayer:
    """Min-max weight quantization of one node (per channel; per tensor for dense)."""
    kernel = node.weights["kernel"] if kernel is None else kernel
    flat = output_channels(Node(node.name, node.kind, [], {}, {"kernel": kernel}))
    axis = None if node.kind == "dense" else 1
    scales = intmath.weight_scales(flat, bits, axis)
    q = intmath.quantize_weights(flat, scales, bits, axis)
    if node.kind == "conv2d_transpose":  # back from (kh, kw, in_c) x out_c to Keras's layout
        kh, kw, out_c, in_c = kernel.shape
        q = q.reshape(kh, kw, in_c, out_c).transpose(0, 1, 3, 2)
    q = q.reshape(kernel.shape)
    return QuantLayer(bits, scales, q, node.weights["bias"].astype(np.float32))


# --------------------------------------------------------------------------- tie-safe layers
#
# A conv / depthwise / dense without a clamp at its zero point is exported tie-safe (stored
# from zero point -128 with bias offsets, so that LiteRT's x86 kernels round as TFLM's; see
# edgeq.learn.tiesafe). QuantizedGraph.act keeps the logical (scale, zp); the exporter and the
# exact simulation both apply tiesafe.plan and tiesafe.offsets, so they stay bit-exact.

def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized: the fused ReLU/ReLU6 as an int8 clamp."""
    lo, hi = ACT_QMIN, ACT_QMAX
    if activation in ("RELU", "RELU6"):
        lo = max(lo, zero_point)
    if activation == "RELU6":
        hi = min(hi, zero_point + int(intmath.round_half_away(6.0 / np.float32(scale))))
    return lo, hi


def tied_roots(graph: Graph) -> dict[str, str]:
    """Tensor name -> the representative of the group whose members share activation qparams
    in TFLite: pools/pad/reshape with their input, concatenation inputs with the output."""
    parent = {n.name: n.name for n in graph.nodes}

    def root(name):
        while parent[name] != name:
            name = parent[name]
        return name

    for node in graph.nodes:
        tied = node.inputs if node.kind in SAME_AS_OUTPUT else (
            node.inputs[:1] if node.kind in SAME_AS_INPUT else [])
        for other in tied:
            parent[root(other)] = root(node.name)
    return {name: root(name) for name in parent}


def assign_activation_qparams(graph: Graph, ranges: dict[str, tuple[float, float]]
                              ) -> dict[str, tuple[np.float32, int]]:
    """Activation (scale, zero point) per tensor from observed ranges, with the TFLite ties:
    pools/pad/reshape share their input's qparams and concatenation inputs share the output's
    (each tied group gets the union of its members' ranges); softmax outputs are 1/256, -128."""
    roots = tied_roots(graph)
    span: dict[str, tuple[float, float]] = {}
    for node in graph.nodes:
        if node.name not in ranges:
            raise DataError(f"no observed range for tensor {node.name!r}",
                            "observe ranges on the same graph before quantizing")
        lo, hi = ranges[node.name]
        r = roots[node.name]
        old = span.get(r, (lo, hi))
        span[r] = (min(old[0], lo), max(old[1], hi))
    clipped: dict[str, tuple[float, float]] = {}
    for node in graph.nodes:  # a clip fixes its group's range: the int8 saturation is the clip
        if node.kind == "clip":
            r, want = roots[node.name], (node.attrs["lo"], node.attrs["hi"])
            if clipped.setdefault(r, want) != want:
                raise DataError(f"clip {node.name!r}: its tensor is clipped twice differently",
                                "clip a tensor once")
            span[r] = want
    # a fixed-qparams output (softmax, logistic, tanh) gives its qparams to the pools, pads,
    # reshapes and clips that read it; anything else sharing them is an error
    fixed: dict[str, tuple[np.float32, int]] = {}
    for node in graph.nodes:
        if node.kind in FIXED_QPARAMS:
            members = [n for n in graph.nodes if roots[n.name] == roots[node.name]]
            if any(n is not node and not (n.kind in SAME_AS_INPUT and n.inputs[0] in
                                          {m.name for m in members}) for n in members):
                raise DataError(f"{node.kind} {node.name!r}: its output would have to share "
                                "qparams with another tensor", "do not concatenate or add a "
                                f"{node.kind} output to another tensor before requantizing it")
            fixed[roots[node.name]] = FIXED_QPARAMS[node.kind]
    qparams = {}
    for node in graph.nodes:
        if roots[node.name] in fixed:
            qparams[node.name] = fixed[roots[node.name]]
        else:
            scale, zp = intmath.activation_qparams(*span[roots[node.name]])
            qparams[node.name] = (np.float32(scale), int(zp))
    return qparams


# --------------------------------------------------------------------------- TensorFlow side


def round_half_away(x):
    import tensorflow as tf

    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def round_ste(x):
    """Round half away from zero forward, identity backward."""
    import tensorflow as tf

    return x + tf.stop_gradient(round_half_away(x) - x)


def fake_quant(x, scale, zero_point, qmin, qmax, zero_point_inside: bool = False):
    """Quantize to [qmin, qmax] and back (straight-through rounding; the clamp passes no
    gradient outside the range). TFLite rounds round(x / s) + zp after a requantizing op, but
    round(x / s + zp) in AVERAGE_POOL_2D, which averages the raw int8 values."""
    import tensorflow as tf

    if zero_point_inside:
        q = round_ste(x / scale + zero_point)
    else:
        q = round_ste(x / scale) + zero_point
    q = tf.clip_by_value(q, float(qmin), float(qmax))
    return (q - zero_point) * scale


def tf_multiply_by_quantized_multiplier(x, multiplier, shift):
    """intmath.multiply_by_quantized_multiplier (TFLM's double rounding) in TensorFlow int64 ops;
    multiplier and shift are numpy arrays broadcasting against x's last axis."""
    import tensorflow as tf

    shift = np.asarray(shift, np.int64)
    left = tf.constant(np.left_shift(np.int64(1), np.maximum(shift, 0)))
    right = tf.constant(np.maximum(-shift, 0))
    ab = x * left * tf.constant(np.asarray(multiplier, np.int64))
    nudge = tf.where(ab >= 0, tf.constant(1 << 30, tf.int64), tf.constant(1 - (1 << 30), tf.int64))
    total = ab + nudge
    high = tf.sign(total) * tf.bitwise.right_shift(tf.abs(total), tf.constant(31, tf.int64))
    mask = tf.bitwise.left_shift(tf.ones_like(right), right) - 1
    remainder = tf.bitwise.bitwise_and(high, mask)
    threshold = tf.bitwise.right_shift(mask, tf.ones_like(mask)) + tf.cast(high < 0, tf.int64)
    return tf.bitwise.right_shift(high, right) + tf.cast(remainder > threshold, tf.int64)


def integer_softmax(q: np.ndarray, input_scale: float, beta: float = 1.0) -> np.ndarray:
    """TFLM's int8 SOFTMAX (gemmlowp fixed-point exp and reciprocal, output 1/256, -128) on
    the last axis of int8 values held in an int64 array."""
    from edgeq import intmath

    multiplier, left_shift, diff_min = intmath.softmax_scaling(beta, np.float32(input_scale))
    rows = q.reshape(-1, q.shape[-1])
    diff = rows - rows.max(axis=1, keepdims=True)
    used = diff >= diff_min
    exps = intmath.exp_on_negative_values(
        intmath.srdhm(intmath.wrap_int32(diff << left_shift), multiplier), 5)
    sums = intmath.wrap_int32(np.where(used, intmath.rounding_divide_by_pot(exps, 12), 0).sum(axis=1))
    scale, bits_over_unit = intmath.reciprocal(sums, 12)
    exponent = bits_over_unit + 31 - 8
    probs = intmath.rounding_divide_by_pot(intmath.srdhm(scale[:, None], exps), exponent[:, None])
    out = np.where(used, np.clip(probs - 128, ACT_QMIN, ACT_QMAX), ACT_QMIN)
    return out.reshape(q.shape).astype(np.int64)


def exact_forward(approx, exact):
    """`exact` values forward, `approx`'s gradient backward. Written as exact + (approx -
    approx), which is exactly `exact` in floating point (approx + (exact - approx) is not
    always: equal int8 outputs, e.g. a two-class softmax at 0.5, then dequantize to different
    floats and the arg max no longer picks the first class as TFLM's does)."""
    import tensorflow as tf

    return tf.stop_gradient(tf.cast(exact, approx.dtype)) + (approx - tf.stop_gradient(approx))


class SimModel:
    """The simulated integer model. Variables: `kernels[name]` (float32, initialized to the
    dequantized integer weights), `weight_scales[name]`, `act_scales[tensor]`; biases stay
    constants quantized on the fly at s_in * s_w.

    `exact` (the default) computes the forward values of conv, depthwise, dense, add, average
    pool, mean and softmax with TFLM's integer arithmetic (int32 accumulator, fixed-point
    multiplier with double rounding, gemmlowp exp) and takes the gradient from the float path
    (straight-through), so the simulation is bit-exact with TFLM's reference kernels (max pool,
    pad, reshape and concatenation copy int8 values anyway). With exact=False every tensor is
    fake-quantized in float: faster, differentiable everywhere, but 1-LSB differences from
    rounding ties snowball through deep networks. `dtype` is the compute precision (float64
    keeps the int32 accumulators exact; float32 is about twice as fast for training).
    The exact path reads scales with .numpy(), so it runs eagerly (no tf.function)."""

    def __init__(self, qgraph: QuantizedGraph, dtype: str = "float64", exact: bool = True):
        import tensorflow as tf

        self.qgraph = qgraph
        self.exact = exact
        self.dtype = tf.as_dtype(dtype)
        graph = qgraph.graph
        self.kernels, self.weight_scales, self.biases = {}, {}, {}
        for name, layer in qgraph.layers.items():
            node = graph.node(name)
            shape = kernel_scale_shape(node, len(layer.scales))
            self.kernels[name] = tf.Variable(layer.dequantized(node), name=f"{name}/kernel")
            self.weight_scales[name] = tf.Variable(layer.scales.reshape(shape),
                                                   name=f"{name}/scale")
            self.biases[name] = tf.constant(layer.bias)
        self.act_scales = {t: tf.Variable(np.float32(s), name=f"{t}/act_scale")
                           for t, (s, _) in qgraph.act.items()}
        self._tie_safe = tiesafe.plan(graph, qgraph.act)

    def _cast(self, x):
        import tensorflow as tf

        return tf.cast(x, self.dtype)

    def quantized_kernel(self, name: str):
        layer = self.qgraph.layers[name]
        qmin, qmax = intmath.weight_qrange(layer.bits)
        return fake_quant(self._cast(self.kernels[name]), self._cast(self.weight_scales[name]),
                          0.0, qmin, qmax)

    def quantized_bias(self, name: str):
        """int32 bias on the grid s_in * s_w. The integer is rounded with the float32 product
        (as intmath.quantize_bias and the converter do) but scaled back with the exact product,
        which is what adding it to the int32 accumulator means."""
        import tensorflow as tf

        node = self.qgraph.graph.node(name)
        s_in = self.act_scales[node.inputs[0]]
        s_w = tf.reshape(self.weight_scales[name], [-1])
        s_bias32 = self._cast(s_in * s_w)
        q = tf.clip_by_value(round_ste(self._cast(self.biases[name]) / s_bias32),
                             *map(float, intmath.BIAS_RANGE))
        return q * (self._cast(s_in) * self._cast(s_w))

    def quantize_tensor(self, name: str, x, activation: str = "NONE",
                        zero_point_inside: bool = False):
        zp = self.qgraph.act[name][1]
        scale = self.act_scales[name]
        lo, hi = activation_range(activation, float(scale.numpy()), zp)
        return fake_quant(x, self._cast(scale), float(zp), lo, hi, zero_point_inside)

    def quantize_input(self, name: str, x):
        """TFLite's QUANTIZE divides in float32: round(x / s) + zp."""
        import tensorflow as tf

        zp = self.qgraph.act[name][1]
        x32 = tf.cast(x, tf.float32)
        q = tf.clip_by_value(round_ste(x32 / self.act_scales[name]) + zp, -128.0, 127.0)
        return (self._cast(q) - zp) * self._cast(self.act_scales[name])

    def _integer_output(self, node: Node, inputs: list, y):
        """The op's int8 output computed as the TFLM reference kernel does (int32 accumulator,
        fixed-point multiplier with double rounding), dequantized; the gradient is the float
        path's. Requires the scales to be what the integer model will use."""
        import tensorflow as tf

        s_out, zp = float(self.act_scales[node.name].numpy()), self.qgraph.act[node.name][1]
        lo, hi = activation_range(node.attrs.get("activation", "NONE"), s_out, zp)
        # The float path, clamped like the output, gives the gradient only.
        approx = tf.clip_by_value(y / s_out + zp, float(lo), float(hi))
        if node.kind == "global_avg_pool":
            q = self._integer_mean(node, inputs[0], y, zp)
        elif node.kind == "softmax":
            s_in, zp_in = self.qgraph.act[node.inputs[0]]
            q_in = np.round(inputs[0].numpy() / np.float64(self.act_scales[node.inputs[0]]
                                                           .numpy())).astype(np.int64) + zp_in
            q = tf.constant(integer_softmax(q_in, s_in))
        elif node.kind == "avg_pool":
            # TFLM sums the raw int8 values over the valid window and divides rounding half
            # away from zero; the window size varies at SAME-padded borders.
            s_in = float(self.act_scales[node.inputs[0]].numpy())
            count = self._pool_counts(node, inputs[0])
            total = tf.cast(tf.round(y / s_in * tf.cast(count, y.dtype)), tf.int64) + zp * count
            half = count // 2
            q = tf.where(total >= 0, (total + half) // count, -((-total + half) // count))
        elif node.kind in ("add", "sub"):
            q = self._integer_add(node, inputs, s_out, zp)
        elif node.kind == "mul":
            q = self._integer_mul(node, inputs, s_out, zp)
        elif node.kind in TABLE_KINDS:
            q = tf.constant(self._table(node, s_out, zp)[self._integer_input(node, inputs[0])
                                                         + 128].astype(np.int64))
        else:
            s_in = np.float64(self.act_scales[node.inputs[0]].numpy())
            s_w = self.weight_scales[node.name].numpy().reshape(-1).astype(np.float64)
            mult, shift = intmath.quantize_multipliers(s_in * s_w / np.float64(s_out))
            acc = tf.cast(tf.round(y / tf.constant(s_in * s_w, y.dtype)), tf.int64)
            storage = self._tie_safe.get(node.name)
            if storage is None:
                q = tf_multiply_by_quantized_multiplier(acc, mult, shift) + zp
            else:  # stored from -128 (edgeq.learn.tiesafe), read back as logical integers
                offsets, steps = tiesafe.offsets(self.biases[node.name].numpy(), s_in, s_w,
                                                 s_out, zp, storage.uniform)
                q = tf.clip_by_value(
                    tf_multiply_by_quantized_multiplier(acc + tf.constant(offsets), mult, shift)
                    + tiesafe.STORED_ZERO_POINT, ACT_QMIN, ACT_QMAX)
                # the restore ADD's -N per channel; zero with one N for all (softmax, fold)
                q = q + tf.constant(zp - tiesafe.STORED_ZERO_POINT - steps)
        q = tf.clip_by_value(q, lo, hi)
        return (exact_forward(approx, q) - zp) * s_out

    def _integer_mean(self, node: Node, x, y, zp: int):
        """TFLM's int8 MEAN over H and W: the centered int32 sum times a multiplier with
        1/count folded in (QuantizedMeanOrSum)."""
        import tensorflow as tf

        s_in = np.float64(self.act_scales[node.inputs[0]].numpy())
        s_out = np.float64(self.act_scales[node.name].numpy())
        count = int(x.shape[1]) * int(x.shape[2])
        multiplier, shift = intmath.quantize_multiplier(s_in / s_out)
        extra = min(count.bit_length() - 1, 32, 31 + shift)
        multiplier, shift = (multiplier << extra) // count, shift - extra
        total = tf.cast(tf.round(y * count / s_in), tf.int64)
        return tf_multiply_by_quantized_multiplier(total, multiplier, shift) + zp

    def _pool_counts(self, node: Node, x):
        import tensorflow as tf

        a = node.attrs
        ones = tf.ones(tf.concat([[1], tf.shape(x)[1:3], [1]], 0), tf.float64)
        kernel = tf.ones((*a["pool_size"], 1, 1), tf.float64)
        counts = tf.nn.conv2d(ones, kernel, [1, *a["strides"], 1], a["padding"])
        return tf.cast(tf.round(counts), tf.int64)

    def _integer_add(self, node: Node, inputs: list, s_out: float, zp: int):
        """TFLM's int8 ADD (SUB): inputs shifted left by 20, each rescaled to twice the larger
        input scale, summed (the second subtracted), rescaled to the output."""
        import tensorflow as tf

        scales = [np.float64(self.act_scales[i].numpy()) for i in node.inputs]
        if len(scales) != 2:
            raise DataError(f"add {node.name!r} has {len(scales)} inputs; TFLite ADD takes 2",
                            "split it into a chain of two-input Add layers")
        twice_max = 2 * max(scales)
        total = 0
        signs = (1, -1) if node.kind == "sub" else (1, 1)
        for x, s, sign in zip(inputs, scales, signs, strict=True):
            m, sh = intmath.quantize_multiplier(s / twice_max)
            q_in = tf.cast(tf.round(x / s), tf.int64) * (1 << 20)
            total = total + sign * tf_multiply_by_quantized_multiplier(q_in, m, sh)
        m, sh = intmath.quantize_multiplier(twice_max / ((1 << 20) * np.float64(s_out)))
        return tf_multiply_by_quantized_multiplier(total, m, sh) + zp

    def _integer_input(self, node: Node, x, position: int = 0) -> np.ndarray:
        """The int8 values of a node's input (dequantized on its grid) as an int64 array."""
        name = node.inputs[position]
        s, zp = np.float64(self.act_scales[name].numpy()), self.qgraph.act[name][1]
        return np.round(x.numpy().astype(np.float64) / s).astype(np.int64) + zp

    def _table(self, node: Node, s_out: float, zp: int) -> np.ndarray:
        s_in = np.float32(self.act_scales[node.inputs[0]].numpy())
        zp_in = self.qgraph.act[node.inputs[0]][1]
        if node.kind == "leaky_relu":
            return intmath.leaky_relu_table(s_in, zp_in, s_out, zp, node.attrs["alpha"])
        if node.kind == "logistic":
            return intmath.logistic_table(s_in, zp_in)
        if node.kind == "tanh":
            return intmath.tanh_table(s_in, zp_in)
        return intmath.hard_swish_table(s_in, zp_in, s_out, zp)

    def _integer_mul(self, node: Node, inputs: list, s_out: float, zp: int):
        """TFLM's int8 MUL: the product of the centered inputs requantized by s1 * s2 / s_out."""
        import tensorflow as tf

        (s1, z1), (s2, z2) = (self.qgraph.act[i] for i in node.inputs)
        s1, s2 = (float(np.float32(self.act_scales[i].numpy())) for i in node.inputs)
        product = ((self._integer_input(node, inputs[0], 0) - z1)
                   * (self._integer_input(node, inputs[1], 1) - z2))
        m, sh = intmath.quantize_multiplier(s1 * s2 / float(np.float32(s_out)))
        return tf_multiply_by_quantized_multiplier(tf.constant(product), m, sh) + zp

    def tensors(self, x) -> dict:
        """Every tensor of the simulated model (dequantized values) for one batch."""
        graph = self.qgraph.graph
        values = {}
        for node in graph.nodes:
            if node.kind == "input":
                values[node.name] = self.quantize_input(node.name, x)
                continue
            inputs = [values[i] for i in node.inputs]
            weights = None
            if node.name in self.qgraph.layers:
                weights = {"kernel": self.quantized_kernel(node.name),
                           "bias": self.quantized_bias(node.name)}
            y = apply_node(node, inputs, weights, activation=False)
            if self.exact and node.kind in INTEGER_KINDS:
                values[node.name] = self._integer_output(node, inputs, y)
                continue
            values[node.name] = self.quantize_tensor(
                node.name, y, node.attrs.get("activation", "NONE"),
                zero_point_inside=node.kind == "avg_pool")
        return values

    def __call__(self, x):
        values = self.tensors(x)
        outs = [values[o] for o in self.qgraph.graph.outputs]
        return outs[0] if len(outs) == 1 else outs

    def run(self, x, batch_size: int = 64, integer: bool = False):
        """Outputs for all samples as numpy (float, or the int8 values with integer=True)."""
        x = check_input(self.qgraph.graph, x)
        outputs = self.qgraph.graph.outputs
        collected: list[list[np.ndarray]] = [[] for _ in outputs]
        for start in range(0, len(x), batch_size):
            values = self.tensors(x[start:start + batch_size])
            for k, name in enumerate(outputs):
                v = values[name].numpy()
                if integer:
                    scale, zp = float(self.act_scales[name].numpy()), self.qgraph.act[name][1]
                    v = (np.round(v / scale) + zp).astype(np.int8)
                collected[k].append(v)
        arrays = [np.concatenate(c) for c in collected]
        return arrays[0] if len(arrays) == 1 else arrays

    def to_qgraph(self) -> QuantizedGraph:
        """The QuantizedGraph with the current variables' integer weights and scales (what an
        optimizing engine hands to the exporter)."""
        layers = {}
        for name, layer in self.qgraph.layers.items():
            scales = self.weight_scales[name].numpy().reshape(-1).astype(np.float32)
            q = intmath.quantize_weights(self.kernels[name].numpy() / self.weight_scales[name].numpy(),
                                      np.ones(1, np.float32), layer.bits, None)
            layers[name] = QuantLayer(layer.bits, scales, q, layer.bias)
        act = {t: (np.float32(self.act_scales[t].numpy()), zp)
               for t, (_, zp) in self.qgraph.act.items()}
        return QuantizedGraph(self.qgraph.graph, layers, act, dict(self.qgraph.plan))


def simulate(qgraph: QuantizedGraph, x, batch_size: int = 64, integer: bool = False,
             dtype: str = "float64"):
    """Run the simulated quantized model on all samples of `x`: logits/probabilities (float),
    or the int8 output values with integer=True."""
    return SimModel(qgraph, dtype).run(x, batch_size, integer)
