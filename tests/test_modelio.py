import numpy as np
import pytest

from edgeq.errors import ModelLoadError
from edgeq.learn.modelio import load_keras_model


def _k2_model():
    import tf_keras as keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))


def _k3_model():
    import keras

    inp = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu")(inp)
    x = keras.layers.Flatten()(x)
    return keras.Model(inp, keras.layers.Dense(2, activation="softmax")(x))


def test_keras2_h5_and_savedmodel(tmp_path):
    model = _k2_model()
    x = np.random.default_rng(0).random((2, 8, 8, 1), np.float32)
    model.save(tmp_path / "m.h5")
    loaded = load_keras_model(tmp_path / "m.h5")
    assert loaded.keras_version == 2 and loaded.input_shape == (8, 8, 1)
    np.testing.assert_allclose(loaded.model(x).numpy(), model(x).numpy(), atol=1e-6)
    model.save(tmp_path / "sm", save_format="tf")
    assert load_keras_model(tmp_path / "sm").keras_version == 2


def test_keras3_dot_keras(tmp_path):
    model = _k3_model()
    model.save(tmp_path / "m.keras")
    loaded = load_keras_model(tmp_path / "m.keras")
    assert loaded.keras_version == 3 and loaded.input_shape == (8, 8, 1)


def test_lambda_is_refused_unless_unsafe(tmp_path):
    import tf_keras as keras

    inp = keras.Input((4,))
    out = keras.layers.Lambda(lambda t: t * 2)(inp)
    keras.Model(inp, out).save(tmp_path / "lam.h5")
    with pytest.raises(ModelLoadError, match="refusing to load Lambda") as e:
        load_keras_model(tmp_path / "lam.h5")
    assert "--unsafe" in e.value.hint
    assert load_keras_model(tmp_path / "lam.h5", unsafe=True).keras_version == 2


def test_missing_truncated_and_non_keras_files(tmp_path):
    with pytest.raises(ModelLoadError, match="no such file"):
        load_keras_model(tmp_path / "none.h5")
    _k2_model().save(tmp_path / "m.h5")
    data = (tmp_path / "m.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelLoadError, match="cut.h5"):
        load_keras_model(tmp_path / "cut.h5")
    (tmp_path / "text.h5").write_text("hello")
    with pytest.raises(ModelLoadError, match="not a readable HDF5"):
        load_keras_model(tmp_path / "text.h5")
    (tmp_path / "x.keras").write_bytes(b"PK\x03\x04garbage")
    with pytest.raises(ModelLoadError, match="not a valid .keras"):
        load_keras_model(tmp_path / "x.keras")
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(ModelLoadError, match="unknown model format"):
        load_keras_model(tmp_path / "m.onnx")


def test_weights_only_h5_says_what_to_do(tmp_path):
    _k2_model().save_weights(tmp_path / "w.h5")
    with pytest.raises(ModelLoadError, match="weights only") as e:
        load_keras_model(tmp_path / "w.h5")
    assert "--weights" in e.value.hint


def test_nan_weights_are_refused(tmp_path):
    model = _k2_model()
    kernel = model.layers[1].kernel
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    model.save(tmp_path / "nan.h5")
    with pytest.raises(ModelLoadError, match="NaN or Inf"):
        load_keras_model(tmp_path / "nan.h5")


def test_lambda_and_custom_layers_are_refused_in_every_format(tmp_path):
    """Refused before anything is deserialized: Lambda in a Keras 3 .keras and in a tf_keras
    SavedModel, a custom layer class in .keras and in .h5; each with the --unsafe hint."""
    import keras
    import tf_keras

    @keras.saving.register_keras_serializable(package="mine")
    class Twice(keras.layers.Layer):
        def call(self, x):
            return 2 * x

    class TwiceK2(tf_keras.layers.Layer):
        def call(self, x):
            return 2 * x

    inp = keras.Input((4,))
    keras.Model(inp, keras.layers.Lambda(lambda t: t * 2)(inp)).save(tmp_path / "lam.keras")
    inp = keras.Input((4,))
    keras.Model(inp, Twice()(inp)).save(tmp_path / "custom.keras")
    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, tf_keras.layers.Lambda(lambda t: t * 2)(inp)).save(
        tmp_path / "lam_sm", save_format="tf")
    inp = tf_keras.Input((4,))
    tf_keras.Model(inp, TwiceK2()(inp)).save(tmp_path / "custom.h5")
    cases = {"lam.keras": "Lambda", "custom.keras": "Twice", "lam_sm": "Lambda"}
    for name, layer in cases.items():
        with pytest.raises(ModelLoadError, match=f"{name}: refusing to load .*{layer}") as e:
            load_keras_model(tmp_path / name)
        assert "--unsafe" in e.value.hint
    # Keras 2 stores no module for a custom class: Keras stops at it, and the message says why
    # (not "the file is truncated").
    with pytest.raises(ModelLoadError, match="custom.h5: refusing to load TwiceK2: a custom layer"):
        load_keras_model(tmp_path / "custom.h5")
