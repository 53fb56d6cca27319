"""`edgeq build` end to end on small models, and its failure modes: nothing half-written."""

import json

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.build import BuildConfig, run_build
from edgeq.cli import main
from edgeq.errors import BoardFitError, OutputError, UnsupportedLayerError
from edgeq.outputs import MARKER, staged_folder


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small trained-ish Keras 2 model and an .npz of inputs it separates."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("small")
    rng = np.random.default_rng(0)
    x = rng.random((96, 16, 16, 1), np.float32)
    y = (x[:, :8].mean(axis=(1, 2, 3)) > x[:, 8:].mean(axis=(1, 2, 3))).astype(np.int64)
    x[y == 1] = 0.4 + 0.6 * x[y == 1]  # class 1 brighter: what global pooling can see (a
    x[y == 0] = 0.6 * x[y == 0]  # model at chance stops the build)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)  # 240 steps: BatchNorm statistics settle
    model.save(d / "small.h5")
    np.savez(d / "data.npz", x=x, y=y)
    return d


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
    assert report["fit"]["flash_bytes"] == len(tflite)
    assert 0 < report["fit"]["arena_bytes"] < report["fit"]["arena_budget"]
    rows = {r["name"]: r for r in report["accuracy"]}
    assert any("TFLM" in n for n in rows) and any("LiteRT" in n for n in rows)
    assert report["check"]["max_abs_diff"] <= 1
    assert f"const unsigned int model_data_len = {len(tflite)}u;" in (out / "model_data.c").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.")]


def _board_file(tmp_path, flash_kib, arena_kib):
    path = tmp_path / "tiny_board.yaml"
    path.write_text(f"schema: 1\nname: tiny\ndescription: t\ncore: cortex-m4\nclock_mhz: 48\nfpu: null\n"
                    f"dsp: false\nflash_kib: {flash_kib}\nram_kib: {arena_kib}\narena_kib: {arena_kib}\n"
                    "memory: {flash: {origin: '0x0', kib: 1}}\n")
    return str(path)


def test_a_failed_build_leaves_the_previous_output_as_it_was(small, tmp_path):
    out = tmp_path / "out"
    with staged_folder(out) as previous:  # an earlier build: edgeq's own folder
        (previous / "keep.txt").write_text("previous build")
    cfg = BuildConfig(board=_board_file(tmp_path, 1, 1), keras_model=str(small / "small.h5"),
                      data=str(small / "data.npz"), out=str(out))
    with pytest.raises(BoardFitError) as e:
        run_build(cfg)
    assert "more than the 1,024" in e.value.message and "bytes of flash" in e.value.message
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
    assert report["check"]["max_abs_diff"] <= 1  # contract 1 (LiteRT side)


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
    assert (tmp_path / "o" / "model.tflite").stat().st_size == result.report["fit"]["flash_bytes"]
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
    assert report["check"]["max_abs_diff"] <= 1  # contract 1 against LiteRT
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
    assert report["check"]["max_abs_diff"] <= 1 and "bottlenecks" in (out / "report.html").read_text()
    both = CliRunner().invoke(main, ["build", "--keras-model", str(small / "small.h5"), "--train",
                                     "--zero-shot", "--out", str(tmp_path / "x")])
    assert both.exit_code == 2 and "exclude each other" in both.output


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
    assert report["check"]["max_abs_diff"] <= 1 and report["check"]["tflm_litert_agreement"] >= 0.995
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
