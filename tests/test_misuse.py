"""Misuse through the real CLI (issue 12): every case ends in one clear message naming the path,
exit status 2, no traceback, before TensorFlow is imported, and not one of the user's files
changed (every file is hashed before and after). Then the other side of the rule: edgeq's own
output folders are replaced, and a failed run keeps the previous one."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import opmodels
import pytest
from PIL import Image

from edgeq import __version__
from edgeq.outputs import MARKER
from edgeq.tflite.write import write_model

# Runs the CLI as `edgeq` does and says afterwards whether TensorFlow was imported.
RUNNER = """import sys
from edgeq.cli import main
try:
    main(sys.argv[1:], prog_name="edgeq")
finally:
    print("TENSORFLOW IMPORTED" if "tensorflow" in sys.modules else "", file=sys.stderr)
"""


def edgeq(*args, cwd, timeout=120, columns=80) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": str(columns)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow itself
    done = subprocess.run([sys.executable, "-c", RUNNER, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=lambda: os.umask(0o022))
    return done.returncode, done.stdout + done.stderr


def snapshot(folder: Path) -> dict:
    """Every entry below `folder` (hidden ones too): hash of each file, target of each link."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            rel = path.relative_to(folder).as_posix()
            if path.is_symlink():
                found[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _images(folder: Path, count: int = 3) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(folder.name))
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(folder / f"{i}.png")


@pytest.fixture()
def user(tmp_path) -> Path:
    """A user's working folder: their own project, a model, photos, notes."""
    home = tmp_path / "user"
    (home / "proj" / "src").mkdir(parents=True)
    (home / "proj" / "src" / "app.c").write_text("int main(void) { return 0; }\n")
    (home / "proj" / "mine.keras").write_bytes(b"PK\x03\x04 the user's model")
    (home / "proj" / "calib.npz").write_bytes(b"PK\x03\x04 the user's data")
    (home / "mine.keras").write_bytes(b"PK\x03\x04 another model")
    write_tflite(home / "m.tflite", weight_bits=8)
    _images(home / "photos" / "person")
    _images(home / "photos" / "non_person")
    (home / "empty_data").mkdir()
    _images(home / "no_classes" / "x")
    for f in (home / "no_classes" / "x").iterdir():
        f.rename(home / "no_classes" / f.name)
    (home / "no_classes" / "x").rmdir()
    (home / "notes.txt").write_text("my notes\n")
    (home / "real_folder").mkdir()
    (home / "link").symlink_to("real_folder")
    return home


def write_tflite(path: Path, weight_bits: int) -> Path:
    path.write_bytes(write_model(opmodels.conv_pool_fc(np.random.default_rng(0), weight_bits)))
    return path


KERAS = ("--keras-model", "mine.keras", "--data", "photos")
CASES = {
    "firmware over the user's project": (("firmware", "m.tflite", "--out", "proj"), ["proj", "--force"]),
    "build over the user's folder": (("build", *KERAS, "--out", "proj"), ["proj", "--force"]),
    "qemu check over the user's folder": (("check", "m.tflite", "--data", "photos", "--target", "qemu",
                                           "--out", "proj"), ["proj", "--force"]),
    "--force never deletes an input": (("build", "--keras-model", "proj/mine.keras", "--data", "photos",
                                        "--out", "proj", "--force"), ["proj", "holds the input"]),
    "output inside the data folder": (("build", *KERAS, "--out", "photos/out"), ["photos", "inside the input"]),
    "firmware --out names a file": (("firmware", "m.tflite", "--out", "notes.txt"), ["notes.txt", "is a file"]),
    "a file where a folder is expected": (("build", *KERAS, "--out", "notes.txt/out"), ["notes.txt", "is a file"]),
    "build --out /proc": (("build", *KERAS, "--out", "/proc/edgeq_out"), ["/proc/edgeq_out", "cannot write"]),
    "build --out .": (("build", *KERAS, "--out", "."), ["current folder"]),
    "firmware --out .": (("firmware", "m.tflite", "--out", "."), ["current folder"]),
    "symlinked output folder": (("firmware", "m.tflite", "--out", "link"), ["link", "symbolic link"]),
    "qemu --limit 0": (("check", "m.tflite", "--data", "photos", "--target", "qemu", "--limit", "0"), ["--limit"]),
    "qemu --limit -3": (("check", "m.tflite", "--data", "photos", "--target", "qemu", "--limit", "-3"), ["--limit"]),
    "build --eval-limit 0": (("build", *KERAS, "--eval-limit", "0"), ["--eval-limit"]),
    "unknown method": (("quantize", "mine.keras", "--data", "photos", "--method", "nope"),
                       ["'nope'", "minmax", "mse", "adaround", "brecq", "adaquant", "genie", "rex"]),
    "missing --data": (("quantize", "mine.keras", "--data", "no_such_dir"), ["no_such_dir"]),
    "empty data folder": (("build", "--keras-model", "mine.keras", "--data", "empty_data"), ["empty_data", "empty"]),
    "images without class folders": (("export", "mine.keras", "--data", "no_classes"),
                                     ["no_classes", "no class sub-folders"]),
    "unknown board": (("build", *KERAS, "--board", "esp32"), ["esp32"]),
    "unknown board for firmware": (("firmware", "m.tflite", "--board", "esp32"), ["esp32"]),
    "unknown zoo model": (("train", "--model", "resnet"), ["resnet"]),
    "mixed bits without a budget": (("quantize", "mine.keras", "--data", "photos", "--bits", "mixed"),
                                    ["--budget-kb"]),
    "quantize over its own input": (("quantize", "mine.keras", "--data", "photos", "--out", "mine.keras"),
                                    ["mine.keras", "input"]),
    "export --out names a folder": (("export", "mine.keras", "--data", "photos", "--out", "photos"),
                                    ["photos", "is a folder"]),
    "check --json names a folder": (("check", "m.tflite", "--data", "photos", "--json", "proj"),
                                    ["proj", "is a folder"]),
    "synth --out names a folder": (("synth", "mine.keras", "--out", "proj"), ["proj", "is a folder"]),
}


