"""REx residual expansion: orders reduce the weight error, group sparsity keeps the chosen
channels, the exported branches run in TFLM exactly as in edgeq's interpreter with an output
error that falls as the order grows, and LiteRT stays within contract 1's bounds of TFLM
(which the plain export of the same branches breaks)."""

from __future__ import annotations

import numpy as np
import pytest
from test_graph import _every_layer_model, _randomize_bn

from edgeq.deploy import interp
from edgeq.deploy.runtimes import tflm_interpreter
from edgeq.errors import DataError
from edgeq.learn import tiesafe
from edgeq.learn.graph import Node, capture
from edgeq.learn.quant import rex
from edgeq.learn.quant.sim import output_channels
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model


def _conv_node(seed=0, channels=16):
    rng = np.random.default_rng(seed)
    kernel = rng.normal(0, 1, (3, 3, 8, channels)).astype(np.float32)
    kernel *= rng.uniform(0.1, 2.0, channels).astype(np.float32)  # uneven channel norms
    attrs = {"strides": (1, 1), "padding": "SAME", "dilation": (1, 1), "activation": "RELU"}
    return Node("conv", "conv2d", ["in"], attrs,
                {"kernel": kernel, "bias": rng.normal(0, 1, channels).astype(np.float32)},
                (6, 6, channels))


def _relative_error(node, orders):
    flat = output_channels(node)
    approx = sum(output_channels(Node("x", node.kind, [], {}, {"kernel": o.dequantized(node)}))
                 for o in orders)
    return np.linalg.norm(flat - approx) / np.linalg.norm(flat)


@pytest.mark.parametrize("bits", [4, 2])
def test_each_order_reduces_the_weight_error(bits):
    node = _conv_node()
    errors = [_relative_error(node, rex.expand_weights(node, bits, k, 1.0)) for k in (1, 2, 3, 4)]
    assert all(b < 0.6 * a for a, b in zip(errors, errors[1:], strict=False)), errors
    orders = rex.expand_weights(node, bits, 3, 1.0)
    np.testing.assert_array_equal(orders[0].bias, node.weights["bias"])  # bias in order 0 only
    assert not orders[1].bias.any() and not orders[2].bias.any()


def test_group_sparsity_expands_the_channels_with_the_largest_residual():
    node = _conv_node(1, channels=16)
    orders = rex.expand_weights(node, 4, 2, 0.25)
    first_residual = output_channels(node) - output_channels(
        Node("x", "conv2d", [], {}, {"kernel": orders[0].dequantized(node)}))
    expected = set(np.argsort(-np.linalg.norm(first_residual, axis=0))[:4])
    used = set(np.flatnonzero(np.abs(orders[1].qweight).reshape(-1, 16).sum(axis=0)))
    assert used <= expected and len(used) >= 3  # a kept channel may round to all zeros
    full = _relative_error(node, rex.expand_weights(node, 4, 2, 1.0))
    sparse = _relative_error(node, orders)
    plain = _relative_error(node, orders[:1])
    assert full < sparse < plain


def _run_interp(model_bytes, x):
    model = read_model(model_bytes)
    q = interp.quantize_input(model.input_tensors[0], x)
    out = interp.run_batch(model, q)[0]
    tensor = model.output_tensors[0]
    return q, out, (out.astype(np.float32) - tensor.zero_point[0]) * tensor.scale[0]


