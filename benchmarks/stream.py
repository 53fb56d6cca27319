"""RAM below the layer-by-layer bound (issue #15): the streamed first stage at arena budgets of
96, 64, 48, 40 and 32 KiB, for vww_96_int8, edgeq's W4 person detector and the MLPerf Tiny
keyword spotter, each firmware run under QEMU (mps2-an500) on real inputs against TFLM.

Arena = edgeq's planned tensor arena with the graph input and output inside it (what the
firmware links as `edgeq_arena`); instructions are QEMU's instruction counts (`-icount
shift=0`; instructions, not cycles), median over the inputs; the ratio is to the same model's
layer-by-layer engine measured in the same run.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.firmware import w4_person_detector

BUDGETS_KIB = (96, 64, 48, 40, 32)
RESULTS = Path(__file__).resolve().parent / "results"


def _photos(shared: Path, n: int) -> np.ndarray:
    from PIL import Image

    images = sorted((shared / "data" / "coco-vww-256").rglob("val2017_*.jpg"))[:n]
    return np.stack([(np.asarray(Image.open(p).convert("RGB").resize((96, 96)), np.int16)
                      - 128).astype(np.int8).reshape(-1) for p in images])


def _inputs(shared: Path, data: bytes, n: int) -> np.ndarray:
    from edgeq.tflite.read import read_model

    size = read_model(data).input_tensors[0].nbytes
    if size == 96 * 96 * 3:
        return _photos(shared, n)
    # the keyword spotter's MFCC features are not in ../shared: seeded int8 features
    return np.random.default_rng(0).integers(-128, 128, (n, size), dtype=np.int8)


def _run(path: Path, x: np.ndarray, expected: np.ndarray, budget: int | None) -> dict:
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import run_qemu

    with tempfile.TemporaryDirectory() as tmp:
        fw = build_firmware(path, "mps2-an500", Path(tmp) / "fw", arena_budget=budget)
        result = run_qemu(fw.elf, x, timeout=900)
    stage = fw.engine.stage
    return {"arena": fw.engine.arena_size, "bss": fw.sizes["bss"],
            "instructions": result.instructions_per_inference,
            "identical": bool(np.array_equal(result.outputs, expected)),
            "stage": None if stage is None else f"ops {stage.ops[0]}-{stage.ops[-1]}, "
                                                 f"{stage.band} row(s)"}


def timeline_png(path: Path, budget: int, out: Path) -> None:
    """Bytes alive per op, layer by layer and streamed under `budget`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgeq.deploy import cgen
    from edgeq.deploy.plan import live_bytes
    from edgeq.tflite.read import read_model

    model = read_model(path.read_bytes())
    plain, streamed = cgen.lower_model(model), cgen.lower_model(model, arena_budget=budget)
    fig, ax = plt.subplots(figsize=(7, 3))
    n = len(model.ops)
    ax.step(range(n), np.array(live_bytes(plain.plan, n)) / 1024, where="mid",
            label=f"layer by layer (arena {plain.plan.arena_size:,} B)")
    ax.step(range(n), np.array(live_bytes(streamed.plan, n)) / 1024, where="mid",
            label=f"streamed ops {streamed.stage.ops[0]}-{streamed.stage.ops[-1]} "
                  f"(arena {streamed.plan.arena_size:,} B)")
    ax.axhline(budget / 1024, color="#555", linestyle="--", linewidth=1)
    ax.set_xlabel("op")
    ax.set_ylabel("KiB alive")
    ax.set_title(f"{path.stem}: arena bytes alive per op")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def stream_ram(shared: Path) -> dict:
    from edgeq.deploy.tflm import tflm_outputs

    w4_path, _ = w4_person_detector(shared)
    models = {"vww_96_int8": shared / "models" / "vww_96_int8.tflite", "edgeq_w4": w4_path,
              "kws_ref_model": shared / "models" / "kws_ref_model.tflite"}
    rows, start = [], time.perf_counter()
    for name, path in models.items():
        data = path.read_bytes()
        x = _inputs(shared, data, 4)
        expected = tflm_outputs(data, x)
        plain = _run(path, x, expected, None)
        rows.append({"model": name, "budget": "layer by layer", **plain, "fits": True,
                     "ratio": 1.0})
        for kib in BUDGETS_KIB:
            run = _run(path, x, expected, kib * 1024)
            rows.append({"model": name, "budget": f"{kib} KiB", **run,
                         "fits": run["arena"] <= kib * 1024,
                         "ratio": run["instructions"] / plain["instructions"]})
    timeline_png(models["vww_96_int8"], 40 * 1024, RESULTS / "stream_timeline_vww.png")
    return {"rows": rows, "seconds": round(time.perf_counter() - start, 1),
            "notes": ["inputs: 4 val2017 photos (96×96 RGB, pixel − 128) for the person "
                      "detectors; 4 seeded random int8 feature maps for the keyword spotter "
                      "(its MFCC data is not in ../shared)",
                      "a budget that cannot be met shows the smallest arena found (fits: no). "
                      "Below 40 KiB the whole 27,648-byte image, which the engine's API takes "
                      "at once, plus the stage's windows and the kernels' scratch do not fit; "
                      "going lower would need the caller to stream the image in by rows",
                      "plot: benchmarks/results/stream_timeline_vww.png"]}


def render(name: str, result: dict, cmd: str) -> str:
    lines = ["## RAM below the layer-by-layer bound: the streamed first stage (mps2-an500)", "",
             f"Command: `{cmd}` (section wall time {result['wall_seconds']} s; "
             f"{result['machine']})", "", __doc__.split("\n\n", 1)[1].strip(), "",
             "| model | arena budget | streamed | arena (B) | bss (B) | fits | instructions "
             "(QEMU) | × layer by layer | = TFLM |", "|---|---|---|---:|---:|---|---:|---:|---|"]
    for r in result["rows"]:
        lines.append(f"| `{r['model']}` | {r['budget']} | {r['stage'] or 'no'} | "
                     f"{r['arena']:,} | {r['bss']:,} | {'yes' if r['fits'] else 'no'} | "
                     f"{r['instructions']:,} | {r['ratio']:.3f} | "
                     f"{'yes' if r['identical'] else '**no**'} |")
    lines += ["", *[f"- {n}" for n in result.get("notes", [])], "",
              "![arena bytes alive per op](benchmarks/results/stream_timeline_vww.png)", ""]
    return "\n".join(lines)
