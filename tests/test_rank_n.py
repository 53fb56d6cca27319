"""`edgeq check` (host and --target qemu) and `edgeq firmware` on models whose input is not an
image and whose output is not a class (#13): an autoencoder over (1, 640) log-mel windows (the
MLPerf Tiny anomaly-detection shape, FULLY_CONNECTED only), a keyword classifier and a
denoiser over (1, 49, 10) MFCC features, each exported by edgeq's own Keras -> .tflite path and
checked on seeded, real-looking data with the real LiteRT, TFLM, edgeq's reference interpreter
and QEMU. The .npz conventions are edgeq.data.load_npz's: 1-D y = labels, y of the output's
shape = regression targets, no y = unlabelled."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.deploy.check import check_command, check_model
from edgeq.deploy.runtimes import litert_interpreter, tflm_interpreter
from edgeq.tflite.model import Model, Op, Tensor
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _log_mel_windows(rng, n: int) -> np.ndarray:
    """(n, 640): 5 frames of 128 log-mel bins of a machine hum, the anomaly-detection input:
    a few harmonics at a per-clip base bin with slowly drifting amplitude, over a sloped noise
    floor, in dB, scaled to about [-1, 1]."""
    bins = np.arange(128)
    x = np.empty((n, 5, 128), np.float32)
    for i in range(n):
        base = rng.uniform(6, 14)
        floor = -0.03 * bins + rng.normal(0, 0.4, (5, 128))
        peaks = sum(rng.uniform(2, 6) / k * np.exp(-0.5 * ((bins - k * base) / 1.5) ** 2)
                    for k in range(1, 6))
        drift = 1 + 0.1 * np.sin(np.arange(5)[:, None] + rng.uniform(0, 6))
        x[i] = floor + 8 * np.log1p(peaks * drift)
    x = (x - x.mean()) / (3 * x.std())
    return x.reshape(n, 640)


def _mfcc_like(rng, n: int, classes: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """(n, 49, 10) MFCC-like features of `classes` words and their labels: each word its own
    profile of the 10 coefficients, slowly modulated over the 49 frames and placed at a random
    onset under a smooth envelope, plus noise."""
    y = np.arange(n) % classes
    rng.shuffle(y)
    t = np.arange(49)[:, None]
    profiles = np.random.default_rng(100).normal(0, 1, (classes, 10))
    x = np.empty((n, 49, 10), np.float32)
    for i, label in enumerate(y):
        onset = rng.integers(0, 10)
        envelope = np.exp(-0.5 * ((t - 20 - onset) / 8.0) ** 2)
        modulation = 1 + 0.3 * np.cos(0.2 * (t - onset) + np.arange(10))
        x[i] = envelope * profiles[label] * modulation + rng.normal(0, 0.15, (49, 10))
    return x, y.astype(np.int64)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Trained Keras models exported by edgeq, their data and the float outputs."""
    import tf_keras as k

    from edgeq.learn.export import export_tflite

    d = tmp_path_factory.mktemp("rank_n")
    k.utils.set_random_seed(3)
    rng = np.random.default_rng(3)
    made = {"dir": d}

    x = _log_mel_windows(rng, 320)
    inputs = k.Input((640,))
    h = inputs
    for units in (64, 8, 64):
        h = k.layers.Dense(units, activation="relu")(h)
    autoencoder = k.Model(inputs, k.layers.Dense(640)(h))
    autoencoder.compile("adam", "mse")
    autoencoder.fit(x[:256], x[:256], epochs=20, batch_size=32, verbose=0)
    export_tflite(autoencoder, x[:256], 8, d / "ae.tflite")
    test = x[256:]
    made["ae_x"], made["ae_float"] = test, autoencoder.predict(test, verbose=0)
    np.savez(d / "ae_targets.npz", x=test, y=test)  # an autoencoder's targets are its inputs
    np.savez(d / "ae_unlabelled.npz", x=test)

    x, y = _mfcc_like(rng, 300)
    inputs = k.Input((49, 10))
    h = k.layers.Reshape((49, 10, 1))(inputs)
    h = k.layers.Conv2D(8, 3, strides=2, activation="relu")(h)
    h = k.layers.GlobalAveragePooling2D()(h)
    classifier = k.Model(inputs, k.layers.Dense(12, activation="softmax")(h))
    classifier.compile(k.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    classifier.fit(x[:240], y[:240], epochs=30, batch_size=32, verbose=0)
    export_tflite(classifier, x[:240], 8, d / "kws.tflite")
    np.savez(d / "kws.npz", x=x[240:], y=y[240:])
    made["kws_float"] = classifier.predict(x[240:], verbose=0)
    made["kws_y"] = y[240:]

    inputs = k.Input((49, 10))
    h = k.layers.Dense(64, activation="relu")(k.layers.Flatten()(inputs))
    denoiser = k.Model(inputs, k.layers.Reshape((49, 10))(k.layers.Dense(490)(h)))
    clean = np.where(np.abs(x) > 0.3, x, 0).astype(np.float32)
    denoiser.compile("adam", "mse")
    denoiser.fit(x[:240], clean[:240], epochs=20, batch_size=32, verbose=0)
    export_tflite(denoiser, x[:240], 8, d / "denoise.tflite")
    np.savez(d / "denoise.npz", x=x[240:264], y=clean[240:264])
    made["denoise_clean"] = clean[240:264]
    return made


def _dequantized(model_path, outputs) -> np.ndarray:
    out = read_model(model_path.read_bytes()).output_tensors[0]
    return (outputs.astype(np.float64) - int(out.zero_point[0])) * float(out.scale[0])


# --- host check -----------------------------------------------------------------------------


def test_autoencoder_check_reports_identity_and_mae_against_targets(models):
    d = models["dir"]
    assert read_model((d / "ae.tflite").read_bytes()).input_tensors[0].shape == (1, 640)
    result = check_command(d / "ae.tflite", d / "ae_targets.npz")
    assert result.task == "regression" and result.labelled == 0 and result.samples == 64
    tflm, litert, reference = (result.runtime(k) for k in ("tflm", "litert", "edgeq"))
    assert tflm.outputs.shape == (64, 640) and tflm.accuracy is None
    assert tflm.float_agreement is None and tflm.per_class_accuracy is None
    assert reference.differing_from_tflm == 0 and result.reference_equals_tflm is True
    # the MAE is of the dequantized outputs, against the targets, computed here independently
    expected = np.mean(np.abs(_dequantized(d / "ae.tflite", tflm.outputs) - models["ae_x"]))
    assert tflm.mae_target == pytest.approx(expected, rel=1e-6)
    # ... and it is the model's error, not the quantizer's: close to the float model's
    float_mae = np.mean(np.abs(models["ae_float"] - models["ae_x"]))
    assert abs(tflm.mae_target - float_mae) < 0.1 * float_mae
    # LiteRT vs TFLM on the raw outputs, as counted here
    differ = int(np.count_nonzero(litert.outputs != tflm.outputs))
    assert result.litert_differing == litert.differing_from_tflm == differ
    assert result.max_lsb == int(np.abs(litert.outputs.astype(int) - tflm.outputs.astype(int)).max())
    assert result.max_lsb == 0 and result.fidelity_ok is True  # an edgeq export: tie-safe
    assert result.tflm_litert_agreement is None  # not a class: no label agreement
    payload = json.loads(json.dumps(result.to_dict()))
    assert payload["task"] == "regression" and payload["max_lsb"] == result.max_lsb
    assert payload["runtimes"][1]["mae_target"] == pytest.approx(expected, rel=1e-6)
    assert payload["classes"] == [] and payload["output_values"] == 64 * 640


def test_float_reference_gives_the_mae_of_the_quantized_model(models):
    d = models["dir"]
    result = check_model(d / "ae.tflite", models["ae_x"], float_outputs=models["ae_float"])
    tflm = result.runtime("tflm")
    expected = np.mean(np.abs(_dequantized(d / "ae.tflite", tflm.outputs) - models["ae_float"]))
    assert tflm.mae_float == pytest.approx(expected, rel=1e-6)
    assert 0 < tflm.mae_float < 0.1 * np.abs(models["ae_float"]).mean()


def test_unlabelled_autoencoder_compares_the_runtimes(models):
    d = models["dir"]
    result = check_command(d / "ae.tflite", d / "ae_unlabelled.npz", limit=16)
    assert result.task == "unlabelled" and result.samples == 16
    assert "seeded random subset, seed 0" in result.chosen
    litert, tflm = result.runtime("litert"), result.runtime("tflm")
    expected = np.mean(np.abs(_dequantized(d / "ae.tflite", litert.outputs)
                              - _dequantized(d / "ae.tflite", tflm.outputs)))
    assert result.mae_tflm_litert == pytest.approx(expected, abs=1e-9)
    assert all(r.mae_target is None and r.accuracy is None for r in result.runtimes)
    from rich.console import Console

    console = Console(record=True, width=160)
    console.print(result.table())
    text = console.export_text()
    assert "top-1" not in text and "no labels" in text
    assert "raw outputs vs TFLM" in text and "identical" in text  # the reference's row
    assert f"max |Δ| of raw outputs {result.max_lsb} LSB" in text
    assert "MAE of the dequantized outputs" in text


def test_rank3_classifier_keeps_top1_and_rank3_regressor_gets_mae(models):
    d = models["dir"]
    kws = check_command(d / "kws.tflite", d / "kws.npz")
    assert kws.input.shape == (1, 49, 10) and kws.task == "classification"
    tflm = kws.runtime("tflm")
    assert tflm.accuracy == pytest.approx(np.mean(tflm.outputs.argmax(1) == models["kws_y"]))
    assert tflm.accuracy > 0.5  # 12 words: chance is 8%
    assert kws.tflm_litert_agreement >= 0.995 and kws.runtime("edgeq").differing_from_tflm == 0

    denoise = check_command(d / "denoise.tflite", d / "denoise.npz")
    assert denoise.output.shape == (1, 49, 10) and denoise.task == "regression"
    tflm = denoise.runtime("tflm")
    assert tflm.outputs.shape == (24, 49, 10)
    expected = np.mean(np.abs(_dequantized(d / "denoise.tflite", tflm.outputs)
                              - models["denoise_clean"]))
    assert tflm.mae_target == pytest.approx(expected, rel=1e-6)
    assert denoise.max_lsb is not None and denoise.fidelity_ok is True


def test_cli_check_prints_mae_and_writes_max_lsb(models, tmp_path):
    d = models["dir"]
    out = tmp_path / "check.json"
    result = run("check", d / "ae.tflite", "--data", d / "ae_targets.npz", "--json", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["task"] == "regression" and payload["max_lsb"] == 0
    assert payload["runtimes"][1]["mae_target"] > 0
    printed = run("check", d / "ae.tflite", "--data", d / "ae_targets.npz")
    assert printed.exit_code == 0, printed.output
    assert "MAE vs target" in printed.output and "top-1" not in printed.output


# --- mismatched data: one message naming the file, exit 2 -----------------------------------


def test_mismatched_npz_is_a_clear_error(models, tmp_path):
    d = models["dir"]
    x = models["ae_x"][:8]
    cases = {
        "short_y.npz": ({"x": x, "y": x[:, :320]}, ["y has shape (320,) per sample",
                                                     "model's output is (640,)", "(N, 640)"]),
        "narrow_x.npz": ({"x": x[:, :320]}, ["inputs have shape (320,)", "wants (640,)"]),
        "float_labels.npz": ({"x": x, "y": x[:, 0]}, ["not whole numbers", "(N, 1)"]),
        "count.npz": ({"x": x, "y": x[:5]}, ["8 inputs but 5 targets"]),
    }
    for name, (arrays, words) in cases.items():
        np.savez(tmp_path / name, **arrays)
        for target in ("host", "qemu"):
            result = run("check", d / "ae.tflite", "--data", tmp_path / name, "--target", target,
                         "--out", tmp_path / f"fw-{name}")
            assert result.exit_code == 2, (name, target, result.output)
            assert "Traceback" not in result.output
            flat = " ".join(result.output.split())
            for w in [str(tmp_path / name), *words]:
                assert w in flat, (name, target, w, result.output)
            assert not (tmp_path / f"fw-{name}").exists()  # refused before any firmware
    folder = tmp_path / "photos" / "a"
    folder.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(folder / "one.png")
    result = run("check", d / "ae.tflite", "--data", tmp_path / "photos")
    assert result.exit_code == 2 and "not an image" in result.output
    assert "(N, 640)" in " ".join(result.output.split())


# --- LiteRT vs TFLM: max_lsb 0 where they agree, 1 on requantization ties ---------------------


def _tie_model(zero_point: int, bias_offset: int = 0) -> Model:
    """One FULLY_CONNECTED without activation, input (1, 1), 64 units of weight 1 with biases
    256 apart: over the 256 int8 inputs the accumulators sweep [-8320, 8191] and the
    requantization (multiplier ~0.0051, shift -7) hits many exact ties, which LiteRT (ruy)
    rounds toward +inf and TFLM away from zero (tests/test_sim_export.py measures it)."""
    s_in, s_w, s_out = 0.05, 0.0102, 0.0995
    bias = (256 * (np.arange(64) - 32) + bias_offset).astype(np.int32)
    tensors = [Tensor("x", (1, 1), "int8", np.array([s_in], np.float32), np.zeros(1, np.int64)),
               Tensor("w", (64, 1), "int8", np.array([s_w], np.float32), np.zeros(1, np.int64),
                      0, np.ones((64, 1), np.int8)),
               Tensor("b", (64,), "int32", np.array([s_in * s_w], np.float32),
                      np.zeros(1, np.int64), 0, bias),
               Tensor("y", (1, 64), "int8", np.array([s_out], np.float32),
                      np.array([zero_point], np.int64))]
    return Model(tensors, [Op("FULLY_CONNECTED", [0, 1, 2], [3],
                              {"fused_activation_function": "NONE"})], [0], [3])


def _direct(data: bytes, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLM's and LiteRT's outputs, run here without edgeq.deploy.check."""
    tflm, litert = tflm_interpreter(data, 1 << 16), litert_interpreter(data)
    a, b = [], []
    for sample in q:
        tflm.set_input(sample[None], 0)
        tflm.invoke()
        a.append(tflm.get_output(0)[0].astype(int))
        litert.set_tensor(litert.get_input_details()[0]["index"], sample[None])
        litert.invoke()
        b.append(litert.get_tensor(litert.get_output_details()[0]["index"])[0].astype(int))
    return np.stack(a), np.stack(b)


def test_max_lsb_is_zero_where_litert_agrees_and_one_on_ties(tmp_path):
    q = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    ties = write_model(_tie_model(-6))
    tflm, litert = _direct(ties, q)
    tied = check_model(ties, q)
    assert tied.max_lsb == 1 == int(np.abs(litert - tflm).max())
    assert tied.litert_differing == int(np.count_nonzero(litert != tflm)) >= 20
    assert tied.runtime("litert").max_lsb_from_tflm == 1
    assert tied.runtime("edgeq").differing_from_tflm == 0  # the reference is TFLM's equal
    assert tied.fidelity_ok is True  # 1 LSB is within the contract
    # zero point -128 (the bias carries the offset): every negative value clamps, no tie shows
    shift = round(122 / (0.05 * 0.0102 / 0.0995))
    agrees = write_model(_tie_model(-128, shift))
    tflm, litert = _direct(agrees, q)
    assert np.array_equal(tflm, litert) and (tflm > -128).mean() > 0.3
    result = check_model(agrees, q)
    assert result.max_lsb == 0 and result.litert_differing == 0
    # through the CLI, from an .npz of float inputs in the model's domain
    (tmp_path / "ties.tflite").write_bytes(ties)
    np.savez(tmp_path / "x.npz", x=q.astype(np.float32) * np.float32(0.05))
    printed = run("check", tmp_path / "ties.tflite", "--data", tmp_path / "x.npz", "--json", "-")
    assert printed.exit_code == 0, printed.output
    payload = json.loads(printed.output)
    assert payload["max_lsb"] == 1 and payload["litert_differing"] == tied.litert_differing
    assert payload["runtimes"][0]["max_lsb_from_tflm"] == 1


# --- the firmware under QEMU -------------------------------------------------------------------


def test_firmware_builds_the_640_autoencoder_and_qemu_equals_tflm(models, tmp_path):
    d = models["dir"]
    fw = run("firmware", d / "ae.tflite", "--board", "mps2-an500", "--out", tmp_path / "fw")
    assert fw.exit_code == 0, fw.output
    assert (tmp_path / "fw" / "fw.elf").is_file()
    host = check_command(d / "ae.tflite", d / "ae_targets.npz", limit=12)
    out = tmp_path / "qemu.json"
    result = run("check", d / "ae.tflite", "--data", d / "ae_targets.npz", "--target", "qemu",
                 "--limit", 12, "--out", tmp_path / "qemu", "--json", out)
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["task"] == "regression" and payload["samples"] == 12
    assert payload["identical_to_tflm"] is True and payload["mismatched_values"] == 0
    assert payload["max_lsb_tflm"] == 0 and payload["mae_tflm"] == 0
    assert payload["output_values"] == 12 * 640
    # the firmware's MAE against the targets is the host TFLM's, on the same 12 samples
    assert payload["mae_target"] == pytest.approx(host.runtime("tflm").mae_target, rel=1e-6)
    assert payload["max_lsb_litert"] == host.max_lsb
    assert payload["mismatched_values_litert"] == host.litert_differing
    assert payload["label_agreement_tflm"] is None and payload["accuracy"] is None
    text = " ".join(result.output.split())
    assert re.search(r"MAE vs target on the device [\d.]+", text), result.output
    assert "outputs identical to TFLM yes (7,680 values)" in text
    assert "top-1" not in text


def test_qemu_check_of_rank3_models(models, tmp_path):
    d = models["dir"]
    for name, task in (("kws", "classification"), ("denoise", "regression")):
        out = tmp_path / f"{name}.json"
        result = run("check", d / f"{name}.tflite", "--data", d / f"{name}.npz", "--target",
                     "qemu", "--limit", 12, "--out", tmp_path / name, "--json", out)
        assert result.exit_code == 0, result.output
        payload = json.loads(out.read_text())
        host = check_command(d / f"{name}.tflite", d / f"{name}.npz", limit=12)
        assert payload["task"] == task and payload["identical_to_tflm"] is True
        if task == "classification":
            assert payload["accuracy"] == pytest.approx(host.runtime("tflm").accuracy)
            assert payload["label_agreement_tflm"] == 1.0
        else:
            assert payload["mae_target"] == pytest.approx(host.runtime("tflm").mae_target, rel=1e-6)
            assert payload["output_values"] == 12 * 490
