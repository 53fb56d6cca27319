"""Reconstruction blocks of MobileNetV2/V3 (issue #14): edgeq.learn.graph.mark_blocks marks
the inverted residual block (expand 1x1, depthwise 3x3, linear project 1x1, and the residual
ADD when there is one) and the squeeze-and-excitation block (GAP, two 1x1 convs, the
hard_sigmoid gate, MUL), and BRECQ / Genie-M optimize each as one block: the block output of
the bit-exact simulated model (== TFLM) comes closer to the Keras model's own layer output."""

from __future__ import annotations

import kerasmodels
import numpy as np
import pytest

from edgeq.learn.export import bit_plan
from edgeq.learn.graph import capture
from edgeq.learn.quant import genie_m, ranges, recon
from edgeq.learn.quant.sim import SimModel


def _kinds(graph) -> dict[str, list[str]]:
    """first node of each block -> [kind, *nodes]"""
    return {b.nodes[0]: [b.kind, *b.nodes] for b in graph.blocks}


def _covered_once(graph) -> None:
    names = [n for b in graph.blocks for n in b.nodes]
    assert len(names) == len(set(names))
    assert {n.name for n in graph.weighted_nodes} <= set(names)


@pytest.fixture(scope="module")
def photos():
    return kerasmodels.photos(8)


def test_mobilenet_v2_blocks_are_inverted_residuals(photos):
    graph = capture(kerasmodels.mobilenet_v2(photos * 2 - 1))
    blocks = _kinds(graph)
    _covered_once(graph)
    # stride 2, no ADD: the 'valid' depthwise's ZeroPadding2D (exactly SAME at 48x48) is its
    # SAME padding
    assert blocks["block_1_expand"] == ["inverted_residual", "block_1_expand",
                                        "block_1_depthwise", "block_1_project"]
    assert graph.node("block_1_depthwise").attrs["padding"] == "SAME"
    assert not [n.name for n in graph.nodes if n.kind == "pad"]
    assert blocks["block_2_expand"] == ["inverted_residual", "block_2_expand",
                                        "block_2_depthwise", "block_2_project", "block_2_add"]
    assert blocks["block_16_expand"] == ["inverted_residual", "block_16_expand",
                                         "block_16_depthwise", "block_16_project"]
    inverted = [b for b in graph.blocks if b.kind == "inverted_residual"]
    assert [b.nodes[0] for b in inverted] == [f"block_{i}_expand" for i in range(1, 17)]
    assert sum(b.nodes[-1].endswith("_add") for b in inverted) == 10
    # the first block has no expansion: a depthwise + pointwise pair
    assert blocks["expanded_conv_depthwise"] == ["dw_pw", "expanded_conv_depthwise",
                                                 "expanded_conv_project"]
    assert blocks["Conv1"] == ["single", "Conv1"] and blocks["Conv_1"] == ["single", "Conv_1"]


def test_mobilenet_v3_small_blocks_hold_squeeze_excite(photos):
    import keras

    keras.backend.clear_session()  # Keras names its unnamed layers (multiply_1, ...) per session
    graph = capture(kerasmodels.mobilenet_v3_small(photos * 255))
    blocks = _kinds(graph)
    _covered_once(graph)
    se = ["expanded_conv_squeeze_excite_avg_pool", "expanded_conv_squeeze_excite_conv",
          "expanded_conv_squeeze_excite_conv_1", "multiply", "expanded_conv_squeeze_excite_mul"]
    # the first block has no expand conv: its SE is a block of its own between dw and project
    assert blocks[se[0]] == ["squeeze_excite", *se]
    assert blocks["expanded_conv_depthwise"] == ["single", "expanded_conv_depthwise"]
    assert blocks["expanded_conv_project"] == ["single", "expanded_conv_project"]
    p = "expanded_conv_3_"
    assert blocks[p + "expand"] == [
        "inverted_residual", p + "expand", "activation_1", p + "depthwise",
        "activation_2", p + "squeeze_excite_avg_pool", p + "squeeze_excite_conv",
        p + "squeeze_excite_conv_1", "multiply_1", p + "squeeze_excite_mul", p + "project"]
    p = "expanded_conv_4_"
    assert blocks[p + "expand"][0] == "inverted_residual"
    assert blocks[p + "expand"][-3:] == [p + "squeeze_excite_mul", p + "project", p + "add"]
    assert not [b for b in graph.blocks if b.kind == "residual"]


