"""Shared fixtures. Real data and models come from ../shared (present in CI); tests that need
them fail loudly when it is missing rather than passing silently."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDGEQ_SHARED", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "models" / "vww_96.h5").is_file():
        pytest.fail(f"{SHARED} with models/vww_96.h5 is required (set EDGEQ_SHARED)")
    return SHARED


@pytest.fixture(scope="session")
def vww_int8_path(shared_dir) -> Path:
    return shared_dir / "models" / "vww_96_int8.tflite"


@pytest.fixture(scope="session")
def vww_h5_path(shared_dir) -> Path:
    return shared_dir / "models" / "vww_96.h5"


@pytest.fixture(scope="session")
def coco_vww_dir(shared_dir) -> Path:
    return shared_dir / "data" / "coco-vww-256"
