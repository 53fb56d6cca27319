"""Benchmark sections. Each takes the shared/ folder and returns a JSON-able dict with "rows"
(a list of dicts with the same keys) and "notes"; `render` turns it into markdown."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks import firmware
from benchmarks.markdown import cell
from edgeq.data import fashion_mnist, load_dataset
from edgeq.deploy.check import check_model
from edgeq.deploy.tflm import measure_arena

FMNIST_EPOCHS = 10
CACHE = Path(__file__).resolve().parents[1] / "bench_out"


def trained_fmnist():
    """(model, train, test, train seconds, val accuracy): fmnist trained FMNIST_EPOCHS epochs,
    cached in bench_out/ so that later sections measure the very same float model."""
    import json

    import tf_keras as keras

    from edgeq.learn.train import train
    from edgeq.learn.zoo import build_model, load_card

    card = load_card("fmnist")
    tr, te = fashion_mnist(card.input_shape)
    path, info = CACHE / f"fmnist_e{FMNIST_EPOCHS}.h5", CACHE / f"fmnist_e{FMNIST_EPOCHS}.json"
    if path.is_file() and info.is_file():
        meta = json.loads(info.read_text())
        return keras.models.load_model(path, compile=False), tr, te, meta["seconds"], meta["val_accuracy"]
    model = build_model(card)
    result = train(model, tr, te, FMNIST_EPOCHS, card.train["batch_size"], card.train["learning_rate"], seed=0)
    CACHE.mkdir(exist_ok=True)
    model.save(path)
    info.write_text(json.dumps({"seconds": result.seconds, "val_accuracy": result.val_accuracy}))
    return model, tr, te, result.seconds, result.val_accuracy


def edgeq_minmax_rows(model, calib_x, x, y, float_out, bits_list=(8, 4)) -> list[dict]:
    """edgeq's own writer, naive min-max (first and last layer at 8 bits)."""
    from edgeq.learn.export import export_tflite

    rows = []
    for bits in bits_list:
        t = time.perf_counter()
        tflite = export_tflite(model, calib_x, bits)
        rows.append(_evaluate_tflite(f"edgeq min-max W{bits}A8 (edgeq writer)", tflite, x, y,
                                     time.perf_counter() - t, float_out))
    return rows


def _evaluate_tflite(name: str, tflite: bytes, x, y, seconds: float, float_out=None) -> dict:
    checked = check_model(tflite, x, y, float_model_predict=float_out)
    litert, tflm = checked.runtime("litert"), checked.runtime("tflm")
    return {"model": name, "top1_litert": litert.accuracy, "top1_tflm": tflm.accuracy,
            "tflm_litert_agreement": checked.tflm_litert_agreement,
            "max_lsb": checked.max_abs_diff, "reference_exact": checked.reference_equals_tflm,
            "bytes": len(tflite),
            "arena_bytes": measure_arena(tflite), "seconds": round(seconds, 1)}


def foundation_fmnist(shared: Path) -> dict:
    """fmnist float vs TensorFlow INT8 PTQ vs tfmot QAT INT8 on the 10,000 test images."""
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    from edgeq.learn.tf_baseline import tflite_int8_ptq
    from edgeq.learn.train import evaluate_float
    from edgeq.learn.zoo import load_card

    card = load_card("fmnist")
    model, tr, te, train_s, val_acc = trained_fmnist()
    float_acc, float_out = evaluate_float(model, te)
    calib = tr.x[np.random.default_rng(0).permutation(len(tr))[:256]]
    rows = [{"model": "float (Keras)", "top1_litert": float_acc, "top1_tflm": None,
             "tflm_litert_agreement": None, "max_lsb": None,
             "bytes": int(model.count_params()) * 4, "arena_bytes": None, "seconds": round(train_s, 1)}]
    t = time.perf_counter()
    ptq = tflite_int8_ptq(model, calib)
    rows.append(_evaluate_tflite("TensorFlow INT8 PTQ (256 calibration images)", ptq, te.x, te.y,
                                 time.perf_counter() - t, float_out))
    t = time.perf_counter()
    qat = tfmot.quantization.keras.quantize_model(model)
    qat.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    qat.fit(tr.x, tr.y, batch_size=128, epochs=1, verbose=0)
    qat_bytes = tflite_int8_ptq(qat, calib)
    rows.append(_evaluate_tflite("tfmot QAT INT8 (1 epoch fine-tune)", qat_bytes, te.x, te.y,
                                 time.perf_counter() - t, float_out))
    rows += edgeq_minmax_rows(model, calib, te.x, te.y, float_out)
    return {"rows": rows, "notes": [
        f"fmnist (MobileNetV1 family, {int(model.count_params()):,} parameters) trained "
        f"{FMNIST_EPOCHS} epochs from scratch in {train_s / 60:.1f} min on 2 cores "
        f"(Adam, cosine decay, batch {card.train['batch_size']}); evaluated on all {len(te):,} test images.",
        "float bytes = parameters × 4 (the Keras weights in float32); INT8 bytes = the .tflite file.",
        f"final validation accuracy while training: {val_acc:.4f}",
        "edgeq min-max: weights per channel from their own range (per tensor for fully connected), "
        "activations from the calibration range, first and last layer at 8 bits."]}


