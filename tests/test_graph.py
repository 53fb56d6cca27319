"""Graph capture: folding and fusion passes, Keras 2 vs Keras 3, blocks, errors."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.errors import UnsupportedLayerError
from edgeq.learn.graph import (
    PASSES,
    Graph,
    Node,
    capture,
    fold_batchnorm,
    fuse_activations,
    validate,
    validate_node,
)


def _randomize_bn(model, seed=0):
    """Non-trivial BN statistics so that folding is really tested."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            n = len(gamma)
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.2, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 2.0, n)])


def every_layer_case(calib_samples: int):
    """(captured every-layer model with realistic BN statistics, calibration inputs, 200 test
    inputs), seeded: the small model the quantization tests share."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = _every_layer_model(tf_keras)
    _randomize_bn(model, seed=3)
    rng = np.random.default_rng(4)
    calib = rng.normal(0.5, 0.5, (calib_samples, 12, 12, 3)).astype(np.float32)
    test = rng.normal(0.5, 0.5, (200, 12, 12, 3)).astype(np.float32)
    return capture(model), calib, test


def _every_layer_model(k):
    """A small functional model using every supported layer kind (k = tf_keras or keras)."""
    L = k.layers
    inputs = k.Input((12, 12, 3))
    x = L.BatchNormalization(name="bn_in")(inputs)  # standalone BN → 1x1 depthwise
    x = L.ZeroPadding2D(((1, 0), (0, 1)), name="pad")(x)
    x = L.Conv2D(8, 3, strides=2, padding="same", name="conv")(x)
    x = L.BatchNormalization()(x)
    x = L.ReLU()(x)
    fork = x
    y = L.DepthwiseConv2D(3, padding="same", use_bias=False, name="dw")(fork)
    y = L.BatchNormalization()(y)
    y = L.ReLU(max_value=6.0)(y)
    y = L.Conv2D(8, 1, use_bias=False, name="pw")(y)
    y = L.BatchNormalization()(y)
    x = L.Add(name="add")([fork, y])
    x = L.Activation("relu")(x)
    a = L.MaxPooling2D(2, padding="same")(x)
    b = L.AveragePooling2D(2, padding="same")(x)
    x = L.Concatenate()([a, b])
    x = L.Conv2D(12, 3, padding="valid", activation="relu", name="conv3")(x)
    g = L.GlobalAveragePooling2D()(x)
    g = L.Dropout(0.5)(g)
    f = L.Flatten()(x)
    f = L.Dense(6)(f)
    f = L.BatchNormalization()(f)
    x = L.Concatenate()([g, f])
    x = L.Activation("linear")(x)
    outputs = L.Dense(4, activation="softmax", name="head")(x)
    return k.Model(inputs, outputs, name="every_layer")


@pytest.fixture(scope="module")
def keras2_model():
    import tf_keras

    tf_keras.utils.set_random_seed(1)
    model = _every_layer_model(tf_keras)
    _randomize_bn(model)
    return model


@pytest.fixture(scope="module")
def sample():
    return np.random.default_rng(2).normal(0.5, 0.5, (8, 12, 12, 3)).astype(np.float32)


def test_folded_graph_matches_keras(keras2_model, sample):
    graph = capture(keras2_model)
    kinds = [n.kind for n in graph.nodes]
    assert not {"batch_norm", "relu", "identity"} & set(kinds)
    # 5 BNs: 4 fold into the conv/depthwise/dense before them; the one on the input stands
    # alone and becomes a 1x1 depthwise conv.
    assert kinds.count("depthwise_conv2d") == 2 and kinds.count("dense") == 2
    assert kinds.count("softmax") == 1 and graph.outputs == ["head/softmax"]
    expected = keras2_model(sample, training=False).numpy()
    got = graph.run_float(sample)
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_activations_fused_into_producers(keras2_model):
    graph = capture(keras2_model)
    acts = {n.name: n.attrs.get("activation") for n in graph.nodes}
    assert acts["conv"] == "RELU" and acts["dw"] == "RELU6" and acts["pw"] == "NONE"
    assert acts["add"] == "RELU" and acts["conv3"] == "RELU"
    assert graph.node("bn_in").kind == "depthwise_conv2d"
    pad = graph.node("pad")
    assert pad.kind == "pad" and pad.attrs["paddings"] == ((1, 0), (0, 1))


def test_blocks_cover_every_weighted_node_once(keras2_model):
    graph = capture(keras2_model)
    residual = [b for b in graph.blocks if b.kind == "residual"]
    assert len(residual) == 1
    assert residual[0].nodes == ["dw", "pw", "add"]
    members = [n for b in graph.blocks for n in b.nodes if graph.node(n).weights]
    assert sorted(members) == sorted(n.name for n in graph.weighted_nodes)


def test_depthwise_pointwise_pair_is_a_block():
    import tf_keras as k

    inputs = k.Input((8, 8, 4))
    x = k.layers.DepthwiseConv2D(3, padding="same", name="dw")(inputs)
    x = k.layers.Conv2D(6, 1, name="pw")(x)
    x = k.layers.Conv2D(6, 3, name="c3")(x)
    graph = capture(k.Model(inputs, x))
    assert [(b.kind, b.nodes) for b in graph.blocks] == [("dw_pw", ["dw", "pw"]),
                                                           ("single", ["c3"])]


def test_keras3_model_captures_identically(keras2_model, sample):
    import keras

    model3 = _every_layer_model(keras)
    for l2, l3 in zip(keras2_model.layers, model3.layers, strict=True):
        l3.set_weights(l2.get_weights())
    g2, g3 = capture(keras2_model), capture(model3)
    assert [n.kind for n in g2.nodes] == [n.kind for n in g3.nodes]
    for n2, n3 in zip(g2.nodes, g3.nodes, strict=True):
        assert n2.attrs.keys() == n3.attrs.keys() and n2.output_shape == n3.output_shape
        assert n2.attrs == n3.attrs
        for key, w in n2.weights.items():
            np.testing.assert_array_equal(w, n3.weights[key])
    assert [b.kind for b in g2.blocks] == [b.kind for b in g3.blocks]
    np.testing.assert_allclose(g3.run_float(sample), model3(sample).numpy(), atol=1e-4)


def test_sequential_model():
    import tf_keras as k

    model = k.Sequential([k.Input((6, 6, 2)), k.layers.Conv2D(3, 3, activation="relu"),
                          k.layers.Flatten(), k.layers.Dense(2)])
    graph = capture(model)
    assert [n.kind for n in graph.nodes] == ["input", "conv2d", "reshape", "dense"]
    x = np.random.default_rng(0).normal(size=(3, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(graph.run_float(x), model(x).numpy(), atol=1e-5)


def test_bn_not_folded_when_conv_output_is_shared():
    import tf_keras as k

    inputs = k.Input((6, 6, 2))
    c = k.layers.Conv2D(2, 1)(inputs)
    b = k.layers.BatchNormalization(name="bn")(c)
    x = k.layers.Add()([c, b])
    model = k.Model(inputs, x)
    _randomize_bn(model)
    graph = capture(model)
    assert graph.node("bn").kind == "depthwise_conv2d"
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 2)).astype(np.float32)
    np.testing.assert_allclose(graph.run_float(x), model(x).numpy(), atol=1e-5)


def _chain(*nodes):
    return Graph(list(nodes), [nodes[0].name], [nodes[-1].name])


def test_fold_batchnorm_pass_alone():
    rng = np.random.default_rng(0)
    kernel, bias = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=3)
    scale, offset = np.array([2.0, 0.5, 1.0]), np.array([0.1, 0.2, 0.3])
    graph = _chain(Node("in", "input", [], {}, {}, (2,)),
                   Node("fc", "dense", ["in"], {"activation": "NONE"},
                        {"kernel": kernel, "bias": bias}, (3,)),
                   Node("bn", "batch_norm", ["fc"], {"scale": scale, "offset": offset}, {}, (3,)))
    fold_batchnorm(graph)
    assert [n.name for n in graph.nodes] == ["in", "fc"] and graph.outputs == ["fc"]
    np.testing.assert_allclose(graph.node("fc").weights["kernel"], kernel * scale, rtol=1e-6)
    np.testing.assert_allclose(graph.node("fc").weights["bias"], bias * scale + offset,
                               rtol=1e-6)


def test_fuse_activations_pass_alone_and_its_error():
    conv = Node("c", "conv2d", ["in"], {"strides": (1, 1), "padding": "SAME", "dilation": (1, 1),
                                        "activation": "NONE"},
                {"kernel": np.ones((1, 1, 1, 1), np.float32), "bias": np.zeros(1, np.float32)},
                (4, 4, 1))
    graph = _chain(Node("in", "input", [], {}, {}, (4, 4, 1)), conv,
                   Node("r", "relu", ["c"], {"max_value": 6.0}, {}, (4, 4, 1)))
    fuse_activations(graph)
    assert graph.node("c").attrs["activation"] == "RELU6" and graph.outputs == ["c"]
    validate(graph)
    bad = _chain(Node("in", "input", [], {}, {}, (4, 4, 1)),
                 Node("r", "relu", ["in"], {"max_value": None}, {}, (4, 4, 1)))
    with pytest.raises(UnsupportedLayerError, match="'r' follows 'in'"):
        fuse_activations(bad)


def test_passes_run_in_a_fixed_order():
    assert [p.__name__ for p in PASSES] == ["drop_identities", "affines_before_relu",
                                            "merge_affines", "fold_batchnorm",
                                            "batchnorm_to_depthwise", "fuse_activations",
                                            "fold_zero_padding", "check_supported"]


def test_node_attributes_are_validated():
    node = Node("p", "max_pool", ["in"], {"pool_size": (2, 2), "strides": (2, 2),
                                          "padding": "FULL", "activation": "NONE"}, {}, (2, 2, 1))
    with pytest.raises(UnsupportedLayerError, match="padding='FULL'"):
        validate_node(node)
    node.attrs = {"pool_size": (2, 2)}
    with pytest.raises(UnsupportedLayerError, match="expected"):
        validate_node(node)


@pytest.mark.parametrize("make_layer, cls", [
    (lambda L: L.ReLU(threshold=0.5), "ReLU"),
    (lambda L: L.Conv2DTranspose(2, 3, dilation_rate=2), "Conv2DTranspose"),  # runs since #14
    (lambda L: L.UpSampling2D(interpolation="bilinear"), "UpSampling2D"),
    (lambda L: L.Activation("softsign"), "Activation"),
])
def test_unsupported_layer_names_layer_class_and_alternatives(make_layer, cls):
    import tf_keras as k

    inputs = k.Input((6, 6, 2))
    x = k.layers.Conv2D(2, 1)(inputs)
    x = make_layer(k.layers)(x)
    with pytest.raises(UnsupportedLayerError) as info:
        capture(k.Model(inputs, x))
    text = str(info.value)
    assert cls in text and "is not supported" in text
    assert "DepthwiseConv2D" in info.value.hint and "GlobalAveragePooling2D" in info.value.hint
    assert "Conv2DTranspose" in info.value.hint and "UpSampling2D(nearest)" in info.value.hint


def test_dense_on_unflattened_input_is_rejected():
    import tf_keras as k

    inputs = k.Input((4, 4, 2))
    with pytest.raises(UnsupportedLayerError, match="Flatten"):
        capture(k.Model(inputs, k.layers.Dense(3)(inputs)))


def test_models_that_cannot_be_read_are_rejected_clearly():
    import tf_keras as k

    from edgeq.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="no defined input shape"):
        capture(k.Sequential([k.layers.Dense(3)]))
    with pytest.raises(ModelLoadError, match="not a Keras model"):
        capture(object())
    inner = k.Sequential([k.Input((4,)), k.layers.Dense(2)])
    inputs = k.Input((4,))
    with pytest.raises(UnsupportedLayerError, match="nested model"):
        capture(k.Model(inputs, inner(inputs)))


def test_add_of_three_inputs_is_rejected():
    import tf_keras as k

    inputs = k.Input((4, 4, 2))
    a, b = k.layers.Conv2D(2, 1)(inputs), k.layers.Conv2D(2, 1)(inputs)
    with pytest.raises(UnsupportedLayerError, match="chain two-input Add"):
        capture(k.Model(inputs, k.layers.Add()([inputs, a, b])))


@pytest.mark.parametrize("version", [2, 3])
def test_a_layer_called_twice_is_refused(version):
    import keras
    import tf_keras

    k = tf_keras if version == 2 else keras
    inp = k.Input((4,))
    shared = k.layers.Dense(4, name="shared")
    out = shared(shared(inp))
    with pytest.raises(UnsupportedLayerError, match="'shared' is called more than once"):
        capture(k.Model(inp, out))
