"""Data sources: an image folder in the Visual Wake Words layout, `.npz` arrays, IDX files
(Fashion-MNIST). numpy and Pillow only: `edgeq check` runs where TensorFlow is absent.

Every loader returns a Dataset of float32 inputs already preprocessed the way the model
expects (images: NHWC, resized, converted to the model's colour, divided by `scale`) and int64
labels. An .npz may hold inputs of any rank (sensor windows, audio features) and, instead of
labels, regression targets (see load_npz).
"""

from __future__ import annotations

import gzip
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgeq.errors import DataError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm")
SHOWN_SKIPPED = 5  # unreadable files named in the warning (all are in Dataset.skipped)
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Dataset:
    x: np.ndarray  # float32, N x the model's input shape (images: N x H x W x C)
    y: np.ndarray  # int64, N: class labels, -1 = unknown (every -1 when there are targets)
    class_names: list[str]
    source: str = ""
    names: list[str] | None = None  # file names (image folders), for deterministic splits by name
    skipped: list[str] = field(default_factory=list)  # unreadable files skipped while loading
    chosen: str = ""  # how this subset was chosen, e.g. "64 of 128, stratified by class, seed 0"
    targets: np.ndarray | None = None  # float32, N x the output shape: regression targets (.npz)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index, chosen: str = "") -> Dataset:
        index = np.asarray(index, np.int64)
        names = [self.names[i] for i in index] if self.names is not None else None
        targets = self.targets[index] if self.targets is not None else None
        return Dataset(self.x[index], self.y[index], self.class_names, self.source, names,
                       list(self.skipped), chosen or self.chosen, targets)

    def stratified(self, limit: int | None, seed: int = 0, option: str = "--limit") -> Dataset:
        """At most `limit` samples, the same share of every class as in the whole (see
        stratified_subset); `option` names the setting in the error for limit <= 0."""
        if limit is not None and limit <= 0:
            raise DataError(f"{option} {limit}: must be a positive number of samples",
                            f"pass {option} N with N >= 1, or leave it out to use all "
                            f"{len(self)} samples")
        if limit is None or limit >= len(self):
            return self
        of = f"{len(self)} ({self.chosen})" if self.chosen else f"{len(self)}"
        how = "stratified by class" if (self.y >= 0).any() else "seeded random subset"
        return self.subset(stratified_subset(self.y, limit, seed),
                           f"{limit} of {of}, {how}, seed {seed}")

    def split(self, fraction: float, seed: int = 0) -> tuple[Dataset, Dataset]:
        """Deterministic split, each part with every class's share: (`fraction`, the rest)."""
        n, cut = len(self), int(round(len(self) * fraction))
        first = stratified_subset(self.y, cut, seed) if cut else np.zeros(0, np.int64)
        rest = np.setdiff1d(np.arange(n), first)
        how = f"a split stratified by class, seed {seed}"
        return (self.subset(first, f"{cut} of {n}, {how}"),
                self.subset(rest, f"the other {n - cut} of {n}, {how}"))

    def by_prefix(self, prefix: str) -> Dataset:
        """Images whose file name starts with `prefix` (e.g. coco-vww's train2017_/val2017_)."""
        if self.names is None:
            raise DataError(f"{self.source}: has no file names to select {prefix!r} from")
        index = [i for i, n in enumerate(self.names) if n.startswith(prefix)]
        if not index:
            raise DataError(f"{self.source}: no image name starts with {prefix!r}")
        return self.subset(index)

    def take(self, limit: int | None) -> Dataset:
        return self if limit is None or limit >= len(self) else self.subset(np.arange(limit))