@pytest.fixture(scope="module")
def every_layer_graph():
    """The 7-layer test model (every weighted layer expanded with edge_bits=2) and 48
    calibration inputs."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = _every_layer_model(tf_keras)
    _randomize_bn(model, seed=3)
    x = np.random.default_rng(0).uniform(-1, 1, (48, 12, 12, 3)).astype(np.float32)
    return capture(model), x


def _branch_ops(model):
    """The ops that compute REx branches (their output is a `/rexK` tensor or its stored form)."""
    return [op for op in model.ops if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D",
                                                  "FULLY_CONNECTED")
            and "/rex" in model.tensors[op.outputs[0]].name]


def test_rex_branches_export_exactly_and_error_falls_with_the_order(every_layer_graph, tmp_path):
    graph, x = every_layer_graph
    ref = graph.run_float(x)
    errors, sizes = [], []
    for order in (1, 2, 3):
        qgraph, info = rex.rex_quantize(graph, bits=2, expansion=order, sparsity=1.0, calib_x=x,
                                        edge_bits=2)
        model_bytes = write_model(rex.rex_tflite_model(qgraph))
        ir = read_model(model_bytes)
        kinds = [op.kind for op in ir.ops]
        # 7 weighted layers (bn_in, conv, dw, pw, conv3, dense, head), each with `order`
        # branches and order - 1 ADDs, beside the model's own ADD; plus one ADD of a constant
        # per layer without activation that was moved to zero point -128 (tie-safe storage,
        # edgeq.learn.tiesafe: every branch, and at order 1 bn_in, pw and the hidden dense)
        summing = [op for op in ir.ops
                   if op.kind == "ADD" and not any(ir.tensors[i].is_constant for i in op.inputs)]
        assert len(summing) == 1 + 7 * (order - 1)
        branches = _branch_ops(ir)
        assert len(branches) == (7 * order if order > 1 else 0)
        moved = [op for op in ir.ops if ir.tensors[op.outputs[0]].name.endswith("/stored")]
        assert kinds.count("ADD") == len(summing) + len(moved)
        assert len(moved) >= (len(branches) - order if order > 1 else 3)  # the head: softmax
        for op in branches:  # every branch requantizes from zero point -128
            assert int(ir.tensors[op.outputs[0]].zero_point[0]) == tiesafe.STORED_ZERO_POINT
        assert kinds.count("FULLY_CONNECTED") == 2 * order
        q, out, deq = _run_interp(model_bytes, x)
        tflm = tflm_interpreter(model_bytes, 1 << 20)
        for i in range(len(x)):  # contract 1: TFLM == edgeq's interpreter, bit for bit
            tflm.set_input(q[i:i + 1], 0)
            tflm.invoke()
            np.testing.assert_array_equal(tflm.get_output(0)[0], out[i])
        errors.append(float(np.sqrt(np.mean((deq - ref) ** 2))))
        sizes.append(ir.weight_bytes)
        if order == 2:
            path = tmp_path / "rex.tflite"
            assert rex.export_rex(qgraph, path) == model_bytes == path.read_bytes()
        if order > 1:
            assert info.layers["conv"]["orders"] == order
    # W2 orders 2 -> 3 gain less: every branch adds its own int8 rounding (module docstring)
    assert errors[1] < 0.9 * errors[0] and errors[2] < errors[1], errors
    assert sizes[0] < sizes[1] < sizes[2]


def _litert_vs_tflm(model_bytes, x):
    """(max |LiteRT - TFLM| in LSB, label agreement, fraction of samples that differ)."""
    from test_litert_identity import _outputs  # the one LiteRT-beside-TFLM runner

    model = read_model(model_bytes)
    a, b = _outputs(model_bytes, interp.quantize_input(model.input_tensors[0], x))
    diff = np.abs(a - b)
    return int(diff.max()), float(np.mean(a.argmax(1) == b.argmax(1))), float(
        np.mean(diff.max(1) > 0))


@pytest.mark.parametrize(("bits", "orders", "sparsity"), [(4, 2, 1.0), (2, 3, 1.0), (4, 3, 0.5)])
def test_litert_stays_within_one_lsb_of_tflm(every_layer_graph, bits, orders, sparsity):
    """Contract 1's LiteRT bounds (<= 1 LSB, >= 99.5 % labels) on 400 inputs. LiteRT's x86
    kernels round a negative tie up where TFLM rounds it away from zero; a branch without
    activation requantizes negative sums, at 4 and 2 bits with small shifts (many ties), so
    in the plain export of the same branches LiteRT differs on many inputs (measured here:
    W4 K=2 on 39 % of them, 1 LSB, 99.5 % labels; W2 K=3 on 74 %, 2 LSB, 99.75 %). The
    tie-safe export leaves only LiteRT's rare other rounding differences (measured: none here;
    one SOFTMAX output by 1 LSB in 2,000 fmnist images at W2 K=3)."""
    from edgeq.learn.export import to_tflite_model

    graph, calib = every_layer_graph
    qgraph, _ = rex.rex_quantize(graph, bits, orders, sparsity, calib_x=calib, edge_bits=2)
    x = np.random.default_rng(1).uniform(-1, 1, (400, 12, 12, 3)).astype(np.float32)
    lsb, agreement, differing = _litert_vs_tflm(rex.export_rex(qgraph), x)
    assert lsb <= 1 and agreement >= 0.995, (lsb, agreement)
    assert differing <= 0.02, differing
    plain = _litert_vs_tflm(write_model(to_tflite_model(qgraph, _tie_safe=False)), x)
    assert plain[2] > 0.2, plain  # the model does exercise the negative ties


def test_channel_permutation_keeps_the_function(every_layer_graph):
    graph, x = every_layer_graph
    width = graph.node("conv3").output_shape[-1]
    src = np.random.default_rng(2).permutation(width)
    permuted = rex.permute_output_channels(graph, "conv3", src)  # pools, flatten, concat, dense
    np.testing.assert_allclose(permuted.run_float(x), graph.run_float(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(permuted.node("conv3").weights["bias"],
                                  graph.node("conv3").weights["bias"][src])
    for blocked in ("conv", "pw", "head"):  # residual ADD, residual ADD, model output
        width = graph.node(blocked).output_shape[-1]
        assert rex.permute_output_channels(graph, blocked, np.arange(width)[::-1]) is None


def test_channel_split_stores_only_the_kept_channels_and_runs_exactly(every_layer_graph,
                                                                     tmp_path):
    from edgeq.deploy import cgen

    graph, x = every_layer_graph
    dense, dense_info = rex.rex_quantize(graph, 4, 2, 1.0, calib_x=x, edge_bits=2)
    qgraph, info = rex.rex_quantize(graph, 4, 2, 0.25, calib_x=x, edge_bits=2)
    split = sorted(n for n, v in info.layers.items() if v["channel_split"])
    # Keras numbers the unnamed Dense by how many were built before in this process
    hidden = next(n.name for n in graph.nodes if n.kind == "dense" and n.name != "head")
    assert split == sorted(["conv3", hidden])  # the others reach a residual ADD or the output
    for name in split:
        kept = info.layers[name]["expanded_channels"]
        assert qgraph.layers[f"{name}/rex1"].qweight.shape[-1] == kept
        assert kept + qgraph.layers[f"{name}/rest"].qweight.shape[-1] == info.layers[name][
            "channels"]
    model_bytes = rex.export_rex(qgraph)
    ir = read_model(model_bytes)
    assert [op.kind for op in ir.ops].count("CONCATENATION") == 2 + len(split)
    for name, layer in info.layers.items():  # order 1 stored for the kept channels only
        share = (1 + layer["expanded_channels"] / layer["channels"]) / 2 if name in split else 1
        assert layer["bytes"] == pytest.approx(share * dense_info.layers[name]["bytes"])
    assert ir.weight_bytes < read_model(rex.export_rex(dense)).weight_bytes
    q, out, _ = _run_interp(model_bytes, x)
    tflm = tflm_interpreter(model_bytes, 1 << 20)
    for i in range(len(x)):  # contract 1: TFLM == edgeq's interpreter == the C engine
        tflm.set_input(q[i:i + 1], 0)
        tflm.invoke()
        np.testing.assert_array_equal(tflm.get_output(0)[0], out[i])
    exe = cgen.build_host_runner(cgen.generate_engine(ir, tmp_path))
    np.testing.assert_array_equal(cgen.run_host(exe, q, output_size=out.shape[-1]), out)


def test_w2_order_3_fits_tflm_arena_at_the_first_try(every_layer_graph):
    from edgeq.deploy.tflm import arena_estimate, fit_arena

    graph, calib = every_layer_graph
    qgraph, _ = rex.rex_quantize(graph, 2, 3, 1.0, calib_x=calib, edge_bits=2)
    model_bytes = rex.export_rex(qgraph)
    interpreter, used = fit_arena(model_bytes)
    assert 0 < used <= arena_estimate(model_bytes)  # no failed (unsafe) allocation first
    q, out, _ = _run_interp(model_bytes, calib[:1])
    interpreter.set_input(q, 0)
    interpreter.invoke()
    np.testing.assert_array_equal(interpreter.get_output(0), out)


def test_rex_needs_calibration_inputs_and_a_valid_sparsity():
    node = _conv_node()
    with pytest.raises(DataError, match="calibration"):
        rex.rex_quantize(capture_small(), bits=4, expansion=2)
    with pytest.raises(DataError, match="sparsity"):
        rex.expand_weights(node, 4, 2, 0.0)
    with pytest.raises(DataError, match="expansion"):
        rex.expand_weights(node, 4, 0, 1.0)


def capture_small():
    import tf_keras

    inputs = tf_keras.Input((8, 8, 1))
    y = tf_keras.layers.Conv2D(4, 3, name="c")(inputs)
    return capture(tf_keras.Model(inputs, tf_keras.layers.Flatten()(y)))
