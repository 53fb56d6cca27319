"""Loading Keras models: .h5, .keras and SavedModel, written by Keras 2 (tf_keras) or Keras 3.

Before anything is deserialized the stored config is scanned: Lambda layers and custom objects
run arbitrary code when loaded, so they are refused unless the caller passes `unsafe=True`.
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeq.errors import ModelLoadError

# Layers that execute stored Python when deserialized.
UNSAFE_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")


@dataclass
class LoadedModel:
    model: object  # a tf_keras.Model or a keras.Model
    keras_version: int  # 2 or 3
    path: Path

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.model.inputs[0].shape[1:])


def _walk_class_names(config):
    """Every (class_name, module) pair in a nested Keras config."""
    if isinstance(config, dict):
        if "class_name" in config:
            yield config["class_name"], config.get("module"), config.get("registered_name")
        for v in config.values():
            yield from _walk_class_names(v)
    elif isinstance(config, list):
        for v in config:
            yield from _walk_class_names(v)


def _check_safe(config, path: Path, unsafe: bool) -> None:
    if unsafe:
        return
    found = set()
    for cls, module, registered in _walk_class_names(config):
        if cls in UNSAFE_LAYERS:
            found.add(cls)
        elif module is not None and not str(module).startswith(("keras", "tf_keras", "builtins")):
            found.add(f"{cls} (custom, from {module})")
        elif registered and ">" in str(registered):
            found.add(f"{cls} (custom object {registered})")
    if found:
        raise ModelLoadError(
            f"{path}: refusing to load {', '.join(sorted(found))}: deserializing it runs code stored in the file",
            "pass --unsafe if you trust this file, or rebuild the model without Lambda/custom layers")


def _h5_config(path: Path) -> tuple[dict, int]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "2")
    except OSError as e:
        raise ModelLoadError(f"{path}: not a readable HDF5 file, or truncated ({e})",
                             "re-save the model with model.save('model.h5') or model.save('model.keras')") from None
    if raw is None:
        raise ModelLoadError(f"{path}: holds weights only, no model architecture",
                             "pass --model NAME --weights PATH for a zoo architecture, or save the whole model")
    if isinstance(raw, bytes):
        raw = raw.decode()
    if isinstance(version, bytes):
        version = version.decode()
    return json.loads(raw), 3 if str(version).startswith("3") else 2


def _keras_zip_config(path: Path) -> tuple[dict, int]:
    try:
        with zipfile.ZipFile(path) as z:
            config = json.loads(z.read("config.json"))
            meta = json.loads(z.read("metadata.json")) if "metadata.json" in z.namelist() else {}
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as e:
        raise ModelLoadError(f"{path}: not a valid .keras archive, or truncated ({e})",
                             "re-save the model with model.save('model.keras')") from None
    version = str(meta.get("keras_version", "3"))
    return config, 3 if version.startswith("3") else 2


def _savedmodel_config(path: Path) -> tuple[dict, int]:
    meta = path / "keras_metadata.pb"
    if not (path / "saved_model.pb").is_file():
        raise ModelLoadError(f"{path}: not a SavedModel folder (no saved_model.pb)")
    if not meta.is_file():
        raise ModelLoadError(
            f"{path}: a SavedModel without Keras metadata (Keras 3's model.export() writes "
            "only a serving function, without the layers edgeq reads)",
            "save the Keras 3 model with model.save('model.keras') and pass that file (or a "
            "tf_keras model with model.save(folder), or an .h5)")
    text = meta.read_bytes().decode("utf-8", "replace")
    # keras_metadata.pb holds one JSON document per layer; scanning for the class names suffices.
    names = {m for m in UNSAFE_LAYERS if f'"class_name": "{m}"' in text}
    return {"layers": [{"class_name": n} for n in names]}, 2


def load_keras_model(path, unsafe: bool = False) -> LoadedModel:
    """Load a whole Keras model for inference (not compiled)."""
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"{path}: no such file or folder")
    if path.is_dir():
        config, version = _savedmodel_config(path)
    elif path.suffix == ".h5" or path.suffix == ".hdf5":
        config, version = _h5_config(path)
    elif path.suffix == ".keras":
        config, version = _keras_zip_config(path)
    else:
        raise ModelLoadError(f"{path}: unknown model format {path.suffix!r}",
                             "pass a .h5, .keras or SavedModel folder")
    _check_safe(config, path, unsafe)
    try:
        if version == 3:
            import keras

            model = keras.models.load_model(path, compile=False, safe_mode=not unsafe)
        else:
            import tf_keras

            model = tf_keras.models.load_model(path, compile=False,
                                               **({"safe_mode": not unsafe} if path.suffix == ".keras" else {}))
    except ModelLoadError:
        raise
    except Exception as e:  # Keras raises many types for bad files; all mean "cannot load".
        # Keras 2 configs carry no module for a custom class, so the scan above cannot see it;
        # Keras stops at the class it cannot find (nothing of it ran): say so, not "truncated".
        unknown = re.search(r"Unknown (?:layer|object)\W+(\w+)", str(e))
        if unknown:
            raise ModelLoadError(
                f"{path}: refusing to load {unknown[1]}: a custom layer, and edgeq never imports "
                "code to deserialize a model",
                "rebuild the model from built-in Keras layers (edgeq lists what it supports)") from None
        raise ModelLoadError(f"{path}: Keras {version} could not load it: {type(e).__name__}: {e}"[:600],
                             "check that the file is complete and was saved by Keras") from None
    check_weights_finite(model, path)
    return LoadedModel(model, version, path)


def load_weights(model, path, name: str = "") -> None:
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: no such weights file")
    try:
        model.load_weights(path)
    except Exception as e:
        raise ModelLoadError(f"{path}: weights do not fit the {name or 'model'} architecture: "
                             f"{type(e).__name__}: {e}"[:600],
                             "use the weights saved from this exact architecture") from None
    check_weights_finite(model, path)


def check_weights_finite(model, source) -> None:
    for w in model.weights:
        value = np.asarray(w.numpy() if hasattr(w, "numpy") else w)
        if not np.isfinite(value).all():
            raise ModelLoadError(f"{source}: weight {w.name} holds NaN or Inf values",
                                 "retrain or restore the model from a good checkpoint")


def keras_version_of(model) -> int:
    """2 for a tf_keras model, 3 for a Keras 3 model."""
    return 2 if type(model).__module__.startswith("tf_keras") else 3
