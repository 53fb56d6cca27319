"""The build report: report.json (the whole dict) and report.html (tables and plots, one
self-contained file with the plots embedded as base64 PNG).

The dict that build.py fills — every key optional, unknown keys are shown as generic tables:

    {
      "edgeq_version": "0.1.0",
      "model":    {"name", "input_shape", "params", "tflite_bytes", "quantization", ...},
      "board":    Board.to_dict(): {"name", "description", "core", "clock_mhz", "flash_kib",
                                    "ram_kib", "arena_kib", ...},
      "fit":      {"flash_bytes", "flash_budget", "arena_bytes", "arena_budget"},   # bytes
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
import os
from pathlib import Path

from edgeq import __version__
from edgeq.errors import OutputError

KNOWN_SECTIONS = ("edgeq_version", "model", "board", "fit", "accuracy", "stages", "check")


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


def _pct(value) -> str:
    return "–" if value is None else f"{100 * float(value):.1f}%"


def _bytes(value) -> str:
    if value is None:
        return "–"
    value = int(value)
    return f"{value:,} B ({value / 1024:.1f} KiB)"


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def generic_section(value) -> dict:
    """A display form of any JSON value: key/value rows, a table of records, or text."""
    if isinstance(value, dict):
        return {"kind": "kv", "rows": [(str(k), _cell(v)) for k, v in value.items()]}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        columns = list(dict.fromkeys(k for v in value for k in v))
        return {"kind": "table", "columns": columns,
                "rows": [[_cell(v.get(c)) for c in columns] for v in value]}
    return {"kind": "text", "text": _cell(value)}


def fit_rows(fit: dict) -> list[dict]:
    rows = []
    for what, used, budget in (("flash (model)", "flash_bytes", "flash_budget"),
                               ("RAM (TFLM arena)", "arena_bytes", "arena_budget")):
        if fit.get(used) is None:
            continue
        b = fit.get(budget)
        share = fit[used] / b if b else None
        rows.append({"what": what, "used": _bytes(fit[used]), "budget": _bytes(b),
                     "share": _pct(share), "fits": None if b is None else fit[used] <= b})
    return rows


def accuracy_rows(rows: list[dict]) -> list[dict]:
    shown = []
    for r in rows:
        versus = r.get("agreement_with")
        agreement = _pct(r.get("agreement")) if r.get("agreement") is not None else "–"
        shown.append({"name": r.get("name", "?"), "accuracy": _pct(r.get("accuracy")),
                      "agreement": f"{agreement} vs {versus}" if versus and agreement != "–"
                      else agreement,
                      "samples": _cell(r.get("samples"))})
    return shown


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
    items = [(label, fit.get(u), fit.get(b)) for label, u, b in
             (("flash (model)", "flash_bytes", "flash_budget"),
              ("RAM (TFLM arena)", "arena_bytes", "arena_budget"))
             if fit.get(u) is not None and fit.get(b)]
    if not items:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.6 * len(items)))
    shares = [100 * used / budget for _, used, budget in items]
    for i, ((_, used, budget), share) in enumerate(zip(items, shares, strict=True)):
        ax.barh(i, share, color="#2a7" if used <= budget else "#d33", height=0.6)
        ax.text(share, i, f"  {used / 1024:,.0f} of {budget / 1024:,.0f} KiB ({share:.0f}%)",
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


def plot_accuracy(rows: list[dict], plt) -> str | None:
    points = [(r.get("name", "?"), r["accuracy"]) for r in rows if r.get("accuracy") is not None]
    if not points:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.5 * len(points)))
    names = [n if len(n) <= 48 else n[:45] + "…" for n, _ in points]
    values = [100 * float(a) for _, a in points]
    ax.barh(range(len(points)), values, color="#37a", height=0.6)
    for i, v in enumerate(values):
        ax.text(v, i, f" {v:.1f}%", va="center", fontsize=9)
    ax.set_yticks(range(len(points)), names)
    ax.invert_yaxis()
    ax.set_xlim(0, 112)
    ax.set_xlabel("top-1 accuracy (%)")
    ax.set_title("Accuracy per runtime")
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


def make_plots(report: dict, base: Path | None = None) -> tuple[list[dict], str]:
    """([{"title", "png"}], note): note says why there are no plots, if so. With `base` (the
    output folder), a zero-shot build's synthetic-image preview is shown too."""
    plt = _pyplot()
    if plt is None:
        return [], "matplotlib is not installed: pip install matplotlib for the plots"
    board = report.get("board") or {}
    plots = [("Flash and RAM against the board", plot_fit(report.get("fit") or {},
                                                          board.get("name", "the board"), plt)),
             ("Accuracy", plot_accuracy(report.get("accuracy") or [], plt)),
             ("Stages", plot_stages(report.get("stages") or [], plt))]
    preview = (report.get("zero_shot") or {}).get("preview")
    if base is not None and preview and (Path(base) / preview).is_file():
        plots.append(("Genie-D synthetic calibration images (zero-shot)",
                      base64.b64encode((Path(base) / preview).read_bytes()).decode("ascii")))
    return [{"title": t, "png": p} for t, p in plots if p is not None], ""


