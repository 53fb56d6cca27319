"""The firmware commands of the CLI: firmware and check --target qemu (flash: test_flash.py)."""

import json
import re

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.cli import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def small_tflite(tmp_path_factory):
    import tf_keras as keras

    from edgeq.learn.export import export_tflite

    d = tmp_path_factory.mktemp("fw")
    rng = np.random.default_rng(1)
    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h))
    x = rng.random((40, 12, 12, 1), np.float32)
    export_tflite(model, x, 4, d / "m.tflite")
    np.savez(d / "data.npz", x=x[:12], y=rng.integers(0, 3, 12))
    return d


def test_firmware_and_qemu_check_match_tflm(small_tflite, tmp_path):
    fw = run("firmware", small_tflite / "m.tflite", "--board", "mps2-an500", "--out", tmp_path / "fw")
    assert fw.exit_code == 0, fw.output
    assert (tmp_path / "fw" / "fw.elf").is_file() and "model_flash" in fw.output
    out = tmp_path / "check.json"
    result = run("check", small_tflite / "m.tflite", "--data", small_tflite / "data.npz",
                 "--target", "qemu", "--out", tmp_path / "qemu", "--json", out)
    assert result.exit_code == 0, result.output
    # as people read it: percentages, and sizes as a table rather than a JSON blob
    assert re.search(r"top-1 on the device\s+\d+\.\d\d%", result.output), result.output
    assert re.search(r"labels = TFLM's\s+100\.00%", result.output), result.output
    assert "{" not in result.output and re.search(r"model_flash\s+[\d,]+", result.output)
    payload = json.loads(out.read_text())
    assert payload["samples"] == 12 and payload["identical_to_tflm"] is True
    assert payload["label_agreement_tflm"] == 1.0 and payload["max_lsb_litert"] == 0
    assert payload["instructions_per_inference"] > payload["macs"] > 0


def test_firmware_wide_int8_weights_trades_flash(small_tflite, tmp_path):
    def model_flash(*extra):
        result = run("firmware", small_tflite / "m.tflite", "--board", "mps2-an500",
                     "--out", tmp_path / f"fw{len(extra)}", *extra)
        assert result.exit_code == 0, result.output
        return int(re.search(r"model_flash\W+([\d,]+) bytes", result.output).group(1).replace(",", ""))

    # the first (INT8) conv's 54 weights become int16 pairs: more flash, same outputs (tested
    # against TFLM in tests/test_cgen.py and tests/test_firmware.py)
    assert model_flash("--wide-int8-weights") > model_flash()
