"""Genie-D synthesis: the unfolded model taps the same BN inputs as Keras, optimisation lowers the
BN-statistics loss at least 10x, models without (trained) BN statistics are clear errors, and
the outputs are files every command reads. Genie-M on synthetic data: block errors below
min-max, and the result exports to a .tflite that TFLM runs exactly as edgeq's interpreter."""

from __future__ import annotations

import numpy as np
import pytest
from test_graph import _every_layer_model, _randomize_bn
from test_recon import _block_output_mse

from edgeq.data import load_npz
from edgeq.deploy import interp
from edgeq.deploy.runtimes import tflm_interpreter
from edgeq.errors import DataError
from edgeq.learn import synth
from edgeq.learn.export import bit_plan, to_tflite_model
from edgeq.learn.graph import capture
from edgeq.learn.quant import genie_m, ranges
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model


def _bn_layers(model):
    return [layer for layer in model.layers if type(layer).__name__ == "BatchNormalization"]


def _smooth_images(n, shape, seed=0):
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    h, w, c = shape
    low = rng.uniform(0, 1, (n, max(2, h // 4), max(2, w // 4), c)).astype(np.float32)
    return tf.image.resize(low, (h, w)).numpy()


def _set_bn_statistics(model, x):
    """BN statistics that images can reach: each BN's moving mean/variance are the moments of
    its input over x, with the earlier BN layers normalizing by batch statistics (training)."""
    import tensorflow as tf
    import tf_keras

    bns = _bn_layers(model)
    taps = tf_keras.Model(model.inputs, [b.input for b in bns])(x, training=True)
    for bn, tap in zip(bns, taps, strict=True):
        mean, var = tf.nn.moments(tap, list(range(len(tap.shape) - 1)))
        gamma, beta, _, _ = bn.get_weights()
        bn.set_weights([gamma, beta, mean.numpy(), var.numpy()])


@pytest.fixture(scope="module")
def fmnist_model():
    import tf_keras

    from edgeq.learn import zoo

    tf_keras.utils.set_random_seed(0)
    model = zoo.build_model(zoo.load_card("fmnist"))
    _set_bn_statistics(model, _smooth_images(64, (32, 32, 1)))
    return model


@pytest.mark.parametrize("version", [2, 3])
def test_unfolded_model_taps_what_keras_feeds_its_batchnorms(version):
    import importlib

    k = importlib.import_module("tf_keras" if version == 2 else "keras")
    model = _every_layer_model(k)
    _randomize_bn(model, seed=version)
    unfolded = synth.read_unfolded(model)
    bns = _bn_layers(model)
    assert [t.layer for t in unfolded.targets] == [b.name for b in bns]
    x = np.random.default_rng(1).uniform(0, 1, (4, 12, 12, 3)).astype(np.float32)
    ours = synth.bn_inputs(unfolded, x)
    theirs = k.Model(model.inputs, [b.input for b in bns])([x], training=False)
    for bn, want in zip(bns, theirs, strict=True):
        np.testing.assert_allclose(ours[bn.name].numpy(), np.asarray(want), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(unfolded.targets[bns.index(bn)].std ** 2,
                                   bn.get_weights()[-1], rtol=1e-5)
    swung = synth.bn_inputs(unfolded, x, swing_rng=_tf_rng())
    assert all(swung[b.name].shape == ours[b.name].shape for b in bns)


def _tf_rng():
    import tensorflow as tf

    return tf.random.Generator.from_seed(0)


def test_synthesis_lowers_the_bn_statistics_loss_tenfold(fmnist_model):
    synthesizer = synth.Synthesizer(fmnist_model, width=16)
    result = synthesizer.batch(16, 60, seed=0)
    start, end = result.losses[0], min(result.losses[-5:])
    assert end <= start / 10, (start, end)
    assert result.x.shape == (16, 32, 32, 1) and result.x.dtype == np.float32
    assert result.x.min() >= 0.0 and result.x.max() <= 1.0 and result.x.std() > 0.01
    # Different seeds give different images, the same seed the same ones.
    again = synthesizer.batch(16, 3, seed=5).x
    assert not np.allclose(again, result.x)
    np.testing.assert_array_equal(again, synthesizer.batch(16, 3, seed=5).x)


def test_synthesize_batches_and_counts_progress(fmnist_model):
    ticks = []
    x = synth.synthesize(fmnist_model, n=8, batch_size=4, iterations=2,
                         progress=lambda done, total: ticks.append((done, total)), width=8)
    assert x.shape == (8, 32, 32, 1)
    assert ticks[-1] == (4, 4) and len(ticks) == 4


def test_vww_smoke(vww_h5_path, tmp_path):
    from edgeq.learn.modelio import load_keras_model

    model = load_keras_model(vww_h5_path).model
    x = synth.synthesize(model, n=4, batch_size=4, iterations=2, width=8)
    assert x.shape == (4, 96, 96, 3) and np.isfinite(x).all()
    assert 0.0 <= x.min() and x.max() <= 1.0
    path = synth.save_npz(x, tmp_path / "synthetic.npz")
    ds = load_npz(path, (96, 96, 3))
    np.testing.assert_array_equal(ds.x, x)
    png = synth.preview_png(x, tmp_path / "preview.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_models_without_batchnorm_statistics_are_clear_errors():
    import tf_keras

    inputs = tf_keras.Input((8, 8, 1))
    y = tf_keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    plain = tf_keras.Model(inputs, tf_keras.layers.Flatten()(y), name="plain")
    with pytest.raises(DataError, match="no BatchNormalization layer") as err:
        synth.synthesize(plain, n=2, iterations=1)
    assert "--data" in err.value.hint
    z = tf_keras.layers.BatchNormalization()(tf_keras.layers.Conv2D(4, 3)(inputs))
    fresh = tf_keras.Model(inputs, z, name="fresh")
    with pytest.raises(DataError, match="initial statistics"):
        synth.synthesize(fresh, n=2, iterations=1)


def test_bad_arguments_and_outputs(fmnist_model, tmp_path):
    with pytest.raises(DataError, match="iterations"):
        synth.synthesize(fmnist_model, n=4, iterations=0)
    with pytest.raises(DataError, match="input range"):
        synth.Synthesizer(fmnist_model, input_range=(1.0, 1.0))
    with pytest.raises(DataError, match="NaN"):
        synth.save_npz(np.full((1, 2, 2, 1), np.nan, np.float32), tmp_path / "bad.npz")
    assert not (tmp_path / "bad.npz").exists()


def test_genie_m_on_synthetic_data_beats_minmax_and_exports_exactly():
    import tf_keras

    tf_keras.utils.set_random_seed(4)
    model = _every_layer_model(tf_keras)
    _set_bn_statistics(model, _smooth_images(64, (12, 12, 3), seed=4))
    # A dead channel (gamma ~ 0, as training leaves some): its folded weight scale is tiny,
    # which once made the bias grid's gradient overflow to NaN.
    bn_pw = _bn_layers(model)[3]
    gamma, beta, mean, var = bn_pw.get_weights()
    gamma[0], beta[0] = 1e-25, 0.5
    bn_pw.set_weights([gamma, beta, mean, var])
    x = synth.synthesize(model, n=64, batch_size=64, iterations=40, width=16)
    graph = capture(model)
    plan = bit_plan(graph, 4)
    minmax = ranges.quantize_ranges(graph, x, plan, "minmax", "minmax")
    start = ranges.quantize_ranges(graph, x, plan, "mse", "minmax")
    result = genie_m.genie_m(start, x, graph.blocks, minmax.layers,
                             genie_m.GenieMConfig(iters=80))
    low_bit = [b for b in result.blocks if any(plan.get(n, 8) < 8 for n in b.nodes)]
    assert low_bit
    assert sum(r.error_final for r in low_bit) < 0.9 * sum(r.error_minmax for r in low_bit)
    assert any(r.kept == "reconstructed" for r in low_bit)
    assert not result.warnings and not any("NaN" in r.note for r in result.blocks)
    # Independently of the engine's own bookkeeping, in the bit-exact simulated model: the
    # low-bit blocks' outputs are closer to the float model's than with min-max weights.
    after, before = _block_output_mse(result.qgraph, x), _block_output_mse(minmax, x)
    outs = [r.nodes[-1] for r in low_bit]
    assert sum(after[o] for o in outs) < sum(before[o] for o in outs), (after, before)

    model_bytes = write_model(to_tflite_model(result.qgraph))
    ir = read_model(model_bytes)
    q = interp.quantize_input(ir.input_tensors[0], x[:8])
    ours = interp.run_batch(ir, q)[0]
    tflm = tflm_interpreter(model_bytes, 1 << 20)
    for i in range(len(q)):
        tflm.set_input(q[i:i + 1], 0)
        tflm.invoke()
        np.testing.assert_array_equal(tflm.get_output(0)[0], ours[i])


def test_genie_is_a_method_of_the_quantize_facade():
    import tf_keras as keras

    from edgeq.learn.quantize import METHODS, quantize

    assert "genie" in METHODS
    inp = keras.Input((8, 8, 1))
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="first")(inp)
    h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="middle")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(2, name="last")(h))
    x = np.random.default_rng(0).random((32, 8, 8, 1), np.float32)
    _, report = quantize(model, x, "genie", 4, iters=10, progress=False)
    assert report.method == "genie" and report.plan == {"first": 8, "middle": 4, "last": 8}
