"""Quantization Guided Training: the loop, its checkpoints, tf.distribute, and the hand-over to
the exact exporter.

    result = train_qgt(keras_model, train_ds, val_ds, bits=2, epochs=5, progress=True,
                       checkpoint_dir="runs/qgt")
    rows = edgeq.learn.qgt.bottlenecks.find_bottlenecks(result, val_ds, bits=result.plan)
    tflite_bytes, qgraph = finish(result, calib_x, train_ds, ste_steps=200)

What is trained: the folded graph (edgeq.learn.graph.capture: BatchNorm folded into its conv), whose
kernels and biases become tf.Variables; the loss is the task loss (cross-entropy on labels, or
on the float model's own outputs with loss="distill"); after every optimizer step each kernel is
pulled the fraction λ(t) of the way toward its grid (pull="decoupled", or λ(t)·R is added to
the loss with pull="gradient"), R the grid regularizer of edgeq.learn.qgt.regularizer (see there for the
forms, the schedule and the scales). The grid steps are
re-estimated every `rescale_every` steps and at every epoch end.

STE phase (`ste_start`, a fraction of training): from then on the forward pass uses the kernels
rounded onto their grid with a straight-through gradient (quantization-aware training of the
folded graph; activations stay float), the pull goes on keeping the float kernels near their
grid points (so the straight-through mismatch stays small: the argument of bin regularization),
and a per-channel gain on each grid step is learned from the task loss, as LSQ learns steps:
it stands in for the BatchNorm scale that folding froze. Step re-estimation stops then.

Progress: a rich bar with the running task loss, R and λ; one line per epoch with the task
loss, R, the mean distance to the grid in LSB, and validation accuracy of the float weights and
of the same weights rounded onto their grid (float activations).

Checkpoints (`checkpoint_dir`): a tf.train.Checkpoint of the weights, grid steps, optimizer
state and step counter every `checkpoint_every` steps, at every epoch end, when
`stop_after_steps` is reached and on Ctrl-C, plus `qgt.json` (settings, per-epoch history and
the running sums of the current epoch). Calling train_qgt again with the same directory
resumes at the saved step: the batches of an epoch come from a permutation seeded by (seed,
epoch), so a resumed run sees the very batches the uninterrupted one would have.

Distribution (`distribute`): None runs on this machine (TensorFlow's default strategy);
"mirrored" uses tf.distribute.MirroredStrategy over the local GPUs (or the CPU); "multiworker"
uses tf.distribute.MultiWorkerMirroredStrategy, configured by the TF_CONFIG environment variable
that every host sets before starting the same command, for example on host 0 of 2:

    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}' edgeq train --qgt --distribute multiworker

Every replica takes an equal slice of each global batch (batch_size is the global batch);
gradients are summed across replicas by TensorFlow. With several workers only worker 0 (or the
"chief") writes `checkpoint_dir`; the others write to a temporary folder, as TensorFlow
requires. A tf.distribute.Strategy object may also be passed.

Export (`finish`): the trained weights are rounded onto their learned grid, activations get
min-max int8 ranges from calibration data (edgeq.learn.export.quantize_minmax on the on-grid graph),
optionally a short straight-through fine-tune runs on the simulated integer model
(edgeq.learn.quant.sim.SimModel), then edgeq.learn.export.to_tflite_model and edgeq.tflite.write write the
bytes. TFLite stores 8- and 4-bit weights only: 2- and 3-bit layers keep their integers and
scales and are stored in INT4 tensors (edgeq.learn.quantize.storable); the plan in the .tflite
metadata records the logical widths.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.learn.export import bit_plan, quantize_minmax, to_tflite_model, write_atomically
from edgeq.learn.graph import Graph, apply_node, capture, check_input
from edgeq.learn.qgt import regularizer as qgt_regularizer
from edgeq.learn.qgt.bottlenecks import probabilities
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer

DISTRIBUTE = ("mirrored", "multiworker")
LOSSES = ("labels", "distill")
# λ at full strength: a fraction of the distance per step (decoupled), or the weight of R in
# the loss (gradient).
DEFAULT_STRENGTH = {"decoupled": 0.05, "gradient": 1.0}
# With the straight-through forward (ste_start) the task loss already sees the grid, and the
# pull only keeps the float weights near it: fmnist W2, 4 epochs, Adam 2e-3: λ 0.002 gave a
# .tflite at 91.58 % (float 92.63 %); 0.01 and 0.05 pull against the task (80.0 % and less on a
# 12k-image slice, where λ 0.002 gave 81.9 %).
STE_STRENGTH = 0.002


def recipe(bits: int | dict[str, int]) -> dict:
    """train_qgt settings for a width or plan: below 4 bits straight-through training from the
    first step at Adam 2e-3 (the pull alone cannot reach a 2-bit grid in a few epochs); at 4
    bits and above the pull alone at 5e-4."""
    low = min(bits.values()) if isinstance(bits, dict) else bits
    if low < 4:
        return {"ste_start": 0.0, "learning_rate": 2e-3}
    return {"ste_start": None, "learning_rate": 5e-4}
STATE_FILE = "qgt.json"
# Settings that must match for a checkpoint to be resumed.
# Layers are matched by position (kind, kernel shape, bits), not by name: Keras numbers the
# names of a rebuilt model differently.
RESUME_KEYS = ("layers", "batch_size", "train_samples", "epochs", "seed", "loss")


@dataclass
class QGTResult:
    """The outcome of train_qgt. `graph` is the folded graph with the trained float weights,
    `scales` the grid steps per layer (flat: one per output channel, one for dense), `plan`
    the weight bits per layer, `history` one dict per epoch."""

    graph: Graph
    plan: dict[str, int]
    scales: dict[str, np.ndarray]
    history: list[dict] = field(default_factory=list)
    steps: int = 0
    total_steps: int = 0
    seconds: float = 0.0
    resumed_from_step: int = 0
    config: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.steps >= self.total_steps

    def grid_distance(self) -> float:
        """Mean distance of all regularized weights to their grid, in LSB."""
        return _grid_distance(self.graph, self.plan, self.scales)[0]

    def grid_graph(self) -> Graph:
        """A copy of the graph whose kernels sit exactly on their grid."""
        g = copy.deepcopy(self.graph)
        for node in g.weighted_nodes:
            bits = self.plan[node.name]
            node.weights["kernel"] = qgt_regularizer.on_grid(node.weights["kernel"],
                                                      self.scales[node.name], node, bits)
        return g

    def quantized_graph(self, calib_x, batch_size: int = 64) -> QuantizedGraph:
        """The integer model: learned grids for weights, min-max int8 activations observed on
        `calib_x` with the on-grid weights."""
        g = self.grid_graph()
        activations = quantize_minmax(g, calib_x, self.plan, batch_size).act
        layers = {}
        for node in g.weighted_nodes:
            bits, scales = self.plan[node.name], self.scales[node.name].astype(np.float32)
            flat = qgt_regularizer.flat_weights(node)
            axis = None if scales.size == 1 else 1
            q = intmath.quantize_weights(flat, scales, bits, axis)
            q = q.reshape(node.weights["kernel"].shape)
            layers[node.name] = QuantLayer(bits, scales, q, node.weights["bias"].astype(np.float32))
        return QuantizedGraph(g, layers, activations, dict(self.plan))

    def summary(self) -> dict:
        return {"steps": self.steps, "total_steps": self.total_steps,
                "seconds": round(self.seconds, 1), "resumed_from_step": self.resumed_from_step,
                "plan": self.plan, "grid_distance_lsb": self.grid_distance(),
                "history": self.history, "config": self.config}


# --------------------------------------------------------------------------- the folded model


class FoldedModel:
    """The folded graph with tf.Variables for kernels and biases (trainable) and grid steps
    (not trainable). Create it inside the strategy's scope."""

    def __init__(self, graph: Graph, plan: dict[str, int], scales: dict[str, np.ndarray]):
        import tensorflow as tf

        self.graph, self.plan = graph, plan
        self.kernels, self.biases, self.scales, self.gains = {}, {}, {}, {}
        for node in graph.weighted_nodes:
            self.kernels[node.name] = tf.Variable(node.weights["kernel"].astype(np.float32),
                                                  name=f"{node.name}_kernel")
            self.biases[node.name] = tf.Variable(node.weights["bias"].astype(np.float32),
                                                 name=f"{node.name}_bias")
            self.scales[node.name] = tf.Variable(
                np.reshape(scales[node.name], qgt_regularizer.scale_shape(node, scales[node.name])),
                trainable=False, name=f"{node.name}_scale")
            # Per-channel gain on the step, learned from the task in the STE phase only (as
            # LSQ learns steps; multiplicative, so one learning rate suits every layer).
            self.gains[node.name] = tf.Variable(np.ones_like(self.scales[node.name].numpy()),
                                                name=f"{node.name}_gain")
        out = graph.node(graph.outputs[0])
        # Train on logits: the final softmax is left out and folded into the loss.
        self.logits_name = out.inputs[0] if out.kind == "softmax" else out.name

    @property
    def trainable_variables(self) -> list:
        return [v for name in self.kernels for v in (self.kernels[name], self.biases[name])]

    @property
    def all_variables(self) -> list:
        """Kernels, biases and step gains (the gains train only in the STE phase)."""
        return [*self.trainable_variables, *self.gains.values()]

    def step(self, name: str):
        """The grid step of a layer: the estimated step times its learned gain."""
        return self.scales[name] * self.gains[name]

    def logits(self, x, on_grid: bool = False):
        values = {self.graph.inputs[0]: x}
        for node in self.graph.nodes:
            if node.kind == "input":
                continue
            weights = None
            if node.name in self.kernels:
                kernel = self.kernels[node.name]
                if on_grid:
                    kernel = qgt_regularizer.fake_quant_kernel(kernel, self.step(node.name),
                                                        self.plan[node.name])
                weights = {"kernel": kernel, "bias": self.biases[node.name]}
            values[node.name] = apply_node(node, [values[i] for i in node.inputs], weights)
            if node.name == self.logits_name:
                return values[node.name]
        raise DataError(f"graph {self.graph.name!r} has no output {self.logits_name!r}")

    def pull(self, lam, form: str) -> None:
        """Decoupled step toward the grid (cross-replica context under a strategy)."""
        for name, kernel in self.kernels.items():
            kernel.assign_sub(lam * qgt_regularizer.grid_pull(kernel, self.step(name),
                                                       self.plan[name], form))

    def regularizer(self, form: str):
        import tensorflow as tf

        terms = [qgt_regularizer.layer_penalty(self.kernels[n], self.step(n), self.plan[n], form)
                 for n in self.kernels]
        return tf.add_n(terms) / len(terms)

    def rescale(self, mode: str) -> None:
        for node in self.graph.weighted_nodes:
            scales = qgt_regularizer.estimate_scales(node, self.plan[node.name], mode,
                                              self.kernels[node.name].numpy())
            self.scales[node.name].assign(np.reshape(scales, self.scales[node.name].shape)
                                          / self.gains[node.name].numpy())

    def to_graph(self) -> tuple[Graph, dict[str, np.ndarray]]:
        g = copy.deepcopy(self.graph)
        for node in g.weighted_nodes:
            node.weights = {"kernel": self.kernels[node.name].numpy().astype(np.float32),
                            "bias": self.biases[node.name].numpy().astype(np.float32)}
        scales = {n: self.step(n).numpy().reshape(-1).astype(np.float32) for n in self.scales}
        return g, scales


