"""AdaRound's learned rounding, shared by the per-layer (`adaround`) and per-block (`brecq`)
engines (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training Quantization").

Each weight w on the grid of scale s is s * clip(floor(w / s) + h(V), qmin, qmax), where the
rectified sigmoid h(V) = clip(sigmoid(V) * (ζ - γ) + γ, 0, 1) with γ = -0.1, ζ = 1.1 is a soft
"round up" decision that the regularizer λ·Σ(1 - |2h - 1|^β) pushes to 0 or 1 as β falls from 20
to 2 after a warm-up (20% of the iterations, no regularization). The hard rounding at the end
is floor(w / s) + [V >= 0], i.e. h(V) >= 0.5.

The integer weights are rounded in numpy from the float kernel exactly as edgeq.intmath
does, so a layer whose V never moves exports the same integers as nearest rounding (ties
aside: V = 0 exactly means "up", which is grid's half-away-from-zero for positive halves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq import intmath

GAMMA, ZETA = -0.1, 1.1
BETA_START, BETA_END = 20.0, 2.0
WARMUP = 0.2
REG_WEIGHT = 0.01


@dataclass
class Schedule:
    """β and the regularizer weight at each iteration: no regularization during the warm-up,
    then β decays linearly from `beta_start` to `beta_end` (BRECQ's LinearTempDecay)."""

    iters: int
    warmup: float = WARMUP
    beta_start: float = BETA_START
    beta_end: float = BETA_END
    reg_weight: float = REG_WEIGHT

    def beta(self, t: int) -> float:
        start = self.warmup * self.iters
        if t < start:
            return self.beta_start
        rel = (t - start) / max(self.iters - start, 1)
        return self.beta_end + (self.beta_start - self.beta_end) * max(0.0, 1.0 - rel)

    def reg(self, t: int) -> float:
        return 0.0 if t < self.warmup * self.iters else self.reg_weight


def init_v(kernel: np.ndarray, scales_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(floor(w / s), V) with h(V) equal to the fractional part, so the soft weights start at
    the float weights (inside the clipping range)."""
    ratio = np.asarray(kernel, np.float64) / np.asarray(scales_b, np.float64)
    floor = np.floor(ratio)
    rest = np.clip(ratio - floor, 1e-4, 1 - 1e-4)
    v = -np.log((ZETA - GAMMA) / (rest - GAMMA) - 1.0)
    return floor.astype(np.float32), v.astype(np.float32)


def soft_h(v):
    """h(V) in TensorFlow."""
    import tensorflow as tf

    return tf.clip_by_value(tf.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0)


def soft_weights(floor, v, scales_b, qmin: int, qmax: int):
    """s * clip(floor + h(V), qmin, qmax): the differentiable weights (TensorFlow)."""
    import tensorflow as tf

    return scales_b * tf.clip_by_value(floor + soft_h(v), float(qmin), float(qmax))


def regularizer(v, beta):
    """Σ(1 - |2h(V) - 1|^β) (without λ)."""
    import tensorflow as tf

    return tf.reduce_sum(1.0 - tf.pow(tf.abs(2.0 * soft_h(v) - 1.0), beta))


def hard_integers(floor: np.ndarray, v: np.ndarray, bits: int) -> np.ndarray:
    """The integer weights after optimization: floor + [V >= 0], clipped to the bit width."""
    qmin, qmax = intmath.weight_qrange(bits)
    return np.clip(floor + (np.asarray(v) >= 0), qmin, qmax).astype(np.int8)
