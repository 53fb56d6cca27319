"""The quantized model, simulated in TensorFlow: what later engines (AdaRound/BRECQ, QGT)
optimize, and what the exported .tflite must agree with.

`QuantizedGraph` is the plain-data quantized model (integer weights, scales, activation
qparams); `SimModel` runs it with fake quantization that rounds, clamps and requantizes the way
the integer model does:

- weights: symmetric, per output channel (per tensor for dense, as TFLM needs for INT4 FC), at
  the node's bit width, rounded half away from zero like edgeq.quant.grid;
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

from ..errors import DataError
from ..graph import Graph, Node, apply_node, check_input
from . import grid

SOFTMAX_QPARAMS = (np.float32(1.0 / 256.0), -128)
ACT_QMIN, ACT_QMAX = -128, 127
# Ops whose output the TFLite integer kernels write without requantizing: they share their
# input's qparams (pools, pad and reshape copy or average int8 values as they are).
SAME_AS_INPUT = ("avg_pool", "max_pool", "pad", "reshape")


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
    graph: Graph
    layers: dict[str, QuantLayer]  # weighted node name -> its integer weights
    act: dict[str, tuple[np.float32, int]]  # tensor (node) name -> (scale, zero point)
    plan: dict[str, int] = field(default_factory=dict)  # weighted node name -> bits

    def input_scale(self, node: Node) -> np.float32:
        return self.act[node.inputs[0]][0]

    def quantized_bias(self, name: str) -> np.ndarray:
        node = self.graph.node(name)
        layer = self.layers[name]
        return grid.quantize_bias(layer.bias, self.input_scale(node), layer.scales)


def kernel_scale_shape(node: Node, count: int) -> tuple[int, ...]:
    """Shape that broadcasts `count` output-channel scales against the node's Keras kernel."""
    kernel = node.weights["kernel"]
    if count == 1:
        return (1,) * kernel.ndim
    if node.kind == "depthwise_conv2d":  # output channel c * multiplier + m
        return (1, 1, kernel.shape[2], kernel.shape[3])
    return (1,) * (kernel.ndim - 1) + (kernel.shape[-1],)


def output_channels(node: Node) -> np.ndarray:
    """The kernel as (everything else, output channels), output channels in TFLite order."""
    kernel = node.weights["kernel"]
    if node.kind == "depthwise_conv2d":
        return kernel.reshape(-1, kernel.shape[2] * kernel.shape[3])
    return kernel.reshape(-1, kernel.shape[-1])


def quantize_layer(node: Node, bits: int, kernel: np.ndarray | None = None) -> QuantLayer:
    """Min-max weight quantization of one node (per channel; per tensor for dense)."""
    kernel = node.weights["kernel"] if kernel is None else kernel
    flat = output_channels(Node(node.name, node.kind, [], {}, {"kernel": kernel}))
    axis = None if node.kind == "dense" else 1
    scales = grid.weight_scales(flat, bits, axis)
    q = grid.quantize_weights(flat, scales, bits, axis).reshape(kernel.shape)
    return QuantLayer(bits, scales, q, node.weights["bias"].astype(np.float32))


