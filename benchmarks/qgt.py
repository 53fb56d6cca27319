"""Benchmark section: Quantization Guided Training on Fashion-MNIST (`fmnist`), side by side in
one run with float, tfmot QAT INT8, edgeq's simulated-quantization QAT (straight-through
training of the folded graph on the weight grid), BRECQ PTQ, and QGT with and without its
pull and STE phase.

`qgt_fmnist(shared) -> {"rows": [...], "notes": [...]}` in the row format of
benchmarks/sections.py (the lead registers it there). Every quantized row is a .tflite written by
edgeq's writer (2-bit layers stored as INT4) and measured with LiteRT and TFLM on all 10,000
test images; first and last layers stay at 8 bits.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

QGT_EPOCHS = 3
STE_START = 0.0  # straight-through forward from the first step in the STE rows
# Measured on a 12k-image slice: W2 straight-through training needs 2e-3 (5e-4: 41% on the
# grid, 2e-3: 82.7%); the pull alone at W4 was measured at 5e-4.
STE_LR, PULL_LR = 2e-3, 5e-4
CALIB = 256
VAL_SAMPLES = 2000  # per-epoch validation inside QGT (the rows use the whole test set)


def _weight_bytes(graph, plan: dict[str, int]) -> float:
    """Kernel bytes at their logical widths plus int32 biases."""
    return float(sum(graph.node(n).weights["kernel"].size * b / 8
                     + 4 * graph.node(n).weights["bias"].size for n, b in plan.items()))


def qgt_fmnist(shared: Path) -> dict:
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from benchmarks.sections import _evaluate_tflite, trained_fmnist
    from edgeq.convert import tflite_int8_ptq
    from edgeq.export import bit_plan, to_tflite_model
    from edgeq.graph import capture
    from edgeq.qgt_train import finish, train_qgt
    from edgeq.quant import qgt as core
    from edgeq.quantize import quantize
    from edgeq.tflite.write import write_model
    from edgeq.train import evaluate_float

    model, tr, te, train_s, _ = trained_fmnist()
    float_acc, float_out = evaluate_float(model, te)
    graph = capture(model)
    float_bytes = int(model.count_params()) * 4
    calib = tr.x[np.random.default_rng(0).permutation(len(tr))[:CALIB]]
    val = te.take(VAL_SAMPLES)
    rows = [{"model": "float (Keras)", "top1_litert": float_acc, "top1_tflm": None,
             "tflm_litert_agreement": None, "max_lsb": None, "bytes": float_bytes,
             "arena_bytes": None, "seconds": round(train_s, 1)}]
    notes = []

    def add(name: str, tflite: bytes, seconds: float, plan=None) -> None:
        row = _evaluate_tflite(name, tflite, te.x, te.y, seconds, float_out)
        rows.append(row)
        if plan is not None:
            wb = _weight_bytes(graph, plan)
            notes.append(f"{name}: weights {wb:,.0f} B at their logical widths "
                         f"({float_bytes / wb:.1f}x smaller than float), "
                         f".tflite {row['bytes']:,} B.")

    t = time.perf_counter()
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    qat.fit(tr.x, tr.y, batch_size=128, epochs=1, verbose=0)
    add("tfmot QAT INT8 (1 epoch)", tflite_int8_ptq(qat, calib), time.perf_counter() - t)

    for bits in (4, 2):
        plan = bit_plan(graph, bits)
        t = time.perf_counter()
        qg, _ = quantize(graph, calib, method="brecq", bits=bits, progress=False)
        add(f"edgeq BRECQ PTQ W{bits}", write_model(to_tflite_model(qg)),
            time.perf_counter() - t, plan)
        runs = (("edgeq sim-QAT", "none", STE_START),  # straight-through, no pull
                ("QGT", "l2grid", None),  # the pull alone
                ("QGT + STE", "l2grid", STE_START),
                ("ablation: float fine-tune, no pull, no STE,", "none", None))
        for label, form, ste_start in runs:
            t = time.perf_counter()
            result = train_qgt(graph, tr, val, bits=bits, epochs=QGT_EPOCHS, regularizer=form,
                               ste_start=ste_start,
                               learning_rate=STE_LR if ste_start is not None else PULL_LR)
            tflite, _ = finish(result, calib)
            name = f"{label} W{bits} ({QGT_EPOCHS} epochs)"
            add(name, tflite, time.perf_counter() - t, plan)
            last = result.history[-1]
            notes.append(f"{name}: distance to the grid {last['grid_distance_lsb']:.3f} LSB, "
                         f"validation accuracy float {last['val_accuracy']:.4f}, on the grid "
                         f"{last['val_accuracy_on_grid']:.4f} ({VAL_SAMPLES} test images, float "
                         f"activations); training {result.seconds:.0f} s.")
            if label == "QGT":
                top = core.find_bottlenecks(result, val, bits=result.plan)[:3]
                marks = [f" (bottleneck, suggest W{r['suggested_bits']})" if r["bottleneck"]
                         else "" for r in top]
                notes.append(f"{name} bottlenecks (loss increase with that layer alone on its "
                             "grid): " + ", ".join(f"{r['name']} {r['loss_increase']:+.3f}{m}"
                                                   for r, m in zip(top, marks, strict=True)))
    notes.insert(0, "fmnist float model of benchmarks.sections.trained_fmnist, BatchNorm folded; "
                    "QGT: decoupled l2grid pull (λ 0.05, cosine ramp over 0.1→0.6 of "
                    "training), MSE grid steps re-estimated every 50 steps, "
                    f"batch 128, {QGT_EPOCHS} epochs on all {len(tr):,} training images, Adam "
                    f"{PULL_LR:g} cosine; '+ STE': straight-through forward on the grid from "
                    f"{STE_START:.0%} of training with learned per-channel step gains, Adam "
                    f"{STE_LR:g}; sim-QAT: the same without the pull. Export: weights on the "
                    f"learned grid, min-max int8 activations from {CALIB} calibration images, "
                    "edgeq's writer; 2-bit layers stored in INT4 tensors.")
    return {"rows": rows, "notes": notes}
