"""Benchmark sections for post-training reconstruction (issue 4): `recon_fmnist(shared)` and
`recon_vww(shared)` return {"rows": [...], "notes": [...]} like benchmarks/sections.py; each row
also has the keys sections.render shows, and `render` here gives the wider table.

Every quantized model goes through edgeq's writer and is run by LiteRT and TFLM on the
evaluation images (edgeq.deploy.check.check_model); the simulated model's labels are compared with
TFLM's on the first SIM_CHECK images (contract 2).

Environment: EDGEQ_FMNIST_H5 = a trained fmnist float model (tf_keras .h5) to load instead of
training one (FMNIST_EPOCHS epochs from scratch, as the foundation section does).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

FMNIST_EPOCHS = 10
FMNIST_EVAL = 2_000  # TFLM runs ~100 models/min here; 2,000 images keep a section < 25 min
SIM_CHECK = 500
FMNIST_BITS = (4, 2, "mixed", 3, 8)  # most informative first, in case of a deadline
METHODS = ("minmax", "brecq", "adaquant")
MIXED_AVG_BITS = 3.0
VWW_BUDGET_KB = 81.0


def _fmnist_model():
    from edgeq.data import fashion_mnist
    from edgeq.learn.zoo import build_model, load_card

    card = load_card("fmnist")
    tr, te = fashion_mnist(card.input_shape)
    path = os.environ.get("EDGEQ_FMNIST_H5")
    if path:
        import tf_keras

        return tf_keras.models.load_model(path, compile=False), tr, te, f"loaded {path}"
    from edgeq.learn.train import train

    model = build_model(card)
    t = time.perf_counter()
    train(model, tr, te, FMNIST_EPOCHS, card.train["batch_size"], card.train["learning_rate"],
          seed=0)
    return model, tr, te, (f"trained {FMNIST_EPOCHS} epochs from scratch in "
                           f"{(time.perf_counter() - t) / 60:.1f} min")


def _row(label: str, method: str, bits, qgraph, report, x, y, float_out, seconds: float,
         command: str) -> dict:
    from edgeq.deploy.check import check_model
    from edgeq.deploy.tflm import measure_arena
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.quant.sim import simulate
    from edgeq.tflite.write import write_model

    tflite = write_model(to_tflite_model(qgraph))
    checked = check_model(tflite, x, y, float_outputs=float_out)
    litert, tflm = checked.runtime("litert"), checked.runtime("tflm")
    sim = simulate(qgraph, x[:SIM_CHECK], integer=True, dtype="float64")
    sim_agree = float(np.mean(sim.argmax(1) == tflm.labels[:SIM_CHECK]))
    return {"model": label, "method": method, "bits": bits,
            "top1_litert": litert.accuracy, "top1_tflm": tflm.accuracy,
            "float_agreement": tflm.float_agreement,
            "tflm_litert_agreement": checked.tflm_litert_agreement,
            "max_lsb": checked.max_abs_diff, "sim_tflm_agreement": sim_agree,
            "weight_kib": round(report.weight_bytes / 1024, 1),
            "bytes": len(tflite), "arena_bytes": measure_arena(tflite),
            "seconds": round(seconds, 1), "command": command,
            "plan": report.plan if bits == "mixed" else None,
            "kept": _kept_counts(report)}


def _kept_counts(report) -> dict:
    counts: dict[str, int] = {}
    for block in report.blocks:
        counts[block["kept"]] = counts.get(block["kept"], 0) + 1
    return counts


def _run(model, calib, method, bits, budget_kb=None):
    from edgeq.learn.quantize import quantize

    t = time.perf_counter()
    qgraph, report = quantize(model, calib, method, bits, budget_kb, progress=False)
    return qgraph, report, time.perf_counter() - t


def recon_fmnist(shared: Path, widths=FMNIST_BITS, methods=METHODS, deadline: float | None = None,
                 on_row=None) -> dict:
    """fmnist: minmax vs brecq vs adaquant at W8/W4/W3/W2 (A8) and mixed at ≤ 3 bits.
    `deadline` (time.time()) stops starting new rows after it (the notes list what was
    skipped); `on_row(result_so_far)` is called after every row."""
    from edgeq.learn.graph import capture
    from edgeq.learn.train import evaluate_float

    model, tr, te, origin = _fmnist_model()
    te = te.take(FMNIST_EVAL)
    float_acc, float_out = evaluate_float(model, te)
    calib = tr.x[np.sort(np.random.default_rng(0).permutation(len(tr))[:1024])]
    graph = capture(model)
    params = sum(n.weights["kernel"].size for n in graph.weighted_nodes)
    budget_kb = MIXED_AVG_BITS * params / 8 / 1024
    rows = [{"model": "float (Keras)", "method": "float", "bits": 32, "top1_litert": float_acc,
             "top1_tflm": None, "weight_kib": round(params * 4 / 1024, 1)}]
    notes = [
        f"fmnist float model: {origin}; float top-1 {float_acc:.4f} on the first {len(te):,} "
        "test images; calibration: 1,024 seeded training images, batch 32.",
        "A8 = int8 activations; first and last layer at 8 bits; 3- and 2-bit weights are stored "
        "in INT4 tensors; weight KiB counts kernels at their logical width.",
        f"mixed: integer program on per-layer sensitivity at 8/4/3/2 bits, budget "
        f"{budget_kb:.1f} KiB of stored model (packed weights + per-channel parameters, "
        f"edgeq.learn.quant.mixed.layer_bytes; {MIXED_AVG_BITS:g} bits × {params:,} weights).",
        "sim=TFLM: label agreement of edgeq's simulated model with TFLM on the first "
        f"{SIM_CHECK} test images (contract 2)."]
    result = {"rows": rows, "notes": notes}
    for bits in widths:
        for method in methods:
            if deadline is not None and time.time() > deadline:
                notes.append(f"not run (time limit of this session): {method} at {bits}")
                continue
            qgraph, report, seconds = _run(graph, calib, method, bits,
                                           budget_kb if bits == "mixed" else None)
            tag = f"W{bits}A8" if bits != "mixed" else f"mixed ≤ {MIXED_AVG_BITS:g} bits"
            cmd = (f"quantize(fmnist, calib_1024, {method!r}, "
                   + (f"'mixed', budget_kb={budget_kb:.1f})" if bits == "mixed" else f"{bits})"))
            row = _row(f"{method} {tag}", method, bits, qgraph, report, te.x, te.y, float_out,
                       seconds, cmd)
            row["drop"] = None if row["top1_tflm"] is None else float_acc - row["top1_tflm"]
            rows.append(row)
            print(f"  {row['model']}: TFLM {row['top1_tflm']:.4f} ({seconds:.0f} s)", flush=True)
            if on_row:
                on_row(result)
    return result


def recon_vww(shared: Path, on_row=None) -> dict:
    """vww_96: float, minmax W4, brecq W4 (≤ 15 min) and mixed ≤ 81 KiB, on coco-vww-256."""
    import tf_keras

    from edgeq.data import load_dataset
    from edgeq.learn.train import evaluate_float

    data = load_dataset(shared / "data" / "coco-vww-256", (96, 96, 3), "rgb", 255.0,
                        ["no_person", "person"])
    calib, test = data.by_prefix("train2017_"), data.by_prefix("val2017_")
    model = tf_keras.models.load_model(shared / "models" / "vww_96.h5", compile=False)
    float_acc, float_out = evaluate_float(model, test)
    rows = [{"model": "float (vww_96.h5)", "method": "float", "bits": 32,
             "top1_litert": float_acc, "top1_tflm": None}]
    for method, bits, budget in (("minmax", 4, None), ("brecq", 4, None),
                                 ("brecq", "mixed", VWW_BUDGET_KB)):
        qgraph, report, seconds = _run(model, calib.x, method, bits, budget)
        tag = f"W{bits}A8" if bits != "mixed" else f"mixed ≤ {budget:g} KiB"
        cmd = (f"quantize(vww_96, train2017, {method!r}, "
               + (f"'mixed', budget_kb={budget:g})" if bits == "mixed" else f"{bits})"))
        row = _row(f"{method} {tag}", method, bits, qgraph, report, test.x, test.y, float_out,
                   seconds, cmd)
        row["drop"] = float_acc - row["top1_tflm"]
        rows.append(row)
        print(f"  {row['model']}: TFLM {row['top1_tflm']:.4f} ({seconds:.0f} s)", flush=True)
        if on_row:
            on_row({"rows": rows, "notes": []})
    return {"rows": rows, "notes": [
        f"coco-vww-256: calibrate on the {len(calib)} train2017_* photos (all of them: fewer "
        f"than 1,024), evaluate on the {len(test)} val2017_* photos.",
        "brecq defaults (edgeq.learn.quantize.DEFAULT_ITERS) on 2 shared cores; seconds = the whole "
        "quantize() call (ranges, reconstruction, report SQNR).",
        f"mixed: budget {VWW_BUDGET_KB:g} KiB of stored model: weights as the board's engine "
        "packs them (2/3 bits as dense streams) + per-channel parameters "
        "(edgeq.learn.quant.mixed.layer_bytes); in the .tflite 2/3-bit layers are INT4 "
        "tensors, whose size is in 'bytes'."]}


REGISTRY = {"recon_fmnist": recon_fmnist, "recon_vww": recon_vww}
TITLES = {"recon_fmnist": "Fashion-MNIST (`fmnist`): reconstruction (minmax / brecq / adaquant)",
          "recon_vww": "Person detection (vww_96): reconstruction and mixed precision"}


def _pct(v):
    return "—" if v is None else f"{100 * v:.2f}%"


def render(name: str, result: dict, cmd: str) -> str:
    cols = ["model", "top-1 TFLM (LiteRT for float)", "drop", "labels = float",
            "sim = TFLM", "TFLM = LiteRT", "max Δ LSB", "weights KiB", ".tflite bytes",
            "seconds", "call"]
    lines = [f"## {TITLES.get(name, name)}", "",
             f"Command: `{cmd}` (section wall time {result.get('wall_seconds')} s; "
             f"{result.get('machine', '')})", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in result["rows"]:
        top1 = r.get("top1_tflm") if r.get("top1_tflm") is not None else r.get("top1_litert")
        drop = r.get("drop")
        cells = [r["model"], _pct(top1), "—" if drop is None else f"{100 * drop:+.2f}",
                 _pct(r.get("float_agreement")), _pct(r.get("sim_tflm_agreement")),
                 _pct(r.get("tflm_litert_agreement")),
                 "—" if r.get("max_lsb") is None else f"{r['max_lsb']:g}",
                 "—" if r.get("weight_kib") is None else f"{r['weight_kib']:g}",
                 "—" if r.get("bytes") is None else f"{r['bytes']:,}",
                 "—" if r.get("seconds") is None else f"{r['seconds']:g}",
                 f"`{r['command']}`" if r.get("command") else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"
