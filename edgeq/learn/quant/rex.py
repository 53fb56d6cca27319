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
quantize → to_tflite_model path builds and writes it; to_tflite_model stores every branch
tie-safe (below, and edgeq.learn.tiesafe), which is what makes LiteRT give TFLM's integers.
`rex_tflite_model` / `export_rex` are that path under REx's names.

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
values clamp), which is why plain edgeq exports match. So each branch, having no activation, is
stored from zero point -128 with bias offsets (edgeq.learn.tiesafe, shared with every other
export: there a branch is restored by an int8 ADD of -N, its reader being the summing ADD).
Cost: one ADD, one activation tensor and a constant per branch (skipped where zp is already
-128). Measured after the rewrite (REx's own first copy of it, which also let N move by up to 2
steps where s_in·s_w < s_out; now N moves only where s_in·s_w reaches s_out), with either
calibration: LiteRT == TFLM on all 2,000 images at W4 K=2, and at W2 K=3 except one
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

Size: orders k ≥ 1 are stored for their kept channels only where the layer can be channel-split
(see "channel-split storage" below: conv and dense layers whose readers can follow a channel
permutation; in MobileNet-style graphs every pointwise layer). There the weight bytes are
(1 + (K−1)·G)× the layer's; depthwise layers and layers that feed a residual ADD or the model
output keep dense orders (zero weights in the channels an order leaves out, K× the bytes). One
channel set serves all orders k ≥ 1 (chosen by the residual after order 0), so that it can be
stored contiguously. Measured on fmnist W4 K=2 with Genie-D ranges (7 pointwise layers split,
1,000 test images): G = 0.25 file 207,088 → 155,200 bytes, TFLM top-1 91.7 → 91.4 %; G = 0.5
207,072 → 171,632 bytes, 92.3 → 91.9 % (the kept channels' branch ranges change; differences of
3 and 4 images). TFLM == edgeq's interpreter == the generated C engine, LiteRT within 1 LSB (one
SOFTMAX output) and 100 % labels. `RexInfo` reports the bytes as stored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.errors import DataError
from edgeq.learn.export import bit_plan, quantize_minmax, to_tflite_model, write_atomically
from edgeq.learn.graph import Graph, Node, capture, mark_blocks, validate
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer, output_channels, quantize_layer
from edgeq.tflite.model import Model

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


def kept_channels(node: Node, bits: int, sparsity: float) -> np.ndarray:
    """The ceil(G·C) output channels (sorted) that get the orders k >= 1: those with the largest
    norm of the residual that order 0 leaves."""
    flat = output_channels(node).astype(np.float64)
    order0 = quantize_layer(node, bits)
    residual = flat - output_channels(
        Node(node.name, node.kind, [], {}, {"kernel": order0.dequantized(node)}))
    keep = max(1, int(np.ceil(sparsity * flat.shape[1])))
    return np.sort(np.argsort(-np.linalg.norm(residual, axis=0), kind="stable")[:keep])


def expand_weights(node: Node, bits: int, expansion: int, sparsity: float,
                   kept: np.ndarray | None = None) -> list[QuantLayer]:
    """The K quantized orders of one node's kernel (Keras layout), order 0 first. Orders ≥ 1
    cover the output channels `kept` (default: kept_channels, the ceil(G·C) with the largest
    residual after order 0; one set for all of them, so that a channel-split export can store
    them contiguously); the other channels are zero."""
    if expansion < 1:
        raise DataError(f"expansion order {expansion} for layer {node.name!r}",
                        "use an expansion of 1 (plain quantization) or more")
    if not 0.0 < sparsity <= 1.0:
        raise DataError(f"sparsity {sparsity} for layer {node.name!r} is not in (0, 1]",
                        "give the fraction of output channels that get the higher orders")
    residual = output_channels(node).astype(np.float64)  # (rest, channels)
    if kept is None:
        kept = kept_channels(node, bits, sparsity)
    dropped = np.setdiff1d(np.arange(residual.shape[1]), kept)
    orders = []
    for k in range(expansion):
        part = residual.copy()
        if k > 0:
            part[:, dropped] = 0.0
        kernel = _flat_to_kernel(node, part.astype(np.float32))
        layer = quantize_layer(node, bits, kernel)
        if k > 0:
            layer = dataclasses.replace(layer, bias=np.zeros_like(layer.bias))
        orders.append(layer)
        residual = residual - output_channels(
            Node(node.name, node.kind, [], {}, {"kernel": layer.dequantized(node)}))
    return orders


