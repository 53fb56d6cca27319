"""Flash a firmware to a board with the tool its board file names (`flasher:` in
boards/*.yaml): openocd, pyocd or teensy_loader_cli.

Commands are argument lists, never shell strings. openocd reads its `-c` argument as Tcl, so the
firmware path is passed inside Tcl braces (no substitution there) and paths that could break
out of them are refused.
"""

from __future__ import annotations

import shlex
import shutil
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
    flasher = spec.flasher
    if not flasher:
        hint = ("run it under QEMU: `edgeq check MODEL --target qemu`" if spec.emulate
                else "add a `flasher:` section to the board file")
        raise UnknownBoardError(f"board {spec.name} has no flasher", hint)
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
