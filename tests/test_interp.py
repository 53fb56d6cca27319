"""The reference interpreter against TFLM (tflite_micro, reference kernels): the MLPerf VWW model
on random and real images with every intermediate tensor compared, then per-op sweeps over small
Keras models converted by TF's full-integer converter."""

from __future__ import annotations

import numpy as np
import pytest
from test_write import converter_versions_disagreeing
from tflite_micro.python.tflite_micro import runtime as tflm_runtime

from edgeq.deploy.interp import Interpreter, quantize_input, run, run_batch
from edgeq.errors import DataError
from edgeq.tflite.read import read_model


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
    scores = run_batch(model, np.concatenate(inputs))[0]
    assert scores.shape == (len(inputs), 2) and len(set(scores[:, 0].tolist())) > 2
    np.testing.assert_array_equal(scores[1], run(model, inputs[1])[0][0])


def test_vww_is_fast(vww_bytes):
    import time

    interp = Interpreter(read_model(vww_bytes))
    x = np.zeros((1, 96, 96, 3), np.int8)
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        interp.invoke(x)
        timings.append(time.perf_counter() - start)
    assert min(timings) < 0.5  # about 0.03 s on one core


def test_input_checks(vww_bytes):
    model = read_model(vww_bytes)
    with pytest.raises(DataError, match="must be int8"):
        run(model, np.zeros((1, 96, 96, 3), np.float32))
    with pytest.raises(DataError, match="shape"):
        run(model, np.zeros((96, 96, 3), np.int8))
    with pytest.raises(DataError, match="NaN"):
        quantize_input(model.input_tensors[0], np.full((1, 96, 96, 3), np.nan))


# ---------------------------------------------------------------------------------------------
# Per-op sweeps: small float Keras models, converted by TF's full-integer converter, each branch
# of a model one op configuration. Every op output is compared with TFLM's.


@pytest.fixture(scope="module")
def tfk():
    import tensorflow as tf
    import tf_keras as keras

    return tf, keras


def convert(tfk, model, seed: int, float_io: bool = False, per_channel_dense: bool = True):
    tf, _ = tfk
    shapes = [tuple(int(d) for d in t.shape[1:]) for t in model.inputs]

    def representative():
        rng = np.random.default_rng(seed)
        for _ in range(16):
            yield [rng.normal(0.0, 1.0, size=(1, *s)).astype(np.float32) for s in shapes]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_disable_per_channel_quantization_for_dense_layers = (
        not per_channel_dense)
    if not float_io:
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter.convert()


def int8_inputs(model_bytes: bytes, seed: int, count: int = 3) -> list[np.ndarray]:
    """Full-range random int8 inputs and quantized normal data (the calibrated range)."""
    tensor = read_model(model_bytes).input_tensors[0]
    rng = np.random.default_rng(seed)
    full = [rng.integers(-128, 128, size=tensor.shape, dtype=np.int8) for _ in range(count)]
    normal = [quantize_input(tensor, rng.normal(0.0, 1.0, size=tensor.shape))
              for _ in range(count)]
    return full + normal


def check_keras(tfk, model, seed: int, expect_ops: set[str], **convert_args) -> bytes:
    model_bytes = convert(tfk, model, seed, **convert_args)
    kinds = {op.kind for op in read_model(model_bytes).ops}
    assert expect_ops <= kinds, f"the converter produced {kinds}, expected {expect_ops}"
    assert converter_versions_disagreeing(model_bytes) == []  # edgeq's writer agrees
    assert_same_as_tflm(model_bytes, int8_inputs(model_bytes, seed))
    return model_bytes


