"""Command-line options that no other test reaches, each through the real CLI on a small model,
each checked by its effect (TESTING.md lists which test holds which option)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from test_build import small  # noqa: F401  (the fixture)

from edgeq.cli import main
from edgeq.deploy import cgen
from edgeq.tflite.read import read_model


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _activation_scales(path) -> dict[str, float]:
    model = read_model(path.read_bytes())
    return {t.name: float(t.scale[0]) for t in model.tensors
            if not t.is_constant and t.scale is not None and t.dtype == "int8"}


@pytest.fixture(scope="module")
def rex_model(small, tmp_path_factory):  # noqa: F811
    """The small task with an inner 3x3 convolution: REx splits channels of convolutions."""
    import tf_keras as keras

    data = np.load(small / "data.npz")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(data["x"], data["y"], epochs=20, batch_size=8, verbose=0)
    path = tmp_path_factory.mktemp("rex") / "rex.h5"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def lambda_model(tmp_path_factory):
    import tf_keras as keras

    d = tmp_path_factory.mktemp("lambda")
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    h = keras.layers.Lambda(lambda t: t * 2)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)).save(d / "lam.h5")
    return d / "lam.h5"


@pytest.mark.parametrize("command", ["build", "export", "quantize", "synth"])
def test_unsafe_lifts_only_the_load_refusal(command, lambda_model, small, tmp_path):  # noqa: F811
    """Without --unsafe the Lambda layer is refused at load time; with it the model loads and
    the next check (graph capture: Lambda cannot be deployed) names the layer instead."""
    model = ["--keras-model", lambda_model] if command == "build" else [lambda_model]
    data = [] if command == "synth" else ["--data", small / "data.npz"]
    out = ["--out", tmp_path / ("out" if command == "build" else "m.npz" if command == "synth"
                                else "m.tflite")]
    refused = _run(command, *model, *data, *out)
    assert refused.exit_code == 2 and "refusing to load Lambda" in refused.output
    assert "--unsafe" in refused.output
    loaded = _run(command, *model, *data, *out, "--unsafe")
    assert loaded.exit_code == 2, loaded.output
    assert "refusing to load" not in loaded.output and "Lambda" in loaded.output
    assert "Traceback" not in loaded.output


def test_export_calib_samples_and_weights(small, tmp_path):  # noqa: F811
    import tf_keras as keras

    h5, data = small / "small.h5", small / "data.npz"
    assert _run("export", h5, "--data", data, "--calib-samples", 7, "--out", tmp_path / "x.tflite"
                ).exit_code == 2  # below the minimum: a usage error
    full, few = tmp_path / "full.tflite", tmp_path / "few.tflite"
    assert _run("export", h5, "--data", data, "--out", full).exit_code == 0
    result = _run("export", h5, "--data", data, "--calib-samples", 8, "--out", few)
    assert result.exit_code == 0 and "8 calibration samples" in result.output, result.output
    # Min-max ranges over a subset lie inside those over all 48 calibration samples.
    all_scales, subset = _activation_scales(full), _activation_scales(few)
    assert set(all_scales) == set(subset)
    assert all(subset[n] <= all_scales[n] * (1 + 1e-6) for n in subset)
    # --weights: other weights into the same architecture give the file those weights give.
    model = keras.models.load_model(h5, compile=False)
    model.set_weights([w * 0.5 for w in model.get_weights()])
    model.save_weights(tmp_path / "half.weights.h5")
    model.save(tmp_path / "half.h5")
    with_weights, direct = tmp_path / "w.tflite", tmp_path / "direct.tflite"
    assert _run("export", h5, "--data", data, "--weights", tmp_path / "half.weights.h5",
                "--out", with_weights).exit_code == 0
    assert _run("export", tmp_path / "half.h5", "--data", data, "--out", direct).exit_code == 0
    assert with_weights.read_bytes() == direct.read_bytes() != full.read_bytes()


def test_quantize_input_range_fisher_and_rex_sparsity(small, rex_model, tmp_path):  # noqa: F811
    h5, data = small / "small.h5", small / "data.npz"
    pinned = tmp_path / "pinned.tflite"
    result = _run("quantize", h5, "--data", data, "--method", "minmax", "--bits", 8,
                  "--input-range", -1, 3, "--out", pinned)
    assert result.exit_code == 0, result.output
    tensor = read_model(pinned.read_bytes()).input_tensors[0]
    assert (int(tensor.zero_point[0]), float(tensor.scale[0])) == (-64, pytest.approx(4 / 255))
    mixed, mixed_report = tmp_path / "mixed.tflite", tmp_path / "mixed.json"
    result = _run("quantize", h5, "--data", data, "--method", "minmax", "--bits", "mixed",
                  "--budget-kb", 0.25, "--out", mixed, "--report", mixed_report)
    assert result.exit_code == 0, result.output
    plan = json.loads(mixed_report.read_text())["plan"]
    # the budget counts what the engine stores (every layer at 8 bits would not fit)
    stored = cgen.lower_model(read_model(mixed.read_bytes())).weight_bytes
    assert len(set(plan.values())) > 1 and stored <= 0.25 * 1024
    report = json.loads(mixed_report.read_text())
    assert report["board_weight_bytes"] + report["board_param_bytes"] == stored
    written, blocks = {}, {}
    for flag in ([], ["--fisher"]):
        out, report = tmp_path / f"brecq{len(flag)}.tflite", tmp_path / f"brecq{len(flag)}.json"
        result = _run("quantize", h5, "--data", data, "--method", "brecq", "--bits", 4, *flag,
                      "--iters", 40, "--out", out, "--report", report)
        assert result.exit_code == 0, result.output
        assert json.loads(report.read_text())["fisher"] is bool(flag)
        written[bool(flag)] = out.read_bytes()
        blocks[bool(flag)] = json.loads(report.read_text())["blocks"]
    # the Fisher weights reached every block and were not uniform (that they change the rounding
    # is test_recon's: 40 iterations on this model do not always flip a rounding)
    assert all(b["fisher_max"] is None for b in blocks[False])
    assert all(b["fisher_max"] > 1.5 for b in blocks[True]), blocks[True]
    for sparsity in (1.0, 0.5):
        out = tmp_path / f"rex{sparsity}.tflite"
        result = _run("quantize", rex_model, "--data", data, "--method", "rex", "--bits", 4,
                      "--expansion", 2, "--sparsity", sparsity, "--out", out)
        assert result.exit_code == 0, result.output
        kinds = [op.kind for op in read_model(out.read_bytes()).ops]
        # Dense orders: three branches of the inner conv summed by ADDs; sparse ones keep only
        # some channels' higher orders and join them back with a CONCATENATION.
        assert ("CONCATENATION" in kinds) == (sparsity < 1), kinds
        assert kinds.count("CONV_2D") >= 3


def test_build_eval_limit_seed_json_and_rex_sparsity(small, rex_model, tmp_path):  # noqa: F811
    result = _run("build", "--keras-model", rex_model, "--data", small / "data.npz",
                  "--eval-limit", 20, "--seed", 3, "--bits", 4, "--method", "rex", "--expansion",
                  2, "--sparsity", 0.5, "--out", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output[result.output.index("{"):])
    assert report == json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["config"]["seed"] == 3 and report["config"]["eval_limit"] == 20
    assert {row["samples"] for row in report["accuracy"]} == {20}
    kinds = [op.kind for op in read_model((tmp_path / "out" / "model.tflite").read_bytes()).ops]
    assert "CONCATENATION" in kinds  # --sparsity 0.5 reached the REx export


def test_synth_seed_repeats_and_varies(small, tmp_path):  # noqa: F811
    files = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        files[name] = tmp_path / f"{name}.npz"
        result = _run("synth", small / "small.h5", "--samples", 4, "--batch-size", 4,
                      "--iterations", 2, "--seed", seed, "--out", files[name])
        assert result.exit_code == 0, result.output
    x = {name: np.load(path)["x"] for name, path in files.items()}
    np.testing.assert_array_equal(x["a"], x["b"])
    assert x["a"].shape == (4, 16, 16, 1) and not np.allclose(x["a"], x["c"])


def test_firmware_portable_builds_other_kernels(tmp_path):
    from opmodels import conv2d

    from edgeq.tflite.write import write_model

    model = tmp_path / "conv.tflite"
    model.write_bytes(write_model(conv2d(np.random.default_rng(0))))
    sizes = {}
    for flag in ([], ["--portable"]):
        out = tmp_path / ("portable" if flag else "dsp")
        result = _run("firmware", model, "--board", "mps2-an500", "--out", out, *flag)
        assert result.exit_code == 0, result.output
        text = "\n".join(p.read_text() for p in out.iterdir() if p.name in ("Makefile",))
        assert ("EDGEQ_PORTABLE" in text) == bool(flag)
        if shutil.which("arm-none-eabi-gcc"):
            sizes[bool(flag)] = (out / "fw.elf").stat().st_size
    if sizes:
        assert sizes[True] != sizes[False]


def test_check_qemu_timeout_is_a_clear_error(tmp_path):
    from opmodels import conv2d

    from edgeq.tflite.write import write_model

    if not shutil.which("qemu-system-arm") or not shutil.which("arm-none-eabi-gcc"):
        pytest.fail("arm-none-eabi-gcc and qemu-system-arm are required (make setup)")
    model = tmp_path / "conv.tflite"
    model.write_bytes(write_model(conv2d(np.random.default_rng(0))))
    spec = read_model(model.read_bytes()).input_tensors[0]
    x = np.random.default_rng(1).uniform(0, 1, (4, *spec.shape[1:])).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    result = _run("check", model, "--data", tmp_path / "data.npz", "--target", "qemu",
                  "--timeout", 0.001, "--out", tmp_path / "fw")
    assert result.exit_code == 2, result.output
    assert "within 0.001 s" in result.output and "timeout" in result.output
    assert "Traceback" not in result.output


def test_train_qgt_options_reach_the_run(small, tmp_path):  # noqa: F811
    ckpt = tmp_path / "ckpt"
    out = tmp_path / "qgt.tflite"
    result = _run("train", "--qgt", "--keras-model", small / "small.h5", "--data",
                  small / "data.npz", "--bits", 4, "--epochs", 1, "--batch-size", 16, "--lr", 0.0005, "--seed", 7,
                  "--regularizer", "none", "--checkpoint-dir", ckpt, "--distribute", "mirrored",
                  "--out", out)
    assert result.exit_code == 0, result.output
    config = json.loads((ckpt / "qgt.json").read_text())["config"]
    assert config["regularizer"] == "none" and config["seed"] == 7
    assert config["learning_rate"] == pytest.approx(0.0005)
    assert any(p.name.startswith("ckpt") or p.suffix == ".index" for p in ckpt.iterdir())
    assert json.loads(read_model(out.read_bytes()).metadata["edgeq"])["bits"]


def test_check_qemu_force_replaces_a_folder_edgeq_did_not_make(tmp_path):
    from opmodels import conv2d

    from edgeq.outputs import MARKER
    from edgeq.tflite.write import write_model

    model = tmp_path / "conv.tflite"
    model.write_bytes(write_model(conv2d(np.random.default_rng(0))))
    spec = read_model(model.read_bytes()).input_tensors[0]
    x = np.random.default_rng(1).uniform(0, 1, (2, *spec.shape[1:])).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x)
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "notes.txt").write_text("mine")
    args = ("check", model, "--data", tmp_path / "data.npz", "--target", "qemu", "--out", fw)
    refused = _run(*args)
    assert refused.exit_code == 2 and "--force" in refused.output
    assert (fw / "notes.txt").read_text() == "mine"
    replaced = _run(*args, "--force")
    assert replaced.exit_code == 0, replaced.output
    assert (fw / MARKER).is_file() and (fw / "fw.elf").is_file()
    assert not (fw / "notes.txt").exists()


def _write_idx(path, array: np.ndarray) -> None:
    """An unsigned-byte IDX file (the Fashion-MNIST format)."""
    import struct

    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_build_mixed_budget_on_idx_data(small, tmp_path):  # noqa: F811
    """IDX files through build, and --bits mixed --budget-kb succeeding: the plan mixes widths
    and its kernels fit the budget."""
    data = np.load(small / "data.npz")
    idx = tmp_path / "idx"
    idx.mkdir()
    images = np.round(data["x"][..., 0] * 255)
    for prefix, part in (("train", slice(0, 64)), ("t10k", slice(64, 96))):
        _write_idx(idx / f"{prefix}-images-idx3-ubyte", images[part])
        _write_idx(idx / f"{prefix}-labels-idx1-ubyte", data["y"][part])
    out = tmp_path / "out"
    result = _run("build", "--keras-model", small / "small.h5", "--data", idx, "--bits", "mixed",
                  "--budget-kb", 0.25, "--method", "minmax", "--no-baseline", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    model = read_model((out / "model.tflite").read_bytes())
    plan = json.loads(model.metadata["edgeq"])["bits"]
    assert len(set(plan.values())) > 1, plan  # a mixed plan, not one width
    # what the engine stores: weights at their widths and per-channel parameters (every layer
    # at 8 bits would not fit)
    assert cgen.lower_model(model).weight_bytes <= 0.25 * 1024
    assert {row["samples"] for row in report["accuracy"]} == {32}  # the t10k files evaluate


def test_build_zoo_model_with_weights_on_a_photo_folder(vww_h5_path, coco_vww_dir, tmp_path):
    """The README's main example on real photos, small: zoo card + --weights + image folder,
    3-bit inner layers (stored as INT4)."""
    out = tmp_path / "vww"
    result = _run("build", "--board", "stm32h743", "--model", "person_detect_rgb", "--weights",
                  vww_h5_path, "--data", coco_vww_dir, "--bits", 3, "--method", "minmax",
                  "--calib-samples", 32, "--eval-limit", 24, "--no-baseline", "--out", out)
    assert result.exit_code == 0, result.output
    model = read_model((out / "model.tflite").read_bytes())
    plan = json.loads(model.metadata["edgeq"])["bits"]
    assert sorted(set(plan.values())) == [3, 8]
    inner = [t for t in model.tensors if t.name.endswith("/kernel") and t.dtype == "int4"]
    assert inner and all(-4 <= t.data.min() and t.data.max() <= 3 for t in inner)
    report = json.loads((out / "report.json").read_text())
    float_row = next(r for r in report["accuracy"] if r["name"] == "float")
    assert float_row["samples"] == 24 and float_row["accuracy"] > 0.6  # the weights loaded


@pytest.fixture(scope="module")
def bad_inputs(small, tmp_path_factory):  # noqa: F811
    """One input of each kind the README promises a clear error for."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("bad")
    whole = (small / "small.h5").read_bytes()
    (d / "cut.h5").write_bytes(whole[: len(whole) // 3])
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3)(inp)
    h = keras.layers.Reshape((14, 56))(h)
    keras.Model(inp, keras.layers.LSTM(2)(h)).save(d / "lstm.h5")
    for name in ("a", "b"):
        (d / "photos" / name).mkdir(parents=True)
        (d / "photos" / name / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    x = np.load(small / "data.npz")["x"]
    np.savez(d / "shape.npz", x=x[:, :8])
    nan = x.copy()
    nan[3, 2, 2, 0] = np.nan
    np.savez(d / "nan.npz", x=nan)
    board = (Path(__file__).parents[1] / "boards" / "mps2-an500.yaml").read_text()
    (d / "tiny.yaml").write_text(board.replace("name: mps2-an500", "name: tiny").replace(
        "flash_kib: 4096", "flash_kib: 1").replace("{origin: \"0x00000000\", kib: 4096}",
                                                     "{origin: \"0x00000000\", kib: 1}"))
    return d


PROMISED_ERRORS = {  # README: "Expected errors (...) print one message ... exit with status 2"
    "truncated model": (["--keras-model", "{bad}/cut.h5"], ["cut.h5"]),
    "unsupported layer": (["--keras-model", "{bad}/lstm.h5"], ["LSTM"]),
    "unreadable data": (["--keras-model", "{small}/small.h5", "--data", "{bad}/photos"],
                        ["photos", "all 2 images were unreadable", "a/broken.jpg", "b/broken.jpg"]),
    "shape that does not match": (["--keras-model", "{small}/small.h5", "--data",
                                   "{bad}/shape.npz"], ["shape.npz", "(8, 16, 1)"]),
    "NaN/Inf": (["--keras-model", "{small}/small.h5", "--data", "{bad}/nan.npz"],
                ["nan.npz", "NaN"]),
    "model that does not fit": (["--keras-model", "{small}/small.h5", "--data",
                                 "{small}/data.npz", "--board", "{bad}/tiny.yaml"],
                                ["tiny", "flash"]),
}


@pytest.mark.parametrize("case", sorted(PROMISED_ERRORS))
def test_promised_errors_through_build(case, bad_inputs, small, tmp_path):  # noqa: F811
    """As a user sees it: the real command in a terminal 80 columns wide."""
    import os
    import subprocess
    import sys

    args, words = PROMISED_ERRORS[case]
    args = [a.format(bad=bad_inputs, small=small) for a in args]
    done = subprocess.run([sys.executable, "-m", "edgeq.cli", "build", *args, "--out",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "COLUMNS": "80"}, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert "Traceback" not in output and output.count("error:") == 1, output
    flat = " ".join(output.split())
    for word in words:
        assert word in flat, (word, output)
    assert not (tmp_path / "out").exists()


def test_build_console_shows_per_class_and_confusion_tables(small, tmp_path):  # noqa: F811
    import re

    out = tmp_path / "out"
    result = _run("build", "--keras-model", small / "small.h5", "--data", small / "data.npz",
                  "--no-baseline", "--out", out)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    tflm = next(r for r in report["accuracy"] if "TFLM" in r["name"])
    lines = result.output.splitlines()
    assert any(line.strip() == "per class" for line in lines)
    for c, counts in enumerate(tflm["confusion"]):  # the report's counts, row by row
        pattern = rf"^\s*{c} \S+\s+" + r"\s+".join(str(n) for n in counts) + r"\s*$"
        assert any(re.match(pattern, line) for line in lines), (pattern, result.output)
    assert sum(map(sum, tflm["confusion"])) == tflm["samples"]
