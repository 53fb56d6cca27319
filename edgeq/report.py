"""The build report: report.json (the whole dict) and report.html (tables and plots, one
self-contained file with the plots embedded as base64 PNG).

The dict that build.py fills — every key optional, unknown keys are shown as generic tables:

    {
      "edgeq_version": "0.1.0",
      "model":    {"name", "input_shape", "params", "tflite_bytes", "quantization", ...},
      "board":    Board.to_dict(): {"name", "description", "core", "clock_mhz", "flash_kib",
                                    "ram_kib", "arena_kib", ...},
      "fit":      {"source", "flash_bytes", "flash_budget", "ram_bytes", "ram_budget",
                   "arena_bytes", "arena_budget", "tflm_arena_bytes", ...},   # edgeq.fit, bytes
      "firmware": {"built", "elf", "test_inputs", "emulated": EmulatedRun.to_dict(), ...},
      "accuracy": [{"name", "accuracy" (0..1 or None), "agreement" (0..1 or None),
                    "agreement_with" ("float" | "LiteRT" | None), "samples"}],
      "stages":   [{"name", "seconds"}],
      "check":    CheckResult.to_dict(),   # LiteRT vs TFLM details
      "data", "config", ...: any JSON-able dict / list / value
    }

Values may be numpy scalars or arrays, Paths, tuples or dataclasses: report.json converts them.
matplotlib is imported only to draw the plots (Agg backend); without it the HTML has no plots.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
from pathlib import Path

from edgeq import __version__
from edgeq.data import percent
from edgeq.errors import OutputError
from edgeq.outputs import write_file

KNOWN_SECTIONS = ("edgeq_version", "model", "board", "fit", "accuracy", "stages", "check",
                  "firmware")


def to_jsonable(value):
    """`value` with numpy types, Paths, tuples, sets and dataclasses turned into JSON types;
    NaN and infinities become None (JSON has no spelling for them)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(to_jsonable(v) for v in value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if hasattr(value, "tolist") and type(value).__module__ == "numpy":
        return to_jsonable(value.tolist())  # numpy scalar or array
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


# --- formatting helpers used by the template -------------------------------------------------

# Values under these keys are fractions (0..1): shown as percentages, the report's one style.
FRACTION_KEYS = ("accuracy", "agreement", "share", "majority", "threshold", "sparsity")


def _bytes(value) -> str:
    if value is None:
        return "–"
    value = int(value)
    return f"{value:,} B ({value / 1024:.1f} KiB)"


def _is_fraction_key(key) -> bool:
    return any(k in str(key).lower() for k in FRACTION_KEYS)


def _cell(value, key: str = ""):
    """Display form of one value: text, or a nested section for dicts and lists of records
    (never a JSON blob in a cell)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return percent(value) if _is_fraction_key(key) else f"{value:.4g}"
    if isinstance(value, int) and ("bytes" in str(key) or "budget" in str(key)):
        return f"{value:,}"
    if isinstance(value, dict):
        return generic_section(value) if value else "–"
    if isinstance(value, list):
        if not value:
            return "–"
        if all(isinstance(v, dict) for v in value) or all(isinstance(v, list) for v in value):
            return generic_section(value, key)
        return ", ".join(str(_cell(v, key)) for v in value)
    return str(value)


def generic_section(value, key: str = "") -> dict:
    """A display form of any JSON value: key/value rows, a table of records (or of rows), or
    text. Cells are text or, for nested dicts and lists, sections themselves."""
    if isinstance(value, dict) and len(value) > 1 and all(
            isinstance(v, dict) and v and all(not isinstance(x, (dict, list)) for x in v.values())
            for v in value.values()):  # e.g. a memory map: one row per region
        columns = list(dict.fromkeys(k for v in value.values() for k in v))
        return {"kind": "table", "columns": ["", *columns],
                "rows": [[str(k), *[_cell(v.get(c), c) for c in columns]] for k, v in value.items()]}
    if isinstance(value, dict):
        return {"kind": "kv", "rows": [(str(k), _cell(v, k)) for k, v in value.items()]}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for v in value for k in v))
        return {"kind": "table", "columns": columns,
                "rows": [[_cell(v.get(c), c) for c in columns] for v in value]}
    if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
        return {"kind": "table", "columns": [],
                "rows": [[_cell(c, key) for c in row] for row in value]}
    return {"kind": "text", "text": _cell(value, key)}


# (label, used key, budget key) of report["fit"] (edgeq.fit): the firmware's numbers first,
# TFLM's arena last, as the comparison it is
FIT_ITEMS = (("flash (firmware: text + data)", "flash_bytes", "flash_budget"),
             ("RAM (data + bss + stack)", "ram_bytes", "ram_budget"),
             ("tensor arena (edgeq's plan)", "arena_bytes", "arena_budget"),
             ("TFLM's arena, for comparison", "tflm_arena_bytes", "arena_budget"))


def fit_rows(fit: dict) -> list[dict]:
    rows = []
    for what, used, budget in FIT_ITEMS:
        if fit.get(used) is None:
            continue
        b = fit.get(budget)
        share = fit[used] / b if b else None
        rows.append({"what": what, "used": _bytes(fit[used]), "budget": _bytes(b),
                     "share": percent(share), "fits": None if b is None else fit[used] <= b})
    return rows


def firmware_lines(fit: dict, firmware: dict) -> list[str]:
    """The firmware in words: flash and RAM against the board (and from what), and how the
    firmware ran under QEMU. The console and report.html print the same lines."""
    lines = []
    if fit.get("ram_bytes") is not None:
        lines.append(f"flash {fit['flash_bytes']:,} of {fit['flash_budget']:,} bytes, RAM "
                     f"{fit['ram_bytes']:,} of {fit['ram_budget']:,} (tensor arena "
                     f"{fit['arena_bytes']:,}, stack {fit['stack_bytes']:,}), from the "
                     f"{fit['source']}; TFLM's arena would be "
                     f"{fit.get('tflm_arena_bytes') or 0:,} bytes")
    streamed = firmware.get("streamed")
    if streamed:
        lines.append(f"ops {streamed['ops'][0]} to {streamed['ops'][1]} run streamed, "
                     f"{streamed['band_rows']} output row(s) at a time: a tensor arena of "
                     f"{streamed['arena_bytes']:,} bytes instead of "
                     f"{streamed['layer_by_layer_bytes']:,} layer by layer")
    if fit.get("test_vector_bytes"):
        lines.append(f"the {firmware.get('test_inputs', 0)} embedded test inputs and their "
                     f"expected outputs add {fit['test_vector_bytes']:,} bytes of flash "
                     "(not counted above)")
    run = firmware.get("emulated") or {}
    if "instructions_per_inference" in run:
        top1 = "" if run.get("accuracy") is None else f"top-1 {percent(run['accuracy'])}, "
        same = ("outputs identical to TFLM's" if run["identical_to_tflm"] else
                f"{run['mismatched_values']:,} output values differ from TFLM's")
        lines.append(
            f"on QEMU {run['emulator']} ({run['samples']} inputs, {run['chosen']}): {top1}"
            f"{same}; {run['instructions_per_inference']:,} instructions per inference "
            f"({run['instructions_per_mac']:.2f} per MAC), about "
            f"{run['latency_ms_estimate']:.1f} ms at {run['clock_mhz']:g} MHz if one "
            "instruction took one cycle (estimated from instruction counts, not measured "
            "cycles)")
    elif run.get("reason"):
        lines.append(f"not run under QEMU: {run['reason']}")
    if firmware.get("built") is False and firmware.get("reason"):
        lines.append(f"no ELF: {firmware['reason']}")
    return lines


def int2fc_line(section: dict) -> str:
    """The --int2-fc file in words (the report's "int2_fc" section, edgeq.build)."""
    if not section.get("file"):
        return f"--int2-fc: {section.get('note', 'no file written')}"
    tensors = len(section["int2_tensors"])
    return (f"{section['file']}: {section['bytes']:,} bytes ({section['standard_file']} "
            f"{section['standard_bytes']:,}), {tensors} FULLY_CONNECTED weight tensor"
            f"{'s' if tensors != 1 else ''} as INT2, LiteRT outputs identical to "
            f"{section['standard_file']}'s on {section['litert_identical_on']:,} inputs; "
            f"{section['runs_on']}")


def _class_name(classes: list, label: int) -> str:
    return str(classes[label]) if label < len(classes) else str(label)


def accuracy_rows(rows: list[dict], classes: list | None = None) -> list[dict]:
    classes = classes or []
    shown = []
    for r in rows:
        versus = r.get("agreement_with")
        agreement = percent(r.get("agreement")) if r.get("agreement") is not None else "–"
        per_class = ", ".join(f"{_class_name(classes, c)} {percent(v)}"
                              for c, v in enumerate(r.get("per_class_accuracy") or []))
        shown.append({"name": r.get("name", "?"), "accuracy": percent(r.get("accuracy")),
                      "per_class": per_class or "–",
                      "agreement": f"{agreement} vs {versus}" if versus and agreement != "–"
                      else agreement,
                      "samples": _cell(r.get("samples")),
                      "size": _bytes(r.get("bytes")) if r.get("bytes") else "–"})
    return shown


def confusion_row(rows: list[dict]) -> dict | None:
    """The accuracy row whose confusion counts the report shows: TFLM's (what the board runs),
    else the first with counts."""
    with_counts = [r for r in rows if r.get("confusion")]
    return next((r for r in with_counts if "TFLM" in str(r.get("name"))),
                with_counts[0] if with_counts else None)


def confusion_table(row: dict | None, classes: list | None) -> dict | None:
    """{"name", "columns", "rows"}: true label per row, predicted per column, counts."""
    if row is None:
        return None
    matrix = row["confusion"]
    classes = classes or []
    names = [_class_name(classes, c) for c in range(len(matrix))]
    return {"name": row.get("name", "?"), "columns": names,
            "rows": [[names[i], *[f"{v:,}" for v in counts],
                      percent(counts[i] / sum(counts)) if sum(counts) else "–"]
                     for i, counts in enumerate(matrix)]}


def agreement_rows(report: dict) -> list[dict]:
    """Which model or runtime gives the same labels as which, on the same samples."""
    rows = [{"a": r.get("name", "?"), "b": r["agreement_with"], "agreement": percent(r["agreement"])}
            for r in report.get("accuracy") or []
            if r.get("agreement") is not None and r.get("agreement_with")]
    check = report.get("check") if isinstance(report.get("check"), dict) else {}
    if check.get("tflm_litert_agreement") is not None and not any(
            "TFLM" in r["a"] and r["b"] == "LiteRT" for r in rows):
        rows.append({"a": "TFLM", "b": "LiteRT", "agreement": percent(check["tflm_litert_agreement"])})
    if check.get("reference_equals_tflm") is not None:
        rows.append({"a": "edgeq reference (raw outputs)", "b": "TFLM",
                     "agreement": "identical" if check["reference_equals_tflm"] else "DIFFERENT"})
    return rows


def layer_rows(quantize: dict) -> list[dict]:
    """Per weighted layer: bits, stored weight bytes, SQNR before (min-max) and after
    reconstruction, and for a mixed plan the measured sensitivity at the chosen width."""
    sensitivity = ((quantize.get("mixed") or {}).get("sensitivity")) or {}
    rows = []
    for layer in quantize.get("layers") or []:
        stored_bits = layer.get("stored_bits", layer.get("bits"))
        stored = (math.ceil(layer["params"] * stored_bits / 8)
                  if layer.get("params") is not None and isinstance(stored_bits, int) else None)
        before, after = layer.get("sqnr_minmax_db"), layer.get("sqnr_db")
        widths = sensitivity.get(layer.get("name"), {})
        rows.append({"name": layer.get("name", "?"), "kind": layer.get("kind", ""),
                     "params": layer.get("params"), "bits": layer.get("bits"),
                     "stored_bits": stored_bits, "stored_bytes": stored,
                     "sqnr_before": before, "sqnr_after": after,
                     "sensitivity": widths.get(str(layer.get("bits"))),
                     "sensitivities": ", ".join(f"{b} bits: {v:.3g}" for b, v in
                                                sorted(widths.items(), key=lambda kv: int(kv[0])))})
    return rows


def layer_table(rows: list[dict]) -> dict | None:
    if not rows:
        return None
    mixed = any(r["sensitivity"] is not None for r in rows)
    columns = ["layer", "kind", "parameters", "bits", "stored as", "weights stored",
               "SQNR min-max", "SQNR after", "change"]
    if mixed:
        columns += ["sensitivity at its bits", "sensitivity per width"]

    def db(v):
        return "–" if v is None else f"{v:.1f} dB"

    table = []
    for r in rows:
        change = (f"{r['sqnr_after'] - r['sqnr_before']:+.1f} dB"
                  if r["sqnr_after"] is not None and r["sqnr_before"] is not None else "–")
        cells = [r["name"], r["kind"], _cell(r["params"]), _cell(r["bits"]),
                 f"INT{r['stored_bits']}" if r["stored_bits"] else "–",
                 "–" if r["stored_bytes"] is None else f"{r['stored_bytes']:,} B",
                 db(r["sqnr_before"]), db(r["sqnr_after"]), change]
        if mixed:
            cells += ["–" if r["sensitivity"] is None else f"{r['sensitivity']:.3g}",
                      r["sensitivities"] or "–"]
        table.append(cells)
    return {"kind": "table", "columns": columns, "rows": table}


# --- plots ----------------------------------------------------------------------------------


def _figure_png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_fit(fit: dict, board_name: str, plt) -> str | None:
    """Flash and RAM used, as a share of the board's budgets (the dashed line is the budget)."""
    items = [(label, fit.get(u), fit.get(b)) for label, u, b in FIT_ITEMS
             if fit.get(u) is not None and fit.get(b)]
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.6 * len(items)))
    shares = [100 * used / budget for _, used, budget in items]
    for i, ((_, used, budget), share) in enumerate(zip(items, shares, strict=True)):
        ax.barh(i, share, color="#2a7" if used <= budget else "#d33", height=0.6)
        ax.text(share, i, f"  {used / 1024:,.1f} of {budget / 1024:,.0f} KiB ({share:.1f}%)",
                va="center", fontsize=9)
    ax.axvline(100, color="#555", linestyle="--", linewidth=1)
    ax.text(100, -0.45, " budget", fontsize=8, color="#555", va="top")
    ax.set_yticks(range(len(items)), [label for label, _, _ in items])
    ax.invert_yaxis()
    ax.set_xlim(0, max(140, max(shares) * 1.45))
    ax.set_xlabel("% of the board's budget")
    ax.set_title(f"Fit on {board_name}")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_timeline(streamed: dict, plt) -> str | None:
    """Arena bytes alive per op, layer by layer and with the first ops streamed."""
    timeline = (streamed or {}).get("timeline")
    if not timeline:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 2.8))
    for label, values in timeline.items():
        ax.step(range(len(values)), [v / 1024 for v in values], where="mid", label=label)
    ax.set_xlabel("op")
    ax.set_ylabel("KiB alive in the arena")
    first, last = streamed["ops"]
    ax.set_title(f"Memory timeline: ops {first} to {last} streamed, "
                 f"{streamed['band_rows']} row(s) a band")
    ax.legend(fontsize=8)
    png = _figure_png(fig)
    plt.close(fig)
    return png


