"""Reconstruction of quantized weights from calibration data: AdaRound per layer, BRECQ per
block (Li et al. 2021, "BRECQ: Pushing the Limit of Post-Training Quantization by Block
Reconstruction"), then LSQ activation steps.

For each block in topological order (a depthwise+pointwise pair, a residual block or a single
layer, as edgeq.learn.graph.mark_blocks marks them; AdaRound = every weighted layer alone):

1. inputs: the block's input tensors from the model quantized so far (earlier blocks already
   reconstructed), over all calibration samples; target: the float model's block output.
2. weights: AdaRound soft rounding (edgeq.learn.quant.adaround) of every weighted layer in the
   block, Adam on V, loss = mean over samples/positions of Σ_channels w·(out_q - out_f)²,
   divided by the target's mean square, + λ·Σ(1 - |2h - 1|^β). The block runs as the integer
   model will (edgeq.learn.quant.qforward): inner tensors requantized to int8, bias on its int32
   grid, fused ReLU/ReLU6; the output is compared clamped to its int8 range (as the device
   clips it) but not rounded. With `fisher=True`,
   w = g²/mean(g²) + 1 where g is the gradient of KL(float outputs ‖ outputs of the model
   quantized up to this block) with respect to the block output (BRECQ's diagonal Fisher,
   with damping 1); otherwise w = 1.
3. the result is kept only if its block error is below both the starting weights' and
   min-max weights' (else the better of those is kept and the record says so); a NaN/Inf
   loss stops the block and falls back to its min-max weights, with a warning.
4. LSQ: the activation steps of the block's tensors (inner and output; zero points stay)
   are learned with the straight-through (LSQ) gradient, log-parametrized so one learning
   rate suits every tensor, loss Σ|out_q - out_f|^2.4 with the output requantized; kept only
   if that error goes down.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from edgeq.learn.graph import Block, Graph, Node, apply_node, run_tf
from edgeq.learn.quant import adaround
from edgeq.learn.quant.qforward import Walker, node_forward, run_nodes
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer, kernel_scale_shape, tied_roots


@dataclass
class ReconConfig:
    iters: int = 1000  # weight iterations per block (BRECQ: 20,000; see quantize.py)
    # Blocks whose layers are all at 8 bits: rounding matters little there, so fewer.
    iters_8bit: int = 200
    batch_size: int = 32
    # Adam on V; None: max(1e-2, 8 / iters), so that V can travel far enough to settle to 0
    # or 1 in short schedules (BRECQ: 1e-3 with 20,000 iterations).
    lr: float | None = None
    fisher: bool = False
    act_iters: int = 200  # LSQ iterations per block (0: no activation learning)
    act_lr: float = 5e-3  # Adam on log(step)
    act_p: float = 2.4
    reg_weight: float = adaround.REG_WEIGHT
    warmup: float = adaround.WARMUP
    beta: tuple[float, float] = (adaround.BETA_START, adaround.BETA_END)
    seed: int = 0
    eval_batch: int = 128


@dataclass
class BlockRecord:
    index: int
    kind: str
    nodes: list[str]
    seconds: float = 0.0
    iters: int = 0
    error_minmax: float = float("nan")
    error_start: float = float("nan")
    error_final: float = float("nan")
    error_reconstructed: float = float("nan")  # of the learned rounding, kept or not
    fisher_max: float | None = None  # largest Fisher weight (1: uniform); None without Fisher
    kept: str = "reconstructed"  # | "start" | "minmax"
    act_error_before: float | None = None
    act_error_after: float | None = None
    act_learned: bool = False
    note: str = ""

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v)
                for k, v in self.__dict__.items()}


@dataclass
class ReconResult:
    qgraph: QuantizedGraph
    blocks: list[BlockRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class NullProgress:
    """The progress protocol engines call; the facade passes a rich-based one."""

    def start(self, label: str, total: int) -> None:
        pass

    def advance(self, steps: int) -> None:
        pass

    def finish(self) -> None:
        pass


def layer_blocks(graph: Graph) -> list[Block]:
    """AdaRound's partition: every weighted node alone."""
    return [Block("single", [n.name]) for n in graph.weighted_nodes]


def copy_qgraph(qg: QuantizedGraph) -> QuantizedGraph:
    return QuantizedGraph(qg.graph, dict(qg.layers), dict(qg.act), dict(qg.plan))


