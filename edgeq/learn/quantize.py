"""The one entry point of post-training quantization:

    qgraph, report = quantize(keras_model_or_graph, calib_x, method="brecq", bits=4)
    qgraph, report = quantize(model, calib_x, bits="mixed", budget_kb=81)

then `edgeq.learn.export.to_tflite_model(qgraph)` and `edgeq.tflite.write.write_model` give the
.tflite. The facade only returns objects: writing files (atomically) is the caller's job, so an
interrupted run (Ctrl-C) leaves nothing half-written.

Methods (METHODS; unknown names are rejected with the list):

- `minmax`   weights per channel from max|w|, activations from the calibration min/max.
- `mse`      the same grids with clip ratios minimizing the Lp error (p = 2.4), weights and
             activations.
- `adaround` AdaRound per layer (edgeq.learn.quant.recon with single-layer blocks).
- `brecq`    AdaRound per block (dw+pw pairs, residual blocks, single layers), optional
             Fisher weighting, then LSQ activation steps. The default below 8 bits.
- `adaquant` AdaQuant per layer, then bias correction and BN re-estimation
             (edgeq.learn.quant.adaquant).

Reconstruction methods start, per block, from the better of the MSE and min-max weight grids
(min-max activation ranges), keep a block's learned weights only if they lower its output
error, and fall back to min-max weights when the loss turns NaN (warning + report entry).
Defaults: 1024 calibration samples (fewer if fewer are given; warning under 64, DataError
under 8), batch 32, first and last layer at 8 bits.

Iterations (DEFAULT_ITERS; BRECQ's paper uses 20,000 per block on a GPU): brecq 1,000 per
block (200 for all-8-bit blocks) + 100 LSQ, adaround 500 per layer, adaquant 300 per layer.
Measured trade-off on 2 cores shared with other jobs (load average 5-13):
- vww_96 W4 brecq: 100 + 50 LSQ iterations → 84.4% (94.5% labels = float) in 48 s;
  1,000 + 100 → 85.9% (97.7%) in 440 s; float 86.7%. The 15-minute limit allows about 2x
  more on an idle machine, but not on a loaded one, hence 1,000.
- fmnist W2 brecq (float 91.45% on 2,000 test images): 500 iterations with Adam lr 3e-3 →
  80.3%, with lr 1e-2 → 85.4%; 1,000 with the default lr and 1,024 samples → 86.5% (373 s).

Widths: 8, 4, 3 and 2 bits. Layers below 4 bits keep their 2/3-bit integers (the plan and the
.tflite metadata say so) but are stored in INT4 tensors (`QuantLayer.bits == 4` in the returned
QuantizedGraph, which to_tflite_model can write); the report gives both sizes.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgeq import intmath
from edgeq.errors import DataError, EdgeqError
from edgeq.learn.export import bit_plan
from edgeq.learn.graph import Graph, check_input, run_tf
from edgeq.learn.quant import genie_m, mixed, ranges
from edgeq.learn.quant.adaquant import AdaQuantConfig, adaquant
from edgeq.learn.quant.qforward import node_forward
from edgeq.learn.quant.recon import NullProgress, ReconConfig, layer_blocks, reconstruct
from edgeq.learn.quant.sim import QuantizedGraph, QuantLayer

MIN_SAMPLES = 8
WARN_SAMPLES = 64
CALIB_SAMPLES = 1024
BATCH_SIZE = 32
SQNR_SAMPLES = 256
# Weight iterations per block/layer; LSQ iterations per block (brecq, adaround).
DEFAULT_ITERS = {"brecq": 1000, "adaround": 500, "adaquant": 300, "genie": 500}
DEFAULT_ACT_ITERS = 100
STORED_BITS = {8: 8, 4: 4, 3: 4, 2: 4}
RANGE_METHODS = ("minmax", "mse")  # only ranges from the calibration data: nothing to overfit


@dataclass
class QuantizeReport:
    method: str
    bits: int | str
    plan: dict[str, int]
    calibration_samples: int
    seconds: float = 0.0
    iters: int = 0
    fisher: bool = False
    layers: list[dict] = field(default_factory=list)
    blocks: list[dict] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mixed: dict | None = None
    weight_bytes: float = 0.0  # kernel weights at their logical widths
    stored_weight_bytes: float = 0.0  # as stored in the .tflite (2/3-bit layers in INT4)
    bias_bytes: int = 0
    # what the board's C engine stores (edgeq.intmath.engine_layer_bytes; what budgets count):
    board_weight_bytes: int = 0  # weights at their width (2/3 bits packed), rows padded
    board_param_bytes: int = 0  # biases and per-channel requantization parameters

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def count_bytes(self, graph: Graph, stored: QuantizedGraph) -> None:
        """The size fields for this report's plan over `graph`: logical, in the .tflite, and on
        the board (the engine's packed weights and per-channel parameters of `stored`, the
        storable() graph that is exported)."""
        plan = self.plan
        self.weight_bytes = float(sum(mixed.logical_bytes(graph.node(n), b)
                                      for n, b in plan.items()))
        self.stored_weight_bytes = float(sum(mixed.logical_bytes(graph.node(n), STORED_BITS[b])
                                             for n, b in plan.items()))
        board = [mixed.engine_bytes(graph.node(n), b) for n, b in plan.items()]
        self.board_weight_bytes = int(sum(w for w, _ in board))
        self.board_param_bytes = _board_param_bytes(stored, int(sum(p for _, p in board)))
        self.bias_bytes = int(sum(4 * graph.node(n).weights["bias"].size for n in plan))

    def summary(self) -> str:
        before = [r["sqnr_minmax_db"] for r in self.layers if r["sqnr_minmax_db"] is not None]
        after = [r["sqnr_db"] for r in self.layers if r["sqnr_db"] is not None]
        return (f"{self.method} at {self.bits} bits: {len(self.layers)} layers, weights "
                f"{self.weight_bytes / 1024:.1f} KiB ({self.stored_weight_bytes / 1024:.1f} KiB "
                f"in the .tflite; the board stores "
                f"{(self.board_weight_bytes + self.board_param_bytes) / 1024:.1f} KiB: "
                f"{self.board_weight_bytes / 1024:.1f} KiB of weights + "
                f"{self.board_param_bytes / 1024:.1f} KiB of per-channel parameters), mean layer SQNR {np.mean(before):.1f} dB (min-max) → "
                f"{np.mean(after):.1f} dB, {self.seconds:.0f} s")


@dataclass
class Method:
    run: Callable
    summary: str


def _run_minmax(graph, calib, plan, minmax_qg, opts, progress):
    return minmax_qg, [], []


def _run_mse(graph, calib, plan, minmax_qg, opts, progress):
    return ranges.quantize_ranges(graph, calib, plan, "mse", "mse"), [], []


def _recon_config(opts, method) -> ReconConfig:
    return ReconConfig(iters=opts["iters"], batch_size=opts["batch_size"], fisher=opts["fisher"],
                       act_iters=opts["act_iters"], seed=opts["seed"])


def _start(graph, calib, plan):
    return ranges.quantize_ranges(graph, calib, plan, "mse", "minmax")


def _run_adaround(graph, calib, plan, minmax_qg, opts, progress):
    res = reconstruct(_start(graph, calib, plan), calib, layer_blocks(graph), minmax_qg.layers,
                      _recon_config(opts, "adaround"), progress)
    return res.qgraph, res.blocks, res.warnings


def _run_brecq(graph, calib, plan, minmax_qg, opts, progress):
    res = reconstruct(_start(graph, calib, plan), calib, graph.blocks, minmax_qg.layers,
                      _recon_config(opts, "brecq"), progress)
    return res.qgraph, res.blocks, res.warnings


def _run_adaquant(graph, calib, plan, minmax_qg, opts, progress):
    cfg = AdaQuantConfig(iters=opts["iters"], batch_size=opts["batch_size"], seed=opts["seed"])
    res = adaquant(_start(graph, calib, plan), calib, minmax_qg.layers, cfg, progress)
    return res.qgraph, res.blocks, res.warnings


METHODS = {
    "minmax": Method(_run_minmax, "min-max ranges (TFLite's converter)"),
    "mse": Method(_run_mse, "clip ratios minimizing the Lp error, p=2.4"),
    "adaround": Method(_run_adaround, "AdaRound, layer by layer"),
    "brecq": Method(_run_brecq, "AdaRound per block (+ Fisher), then LSQ activation steps"),
    "adaquant": Method(_run_adaquant, "AdaQuant + bias correction + BN re-estimation"),
    "genie": Method(genie_m.run_method, "Genie-M: BRECQ + learned weight scales + LSQ steps + QDrop"),
}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise EdgeqError(f"unknown quantization method {name!r}",
                         f"known methods: {', '.join(METHODS)}, and rex (its own entry point: "
                         "edgeq.learn.quant.rex, or --method rex on the command line)")
    return METHODS[name]


def calibration_set(graph: Graph, calib_x, samples: int = CALIB_SAMPLES, seed: int = 0,
                    reconstructs: bool = True) -> tuple[np.ndarray, list[str]]:
    """Up to `samples` inputs (a seeded random subset); DataError under MIN_SAMPLES, and under
    WARN_SAMPLES a warning when the method `reconstructs` (learns weights from them)."""
    x = check_input(graph, calib_x)
    notes = []
    if len(x) < MIN_SAMPLES:
        raise DataError(f"only {len(x)} calibration sample(s) for model {graph.name!r}",
                        f"give at least {MIN_SAMPLES} ({WARN_SAMPLES} or more recommended)")
    if len(x) < WARN_SAMPLES and reconstructs:
        msg = (f"only {len(x)} calibration samples: reconstruction may overfit them; "
               f"{WARN_SAMPLES} or more are recommended")
        warnings.warn(msg, UserWarning, stacklevel=3)
        notes.append(msg)
    if len(x) > samples:
        x = x[np.sort(np.random.default_rng(seed).permutation(len(x))[:samples])]
    return x, notes


def quantize(model, calib_x, method: str | None = None, bits: int | str = 4,
             budget_kb: float | None = None, *, iters: int | None = None, fisher: bool = False,
             act_iters: int | None = None, edge_bits: int = 8, calib_samples: int = CALIB_SAMPLES,
             batch_size: int = BATCH_SIZE, widths=mixed.WIDTHS, bops_budget: float | None = None,
             seed: int = 0, progress: bool | object = True,
             input_range: tuple[float, float] | None = None) -> tuple[QuantizedGraph,
                                                                      QuantizeReport]:
    """Quantize a Keras model (or a captured Graph) with calibration inputs `calib_x`.

    bits: 8, 4, 3 or 2 for every layer but the first and last (`edge_bits`), or "mixed" with
    `budget_kb` (KiB of stored model: the weights as the board's engine packs them plus their
    biases and per-channel parameters, edgeq.learn.quant.mixed.layer_bytes) and optionally
    `bops_budget`.
    method: see METHODS; None picks brecq below 8 bits (and for mixed), minmax at 8.
    iters / act_iters: per block or layer; None takes DEFAULT_ITERS / DEFAULT_ACT_ITERS.
    progress: True for rich progress bars, False for none, or an object with start/advance/
    finish (edgeq.learn.quant.recon.NullProgress).
    input_range: the model's input domain, e.g. (0, 1); the input tensor's int8 range is then
    this instead of the calibration data's min/max (needed with synthetic data)."""
    t0 = time.perf_counter()
    from edgeq.learn.graph import capture

    graph = (model if isinstance(model, Graph) else capture(model)).with_input_range(input_range)
    if method is None:
        method = "brecq" if bits == "mixed" or (isinstance(bits, int) and bits < 8) else "minmax"
    runner = get_method(method)
    calib, notes = calibration_set(graph, calib_x, calib_samples, seed,
                                   reconstructs=method not in RANGE_METHODS)
    with _progress(progress) as bar:
        mixed_plan = None
        if bits == "mixed":
            if budget_kb is None:
                raise DataError("bits='mixed' needs a weight budget",
                                "pass budget_kb= (on the command line: --budget-kb N, in KiB)")
            mixed_plan = mixed.plan_mixed(graph, calib, budget_kb * 1024, widths, edge_bits,
                                          bops_budget, progress=bar)
            plan = bit_plan(graph, mixed_plan.plan)
        elif isinstance(bits, int):
            plan = bit_plan(graph, bits, edge_bits)
        else:
            raise DataError(f"bits={bits!r} is not a width", "use 8, 4, 3, 2 or 'mixed'")
        minmax_qg = ranges.quantize_ranges(graph, calib, plan, "minmax", "minmax")
        opts = {"iters": DEFAULT_ITERS.get(method, 0) if iters is None else iters,
                "act_iters": DEFAULT_ACT_ITERS if act_iters is None else act_iters,
                "fisher": fisher, "batch_size": batch_size, "seed": seed}
        qgraph, blocks, engine_warnings = runner.run(graph, calib, plan, minmax_qg, opts, bar)
    stored = storable(qgraph)
    report = QuantizeReport(method, bits, dict(plan), len(calib),
                            iters=opts["iters"] if method in DEFAULT_ITERS else 0,
                            fisher=fisher, warnings=notes + list(engine_warnings),
                            mixed=mixed_plan.to_dict() if mixed_plan else None)
    report.blocks = [b.to_dict() for b in blocks]
    report.layers = _layer_rows(graph, plan, minmax_qg, qgraph, calib[:SQNR_SAMPLES], blocks)
    report.count_bytes(graph, stored)
    report.seconds = round(time.perf_counter() - t0, 1)
    return stored, report


