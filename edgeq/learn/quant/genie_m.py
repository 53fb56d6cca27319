"""Genie-M: block reconstruction with jointly learned weight scales, activation steps and
QDrop (Jeon et al., CVPR 2023, "Genie: Show Me the Data for Quantization"), meant for
zero-shot calibration data from edgeq.learn.synth.

Per block (edgeq.learn.graph.mark_blocks: dw+pw pair, residual block, single layer), in graph order:

- weights: w_q = s · clip(floor(w / s) + h(V), qmin, qmax) with AdaRound's soft rounding h(V)
  (edgeq.learn.quant.adaround: β 20→2 after a 20 % warm-up, λ = 0.01) AND a learned per-channel
  scale s = s₀·exp(σ) (Adam, lr 1e-4 with cosine decay; floor(w/s) follows s);
- activation steps of the block's tensors (inner and output) learned at the same time, LSQ
  style (Adam on log(step), lr 1e-3, cosine), but only upward from their min-max start
  (`act_step_grow_only`): synthetic images under-cover the real activation ranges (fmnist:
  logits up to 8.7 on Genie-D images, 17.2 on real ones), so shrinking a step on them clips
  real data. Measured on fmnist W4A8 (all 10,000 test images, 200 iterations per block):
  free steps 92.11 %, fixed steps 92.33 %, grow-only 92.33 % (float 92.63 %);
- QDrop: in every step each element of the block's input and of every activation the block
  quantizes keeps its float value with probability 0.5 (the block input's float value is the
  float model's), which flattens the loss landscape the rounding is learned on;
- loss: Σ_channels (out − out_float)² averaged over samples/positions, divided by the target's
  mean square, + λ·Σ(1 − |2h − 1|^β); out is the block output with its own requantization (and
  QDrop) applied.

The result is kept only if the block's error without QDrop (output requantized) is lower than
with the starting weights and steps; otherwise the block keeps them. A NaN/Inf loss stops the
block with a warning, like edgeq.learn.quant.recon. Built on recon's Walker/ReconResult/BlockRecord,
so the facade reports it like brecq.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from edgeq import intmath
from edgeq.learn.quant import adaround
from edgeq.learn.quant.qforward import node_forward, requantize
from edgeq.learn.quant.recon import (
    Adam,
    NullProgress,
    ReconResult,
    block_outputs,
    output_error,
    walk_blocks,
    with_layers,
)
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer, kernel_scale_shape

DEFAULT_ITERS = 500


@dataclass
class GenieMConfig:
    iters: int = DEFAULT_ITERS
    batch_size: int = 32
    lr_rounding: float | None = None  # Adam on V; None: max(1e-2, 8 / iters) like recon
    lr_weight_scale: float = 1e-4  # Adam on log(s), cosine
    lr_act_step: float = 1e-3  # Adam on log(step), cosine
    act_step_grow_only: bool = True  # steps never below their min-max start (see above)
    qdrop: float = 0.5  # probability that an element keeps its float value
    reg_weight: float = adaround.REG_WEIGHT
    warmup: float = adaround.WARMUP
    beta: tuple[float, float] = (adaround.BETA_START, adaround.BETA_END)
    seed: int = 0
    eval_batch: int = 128


def genie_m(start: QuantizedGraph, calib_x: np.ndarray, blocks, minmax_layers=None,
            cfg: GenieMConfig | None = None, progress: NullProgress | None = None
            ) -> ReconResult:
    """Genie-M over `blocks` (in graph order); nodes outside them are carried forward."""
    cfg = cfg or GenieMConfig()
    progress = progress or NullProgress()

    def optimize(qg, walker, nodes, groups, record, result):
        _block(qg, walker, nodes, minmax_layers or {}, groups, cfg, record, result, progress)

    return walk_blocks(start, calib_x, blocks, cfg.eval_batch, optimize)


def _learnable_steps(qg, walker, nodes, groups) -> list[str]:
    """Block tensors whose step may move: not softmax/input, and no tensor tied to them was
    computed before the block (those are fixed)."""
    inside = {n.name for n in nodes}
    return [n.name for n in nodes if n.kind != "softmax"
            and all(m in inside or m not in walker.done for m in groups[n.name])
            and not any(qg.graph.node(m).kind in ("softmax", "input") for m in groups[n.name])]


def _activate(y, activation: str):
    import tensorflow as tf

    if activation == "RELU":
        return tf.nn.relu(y)
    if activation == "RELU6":
        return tf.nn.relu6(y)
    return y


def _block(qg, walker, nodes, minmax_layers, groups, cfg, record, result, progress) -> None:
    import tensorflow as tf

    last = nodes[-1].name
    ext = walker.external_inputs(nodes)
    inputs_q = {e: walker.quant[e] for e in ext}
    inputs_f = {e: walker.float[e] for e in ext}
    target = walker.float_outputs(nodes)[last]
    weighted = [n for n in nodes if n.name in qg.layers]
    err_start = output_error(block_outputs(qg, nodes, inputs_q, True, batch_size=cfg.eval_batch),
                             target)
    record.error_start = err_start
    if weighted and minmax_layers:
        fallback = {n.name: minmax_layers[n.name] for n in weighted if n.name in minmax_layers}
        record.error_minmax = output_error(block_outputs(with_layers(qg, fallback), nodes,
                                                         inputs_q, True,
                                                         batch_size=cfg.eval_batch), target)
    steps = _learnable_steps(qg, walker, nodes, groups)

    def _log_ratio(v):
        return tf.nn.relu(v) if cfg.act_step_grow_only else v

    if (not weighted and not steps) or cfg.iters <= 0:
        record.kept, record.error_final = "start", err_start
        return

    kernels_f, s0, sigma, vs, bounds = {}, {}, {}, {}, {}
    for node in weighted:
        layer = qg.layers[node.name]
        shape = kernel_scale_shape(node, len(layer.scales))
        s0[node.name] = tf.constant(layer.scales.reshape(shape))
        kernels_f[node.name] = tf.constant(node.weights["kernel"])
        _, v = adaround.init_v(node.weights["kernel"], layer.scales.reshape(shape))
        vs[node.name] = tf.Variable(v)
        sigma[node.name] = tf.Variable(tf.zeros(shape))
        bounds[node.name] = intmath.weight_qrange(layer.bits)
    base = {t: float(qg.act[t][0]) for t in steps}
    log_a = {t: tf.Variable(0.0) for t in steps}
    opt_v = Adam(list(vs.values()), cfg.lr_rounding or max(1e-2, 8.0 / cfg.iters))
    opt_s = Adam(list(sigma.values()), cfg.lr_weight_scale) if sigma else None
    opt_a = Adam(list(log_a.values()), cfg.lr_act_step) if log_a else None
    xq = {e: tf.constant(v) for e, v in inputs_q.items()}
    xf = {e: tf.constant(v) for e, v in inputs_f.items()}
    t_all = tf.constant(target)
    energy = float(np.mean(np.square(target, dtype=np.float64))) or 1.0
    keep_p = float(cfg.qdrop)
    seed_rng = tf.random.Generator.from_seed(cfg.seed + record.index)

    def forward(batch_q, batch_f, drop: bool):
        scales = {t: base[t] * tf.exp(_log_ratio(log_a[t])) for t in steps}
        frozen = {t: tf.stop_gradient(v) for t, v in scales.items()}
        values = {}
        for e in ext:
            values[e] = batch_q[e]
            if drop and keep_p > 0:
                mask = seed_rng.uniform(tf.shape(batch_q[e])) < keep_p
                values[e] = tf.where(mask, batch_f[e], batch_q[e])
        for node in nodes:
            ins = [values[i] for i in node.inputs]
            kernel = w_scales = None
            if node.name in vs:
                s = s0[node.name] * tf.exp(sigma[node.name])
                floor = tf.stop_gradient(tf.floor(kernels_f[node.name] / s))
                qmin, qmax = bounds[node.name]
                kernel = s * tf.clip_by_value(floor + adaround.soft_h(vs[node.name]),
                                              float(qmin), float(qmax))
                w_scales = tf.stop_gradient(tf.reshape(s, [-1]))
            # node_forward reads the scales only for the bias grid s_in·s_w here (the output is
            # requantized below); no gradient flows there: d(b/step)/d step = -b/step² overflows
            # float32 for the near-zero scales of dead (BN-folded) channels.
            y = node_forward(qg, node, ins, kernel=kernel, scales=frozen, quantize_output=False,
                             weight_scales=w_scales, activation=False)
            act = node.attrs.get("activation", "NONE")
            scale = scales.get(node.name, float(qg.act[node.name][0]))
            yq = requantize(y, scale, qg.act[node.name][1], act,
                            zero_point_inside=node.kind == "avg_pool")
            if drop and keep_p > 0:
                mask = seed_rng.uniform(tf.shape(yq)) < keep_p
                yq = tf.where(mask, _activate(y, act), yq)
            values[node.name] = yq
        return values[last]

    variables = [*vs.values(), *sigma.values(), *log_a.values()]
    nv, ns = len(vs), len(sigma)

    @tf.function(reduce_retracing=True, autograph=False)
    def step(idx, beta, reg_w, cosine):
        with tf.GradientTape() as tape:
            out = forward({e: tf.gather(v, idx) for e, v in xq.items()},
                          {e: tf.gather(v, idx) for e, v in xf.items()}, True)
            rec = tf.reduce_mean(tf.reduce_sum(tf.square(out - tf.gather(t_all, idx)), -1))
            loss = rec / energy
            if vs:
                loss += reg_w * tf.add_n([adaround.regularizer(v, beta) for v in vs.values()])
        grads = tape.gradient(loss, variables)
        grads = [tf.zeros_like(v) if g is None else g for v, g in zip(variables, grads,
                                                                       strict=True)]
        if vs:
            opt_v.apply(grads[:nv])
        if opt_s is not None:
            opt_s.apply(grads[nv:nv + ns], cosine)
        if opt_a is not None:
            opt_a.apply(grads[nv + ns:], cosine)
        return loss

    schedule = adaround.Schedule(cfg.iters, cfg.warmup, cfg.beta[0], cfg.beta[1],
                                 cfg.reg_weight)
    rng = np.random.default_rng(cfg.seed + record.index)
    n = len(target)
    label = f"block {record.index} ({record.kind}: {', '.join(x.name for x in nodes)})"
    progress.start(f"{label}: genie-m", cfg.iters)
    finite = True
    try:
        for t in range(cfg.iters):
            idx = rng.choice(n, min(cfg.batch_size, n), replace=False)
            cosine = 0.5 * (1 + np.cos(np.pi * t / cfg.iters))
            loss = step(tf.constant(idx), tf.constant(schedule.beta(t), tf.float32),
                        tf.constant(schedule.reg(t), tf.float32),
                        tf.constant(cosine, tf.float32))
            if t % 25 == 0 or t == cfg.iters - 1:
                if not np.isfinite(float(loss)):
                    finite = False
                    break
                progress.advance(25 if t else 1)
    finally:
        progress.finish()
    record.iters = cfg.iters
    values = [v.numpy() for v in variables]
    if not finite or not all(np.all(np.isfinite(v)) for v in values):
        msg = f"{label}: the loss became NaN/Inf during Genie-M; this block keeps its start"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        result.warnings.append(msg)
        record.kept, record.error_final, record.note = "start", err_start, "NaN/Inf loss"
        return
    layers = {}
    for node in weighted:
        layer = qg.layers[node.name]
        s = (s0[node.name].numpy() * np.exp(sigma[node.name].numpy())).astype(np.float32)
        floor = np.floor(node.weights["kernel"].astype(np.float64) / s)
        q = adaround.hard_integers(floor, vs[node.name].numpy(), layer.bits)
        layers[node.name] = QuantLayer(layer.bits, s.reshape(-1), q, layer.bias)
    act = dict(qg.act)
    for t in steps:
        new = np.float32(base[t] * np.exp(float(_log_ratio(log_a[t]).numpy())))
        for member in groups[t]:
            act[member] = (new, act[member][1])
    trial = QuantizedGraph(qg.graph, {**qg.layers, **layers}, act, qg.plan)
    err = output_error(block_outputs(trial, nodes, inputs_q, True, batch_size=cfg.eval_batch),
                       target)
    record.act_learned = bool(steps)
    if err < err_start:
        qg.layers.update(layers)
        qg.act.update(act)
        record.kept, record.error_final = "reconstructed", err
    else:
        record.kept, record.error_final = "start", err_start
        record.note = "Genie-M did not lower the block error; kept the start"


def run_method(graph, calib, plan, minmax_qg, opts, progress):
    """The quantize facade's Method.run signature (edgeq.learn.quantize.METHODS): starts from MSE
    weight ranges and min-max activation ranges like brecq."""
    from edgeq.learn.quant.ranges import quantize_ranges

    start = quantize_ranges(graph, calib, plan, "mse", "minmax")
    cfg = GenieMConfig(iters=opts.get("iters") or DEFAULT_ITERS,
                       batch_size=opts.get("batch_size", 32), seed=opts.get("seed", 0))
    res = genie_m(start, calib, graph.blocks, minmax_qg.layers, cfg, progress)
    return res.qgraph, res.blocks, res.warnings