def foundation_vww(shared: Path) -> dict:
    """vww_96.h5 float vs TensorFlow INT8 PTQ vs the MLPerf reference INT8 file, on coco-vww-256."""
    import tf_keras as keras

    from edgeq.learn.tf_baseline import tflite_int8_ptq
    from edgeq.learn.train import evaluate_float

    data = load_dataset(shared / "data" / "coco-vww-256", (96, 96, 3), "rgb", 255.0,
                        ["no_person", "person"])
    calib, test = data.by_prefix("train2017_"), data.by_prefix("val2017_")
    model = keras.models.load_model(shared / "models" / "vww_96.h5", compile=False)
    float_acc, float_out = evaluate_float(model, test)
    float_all, _ = evaluate_float(model, data)
    rows = [{"model": "float (vww_96.h5)", "top1_litert": float_acc, "top1_tflm": None,
             "tflm_litert_agreement": None, "max_lsb": None, "bytes": int(model.count_params()) * 4,
             "arena_bytes": None, "seconds": None}]
    t = time.perf_counter()
    ptq = tflite_int8_ptq(model, calib.x)
    rows.append(_evaluate_tflite("TensorFlow INT8 PTQ (128 train2017 photos)", ptq, test.x, test.y,
                                 time.perf_counter() - t, float_out))
    mlperf = (shared / "models" / "vww_96_int8.tflite").read_bytes()
    rows.append(_evaluate_tflite("MLPerf Tiny vww_96_int8.tflite", mlperf, test.x, test.y, 0.0, float_out))
    rows += edgeq_minmax_rows(model, calib.x, test.x, test.y, float_out)
    return {"rows": rows, "notes": [
        f"coco-vww-256: calibrate on the {len(calib)} train2017_* photos, evaluate on the {len(test)} "
        "val2017_* photos (RGB, bilinear 96×96, /255).",
        f"float on all 256 photos: {float_all:.4f}.",
        f"INT4/INT8 file size (edgeq writer): {rows[-1]['bytes'] / rows[-2]['bytes']:.3f}. The issue's "
        "0.55 target is out of reach for a file LiteRT loads: kernels shrink 208,112 → 104,420 B, but "
        "25,932 B of per-channel float32 scales, int64 zero points (LiteRT wants one per scale) and "
        "int32 biases stay, so even with no other overhead the ratio is ≥ 0.557.",
        "max Δ LSB = largest |LiteRT − TFLM| over all raw int8 outputs; edgeq reference = TFLM: "
        "edgeq's numpy interpreter gives the very same outputs as TFLM on every sample.",
        "arena = TFLM's tensor arena measured with tflite_micro's RecordingMicroAllocator."]}


def _lazy(module: str, function: str):
    """A section that lives in another benchmarks module (imported when run: those modules
    import helpers from this one)."""
    def run(shared: Path) -> dict:
        import importlib

        return getattr(importlib.import_module(f"benchmarks.{module}"), function)(shared)

    return run