def _short(name: str) -> str:
    return name.split(" (")[0] if " (" in name else name


def plot_accuracy_size(rows: list[dict], plt) -> str | None:
    """Top-1 accuracy against model size for every model the build measured (runtimes of the
    same file share a size)."""
    points = [(_short(str(r.get("name", "?"))), float(r["bytes"]) / 1024, 100 * float(r["accuracy"]))
              for r in rows if r.get("accuracy") is not None and r.get("bytes")]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, (name, kib, acc) in enumerate(points):
        ax.scatter([kib], [acc], s=45, color=colors[i % len(colors)], zorder=3,
                   label=f"{name}: {acc:.2f}%, {kib:,.1f} KiB")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter

    for axis in (ax.xaxis,):
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    accs = [a for _, _, a in points]
    ax.set_ylim(max(0, min(accs) - 5), min(100, max(accs) + 5) + 0.5)
    ax.set_xlabel("model size (KiB, log scale; float = 4 bytes per parameter)")
    ax.set_ylabel("top-1 accuracy (%)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.set_title("Accuracy versus size of every model measured")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_confusion(row: dict | None, classes: list | None, plt) -> str | None:
    if row is None:
        return None
    import numpy as np

    matrix = np.asarray(row["confusion"], dtype=np.float64)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)
    n = len(matrix)
    names = [_class_name(classes or [], c) for c in range(n)]
    size = min(9.0, 2.2 + 0.55 * n)
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(matrix[i, j]):,}\n{100 * share[i, j]:.0f}%", ha="center",
                    va="center", fontsize=8, color="white" if share[i, j] > 0.6 else "#222")
    ax.set_xticks(range(n), names, rotation=45 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true label")
    ax.set_title(f"Confusion: {_short(str(row.get('name', '?')))}")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_layers(rows: list[dict], plt) -> str | None:
    """Per layer: weight bytes as stored (bars labelled with the bits), SQNR before and after
    reconstruction, and the sensitivity at the chosen width for a mixed plan."""
    if not rows:
        return None
    mixed = any(r["sensitivity"] is not None for r in rows)
    panels = 3 if mixed else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.3 * panels + 1.5, 1.2 + 0.32 * len(rows)),
                             sharey=True)
    ys = list(range(len(rows)))
    names = [r["name"] for r in rows]
    stored = [r["stored_bytes"] or 0 for r in rows]
    axes[0].barh(ys, stored, color="#37a", height=0.6)
    for y, r in zip(ys, rows, strict=True):
        axes[0].text(r["stored_bytes"] or 0, y, f" {r['bits']} bit", va="center", fontsize=8)
    axes[0].set_xlabel("weights stored (bytes)")
    axes[0].set_xlim(0, max(stored + [1]) * 1.35)
    axes[0].set_yticks(ys, names)
    axes[0].invert_yaxis()
    for key, label, marker in (("sqnr_before", "min-max", "o"), ("sqnr_after", "after", "D")):
        points = [(r[key], y) for r, y in zip(rows, ys, strict=True) if r[key] is not None]
        if points:
            axes[1].scatter([p[0] for p in points], [p[1] for p in points], marker=marker,
                            label=label, zorder=3)
    axes[1].set_xlabel("output SQNR (dB)")
    axes[1].grid(True, axis="x", alpha=0.3)
    axes[1].legend(fontsize=8)
    if mixed:
        values = [r["sensitivity"] or 0 for r in rows]
        axes[2].barh(ys, values, color="#c73", height=0.6)
        axes[2].set_xlabel("sensitivity at its bits")
        if min(values) > 0:
            axes[2].set_xscale("log")
    fig.suptitle("Per layer: stored weights, SQNR" + (", sensitivity" if mixed else ""))
    png = _figure_png(fig)
    plt.close(fig)
    return png