def stratified_subset(y, n: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of `n` samples, each class (each distinct value of `y`, unknown -1
    included) in proportion to its share of `y`, every class present when n >= the number of
    classes; which samples of a class is seeded and deterministic. Image folders list one class
    after the other, so the first n samples would be one class only."""
    y = np.asarray(y).reshape(-1)
    if n <= 0:
        raise DataError(f"a subset of {n} samples: must be at least 1")
    if n >= len(y):
        return np.arange(len(y))
    classes, counts = np.unique(y, return_counts=True)
    exact = n * counts / len(y)
    quota = np.floor(exact).astype(np.int64)
    if n >= len(classes):
        quota = np.maximum(quota, 1)
    # Largest remainders fill the rest; too many (every class raised to one) come off the
    # largest quotas.
    while quota.sum() < n:
        room = np.where(quota < counts, exact - quota, -np.inf)
        quota[int(np.argmax(room))] += 1
    while quota.sum() > n:
        quota[int(np.argmax(np.where(quota > 1, quota - exact, -np.inf)))] -= 1
    rng = np.random.default_rng(seed)
    chosen = [rng.permutation(np.flatnonzero(y == c))[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def percent(value) -> str:
    """An accuracy or agreement as every table and report shows it: 91.35%, or – when unknown."""
    return "–" if value is None else f"{100 * float(value):.2f}%"


def output_classes(output_size: int) -> int:
    """Classes of a classifier with `output_size` outputs: one sigmoid unit is a binary one."""
    return 2 if output_size == 1 else output_size


def class_labels(outputs) -> np.ndarray:
    """Predicted label per sample from real-valued outputs (N x ...): the arg max, or for a
    single sigmoid unit label 1 when the output is above 0.5."""
    flat = np.asarray(outputs).reshape(len(outputs), -1)
    if flat.shape[1] == 1:
        return (flat[:, 0] > 0.5).astype(np.int64)
    return flat.argmax(axis=1).astype(np.int64)


def check_labels(y, classes: int, source: str) -> None:
    """Known labels (>= 0) must name one of the model's `classes` outputs."""
    known = np.asarray(y)[np.asarray(y) >= 0]
    if known.size and known.max() >= classes:
        raise DataError(f"{source}: labels {int(known.min())}–{int(known.max())}, but the model "
                        f"has {classes} classes (labels 0–{classes - 1})",
                        "pass the data this model was trained for, or a model with as many "
                        "outputs as the data has classes")


def check_input_domain(x, lo: float, hi: float, source: str, fix: str) -> None:
    """Refuse data mostly outside the model's input domain [lo, hi] (e.g. 0-255 pixels for a
    model that expects [0, 1]): more than 10% of the values further out than 1% of its width."""
    x = np.asarray(x)
    slack = 0.01 * (hi - lo)
    outside = float(np.mean((x < lo - slack) | (x > hi + slack))) if x.size else 0.0
    if outside > 0.10:
        raise DataError(f"{source}: {100 * outside:.1f}% of the input values lie outside the "
                        f"model's input domain [{lo:g}, {hi:g}] (the data spans "
                        f"[{float(x.min()):g}, {float(x.max()):g}])", fix)


def classification(y, predicted, classes: int) -> dict:
    """Top-1 accuracy, accuracy per class and the confusion counts (rows: true label,
    columns: predicted) over the samples with a known label."""
    y, predicted = np.asarray(y).reshape(-1), np.asarray(predicted).reshape(-1)
    known = y >= 0
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (y[known], np.clip(predicted[known], 0, classes - 1)), 1)
    totals = confusion.sum(axis=1)
    return {"accuracy": float(np.trace(confusion) / totals.sum()) if totals.sum() else None,
            "per_class_accuracy": [float(confusion[c, c] / totals[c]) if totals[c] else None
                                   for c in range(classes)],
            "confusion": confusion.tolist()}


def check_finite(x: np.ndarray, source: str) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise DataError(f"{source}: {int(bad.sum())} NaN/Inf values in the data",
                        "clean the data or drop those samples")


