"""Honest evaluation (#12): seeded subsets stratified by class, one sigmoid unit read as a
binary classifier, labels and input values checked against the model, per-class accuracy and
confusion counts, a model at chance refused, a zoo model without weights refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgeq.build import BuildConfig, load_build_data
from edgeq.cli import main
from edgeq.deploy.check import check_command, check_model
from edgeq.errors import DataError


def _coco_like_folder(root, val_counts=(58, 6), train_per_class=8):
    """An image folder in class order: val2017_* images 58 of class a then 6 of class b."""
    rng = np.random.default_rng(0)
    for label, n_val in zip(("a", "b"), val_counts, strict=True):
        (root / label).mkdir(parents=True)
        for prefix, n in (("train2017", train_per_class), ("val2017", n_val)):
            for i in range(n):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
                    root / label / f"{prefix}_{i:04d}.png")
    return root


def test_build_eval_limit_takes_both_classes_in_proportion(tmp_path):
    folder = _coco_like_folder(tmp_path / "photos")
    cfg = BuildConfig(data=str(folder), eval_limit=16, seed=0)
    _, _, test = load_build_data(cfg, None, (8, 8, 3), "rgb", 255.0, None)
    assert np.bincount(test.y).tolist() == [15, 1]  # 16 * 58/64 and 16 * 6/64, rounded
    assert test.chosen == "16 of 64, stratified by class, seed 0"
    again = load_build_data(cfg, None, (8, 8, 3), "rgb", 255.0, None)[2]
    assert again.names == test.names  # seeded: the same samples every run


def test_check_limit_is_stratified_and_reports_per_class(vww_int8_path, coco_vww_dir, tmp_path):
    out = tmp_path / "check.json"
    result = check_command(vww_int8_path, coco_vww_dir, limit=20, json_path=out)
    payload = json.loads(out.read_text())
    # 123 non_person and 133 person photos: 20 * 123/256 = 9.6 and 20 * 133/256 = 10.4
    tflm = result.runtime("tflm")
    assert payload["chosen"] == "20 of 256, stratified by class, seed 0"
    assert payload["classes"] == ["non_person", "person"] and payload["data"] == str(coco_vww_dir)
    counts = np.array(tflm.confusion).sum(axis=1)
    assert counts.tolist() == [10, 10]
    # per-class accuracy and confusion against an independent count from the raw outputs
    from edgeq.data import load_dataset

    data = load_dataset(coco_vww_dir, (96, 96, 3), "rgb", 255.0).stratified(20, 0)
    predicted = np.argmax(tflm.outputs.reshape(20, -1), axis=1)
    for c in (0, 1):
        mine = predicted[data.y == c]
        assert tflm.per_class_accuracy[c] == pytest.approx(np.mean(mine == c))
        assert tflm.confusion[c] == [int(np.sum(mine == 0)), int(np.sum(mine == 1))]
    row = next(r for r in payload["runtimes"] if r["key"] == "tflm")
    assert row["per_class_accuracy"] == tflm.per_class_accuracy and row["confusion"] == tflm.confusion


def test_labels_outside_the_model_classes_are_an_error(vww_int8_path, tmp_path):
    path = tmp_path / "seven.npz"
    x = np.random.default_rng(0).random((7, 96, 96, 3), np.float32)
    np.savez(path, x=x, y=np.arange(7))
    with pytest.raises(DataError, match=r"seven.npz: labels 0–6, but the model has 2 classes"):
        check_command(vww_int8_path, path)


def test_pixels_0_255_for_a_0_1_model_are_an_error(vww_int8_path, tmp_path):
    path = tmp_path / "raw.npz"
    x = np.random.default_rng(0).integers(0, 256, (4, 96, 96, 3)).astype(np.float32)
    np.savez(path, x=x, y=np.array([0, 1, 0, 1]))
    with pytest.raises(DataError, match="outside the model's input domain") as e:
        check_command(vww_int8_path, path)
    assert "divide by 255" in e.value.hint
    np.savez(path, x=x / 255, y=np.array([0, 1, 0, 1]))
    assert check_command(vww_int8_path, path).samples == 4


def test_card_model_refuses_0_255_arrays(tmp_path):
    from edgeq.learn.zoo import load_card

    card = load_card("fmnist")
    path = tmp_path / "raw.npz"
    x = np.random.default_rng(0).integers(0, 256, (32, 32, 32, 1)).astype(np.float32)
    np.savez(path, x=x, y=np.arange(32) % 10)
    with pytest.raises(DataError, match=r"raw.npz: .* outside the model's input domain \[0, 1\]") as e:
        load_build_data(BuildConfig(data=str(path)), card, (32, 32, 1), "grayscale", 255.0,
                        card.labels)
    assert "divided by 255" in e.value.hint


def test_a_single_sigmoid_output_is_a_binary_classifier(tmp_path):
    """TF's own converter on a Dense(1, sigmoid) model biased toward class 1."""
    import tf_keras as keras

    from edgeq.learn.tf_baseline import tflite_int8_ptq

    inp = keras.Input((8, 8, 1))
    dense = keras.layers.Dense(1, activation="sigmoid")
    model = keras.Model(inp, dense(keras.layers.Flatten()(inp)))
    kernel = np.random.default_rng(0).normal(0, 0.05, (64, 1)).astype(np.float32)
    dense.set_weights([kernel, np.array([2.0], np.float32)])  # sigmoid(≈2) ≈ 0.88
    x = np.random.default_rng(1).random((40, 8, 8, 1), np.float32)
    real = model.predict(x, verbose=0)[:, 0]
    assert np.mean(real > 0.5) > 0.9
    y = (real > 0.5).astype(np.int64)
    result = check_model(tflite_int8_ptq(model, x), x, y, float_outputs=real[:, None])
    litert, tflm = result.runtime("litert"), result.runtime("tflm")
    assert litert.accuracy == tflm.accuracy == 1.0  # the arg max of one value would be class 0
    assert result.float_accuracy == 1.0 and litert.float_agreement == 1.0
    assert tflm.confusion == [[int(np.sum(y == 0)), 0], [0, int(np.sum(y == 1))]]
    with pytest.raises(DataError, match="labels 0–2, but the model has 2 classes"):
        check_model(tflite_int8_ptq(model, x), x, np.arange(40) % 3)