def plot_stages(stages: list[dict], plt) -> str | None:
    points = [(s.get("name", "?"), float(s["seconds"])) for s in stages if s.get("seconds") is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.35 * len(points)))
    ax.barh(range(len(points)), [s for _, s in points], color="#888", height=0.6)
    ax.set_yticks(range(len(points)), [n for n, _ in points])
    ax.invert_yaxis()
    ax.set_xlabel("seconds")
    ax.set_title("Time per stage")
    png = _figure_png(fig)
    plt.close(fig)
    return png


def make_plots(report: dict, base: Path | None = None) -> tuple[dict, str]:
    """({section: [{"title", "png"}]}, note): note says why there are no plots, if so. With
    `base` (the output folder), a zero-shot build's synthetic-image preview is shown too."""
    plt = _pyplot()
    if plt is None:
        return {}, "matplotlib is not installed: pip install matplotlib for the plots"
    board = report.get("board") or {}
    rows = report.get("accuracy") or []
    classes = (report.get("data") or {}).get("classes") if isinstance(report.get("data"), dict) else None
    chosen = confusion_row(rows)
    quantize = report.get("quantize") if isinstance(report.get("quantize"), dict) else {}
    plots = {
        "fit": [("Flash and RAM against the board",
                 plot_fit(report.get("fit") or {}, board.get("name", "the board"), plt)),
                ("Arena bytes alive per op",
                 plot_timeline((report.get("firmware") or {}).get("streamed"), plt))],
        "accuracy": [("Accuracy versus size", plot_accuracy_size(rows, plt)),
                     ("Confusion counts", plot_confusion(chosen, classes, plt))],
        "layers": [("Per-layer bits, stored bytes and SQNR", plot_layers(layer_rows(quantize), plt))],
        "stages": [("Stages", plot_stages(report.get("stages") or [], plt))],
    }
    preview = (report.get("zero_shot") or {}).get("preview")
    if base is not None and preview and (Path(base) / preview).is_file():
        plots["accuracy"].append(("Genie-D synthetic calibration images (zero-shot)",
                                  base64.b64encode((Path(base) / preview).read_bytes()).decode("ascii")))
    return {k: [{"title": t, "png": p} for t, p in v if p is not None] for k, v in plots.items()}, ""