def _fit_image(img, input_shape, color: str):
    """PIL image -> float array (H, W, C), RGB or grayscale, bilinear resize."""
    from PIL import Image

    h, w = input_shape[0], input_shape[1]
    img = img.convert("L" if color == "grayscale" else "RGB")
    if img.size != (w, h):
        img = img.resize((w, h), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    return arr[..., None] if arr.ndim == 2 else arr


def load_image_folder(path: Path, input_shape, color: str, scale: float,
                      class_names: list[str] | None = None) -> Dataset:
    """One sub-folder per class (Visual Wake Words: non_person/, person/). Classes are the
    sub-folder names in sorted order unless `class_names` (from a model card) gives the order;
    VWW's `non_person` matches a card label `no_person`."""
    from PIL import Image, UnidentifiedImageError

    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{path}: no class sub-folders",
                        "use the Visual Wake Words layout: one sub-folder per class, e.g. "
                        "data/person/*.jpg and data/non_person/*.jpg")
    names = [f.name for f in folders]
    if class_names is not None:
        order = _match_classes(names, class_names, path)
        folders = [folders[i] for i in order]
        names = list(class_names)
    xs, ys, files, skipped = [], [], [], []
    for label, folder in enumerate(folders):
        for f in sorted(folder.iterdir()):
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(f) as img:
                    xs.append(_fit_image(img, input_shape, color))
            except (UnidentifiedImageError, OSError, ValueError):
                skipped.append(f"{folder.name}/{f.name}")
                continue
            ys.append(label)
            files.append(f.name)
    shown = ", ".join(skipped[:SHOWN_SKIPPED]) + (", …" if len(skipped) > SHOWN_SKIPPED else "")
    if skipped and xs:
        log.warning("%s: skipped %d unreadable image(s): %s", path, len(skipped), shown)
    if not xs:
        what = (f"all {len(skipped)} images were unreadable ({shown})" if skipped
                else "no images found")
        raise DataError(f"{path}: {what}", f"put {', '.join(IMAGE_SUFFIXES)} files in the class sub-folders")
    x = np.stack(xs) / np.float32(scale)
    return Dataset(x.astype(np.float32), np.asarray(ys, np.int64), names, str(path), files, skipped)


def _match_classes(found: list[str], wanted: list[str], path: Path) -> list[int]:
    def norm(s: str) -> str:
        return s.lower().replace("non_", "no_").replace("-", "_").replace(" ", "_")

    lookup = {norm(n): i for i, n in enumerate(found)}
    missing = [w for w in wanted if norm(w) not in lookup]
    if missing or len(found) != len(wanted):
        raise DataError(f"{path}: class folders {found} do not match the model's labels {wanted}",
                        "name one sub-folder per label of the model card")
    return [lookup[norm(w)] for w in wanted]


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read IDX file ({e})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated IDX file ({body.size} of {int(np.prod(dims))} values)")
    return body.reshape(dims)


def _pad_or_resize(images: np.ndarray, input_shape) -> np.ndarray:
    """(N, h, w) uint8 -> (N, H, W, 1): zero-pad when smaller (28 -> 32), else resize."""
    h, w = input_shape[0], input_shape[1]
    n, ih, iw = images.shape
    if ih <= h and iw <= w:
        top, left = (h - ih) // 2, (w - iw) // 2
        out = np.zeros((n, h, w), images.dtype)
        out[:, top:top + ih, left:left + iw] = images
        return out[..., None]
    from PIL import Image

    return np.stack([np.asarray(Image.fromarray(im).resize((w, h), Image.BILINEAR))
                     for im in images])[..., None]


def load_idx(path: Path, input_shape, scale: float, split: str = "train") -> Dataset:
    """Fashion-MNIST style IDX: a folder with {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz],
    or one images file with its labels file beside it."""
    if path.is_dir():
        prefix = "train" if split == "train" else "t10k"
        img = _find(path, f"{prefix}-images-idx3-ubyte")
        lab = _find(path, f"{prefix}-labels-idx1-ubyte")
    else:
        img = path
        lab = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
        if not lab.is_file():
            raise DataError(f"{path}: no labels file {lab.name} beside it")
    images, labels = _read_idx(img), _read_idx(lab)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{img}: images {images.shape} and labels {labels.shape} do not match")
    if input_shape[2] != 1:
        raise DataError(f"{img}: IDX images are grayscale but the model wants {input_shape[2]} channels")
    x = _pad_or_resize(images, input_shape).astype(np.float32) / np.float32(scale)
    classes = [str(i) for i in range(int(labels.max()) + 1)]
    return Dataset(x, labels.astype(np.int64), classes, str(img))


