"""The layers of issue #14 through every path, on tiny Keras models (seeded weights, BN
statistics from the calibration inputs): the folded graph in float equals Keras; min-max W8
and W4 exports, the exact simulation, edgeq's interpreter and TFLM give identical int8
outputs; LiteRT is within 1 LSB; the C engine on the host (ASan/UBSan) equals TFLM; and a
layer edgeq cannot express is named, with the list of what is supported."""

from __future__ import annotations

import collections

import kerasmodels
import numpy as np
import pytest

from edgeq.deploy import cgen
from edgeq.deploy.interp import Interpreter, quantize_input
from edgeq.errors import UnsupportedLayerError
from edgeq.learn.export import quantize_minmax, to_tflite_model
from edgeq.learn.graph import capture
from edgeq.learn.quant.sim import simulate
from edgeq.tflite.write import write_model

SAMPLES = 24


def _separable(layers, keras):
    """SeparableConv2D (depth multiplier 2, strides 2, VALID), LeakyReLU, GlobalMaxPooling2D,
    a Dense with sigmoid."""
    inp = keras.Input((12, 10, 3))
    h = layers.SeparableConv2D(8, 3, padding="same", depth_multiplier=2, activation="relu")(inp)
    h = layers.SeparableConv2D(6, 3, strides=2, padding="valid")(h)
    h = layers.BatchNormalization()(h)
    h = layers.LeakyReLU(0.1)(h)
    h = layers.GlobalMaxPooling2D()(h)
    return keras.Model(inp, layers.Dense(3, activation="sigmoid")(h), name="separable")


def _squeeze_excite(layers, keras):
    """hard_swish, an SE block (GAP keepdims, Conv+ReLU, Conv, Keras 3's hard_sigmoid as
    operations, Multiply by the per-channel vector), tanh, GlobalMaxPooling2D keepdims."""
    inp = keras.Input((8, 8, 6))
    h = layers.Conv2D(8, 3, padding="same", use_bias=False)(inp)
    h = layers.Activation("hard_swish")(layers.BatchNormalization()(h))
    s = layers.GlobalAveragePooling2D(keepdims=True)(h)
    s = layers.Conv2D(4, 1, activation="relu")(s)
    s = layers.Conv2D(8, 1)(s)
    s = layers.ReLU(6.0)(s + 3.0) * (1.0 / 6.0)
    h = layers.Multiply()([h, s])
    h = layers.Activation("tanh")(layers.Conv2D(4, 1)(h))
    h = layers.GlobalMaxPooling2D(keepdims=True)(h)
    out = layers.Activation("softmax")(layers.Flatten()(layers.Conv2D(3, 1)(h)))
    return keras.Model(inp, out, name="squeeze_excite")


def _relu_variants(layers, keras):
    """Rescaling, ReLU(max_value=3), PReLU with one shared slope, ReLU(negative_slope),
    Activation('hard_sigmoid') after an Add (no conv to fold into), Multiply of two maps."""
    inp = keras.Input((6, 6, 4))
    h = layers.Rescaling(1 / 127.5, offset=-1.0)(inp)
    h = layers.ReLU(max_value=3.0)(layers.Conv2D(8, 3, padding="same")(h))
    h = layers.DepthwiseConv2D(3, padding="same")(h)
    h = layers.PReLU(alpha_initializer=keras.initializers.Constant(0.25),
                     shared_axes=[1, 2, 3])(h)
    a = layers.ReLU(negative_slope=0.1)(layers.Conv2D(8, 1)(h))
    b = layers.Conv2D(8, 1)(h)
    g = layers.Activation("hard_sigmoid")(layers.Add()([a, b]))
    h = layers.Multiply()([a, g])
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(2, activation="softmax")(h), name="relu_variants")


def _unet_ops(layers, keras):
    """Subtract, Maximum, Minimum, UpSampling2D, Conv2DTranspose (k3 s2 SAME with ReLU; k2 s2
    VALID without bias; k3 s1 SAME) and a skip Concatenate, as a tiny U-Net's decoder."""
    inp = keras.Input((12, 12, 3))
    a = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    d = layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2, padding="same")(a))
    b = layers.Conv2D(8, 1)(d)
    low = layers.Maximum()([layers.Subtract()([d, b]), b])
    up = layers.UpSampling2D()(low)
    t = layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu")(
        layers.Minimum()([d, b]))
    t = layers.Conv2DTranspose(6, 2, strides=2, padding="valid", use_bias=False)(
        layers.Conv2D(8, 1, strides=2)(t))
    t = layers.Conv2DTranspose(8, 3, padding="same")(t)
    h = layers.Conv2D(4, 1)(layers.Concatenate()([a, up, t]))
    h = layers.GlobalAveragePooling2D()(h)
    return keras.Model(inp, layers.Dense(3, activation="softmax")(h), name="unet_ops")