def measured_on(report: dict) -> str:
    """One line: how many samples of which data, chosen how."""
    data = report.get("data") if isinstance(report.get("data"), dict) else {}
    if not data.get("evaluation_samples"):
        return ""
    line = (f"Measured on {data['evaluation_samples']:,} samples of {data.get('source', 'the data')} "
            f"({data.get('evaluation_chosen', 'all samples')}; {data.get('evaluation', '')})")
    if data.get("calibration_samples"):
        line += f"; calibrated on {data['calibration_samples']:,} {data.get('calibration', '')} samples"
    if data.get("skipped_unreadable"):
        line += f"; {len(data['skipped_unreadable'])} unreadable file(s) skipped"
    return line + "."


# --- writing --------------------------------------------------------------------------------


def render_html(report: dict, base: Path | None = None) -> str:
    import jinja2

    data = to_jsonable(report)
    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeq", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    plots, plot_note = make_plots(data, base)
    model = data.get("model") or {}
    board = data.get("board") or {}
    rows = data.get("accuracy") or []
    classes = (data.get("data") or {}).get("classes") if isinstance(data.get("data"), dict) else None
    quantize = data.get("quantize") if isinstance(data.get("quantize"), dict) else {}
    rest_of_quantize = {k: v for k, v in quantize.items() if k != "layers"}
    extra = {k: generic_section(v, k) for k, v in data.items()
             if k not in KNOWN_SECTIONS and k != "quantize"}
    if rest_of_quantize:
        extra = {"quantize": generic_section(rest_of_quantize, "quantize"), **extra}
    return env.get_template("report.html.j2").render(
        version=data.get("edgeq_version", __version__),
        model_name=model.get("name", "model") if isinstance(model, dict) else str(model),
        board_name=board.get("name", "") if isinstance(board, dict) else str(board),
        measured=measured_on(data),
        model=generic_section(model) if model else None,
        board=generic_section(board) if board else None,
        fit=fit_rows(data.get("fit") or {}),
        firmware=firmware_lines(data.get("fit") or {}, data.get("firmware") or {}),
        accuracy=accuracy_rows(rows, classes),
        confusion=confusion_table(confusion_row(rows), classes),
        agreement=agreement_rows(data),
        layers=layer_table(layer_rows(quantize)),
        check=_check_summary(data.get("check")),
        stages=generic_section(data.get("stages")) if data.get("stages") else None,
        total_seconds=sum(float(s.get("seconds") or 0) for s in data.get("stages") or []),
        plots=plots, plot_note=plot_note, extra=extra)