def _grid_distance(graph: Graph, plan, scales) -> tuple[float, dict[str, float]]:
    per_layer, total, count = {}, 0.0, 0
    for node in graph.weighted_nodes:
        d = qgt_regularizer.grid_distance(node.weights["kernel"], scales[node.name], node,
                                   plan[node.name])
        per_layer[node.name] = float(d.mean())
        total, count = total + float(d.sum()), count + d.size
    return total / max(count, 1), per_layer


# --------------------------------------------------------------------------- distribution


def make_strategy(distribute):
    """None → TensorFlow's default strategy (this process, no replication)."""
    import tensorflow as tf

    if distribute is None:
        return tf.distribute.get_strategy()
    if isinstance(distribute, tf.distribute.Strategy):
        return distribute
    qgt_regularizer.check_choice("distribution", distribute, DISTRIBUTE)
    if distribute == "mirrored":
        return tf.distribute.MirroredStrategy()
    if "TF_CONFIG" not in os.environ:
        raise DataError("--distribute multiworker needs the TF_CONFIG environment variable",
                        "set TF_CONFIG on every host (cluster addresses and this host's index; "
                        "see edgeq/qgt_train.py) or use --distribute mirrored on one machine")
    return tf.distribute.MultiWorkerMirroredStrategy()


def _is_chief(strategy) -> bool:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)