# ------------------------------------------------------------------ channel-split storage
#
# Orders k >= 1 of a layer with sparsity G < 1 are stored for their ceil(G·C) channels only.
# TFLite has no gather/scatter among the ops every runtime here supports, so the kept channels
# are made contiguous instead: the layer's output channels are permuted (kept first) and every
# reader adapts (a conv or dense permutes its kernel's input axis; a depthwise conv, pools, pad,
# global pooling, a flatten and concatenation pass the permutation on), which leaves the float
# function unchanged. The layer then becomes [kept part: K branches summed by ADDs] and
# [rest: order 0 with the layer's activation], joined by CONCATENATION (int8 concatenation is
# a copy when inputs and output share qparams, which edgeq assigns to concat groups anyway).
# A layer whose permutation would reach a model output, a softmax, a residual ADD (whose other
# input is not permuted alike) or another reshape stays dense. Depthwise layers stay dense:
# their channels follow their input's order, and selecting some would need a gather.


def _output_axis_permuted(node: Node, src: np.ndarray) -> Node:
    kernel = node.weights["kernel"]
    return dataclasses.replace(node, weights={"kernel": np.ascontiguousarray(kernel[..., src]),
                                              "bias": node.weights["bias"][src]})


def _reader_permuted(node: Node, src: dict[str, np.ndarray], shapes: dict[str, tuple]
                     ) -> tuple[Node, np.ndarray | None] | None:
    """(node adapted to inputs whose channels come permuted, permutation of its own output
    (None: in order)), or None when it cannot follow. src[name]: new channel i = old src[i]."""
    perms = [src.get(i) for i in node.inputs]
    first = next(p for p in perms if p is not None)
    kind = node.kind
    if kind in ("conv2d", "dense") and len(perms) == 1:
        kernel = node.weights["kernel"]
        axis = kernel.ndim - 2
        kernel = np.take(kernel, first, axis=axis)
        return dataclasses.replace(node, weights={**node.weights, "kernel": kernel}), None
    if kind == "depthwise_conv2d":
        m = node.attrs["depth_multiplier"]
        out = (first[:, None] * m + np.arange(m)[None, :]).reshape(-1)
        kernel = np.ascontiguousarray(node.weights["kernel"][:, :, first, :])
        return dataclasses.replace(node, weights={"kernel": kernel,
                                                  "bias": node.weights["bias"][out]}), out
    if kind in ("avg_pool", "max_pool", "pad", "global_avg_pool"):
        return node, first
    if kind == "add":
        if not all(p is not None and np.array_equal(p, first) for p in perms):
            return None
        return node, first
    if kind == "concat" and node.attrs["axis"] == len(node.output_shape):
        parts, offset = [], 0
        for name, perm in zip(node.inputs, perms, strict=True):
            width = shapes[name][-1]
            parts.append(offset + (perm if perm is not None else np.arange(width)))
            offset += width
        return node, np.concatenate(parts)
    if kind == "reshape" and len(node.inputs) == 1:
        shape = shapes[node.inputs[0]]
        flat = np.arange(int(np.prod(shape))).reshape(shape)[..., first].reshape(-1)
        if len(node.output_shape) == 1:
            return node, flat
        return None
    return None


def permute_output_channels(graph: Graph, name: str, src: np.ndarray) -> Graph | None:
    """A copy of `graph` computing the same function with node `name`'s output channels in
    the order `src` (new channel i = old channel src[i]), or None if a reader cannot follow."""
    shapes = {n.name: n.output_shape for n in graph.nodes}
    perms: dict[str, np.ndarray] = {}
    nodes = []
    for node in graph.nodes:
        if node.name == name:
            nodes.append(_output_axis_permuted(node, src))
            perms[name] = np.asarray(src)
            continue
        if not any(i in perms for i in node.inputs):
            nodes.append(node)
            continue
        adapted = _reader_permuted(node, perms, shapes)
        if adapted is None:
            return None
        node, out = adapted
        nodes.append(node)
        if out is not None:
            perms[node.name] = out
    if any(o in perms for o in graph.outputs):
        return None
    return dataclasses.replace(graph, nodes=nodes, inputs=list(graph.inputs),
                               outputs=list(graph.outputs), blocks=[])


def split_channels(graph: Graph, plan: dict[str, int], expansion: int, sparsity: float
                   ) -> tuple[Graph, dict[str, int]]:
    """The graph with the kept channels of every splittable expanded layer moved first, and
    {layer: number of kept channels} for those layers."""
    kept: dict[str, int] = {}
    if expansion == 1 or sparsity >= 1.0:
        return graph, kept
    for name, bits in plan.items():
        node = graph.node(name)
        if bits >= 8 or node.kind not in ("conv2d", "dense"):
            continue
        chosen = kept_channels(node, bits, sparsity)
        channels = node.weights["kernel"].shape[-1]
        if len(chosen) == channels:
            continue
        src = np.concatenate([chosen, np.setdiff1d(np.arange(channels), chosen)])
        permuted = permute_output_channels(graph, name, src)
        if permuted is not None:
            graph, kept[name] = permuted, len(chosen)
    return graph, kept


