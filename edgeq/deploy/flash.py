"""Flash a firmware to a board with the tool its board file names (`flasher:` in
boards/*.yaml): openocd, pyocd or teensy_loader_cli.

`locate_firmware` finds what to flash: the fw.elf of a build folder (`edgeq build` →
OUT/firmware/fw.elf) or of a firmware folder (`edgeq firmware` → fw.elf), for the board the
folder says it was built for (OUT/report.json, or the folder's firmware.json). It refuses a
missing ELF, an ELF built for another board, one that uses semihosting (the QEMU firmware: on a
board without a debugger it would stop at its first printf), and one whose loaded bytes do not
lie in the board's flash.

Commands are argument lists, never shell strings. openocd reads its `-c` argument as Tcl, so the
firmware path is passed inside Tcl braces (no substitution there) and paths that could break
out of them are refused.
"""

from __future__ import annotations

import json
import shlex
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeq.boards import Board, load_board
from edgeq.errors import OutputError, ToolchainError, UnknownBoardError

TOOLS = ("openocd", "pyocd", "teensy_loader_cli")
# How to install each tool (Debian/Ubuntu package, or pip for pyocd).
INSTALL = {
    "openocd": "sudo apt-get install openocd",
    "pyocd": "pip install pyocd",
    "teensy_loader_cli": "sudo apt-get install teensy-loader-cli",
    "arm-none-eabi-objcopy": "sudo apt-get install binutils-arm-none-eabi",
}


@dataclass
class FlashPlan:
    board: str
    tool: str
    commands: list[list[str]]  # run in order

    def describe(self) -> str:
        """The commands as a shell would show them (for --dry-run)."""
        return "\n".join(shlex.join(c) for c in self.commands)


def _tcl_braced(path: Path) -> str:
    text = str(path)
    if any(ch in text for ch in "{}\\\n\r\0"):
        raise OutputError(f"firmware path {text!r} contains characters openocd cannot take",
                          "move the firmware to a path without braces, backslashes or newlines")
    return "{" + text + "}"


def flash_command(board, firmware, dry_run: bool = True, tool: str | None = None,
                  resolve: bool = True) -> FlashPlan:
    """The commands that flash `firmware` (an .elf; a .hex is made for teensy_loader_cli) to
    `board` (name or Board). `tool` overrides the board's flasher (e.g. "pyocd" for a board
    whose file has a pyocd_target). With dry_run=False the commands are also run.
    resolve=False keeps a relative path as given (for the project's Makefile)."""
    spec: Board = load_board(board) if isinstance(board, str) else board
    flasher = _flasher(spec)
    tool = tool or flasher.get("tool")
    if tool not in TOOLS:
        raise UnknownBoardError(f"board {spec.name}: unknown flasher tool {tool!r}",
                                f"use one of {', '.join(TOOLS)}")
    fw = Path(firmware).resolve() if resolve else Path(firmware)
    if fw.suffix.lower() not in (".elf", ".hex"):
        raise OutputError(f"{fw.name}: expected an .elf or .hex firmware file",
                          "pass the fw.elf that `edgeq firmware` built")
    if tool == "openocd":
        if "interface" not in flasher or "target" not in flasher:
            raise UnknownBoardError(f"board {spec.name}: openocd needs `interface` and `target`")
        commands = [["openocd", "-f", flasher["interface"], "-f", flasher["target"],
                     "-c", f"program {_tcl_braced(fw)} verify reset exit"]]
    elif tool == "pyocd":
        if "pyocd_target" not in flasher:
            raise UnknownBoardError(f"board {spec.name}: pyocd needs `pyocd_target`")
        commands = [["pyocd", "flash", "--target", flasher["pyocd_target"], str(fw)]]
    else:
        if "mcu" not in flasher:
            raise UnknownBoardError(f"board {spec.name}: teensy_loader_cli needs `mcu`")
        commands = _teensy_commands(fw, fw.with_suffix(".hex"), flasher["mcu"])
    plan = FlashPlan(spec.name, tool, commands)
    if not dry_run:
        if not fw.is_file():
            raise OutputError(f"firmware {fw} does not exist",
                              "build it first with `edgeq firmware MODEL --board NAME`")
        if tool != "teensy_loader_cli" or fw.suffix.lower() == ".hex":
            run_flash(plan)
            return plan
        # the .hex goes to a temporary folder: the firmware folder stays as edgeq made it
        with tempfile.TemporaryDirectory(prefix="edgeq_flash_") as tmp:
            run_flash(FlashPlan(spec.name, tool, _teensy_commands(fw, Path(tmp) / "fw.hex",
                                                                  flasher["mcu"])))
    return plan


def _flasher(spec: Board) -> dict:
    if not spec.flasher:
        hint = ("run it under QEMU: `edgeq check MODEL --target qemu`" if spec.emulate
                else "add a `flasher:` section to the board file")
        raise UnknownBoardError(f"board {spec.name} has no flasher", hint)
    return spec.flasher


def _teensy_commands(fw: Path, hex_file: Path, mcu: str) -> list[list[str]]:
    commands = []
    if fw.suffix.lower() == ".elf":
        commands.append(["arm-none-eabi-objcopy", "-O", "ihex", str(fw), str(hex_file)])
    return commands + [["teensy_loader_cli", f"--mcu={mcu}", "-w", "-v",
                        str(hex_file if fw.suffix.lower() == ".elf" else fw)]]


