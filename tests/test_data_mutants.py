"""edgeq.data's paths the mutation run found untested by tests/test_datasets.py: .npz
regression targets against labels, ranks, the cheap check_data_source, load_dataset's
messages, subsets that carry names and targets, and the thresholds of the checks (numpy and
Pillow only: these run in the mutation run of edgeq/data.py)."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from PIL import Image

from edgeq.data import (
    IMAGE_SUFFIXES,
    Dataset,
    check_data_source,
    check_finite,
    check_input_domain,
    check_labels,
    class_labels,
    classification,
    load_dataset,
    load_npz,
    percent,
)
from edgeq.errors import DataError

SUFFIXES = ", ".join(IMAGE_SUFFIXES)


def _raises(call, *args, **kwargs) -> DataError:
    with pytest.raises(DataError) as e:
        call(*args, **kwargs)
    return e.value


# ---- .npz: labels, targets and ranks ----------------------------------------------------------


def test_npz_targets_by_the_shape_of_y(tmp_path):
    x = np.arange(4 * 6, dtype=np.float64).reshape(4, 6)
    path = tmp_path / "reg.npz"
    np.savez(path, x=x, y=x[:, :3] / 2)  # (N, 3) floats: targets of a 3-output model
    ds = load_npz(path, (6,), (3,))
    assert ds.y.tolist() == [-1] * 4 and ds.y.dtype == np.int64 and ds.class_names == []
    assert ds.targets.dtype == np.float32 and ds.targets.shape == (4, 3)
    np.testing.assert_array_equal(ds.targets, (x[:, :3] / 2).astype(np.float32))
    # the model's output shape may carry axes of size 1: the targets take it
    assert load_npz(path, (6,), (1, 3)).targets.shape == (4, 1, 3)
    # without an output shape the targets keep y's own shape
    assert load_npz(path, (6,)).targets.shape == (4, 3)
    # (N, 1) whole numbers: a label column, unless the model has a single output
    np.savez(path, x=x, y=np.array([[1], [0], [2], [1]]))
    ds = load_npz(path, (6,))
    assert ds.targets is None and ds.y.tolist() == [1, 0, 2, 1]
    assert ds.class_names == ["0", "1", "2"]
    assert load_npz(path, (6,), (4,)).targets is None  # four outputs: labels
    single = load_npz(path, (6,), (1,))
    assert single.y.tolist() == [-1] * 4
    assert single.targets.tolist() == [[1.0], [0.0], [2.0], [1.0]]
    # (N, 1) with a fraction: targets; (N, 2) whole numbers: targets too
    np.savez(path, x=x, y=np.array([[1.5], [0], [2], [1]]))
    assert load_npz(path, (6,)).targets.shape == (4, 1)
    np.savez(path, x=x, y=np.ones((4, 2), np.int64))
    assert load_npz(path, (6,)).targets.tolist() == [[1.0, 1.0]] * 4
    # 1-D booleans are labels 0 / 1
    np.savez(path, x=x, y=np.array([True, False, True, True]))
    assert load_npz(path, (6,)).y.tolist() == [1, 0, 1, 1]


def test_npz_targets_and_labels_are_refused_with_the_fix(tmp_path):
    x = np.zeros((4, 6), np.float32)
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=np.zeros((3, 6)))
    e = _raises(load_npz, path, (6,), (6,))
    assert e.message == f"{path}: 4 inputs but 3 targets in y"
    assert e.hint == "save one target per input, y of shape (N, ...) like the model's output"
    np.savez(path, x=x, y=np.zeros((4, 5)))
    e = _raises(load_npz, path, (6,), (1, 6))
    assert e.message == (f"{path}: y has shape (5,) per sample, but the model's output is "
                         "(1, 6) per sample")
    assert e.hint == ("regression targets: save y of shape (N, 1, 6) (an autoencoder's targets "
                      "are its inputs); class labels: a 1-D y of N integers")
    np.savez(path, x=x, y=np.array([["a", "b"]] * 4))
    assert _raises(load_npz, path, (6,)).message == f"{path}: y holds <U1 values, not numbers"
    y = np.zeros((4, 2))
    y[1, 1], y[2, 0] = np.nan, np.inf
    np.savez(path, x=x, y=y)
    e = _raises(load_npz, path, (6,))
    assert e.message == f"{path} (y): 2 NaN/Inf values in the data"
    assert e.hint == "clean the data or drop those samples"
    np.savez(path, x=x, y=np.array([0.5, 1, 0, 1]))
    e = _raises(load_npz, path, (6,))
    assert e.message == (f"{path}: y has shape (4,) but its values are not whole numbers, so "
                         "they are not class labels")
    assert e.hint == ("regression targets: save y with the model output's shape, (N, 1) for a "
                      "single output; class labels: integers 0, 1, ... (-1 = unknown)")
    np.savez(path, x=x, y=np.array([np.nan, 1, 0, 1]))
    assert "not whole numbers" in _raises(load_npz, path, (6,)).message
    np.savez(path, x=np.zeros(4))
    e = _raises(load_npz, path)
    assert e.message == f"{path}: x has shape (4,); it must hold N samples, (N, ...)"
    assert e.hint == "save x with the samples along its first axis, e.g. (N, 640)"
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert _raises(load_npz, tmp_path / "junk.npz").message.startswith(
        f"{tmp_path / 'junk.npz'}: not a readable .npz file (")


def test_npz_ranks_take_the_missing_trailing_axis(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((2, 49, 10)))
    assert load_npz(path, (49, 10, 1)).x.shape == (2, 49, 10, 1)
    assert load_npz(path, (49, 10)).x.shape == (2, 49, 10)  # already the model's shape
    assert load_npz(path).x.shape == (2, 49, 10, 1)  # 3-D without a shape: grayscale images
    np.savez(path, x=np.zeros((2, 640)))
    assert load_npz(path).x.shape == (2, 640)
    np.savez(path, x=np.zeros((2, 8, 8, 3)))
    assert load_npz(path).x.shape == (2, 8, 8, 3)
    assert load_npz(path, (8, 8, 3, 1)).x.shape == (2, 8, 8, 3, 1)
    e = _raises(load_npz, path, (8, 8, 1))  # only a missing trailing axis of size 1 is added
    assert "inputs have shape (8, 8, 3), the model wants (8, 8, 1)" in e.message
    np.savez(path, x=np.zeros((2, 8, 8)), y=np.array([-1, -1]))
    ds = load_npz(path)
    assert ds.class_names == [] and ds.y.tolist() == [-1, -1]
    np.savez(path, x=np.zeros((0, 8, 8)), y=np.zeros(0, np.int64))
    assert load_npz(path).class_names == []


# ---- check_data_source and load_dataset ---------------------------------------------------


def test_check_data_source_accepts_sources_and_names_what_is_wrong(tmp_path):
    e = _raises(check_data_source, tmp_path / "nope")
    assert e.message == f"{tmp_path / 'nope'}: does not exist"
    assert e.hint == "pass an image folder, an .npz file or an IDX folder"
    (tmp_path / "d.npz").write_bytes(b"")
    check_data_source(tmp_path / "d.npz")  # not opened
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"")
    check_data_source(tmp_path / "train-images-idx3-ubyte")
    (tmp_path / "notes.txt").write_text("x")
    e = _raises(check_data_source, tmp_path / "notes.txt")
    assert e.message == f"{tmp_path / 'notes.txt'}: unknown data format"
    assert e.hint == ("use an image folder (one sub-folder per class), an .npz with x and y, "
                      "or IDX files")
    empty = tmp_path / "empty"
    empty.mkdir()
    e = _raises(check_data_source, empty)
    assert (e.message, e.hint) == (f"{empty}: the folder is empty",
                                   "put one sub-folder of images per class in it")
    idx = tmp_path / "idx"
    idx.mkdir()
    (idx / "t10k-images-idx3-ubyte.gz").write_bytes(b"")
    check_data_source(idx)
    loose = tmp_path / "loose"
    (loose / ".hidden").mkdir(parents=True)
    (loose / "a.jpg").write_bytes(b"")
    e = _raises(check_data_source, loose)
    assert e.message == f"{loose}: no class sub-folders"
    assert e.hint == ("use the Visual Wake Words layout: one sub-folder per class, e.g. "
                      "data/person/*.jpg and data/non_person/*.jpg")
    for c in ("b", "a"):
        (loose / c).mkdir()
        (loose / c / "readme.txt").write_text("x")
    e = _raises(check_data_source, loose)
    assert e.message == f"{loose}: no images in its class sub-folders (a, b)"
    assert e.hint == f"put {SUFFIXES} files in them"
    (loose / "b" / "photo.JPG").write_bytes(b"")  # suffixes in any case
    check_data_source(loose)


def test_load_dataset_messages(tmp_path):
    e = _raises(load_dataset, tmp_path / "nope", (8, 8, 3))
    assert (e.message, e.hint) == (f"{tmp_path / 'nope'}: does not exist",
                                   "pass an image folder, an .npz file or an IDX folder")
    (tmp_path / "notes.txt").write_text("x")
    e = _raises(load_dataset, tmp_path / "notes.txt", (8, 8, 3))
    assert e.message == f"{tmp_path / 'notes.txt'}: unknown data format"
    assert e.hint == ("use an image folder (one sub-folder per class), an .npz with x and y, "
                      "or IDX files")
    empty = tmp_path / "empty"
    empty.mkdir()
    e = _raises(load_dataset, empty, (8, 8, 3))
    assert (e.message, e.hint) == (f"{empty}: the folder is empty",
                                   "put one sub-folder of images per class in it")
    np.savez(tmp_path / "d.npz", x=np.zeros((2, 4, 4, 1)))
    e = _raises(load_dataset, tmp_path / "d.npz", (4, 4, 2))
    assert e.message == (f"{tmp_path / 'd.npz'}: inputs have shape (4, 4, 1), the model wants "
                         "(4, 4, 2)")
    # the model's output shape reaches the .npz loader
    np.savez(tmp_path / "t.npz", x=np.zeros((2, 4, 4, 1)), y=np.ones((2, 3)))
    assert load_dataset(tmp_path / "t.npz", (4, 4, 1), output_shape=(1, 3)).targets.shape == \
        (2, 1, 3)
    # an image folder without images in it, then with only unreadable ones
    (tmp_path / "imgs" / "cls").mkdir(parents=True)
    (tmp_path / "imgs" / "cls" / "notes.txt").write_text("x")
    e = _raises(load_dataset, tmp_path / "imgs", (8, 8, 3))
    assert (e.message, e.hint) == (f"{tmp_path / 'imgs'}: no images found",
                                   f"put {SUFFIXES} files in the class sub-folders")
    e = _raises(load_dataset, tmp_path / "imgs" / "cls", (8, 8, 3))  # a file, no sub-folder
    assert e.message == f"{tmp_path / 'imgs' / 'cls'}: no class sub-folders"


def test_image_folder_colour_scale_and_skipped_list(tmp_path, caplog):
    (tmp_path / "b").mkdir()
    (tmp_path / ".git").mkdir()  # hidden: not a class
    Image.fromarray(np.full((4, 6, 3), (200, 100, 50), np.uint8)).save(tmp_path / "b" / "0.png")
    Image.fromarray(np.full((2, 3, 3), 60, np.uint8)).save(tmp_path / "b" / "1.PNG")
    for i in range(7):
        (tmp_path / "b" / f"bad{i}.jpg").write_bytes(b"no")
    with caplog.at_level(logging.WARNING, logger="edgeq.data"):
        ds = load_dataset(tmp_path, (4, 6, 3), "rgb", 2.0)
    assert ds.class_names == ["b"] and ds.names == ["0.png", "1.PNG"]
    assert ds.x.dtype == np.float32 and ds.x.shape == (2, 4, 6, 3)
    np.testing.assert_array_equal(ds.x[0, 0, 0], [100.0, 50.0, 25.0])  # divided by scale
    np.testing.assert_array_equal(ds.x[1], np.full((4, 6, 3), 30.0))  # resized, uniform
    assert ds.skipped == [f"b/bad{i}.jpg" for i in range(7)]
    assert (f"{tmp_path}: skipped 7 unreadable image(s): b/bad0.jpg, b/bad1.jpg, b/bad2.jpg, "
            "b/bad3.jpg, b/bad4.jpg, …") in caplog.text
    grey = load_dataset(tmp_path, (4, 6, 1), "grayscale", 1.0)
    # ITU-R 601-2 luma, as Pillow's "L": 200 * 299/1000 + 100 * 587/1000 + 50 * 114/1000
    assert grey.x.shape == (2, 4, 6, 1) and grey.x[0, 0, 0, 0] == 124.0
    for i in range(7):
        (tmp_path / "b" / f"bad{i}.jpg").unlink()
    (tmp_path / "b" / "0.png").write_bytes(b"no")
    (tmp_path / "b" / "1.PNG").write_bytes(b"no")
    e = _raises(load_dataset, tmp_path, (4, 6, 3))
    assert e.message == f"{tmp_path}: all 2 images were unreadable (b/0.png, b/1.PNG)"


def test_class_folders_match_the_card_by_normalised_name(tmp_path):
    for name, value in (("Non_Person", 10), ("person", 240)):
        (tmp_path / name).mkdir()
        Image.fromarray(np.full((2, 2, 3), value, np.uint8)).save(tmp_path / name / "a.png")
    ds = load_dataset(tmp_path, (2, 2, 3), "rgb", 1.0, ["person", "no person"])
    assert ds.class_names == ["person", "no person"]
    assert ds.x[:, 0, 0, 0].tolist() == [240.0, 10.0] and ds.y.tolist() == [0, 1]
    e = _raises(load_dataset, tmp_path, (2, 2, 3), "rgb", 1.0, ["person", "cat"])
    assert e.message == (f"{tmp_path}: class folders ['Non_Person', 'person'] do not match the "
                         "model's labels ['person', 'cat']")
    assert e.hint == "name one sub-folder per label of the model card"
    e = _raises(load_dataset, tmp_path, (2, 2, 3), "rgb", 1.0, ["person"])  # one too few
    assert "do not match the model's labels ['person']" in e.message


# ---- subsets ----------------------------------------------------------------------------------


def test_subsets_carry_names_targets_and_how_they_were_chosen():
    ds = Dataset(np.arange(6, dtype=np.float32)[:, None], np.full(6, -1, np.int64), [],
                 "d.npz", names=[f"n{i}" for i in range(6)], skipped=["s"],
                 chosen="from a", targets=np.arange(12, dtype=np.float32).reshape(6, 2))
    sub = ds.subset([4, 1])
    assert sub.names == ["n4", "n1"] and sub.targets.tolist() == [[8, 9], [2, 3]]
    assert sub.x[:, 0].tolist() == [4, 1] and sub.chosen == "from a" and sub.skipped == ["s"]
    assert sub.skipped is not ds.skipped and sub.source == "d.npz"
    assert ds.subset([0], "b").chosen == "b"
    picked = ds.stratified(3, seed=1)
    # no label known: a seeded random subset of the one class -1
    assert picked.chosen == "3 of 6 (from a), seeded random subset, seed 1" and len(picked) == 3
    assert ds.stratified(6) is ds and ds.stratified(5) is not ds
    e = _raises(ds.stratified, -2)
    assert e.message == "--limit -2: must be a positive number of samples"
    assert e.hint == "pass --limit N with N >= 1, or leave it out to use all 6 samples"
    assert ds.take(None) is ds and ds.take(6) is ds and ds.take(7) is ds
    assert ds.take(2).names == ["n0", "n1"]
    assert ds.by_prefix("n5").names == ["n5"]
    e = _raises(ds.by_prefix, "x")
    assert e.message == "d.npz: no image name starts with 'x'"
    unnamed = Dataset(ds.x, ds.y, [], "e.npz")
    assert unnamed.subset([1]).names is None and unnamed.subset([1]).targets is None
    e = _raises(unnamed.by_prefix, "n")
    assert e.message == "e.npz: has no file names to select 'n' from"
    first, rest = unnamed.split(0.0)
    assert len(first) == 0 and len(rest) == 6
    assert first.chosen == "0 of 6, a split stratified by class, seed 0"
    assert rest.chosen == "the other 6 of 6, a split stratified by class, seed 0"
    first, rest = unnamed.split(0.25, seed=2)  # round(1.5) = 2
    assert len(first) == 2 and len(rest) == 4
    assert sorted(first.x[:, 0].tolist() + rest.x[:, 0].tolist()) == list(range(6))


# ---- checks and figures -----------------------------------------------------------------------


def test_check_thresholds_and_messages():
    assert percent(None) == "–" and percent(0.91354) == "91.35%" and percent(1) == "100.00%"
    assert class_labels(np.array([[0.5], [0.50001]])).tolist() == [0, 1]
    assert class_labels(np.array([[[0.1, 0.9]], [[0.8, 0.2]]])).tolist() == [1, 0]
    check_labels(np.array([0, 1, 2, -1]), 3, "d")
    e = _raises(check_labels, np.array([-1, 2, 3]), 3, "d")
    assert e.message == "d: labels 2–3, but the model has 3 classes (labels 0–2)"
    assert e.hint == ("pass the data this model was trained for, or a model with as many "
                      "outputs as the data has classes")
    check_labels(np.array([-1, -1]), 1, "d")
    # 10% of the values outside the domain is still accepted; more is not
    x = np.full(100, 0.5)
    x[:10] = 2.0
    check_input_domain(x, 0.0, 1.0, "d", "fix")
    x[10] = 2.0
    e = _raises(check_input_domain, x, 0.0, 1.0, "d", "fix")
    assert e.message == ("d: 11.0% of the input values lie outside the model's input domain [0, 1] "
                         "(the data spans [0.5, 2])") and e.hint == "fix"
    # up to 1% of the width outside the domain counts as inside: exactly at the edges too
    check_input_domain(np.array([-2.0, 202.0, 50.0]), 0.0, 200.0, "d", "fix")
    check_input_domain(np.full(4, 1.015), -1.0, 1.0, "d", "fix")  # 1% of a width of 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no mean of an empty array
        check_input_domain(np.zeros(0), 0.0, 1.0, "d", "fix")
    assert "66.7%" in _raises(check_input_domain, np.array([-2.1, 202.1, 50.0]), 0.0, 200.0,
                              "d", "fix").message
    check_input_domain(np.zeros(0), 0.0, 1.0, "d", "fix")
    e = _raises(check_finite, np.array([1.0, np.inf, np.nan, -np.inf]), "src")
    assert e.message == "src: 3 NaN/Inf values in the data"
    scores = classification([-1, -1], [0, 1], 2)
    assert scores == {"accuracy": None, "per_class_accuracy": [None, None],
                      "confusion": [[0, 0], [0, 0]]}
    scores = classification([0, 1, 1, 1], [5, -3, 1, 1], 2)  # predictions clipped to a class
    assert scores["confusion"] == [[0, 1], [1, 2]]
    assert scores["accuracy"] == 0.5 and scores["per_class_accuracy"] == [0.0, 2 / 3]


# ---- IDX files, Fashion-MNIST, seeds ----------------------------------------------------------


def _idx_bytes(array: np.ndarray) -> bytes:
    import struct

    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + \
        array.astype(np.uint8).tobytes()


def test_idx_split_default_pad_or_resize_and_shapes(tmp_path):
    from edgeq.data import load_idx

    ramp = np.arange(10 * 2, dtype=np.uint8).reshape(1, 10, 2) * 10  # taller than 8 rows
    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.repeat(ramp, 2, 0)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([3, 1])))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.full((1, 8, 2), 7)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([0])))
    assert load_idx(tmp_path, (8, 6, 1), 1.0).y.tolist() == [3, 1]  # the train files
    assert load_dataset(tmp_path, (8, 6, 1), split="test", scale=1.0).y.tolist() == [0]
    assert load_dataset(tmp_path, (8, 6, 1), scale=1.0).y.tolist() == [3, 1]
    # 10 rows do not fit 8: resized (bilinear) to 8 x 6, though 2 columns would fit 6
    x = load_idx(tmp_path, (8, 6, 1), 1.0).x
    expected = np.asarray(Image.fromarray(ramp[0]).resize((6, 8), Image.BILINEAR), np.float32)
    assert x.shape == (2, 8, 6, 1)
    np.testing.assert_array_equal(x[0, ..., 0], expected)
    # 8 rows fit 8 exactly, 2 columns are padded to 6: zeros around, values kept
    x = load_idx(tmp_path, (8, 6, 1), 1.0, "test").x
    assert x[0, :, 2:4, 0].tolist() == [[7.0, 7.0]] * 8 and x[0, :, [0, 1, 4, 5], 0].max() == 0
    x = load_idx(tmp_path / "t10k-images-idx3-ubyte", (10, 2, 1), 1.0).x  # as wide: padded
    assert x[0, 1:9, :, 0].tolist() == [[7.0, 7.0]] * 8 and x[0, [0, 9], :, 0].max() == 0
    x = load_idx(tmp_path / "t10k-images-idx3-ubyte", (8, 2, 1), 1.0).x  # exactly the size
    assert x[0, ..., 0].tolist() == [[7.0, 7.0]] * 8
    # 2-D images (no sample axis) are refused even with as many labels as rows
    (tmp_path / "flat-images-idx3-ubyte").write_bytes(_idx_bytes(np.zeros((3, 4))))
    (tmp_path / "flat-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(3)))
    e = _raises(load_idx, tmp_path / "flat-images-idx3-ubyte", (4, 1, 1), 1.0)
    assert e.message == (f"{tmp_path / 'flat-images-idx3-ubyte'}: images (3, 4) and labels (3,) "
                         "do not match")
    # a 4-byte header with no axes is a complete header: the single value is missing
    (tmp_path / "nil-images-idx3-ubyte").write_bytes(bytes([0, 0, 8, 0]))
    (tmp_path / "nil-labels-idx1-ubyte").write_bytes(_idx_bytes(np.zeros(1)))
    e = _raises(load_idx, tmp_path / "nil-images-idx3-ubyte", (4, 1, 1), 1.0)
    assert e.message == f"{tmp_path / 'nil-images-idx3-ubyte'}: truncated IDX file (0 of 1 values)"
    e = _raises(load_idx, tmp_path / "lone-images-idx3-ubyte", (4, 1, 1), 1.0)
    assert e.message == (f"{tmp_path / 'lone-images-idx3-ubyte'}: no labels file "
                         "lone-labels-idx1-ubyte beside it")
    e = _raises(load_idx, tmp_path / "t10k-images-idx3-ubyte", (8, 2, 3), 1.0)
    assert e.message == (f"{tmp_path / 't10k-images-idx3-ubyte'}: IDX images are grayscale but "
                         "the model wants 3 channels")
    empty = tmp_path / "empty"
    empty.mkdir()
    e = _raises(load_idx, empty, (8, 2, 1), 1.0)
    assert e.message == f"{empty}: no train-images-idx3-ubyte[.gz]"
    assert e.hint == ("point --data at the Fashion-MNIST folder (apt-get install "
                      "dataset-fashion-mnist puts it in /usr/share/datasets/fashion-mnist)")
    (tmp_path / "gone-images-idx3-ubyte.gz").write_bytes(b"not gzip")
    (tmp_path / "gone-labels-idx1-ubyte.gz").write_bytes(b"")
    e = _raises(load_idx, tmp_path / "gone-images-idx3-ubyte.gz", (8, 2, 1), 1.0)
    assert e.message.startswith(f"{tmp_path / 'gone-images-idx3-ubyte.gz'}: cannot read IDX file (")


def test_fashion_mnist_divides_both_splits_by_255(tmp_path):
    from edgeq.data import fashion_mnist

    (tmp_path / "train-images-idx3-ubyte").write_bytes(_idx_bytes(np.full((1, 2, 2), 200)))
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([4])))
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(np.full((1, 2, 2), 51)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(_idx_bytes(np.array([2])))
    train, test = fashion_mnist((2, 2, 1), root=tmp_path)
    assert train.x.max() == np.float32(200) / np.float32(255)
    assert test.x.max() == np.float32(51) / np.float32(255) and test.y.tolist() == [2]
    e = _raises(fashion_mnist, root=tmp_path / "nowhere")
    assert e.message == f"{tmp_path / 'nowhere'}: Fashion-MNIST not found"
    assert e.hint == "apt-get install dataset-fashion-mnist, or pass --data with the IDX folder"


def test_seeds_default_to_0_and_excess_quota_comes_off_the_most_over_allocated():
    from edgeq.data import stratified_subset

    y = np.repeat([0, 1, 2], [7, 9, 5])
    ds = Dataset(np.arange(21, dtype=np.float32), y, ["a", "b", "c"], "d")
    assert not np.array_equal(stratified_subset(y, 6, 0), stratified_subset(y, 6, 1))
    np.testing.assert_array_equal(stratified_subset(y, 6), stratified_subset(y, 6, 0))
    np.testing.assert_array_equal(ds.stratified(6).x, ds.x[stratified_subset(y, 6, 0)])
    np.testing.assert_array_equal(ds.stratified(6, seed=4).x, ds.x[stratified_subset(y, 6, 4)])
    first, _ = ds.split(0.5)
    np.testing.assert_array_equal(first.x, ds.x[stratified_subset(y, 10, 0)])
    first, rest = ds.split(0.3, seed=3)  # round(6.3) = 6
    np.testing.assert_array_equal(first.x, ds.x[stratified_subset(y, 6, 3)])
    assert len(rest) == 15
    # 6 of 15 samples in classes of 1, 1, 5 and 8: shares 0.4, 0.4, 2.0, 3.2; every class
    # raised to one gives 1, 1, 2, 3 (7): the one too many comes off class 2, which is at its
    # share (2 - 2.0), not off class 3, already below its share (3 - 3.2)
    y = np.repeat([0, 1, 2, 3], [1, 1, 5, 8])
    assert np.bincount(y[stratified_subset(y, 6)]).tolist() == [1, 1, 1, 3]


def test_types_of_labels_counts_and_subsets():
    assert class_labels(np.array([[0.9], [0.1]])).dtype == np.int64
    assert class_labels(np.array([[0.1, 0.9]])).dtype == np.int64
    confusion = classification([0, 1, 1], [0, 1, 0], 2)["confusion"]
    assert confusion == [[1, 0], [1, 1]] and all(type(v) is int for row in confusion for v in row)
    ds = Dataset(np.arange(4, dtype=np.float32), np.array([0, 0, -1, 0]), ["only"], "d")
    assert ds.subset([]).x.shape == (0,) and ds.subset([2]).class_names == ["only"]
    assert len(ds.stratified(1)) == 1  # one sample is a positive number
    # label 0 known: stratified by class, although no label is above 0
    assert ds.stratified(2).chosen == "2 of 4, stratified by class, seed 0"


def test_image_folder_details(tmp_path, caplog):
    (tmp_path / "big-cat").mkdir()
    (tmp_path / "person").mkdir()
    ramp = (np.arange(5 * 3 * 3, dtype=np.uint8).reshape(3, 5, 3) * 5)  # 3 rows, 5 columns
    Image.fromarray(ramp).save(tmp_path / "big-cat" / "b.png")
    (tmp_path / "big-cat" / "a.txt").write_text("sorted first, not an image")
    Image.fromarray(np.full((2, 2, 3), 255, np.uint8)).save(tmp_path / "person" / "p.png")
    with caplog.at_level(logging.WARNING, logger="edgeq.data"):
        ds = load_dataset(tmp_path, (4, 6, 3), class_names=["person", "big cat"])
    assert not caplog.records  # nothing skipped, nothing said
    assert ds.source == str(tmp_path) and ds.names == ["p.png", "b.png"]
    assert ds.y.tolist() == [0, 1] and ds.x[0].max() == ds.x[0].min() == 1.0  # 255 / 255
    resized = np.asarray(Image.fromarray(ramp).resize((6, 4), Image.BILINEAR), np.float32)
    np.testing.assert_array_equal(ds.x[1], resized / np.float32(255))
    for i in range(4):
        (tmp_path / "person" / f"bad{i}.jpg").write_bytes(b"no")
    (tmp_path / "big-cat" / "bad.jpg").write_bytes(b"no")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="edgeq.data"):
        load_dataset(tmp_path, (4, 6, 3))
    assert [r.getMessage() for r in caplog.records] == [  # five: all named, no "…"
        f"{tmp_path}: skipped 5 unreadable image(s): big-cat/bad.jpg, person/bad0.jpg, "
        "person/bad1.jpg, person/bad2.jpg, person/bad3.jpg"]
    (tmp_path / "loose.png").write_bytes(b"")
    e = _raises(load_dataset, tmp_path / "person", (4, 6, 3))
    assert e.hint == ("use the Visual Wake Words layout: one sub-folder per class, e.g. "
                      "data/person/*.jpg and data/non_person/*.jpg")


def test_load_dataset_passes_its_shape_and_names_the_source(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.zeros((2, 49, 10)))  # features for a (49, 10) input
    assert load_dataset(tmp_path / "f.npz", (49, 10)).x.shape == (2, 49, 10)
    np.savez(tmp_path / "nan.npz", x=np.array([[np.nan, 1.0], [2.0, 3.0]]))
    e = _raises(load_dataset, tmp_path / "nan.npz", (2,))
    assert e.message == f"{tmp_path / 'nan.npz'}: 1 NaN/Inf values in the data"
    np.savez(tmp_path / "s.npz", x=np.zeros((2, 3)), y=np.array(["cat", "dog"]))
    e = _raises(load_dataset, tmp_path / "s.npz", (3,))  # words are not class indices
    assert "its values are not whole numbers" in e.message
