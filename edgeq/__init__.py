"""edgeq: put a Keras model on a microcontroller, and prove what runs there."""

__version__ = "0.1.0"

from pathlib import Path

_PACKAGE = Path(__file__).parent


def data_dir(name: str) -> Path:
    """One of the project's data folders (`boards`, `models`, `firmware_templates`): mapped into
    the package as edgeq/_data/<name> in a wheel, at the repository root in a checkout."""
    installed = _PACKAGE / "_data" / name
    return installed if installed.is_dir() else _PACKAGE.parent / name
