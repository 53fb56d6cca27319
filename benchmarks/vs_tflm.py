"""Benchmark section `vs_tflm` (issue 17): edgeq's firmware against TFLM + CMSIS-NN on the very
same .tflite files and int8 inputs, both under QEMU's Cortex-M7 (mps2-an500, `-icount shift=0`).

    make bench-vs-tflm        (= .venv/bin/python benchmarks/run.py --only vs_tflm)

For each model: instructions per inference (median over the inputs; QEMU instruction counts,
SysTick ticks x 40: instructions, not Cortex-M7 cycles) and per MAC for both, edgeq's per op
kind (its -DEDGEQ_PROFILE build; the kit has no per-op timer, so TFLM's column is not split),
flash (text + data of each ELF), RAM (arena, data + bss) and whether each firmware's outputs are
identical to TFLM's Python interpreter (tflite_micro, reference kernels) on every input.

TFLM + CMSIS-NN: the kit in ../shared/tflm-cmsis-nn (`run.sh MODEL INPUT cmsis`, BUILD_TYPE=release,
-O2), its library objects cached in bench_out/tflm-kit. edgeq: edgeq.deploy.qemu.check_on_qemu
(build_firmware for mps2-an500, -O2, the DSP path). The two models of our own (a ResNet of 3x3
convolutions with residual ADDs, and a small 1-D streaming-audio network) are built here with
tf_keras, seeded, untrained, and converted with TensorFlow's converter (full-integer INT8 PTQ);
they and the W4 person detector are cached in bench_out/.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

import numpy as np

from benchmarks.markdown import cell

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "bench_out"
KIT_BUILD = CACHE / "tflm-kit"
OUT = CACHE / "vs_tflm"
INPUTS = 5  # per model: the kit builds one firmware per input (its lib is cached)
QEMU_TIMEOUT_S = 900
SEED = 17
TARGET_VWW_IPM = 1.2
TARGET_VWW_RATIO = 2.5
TARGET_RATIO = 1.5
# issue #17's per-kernel targets on vww_96_int8 (instructions/MAC, the default DSP path)
TARGET_KINDS = {"dw_3x3": 2.0, "conv_kxk": 1.3, "conv_1x1": 1.0}
CLASSES = ["no_person", "person"]


# ---- the models -------------------------------------------------------------------------------

def _photos(shared: Path, hw: int):
    from edgeq.data import load_dataset

    data = load_dataset(shared / "data" / "coco-vww-256", (hw, hw, 3), "rgb", 255.0, CLASSES)
    return data.by_prefix("train2017_"), data.by_prefix("val2017_")


def _convert(model, calib: np.ndarray, path: Path) -> Path:
    """TensorFlow's converter, full-integer INT8 (int8 input and output), on `calib`."""
    import tensorflow as tf

    def representative():
        for x in calib:
            yield [x[None].astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    data = conv.convert()
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def resnet_3x3(shared: Path) -> Path:
    """A CIFAR-sized ResNet: 32x32x3, a 3x3 stem of 16, three stages of two residual blocks of
    two 3x3 convolutions (16, 32, 64 channels; stride 2 and a 1x1 projection entering stages 2
    and 3), ReLU after each ADD, average pool over the whole map, 10 outputs. Calibrated on the 128
    train2017 photos at 32x32."""
    path = CACHE / "vs_tflm_resnet_3x3.tflite"
    if path.is_file():
        return path
    import tf_keras as keras

    keras.utils.set_random_seed(SEED)
    L = keras.layers
    inp = keras.Input((32, 32, 3))
    x = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    for filters, stride in ((16, 1), (16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        y = L.Conv2D(filters, 3, strides=stride, padding="same", activation="relu")(x)
        y = L.Conv2D(filters, 3, padding="same")(y)
        if stride != 1 or x.shape[-1] != filters:
            x = L.Conv2D(filters, 1, strides=stride)(x)
        x = L.ReLU()(L.Add()([x, y]))
    x = L.Flatten()(L.AveragePooling2D(x.shape[1:3])(x))  # AVERAGE_POOL_2D: the kit has no MEAN
    model = keras.Model(inp, L.Dense(10)(x))
    calib, _ = _photos(shared, 32)
    CACHE.mkdir(exist_ok=True)
    return _convert(model, calib.x, path)


AUDIO_SHAPE = (1, 64, 16)  # one row of 64 frames x 16 features (NHWC with H = 1)


def audio_1d(shared: Path) -> Path:
    """A small streaming audio (keyword) network on 64 frames of 16 features: a 1x5 convolution
    (32, stride 2), three depthwise-separable 1-D blocks (1x3 depthwise, 1x1 pointwise of 32, 64,
    64; the second with stride 2), average pool over the whole row, 12 outputs. Calibrated on seeded
    normal features (no speech data in ../shared)."""
    path = CACHE / "vs_tflm_audio_1d.tflite"
    if path.is_file():
        return path
    import tf_keras as keras

    keras.utils.set_random_seed(SEED)
    L = keras.layers
    inp = keras.Input(AUDIO_SHAPE)
    x = L.Conv2D(32, (1, 5), strides=(1, 2), padding="same", activation="relu")(inp)
    for filters, stride in ((32, 1), (64, 2), (64, 1)):
        x = L.DepthwiseConv2D((1, 3), strides=(1, stride), padding="same", activation="relu")(x)
        x = L.Conv2D(filters, 1, activation="relu")(x)
    x = L.Flatten()(L.AveragePooling2D(x.shape[1:3])(x))
    model = keras.Model(inp, L.Dense(12)(x))
    calib = np.random.default_rng(SEED).normal(0, 1, (64, *AUDIO_SHAPE)).astype(np.float32)
    CACHE.mkdir(exist_ok=True)
    return _convert(model, calib, path)


def _models(shared: Path) -> dict:
    """name -> (path, float inputs or None, how the inputs were made, about the model).
    Not here: issue #14's MobileNetV2 (benchmarks.mobilenet_v2): the kit registers no MEAN
    kernel (gen_model.py: "no kernel in this kit for builtin op code(s) ['40']"; edgeq's file
    has no PAD since graph.fold_zero_padding). Writing GlobalAveragePooling2D as an
    AVERAGE_POOL_2D over the whole map instead is not the same op: with equal qparams TFLM's
    MEAN and AVERAGE_POOL_2D differ on 0.5 % to 37 % of values (scripts/mean_vs_avgpool.py),
    so edgeq keeps MEAN."""
    from benchmarks.firmware import w4_person_detector

    _, val96 = _photos(shared, 96)
    _, val32 = _photos(shared, 32)
    photos = "the first {n} coco-vww-256 val2017_* photos (RGB, bilinear {hw}x{hw}, /255)"
    w4_path, w4 = w4_person_detector(shared)
    rng = np.random.default_rng(SEED)
    return {
        "vww_96_int8": (shared / "models" / "vww_96_int8.tflite", val96.x[:INPUTS],
                        photos.format(n=INPUTS, hw=96), "MLPerf Tiny person detection "
                        "(MobileNetV1 0.25, ../shared/models)"),
        "kws_ref_model": (shared / "models" / "kws_ref_model.tflite",
                          rng.normal(0, 1, (INPUTS, 49, 10, 1)).astype(np.float32) * 20,
                          f"{INPUTS} seeded normal 49x10 feature maps (x20, then quantized; no "
                          "speech data in ../shared)", "MLPerf Tiny keyword spotting (DS-CNN, "
                          "../shared/models)"),
        "edgeq_w4": (w4_path, val96.x[:INPUTS], photos.format(n=INPUTS, hw=96),
                     f"vww_96.h5 with 4-bit weights by edgeq ({w4['method']}; "
                     "benchmarks.firmware.w4_person_detector, cached)"),
        "resnet_3x3": (resnet_3x3(shared), val32.x[:INPUTS], photos.format(n=INPUTS, hw=32),
                       "ours: ResNet of 3x3 convolutions with residual ADDs (resnet_3x3 here)"),
        "audio_1d": (audio_1d(shared),
                     rng.normal(0, 1, (INPUTS, *AUDIO_SHAPE)).astype(np.float32),
                     f"{INPUTS} seeded normal 64x16 feature rows", "ours: 1-D streaming audio "
                     "network, 1x5 convolution and 1x3 depthwise-separable blocks (audio_1d "
                     "here)"),
    }


# ---- measuring --------------------------------------------------------------------------------

def run_kit(shared: Path, model: Path, x: np.ndarray, tag: str) -> dict:
    """One TFLM + CMSIS-NN firmware run of the kit on the int8 input x: its JSON line."""
    OUT.mkdir(parents=True, exist_ok=True)
    KIT_BUILD.mkdir(parents=True, exist_ok=True)
    bin_path = OUT / f"{tag}.bin"
    np.ascontiguousarray(x, dtype=np.int8).tofile(bin_path)
    env = {**os.environ, "BUILD_TYPE": "release", "BUILD_DIR": str(KIT_BUILD),
           "OPT": "-O2", "JOBS": "2", "QEMU_TIMEOUT": str(QEMU_TIMEOUT_S)}
    run = subprocess.run(["bash", str(shared / "tflm-cmsis-nn" / "run.sh"), str(model),
                          str(bin_path), "cmsis"], capture_output=True, text=True, env=env,
                         timeout=QEMU_TIMEOUT_S + 1800)
    if run.returncode != 0:
        raise RuntimeError(f"TFLM kit failed on {model.name}: {run.stderr[-2000:]}")
    return json.loads(run.stdout.strip().splitlines()[-1])


# per op kind of edgeq's profile: (key, label)
KINDS = [("conv_kxk", "CONV_2D larger than 1x1"), ("conv_1x1", "CONV_2D 1x1"),
         ("dw_3x3", "DEPTHWISE_CONV_2D 3x3"), ("dw_other", "DEPTHWISE_CONV_2D other"),
         ("add", "ADD"), ("fc", "FULLY_CONNECTED"), ("rest", "other ops")]


def _kind(model, op) -> tuple[str, int]:
    out = model.tensors[op.outputs[0]].num_elements
    if op.kind == "CONV_2D":
        w = model.tensors[op.inputs[1]].shape
        return ("conv_1x1" if w[1] == w[2] == 1 else "conv_kxk"), out * w[1] * w[2] * w[3]
    if op.kind == "DEPTHWISE_CONV_2D":
        w = model.tensors[op.inputs[1]].shape
        return ("dw_3x3" if w[1] == w[2] == 3 else "dw_other"), out * w[1] * w[2]
    if op.kind == "FULLY_CONNECTED":
        return "fc", out * model.tensors[op.inputs[1]].shape[-1]
    if op.kind == "ADD":
        return "add", 0
    return "rest", 0


def edgeq_profile(path: Path, x: np.ndarray, out_dir: Path) -> dict:
    """{kind: [instructions, MACs]} of one inference of edgeq's -DEDGEQ_PROFILE DSP build."""
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import run_qemu
    from edgeq.tflite.read import read_model

    model = read_model(path)
    fw = build_firmware(path, "mps2-an500", out_dir, extra_cflags=["-DEDGEQ_PROFILE"],
                        force=True)
    per_op = run_qemu(fw.elf, x, timeout=QEMU_TIMEOUT_S).op_instructions or []
    kinds = {key: [0, 0] for key, _ in KINDS}
    for op, count in zip(model.ops, per_op, strict=False):
        key, macs = _kind(model, op)
        kinds[key][0] += count
        kinds[key][1] += macs
    return kinds


def loop_floor(path: Path) -> int:
    """Instructions of one inference if only the fast paths' inner loops ran (no set-up, no
    im2col, no other ops): CONV_2D 18 instructions per 4 values x 6 pixels (0.75 per MAC:
    one weight word, two SXTB16, three LDMs of the int16 columns, twelve SMLADs) plus the
    6-instruction output stage per output; 3x3 DEPTHWISE_CONV_2D 32 per two outputs (the bias,
    per filter row one LDRD and four SMLAxy, the stages with their constants, the output and
    loop steps: eq_dw_run_s1), 1x3 strips 10 per output. A floor for
    these kernels' design on this ISA, to weigh the instructions/MAC target against (other
    depthwise filter shapes, not on a fast path, are counted at one instruction per MAC plus
    the stage)."""
    from edgeq.tflite.read import read_model

    model = read_model(path)
    total = 0.0
    for op in model.ops:
        out = model.tensors[op.outputs[0]].num_elements
        if op.kind == "CONV_2D":
            w = model.tensors[op.inputs[1]].shape
            total += out * (0.75 * w[1] * w[2] * w[3] + 6)
        elif op.kind == "DEPTHWISE_CONV_2D":
            w = model.tensors[op.inputs[1]].shape
            taps = w[1] * w[2]  # 3x3: 16 per output; 1x3: 1 load, 2 MACs, stage, step = 10
            total += out * (16 if taps == 9 else 10 if taps == 3 else taps + 7)
    return int(total)


def measure(shared: Path, name: str, path: Path, x_float, inputs: str, about: str) -> dict:
    from edgeq.deploy.check import model_input_spec, quantize_inputs
    from edgeq.deploy.qemu import check_on_qemu

    q = np.ascontiguousarray(quantize_inputs(x_float, model_input_spec(path)), dtype=np.int8)
    edgeq = check_on_qemu(path, q, OUT / name / "dsp", timeout=QEMU_TIMEOUT_S, force=True)
    kinds = edgeq_profile(path, q[:1], OUT / name / "profile")
    kit = [run_kit(shared, path, q[i], f"{name}_{i}") for i in range(len(q))]
    kit_out = np.array([r["outputs"] for r in kit]).reshape(len(q), -1)
    tflm = edgeq.tflm_outputs.reshape(len(q), -1)
    k0 = kit[0]
    kit_instr = int(statistics.median(r["instructions"] for r in kit))
    macs = edgeq.macs
    return {
        "name": name, "path": str(path), "inputs": inputs, "about": about, "n": len(q),
        "macs": macs, "file_bytes": path.stat().st_size,
        "tflm_instr": kit_instr, "edgeq_instr": edgeq.instructions_per_inference,
        "tflm_ipm": kit_instr / macs, "edgeq_ipm": edgeq.instructions_per_inference / macs,
        "ratio": kit_instr / edgeq.instructions_per_inference,
        "tflm_flash": k0["text"] + k0["data"], "edgeq_flash": edgeq.sizes["flash"],
        "tflm_arena": k0["arena_used"], "edgeq_arena": edgeq.sizes["arena"],
        "tflm_ram": k0["data"] + k0["bss"] - k0["arena_size"] + k0["arena_used"],
        "edgeq_ram": edgeq.sizes["ram"],
        "tflm_stack": k0["stack_used"],
        "edgeq_mismatches": edgeq.mismatches,
        "tflm_kit_mismatches": int(np.count_nonzero(kit_out != tflm)),
        "kinds": kinds, "loop_floor": loop_floor(path),
    }


# ---- the section ------------------------------------------------------------------------------

ROWS = [
    ("macs", "MACs per inference", "int"),
    ("file_bytes", ".tflite file (bytes)", "int"),
    ("tflm_instr", "TFLM + CMSIS-NN: instructions/inference", "int"),
    ("edgeq_instr", "edgeq DSP path: instructions/inference", "int"),
    ("ratio", "TFLM + CMSIS-NN / edgeq (instructions)", "times2"),
    ("tflm_ipm", "TFLM + CMSIS-NN: instructions/MAC", "ratio"),
    ("edgeq_ipm", "edgeq: instructions/MAC", "ratio"),
    *[(f"kind_{key}", f"edgeq: {label}, instructions (per MAC)", "kind") for key, label in KINDS],
    ("tflm_flash", "TFLM + CMSIS-NN: flash, text + data (bytes)", "int"),
    ("edgeq_flash", "edgeq: flash, text + data (bytes)", "int"),
    ("tflm_arena", "TFLM + CMSIS-NN: arena used (bytes)", "int"),
    ("edgeq_arena", "edgeq: planned arena (bytes)", "int"),
    ("tflm_ram", "TFLM + CMSIS-NN: RAM, data + bss − unused arena (bytes)", "int"),
    ("edgeq_ram", "edgeq: RAM, data + bss (bytes)", "int"),
    ("edgeq_mismatches", "edgeq outputs ≠ TFLM Python interpreter (values)", "int"),
    ("tflm_kit_mismatches", "TFLM + CMSIS-NN firmware ≠ TFLM Python interpreter (values)", "int"),
]


def vs_tflm(shared: Path) -> dict:
    measured = {}
    for name, (path, x, inputs, about) in _models(shared).items():
        print(f"  {name}: edgeq and TFLM + CMSIS-NN under QEMU", flush=True)
        measured[name] = measure(shared, name, path, x, inputs, about)
    return {"models": measured, "notes": _notes(measured)}


def _met(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _notes(m: dict) -> list[str]:
    vww = m["vww_96_int8"]
    others = [k for k in m if k != "vww_96_int8"]
    notes = [
        "Columns: " + "; ".join(f"`{k}` = {v['about']}, inputs: {v['inputs']}" for k, v in
                                m.items()) + ".",
        "Instructions: QEMU mps2-an500 (Cortex-M7) with `-icount shift=0`, SysTick ticks × 40 "
        "(resolution 40); these are instructions, not cycles. Median over the inputs; both "
        "firmware measured in the same run on the same int8 arrays. TFLM + CMSIS-NN: "
        "../shared/tflm-cmsis-nn `run.sh MODEL INPUT cmsis`, BUILD_TYPE=release, -O2, one "
        "Invoke() (the last of 2). edgeq: edgeq.deploy.qemu.check_on_qemu (build_firmware "
        "mps2-an500, -O2, the default DSP path); per op kind: the -DEDGEQ_PROFILE build, one "
        "inference (the kit has no per-op timer: its total is not split).",
        "Flash: arm-none-eabi-size text + data of each ELF; the kit's text embeds the model and "
        "one input (`.incbin`), edgeq's the model's weights, plan and calls. RAM: the kit's "
        "1 MiB static arena is counted at what the interpreter used (data + bss − arena_size + "
        "arena_used); edgeq's data + bss hold its planned arena and main.c's buffers. Stacks "
        "are not in either.",
        "Targets: vww_96_int8 ≤ "
        f"{TARGET_VWW_IPM} instructions/MAC: {_met(vww['edgeq_ipm'] <= TARGET_VWW_IPM)} "
        f"({vww['edgeq_ipm']:.2f}); ≥ {TARGET_VWW_RATIO}× fewer than TFLM + CMSIS-NN: "
        f"{_met(vww['ratio'] >= TARGET_VWW_RATIO)} ({vww['ratio']:.2f}×); ≥ {TARGET_RATIO}× "
        "fewer on every other model: "
        + ", ".join(f"{k} {_met(m[k]['ratio'] >= TARGET_RATIO)} ({m[k]['ratio']:.2f}×)"
                    for k in others)
        + "; identical to TFLM everywhere: "
        + _met(all(v["edgeq_mismatches"] == 0 for v in m.values())) + ".",
        "Per-kernel targets on vww_96_int8 (instructions/MAC, per op kind of the profile build): "
        + "; ".join(f"{dict(KINDS)[k]} ≤ {t}: "
                    f"{_met(vww['kinds'][k][0] <= t * vww['kinds'][k][1])} "
                    f"({vww['kinds'][k][0] / vww['kinds'][k][1]:.2f})"
                    for k, t in TARGET_KINDS.items()) + ".",
        "Why vww_96_int8 stays above 1.2 instructions/MAC: if only the fast paths' inner loops "
        "ran (CONV_2D 0.75 instructions per MAC, 18 per 4 values x 6 pixels with int8 weights "
        "sign-extended by SXTB16 and the columns loaded by LDM, plus the exact 6-instruction "
        "output stage per output; the "
        "3x3 depthwise output pairs 16 per output of 9 MACs), it would take "
        f"{vww['loop_floor']:,} instructions ({vww['loop_floor'] / vww['macs']:.2f}/MAC): "
        f"the 1.2 target ({int(TARGET_VWW_IPM * vww['macs']):,}) leaves "
        f"{int(TARGET_VWW_IPM * vww['macs']) - vww['loop_floor']:,} instructions for all set-up, "
        "im2col, row copies, narrow-layer tails, pooling and the classifier, where edgeq "
        f"spends {vww['edgeq_instr'] - vww['loop_floor']:,} today. MobileNet's small layers "
        "weigh heavily: the 8-channel 1x1 (8 MACs per output against 6 for its output stage), "
        "and depthwise layers of 3x3 and 6x6 outputs, where per-row and per-channel set-up is "
        "spread over 3 to 6 outputs. The opt-in wide INT8 weights (firmware_vww) take the "
        "CONV_2D loop to 0.67/MAC (16 instructions per 24 MACs) for twice the weights' flash.",
    ]
    return notes


def render(name: str, result: dict, cmd: str) -> str:
    models = list(result["models"])
    lines = ["## Speed against TFLM + CMSIS-NN on the same files (QEMU Cortex-M7, instructions)",
             "", f"Command: `{cmd}` or `make bench-vs-tflm` (section wall time "
             f"{result['wall_seconds']} s; {result['machine']})", "",
             "| metric | " + " | ".join(f"`{m}`" for m in models) + " |",
             "|---|" + "---:|" * len(models)]
    for key, label, kind in ROWS:
        cells = []
        for m in models:
            v = result["models"][m]
            if kind == "kind":
                instr, macs = v["kinds"][key[5:]]
                cells.append("—" if not instr else f"{instr:,}" + (
                    f" ({instr / macs:.2f})" if macs else ""))
            elif kind == "times2":
                cells.append(f"{v[key]:.2f}×")
            else:
                cells.append(cell(v[key], kind))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {n}" for n in result.get("notes", [])]
    return "\n".join(lines) + "\n"


REGISTRY = {"vs_tflm": vs_tflm}
TITLES = {"vs_tflm": "Speed against TFLM + CMSIS-NN on the same files"}