def _find(folder: Path, stem: str) -> Path:
    for cand in (folder / stem, folder / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise DataError(f"{folder}: no {stem}[.gz]",
                    "point --data at the Fashion-MNIST folder (apt-get install dataset-fashion-mnist "
                    f"puts it in {FASHION_MNIST_DIR})")


def load_npz(path: Path, input_shape=None, output_shape=None) -> Dataset:
    """An .npz with `x` (N samples, float in the model's input domain) and optional `y`.

    x: N x the model's input shape without its batch axis: images (N, H, W, C) (or (N, H, W),
    given a channel axis), sensor windows (N, 640), audio features (N, 49, 10), ...; a missing
    trailing axis of size 1 is added when `input_shape` asks for it.
    y, by its shape: 1-D (N,) of whole numbers = class labels (-1 = unknown); (N, ...) with two
    or more axes = regression targets, one per sample of the model output's shape (an
    autoencoder's y is its x), checked against `output_shape` (without the batch axis) when
    given. No y = unlabelled. A single-output regressor stores y as (N, 1).
    """
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f:
                raise DataError(f"{path}: no array named 'x' (found {', '.join(f.files) or 'none'})",
                                "save inputs with np.savez(path, x=images, y=labels)")
            x = f["x"].astype(np.float32)
            y = f["y"] if "y" in f else None
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: not a readable .npz file ({e})") from None
    if x.ndim < 2:
        raise DataError(f"{path}: x has shape {x.shape}; it must hold N samples, (N, ...)",
                        "save x with the samples along its first axis, e.g. (N, 640)")
    x = _fit_rank(x, input_shape)
    if input_shape is not None and tuple(x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: inputs have shape {tuple(x.shape[1:])}, the model wants {tuple(input_shape)}",
                        "resize the arrays or choose the matching model")
    targets = None
    if y is None:
        y = np.full(len(x), -1, np.int64)
    elif y.ndim >= 2 and not _label_column(y, output_shape):
        targets = _targets(y, len(x), path, output_shape)
        y = np.full(len(x), -1, np.int64)
    else:
        y = _labels(y.reshape(len(y), -1)[:, 0] if y.ndim >= 2 else y, path)
    if len(y) != len(x):
        raise DataError(f"{path}: {len(x)} inputs but {len(y)} labels")
    classes = [str(i) for i in range(int(y.max()) + 1)] if len(y) and y.max() >= 0 else []
    return Dataset(x, y, classes, str(path), targets=targets)


def _fit_rank(x: np.ndarray, input_shape) -> np.ndarray:
    """Add the trailing axis of size 1 that grayscale images (N, H, W) and features (N, 49, 10)
    for a (49, 10, 1) input leave out; without an input shape, 3-D x is taken as images."""
    if input_shape is None:
        return x[..., None] if x.ndim == 3 else x
    wanted = tuple(input_shape)
    if tuple(x.shape[1:]) + (1,) == wanted:
        return x[..., None]
    return x


def _label_column(y: np.ndarray, output_shape) -> bool:
    """(N, 1) whole numbers are labels in a column, unless the model has one output (then they
    are the targets of a single-output regressor, as the docstring of load_npz says)."""
    if y.ndim != 2 or y.shape[1] != 1 or not _whole(y):
        return False
    return output_shape is None or int(np.prod(output_shape)) != 1


def _squeezed(shape) -> tuple[int, ...]:
    """A shape without its axes of size 1: (1, 640) and (640,) hold the same targets."""
    return tuple(int(d) for d in shape if d != 1)


def _whole(y: np.ndarray) -> bool:
    if np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_:
        return True
    return np.issubdtype(y.dtype, np.floating) and bool(np.all(np.isfinite(y))) and \
        bool(np.all(y == np.round(y)))


def _labels(y: np.ndarray, path: Path) -> np.ndarray:
    if not _whole(y):
        raise DataError(f"{path}: y has shape {y.shape} but its values are not whole numbers, so "
                        "they are not class labels",
                        "regression targets: save y with the model output's shape, (N, 1) for a "
                        "single output; class labels: integers 0, 1, ... (-1 = unknown)")
    return y.astype(np.int64)


def _targets(y: np.ndarray, n: int, path: Path, output_shape) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.number) or y.dtype == np.bool_):
        raise DataError(f"{path}: y holds {y.dtype} values, not numbers")
    if len(y) != n:
        raise DataError(f"{path}: {n} inputs but {len(y)} targets in y",
                        "save one target per input, y of shape (N, ...) like the model's output")
    if output_shape is not None and _squeezed(y.shape[1:]) != _squeezed(output_shape):
        raise DataError(f"{path}: y has shape {tuple(y.shape[1:])} per sample, but the model's output "
                        f"is {tuple(output_shape)} per sample",
                        f"regression targets: save y of shape (N, {', '.join(map(str, output_shape))}) "
                        "(an autoencoder's targets are its inputs); class labels: a 1-D y of N "
                        "integers")
    targets = y.astype(np.float32)
    check_finite(targets, f"{path} (y)")
    return targets if output_shape is None else targets.reshape((n, *tuple(output_shape)))


