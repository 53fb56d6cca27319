"""QGT's search for compression bottlenecks.

`find_bottlenecks`: per weighted layer, the weight quantization error (relative
MSE, SQNR, mean distance in LSB) and the task-loss increase when that layer alone is quantized
(all others float, float activations); layers are ranked by loss increase, those well above
the rest are marked, and `suggest_plan` lifts each marked layer to the smallest wider width
that is no longer a bottleneck, as a {layer: bits} plan for edgeq.learn.export / edgeq.learn.quantize;
`mixed_plan` is that plan with the first and last layer kept at 8 bits (`--bits mixed`).
"""

from __future__ import annotations

import numpy as np

from edgeq.errors import DataError
from edgeq.learn.graph import Graph, Node, apply_node, check_input
from edgeq.learn.qgt.regularizer import WIDTHS, estimate_scales, grid_distance, on_grid


def _outputs_and_logits(graph: Graph, x, kernels: dict | None = None):
    """Probabilities of the graph's (single) output, with `kernels` {name: array} overriding
    the folded kernels; a final softmax is applied to logits when the graph has none."""
    import tensorflow as tf

    values = {graph.inputs[0]: tf.convert_to_tensor(x, tf.float32)}
    for node in graph.nodes:
        if node.kind == "input":
            continue
        weights = None
        if kernels and node.name in kernels:
            weights = {"kernel": kernels[node.name], "bias": node.weights["bias"]}
        values[node.name] = apply_node(node, [values[i] for i in node.inputs], weights)
    out = values[graph.outputs[0]]
    if graph.node(graph.outputs[0]).kind != "softmax":
        out = tf.nn.softmax(out, axis=-1)
    return out.numpy().astype(np.float64)


def probabilities(graph: Graph, x: np.ndarray, kernels: dict | None,
                   batch_size: int) -> np.ndarray:
    return np.concatenate([_outputs_and_logits(graph, x[i:i + batch_size], kernels)
                           for i in range(0, len(x), batch_size)])


def _loss(probs: np.ndarray, y: np.ndarray | None, reference: np.ndarray) -> float:
    """Cross-entropy with labels, else KL(reference ‖ probs)."""
    eps = 1e-12
    if y is not None:
        return float(-np.mean(np.log(probs[np.arange(len(y)), y] + eps)))
    return float(np.mean(np.sum(reference * (np.log(reference + eps) - np.log(probs + eps)),
                                axis=-1)))


def _calibration(calib, samples: int, seed: int):
    x = getattr(calib, "x", calib)
    y = getattr(calib, "y", None)
    x = np.asarray(x, np.float32)
    if len(x) == 0:
        raise DataError("bottleneck search got no calibration samples",
                        "pass a Dataset or an array of at least a few dozen inputs")
    if len(x) > samples:
        keep = np.sort(np.random.default_rng(seed).permutation(len(x))[:samples])
        x, y = x[keep], (None if y is None else np.asarray(y)[keep])
    return x, (None if y is None else np.asarray(y, np.int64))


def _resolve(model):
    """(graph, scales or None, plan or None) from a QGTResult, a Graph or a Keras model."""
    from edgeq.learn.graph import capture

    if hasattr(model, "graph") and hasattr(model, "scales"):
        return model.graph, model.scales, getattr(model, "plan", None)
    if isinstance(model, Graph):
        return model, None, None
    return capture(model), None, None