def with_layers(qg: QuantizedGraph, layers: dict[str, QuantLayer]) -> QuantizedGraph:
    return QuantizedGraph(qg.graph, {**qg.layers, **layers}, qg.act, qg.plan)


def tie_groups(graph: Graph) -> dict[str, list[str]]:
    """Tensors that must share activation qparams (as assign_activation_qparams ties them):
    tensor name -> every member of its group."""
    roots = tied_roots(graph)
    groups: dict[str, list[str]] = {}
    for n in graph.nodes:
        groups.setdefault(roots[n.name], []).append(n.name)
    return {n.name: groups[roots[n.name]] for n in graph.nodes}


def output_error(out: np.ndarray, target: np.ndarray, p: float = 2.0,
                 weights: np.ndarray | None = None) -> float:
    """Mean over samples and positions of Σ_channels w·|out - target|^p."""
    d = np.abs(out.astype(np.float64) - target) ** p
    if weights is not None:
        d = d * weights
    return float(np.mean(np.sum(d, axis=-1)))


def block_outputs(qg: QuantizedGraph, nodes: list[Node], inputs: dict[str, np.ndarray],
                  quantize_output: bool = False, scales: dict | None = None,
                  batch_size: int = 128) -> np.ndarray:
    """The block's output over all samples with qg's weights (inner tensors requantized)."""
    last = nodes[-1].name
    outs = run_nodes(nodes, inputs, lambda n, ins: node_forward(
        qg, n, ins, scales=scales, quantize_output=quantize_output or n.name != last),
        batch_size)
    return outs[last]


def block_forward(qg: QuantizedGraph, nodes: list[Node], values: dict, kernels: dict,
                  scales: dict | None = None, quantize_output: bool = False):
    """TensorFlow forward of a block on one batch (`values`: its input tensors)."""
    values = dict(values)
    last = nodes[-1].name
    for node in nodes:
        values[node.name] = node_forward(
            qg, node, [values[i] for i in node.inputs], kernel=kernels.get(node.name),
            scales=scales, quantize_output=quantize_output or node.name != last)
    return values[last]


class Adam:
    """Plain Adam on a list of tf.Variables (no Keras: works the same under Keras 2 and 3)."""

    def __init__(self, variables, lr: float, b1: float = 0.9, b2: float = 0.999,
                 eps: float = 1e-8):
        import tensorflow as tf

        self.vars, self.lr, self.b1, self.b2, self.eps = variables, lr, b1, b2, eps
        self.m = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v)) for v in variables]
        self.t = tf.Variable(0.0)

    def apply(self, grads, lr_scale=1.0) -> None:
        self.t.assign_add(1.0)
        c1 = 1.0 - self.b1 ** self.t
        c2 = 1.0 - self.b2 ** self.t
        for var, g, m, v in zip(self.vars, grads, self.m, self.v, strict=True):
            m.assign(self.b1 * m + (1 - self.b1) * g)
            v.assign(self.b2 * v + (1 - self.b2) * g * g)
            var.assign_sub(self.lr * lr_scale * (m / c1) / ((v / c2) ** 0.5 + self.eps))


# --------------------------------------------------------------------------- the engine


def reconstruct(start: QuantizedGraph, calib_x: np.ndarray, blocks: list[Block],
                minmax_layers: dict[str, QuantLayer], cfg: ReconConfig | None = None,
                progress: NullProgress | None = None) -> ReconResult:
    """Reconstruct every block in `blocks` (in graph order); nodes outside them are only
    carried forward. `start` holds the initial weights (e.g. MSE ranges) and activation
    qparams; `minmax_layers` the fallback weights."""
    cfg = cfg or ReconConfig()
    progress = progress or NullProgress()
    logits = _float_logits(start.graph, calib_x, cfg.eval_batch) if cfg.fisher else None

    def optimize(qg, walker, nodes, groups, record, result):
        _reconstruct_block(qg, walker, nodes, minmax_layers, cfg, record, result, logits,
                           groups, progress)

    return walk_blocks(start, calib_x, blocks, cfg.eval_batch, optimize)


