"""AdaQuant (Hubara et al. 2021, "Accurate Post Training Quantization With Small Calibration
Sets"), then bias correction and BatchNorm re-estimation, layer by layer in graph order.

For each weighted layer, with its input taken from the model quantized so far:

1. AdaQuant: the weights (as continuous grid coordinates u, w = s·clip(round(u)), straight-
   through rounding), the per-channel weight scales s (log-parametrized), the bias and the
   layer's output activation step are optimized with Adam to minimize the MSE between the
   quantized layer output (requantized to int8, fused ReLU/ReLU6 as its clamp) and the float
   layer output (ReLU/ReLU6 applied too) on the calibration data.
2. Bias correction: the per-channel mean of the pre-activation output, float minus quantized,
   is added to the bias.
3. BatchNorm re-estimation. graph capture folds BN into the conv before it, so there are no
   BN statistics left to re-estimate; what re-estimation achieves (the quantized layer's
   output statistics matching the float ones) is done on the folded layer: the per-channel
   standard deviation ratio r = σ_float / σ_quant (clipped to [0.5, 2]) multiplies the
   channel's weight scale (the integer weights do not change, so this is exact on the
   device), and the bias is shifted so the channel mean matches. Dense layers have one weight
   scale (TFLM's per-tensor INT4), so they get the mean shift only.

Every step is kept only if it lowers the layer's output error on the calibration data, and
the layer record says which were applied.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np

from edgeq import intmath
from edgeq.learn.graph import Block, apply_node
from edgeq.learn.quant.qforward import Walker, node_forward, run_nodes
from edgeq.learn.quant.recon import (
    Adam,
    BlockRecord,
    NullProgress,
    ReconResult,
    _finite,
    copy_qgraph,
    output_error,
    tie_groups,
    with_layers,
)
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer, kernel_scale_shape, round_ste

BN_RATIO_LIMITS = (0.5, 2.0)


@dataclass
class AdaQuantConfig:
    iters: int = 300  # per layer
    batch_size: int = 32
    lr_weights: float = 5e-3  # grid units (one integer step = 1)
    lr_scales: float = 1e-3  # log scale
    lr_bias: float = 1e-3  # relative to the layer's output spread
    seed: int = 0
    bias_correction: bool = True
    bn_reestimation: bool = True
    eval_batch: int = 128


def adaquant(start: QuantizedGraph, calib_x: np.ndarray, minmax_layers: dict[str, QuantLayer],
             cfg: AdaQuantConfig | None = None,
             progress: NullProgress | None = None) -> ReconResult:
    cfg = cfg or AdaQuantConfig()
    progress = progress or NullProgress()
    qg = copy_qgraph(start)
    graph = qg.graph
    walker = Walker(qg, calib_x, batch_size=cfg.eval_batch)
    groups = tie_groups(graph)
    result = ReconResult(qg)
    for node in graph.nodes:
        if node.name in walker.done:
            continue
        if node.name not in qg.layers:
            walker.advance([node], qg)
            continue
        record = BlockRecord(len(result.blocks), "layer", [node.name])
        t0 = time.perf_counter()
        _layer(qg, walker, node, minmax_layers[node.name], groups, cfg, record, result,
               progress)
        record.seconds = round(time.perf_counter() - t0, 2)
        result.blocks.append(record)
        walker.advance([node], qg)
    return result


def blocks_of_layers(qg: QuantizedGraph) -> list[Block]:
    return [Block("single", [n]) for n in qg.layers]


def _outputs(qg, node, x, scales=None, quantize_output=True, activation=True, batch=128):
    return run_nodes([node], {node.inputs[0]: x}, lambda n, ins: node_forward(
        qg, n, ins, scales=scales, quantize_output=quantize_output, activation=activation),
        batch)[node.name]


def _layer(qg, walker, node, minmax_layer, groups, cfg, record, result, progress) -> None:
    x = walker.quant[node.inputs[0]]
    target = walker.float_outputs([node])[node.name]
    start_layer = qg.layers[node.name]
    start_act = dict(qg.act)
    err = {"start": output_error(_outputs(qg, node, x, batch=cfg.eval_batch), target),
           "minmax": output_error(_outputs(with_layers(qg, {node.name: minmax_layer}), node, x,
                                           batch=cfg.eval_batch), target)}
    record.error_start, record.error_minmax = err["start"], err["minmax"]
    label = f"layer {record.index} ({node.name})"
    learnable_out = (node.kind != "softmax" and all(
        m == node.name or m not in walker.done for m in groups[node.name]))
    candidates = {"start": (start_layer, start_act), "minmax": (minmax_layer, start_act)}
    learned = _optimize(qg, node, x, target, learnable_out, cfg, progress, label)
    record.iters = cfg.iters
    if learned is None:
        msg = f"{label}: the loss became NaN/Inf during AdaQuant; this layer keeps its min-max weights"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        result.warnings.append(msg)
        record.note = "NaN/Inf loss: fell back to min-max weights"
        qg.layers[node.name] = minmax_layer
        record.kept, record.error_final = "minmax", err["minmax"]
        return
    layer, out_scale = learned
    act = dict(start_act)
    if out_scale is not None:
        for m in groups[node.name]:
            act[m] = (np.float32(out_scale), act[m][1])
    trial = QuantizedGraph(qg.graph, {**qg.layers, node.name: layer}, act, qg.plan)
    err["adaquant"] = output_error(_outputs(trial, node, x, batch=cfg.eval_batch), target)
    candidates["adaquant"] = (layer, act)
    base = min(("adaquant", "start", "minmax"), key=lambda k: err[k])
    for name, corrected in _corrections(qg, node, x, walker, candidates[base], cfg).items():
        trial = QuantizedGraph(qg.graph, {**qg.layers, node.name: corrected},
                               candidates[base][1], qg.plan)
        err[name] = output_error(_outputs(trial, node, x, batch=cfg.eval_batch), target)
        candidates[name] = (corrected, candidates[base][1])
    choice = min(candidates, key=lambda k: err[k])
    record.kept = choice if choice in ("adaquant", "start", "minmax") else f"{base} + {choice}"
    record.error_final = err[choice]
    qg.layers[node.name], new_act = candidates[choice]
    qg.act.update(new_act)


def _optimize(qg, node, x, target, learnable_out, cfg, progress, label):
    """Adam on (u, log s_w, bias, log s_out). Returns (QuantLayer, output scale or None), or
    None when the loss stops being finite."""
    import tensorflow as tf

    layer = qg.layers[node.name]
    qmin, qmax = intmath.weight_qrange(layer.bits)
    shape = kernel_scale_shape(node, len(layer.scales))
    s0 = layer.scales.reshape(shape).astype(np.float32)
    u = tf.Variable((node.weights["kernel"] / s0).astype(np.float32))
    log_sw = tf.Variable(np.zeros(s0.shape, np.float32))
    spread = float(np.std(target)) or 1.0
    bias_delta = tf.Variable(np.zeros_like(layer.bias))
    log_out = tf.Variable(0.0)
    out_s0 = float(qg.act[node.name][0])
    bias0 = tf.constant(layer.bias)
    groups = [([u], cfg.lr_weights), ([log_sw], cfg.lr_scales), ([bias_delta], cfg.lr_bias)]
    if learnable_out:
        groups.append(([log_out], cfg.lr_scales))
    opts = [Adam(vs, lr) for vs, lr in groups]
    variables = [v for vs, _ in groups for v in vs]
    x_all, t_all = tf.constant(x), tf.constant(target)

    def forward(xb):
        s_w = s0 * tf.exp(log_sw)
        kernel = s_w * tf.clip_by_value(round_ste(u), float(qmin), float(qmax))
        scales = {node.name: out_s0 * tf.exp(log_out)} if learnable_out else None
        return node_forward(qg, node, [xb], kernel=kernel, scales=scales,
                            bias=bias0 + spread * bias_delta, weight_scales=tf.reshape(s_w, [-1]))

    @tf.function(reduce_retracing=True)
    def step(idx):
        with tf.GradientTape() as tape:
            d = forward(tf.gather(x_all, idx)) - tf.gather(t_all, idx)
            loss = tf.reduce_mean(tf.reduce_sum(tf.square(d), axis=-1))
        grads = tape.gradient(loss, variables)
        k = 0
        for opt in opts:
            opt.apply(grads[k:k + len(opt.vars)])
            k += len(opt.vars)
        return loss

    rng = np.random.default_rng(cfg.seed + len(label))
    progress.start(label, cfg.iters)
    try:
        for t in range(cfg.iters):
            idx = rng.choice(len(x), min(cfg.batch_size, len(x)), replace=False)
            loss = step(tf.constant(idx))
            if t % 25 == 0 or t == cfg.iters - 1:
                if not _finite(loss):
                    return None
                progress.advance(25 if t else 1)
    finally:
        progress.finish()
    if not all(np.all(np.isfinite(v.numpy())) for v in variables):
        return None
    scales = (s0 * np.exp(log_sw.numpy())).reshape(-1).astype(np.float32)
    q = np.clip(intmath.round_half_away(u.numpy()), qmin, qmax).astype(np.int8)
    bias = (layer.bias + spread * bias_delta.numpy()).astype(np.float32)
    out_scale = np.float32(out_s0 * np.exp(float(log_out.numpy()))) if learnable_out else None
    if out_scale is not None and not (np.isfinite(out_scale) and out_scale > 0):
        out_scale = None
    return QuantLayer(layer.bits, scales, q, bias), out_scale


def _corrections(qg, node, x, walker, candidate, cfg) -> dict[str, QuantLayer]:
    """Bias correction and BN re-estimation of `candidate` (layer, act) from the per-channel
    pre-activation statistics, float (float input) vs quantized (quantized input)."""
    layer, act = candidate
    trial = QuantizedGraph(qg.graph, {**qg.layers, node.name: layer}, act, qg.plan)
    y_q = _outputs(trial, node, x, quantize_output=False, activation=False,
                   batch=cfg.eval_batch).astype(np.float64)
    y_f = run_nodes([node], walker.float, lambda n, ins: apply_node(n, ins, activation=False),
                    cfg.eval_batch)[node.name].astype(np.float64)
    axes = tuple(range(y_f.ndim - 1))
    mu_f, mu_q = y_f.mean(axis=axes), y_q.mean(axis=axes)
    out = {}
    if cfg.bias_correction:
        out["bias correction"] = QuantLayer(layer.bits, layer.scales, layer.qweight,
                                            (layer.bias + mu_f - mu_q).astype(np.float32))
    if cfg.bn_reestimation and len(layer.scales) > 1:
        sd_f, sd_q = y_f.std(axis=axes), y_q.std(axis=axes)
        ratio = np.where(sd_q > 0, sd_f / np.maximum(sd_q, 1e-12), 1.0)
        ratio = np.clip(ratio, *BN_RATIO_LIMITS)
        bias = mu_f - ratio * (mu_q - layer.bias)
        out["BN re-estimation"] = QuantLayer(layer.bits,
                                             (layer.scales * ratio).astype(np.float32),
                                             layer.qweight, bias.astype(np.float32))
    return out
