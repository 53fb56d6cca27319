"""Quantization Guided Training (QGT): the regularizer that pulls weights onto their low-bit grid,
its schedule and the grid scales.

The training loop is edgeq.learn.qgt.training.train_qgt and the search for compression
bottlenecks edgeq.learn.qgt.bottlenecks; this module holds the pieces they are built from, each
usable and testable alone.

What is regularized: the FOLDED weights (edgeq.learn.graph.capture folds BatchNorm into the conv or
dense before it). Those are the weights the exporter quantizes, so pulling the Keras kernels of a
conv+BN pair onto a grid would be pointless: the BN scale γ/√(var+ε) multiplies them afterwards.
QGT therefore trains the folded graph itself (BN frozen into the conv, as quantization-aware
training does in its final phase) and starts from a trained float model.

Grid (the TFLite one, edgeq.intmath): symmetric per output channel (per tensor for dense,
as TFLM needs for INT4 fully connected), integers in WEIGHT_RANGES[bits] ([-2, 1] at 2 bits,
[-8, 7] at 4). Write u = w / s for the weight in units of its step s (LSB).

Regularizers (REGULARIZERS, the ablation switch):

- `l2grid` (default): mean over a layer of (u − clip(round(u)))², then averaged over layers. The
  nearest grid point is held constant (stop-gradient), so the gradient 2(u − q)/s points
  straight at it, with no dead zone. Measured in LSB it is scale-free: every layer, whatever
  its weight magnitude, weighs the same, and its value says how far the model is from its grid
  (1/12 ≈ 0.083 for weights spread uniformly, 0 on the grid). Weights beyond the clamp range are
  pulled back to the end points, so clipping is part of the target. This is the "bin
  regularization" idea of Han et al. (ICCV 2021: make each bin's weights collapse onto its
  target value) in its per-weight form, without the per-bin mean/variance bookkeeping.
- `sin2`: sin²(πu)/π² inside the range plus (u − clip(u))² outside: the periodic regularizer
  of Naumov et al. (2018), in the same units (≈ (u − round u)² near the grid). It is smooth but
  its gradient vanishes at the midpoints between grid points, so weights sitting there are
  pulled slowly; kept for the ablation.
- `none`: task loss only (the float fine-tune baseline of the ablation).

How the pull is applied (PULLS):

- `decoupled` (default): after every optimizer step each kernel moves the fraction λ(t) of the
  way toward its grid point, w ← w − λ·(s²/2)·∇φ(u) (= w − λ(w − s·q) for l2grid):
  weight decay toward the grid instead of toward 0, decoupled from Adam as AdamW decouples
  weight decay (Loshchilov & Hutter 2019). Added to the loss instead, the pull is divided by
  Adam's running gradient RMS, and with R a mean over millions of weights its per-weight
  gradient is tiny next to the task gradient: measured on fmnist, λ·R in the loss at λ = 1 left the W4 distance at
  0.22 LSB after two epochs. Decoupled, λ is a rate per step that means the same for every
  layer and model size, and as the learning rate decays the weights settle exactly onto the
  grid.
- `gradient`: λ·R added to the task loss (the textbook form, for the ablation).

The QGT paper (Ghamari et al., TinyML Summit 2021, arXiv 2103.06231) adds such a
quantization-error regularizer to the task loss and reads compression bottlenecks from it; it
does not publish its exact form, so edgeq uses the one above, whose value is also the reported
distance to the grid.

Schedule: λ(t) = strength · ramp(t), zero until `start` (a fraction of training), rising along
a half cosine (or linearly) to `strength` at `end`, then held. The network first adapts to the
task, then settles onto the grid; a step change of λ would knock a trained model off its
minimum.

Scales (SCALE_MODES): the grid's step s is re-estimated every few steps from the current
weights, not learned by gradient. `mse` (default) takes the per-channel step minimizing
Σ(w − s·q(w/s))² over clip ratios (edgeq.learn.quant.ranges.mse_weight_scales with p = 2): the
closed-form optimum of the same squared error in real units, which a gradient-learned step
would only approach. (Learning s on the LSB-normalized regularizer would be wrong: growing s
sends every weight to 0 and the distance to 0.) `minmax` re-estimates max|w|/qmax, what naive
export uses; `fixed` keeps the step found at the start.

Measured (06:00-06:25 UTC, this machine; fmnist folded float model fine-tuned on a 12,000-image
training subset, 2,000 test images, weights on the grid with float activations, first and last
layer 8-bit, Adam 5e-4 cosine, batch 128; scripts not in the repo, numbers to be redone by
benchmarks/qgt.py on the full data):

- W4: float 85.75%; naive rounding (min-max 83.85%, MSE 83.55%); QGT (decoupled l2grid,
  λ = 0.05, 2 epochs) 85.65% with the weights 0.010 LSB from their grid. With λ·R in the loss
  at λ = 1 the distance stayed at 0.22 LSB after 2 epochs (hence the decoupled default).
- W2: every naive variant is at chance (9.8%): the per-layer errors (≈10% relative MSE each,
  measured layer by layer) compound over 13 layers. Pulling to the 2-bit grid in 3 epochs
  (λ 0.05 or a slower 0.01 ramp) drove the float network itself to chance (task loss 0.36 →
  1.9-2.2); adding an STE phase (ste_start 0.4) did not recover it (11.5% on grid), while STE
  alone (no pull) reached 41% on grid. The learning rate was the limit: straight-through from
  the first step at Adam 2e-3 reached 82.7% on the grid (float 85.75%) with no pull, 81.9%
  with λ 0.002 (0.21 LSB from the grid) and 80.0% with λ 0.01 (0.057 LSB; no pull: 0.29). So at
  2 bits, in 3 short epochs, the pull does not add accuracy to straight-through training; it
  brings the float weights onto the grid (what the bottleneck analysis and export read).
  Exported (int8 activations, edgeq's writer, 2-bit layers in INT4; simulated bit-exactly) that
  last model scored 78.9% on 1,000 test images.

On all 60,000 training images (benchmarks/qgt.py, BENCHMARKS.md `qgt_fmnist`, 4 epochs, all
10,000 test images through TFLM, float 92.63%) the short slice was the limit:

- W2 (kernels 15.1x smaller than float32): QGT + STE (λ 0.002, Adam 2e-3) 91.58%, 0.043 LSB
  from the grid; straight-through alone 91.90% but 0.31 LSB off the grid; BRECQ PTQ 88.95%;
  the pull alone (no STE) 80.95%; a float fine-tune rounded afterwards 10.01% (chance).
- W4: QGT + STE 92.44%, QGT 92.21% (0.006 LSB), straight-through alone 92.69%, BRECQ 92.35%,
  float fine-tune rounded afterwards 90.78%.
So at 2 bits the straight-through forward does the work and the pull puts the float weights on
the grid (what export and the bottleneck analysis read), at a cost of about 0.3 points here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.learn.graph import Node
from edgeq.learn.quant.ranges import mse_weight_scales
from edgeq.learn.quant.sim import kernel_scale_shape, output_channels

REGULARIZERS = ("l2grid", "sin2", "none")
PULLS = ("decoupled", "gradient")
SCALE_MODES = ("mse", "minmax", "fixed")
RAMPS = ("cosine", "linear")
WIDTHS = (2, 3, 4, 8)  # the widths the engine stores (3 bits packed densely)


def check_choice(kind: str, value: str, known: tuple[str, ...]) -> str:
    if value not in known:
        raise DataError(f"unknown {kind} {value!r}", f"use one of {', '.join(known)}")
    return value


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Schedule:
    """Regularizer weight λ as a function of training progress p in [0, 1]."""

    strength: float = 1.0
    start: float = 0.1
    end: float = 0.6
    ramp: str = "cosine"

    def __post_init__(self):
        check_choice("schedule ramp", self.ramp, RAMPS)
        if not (0.0 <= self.start <= self.end <= 1.0) or self.strength < 0:
            raise DataError(f"schedule start={self.start}, end={self.end}, "
                            f"strength={self.strength} is not valid",
                            "use 0 <= start <= end <= 1 and strength >= 0")

    def __call__(self, progress: float) -> float:
        if progress <= self.start:
            return 0.0 if self.end > self.start else self.strength
        if progress >= self.end:
            return self.strength
        t = (progress - self.start) / (self.end - self.start)
        rise = t if self.ramp == "linear" else 0.5 - 0.5 * math.cos(math.pi * t)
        return self.strength * rise


# --------------------------------------------------------------------------- grid geometry


STEP_FLOOR = 1e-6  # smallest grid step, relative to the layer's largest


def per_tensor(node: Node) -> bool:
    """Dense layers are quantized per tensor (TFLM's INT4 FULLY_CONNECTED), the rest per
    output channel."""
    return node.kind == "dense"


def flat_weights(node: Node, kernel: np.ndarray | None = None) -> np.ndarray:
    """The kernel as (everything else, output channels) in TFLite channel order."""
    kernel = node.weights["kernel"] if kernel is None else kernel
    return output_channels(Node(node.name, node.kind, [], {}, {"kernel": kernel}))


def estimate_scales(node: Node, bits: int, mode: str = "mse",
                    kernel: np.ndarray | None = None) -> np.ndarray:
    """float32 grid steps of one layer: one per output channel (one for dense)."""
    check_choice("scale mode", mode, SCALE_MODES)
    flat = flat_weights(node, kernel)
    if mode == "minmax":
        scales = intmath.weight_scales(flat, bits, None if per_tensor(node) else 1)
    else:
        scales = mse_weight_scales(flat, bits, not per_tensor(node), p=2.0)
    # Dead channels (BatchNorm γ ≈ 0, folded) have steps near 1e-31: a training update of
    # 1e-3 is then 1e28 LSB, whose square overflows float32 (vww_96 trained to NaN). Their
    # weights round to 0 on any step, so a floor relative to the layer changes nothing else.
    floor = max(STEP_FLOOR * float(np.max(scales)), np.finfo(np.float32).tiny)
    return np.maximum(scales, floor).astype(np.float32)


def scale_shape(node: Node, scales: np.ndarray) -> tuple[int, ...]:
    return kernel_scale_shape(node, int(np.size(scales)))


def grid_distance(kernel: np.ndarray, scales: np.ndarray, node: Node, bits: int) -> np.ndarray:
    """|u − clip(round(u))| per weight, in LSB (u = w / s); 0 means on the grid."""
    qmin, qmax = intmath.weight_qrange(bits)
    u = np.asarray(kernel, np.float64) / np.reshape(scales, scale_shape(node, scales))
    return np.abs(u - np.clip(intmath.round_half_away(u), qmin, qmax))


def on_grid(kernel: np.ndarray, scales: np.ndarray, node: Node, bits: int) -> np.ndarray:
    """The kernel rounded onto its grid (float32, the values the integer model uses)."""
    qmin, qmax = intmath.weight_qrange(bits)
    s = np.reshape(scales, scale_shape(node, scales)).astype(np.float64)
    q = np.clip(intmath.round_half_away(np.asarray(kernel, np.float64) / s), qmin, qmax)
    return (q * s).astype(np.float32)


# --------------------------------------------------------------------------- TensorFlow side


def layer_penalty(kernel, scale, bits: int, form: str = "l2grid"):
    """Mean regularizer of one layer in LSB² (a scalar tensor). `scale` broadcasts against
    `kernel` and is treated as a constant."""
    import tensorflow as tf

    from edgeq.learn.quant.sim import round_half_away

    check_choice("regularizer", form, REGULARIZERS)
    if form == "none":
        return tf.zeros((), kernel.dtype)
    qmin, qmax = (float(v) for v in intmath.weight_qrange(bits))
    u = kernel / tf.stop_gradient(tf.cast(scale, kernel.dtype))
    if form == "l2grid":
        target = tf.stop_gradient(tf.clip_by_value(round_half_away(u), qmin, qmax))
        return tf.reduce_mean(tf.square(u - target))
    inside = tf.clip_by_value(u, qmin, qmax)
    periodic = tf.square(tf.sin(math.pi * inside)) / (math.pi ** 2)
    return tf.reduce_mean(periodic + tf.square(u - inside))


def grid_pull(kernel, scale, bits: int, form: str = "l2grid"):
    """The displacement that one decoupled step of strength 1 subtracts from the kernel:
    (s²/2)·∇_w φ(u) per weight, φ the per-weight regularizer in LSB². For `l2grid` it is
    exactly w − s·q (strength λ moves each weight the fraction λ of the way to its grid point);
    for `sin2` s·sin(2πu)/(2π) inside the range, the same near the grid."""
    import tensorflow as tf

    if form == "none":
        return tf.zeros_like(kernel)
    with tf.GradientTape() as tape:
        tape.watch(kernel)
        total = layer_penalty(kernel, scale, bits, form) * tf.cast(tf.size(kernel), kernel.dtype)
    s = tf.cast(scale, kernel.dtype)
    return tf.stop_gradient(tape.gradient(total, kernel) * s * s / 2)


def fake_quant_kernel(kernel, scale, bits: int):
    """Kernel rounded onto its grid with a straight-through gradient (for evaluating or
    fine-tuning the on-grid model)."""
    import tensorflow as tf

    from edgeq.learn.quant.sim import round_ste

    qmin, qmax = (float(v) for v in intmath.weight_qrange(bits))
    s = tf.cast(scale, kernel.dtype)
    return tf.clip_by_value(round_ste(kernel / s), qmin, qmax) * s
