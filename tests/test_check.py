"""edgeq.deploy.check, edgeq.deploy.runtimes and edgeq.deploy.tflm on the real MLPerf Tiny VWW model and real
photos, with the real LiteRT and TFLite Micro."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import flatbuffers
import numpy as np
import pytest
from conftest import REPO

from edgeq.data import load_dataset
from edgeq.deploy import runtimes
from edgeq.deploy.check import (
    CheckResult,
    TensorSpec,
    check_command,
    check_model,
    model_input_spec,
    quantize_inputs,
)
from edgeq.deploy.tflm import captured_fd, fit_arena, measure_arena
from edgeq.errors import DataError, RuntimeMissingError, TFLiteFormatError
from edgeq.tflite.schema import schema

VWW_ARENA = 103_680  # what TFLM's recording allocator reports for vww_96_int8.tflite


@pytest.fixture(scope="module")
def vww_bytes(vww_int8_path) -> bytes:
    return vww_int8_path.read_bytes()


@pytest.fixture(scope="module")
def val_photos(coco_vww_dir):
    """The 128 val2017 photos, preprocessed as the shared README says (RGB, 96x96, /255)."""
    return load_dataset(coco_vww_dir, (96, 96, 3), "rgb", 255.0).by_prefix("val2017_")


@pytest.fixture(scope="module")
def val_result(vww_int8_path, val_photos) -> CheckResult:
    return check_model(vww_int8_path, val_photos.x, val_photos.y)


def with_custom_op(model_bytes: bytes) -> bytes:
    """The model with its first operator code turned into a custom op nobody implements."""
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model_bytes, 0))
    code = model.operatorCodes[0]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "EdgeqNoSuchOp"
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# --- TFLM arena -----------------------------------------------------------------------------


def test_measure_arena_matches_tflm_allocator(vww_bytes):
    assert measure_arena(vww_bytes) == VWW_ARENA


def test_measured_arena_is_enough_and_tight(vww_bytes):
    runtimes.tflm_interpreter(vww_bytes, VWW_ARENA)  # exactly the measured size works
    with captured_fd(2) as log, pytest.raises(RuntimeError, match="failed to allocate"):
        runtimes.tflm_interpreter(vww_bytes, VWW_ARENA - 16)
    assert "Failed to allocate tail memory" in "".join(log)  # short, not some other failure


def test_captured_fd_sees_c_level_writes():
    with captured_fd(2) as log:
        os.write(2, b"written below Python\n")
    assert log == ["written below Python\n"]


def test_fit_arena_stops_at_unsupported_op(vww_bytes):
    with pytest.raises(TFLiteFormatError, match="CUSTOM"):
        fit_arena(with_custom_op(vww_bytes))


def test_fit_arena_rejects_truncated_model(vww_bytes):
    with pytest.raises(TFLiteFormatError, match="TFLM cannot read"):
        fit_arena(vww_bytes[:1000])


# --- check on real photos -------------------------------------------------------------------


def test_vww_val_accuracy_matches_reference(val_result):
    # shared/README.md: vww_96_int8.tflite gets 86.7% on the val2017 half (111 of 128).
    litert, tflm = val_result.runtime("litert"), val_result.runtime("tflm")
    assert litert.available and tflm.available
    assert litert.accuracy == pytest.approx(111 / 128)
    assert tflm.accuracy == pytest.approx(111 / 128)
    assert val_result.samples == val_result.labelled == 128
    assert val_result.arena_bytes == VWW_ARENA


def test_vww_litert_tflm_within_contract(val_result):
    assert val_result.max_abs_diff is not None and val_result.max_abs_diff <= 1
    assert val_result.diff_unit == "LSB"
    assert val_result.tflm_litert_agreement >= 0.995
    assert val_result.fidelity_ok is True
    litert, tflm = val_result.runtime("litert"), val_result.runtime("tflm")
    assert litert.outputs.dtype == np.int8 and litert.outputs.shape == (128, 2)
    measured = np.abs(litert.outputs.astype(int) - tflm.outputs.astype(int)).max()
    assert val_result.max_abs_diff == measured


def test_result_to_dict_is_json_and_table_renders(val_result):
    payload = json.loads(json.dumps(val_result.to_dict()))
    assert payload["input"] == {"dtype": "int8", "shape": [1, 96, 96, 3],
                                "scale": pytest.approx(1 / 255), "zero_point": -128}
    assert [r["key"] for r in payload["runtimes"]] == ["litert", "tflm", "edgeq"]
    assert payload["fidelity_ok"] is True
    assert payload["reference_equals_tflm"] is True  # contract 1 on the MLPerf file
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(val_result.table())
    text = console.export_text()
    assert "86.72%" in text and "103,680" in text and "LiteRT" in text
    assert "edgeq reference vs TFLM raw outputs: identical" in text


def test_already_int8_inputs_give_the_same_result(vww_int8_path, val_photos, val_result):
    spec = model_input_spec(vww_int8_path)
    q = quantize_inputs(val_photos.x[:16], spec)
    result = check_model(vww_int8_path, q, val_photos.y[:16])
    np.testing.assert_array_equal(result.runtime("tflm").outputs, val_result.runtime("tflm").outputs[:16])


def test_float_agreement_from_outputs_and_from_callable(vww_int8_path, val_photos, val_result):
    x, y = val_photos.x[:20], val_photos.y[:20]
    labels = val_result.runtime("litert").labels[:20]
    fake_float = np.eye(2)[labels]
    fake_float[:5] = fake_float[:5, ::-1]  # the "float model" disagrees on 5 of 20
    by_array = check_model(vww_int8_path, x, y, float_outputs=fake_float)
    assert by_array.runtime("litert").float_agreement == pytest.approx(15 / 20)
    assert by_array.float_accuracy == pytest.approx(np.mean(fake_float.argmax(1) == y))

    seen = {}

    def predict(batch):
        seen["x"] = batch
        return fake_float

    by_callable = check_model(vww_int8_path, x, y, float_model_predict=predict)
    assert seen["x"].dtype == np.float32 and seen["x"].max() <= 1.0
    assert by_callable.runtime("tflm").float_agreement == by_array.runtime("tflm").float_agreement
    rows = by_callable.accuracy_rows(include_float=True)
    assert [r["agreement_with"] for r in rows] == [None, "float", "float", "float"]


def test_quantize_inputs_rounds_and_clips():
    spec = TensorSpec("int8", (1, 2), 0.5, -10)
    q = quantize_inputs(np.array([[0.0, 0.74], [100.0, -100.0]], np.float32), spec)
    np.testing.assert_array_equal(q, np.array([[-10, -9], [127, -128]], np.int8))
    passthrough = np.array([[1, 2]], np.int8)
    assert quantize_inputs(passthrough, spec) is passthrough
    float_spec = TensorSpec("float32", (1, 2), None, None)
    assert quantize_inputs(np.array([[0.25, 1]], np.float64), float_spec).dtype == np.float32
    with pytest.raises(DataError, match="int32"):
        quantize_inputs(np.array([[1, 2]], np.int32), spec)


def test_quantize_inputs_rounds_half_steps_as_tflite_quantize():
    """Pixels / 127.5 - 1 on a 2/255 step fall on exact half steps: rounded half away from
    zero, as TFLite's QUANTIZE and the reference interpreter's quantize_input do (numpy's
    half-to-even gave 1 LSB less on them, and the simulated model then disagreed with TFLM)."""
    from edgeq.deploy.interp import quantize_input
    from edgeq.tflite.model import Tensor

    spec = TensorSpec("int8", (1, 4), 0.5, 0)
    q = quantize_inputs(np.array([[0.25, -0.25, 0.75, -1.25]], np.float32), spec)
    np.testing.assert_array_equal(q, np.array([[1, -1, 2, -3]], np.int8))
    x = (np.arange(256, dtype=np.float32)[None] / np.float32(127.5) - 1).astype(np.float32)
    scale, zp = np.float32(2 / 255), -1
    tensor = Tensor(name="input", shape=(1, 256), dtype="int8", scale=np.array([scale]),
                    zero_point=np.array([zp]))
    np.testing.assert_array_equal(quantize_inputs(x, TensorSpec("int8", (1, 256), scale, zp)),
                                  quantize_input(tensor, x))


def test_bad_inputs_are_data_errors(vww_int8_path):
    with pytest.raises(DataError, match="shape"):
        check_model(vww_int8_path, np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(DataError, match="labels"):
        check_model(vww_int8_path, np.zeros((2, 96, 96, 3), np.float32), np.zeros(3))


def test_unloadable_model_is_reported(vww_bytes):
    with pytest.raises(TFLiteFormatError):
        check_model(vww_bytes[:1000], np.zeros((1, 96, 96, 3), np.float32))


def test_check_command_with_limit_and_json(vww_int8_path, coco_vww_dir, tmp_path):
    out = tmp_path / "sub" / "check.json"
    result = check_command(vww_int8_path, coco_vww_dir, limit=24, json_path=out)
    payload = json.loads(out.read_text())
    assert payload["samples"] == result.samples == 24
    assert payload["labelled"] == 24
    assert payload["runtimes"][0]["accuracy"] == result.runtime("litert").accuracy
    assert 0.5 < result.runtime("litert").accuracy <= 1.0
    assert not list(out.parent.glob(".*.tmp"))
    with pytest.raises(DataError, match="limit"):
        check_command(vww_int8_path, coco_vww_dir, limit=0)


def test_npz_data_of_wrong_shape_is_rejected(vww_int8_path, tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.zeros((3, 28, 28, 1), np.float32), y=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="shape"):
        check_command(vww_int8_path, path)


# --- runtimes missing or broken -------------------------------------------------------------


def test_tflm_missing_is_reported_not_fatal(monkeypatch, vww_int8_path, val_photos):
    monkeypatch.setitem(sys.modules, "tflite_micro.python.tflite_micro.runtime", None)
    with pytest.raises(RuntimeMissingError, match="tflite_micro") as info:
        runtimes.tflm_module()
    assert info.value.hint == "pip install tflite-micro"
    result = check_model(vww_int8_path, val_photos.x[:8], val_photos.y[:8])
    tflm = result.runtime("tflm")
    assert not tflm.available and "pip install tflite-micro" in tflm.reason
    assert result.runtime("litert").available
    assert result.tflm_litert_agreement is None and result.fidelity_ok is None
    assert result.to_dict()["runtimes"][1]["available"] is False


def test_litert_falls_back_to_tflite_runtime(monkeypatch, vww_bytes):
    from ai_edge_litert import interpreter as real

    stand_in = types.ModuleType("tflite_runtime.interpreter")
    stand_in.Interpreter, stand_in.OpResolverType = real.Interpreter, real.OpResolverType
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", stand_in)
    module, version = runtimes.litert_module()
    assert module is stand_in and version.startswith("tflite-runtime")
    assert runtimes.litert_interpreter(vww_bytes).get_output_details()[0]["shape"].tolist() == [1, 2]


def test_broken_tflite_runtime_import_falls_through(monkeypatch, tmp_path):
    # tflite-runtime 2.14 raises at import beside numpy 2; that must read as "not installed".
    package = tmp_path / "tflite_runtime"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "interpreter.py").write_text(
        "raise AttributeError('_ARRAY_API not found (compiled using NumPy 1.x)')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "ai_edge_litert.interpreter", None)
    for name in ("tflite_runtime", "tflite_runtime.interpreter"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(AttributeError, match="NumPy 1.x"):  # the stand-in really is broken
        __import__("tflite_runtime.interpreter")
    with pytest.raises(RuntimeMissingError) as info:
        runtimes.litert_module()
    assert "pip install ai-edge-litert" in info.value.hint
    assert runtimes.available_runtimes()["litert"] is None


def test_no_runtime_at_all_raises(monkeypatch, vww_int8_path):
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter",
                 "tflite_micro.python.tflite_micro.runtime"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(RuntimeMissingError, match="neither LiteRT nor TFLM"):
        check_model(vww_int8_path, np.zeros((1, 96, 96, 3), np.float32))


def test_check_imports_no_tensorflow(vww_int8_path):
    code = ("import sys, numpy as np; from edgeq.deploy.check import check_model; "
            f"r = check_model({str(vww_int8_path)!r}, np.zeros((2, 96, 96, 3), np.float32)); "
            "assert r.runtime('tflm').available, r; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', "
            "'matplotlib')]; print(bad)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