def activation_range(activation: str, scale: float, zero_point: int) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized: the fused ReLU/ReLU6 as an int8 clamp."""
    lo, hi = ACT_QMIN, ACT_QMAX
    if activation in ("RELU", "RELU6"):
        lo = max(lo, zero_point)
    if activation == "RELU6":
        hi = min(hi, zero_point + int(grid.round_half_away(6.0 / np.float32(scale))))
    return lo, hi


def assign_activation_qparams(graph: Graph, ranges: dict[str, tuple[float, float]]
                              ) -> dict[str, tuple[np.float32, int]]:
    """Activation (scale, zero point) per tensor from observed ranges, with the TFLite ties:
    pools/pad/reshape share their input's qparams and concatenation inputs share the output's
    (each tied group gets the union of its members' ranges); softmax outputs are 1/256, -128."""
    group = {n.name: n.name for n in graph.nodes}

    def root(name):
        while group[name] != name:
            name = group[name]
        return name

    for node in graph.nodes:
        tied = node.inputs if node.kind == "concat" else (
            node.inputs[:1] if node.kind in SAME_AS_INPUT else [])
        for other in tied:
            group[root(other)] = root(node.name)
    span: dict[str, tuple[float, float]] = {}
    for node in graph.nodes:
        if node.name not in ranges:
            raise DataError(f"no observed range for tensor {node.name!r}",
                            "observe ranges on the same graph before quantizing")
        lo, hi = ranges[node.name]
        r = root(node.name)
        old = span.get(r, (lo, hi))
        span[r] = (min(old[0], lo), max(old[1], hi))
    qparams = {}
    for node in graph.nodes:
        if node.kind == "softmax":
            qparams[node.name] = SOFTMAX_QPARAMS
        else:
            scale, zp = grid.activation_qparams(*span[root(node.name)])
            qparams[node.name] = (np.float32(scale), int(zp))
    for node in graph.nodes:
        if node.kind == "softmax" and sum(root(n.name) == root(node.name)
                                          for n in graph.nodes) > 1:
            raise DataError(f"softmax {node.name!r}: its output would have to share qparams "
                            "with another tensor", "do not concatenate, pool or reshape a "
                            "softmax output")
    return qparams


# --------------------------------------------------------------------------- TensorFlow side


def round_half_away(x):
    import tensorflow as tf

    return tf.sign(x) * tf.floor(tf.abs(x) + 0.5)


def round_ste(x):
    """Round half away from zero forward, identity backward."""
    import tensorflow as tf

    return x + tf.stop_gradient(round_half_away(x) - x)


def fake_quant(x, scale, zero_point, qmin, qmax):
    """Quantize to [qmin, qmax] and back (straight-through rounding; the clamp passes no
    gradient outside the range)."""
    import tensorflow as tf

    q = tf.clip_by_value(round_ste(x / scale) + zero_point, float(qmin), float(qmax))
    return (q - zero_point) * scale


class SimModel:
    """The simulated integer model. Variables: `kernels[name]` (float, initialized to the
    dequantized integer weights), `weight_scales[name]`, `act_scales[tensor]`; biases stay
    float constants quantized on the fly at s_in * s_w."""

    def __init__(self, qgraph: QuantizedGraph):
        import tensorflow as tf

        self.qgraph = qgraph
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

    def quantized_kernel(self, name: str):
        layer = self.qgraph.layers[name]
        qmin, qmax = grid.weight_qrange(layer.bits)
        return fake_quant(self.kernels[name], self.weight_scales[name], 0, qmin, qmax)

    def quantized_bias(self, name: str):
        import tensorflow as tf

        node = self.qgraph.graph.node(name)
        s_bias = self.act_scales[node.inputs[0]] * tf.reshape(self.weight_scales[name], [-1])
        return fake_quant(self.biases[name], s_bias, 0, *grid.BIAS_RANGE)

    def quantize_tensor(self, name: str, x, activation: str = "NONE"):
        zp = self.qgraph.act[name][1]
        scale = self.act_scales[name]
        lo, hi = activation_range(activation, float(scale.numpy()), zp)
        return fake_quant(x, scale, float(zp), lo, hi)

    def tensors(self, x) -> dict:
        """Every tensor of the simulated model (dequantized values) for one batch."""
        import tensorflow as tf

        graph = self.qgraph.graph
        values = {}
        for node in graph.nodes:
            if node.kind == "input":
                values[node.name] = self.quantize_tensor(node.name, tf.cast(x, tf.float32))
                continue
            inputs = [values[i] for i in node.inputs]
            weights = None
            if node.name in self.qgraph.layers:
                weights = {"kernel": self.quantized_kernel(node.name),
                           "bias": self.quantized_bias(node.name)}
            y = apply_node(node, inputs, weights, activation=False)
            values[node.name] = self.quantize_tensor(node.name, y,
                                                     node.attrs.get("activation", "NONE"))
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
            q = grid.quantize_weights(self.kernels[name].numpy() / self.weight_scales[name].numpy(),
                                      np.ones(1, np.float32), layer.bits, None)
            layers[name] = QuantLayer(layer.bits, scales, q, layer.bias)
        act = {t: (np.float32(self.act_scales[t].numpy()), zp)
               for t, (_, zp) in self.qgraph.act.items()}
        return QuantizedGraph(self.qgraph.graph, layers, act, dict(self.qgraph.plan))


def simulate(qgraph: QuantizedGraph, x, batch_size: int = 64, integer: bool = False):
    """Run the simulated quantized model on all samples of `x`: logits/probabilities (float),
    or the int8 output values with integer=True."""
    return SimModel(qgraph).run(x, batch_size, integer)