def _zero_padding(layers, keras):
    """ZeroPadding2D before VALID convs, exactly SAME (folded): (1, 1) at an odd size before a
    stride-2 conv, (2, 2) before a dilated depthwise, MobileNetV2's correct_pad (0, 1) at an
    even size before a stride-2 depthwise; not SAME (kept as PAD): before a pool, and a
    one-sided (1, 0) before a stride-2 conv."""
    inp = keras.Input((13, 13, 3))
    h = layers.Conv2D(8, 1, activation="relu6")(inp)
    h = layers.ZeroPadding2D(1, name="odd_pad")(h)
    h = layers.Conv2D(8, 3, strides=2, activation="relu", name="odd_conv")(h)  # 7x7
    h = layers.ZeroPadding2D(2, name="dilated_pad")(h)
    h = layers.DepthwiseConv2D(3, dilation_rate=2, activation="relu6", name="dilated_dw")(h)
    h = layers.ZeroPadding2D(((0, 1), (0, 1)), name="pool_pad")(h)
    h = layers.Conv2D(16, 1, activation="relu6")(layers.MaxPooling2D(2)(h))  # 4x4
    a = layers.ZeroPadding2D(((0, 1), (0, 1)), name="even_pad")(h)
    a = layers.DepthwiseConv2D(3, strides=2, activation="relu6", name="even_dw")(a)  # 2x2
    b = layers.ZeroPadding2D(((1, 0), (1, 0)), name="left_pad")(h)
    b = layers.Conv2D(16, 3, strides=2, activation="relu", name="left_conv")(b)
    # the output is the map itself, so that every border value is compared
    return keras.Model(inp, layers.Add()([a, b]), name="zero_padding")


MODELS = {"separable": _separable, "squeeze_excite": _squeeze_excite,
          "relu_variants": _relu_variants, "unet_ops": _unet_ops,
          "zero_padding": _zero_padding}


def _build(name: str, version: int):
    if version == 3:
        import keras
        from keras import layers
    else:
        import tf_keras as keras
        from tf_keras import layers
    keras.utils.set_random_seed(0)
    model = MODELS[name](layers, keras)
    shape = model.inputs[0].shape[1:]
    rng = np.random.default_rng(0)
    scale = 255.0 if name == "relu_variants" else 1.0
    x = (rng.uniform(-1, 1, size=(SAMPLES, *shape)) * scale).astype(np.float32)
    if name == "relu_variants":
        x = np.abs(x)
    if version == 3:
        kerasmodels.set_bn_statistics(model, x)
    return model, x


def _tflm(data: bytes, xs: np.ndarray) -> np.ndarray:
    from tflite_micro.python.tflite_micro import runtime

    interpreter = runtime.Interpreter.from_bytes(data, arena_size=512 * 1024)
    outs = []
    for x in xs:
        interpreter.set_input(x[None], 0)
        interpreter.invoke()
        outs.append(interpreter.get_output(0).copy())
    return np.concatenate(outs)


def _litert(data: bytes, xs: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter as LiteRT
    from ai_edge_litert.interpreter import OpResolverType

    interpreter = LiteRT(model_content=data, experimental_op_resolver_type=(
        OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES))
    interpreter.allocate_tensors()
    outs = []
    for x in xs:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x[None])
        interpreter.invoke()
        outs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return np.concatenate(outs)