def walk_blocks(start: QuantizedGraph, calib_x: np.ndarray, blocks: list[Block], eval_batch: int,
                optimize) -> ReconResult:
    """The block-by-block driver shared by the engines: each block in graph order gets
    `optimize(qg, walker, nodes, tie_groups, record, result)` with inputs from the already
    quantized preceding blocks; nodes outside blocks are only carried forward."""
    qg = copy_qgraph(start)
    graph = qg.graph
    walker = Walker(qg, calib_x, batch_size=eval_batch)
    result = ReconResult(qg)
    block_of = {name: b for b in blocks for name in b.nodes}
    groups = tie_groups(graph)
    for node in graph.nodes:
        if node.name in walker.done:
            continue
        block = block_of.get(node.name)
        if block is None:
            walker.advance([node], qg)
            continue
        nodes = [graph.node(n) for n in block.nodes]
        record = BlockRecord(len(result.blocks), block.kind, list(block.nodes))
        t0 = time.perf_counter()
        optimize(qg, walker, nodes, groups, record, result)
        record.seconds = round(time.perf_counter() - t0, 2)
        result.blocks.append(record)
        walker.advance(nodes, qg)
    return result


def _float_logits(graph: Graph, x: np.ndarray, batch_size: int) -> np.ndarray:
    out = graph.node(graph.outputs[0])
    name = out.inputs[0] if out.kind == "softmax" else out.name
    return np.concatenate([run_tf(graph, x[i:i + batch_size])[name].numpy()
                           for i in range(0, len(x), batch_size)])


def _fisher_weights(qg: QuantizedGraph, walker: Walker, nodes: list[Node],
                    out_q: np.ndarray, logits: np.ndarray, batch_size: int) -> np.ndarray:
    """g²/mean(g²) + 1, g = d KL(softmax(float logits) ‖ softmax(logits)) / d(block output),
    the rest of the model run in float from the quantized tensors computed so far."""
    import tensorflow as tf

    graph = qg.graph
    last = nodes[-1].name
    later = walker.later_nodes(nodes)
    out = graph.node(graph.outputs[0])
    logit_name = out.inputs[0] if out.kind == "softmax" else out.name
    grads = []
    for start in range(0, len(out_q), batch_size):
        sl = slice(start, start + batch_size)
        z = tf.constant(out_q[sl])
        with tf.GradientTape() as tape:
            tape.watch(z)
            values = {k: tf.constant(v[sl]) for k, v in walker.quant.items()}
            values[last] = z
            for node in later:
                values[node.name] = apply_node(node, [values[i] for i in node.inputs])
            q_logits = values[logit_name]
            p_f = tf.nn.softmax(tf.constant(logits[sl]))
            kl = tf.reduce_sum(p_f * (tf.math.log(p_f + 1e-12) - tf.nn.log_softmax(q_logits)),
                               axis=-1)
            loss = tf.reduce_mean(kl)
        grads.append(tape.gradient(loss, z).numpy())
    g2 = np.concatenate(grads).astype(np.float64) ** 2
    mean = g2.mean()
    return (g2 / mean + 1.0 if mean > 0 else np.ones_like(g2)).astype(np.float32)


