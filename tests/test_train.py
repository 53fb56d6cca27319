"""`edgeq train` on a small slice of the real Fashion-MNIST, written as IDX files."""

import gzip
import json
import struct

import numpy as np
import pytest
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.data import FASHION_MNIST_DIR, _read_idx


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def _slice_of_fashion_mnist(tmp_path):
    for split, n in (("train", 2000), ("t10k", 500)):
        images = _read_idx(FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz")[:n]
        labels = _read_idx(FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")[:n]
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)


def test_train_saves_a_keras_model_that_learned(tmp_path):
    import tf_keras

    _slice_of_fashion_mnist(tmp_path)
    out = tmp_path / "fm.h5"
    result = CliRunner().invoke(main, ["train", "--model", "fmnist", "--data", str(tmp_path),
                                       "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    accuracy = float(text.split("training accuracy")[1].split(";")[0])
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    # BatchNorm statistics re-estimated after training: the saved model is not at chance
    assert float(text.rsplit("validation accuracy", 1)[1].split(";")[0]) > 0.5
    model = tf_keras.models.load_model(out, compile=False)
    assert model.output_shape == (None, 10)


@pytest.mark.parametrize("bits", ["4", "3", "mixed"])
def test_train_qgt_writes_an_int4_tflite(tmp_path, bits):
    from edgeq.tflite.read import read_model

    _slice_of_fashion_mnist(tmp_path)
    out = tmp_path / "fm_qgt.tflite"
    result = CliRunner().invoke(main, ["train", "--qgt", "--model", "fmnist", "--data", str(tmp_path),
                                       "--epochs", "1", "--bits", bits, "--out", str(out)])
    assert result.exit_code == 0, result.output
    model = read_model(out.read_bytes())
    assert "int4" in {t.dtype for t in model.tensors}
    text = " ".join(result.output.split())
    assert "distance to the grid" in text
    if bits == "mixed":  # 2-bit layers, the bottlenecks lifted, recorded in the .tflite
        plan = json.loads(model.metadata["edgeq"])["bits"]
        assert "mixed plan" in text and 2 in plan.values() and max(plan.values()) == 8
    if bits == "3":  # inner layers on the 3-bit grid [-4, 3], and not only on the 2-bit one
        plan = json.loads(model.metadata["edgeq"])["bits"]
        assert sorted(set(plan.values())) == [3, 8]
        inner = [t.data for t in model.tensors if t.dtype == "int4"]
        assert inner and all(d.min() >= -4 and d.max() <= 3 for d in inner)
        assert any(d.min() < -2 or d.max() > 1 for d in inner)


def test_synth_writes_npz_that_data_options_accept(tmp_path):
    import tf_keras as keras

    from edgeq.data import load_dataset

    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.ReLU()(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    bn = model.layers[2]
    bn.moving_mean.assign(np.linspace(-0.2, 0.3, 4).astype(np.float32))
    bn.moving_variance.assign(np.linspace(0.5, 2.0, 4).astype(np.float32))
    model.save(tmp_path / "m.h5")
    out = tmp_path / "s.npz"
    result = CliRunner().invoke(main, ["synth", str(tmp_path / "m.h5"), "--samples", "8", "--batch-size", "8",
                                       "--iterations", "5", "--out", str(out), "--preview", str(tmp_path / "p.png")])
    assert result.exit_code == 0, result.output
    assert load_dataset(out, (12, 12, 1)).x.shape == (8, 12, 12, 1)
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_one_short_epoch_evaluates_like_it_trained():
    """16 steps of 128 images: Keras' BatchNorm moving averages (momentum 0.99) still hold most
    of their initial mean 0 / variance 1, which put the float model at chance (9.7% on the
    very images it trained on at 47%); train() measures them again on the training data."""
    from edgeq.data import fashion_mnist
    from edgeq.learn.train import evaluate_float, train
    from edgeq.learn.zoo import build_model, load_card

    card = load_card("fmnist")
    train_ds, test_ds = fashion_mnist(tuple(card.input_shape))
    train_ds, test_ds = train_ds.subset(np.arange(2000)), test_ds.subset(np.arange(500))
    model = build_model(card)
    result = train(model, train_ds, test_ds, 1, 128, card.train["learning_rate"], seed=0)
    trained = result.history["accuracy"][-1]
    assert trained > 0.35
    assert evaluate_float(model, train_ds)[0] > trained - 0.05
    assert result.val_accuracy == evaluate_float(model, test_ds)[0] > trained - 0.15


def test_labels_beyond_the_model_outputs_are_refused_before_training():
    import tf_keras as keras

    from edgeq.data import Dataset
    from edgeq.errors import DataError
    from edgeq.learn.train import train

    inp = keras.Input((4, 4, 1))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(keras.layers.Flatten()(inp)))
    ds = Dataset(np.zeros((8, 4, 4, 1), np.float32), np.arange(8) % 5, [], "five.npz")
    with pytest.raises(DataError, match="five.npz: labels 0–4, but the model has 3 classes"):
        train(model, ds, None, 1)
