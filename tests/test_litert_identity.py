"""LiteRT gives TFLM's integers on every edgeq export (edgeq.learn.tiesafe).

LiteRT's x86 conv / depthwise / fully-connected kernels round a negative tie in the final
rounding shift up where TFLM rounds it away from zero; edgeq stores every layer whose clamp does
not cut at its zero point from -128, so that no runtime ever requantizes a negative tie. Here:
for every export path on small seeded models (W8, W4, 3-bit, 2-bit, a mixed plan, a
reconstruction method, REx, a residual block with a linear projection, logits with and without
a softmax, the fold into a reader's bias), LiteRT's raw int8 outputs equal TFLM's on 300
seeded inputs, and the same models exported without the tie-safe storage do differ, so the
comparison can fail."""

from __future__ import annotations

import numpy as np
import pytest
from test_graph import _every_layer_model, _randomize_bn

from edgeq.deploy import interp
from edgeq.deploy.runtimes import litert_interpreter, tflm_interpreter
from edgeq.learn import tiesafe
from edgeq.learn.export import quantize_minmax, to_tflite_model
from edgeq.learn.graph import capture
from edgeq.learn.quant import rex
from edgeq.learn.quant.sim import simulate
from edgeq.learn.quantize import storable
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model

SAMPLES = 300


