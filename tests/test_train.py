"""`edgeq train` on a small slice of the real Fashion-MNIST, written as IDX files."""

import gzip
import struct

import numpy as np
from click.testing import CliRunner

from edgeq.cli import main
from edgeq.datasets import FASHION_MNIST_DIR, _read_idx


def _write_idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_train_saves_a_keras_model_that_learned(tmp_path):
    import tf_keras

    for split, n in (("train", 2000), ("t10k", 500)):
        images = _read_idx(FASHION_MNIST_DIR / f"{split}-images-idx3-ubyte.gz")[:n]
        labels = _read_idx(FASHION_MNIST_DIR / f"{split}-labels-idx1-ubyte.gz")[:n]
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", images)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    out = tmp_path / "fm.h5"
    result = CliRunner().invoke(main, ["train", "--model", "fmnist", "--data", str(tmp_path),
                                       "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "validation accuracy" in text
    # Training accuracy: after 32 steps BatchNorm's moving averages (momentum 0.99) have not
    # settled yet, so the validation figure of so short a run says little.
    accuracy = float(text.split("training accuracy")[1].split(";")[0])
    assert accuracy > 0.5  # 10 classes: chance is 0.1
    model = tf_keras.models.load_model(out, compile=False)
    assert model.output_shape == (None, 10)