# --------------------------------------------------------------------------- checkpoints


class _Checkpoints:
    def __init__(self, directory, strategy, trackables: dict):
        import tensorflow as tf

        self.directory = Path(directory) if directory is not None else None
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = None
        if self.directory is not None:
            target = self.directory
            if not _is_chief(strategy):
                target = Path(tempfile.mkdtemp(prefix="edgeq-qgt-worker-"))
            self.chief = target == self.directory
            self.manager = tf.train.CheckpointManager(self.checkpoint, str(target), max_to_keep=2)

    def state(self) -> dict | None:
        if self.directory is None or not (self.directory / STATE_FILE).is_file():
            return None
        try:
            return json.loads((self.directory / STATE_FILE).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise DataError(f"{self.directory / STATE_FILE}: unreadable QGT state ({e})",
                            "delete the checkpoint folder to start afresh") from e

    def restore(self) -> bool:
        if self.manager is None or self.manager.latest_checkpoint is None:
            return False
        self.checkpoint.restore(self.manager.latest_checkpoint)
        return True

    def save(self, step: int, state: dict) -> None:
        if self.manager is None:
            return
        self.manager.save(checkpoint_number=step)
        if self.chief:
            write_atomically(self.directory / STATE_FILE,
                             json.dumps({**state, "step": step}, indent=1).encode())


# --------------------------------------------------------------------------- training


class _Display:
    """Rich progress (progress=True), the caller's rich Progress, or nothing."""

    def __init__(self, progress, total: int):
        self.own, self.bar, self.task = None, None, None
        if progress is True:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.own = Progress(TextColumn("{task.description}"), BarColumn(),
                                MofNCompleteColumn(), TimeElapsedColumn())
            self.own.__enter__()
            self.bar = self.own
        elif progress not in (None, False):
            self.bar = progress
        if self.bar is not None:
            self.task = self.bar.add_task("qgt", total=total)

    def step(self, done: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=done, description=text)

    def log(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.log(text)

    def close(self) -> None:
        if self.own is not None:
            self.own.__exit__(None, None, None)


def _targets(graph: Graph, ds, loss: str, batch_size: int) -> np.ndarray:
    if loss == "labels":
        y = getattr(ds, "y", None)
        if y is None:
            raise DataError("QGT with loss='labels' needs a labelled training set",
                            "pass an edgeq Dataset, or use loss='distill' for unlabelled data")
        return np.asarray(y, np.int64)
    probs = probabilities(graph, np.asarray(ds.x if hasattr(ds, "x") else ds),
                                    None, batch_size)
    return probs.astype(np.float32)


def _accuracy(model: FoldedModel, ds, on_grid: bool, batch_size: int = 256) -> float | None:
    import tensorflow as tf

    if ds is None or getattr(ds, "y", None) is None or len(ds.y) == 0:
        return None
    correct = 0
    for i in range(0, len(ds.y), batch_size):
        logits = model.logits(tf.constant(ds.x[i:i + batch_size]), on_grid)
        correct += int(np.sum(np.argmax(logits.numpy(), -1) == ds.y[i:i + batch_size]))
    return correct / len(ds.y)


def train_qgt(model, train_ds, val_ds=None, bits: int | dict[str, int] = 4, epochs: int = 5, *,
              batch_size: int = 128, learning_rate: float = 5e-4,
              regularizer: str = "l2grid", pull: str = "decoupled",
              strength: float | None = None,
              schedule: qgt_regularizer.Schedule | None = None, scale_mode: str = "mse",
              rescale_every: int = 50, edge_bits: int = 8, loss: str = "labels",
              checkpoint_dir=None, checkpoint_every: int | None = None,
              distribute=None, progress=None, seed: int = 0, ste_start: float | None = None,
              stop_after_steps: int | None = None) -> QGTResult:
    """Train a Keras model (or a captured Graph) toward `bits`-bit weights.

    bits: one width for all layers but the first and last (`edge_bits`), or a {layer: bits}
    plan. regularizer: "l2grid" | "sin2" | "none" (ablation). pull: "decoupled" (a step
    toward the grid after each optimizer step) | "gradient" (λ·R in the loss). strength: λ at
    full strength, default DEFAULT_STRENGTH[pull], STE_STRENGTH with the decoupled pull and
    ste_start (ignored when `schedule` is given); `recipe(bits)` gives ste_start and the rate.
    scale_mode: "mse" | "minmax" | "fixed". ste_start: from this fraction of training on, the
    forward pass uses the weights rounded onto their grid with a straight-through gradient
    (quantization-aware training of the folded graph, float activations), so the task loss
    sees the quantized network while the pull keeps the float weights near the grid.
    loss: "labels" (cross-entropy on train_ds.y) or "distill" (cross-entropy on the starting
    model's own outputs; train_ds may then be unlabelled). checkpoint_dir: resume from it when
    it holds a checkpoint with the same settings. stop_after_steps: stop (and checkpoint) after
    that many steps in this call, e.g. to split a long run. Returns a QGTResult."""
    import tensorflow as tf
    import tf_keras as keras

    qgt_regularizer.check_choice("regularizer", regularizer, qgt_regularizer.REGULARIZERS)
    qgt_regularizer.check_choice("pull", pull, qgt_regularizer.PULLS)
    if strength is None:
        ste = ste_start is not None and pull == "decoupled"
        strength = STE_STRENGTH if ste else DEFAULT_STRENGTH[pull]
    qgt_regularizer.check_choice("scale mode", scale_mode, qgt_regularizer.SCALE_MODES)
    qgt_regularizer.check_choice("loss", loss, LOSSES)
    schedule = schedule or qgt_regularizer.Schedule(strength)
    if pull == "decoupled" and schedule.strength > 1:
        raise DataError(f"decoupled pull strength {schedule.strength} would overshoot the grid",
                        "use a strength in (0, 1]: the fraction of the distance moved per step")
    graph = model if isinstance(model, Graph) else capture(model)
    plan = bit_plan(graph, bits, edge_bits)
    x = check_input(graph, train_ds.x if hasattr(train_ds, "x") else train_ds)
    targets = _targets(graph, train_ds, loss, 256)
    steps_per_epoch = len(x) // batch_size
    if steps_per_epoch == 0 or epochs < 1:
        raise DataError(f"{len(x)} training samples, batch {batch_size}, {epochs} epochs: "
                        "nothing to train", "use at least one full batch and one epoch")
    total = epochs * steps_per_epoch
    config = {"plan": plan, "layers": [[n.kind, list(n.weights["kernel"].shape), plan[n.name]]
                                       for n in graph.weighted_nodes],
              "batch_size": batch_size, "train_samples": len(x), "epochs": epochs,
              "seed": seed, "loss": loss, "regularizer": regularizer, "pull": pull,
              "schedule": {"strength": schedule.strength, "start": schedule.start,
                           "end": schedule.end, "ramp": schedule.ramp},
              "scale_mode": scale_mode, "rescale_every": rescale_every,
              "learning_rate": learning_rate, "ste_start": ste_start}
    strategy = make_strategy(distribute)
    config["replicas"] = int(strategy.num_replicas_in_sync)
    start_scales = {n.name: qgt_regularizer.estimate_scales(n, plan[n.name],
                                                     "minmax" if scale_mode == "minmax" else "mse")
                    for n in graph.weighted_nodes}
    with strategy.scope():
        folded = FoldedModel(graph, plan, start_scales)
        decay = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=total)
        optimizer = keras.optimizers.Adam(decay)
        # Slots for every variable now: the STE phase adds the grid steps to the update.
        optimizer.build(folded.all_variables)
        step_var = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    ckpt = _Checkpoints(checkpoint_dir, strategy,
                        {"kernels": list(folded.kernels.values()),
                         "biases": list(folded.biases.values()),
                         "scales": list(folded.scales.values()),
                         "gains": list(folded.gains.values()),
                         "optimizer": optimizer, "step": step_var})
    history, sums = [], [0.0, 0.0, 0]
    state = ckpt.state()
    if ckpt.restore():
        if state is None or any(state["config"].get(k) != config[k] for k in RESUME_KEYS):
            raise DataError(f"{checkpoint_dir}: the checkpoint was made with other settings "
                            f"({', '.join(RESUME_KEYS)} must match)",
                            "use another --checkpoint-dir, or the same settings to resume")
        history = state["history"]
        if state.get("step") == int(step_var.numpy()):
            sums = state["epoch_sums"]
    resumed_from = int(step_var.numpy())

    def replica_step(xb, yb, lam, on_grid):
        with tf.GradientTape() as tape:
            logits = folded.logits(xb, on_grid)
            if loss == "labels":
                per_example = tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits)
            else:
                per_example = tf.nn.softmax_cross_entropy_with_logits(yb, logits)
            task = tf.nn.compute_average_loss(per_example)
            reg = folded.regularizer(regularizer)
            total_loss = task
            if pull == "gradient":
                total_loss += lam * reg / strategy.num_replicas_in_sync
        # In the STE phase the step gains learn from the task too (as in LSQ): a per-channel
        # gain that stands in for the BatchNorm scale folded away.
        variables = folded.all_variables if on_grid else folded.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(total_loss, variables), variables,
                                      strict=True))
        return task, reg

    @tf.function
    def train_step(xb, yb, lam, on_grid: bool):
        task, reg = strategy.run(replica_step, args=(xb, yb, lam, on_grid))
        if on_grid:  # a learned step must stay positive for the rounding to mean anything
            for gain in folded.gains.values():
                gain.assign(tf.maximum(gain, 1e-3))
        if pull == "decoupled":
            folded.pull(lam, regularizer)
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, task, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, reg, axis=None))

    def distributed(batch: np.ndarray):
        n = strategy.num_replicas_in_sync
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: tf.constant(batch[ctx.replica_id_in_sync_group::n]))

    def saved_state() -> dict:
        return {"config": config, "history": history, "epoch_sums": sums}

    display = _Display(progress, total)
    t0 = time.perf_counter()
    step = resumed_from
    stop_at = total if stop_after_steps is None else min(total, step + stop_after_steps)
    try:
        while step < stop_at:
            epoch, offset = divmod(step, steps_per_epoch)
            order = np.random.default_rng([seed, epoch]).permutation(len(x))
            for b in range(offset, steps_per_epoch):
                on_grid = ste_start is not None and step >= ste_start * total
                if (scale_mode != "fixed" and rescale_every and step % rescale_every == 0
                        and step and not on_grid):
                    folded.rescale(scale_mode)
                lam = schedule(step / total)
                idx = np.sort(order[b * batch_size:(b + 1) * batch_size])
                task, reg = train_step(distributed(x[idx]), distributed(targets[idx]),
                                       tf.constant(lam, tf.float32), on_grid)
                if not np.isfinite(float(task)):  # the last checkpoint stays as it was
                    raise DataError(f"QGT diverged at step {step + 1} of {total}: the task loss "
                                    f"is {float(task)}",
                                    "lower the learning rate (--lr), or train toward more bits")
                step += 1
                step_var.assign(step)
                sums = [sums[0] + float(task), sums[1] + float(reg), sums[2] + 1]
                display.step(step, f"qgt epoch {epoch + 1}/{epochs} task {float(task):.3f} "
                                   f"R {float(reg):.4f} λ {lam:.3g}")
                if checkpoint_every and step % checkpoint_every == 0:
                    ckpt.save(step, saved_state())
                if step >= stop_at:
                    break
            if step % steps_per_epoch == 0:
                if scale_mode != "fixed" and (ste_start is None or step < ste_start * total):
                    folded.rescale(scale_mode)
                history.append(_epoch_row(folded, epoch, sums, schedule(step / total), val_ds))
                sums = [0.0, 0.0, 0]
                display.log(_epoch_line(history[-1], epochs))
            ckpt.save(step, saved_state())
    except KeyboardInterrupt:
        ckpt.save(step, saved_state())
        display.log(f"interrupted at step {step}; the checkpoint resumes from there")
        raise
    finally:
        display.close()
    trained, scales = folded.to_graph()
    return QGTResult(trained, plan, scales, history, step, total,
                     time.perf_counter() - t0, resumed_from, config)


