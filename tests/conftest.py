"""Shared fixtures. Real data and models come from ../shared (present in CI); tests that need
them fail loudly when it is missing rather than passing silently."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
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


@dataclass(frozen=True)
class InstalledWheel:
    """edgeq installed from its wheel into a fresh virtual environment."""

    venv: Path
    wheel: Path
    python: Path
    edgeq: Path  # the console script
    env: dict  # the environment to run it in: nothing that points into the checkout

    def run(self, *args, cwd, check=True, timeout=600) -> subprocess.CompletedProcess:
        done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd,
                              env=self.env, timeout=timeout)
        if check:
            assert done.returncode == 0, f"{args}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        return done


# What the wheel is built from: the package, the root folders pyproject.toml maps into it
# (tool.setuptools.package-dir; a folder missing here fails the build loudly) and the readme.
WHEEL_SOURCES = ("pyproject.toml", "README.md", "edgeq", "boards", "models", "firmware_templates")


def _build_wheel_venv(root: Path) -> None:
    def run(*cmd, **kw):
        done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=900,
                              **kw)
        assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"

    # Built from a copy, so that setuptools writes its build/ and egg-info there and not into
    # the shared checkout (where a stale build/lib would also leak old files into the wheel).
    source = root / "source"
    for name in WHEEL_SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            source.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    pip = ["-m", "pip", "--disable-pip-version-check", "-q"]
    run(sys.executable, *pip, "wheel", "--no-deps", "-w", root / "dist", source)
    (wheel,) = (root / "dist").glob("edgeq-*.whl")
    run(sys.executable, "-m", "venv", root / "venv")
    # The wheel with the dependencies it declares, resolved by pip, plus its `litert` extra
    # (the TFLite runtime `edgeq check` uses): what `pip install edgeq[litert]` gives a user.
    run(root / "venv" / "bin" / "python", *pip, "install", f"{wheel}[litert]", env=_clean_env())


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["COLUMNS"] = "200"  # rich wraps tables to the terminal width; keep names whole
    return env


@pytest.fixture(scope="session")
def installed_wheel(tmp_path_factory) -> InstalledWheel:
    """The wheel built from this checkout, installed with its declared dependencies (no
    TensorFlow) into a fresh venv: built once per session; pytest-xdist workers share it
    through a file lock in the session's common temporary folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # shared by the workers of this session
    root = root / "installed-wheel"
    root.mkdir(exist_ok=True)
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ready = root / "ready"
        if not ready.is_file():
            for partial in ("source", "dist", "venv"):  # a worker that failed half-way
                shutil.rmtree(root / partial, ignore_errors=True)
            _build_wheel_venv(root)
            ready.touch()
    venv = root / "venv"
    (wheel,) = (root / "dist").glob("edgeq-*.whl")
    return InstalledWheel(venv, wheel, venv / "bin" / "python", venv / "bin" / "edgeq",
                          _clean_env())