EXPECTED_OPS = {  # TFLite ops each model must use (the layers under test)
    "separable": {"DEPTHWISE_CONV_2D", "CONV_2D", "LEAKY_RELU", "MAX_POOL_2D", "LOGISTIC"},
    "squeeze_excite": {"HARD_SWISH", "MUL", "MEAN", "TANH", "MAX_POOL_2D", "SOFTMAX"},
    "relu_variants": {"LEAKY_RELU", "MUL", "DEPTHWISE_CONV_2D"},
    "unet_ops": {"SUB", "MAXIMUM", "MINIMUM", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE_CONV",
                 "CONCATENATION"},
    "zero_padding": {"PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "MAX_POOL_2D"},
}


# tf_keras (Keras 2) has no hard_swish and writes `x + 3.0` as a TFOpLambda: SE is Keras 3's
CASES = [(name, 3) for name in sorted(MODELS)] + [("separable", 2), ("relu_variants", 2),
                                                  ("unet_ops", 2), ("zero_padding", 2)]


@pytest.mark.parametrize("name, version", CASES, ids=[f"{n}-keras{v}" for n, v in CASES])
def test_layers_through_every_path(name, version, tmp_path):
    model, x = _build(name, version)
    graph = capture(model)
    np.testing.assert_allclose(graph.run_float(x), np.asarray(model(x)), rtol=1e-4, atol=1e-4)
    for bits in (8, 4):
        qgraph = quantize_minmax(graph, x, bits)
        tflite = to_tflite_model(qgraph)
        kinds = collections.Counter(op.kind for op in tflite.ops)
        assert EXPECTED_OPS[name] <= set(kinds), kinds
        data = write_model(tflite)
        xq = quantize_input(tflite.input_tensors[0], x)
        expected = _tflm(data, xq)
        where = f"{name} Keras {version} W{bits}"
        assert len(np.unique(expected)) > 4, f"{where}: outputs {np.unique(expected)}"
        np.testing.assert_array_equal(simulate(qgraph, x, integer=True), expected, where)
        interpreter = Interpreter(tflite)
        got = np.concatenate([interpreter.invoke(s[None])[0] for s in xq])
        np.testing.assert_array_equal(got, expected, where)
        lite = _litert(data, xq)
        assert np.abs(lite.astype(int) - expected.astype(int)).max() <= 1, where
        if version == 3:  # the C engine once per model and width
            engine = cgen.generate_engine(tflite, tmp_path / f"engine{bits}")
            exe = cgen.build_host_runner(engine)
            host = cgen.run_host(exe, xq.reshape(len(xq), -1), expected[0].size)
            np.testing.assert_array_equal(host, expected.reshape(len(xq), -1), where)


@pytest.mark.parametrize("version", [3, 2])
def test_zero_padding_folds_into_a_conv_only_when_it_is_same(version, monkeypatch):
    """The three SAME ZeroPadding2D become their conv's SAME padding, the other two stay PAD;
    the folded export gives the integers of the unfolded one (PADs kept) in TFLM, at W8 and
    W4, and its simulation equals TFLM."""
    from edgeq.learn import graph as graph_module

    model, x = _build("zero_padding", version)
    graph = capture(model)
    assert sorted(n.name for n in graph.nodes if n.kind == "pad") == ["left_pad", "pool_pad"]
    padding = {n.name: n.attrs.get("padding") for n in graph.weighted_nodes}
    assert {k: padding[k] for k in ("odd_conv", "dilated_dw", "even_dw", "left_conv")} == {
        "odd_conv": "SAME", "dilated_dw": "SAME", "even_dw": "SAME", "left_conv": "VALID"}
    monkeypatch.setattr(graph_module, "PASSES", tuple(
        p for p in graph_module.PASSES if p is not graph_module.fold_zero_padding))
    unfolded = capture(model)
    assert sum(n.kind == "pad" for n in unfolded.nodes) == 5
    for bits in (8, 4):
        qgraph, plain = quantize_minmax(graph, x, bits), quantize_minmax(unfolded, x, bits)
        folded_tfl, plain_tfl = to_tflite_model(qgraph), to_tflite_model(plain)
        assert [op.kind for op in plain_tfl.ops].count("PAD") == 5
        assert [op.kind for op in folded_tfl.ops].count("PAD") == 2
        xq = quantize_input(folded_tfl.input_tensors[0], x)
        expected = _tflm(write_model(plain_tfl), xq)
        assert len(np.unique(expected)) > 4
        np.testing.assert_array_equal(_tflm(write_model(folded_tfl), xq), expected)
        np.testing.assert_array_equal(simulate(qgraph, x, integer=True), expected)


def test_hard_sigmoid_after_a_conv_writes_no_op():
    """Keras 3's hard_sigmoid, relu6(x + 3) * (1/6), after a conv: the +3 and the 1/6 fold into
    the conv, the ReLU fuses, and the clip at 1 is the conv's int8 range [0, 1]."""
    model, x = _build("squeeze_excite", 3)
    graph = capture(model)
    clips = [n for n in graph.nodes if n.kind == "clip"]
    assert [(n.attrs["lo"], n.attrs["hi"]) for n in clips] == [(0.0, 1.0)]
    producer = graph.node(clips[0].inputs[0])
    assert producer.kind == "conv2d" and producer.attrs["activation"] == "RELU"
    qgraph = quantize_minmax(graph, x, 8)
    scale, zero_point = qgraph.act[producer.name]
    assert zero_point == -128 and float(scale) * 255 == pytest.approx(1.0, rel=1e-6)
    tflite = to_tflite_model(qgraph)
    assert "LOGISTIC" not in {op.kind for op in tflite.ops}
    assert sum(op.kind == "CONV_2D" for op in tflite.ops) == 5  # no op for the hard_sigmoid


@pytest.mark.parametrize("layer, what", [
    ("threshold", "threshold=0.5"),
    ("prelu", "a slope per element or channel"),
    ("leaky_max", "negative_slope together with max_value"),
    ("swish", "activation 'silu'"),
])
def test_unsupported_layers_are_named_with_what_is_supported(layer, what):
    import keras
    from keras import layers

    inp = keras.Input((4, 4, 3))
    h = layers.Conv2D(4, 1)(inp)
    make = {"threshold": lambda: layers.ReLU(threshold=0.5),
            "prelu": lambda: layers.PReLU(alpha_initializer="random_uniform"),
            "leaky_max": lambda: layers.ReLU(max_value=2.0, negative_slope=0.1),
            "swish": lambda: layers.Activation("silu")}[layer]
    bad = make()
    model = keras.Model(inp, bad(h))
    with pytest.raises(UnsupportedLayerError) as err:
        capture(model)
    text = str(err.value) + " " + err.value.hint
    assert bad.name in text and what in text
    assert "SeparableConv2D" in text and "GlobalMaxPooling2D" in text


def test_keras3_export_savedmodel_says_how_to_save_instead(tmp_path):
    """A Keras 3 `model.export()` folder (serving function only): a clear error naming
    model.save('model.keras')."""
    import keras

    from edgeq.errors import ModelLoadError
    from edgeq.learn.modelio import load_keras_model

    inp = keras.Input((4, 4, 3))
    model = keras.Model(inp, keras.layers.Conv2D(2, 1)(inp))
    model.export(str(tmp_path / "exported"), verbose=False)
    with pytest.raises(ModelLoadError) as err:
        load_keras_model(tmp_path / "exported")
    text = str(err.value) + " " + err.value.hint
    assert "model.export()" in text and "model.save('model.keras')" in text


def test_keras3_operations_of_two_tensors():
    """Keras 3's `a - b`, `ops.maximum(a, b)` and `ops.minimum(a, b)` of two tensors become
    SUB, MAXIMUM and MINIMUM; float graph == Keras, simulation == TFLM at W8."""
    import keras
    from keras import layers, ops

    keras.utils.set_random_seed(0)
    inp = keras.Input((6, 6, 3))
    a, b = layers.Conv2D(4, 3, padding="same")(inp), layers.Conv2D(4, 1)(inp)
    h = ops.minimum(ops.maximum(a - b, b), a)
    model = keras.Model(inp, layers.Dense(3, activation="softmax")(
        layers.GlobalAveragePooling2D()(h)))
    x = np.random.default_rng(0).uniform(-1, 1, (SAMPLES, 6, 6, 3)).astype(np.float32)
    graph = capture(model)
    assert {"sub", "maximum", "minimum"} <= {n.kind for n in graph.nodes}
    np.testing.assert_allclose(graph.run_float(x), np.asarray(model(x)), rtol=1e-4, atol=1e-4)
    qgraph = quantize_minmax(graph, x, 8)
    tflite = to_tflite_model(qgraph)
    assert {"SUB", "MAXIMUM", "MINIMUM"} <= {op.kind for op in tflite.ops}
    expected = _tflm(write_model(tflite), quantize_input(tflite.input_tensors[0], x))
    np.testing.assert_array_equal(simulate(qgraph, x, integer=True), expected)


def test_brecq_at_4_bits_keeps_conv2d_transpose_8_bit_and_exact():
    """`--bits 4`'s default method (BRECQ) on the U-Net layers: the Conv2DTranspose layers
    stay 8-bit (TFLM has no INT4 TRANSPOSE_CONV), the others get 4, and the reconstructed
    model's simulation equals TFLM."""
    from edgeq.learn.quantize import quantize

    model, x = _build("unet_ops", 3)
    qgraph, _ = quantize(model, x, method="brecq", bits=4, iters=20, act_iters=5,
                         progress=False)
    kinds = {n.name: n.kind for n in qgraph.graph.weighted_nodes}
    assert {qgraph.plan[n] for n, k in kinds.items() if k == "conv2d_transpose"} == {8}
    assert 4 in qgraph.plan.values()
    tflite = to_tflite_model(qgraph)
    expected = _tflm(write_model(tflite), quantize_input(tflite.input_tensors[0], x))
    np.testing.assert_array_equal(simulate(qgraph, x, integer=True), expected)
