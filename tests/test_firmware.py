"""The firmware on an emulated Cortex-M7 (contract 1 and 3): built with arm-none-eabi-gcc for
mps2-an500 (warnings as errors) and run under QEMU with inputs through semihosting file I/O, it
gives outputs identical to TFLM for whole models and single ops; sizes come from
arm-none-eabi-size; bad inputs fail with clear errors and leave earlier output intact."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import opmodels
import pytest
from test_cgen import (
    FOLDED_1X1_CASES,
    _add_same_scales,
    _conv,
    _conv_right_stages,
    _conv_stress,
    _depthwise1x3,
    _depthwise3x3,
    _depthwise_stress,
    int4_variant,
)

from edgeq.boards import load_board
from edgeq.deploy import cgen, firmware
from edgeq.deploy.firmware import build_firmware
from edgeq.deploy.qemu import run_qemu
from edgeq.errors import BoardFitError, ToolchainError, UnknownBoardError
from edgeq.tflite.write import write_model

BOARD = "mps2-an500"
WERROR = ("-Werror",)


def _tflm(model_bytes: bytes, inputs: np.ndarray, n_inputs: int = 1) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(model_bytes, arena_size=512 * 1024)
    outputs = []
    for xs in inputs:
        for i, x in enumerate(xs if n_inputs > 1 else [xs]):
            interpreter.set_input(x, i)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0).reshape(-1).copy())
    return np.stack(outputs)


@pytest.fixture(scope="module")
def vww_firmware(vww_int8_path, tmp_path_factory):
    return build_firmware(vww_int8_path, BOARD, tmp_path_factory.mktemp("fw") / "vww",
                          extra_cflags=WERROR)


def test_vww_under_qemu_matches_tflm(vww_firmware, vww_int8_path, coco_vww_dir):
    from PIL import Image

    images = sorted(coco_vww_dir.rglob("*.jpg"))[:2]
    inputs = np.stack([(np.asarray(Image.open(p).convert("RGB").resize((96, 96)), np.int16)
                        - 128).astype(np.int8)[None] for p in images])
    result = run_qemu(vww_firmware.elf, inputs, timeout=120)
    expected = _tflm(vww_int8_path.read_bytes(), inputs)
    np.testing.assert_array_equal(result.outputs, expected)
    assert result.labels == [int(np.argmax(e)) for e in expected]
    # One inference of the 7.49 M-MAC model: between 1 and 40 instructions per MAC.
    macs = vww_firmware.engine.macs
    assert len(result.instructions) == 2
    assert all(macs < n < 40 * macs for n in result.instructions), result.instructions
    assert abs(result.instructions[0] - result.instructions[1]) < 0.01 * result.instructions[0]


def test_portable_and_dsp_paths_agree_and_dsp_is_faster(vww_firmware, vww_int8_path,
                                                       tmp_path):
    portable = build_firmware(vww_int8_path, BOARD, tmp_path / "portable", portable=True,
                              extra_cflags=WERROR)
    inputs = np.random.default_rng(5).integers(-128, 128, size=(1, 1, 96, 96, 3), dtype=np.int8)
    fast = run_qemu(vww_firmware.elf, inputs, timeout=120)
    slow = run_qemu(portable.elf, inputs, timeout=120)
    np.testing.assert_array_equal(fast.outputs, slow.outputs)
    np.testing.assert_array_equal(fast.outputs, _tflm(vww_int8_path.read_bytes(), inputs))
    # measured: ~15.8 instructions per MAC portable, ~1.64 with the DSP paths
    assert fast.instructions[0] < 0.12 * slow.instructions[0]
    assert fast.instructions[0] < 1.75 * vww_firmware.engine.macs
    assert portable.sizes["engine_flash"] < vww_firmware.sizes["engine_flash"]


def test_vww_sizes_come_from_the_elf(vww_firmware):
    import subprocess

    sizes = vww_firmware.sizes
    project = vww_firmware.out_dir
    # What arm-none-eabi-size itself says of the linked ELF (Berkeley format: text data bss).
    text, data, bss = (int(v) for v in subprocess.run(
        ["arm-none-eabi-size", str(project / "fw.elf")], capture_output=True, text=True,
        check=True).stdout.splitlines()[1].split()[:3])
    assert (sizes["text"], sizes["data"], sizes["bss"]) == (text, data, bss)
    assert sizes["flash"] == text + data and sizes["ram"] == data + bss
    # the weights are in the model object's flash, the arena (graph input and output included)
    # in .bss, and no caller-side input buffer beside it: RAM is the arena and a little more
    assert sizes["model_flash"] >= vww_firmware.engine.weight_bytes > 200_000
    assert sizes["arena"] <= sizes["bss"] < sizes["arena"] + 2048 < sizes["arena"] + 96 * 96 * 3
    # the kernels vww uses, DSP fast paths included (34,441 B measured with the 1x1 records'
    # two output stages and eq_conv6_hot's all-folded loop, issue 17)
    assert 0 < sizes["engine_flash"] < 36 * 1024
    assert sizes["flash"] > sizes["model_flash"] + sizes["engine_flash"]
    for name in ("startup.c", "link.ld", "main.c", "Makefile", "edgeq_model.c", "edgeq_model.h",
                 "edgeq_kernels.c", "edgeq_kernels.h", "fw.elf"):
        assert (project / name).is_file(), name
    assert "generated by edgeq" in (project / "link.ld").read_text()
    assert "ORIGIN = 0x20000000, LENGTH = 4096K" in (project / "link.ld").read_text()
    # only the kernels of vww's ops (no ADD, MEAN, PAD, ...), compiled as the one unit
    assert (project / "eq_depthwise.c").is_file() and not (project / "eq_add.c").exists()
    compiled = [c[c.index("-c") + 1] for c in vww_firmware.commands if "-c" in c]
    assert compiled == ["startup.c", "main.c", "edgeq_model.c", "edgeq_kernels.c"]
    assert "SOURCES = startup.c main.c edgeq_model.c edgeq_kernels.c\n" in (
        project / "Makefile").read_text()



def test_the_project_makefile_builds_the_same_elf_and_tracks_the_kernel_files(vww_firmware,
                                                                              tmp_path):
    """`make` in the firmware folder links the ELF edgeq measured, and editing a kernel file
    that edgeq_kernels.c includes makes fw.elf out of date."""
    project = tmp_path / "project"
    shutil.copytree(vww_firmware.out_dir, project)
    (project / "fw.elf").unlink()
    subprocess.run(["make", "fw.elf"], cwd=project, check=True, capture_output=True, timeout=300)
    strip = ["arm-none-eabi-objcopy", "-O", "binary"]
    for folder in (vww_firmware.out_dir, project):
        subprocess.run([*strip, "fw.elf", str(tmp_path / f"{folder.name}.bin")], cwd=folder,
                       check=True)
    assert (tmp_path / "project.bin").read_bytes() == (tmp_path / "vww.bin").read_bytes()
    assert subprocess.run(["make", "-q", "fw.elf"], cwd=project).returncode == 0
    kernel = project / "eq_depthwise.c"
    kernel.write_text(kernel.read_text() + "\n")  # newer than fw.elf
    assert subprocess.run(["make", "-q", "fw.elf"], cwd=project).returncode == 1


OP_CASES = [
    # the INT4 DSP paths, with the real instructions (the host tests emulate them)
    ("conv", _conv, {"cin": 16, "kernel": 1, "bits": 4}),
    ("conv", _conv, {"cin": 8, "kernel": 3, "bits": 4, "stride": 2}),
    ("depthwise3x3", _depthwise3x3, {"channels": 12, "bits": 4}),
    # the output-stage regimes and block tails of the fast kernels (tests/test_cgen.py)
    ("conv", _conv_stress, {}),
    ("conv", _conv_stress, {"activation": "RELU6", "h": 3, "w": 3, "cin": 8, "cout": 9}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "stride": 2, "h": 11, "w": 9}),
    ("conv", _conv_stress, {"bits": 4, "cin": 16, "h": 3, "w": 3}),
    ("depthwise3x3", _depthwise_stress, {}),
    ("depthwise3x3", _depthwise_stress, {"stride": 2, "bits": 4, "activation": "RELU6"}),
    # line-word im2col (3x3 RGB and general), quad rows of every width 1-5, strides 1 and 2
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 5, "h": 3, "w": 4}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 5, "cout": 7, "h": 4, "w": 5, "stride": 2}),
    ("conv", _conv_stress, {"kernel": 5, "cin": 1, "cout": 3, "h": 6, "w": 6}),
    # 3x3 RGB blocks of six pixels in one output row, borders on every side (test_cgen)
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "stride": 2, "h": 9, "w": 27}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 6, "h": 5, "w": 13,
                            "activation": "RELU6"}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 3, "cout": 8, "h": 4, "w": 18}),
    ("conv", _conv_right_stages, {"kernel": 3, "cin": 3, "cout": 8, "bits": 8, "h": 5,
                                  "w": 12, "activation": "NONE"}),
    ("conv", _conv, {"cin": 3, "cout": 8, "kernel": 3, "bits": 8, "stride": 2, "h": 7, "w": 24,
                     "activation": "NONE"}),
    ("depthwise3x3", _depthwise_stress, {"h": 3, "w": 1, "channels": 9}),
    ("depthwise3x3", _depthwise_stress, {"h": 4, "w": 2, "stride": 2, "channels": 13}),
    ("depthwise3x3", _depthwise3x3, {"channels": 7, "h": 2, "w": 3}),
    ("depthwise3x3", _depthwise3x3, {"channels": 12, "h": 5, "w": 4, "bits": 4, "stride": 2}),
    ("depthwise3x3", _depthwise_stress, {"h": 3, "w": 5, "activation": "RELU6"}),
    # the strips of wide outputs, in assembly on the Cortex-M7 (see test_cgen.EXTRA_CASES)
    ("depthwise3x3", _depthwise_stress, {"h": 3, "w": 13}),
    ("depthwise3x3", _depthwise_stress, {"h": 4, "w": 12, "channels": 23, "activation": "RELU6"}),
    ("depthwise3x3", _depthwise3x3, {"channels": 13, "h": 3, "w": 16, "bits": 4}),
    ("depthwise3x3", _depthwise3x3, {"channels": 8, "h": 5, "w": 49, "stride": 2,
                                     "activation": "NONE"}),
    ("depthwise3x3", _depthwise_stress, {"h": 4, "w": 50, "stride": 2, "channels": 6, "bits": 4}),
    ("depthwise3x3", _depthwise3x3, {"channels": 4, "h": 3, "w": 14, "padding": "VALID",
                                     "activation": "NONE"}),
    ("depthwise3x3", _depthwise3x3, {"channels": 5, "h": 2, "w": 130}),
    # eq_depthwise3x3_pairs in assembly over several bands (plane rows of 32, 64 and 124
    # bytes), odd input and output widths at strides 1 and 2 (the fill's last column)
    ("depthwise3x3", _depthwise3x3, {"channels": 8, "h": 70, "w": 6, "activation": "NONE"}),
    ("depthwise3x3", _depthwise_stress, {"h": 20, "w": 20, "channels": 8}),
    ("depthwise3x3", _depthwise3x3, {"channels": 12, "h": 26, "w": 17, "activation": "NONE"}),
    ("depthwise3x3", _depthwise_stress, {"h": 30, "w": 19, "stride": 2, "channels": 8}),
    # eq_dw_one_band (the image in one band, the stage prepared by eq_dw_run_*, channels it
    # leaves to C, a last quad of two channels), odd widths, whole-width fills
    # (eq_dw_fill_all_*) and fills with an odd last column, VALID
    ("depthwise3x3", _depthwise_stress, {"h": 12, "w": 12, "stride": 2, "channels": 22}),
    ("depthwise3x3", _depthwise_stress, {"h": 3, "w": 3, "channels": 16}),
    ("depthwise3x3", _depthwise_stress, {"h": 7, "w": 7, "stride": 2, "channels": 8}),
    ("depthwise", opmodels.depthwise, {"kernel": 3, "cin": 8, "size": (8, 10),
                                       "padding": "VALID"}),
    ("depthwise1x3", _depthwise1x3, {"channels": 6, "stride": 2, "w": 33, "bits": 4}),
    ("depthwise1x3", _depthwise1x3, {"channels": 9, "w": 21}),
    ("depthwise1x3", _depthwise1x3, {"channels": 13, "h": 3, "w": 7, "stress": True}),
    ("conv", _conv_right_stages, {"cin": 8, "cout": 10, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv, {"cin": 8, "cout": 4, "kernel": 1, "bits": 4, "stride": 2, "h": 7, "w": 6,
                     "activation": "NONE"}),
    ("conv", _conv_stress, {"kernel": 3, "cin": 64, "cout": 5, "h": 4, "w": 5}),
    # eq_conv6_hot's and eq_conv3_hot's run counts (1: no loop turn; 5: eq_conv6_hot enters
    # its eight-run loop at its fifth run, eq_conv3_hot does one run, then its four-run loop;
    # 17: one whole eight-run turn after the entry) and tails of 3, 2 and 1 pixels
    ("conv", _conv_stress, {"cin": 4, "cout": 7, "h": 3, "w": 3}),
    ("conv", _conv_stress, {"cin": 20, "cout": 6, "h": 2, "w": 4}),
    ("conv", _conv_stress, {"cin": 12, "cout": 9, "h": 1, "w": 7}),
    ("conv", _conv_stress, {"cin": 68, "cout": 5, "h": 2, "w": 6}),
    ("conv", _conv_right_stages, {"cin": 16, "cout": 7, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv, {"cin": 16, "cout": 5, "kernel": 1, "bits": 4, "stride": 2, "h": 7,
                     "w": 5, "activation": "NONE"}),
    ("conv", _conv_right_stages, {"cin": 32, "cout": 9, "kernel": 1, "bits": 8, "h": 16,
                                  "w": 17, "activation": "NONE"}),
    ("conv", _conv, {"cin": 32, "cout": 6, "kernel": 1, "bits": 4, "stride": 2, "h": 33,
                     "w": 32, "activation": "NONE"}),
    # the 1x1 records' loops entered at the top (an even number of turns): 8 -> 16, 16 -> 8,
    # 32 -> 10 (the odd counts above enter halfway)
    ("conv", _conv_right_stages, {"cin": 8, "cout": 16, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv_right_stages, {"cin": 16, "cout": 8, "kernel": 1, "bits": 8,
                                  "activation": "NONE"}),
    ("conv", _conv_right_stages, {"cin": 32, "cout": 10, "kernel": 1, "bits": 8, "h": 16,
                                  "w": 16, "activation": "NONE"}),
    ("add", _add_same_scales, {}),
    ("add", opmodels.add, {}),  # whole int8 clamp: the halved-input assembly loop
    ("conv_pool_fc", opmodels.conv_pool_fc, {"weight_bits": 8}),
    ("conv_pool_fc", opmodels.conv_pool_fc, {"weight_bits": 4}),
    # issue #14: MUL with the SE broadcast, the table activations (eq_lut)
    ("mul", opmodels.mul, {"broadcast": True}),
    ("mul", opmodels.mul, {"activation": "RELU"}),
    ("leaky_relu", opmodels.leaky_relu, {}),
    ("logistic", opmodels.logistic, {}),
    ("tanh", opmodels.tanh, {}),
    # eq_conv6_hot_folded (every channel's offset folded: no kind tests): 3x3 over 12 channels
    # (27 runs), 1x1 over 20 (5 runs, tails of 1 and 5 pixels)
    ("conv", _conv, {"cin": 12, "cout": 9, "kernel": 3, "bits": 8, "h": 7, "w": 8,
                     "activation": "NONE"}),
    ("conv", _conv, {"cin": 20, "cout": 7, "kernel": 1, "bits": 8, "h": 5, "w": 7,
                     "activation": "NONE"}),
    *FOLDED_1X1_CASES,
    ("hard_swish", opmodels.hard_swish, {}),
    ("sub", opmodels.sub, {"broadcast": True}),
    ("maximum", opmodels.min_max, {"kind": "MAXIMUM", "broadcast": True}),
    ("minimum", opmodels.min_max, {"kind": "MINIMUM"}),
    ("resize_nearest", opmodels.resize_nearest, {"half_pixel_centers": True, "factor": 2}),
    ("resize_nearest", opmodels.resize_nearest, {"align_corners": True}),
    ("transpose_conv", opmodels.transpose_conv, {"kernel": 3}),
    ("transpose_conv", opmodels.transpose_conv, {"padding": "VALID", "stride": 1,
                                                 "with_bias": False, "activation": "RELU"}),
    ("depthwise", opmodels.depthwise, {"weight_bits": 4, "depth_multiplier": 2}),
    ("add", opmodels.add, {"activation": "RELU"}),
    ("mean", opmodels.mean, {"keep_dims": False}),
    ("concatenation", opmodels.concatenation, {"same_scales": False, "count": 3}),
    ("pad", opmodels.pad, {}),
    ("avg_pool", opmodels.avg_pool, {"padding": "SAME", "stride": 1, "size": 3}),
    # FULLY_CONNECTED four int8 values a step, and a tail of 3
    ("fully_connected", opmodels.fully_connected, {"depth": 256}),
    ("fully_connected", opmodels.fully_connected, {"depth": 39, "per_channel": False}),
    # AVERAGE_POOL_2D four channels a word (see test_cgen's cases)
    ("avg_pool", opmodels.avg_pool, {"padding": "SAME", "size": 3, "channels": 13,
                                     "activation": "RELU"}),
    ("avg_pool", opmodels.avg_pool, {"size": 3, "channels": 22, "hw": (3, 3)}),
    ("avg_pool", opmodels.avg_pool, {"size": 16, "channels": 8, "hw": (16, 16)}),
    ("softmax", opmodels.softmax, {"beta": 2.0, "spread": 5.0}),  # the cut-off branch
]


@pytest.mark.parametrize("case", OP_CASES, ids=lambda c: c[0] + "-" + "-".join(
    f"{k}={v}" for k, v in c[2].items()))
def test_ops_under_qemu_match_tflm(case, tmp_path):
    from test_cgen import _assert_varied

    _, build, options = case
    for seed in (11, 12):
        rng = np.random.default_rng(seed)
        model = build(rng, **options)
        n_in = len(model.inputs)
        trials = [[opmodels.random_input(model, rng, i) for i in range(n_in)] for _ in range(5)]
        fw = build_firmware(model, BOARD, tmp_path / f"fw{seed}", extra_cflags=WERROR)
        packed = np.stack([np.concatenate([x.reshape(-1) for x in xs]) for xs in trials])
        result = run_qemu(fw.elf, packed, timeout=60)
        expected = _tflm(write_model(model), trials if n_in > 1 else [t[0] for t in trials],
                         n_in)
        np.testing.assert_array_equal(result.outputs, expected)
        _assert_varied(f"{model.description} seed {seed}", np.asarray(expected))


@pytest.mark.parametrize("cflags", [("-O0",), ("-DEDGEQ_NO_ASM",)])
def test_fast_paths_without_inline_assembly_are_exact(cflags, tmp_path):
    """-O0 keeps the frame pointer, which the 13-register loops need: the kernels then run the
    same fast paths as C with the DSP intrinsics (also with -DEDGEQ_NO_ASM)."""
    rng = np.random.default_rng(12)
    for k, model in enumerate([_conv_stress(rng), _depthwise_stress(rng, stride=2)]):
        inputs = np.stack([opmodels.random_input(model, rng) for _ in range(2)])
        fw = build_firmware(model, BOARD, tmp_path / f"fw{k}", extra_cflags=(*WERROR, *cflags))
        result = run_qemu(fw.elf, inputs.reshape(len(inputs), -1), timeout=60)
        np.testing.assert_array_equal(result.outputs, _tflm(write_model(model), inputs))


def test_board_fit_is_checked_before_anything_is_written(vww_int8_path, tmp_path):
    small = dataclasses.replace(load_board(BOARD), arena_kib=32)
    # even with the first layers streamed (the smallest arena edgeq finds) it is too big
    from edgeq.tflite.read import read_model

    least = cgen.lower_model(read_model(vww_int8_path), arena_budget=32 * 1024).plan.arena_size
    assert least > 32 * 1024
    with pytest.raises(BoardFitError, match=rf"{least:,} bytes.*32,768.*{least - 32768:,} too many"):
        build_firmware(vww_int8_path, small, tmp_path / "out")
    tiny_flash = dataclasses.replace(load_board(BOARD), flash_kib=128)
    with pytest.raises(BoardFitError, match="inner layers to 4 bits"):
        build_firmware(vww_int8_path, tiny_flash, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_failed_build_keeps_the_previous_output(tmp_path):
    model = opmodels.reshape(np.random.default_rng(0))
    out = tmp_path / "fw"
    build_firmware(model, BOARD, out)
    before = (out / "fw.elf").read_bytes()
    with pytest.raises(ToolchainError, match="building the firmware"):
        build_firmware(model, BOARD, out, extra_cflags=["-DEDGEQ_BROKEN=", "-include",
                                                        "no_such_header.h"])
    assert (out / "fw.elf").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["fw"]  # no temporary folder left behind


def test_missing_toolchain_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(firmware.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="apt-get install gcc-arm-none-eabi"):
        build_firmware(opmodels.reshape(np.random.default_rng(0)), BOARD, tmp_path / "fw")


def test_qemu_timeout_is_bounded_and_clear(vww_firmware):
    # 200 inferences are about 4e9 emulated instructions: far more than QEMU can run in 0.2 s
    # even on an idle, fast host (1 s was not enough to fail there).
    inputs = np.zeros((200, 96 * 96 * 3), dtype=np.int8)
    with pytest.raises(ToolchainError, match=r"did not finish 200 inference\(s\) within 0.2 s"):
        run_qemu(vww_firmware.elf, inputs, timeout=0.2)


def test_boards_without_their_own_template_get_the_generic_project(tmp_path):
    import subprocess

    model = opmodels.conv_pool_fc(np.random.default_rng(6))
    nrf = build_firmware(model, "nrf52840", tmp_path / "nrf", extra_cflags=WERROR)
    m0 = dataclasses.replace(load_board("nrf52840"), name="m0-board", core="cortex-m0plus",
                             fpu=None, dsp=False, flasher=None)
    plain = build_firmware(model, m0, tmp_path / "m0", extra_cflags=WERROR)
    for fw in (nrf, plain):
        symbols = subprocess.run(["arm-none-eabi-nm", str(fw.elf)], capture_output=True,
                                 text=True, check=True).stdout
        assert "00000000 T edgeq_vectors" in symbols and " edgeq_results" in symbols
        assert fw.sizes["flash"] > fw.sizes["model_flash"] > 0
    assert "openocd -f interface/cmsis-dap.cfg" in (nrf.out_dir / "Makefile").read_text()
    assert "flash:" not in (plain.out_dir / "Makefile").read_text()
    assert "DWT_CYCCNT" not in (plain.out_dir / "main.c").read_text()  # ARMv6-M has none
    with pytest.raises(UnknownBoardError, match="has no emulator"):
        firmware.qemu_command(load_board("stm32h743"))


# ---- stm32h743 project and flashing ------------------------------------------------------------


def test_stm32h743_project_builds_with_the_board_memory_map(tmp_path):
    import subprocess

    model = opmodels.conv_pool_fc(np.random.default_rng(2))
    vectors = np.stack([opmodels.random_input(model, np.random.default_rng(i)).reshape(-1)
                        for i in range(2)])
    fw = build_firmware(model, "stm32h743", tmp_path / "h7", test_inputs=vectors,
                        extra_cflags=WERROR)
    symbols = dict((line.split()[2], int(line.split()[0], 16)) for line in subprocess.run(
        ["arm-none-eabi-nm", str(fw.elf)], capture_output=True, text=True,
        check=True).stdout.splitlines() if len(line.split()) == 3)
    assert symbols["edgeq_vectors"] == 0x08000000  # flash
    assert 0x24000000 <= symbols["edgeq_arena"] < 0x24080000  # AXI SRAM
    assert symbols["__stack_top"] == 0x20000000 + 128 * 1024  # DTCM
    assert fw.sizes["flash"] > fw.sizes["model_flash"] + vectors.size  # vectors are in flash
    header = (fw.out_dir / "test_vectors.h").read_text()
    assert "#define EDGEQ_TEST_COUNT 2" in header
    assert ", ".join(str(v) for v in vectors[1][:8]) in header
    makefile = (fw.out_dir / "Makefile").read_text()
    assert ("openocd -f interface/stlink.cfg -f target/stm32h7x.cfg -c "
            "'program {fw.elf} verify reset exit'") in makefile
    assert "--specs=nosys.specs" in makefile and "rdimon" not in makefile


@pytest.mark.parametrize("board, expected", [
    ("stm32h743", [["openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32h7x.cfg",
                    "-c", "program {DIR/fw.elf} verify reset exit"]]),
    ("stm32f746", [["openocd", "-f", "interface/stlink.cfg", "-f", "target/stm32f7x.cfg",
                    "-c", "program {DIR/fw.elf} verify reset exit"]]),
    ("nrf52840", [["openocd", "-f", "interface/cmsis-dap.cfg", "-f", "target/nrf52.cfg",
                   "-c", "program {DIR/fw.elf} verify reset exit"]]),
    ("teensy40", [["arm-none-eabi-objcopy", "-O", "ihex", "DIR/fw.elf", "DIR/fw.hex"],
                  ["teensy_loader_cli", "--mcu=TEENSY40", "-w", "-v", "DIR/fw.hex"]]),
])
def test_flash_command_for_each_board(board, expected, tmp_path):
    from edgeq.deploy.flash import flash_command

    plan = flash_command(board, tmp_path / "fw.elf", dry_run=True)
    directory = str(tmp_path.resolve())
    assert plan.commands == [[a.replace("DIR", directory) for a in c] for c in expected]
    assert plan.describe().splitlines()[0].startswith(expected[0][0])


def test_flash_command_options_and_refusals(tmp_path, monkeypatch):
    from edgeq.deploy import flash
    from edgeq.errors import OutputError

    plan = flash.flash_command("stm32h743", tmp_path / "fw.elf", tool="pyocd")
    assert plan.commands == [["pyocd", "flash", "--target", "stm32h743zitx",
                              str((tmp_path / "fw.elf").resolve())]]
    spaced = tmp_path / "my build; rm -rf" / "fw.elf"
    plan = flash.flash_command("stm32h743", spaced)
    assert plan.commands[0][-1] == "program {" + str(spaced.resolve()) + "} verify reset exit"
    with pytest.raises(OutputError, match="openocd cannot take"):
        flash.flash_command("stm32h743", tmp_path / "a}b[exit]" / "fw.elf")
    with pytest.raises(UnknownBoardError, match="(?s)mps2-an500 has no flasher.*qemu"):
        flash.flash_command("mps2-an500", tmp_path / "fw.elf")
    with pytest.raises(OutputError, match="does not exist"):
        flash.flash_command("stm32h743", tmp_path / "missing.elf", dry_run=False)
    (tmp_path / "fw.elf").write_bytes(b"\x7fELF")
    monkeypatch.setattr(flash.shutil, "which", lambda name: None)
    with pytest.raises(ToolchainError, match="apt-get install openocd"):
        flash.flash_command("stm32h743", tmp_path / "fw.elf", dry_run=False)


def test_check_on_qemu_reports_tflm_agreement_and_costs(vww_int8_path, coco_vww_dir, tmp_path):
    from PIL import Image

    from edgeq.deploy.qemu import check_on_qemu
    from edgeq.deploy.runtimes import tflm_interpreter

    photos = sorted(coco_vww_dir.rglob("*.jpg"))
    images = photos[:2] + photos[-2:]  # two non_person, two person
    inputs = np.stack([(np.asarray(Image.open(p).convert("RGB").resize((96, 96)), np.int16)
                        - 128).astype(np.int8).reshape(-1) for p in images])
    labels = [int(p.parent.name == "person") for p in images]  # class 1 = person
    assert labels == [0, 0, 1, 1]
    check = check_on_qemu(vww_int8_path, inputs, tmp_path / "fw", timeout=120, labels=labels,
                          litert=True)
    assert check.identical and check.mismatches == 0 and check.label_agreement == 1.0
    # On-device accuracy = TFLM's labels (its Python interpreter, here) scored against the
    # labels this test knows.
    tflm = tflm_interpreter(vww_int8_path.read_bytes(), 1 << 20)
    predicted = []
    for x in inputs:
        tflm.set_input(x.reshape(1, 96, 96, 3), 0)
        tflm.invoke()
        predicted.append(int(np.argmax(tflm.get_output(0))))
    assert check.accuracy == pytest.approx(np.mean(np.array(predicted) == labels))
    assert check.litert_label_agreement == 1.0 and check.litert_max_difference <= 1
    assert check.tflm_arena == 103_680 and check.sizes["arena"] < check.tflm_arena // 1.8
    assert check.macs == 7_489_664 and 1.0 < check.instructions_per_mac < 10.0


def test_int4_vww_under_qemu_is_exact_and_fits_160_kib(vww_int8_path, tmp_path):
    from edgeq.tflite.read import read_model

    model = int4_variant(read_model(vww_int8_path))
    inputs = np.random.default_rng(4).integers(-128, 128, size=(2, 96 * 96 * 3), dtype=np.int8)
    fw = build_firmware(model, BOARD, tmp_path / "w4", extra_cflags=WERROR)
    result = run_qemu(fw.elf, inputs, timeout=120)
    np.testing.assert_array_equal(result.outputs,
                                  _tflm(write_model(model), inputs.reshape(2, 1, 96, 96, 3)))
    # measured: flash 167,156 B (model ~133 KB, engine object ~25 KB), 1.88 instructions per MAC
    # before issue 17 (edgeq's own brecq W4 detector: 1.48, its many zero-scale channels skip
    # their dot products). Issue 17's kernels (1x1 records, depthwise strips, fast ADD) added
    # ~8 KB of engine code: the 160 KiB target of issue 7 is exceeded by 3,316 B, which
    # BENCHMARKS.md (firmware_vww) reports as NOT met; this bound keeps it from growing further.
    assert fw.sizes["flash"] <= 164 * 1024 + 3 * 1024
    assert fw.sizes["model_flash"] + fw.sizes["engine_flash"] < 160_000
    assert result.instructions[0] < 2.0 * fw.engine.macs


def test_wide_int8_weights_under_qemu_are_exact_and_faster(vww_firmware, vww_int8_path,
                                                           tmp_path):
    """The opt-in int16 weights (cgen.engine_options) with the real instructions: the fast-path
    cases and the whole vww_96 identical to TFLM, with fewer instructions than the INT8 build
    (measured: 1.49 vs 1.56 per MAC) for twice the convolution weights' flash."""
    rng = np.random.default_rng(21)
    with cgen.engine_options(wide_int8_weights=True):
        for k, model in enumerate([_conv_stress(rng), _conv_stress(rng, h=3, w=3, cin=8),
                                   _conv_stress(rng, kernel=3, cin=3, cout=8, stride=2, h=11,
                                                w=9, activation="RELU6")]):
            inputs = np.stack([opmodels.random_input(model, rng) for _ in range(2)])
            fw = build_firmware(model, BOARD, tmp_path / f"op{k}", extra_cflags=WERROR)
            result = run_qemu(fw.elf, inputs.reshape(len(inputs), -1), timeout=60)
            np.testing.assert_array_equal(result.outputs, _tflm(write_model(model), inputs))
        wide = build_firmware(vww_int8_path, BOARD, tmp_path / "vww", extra_cflags=WERROR)
    assert "eq_conv2d_wide(" in (wide.out_dir / "edgeq_model.c").read_text()
    inputs = np.random.default_rng(5).integers(-128, 128, size=(2, 96 * 96 * 3), dtype=np.int8)
    result = run_qemu(wide.elf, inputs, timeout=120)
    np.testing.assert_array_equal(result.outputs,
                                  _tflm(vww_int8_path.read_bytes(), inputs.reshape(2, 1, 96, 96, 3)))
    narrow = run_qemu(vww_firmware.elf, inputs[:1], timeout=120)
    assert result.instructions[0] < 0.97 * narrow.instructions[0]
    assert result.instructions[0] <= 1.5 * wide.engine.macs
    assert wide.sizes["model_flash"] > vww_firmware.sizes["model_flash"] + 150_000