def _board_param_bytes(stored: QuantizedGraph, bound: int) -> int:
    """The per-channel parameter bytes the engine stores for this graph's .tflite (its packed
    arrays: edgeq.intmath.op_channel_values, channel_fields); `bound` (the widest fields) if
    it cannot be exported."""
    from edgeq.errors import EdgeqError
    from edgeq.learn.export import to_tflite_model

    try:
        model = to_tflite_model(stored)
    except EdgeqError:
        return bound
    total = 0
    for op in model.ops:
        if op.kind in intmath.CHANNEL_OPS:
            values = intmath.op_channel_values(model, op)
            fields, _, _ = intmath.channel_fields(*values,
                                                  ratio=intmath.op_channel_ratio(model, op))
            total += intmath.channel_param_bytes(len(values[1]), fields)
    return total


def storable(qgraph: QuantizedGraph, snap: bool = True) -> QuantizedGraph:
    """Layers below 4 bits stored as INT4 (their integers already fit); the plan keeps the
    logical widths. `snap`: weight scales rounded to intmath.SNAP_SCALE_BITS of their logical
    width (the integers stay), so that the engine stores each Q31 multiplier TFLM computes
    from them in a few bits (intmath.pack_channels)."""
    def scales(layer):
        return intmath.snap_weight_scales(layer.scales, layer.bits) if snap else layer.scales

    layers = {name: QuantLayer(STORED_BITS[layer.bits], scales(layer), layer.qweight, layer.bias)
              for name, layer in qgraph.layers.items()}
    return QuantizedGraph(qgraph.graph, layers, dict(qgraph.act), dict(qgraph.plan))