def _reconstruct_block(qg, walker, nodes, minmax_layers, cfg, record, result, logits, groups,
                       progress) -> None:
    last = nodes[-1].name
    ext = walker.external_inputs(nodes)
    inputs = {e: walker.quant[e] for e in ext}
    target = walker.float_outputs(nodes)[last]
    weighted = [n for n in nodes if n.name in qg.layers]
    start_layers = {n.name: qg.layers[n.name] for n in weighted}
    fallback = {n.name: minmax_layers[n.name] for n in weighted}
    err = {}
    out_start = block_outputs(qg, nodes, inputs, batch_size=cfg.eval_batch)
    err["start"] = output_error(out_start, target)
    err["minmax"] = output_error(block_outputs(with_layers(qg, fallback), nodes, inputs,
                                               batch_size=cfg.eval_batch), target)
    record.error_minmax, record.error_start = err["minmax"], err["start"]
    if err["minmax"] < err["start"]:  # the Lp-optimal weight grid is not always the best start
        start_layers, err["start"] = fallback, err["minmax"]
        qg.layers.update(fallback)
        out_start = block_outputs(qg, nodes, inputs, batch_size=cfg.eval_batch)
        record.note = "started from the min-max grid (lower block error than MSE)"
    fisher = None
    if cfg.fisher and logits is not None:
        fisher = _fisher_weights(qg, walker, nodes, out_start, logits, cfg.eval_batch)
        record.fisher_max = float(fisher.max())
    label = f"block {record.index} ({record.kind}: {', '.join(n.name for n in nodes)})"
    learned = None
    iters = cfg.iters
    if weighted and min(qg.layers[n.name].bits for n in weighted) >= 8:
        iters = min(iters, cfg.iters_8bit)
    if weighted and iters > 0:
        learned, ok = _learn_rounding(qg, nodes, weighted, inputs, target, fisher, cfg,
                                      progress, label, iters)
        record.iters = iters
        if not ok:
            msg = (f"{label}: the loss became NaN/Inf during reconstruction; this block keeps "
                   "its min-max weights")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            result.warnings.append(msg)
            record.note = "NaN/Inf loss: fell back to min-max weights"
            record.kept = "minmax"
            qg.layers.update(fallback)
            record.error_final = err["minmax"]
            learned = None
    if learned is not None:
        err["reconstructed"] = output_error(block_outputs(with_layers(qg, learned), nodes,
                                                          inputs, batch_size=cfg.eval_batch),
                                            target)
        record.error_reconstructed = err["reconstructed"]
        choice = min(("reconstructed", "start", "minmax"), key=lambda k: err[k])
        record.kept = choice
        record.error_final = err[choice]
        qg.layers.update({"reconstructed": learned, "start": start_layers,
                          "minmax": fallback}[choice])
        if choice != "reconstructed":
            record.note = f"reconstruction did not lower the block error; kept {choice} weights"
    elif record.kept != "minmax":
        choice = min(("start", "minmax"), key=lambda k: err[k])
        record.kept, record.error_final = choice, err[choice]
        qg.layers.update(start_layers if choice == "start" else fallback)
    if cfg.act_iters > 0:
        _learn_act_steps(qg, walker, nodes, inputs, target, groups, cfg, record, progress, label)


def _learn_rounding(qg, nodes, weighted, inputs, target, fisher, cfg, progress, label, iters):
    """AdaRound on the block's weighted layers. Returns ({name: QuantLayer}, finite?)."""
    import tensorflow as tf

    from edgeq import intmath

    floors, scales_b, vs, bounds = {}, {}, {}, {}
    for node in weighted:
        layer = qg.layers[node.name]
        s_b = layer.scales.reshape(kernel_scale_shape(node, len(layer.scales)))
        floor, v = adaround.init_v(node.weights["kernel"], s_b)
        floors[node.name], scales_b[node.name] = tf.constant(floor), tf.constant(s_b)
        vs[node.name] = tf.Variable(v)
        bounds[node.name] = intmath.weight_qrange(layer.bits)
    variables = list(vs.values())
    opt = Adam(variables, cfg.lr or max(1e-2, 8.0 / max(iters, 1)))
    x_all = {e: tf.constant(v) for e, v in inputs.items()}
    t_all = tf.constant(target)
    w_all = tf.constant(fisher) if fisher is not None else None
    names = list(vs)
    # The target's mean square normalizes the loss, so that λ weighs the same against it at
    # every activation scale (BRECQ tuned λ on BN-normalized activations, mean square ≈ 1).
    energy = float(np.mean(np.square(target, dtype=np.float64))) or 1.0

    @tf.function(reduce_retracing=True)
    def step(idx, beta, reg_w):
        with tf.GradientTape() as tape:
            kernels = {n: adaround.soft_weights(floors[n], vs[n], scales_b[n], *bounds[n])
                       for n in names}
            batch = {e: tf.gather(v, idx) for e, v in x_all.items()}
            out = block_forward(qg, nodes, batch, kernels)
            d2 = tf.square(out - tf.gather(t_all, idx))
            if w_all is not None:
                d2 = d2 * tf.gather(w_all, idx)
            rec = tf.reduce_mean(tf.reduce_sum(d2, axis=-1)) / energy
            reg = tf.add_n([adaround.regularizer(vs[n], beta) for n in names])
            loss = rec + reg_w * reg
        opt.apply(tape.gradient(loss, variables))
        return loss

    schedule = adaround.Schedule(iters, cfg.warmup, cfg.beta[0], cfg.beta[1],
                                 cfg.reg_weight)
    rng = np.random.default_rng(cfg.seed + len(label))
    n = len(target)
    progress.start(label, iters)
    finite = True
    try:
        for t in range(iters):
            idx = rng.choice(n, min(cfg.batch_size, n), replace=False)
            loss = step(tf.constant(idx), tf.constant(schedule.beta(t), tf.float32),
                        tf.constant(schedule.reg(t), tf.float32))
            if t % 25 == 0 or t == iters - 1:
                if not _finite(loss):
                    finite = False
                    break
                progress.advance(25 if t else 1)
    finally:
        progress.finish()
    if not finite or not all(np.all(np.isfinite(v.numpy())) for v in variables):
        return None, False
    learned = {}
    for node in weighted:
        layer = qg.layers[node.name]
        q = adaround.hard_integers(floors[node.name].numpy(), vs[node.name].numpy(), layer.bits)
        learned[node.name] = QuantLayer(layer.bits, layer.scales, q, layer.bias)
    return learned, True


