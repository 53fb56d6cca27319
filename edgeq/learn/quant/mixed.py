"""Mixed precision: one weight width per layer, chosen by an integer program.

1. Sensitivity: for every weighted layer and every candidate width, the loss increase on
   calibration data when only that layer's weights are quantized (MSE-range grid, the start
   of reconstruction) and everything else stays float: KL(float outputs ‖ perturbed outputs)
   for classifiers (softmax over the last axis), MSE for single-output models.
2. Integer program (pulp, CBC): binary x[l, b], exactly one width per layer, minimize
   Σ sensitivity[l, b]·x[l, b] subject to Σ bytes[l, b]·x[l, b] ≤ budget, and optionally
   Σ BOPs[l, b]·x[l, b] ≤ a BOPs budget (BOPs = MACs × weight bits × activation bits).

Memory counts what the board stores (issue #16): each layer's weights as the C engine lays
them out at that width (2 and 3 bits as dense bit streams, INT4 two a byte, INT8 one; CONV_2D
filter rows padded for the fast path) plus its bias and per-channel requantization parameters,
all from edgeq.intmath.engine_layer_bytes, the formula the engine generator uses. In the
.tflite 2- and 3-bit layers are INT4 tensors (TFLite has no narrower kernels); logical_bytes
gives params × bits / 8 for reports. First and last layers stay at 8 bits unless asked
otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.intmath import engine_layer_bytes, widened_rgb_filter
from edgeq.learn.graph import Graph, Node, apply_node
from edgeq.learn.quant.ranges import quantize_layer_range

WIDTHS = (8, 4, 3, 2)
ACT_BITS = 8


@dataclass
class MixedPlan:
    plan: dict[str, int]
    weight_bytes: float
    budget_bytes: float
    smallest_bytes: float
    objective: float
    sensitivity: dict[str, dict[int, float]] = field(default_factory=dict)
    bops: float | None = None

    def to_dict(self) -> dict:
        return {"plan": self.plan, "weight_bytes": self.weight_bytes,
                "budget_bytes": self.budget_bytes, "smallest_bytes": self.smallest_bytes,
                "objective": self.objective, "bops": self.bops,
                "sensitivity": {k: {str(b): v for b, v in s.items()}
                                for k, s in self.sensitivity.items()}}


def engine_bytes(node: Node, bits: int, fields: dict | None = None) -> tuple[int, int]:
    """(weight bytes, per-channel parameter bytes) the C engine stores for this layer at `bits`
    (dense layers are per tensor, as the exporter writes them); `fields`: {(layer, bits):
    per-channel field widths} (param_fields), else the widest (an upper bound)."""
    kernel = node.weights["kernel"]
    bias = node.weights.get("bias") is not None
    f = (fields or {}).get((node.name, bits))
    if node.kind == "dense":
        return engine_layer_bytes("dense", kernel.shape[-1], kernel.size // kernel.shape[-1],
                                  bits, bias=bias, per_channel=False, fields=f)
    if node.kind == "depthwise_conv2d":  # (kh, kw, in, multiplier)
        channels = kernel.shape[2] * kernel.shape[3]
        return engine_layer_bytes("depthwise", channels, kernel.size // channels, bits, bias=bias,
                                  fields=f)
    kh, kw, cin, cout = kernel.shape
    return engine_layer_bytes("conv", cout, kernel.size // cout, bits, bias=bias, fields=f,
                              widened=node.kind == "conv2d" and widened_rgb_filter(kh, kw, cin, cin))


def layer_bytes(node: Node, bits: int, fields: dict | None = None) -> int:
    """Flash bytes the board stores for this layer at `bits`: weights + per-channel parameters
    (what budgets count)."""
    return sum(engine_bytes(node, bits, fields))


# Bits added to each measured bias width: the final quantizer's activation ranges differ a
# little from the min-max ones the widths are measured on.
BIAS_MARGIN_BITS = 1


def param_fields(graph: Graph, calib_x: np.ndarray, allowed: dict[str, tuple],
                 margin: int = BIAS_MARGIN_BITS) -> dict[tuple[str, int], tuple[int, int, int]]:
    """{(layer, bits): (bias, multiplier, shift) field widths} of the engine's packed
    per-channel parameters (edgeq.intmath.channel_fields), measured per width on a min-max
    quantized copy of the graph with every layer at that width (its allowed widest otherwise)
    through the exporter (intmath.op_channel_values: what the engine packs); bias widths get
    `margin` bits more."""
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.quant.ranges import quantize_ranges
    from edgeq.learn.quantize import bit_plan, storable

    result = {}
    for bits in sorted({b for ws in allowed.values() for b in ws}):
        plan = {n: bits if bits in ws else max(ws) for n, ws in allowed.items()}
        model = to_tflite_model(storable(quantize_ranges(graph, calib_x, bit_plan(graph, plan),
                                                         "minmax", "minmax")))
        for op in model.ops:
            if op.kind not in intmath.CHANNEL_OPS:
                continue
            name = model.tensors[op.inputs[1]].name.rsplit("/", 1)[0]
            if name in allowed and plan[name] == bits:
                (b, m, s), _, _ = intmath.op_channel_fields(model, op)
                result[name, bits] = (min(b + margin, 32), m, s)
    return result


def logical_bytes(node: Node, bits: int) -> float:
    """The kernel's weights at their logical width: params × bits / 8."""
    return node.weights["kernel"].size * bits / 8.0


