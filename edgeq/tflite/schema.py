"""The generated TFLite flatbuffer schema module (object and accessor API), re-exported as
`schema` so that edgeq never vendors it.

It is taken from the lightest package that ships it: ai_edge_litert, then tflite_runtime, then
tflite_micro, and only as a last resort TensorFlow (importing TensorFlow takes seconds and is not
needed to read, check or run a .tflite).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgeq.errors import RuntimeMissingError

# In order of preference; TensorFlow last because importing it is slow and heavy.
_CANDIDATES = (
    "ai_edge_litert.schema_py_generated",
    "tflite_runtime.schema_py_generated",
    "tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
    "tensorflow.lite.python.schema_py_generated",
)


def _load_schema() -> ModuleType:
    for name in _CANDIDATES:
        try:
            module = importlib.import_module(name)
        except Exception:  # noqa: BLE001 - a broken optional package must not stop the search
            continue
        if hasattr(module, "Model") and hasattr(module, "BuiltinOperator"):
            return module
    raise RuntimeMissingError(
        "no TFLite flatbuffer schema module found (looked for "
        + ", ".join(_CANDIDATES)
        + ")",
        hint="pip install ai-edge-litert (or tflite-micro / tensorflow)",
    )


schema = _load_schema()

__all__ = ["schema"]