def assert_refused(code: int, output: str, words) -> None:
    assert code == 2, output
    assert "Traceback" not in output, output
    assert len(re.findall(r"^(?:error|Error):", output, re.MULTILINE)) == 1, output
    for word in words:
        assert word in output, f"{word!r} not in: {output}"


@pytest.mark.parametrize("case", CASES)
def test_misuse_is_one_message_before_any_work_and_changes_nothing(user, case):
    args, words = CASES[case]
    before = snapshot(user)
    code, output = edgeq(*args, cwd=user)
    assert_refused(code, output, words)
    assert "TENSORFLOW IMPORTED" not in output, f"{case}: checked only after importing TensorFlow"
    assert snapshot(user) == before, "a file of the user's changed (or a temporary one stayed)"


def test_calib_samples_0_quotes_no_wrong_default(user):
    code, output = edgeq("build", *KERAS, "--calib-samples", "0", cwd=user)
    assert_refused(code, output, ["--calib-samples"])
    assert "1024" not in output


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                          capture_output=True, text=True)
    if done.returncode != 0:  # not root, or no CAP_SYS_ADMIN: then chmod tests the same
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_read_only_output_parent(user):
    ro = user / "ro"
    if os.geteuid() == 0:  # root writes through permission bits: a read-only file system
        _mount_tmpfs(ro, "ro,size=64k")
    else:
        ro.mkdir()
        ro.chmod(0o555)
    try:
        before = snapshot(user)
        for args in (("firmware", "m.tflite", "--out", "ro/fw"), ("build", *KERAS, "--out", "ro/out"),
                     ("export", "mine.keras", "--data", "photos", "--out", "ro/m.tflite")):
            code, output = edgeq(*args, cwd=user)
            assert_refused(code, output, ["ro/", "cannot write in"])
            assert "TENSORFLOW IMPORTED" not in output
        assert snapshot(user) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)


def test_full_disk_leaves_nothing_behind(user):
    disk = user / "disk"
    _mount_tmpfs(disk, "size=64k")  # far less than a firmware project (the kernels alone: ~100 KB)
    try:
        (disk / "keep.txt").write_text("the user's file on the small disk\n")
        before = snapshot(user)
        code, output = edgeq("firmware", "m.tflite", "--out", "disk/fw", cwd=user)
        assert_refused(code, output, ["disk/fw", "No space left"])
        assert snapshot(user) == before, "a temporary folder stayed on the full disk"
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_edgeq_folders_are_replaced_and_a_failure_keeps_the_previous_one(user, tmp_path):
    model = write_tflite(user / "m4.tflite", weight_bits=4).name
    code, output = edgeq("firmware", model, "--out", "fw", cwd=user)
    assert code == 0, output
    fw = user / "fw"
    assert (fw / MARKER).is_file() and (fw / "fw.elf").is_file()
    made = json.loads((fw / MARKER).read_text())
    assert "firmware m4.tflite --out fw" in made["command"] and made["edgeq_version"] == __version__
    assert made["date"] and "fw.elf" in made["files"]
    # the user's umask (022), not mkdtemp's private 0700 / mkstemp's 0600
    assert fw.stat().st_mode & 0o777 == 0o755
    assert (fw / "edgeq_model.c").stat().st_mode & 0o777 == 0o644
    first = fw.stat().st_ino

    code, output = edgeq("firmware", model, "--out", "fw", cwd=user)  # edgeq's own: replaced
    assert code == 0, output
    assert fw.stat().st_ino != first and (fw / "fw.elf").is_file()

    board = tmp_path / "tiny.yaml"
    board.write_text("schema: 1\nname: tiny\ndescription: t\ncore: cortex-m4\nclock_mhz: 48\n"
                     "fpu: null\ndsp: false\nflash_kib: 16\nram_kib: 64\narena_kib: 32\n"
                     "memory: {flash: {origin: '0x0', kib: 16}, ram: {origin: '0x20000000', kib: 64}}\n")
    previous = snapshot(user)
    code, output = edgeq("firmware", model, "--board", board, "--out", "fw", cwd=user)
    assert_refused(code, output, ["flash"])
    assert "--bits 4" not in output and "already 4-bit" in output  # the hint fits a 4-bit model
    assert snapshot(user) == previous, "a failed run changed the previous output"

    (fw / "main.c").write_text("/* the user's change */\n")  # now it is partly the user's
    changed = snapshot(user)
    code, output = edgeq("firmware", model, "--out", "fw", cwd=user)
    assert_refused(code, output, ["fw", "main.c", "--force"])
    assert snapshot(user) == changed
    code, output = edgeq("firmware", model, "--out", "fw", "--force", cwd=user)
    assert code == 0, output
    assert "the user's change" not in (fw / "main.c").read_text()