# --- writing --------------------------------------------------------------------------------


def render_html(report: dict, base: Path | None = None) -> str:
    import jinja2

    data = to_jsonable(report)
    env = jinja2.Environment(loader=jinja2.PackageLoader("edgeq", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    plots, plot_note = make_plots(data, base)
    model = data.get("model") or {}
    board = data.get("board") or {}
    extra = {k: generic_section(v) for k, v in data.items() if k not in KNOWN_SECTIONS}
    return env.get_template("report.html.j2").render(
        version=data.get("edgeq_version", __version__),
        model_name=model.get("name", "model") if isinstance(model, dict) else str(model),
        board_name=board.get("name", "") if isinstance(board, dict) else str(board),
        model=generic_section(model) if model else None,
        board=generic_section(board) if board else None,
        fit=fit_rows(data.get("fit") or {}),
        accuracy=accuracy_rows(data.get("accuracy") or []),
        check=_check_summary(data.get("check")),
        stages=generic_section(data.get("stages")) if data.get("stages") else None,
        total_seconds=sum(float(s.get("seconds") or 0) for s in data.get("stages") or []),
        plots=plots, plot_note=plot_note, extra=extra)


def _check_summary(check) -> dict | None:
    """The LiteRT-vs-TFLM line of a CheckResult.to_dict()."""
    if not isinstance(check, dict):
        return None
    rows = [("samples", _cell(check.get("samples"))),
            ("labels agree (TFLM vs LiteRT)", _pct(check.get("tflm_litert_agreement"))),
            ("max |Δ| of raw outputs", "–" if check.get("max_abs_diff") is None else
             f"{check['max_abs_diff']:g} {check.get('diff_unit', '')}"),
            ("within contract (≤ 1 LSB, ≥ 99.5% agreement)", _cell(check.get("fidelity_ok"))),
            ("TFLM arena used", _bytes(check.get("arena_bytes")))]
    for r in check.get("runtimes") or []:
        if not r.get("available"):
            rows.append((r.get("name", r.get("key", "?")), f"unavailable: {r.get('reason', '')}"))
    return {"kind": "kv", "rows": rows}


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def write_report(report: dict, out_dir) -> tuple[Path, Path]:
    """Write `out_dir`/report.json and `out_dir`/report.html; returns their paths."""
    out = Path(out_dir)
    json_text = json.dumps(to_jsonable(report), indent=2, allow_nan=False) + "\n"
    html = render_html(report, out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        _write_atomic(out / "report.json", json_text)
        _write_atomic(out / "report.html", html)
    except OSError as e:
        raise OutputError(f"{out}: cannot write the report ({e.strerror or e})",
                          "choose a writable output folder") from None
    return out / "report.json", out / "report.html"
