"""Streamed first stage (edgeq.deploy.stream): the arena below the layer-by-layer bound, and
outputs identical to TFLM's on the host (ASan/UBSan) and under QEMU, with strides, padding,
odd sizes, pooling and a residual ADD inside the stage."""

import numpy as np
import pytest
from opmodels import random_input

from edgeq.deploy import cgen
from edgeq.deploy.firmware import build_firmware
from edgeq.deploy.plan import plan_memory
from edgeq.deploy.qemu import run_qemu
from edgeq.deploy.stream import (
    Call,
    Move,
    _activations,
    candidate_ends,
    input_rows,
    plan_stage,
)
from edgeq.deploy.tflm import tflm_outputs
from edgeq.errors import UnsupportedOpError
from edgeq.tflite.write import write_model


def chain(seed: int, h: int = 23, w: int = 19, residual: bool = False, pool: bool = False):
    """A Keras chain exported by edgeq (calibrated ranges): conv 3x3 s2 -> depthwise 3x3 ->
    conv 1x1 (-> ADD of the conv 3x3's output) (-> max pool 3x3 s2 SAME) -> depthwise 3x3 s2
    VALID -> conv 1x1 -> Flatten (a RESHAPE, which ends the stage)."""
    import tf_keras as keras

    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.graph import capture
    from edgeq.learn.quantize import quantize
    from edgeq.tflite.read import read_model

    keras.utils.set_random_seed(seed)
    inp = keras.Input((h, w, 3))
    c1 = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    t = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(c1)
    t = keras.layers.Conv2D(8, 1)(t)
    if residual:
        t = keras.layers.ReLU()(keras.layers.Add()([t, c1]))
    if pool:
        t = keras.layers.MaxPooling2D(3, strides=2, padding="same")(t)
    t = keras.layers.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(t)
    t = keras.layers.Conv2D(12, 1, activation="relu")(t)
    model = keras.Model(inp, keras.layers.Flatten()(t))
    x = np.random.default_rng(seed).random((32, h, w, 3), np.float32)
    qgraph, _ = quantize(capture(model), x, "minmax", 8)
    return read_model(write_model(to_tflite_model(qgraph)))


def _inputs(model, n, seed=0):
    rng = np.random.default_rng(seed)
    return np.stack([random_input(model, rng).reshape(-1) for _ in range(n)])


def _host(model, tmp_path, **lowering):
    files = cgen.generate_engine(model, tmp_path, **lowering)
    return files, cgen.build_host_runner(files)


def test_the_schedule_reads_only_rows_that_are_there():
    model = chain(1, residual=True, pool=True)
    ends = candidate_ends(model)
    assert ends and max(ends) < len(model.ops)  # RESHAPE stops the stage
    readers = {}
    for op in model.ops:
        for t in _activations(model, op):
            readers.setdefault(t, []).append(op)
    for n in ends:
        for band in (1, 2, 3):
            stage = plan_stage(model, n, band)
            held = {stage.input: (0, model.tensors[stage.input].shape[1])}  # rows [lo, hi)
            for step in stage.steps:
                if isinstance(step, Move):  # only rows no reader will read again go
                    lo, hi = held[step.tensor]
                    assert lo == step.old_base < step.keep and step.keep + step.rows == hi
                    for op in readers[step.tensor]:
                        done = held.get(op.outputs[0], (0, 0))[1]
                        if done < model.tensors[op.outputs[0]].shape[1]:
                            assert input_rows(model, op, done, done + 1)[0] >= step.keep
                    held[step.tensor] = (step.keep, hi)
                    continue
                op = model.ops[step.op]
                for t, (read, rows, base) in zip(_activations(model, op), step.in_rows,
                                                 strict=True):
                    lo, hi = held[t]
                    assert base == lo <= read and read + rows <= hi
                    assert (read, read + rows) == input_rows(model, op, step.out_lo, step.out_hi)
                out = op.outputs[0]
                lo, hi = held.get(out, (0, 0))
                assert (step.out_lo, step.out_base) == (hi, lo)
                held[out] = (lo, step.out_hi)
                if out in stage.windows:
                    assert step.out_hi - lo <= stage.windows[out]
            assert held[stage.output] == (0, model.tensors[stage.output].shape[1])
            plan_memory(model, cgen.scratch_bytes(model), stage).check()


@pytest.mark.parametrize("residual, pool", [(False, False), (True, False), (False, True),
                                            (True, True)])
