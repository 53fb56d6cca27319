"""Genie-D: zero-shot calibration images made from a model's BatchNorm statistics.

    x = synthesize(keras_model, n=1024)          # float32 (N, H, W, C) in the model's input domain
    save_npz(x, "synthetic.npz"); preview_png(x, "synthetic.png")

A trained BatchNormalization layer stores the mean and variance of its input over the training
data. Images whose activations reproduce those statistics at every BN layer are good calibration
data for quantization (Genie, Jeon et al., CVPR 2023). For every batch a fresh small generator
and learnable latents are optimized together so that, at each BN layer, the batch's per-channel
mean and standard deviation of the BN input match the stored moving mean and sqrt(variance).

How edgeq does it:

- The model is read UNFOLDED: every Keras layer becomes edgeq's raw graph nodes
  (keras_reader + graph.layer_to_nodes, before any folding pass), so BN layers still exist; they
  are run with their inference affine, and their inputs are the tapped tensors. This works for
  Keras 2 and Keras 3 alike. Only the nodes up to the last BN run.
- Generator: latent 256 → dense → (H/4 × W/4 × w) map → BN → [upsample ×2, conv 3×3, BN,
  LeakyReLU(0.2)] ×2 (widths w, w/2) → conv 3×3 to the input channels → tanh → BN without affine.
  Its BN layers use batch statistics (it is trained per batch and thrown away). w follows the
  image size (`generator_width`: 32 / 16 / 8), Genie's 128/64 being far too slow on 2 cores.
- Input distribution: the normalized generator output g becomes x = clip(m + s·g, lo, hi) with
  per-channel m, s learned jointly (generator learning rate). m starts at the least-squares input
  mean implied by the first conv+BN (mean(conv(x)) = Σ W·m + b), s at a quarter of the input
  range (about what natural images in [0, 1] have), so the image's per-channel mean/std are those
  of the model's input distribution. The domain [lo, hi] defaults to [0, 1], the domain of every
  edgeq model card (pixels / 255); pass `input_range` for others.
- Swing convolution: every strided conv/depthwise conv sees its input reflect-padded by 1 and
  cropped back to its size at a random offset of 0–2 pixels (drawn per conv and per step), so
  the images do not learn the stride's aliasing pattern.
- Optimisation: Adam, latents lr 0.1 with plateau decay (halved after `patience` steps without
  improvement, floor 1e-4), generator lr 0.01 with exponential decay to 1% over the run.
  Loss = mean over BN layers of ‖μ_batch − μ_bn‖₂ + ‖σ_batch − σ_bn‖₂.

Measured trade-off (vww_96.h5, 96×96×3, on 2 cores shared with other jobs): see
DEFAULT_ITERATIONS and generator_width below. The time per iteration grows about linearly with
the batch (32: 0.40 s, 64: 1.2 s under heavier load), so the default 1024 images (8 batches of
128 × 100 iterations) take some minutes on 2 idle cores; fewer samples (256 suffice for min-max
and reconstruction calibration) or a smaller batch cut it proportionally.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.errors import DataError
from edgeq.learn.graph import Node, apply_node, layer_to_nodes
from edgeq.learn.keras_reader import read_keras
from edgeq.outputs import staged_file

LATENT_DIM = 256
LATENT_LR = 0.1
GENERATOR_LR = 0.01
LR_FLOOR = 1e-4
LEAKY_SLOPE = 0.2
SWING_PAD = 1
# Iterations per batch. Measured on vww_96 (batch 64, width 8, 2 cores shared with a load of
# ~11): BN loss 4.53 at the start, 1.47 after 25 iterations, 1.08 after 50, 0.76 after 100,
# 0.65 after 200, 0.66 after 300 (plateau), 1.2 s per iteration. 100 iterations get ~95 % of the
# reachable reduction at a third of the time of 300.
DEFAULT_ITERATIONS = 100
DEFAULT_SAMPLES = 1024
DEFAULT_BATCH = 128


@dataclass
class BNTarget:
    """One BatchNormalization layer: the node whose output it normalizes, and its statistics."""

    layer: str
    source: str
    mean: np.ndarray
    std: np.ndarray


@dataclass
class UnfoldedModel:
    """The model's raw nodes (BN not folded), cut after the last BN layer."""

    name: str
    input: str
    input_shape: tuple[int, ...]
    nodes: list[Node]
    targets: list[BNTarget]