def run_flash(plan: FlashPlan, timeout: float = 300) -> None:
    """Run the plan's commands; ToolchainError names a missing tool's package or the failure."""
    for command in plan.commands:
        if shutil.which(command[0]) is None:
            raise ToolchainError(f"{command[0]} is not installed",
                                 f"install it: {INSTALL.get(command[0], command[0])}")
    for command in plan.commands:
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolchainError(f"{command[0]} did not finish within {timeout:g} s",
                                 "check the board's USB connection and power") from None
        if result.returncode != 0:
            raise ToolchainError(f"flashing {plan.board} failed: {shlex.join(command)}\n"
                                 f"{(result.stdout + result.stderr)[-2000:]}",
                                 "check that the board is connected and the probe is free")


MANIFEST = "firmware.json"  # written beside fw.elf by edgeq.deploy.firmware.build_firmware
SEMIHOSTING_SYMBOL = b"initialise_monitor_handles"  # newlib's rdimon start-up (QEMU builds)


def _recorded_board(folder: Path) -> str | None:
    """The board a build or firmware folder says its ELF was built for."""
    for path, keys in ((folder / "report.json", ("firmware", "board")),
                       (folder / "firmware" / MANIFEST, ("board",)),
                       (folder / MANIFEST, ("board",))):
        if path.is_file():
            try:
                value = json.loads(path.read_text())
                for key in keys:
                    value = value[key]
                return str(value)
            except (ValueError, KeyError, TypeError):
                continue
    return None


def locate_firmware(target=None, board: str | None = None,
                    elf=None) -> tuple[Board, Path]:
    """(board, ELF) to flash: `target` a build or firmware folder (or an .elf), `board` and
    `elf` as given on the command line. Errors name what is wrong and what to do."""
    recorded = None
    if board is not None:
        _flasher(load_board(board))  # an emulated board: say so before looking for files
    if target is not None:
        target = Path(target)
        if target.suffix.lower() in (".elf", ".hex") and elf is None:
            elf, target = target, target.parent
        if not target.is_dir():
            raise OutputError(f"{target}: no such build or firmware folder",
                              "pass the --out folder of `edgeq build` or `edgeq firmware`")
        recorded = _recorded_board(target)
        if elf is None:
            elf = next((p for p in (target / "firmware" / "fw.elf", target / "fw.elf")
                        if p.is_file()), target / "firmware" / "fw.elf")
    elif elf is None:
        raise OutputError("nothing to flash", "pass a build folder (`edgeq flash out/`) or --elf")
    elf = Path(elf)
    if recorded is None and elf.parent.is_dir():
        recorded = _recorded_board(elf.parent)
    if board is None and recorded is None:
        raise UnknownBoardError(f"{elf}: no record of the board it was built for",
                                "pass --board NAME")
    spec = load_board(board or recorded)
    if recorded is not None and load_board(recorded).emulate:
        raise UnknownBoardError(f"{elf} was built for {recorded}, which QEMU emulates: there is "
                                "no board to flash", "run it under QEMU: `edgeq check MODEL "
                                "--target qemu`, or build for a real board (`edgeq boards`)")
    if recorded is not None and load_board(recorded).name != spec.name:
        raise UnknownBoardError(f"{elf} was built for {recorded}, not {spec.name}",
                                f"rebuild it for {spec.name} (`edgeq build --board {spec.name}`), "
                                f"or flash it to a {recorded}")
    if not elf.is_file():
        raise OutputError(f"firmware {elf} does not exist",
                          "build it first: `edgeq build --board NAME` (needs arm-none-eabi-gcc: "
                          "sudo apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    if elf.suffix.lower() == ".elf":
        check_elf_for_board(elf, spec)
    return spec, elf


def check_elf_for_board(elf: Path, board: Board) -> None:
    """Refuse an ELF that cannot run on `board`: semihosting (a QEMU build), or loaded bytes
    outside the board's flash."""
    data = elf.read_bytes()
    if len(data) < 0x34 or data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise OutputError(f"{elf}: not a 32-bit little-endian ELF (an Arm Cortex-M firmware)",
                          "pass the fw.elf that `edgeq build` or `edgeq firmware` made")
    if SEMIHOSTING_SYMBOL in data:
        raise OutputError(f"{elf} was built for QEMU (it talks to the host by semihosting and "
                          f"would stop at its first output on {board.name})",
                          f"build the board's own firmware: `edgeq build --board {board.name}` "
                          f"or `edgeq firmware MODEL --board {board.name}`")
    flash = board.memory.get("flash")
    if not flash:
        return
    start = int(str(flash["origin"]), 0)
    end = start + int(flash["kib"]) * 1024
    phoff, = struct.unpack_from("<I", data, 0x1C)
    size, count = struct.unpack_from("<HH", data, 0x2A)
    for i in range(count):
        kind, _, _, paddr, filesz = struct.unpack_from("<5I", data, phoff + i * size)
        if kind == 1 and filesz and not (start <= paddr and paddr + filesz <= end):
            raise OutputError(
                f"{elf} loads {filesz:,} bytes at 0x{paddr:08x}, outside {board.name}'s flash "
                f"(0x{start:08x}-0x{end - 1:08x}): it was linked for another board",
                f"rebuild it for {board.name}: `edgeq build --board {board.name}`")
