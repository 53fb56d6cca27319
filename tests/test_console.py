"""What a user sees on the console (issue 12): no TensorFlow start-up logs unless --verbose,
edgeq's warnings as one line without a source line, no log path, tables that fit 80 columns,
and the QEMU check in percent. Runs the real CLI in a subprocess on a small model."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from edgeq.outputs import MARKER

TF_NOISE = ("cuInit", "I0000", "absl::InitializeLog", "oneDNN", "cuda_", "cpu_feature_guard")
SOURCE_LINE = re.compile(r"\w+\.py:\d+")  # "build.py:77", "quantize.py:170: UserWarning"


def edgeq(*args, cwd, timeout=600) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "80"}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # the CLI must quiet TensorFlow itself
    done = subprocess.run([sys.executable, "-m", "edgeq.cli", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=lambda: os.umask(0o022))
    return done.returncode, done.stdout + done.stderr


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small Keras 2 model that separates its .npz (a model at chance stops the build)."""
    import tf_keras as keras

    d = tmp_path_factory.mktemp("console")
    rng = np.random.default_rng(0)
    x = rng.random((96, 16, 16, 1), np.float32)
    y = (np.arange(96) % 2).astype(np.int64)
    x[y == 1] = 0.4 + 0.6 * x[y == 1]  # class 1 brighter: what global pooling sees
    x[y == 0] = 0.6 * x[y == 0]
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=20, batch_size=8, verbose=0)
    model.save(d / "small.h5")
    np.savez(d / "data.npz", x=x, y=y)
    return d


def assert_quiet(output: str) -> None:
    for noise in TF_NOISE:
        assert noise not in output, f"TensorFlow's {noise!r} log reached the console:\n{output}"
    assert "UserWarning" not in output and not SOURCE_LINE.search(output), output
    assert "Traceback" not in output, output


def test_min_max_quantize_is_quiet_and_warns_of_nothing(small):
    code, output = edgeq("quantize", "small.h5", "--data", "data.npz", "--method", "minmax",
                         "--bits", "8", "--calib-samples", "16", "--out", "q8.tflite", cwd=small)
    assert code == 0, output
    assert_quiet(output)
    assert "overfit" not in output  # min-max reconstructs nothing
    assert (small / "q8.tflite").stat().st_mode & 0o777 == 0o644  # the umask, not 0600


def test_reconstruction_warning_is_one_rich_line(small):
    code, output = edgeq("quantize", "small.h5", "--data", "data.npz", "--method", "adaround",
                         "--bits", "4", "--iters", "2", "--calib-samples", "16",
                         "--out", "q4.tflite", cwd=small)
    assert code == 0, output
    assert_quiet(output)
    assert re.search(r"^warning: only 16 calibration samples: reconstruction may overfit",
                     output, re.MULTILINE), output


def test_build_console_has_no_log_paths_and_fits_80_columns(small, tmp_path):
    code, output = edgeq("build", "--keras-model", small / "small.h5", "--data",
                         small / "data.npz", "--out", "out", "--no-baseline", "--calib-samples",
                         "16", cwd=tmp_path)
    assert code == 0, output
    assert_quiet(output)
    assert not re.search(r"\w…", output), output  # a cut word ("stm32h…"); stages end in " …"
    assert max(len(line) for line in output.splitlines()) <= 80, output
    assert (tmp_path / "out" / MARKER).is_file()
