"""The quantized model node by node, for engines that work one layer or block at a time.

`node_forward` is edgeq.learn.quant.sim.SimModel's fake-quantized path (exact=False) for a single
node, in float32, with weights and scales that an engine may pass as TensorFlow variables:
weights on their integer grid, bias on the int32 grid s_in * s_w, every output requantized to
its int8 (scale, zero point) with the fused ReLU/ReLU6 as the clamp in the quantized domain.
It differs from the integer model only by rare 1-LSB rounding ties, so engines optimize what
will run; the final QuantizedGraph is checked bit-exact by SimModel / TFLM as before.

`Walker` runs the float graph and the quantized graph side by side over all calibration
samples, in topological order, keeping only the tensors later nodes still read: engines take
a block's cached quantized inputs and float targets from it, then hand back the block's new
weights and the walker computes the block's quantized outputs for the blocks after it.
"""

from __future__ import annotations

import numpy as np

from edgeq.learn.graph import Graph, Node, apply_node
from edgeq.learn.quant.sim import SOFTMAX_QPARAMS, QuantizedGraph, round_half_away, round_ste

ACT_QMIN, ACT_QMAX = -128.0, 127.0


def scale_of(qgraph: QuantizedGraph, scales: dict | None, tensor: str):
    """A tensor's activation scale: an engine's override (a tf.Variable) or the qgraph's."""
    if scales is not None and tensor in scales:
        return scales[tensor]
    return float(qgraph.act[tensor][0])


def requantize(y, scale, zero_point: int, activation: str = "NONE",
               zero_point_inside: bool = False):
    """Fake-quantize to int8 with the fused activation as the integer clamp (TFLite's
    CalculateActivationRangeQuantized); `scale` may be a tensor."""
    import tensorflow as tf

    lo = max(ACT_QMIN, float(zero_point)) if activation in ("RELU", "RELU6") else ACT_QMIN
    hi = ACT_QMAX
    if activation == "RELU6":
        hi = tf.minimum(ACT_QMAX, zero_point + round_half_away(6.0 / scale))
    q = round_ste(y / scale + zero_point) if zero_point_inside else round_ste(y / scale) + zero_point
    q = tf.clip_by_value(q, lo, hi)
    return (q - zero_point) * scale


def clamp(y, scale, zero_point: int, activation: str = "NONE"):
    """The output range the integer model can represent (the fused activation included),
    without rounding: what block reconstruction compares with the float model, since the
    device clips there too."""
    import tensorflow as tf

    lo = max(ACT_QMIN, float(zero_point)) if activation in ("RELU", "RELU6") else ACT_QMIN
    hi = ACT_QMAX
    if activation == "RELU6":
        hi = tf.minimum(ACT_QMAX, zero_point + round_half_away(6.0 / scale))
    return tf.clip_by_value(y, (lo - zero_point) * scale, (hi - zero_point) * scale)


def quantized_bias(bias, s_in, s_w):
    """The bias on its int32 grid s_in * s_w (straight-through rounding)."""
    step = s_in * s_w
    return round_ste(bias / step) * step


def node_forward(qgraph: QuantizedGraph, node: Node, inputs: list, kernel=None,
                 scales: dict | None = None, quantize_output: bool = True, bias=None,
                 weight_scales=None, activation: bool = True):
    """One node of the quantized model in TensorFlow (float32). `kernel` overrides the node's
    dequantized integer weights (e.g. AdaRound's soft weights), `bias` its float bias,
    `weight_scales` its weight scales (flat, for the bias grid), `scales` some activation
    scales. quantize_output=False gives the output clamped to the int8 range (fused
    activation included) but not rounded: what block reconstruction compares with the float
    model; adding activation=False gives the raw pre-activation output."""
    import tensorflow as tf

    if node.kind == "input":
        s, zp = scale_of(qgraph, scales, node.name), qgraph.act[node.name][1]
        q = tf.clip_by_value(round_ste(inputs[0] / s) + zp, ACT_QMIN, ACT_QMAX)
        return (q - zp) * s
    weights = None
    if node.name in qgraph.layers:
        layer = qgraph.layers[node.name]
        if kernel is None:
            kernel = tf.constant(layer.dequantized(node))
        s_w = tf.constant(layer.scales.astype(np.float32)) if weight_scales is None \
            else weight_scales
        b = tf.constant(layer.bias) if bias is None else bias
        weights = {"kernel": kernel,
                   "bias": quantized_bias(b, scale_of(qgraph, scales, node.inputs[0]), s_w)}
    act = node.attrs.get("activation", "NONE")
    y = apply_node(node, inputs, weights, activation=False)
    if not quantize_output:
        if not activation:
            return y
        if node.kind == "softmax":
            return y
        return clamp(y, scale_of(qgraph, scales, node.name), qgraph.act[node.name][1], act)
    if node.kind == "softmax":
        s, zp = SOFTMAX_QPARAMS
        return requantize(y, float(s), zp)
    return requantize(y, scale_of(qgraph, scales, node.name), qgraph.act[node.name][1],
                      act, zero_point_inside=node.kind == "avg_pool")