def find_bottlenecks(model, calib, bits: int | dict[str, int] = 2, *, scale_mode: str = "mse",
                     samples: int = 512, batch_size: int = 128, ratio: float = 3.0,
                     min_increase: float = 0.01, seed: int = 0) -> list[dict]:
    """Per weighted layer, quantized alone (everything else float): the weight error and the
    task-loss increase; ranked, bottlenecks marked, a higher width suggested for them.

    model: a Keras model, a captured Graph, or a QGTResult (its trained graph and grid steps).
    calib: an edgeq Dataset (cross-entropy on its labels) or an array of inputs (KL divergence
    from the float outputs). bits: one width for every layer (first and last included: whether
    they need more is what this measures) or a {layer: bits} plan.
    A layer is a bottleneck when its loss increase is at least `min_increase` and `ratio`
    times the median increase. Rows (dicts, best-ranked first): name, kind, params, bits,
    weight_rel_mse, sqnr_db, grid_distance_lsb, loss_increase, accuracy_drop (None without
    labels), rank, bottleneck, suggested_bits."""
    graph, learned, _ = _resolve(model)
    weighted = graph.weighted_nodes
    if isinstance(bits, dict):
        unknown = sorted(set(bits) - {n.name for n in weighted})
        if unknown:
            raise DataError(f"bit plan names layers the model does not have: {unknown}",
                            f"weighted layers are: {', '.join(n.name for n in weighted)}")
        plan = {n.name: int(bits.get(n.name, 8)) for n in weighted}
    else:
        plan = {n.name: int(bits) for n in weighted}
    x, y = _calibration(calib, samples, seed)
    x = check_input(graph, x)
    reference = probabilities(graph, x, None, batch_size)
    base_loss = _loss(reference, y, reference)
    base_acc = None if y is None else float(np.mean(reference.argmax(-1) == y))

    def measure(node: Node, b: int, scales: np.ndarray | None = None) -> dict:
        if scales is None or np.size(scales) == 0:
            scales = estimate_scales(node, b, scale_mode)
        kernel = node.weights["kernel"]
        q = on_grid(kernel, scales, node, b)
        probs = probabilities(graph, x, {node.name: q}, batch_size)
        err = float(np.sum((kernel.astype(np.float64) - q) ** 2))
        energy = float(np.sum(kernel.astype(np.float64) ** 2))
        return {"weight_rel_mse": err / max(energy, 1e-30),
                "sqnr_db": float(10 * np.log10(max(energy, 1e-30) / max(err, 1e-30))),
                "grid_distance_lsb": float(grid_distance(kernel, scales, node, b).mean()),
                "loss_increase": _loss(probs, y, reference) - base_loss,
                "accuracy_drop": None if y is None else
                base_acc - float(np.mean(probs.argmax(-1) == y))}

    rows = []
    for node in weighted:
        b = plan[node.name]
        scales = learned.get(node.name) if learned and plan_matches(model, node.name, b) else None
        rows.append({"name": node.name, "kind": node.kind,
                     "params": int(node.weights["kernel"].size), "bits": b,
                     **measure(node, b, scales)})
    threshold = max(min_increase, ratio * float(np.median([r["loss_increase"] for r in rows])))
    rows.sort(key=lambda r: -r["loss_increase"])
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
        row["bottleneck"] = row["loss_increase"] >= threshold
        row["suggested_bits"] = row["bits"]
        if row["bottleneck"]:
            node = graph.node(row["name"])
            wider = [w for w in WIDTHS if w > row["bits"]]
            for w in wider:
                row["suggested_bits"] = w
                if measure(node, w)["loss_increase"] < threshold:
                    break
    return rows


def plan_matches(model, name: str, bits: int) -> bool:
    """A QGTResult's learned step is valid only for the width it was trained for."""
    plan = getattr(model, "plan", None) or {}
    return plan.get(name) == bits


def suggest_plan(rows: list[dict]) -> dict[str, int]:
    """{layer: bits} from find_bottlenecks rows: bottlenecks at their suggested width, the
    rest at the width they were measured at (usable as edgeq.learn.export / quantize bits)."""
    return {r["name"]: int(r["suggested_bits"]) for r in rows}


def mixed_plan(model, calib, low_bits: int = 2, edge_bits: int = 8, **options) -> dict[str, int]:
    """The plan for `--bits mixed`: every layer at `low_bits`, the bottlenecks lifted to their
    suggested width, the first and last layer at least at `edge_bits`. `options` go to
    find_bottlenecks. Returns {layer: bits} for train_qgt / edgeq.learn.export / edgeq.learn.quantize."""
    graph, _, _ = _resolve(model)
    plan = suggest_plan(find_bottlenecks(graph, calib, low_bits, **options))
    names = [n.name for n in graph.weighted_nodes]
    for edge in (names[0], names[-1]):
        plan[edge] = max(plan[edge], edge_bits)
    return plan
