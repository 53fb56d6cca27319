"""REx: data-free residual expansion of low-bit weights (Yvinec et al., "REx", 2023).

    qgraph, info = rex_quantize(model, bits=4, expansion=2, sparsity=0.5, calib_x=x)
    data = export_rex(qgraph, "model.tflite")      # bytes, also written atomically

A weight W is approximated by a sum of K quantized terms, each quantizing what the previous
ones left:  R_0 = W,  W_k = Q_b(R_k),  R_{k+1} = R_k − deq(W_k),  W ≈ Σ_k deq(W_k).
Orders k ≥ 1 are kept only for the fraction G (`sparsity`) of output channels with the largest
residual norm ‖R_k[:, c]‖₂ (group sparsity); the other channels of that order are zero.

Export as real parallel branches, so every runtime runs it unchanged: a layer L becomes K
convolutions (or dense layers) on L's input, `L/rex0` … `L/rex{K-1}`, summed by a chain of
ADD nodes; the last ADD takes L's name and L's fused activation, so nothing downstream changes.
Branch 0 carries the bias. The expansion is a rewrite of edgeq's folded Graph, so the ordinary
quantize → to_tflite_model path builds the graph; `rex_tflite_model` / `export_rex` then store
every branch tie-safe (below), which is what keeps LiteRT within contract 1.

Tie-safe branches. A branch has no activation, so it requantizes negative accumulators, and
there LiteRT (x86, no delegate) and TFLM disagree: in MultiplyByQuantizedMultiplier's final
rounding shift LiteRT's conv / depthwise / fully-connected kernels round a tie up (toward +∞),
TFLM rounds it away from zero, so a negative tie comes out 1 LSB higher in LiteRT. (An
interpreter with LiteRT's rounding in those three kernels reproduced LiteRT bit for bit on the
fmnist REx W4 K=2 model: no ADD, pool or other kernel differs.) Ties are frequent here: 4- and
2-bit weights have large scales, so s_in·s_w/s_out is large and the shift small (2 to 5 on
fmnist W4, a tie in 1 of 4 to 1 of 32 values), and each 1-LSB difference then grows through
the layers. On fmnist (2,000 test images) LiteRT against TFLM: W4 K=2 80 LSB and 98.9 % label
agreement with Genie-D calibration (benchmarks/zeroshot.py), 94 LSB and 98.5 % with 256 real
images; W2 K=3 158 LSB and 95.6 % (Genie-D), 210 LSB and 95.1 % (real). Behind a ReLU the same ties never show (negative
values clamp), which is why plain edgeq exports match. So each branch with zero point zp is
stored from -128 instead: its bias becomes b + N·s_out (N ≈ zp + 128 output steps, chosen per
channel so that the offset lands on the accumulator grid), which makes every accumulator that
is not clamped non-negative (a negative one clamps to -128 in both runtimes), and an ADD of the
int8 constant -N on the same scale writes the branch's original tensor. That ADD is exact in
every runtime (equal scales: multipliers 1/2 and 2^-19, nothing rounds); it leaves the integers
as they are and moves their meaning back by N steps. Cost: one ADD, one activation tensor and C
bytes of constant per branch (skipped where zp is already -128). Measured after the rewrite,
with either calibration: LiteRT == TFLM on all 2,000 images at W4 K=2, and at W2 K=3 except one
SOFTMAX output off by 1 LSB (LiteRT's own softmax rounding; labels 100 %). TFLM top-1 with
Genie-D 91.75 → 92.0 % (W4 K=2) and 85.9 → 86.9 % (W2 K=3), with real images 92.7 → 92.8 %
and 88.4 → 89.5 % (the tie rounding moves, no systematic change: see the RMS errors below). The .tflite
grows by 10 KB / 15 KB of tensor and op records (2 tensors and 1 op per branch), the TFLM arena
from 135,296 to 140,448 bytes (W4 K=2) and from 186,768 to 210,880 (W2 K=3, with each branch
added to the running sum as soon as it exists).

Activation quantization (needs calibration inputs, real or Genie-synthetic): every branch output
gets its own int8 (scale, zero point) from its observed min/max, and each ADD requantizes the
sum. Branch 0 spans the whole pre-activation range, so its int8 rounding is about one output
LSB; higher orders have small ranges and fine steps. The error therefore falls with K until it
reaches that activation floor (≈ the 8-bit error of the layer). Measured on the 7-layer test
model of tests/test_rex.py (every layer expanded, G = 1, RMS error of the dequantized int8
output of edgeq's interpreter against the float model, 400 held-out random inputs, tie-safe
export; the plain one is within ±3 %):

    W4: K=1 0.0254, K=2 0.0018, K=3 0.0020   (K=3 is at the activation floor)
    W2: K=1 0.0504, K=2 0.0285, K=3 0.0260   (W2 orders 1 and 2 have wide ranges, so their
                                              own int8 rounding eats most of the gain)

so beyond 4 bits × 2 orders extra orders buy nothing while activations stay at 8 bits.

Size: the branches are stored dense, at the layer's width: the channels an order leaves out
hold zero weights. G therefore trades accuracy (which channels get more orders) but not yet
flash; the weight bytes are K× those of the layer (reported by `RexInfo`). Storing only the
selected channels needs a channel-split export (a smaller conv + CONCATENATION + permuted
consumers), not done yet.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..export import bit_plan, quantize_minmax, to_tflite_model, write_atomically
from ..graph import Graph, Node, capture, mark_blocks, validate
from ..tflite.model import Model, Op, Tensor
from . import grid
from .sim import QuantizedGraph, QuantLayer, output_channels, quantize_layer

STORED_BITS = {8: 8, 4: 4, 3: 4, 2: 4}


@dataclass
class RexInfo:
    bits: int
    expansion: int
    sparsity: float
    layers: dict[str, dict] = field(default_factory=dict)  # per expanded layer

    @property
    def weight_bytes(self) -> float:
        return float(sum(v["bytes"] for v in self.layers.values()))

    def to_dict(self) -> dict:
        return {"bits": self.bits, "expansion": self.expansion, "sparsity": self.sparsity,
                "weight_bytes": self.weight_bytes, "layers": self.layers}


def _flat_to_kernel(node: Node, flat: np.ndarray) -> np.ndarray:
    return flat.reshape(node.weights["kernel"].shape)


def expand_weights(node: Node, bits: int, expansion: int, sparsity: float
                   ) -> list[QuantLayer]:
    """The K quantized orders of one node's kernel (Keras layout), order 0 first. Orders ≥ 1
    cover the ceil(G·C) output channels with the largest residual norm; the rest are zero."""
    if expansion < 1:
        raise DataError(f"expansion order {expansion} for layer {node.name!r}",
                        "use an expansion of 1 (plain quantization) or more")
    if not 0.0 < sparsity <= 1.0:
        raise DataError(f"sparsity {sparsity} for layer {node.name!r} is not in (0, 1]",
                        "give the fraction of output channels that get the higher orders")
    residual = output_channels(node).astype(np.float64)  # (rest, channels)
    channels = residual.shape[1]
    keep = max(1, int(np.ceil(sparsity * channels)))
    orders = []
    for k in range(expansion):
        part = residual.copy()
        if k > 0 and keep < channels:
            norms = np.linalg.norm(residual, axis=0)
            dropped = np.argsort(-norms, kind="stable")[keep:]
            part[:, dropped] = 0.0
        kernel = _flat_to_kernel(node, part.astype(np.float32))
        layer = quantize_layer(node, bits, kernel)
        if k > 0:
            layer = dataclasses.replace(layer, bias=np.zeros_like(layer.bias))
        orders.append(layer)
        residual = residual - output_channels(
            Node(node.name, node.kind, [], {}, {"kernel": layer.dequantized(node)}))
    return orders


def expand_graph(graph: Graph, plan: dict[str, int], expansion: int, sparsity: float
                 ) -> tuple[Graph, dict[str, QuantLayer], dict[str, int], RexInfo]:
    """The rewritten graph: every layer whose planned width is below 8 bits becomes K branches
    summed by ADDs. Returns (graph, branch layers by node name, new bit plan, info). The
    branches' float kernels are their dequantized orders, so the float graph observes the
    ranges of what the integer model computes."""
    nodes: list[Node] = []
    layers: dict[str, QuantLayer] = {}
    new_plan: dict[str, int] = {}
    info = RexInfo(min(plan.values(), default=8), expansion, sparsity)
    for node in graph.nodes:
        bits = plan.get(node.name)
        if bits is None or bits >= 8 or expansion == 1:
            nodes.append(dataclasses.replace(node, inputs=list(node.inputs),
                                             attrs=dict(node.attrs)))
            if bits is not None:
                new_plan[node.name] = bits
            continue
        orders = expand_weights(node, bits, expansion, sparsity)
        total = None
        for k, layer in enumerate(orders):
            # each branch is added as soon as it exists: fewer branch tensors live at once
            name = f"{node.name}/rex{k}"
            attrs = {**node.attrs, "activation": "NONE"}
            weights = {"kernel": layer.dequantized(node), "bias": layer.bias}
            nodes.append(Node(name, node.kind, list(node.inputs), attrs, weights,
                              node.output_shape))
            layers[name] = layer
            new_plan[name] = bits
            if total is None:
                total = name
                continue
            last = k == expansion - 1
            sum_name = node.name if last else f"{node.name}/rex_sum{k}"
            activation = node.attrs.get("activation", "NONE") if last else "NONE"
            nodes.append(Node(sum_name, "add", [total, name], {"activation": activation},
                              {}, node.output_shape))
            total = sum_name
        approx = sum(output_channels(Node(node.name, node.kind, [], {},
                                          {"kernel": o.dequantized(node)})) for o in orders)
        flat = output_channels(node)
        err = float(np.linalg.norm(flat - approx) / max(np.linalg.norm(flat), 1e-30))
        size = flat.size * STORED_BITS[bits] / 8 * expansion
        info.layers[node.name] = {"bits": bits, "orders": expansion,
                                  "channels": int(flat.shape[1]),
                                  "expanded_channels": int(max(1, np.ceil(sparsity * flat.shape[1]))),
                                  "relative_weight_error": err, "bytes": size}
    out = Graph(nodes, list(graph.inputs), list(graph.outputs), name=graph.name)
    validate(out)
    out.blocks = mark_blocks(out)
    return out, layers, new_plan, info


def rex_quantize(model, bits: int = 4, expansion: int = 2, sparsity: float = 1.0,
                 calib_x=None, edge_bits: int = 8, batch_size: int = 64
                 ) -> tuple[QuantizedGraph, RexInfo]:
    """Quantize a Keras model (or captured Graph) with REx: weights data-free, activations
    min-max on `calib_x` (real or synthetic inputs; required). Returns a QuantizedGraph that
    edgeq.export.to_tflite_model writes (2/3-bit layers stored in INT4 tensors) and the info."""
    graph = model if isinstance(model, Graph) else capture(model)
    if calib_x is None:
        raise DataError(
            f"REx on model {graph.name!r} needs calibration inputs for the activation ranges "
            "of its branches", "pass real images, or synthetic ones from "
            "edgeq.genie.synthesize (edgeq synth) for a data-free run")
    plan = bit_plan(graph, bits, edge_bits)
    expanded, layers, new_plan, info = expand_graph(graph, plan, expansion, sparsity)
    qg = quantize_minmax(expanded, calib_x, new_plan, batch_size)
    merged = dict(qg.layers)
    merged.update(layers)  # the exact orders (quantize_minmax re-derived them from floats)
    for name, layer in merged.items():
        merged[name] = QuantLayer(STORED_BITS[layer.bits], layer.scales, layer.qweight,
                                  qg.graph.node(name).weights["bias"].astype(np.float32))
    return QuantizedGraph(qg.graph, merged, dict(qg.act), new_plan), info


def rex_tflite_model(qgraph: QuantizedGraph, io_dtype: str = "int8") -> Model:
    """The REx model as edgeq's TFLite Model IR (branches as CONV_2D/DEPTHWISE_CONV_2D/
    FULLY_CONNECTED ops on one input, summed by ADD), with every branch stored tie-safe (see
    the module docstring); write it with edgeq.tflite.write. Plain
    edgeq.export.to_tflite_model(qgraph) gives the same graph without that rewrite: TFLM runs
    it identically, LiteRT does not."""
    model = to_tflite_model(qgraph, io_dtype)
    for base, orders in expanded_layers(qgraph.graph).items():
        for k in range(orders):
            name = f"{base}/rex{k}"
            _store_tie_safe(model, name, qgraph.layers[name].bias)
    return model


def expanded_layers(graph: Graph) -> dict[str, int]:
    """Expanded layer name -> its number of orders, found by expand_graph's branch names."""
    names = {n.name for n in graph.nodes}
    found = {}
    for name in sorted(names):
        if name.endswith("/rex0"):
            base, orders = name[:-len("/rex0")], 1
            while f"{base}/rex{orders}" in names:
                orders += 1
            found[base] = orders
    return found


