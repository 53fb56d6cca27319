"""The board's firmware on an emulated core: which QEMU machine runs a board's core, and the
on-device evaluation `edgeq build` reports beside LiteRT and TFLM.

QEMU has no STM32H7 or nRF52, but it emulates the cores: an STM32H743 (Cortex-M7) runs on the
mps2-an500 machine and an nRF52840 (Cortex-M4) on mps2-an386. The evaluation firmware is
edgeq's engine for the same .tflite compiled with the board's own -mcpu/-mfpu flags, linked for
the emulator's memory map. QEMU counts instructions, not cycles (`-icount shift=0`), so the
latency printed from them is an estimate at one instruction per clock cycle: flash wait
states and memory stalls make a real board slower, the Cortex-M7's dual issue can make it
faster.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgeq.boards import Board, load_board
from edgeq.data import classification
from edgeq.deploy.qemu import FirmwareFigures, run_qemu

# the QEMU machine that emulates each core (qemu-system-arm -machine help)
EMULATORS = {"cortex-m7": "mps2-an500", "cortex-m4": "mps2-an386"}


@functools.lru_cache(maxsize=4)
def _qemu_machines(tool: str) -> frozenset[str]:
    path = shutil.which(tool)
    if path is None:
        return frozenset()
    listing = subprocess.run([path, "-machine", "help"], capture_output=True, text=True,
                             timeout=60).stdout
    return frozenset(line.split()[0] for line in listing.splitlines()[1:] if line.strip())


def emulator_for(board: Board) -> tuple[Board | None, str]:
    """(the board QEMU runs `board`'s firmware on, or None; why not, when None). A board that
    is itself emulated is its own emulator; otherwise the emulator card gets `board`'s core,
    FPU and DSP flags, so the code that runs is the code the board would run."""
    if board.emulate:
        emulator = board
    else:
        machine = EMULATORS.get(board.core)
        if machine is None:
            return None, (f"QEMU emulates no {board.core} board that edgeq knows "
                          f"(it knows {', '.join(sorted(EMULATORS))})")
        emulator = load_board(machine)
    tool = emulator.emulate.get("tool", "qemu-system-arm")
    machines = _qemu_machines(tool)
    if not machines:
        return None, (f"{tool} is not installed: sudo apt-get install "
                      f"{emulator.emulate.get('package', 'qemu-system-arm')}")
    if emulator.emulate["machine"] not in machines:
        return None, f"this {tool} has no {emulator.emulate['machine']} machine ({board.core})"
    if emulator is board:
        return board, ""
    return replace(emulator, core=board.core, fpu=board.fpu, dsp=board.dsp,
                   description=f"{emulator.description}, running {board.name}'s core flags"), ""


@dataclass
class EmulatedRun(FirmwareFigures):
    """The firmware on the emulated core next to TFLM on the same int8 inputs."""

    emulator: str  # QEMU machine name
    board: str  # the board whose core flags the firmware was compiled with
    samples: int
    chosen: str  # how the inputs were chosen
    mismatches: int  # output values that differ from TFLM's (contract 1: 0)
    identical_inputs: int  # inputs whose whole output equals TFLM's
    instructions_per_inference: int  # median
    macs: int
    clock_mhz: float
    accuracy: float | None = None  # top-1 on the labelled inputs
    label_agreement: float | None = None  # arg max equal to TFLM's
    per_class_accuracy: list | None = None
    confusion: list | None = None

    @property
    def latency_ms_estimate(self) -> float:
        """Instructions / clock: one instruction per cycle (an estimate, not a measurement)."""
        return self.instructions_per_inference / (self.clock_mhz * 1e3)

    def to_dict(self) -> dict:
        return {"emulator": self.emulator, "compiled_for": self.board, "samples": self.samples,
                "chosen": self.chosen, "accuracy": self.accuracy,
                "label_agreement_with_tflm": self.label_agreement,
                "identical_to_tflm": self.identical, "mismatched_values": self.mismatches,
                "identical_inputs": self.identical_inputs,
                "instructions_per_inference": self.instructions_per_inference,
                "instructions_per_mac": round(self.instructions_per_mac, 3), "macs": self.macs,
                "clock_mhz": self.clock_mhz,
                "latency_ms_estimate": round(self.latency_ms_estimate, 3),
                "latency_basis": "QEMU instruction count at one instruction per clock cycle "
                                 "(not a cycle count)",
                "per_class_accuracy": self.per_class_accuracy, "confusion": self.confusion}


def run_emulated(model, board: Board, emulator: Board, inputs: np.ndarray,
                 tflm_outputs: np.ndarray, labels=None, classes: int | None = None,
                 output_spec=None, chosen: str = "", timeout: float = 900,
                 arena_budget: int | None = None) -> EmulatedRun:
    """Build edgeq's firmware for `model` (a Model or .tflite path) on `emulator` (from
    emulator_for), run it under QEMU on the int8 `inputs` [n, ...] and compare its raw outputs
    with `tflm_outputs` [n, ...]. `labels` (n class indices, -1 unknown) add top-1;
    `output_spec` (edgeq.deploy.check.TensorSpec) dequantizes a single sigmoid unit.
    `arena_budget`: the board's (default: its arena_kib), so that the engine that runs is the
    board's, streamed where the board needs it (edgeq.deploy.stream)."""
    from edgeq.deploy.check import top1
    from edgeq.deploy.firmware import build_firmware

    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="edgeq_emulated_") as tmp:
        budget = board.arena_bytes if arena_budget is None else arena_budget
        firmware = build_firmware(model, emulator, Path(tmp) / "fw", arena_budget=budget)
        result = run_qemu(firmware.elf, inputs, timeout=timeout, board=emulator.name)
    expected = np.asarray(tflm_outputs).reshape(len(inputs), -1)
    differ = result.outputs != expected
    run = EmulatedRun(emulator.emulate["machine"], board.name, len(inputs), chosen,
                      int(np.count_nonzero(differ)), int(np.sum(~differ.any(axis=1))),
                      result.instructions_per_inference, firmware.engine.macs, board.clock_mhz)
    predicted, reference = top1(result.outputs, output_spec), top1(expected, output_spec)
    run.label_agreement = float(np.mean(predicted == reference)) if len(inputs) else None
    if labels is not None and classes:
        labels = np.asarray(labels).reshape(-1)
        if (labels >= 0).any():
            scores = classification(labels, predicted, classes)
            run.accuracy = scores["accuracy"]
            run.per_class_accuracy = scores["per_class_accuracy"]
            run.confusion = scores["confusion"]
    return run
