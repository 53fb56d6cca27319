"""The reference interpreter against TFLM (tflite_micro, reference kernels): the MLPerf VWW model
on random and real images with every intermediate tensor compared, then per-op sweeps over small
Keras models converted by TF's full-integer converter."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.deploy.interp import Interpreter, quantize_input, run
from edgeq.errors import DataError
from edgeq.tflite.read import read_model

tflm_runtime = pytest.importorskip("tflite_micro.python.tflite_micro.runtime")


def tflm_preserving(model_bytes: bytes):
    """A TFLM interpreter that keeps every tensor, so intermediates can be compared."""
    return tflm_runtime.Interpreter.from_bytes(
        model_bytes, arena_size=8 << 20,
        intrepreter_config=tflm_runtime.InterpreterConfig.kPreserveAllTensors)


def assert_same_as_tflm(model_bytes: bytes, inputs: list[np.ndarray], tflm=None, interp=None):
    """Every op output of edgeq's interpreter equals TFLM's, bit for bit."""
    model = read_model(model_bytes)
    interp = interp or Interpreter(model)
    tflm = tflm or tflm_preserving(model_bytes)
    for x in inputs:
        interp.invoke(x)
        tflm.set_input(x, 0)
        tflm.invoke()
        for index, op in enumerate(model.ops):
            tensor = op.outputs[0]
            ours = interp.values[tensor]
            theirs = np.asarray(tflm.GetTensor(tensor, 0)["tensor_data"]).reshape(ours.shape)
            if not np.array_equal(ours, theirs):
                diff = np.abs(ours.astype(np.float64) - theirs.astype(np.float64))
                pytest.fail(f"operator {index} ({op.kind}) output differs from TFLM: "
                            f"{np.count_nonzero(diff)} of {diff.size} values, max {diff.max()}")
        np.testing.assert_array_equal(interp.values[model.outputs[0]], tflm.get_output(0))


@pytest.fixture(scope="module")
def vww_bytes(vww_int8_path) -> bytes:
    return vww_int8_path.read_bytes()


def test_vww_random_inputs_match_tflm(vww_bytes):
    rng = np.random.default_rng(0)
    inputs = [rng.integers(-128, 128, size=(1, 96, 96, 3), dtype=np.int8) for _ in range(2)]
    inputs.append(np.full((1, 96, 96, 3), -128, np.int8))
    assert_same_as_tflm(vww_bytes, inputs)


def _vww_images(coco_vww_dir, per_class: int) -> np.ndarray:
    from PIL import Image

    images = []
    for label in ("person", "non_person"):
        files = sorted(p for p in (coco_vww_dir / label).iterdir() if p.is_file())[:per_class]
        assert files, f"no images in {coco_vww_dir / label}"
        for path in files:
            with Image.open(path) as img:
                rgb = img.convert("RGB").resize((96, 96), Image.BILINEAR)
            images.append(np.asarray(rgb, dtype=np.float32) / 255.0)
    return np.stack(images)


def test_vww_real_images_match_tflm(vww_bytes, coco_vww_dir):
    model = read_model(vww_bytes)
    images = _vww_images(coco_vww_dir, per_class=3)
    inputs = [quantize_input(model.input_tensors[0], img[None]) for img in images]
    assert_same_as_tflm(vww_bytes, inputs)
    # the outputs are not saturated: real images give varied scores
    scores = {int(run(model, x)[0][0, 0]) for x in inputs}
    assert len(scores) > 2


def test_vww_is_fast(vww_bytes):
    import time

    interp = Interpreter(read_model(vww_bytes))
    x = np.zeros((1, 96, 96, 3), np.int8)
    interp.invoke(x)
    start = time.perf_counter()
    interp.invoke(x)
    assert time.perf_counter() - start < 1.0


def test_input_checks(vww_bytes):
    model = read_model(vww_bytes)
    with pytest.raises(DataError, match="must be int8"):
        run(model, np.zeros((1, 96, 96, 3), np.float32))
    with pytest.raises(DataError, match="shape"):
        run(model, np.zeros((96, 96, 3), np.int8))