# ------------------------------------------------------------------- tie-safe branch storage

STORED_ZERO_POINT = -128  # branch outputs are stored from the bottom of the int8 range


def _accumulator_scales(model: Model, op: Op) -> np.ndarray:
    """s_in * s_w per output channel (float64 of the float32 scales, as the runtimes form
    the requantization multiplier)."""
    x, w = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]]
    channels = model.tensors[op.outputs[0]].shape[-1]
    s_w = np.asarray(w.scale, np.float32).astype(np.float64).reshape(-1)
    return float(np.float32(x.scale[0])) * np.broadcast_to(s_w, (channels,))


def _offset_bias(bias: np.ndarray, acc_scales: np.ndarray, out_scale: float, steps: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(int32 bias, output steps N per channel) with bias * s_acc ~= b + N * s_out, N near
    `steps`. N may differ from `steps` by a few so that the offset lands on the accumulator
    grid: with s_acc >= s_out (2-bit weights) a fixed N would leave up to s_acc / 2 of error
    in orders that have no bias at all. The error left is at most that of rounding b alone."""
    acc = np.asarray(acc_scales, np.float64)
    bias = np.asarray(bias, np.float64).reshape(-1)
    width = max(2, int(np.ceil(acc.max() / out_scale)))
    candidates = np.arange(max(0, steps - width), min(255, steps + width) + 1)
    wanted = bias[:, None] + candidates[None, :] * out_scale  # [channels, candidates]
    q = grid.round_half_away(wanted / acc[:, None])
    error = np.abs(q * acc[:, None] - wanted) + 1e-12 * np.abs(candidates - steps)[None, :]
    best = np.argmin(error, axis=1)
    rows = np.arange(len(bias))
    return (np.clip(q[rows, best], *grid.BIAS_RANGE).astype(np.int32),
            candidates[best].astype(np.int64))


def _store_tie_safe(model: Model, name: str, float_bias: np.ndarray) -> None:
    """Rewrite branch `name` so that it never requantizes a negative accumulator (see the
    module docstring): its conv gets the bias b + N * s_out (N ~= the distance of its zero
    point from -128, in output steps) and writes a new tensor with zero point -128; an ADD of
    the int8 constant -N (per channel, on the same scale: exact in every runtime, it leaves
    the integers as they are and moves their meaning back by N steps) writes the branch's
    original tensor, which the chain of ADDs reads as before."""
    index = {t.name: i for i, t in enumerate(model.tensors)}
    out = model.tensors[index[name]]
    steps = int(out.zero_point[0]) - STORED_ZERO_POINT
    if steps == 0:  # already stored from -128: negative accumulators clamp there
        return
    op = next(op for op in model.ops if op.outputs[0] == index[name])
    bias = model.tensors[op.inputs[2]]
    values, offsets = _offset_bias(float_bias, _accumulator_scales(model, op),
                                   float(out.scale[0]), steps)
    bias.data = values.reshape(bias.data.shape)
    stored, constant = len(model.tensors), len(model.tensors) + 1
    shape = (1,) * (len(out.shape) - 1) + (len(offsets),)
    model.tensors.append(Tensor(f"{name}/stored", out.shape, "int8",
                                np.array(out.scale, np.float32),
                                np.array([STORED_ZERO_POINT], np.int64)))
    model.tensors.append(Tensor(f"{name}/offset", shape, "int8",
                                np.array(out.scale, np.float32), np.array([127], np.int64),
                                data=(127 - offsets).astype(np.int8).reshape(shape)))
    op.outputs = [stored]
    model.ops.insert(model.ops.index(op) + 1,
                     Op("ADD", [stored, constant], [index[name]],
                        {"fused_activation_function": "NONE"}))


def export_rex(qgraph: QuantizedGraph, path=None, io_dtype: str = "int8") -> bytes:
    """The REx model's .tflite bytes (also written atomically to `path` when given)."""
    from ..tflite.write import write_model

    data = write_model(rex_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data