@dataclass
class BatchResult:
    x: np.ndarray
    losses: list[float] = field(default_factory=list)  # BN-statistics loss per iteration
    seconds: float = 0.0


def read_unfolded(keras_model, require_trained: bool = True) -> UnfoldedModel:
    """Raw nodes and BN statistics of a Keras 2/3 model; DataError without BN statistics (or,
    with `require_trained`, when they are all still at their initial values)."""
    km = read_keras(keras_model)
    if len(km.inputs) != 1:
        raise DataError(f"model {km.name!r} has {len(km.inputs)} inputs",
                        "Genie synthesis works on single-input image models")
    per_layer = [layer_to_nodes(layer) for layer in km.layers]
    last = {layer.name: nodes[-1].name for layer, nodes in zip(km.layers, per_layer, strict=True)}
    for nodes in per_layer:
        nodes[0].inputs = [last[i] for i in nodes[0].inputs]
    nodes = [n for group in per_layer for n in group]
    targets = []
    for layer in km.layers:
        if layer.class_name != "BatchNormalization":
            continue
        mean, var = layer.weights[-2], layer.weights[-1]  # moving_mean, moving_variance
        targets.append(BNTarget(layer.name, last[layer.inbound[0]], mean.astype(np.float32),
                                np.sqrt(np.maximum(var, 0.0)).astype(np.float32)))
    input_layer = km.inputs[0]
    shape = next(layer.output_shape for layer in km.layers if layer.name == input_layer)
    if not targets:
        raise DataError(
            f"model {km.name!r} has no BatchNormalization layer, so it stores no statistics of "
            "its training data to synthesize images from",
            "calibrate with real data (--data PATH: an image folder, .npz or IDX) instead of "
            "--zero-shot")
    if require_trained and all(np.all(t.mean == 0) and np.all(t.std == 1) for t in targets):
        raise DataError(
            f"model {km.name!r}: every BatchNormalization layer still holds its initial "
            "statistics (mean 0, variance 1): the model was never trained, or BN was frozen",
            "train the model first, or calibrate with real data (--data PATH)")
    if len(shape) != 3:
        raise DataError(f"model {km.name!r} takes inputs of shape {shape}",
                        "Genie synthesis makes images: the model must take (H, W, C) inputs")
    order = {n.name: i for i, n in enumerate(nodes)}
    cut = max(order[t.source] for t in targets)
    needed = _ancestors(nodes[:cut + 1], {t.source for t in targets})
    kept = [n for n in nodes[:cut + 1] if n.name in needed]
    return UnfoldedModel(km.name, last[input_layer], tuple(shape), kept, targets)


def generator_width(shape) -> int:
    """Channels of the generator's first stage: 32 up to 32×32 images, 16 up to 64×64, else 8.
    Measured on vww_96 (96×96, batch 32, 2 shared cores): width 32 costs 1.08 s/iteration,
    16 0.68 s, 8 0.40 s, and 8 and 16 lower the BN loss the same (4.5 → 1.7 in 40 steps): at
    that size the generator, not the model, dominates the time."""
    side = max(shape[0], shape[1])
    return 32 if side <= 32 else 16 if side <= 64 else 8


def _ancestors(nodes: list[Node], wanted: set[str]) -> set[str]:
    by_name = {n.name: n for n in nodes}
    seen, stack = set(), list(wanted)
    while stack:
        name = stack.pop()
        if name not in seen:
            seen.add(name)
            stack.extend(by_name[name].inputs)
    return seen


# --------------------------------------------------------------------------- model forward


def _swing(x, offsets):
    """Reflect-pad by SWING_PAD, crop back to the same size at offsets (dy, dx) in 0..2."""
    import tensorflow as tf

    h, w = x.shape[1], x.shape[2]
    p = SWING_PAD
    padded = tf.pad(x, [[0, 0], [p, p], [p, p], [0, 0]], mode="REFLECT")
    return tf.slice(padded, [0, offsets[0], offsets[1], 0], [-1, h, w, -1])