REGISTRY = {"foundation_fmnist": foundation_fmnist, "foundation_vww": foundation_vww,
            "recon_fmnist": _lazy("recon", "recon_fmnist"), "recon_vww": _lazy("recon", "recon_vww"),
            "zeroshot_fmnist": _lazy("zeroshot", "zeroshot_fmnist"),
            "zeroshot_vww": _lazy("zeroshot", "zeroshot_vww"),
            "qgt_fmnist": _lazy("qgt", "qgt_fmnist"), "qgt_vww": _lazy("qgt", "qgt_vww"),
            **firmware.REGISTRY, "vs_tflm": _lazy("vs_tflm", "vs_tflm"),
            "stream_ram": _lazy("stream", "stream_ram"),
            "packed_vww": _lazy("packed", "packed_vww"),
            "packed_fmnist": _lazy("packed", "packed_fmnist"),
            "layout3": _lazy("layout3", "layout3"),
            "mobilenet_v2": _lazy("mobilenet_v2", "mobilenet_v2")}
ORDER = list(REGISTRY)

TITLES = {"foundation_fmnist": "Fashion-MNIST (`fmnist`): float, INT8 baselines, edgeq min-max W8/W4",
          "foundation_vww": "Person detection (vww_96 on coco-vww-256 val2017): float, INT8 baselines, "
                            "edgeq min-max W8/W4",
          "recon_fmnist": "Fashion-MNIST (`fmnist`): reconstruction (minmax / brecq / adaquant)",
          "recon_vww": "Person detection (vww_96): reconstruction and mixed precision",
          "zeroshot_fmnist": "Zero-shot on Fashion-MNIST (`fmnist`): Genie, REx, noise floor, real-data brecq",
          "zeroshot_vww": "Zero-shot person detection (vww_96.h5, no images; all 256 coco-vww-256 photos)",
          "qgt_fmnist": "Quantization Guided Training on Fashion-MNIST (`fmnist`)",
          "qgt_vww": "QGT on person detection: vww_96 distilled on Genie-D + train2017, val2017",
          **firmware.TITLES,
          "packed_vww": "2- and 3-bit weights packed on the board (issue #16): person detection "
                        "mixed plans by stored bytes",
          "packed_fmnist": "2-bit weights packed on the board (issue #16): Fashion-MNIST QGT W2 "
                           "against W4, firmware model object",
          "layout3": "3-bit weight layout on the board, chosen by measurement (issue #16)"}


def render(name: str, result: dict, cmd: str) -> str:
    if name == "vs_tflm":
        from benchmarks import vs_tflm

        return vs_tflm.render(name, result, cmd)
    if name == "mobilenet_v2":
        from benchmarks import mobilenet_v2

        return mobilenet_v2.render(name, result, cmd)
    if name == "layout3":
        from benchmarks import layout3

        return layout3.render(name, result, cmd)
    if name == "stream_ram":
        from benchmarks import stream

        return stream.render(name, result, cmd)
    if name in firmware.REGISTRY:
        return firmware.render_firmware(name, result, cmd)
    if name in ("packed_vww", "packed_fmnist"):
        from benchmarks import packed

        return packed.render(name, result, cmd)
    if name.startswith("recon_"):
        from benchmarks import recon

        return recon.render(name, result, cmd)
    cols = [("model", "model", "str"), ("top-1 LiteRT (Keras for float)", "top1_litert", "pct"),
            ("top-1 TFLM", "top1_tflm", "pct"), ("TFLM=LiteRT labels", "tflm_litert_agreement", "pct"),
            ("max Δ LSB", "max_lsb", "str"), ("edgeq reference = TFLM", "reference_exact", "str"),
            ("bytes", "bytes", "int"),
            ("TFLM arena", "arena_bytes", "int"), ("seconds", "seconds", "str")]
    lines = [f"## {TITLES.get(name, name)}", "", f"Command: `{cmd}` (section wall time "
             f"{result['wall_seconds']} s; {result['machine']})", "",
             "| " + " | ".join(c[0] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in result["rows"]:
        lines.append("| " + " | ".join(cell(row.get(k), kind) for _, k, kind in cols) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"
