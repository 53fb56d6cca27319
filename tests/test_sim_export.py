"""Simulated quantized model vs the exported .tflite run in TFLite Micro (and edgeq's reference
interpreter), on a small every-layer model and on whole models: the fmnist and person_detect
zoo models and MLPerf Tiny's vww_96.h5, at INT8 and INT4."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_graph import _randomize_bn, every_layer_case

from edgeq import intmath
from edgeq.deploy import interp
from edgeq.deploy.runtimes import litert_interpreter, tflm_interpreter
from edgeq.errors import DataError, UnsupportedLayerError
from edgeq.learn.export import bit_plan, export_tflite, quantize_minmax, to_tflite_model
from edgeq.learn.graph import capture
from edgeq.learn.quant.sim import SimModel, simulate
from edgeq.tflite.model import Model, Op, Tensor
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model

ARENA = 1 << 20


def run_tflm(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs of TFLM for every sample (x already in the model's input dtype)."""
    interpreter = tflm_interpreter(model_bytes, ARENA)
    outs = []
    for sample in x:
        interpreter.set_input(sample[None], 0)
        interpreter.invoke()
        outs.append(interpreter.get_output(0)[0].copy())
    return np.stack(outs)


def model_inputs(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """float samples → what the .tflite takes (int8 via its input qparams, or float32)."""
    tensor = read_model(model_bytes).input_tensors[0]
    return interp.quantize_input(tensor, x) if tensor.dtype == "int8" else x


def run_litert(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Outputs of LiteRT (builtin kernels, no delegate) for every sample."""
    interpreter = litert_interpreter(model_bytes)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    outs = []
    for sample in x:
        interpreter.set_tensor(inp["index"], sample[None])
        interpreter.invoke()
        outs.append(interpreter.get_tensor(out["index"])[0].copy())
    return np.stack(outs)


def assert_sim_matches_tflm(qgraph, x: np.ndarray, interp_samples: int = 8,
                            litert_lsb: int | None = None) -> bytes:
    """The contract: labels agree on >= 99.5% of samples. edgeq's simulation is in fact
    bit-exact with TFLM, which is asserted too, and TFLM == edgeq's interpreter. With
    `litert_lsb`, LiteRT's outputs must be within that many LSB of TFLM's (contract 1 allows
    1) and agree on >= 99.5% of labels."""
    model_bytes = write_model(to_tflite_model(qgraph))
    q = model_inputs(model_bytes, x)
    tflm = run_tflm(model_bytes, q)
    sim = simulate(qgraph, x, integer=True)
    agreement = np.mean(tflm.argmax(axis=1) == sim.argmax(axis=1))
    assert agreement >= 0.995, f"labels agree on {agreement:.1%} only"
    np.testing.assert_array_equal(sim, tflm)
    model = read_model(model_bytes)
    for i in range(interp_samples):
        np.testing.assert_array_equal(interp.run(model, q[i:i + 1])[0][0], tflm[i])
    if litert_lsb is not None:
        litert = run_litert(model_bytes, q)
        lsb = int(np.abs(litert.astype(int) - tflm.astype(int)).max())
        assert lsb <= litert_lsb, f"LiteRT differs from TFLM by {lsb} LSB"
        assert np.mean(litert.argmax(axis=1) == tflm.argmax(axis=1)) >= 0.995
    return model_bytes


# --------------------------------------------------------------------------- small model


@pytest.fixture(scope="module")
def every_layer():
    return every_layer_case(64)


@pytest.mark.parametrize("bits", [8, 4])
def test_every_layer_model_sim_equals_tflm(every_layer, bits):
    graph, calib, test = every_layer
    assert_sim_matches_tflm(quantize_minmax(graph, calib, bits), test, interp_samples=20)


def test_fusions_into_pools_depth_multiplier_and_dilation():
    import tf_keras as k

    k.utils.set_random_seed(7)
    L = k.layers
    inputs = k.Input((10, 10, 3))
    x = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(inputs)
    x = L.MaxPooling2D(2, name="max")(x)
    x = L.ReLU(name="relu_after_max")(x)
    x = L.Conv2D(4, 3, dilation_rate=2, padding="same", name="dilated")(x)
    x = L.AveragePooling2D(2, strides=1, name="avg")(x)
    x = L.ReLU(6.0, name="relu6_after_avg")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(3, name="logits")(x)
    graph = capture(k.Model(inputs, outputs))
    assert graph.node("max").attrs["activation"] == "RELU"
    assert graph.node("avg").attrs["activation"] == "RELU6"
    rng = np.random.default_rng(8)
    calib = rng.normal(0, 1, (32, 10, 10, 3)).astype(np.float32)
    test = rng.normal(0, 1, (200, 10, 10, 3)).astype(np.float32)
    for bits in (8, 4):
        assert_sim_matches_tflm(quantize_minmax(graph, calib, bits), test, interp_samples=10)


def test_model_ir_follows_tflite_conventions(every_layer):
    graph, calib, _ = every_layer
    qgraph = quantize_minmax(graph, calib, 4)
    model = to_tflite_model(qgraph)
    kinds = [op.kind for op in model.ops]
    assert kinds[0] != "QUANTIZE" and model.input_tensors[0].dtype == "int8"
    for kind in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "MAX_POOL_2D",
                 "AVERAGE_POOL_2D", "MEAN", "PAD", "RESHAPE", "CONCATENATION", "SOFTMAX"):
        assert kind in kinds
    plan = qgraph.plan
    weighted = [n.name for n in graph.weighted_nodes]
    assert plan[weighted[0]] == plan[weighted[-1]] == 8
    assert all(plan[n] == 4 for n in weighted[1:-1])
    tensors = {t.name: t for t in model.tensors}
    for name in weighted:
        kernel, node = tensors[f"{name}/kernel"], graph.node(name)
        assert kernel.dtype == ("int4" if plan[name] == 4 else "int8")
        if node.kind == "dense":
            assert len(kernel.scale) == 1  # TFLM rejects per-channel INT4 FULLY_CONNECTED
        else:
            assert len(kernel.scale) == node.output_shape[-1] > 1
        assert tensors[f"{name}/bias"].dtype == "int32"
    for op in model.ops:
        out = model.tensors[op.outputs[0]]
        if op.kind in ("CONCATENATION", "PAD", "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE"):
            ins = op.inputs if op.kind == "CONCATENATION" else op.inputs[:1]
            for i in ins:
                assert model.tensors[i].scale[0] == out.scale[0]
                assert model.tensors[i].zero_point[0] == out.zero_point[0]
        if op.kind == "SOFTMAX":
            assert out.scale[0] == np.float32(1 / 256) and out.zero_point[0] == -128
    meta = json.loads(model.metadata["edgeq"])
    assert meta["bits"] == plan and meta["version"]


def test_float_io_adds_quantize_and_dequantize(every_layer):
    graph, calib, test = every_layer
    qgraph = quantize_minmax(graph, calib, 8)
    model = to_tflite_model(qgraph, io_dtype="float32")
    assert model.ops[0].kind == "QUANTIZE" and model.ops[-1].kind == "DEQUANTIZE"
    assert model.input_tensors[0].dtype == model.output_tensors[0].dtype == "float32"
    model_bytes = write_model(model)
    x = test[:40]
    tflm = run_tflm(model_bytes, x)
    np.testing.assert_array_equal(tflm, simulate(qgraph, x).astype(np.float32))
    # LiteRT loads the same file; it may round differently by 1 LSB (1/256 on softmax).
    interpreter = litert_interpreter(model_bytes)
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for i in range(len(x)):
        interpreter.set_tensor(inp["index"], x[i:i + 1])
        interpreter.invoke()
        assert np.abs(interpreter.get_tensor(out["index"])[0] - tflm[i]).max() <= 1 / 256 + 1e-7


def test_observed_ranges_are_min_max_over_all_batches(every_layer):
    from edgeq.learn.graph import run_tf
    from edgeq.learn.quant.observe import observe_ranges

    graph, calib, _ = every_layer
    by_batch = observe_ranges(graph, [calib[:10], calib[10:40], calib[40:]])
    other = observe_ranges(graph, calib, batch_size=7)
    assert by_batch.keys() == other.keys()
    for name, span in by_batch.items():  # equal up to float noise of batch-size-dependent kernels
        assert span == pytest.approx(other[name], abs=1e-5)
    values = run_tf(graph, calib)
    for name in ("conv", "add", "head/softmax"):
        assert by_batch[name] == pytest.approx((float(np.min(values[name])),
                                                float(np.max(values[name]))), abs=1e-6)
    assert by_batch["conv"][0] == 0.0  # after the fused ReLU
    with pytest.raises(DataError, match="no calibration samples"):
        observe_ranges(graph, [])


def test_sim_gradients_and_weights_round_trip(every_layer):
    import tensorflow as tf

    graph, calib, test = every_layer
    qgraph = quantize_minmax(graph, calib, 4)
    sim = SimModel(qgraph)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(sim(test[:8])))
    variables = list(sim.kernels.values()) + list(sim.weight_scales.values())
    grads = tape.gradient(loss, variables)
    assert all(g is not None and float(tf.reduce_sum(tf.abs(g))) > 0 for g in grads)
    back = sim.to_qgraph()
    for name, layer in qgraph.layers.items():
        np.testing.assert_array_equal(back.layers[name].qweight, layer.qweight)
        np.testing.assert_array_equal(back.layers[name].scales, layer.scales)
    # An engine moves a weight by one step: the exported integers follow.
    name = graph.weighted_nodes[1].name
    kernel = sim.kernels[name]
    kernel.assign(kernel + sim.weight_scales[name] * 1.0)
    moved = sim.to_qgraph().layers[name].qweight.astype(int)
    assert np.all(moved == np.minimum(qgraph.layers[name].qweight.astype(int) + 1, 7))


def test_bit_plan_rules(every_layer):
    graph, calib, _ = every_layer
    weighted = [n.name for n in graph.weighted_nodes]
    assert set(bit_plan(graph, 8).values()) == {8}
    with pytest.raises(DataError, match="does not have"):
        bit_plan(graph, {"no_such_layer": 4})
    with pytest.raises(DataError, match="unsupported weight bit width"):
        bit_plan(graph, 5)
    plan = bit_plan(graph, {weighted[1]: 2})
    assert plan[weighted[1]] == 2 and plan[weighted[0]] == 8
    with pytest.raises(UnsupportedLayerError, match="2 bits"):
        to_tflite_model(quantize_minmax(graph, calib, plan))


def test_export_tflite_writes_the_file(tmp_path):
    import tf_keras as k

    model = k.Sequential([k.Input((8, 8, 1)), k.layers.Conv2D(4, 3, activation="relu"),
                          k.layers.GlobalAveragePooling2D(), k.layers.Dense(3)])
    x = np.random.default_rng(0).random((16, 8, 8, 1), dtype=np.float32)
    path = tmp_path / "out" / "m.tflite"
    data = export_tflite(model, x, 8, path)
    assert path.read_bytes() == data
    bits = json.loads(read_model(data).metadata["edgeq"])["bits"]
    assert sorted(bits.values()) == [8, 8]
    # the logits (no activation, a model output) are stored tie-safe and restored by an ADD
    assert [op.kind for op in read_model(data).ops] == ["CONV_2D", "MEAN", "FULLY_CONNECTED",
                                                        "ADD"]
    with pytest.raises(DataError, match="does not fit"):
        export_tflite(model, np.zeros((4, 9, 9, 1), np.float32), 8)


# --------------------------------------------------------------------------- LiteRT vs TFLM


def _fc_head(zero_point: int, bias_offset: int) -> Model:
    """One FULLY_CONNECTED without activation: 256 rows (input values -128..127, depth 1) times
    64 units of weight 1 with biases 256 apart, so the accumulators sweep [-8320, 8191] and
    the requantization (multiplier ~0.0051, shift -7) hits many ties. The output scale is
    fixed; `zero_point` and `bias_offset` (added to every bias) move the integer range."""
    s_in, s_w, s_out = 0.05, 0.0102, 0.0995
    units = 64
    bias = (256 * (np.arange(units) - units // 2) + bias_offset).astype(np.int32)
    tensors = [Tensor("x", (256, 1), "int8", np.array([s_in], np.float32), np.zeros(1, np.int64)),
               Tensor("w", (units, 1), "int8", np.array([s_w], np.float32),
                      np.zeros(1, np.int64), 0, np.ones((units, 1), np.int8)),
               Tensor("b", (units,), "int32", np.array([s_in * s_w], np.float32),
                      np.zeros(1, np.int64), 0, bias),
               Tensor("logits", (256, units), "int8", np.array([s_out], np.float32),
                      np.array([zero_point], np.int64))]
    op = Op("FULLY_CONNECTED", [0, 1, 2], [3], {"fused_activation_function": "NONE"})
    return Model(tensors, [op], [0], [3])


def _ruy_requantize(acc: np.ndarray, multiplier: int, shift: int) -> np.ndarray:
    """Requantization as ruy's x86 kernels do it: both rounding steps round ties toward
    +infinity ((acc * M + 2^30) >> 31, then (x + 2^(r-1)) >> r). TFLM rounds them away from
    zero (edgeq.intmath.multiply_by_quantized_multiplier)."""
    x = (acc.astype(np.int64) * (1 << max(shift, 0)) * multiplier + (1 << 30)) >> 31
    right = max(-shift, 0)
    return (x + (1 << right >> 1)) >> right if right else x


def _tflm_and_litert(model: Model, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    data = write_model(model)
    tflm = tflm_interpreter(data, 1 << 16)
    tflm.set_input(x, 0)
    tflm.invoke()
    litert = litert_interpreter(data)
    litert.set_tensor(litert.get_input_details()[0]["index"], x)
    litert.invoke()
    expected = tflm.get_output(0)
    np.testing.assert_array_equal(interp.run(read_model(data), x)[0], expected)
    return expected.astype(int), litert.get_tensor(litert.get_output_details()[0]["index"]).astype(int)


def test_litert_rounds_negative_ties_up_in_fully_connected():
    """Why LiteRT is not always TFLM's equal on a classifier head, and how edgeq avoids it.

    LiteRT (x86, builtin kernels) runs int8 FULLY_CONNECTED through cpu_backend_gemm into ruy,
    whose kernels round the requantization ties toward +infinity; TFLM's reference kernels
    round them away from zero. A negative value on a tie therefore comes out 1 LSB higher in
    LiteRT. Behind a ReLU the difference vanishes (negatives clamp to the zero point); with
    the output zero point at -128 it vanishes too (every negative requantized value clamps to
    -128), which is how edgeq stores softmax inputs (edgeq.learn.tiesafe)."""
    x = np.arange(-128, 128, dtype=np.int8).reshape(256, 1)
    zero_point = -6
    model = _fc_head(zero_point, 0)
    tflm, litert = _tflm_and_litert(model, x)
    diff = litert - tflm
    assert set(np.unique(diff)) == {0, 1} and (diff == 1).sum() >= 20
    assert np.all(tflm[diff == 1] <= zero_point)  # only negative values round differently
    # LiteRT is exactly the round-ties-up requantization.
    w, b, out = model.tensors[1:]
    acc = x.astype(np.int64) + b.data[None, :].astype(np.int64)
    multiplier, shift = intmath.quantize_multiplier(
        np.float64(model.tensors[0].scale[0]) * np.float64(w.scale[0]) / np.float64(out.scale[0]))
    np.testing.assert_array_equal(
        litert, np.clip(_ruy_requantize(acc, multiplier, shift) + zero_point, -128, 127))
    # The same head with zero point -128 (the bias carries the shift instead): identical.
    shift_acc = round((zero_point + 128) / (multiplier * 2.0 ** (shift - 31)))
    tflm, litert = _tflm_and_litert(_fc_head(-128, shift_acc), x)
    np.testing.assert_array_equal(litert, tflm)
    assert (tflm > -128).mean() > 0.3  # not trivially all clamped


def _softmax_head_graph(activation: str = "NONE"):
    import tf_keras as k

    k.utils.set_random_seed(12)
    inputs = k.Input((6, 6, 2))
    x = k.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = k.layers.Flatten()(x)
    x = k.layers.Dense(5, activation=None if activation == "NONE" else "relu", name="logits")(x)
    x = k.layers.Reshape((5,))(x)
    outputs = k.layers.Softmax(name="probs")(x)
    return capture(k.Model(inputs, outputs))


def test_softmax_input_is_stored_with_zero_point_minus_128():
    from edgeq.learn import tiesafe

    graph = _softmax_head_graph()
    x = np.random.default_rng(13).normal(0, 1, (64, 6, 6, 2)).astype(np.float32)
    qgraph = quantize_minmax(graph, x, 8)
    scale, zp = qgraph.act["logits"]
    assert zp > -128 and qgraph.graph is graph  # the QuantizedGraph keeps the logical qparams
    model = to_tflite_model(qgraph)
    tensors = {t.name: t for t in model.tensors}
    (reshape,) = graph.consumers("logits")
    for name in ("logits", reshape.name):  # the reshape shares the stored qparams
        assert tensors[name].scale[0] == scale and tensors[name].zero_point[0] == -128
    assert tiesafe.plan(graph, qgraph.act)["logits"].mode == "softmax"  # no extra op
    offsets, steps = tiesafe.offsets(qgraph.layers["logits"].bias,
                                     qgraph.input_scale(graph.node("logits")),
                                     qgraph.layers["logits"].scales, scale, zp, uniform=True)
    assert np.all(offsets > 0) and np.all(steps == zp + 128)
    assert [op.kind for op in model.ops].count("ADD") == 0
    np.testing.assert_array_equal(tensors["logits/bias"].data,
                                  qgraph.quantized_bias("logits") + offsets)
    # The simulation applies the same offsets: sim == TFLM == interpreter == LiteRT.
    assert_sim_matches_tflm(qgraph, x, litert_lsb=0)
    # A fused ReLU clamps negatives anyway (and is not shift-invariant): stored as is.
    relu = quantize_minmax(_softmax_head_graph("relu"), x, 8)
    relu_model = to_tflite_model(relu)
    logits = next(t for t in relu_model.tensors if t.name == "logits")
    assert logits.zero_point[0] == relu.act["logits"][1]


# --------------------------------------------------------------------------- whole models


@pytest.fixture(scope="module")
def vww(vww_h5_path, coco_vww_dir):
    import tf_keras

    from edgeq.data import load_image_folder

    photos = load_image_folder(coco_vww_dir, (96, 96, 3), "rgb", 255.0)
    model = tf_keras.models.load_model(vww_h5_path, compile=False)
    calib = photos.by_prefix("train2017_").x[::4]  # 32 photos
    return capture(model), calib, photos.by_prefix("val2017_")


@pytest.fixture(scope="module")
def vww_bytes(vww):
    graph, calib, val = vww
    out = {}
    for bits in (8, 4):
        qgraph = quantize_minmax(graph, calib, bits)
        # LiteRT equals TFLM exactly: every requantization it rounds differently (negative
        # ties in ruy's GEMM) is behind a ReLU or, in the classifier head, clamped at the
        # logits' stored zero point -128 (edgeq.learn.tiesafe). Without it: 1 LSB at INT8, 2 LSB
        # at INT4 on these photos (the softmax doubles a 1-LSB logit difference).
        out[bits] = assert_sim_matches_tflm(qgraph, val.x, litert_lsb=0)
        if bits == 8:  # the float model gets 86.7% on these photos
            acc = np.mean(simulate(qgraph, val.x).argmax(axis=1) == val.y)
            assert acc >= 0.84, f"INT8 accuracy {acc:.1%}"
    return out


def test_vww_int8_and_int4_sim_equal_tflm(vww_bytes):
    assert set(vww_bytes) == {8, 4}


def test_vww_int4_is_about_half_the_size(vww_bytes):
    int8, int4 = (read_model(vww_bytes[b]) for b in (8, 4))
    # Weight payload (kernels + int32 biases) roughly halves ...
    assert int4.weight_bytes <= 0.55 * int8.weight_bytes
    # ... the file less so: per-channel float32 scales, int64 zero points (shared by the
    # writer, one vector per channel count) and int32 biases do not shrink. 0.597 measured
    # (256,832 and 153,216 bytes); 0.55 is out of reach for any file LiteRT loads (the
    # arithmetic is in edgeq/tflite/write.py: 0.557 with zero structure bytes).
    assert len(vww_bytes[4]) <= 0.60 * len(vww_bytes[8])
    assert len(vww_bytes[8]) < 260_000 and len(vww_bytes[4]) < 155_000


def _zoo_graph(name: str):
    import tf_keras

    from edgeq.learn.zoo import build_model, load_card

    tf_keras.utils.set_random_seed(5)
    model = build_model(load_card(name))
    _randomize_bn(model, seed=6)
    return capture(model)


@pytest.fixture(scope="module")
def fmnist_data():
    from edgeq.data import fashion_mnist

    train, test = fashion_mnist((32, 32, 1))
    return train.take(64), test.take(200)


@pytest.mark.parametrize("bits", [8, 4])
def test_fmnist_zoo_model_sim_equals_tflm(bits, fmnist_data):
    train, test = fmnist_data
    graph = _zoo_graph("fmnist")
    qgraph = quantize_minmax(graph, train.x[:64], bits)
    assert_sim_matches_tflm(qgraph, test.x, interp_samples=4, litert_lsb=1)


@pytest.mark.parametrize("bits", [8, 4])
def test_person_detect_zoo_model_sim_equals_tflm(bits, coco_vww_dir):
    from edgeq.data import load_image_folder

    photos = load_image_folder(coco_vww_dir, (96, 96, 1), "grayscale", 255.0)
    graph = _zoo_graph("person_detect")
    qgraph = quantize_minmax(graph, photos.by_prefix("train2017_").x[:32], bits)
    assert_sim_matches_tflm(qgraph, photos.x[:200], interp_samples=2, litert_lsb=1)
