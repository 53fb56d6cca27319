"""Quantization Guided Training on a tiny model: the regularizer and its schedule, the distance to
the grid (falls with the regularizer, not without), resume from a checkpoint, the bottleneck
ranking, export through edgeq's writer, and the MirroredStrategy path."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgeq import intmath
from edgeq.data import Dataset
from edgeq.errors import DataError
from edgeq.learn.graph import capture
from edgeq.learn.qgt import bottlenecks, regularizer
from edgeq.learn.qgt.training import train_qgt

TINY = textwrap.dedent("""
    import numpy as np
    import tf_keras as keras

    def tiny_model(seed=0):
        keras.utils.set_random_seed(seed)
        i = keras.Input((8, 8, 1))
        x = keras.layers.Conv2D(8, 3, padding="same")(i)
        x = keras.layers.BatchNormalization()(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(12, 1, activation="relu")(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        x = keras.layers.Dense(16, activation="relu")(x)
        o = keras.layers.Dense(4, activation="softmax")(x)
        return keras.Model(i, o)

    def tiny_data(n=256, seed=0):
        # Four textures (flat, rows, columns, checkerboard) in noise: learnable by conv + pool.
        rng = np.random.default_rng(seed)
        r, c = np.indices((8, 8))
        patterns = np.stack([np.ones((8, 8)), (-1.0) ** r, (-1.0) ** c, (-1.0) ** (r + c)])
        y = rng.integers(0, 4, n)
        x = patterns[y] + 0.5 * rng.normal(size=(n, 8, 8))
        return x[..., None].astype(np.float32), y.astype(np.int64)
""")
exec(TINY)  # the subprocess test below builds the same model and data


@pytest.fixture(scope="module")
def data():
    x, y = tiny_data()  # noqa: F821 (defined by exec above)
    return Dataset(x, y, list("abcd"))


def fresh_model():
    return tiny_model()  # noqa: F821


def initial_distance(model, bits):
    graph = capture(model)
    plan = {n.name: bits for n in graph.weighted_nodes}
    dist = [regularizer.grid_distance(n.weights["kernel"], regularizer.estimate_scales(n, bits), n, bits)
            for n in graph.weighted_nodes]
    return float(np.concatenate([d.ravel() for d in dist]).mean()), plan


# --------------------------------------------------------------------------- pieces


def test_schedule_starts_at_zero_and_rises_to_strength():
    s = regularizer.Schedule(2.0, start=0.2, end=0.6)
    values = [s(p) for p in np.linspace(0, 1, 21)]
    assert values[0] == 0 and s(0.2) == 0 and s(0.6) == 2.0 and s(1.0) == 2.0
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))
    assert 0 < s(0.4) < 2.0
    with pytest.raises(DataError, match="use one of"):
        regularizer.Schedule(1.0, ramp="step")
    with pytest.raises(DataError, match="regularizer"):
        regularizer.check_choice("regularizer", "bin", regularizer.REGULARIZERS)


def test_penalty_is_the_squared_distance_and_pulls_toward_the_nearest_point():
    import tensorflow as tf

    rng = np.random.default_rng(1)
    u = rng.uniform(-3.5, 2.5, size=(64, 4))  # includes values beyond the 2-bit range [-2, 1]
    scale = np.float32(0.05)
    w = tf.Variable((u * scale).astype(np.float32))
    with tf.GradientTape() as tape:
        penalty = regularizer.layer_penalty(w, scale, 2, "l2grid")
    q = np.clip(intmath.round_half_away(u), -2, 1)
    np.testing.assert_allclose(float(penalty), np.mean((u - q) ** 2), rtol=1e-4)
    step = -tape.gradient(penalty, w).numpy()  # descent direction
    moving = np.abs(u - q) > 1e-3
    assert np.all(np.sign(step[moving]) == np.sign((q - u)[moving]))
    # The periodic form agrees near the grid and is zero on it.
    on = tf.constant((q * scale).astype(np.float32))
    assert float(regularizer.layer_penalty(on, scale, 2, "sin2")) < 1e-8
    assert float(regularizer.layer_penalty(w, scale, 2, "none")) == 0.0


# --------------------------------------------------------------------------- training


def test_decoupled_pull_moves_each_weight_toward_its_grid_point():
    import tensorflow as tf

    rng = np.random.default_rng(2)
    u = rng.uniform(-9.5, 8.5, size=(3, 3, 2, 5))
    scale = np.full((1, 1, 1, 5), 0.02, np.float32)
    w = tf.constant((u * scale).astype(np.float32))
    q = np.clip(intmath.round_half_away(u), -8, 7) * scale
    np.testing.assert_allclose(regularizer.grid_pull(w, scale, 4).numpy(), w.numpy() - q, atol=1e-6)
    assert not np.any(regularizer.grid_pull(w, scale, 4, "none").numpy())


def test_distance_to_grid_falls_with_the_regularizer_and_not_without(data):
    start, _ = initial_distance(fresh_model(), 2)
    runs = {}
    for form, pull, strength in (("l2grid", "decoupled", 0.2), ("none", "decoupled", 0.2),
                                 ("l2grid", "gradient", 2.0)):
        runs[form, pull] = train_qgt(fresh_model(), data, data, bits=2, epochs=3,
                                     batch_size=16, learning_rate=1e-2, regularizer=form,
                                     pull=pull, schedule=regularizer.Schedule(strength, 0.0, 0.3),
                                     edge_bits=2)
    with_reg = [h["grid_distance_lsb"] for h in runs["l2grid", "decoupled"].history]
    without = [h["grid_distance_lsb"] for h in runs["none", "decoupled"].history]
    in_loss = [h["grid_distance_lsb"] for h in runs["l2grid", "gradient"].history]
    assert 0.15 < start < 0.35  # weights off the grid to begin with (uniform: 0.25)
    assert with_reg[-1] < 0.1 * start and with_reg[-1] < with_reg[0]
    assert in_loss[-1] < 0.6 * start
    assert without[-1] > 0.8 * start
    runs["l2grid"] = runs["l2grid", "decoupled"]
    assert runs["l2grid"].history[-1]["regularizer"] < runs["l2grid"].history[0]["regularizer"]
    # The task is still learned while the weights settle, and the result reports its grid.
    losses = [h["task_loss"] for h in runs["l2grid"].history]
    assert losses[-1] < losses[0]
    assert runs["l2grid"].grid_distance() == pytest.approx(with_reg[-1])


def test_resumed_training_continues_from_its_checkpoint(data, tmp_path):
    opts = dict(bits=4, epochs=2, batch_size=32, learning_rate=3e-3, strength=0.1,
                rescale_every=5, seed=3, ste_start=0.5)  # both phases, across the resume
    whole = train_qgt(fresh_model(), data, data, **opts)
    first = train_qgt(fresh_model(), data, data, checkpoint_dir=tmp_path, stop_after_steps=11,
                      **opts)
    assert first.steps == 11 and not first.finished
    state = json.loads((tmp_path / "qgt.json").read_text())
    assert state["step"] == 11 and state["epoch_sums"][2] == 3  # 3 steps into epoch 2
    resumed = train_qgt(fresh_model(), data, data, checkpoint_dir=tmp_path, **opts)
    assert resumed.resumed_from_step == 11 and resumed.steps == whole.steps == 16
    # Same batches, weights, grid steps and Adam moments: the same trajectory.
    for a, b in zip(whole.history, resumed.history, strict=True):
        assert b["task_loss"] == pytest.approx(a["task_loss"], rel=1e-4)
        assert b["grid_distance_lsb"] == pytest.approx(a["grid_distance_lsb"], rel=1e-3)
    for a, b in zip(whole.graph.weighted_nodes, resumed.graph.weighted_nodes, strict=True):
        np.testing.assert_allclose(b.weights["kernel"], a.weights["kernel"], atol=2e-5)
    # A resume with other settings is refused rather than mixing two runs.
    with pytest.raises(DataError, match="other settings"):
        train_qgt(fresh_model(), data, data, checkpoint_dir=tmp_path,
                  **{**opts, "batch_size": 64})


# --------------------------------------------------------------------------- bottlenecks


@pytest.fixture(scope="module")
def trained_weights(data):
    import tf_keras as keras

    model = fresh_model()
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(data.x, data.y, batch_size=32, epochs=8, verbose=0)
    return model.get_weights()


def test_bottleneck_ranking_puts_the_fragile_layer_first(data, trained_weights):
    model = fresh_model()
    model.set_weights(trained_weights)
    convs = [layer for layer in model.layers if layer.__class__.__name__ == "Conv2D"]
    fragile = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"][0]
    # Feature 0 of the dense layer is made dead (always 0), and its weight huge: the float
    # model is unchanged, but the per-tensor grid step of the dense layer swamps the rest.
    kernel, bias = convs[1].get_weights()
    bias[0] = -100.0
    convs[1].set_weights([kernel, bias])
    kernel, bias = fragile.get_weights()
    kernel[0, 0] = 40 * np.abs(kernel).max()
    fragile.set_weights([kernel, bias])
    rows = bottlenecks.find_bottlenecks(model, data, bits=2)
    assert rows[0]["name"] == fragile.name and rows[0]["rank"] == 1
    assert rows[0]["bottleneck"] and rows[0]["suggested_bits"] > 2
    assert rows[0]["loss_increase"] > 3 * rows[len(rows) // 2]["loss_increase"]
    # Ranked by the measured loss increase (the rank numbers themselves are just positions).
    losses = [r["loss_increase"] for r in rows]
    assert losses == sorted(losses, reverse=True)
    plan = bottlenecks.suggest_plan(rows)
    assert plan[fragile.name] == rows[0]["suggested_bits"]
    assert set(plan) == {n.name for n in capture(model).weighted_nodes}
    mixed = bottlenecks.mixed_plan(model, data, low_bits=2)
    names = [n.name for n in capture(model).weighted_nodes]
    assert mixed[names[0]] == mixed[names[-1]] == 8 and mixed[fragile.name] > 2
    assert sorted(mixed[n] for n in names[1:-1] if n != fragile.name) == [2, 2]
    # Without labels the loss is the divergence from the float outputs: same verdict.
    unlabelled = bottlenecks.find_bottlenecks(model, data.x, bits=2)
    assert unlabelled[0]["name"] == fragile.name and unlabelled[0]["accuracy_drop"] is None


# --------------------------------------------------------------------------- export


def test_finish_writes_the_learned_grid_through_edgeqs_writer(data):
    from edgeq.deploy import interp
    from edgeq.learn.qgt.training import finish
    from edgeq.learn.quant.sim import simulate
    from edgeq.tflite.read import read_model

    result = train_qgt(fresh_model(), data, None, bits=2, epochs=2, batch_size=32,
                       learning_rate=3e-3, schedule=regularizer.Schedule(0.3, 0.0, 0.2))
    tflite, qgraph = finish(result, data.x[:64], data, ste_steps=3)
    low = [name for name, bits in result.plan.items() if bits == 2]
    assert len(low) == 3  # all but the first and last layer
    model = read_model(tflite)
    assert json.loads(model.metadata["edgeq"])["bits"][low[0]] == 2
    kernel = next(t for t in model.tensors if t.name == f"{low[0]}/kernel")
    assert kernel.dtype == "int4" and kernel.data.min() >= -2 and kernel.data.max() <= 1
    # The .tflite is the simulated model, bit for bit (reference interpreter = TFLM).
    got = interp.run_batch(model, interp.quantize_input(model.input_tensors[0], data.x[:16]))[0]
    np.testing.assert_array_equal(got, simulate(qgraph, data.x[:16], integer=True))


# --------------------------------------------------------------------------- distribution


def test_mirrored_strategy_runs_on_cpu_and_matches_one_device(tmp_path):
    """Two virtual CPUs (set before TensorFlow starts, hence a fresh process): the mirrored
    run splits each batch over 2 replicas and must reach the same weights as one device."""
    script = TINY + textwrap.dedent("""
        import json, sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from edgeq.data import Dataset
        from edgeq.learn.qgt.training import train_qgt
        x, y = tiny_data(128)
        ds = Dataset(x, y, list("abcd"))
        opts = dict(bits=2, epochs=1, batch_size=32, learning_rate=3e-3, strength=0.2)
        one = train_qgt(tiny_model(), ds, None, **opts)
        two = train_qgt(tiny_model(), ds, None, distribute=tf.distribute.MirroredStrategy(
            ["/cpu:0", "/cpu:1"]), **opts)
        named = train_qgt(tiny_model(), ds, None, distribute="mirrored", **opts)
        diff = max(float(abs(a.weights["kernel"] - b.weights["kernel"]).max())
                   for a, b in zip(one.graph.weighted_nodes, two.graph.weighted_nodes))
        print(json.dumps({"replicas": two.config["replicas"], "diff": diff,
                          "named_steps": named.steps, "steps": two.steps,
                          "loss": [one.history[0]["task_loss"], two.history[0]["task_loss"]]}))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=240)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["steps"] == report["named_steps"] == 4
    assert report["diff"] < 1e-4
    assert report["loss"][1] == pytest.approx(report["loss"][0], rel=1e-4)


def test_multiworker_without_tf_config_is_a_clear_error(monkeypatch, data):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(DataError, match="TF_CONFIG"):
        train_qgt(fresh_model(), data, None, bits=4, epochs=1, batch_size=32,
                  distribute="multiworker")


def test_distillation_trains_on_the_starting_models_own_outputs(data):
    """loss='distill' needs no labels: the targets are the starting float model's outputs, so
    the first epoch's cross-entropy starts at their entropy and can only fall below it."""
    model = fresh_model()
    probs = np.asarray(model(data.x), np.float64)
    entropy = float(-np.mean(np.sum(probs * np.log(probs + 1e-12), axis=-1)))
    result = train_qgt(model, data.x, None, bits=4, epochs=1, batch_size=32, loss="distill",
                       strength=0.05)
    assert result.steps == len(data.x) // 32
    assert 0 < result.history[0]["task_loss"] <= entropy + 1e-3
    with pytest.raises(DataError, match="labelled"):
        train_qgt(model, data.x, None, bits=4, epochs=1, batch_size=32)


def test_dead_channels_get_a_floor_step_so_training_stays_finite():
    from edgeq.learn.graph import Node

    kernel = np.random.default_rng(0).normal(size=(1, 1, 4, 3)).astype(np.float32)
    kernel[..., 1] = 1e-31  # a BatchNorm-folded channel with γ ≈ 0
    node = Node("pw", "conv", [], {}, {"kernel": kernel, "bias": np.zeros(3, np.float32)})
    for mode in regularizer.SCALE_MODES[:2]:
        steps = regularizer.estimate_scales(node, 2, mode)
        assert steps[1] >= regularizer.STEP_FLOOR * steps.max() and np.all(np.isfinite(steps))


def test_a_diverging_training_is_a_clear_error(data):
    with pytest.raises(DataError, match="diverged"):
        train_qgt(fresh_model(), data, bits=2, epochs=2, batch_size=64, learning_rate=1e12,
                  ste_start=0.0)
