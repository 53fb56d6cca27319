import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from edgeq.data import fashion_mnist, load_dataset
from edgeq.errors import DataError


def _folder(tmp_path, classes=("non_person", "person"), n=3, size=(40, 30)):
    rng = np.random.default_rng(0)
    for c in classes:
        (tmp_path / c).mkdir()
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(tmp_path / c / f"{i}.jpg")
    return tmp_path


def test_image_folder_resized_converted_and_labelled(tmp_path):
    ds = load_dataset(_folder(tmp_path), (16, 16, 1), "grayscale", 255.0)
    assert ds.x.shape == (6, 16, 16, 1) and ds.x.dtype == np.float32
    assert 0 <= ds.x.min() and ds.x.max() <= 1
    assert list(ds.y) == [0, 0, 0, 1, 1, 1] and ds.class_names == ["non_person", "person"]


def test_class_order_follows_the_model_card(tmp_path):
    ds = load_dataset(_folder(tmp_path), (8, 8, 3), "rgb", 255.0, class_names=["person", "no_person"])
    assert list(ds.y[:3]) == [0, 0, 0] and ds.names[0] == "0.jpg"
    assert ds.class_names == ["person", "no_person"]


def test_unreadable_images_are_skipped_with_a_count(tmp_path, caplog):
    folder = _folder(tmp_path)
    (folder / "person" / "broken.jpg").write_bytes(b"not a jpeg")
    ds = load_dataset(folder, (8, 8, 3), "rgb", 255.0)
    assert len(ds) == 6 and ds.skipped == 1
    assert "skipped 1 unreadable" in caplog.text


def test_only_unreadable_images_fail(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match="all 1 images were unreadable"):
        load_dataset(tmp_path, (8, 8, 3), "rgb", 255.0)


def test_empty_folder_and_folder_without_classes(tmp_path):
    with pytest.raises(DataError, match="empty"):
        load_dataset(tmp_path, (8, 8, 3))
    Image.new("RGB", (8, 8)).save(tmp_path / "loose.jpg")
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(tmp_path, (8, 8, 3))


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "nope", (8, 8, 3))


def test_npz_shape_nan_and_missing_x(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.zeros((4, 8, 8, 1), np.float32), y=np.arange(4))
    assert len(load_dataset(good, (8, 8, 1))) == 4
    with pytest.raises(DataError, match=r"the model wants \(9, 9, 1\)"):
        load_dataset(good, (9, 9, 1))
    nan = tmp_path / "nan.npz"
    np.savez(nan, x=np.full((2, 8, 8, 1), np.nan, np.float32))
    with pytest.raises(DataError, match="NaN/Inf"):
        load_dataset(nan, (8, 8, 1))
    nox = tmp_path / "nox.npz"
    np.savez(nox, images=np.zeros((2, 8, 8, 1)))
    with pytest.raises(DataError, match="no array named 'x'"):
        load_dataset(nox, (8, 8, 1))


def _idx(path, arr):
    header = bytes([0, 0, 8, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_idx_folder_padded_to_the_model_size(tmp_path):
    rng = np.random.default_rng(1)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 255, (5, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(5))
    ds = load_dataset(tmp_path, (32, 32, 1), "grayscale", 255.0)
    assert ds.x.shape == (5, 32, 32, 1) and list(ds.y) == [0, 1, 2, 3, 4]
    assert ds.x[:, :2].max() == 0  # zero padding of 2 on every side


def test_truncated_idx(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 8, 3]) + struct.pack(">3I", 10, 28, 28) + b"\0" * 100)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\0" * 10)
    with pytest.raises(DataError, match="truncated"):
        load_dataset(tmp_path, (32, 32, 1), "grayscale")


def test_real_fashion_mnist_and_deterministic_split():
    train, test = fashion_mnist()
    assert train.x.shape == (60000, 32, 32, 1) and len(test) == 10000
    a, b = train.take(1000).split(0.3, seed=7)
    a2, _ = train.take(1000).split(0.3, seed=7)
    assert len(a) == 300 and len(b) == 700 and np.array_equal(a.y, a2.y)


def test_coco_vww_prefix_split(coco_vww_dir):
    ds = load_dataset(coco_vww_dir, (96, 96, 3), "rgb", 255.0, ["no_person", "person"])
    assert len(ds) == 256 and int(ds.y.sum()) == 123
    assert len(ds.by_prefix("train2017_")) == 128 and len(ds.by_prefix("val2017_")) == 128
