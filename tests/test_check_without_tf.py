"""`edgeq check` on a minimal install: edgeq's wheel installed into a fresh virtualenv with only
the dependencies pyproject.toml declares and its `litert` extra, resolved by pip (the
`installed_wheel` fixture in conftest.py; no TensorFlow, Keras, matplotlib or tflite_micro).
Checking real photos must work there, and TFLM is reported unavailable."""

from __future__ import annotations

import json
import shutil

SCRIPT = r"""
import json, sys
import edgeq.deploy.check
from edgeq.deploy.check import check_command
result = check_command(sys.argv[1], sys.argv[2])
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"tensorflow", "keras", "tf_keras",
                                                           "matplotlib", "tflite_micro"})
print(json.dumps({"result": result.to_dict(), "heavy": heavy, "edgeq": edgeq.deploy.check.__file__}))
"""


def test_check_runs_without_tensorflow(installed_wheel, tmp_path, vww_int8_path, coco_vww_dir):
    venv, python, edgeq = installed_wheel.venv, installed_wheel.python, installed_wheel.edgeq

    def run(*cmd):
        # cwd away from the checkout, so that `import edgeq` must come from the installed wheel
        return installed_wheel.run(*cmd, cwd=tmp_path, timeout=900)

    # A few real photos of each class, in the Visual Wake Words layout.
    data = tmp_path / "photos"
    for label in ("person", "non_person"):
        (data / label).mkdir(parents=True)
        for photo in sorted((coco_vww_dir / label).glob("val2017_*.jpg"))[:4]:
            shutil.copy(photo, data / label / photo.name)

    done = run(python, "-c", SCRIPT, vww_int8_path, data)
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
    cli = run(edgeq, "check", vww_int8_path, "--data", data, "--json", "-")
    assert json.loads(cli.stdout)["samples"] == 8
    assert "stm32h743" in run(edgeq, "boards").stdout
    card = json.loads(run(edgeq, "models", "show", "person_detect", "--json").stdout)
    assert card["input_shape"] == [96, 96, 1]
    assert "#ifndef" in run(
        python, "-c", "from importlib import resources; print((resources.files('edgeq') / "
        "'deploy/templates/model_data.h.j2').read_text())").stdout
