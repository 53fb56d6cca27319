"""edgeq benchmarks, measured side by side in one run: `make bench` (or
`.venv/bin/python benchmarks/run.py --only SECTION`).

Each section writes benchmarks/results/SECTION.{json,md}; BENCHMARKS.md is the header plus every
section's markdown, so re-running one section updates only its rows.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot needs Keras 2 (tf_keras)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = Path(os.environ.get("EDGEQ_SHARED", ROOT.parent / "shared"))
sys.path.insert(0, str(ROOT))

from benchmarks import sections  # noqa: E402

HEADER = """# edgeq benchmarks

Every table is measured side by side in one run on the same data, on this project's 2-core
CPU machine, with the command above it. Accuracies are top-1 through the named runtime
(LiteRT = ai_edge_litert with its builtin kernels and no delegate; TFLM = tflite_micro's
reference kernels). Regenerate all with `make bench`, or one section with
`.venv/bin/python benchmarks/run.py --only SECTION`. Wall times (seconds, minutes) were
measured on a machine that other jobs often shared, so read them as upper bounds; instruction
counts under QEMU do not depend on load.
"""


def write_benchmarks_md(out: Path) -> None:
    parts = [HEADER]
    for name in sections.ORDER:
        md = RESULTS / f"{name}.md"
        if md.is_file():
            parts.append(md.read_text())
    out.write_text("\n".join(parts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", help=f"comma-separated sections: {', '.join(sections.ORDER)}")
    ap.add_argument("--out", default=str(ROOT / "BENCHMARKS.md"))
    args = ap.parse_args()
    chosen = args.only.split(",") if args.only else list(sections.ORDER)
    unknown = [c for c in chosen if c not in sections.REGISTRY]
    if unknown:
        ap.error(f"unknown section(s) {unknown}; known: {', '.join(sections.ORDER)}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    for name in chosen:
        start = time.perf_counter()
        print(f"== {name}", flush=True)
        result = sections.REGISTRY[name](SHARED)
        result["wall_seconds"] = round(time.perf_counter() - start, 1)
        result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        cmd = f".venv/bin/python benchmarks/run.py --only {name}"
        (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2, default=_json_default))
        (RESULTS / f"{name}.md").write_text(sections.render(name, result, cmd))
        print(f"== {name} done in {result['wall_seconds']} s", flush=True)
    write_benchmarks_md(Path(args.out))
    return 0


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


if __name__ == "__main__":
    sys.exit(main())