def test_an_empty_folder_is_used(user):
    (user / "new").mkdir()
    code, output = edgeq("firmware", "m.tflite", "--out", "new", cwd=user)
    assert code == 0, output
    assert (user / "new" / "fw.elf").is_file()


def test_float_io_model_refused_by_firmware_points_to_edgeq_export(user):
    float_in = user / "float_in.tflite"
    float_in.write_bytes(write_model(opmodels.quantize(np.random.default_rng(0))))
    code, output = edgeq("firmware", float_in, "--out", "fw", cwd=user)
    assert_refused(code, output, ["float32", "--io int8"])
    assert not (user / "fw").exists()


def test_boards_table_fits_80_columns_without_cutting_names(user):
    from edgeq.boards import board_names

    code, output = edgeq("boards", cwd=user)
    assert code == 0, output
    assert "…" not in output
    assert max(len(line) for line in output.splitlines()) <= 80
    for name in board_names():
        assert re.search(rf"^{re.escape(name)}\s", output, re.MULTILINE), f"{name} cut: {output}"


def test_fit_error_names_what_exists():
    from edgeq.boards import load_board
    from edgeq.errors import BoardFitError
    from edgeq.fit import fit_board, sizes_from_plan, weights_hint

    # 1 MiB of 8-bit weights in the middle layer: 4 bits halve it to fit the nRF52840's 1 MiB
    kernels, plan = {"first": 1000, "middle": 2**20, "last": 1000}, {"middle": 8}
    sizes = sizes_from_plan(1024, sum(kernels.values()), 2048)
    with pytest.raises(BoardFitError) as e:
        fit_board(load_board("nrf52840"), sizes,
                  weights_hint(sizes["flash_bytes"], kernels, plan, ("first", "last")))
    over = sizes["flash_bytes"] - 2**20
    assert f"{over:,} more than the 1,048,576 of nrf52840" in e.value.message
    assert "once available" not in e.value.hint
    four = 1000 + 2**19 + 1000
    assert f"`--bits 4`) store {four:,} bytes of weights and parameters" in e.value.hint
    assert f"--bits mixed --budget-kb {(sum(kernels.values()) - over) // 1024}" in e.value.hint


def test_a_model_given_as_bytes_is_not_called_bytes(user):
    from edgeq.deploy.check import check_model

    model = (user / "m.tflite").read_bytes()
    x = np.random.default_rng(0).integers(-128, 128, (4, 8, 8, 3)).astype(np.int8)
    result = check_model(model, x)
    assert "<bytes>" not in str(result.to_dict()["model"])


def test_an_interrupted_run_leaves_no_temporary_folder(tmp_path):
    from edgeq.outputs import staged_folder

    with staged_folder(tmp_path / "out") as first:
        (first / "model.tflite").write_bytes(b"first")
    before = snapshot(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with staged_folder(tmp_path / "out") as tmp:
            (tmp / "model.tflite").write_bytes(b"half")
            raise KeyboardInterrupt
    assert snapshot(tmp_path) == before


def test_the_cli_knows_every_method_and_the_library_names_rex():
    from edgeq.cli import METHOD_NAMES
    from edgeq.errors import EdgeqError
    from edgeq.learn.quantize import METHODS, get_method

    assert set(METHOD_NAMES) == set(METHODS) | {"rex"}
    with pytest.raises(EdgeqError) as e:
        get_method("nope")
    assert all(name in e.value.hint for name in METHOD_NAMES)