def test_mobilenet_v1_keeps_its_depthwise_pointwise_pairs():
    """pointwise → depthwise → pointwise with a ReLU is MobileNetV1, not a linear bottleneck."""
    from edgeq.learn.zoo import build_model, load_card

    graph = capture(build_model(load_card("person_detect_tiny")))
    assert {b.kind for b in graph.blocks} == {"single", "dw_pw"}


def _tiny_mobilenet(seed: int = 0):
    """Keras 3: a stem, a MobileNetV2 inverted residual block with its ADD, a MobileNetV3 one
    with squeeze-and-excitation (hard_swish, hard_sigmoid) and stride 2, GAP, dense softmax."""
    import keras
    from keras import layers as L

    keras.utils.set_random_seed(seed)
    inp = keras.Input((16, 16, 3))
    x = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(8, 3, padding="same", name="stem")(inp)))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.Conv2D(32, 1, use_bias=False, name="a_expand")(x)))
    h = L.ReLU(6.0)(L.BatchNormalization()(L.DepthwiseConv2D(3, padding="same", use_bias=False,
                                                             name="a_depthwise")(h)))
    h = L.BatchNormalization()(L.Conv2D(8, 1, use_bias=False, name="a_project")(h))
    x = L.Add(name="a_add")([x, h])
    h = L.BatchNormalization()(L.Conv2D(32, 1, use_bias=False, name="b_expand")(x))
    h = L.Activation("hard_swish", name="b_act1")(h)
    h = L.BatchNormalization()(L.DepthwiseConv2D(3, strides=2, padding="same", use_bias=False,
                                                 name="b_depthwise")(h))
    h = L.Activation("hard_swish", name="b_act2")(h)
    s = L.GlobalAveragePooling2D(keepdims=True, name="b_se_pool")(h)
    s = L.Conv2D(8, 1, activation="relu", name="b_se_reduce")(s)
    s = L.Conv2D(32, 1, activation="hard_sigmoid", name="b_se_expand")(s)
    h = L.Multiply(name="b_se_mul")([h, s])
    h = L.Conv2D(16, 1, use_bias=False, name="b_project")(h)
    x = L.BatchNormalization(name="b_bn")(h)
    x = L.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, L.Dense(3, activation="softmax", name="head")(x))
    calib = np.random.default_rng(seed).uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    kerasmodels.set_bn_statistics(model, calib)
    return model, calib


def _keras_output_mse(model, qgraph, x, keras_layer: str, node: str) -> float:
    """The block output of the bit-exact simulated model against the Keras model's own layer
    output (not edgeq's folded graph): an independent float reference."""
    import keras

    ref = np.asarray(keras.Model(model.inputs, model.get_layer(keras_layer).output)(x))
    sim = SimModel(qgraph).tensors(x)[node].numpy()
    return float(np.mean((sim - ref) ** 2))


@pytest.mark.parametrize("engine", ["brecq", "genie_m"])
def test_engines_reconstruct_inverted_residual_and_se_blocks(engine):
    model, calib = _tiny_mobilenet()
    graph = capture(model)
    kinds = {b.nodes[0]: b.kind for b in graph.blocks}
    assert kinds == {"stem": "single", "a_expand": "inverted_residual",
                     "b_expand": "inverted_residual", "head": "single"}
    plan = bit_plan(graph, 4, edge_bits=4)
    minmax = ranges.quantize_ranges(graph, calib, plan, "minmax", "minmax")
    start = ranges.quantize_ranges(graph, calib, plan, "mse", "minmax")
    if engine == "brecq":
        res = recon.reconstruct(start, calib, graph.blocks, minmax.layers,
                                recon.ReconConfig(iters=300, act_iters=20))
    else:
        res = genie_m.genie_m(minmax, calib, graph.blocks, minmax.layers,
                              genie_m.GenieMConfig(iters=300))
    records = {r.nodes[0]: r for r in res.blocks}
    # each inverted residual block (the SE inside the second) was optimized as one block
    assert records["b_expand"].nodes[-1] == "b_project" and "b_se_mul" in records["b_expand"].nodes
    assert records["a_expand"].nodes[-1] == "a_add"
    assert all(records[b].kept not in ("start", "minmax") for b in ("a_expand", "b_expand"))
    baseline = start if engine == "brecq" else minmax
    for keras_layer, node in (("a_add", "a_add"), ("b_bn", "b_project")):
        after = _keras_output_mse(model, res.qgraph, calib, keras_layer, node)
        before = _keras_output_mse(model, baseline, calib, keras_layer, node)
        floor = _keras_output_mse(model, minmax, calib, keras_layer, node)
        assert after < 0.9 * min(before, floor), (node, after, before, floor)
