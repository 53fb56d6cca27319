"""`edgeq build` end to end on small models, and its failure modes: nothing half-written."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.build import BuildConfig, run_build
from edgeq.cli import main
from edgeq.errors import BoardFitError, OutputError, UnsupportedLayerError
from edgeq.outputs import MARKER, staged_folder


def _two_halves(rng, n: int):
    """n random 16x16 images, labelled by which half is brighter."""
    x = rng.random((n, 16, 16, 1), np.float32)
    return x, (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype(np.int64)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small trained-ish Keras 2 model and an .npz of inputs it separates."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("small")
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    fit_two_halves(keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)),
                   d / "small.h5")
    return d


def fit_two_halves(model, path) -> None:
    """Train `model` (16x16x1 in, 2 classes out) on 96 _two_halves images with class 1
    brighter (what global pooling can see: a model at chance stops the build); save it to
    `path` and the images and labels to data.npz beside it."""
    x, y = _two_halves(np.random.default_rng(0), 96)
    x[y == 1] = 0.4 + 0.6 * x[y == 1]
    x[y == 0] = 0.6 * x[y == 0]
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)  # 240 steps: BatchNorm statistics settle
    model.save(path)
    np.savez(path.parent / "data.npz", x=x, y=y)


def test_build_writes_every_output(small, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--board", "cortex-m7", "--keras-model",
                                       str(small / "small.h5"), "--data", str(small / "data.npz"),
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    names = {p.name for p in out.iterdir()}
    assert {"model.tflite", "model_data.h", "model_data.c", "report.json", "report.html"} <= names
    report = json.loads((out / "report.json").read_text())
    tflite = (out / "model.tflite").read_bytes()
    assert report["fit"]["source"] == "linked ELF (arm-none-eabi-size)"
    assert 0 < report["fit"]["arena_bytes"] < report["fit"]["arena_budget"]
    from edgeq.deploy.tflm import measure_arena

    assert report["fit"]["tflm_arena_bytes"] == measure_arena(tflite)  # the comparison
    rows = {r["name"]: r for r in report["accuracy"]}
    assert any("TFLM" in n for n in rows) and any("LiteRT" in n for n in rows)
    assert report["check"]["max_abs_diff"] == 0
    assert f"const unsigned int model_data_len = {len(tflite)}u;" in (out / "model_data.c").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def _board_file(tmp_path, flash_kib, arena_kib):
    path = tmp_path / "tiny_board.yaml"
    path.write_text(f"schema: 1\nname: tiny\ndescription: t\ncore: cortex-m4\nclock_mhz: 48\nfpu: null\n"
                    f"dsp: false\nflash_kib: {flash_kib}\nram_kib: {arena_kib}\narena_kib: {arena_kib}\n"
                    f"memory: {{flash: {{origin: '0x0', kib: {flash_kib}}}, "
                    f"ram: {{origin: '0x20000000', kib: {arena_kib}}}}}\n")
    return str(path)


def test_a_failed_build_leaves_the_previous_output_as_it_was(small, tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as previous:  # an earlier build: edgeq's own folder
        (previous / "keep.txt").write_text("previous build")
    cfg = BuildConfig(board=_board_file(tmp_path, 1, 1), keras_model=str(small / "small.h5"),
                      data=str(small / "data.npz"), out=str(out))
    with pytest.raises(BoardFitError) as e:
        run_build(cfg)
    assert "flash:" in e.value.message and "more than the 1,024 of tiny" in e.value.message
    assert "linked ELF" in e.value.message  # the numbers are the ELF's, measured
    assert (out / "keep.txt").read_text() == "previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "tiny_board.yaml"]


def test_an_interrupted_build_leaves_the_previous_output(small, tmp_path, monkeypatch):
    out = tmp_path / "out"
    with staged_folder(out) as previous:  # an earlier build: edgeq's own folder
        (previous / "keep.txt").write_text("previous build")

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("edgeq.report.write_report", interrupt)
    cfg = BuildConfig(keras_model=str(small / "small.h5"), data=str(small / "data.npz"), out=str(out))
    with pytest.raises(KeyboardInterrupt):
        run_build(cfg)
    assert sorted(p.name for p in out.iterdir()) == [MARKER, "keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_unwritable_output(small, tmp_path):
    (tmp_path / "file").write_text("x")  # a parent that is a file cannot hold a folder, even for root
    with pytest.raises(OutputError, match="cannot be created"):
        run_build(BuildConfig(keras_model=str(small / "small.h5"), out=str(tmp_path / "file" / "out")))


def test_output_path_that_is_a_file(small, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="not a folder"):
        run_build(BuildConfig(keras_model=str(small / "small.h5"), out=str(tmp_path / "file")))


def test_unsupported_layer_is_named(tmp_path):
    import tf_keras as keras

    inp = keras.Input((8, 4))
    model = keras.Model(inp, keras.layers.LSTM(2)(inp))
    model.save(tmp_path / "lstm.h5")
    with pytest.raises(UnsupportedLayerError) as e:
        run_build(BuildConfig(keras_model=str(tmp_path / "lstm.h5"), out=str(tmp_path / "o")))
    assert "lstm" in e.value.message.lower() and "Conv2D" in str(e.value)


def test_input_shape_mismatch(small, tmp_path):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((16, 8, 8, 1), np.float32), y=np.zeros(16))
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"), "--data",
                                       str(tmp_path / "wrong.npz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "the model wants (16, 16, 1)" in result.output
    assert "Traceback" not in result.output


def test_too_few_calibration_samples(small, tmp_path):
    np.savez(tmp_path / "few.npz", x=np.zeros((6, 16, 16, 1), np.float32), y=np.zeros(6))
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"), "--data",
                                       str(tmp_path / "few.npz"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "calibration samples" in result.output


def test_build_int4_with_edgeq_writer_keeps_the_contracts(small, tmp_path):
    out = tmp_path / "out4"
    result = run_build(BuildConfig(keras_model=str(small / "small.h5"), data=str(small / "data.npz"),
                                   out=str(out), bits=4, iters=30))
    report = result.report
    bits = list(report["model"]["bits"].values())
    assert bits == [8, 4, 8]  # conv, depthwise, dense: the first and last layer stay at 8 bits
    rows = {r["name"]: r for r in report["accuracy"]}
    assert report["quantize"]["method"] == "brecq"  # the default below 8 bits
    assert {r["name"] for r in report["quantize"]["layers"]} == set(report["model"]["bits"])
    sim = rows["edgeq simulated W4A8 (Keras side)"]
    assert sim["agreement_with"] == "TFLM" and sim["agreement"] >= 0.995  # contract 2
    assert any(n.startswith("baseline: TensorFlow INT8 PTQ") for n in rows)  # contract 4
    assert report["check"]["max_abs_diff"] == 0  # contract 1 (LiteRT side)


def test_keras3_model_builds(tmp_path, small):
    import keras

    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    h = keras.layers.MaxPooling2D()(h)
    h = keras.layers.Flatten()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.save(tmp_path / "k3.keras")
    # untrained, so at chance: force builds it anyway (what is tested is reading Keras 3)
    result = run_build(BuildConfig(keras_model=str(tmp_path / "k3.keras"), data=str(small / "data.npz"),
                                   out=str(tmp_path / "o"), force=True))
    tflite = (tmp_path / "o" / "model.tflite").stat().st_size
    assert tflite == result.report["model"]["tflite_bytes"]
    assert result.report["fit"]["flash_bytes"] > tflite  # the firmware: weights, engine, libc
    assert any(r["name"].startswith("baseline") for r in result.report["accuracy"])


def _kernels(model) -> dict[str, tuple[str, int, int, int]]:
    """{layer: (dtype, min, max, distinct values)} of the weight tensors of a .tflite."""
    return {t.name.removesuffix("/kernel"): (t.dtype, int(t.data.min()), int(t.data.max()),
                                              len(np.unique(t.data)))
            for t in model.tensors if t.name.endswith("/kernel")}


def _assert_w4_plan(model, plan: dict[str, int]):
    """First and last layer INT8, every other INT4 with 4-bit integers (most of the grid)."""
    kernels = _kernels(model)
    names = [model.tensors[i].name.removesuffix("/kernel") for op in model.ops
             for i in op.inputs if model.tensors[i].name.endswith("/kernel")]  # graph order
    assert set(kernels) == set(names) == set(plan) and len(names) >= 3
    assert plan[names[0]] == plan[names[-1]] == 8 and {plan[n] for n in names[1:-1]} == {4}
    for name in names:
        dtype, lo, hi, distinct = kernels[name]
        if plan[name] == 4:
            assert dtype == "int4" and -8 <= lo and hi <= 7 and distinct >= 8, kernels[name]
        else:
            assert dtype == "int8" and distinct > 8, kernels[name]


def test_export_command_writes_int4_and_float_io(small, tmp_path):
    from edgeq.tflite.read import read_model

    out = tmp_path / "m4.tflite"
    result = CliRunner().invoke(main, ["export", str(small / "small.h5"), "--data", str(small / "data.npz"),
                                       "--bits", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = read_model(out.read_bytes())
    meta = json.loads(model.metadata["edgeq"])
    assert meta["io_dtype"] == "int8" and model.input_tensors[0].dtype == "int8"
    _assert_w4_plan(model, meta["bits"])
    # --bits 8 --io float32: every kernel INT8, float input and output around the int8 model.
    out8 = tmp_path / "m8.tflite"
    result = CliRunner().invoke(main, ["export", str(small / "small.h5"), "--data", str(small / "data.npz"),
                                       "--bits", "8", "--io", "float32", "--out", str(out8)])
    assert result.exit_code == 0, result.output
    model8 = read_model(out8.read_bytes())
    assert {k[0] for k in _kernels(model8).values()} == {"int8"}
    assert model8.input_tensors[0].dtype == model8.output_tensors[0].dtype == "float32"
    assert [op.kind for op in model8.ops][0] == "QUANTIZE" and model8.ops[-1].kind == "DEQUANTIZE"


def test_quantize_command_writes_the_model_and_its_report(small, tmp_path):
    from edgeq.tflite.read import read_model

    out, rep = tmp_path / "q.tflite", tmp_path / "q.json"
    result = CliRunner().invoke(main, ["quantize", str(small / "small.h5"), "--data", str(small / "data.npz"),
                                       "--method", "adaround", "--bits", "4", "--iters", "20",
                                       "--out", str(out), "--report", str(rep)])
    assert result.exit_code == 0, result.output
    report = json.loads(rep.read_text())
    model = read_model(out.read_bytes())
    assert report["method"] == "adaround"
    assert report["plan"] == json.loads(model.metadata["edgeq"])["bits"]
    _assert_w4_plan(model, report["plan"])  # what --bits 4 asks for, read from the file itself
    unknown = CliRunner().invoke(main, ["quantize", str(small / "small.h5"), "--data",
                                        str(small / "data.npz"), "--method", "magic"])
    assert unknown.exit_code == 2 and "brecq" in unknown.output


def _input_qparams(tflite: bytes):
    from edgeq.tflite.read import read_model

    t = read_model(tflite).input_tensors[0]
    return float(t.scale[0]), int(t.zero_point[0])


def test_zero_shot_build_needs_no_data(small, tmp_path):
    from edgeq.data import load_npz

    out = tmp_path / "zs"
    args = ["build", "--keras-model", str(small / "small.h5"), "--zero-shot", "--bits", "4",
            "--calib-samples", "16", "--synth-iterations", "5", "--iters", "5", "--no-baseline"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["data"]["source"] == "none" and "Genie-D" in report["data"]["calibration"]
    assert report["quantize"]["method"] == "genie" and report["zero_shot"]["samples"] == 16
    assert report["check"]["max_abs_diff"] == 0  # contract 1 against LiteRT
    assert all(r["accuracy"] is None for r in report["accuracy"])  # no labels exist
    assert any(r["agreement"] is not None for r in report["accuracy"])
    synthetic = load_npz(out / "synthetic.npz")
    assert synthetic.x.shape == (16, 16, 16, 1) and 0 <= synthetic.x.min() <= synthetic.x.max() <= 1
    assert "Genie-D synthetic calibration images" in (out / "report.html").read_text()
    # the input tensor spans the model's input domain [0, 1], not what the images happen to cover
    scale, zero_point = _input_qparams((out / "model.tflite").read_bytes())
    assert zero_point == -128 and scale == pytest.approx(1 / 255, rel=1e-6)

    with_data = CliRunner().invoke(main, [*args, "--data", str(small / "data.npz"),
                                          "--out", str(tmp_path / "zs_eval")])
    assert with_data.exit_code == 0, with_data.output
    report = json.loads((tmp_path / "zs_eval" / "report.json").read_text())
    assert report["data"]["calibration_samples"] == 16  # synthetic, not the 96 real samples
    assert all(0 <= r["accuracy"] <= 1 for r in report["accuracy"])


def test_input_range_pins_the_input_tensor(small):
    import tf_keras as keras

    from edgeq.learn.export import to_tflite_model
    from edgeq.learn.quantize import quantize
    from edgeq.tflite.write import write_model

    model = keras.models.load_model(small / "small.h5", compile=False)
    dim = 0.5 * np.random.default_rng(1).random((32, 16, 16, 1), np.float32)  # covers [0, 0.5]
    observed = write_model(to_tflite_model(quantize(model, dim, "minmax", 8, progress=False)[0]))
    pinned = write_model(to_tflite_model(quantize(model, dim, "minmax", 8, progress=False,
                                                  input_range=(0.0, 1.0))[0]))
    assert _input_qparams(observed)[0] == pytest.approx(dim.max() / 255, rel=1e-3)
    assert _input_qparams(pinned) == (pytest.approx(1 / 255, rel=1e-6), -128)


def test_build_train_runs_qgt_and_ranks_bottlenecks(small, tmp_path):
    out = tmp_path / "qgt"
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"),
                                       "--data", str(small / "data.npz"), "--train", "--bits", "2",
                                       "--train-epochs", "2", "--no-baseline", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["quantize"]["method"] == "qgt" and 2 in report["quantize"]["plan"].values()
    qgt = report["qgt"]
    assert qgt["straight_through"] and len(qgt["history"]) == 2
    ranks = [row["rank"] for row in qgt["bottlenecks"]]
    assert sorted(ranks) == ranks and len(ranks) == len(report["quantize"]["plan"])
    assert report["check"]["max_abs_diff"] == 0 and "bottlenecks" in (out / "report.html").read_text()
    both = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"), "--train",
                                     "--zero-shot", "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "exclude each other" in both.output


def test_build_train_mixed_plans_under_the_budget(small, tmp_path):
    """--train --bits mixed --budget-kb: QGT trains toward the integer program's plan, whose
    budget counts what the engine stores: with room for every layer at 8 bits the plan is all
    8 (QGT's own bottleneck plan, used without a budget, starts the inner layer at 2); at
    0.25 KiB, where all-8 does not fit, it mixes widths and fits."""
    from edgeq.deploy import cgen
    from edgeq.tflite.read import read_model

    plans = {}
    for budget in ("100", "0.25"):
        out = tmp_path / f"qgt_mixed_{budget}"
        result = CliRunner().invoke(main, [
            "build", "--keras-model", str(small / "small.h5"), "--data", str(small / "data.npz"),
            "--train", "--bits", "mixed", "--budget-kb", budget, "--train-epochs", "1",
            "--no-baseline", "--no-firmware", "--out", str(out)])
        assert result.exit_code == 0, result.output
        quantized = json.loads((out / "report.json").read_text())["quantize"]
        plans[budget] = quantized["plan"]
        stored = cgen.lower_model(read_model((out / "model.tflite").read_bytes())).weight_bytes
        assert stored <= float(budget) * 1024
        # the report gives logical and stored bytes for the QGT file too
        assert quantized["board_weight_bytes"] + quantized["board_param_bytes"] == stored
        assert 0 < quantized["weight_bytes"] <= quantized["stored_weight_bytes"]
    assert set(plans["100"].values()) == {8}
    assert len(set(plans["0.25"].values())) > 1


def test_build_mixed_budget_defaults_to_the_boards_flash(small, tmp_path):
    """--bits mixed without --budget-kb: the budget is the board's flash (stm32h743: 2 MiB)."""
    from edgeq.boards import load_board

    out = tmp_path / "mixed_default"
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"),
                                       "--data", str(small / "data.npz"), "--bits", "mixed",
                                       "--method", "minmax", "--no-baseline", "--no-firmware",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    board = load_board(report["config"]["board"])
    assert report["quantize"]["mixed"]["budget_bytes"] == board.flash_kib * 1024


def test_rex_from_build_and_quantize(small, tmp_path):
    from edgeq.tflite.read import read_model

    out = tmp_path / "rex"
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"),
                                       "--data", str(small / "data.npz"), "--method", "rex",
                                       "--bits", "4", "--expansion", "2", "--no-baseline",
                                       "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert report["quantize"]["method"] == "rex" and report["rex"]["expansion"] == 2
    assert report["check"]["max_abs_diff"] == 0 and report["check"]["tflm_litert_agreement"] >= 0.995
    kinds = [op.kind for op in read_model((out / "model.tflite").read_bytes()).ops]
    assert kinds.count("ADD") >= 2  # the orders really are parallel branches summed by ADD
    q = tmp_path / "rex.tflite"
    result = CliRunner().invoke(main, ["quantize", str(small / "small.h5"), "--data",
                                       str(small / "data.npz"), "--method", "rex", "--bits", "2",
                                       "--expansion", "3", "--out", str(q)])
    assert result.exit_code == 0, result.output
    assert read_model(q.read_bytes()).ops and "3 orders" in " ".join(result.output.split())
    for command in (["build", "--keras-model"], ["quantize"]):  # REx has one width
        mixed = CliRunner().invoke(main, [*command, str(small / "small.h5"), "--data",
                                          str(small / "data.npz"), "--method", "rex", "--bits",
                                          "mixed", "--budget-kb", "1", "--out",
                                          str(tmp_path / "mixed")])
        assert mixed.exit_code == 2 and "one width" in mixed.output, mixed.output
        assert not (tmp_path / "mixed").exists()


# ------------------------------------------------------------------ the board path (#13)

def _arm_size(elf) -> tuple[int, int, int]:
    import subprocess

    line = subprocess.run(["arm-none-eabi-size", str(elf)], capture_output=True, text=True,
                          check=True).stdout.splitlines()[1].split()
    return int(line[0]), int(line[1]), int(line[2])


def _vector_bytes(elf) -> int:
    import subprocess

    listing = subprocess.run(["arm-none-eabi-nm", "--print-size", str(elf)], capture_output=True,
                             text=True, check=True).stdout.splitlines()
    return sum(int(p[1], 16) for p in (line.split() for line in listing)
               if len(p) == 4 and p[3].startswith("edgeq_test_"))


def test_cortex_m7_build_ends_on_the_board(small, tmp_path):
    from edgeq.deploy.firmware import STACK_BYTES

    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--board", "cortex-m7", "--keras-model",
                                       str(small / "small.h5"), "--data", str(small / "data.npz"),
                                       "--out", str(out), "--no-baseline",
                                       "--firmware-eval-limit", "16", "--test-inputs", "3"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    elf = out / "firmware" / "fw.elf"
    text, data, bss = _arm_size(elf)
    vectors = _vector_bytes(elf)
    assert vectors >= 3 * (16 * 16 + 2)  # 3 inputs and their expected outputs, in flash
    fit = report["fit"]
    assert (fit["flash_bytes"], fit["ram_bytes"]) == (text + data - vectors, data + bss + STACK_BYTES)
    assert fit["test_vector_bytes"] == vectors and fit["flash_budget"] == 2048 * 1024
    assert (out / "firmware" / "fw.hex").is_file() and (out / "firmware" / "fw.bin").is_file()
    firmware = report["firmware"]
    assert firmware["board"] == "stm32h743" and firmware["test_inputs"] == 3
    run = firmware["emulated"]
    assert (run["emulator"], run["compiled_for"], run["samples"]) == ("mps2-an500", "stm32h743", 16)
    assert run["identical_to_tflm"] and run["mismatched_values"] == 0
    assert run["instructions_per_inference"] > report["firmware"]["macs"]
    assert run["latency_ms_estimate"] == pytest.approx(run["instructions_per_inference"] / 480e3,
                                                       abs=1e-3)
    assert "stratified" in run["chosen"] and sum(map(sum, run["confusion"])) == 16
    rows = [r for r in report["accuracy"] if "QEMU" in r["name"]]
    assert len(rows) == 1 and rows[0]["samples"] == 16 and rows[0]["agreement_with"] == "TFLM"
    console = " ".join(result.output.split())  # rich wraps at the terminal's width
    assert "on QEMU mps2-an500 (16 inputs" in console and "outputs identical to TFLM's" in console
    assert "instructions per inference" in console and "not measured cycles" in console
    html = (out / "report.html").read_text()
    assert "not measured" in html and "TFLM&#39;s arena" in html
    # the ELF is the board's own: it flashes from the build folder, and only to that board
    flashed = CliRunner().invoke(main, ["flash", str(out), "--dry-run"])
    assert flashed.exit_code == 0 and "target/stm32h7x.cfg" in flashed.output
    assert str(elf.resolve()) in flashed.output
    other = CliRunner().invoke(main, ["flash", str(out), "--board", "nrf52840", "--dry-run"])
    assert other.exit_code == 2 and "built for stm32h743" in other.output


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A model whose 8-bit weights are mostly one inner Dense layer (32 KiB)."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("wide")
    x, y = _two_halves(np.random.default_rng(1), 64)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.Flatten()(h)
    h = keras.layers.Dense(64, activation="relu")(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.save(d / "wide.h5")
    np.savez(d / "data.npz", x=x, y=y)
    return d


def _card(tmp_path, flash_kib, ram_kib=1024, arena_kib=512):
    """The STM32H743's card and templates with other budgets."""
    path = tmp_path / f"h7-{flash_kib}-{ram_kib}.yaml"
    path.write_text(
        "schema: 1\nname: small-h7\ndescription: an STM32H743 with less memory\ncore: cortex-m7\n"
        f"clock_mhz: 480\nfpu: fpv5-d16\ndsp: true\nflash_kib: {flash_kib}\nram_kib: {ram_kib}\n"
        f"arena_kib: {arena_kib}\ntemplate: stm32h743\n"
        "memory:\n  flash: {origin: '0x08000000', kib: 2048}\n"
        "  ram: {origin: '0x24000000', kib: 512}\n  stack: {origin: '0x20000000', kib: 128}\n"
        "flasher: {tool: openocd, interface: interface/stlink.cfg, target: target/stm32h7x.cfg}\n"
        "emulate: null\n")
    return str(path)


def _wide_build(wide, tmp_path, board, out="o", *extra):
    cfg = BuildConfig(board=board, keras_model=str(wide / "wide.h5"), data=str(wide / "data.npz"),
                      out=str(tmp_path / out), baseline=False, firmware_eval_limit=0,
                      test_inputs=0, force=True, method="minmax")
    for key, value in extra:
        setattr(cfg, key, value)
    return run_build(cfg)


def test_over_budget_flash_names_the_elfs_numbers_and_a_plan_that_fits(wide, tmp_path):
    fits = _wide_build(wide, tmp_path, "stm32h743", "big").report["fit"]
    flash = fits["flash_bytes"]
    budget_kib = (flash - 8 * 1024) // 1024  # 8 to 9 KiB short: 4-bit weights save 16 KiB
    board = _card(tmp_path, budget_kib)
    with pytest.raises(BoardFitError) as e:
        _wide_build(wide, tmp_path, board)
    message, hint = e.value.message, e.value.hint
    assert f"flash: {flash:,} bytes, {flash - budget_kib * 1024:,} more than the " \
           f"{budget_kib * 1024:,} of small-h7" in message and "linked ELF" in message
    assert "`--bits 4`" in hint and "--bits mixed --budget-kb" in hint
    assert "computed by the integer program" in hint and "1 of 3 layers at 4 bits" in hint
    assert not (tmp_path / "o").exists()
    # what the hint says fits, fits
    fit = _wide_build(wide, tmp_path, board, "o", ("bits", 4)).report["fit"]
    assert fit["flash_bytes"] <= budget_kib * 1024 < flash


def test_over_budget_ram_says_fewer_bits_do_not_help(wide, tmp_path):
    with pytest.raises(BoardFitError) as e:
        _wide_build(wide, tmp_path, _card(tmp_path, 2048, ram_kib=16, arena_kib=1))
    assert "RAM:" in e.value.message and "(data + bss + 16,384 of stack)" in e.value.message
    assert "tensor arena:" in e.value.message and "more than the 1,024 small-h7 has" in e.value.message
    assert "activations stay 8-bit" in e.value.hint and "--bits 4" not in e.value.hint


def test_no_firmware_and_no_toolchain(small, tmp_path, monkeypatch):
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"), "--data",
                                       str(small / "data.npz"), "--out", str(tmp_path / "nofw"),
                                       "--no-baseline", "--no-firmware"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "nofw" / "report.json").read_text())
    assert not (tmp_path / "nofw" / "firmware").exists()
    assert report["fit"]["source"].startswith("memory plan")
    assert report["firmware"] == {"built": False, "reason": "--no-firmware"}
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))  # no arm-none-eabi-gcc, no QEMU
    with pytest.warns(UserWarning, match="gcc-arm-none-eabi"):
        result = run_build(BuildConfig(keras_model=str(small / "small.h5"),
                                       data=str(small / "data.npz"), out=str(tmp_path / "src"),
                                       baseline=False))
    folder = tmp_path / "src" / "firmware"
    assert {"main.c", "edgeq_model.c", "Makefile", "link.ld", "README.md"} <= {
        p.name for p in folder.iterdir()}
    assert not (folder / "fw.elf").exists()
    report = result.report
    assert report["fit"]["source"].startswith("memory plan")
    # RAM: the arena, the static per-channel parameters of a streamed stage's ops (int32 bias
    # and multiplier, int8 shift per slot; none here) and the stack
    slots = re.search(r"edgeq_channel_bias\[(\d+)\]", (folder / "edgeq_model.c").read_text())
    assert report["fit"]["ram_bytes"] == (report["fit"]["arena_bytes"]
                                          + 9 * (int(slots.group(1)) if slots else 0)
                                          + report["fit"]["stack_bytes"])
    assert report["firmware"]["built"] is False and "apt-get install" in report["firmware"]["reason"]
    assert "no arm-none-eabi-gcc" in report["firmware"]["emulated"]["reason"]