def test_streamed_chains_equal_tflm_on_the_host(residual, pool, tmp_path):
    model = chain(7 + residual + 2 * pool, residual=residual, pool=pool)
    x = _inputs(model, 6)
    expected = tflm_outputs(write_model(model), x)
    assert len(np.unique(expected)) > 20  # varied outputs: the check can fail
    ends = candidate_ends(model)
    for n in sorted({ends[0], ends[len(ends) // 2], ends[-1]}):  # short, middle, longest
        for band, flags in ((1, ()), (2, ("-DEDGEQ_FAST_EMULATED",)), (5, ())):
            # the fast paths (their C, emulating the DSP instructions) on bands too
            files = cgen.generate_engine(model, tmp_path / f"n{n}b{band}", stream=(n, band))
            exe = cgen.build_host_runner(files, cflags=(*cgen.HOST_CFLAGS, *flags))
            got = cgen.run_host(exe, x, expected.shape[1])
            assert np.array_equal(got, expected), (n, band)


def test_odd_sizes_and_valid_padding_stream_exactly(tmp_path):
    for seed, (h, w) in enumerate(((9, 31), (17, 6), (30, 30))):
        model = chain(20 + seed, h, w)
        x = _inputs(model, 4, seed)
        expected = tflm_outputs(write_model(model), x)
        n = max(candidate_ends(model))
        files, exe = _host(model, tmp_path / f"s{seed}", stream=(n, 1))
        assert np.array_equal(cgen.run_host(exe, x, expected.shape[1]), expected)


def test_a_stage_that_cannot_stream_is_refused(tmp_path):
    model = chain(3)
    with pytest.raises(UnsupportedOpError, match="cannot be streamed"):
        cgen.lower_model(model, stream=(len(model.ops), 1))


def test_a_budget_picks_the_cheapest_stage_that_fits(vww_int8_path):
    from edgeq.tflite.read import read_model

    model = read_model(vww_int8_path.read_bytes())
    plain = cgen.lower_model(model)
    assert plain.stage is None
    assert cgen.lower_model(model, arena_budget=plain.plan.arena_size).stage is None
    streamed = cgen.lower_model(model, arena_budget=40 * 1024)
    assert streamed.stage is not None and streamed.plan.arena_size <= 40 * 1024
    assert streamed.plan.arena_size < plain.plan.lower_bound  # below layer by layer
    # the image is read in place and the stage's output overwrites the rows it is done with
    assert streamed.stage.output_in_input
    calls = sum(isinstance(s, Call) for s in streamed.stage.steps)
    assert calls >= 2 * len(streamed.stage.ops)


def test_vww_streamed_under_40_kib_equals_tflm_on_the_host(vww_int8_path, coco_vww_dir,
                                                           tmp_path):
    from test_in_place_io import _vww_photos

    from edgeq.tflite.read import read_model

    data = vww_int8_path.read_bytes()
    x = _vww_photos(coco_vww_dir, 6)
    expected = tflm_outputs(data, x)
    files, exe = _host(read_model(data), tmp_path, arena_budget=40 * 1024)
    assert files.stage is not None and files.arena_size <= 40 * 1024
    assert np.array_equal(cgen.run_host(exe, x, expected.shape[1]), expected)


def test_vww_streamed_under_qemu_equals_tflm_and_links_the_planned_arena(vww_int8_path,
                                                                        coco_vww_dir, tmp_path):
    import subprocess

    from test_in_place_io import _vww_photos

    data = vww_int8_path.read_bytes()
    x = _vww_photos(coco_vww_dir, 4)
    expected = tflm_outputs(data, x)
    fw = build_firmware(vww_int8_path, "mps2-an500", tmp_path / "fw", arena_budget=40 * 1024)
    assert fw.engine.stage is not None and fw.engine.arena_size <= 40 * 1024
    result = run_qemu(fw.elf, x, timeout=300)
    assert np.array_equal(result.outputs, expected)
    # the arena the firmware links is the planned one (no larger buffer hides an overrun)
    symbols = subprocess.run(["arm-none-eabi-nm", "--print-size", str(fw.elf)],
                             capture_output=True, text=True, check=True).stdout
    arena = next(line.split() for line in symbols.splitlines() if line.endswith(" edgeq_arena"))
    assert int(arena[1], 16) == fw.engine.arena_size
    assert fw.sizes["bss"] < 40 * 1024 + 1024


def test_firmware_command_takes_a_ram_budget(vww_int8_path, tmp_path):
    from click.testing import CliRunner

    from edgeq.cli import main

    result = CliRunner().invoke(main, ["firmware", str(vww_int8_path), "--board", "mps2-an500",
                                       "--ram-budget-kb", "40", "--out", str(tmp_path / "fw")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "streamed" in text and "40,960 bytes" in text
    arena = int(text.split("arena ")[1].split(" ")[0].replace(",", ""))
    assert arena <= 40 * 1024


def test_the_person_detector_fits_a_64_kib_board_only_streamed(vww_int8_path, tmp_path):
    from edgeq.boards import load_board
    from edgeq.deploy.firmware import STACK_BYTES
    from edgeq.tflite.read import read_model

    board = load_board("nrf52832")
    assert board.ram_kib == 64
    layer_by_layer = cgen.lower_model(read_model(vww_int8_path.read_bytes()))
    assert layer_by_layer.plan.arena_size > board.arena_bytes  # did not fit before
    fw = build_firmware(vww_int8_path, board, tmp_path / "fw")
    assert fw.engine.stage is not None and fw.engine.arena_size <= board.arena_bytes
    assert fw.sizes["data"] + fw.sizes["bss"] + STACK_BYTES <= 64 * 1024