def load_dataset(path, input_shape, color: str = "rgb", scale: float = 255.0,
                 class_names: list[str] | None = None, split: str = "train",
                 output_shape=None) -> Dataset:
    """Any supported source, preprocessed for a model with `input_shape` (H, W, C; an .npz:
    any shape). `output_shape` (the model's, without the batch axis) checks an .npz's
    regression targets (load_npz)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist", "pass an image folder, an .npz file or an IDX folder")
    if path.suffix == ".npz":
        ds = load_npz(path, input_shape, output_shape)
    elif _is_idx(path):
        ds = load_idx(path, input_shape, scale, split)
    elif path.is_dir():
        if not any(path.iterdir()):
            raise DataError(f"{path}: the folder is empty",
                            "put one sub-folder of images per class in it")
        ds = load_image_folder(path, input_shape, color, scale, class_names)
    else:
        raise DataError(f"{path}: unknown data format",
                        "use an image folder (one sub-folder per class), an .npz with x and y, or IDX files")
    check_finite(ds.x, str(path))
    if tuple(ds.x.shape[1:]) != tuple(input_shape):
        raise DataError(f"{path}: inputs have shape {tuple(ds.x.shape[1:])}, the model wants {tuple(input_shape)}")
    return ds


def _is_idx(path: Path) -> bool:
    if path.is_dir():
        return any(p.name.startswith(("train-images-idx", "t10k-images-idx")) for p in path.iterdir())
    return "-idx" in path.name


def fashion_mnist(input_shape=(32, 32, 1), root: Path | None = None) -> tuple[Dataset, Dataset]:
    """(train, test) Fashion-MNIST from Debian's dataset-fashion-mnist or `root`."""
    root = Path(root) if root else FASHION_MNIST_DIR
    if not root.is_dir():
        raise DataError(f"{root}: Fashion-MNIST not found",
                        "apt-get install dataset-fashion-mnist, or pass --data with the IDX folder")
    names = ["t-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker",
             "bag", "ankle boot"]
    train = load_idx(root, input_shape, 255.0, "train")
    test = load_idx(root, input_shape, 255.0, "test")
    train.class_names = test.class_names = names
    return train, test


def check_data_source(path) -> None:
    """`path` exists and looks like a data source edgeq reads: an .npz, IDX files, or a folder
    of class sub-folders with images in them. Cheap (no image is opened), so the CLI runs it
    before TensorFlow is imported; the loaders check the rest when they read the data."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist", "pass an image folder, an .npz file or an IDX folder")
    if path.is_file():
        if path.suffix == ".npz" or _is_idx(path):
            return
        raise DataError(f"{path}: unknown data format", "use an image folder (one sub-folder "
                        "per class), an .npz with x and y, or IDX files")
    entries = list(path.iterdir())
    if not entries:
        raise DataError(f"{path}: the folder is empty", "put one sub-folder of images per class in it")
    if _is_idx(path):
        return
    folders = sorted(p for p in entries if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{path}: no class sub-folders", "use the Visual Wake Words layout: one "
                        "sub-folder per class, e.g. data/person/*.jpg and data/non_person/*.jpg")
    if not any(f.suffix.lower() in IMAGE_SUFFIXES for folder in folders for f in folder.iterdir()):
        names = ", ".join(f.name for f in folders)
        raise DataError(f"{path}: no images in its class sub-folders ({names})",
                        f"put {', '.join(IMAGE_SUFFIXES)} files in them")