def test_a_core_qemu_does_not_emulate_is_named(small, tmp_path):
    card = tmp_path / "m33.yaml"
    card.write_text("schema: 1\nname: m33\ndescription: a Cortex-M33 board\ncore: cortex-m33\n"
                    "clock_mhz: 64\nfpu: null\ndsp: false\nflash_kib: 1024\nram_kib: 256\n"
                    "arena_kib: 128\nmemory: {flash: {origin: '0x0', kib: 1024}, "
                    "ram: {origin: '0x20000000', kib: 256}}\n")
    result = run_build(BuildConfig(board=str(card), keras_model=str(small / "small.h5"),
                                   data=str(small / "data.npz"), out=str(tmp_path / "o"),
                                   baseline=False))
    run = result.report["firmware"]["emulated"]
    assert run["ran"] is False and "QEMU emulates no cortex-m33 board" in run["reason"]
    assert result.report["fit"]["source"] == "linked ELF (arm-none-eabi-size)"
    assert not any("QEMU" in r["name"] for r in result.report["accuracy"])


def test_ram_budget_streams_the_first_layers_on_the_board_and_under_qemu(small, tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"),
                                       "--data", str(small / "data.npz"), "--out", str(out),
                                       "--no-baseline", "--firmware-eval-limit", "8",
                                       "--ram-budget-kb", "2.25"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    streamed = report["firmware"]["streamed"]
    assert streamed["arena_bytes"] <= 2.25 * 1024 < streamed["layer_by_layer_bytes"]
    assert report["fit"]["arena_bytes"] == streamed["arena_bytes"]
    timeline = streamed["timeline"]
    assert max(timeline["streamed"]) < max(timeline["layer by layer"])
    assert "edgeq_run_stage" in (out / "firmware" / "edgeq_model.c").read_text()
    assert report["firmware"]["emulated"]["identical_to_tflm"]  # the streamed engine, on QEMU
    assert "Arena bytes alive per op" in (out / "report.html").read_text()
    # a budget no stage meets stops the build, before anything is written
    with pytest.raises(BoardFitError, match="more than --ram-budget-kb 1"):
        run_build(BuildConfig(keras_model=str(small / "small.h5"), data=str(small / "data.npz"),
                              out=str(tmp_path / "tight"), baseline=False, ram_budget_kb=1))
    assert not (tmp_path / "tight").exists()


def test_a_card_whose_memory_map_is_smaller_than_its_budgets_is_named(wide, tmp_path):
    card = tmp_path / "map.yaml"
    card.write_text(open(_card(tmp_path, 2048)).read().replace(
        "flash: {origin: '0x08000000', kib: 2048}", "flash: {origin: '0x08000000', kib: 16}"))
    with pytest.raises(BoardFitError) as e:
        _wide_build(wide, tmp_path, str(card))
    assert "fits small-h7's budgets but not its memory map" in e.value.message
    assert str(card) in e.value.message and "overflow" in e.value.message.lower()
    assert not (tmp_path / "o").exists()