def _channel_slice(node: Node, layer: QuantLayer, name: str, channels: slice, bias: bool,
                   activation: str) -> tuple[Node, QuantLayer]:
    """Node `name` computing the output `channels` of `node` with `layer`'s integer weights."""
    scales = layer.scales if len(layer.scales) == 1 else layer.scales[channels]
    part = QuantLayer(layer.bits, scales, np.ascontiguousarray(layer.qweight[..., channels]),
                      layer.bias[channels] if bias else np.zeros_like(layer.bias[channels]))
    shape = (*node.output_shape[:-1], len(part.bias))
    sliced = Node(name, node.kind, list(node.inputs), {**node.attrs, "activation": activation},
                  {"kernel": part.qweight.astype(np.float32), "bias": part.bias}, shape)
    sliced.weights["kernel"] = part.dequantized(sliced)
    return sliced, part


def expand_graph(graph: Graph, plan: dict[str, int], expansion: int, sparsity: float
                 ) -> tuple[Graph, dict[str, QuantLayer], dict[str, int], RexInfo]:
    """The rewritten graph: every layer whose planned width is below 8 bits becomes K branches
    summed by ADDs (channel-split where it can be, see above). Returns (graph, branch layers by
    node name, new bit plan, info). The branches' float kernels are their dequantized orders, so
    the float graph observes the ranges of what the integer model computes."""
    graph, split = split_channels(graph, plan, expansion, sparsity)
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
        channels = node.output_shape[-1]
        kept = split.get(node.name, channels)
        orders = expand_weights(node, bits, expansion, sparsity,
                                np.arange(kept) if node.name in split else None)
        activation = node.attrs.get("activation", "NONE")
        summed = f"{node.name}/rex_kept" if node.name in split else node.name
        total = None
        for k, layer in enumerate(orders):
            # each branch is added as soon as it exists: fewer branch tensors live at once
            branch, part = _channel_slice(node, layer, f"{node.name}/rex{k}", slice(0, kept),
                                          k == 0, "NONE")
            nodes.append(branch)
            layers[branch.name], new_plan[branch.name] = part, bits
            if total is None:
                total = branch.name
                continue
            last = k == expansion - 1
            name = summed if last else f"{node.name}/rex_sum{k}"
            nodes.append(Node(name, "add", [total, branch.name],
                              {"activation": activation if last else "NONE"}, {},
                              branch.output_shape))
            total = name
        if node.name in split:  # order 0 alone for the other channels, then join them
            rest, part = _channel_slice(node, orders[0], f"{node.name}/rest",
                                        slice(kept, channels), True, activation)
            nodes.append(rest)
            layers[rest.name], new_plan[rest.name] = part, bits
            nodes.append(Node(node.name, "concat", [summed, rest.name],
                              {"axis": len(node.output_shape)}, {}, node.output_shape))
        approx = sum(output_channels(Node(node.name, node.kind, [], {},
                                          {"kernel": o.dequantized(node)})) for o in orders)
        flat = output_channels(node)
        err = float(np.linalg.norm(flat - approx) / max(np.linalg.norm(flat), 1e-30))
        stored = channels + (expansion - 1) * kept  # output channels stored, all orders
        info.layers[node.name] = {"bits": bits, "orders": expansion, "channels": int(channels),
                                  "expanded_channels": int(kept if node.name in split else
                                                           max(1, np.ceil(sparsity * channels))),
                                  "channel_split": node.name in split,
                                  "relative_weight_error": err,
                                  "bytes": flat.shape[0] * stored * STORED_BITS[bits] / 8}
    out = Graph(nodes, list(graph.inputs), list(graph.outputs), name=graph.name,
                input_range=graph.input_range)
    validate(out)
    out.blocks = mark_blocks(out)
    return out, layers, new_plan, info


def rex_quantize(model, bits: int = 4, expansion: int = 2, sparsity: float = 1.0,
                 calib_x=None, edge_bits: int = 8, batch_size: int = 64
                 ) -> tuple[QuantizedGraph, RexInfo]:
    """Quantize a Keras model (or captured Graph) with REx: weights data-free, activations
    min-max on `calib_x` (real or synthetic inputs; required). Returns a QuantizedGraph that
    edgeq.learn.export.to_tflite_model writes (2/3-bit layers stored in INT4 tensors) and the info."""
    graph = model if isinstance(model, Graph) else capture(model)
    if calib_x is None:
        raise DataError(
            f"REx on model {graph.name!r} needs calibration inputs for the activation ranges "
            "of its branches", "pass real images, or synthetic ones from "
            "edgeq.learn.synth.synthesize (edgeq synth) for a data-free run")
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
    FULLY_CONNECTED ops on one input, summed by ADD), every branch stored tie-safe: the same
    as edgeq.learn.export.to_tflite_model, which stores every layer without a clamp at its
    zero point that way (edgeq.learn.tiesafe); write it with edgeq.tflite.write."""
    return to_tflite_model(qgraph, io_dtype)


def export_rex(qgraph: QuantizedGraph, path=None, io_dtype: str = "int8") -> bytes:
    """The REx model's .tflite bytes (also written atomically to `path` when given)."""
    from edgeq.tflite.write import write_model

    data = write_model(rex_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data