ACTIVATIONS = (None, "relu", "relu6")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_conv2d_sweep(tfk, seed):
    _, keras = tfk
    rng = np.random.default_rng(100 + seed)
    h, w, c = (int(v) for v in rng.integers([5, 5, 1], [15, 15, 9]))
    inp = keras.Input((h, w, c), batch_size=1)
    branches = []
    for _ in range(5):
        kernel = (int(rng.integers(1, 6)), int(rng.integers(1, 6)))
        dilated = rng.random() < 0.3
        strides = (1, 1) if dilated else (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        padding = str(rng.choice(["same", "valid"]))
        if dilated:  # a dilated VALID conv may convert to SPACE_TO_BATCH_ND
            padding = "same"
        if padding == "valid":
            kernel = (min(kernel[0], h // 2), min(kernel[1], w // 2))
        branches.append(keras.layers.Conv2D(
            int(rng.integers(1, 10)), kernel, strides=strides, padding=padding,
            dilation_rate=2 if dilated else 1, use_bias=bool(rng.random() < 0.8),
            activation=ACTIVATIONS[int(rng.integers(0, 3))])(inp))
    check_keras(tfk, keras.Model(inp, branches), seed, {"CONV_2D"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depthwise_sweep(tfk, seed):
    _, keras = tfk
    rng = np.random.default_rng(200 + seed)
    h, w, c = (int(v) for v in rng.integers([5, 5, 1], [15, 15, 7]))
    inp = keras.Input((h, w, c), batch_size=1)
    branches = []
    for _ in range(4):  # (a dilated depthwise converts to SPACE_TO_BATCH_ND; see below)
        branches.append(keras.layers.DepthwiseConv2D(
            (int(rng.integers(1, 5)), int(rng.integers(1, 5))),
            strides=(int(rng.integers(1, 4)), int(rng.integers(1, 3))),
            padding=str(rng.choice(["same", "valid"])), depth_multiplier=int(rng.integers(1, 4)),
            activation=ACTIVATIONS[int(rng.integers(0, 3))])(inp))
    check_keras(tfk, keras.Model(inp, branches), seed, {"DEPTHWISE_CONV_2D"})


def _edit(model_bytes: bytes, edit) -> bytes:
    """Apply edit(model_t, schema) to the flatbuffer's object form and re-pack it."""
    import flatbuffers

    from edgeq.tflite.schema import schema

    model_t = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    edit(model_t, schema)
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def test_dilated_depthwise_and_conv(tfk):
    """The converter never emits a dilated DEPTHWISE_CONV_2D, so set the dilation in the file:
    with SAME padding the output shape does not change."""
    _, keras = tfk
    inp = keras.Input((11, 9, 3), batch_size=1)
    outs = [keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(inp),
            keras.layers.Conv2D(4, (3, 2), padding="same", activation="relu")(inp)]
    model_bytes = convert(tfk, keras.Model(inp, outs), 10)

    def dilate(model_t, schema):
        for op in model_t.subgraphs[0].operators:
            op.builtinOptions.dilationHFactor = 2
            op.builtinOptions.dilationWFactor = 3

    dilated = _edit(model_bytes, dilate)
    assert all(op.options["dilation_w_factor"] == 3 for op in read_model(dilated).ops)
    assert_same_as_tflm(dilated, int8_inputs(dilated, 10))


@pytest.mark.parametrize("per_channel", [False, True])
def test_fully_connected(tfk, per_channel):
    _, keras = tfk
    inp = keras.Input((24,), batch_size=1)
    hidden = keras.layers.Dense(17, activation="relu")(inp)
    out = keras.layers.Dense(5)(hidden)
    model_bytes = check_keras(tfk, keras.Model(inp, [out]), 3, {"FULLY_CONNECTED"},
                              per_channel_dense=per_channel)
    weights = [t for t in read_model(model_bytes).tensors if t.dtype == "int8" and t.is_constant]
    assert any(t.per_channel for t in weights) == per_channel


def test_fully_connected_on_sequence(tfk):
    _, keras = tfk
    inp = keras.Input((6, 10), batch_size=1)
    out = keras.layers.Dense(4, activation="relu6")(inp)  # FC over the last axis, 6 rows
    check_keras(tfk, keras.Model(inp, [out]), 4, {"FULLY_CONNECTED"})


def test_add_and_broadcast_add(tfk):
    tf, keras = tfk
    inp = keras.Input((9, 7, 6), batch_size=1)
    a = keras.layers.Conv2D(6, 3, padding="same")(inp)
    b = keras.layers.Conv2D(6, 1, activation="relu")(inp)
    added = keras.layers.Activation("relu")(keras.layers.Add()([a, b]))
    summed = keras.layers.Add()([inp, added])
    pooled = keras.layers.Lambda(lambda t: tf.reduce_mean(t, axis=[1, 2], keepdims=True))(a)
    broadcast = keras.layers.Lambda(lambda t: t[0] + t[1])([b, pooled])
    check_keras(tfk, keras.Model(inp, [summed, broadcast]), 5, {"ADD", "MEAN"})


@pytest.mark.parametrize("seed", [0, 1])
def test_pooling_sweep(tfk, seed):
    _, keras = tfk
    rng = np.random.default_rng(300 + seed)
    h, w, c = (int(v) for v in rng.integers([6, 6, 1], [16, 16, 6]))
    inp = keras.Input((h, w, c), batch_size=1)
    act = keras.layers.Conv2D(c, 1)(inp)  # a realistic, non-input scale to pool
    branches = []
    for layer in (keras.layers.AveragePooling2D, keras.layers.MaxPooling2D) * 3:
        pool = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        strides = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        branches.append(layer(pool, strides=strides,
                              padding=str(rng.choice(["same", "valid"])))(act))
    check_keras(tfk, keras.Model(inp, branches), seed, {"AVERAGE_POOL_2D", "MAX_POOL_2D"})


def test_mean_over_axes(tfk):
    tf, keras = tfk
    inp = keras.Input((7, 5, 6), batch_size=1)
    act = keras.layers.Conv2D(6, 1, activation="relu")(inp)
    outs = [keras.layers.GlobalAveragePooling2D()(act),
            keras.layers.GlobalAveragePooling2D(keepdims=True)(act)]
    for axes, keep in (([1], False), ([3], True), ([2, 3], False), ([1, 2, 3], True)):
        outs.append(keras.layers.Lambda(
            lambda t, axes=axes, keep=keep: tf.reduce_mean(t, axis=axes, keepdims=keep))(act))
    check_keras(tfk, keras.Model(inp, outs), 6, {"MEAN"})


def test_pad_reshape_concatenation(tfk):
    _, keras = tfk
    inp = keras.Input((6, 5, 3), batch_size=1)
    padded = keras.layers.ZeroPadding2D(((1, 2), (0, 3)))(inp)
    conv = keras.layers.Conv2D(4, 3, activation="relu")(padded)
    other = keras.layers.Conv2D(2, 3)(padded)
    joined = keras.layers.Concatenate()([conv, other])  # different scales: requantized inputs
    flat = keras.layers.Flatten()(joined)
    reshaped = keras.layers.Reshape((-1, 6))(joined)
    check_keras(tfk, keras.Model(inp, [flat, reshaped]), 7,
                {"PAD", "CONCATENATION", "RESHAPE"})


@pytest.mark.parametrize("units", [2, 10, 37])
def test_softmax(tfk, units):
    _, keras = tfk
    inp = keras.Input((12,), batch_size=1)
    logits = keras.layers.Dense(units)(inp)
    wide = keras.layers.Dense(units)(keras.layers.Lambda(lambda t: t * 8.0)(inp))
    outs = [keras.layers.Softmax()(logits), keras.layers.Softmax()(wide)]
    check_keras(tfk, keras.Model(inp, outs), 8 + units, {"SOFTMAX"})


def test_float_io_quantize_dequantize(tfk):
    _, keras = tfk
    inp = keras.Input((5, 5, 2), batch_size=1)
    out = keras.layers.Conv2D(3, 3, activation="relu")(inp)
    model_bytes = convert(tfk, keras.Model(inp, [out]), 9, float_io=True)
    kinds = [op.kind for op in read_model(model_bytes).ops]
    assert kinds[0] == "QUANTIZE" and kinds[-1] == "DEQUANTIZE"
    rng = np.random.default_rng(9)
    inputs = [rng.normal(0, s, size=(1, 5, 5, 2)).astype(np.float32) for s in (0.5, 1, 4)]
    inputs.append(np.array([[-1.5, 1.5], [2.5, -2.5]] * 12 + [[0, 0]], np.float32)
                  .reshape(1, 5, 5, 2) * read_model(model_bytes).tensors[
                      read_model(model_bytes).ops[0].outputs[0]].scale[0])  # exact halves
    assert_same_as_tflm(model_bytes, inputs)


def test_relu_n1_to_1_and_int8_requantize(tfk):
    tf, keras = tfk
    inp = keras.Input((12,), batch_size=1)
    probs = keras.layers.Softmax()(keras.layers.Dense(5)(inp))
    # softmax's fixed 1/256 scale differs from the input's: a QUANTIZE int8 -> int8 requantizes
    joined = keras.layers.Concatenate()([inp, probs])
    clipped = keras.layers.Lambda(lambda t: tf.clip_by_value(t, -1.0, 1.0))(
        keras.layers.Dense(7)(inp))
    model_bytes = check_keras(tfk, keras.Model(inp, [joined, clipped]), 11,
                              {"QUANTIZE", "CONCATENATION", "SOFTMAX"})
    model = read_model(model_bytes)
    assert any(op.options.get("fused_activation_function") == "RELU_N1_TO_1"
               for op in model.ops)
    assert any(op.kind == "QUANTIZE" and model.tensors[op.inputs[0]].dtype == "int8"
               for op in model.ops)


def _to_int4(model_t, schema):
    """Turn every int8 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED weight tensor into INT4:
    values rescaled into [-8, 7] (scale x 127/7), packed two per byte; the bias scale follows."""
    from edgeq.intmath import pack_int4

    graph = model_t.subgraphs[0]
    factor = np.float32(127.0 / 7.0)
    for op in graph.operators:
        name = [k for k, v in vars(schema.BuiltinOperator).items()
                if v == model_t.operatorCodes[op.opcodeIndex].builtinCode][0]
        if name not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        weights = graph.tensors[op.inputs[1]]
        buffer = model_t.buffers[weights.buffer]
        values = np.asarray(buffer.data, dtype=np.uint8).view(np.int8).astype(np.float64)
        quantized = np.clip(np.round(values / float(factor)), -8, 7).astype(np.int8)
        buffer.data = pack_int4(quantized)
        weights.type = schema.TensorType.INT4
        weights.quantization.scale = (np.asarray(weights.quantization.scale, np.float32)
                                      * factor).astype(np.float32)
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            bias_q = graph.tensors[op.inputs[2]].quantization
            bias_q.scale = (np.asarray(bias_q.scale, np.float32) * factor).astype(np.float32)


def test_int4_weights_match_tflm(tfk):
    """INT4 weights (per channel for convolutions, per tensor for FULLY_CONNECTED, as TFLM
    accepts them) give TFLM's results too."""
    _, keras = tfk
    inp = keras.Input((9, 8, 3), batch_size=1)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu")(inp)
    x = keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    out = keras.layers.Dense(4)(keras.layers.Flatten()(x))
    model_bytes = _edit(convert(tfk, keras.Model(inp, [out]), 12, per_channel_dense=False),
                        _to_int4)
    model = read_model(model_bytes)
    int4 = [t for t in model.tensors if t.dtype == "int4"]
    assert len(int4) == 3 and all(t.data.min() >= -8 and t.data.max() <= 7 for t in int4)
    assert_same_as_tflm(model_bytes, int8_inputs(model_bytes, 12))


# ---------------------------------------------------------------------------------------------
# What the interpreter refuses, like TFLM's Prepare does (hand-made models, no TensorFlow).


def _q(name, shape, scale=0.05, zero_point=0, dtype="int8", data=None):
    from edgeq.tflite.model import Tensor

    return Tensor(name=name, shape=shape, dtype=dtype, scale=np.array([scale], np.float32),
                  zero_point=np.array([zero_point], np.int64), data=data)


def _single_op(kind, tensors, inputs, options=None):
    from edgeq.tflite.model import Model, Op

    out = len(tensors) - 1
    return Model(tensors=tensors, ops=[Op(kind, inputs, [out], options or {})],
                 inputs=[i for i in inputs if tensors[i].data is None], outputs=[out])


def test_concatenation_with_different_scales_is_rejected():
    model = _single_op("CONCATENATION", [_q("a", (1, 4), 0.1), _q("b", (1, 4), 0.2),
                                         _q("out", (1, 8), 0.2)], [0, 1], {"axis": 1})
    from edgeq.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="operator 0 \\(CONCATENATION\\).*rescale"):
        Interpreter(model)


def test_softmax_output_must_be_1_over_256():
    from edgeq.errors import UnsupportedOpError

    model = _single_op("SOFTMAX", [_q("x", (1, 4)), _q("y", (1, 4), 0.1, -128)], [0],
                       {"beta": 1.0})
    with pytest.raises(UnsupportedOpError, match="1/256"):
        Interpreter(model)


def test_unknown_op_and_wrong_types_are_named():
    from edgeq.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match="operator 0 is SQUARED_DIFFERENCE"):
        Interpreter(_single_op("SQUARED_DIFFERENCE", [_q("x", (1, 4)), _q("y", (1, 4))], [0, 0]))
    weights = _q("w", (2, 4), dtype="float32", data=np.zeros((2, 4), np.float32))
    model = _single_op("FULLY_CONNECTED", [_q("x", (1, 4)), weights, _q("y", (1, 2))], [0, 1])
    with pytest.raises(UnsupportedOpError, match="weights 'w' is float32"):
        Interpreter(model)


def test_wrong_number_of_inputs():
    model = _single_op("RESHAPE", [_q("x", (1, 4)), _q("y", (2, 2))], [0])
    assert run(model, np.arange(4, dtype=np.int8).reshape(1, 4))[0].shape == (2, 2)
    with pytest.raises(DataError, match="1 inputs, got 2"):
        Interpreter(model).invoke([np.zeros((1, 4), np.int8)] * 2)


def test_softmax_beta_rows_and_batch(tfk):
    """SOFTMAX over rows of a 4-D tensor, batch 2, and betas (set in the file) that exercise
    PreprocessSoftmaxScaling's cap and diff_min."""
    _, keras = tfk
    inp = keras.Input((3, 4, 5), batch_size=2)
    act = keras.layers.Conv2D(6, 1)(inp)
    outs = [keras.layers.Softmax()(act), keras.layers.Softmax()(keras.layers.Conv2D(9, 2)(inp))]
    model_bytes = convert(tfk, keras.Model(inp, outs), 13)
    for beta in (1.0, 0.3, 7.5, 5000.0):
        def set_beta(model_t, schema, beta=beta):
            for op in model_t.subgraphs[0].operators:
                if isinstance(op.builtinOptions, schema.SoftmaxOptionsT):
                    op.builtinOptions.beta = beta

        edited = _edit(model_bytes, set_beta)
        assert [op.options["beta"] for op in read_model(edited).ops if op.kind == "SOFTMAX"] \
            == [pytest.approx(beta)] * 2
        assert_same_as_tflm(edited, int8_inputs(edited, 13, count=2))


def test_add_with_constant_operand(tfk):
    tf, keras = tfk
    inp = keras.Input((4, 5, 3), batch_size=1)
    act = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(3, 1)(inp))  # no bias to fold into
    bias = np.linspace(-2.0, 3.0, 3).astype(np.float32)
    shifted = keras.layers.Lambda(lambda t: t + tf.constant(bias))(act)
    model_bytes = check_keras(tfk, keras.Model(inp, [shifted]), 14, {"ADD"})
    model = read_model(model_bytes)
    add = next(op for op in model.ops if op.kind == "ADD")
    assert any(model.tensors[i].is_constant for i in add.inputs)


def test_fully_connected_multiplier_is_the_double_product(tfk):
    """Per-tensor FULLY_CONNECTED: TFLM's source reads as if s_in * s_w were multiplied in
    float32 before the division by s_out, but tflite_micro computes the double product (as for
    convolutions). These scales and this accumulator are one of the rare cases where the two
    differ: float32 would give -39, TFLM gives -40."""
    _, keras = tfk
    inp = keras.Input((4,), batch_size=1)
    dense = keras.layers.Dense(2, bias_initializer="ones")  # a zero bias would be dropped
    model_bytes = convert(tfk, keras.Model(inp, [dense(inp)]), 15, per_channel_dense=False)
    s_in, s_w, s_out = np.float32(0.030472865), np.float32(0.009554173), np.float32(8.603991)

    def set_scales(model_t, schema):
        graph = model_t.subgraphs[0]
        fc = graph.operators[0]
        x, w, b = (graph.tensors[i] for i in fc.inputs)
        out = graph.tensors[fc.outputs[0]]
        for tensor, scale in ((x, s_in), (w, s_w), (b, s_in * s_w), (out, s_out)):
            tensor.quantization.scale = np.array([scale], np.float32)
            tensor.quantization.zeroPoint = np.array([0], np.int64)
        model_t.buffers[w.buffer].data = np.zeros(8, np.uint8)  # acc = bias exactly
        model_t.buffers[b.buffer].data = np.array([-1167321, 1167321], "<i4").view(np.uint8)

    edited = _edit(model_bytes, set_scales)
    assert read_model(edited).ops[0].kind == "FULLY_CONNECTED"
    x = np.zeros((1, 4), np.int8)
    np.testing.assert_array_equal(run(read_model(edited), x)[0], [[-40, 40]])
    assert_same_as_tflm(edited, [x])


def test_grouped_conv(tfk):
    _, keras = tfk
    inp = keras.Input((7, 6, 4), batch_size=1)
    outs = [keras.layers.Conv2D(6, 3, groups=2, padding="same", activation="relu")(inp),
            keras.layers.Conv2D(8, (1, 2), groups=4, strides=2)(inp)]
    model_bytes = check_keras(tfk, keras.Model(inp, outs), 16, {"CONV_2D"})
    model = read_model(model_bytes)
    assert {model.tensors[op.inputs[1]].shape[3] for op in model.ops} == {1, 2}  # grouped