def layer_macs(node: Node) -> int:
    """Multiply-accumulates of one inference."""
    kernel = node.weights["kernel"]
    if node.kind == "dense":
        return int(kernel.size)
    return int(node.output_shape[0] * node.output_shape[1] * kernel.size)


def allowed_widths(graph: Graph, widths=WIDTHS, edge_bits: int | None = 8) -> dict[str, tuple]:
    """Candidate widths per layer: the first and last weighted layers only `edge_bits` (None:
    no exception), Conv2DTranspose layers only 8."""
    names = [n.name for n in graph.weighted_nodes]
    allowed = {n: tuple(sorted(set(widths), reverse=True)) for n in names}
    if edge_bits is not None and names:
        allowed[names[0]] = allowed[names[-1]] = (edge_bits,)
    for node in graph.weighted_nodes:  # TFLM runs TRANSPOSE_CONV with INT8 filters only
        if node.kind == "conv2d_transpose":
            allowed[node.name] = (8,)
    return allowed


def _divergence(ref: np.ndarray, out: np.ndarray, probabilities: bool) -> float:
    if ref.shape[-1] == 1:
        return float(np.mean((ref - out) ** 2))
    import tensorflow as tf

    if probabilities:
        p, q = np.clip(ref, 1e-12, 1.0), np.clip(out, 1e-12, 1.0)
        return float(np.mean(np.sum(p * (np.log(p) - np.log(q)), axis=-1)))
    log_p = tf.nn.log_softmax(ref).numpy()
    log_q = tf.nn.log_softmax(out).numpy()
    return float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))


def sensitivity(graph: Graph, calib_x: np.ndarray, allowed: dict[str, tuple],
                weights: str = "mse", batch_size: int = 64, progress=None
                ) -> dict[str, dict[int, float]]:
    """Loss increase per (layer, width) with only that layer quantized (see module doc)."""
    out_node = graph.node(graph.outputs[0])
    probabilities = out_node.kind == "softmax"
    ref = _run_with(graph, calib_x, {}, batch_size)
    result: dict[str, dict[int, float]] = {}
    total = sum(len(b) for b in allowed.values())
    if progress:
        progress.start("sensitivity per layer and width", total)
    for name, widths in allowed.items():
        node = graph.node(name)
        result[name] = {}
        for bits in widths:
            layer = quantize_layer_range(node, bits, weights)
            out = _run_with(graph, calib_x, {name: layer.dequantized(node)}, batch_size)
            result[name][bits] = max(_divergence(ref, out, probabilities), 0.0)
            if progress:
                progress.advance(1)
    if progress:
        progress.finish()
    return result


