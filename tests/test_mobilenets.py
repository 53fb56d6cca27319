"""Whole models of issue #14 through `edgeq build` (Keras 3 .keras files, random weights with
BatchNorm statistics from coco-vww-256 photos, min-max quantization): MobileNetV2 alpha 0.35
and MobileNetV3Small (with its preprocessing layer, and minimalistic without it) at 96x96, and
a DS-CNN with SeparableConv2D, and a small U-Net at 64x64 (UpSampling2D, Conv2DTranspose,
skip Concatenate and Add; its Conv2DTranspose stays 8-bit at --bits 4), at --bits 8 and 4. Each build must end with its firmware
run under QEMU (mps2-an500) giving outputs identical to TFLM's, and the simulated model
agreeing with TFLM on at least 99.5% of the evaluation labels."""

from __future__ import annotations

import json

import kerasmodels
import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.cli import main

PHOTOS = 24


def _model(name: str):
    """(Keras model, inputs in its domain, labels)."""
    x = kerasmodels.photos(PHOTOS)
    y = np.arange(PHOTOS) % 2  # photos() alternates nothing: labels only need two classes
    if name == "mobilenet_v2":
        return kerasmodels.mobilenet_v2(x * 2 - 1), x * 2 - 1, y
    if name == "mobilenet_v3_small":
        return kerasmodels.mobilenet_v3_small(x * 255), x * 255, y
    if name == "mobilenet_v3_small_minimalistic":
        xs = x * 2 - 1
        return kerasmodels.mobilenet_v3_small(xs, minimalistic=True, preprocessing=False), xs, y
    if name == "unet":
        xs = kerasmodels.photos(PHOTOS, size=64) * 2 - 1
        return kerasmodels.unet(xs), xs, y
    rng = np.random.default_rng(0)
    xs = rng.normal(0, 1, size=(PHOTOS, 49, 10, 1)).astype(np.float32)
    return kerasmodels.ds_cnn(xs), xs, y


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            folder = tmp_path_factory.mktemp(name)
            model, x, y = _model(name)
            model.save(folder / "model.keras")
            np.savez(folder / "data.npz", x=x.astype(np.float32), y=y)
            made[name] = folder
        return made[name]

    return get


# MobileNetV2 W4 and the minimalistic MobileNetV3 W8 (inputs in [-1, 1]) were strict xfails:
# the simulated model disagreed with TFLM on 2-3 of 12 labels because the check quantized the
# float inputs with numpy's half-to-even rounding while the simulation (and TFLite's QUANTIZE)
# round half away from zero; pixels / 127.5 - 1 fall on exact half steps (#14, fixed in
# edgeq.deploy.check.quantize_inputs).
CASES = [("mobilenet_v2", 8), ("mobilenet_v2", 4), ("mobilenet_v3_small", 8),
         ("mobilenet_v3_small", 4), ("mobilenet_v3_small_minimalistic", 8), ("ds_cnn", 8),
         ("ds_cnn", 4), ("unet", 8), ("unet", 4)]


@pytest.mark.parametrize("name, bits", CASES)
def test_whole_model_build_matches_tflm_on_qemu(saved, name, bits, tmp_path):
    folder = saved(name)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "build", "--board", "cortex-m7", "--keras-model", str(folder / "model.keras"),
        "--data", str(folder / "data.npz"), "--out", str(out), "--no-baseline",
        "--method", "minmax", "--bits", str(bits), "--calib-samples", "8",
        "--firmware-eval-limit", "2", "--force"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    run = report["firmware"]["emulated"]
    assert run["identical_to_tflm"] and run["mismatched_values"] == 0, run
    assert run["samples"] == 2
    simulated = [r for r in report["accuracy"] if r["name"].startswith("edgeq simulated")]
    assert len(simulated) == 1 and simulated[0]["agreement_with"] == "TFLM"
    assert simulated[0]["agreement"] >= 0.995, simulated
    runtimes = {r["key"]: r for r in report["check"]["runtimes"]}
    assert runtimes["edgeq"]["differing_from_tflm"] == 0