def bn_inputs(model: UnfoldedModel, x, swing_rng=None) -> dict:
    """Every BN layer's input tensor for the batch x (TensorFlow). With `swing_rng` (a
    tf.random.Generator) strided convolutions see swung inputs."""
    import tensorflow as tf

    values = {model.input: tf.convert_to_tensor(x, tf.float32)}
    for node in model.nodes:
        if node.kind == "input":
            continue
        ins = [values[i] for i in node.inputs]
        if node.kind == "batch_norm":
            y = ins[0] * node.attrs["scale"] + node.attrs["offset"]
        elif node.kind == "relu":
            y = tf.nn.relu(ins[0])
            if node.attrs["max_value"] is not None:
                y = tf.minimum(y, node.attrs["max_value"])
        elif node.kind == "identity":
            y = ins[0]
        else:
            strided = node.kind in ("conv2d", "depthwise_conv2d") and node.attrs["strides"] != (1, 1)
            if strided and swing_rng is not None and min(ins[0].shape[1:3]) > SWING_PAD:
                offsets = swing_rng.uniform([2], 0, 2 * SWING_PAD + 1, dtype=tf.int32)
                ins = [_swing(ins[0], offsets)]
            y = apply_node(node, ins)
        values[node.name] = y
    return {t.layer: values[t.source] for t in model.targets}


def bn_loss(model: UnfoldedModel, taps: dict):
    """Mean over BN layers of ‖μ − μ_bn‖₂ + ‖σ − σ_bn‖₂ (per-channel batch statistics)."""
    import tensorflow as tf

    terms = []
    for t in model.targets:
        v = taps[t.layer]
        axes = list(range(len(v.shape) - 1))
        mean, var = tf.nn.moments(v, axes)
        std = tf.sqrt(var + 1e-5)
        terms.append(tf.norm(mean - t.mean) + tf.norm(std - t.std))
    return tf.add_n(terms) / len(terms)


def input_mean_estimate(model: UnfoldedModel, input_range) -> np.ndarray:
    """Per-channel input mean implied by the first conv/dense whose output feeds a BN
    (least squares on mean(conv(x)) = Σ_k W_k·m + b); the range's centre otherwise."""
    lo, hi = input_range
    channels = model.input_shape[-1]
    centre = np.full(channels, (lo + hi) / 2, np.float32)
    by_name = {n.name: n for n in model.nodes}
    for t in model.targets:
        node = by_name[t.source]
        if node.kind != "conv2d":
            continue
        source = by_name[node.inputs[0]]
        if source.kind == "pad":
            source = by_name[source.inputs[0]]
        if source.name != model.input:
            continue
        a = node.weights["kernel"].sum(axis=(0, 1))  # (cin, cout)
        m, *_ = np.linalg.lstsq(a.T, t.mean - node.weights["bias"], rcond=None)
        margin = 0.1 * (hi - lo)
        return np.clip(m, lo + margin, hi - margin).astype(np.float32)
    return centre


# --------------------------------------------------------------------------- generator


