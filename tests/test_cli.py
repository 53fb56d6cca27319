import json

import pytest
from click.testing import CliRunner

from edgeq import __version__
from edgeq.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_help_version_and_examples_on_every_subcommand():
    top = run("--help")
    assert top.exit_code == 0 and "edgeq build --board cortex-m7" in top.output
    assert __version__ in run("--version").output
    for name, cmd in main.commands.items():
        result = run(name, "--help")
        assert result.exit_code == 0, name
        assert "Example" in result.output, f"{name} --help has no example"
        for sub in getattr(cmd, "commands", {}):
            assert "Example" in run(name, sub, "--help").output, f"{name} {sub}"


def test_boards_and_models_listing():
    out = run("boards").output
    assert "stm32h743" in out and "cortex-m7 → stm32h743" in out
    shown = json.loads(run("boards", "show", "cortex-m7", "--json").output)
    assert shown["name"] == "stm32h743" and shown["flash_kib"] == 2048
    assert "person_detect_tiny" in run("models").output
    card = json.loads(run("models", "show", "fmnist", "--json").output)
    assert card["input_shape"] == [32, 32, 1]


@pytest.mark.parametrize("args, words", [
    (("boards", "show", "esp32"), ["unknown board 'esp32'", "stm32h743"]),
    (("models", "show", "resnet"), ["unknown model 'resnet'", "fmnist"]),
    (("build", "--model", "nope"), ["unknown model 'nope'"]),
    (("build", "--board", "esp32"), ["unknown board"]),
    (("build", "--keras-model", "missing.h5"), ["missing.h5", "does not exist"]),
    (("check", "missing.tflite", "--data", "."), ["missing.tflite"]),
])
def test_expected_errors_are_messages_not_tracebacks(args, words):
    result = run(*args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    for w in words:
        assert w in result.output
