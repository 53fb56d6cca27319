"""TensorFlow's own converter: float .tflite and full-integer INT8 post-training quantization.

This is the baseline edgeq measures itself against (contract 4), and the INT8 path of
`edgeq build` until edgeq's own writer takes over.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager

import numpy as np

from edgeq.learn.modelio import keras_version_of


def _converter(model):
    import tensorflow as tf

    if keras_version_of(model) == 2:
        shape = [1, *model.inputs[0].shape[1:]]
        fn = tf.function(lambda x: model(x, training=False))
        concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
        return tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    # Keras 3 models keep their variables outside the traced function; a SavedModel export
    # gives the converter a self-contained graph.
    folder = tempfile.mkdtemp(prefix="edgeq-savedmodel-")
    model.export(folder, format="tf_saved_model", verbose=False)
    return tf.lite.TFLiteConverter.from_saved_model(folder)


@contextmanager
def _quiet_native_output():
    """The converter prints calibration chatter from C++ straight to fd 1/2; hide it (errors
    still surface as Python exceptions)."""
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "wb") as devnull:
        try:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _convert(conv) -> bytes:
    with _quiet_native_output():
        return conv.convert()


def tflite_float(model) -> bytes:
    return _convert(_converter(model))


def tflite_int8_ptq(model, calib_x: np.ndarray, io_int8: bool = True) -> bytes:
    """Full-integer INT8 model from TensorFlow's converter, calibrated on `calib_x`."""
    import tensorflow as tf

    conv = _converter(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calib = np.asarray(calib_x, np.float32)
    conv.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    if io_int8:
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    return _convert(conv)
