"""`edgeq check` on a minimal install: a fresh virtualenv with only numpy, ai-edge-litert and the
CLI libraries (no TensorFlow, Keras, matplotlib or tflite_micro), edgeq installed from this
checkout as a wheel. Checking real photos must work there, and TFLM is reported unavailable."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

from conftest import REPO

MINIMAL = ["numpy", "ai-edge-litert", "click", "rich", "pyyaml", "pillow", "jinja2", "flatbuffers"]

SCRIPT = r"""
import json, sys
import edgeq.deploy.check
from edgeq.deploy.check import check_command
result = check_command(sys.argv[1], sys.argv[2])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "tf_keras",
                                                           "matplotlib", "tflite_micro"})
print(json.dumps({"result": result.to_dict(), "heavy": heavy, "edgeq": edgeq.deploy.check.__file__}))
"""


def _run(cmd, **kw):
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, **kw)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done


def test_check_runs_without_tensorflow(tmp_path, vww_int8_path, coco_vww_dir):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([*pip, *MINIMAL], env=env)
    _run([*pip, "--no-deps", str(REPO)], env=env)

    # A few real photos of each class, in the Visual Wake Words layout.
    data = tmp_path / "photos"
    for label in ("person", "non_person"):
        (data / label).mkdir(parents=True)
        for photo in sorted((coco_vww_dir / label).glob("val2017_*.jpg"))[:4]:
            shutil.copy(photo, data / label / photo.name)

    # cwd away from the checkout, so that `import edgeq` must come from the installed wheel.
    done = _run([str(python), "-c", SCRIPT, str(vww_int8_path), str(data)], cwd=tmp_path, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    assert str(venv) in report["edgeq"]
    result = report["result"]
    assert result["samples"] == result["labelled"] == 8
    litert, tflm, reference = result["runtimes"]
    # edgeq's own reference interpreter needs only numpy: it runs here and agrees with LiteRT.
    assert reference["available"] and reference["accuracy"] == litert["accuracy"]
    assert litert["available"] and litert["name"].startswith("TFLite INT8 via LiteRT")
    assert 0.5 <= litert["accuracy"] <= 1.0
    assert not tflm["available"] and "pip install tflite-micro" in tflm["reason"]
    assert result["tflm_litert_agreement"] is None and result["arena_bytes"] is None

    # The installed console script, with the data files (boards, model cards) from the wheel.
    edgeq = str(venv / "bin" / "edgeq")
    cli = _run([edgeq, "check", str(vww_int8_path), "--data", str(data), "--json", "-"], cwd=tmp_path, env=env)
    assert json.loads(cli.stdout)["samples"] == 8
    assert "stm32h743" in _run([edgeq, "boards"], cwd=tmp_path, env=env).stdout
    card = json.loads(_run([edgeq, "models", "show", "person_detect", "--json"], cwd=tmp_path, env=env).stdout)
    assert card["input_shape"] == [96, 96, 1]
    assert "#ifndef" in _run(
        [str(python), "-c", "from importlib import resources; print((resources.files('edgeq') / "
         "'deploy/templates/model_data.h.j2').read_text())"], cwd=tmp_path, env=env).stdout
