"""Range setting: where the quantization grid of each weight channel and activation tensor is.

- `minmax`: the grid spans the observed range (weights: max|w| per output channel;
  activations: min and max over the calibration data), as TFLite's converter does.
- `mse`: the range is shrunk by a clip ratio r (searched over RATIOS) that minimizes the Lp
  error Σ|x - q(x)|^p with p = 2.4 (BRECQ's choice: between MSE and max-error), per weight
  channel and per activation tensor. Clipping a few outliers buys finer steps for the rest,
  which matters more the fewer bits there are.

Weights are per output channel (per tensor for dense: TFLM needs per-tensor INT4 there);
activations are int8 per tensor, and tied tensors (pools, pad, reshape, concat) keep one range
(edgeq.learn.quant.sim.assign_activation_qparams takes the union).
"""

from __future__ import annotations

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError
from edgeq.learn.graph import Graph, check_input, run_tf
from edgeq.learn.quant.observe import batches_of, pin_input_ranges
from edgeq.learn.quant.sim import (
    QuantizedGraph,
    QuantLayer,
    assign_activation_qparams,
    output_channels,
    quantize_layer,
)

P_NORM = 2.4
RATIOS = np.linspace(1.0, 0.1, 91)
ACT_SAMPLES = 100_000  # values kept per tensor for the activation search
RANGE_METHODS = ("minmax", "mse")


def _check_method(method: str) -> None:
    if method not in RANGE_METHODS:
        raise DataError(f"unknown range method {method!r}", f"use one of {RANGE_METHODS}")


def lp_error(x: np.ndarray, q: np.ndarray, p: float = P_NORM, axis=None) -> np.ndarray:
    return np.sum(np.abs(np.asarray(x, np.float64) - q) ** p, axis=axis)


def mse_weight_scales(flat: np.ndarray, bits: int, per_channel: bool,
                      p: float = P_NORM) -> np.ndarray:
    """Scales (one per column of `flat`, or one) minimizing the Lp rounding error over clip
    ratios of max|w|."""
    qmin, qmax = intmath.weight_qrange(bits)
    w = np.asarray(flat, np.float64)
    if not per_channel:
        w = w.reshape(-1, 1)
    base = intmath.weight_scales(w, bits, 1).astype(np.float64)
    best_err = np.full(base.shape, np.inf)
    best = base.copy()
    for r in RATIOS:
        s = (base * r).astype(np.float32).astype(np.float64)
        q = np.clip(intmath.round_half_away(w / s), qmin, qmax) * s
        err = lp_error(w, q, p, axis=0)
        better = err < best_err
        best_err = np.where(better, err, best_err)
        best = np.where(better, s, best)
    return best.astype(np.float32)


def quantize_layer_range(node, bits: int, method: str = "minmax") -> QuantLayer:
    """One weighted node's integer weights with its range chosen by `method`."""
    _check_method(method)
    if method == "minmax":
        return quantize_layer(node, bits)
    kernel = node.weights["kernel"]
    flat = output_channels(node)
    per_channel = node.kind != "dense"
    scales = mse_weight_scales(flat, bits, per_channel)
    q = intmath.quantize_weights(flat, scales, bits, 1 if per_channel else None)
    return QuantLayer(bits, scales, q.reshape(kernel.shape), node.weights["bias"].astype(np.float32))


def activation_ranges(graph: Graph, calib_x: np.ndarray, method: str = "minmax",
                      batch_size: int = 64, seed: int = 0) -> dict[str, tuple[float, float]]:
    """(lo, hi) of every tensor: the observed min/max, shrunk by the Lp-optimal ratio for
    `mse`."""
    _check_method(method)
    rng = np.random.default_rng(seed)
    lo: dict[str, float] = {}
    hi: dict[str, float] = {}
    kept: dict[str, list[np.ndarray]] = {}
    batches = batches_of(check_input(graph, calib_x), batch_size)
    per_batch = max(ACT_SAMPLES // max(len(batches), 1), 1)
    for batch in batches:
        for name, value in run_tf(graph, batch).items():
            v = value.numpy().reshape(-1)
            lo[name] = min(lo.get(name, np.inf), float(v.min()))
            hi[name] = max(hi.get(name, -np.inf), float(v.max()))
            if method == "mse":
                pick = v if v.size <= per_batch else v[rng.integers(0, v.size, per_batch)]
                kept.setdefault(name, []).append(pick)
    if not lo:
        raise DataError(f"no calibration samples for model {graph.name!r}",
                        "pass at least one batch of representative inputs")
    if method == "minmax":
        return pin_input_ranges(graph, {n: (lo[n], hi[n]) for n in lo})
    return pin_input_ranges(graph, {n: _mse_activation_range(np.concatenate(kept[n]), lo[n],
                                                             hi[n]) for n in lo})


def _mse_activation_range(values: np.ndarray, lo: float, hi: float) -> tuple[float, float]:
    best, best_err = (lo, hi), np.inf
    for r in RATIOS[RATIOS >= 0.3]:  # int8 activations rarely gain from clipping harder
        scale, zp = intmath.activation_qparams(lo * r, hi * r)
        q = (np.clip(intmath.round_half_away(values / scale) + zp, -128, 127) - zp) * scale
        err = float(lp_error(values, q))
        if err < best_err:
            best, best_err = (lo * r, hi * r), err
    return best


def quantize_ranges(graph: Graph, calib_x: np.ndarray, plan: dict[str, int],
                    weights: str = "minmax", activations: str = "minmax",
                    batch_size: int = 64) -> QuantizedGraph:
    """The range-only quantized model: integer weights at `plan`'s widths and int8 activation
    qparams, each range set by its method."""
    ranges = activation_ranges(graph, calib_x, activations, batch_size)
    act = assign_activation_qparams(graph, ranges)
    layers = {name: quantize_layer_range(graph.node(name), b, weights) for name, b in plan.items()}
    return QuantizedGraph(graph, layers, act, dict(plan))
