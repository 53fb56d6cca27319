"""Break the code on purpose, one piece at a time, and see the tests that name it fail (#18).

Each case below is one change to a clean copy of HEAD (`git archive`), made where the behaviour
lives, and the tests that must catch it. For each case the tests first run on the unbroken copy
(they must pass, else the case proves nothing), then on the broken one (they must fail; a
collection error or a crash of pytest is not counted as caught). `make break-check` runs every
case; `--only NAME` one. The table it prints is TESTING.md's "Broken on purpose".

    .venv/bin/python scripts/break_on_purpose.py [--only NAME[,NAME]] [--keep]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the behaviour broken, as the issue words it
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    count: int = 1  # occurrences of `old` that are replaced (all must be there)


CASES = [
    Case("export-forced-to-8-bits", "`edgeq export --bits 4` writes 8-bit weights",
         "edgeq/cli.py", "export_tflite(loaded.model, calib.x, int(bits), out_path, io_dtype)",
         "export_tflite(loaded.model, calib.x, 8, out_path, io_dtype)",
         ("tests/test_build.py::test_export_command_writes_int4_and_float_io",)),
    Case("quantize-forced-to-8-bits", "`edgeq quantize --bits 4` quantizes to 8 bits",
         "edgeq/cli.py", "run_quantize(loaded.model, calib.x, method, _bits(bits), budget_kb,",
         "run_quantize(loaded.model, calib.x, method, 8, budget_kb,",
         ("tests/test_build.py::test_quantize_command_writes_the_model_and_its_report",)),
    Case("fisher-weights-zero", "BRECQ's Fisher weights all zero",
         "edgeq/learn/quant/recon.py",
         "return (g2 / mean + 1.0 if mean > 0 else np.ones_like(g2)).astype(np.float32)",
         "return np.zeros_like(g2, dtype=np.float32)",
         ("tests/test_recon.py::test_fisher_weights_follow_the_output_gradient_and_change_the_rounding",)),
    Case("reconstruction-learns-nothing", "reconstruction keeps its starting weights (the "
         "engine's `final <= start` holds by construction)",
         "edgeq/learn/quant/recon.py",
         "var.assign_sub(self.lr * lr_scale * (m / c1) / ((v / c2) ** 0.5 + self.eps))",
         "var.assign_sub(0.0 * (m / c1))",
         ("tests/test_recon.py::test_reconstruction_lowers_block_error_below_minmax",
          "tests/test_genie.py")),
    Case("class-order-ignored", "the model card's class order ignored (folders in sorted order)",
         "edgeq/data.py", "folders = [folders[i] for i in order]", "folders = folders",
         ("tests/test_datasets.py::test_class_order_follows_the_model_card",)),
    Case("sqnr-minus-999", "the per-layer SQNR reported as -999 dB everywhere",
         "edgeq/learn/quantize.py", '"sqnr_db": round(after[name], 2)', '"sqnr_db": -999.0',
         ("tests/test_recon.py::test_exported_tflite_keeps_contracts",)),
    Case("softmax-no-cut-off", "the C softmax ignores TFLM's diff_min cut-off",
         "edgeq/kernels/eq_softmax.c", "if (diff >= p->diff_min) {", "if (1) {",
         ("tests/test_cgen.py::test_every_op_matches_tflm_exactly",), count=2),
    Case("three-bit-as-four", "3-bit layers quantized on the 4-bit grid",
         "edgeq/intmath.py", "3: (-4, 3)", "3: (-8, 7)",
         ("tests/test_recon.py::test_three_bit_layers_are_int4_tensors_holding_three_bit_integers",)),
    Case("on-device-accuracy-inverted", "the QEMU check's on-device accuracy wrong (1 - acc)",
         "edgeq/deploy/qemu.py", 'accuracy = scores["accuracy"]',
         'accuracy = 1.0 - scores["accuracy"]',
         ("tests/test_firmware.py::test_check_on_qemu_reports_tflm_agreement_and_costs",)),
    Case("elf-data-not-counted", "firmware flash and RAM without the ELF's .data "
         "(not what arm-none-eabi-size prints)",
         "edgeq/deploy/firmware.py", "(int(parts[0]), int(parts[1]), int(parts[2]))",
         "(int(parts[0]), 0, int(parts[2]))",
         ("tests/test_firmware.py::test_vww_sizes_come_from_the_elf",)),
    Case("bottlenecks-unranked", "bottleneck rows left in graph order, not ranked by the loss",
         "edgeq/learn/qgt/bottlenecks.py", 'rows.sort(key=lambda r: -r["loss_increase"])',
         "pass",
         ("tests/test_qgt.py::test_bottleneck_ranking_puts_the_fragile_layer_first",)),
    Case("tiny-card-over-64-kib", "person_detect_tiny no longer fits 64 KiB at 4 bits "
         "(two more 512-wide blocks)",
         "models/person_detect_tiny.yaml", "[512, 1], [512, 1], [1024, 2]",
         "[512, 1], [512, 1], [512, 1], [512, 1], [1024, 2]",
         ("tests/test_boards_zoo.py::test_person_detect_tiny_fits_64_kib_at_4_bits",)),
    Case("bias-off-by-one", "int32 biases one step off the converter's",
         "edgeq/intmath.py", "q = round_half_away(b / scales)", "q = round_half_away(b / scales) + 1",
         ("tests/test_grid.py::test_activation_and_weight_quantization_match_the_tflite_converter",)),
    Case("wheel-without-pillow", "a dependency the check needs missing from pyproject's list",
         "pyproject.toml", '    "pillow>=10",\n', "",
         ("tests/test_check_without_tf.py",)),
    Case("reader-raises-value-error", "the reader's format errors raised as a bare ValueError",
         "edgeq/tflite/read.py", "        return TFLiteFormatError(f\"{self.origin}: {message}\",",
         "        return ValueError(f\"{self.origin}: {message}\",",
         ("tests/test_tflite_read.py",)),
    Case("lambda-loaded", "Lambda layers and custom objects loaded without --unsafe",
         "edgeq/learn/modelio.py", "    if found:\n        raise ModelLoadError(",
         "    if False:\n        raise ModelLoadError(",
         ("tests/test_modelio.py::test_lambda_and_custom_layers_are_refused_in_every_format",)),
    Case("output-not-replaced", "an existing edgeq output folder kept instead of replaced",
         "edgeq/outputs.py", "        os.rename(tmp, out)\n", "        pass\n",
         ("tests/test_misuse.py::test_edgeq_folders_are_replaced_and_a_failure_keeps_the_previous_one",)),
]


def _pytest(copy: Path, tests: tuple[str, ...], log: Path) -> int:
    env = dict(os.environ, PYTHONPATH=str(copy), TF_CPP_MIN_LOG_LEVEL="2",
               EDGEQ_SHARED=os.environ.get("EDGEQ_SHARED", str(ROOT.parent / "shared")))
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:xdist", "-p", "no:cacheprovider",
           *tests]
    with log.open("w") as out:
        return subprocess.run(cmd, cwd=copy, env=env, stdout=out, stderr=subprocess.STDOUT).returncode


def _export(dest: Path) -> None:
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    (dest / ".venv").symlink_to(ROOT / ".venv")


def run_case(case: Case, work: Path) -> tuple[str, float]:
    copy = work / case.name
    copy.mkdir()
    _export(copy)
    start = time.perf_counter()
    if _pytest(copy, case.tests, work / f"{case.name}.clean.log") != 0:
        return "tests fail unbroken (see the .clean.log)", time.perf_counter() - start
    target = copy / case.path
    text = target.read_text()
    found = text.count(case.old)
    if found != case.count:
        return f"`old` found {found} times in {case.path}, expected {case.count}", 0.0
    target.write_text(text.replace(case.old, case.new))
    code = _pytest(copy, case.tests, work / f"{case.name}.broken.log")
    verdict = {0: "NOT caught (the tests pass)", 1: "caught"}.get(code, f"pytest exit {code}")
    return verdict, time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", help="comma-separated case names: " + ", ".join(c.name for c in CASES))
    ap.add_argument("--keep", action="store_true", help="keep the copies and logs")
    args = ap.parse_args()
    chosen = [c for c in CASES if not args.only or c.name in args.only.split(",")]
    if args.only and len(chosen) != len(args.only.split(",")):
        ap.error("unknown case name in --only")
    work = Path(tempfile.mkdtemp(prefix="edgeq-break-"))
    print(f"copies and logs in {work}", flush=True)
    rows, caught = [], 0
    for case in chosen:
        verdict, seconds = run_case(case, work)
        caught += verdict == "caught"
        print(f"{case.name}: {verdict} ({seconds:.0f} s)", flush=True)
        rows.append(f"| {case.what} | `{case.path}` | {', '.join(f'`{t}`' for t in case.tests)} "
                    f"| {verdict} |")
        if not args.keep:
            subprocess.run(["rm", "-rf", str(work / case.name)], check=False)
    print("\n| broken on purpose | where | tests | result |\n|---|---|---|---|")
    print("\n".join(rows))
    print(f"\n{caught} of {len(chosen)} caught")
    return 0 if caught == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