def _outputs(model_bytes: bytes, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(LiteRT, TFLM) raw int8 outputs, as int, for int8 inputs q."""
    litert, tflm = litert_interpreter(model_bytes), tflm_interpreter(model_bytes, 1 << 20)
    src, dst = litert.get_input_details()[0]["index"], litert.get_output_details()[0]["index"]
    a, b = [], []
    for i in range(len(q)):
        litert.set_tensor(src, q[i:i + 1])
        litert.invoke()
        a.append(litert.get_tensor(dst)[0].astype(int))
        tflm.set_input(q[i:i + 1], 0)
        tflm.invoke()
        b.append(tflm.get_output(0)[0].astype(int))
    return np.array(a), np.array(b)


def _lsb(qgraph, x, tie_safe=True, sim=True) -> tuple[int, float, bytes]:
    """(max |LiteRT - TFLM| in LSB, fraction of inputs that differ, the file). With `sim`,
    the exact simulation must give TFLM's integers too, and so must edgeq's interpreter."""
    data = write_model(to_tflite_model(qgraph, _tie_safe=tie_safe))
    model = read_model(data)
    q = interp.quantize_input(model.input_tensors[0], x)
    litert, tflm = _outputs(data, q)
    if tie_safe:
        np.testing.assert_array_equal(interp.run_batch(model, q[:40])[0], tflm[:40])
        if sim:
            np.testing.assert_array_equal(simulate(qgraph, x, integer=True), tflm)
    diff = np.abs(litert - tflm)
    return int(diff.max()), float(np.mean(diff.max(axis=1) > 0)), data


@pytest.fixture(scope="module")
def every_layer():
    """The 7-layer test model of tests/test_rex.py, 48 calibration and 300 test inputs."""
    import tf_keras

    tf_keras.utils.set_random_seed(3)
    model = _every_layer_model(tf_keras)
    _randomize_bn(model, seed=3)
    calib = np.random.default_rng(0).uniform(-1, 1, (48, 12, 12, 3)).astype(np.float32)
    x = np.random.default_rng(1).uniform(-1, 1, (SAMPLES, 12, 12, 3)).astype(np.float32)
    return capture(model), calib, x


def _mixed_plan(graph):
    widths = (8, 4, 2, 3, 4, 8, 8)
    return {n.name: b for n, b in zip(graph.weighted_nodes, widths, strict=True)}


@pytest.mark.parametrize("bits", [8, 4, 3, 2, "mixed"])
def test_every_layer_model_litert_equals_tflm(every_layer, bits):
    graph, calib, x = every_layer
    plan = _mixed_plan(graph) if bits == "mixed" else bits
    qgraph = storable(quantize_minmax(graph, calib, plan))  # 2/3 bits in INT4 tensors
    storage = tiesafe.plan(graph, qgraph.act)
    # bn_in (read by PAD), pw (a residual ADD), the hidden dense (CONCATENATION): restored by
    # an ADD; the head feeds the softmax
    assert sorted(st.mode for st in storage.values()) == ["add", "add", "add", "softmax"]
    lsb, differing, _ = _lsb(qgraph, x)
    assert lsb == 0, (lsb, differing)


def test_without_tie_safe_storage_litert_differs(every_layer):
    """The comparison can fail: the same W4 model written without the storage differs in
    LiteRT (measured: 1 LSB on about a quarter of the inputs)."""
    graph, calib, x = every_layer
    qgraph = quantize_minmax(graph, calib, 4)
    lsb, differing, _ = _lsb(qgraph, x, tie_safe=False)
    assert lsb >= 1 and differing > 0.1, (lsb, differing)


def test_a_reconstruction_method_litert_equals_tflm(every_layer):
    from edgeq.learn.quantize import quantize

    graph, _, x = every_layer
    calib = np.random.default_rng(5).uniform(-1, 1, (64, 12, 12, 3)).astype(np.float32)
    qgraph, _ = quantize(graph, calib, "adaround", 4, iters=20, progress=False)
    assert _lsb(qgraph, x)[0] == 0


@pytest.mark.parametrize(("bits", "orders", "sparsity"), [(4, 2, 1.0), (2, 3, 0.5)])
def test_rex_litert_equals_tflm(every_layer, bits, orders, sparsity):
    graph, calib, x = every_layer
    qgraph, _ = rex.rex_quantize(graph, bits, orders, sparsity, calib_x=calib, edge_bits=2)
    lsb, differing, data = _lsb(qgraph, x)
    assert data == rex.export_rex(qgraph)
    assert lsb == 0, (lsb, differing)
    assert _lsb(qgraph, x, tie_safe=False, sim=False)[1] > 0.2  # the branches do tie


# ------------------------------------------------------------------------ other shapes


def _residual_model(k):
    """MobileNetV2-style blocks: 1x1 expansion (ReLU6), 3x3 depthwise (ReLU6), linear 1x1
    projection, residual ADD; then a linear projection read by the next block's 1x1 conv."""
    L = k.layers
    inputs = k.Input((8, 8, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu", name="stem")(inputs)
    for i in range(2):
        y = L.Conv2D(16, 1, name=f"expand{i}")(x)
        y = L.BatchNormalization()(y)
        y = L.ReLU(6.0)(y)
        y = L.DepthwiseConv2D(3, padding="same", name=f"dw{i}")(y)
        y = L.ReLU(6.0)(y)
        y = L.Conv2D(8, 1, name=f"project{i}")(y)
        y = L.BatchNormalization()(y)
        x = L.Add(name=f"add{i}")([x, y])
    x = L.Conv2D(8, 1, name="linear")(x)  # no activation, read by a 1x1 conv only: folded
    x = L.Conv2D(12, 1, activation="relu", name="after_linear")(x)
    x = L.GlobalAveragePooling2D()(x)
    return k.Model(inputs, L.Dense(5, activation="softmax", name="head")(x), name="residual")


def _logits_model(k, softmax: bool):
    """A linear conv read by a VALID conv (fold), a linear conv flattened into a dense (fold
    through the reshape), logits without activation, with or without a softmax."""
    L = k.layers
    inputs = k.Input((9, 9, 2))
    x = L.Conv2D(6, 3, padding="same", name="linear_a")(inputs)
    x = L.Conv2D(6, 3, padding="valid", activation="relu", name="valid")(x)
    x = L.Conv2D(4, 3, strides=2, name="linear_b")(x)
    x = L.Flatten()(x)
    x = L.Dense(10, name="logits")(x)
    if softmax:
        x = L.Softmax(name="probs")(x)
    return k.Model(inputs, x, name="logits_softmax" if softmax else "logits")


def _case(builder, shape, seed):
    import tf_keras

    tf_keras.utils.set_random_seed(seed)
    model = builder(tf_keras)
    _randomize_bn(model, seed=seed)
    rng = np.random.default_rng(seed)
    calib = rng.normal(0, 1, (48, *shape)).astype(np.float32)
    x = rng.normal(0, 1, (SAMPLES, *shape)).astype(np.float32)
    return capture(model), calib, x


@pytest.mark.parametrize("bits", [8, 4, 2])
def test_residual_block_with_linear_projection(bits):
    graph, calib, x = _case(_residual_model, (8, 8, 3), 21)
    qgraph = storable(quantize_minmax(graph, calib, bits))
    storage = tiesafe.plan(graph, qgraph.act)
    assert storage["project0"].mode == storage["project1"].mode == "add"  # a residual ADD
    assert storage["linear"].mode == "fold" and storage["linear"].readers == ("after_linear",)
    lsb, differing, data = _lsb(qgraph, x)
    assert lsb == 0, (lsb, differing)
    if bits == 4:
        assert _lsb(qgraph, x, tie_safe=False)[0] >= 1


@pytest.mark.parametrize("bits, changed", [(8, False), (4, False), (8, True)])
def test_engine_copies_a_restore_add_that_changes_no_integer(bits, changed, tmp_path):
    """A restore ADD that writes each int8 value unchanged (N = zp + 128 in every channel) is
    a copy in the C engine (eq_copy, no eq_add step); one whose constant is moved by one step
    (changed) stays an ADD. Either way the engine equals TFLM, and LiteRT equals TFLM."""
    from edgeq.deploy import cgen

    graph, calib, x = _case(_residual_model, (8, 8, 3), 21)
    qgraph = storable(quantize_minmax(graph, calib, bits))
    ir = read_model(write_model(to_tflite_model(qgraph)))
    adds = [op for op in ir.ops if op.kind == "ADD"]
    restores = [op for op in adds if ir.tensors[op.inputs[1]].is_constant]
    assert len(adds) == 4 and len(restores) == 2  # two residual ADDs, two restore ADDs
    if changed:
        constant = ir.tensors[restores[0].inputs[1]]
        constant.data = np.asarray(constant.data) + 1
    q = interp.quantize_input(ir.input_tensors[0], x[:32])
    files = cgen.generate_engine(ir, tmp_path)
    assert files.source.read_text().count("eq_add(") == 2 + changed
    lite, expected = _outputs(write_model(ir), q)
    np.testing.assert_array_equal(lite, expected)
    got = cgen.run_host(cgen.build_host_runner(files), q, output_size=expected.shape[-1])
    np.testing.assert_array_equal(got, expected.reshape(len(q), -1))


@pytest.mark.parametrize("softmax", [True, False])
@pytest.mark.parametrize("bits", [8, 4])
def test_logits_with_and_without_softmax(softmax, bits, tmp_path):
    graph, calib, x = _case(lambda k: _logits_model(k, softmax), (9, 9, 2), 31)
    qgraph = quantize_minmax(graph, calib, {"valid": bits, "linear_b": bits})
    storage = tiesafe.plan(graph, qgraph.act)
    assert storage["linear_a"].mode == "fold"  # read by a VALID conv
    assert storage["linear_b"].tensors[0] == "linear_b" and storage["linear_b"].mode == "fold"
    assert storage["logits"].mode == ("softmax" if softmax else "add")
    lsb, differing, data = _lsb(qgraph, x)
    assert lsb == 0, (lsb, differing)
    ir = read_model(data)
    # folds and the softmax need no op: one restore ADD at most, for the logits output
    assert [op.kind for op in ir.ops].count("ADD") == (0 if softmax else 1)
    tensors = {t.name: t for t in ir.tensors}
    for name in ("linear_a", "linear_b"):
        assert int(tensors[name].zero_point[0]) == tiesafe.STORED_ZERO_POINT
    if not softmax:  # the output keeps its logical qparams
        assert int(ir.output_tensors[0].zero_point[0]) == qgraph.act["logits"][1]
        # the generated C engine gives the same integers (zero point -128 readers, the ADD)
        from edgeq.deploy import cgen

        q = interp.quantize_input(ir.input_tensors[0], x[:32])
        exe = cgen.build_host_runner(cgen.generate_engine(ir, tmp_path))
        expected = interp.run_batch(ir, q)[0]
        np.testing.assert_array_equal(cgen.run_host(exe, q, output_size=expected.shape[-1]),
                                      expected)


def test_fold_is_exact_for_the_reader():
    """The fold changes the integers nowhere: a layer read by a VALID conv gives the same
    outputs stored from -128 (reader's bias corrected) as restored by an ADD."""
    graph, calib, x = _case(lambda k: _logits_model(k, True), (9, 9, 2), 32)
    qgraph = quantize_minmax(graph, calib, 4)
    folded = write_model(to_tflite_model(qgraph))
    model = read_model(folded)
    q = interp.quantize_input(model.input_tensors[0], x[:64])
    reference = interp.run_batch(model, q)[0]
    np.testing.assert_array_equal(simulate(qgraph, x[:64], integer=True), reference)
    bias = {t.name: t.data for t in model.tensors if t.name.endswith("/bias")}
    plain = {t.name: t.data for t in to_tflite_model(qgraph, _tie_safe=False).tensors
             if t.name.endswith("/bias")}
    zp = qgraph.act["linear_a"][1]
    correction = tiesafe.fold_correction(graph.node("valid"), qgraph.layers["valid"].qweight,
                                         zp + 128)
    np.testing.assert_array_equal(bias["valid/bias"].astype(np.int64),
                                  plain["valid/bias"].astype(np.int64) - correction)
