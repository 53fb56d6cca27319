"""Benchmark section: Quantization Guided Training on Fashion-MNIST (`fmnist`), side by side in
one run with float, tfmot QAT INT8, edgeq's simulated-quantization QAT (straight-through
fine-tune of the min-max model), BRECQ PTQ, and QGT with and without its regularizer.

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
STE_STEPS = 300  # straight-through fine-tune after QGT, and the whole of edgeq's sim-QAT rows
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
    from edgeq.export import bit_plan, quantize_minmax, to_tflite_model
    from edgeq.graph import capture
    from edgeq.qgt_train import finish, ste_finetune, train_qgt
    from edgeq.quant import qgt as core
    from edgeq.quantize import quantize, storable
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
                         f"({float_bytes / wb:.1f}x smaller than float), .tflite {row['bytes']:,} B.")

    t = time.perf_counter()
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    qat.fit(tr.x, tr.y, batch_size=128, epochs=1, verbose=0)
    add("tfmot QAT INT8 (1 epoch)", tflite_int8_ptq(qat, calib), time.perf_counter() - t)

    for bits in (4, 2):
        plan = bit_plan(graph, bits)
        t = time.perf_counter()
        qg = ste_finetune(quantize_minmax(graph, calib, plan), tr, STE_STEPS)
        add(f"edgeq sim-QAT W{bits} (min-max + {STE_STEPS} STE steps)",
            write_model(to_tflite_model(storable(qg))), time.perf_counter() - t, plan)

        t = time.perf_counter()
        qg, _ = quantize(graph, calib, method="brecq", bits=bits, progress=False)
        add(f"edgeq BRECQ PTQ W{bits}", write_model(to_tflite_model(qg)),
            time.perf_counter() - t, plan)

        for form in ("l2grid", "none"):
            t = time.perf_counter()
            result = train_qgt(graph, tr, val, bits=bits, epochs=QGT_EPOCHS, regularizer=form)
            tflite, _ = finish(result, calib, tr, ste_steps=STE_STEPS)
            label = "QGT" if form != "none" else "ablation: no regularizer,"
            add(f"{label} W{bits} ({QGT_EPOCHS} epochs + {STE_STEPS} STE steps)", tflite,
                time.perf_counter() - t, plan)
            last = result.history[-1]
            notes.append(f"{label} W{bits}: after training, distance to the grid "
                         f"{last['grid_distance_lsb']:.3f} LSB, validation accuracy float "
                         f"{last['val_accuracy']:.4f}, weights rounded onto the grid "
                         f"{last['val_accuracy_on_grid']:.4f} ({VAL_SAMPLES} test images); "
                         f"QGT training {result.seconds:.0f} s.")
            if form == "l2grid" and bits == 2:
                top = core.find_bottlenecks(result, val, bits=result.plan)[:3]
                notes.append("QGT W2 bottlenecks (loss increase when alone on its grid): "
                             + ", ".join(f"{r['name']} {r['loss_increase']:+.3f}"
                                         f"{' (bottleneck)' if r['bottleneck'] else ''}"
                                         for r in top))
    notes.insert(0, f"fmnist float model of benchmarks.sections.trained_fmnist; QGT: "
                    f"decoupled l2grid pull, λ cosine ramp 0.1→0.6 of training, MSE grid steps "
                    f"re-estimated every 50 steps, Adam 5e-4 cosine, batch 128, {QGT_EPOCHS} "
                    f"epochs on all 60,000 training images, then {STE_STEPS} straight-through "
                    f"steps on the simulated integer model; {CALIB} calibration images for "
                    "activation ranges. 2-bit layers are stored in INT4 tensors.")
    return {"rows": rows, "notes": notes}
