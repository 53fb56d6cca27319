"""Benchmark section for issue #16, 2- and 3-bit weights stored at their width on the board:

    packed_vww   the person detector (vww_96.h5 calibrated on the coco-vww-256 train2017_*
                 photos) with mixed plans (brecq, edgeq's default iterations, widths 8/4/3/2)
                 under budgets of stored model (weights as the engine packs them + biases and
                 per-channel parameters: edgeq.learn.quant.mixed.layer_bytes): on-device
                 accuracy under QEMU on the 128 val2017_* and on all 256 photos, exactness
                 against TFLM on the same INT4-container .tflite, firmware flash (text + data)
                 for mps2-an500 and stm32h743, and the same file with its 2/3-bit layers stored as
                 INT4 containers (cgen.engine_options(packed_weights=False)) beside it.

Instruction counts are QEMU's (`-icount shift=0`), not cycles.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

CACHE = Path(__file__).resolve().parents[1] / "bench_out"
BUDGETS_KB = (81, 64, 48)  # most informative first
TARGETS = {81: (1.0, 144 * 1024), 64: (2.0, 128 * 1024)}  # budget: (points from float, flash)
QEMU_TIMEOUT_S = 900
SEEDS = (0, 1, 2)  # quantize(seed=...) of the seed table; 0 is the main rows' plan
ANCHOR = "QGT paper (person detection): 81 KB at -3 points"


def _data(shared: Path):
    from edgeq.data import load_dataset

    data = load_dataset(shared / "data" / "coco-vww-256", (96, 96, 3), "rgb", 255.0,
                        ["no_person", "person"])
    return data.by_prefix("train2017_"), data.by_prefix("val2017_")


def _plan_file(model, calib, budget: float, seed: int = 0) -> tuple[Path, dict]:
    """The mixed plan's .tflite (cached in bench_out/) and its quantize report."""
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.quantize import quantize
    from edgeq.tflite.write import write_model

    path = CACHE / (f"packed_vww_{budget:g}kb.tflite" if seed == 0 else
                    f"packed_vww_{budget:g}kb_seed{seed}.tflite")
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return path, json.loads(meta.read_text())
    CACHE.mkdir(exist_ok=True)
    t = time.perf_counter()
    qgraph, report = quantize(model, calib.x, "brecq", "mixed", budget, seed=seed,
                              progress=False)
    info = {"seconds": round(time.perf_counter() - t, 1), "plan": report.plan,
            "weight_bytes": report.weight_bytes, "tflite_weight_bytes": report.stored_weight_bytes,
            "board_weight_bytes": report.board_weight_bytes,
            "board_param_bytes": report.board_param_bytes,
            "planned_bytes": report.mixed["weight_bytes"] if report.mixed else None}
    path.write_bytes(write_model(to_tflite_model(qgraph)))
    meta.write_text(json.dumps(info))
    return path, info


LAYOUTS = {
    "int32 bias + int32 multiplier + int8 shift (before)": "before",
    "fixed fields: 32-bit bias, 30-bit multiplier, 6-bit shift": "fixed",
    "per-layer widths, whole bytes (bias 1-4 B, multiplier 4 B, shift 1 B)": "bytes",
    "per-layer widths in bits (value - base)": "bits",
    "per-layer widths in bits + dead channels coded in the shift (before the mantissa codes)":
        "dead",
    "+ multipliers as the weight scale's mantissa code + residual, 18-byte header (the "
    "engine's)": "engine",
    "the engine's + constant-output channels coded dead (not implemented)": "constant",
}
OLD_HEADER_BYTES = 12  # the header of the layouts before the mantissa codes


def _seed_rows(model, calib, val, budgets, float_val: float) -> list[dict]:
    """The same plans quantized with other seeds (brecq's batch order and rounding init):
    how much of a drop is the run, not the budget. Top-1 from TFLM (the firmware is
    identical to it, as the main rows show)."""
    from edgeq.deploy.check import check_model

    rows = []
    for budget in budgets:
        for seed in SEEDS:
            path, info = _plan_file(model, calib, budget, seed)
            accuracy = check_model(path, val.x, val.y).runtime("tflm").accuracy
            points, _ = TARGETS.get(budget, (None, None))
            drop = float_val - accuracy
            rows.append({"budget_kb": budget, "seed": seed, "val": accuracy, "drop_val": drop,
                         "stored_bytes": info["board_weight_bytes"] + info["board_param_bytes"],
                         "met": None if points is None else drop * 100 <= points})
    return rows


