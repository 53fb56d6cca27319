import gzip
import struct

import numpy as np
import pytest
from PIL import Image

from edgeq.data import (
    Dataset,
    check_input_domain,
    check_labels,
    class_labels,
    classification,
    fashion_mnist,
    load_dataset,
    output_classes,
    stratified_subset,
)
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
    """The card says [person, no_person]: label 0 must be the person folder, although it sorts
    second. Each image says its class (person bright, non_person dark; 3 and 2 of them), so a
    loader that ignored the card's order would give the bright images label 1."""
    for name, value, count in (("non_person", 10, 2), ("person", 245, 3)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(np.full((12, 12, 3), value, np.uint8)).save(tmp_path / name / f"{name}{i}.png")
    ds = load_dataset(tmp_path, (8, 8, 3), "rgb", 255.0, class_names=["person", "no_person"])
    assert ds.class_names == ["person", "no_person"]
    bright = ds.x.mean(axis=(1, 2, 3)) > 0.5
    assert list(ds.y[bright]) == [0, 0, 0] and list(ds.y[~bright]) == [1, 1]
    assert all(n.startswith("person") for n in np.asarray(ds.names)[ds.y == 0])


def test_unreadable_images_are_skipped_and_named(tmp_path, caplog):
    folder = _folder(tmp_path)
    (folder / "person" / "broken.jpg").write_bytes(b"not a jpeg")
    (folder / "non_person" / "empty.png").write_bytes(b"")
    ds = load_dataset(folder, (8, 8, 3), "rgb", 255.0)
    assert len(ds) == 6 and ds.skipped == ["non_person/empty.png", "person/broken.jpg"]
    assert "skipped 2 unreadable image(s): non_person/empty.png, person/broken.jpg" in caplog.text
    assert ds.by_prefix("0").skipped == ds.skipped  # subsets still say what the source lacked


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


def test_stratified_subset_takes_every_class_in_proportion():
    y = np.array([0] * 58 + [1] * 6)  # an image folder: one class after the other
    index = stratified_subset(y, 16, seed=0)
    assert len(index) == 16 and len(set(index)) == 16 and list(index) == sorted(index)
    assert np.bincount(y[index]).tolist() == [15, 1]  # 16 * 58/64 = 14.5, 16 * 6/64 = 1.5
    assert np.bincount(y[stratified_subset(y, 32, seed=0)]).tolist() == [29, 3]
    assert np.array_equal(index, stratified_subset(y, 16, seed=0))
    assert not np.array_equal(index, stratified_subset(y, 16, seed=1))
    rare = np.array([0] * 100 + [1] + [2] * 3)
    assert np.bincount(rare[stratified_subset(rare, 3, seed=0)]).tolist() == [1, 1, 1]
    assert np.bincount(rare[stratified_subset(rare, 10, seed=0)], minlength=3).tolist() == [8, 1, 1]
    assert np.array_equal(stratified_subset(y, 64), np.arange(64))
    with pytest.raises(DataError, match="at least 1"):
        stratified_subset(y, 0)


def test_dataset_stratified_says_how_it_was_chosen(tmp_path):
    ds = load_dataset(_folder(tmp_path, n=6), (8, 8, 3), "rgb", 255.0)
    half = ds.stratified(4, seed=3)
    assert half.y.tolist() == [0, 0, 1, 1]
    assert half.chosen == "4 of 12, stratified by class, seed 3"
    assert ds.stratified(None) is ds and ds.stratified(50) is ds
    with pytest.raises(DataError, match=r"--eval-limit 0: must be a positive number"):
        ds.stratified(0, option="--eval-limit")


def test_classification_counts_against_a_loop():
    rng = np.random.default_rng(0)
    y = rng.integers(-1, 3, 200)
    predicted = rng.integers(0, 3, 200)
    scores = classification(y, predicted, 3)
    for c in range(3):
        mine = [p for t, p in zip(y, predicted, strict=True) if t == c]
        assert scores["per_class_accuracy"][c] == pytest.approx(sum(p == c for p in mine) / len(mine))
        for d in range(3):
            assert scores["confusion"][c][d] == sum(p == d for p in mine)
    known = y >= 0
    assert scores["accuracy"] == pytest.approx(np.mean(y[known] == predicted[known]))


def test_single_unit_output_is_a_binary_classifier():
    assert class_labels(np.array([[0.9], [0.2], [0.51]])).tolist() == [1, 0, 1]
    assert class_labels(np.array([[0.1, 0.7, 0.2]])).tolist() == [1]
    assert output_classes(1) == 2 and output_classes(10) == 10


def test_labels_out_of_range_and_data_outside_the_domain():
    with pytest.raises(DataError, match=r"d.npz: labels 0–6, but the model has 2 classes"):
        check_labels(np.array([0, 3, 6, -1]), 2, "d.npz")
    check_labels(np.array([0, 1, -1]), 2, "d.npz")
    pixels = np.random.default_rng(0).integers(0, 256, (4, 8, 8, 1)).astype(np.float32)
    with pytest.raises(DataError, match=r"outside the model's input domain \[0, 1\]") as e:
        check_input_domain(pixels, 0.0, 1.0, "d.npz", "divide by 255")
    assert e.value.hint == "divide by 255"
    check_input_domain(pixels / 255, 0.0, 1.0, "d.npz", "divide by 255")


def test_split_keeps_every_class_share():
    y = np.array([0] * 80 + [1] * 20)
    ds = Dataset(np.zeros((100, 2, 2, 1), np.float32), y, ["a", "b"], "d.npz")
    first, rest = ds.split(0.5, seed=4)
    assert np.bincount(first.y).tolist() == [40, 10] and np.bincount(rest.y).tolist() == [40, 10]
    assert first.chosen == "50 of 100, a split stratified by class, seed 4"
    assert rest.chosen == "the other 50 of 100, a split stratified by class, seed 4"
    assert rest.stratified(10, 0).chosen == ("10 of 50 (the other 50 of 100, a split stratified "
                                             "by class, seed 4), stratified by class, seed 0")


def test_stratified_subset_is_the_largest_remainder_apportionment():
    """Against an independent count: per class floor(n·share), the remaining samples to the
    largest remainders (when every class has at least one whole sample of quota); every
    class present when n >= classes; never more than a class has; seeded picks."""
    from edgeq.data import stratified_subset

    rng = np.random.default_rng(3)
    checked = forced = 0
    for _ in range(400):
        counts = rng.integers(1, 40, size=int(rng.integers(2, 6)))
        y = rng.permutation(np.repeat(np.arange(len(counts)), counts))
        n = int(rng.integers(1, len(y)))
        picked = stratified_subset(y, n, seed=5)
        quota = np.bincount(y[picked], minlength=len(counts))
        assert len(picked) == n == len(np.unique(picked)) and np.all(np.diff(picked) > 0)
        assert np.all(quota <= counts)
        exact = n * counts / len(y)
        remainders = exact - np.floor(exact)
        if n >= len(counts):
            assert np.all(quota >= 1)
        if np.all(exact >= 1) and len(np.unique(remainders)) == len(remainders):
            hamilton = np.floor(exact).astype(int)
            hamilton[np.argsort(-remainders)[: n - hamilton.sum()]] += 1
            assert quota.tolist() == hamilton.tolist(), (counts, n)
            checked += 1
        else:
            forced += 1
        again = stratified_subset(y, n, seed=5)
        np.testing.assert_array_equal(picked, again)
    assert checked > 150 and forced > 20
    y = np.repeat([0, 1], [50, 50])
    assert not np.array_equal(stratified_subset(y, 10, seed=1), stratified_subset(y, 10, seed=2))
    np.testing.assert_array_equal(stratified_subset(y, 100), np.arange(100))
    np.testing.assert_array_equal(stratified_subset(y, 250), np.arange(100))
    with pytest.raises(DataError, match="a subset of 0 samples"):
        stratified_subset(y, 0)


def test_npz_contents_labels_and_every_message(tmp_path):
    from edgeq.data import load_npz

    x = np.random.default_rng(0).random((4, 6, 5), np.float32)
    np.savez(tmp_path / "x_only.npz", x=x.astype(np.float64))
    ds = load_npz(tmp_path / "x_only.npz", (6, 5, 1))
    assert ds.x.shape == (4, 6, 5, 1) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [-1] * 4  # no labels: -1, not a class
    assert ds.class_names == [] and ds.source == str(tmp_path / "x_only.npz")
    np.savez(tmp_path / "labels.npz", x=x[..., None], y=np.array([2, 0, 1, 2], np.uint8))
    ds = load_npz(tmp_path / "labels.npz")
    assert ds.y.dtype == np.int64 and ds.y.tolist() == [2, 0, 1, 2]
    assert ds.class_names == ["0", "1", "2"]
    np.savez(tmp_path / "zero.npz", x=x, y=np.zeros(4, np.int64))
    assert load_npz(tmp_path / "zero.npz").class_names == ["0"]
    np.savez(tmp_path / "no_x.npz", images=x, y=np.zeros(4))
    with pytest.raises(DataError) as e:
        load_npz(tmp_path / "no_x.npz")
    assert e.value.message == f"{tmp_path / 'no_x.npz'}: no array named 'x' (found images, y)"
    assert e.value.hint == "save inputs with np.savez(path, x=images, y=labels)"
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(DataError, match=r"\(found none\)"):
        load_npz(tmp_path / "empty.npz")
    with pytest.raises(DataError) as e:
        load_npz(tmp_path / "labels.npz", (8, 8, 1))
    assert e.value.message == (f"{tmp_path / 'labels.npz'}: inputs have shape (6, 5, 1), the "
                               "model wants (8, 8, 1)")
    assert e.value.hint == "resize the arrays or choose the matching model"
    np.savez(tmp_path / "short.npz", x=x, y=np.zeros(3))
    with pytest.raises(DataError, match="4 inputs but 3 labels"):
        load_npz(tmp_path / "short.npz")
    np.savez(tmp_path / "pickled.npz", x=np.array([{"code": 1}] * 4, dtype=object))
    with pytest.raises(DataError, match="not a readable .npz file"):  # never unpickled
        load_npz(tmp_path / "pickled.npz")


def _idx_bytes(array: np.ndarray) -> bytes:
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def test_idx_splits_padding_gzip_headers_and_fashion_mnist_names(tmp_path):
    from edgeq.data import fashion_mnist, load_idx

    train_x = np.full((3, 4, 2), 200, np.uint8)  # 4 rows, 2 columns: a swapped h/w shows
    test_x = np.full((2, 4, 2), 100, np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(train_x))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([9, 0, 4])))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(test_x)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.array([1, 2]))))
    train = load_idx(tmp_path, (8, 6, 1), 255.0, "train")
    assert train.x.shape == (3, 8, 6, 1) and train.x.dtype == np.float32
    assert train.y.dtype == np.int64 and train.y.tolist() == [9, 0, 4]
    assert train.class_names == [str(i) for i in range(10)]
    assert train.source == str(tmp_path / "train-images-idx3-ubyte")
    expected = np.zeros((8, 6), np.float32)
    expected[2:6, 2:4] = 200 / 255  # centred: (8 - 4) // 2 rows, (6 - 2) // 2 columns
    np.testing.assert_array_equal(train.x[0, ..., 0], expected)
    test = load_idx(tmp_path, (8, 6, 1), 255.0, "test")  # the gzipped t10k files
    assert test.y.tolist() == [1, 2] and np.isclose(test.x.max(), 100 / 255)
    same = load_idx(tmp_path, (4, 2, 1), 255.0, "train")  # already the size: unchanged
    assert np.isclose(same.x, 200 / 255).all()
    header = _idx_bytes(train_x)
    for position, value in ((0, 1), (1, 1), (2, 0x09)):
        broken = bytearray(header)
        broken[position] = value
        (tmp_path / "bad-images-idx3-ubyte").write_bytes(bytes(broken))
        (tmp_path / "bad-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([0, 0, 0])))
        with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
            load_idx(tmp_path / "bad-images-idx3-ubyte", (4, 2, 1), 255.0)
    (tmp_path / "bad-images-idx3-ubyte").write_bytes(header[:3])
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        load_idx(tmp_path / "bad-images-idx3-ubyte", (4, 2, 1), 255.0)
    (tmp_path / "bad-images-idx3-ubyte").write_bytes(header)
    (tmp_path / "bad-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([0, 0])))
    with pytest.raises(DataError, match=r"images \(3, 4, 2\) and labels \(2,\) do not match"):
        load_idx(tmp_path / "bad-images-idx3-ubyte", (4, 2, 1), 255.0)
    train, test = fashion_mnist((8, 6, 1), root=tmp_path)
    assert train.class_names == test.class_names == [
        "t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
        "bag", "ankle boot"]
    assert train.y.tolist() == [9, 0, 4] and test.y.tolist() == [1, 2]
    assert np.isclose(test.x.max(), 100 / 255)  # /255, the test split from the t10k files
    with pytest.raises(DataError, match="Fashion-MNIST not found"):
        fashion_mnist(root=tmp_path / "nowhere")