def test_zoo_model_without_weights_is_an_error(tmp_path):
    result = CliRunner().invoke(main, ["build", "--model", "person_detect_rgb", "--data",
                                       str(_coco_like_folder(tmp_path / "d")),
                                       "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "--model person_detect_rgb without --weights" in text and "--epochs N" in text
    assert "Traceback" not in text and not (tmp_path / "out").exists()


@pytest.fixture(scope="module")
def chance_model(tmp_path_factory):
    """An untrained model, and random photos with an unreadable one among them (its warning
    names it: tests/test_datasets.py)."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("chance")
    _coco_like_folder(d / "photos")
    (d / "photos" / "b" / "val2017_broken.png").write_bytes(b"not a png")
    keras.utils.set_random_seed(0)
    inp = keras.Input((8, 8, 3))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)).save(d / "m.h5")
    return d


def test_a_float_model_at_chance_stops_the_build_unless_forced(chance_model, tmp_path):
    args = ["build", "--keras-model", str(chance_model / "m.h5"), "--data",
            str(chance_model / "photos"), "--no-baseline"]
    result = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "the float model is at chance on the evaluation data" in text and "--force" in text
    assert not (tmp_path / "out").exists()
    forced = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "forced"), "--force"])
    assert forced.exit_code == 0, forced.output
    report = json.loads((tmp_path / "forced" / "report.json").read_text())
    float_row = report["accuracy"][0]
    assert float_row["name"] == "float"
    assert float_row["accuracy"] <= report["data"]["chance"]["threshold"]
    assert report["data"]["chance"]["majority"] == pytest.approx(58 / 64)
    assert report["data"]["evaluation_chosen"] == "all samples"
    assert report["data"]["skipped_unreadable"] == ["b/val2017_broken.png"]
    assert [sum(row) for row in float_row["confusion"]] == [58, 6]


def test_train_qgt_validates_the_data_against_the_users_model(tmp_path):
    """A 16x16 two-class model: the fmnist card (32x32, 10 classes) must not be asked."""
    import tf_keras as keras

    from edgeq.tflite.read import read_model

    rng = np.random.default_rng(0)
    x = rng.random((64, 16, 16, 1), np.float32)
    y = (x.mean(axis=(1, 2, 3)) > np.median(x.mean(axis=(1, 2, 3)))).astype(np.int64)
    np.savez(tmp_path / "mine.npz", x=x, y=y)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)).save(tmp_path / "mine.h5")
    out = tmp_path / "mine_qgt.tflite"
    args = ["train", "--qgt", "--keras-model", str(tmp_path / "mine.h5"), "--data",
            str(tmp_path / "mine.npz"), "--epochs", "1", "--batch-size", "16", "--out", str(out)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert read_model(out.read_bytes()).input_tensors[0].shape == (1, 16, 16, 1)
    np.savez(tmp_path / "mine.npz", x=x, y=np.arange(64) % 5)
    bad = CliRunner().invoke(main, args)
    assert bad.exit_code == 2 and "labels 0–4, but the model has 2 classes" in " ".join(bad.output.split())


def test_qemu_check_limit_is_stratified(tmp_path):
    """`check --target qemu --limit 8` on labels in class order (20 of class 0, then 4 of 1)."""
    import tf_keras as keras

    from edgeq.learn.export import export_tflite

    rng = np.random.default_rng(1)
    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    x = rng.random((24, 12, 12, 1), np.float32)
    export_tflite(model, x, 8, tmp_path / "m.tflite")
    np.savez(tmp_path / "d.npz", x=x, y=np.array([0] * 20 + [1] * 4))
    out = tmp_path / "q.json"
    result = CliRunner().invoke(main, ["check", str(tmp_path / "m.tflite"), "--data",
                                       str(tmp_path / "d.npz"), "--target", "qemu", "--limit", "12",
                                       "--out", str(tmp_path / "fw"), "--json", str(out)])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["chosen"] == "12 of 24, stratified by class, seed 0"
    assert [sum(row) for row in payload["confusion"]] == [10, 2]
    assert payload["identical_to_tflm"] is True
    np.savez(tmp_path / "raw.npz", x=x * 255, y=np.array([0] * 20 + [1] * 4))
    raw = CliRunner().invoke(main, ["check", str(tmp_path / "m.tflite"), "--data",
                                    str(tmp_path / "raw.npz"), "--target", "qemu",
                                    "--out", str(tmp_path / "fw_raw")])
    assert raw.exit_code == 2 and "divide by 255" in " ".join(raw.output.split())
    assert not (tmp_path / "fw_raw").exists()  # refused before the firmware is built


def test_chance_level_is_the_majority_share_plus_two_standard_errors():
    from edgeq.build import chance_level

    vww = chance_level(np.array([0] * 62 + [1] * 66), 2)  # the 128 val2017 photos
    assert vww["majority"] == pytest.approx(66 / 128)
    spread = 2 * np.sqrt(66 / 128 * 62 / 128 / 128)
    assert vww["threshold"] == pytest.approx(66 / 128 + spread)
    assert 0.4531 < vww["threshold"] < 0.86  # the untrained demo's 45.31% is refused, vww_96's 86% is not
    ten = chance_level(np.arange(2000) % 10, 10)
    assert ten["threshold"] == pytest.approx(0.1 + 2 * np.sqrt(0.09 / 2000))
    assert chance_level(np.ones(20, np.int64), 2) is None  # one class only: guessing is perfect


def test_quantize_refuses_data_outside_its_input_range(tmp_path):
    import tf_keras as keras

    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(2, 3, padding="same", activation="relu")(inp)
    keras.Model(inp, keras.layers.Dense(2)(keras.layers.Flatten()(h))).save(tmp_path / "m.h5")
    x = np.random.default_rng(0).integers(0, 256, (16, 8, 8, 1)).astype(np.float32)
    np.savez(tmp_path / "raw.npz", x=x)
    result = CliRunner().invoke(main, ["quantize", str(tmp_path / "m.h5"), "--data",
                                       str(tmp_path / "raw.npz"), "--input-range", "0", "1",
                                       "--bits", "8", "--out", str(tmp_path / "m.tflite")])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "outside the model's input domain [0, 1]" in text and "divide by 255" in text
    assert not (tmp_path / "m.tflite").exists()


def test_preflight_refuses_eval_limit_0_and_a_zoo_model_without_weights(tmp_path):
    from edgeq.build import preflight
    from edgeq.errors import EdgeqError

    out = str(tmp_path / "out")
    with pytest.raises(DataError, match=r"--eval-limit 0: must be a positive number"):
        preflight(BuildConfig(eval_limit=0, out=out))
    with pytest.raises(EdgeqError, match="--model person_detect without --weights"):
        preflight(BuildConfig(model="person_detect", out=out))
    preflight(BuildConfig(model="person_detect", epochs=2, out=out))  # training asked for
    preflight(BuildConfig(out=out))  # the demo trains by itself