def _param_layouts(model) -> dict[str, int]:
    """Bytes of every weighted layer's per-channel parameters of a .tflite Model under the
    LAYOUTS (a header per layer where there are per-layer widths: 12 bytes before the mantissa
    codes, intmath.CHANNEL_HEADER_BYTES with them)."""
    from edgeq import intmath
    from edgeq.deploy import cgen

    steps = cgen.lower_model(model).steps
    total = dict.fromkeys(LAYOUTS.values(), 0)
    for i, op in enumerate(model.ops):
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        x, w, y = (model.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        has_bias = len(op.inputs) > 2 and op.inputs[2] >= 0
        b = np.asarray(model.tensors[op.inputs[2]].data, np.int64) if has_bias else None
        pairs = [intmath.quantize_multiplier(float(x.scale[0]) * float(s) / float(y.scale[0]))
                 for s in np.asarray(w.scale, np.float32)]
        if len(pairs) == 1 and b is not None:
            pairs *= b.size
        mu, sh = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        n = mu.size
        total["before"] += n * 4 * has_bias + (n if len(w.scale) > 1 else 1) * 5
        total["fixed"] += -(-n * (32 * has_bias + 36) // 8)
        old = OLD_HEADER_BYTES - intmath.CHANNEL_HEADER_BYTES
        bits_fields, _, _ = intmath.channel_fields(b, np.where(mu == 0, 1 << 30, mu), sh)
        total["bits"] += intmath.channel_param_bytes(n, bits_fields) + old
        total["bytes"] += OLD_HEADER_BYTES + n * sum(-(-f // 8) for f in bits_fields)
        fields, _, _ = intmath.channel_fields(b, mu, sh)
        total["dead"] += intmath.channel_param_bytes(n, fields) + old
        ratio = intmath.op_channel_ratio(model, op)
        fields, _, _ = intmath.channel_fields(b, mu, sh, ratio)
        total["engine"] += intmath.channel_param_bytes(n, fields)
        # constant output over every possible accumulator (the ends of its range suffice: the
        # requantization is monotone) equal to the clamped zero point: codable as dead
        const = np.zeros(n, bool)
        if op.kind != "FULLY_CONNECTED" and b is not None:
            q = np.asarray(w.data, np.int64)
            q = np.moveaxis(q, -1, 0) if op.kind == "DEPTHWISE_CONV_2D" else q
            q = q.reshape(n, -1)
            lo_in, hi_in = -128 - int(x.zero_point[0]), 127 - int(x.zero_point[0])
            ends = [np.minimum(q * lo_in, q * hi_in).sum(1) + b,
                    np.maximum(q * lo_in, q * hi_in).sum(1) + b]
            f = dict(steps[i].fields)
            lo, hi, zp = int(f["act_min"]), int(f["act_max"]), int(y.zero_point[0])
            out = [np.clip(zp + intmath.multiply_by_quantized_multiplier(e, mu, sh), lo, hi)
                   for e in ends]
            const = ((ends[0] >= -(1 << 31)) & (ends[1] < 1 << 31) & (out[0] == out[1])
                     & (out[0] == np.clip(zp, lo, hi)))
        fields, _, _ = intmath.channel_fields(b, np.where(const, 0, mu), np.where(const, 0, sh),
                                              ratio)
        total["constant"] += intmath.channel_param_bytes(n, fields)
    return total


def _w4_file(model, calib) -> Path:
    """The W4 person detector (brecq, first and last layers at 8 bits), cached."""
    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.quantize import quantize
    from edgeq.tflite.write import write_model

    path = CACHE / "packed_vww_w4.tflite"
    if not path.is_file():
        CACHE.mkdir(exist_ok=True)
        qgraph, _ = quantize(model, calib.x, "brecq", 4, progress=False)
        path.write_bytes(write_model(to_tflite_model(qgraph)))
    return path


def _smallest(model, calib) -> dict:
    """The smallest stored model the planner can choose (every layer at its narrowest allowed
    width), split into weights, per-channel parameters and the multipliers among them, with
    the parameter field widths the planner measures (edgeq.learn.quant.mixed.param_fields)."""
    from edgeq.learn.graph import capture
    from edgeq.learn.quant import mixed

    graph = capture(model)
    allowed = mixed.allowed_widths(graph)
    fields = mixed.param_fields(graph, calib.x, allowed)
    sizes = [mixed.engine_bytes(graph.node(n), min(ws), fields) for n, ws in allowed.items()]
    kernels = {n: graph.node(n).weights["kernel"] for n in allowed}
    channels = {n: k.shape[2] * k.shape[3] if graph.node(n).kind == "depthwise_conv2d"
                else k.shape[-1] for n, k in kernels.items()}
    mult_bits = sum(channels[n] * fields[n, min(ws)][1] for n, ws in allowed.items())
    return {"weights": int(sum(w for w, _ in sizes)), "params": int(sum(p for _, p in sizes)),
            "multiplier_bytes": -(-mult_bits // 8), "channels": int(sum(channels.values()))}


def packed_vww(shared: Path) -> dict:
    import tf_keras

    from edgeq.deploy import cgen
    from edgeq.deploy.check import model_input_spec, quantize_inputs
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import check_on_qemu
    from edgeq.errors import DataError
    from edgeq.learn.train import evaluate_float

    calib, val = _data(shared)
    model = tf_keras.models.load_model(shared / "models" / "vww_96.h5", compile=False)
    float_val, _ = evaluate_float(model, val)
    float_train, _ = evaluate_float(model, calib)
    float_all = (float_val * len(val) + float_train * len(calib)) / (len(val) + len(calib))
    rows = [{"model": "float (vww_96.h5)", "val": float_val, "all": float_all}]
    x = np.concatenate([val.x, calib.x])  # val first: its accuracy is that of the first rows
    y = np.concatenate([val.y, calib.y])
    out = CACHE / "packed_vww"
    smallest = None
    for budget in BUDGETS_KB:
        try:
            path, info = _plan_file(model, calib, budget)
        except DataError as e:  # below the smallest stored model: say so, with its size
            smallest = smallest or _smallest(model, calib)
            rows.append({"model": f"brecq mixed <= {budget:g} KiB stored", "budget_kb": budget,
                         "infeasible": e.message, "smallest": smallest})
            print(f"  {budget} KiB: {e.message}", flush=True)
            continue
        q = quantize_inputs(x, model_input_spec(path))
        dsp = check_on_qemu(path, q, out / f"{budget}_dsp", timeout=QEMU_TIMEOUT_S, labels=y,
                            force=True)
        predicted = np.argmax(dsp.outputs.astype(np.int32), axis=1)
        h7 = build_firmware(path, "stm32h743", out / f"{budget}_h7", force=True)
        with cgen.engine_options(packed_weights=False):
            container = build_firmware(path, "mps2-an500", out / f"{budget}_int4", force=True)
            h7_container = build_firmware(path, "stm32h743", out / f"{budget}_h7_int4",
                                          force=True)
        widths = sorted(info["plan"].values())
        row = {"model": f"brecq mixed <= {budget:g} KiB stored", "budget_kb": budget,
               "val": float(np.mean(predicted[:len(val)] == y[:len(val)])),
               "all": dsp.accuracy, "tflm_mismatches": dsp.mismatches,
               "tflm_labels": dsp.label_agreement,
               "stored_bytes": info["board_weight_bytes"] + info["board_param_bytes"],
               "board_weight_bytes": info["board_weight_bytes"],
               "board_param_bytes": info["board_param_bytes"],
               "logical_weight_bytes": info["weight_bytes"],
               "layers_by_bits": {str(b): widths.count(b) for b in sorted(set(widths))},
               "flash_mps2": dsp.sizes["flash"], "model_flash": dsp.sizes["model_flash"],
               "engine_flash": dsp.sizes["engine_flash"], "flash_stm32h743": h7.sizes["flash"],
               "flash_mps2_int4": container.sizes["flash"],
               "flash_stm32h743_int4": h7_container.sizes["flash"],
               "arena": dsp.sizes["arena"], "ipm": dsp.instructions_per_mac,
               "quantize_seconds": info["seconds"], "planned_bytes": info.get("planned_bytes")}
        row["drop_val"] = float_val - row["val"]
        if budget in TARGETS:
            points, flash = TARGETS[budget]
            row["target"] = (f"within {points:g} point(s): "
                             + ("met" if row["drop_val"] * 100 <= points else "NOT met")
                             + f"; flash <= {flash // 1024} KiB: "
                             + ("met" if row["flash_mps2"] <= flash else "NOT met"))
        rows.append(row)
        print(f"  {row['model']}: val {row['val']:.4f}, flash {row['flash_mps2']:,}", flush=True)
    seeds = _seed_rows(model, calib, val, [r["budget_kb"] for r in rows
                                           if "budget_kb" in r and "infeasible" not in r],
                       float_val)
    from edgeq.tflite.read import read_model

    layouts = {"vww_96_int8.tflite": _param_layouts(read_model(shared / "models" /
                                                              "vww_96_int8.tflite")),
               "W4 brecq": _param_layouts(read_model(_w4_file(model, calib)))}
    for budget in BUDGETS_KB:
        if (CACHE / f"packed_vww_{budget:g}kb.tflite").is_file():
            layouts[f"mixed <= {budget:g} KiB"] = _param_layouts(
                read_model(CACHE / f"packed_vww_{budget:g}kb.tflite"))
    return {"rows": rows, "seeds": seeds, "layouts": layouts, "notes": [
        f"coco-vww-256: calibrate on the {len(calib)} train2017_* photos; accuracy on the "
        f"{len(val)} val2017_* photos and on all {len(x)} (the calibration photos included), "
        "measured on the firmware under QEMU (mps2-an500, DSP build); float with tf_keras.",
        "Plans: quantize(vww_96, train2017, 'brecq', 'mixed', budget_kb) with brecq's default "
        "iterations on 2 shared cores, widths 8/4/3/2, first and last layers at 8 bits; "
        "budget = stored model: weights as the engine packs them (2/3 bits as dense streams) + "
        "the packed per-channel parameters (edgeq.intmath.pack_channels: per layer a 18-byte "
        "header and bias, shift and the Q31 multiplier's mantissa code and residual as value - "
        "base at the layer's widths; the quantizer snaps each weight scale to "
        "intmath.SNAP_SCALE_BITS significant bits of its width); the "
        "planner counts those widths as measured on min-max quantized copies at each width (bias "
        "+1 bit of margin); 'stored' is what the engine generator wrote for the final plan.",
        "flash = text + data of the linked ELF (arm-none-eabi-size); 'INT4 containers' = the "
        "same .tflite with engine_options(packed_weights=False).",
        "instructions / MAC: QEMU -icount, mean over the photos, DSP build (not cycles).",
        f"Anchor: {ANCHOR} (its own evaluation set, not these photos).",
        "The quantize seconds of each plan are in the JSON (brecq mixed, 2 loaded cores).",
        "QGT W2 on Fashion-MNIST (model object vs W4): the packed_fmnist section."]}


FMNIST_QGT_EPOCHS = 1  # the sizes depend on the stored widths, not on how long QGT trained
FMNIST_TARGET = 0.55  # the W2 model object at most this fraction of the W4 one


def packed_fmnist(shared: Path) -> dict:
    """Fashion-MNIST QGT + STE at W4 and W2 (benchmarks.qgt's settings, FMNIST_QGT_EPOCHS
    epochs): the firmware's model object (edgeq_model.o: weights, per-channel parameters and
    the invoke code) with the 2-bit layers packed and as INT4 containers, and its ratio."""
    from benchmarks.qgt import CALIB, STE_LR, STE_STRENGTH, VAL_SAMPLES
    from benchmarks.sections import _evaluate_tflite, trained_fmnist
    from edgeq.deploy import cgen
    from edgeq.deploy.firmware import build_firmware
    from edgeq.learn.graph import capture
    from edgeq.learn.qgt.training import finish, train_qgt
    from edgeq.learn.train import evaluate_float

    model, tr, te, _, _ = trained_fmnist()
    _, float_out = evaluate_float(model, te)
    graph = capture(model)
    calib = tr.x[np.random.default_rng(0).permutation(len(tr))[:CALIB]]
    rows = []
    for bits in (4, 2):
        path = CACHE / f"packed_fmnist_w{bits}.tflite"
        meta = path.with_suffix(".json")
        if path.is_file() and meta.is_file():  # cached: the same training, measured again
            tflite, seconds = path.read_bytes(), json.loads(meta.read_text())["seconds"]
        else:
            t = time.perf_counter()
            result = train_qgt(graph, tr, te.take(VAL_SAMPLES), bits=bits,
                               epochs=FMNIST_QGT_EPOCHS, regularizer="l2grid", ste_start=0.0,
                               strength=STE_STRENGTH, learning_rate=STE_LR)
            tflite, _ = finish(result, calib)
            seconds = round(time.perf_counter() - t, 1)
            CACHE.mkdir(exist_ok=True)
            path.write_bytes(tflite)
            meta.write_text(json.dumps({"seconds": seconds}))
        row = _evaluate_tflite(f"QGT + STE W{bits} ({FMNIST_QGT_EPOCHS} epoch)", tflite, te.x,
                               te.y, seconds, float_out)
        out = CACHE / "packed_fmnist" / f"w{bits}"
        row["model_object"] = build_firmware(path, "mps2-an500", out, force=True).sizes[
            "model_flash"]
        with cgen.engine_options(packed_weights=False):
            row["model_object_int4"] = build_firmware(path, "mps2-an500", out.with_name(
                f"w{bits}_int4"), force=True).sizes["model_flash"]
        rows.append(row)
    ratio = rows[1]["model_object"] / rows[0]["model_object"]
    return {"rows": rows, "ratio": ratio, "ratio_int4": rows[1]["model_object_int4"] /
            rows[0]["model_object_int4"],
            "target": f"W2 / W4 model object <= {FMNIST_TARGET}: "
                      + ("met" if ratio <= FMNIST_TARGET else "NOT met"),
            "notes": [
                "fmnist float model of benchmarks.sections.trained_fmnist; QGT + STE as in "
                f"benchmarks.qgt (l2grid pull, straight-through from the start, λ "
                f"{STE_STRENGTH:g}, Adam {STE_LR:g}) for {FMNIST_QGT_EPOCHS} epoch(s) (not "
                "qgt_fmnist's 4: the stored sizes depend on the widths, the accuracy is this "
                "run's), first and last layers at 8 bits; top-1 on all 10,000 test images.",
                "model object = text + data of edgeq_model.o in the mps2-an500 firmware "
                "(arm-none-eabi-size): weights as the engine packs them, the packed per-channel "
                "parameters and the generated invoke code; 'as INT4 containers' = "
                "engine_options(packed_weights=False).",
                "Weight scales snapped by edgeq.learn.quantize.storable to "
                "intmath.SNAP_SCALE_BITS significant bits (5 for the 2-bit layers, 10 for 4-bit, "
                "12 for 8-bit): per channel the engine stores a bias, a shift and a multiplier "
                "mantissa code of 4 (W2), 9 (W4) or 11 (8-bit layers) bits "
                "(edgeq.intmath.pack_channels)."]}


def render(name: str, result: dict, cmd: str) -> str:
    if name == "packed_fmnist":
        return _render_fmnist(result, cmd)
    head = ("| model | val2017 top-1 | drop | all 256 | = TFLM | stored KiB (weights + params) "
            "| widths (layers) | flash mps2-an500 | as INT4 containers | flash stm32h743 "
            "| as INT4 containers | arena B | instr / MAC | target |")
    lines = [f"## {TITLES[name]}", "", f"Command: `{cmd}` (section wall time "
             f"{result.get('wall_seconds')} s; {result.get('machine')})", "", head,
             "|" + "---|" * head.count(" | ") + "---|"]
    for r in result["rows"]:
        if "budget_kb" not in r:
            lines.append(f"| {r['model']} | {r['val']:.2%} | — | {r['all']:.2%} | — | — | — | — "
                         "| — | — | — | — | — | — |")
            continue
        if "infeasible" in r:
            target = TARGETS.get(r["budget_kb"])
            why = r["infeasible"]
            if "smallest" in r:
                s = r["smallest"]
                why += (f"; of it {s['weights']:,} B of weights (every inner layer at 2 bits) and "
                        f"{s['params']:,} B of per-channel parameters for {s['channels']:,} "
                        f"channels, {s['multiplier_bytes']:,} B of them Q31 multipliers "
                        "(mantissa code + residual of the snapped scales)")
                if s["weights"] > r["budget_kb"] * 1024:
                    why += f"; the weights alone exceed {r['budget_kb']:g} KiB"
            lines.append(f"| {r['model']} | no plan: {why} | — | — | — | — | — | — "
                         f"| — | — | — | — | — | {'NOT met' if target else '—'} |")
            continue
        stored = (f"{r['stored_bytes'] / 1024:.1f} ({r['board_weight_bytes'] / 1024:.1f} + "
                  f"{r['board_param_bytes'] / 1024:.1f})")
        widths = ", ".join(f"W{b}: {n}" for b, n in r["layers_by_bits"].items())
        lines.append(
            f"| {r['model']} | {r['val']:.2%} | {100 * r['drop_val']:+.2f} | {r['all']:.2%} | "
            f"{'yes' if r['tflm_mismatches'] == 0 else 'NO'} | {stored} | {widths} | "
            f"{r['flash_mps2']:,} | {r['flash_mps2_int4']:,} | {r['flash_stm32h743']:,} | "
            f"{r['flash_stm32h743_int4']:,} | {r['arena']:,} | {r['ipm']:.2f} | "
            f"{r.get('target', '—')} |")
    if result.get("seeds"):
        lines += ["", "The same budgets quantized with other seeds (brecq's batch order and "
                  "rounding initialisation; seed 0 is the plan above), top-1 from TFLM on the "
                  "val2017 photos:", "",
                  "| budget | seed | val2017 top-1 | drop | stored B | within the target |",
                  "|---|---|---|---|---|---|"]
        for r in result["seeds"]:
            met = {None: "—", True: "yes", False: "no"}[r["met"]]
            lines.append(f"| <= {r['budget_kb']:g} KiB | {r['seed']} | {r['val']:.2%} | "
                         f"{100 * r['drop_val']:+.2f} | {r['stored_bytes']:,} | {met} |")
    if "layouts" in result:
        models = list(result["layouts"])
        lines += ["", "Per-channel parameter bytes of the person detectors under each layout "
                  "(all weighted layers; the firmware is identical to TFLM with any of them):",
                  "", "| layout | " + " | ".join(models) + " |",
                  "|---|" + "---|" * len(models)]
        for label, key in LAYOUTS.items():
            lines.append(f"| {label} | " + " | ".join(f"{result['layouts'][m][key]:,}"
                                                     for m in models) + " |")
    lines += [""] + [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def _render_fmnist(result: dict, cmd: str) -> str:
    lines = [f"## {TITLES['packed_fmnist']}", "", f"Command: `{cmd}` (section wall time "
             f"{result.get('wall_seconds')} s; {result.get('machine')})", "",
             "| model | top-1 TFLM | top-1 LiteRT | model object B | as INT4 containers B |",
             "|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['top1_tflm']:.2%} | {r['top1_litert']:.2%} | "
                     f"{r['model_object']:,} | {r['model_object_int4']:,} |")
    lines += ["", f"W2 / W4 model object: {result['ratio']:.3f} ({result['target']}); as INT4 "
              f"containers {result['ratio_int4']:.3f}.", ""]
    lines += [f"- {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


REGISTRY = {"packed_vww": packed_vww, "packed_fmnist": packed_fmnist}
TITLES = {"packed_vww": "2- and 3-bit weights packed on the board (issue #16): person "
                        "detection mixed plans by stored bytes",
          "packed_fmnist": "2-bit weights packed on the board (issue #16): Fashion-MNIST QGT W2 "
                           "against W4, firmware model object"}