class Generator:
    """The small per-batch generator (plain tf.Variables, re-initialized for every batch)."""

    def __init__(self, shape, width: int, latent_dim: int = LATENT_DIM):
        import tensorflow as tf

        h, w, c = shape
        self.shape = shape
        self.h0, self.w0 = -(-h // 4), -(-w // 4)
        self.width, self.latent_dim = width, latent_dim
        half = max(width // 2, 4)
        self.specs = {
            "dense_w": (latent_dim, self.h0 * self.w0 * width), "dense_b": (self.h0 * self.w0 * width,),
            "bn0_g": (width,), "bn0_b": (width,),
            "conv1_w": (3, 3, width, width), "conv1_b": (width,), "bn1_g": (width,), "bn1_b": (width,),
            "conv2_w": (3, 3, width, half), "conv2_b": (half,), "bn2_g": (half,), "bn2_b": (half,),
            "conv3_w": (3, 3, half, c), "conv3_b": (c,),
            "in_mean": (c,), "in_std": (c,),
        }
        self.vars = {k: tf.Variable(tf.zeros(s), name=k) for k, s in self.specs.items()}

    def reset(self, rng: np.random.Generator, in_mean: np.ndarray, in_std: float) -> None:
        for name, var in self.vars.items():
            shape = self.specs[name]
            if name.endswith("_w"):
                fan_in = int(np.prod(shape[:-1]))
                value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
            elif name.endswith("_g"):
                value = np.ones(shape)
            elif name == "in_mean":
                value = in_mean
            elif name == "in_std":
                value = np.full(shape, in_std)
            else:
                value = np.zeros(shape)
            var.assign(np.asarray(value, np.float32))

    def __call__(self, z, input_range):
        import tensorflow as tf

        v = self.vars

        def bn(x, g=None, b=None):
            mean, var = tf.nn.moments(x, [0, 1, 2], keepdims=True)
            x = (x - mean) * tf.math.rsqrt(var + 1e-5)
            return x if g is None else x * g + b

        def up_conv(x, name):
            x = tf.repeat(tf.repeat(x, 2, axis=1), 2, axis=2)  # nearest-neighbour ×2
            x = tf.nn.conv2d(x, v[f"{name}_w"], 1, "SAME") + v[f"{name}_b"]
            return x

        x = tf.matmul(z, v["dense_w"]) + v["dense_b"]
        x = tf.reshape(x, [-1, self.h0, self.w0, self.width])
        x = bn(x, v["bn0_g"], v["bn0_b"])
        x = tf.nn.leaky_relu(bn(up_conv(x, "conv1"), v["bn1_g"], v["bn1_b"]), LEAKY_SLOPE)
        x = tf.nn.leaky_relu(bn(up_conv(x, "conv2"), v["bn2_g"], v["bn2_b"]), LEAKY_SLOPE)
        x = tf.nn.conv2d(x, v["conv3_w"], 1, "SAME") + v["conv3_b"]
        x = bn(tf.tanh(x))  # no affine
        h, w, _ = self.shape
        x = x[:, :h, :w, :]
        lo, hi = input_range
        return tf.clip_by_value(v["in_mean"] + v["in_std"] * x, lo, hi)


class _Adam:
    """Adam whose state is reset per batch (plain variables, so one traced step serves all)."""

    def __init__(self, variables: list, lr: float):
        import tensorflow as tf

        self.variables = variables
        self.lr = tf.Variable(lr, dtype=tf.float32, trainable=False)
        self.t = tf.Variable(0.0, trainable=False)
        self.m = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]
        self.v = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def reset(self, lr: float) -> None:
        self.lr.assign(lr)
        self.t.assign(0.0)
        for s in (*self.m, *self.v):
            s.assign(np.zeros(s.shape, np.float32))

    def apply(self, grads) -> None:
        import tensorflow as tf

        self.t.assign_add(1.0)
        b1, b2 = 0.9, 0.999
        correction = tf.sqrt(1 - b2 ** self.t) / (1 - b1 ** self.t)
        for var, g, m, v in zip(self.variables, grads, self.m, self.v, strict=True):
            m.assign(b1 * m + (1 - b1) * g)
            v.assign(b2 * v + (1 - b2) * tf.square(g))
            var.assign_sub(self.lr * correction * m / (tf.sqrt(v) + 1e-8))


# --------------------------------------------------------------------------- synthesis


class Synthesizer:
    """Holds the traced optimisation step; `batch(n, iterations, seed)` makes n images."""

    def __init__(self, keras_model, input_range=(0.0, 1.0), width: int | None = None,
                 swing: bool = True):
        import tensorflow as tf

        self.model = keras_model if isinstance(keras_model, UnfoldedModel) else \
            read_unfolded(keras_model)
        self.input_range = (float(input_range[0]), float(input_range[1]))
        if not self.input_range[1] > self.input_range[0]:
            raise DataError(f"input range {input_range} is empty", "pass (low, high) with low < high")
        self.swing = swing
        self.generator = Generator(self.model.input_shape,
                                   width or generator_width(self.model.input_shape))
        self.in_mean = input_mean_estimate(self.model, self.input_range)
        self.in_std = 0.25 * (self.input_range[1] - self.input_range[0])
        self.gen_opt = _Adam(list(self.generator.vars.values()), GENERATOR_LR)
        self._steps: dict[int, tuple] = {}  # batch size -> (latents, optimizer, rng, fns)
        self._tf = tf

    def _step_fn(self, n: int):
        """One traced step per batch size (the latents variable is per size)."""
        tf = self._tf
        if n in self._steps:
            return self._steps[n]
        latents = tf.Variable(tf.zeros([n, self.generator.latent_dim]), name="latents")
        lat_opt = _Adam([latents], LATENT_LR)
        swing_rng = tf.random.Generator.from_seed(0) if self.swing else None

        @tf.function(autograph=False)
        def step():
            with tf.GradientTape() as tape:
                x = self.generator(latents, self.input_range)
                loss = bn_loss(self.model, bn_inputs(self.model, x, swing_rng))
            variables = [latents, *self.gen_opt.variables]
            grads = tape.gradient(loss, variables)
            lat_opt.apply(grads[:1])
            self.gen_opt.apply(grads[1:])
            return loss

        @tf.function(autograph=False)
        def images():
            return self.generator(latents, self.input_range)

        self._steps[n] = (latents, lat_opt, swing_rng, step, images)
        return self._steps[n]

    def batch(self, n: int, iterations: int, seed: int = 0,
              progress: Callable[[int, float], None] | None = None) -> BatchResult:
        started = time.perf_counter()
        rng = np.random.default_rng(seed)
        latents, lat_opt, swing_rng, step, images = self._step_fn(n)
        self.generator.reset(rng, self.in_mean, self.in_std)
        latents.assign(rng.standard_normal((n, self.generator.latent_dim)).astype(np.float32))
        lat_opt.reset(LATENT_LR)
        self.gen_opt.reset(GENERATOR_LR)
        if swing_rng is not None:
            swing_rng.reset_from_seed(seed)
        # Generator lr: exponential decay to 1 % over the run; latents: halve on a plateau.
        gamma = 0.01 ** (1.0 / max(iterations, 1))
        patience = max(10, iterations // 20)
        best, since_best, lat_lr = np.inf, 0, LATENT_LR
        losses = []
        for i in range(iterations):
            loss = float(step())
            if not np.isfinite(loss):
                raise DataError(f"Genie synthesis of model {self.model.name!r}: the BN-statistics "
                                f"loss became {loss} at iteration {i}",
                                "use fewer iterations or a smaller batch, or calibrate with real "
                                "data")
            losses.append(loss)
            self.gen_opt.lr.assign(GENERATOR_LR * gamma ** (i + 1))
            if loss < best * (1 - 1e-4):
                best, since_best = loss, 0
            else:
                since_best += 1
                if since_best >= patience and lat_lr > LR_FLOOR:
                    lat_lr = max(lat_lr / 2, LR_FLOOR)
                    lat_opt.lr.assign(lat_lr)
                    since_best = 0
            if progress is not None:
                progress(i + 1, loss)
        x = images().numpy().astype(np.float32)
        return BatchResult(x, losses, time.perf_counter() - started)


def synthesize(keras_model, n: int = DEFAULT_SAMPLES, batch_size: int = DEFAULT_BATCH,
               iterations: int = DEFAULT_ITERATIONS, seed: int = 0,
               progress: Callable[[int, int], None] | None = None,
               input_range=(0.0, 1.0), width: int | None = None) -> np.ndarray:
    """`n` synthetic calibration images (float32 NHWC, in `input_range`) for a Keras model with
    trained BatchNorm layers. `progress(done, total)` counts iterations over all batches."""
    if n < 1 or batch_size < 1 or iterations < 1:
        raise DataError(f"synthesis needs n, batch size and iterations >= 1 (got {n}, "
                        f"{batch_size}, {iterations})")
    synth = Synthesizer(keras_model, input_range, width)
    sizes = [min(batch_size, n - start) for start in range(0, n, batch_size)]
    total, done = len(sizes) * iterations, 0
    parts = []
    for k, size in enumerate(sizes):
        def tick(i, _loss, base=done):
            if progress is not None:
                progress(base + i, total)

        parts.append(synth.batch(size, iterations, seed=seed * 1000 + k, progress=tick).x)
        done += iterations
    return np.concatenate(parts)


# --------------------------------------------------------------------------- outputs


def save_npz(x: np.ndarray, path) -> Path:
    """Write `x` (what edgeq.data.load_npz reads) atomically; no labels."""
    path = Path(path)
    x = np.asarray(x, np.float32)
    if x.ndim != 4 or not np.all(np.isfinite(x)):
        raise DataError(f"{path}: refusing to save images of shape {x.shape} (or with NaN/Inf)",
                        "pass a finite (N, H, W, C) array")
    with staged_file(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy keeps the name
        np.savez_compressed(f, x=x)
    return path


def preview_png(x: np.ndarray, path, columns: int = 8, count: int = 32,
                input_range=(0.0, 1.0)) -> Path:
    """A grid of the first `count` images (grayscale or RGB) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    x = np.asarray(x[:count], np.float32)
    lo, hi = input_range
    x = np.clip((x - lo) / (hi - lo), 0, 1)
    rows = -(-len(x) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.2, rows * 1.2), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img in zip(axes.flat, x, strict=False):
        if img.shape[-1] == 1:
            ax.imshow(img[..., 0], cmap="gray", vmin=0, vmax=1)
        else:
            ax.imshow(img[..., :3])
    fig.tight_layout(pad=0.2)
    try:
        with staged_file(path) as tmp:
            fig.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(fig)
    return path