def _epoch_row(folded: FoldedModel, epoch: int, sums, lam: float, val_ds) -> dict:
    graph, scales = folded.to_graph()
    distance, per_layer = _grid_distance(graph, folded.plan, scales)
    count = max(sums[2], 1)
    return {"epoch": epoch + 1, "task_loss": sums[0] / count, "regularizer": sums[1] / count,
            "lambda": lam, "grid_distance_lsb": distance, "layer_distance_lsb": per_layer,
            "val_accuracy": _accuracy(folded, val_ds, False),
            "val_accuracy_on_grid": _accuracy(folded, val_ds, True)}


def _epoch_line(row: dict, epochs: int) -> str:
    def acc(v):
        return "-" if v is None else f"{v:.4f}"

    return (f"epoch {row['epoch']}/{epochs}: task {row['task_loss']:.4f} "
            f"R {row['regularizer']:.4f} (λ {row['lambda']:.3g}) "
            f"grid distance {row['grid_distance_lsb']:.4f} LSB "
            f"val acc {acc(row['val_accuracy'])} on grid {acc(row['val_accuracy_on_grid'])}")


# --------------------------------------------------------------------------- finish


def ste_finetune(qgraph: QuantizedGraph, train_ds, steps: int = 200, batch_size: int = 64,
                 learning_rate: float = 1e-4, seed: int = 0, progress=None) -> QuantizedGraph:
    """A short fine-tune of the simulated integer model (fake-quantized weights and
    activations, straight-through rounding) on labelled data: kernels and weight steps move,
    activation ranges stay. Returns the improved QuantizedGraph (same plan)."""
    import tensorflow as tf
    import tf_keras as keras

    from edgeq.learn.quant.sim import SimModel

    y = getattr(train_ds, "y", None)
    if y is None:
        raise DataError("the straight-through fine-tune needs a labelled training set",
                        "pass an edgeq Dataset, or ste_steps=0")
    graph = qgraph.graph
    sim = SimModel(qgraph, dtype="float32", exact=False)
    out = graph.node(graph.outputs[0])
    logits_name = out.inputs[0] if out.kind == "softmax" else out.name
    variables = [*sim.kernels.values(), *sim.weight_scales.values()]
    optimizer = keras.optimizers.Adam(learning_rate)
    rng = np.random.default_rng(seed)
    display = _Display(progress, steps)
    try:
        for step in range(steps):
            idx = np.sort(rng.choice(len(y), size=min(batch_size, len(y)), replace=False))
            with tf.GradientTape() as tape:
                logits = sim.tensors(train_ds.x[idx])[logits_name]
                task = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    tf.constant(y[idx]), tf.cast(logits, tf.float32)))
            optimizer.apply_gradients(zip(tape.gradient(task, variables), variables, strict=True))
            # Steps must stay positive for the rounding to mean anything.
            for s in sim.weight_scales.values():
                s.assign(tf.maximum(s, 1e-8))
            display.step(step + 1, f"STE fine-tune loss {float(task):.3f}")
    finally:
        display.close()
    return sim.to_qgraph()


def finish(result: QGTResult, calib_x, train_ds=None, ste_steps: int = 0,
           io_dtype: str = "int8", path=None, progress=None) -> tuple[bytes, QuantizedGraph]:
    """The trained model as .tflite bytes (also written atomically to `path`): weights on the
    learned grids, min-max int8 activations from `calib_x`, an optional straight-through
    fine-tune of `ste_steps` steps on `train_ds`, then edgeq's exact writer. Layers below 4
    bits are stored as INT4 with their 2/3-bit integers."""
    from edgeq.learn.quantize import storable
    from edgeq.tflite.write import write_model

    qgraph = result.quantized_graph(calib_x)
    if ste_steps:
        qgraph = ste_finetune(qgraph, train_ds, ste_steps, progress=progress)
    qgraph = storable(qgraph)
    data = write_model(to_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data, qgraph
