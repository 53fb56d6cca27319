"""The person_detect_v2 zoo card (MobileNetV2 alpha 0.35, 96x96 RGB, issue #14): `edgeq models`
lists it, `edgeq train` trains it on an image folder of real photos, and `edgeq build` builds
the trained model into an INT8 .tflite that TFLM runs."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.learn.zoo import build_model, load_card

TRAIN_PER_CLASS, VAL_PER_CLASS = 6, 2


def _few_photos(coco_vww_dir, root):
    """A coco-vww-256 slice: the first train2017_* and val2017_* photos of each class."""
    for label in ("non_person", "person"):
        (root / label).mkdir(parents=True)
        files = sorted((coco_vww_dir / label).iterdir())
        for prefix, n in (("train2017_", TRAIN_PER_CLASS), ("val2017_", VAL_PER_CLASS)):
            for f in [f for f in files if f.name.startswith(prefix)][:n]:
                shutil.copy(f, root / label / f.name)
    return root


def test_card_builds_mobilenet_v2_with_its_inverted_residual_blocks():
    card = load_card("person_detect_v2")
    assert card.input_shape == (96, 96, 3) and card.labels == ["no_person", "person"]
    assert card.preprocess.scale == 255.0 and card.preprocess.color == "rgb"
    model = build_model(card)
    names = {layer.name for layer in model.layers}
    assert {"block_1_expand", "block_1_depthwise", "block_1_project", "block_16_project",
            "block_2_add"} <= names
    assert model.name == "person_detect_v2" and model.output_shape == (None, 2)
    # alpha 0.35: the first block projects to 8 channels, the last conv has 1280 (kept at 1.0)
    assert model.get_layer("expanded_conv_project").output_shape[-1] == 8
    assert model.get_layer("Conv_1").output_shape[-1] == 1280
    assert "person_detect_v2" in CliRunner().invoke(main, ["models"]).output


def test_train_then_build_person_detect_v2(coco_vww_dir, tmp_path):
    import tf_keras

    data = _few_photos(coco_vww_dir, tmp_path / "photos")
    h5 = tmp_path / "pd2.h5"
    result = CliRunner().invoke(main, ["train", "--model", "person_detect_v2", "--data", str(data),
                                       "--epochs", "1", "--batch-size", "12", "--out", str(h5)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "trained person_detect_v2 for 1 epochs" in text
    trained = tf_keras.models.load_model(h5, compile=False)
    # one Adam step moved the weights away from a fresh build's (same seed 0 initialisation)
    tf_keras.utils.set_random_seed(0)
    fresh = build_model(load_card("person_detect_v2"))
    assert trained.output_shape == (None, 2)
    assert not np.allclose(trained.get_layer("predictions").get_weights()[0],
                           fresh.get_layer("predictions").get_weights()[0])
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["build", "--keras-model", str(h5), "--data", str(data),
                                       "--out", str(out), "--bits", "8", "--method", "minmax",
                                       "--calib-samples", "8", "--no-baseline", "--no-firmware",
                                       "--force"])  # one step on 12 photos: at chance
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert (out / "model.tflite").is_file(), sorted(p.name for p in out.iterdir())
    runtimes = {r["key"]: r for r in report["check"]["runtimes"]}
    # the reference interpreter gives TFLM's outputs on the val2017_* photos
    assert runtimes["edgeq"]["differing_from_tflm"] == 0, runtimes