def layer_sqnr(qgraph: QuantizedGraph, x: np.ndarray, batch_size: int = 64) -> dict[str, float]:
    """SQNR (dB) of every weighted layer's output in the quantized model (all earlier layers
    quantized too) against the float model, over `x`."""
    import tensorflow as tf

    graph = qgraph.graph
    signal = dict.fromkeys(qgraph.layers, 0.0)
    noise = dict.fromkeys(qgraph.layers, 0.0)
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        ref = run_tf(graph, xb)
        values = {}
        for node in graph.nodes:
            ins = [values[i] for i in node.inputs] if node.inputs else [tf.constant(xb)]
            values[node.name] = node_forward(qgraph, node, ins)
            if node.name in signal:
                f = ref[node.name].numpy().astype(np.float64)
                signal[node.name] += float(np.sum(f * f))
                noise[node.name] += float(np.sum((f - values[node.name].numpy()) ** 2))
    return {n: float(10 * np.log10(max(signal[n], 1e-30) / max(noise[n], 1e-30)))
            for n in signal}


def _layer_rows(graph, plan, minmax_qg, qgraph, x, blocks) -> list[dict]:
    before, after = layer_sqnr(minmax_qg, x), layer_sqnr(qgraph, x)
    where = {name: b for b in blocks for name in b.nodes}
    rows = []
    for name, bits in plan.items():
        node = graph.node(name)
        block = where.get(name)
        rows.append({"name": name, "kind": node.kind, "params": int(node.weights["kernel"].size),
                     "bits": bits, "stored_bits": STORED_BITS[bits],
                     "sqnr_minmax_db": round(before[name], 2), "sqnr_db": round(after[name], 2),
                     "block": block.index if block else None,
                     "kept": block.kept if block else None,
                     "seconds": block.seconds if block else None})
    return rows


class _RichProgress(NullProgress):
    def __init__(self, bar):
        self.bar, self.task, self.total = bar, None, 0

    def start(self, label: str, total: int) -> None:
        self.task, self.total = self.bar.add_task(label, total=total), total

    def advance(self, steps: int) -> None:
        if self.task is not None:
            self.bar.advance(self.task, steps)

    def finish(self) -> None:
        if self.task is not None:
            self.bar.update(self.task, completed=self.total)
            self.task = None


class _progress:
    """Context: a rich progress display (progress=True), nothing (False), or the caller's."""

    def __init__(self, progress):
        self.progress, self.bar = progress, None

    def __enter__(self):
        if self.progress is True:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(bar_width=None),
                                MofNCompleteColumn(), TimeElapsedColumn())
            self.bar.__enter__()
            return _RichProgress(self.bar)
        if self.progress is False or self.progress is None:
            return NullProgress()
        return self.progress

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False
