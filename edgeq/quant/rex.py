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
quantize → to_tflite_model → write path (and its contract-1 tests) applies: the .tflite is just
a graph with more CONV_2D and ADD ops.

Activation quantization (needs calibration inputs, real or Genie-synthetic): every branch output
gets its own int8 (scale, zero point) from its observed min/max, and each ADD requantizes the
sum. Branch 0 spans the whole pre-activation range, so its int8 rounding is about one output
LSB; higher orders have small ranges and fine steps. The error therefore falls with K until it
reaches that activation floor (≈ the 8-bit error of the layer). Measured on the 7-layer test
model of tests/test_rex.py (every layer expanded, G = 1, RMS error of the dequantized int8
output of edgeq's interpreter against the float model, 64 random inputs):

    W4: K=1 0.0107, K=2 0.0018, K=3 0.0020   (K=3 is at the activation floor)
    W2: K=1 0.0404, K=2 0.0288, K=3 0.0132   (the weight error still dominates)

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
        branch_names = []
        for k, layer in enumerate(orders):
            name = f"{node.name}/rex{k}"
            attrs = {**node.attrs, "activation": "NONE"}
            weights = {"kernel": layer.dequantized(node), "bias": layer.bias}
            nodes.append(Node(name, node.kind, list(node.inputs), attrs, weights,
                              node.output_shape))
            layers[name] = layer
            new_plan[name] = bits
            branch_names.append(name)
        total = branch_names[0]
        for k in range(1, expansion):
            last = k == expansion - 1
            name = node.name if last else f"{node.name}/rex_sum{k}"
            activation = node.attrs.get("activation", "NONE") if last else "NONE"
            nodes.append(Node(name, "add", [total, branch_names[k]], {"activation": activation},
                              {}, node.output_shape))
            total = name
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


def rex_tflite_model(qgraph: QuantizedGraph, io_dtype: str = "int8"):
    """The REx model as edgeq's TFLite Model IR (branches as CONV_2D/DEPTHWISE_CONV_2D/
    FULLY_CONNECTED ops on one input, summed by ADD); write it with edgeq.tflite.write."""
    return to_tflite_model(qgraph, io_dtype)


def export_rex(qgraph: QuantizedGraph, path=None, io_dtype: str = "int8") -> bytes:
    """The REx model's .tflite bytes (also written atomically to `path` when given)."""
    from ..tflite.write import write_model

    data = write_model(rex_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data
