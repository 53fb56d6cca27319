"""Boards: the versioned data files in boards/*.yaml, read in one place.

`load_board("cortex-m7")` resolves aliases; `load_board("path/to/my_board.yaml")` reads a
user's own file with the same schema.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from edgeq import data_dir
from edgeq.errors import UnknownBoardError

SCHEMA_VERSION = 1
CORES = ("cortex-m0plus", "cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55")
_REQUIRED = ("name", "description", "core", "clock_mhz", "fpu", "dsp", "flash_kib", "ram_kib",
             "arena_kib", "memory")


@dataclass(frozen=True)
class Board:
    name: str
    description: str
    core: str
    clock_mhz: float
    fpu: str | None  # gcc -mfpu name, e.g. "fpv5-d16"; None = soft float
    dsp: bool  # has the Armv7E-M DSP extension (SMLAD and friends)
    flash_kib: int
    ram_kib: int
    arena_kib: int  # RAM usable for the tensor arena
    memory: dict = field(default_factory=dict)  # linker regions: {name: {origin, kib}}
    flasher: dict | None = None
    emulate: dict | None = None
    template: str | None = None  # firmware_templates/<folder>; default: the board's name
    source: str = ""

    @property
    def flash_bytes(self) -> int:
        return self.flash_kib * 1024

    @property
    def arena_bytes(self) -> int:
        return self.arena_kib * 1024

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "source"}


def _board_dir():
    return data_dir("boards")


def _aliases() -> dict[str, str]:
    text = (_board_dir() / "_aliases.yaml").read_text()
    return dict(yaml.safe_load(text)["aliases"])


def board_names() -> list[str]:
    return sorted(p.name[:-5] for p in _board_dir().iterdir()
                  if p.name.endswith(".yaml") and not p.name.startswith("_"))


def _parse(text: str, source: str) -> Board:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise UnknownBoardError(f"{source}: not valid YAML ({e})",
                                "fix the file; see `edgeq boards show stm32h743` for an example") from None
    if not isinstance(raw, dict):
        raise UnknownBoardError(f"{source}: a board file must be a YAML mapping")
    if raw.get("schema") != SCHEMA_VERSION:
        raise UnknownBoardError(f"{source}: board schema {raw.get('schema')!r} is not supported",
                                f"set `schema: {SCHEMA_VERSION}`")
    missing = [k for k in _REQUIRED if k not in raw]
    if missing:
        raise UnknownBoardError(f"{source}: missing field(s) {', '.join(missing)}",
                                "add them; see `edgeq boards show stm32h743` for an example")
    if raw["core"] not in CORES:
        raise UnknownBoardError(f"{source}: unknown core {raw['core']!r}",
                                f"use one of {', '.join(CORES)}")
    for key in ("flash_kib", "ram_kib", "arena_kib", "clock_mhz"):
        if not isinstance(raw[key], (int, float)) or raw[key] <= 0:
            raise UnknownBoardError(f"{source}: {key} must be a positive number, got {raw[key]!r}")
    if raw["arena_kib"] > raw["ram_kib"]:
        raise UnknownBoardError(f"{source}: arena_kib ({raw['arena_kib']}) exceeds ram_kib ({raw['ram_kib']})")
    _check_memory(raw["memory"], source)
    fields = {k: raw.get(k) for k in Board.__dataclass_fields__ if k != "source"}
    return Board(**fields, source=source)


def _check_memory(memory, source: str) -> None:
    """The linker regions the firmware templates need: flash and ram, each an origin and a
    size; an optional stack region (its own RAM, e.g. a Cortex-M7's DTCM)."""
    example = "memory: {flash: {origin: \"0x08000000\", kib: 1024}, ram: {origin: \"0x20000000\", kib: 128}}"
    if not isinstance(memory, dict) or not {"flash", "ram"} <= set(memory):
        raise UnknownBoardError(f"{source}: memory must name a flash and a ram region",
                                f"add them, e.g. {example}")
    for name, region in memory.items():
        try:
            origin = int(str(region["origin"]), 0)
            kib = region["kib"]
        except (TypeError, KeyError, ValueError):
            raise UnknownBoardError(f"{source}: memory region {name} needs an origin (a hex "
                                    f"string) and kib", f"e.g. {example}") from None
        if origin < 0 or not isinstance(kib, int) or kib <= 0:
            raise UnknownBoardError(f"{source}: memory region {name}: kib must be a positive "
                                    f"whole number, got {kib!r}", f"e.g. {example}")


def load_board(name: str) -> Board:
    """A board by name, alias (`cortex-m7`) or path to a board YAML file."""
    path = Path(name)
    if name.endswith((".yaml", ".yml")):
        if not path.is_file():
            raise UnknownBoardError(f"board file {name} does not exist")
        return _parse(path.read_text(), str(path))
    key = name.lower()
    key = _aliases().get(key, key)
    resource = _board_dir() / f"{key}.yaml"
    if key.startswith("_") or not resource.is_file():
        known = board_names() + sorted(_aliases())
        raise UnknownBoardError(f"unknown board {name!r}",
                                f"known boards and aliases: {', '.join(known)}; or pass a board YAML file")
    return _parse(resource.read_text(), f"{key}.yaml")


def list_boards() -> list[Board]:
    return [load_board(n) for n in board_names()]


def aliases() -> dict[str, str]:
    return _aliases()
