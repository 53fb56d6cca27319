"""The board's firmware on the QEMU machine that emulates its core (edgeq.deploy.ondevice):
which machine, built with which flags, and outputs identical to TFLM's."""

import numpy as np
import pytest
from opmodels import conv_pool_fc, random_input

from edgeq.boards import load_board
from edgeq.deploy.ondevice import emulator_for, run_emulated
from edgeq.deploy.tflm import tflm_outputs
from edgeq.tflite.write import write_model


@pytest.mark.parametrize("board, machine, flags", [
    ("stm32h743", "mps2-an500", ("cortex-m7", "fpv5-d16")),
    ("stm32f746", "mps2-an500", ("cortex-m7", "fpv5-sp-d16")),
    ("nrf52840", "mps2-an386", ("cortex-m4", "fpv4-sp-d16")),
    ("mps2-an500", "mps2-an500", ("cortex-m7", "fpv5-d16")),
])
def test_each_core_gets_its_machine_and_keeps_the_boards_flags(board, machine, flags):
    emulator, why = emulator_for(load_board(board))
    assert why == "" and emulator.emulate["machine"] == machine
    assert (emulator.core, emulator.fpu) == flags
    assert emulator.memory == load_board(machine).memory  # linked for the emulator's map


def test_a_core_without_an_emulator_says_why():
    board = load_board("stm32h743")
    from dataclasses import replace

    emulator, why = emulator_for(replace(board, core="cortex-m33"))
    assert emulator is None and "QEMU emulates no cortex-m33 board" in why


@pytest.mark.parametrize("board", ["nrf52840", "stm32h743"])
def test_the_emulated_firmware_equals_tflm(board):
    rng = np.random.default_rng(5)
    model = conv_pool_fc(rng)
    inputs = np.stack([random_input(model, rng).reshape(-1) for _ in range(6)])
    expected = tflm_outputs(write_model(model), inputs)
    spec = load_board(board)
    emulator, _ = emulator_for(spec)
    run = run_emulated(model, spec, emulator, inputs, expected, labels=np.arange(6) % 2,
                       classes=int(expected.shape[1]))
    assert run.identical and run.identical_inputs == 6 and run.samples == 6
    assert run.label_agreement == 1.0 and run.accuracy is not None
    assert run.instructions_per_inference > run.macs > 0
    # one wrong expected value is seen: the comparison can fail
    wrong = expected.copy()
    wrong[2, 0] = wrong[2, 0] ^ 1
    bad = run_emulated(model, spec, emulator, inputs, wrong)
    assert bad.mismatches == 1 and bad.identical_inputs == 5 and not bad.identical
