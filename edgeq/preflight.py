"""Cheap checks of a command's inputs, run before TensorFlow is imported or a model is loaded,
so that a wrong path fails in a second rather than after the long start-up. The loaders
(edgeq.data) check the same things again, and everything else, when they read the data."""

from __future__ import annotations

from pathlib import Path

from edgeq.data import IMAGE_SUFFIXES
from edgeq.errors import DataError

IDX_PREFIXES = ("train-images-idx", "t10k-images-idx")


def check_data_source(path) -> None:
    """`path` exists and looks like a data source edgeq reads: an .npz, IDX files, or a folder
    of class sub-folders with images in them."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: does not exist", "pass an image folder, an .npz file or an IDX folder")
    if path.is_file():
        if path.suffix == ".npz" or "-idx" in path.name:
            return
        raise DataError(f"{path}: unknown data format", "use an image folder (one sub-folder "
                        "per class), an .npz with x and y, or IDX files")
    entries = list(path.iterdir())
    if not entries:
        raise DataError(f"{path}: the folder is empty", "put one sub-folder of images per class in it")
    if any(p.name.startswith(IDX_PREFIXES) for p in entries):
        return
    folders = sorted(p for p in entries if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{path}: no class sub-folders", "use the Visual Wake Words layout: one "
                        "sub-folder per class, e.g. data/person/*.jpg and data/non_person/*.jpg")
    if not any(f.suffix.lower() in IMAGE_SUFFIXES for folder in folders for f in folder.iterdir()):
        names = ", ".join(f.name for f in folders)
        raise DataError(f"{path}: no images in its class sub-folders ({names})",
                        f"put {', '.join(IMAGE_SUFFIXES)} files in them")