def run_nodes(nodes: list[Node], values: dict[str, np.ndarray], fn, batch_size: int = 64
              ) -> dict[str, np.ndarray]:
    """Apply `fn(node, inputs)` to `nodes` in order over all samples, batch by batch; inputs
    come from `values` (numpy, all samples) or earlier nodes of the list."""
    import tensorflow as tf

    any_input = next(iter(values.values()))
    total = len(any_input)
    outs: dict[str, list[np.ndarray]] = {n.name: [] for n in nodes}
    for start in range(0, total, batch_size):
        batch = {}
        for node in nodes:
            ins = [batch[i] if i in batch else tf.constant(values[i][start:start + batch_size])
                   for i in node.inputs]
            batch[node.name] = fn(node, ins)
        for name in outs:
            outs[name].append(batch[name].numpy())
    return {name: np.concatenate(v) for name, v in outs.items()}


class Walker:
    """Float and quantized values of the graph's tensors over all calibration samples,
    computed segment by segment in topological order; a tensor is dropped once every node
    that reads it has been computed (graph outputs are kept)."""

    def __init__(self, qgraph: QuantizedGraph, x: np.ndarray, batch_size: int = 64,
                 keep_float: bool = True):
        self.qgraph = qgraph
        self.graph: Graph = qgraph.graph
        self.batch_size = batch_size
        self.keep_float = keep_float
        name = self.graph.inputs[0]
        node = self.graph.node(name)
        self.float = {name: x} if keep_float else {}
        self.quant = {name: np.concatenate([
            node_forward(qgraph, node, [x[i:i + batch_size]]).numpy()
            for i in range(0, len(x), batch_size)])}
        self.readers = {n.name: self.graph.uses(n.name) for n in self.graph.nodes}
        self.done = {name}

    def float_outputs(self, nodes: list[Node]) -> dict[str, np.ndarray]:
        """The float model's values of `nodes` (not stored)."""
        return run_nodes(nodes, self.float,
                         lambda n, ins: apply_node(n, ins) if n.kind != "input" else ins[0],
                         self.batch_size)

    def advance(self, nodes: list[Node], qgraph: QuantizedGraph | None = None,
                scales: dict | None = None) -> None:
        """Compute and store both values of `nodes` (the quantized ones with `qgraph`, which
        may carry an engine's new weights), then release what no later node reads."""
        qgraph = qgraph or self.qgraph
        if self.keep_float:
            self.float.update(self.float_outputs(nodes))
        self.quant.update(run_nodes(nodes, self.quant,
                                    lambda n, ins: node_forward(qgraph, n, ins, scales=scales),
                                    self.batch_size))
        for node in nodes:
            self.done.add(node.name)
            for i in node.inputs:
                self.readers[i] -= 1
        for name in list(self.quant):
            if self.readers.get(name, 0) <= 0 and name not in self.graph.outputs:
                self.quant.pop(name, None)
                self.float.pop(name, None)

    def external_inputs(self, nodes: list[Node]) -> list[str]:
        inside = {n.name for n in nodes}
        seen: list[str] = []
        for n in nodes:
            for i in n.inputs:
                if i not in inside and i not in seen:
                    seen.append(i)
        return seen

    def later_nodes(self, nodes: list[Node]) -> list[Node]:
        """The graph's nodes not computed yet and not in `nodes` (topological order)."""
        inside = {n.name for n in nodes}
        return [n for n in self.graph.nodes if n.name not in self.done and n.name not in inside]
