"""Run a firmware ELF under QEMU's Cortex-M7 (mps2-an500): inputs go in through semihosting
file I/O (inputs.bin in the emulator's working folder), raw outputs come back in outputs.bin,
and main.c prints one line per inference with its SysTick ticks.

QEMU runs with `-icount shift=0`: the virtual clock advances exactly 1 ns per instruction, and
SysTick ticks at 25 MHz, so instructions = ticks * 40 (resolution: 40 instructions).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.boards import load_board
from edgeq.data import check_labels, classification, output_classes
from edgeq.deploy.check import (
    TensorSpec,
    check_targets,
    compare_outputs,
    dequantize,
    is_class_vector,
    mean_abs_error,
    spec_of_tensor,
    top1,
)
from edgeq.deploy.firmware import QEMU_NS_PER_TICK, qemu_command
from edgeq.errors import DataError, ToolchainError

_RESULT = re.compile(r"EDGEQ_RESULT (\d+) label=(\d+) ticks=(\d+)")
_OP = re.compile(r"EDGEQ_OP (\d+) ticks=(\d+)")
_DONE = re.compile(r"EDGEQ_DONE count=(\d+) checksum=([0-9a-f]{8})")


@dataclass
class QemuResult:
    outputs: np.ndarray  # int8 [n, output_size]
    labels: list[int]
    instructions: list[int]  # per inference
    checksum: str
    stdout: str
    op_instructions: list[int] | None = None  # per op, first inference (EDGEQ_PROFILE builds)

    @property
    def instructions_per_inference(self) -> int:
        return int(np.median(self.instructions)) if self.instructions else 0


def run_qemu(elf, inputs: np.ndarray, timeout: float = 120,
             board: str = "mps2-an500") -> QemuResult:
    """Run `elf` on int8 `inputs` [n, ...] (each one whole model input) and collect the outputs,
    labels and instructions per inference. Raises ToolchainError when QEMU is missing, fails,
    or takes longer than `timeout` seconds."""
    spec = load_board(board)
    command = qemu_command(spec)
    if shutil.which(command[0]) is None:
        package = (spec.emulate or {}).get("package", "qemu-system-arm")
        raise ToolchainError(f"{command[0]} is not installed",
                             f"install it: sudo apt-get install {package}")
    elf = Path(elf).resolve()
    if not elf.is_file():
        raise ToolchainError(f"firmware {elf} does not exist", "build it first")
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="edgeq_qemu_") as tmp:
        work = Path(tmp)
        inputs.tofile(work / "inputs.bin")
        try:
            # A list of arguments, never a shell string: paths come from users.
            run = subprocess.run([*command, "-kernel", str(elf)], cwd=work, capture_output=True,
                                 text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise ToolchainError(
                f"QEMU did not finish {len(inputs)} inference(s) within {timeout:g} s "
                f"({elf.name})", "raise the timeout, or pass fewer inputs") from None
        stdout = run.stdout
        done = _DONE.search(stdout)
        if run.returncode != 0 or done is None:
            raise ToolchainError(
                f"the firmware {elf.name} failed under QEMU (exit {run.returncode}):\n"
                f"{(stdout + run.stderr)[-2000:]}",
                "check that it was built for mps2-an500 and that inputs match the model")
        raw = np.fromfile(work / "outputs.bin", dtype=np.int8)
    count = int(done.group(1))
    if count != len(inputs):
        raise ToolchainError(f"the firmware ran {count} of {len(inputs)} inputs",
                             "each input must have exactly the model's input size")
    results = [tuple(int(v) for v in m.groups()) for m in _RESULT.finditer(stdout)]
    ops: dict[int, int] = {}
    for m in _OP.finditer(stdout):
        ops.setdefault(int(m.group(1)), int(m.group(2)) * QEMU_NS_PER_TICK)
    return QemuResult(outputs=raw.reshape(count, -1) if count else raw.reshape(0, 0),
                      labels=[r[1] for r in results],
                      instructions=[r[2] * QEMU_NS_PER_TICK for r in results],
                      checksum=done.group(2), stdout=stdout,
                      op_instructions=[ops[i] for i in sorted(ops)] or None)


class FirmwareFigures:
    """What a firmware run against TFLM gives, for classes with `mismatches`,
    `instructions_per_inference` and `macs`."""

    @property
    def identical(self) -> bool:
        return self.mismatches == 0

    @property
    def instructions_per_mac(self) -> float:
        return self.instructions_per_inference / self.macs if self.macs else 0.0


@dataclass
class QemuCheck(FirmwareFigures):
    """The firmware under QEMU next to TFLM on the same int8 inputs (contract 1)."""

    outputs: np.ndarray  # firmware, int8 [n, output_size]
    tflm_outputs: np.ndarray  # TFLM, same shape
    mismatches: int  # output values that differ (must be 0)
    label_agreement: float | None  # fraction of inputs whose arg max agrees (class outputs)
    instructions_per_inference: int
    macs: int
    sizes: dict[str, int]  # from arm-none-eabi-size, plus the planned arena
    tflm_arena: int  # bytes TFLM's allocator reports for the same file
    accuracy: float | None = None  # on-device, when labels were given
    per_class_accuracy: list | None = None  # on-device, per class (labels given)
    confusion: list | None = None  # counts, rows: true label, columns: predicted
    litert_label_agreement: float | None = None  # with LiteRT (no delegates), when asked
    litert_max_difference: int | None = None  # largest |firmware - LiteRT| in LSB
    litert_mismatches: int | None = None  # output values where firmware and LiteRT differ
    max_lsb_tflm: int = 0  # largest |firmware - TFLM| in LSB (must be 0)
    mae_tflm: float = 0.0  # mean |dequantized firmware - TFLM| (must be 0)
    mae_target: float | None = None  # mean |dequantized firmware output - target| (targets)
    task: str = "classification"  # "classification" (labels), "regression", "unlabelled"


def check_on_qemu(tflite_path, inputs: np.ndarray, out_dir, timeout: float = 300,
                  portable: bool = False, labels=None, litert: bool = False,
                  force: bool = False, targets=None) -> QemuCheck:
    """Build the mps2-an500 firmware for `tflite_path` into `out_dir`, run it under QEMU on the
    int8 `inputs` [n, ...] (any input shape) and compare with TFLM (tflite_micro) on the same
    file: what `edgeq check MODEL --target qemu` reports. `labels` (n class indices) adds the
    on-device accuracy, `targets` (regression targets, n x the output shape) the on-device
    mean absolute error; litert=True adds the comparison with LiteRT (close to TFLM, not always
    exact); force replaces an `out_dir` that edgeq did not make (edgeq.outputs)."""
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.tflm import fit_arena
    from edgeq.tflite.read import read_model

    model_bytes = Path(tflite_path).read_bytes()
    out_spec = spec_of_tensor(read_model(model_bytes).output_tensors[0])
    classes = output_classes(int(np.prod(out_spec.shape[1:])))
    if labels is not None and targets is not None:
        raise ValueError("pass either labels or regression targets, not both")
    if labels is not None:  # before the firmware is built
        labels = np.asarray(labels).reshape(-1)
        check_labels(labels, classes, "the labels")
    if targets is not None:
        targets = check_targets(targets, len(inputs), out_spec, "the targets")
    task = "classification" if labels is not None else \
        "regression" if targets is not None else "unlabelled"
    class_output = labels is not None or (targets is None and is_class_vector(out_spec))
    firmware = build_firmware(tflite_path, "mps2-an500", out_dir, portable=portable, force=force)
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    result = run_qemu(firmware.elf, inputs, timeout=timeout)
    interpreter, tflm_arena = fit_arena(model_bytes)
    shape = interpreter.get_input_details(0)["shape"]
    expected = []
    for x in inputs:
        interpreter.set_input(x.reshape(shape), 0)
        interpreter.invoke()
        expected.append(np.asarray(interpreter.get_output(0)).reshape(-1))
    tflm = np.stack(expected) if expected else np.zeros_like(result.outputs)
    # one sigmoid unit is a binary classifier: its label comes from the dequantized value
    out_spec = TensorSpec.from_details(interpreter.get_output_details(0))
    predicted = top1(result.outputs, out_spec) if len(result.outputs) else np.zeros(0, np.int64)
    agree = (predicted == top1(tflm, out_spec)) if len(tflm) else []
    mismatches, max_lsb = compare_outputs(result.outputs, tflm)
    n = len(result.outputs)
    mae_tflm = mean_abs_error(result.outputs, out_spec, dequantize(tflm, out_spec)) if n else 0.0
    mae_target = mean_abs_error(result.outputs, out_spec, targets) if targets is not None and n \
        else None
    accuracy = scores = None
    if labels is not None:
        if len(labels) != len(predicted):
            raise DataError(f"{len(labels)} labels for {len(predicted)} inputs",
                            "pass one label per input")
        if len(labels):
            scores = classification(labels, predicted, classes)
            accuracy = scores["accuracy"]
    lite_agree = lite_diff = lite_mismatches = None
    if litert:
        lite = _litert_outputs(model_bytes, inputs)
        if class_output:
            lite_agree = float(np.mean(top1(lite, out_spec) == predicted)) if len(lite) else 1.0
        lite_mismatches, difference = compare_outputs(lite.reshape(result.outputs.shape),
                                                      result.outputs)
        lite_diff = int(difference)
    return QemuCheck(accuracy=accuracy, litert_label_agreement=lite_agree,
                     per_class_accuracy=scores and scores["per_class_accuracy"],
                     confusion=scores and scores["confusion"],
                     litert_max_difference=lite_diff, litert_mismatches=lite_mismatches,
                     outputs=result.outputs, tflm_outputs=tflm, mismatches=mismatches,
                     max_lsb_tflm=int(max_lsb), mae_tflm=mae_tflm, mae_target=mae_target,
                     task=task,
                     label_agreement=(float(np.mean(agree)) if len(agree) else 1.0)
                     if class_output else None,
                     instructions_per_inference=result.instructions_per_inference,
                     macs=firmware.engine.macs, sizes=firmware.sizes, tflm_arena=tflm_arena)


def _litert_outputs(model_bytes: bytes, inputs: np.ndarray) -> np.ndarray:
    from edgeq.deploy.runtimes import litert_interpreter

    interpreter = litert_interpreter(model_bytes)
    detail = interpreter.get_input_details()[0]
    output = interpreter.get_output_details()[0]["index"]
    results = []
    for x in inputs:
        interpreter.set_tensor(detail["index"], x.reshape(detail["shape"]).astype(np.int8))
        interpreter.invoke()
        results.append(np.asarray(interpreter.get_tensor(output)).reshape(-1))
    return np.stack(results) if results else np.zeros((0, 0), dtype=np.int8)


def qemu_check_command(model_path, data_path, out_dir, limit: int | None = None,
                       timeout: float = 600, force: bool = False,
                       seed: int = 0) -> tuple[dict, QemuCheck]:
    """What `edgeq check MODEL --data D --target qemu` does: the data as the host check loads
    them (edgeq.deploy.check.load_check_data: images, or an .npz of any input shape with
    labels, regression targets or neither), the firmware under QEMU next to TFLM and LiteRT.
    Returns the JSON payload and the QemuCheck."""
    from edgeq.deploy.check import check_input_range, load_check_data, quantize_inputs

    ds, spec, _ = load_check_data(model_path, data_path, limit, 255.0, seed)
    check_input_range(ds.x, spec, str(data_path))
    q = quantize_inputs(ds.x, spec)
    labels = ds.y if ds.targets is None and len(ds) and (ds.y >= 0).all() else None
    result = check_on_qemu(model_path, q, out_dir, timeout=timeout, labels=labels, litert=True,
                           force=force, targets=ds.targets)
    payload = {"model": str(model_path), "samples": len(ds), "data": str(data_path),
               "chosen": ds.chosen or "all samples", "classes": ds.class_names,
               "target": "qemu mps2-an500", "task": result.task, "accuracy": result.accuracy,
               "per_class_accuracy": result.per_class_accuracy, "confusion": result.confusion,
               "mae_target": result.mae_target,
               "identical_to_tflm": result.identical,
               "mismatched_values": result.mismatches, "output_values": int(result.outputs.size),
               "max_lsb_tflm": result.max_lsb_tflm, "mae_tflm": result.mae_tflm,
               "label_agreement_tflm": result.label_agreement,
               "label_agreement_litert": result.litert_label_agreement,
               "max_lsb_litert": result.litert_max_difference,
               "mismatched_values_litert": result.litert_mismatches,
               "instructions_per_inference": result.instructions_per_inference, "macs": result.macs,
               "instructions_per_mac": round(result.instructions_per_mac, 3),
               "sizes": result.sizes, "tflm_arena": result.tflm_arena}
    return payload, result
