"""`edgeq flash`: the ELF of a build or firmware folder, for the board it was built for, and
nothing else (a missing ELF, another board's, QEMU's). Real ELFs from arm-none-eabi-gcc."""

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from opmodels import conv_pool_fc

from edgeq.cli import main
from edgeq.deploy.firmware import build_firmware


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def firmware_dirs(tmp_path_factory):
    """A firmware folder per board, from one small model."""
    root = tmp_path_factory.mktemp("flash")
    model = conv_pool_fc(np.random.default_rng(3))
    folders = {}
    for board in ("stm32h743", "stm32f746", "nrf52840", "imxrt1062", "mps2-an500"):
        build_firmware(model, board, root / board)
        folders[board] = root / board
    return folders


@pytest.mark.parametrize("board, words", [
    ("stm32h743", ["openocd", "interface/stlink.cfg", "target/stm32h7x.cfg", "program"]),
    ("stm32f746", ["openocd", "target/stm32f7x.cfg"]),
    ("nrf52840", ["openocd", "interface/cmsis-dap.cfg", "target/nrf52.cfg"]),
    ("imxrt1062", ["teensy_loader_cli", "TEENSY40"]),
])
def test_flash_a_folder_for_the_board_it_was_built_for(firmware_dirs, board, words):
    folder = firmware_dirs[board]
    result = run("flash", folder, "--dry-run")  # no --board: the folder says which
    assert result.exit_code == 0, result.output
    for w in words:
        assert w in result.output
    assert str((folder / "fw.elf").resolve()) in result.output


def test_flash_refuses_another_boards_firmware(firmware_dirs, tmp_path):
    result = run("flash", firmware_dirs["nrf52840"], "--board", "stm32h743", "--dry-run")
    assert result.exit_code == 2 and "built for nrf52840, not stm32h743" in result.output
    # without its folder's record, the ELF's load addresses give it away: nRF52 flash is at 0
    lone = tmp_path / "fw.elf"
    shutil.copy(firmware_dirs["nrf52840"] / "fw.elf", lone)
    result = run("flash", "--board", "stm32h743", "--elf", lone, "--dry-run")
    assert result.exit_code == 2 and "outside stm32h743's flash" in result.output
    assert "Traceback" not in result.output


def test_flash_refuses_a_qemu_firmware(firmware_dirs, tmp_path):
    result = run("flash", firmware_dirs["mps2-an500"], "--dry-run")
    assert result.exit_code == 2 and "QEMU emulates" in result.output
    result = run("flash", firmware_dirs["mps2-an500"], "--board", "nrf52840", "--dry-run")
    assert result.exit_code == 2 and "QEMU emulates" in result.output
    lone = tmp_path / "fw.elf"  # no record: the semihosting start-up gives it away
    shutil.copy(firmware_dirs["mps2-an500"] / "fw.elf", lone)
    result = run("flash", "--board", "nrf52840", "--elf", lone, "--dry-run")
    assert result.exit_code == 2 and "built for QEMU" in result.output and "semihosting" in result.output


def test_flash_refuses_a_missing_or_foreign_elf(tmp_path):
    result = run("flash", tmp_path, "--board", "stm32h743", "--dry-run")
    assert result.exit_code == 2 and "does not exist" in result.output
    result = run("flash", tmp_path, "--dry-run")  # nothing says which board
    assert result.exit_code == 2 and "pass --board" in result.output
    result = run("flash", tmp_path / "nowhere", "--dry-run")
    assert result.exit_code == 2 and "no such build or firmware folder" in result.output
    (tmp_path / "fw.elf").write_bytes(b"not an elf")
    result = run("flash", "--board", "stm32h743", "--elf", tmp_path / "fw.elf", "--dry-run")
    assert result.exit_code == 2 and "not a 32-bit little-endian ELF" in result.output


def test_flash_on_an_emulated_board_says_use_qemu():
    result = run("flash", "--board", "mps2-an500", "--dry-run")
    assert result.exit_code == 2 and "--target qemu" in result.output


def test_flash_tool_chooses_the_flasher(firmware_dirs):
    folder = firmware_dirs["stm32h743"]
    commands = {}
    for tool in ("openocd", "pyocd"):
        result = run("flash", folder, "--tool", tool, "--dry-run")
        assert result.exit_code == 0, result.output
        commands[tool] = result.output
    assert "openocd" in commands["openocd"] and "pyocd" not in commands["openocd"]
    assert "pyocd" in commands["pyocd"] and "stm32h743zitx" in commands["pyocd"]


def test_the_folder_has_the_images_and_a_readme(firmware_dirs):
    folder = firmware_dirs["stm32h743"]
    assert (folder / "fw.bin").stat().st_size > 0
    assert (folder / "fw.hex").read_text().startswith(":")
    readme = (folder / "README.md").read_text()
    assert "make flash" in readme and "openocd" in readme and "EDGEQ_TEST" in readme
    assert "make run" in (firmware_dirs["mps2-an500"] / "README.md").read_text()