def _finite(loss) -> bool:
    return bool(np.isfinite(float(loss.numpy())))


def _learnable_tensors(qg, walker, nodes, groups) -> list[str]:
    """Block tensors whose step may change: not a softmax output, and every tensor tied to
    them is in this block or not computed yet (earlier tensors are fixed)."""
    inside = {n.name for n in nodes}
    out = []
    for node in nodes:
        if node.kind == "softmax":
            continue
        members = groups[node.name]
        if all(m in inside or m not in walker.done for m in members) and not any(
                qg.graph.node(m).kind in ("softmax", "input") for m in members):
            out.append(node.name)
    return out


def _learn_act_steps(qg, walker, nodes, inputs, target, groups, cfg, record, progress,
                     label) -> None:
    import tensorflow as tf

    names = _learnable_tensors(qg, walker, nodes, groups)
    if not names:
        return
    before = output_error(block_outputs(qg, nodes, inputs, True, batch_size=cfg.eval_batch),
                          target, cfg.act_p)
    logs = {t: tf.Variable(0.0) for t in names}
    base = {t: float(qg.act[t][0]) for t in names}
    variables = list(logs.values())
    opt = Adam(variables, cfg.act_lr)
    x_all = {e: tf.constant(v) for e, v in inputs.items()}
    t_all = tf.constant(target)

    @tf.function(reduce_retracing=True)
    def step(idx, lr_scale):
        with tf.GradientTape() as tape:
            scales = {t: base[t] * tf.exp(logs[t]) for t in names}
            batch = {e: tf.gather(v, idx) for e, v in x_all.items()}
            out = block_forward(qg, nodes, batch, {}, scales, quantize_output=True)
            d = tf.abs(out - tf.gather(t_all, idx))
            loss = tf.reduce_mean(tf.reduce_sum(tf.pow(d + 1e-12, cfg.act_p), axis=-1))
        opt.apply(tape.gradient(loss, variables), lr_scale)
        return loss

    rng = np.random.default_rng(cfg.seed + 7 + len(label))
    n = len(target)
    progress.start(f"{label}: activation steps", cfg.act_iters)
    try:
        for t in range(cfg.act_iters):
            idx = rng.choice(n, min(cfg.batch_size, n), replace=False)
            cosine = 0.5 * (1 + np.cos(np.pi * t / cfg.act_iters))
            loss = step(tf.constant(idx), tf.constant(cosine, tf.float32))
            if t % 25 == 0 and not _finite(loss):
                break
            if t % 25 == 0:
                progress.advance(25 if t else 1)
    finally:
        progress.finish()
    new = {t: np.float32(base[t] * np.exp(float(logs[t].numpy()))) for t in names}
    if not all(np.isfinite(v) and v > 0 for v in new.values()):
        return
    trial = QuantizedGraph(qg.graph, qg.layers, _with_steps(qg.act, new, groups), qg.plan)
    after = output_error(block_outputs(trial, nodes, inputs, True, batch_size=cfg.eval_batch),
                         target, cfg.act_p)
    record.act_error_before, record.act_error_after = before, after
    if after < before:
        qg.act.update(trial.act)
        record.act_learned = True


def _with_steps(act: dict, steps: dict[str, np.float32], groups) -> dict:
    act = dict(act)
    for tensor, scale in steps.items():
        for member in groups[tensor]:
            act[member] = (np.float32(scale), act[member][1])
    return act