def _check_summary(check) -> dict | None:
    """The LiteRT-vs-TFLM line of a CheckResult.to_dict()."""
    if not isinstance(check, dict):
        return None
    rows = [("samples", _cell(check.get("samples"))),
            ("of", check.get("data") or "–"), ("chosen", check.get("chosen") or "–"),
            ("labels agree (TFLM vs LiteRT)", percent(check.get("tflm_litert_agreement"))),
            ("max |Δ| of raw outputs", "–" if check.get("max_abs_diff") is None else
             f"{check['max_abs_diff']:g} {check.get('diff_unit', '')}"),
            ("within contract (≤ 1 LSB, ≥ 99.5% agreement)", _cell(check.get("fidelity_ok"))),
            ("TFLM arena used", _bytes(check.get("arena_bytes")))]
    for r in check.get("runtimes") or []:
        if not r.get("available"):
            rows.append((r.get("name", r.get("key", "?")), f"unavailable: {r.get('reason', '')}"))
    return {"kind": "kv", "rows": rows}


def write_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Write `out_dir`/report.json and `out_dir`/report.html; returns their paths."""
    out = Path(out_dir)
    json_text = json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"
    html = render_html(report, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_file(out / "report.json", json_text)
        write_file(out / "report.html", html)
    except OSError as e:
        raise OutputError(f"{out}: cannot write the report ({e.strerror or e})",
                          "choose a writable output folder") from None
    return out / "report.json", out / "report.html"