def _run_with(graph: Graph, x: np.ndarray, kernels: dict[str, np.ndarray], batch_size: int):
    """The float graph's first output with some kernels replaced."""
    import tensorflow as tf

    outs = []
    for start in range(0, len(x), batch_size):
        values = {graph.inputs[0]: tf.constant(x[start:start + batch_size])}
        for node in graph.nodes:
            if node.kind == "input":
                continue
            w = None
            if node.name in kernels:
                w = {"kernel": kernels[node.name], "bias": node.weights["bias"]}
            values[node.name] = apply_node(node, [values[i] for i in node.inputs], w)
        outs.append(values[graph.outputs[0]].numpy())
    return np.concatenate(outs)


def smallest_bytes(graph: Graph, allowed: dict[str, tuple], fields: dict | None = None) -> float:
    return sum(layer_bytes(graph.node(n), min(b), fields) for n, b in allowed.items())


def solve(graph: Graph, sens: dict[str, dict[int, float]], budget_bytes: float,
          bops_budget: float | None = None, fields: dict | None = None) -> MixedPlan:
    """The integer program: the width per layer that minimizes total sensitivity within the
    weight-memory budget (and the BOPs budget when given)."""
    import pulp

    allowed = {n: tuple(s) for n, s in sens.items()}
    least = smallest_bytes(graph, allowed, fields)
    if least > budget_bytes + 1e-6:
        raise DataError(
            f"no bit plan fits a budget of {budget_bytes / 1024:.2f} KiB of stored model (weights "
            f"as the engine packs them + per-channel parameters): the smallest "
            f"possible at widths {sorted({b for w in allowed.values() for b in w})} is "
            f"{least / 1024:.2f} KiB ({least:,.0f} bytes)",
            "raise the budget to at least that, or allow narrower widths / narrower first and "
            "last layers")
    prob = pulp.LpProblem("edgeq_bits", pulp.LpMinimize)
    x = {(n, b): pulp.LpVariable(f"x_{i}_{b}", cat="Binary")
         for i, (n, ws) in enumerate(allowed.items()) for b in ws}
    prob += pulp.lpSum(sens[n][b] * v for (n, b), v in x.items())
    for n, ws in allowed.items():
        prob += pulp.lpSum(x[n, b] for b in ws) == 1
    prob += pulp.lpSum(layer_bytes(graph.node(n), b, fields) * v for (n, b), v in x.items()) \
        <= budget_bytes
    if bops_budget is not None:
        prob += pulp.lpSum(layer_macs(graph.node(n)) * b * ACT_BITS * v
                           for (n, b), v in x.items()) <= bops_budget
    status = prob.solve(pulp.PULP_CBC_CMD(msg=False))
    if pulp.LpStatus[status] != "Optimal":
        raise DataError(f"the bit-width program is {pulp.LpStatus[status].lower()} "
                        f"(budget {budget_bytes / 1024:.2f} KiB, BOPs budget {bops_budget})",
                        "raise the budget(s)")
    plan = {n: next(b for b in ws if x[n, b].value() > 0.5) for n, ws in allowed.items()}
    used = sum(layer_bytes(graph.node(n), b, fields) for n, b in plan.items())
    bops = float(sum(layer_macs(graph.node(n)) * b * ACT_BITS for n, b in plan.items()))
    return MixedPlan(plan, used, budget_bytes, least,
                     float(sum(sens[n][b] for n, b in plan.items())), sens, bops)


def plan_mixed(graph: Graph, calib_x: np.ndarray, budget_bytes: float, widths=WIDTHS,
               edge_bits: int | None = 8, bops_budget: float | None = None, samples: int = 256,
               progress=None) -> MixedPlan:
    """Sensitivity on (up to) `samples` calibration inputs, then the integer program."""
    allowed = allowed_widths(graph, widths, edge_bits)
    fields = param_fields(graph, calib_x, allowed)
    least = smallest_bytes(graph, allowed, fields)
    if least > budget_bytes + 1e-6:  # fail before measuring sensitivities
        solve(graph, {n: dict.fromkeys(ws, 0.0) for n, ws in allowed.items()}, budget_bytes,
              fields=fields)
    sens = sensitivity(graph, calib_x[:samples], allowed, progress=progress)
    return solve(graph, sens, budget_bytes, bops_budget, fields)
