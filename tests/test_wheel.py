"""edgeq as a user gets it: the wheel built from this checkout, installed with the dependencies
pyproject.toml declares into a fresh virtual environment (the `installed_wheel` fixture in
conftest.py), run from a folder outside the checkout. The data folders at the repository root
(boards/, models/, firmware_templates/) must come from the wheel, where they are mapped at
build time, and nothing may point back into the checkout."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import yaml
from conftest import REPO

DATA_FOLDERS = ("boards", "models", "firmware_templates")


def _repo_files(folder: str) -> set[str]:
    return {p.relative_to(REPO / folder).as_posix() for p in (REPO / folder).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_the_wheel_carries_the_data_folders_and_the_repository_keeps_one_copy(installed_wheel):
    names = set(zipfile.ZipFile(installed_wheel.wheel).namelist())
    for folder in DATA_FOLDERS:
        files = _repo_files(folder)
        assert files, folder
        missing = {f for f in files if f"edgeq/_data/{folder}/{f}" not in names}
        assert not missing, f"{folder}/ files not in the wheel: {sorted(missing)}"
    # the whole package, data files too (kernels, engine and report templates): every file of
    # edgeq/ that git tracks
    tracked = subprocess.run(["git", "ls-files", "edgeq"], cwd=REPO, capture_output=True,
                             text=True, check=True).stdout.split()
    package = {f for f in tracked if (REPO / f).is_file()}
    assert {"edgeq/kernels/edgeq_kernels.h", "edgeq/deploy/templates/engine/model.c.j2"} <= package
    assert package <= names, sorted(package - names)
    # the mapping happens at build time: no second copy of the data in the package folder
    assert not (REPO / "edgeq" / "_data").exists()


INSPECT = r"""
import importlib.util, json, sysconfig
import edgeq
print(json.dumps({"site": sysconfig.get_paths()["purelib"], "package": edgeq.__file__,
                  "data": {n: str(edgeq.data_dir(n)) for n in ("boards", "models", "firmware_templates")},
                  "tensorflow": importlib.util.find_spec("tensorflow") is not None,
                  "litert": importlib.util.find_spec("ai_edge_litert") is not None}))
"""


def test_the_installed_package_holds_no_path_into_the_checkout(installed_wheel, tmp_path):
    info = json.loads(installed_wheel.run(installed_wheel.python, "-c", INSPECT, cwd=tmp_path).stdout)
    site = info["site"]
    assert site.startswith(str(installed_wheel.venv))
    assert info["package"].startswith(site)
    for name, path in info["data"].items():
        assert path == f"{site}/edgeq/_data/{name}", (name, path)
    # the declared dependencies and the litert extra, and nothing of the Keras side
    assert info["litert"] and not info["tensorflow"]
    # no .pth, editable hook or recorded path leads back to this checkout
    site = Path(site)
    candidates = [*site.glob("*.pth"), *site.glob("edgeq-*.dist-info/*"),
                  *(p for p in (site / "edgeq").rglob("*") if p.is_file() and p.suffix != ".pyc")]
    leaks = [str(p) for p in candidates if str(REPO).encode() in p.read_bytes()]
    assert not leaks, leaks


def test_installed_edgeq_boards_and_models_list_the_data_files(installed_wheel, tmp_path):
    boards = installed_wheel.run(installed_wheel.edgeq, "boards", cwd=tmp_path).stdout
    board_files = sorted(p for p in (REPO / "boards").glob("*.yaml") if not p.name.startswith("_"))
    assert len(board_files) >= 5
    rows = [line.replace("│", " ").split() for line in boards.splitlines()]  # cells of a row
    for path in board_files:
        card = yaml.safe_load(path.read_text())
        row = next((cells for cells in rows if card["name"] in cells), None)
        assert row is not None, f"{card['name']} missing from `edgeq boards`:\n{boards}"
        assert card["core"] in row and str(card["flash_kib"]) in row, row
    aliases = yaml.safe_load((REPO / "boards" / "_aliases.yaml").read_text())["aliases"]
    for alias, board in aliases.items():
        assert f"{alias} → {board}" in boards

    models = installed_wheel.run(installed_wheel.edgeq, "models", cwd=tmp_path).stdout
    card_files = sorted((REPO / "models").glob("*.yaml"))
    assert len(card_files) >= 4
    for path in card_files:
        card = yaml.safe_load(path.read_text())
        assert re.search(rf"\b{re.escape(card['name'])}\b", models), f"{card['name']}:\n{models}"

    show = installed_wheel.run(installed_wheel.edgeq, "boards", "show", "stm32h743", cwd=tmp_path).stdout
    card = yaml.safe_load((REPO / "boards" / "stm32h743.yaml").read_text())
    for key in ("description", "core", "fpu", "flash_kib", "arena_kib"):
        assert str(card[key]) in show, (key, show)
    assert card["flasher"]["target"] in show


def test_installed_edgeq_firmware_builds_a_project(installed_wheel, shared_dir, tmp_path):
    model = shared_dir / "models" / "kws_ref_model.tflite"  # MLPerf Tiny's DS-CNN, not edgeq's
    out = tmp_path / "fw"
    done = installed_wheel.run(installed_wheel.edgeq, "firmware", model, "--board", "mps2-an500",
                               "--out", out, cwd=tmp_path, check=False)
    if shutil.which("arm-none-eabi-gcc") is None:
        assert done.returncode == 2 and "arm-none-eabi-gcc is not installed" in done.stderr
        assert not out.exists()
        return
    assert done.returncode == 0, done.stdout + done.stderr
    files = {p.name for p in out.iterdir()}
    # the engine, the kernels copied from the installed package, the board project rendered
    # from the wheel's firmware_templates/mps2-an500/, and the ELF
    templates = {p.name[:-3] for p in (REPO / "firmware_templates" / "mps2-an500").glob("*.j2")}
    assert {"edgeq_model.c", "edgeq_model.h", "fw.elf", "fw.map"} | templates <= files
    assert {"edgeq_kernels.h", "edgeq_kernels.c"} <= files
    # the kernel files the engine needs, copied unchanged from the installed package
    (kernels,) = installed_wheel.venv.glob("lib/python*/site-packages/edgeq/kernels")
    copied = [p for p in kernels.iterdir() if p.name in files]
    assert any(p.suffix == ".c" for p in copied), files
    assert all((out / p.name).read_bytes() == p.read_bytes() for p in copied), copied
    elf = (out / "fw.elf").read_bytes()
    assert elf[:4] == b"\x7fELF" and int.from_bytes(elf[18:20], "little") == 40  # EM_ARM
    # the flash it reports is the linked ELF's, as arm-none-eabi-size measures it
    size = subprocess.run(["arm-none-eabi-size", str(out / "fw.elf")], capture_output=True,
                          text=True, check=True).stdout.splitlines()[1].split()
    reported = int(re.search(r"flash\W+([\d,]+) bytes", done.stdout).group(1).replace(",", ""))
    assert reported == int(size[0]) + int(size[1]) > 20_000
