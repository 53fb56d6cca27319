"""Reconstruction engines (edgeq.learn.quant.recon / adaquant) and the quantize() facade: block errors
below min-max, the exported .tflite bit-exact with TFLM (contracts 1 and 2), and bad input."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from test_graph import every_layer_case
from test_sim_export import assert_sim_matches_tflm

from edgeq.errors import DataError, EdgeqError
from edgeq.learn.export import bit_plan, to_tflite_model
from edgeq.learn.graph import capture, run_tf
from edgeq.learn.quant import adaquant, ranges, recon
from edgeq.learn.quant.sim import SimModel
from edgeq.learn.quantize import METHODS, quantize
from edgeq.tflite.read import read_model

ITERS = 250


def _small_mobilenet(k, seed):
    """conv → dw+pw → dw+pw → GAP → dense: three kinds of blocks in a few thousand weights."""
    k.utils.set_random_seed(seed)
    L = k.layers
    inputs = k.Input((10, 10, 3))
    x = L.Conv2D(8, 3, padding="same", name="conv")(inputs)
    x = L.BatchNormalization()(x)
    x = L.ReLU(6.0)(x)
    for i, width in enumerate((16, 16)):
        x = L.DepthwiseConv2D(3, strides=1 + i, padding="same", use_bias=False, name=f"dw{i}")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU(6.0)(x)
        x = L.Conv2D(width, 1, use_bias=False, name=f"pw{i}")(x)
        x = L.BatchNormalization()(x)
        x = L.ReLU()(x)
    x = L.GlobalAveragePooling2D()(x)
    outputs = L.Dense(5, activation="softmax", name="head")(x)
    model = k.Model(inputs, outputs, name=f"small{seed}")
    _normalize_bn(k, model, np.random.default_rng(seed).uniform(0, 1, (64, 10, 10, 3)), seed)
    return model


def _normalize_bn(k, model, x, seed):
    """BN statistics measured on `x` and random γ/β, so activations have the scale of a
    trained network (unit variance after each BN), not the tiny ones of random weights."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if type(layer).__name__ == "BatchNormalization":
            inputs = k.Model(model.inputs, layer.input).predict(x, verbose=0)
            axes = tuple(range(inputs.ndim - 1))
            n = inputs.shape[-1]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.3, n),
                               inputs.mean(axis=axes), inputs.var(axis=axes) + 1e-3])


@pytest.fixture(scope="module")
def every_layer():
    return every_layer_case(96)


def _block_output_mse(qgraph, x) -> dict[str, float]:
    """MSE of every tensor of the bit-exact simulated model (== TFLM) against the float model."""
    sim = SimModel(qgraph).tensors(x)
    ref = run_tf(qgraph.graph, x)
    return {name: float(np.mean((sim[name].numpy() - ref[name].numpy()) ** 2)) for name in ref}


@pytest.mark.parametrize("engine,seed", [("brecq", 0), ("brecq", 1), ("brecq", 2),
                                         ("adaround", 0), ("adaround", 1), ("adaquant", 0),
                                         ("adaquant", 1)])
def test_reconstruction_lowers_block_error_below_minmax(seed, engine):
    import tf_keras

    graph = capture(_small_mobilenet(tf_keras, seed))
    rng = np.random.default_rng(seed)
    calib = rng.uniform(0, 1, (64, 10, 10, 3)).astype(np.float32)
    plan = bit_plan(graph, 4, edge_bits=4)  # every layer at 4 bits, first and last too
    minmax = ranges.quantize_ranges(graph, calib, plan, "minmax", "minmax")
    start = ranges.quantize_ranges(graph, calib, plan, "mse", "minmax")
    if engine == "adaquant":
        res = adaquant.adaquant(start, calib, minmax.layers,
                                adaquant.AdaQuantConfig(iters=ITERS, seed=seed))
    else:
        blocks = graph.blocks if engine == "brecq" else recon.layer_blocks(graph)
        cfg = recon.ReconConfig(iters=ITERS, act_iters=20, seed=seed)
        res = recon.reconstruct(start, calib, blocks, minmax.layers, cfg)
    assert len(res.blocks) == (4 if engine == "brecq" else 6)
    # The engine's own measurement, on identical block inputs: the learned rounding is what
    # wins in most blocks (never worse than min-max holds by construction: it keeps the best).
    learned = [b for b in res.blocks if b.kept not in ("start", "minmax")]
    assert len(learned) >= len(res.blocks) - 1
    assert all(b.error_final < b.error_minmax for b in learned)
    assert sum(b.error_final for b in res.blocks) < 0.9 * sum(b.error_minmax for b in res.blocks)
    # Independently, in the bit-exact simulated model: every block's output (with all the
    # blocks before it quantized too) is closer to the float model than with min-max.
    after, before = _block_output_mse(res.qgraph, calib), _block_output_mse(minmax, calib)
    for block in graph.blocks:
        out = block.nodes[-1]
        assert after[out] < before[out], (out, after[out], before[out])


def test_fisher_weights_follow_the_output_gradient_and_change_the_rounding():
    import tf_keras

    graph = capture(_small_mobilenet(tf_keras, 5))
    calib = np.random.default_rng(5).uniform(0, 1, (48, 10, 10, 3)).astype(np.float32)
    plan = bit_plan(graph, 2, edge_bits=8)
    minmax = ranges.quantize_ranges(graph, calib, plan, "minmax", "minmax")
    start = ranges.quantize_ranges(graph, calib, plan, "mse", "minmax")
    # The weights of the first block: g²/mean(g²) + 1 has mean 2 exactly, and g (the gradient
    # of the KL to the float outputs) is far from uniform over a block's outputs.
    logits = recon._float_logits(graph, calib, 64)
    seen = []

    def record_weights(qg, walker, nodes, groups, record, result):
        if not seen:
            out = recon.block_outputs(qg, nodes, {e: walker.quant[e]
                                                  for e in walker.external_inputs(nodes)})
            seen.append(recon._fisher_weights(qg, walker, nodes, out, logits, 64))

    recon.walk_blocks(start, calib, graph.blocks, 64, record_weights)
    weights = seen[0].astype(np.float64)
    assert weights.min() >= 1.0 and abs(weights.mean() - 2.0) < 1e-3
    assert weights.std() > 0.3 and weights.max() > 4.0
    # The weights reach the loss: the same seed learns another rounding with them than without.
    runs = {}
    for fisher in (False, True):
        cfg = recon.ReconConfig(iters=ITERS, act_iters=0, fisher=fisher, seed=0)
        runs[fisher] = recon.reconstruct(start, calib, graph.blocks, minmax.layers, cfg).qgraph
    changed = [name for name in plan if not np.array_equal(runs[True].layers[name].qweight,
                                                         runs[False].layers[name].qweight)]
    assert changed, "Fisher weighting left every layer's rounding unchanged"


def _assert_sqnr_matches_the_simulated_model(graph, qgraph, calib, report):
    """The report's per-layer SQNR against one computed here from the bit-exact simulated model
    (== TFLM) and the float model, on the samples the report used."""
    from edgeq.learn.quantize import SQNR_SAMPLES, calibration_set

    x = calibration_set(graph, calib)[0][:SQNR_SAMPLES]
    sim, ref = SimModel(qgraph).tensors(x), run_tf(graph, x)
    for row in report.layers:
        f = ref[row["name"]].numpy().astype(np.float64)
        q = sim[row["name"]].numpy().astype(np.float64)
        expected = 10 * np.log10(np.sum(f * f) / np.sum((f - q) ** 2))
        # The report runs the simulated forward pass, this the integer one: they round a few
        # ties apart, which moves a 28 dB figure by about half a dB.
        assert abs(row["sqnr_db"] - expected) < 1.0, (row, expected)
        assert row["sqnr_db"] > 3.0, row  # a quantized layer still carries its signal


@pytest.mark.parametrize("method,bits", [("brecq", 4), ("adaquant", 4), ("mse", 8)])
def test_exported_tflite_keeps_contracts(every_layer, method, bits):
    graph, calib, test = every_layer
    qgraph, report = quantize(graph, calib, method, bits, iters=30, act_iters=20,
                              progress=False)
    assert report.method == method and len(report.layers) == len(graph.weighted_nodes)
    _assert_sqnr_matches_the_simulated_model(graph, qgraph, calib, report)
    assert_sim_matches_tflm(qgraph, test, interp_samples=10)


def test_two_bit_layers_are_int4_tensors_with_the_plan_in_metadata(every_layer):
    graph, calib, test = every_layer
    qgraph, report = quantize(graph, calib, "brecq", 2, iters=30, act_iters=0, progress=False)
    low = [n for n, b in report.plan.items() if b == 2]
    assert low and report.weight_bytes < report.stored_weight_bytes
    for name in low:  # 2-bit integers, stored as INT4
        assert qgraph.layers[name].bits == 4
        assert qgraph.layers[name].qweight.min() >= -2 and qgraph.layers[name].qweight.max() <= 1
    model_bytes = assert_sim_matches_tflm(qgraph, test, interp_samples=5)
    model = read_model(model_bytes)
    kernels = {t.name: t for t in model.tensors if t.name.endswith("/kernel")}
    assert all(kernels[f"{n}/kernel"].dtype == "int4" for n in low)
    meta = json.loads(to_tflite_model(qgraph).metadata["edgeq"])
    assert meta["bits"] == report.plan


def test_facade_report_and_progress(every_layer):
    graph, calib, _ = every_layer
    calls = []

    class Recorder(recon.NullProgress):
        def start(self, label, total):
            calls.append(("start", label, total))

        def advance(self, steps):
            calls.append(("advance", steps))

    qgraph, report = quantize(graph, calib, None, 4, iters=10, act_iters=0, progress=Recorder())
    assert report.method == "brecq"  # the default below 8 bits
    starts = [c for c in calls if c[0] == "start"]
    assert len(starts) == len(graph.blocks) and all(c[2] == 10 for c in starts)
    first, last = graph.weighted_nodes[0].name, graph.weighted_nodes[-1].name
    assert report.plan[first] == report.plan[last] == 8
    assert {r["name"] for r in report.layers} == set(report.plan)
    assert json.loads(json.dumps(report.to_dict()))["calibration_samples"] == len(calib)
    assert "brecq at 4 bits" in report.summary()
    _, report8 = quantize(graph, calib, None, 8, progress=False)
    assert report8.method == "minmax"


def test_unknown_method_lists_the_known_ones(every_layer):
    graph, calib, _ = every_layer
    with pytest.raises(EdgeqError) as info:
        quantize(graph, calib, "gptq", 4, progress=False)
    assert "gptq" in str(info.value)
    assert all(name in str(info.value) for name in METHODS)


def test_too_few_calibration_samples(every_layer):
    graph, calib, _ = every_layer
    with pytest.raises(DataError, match="only 7 calibration"):
        quantize(graph, calib[:7], "brecq", 4, progress=False)
    with pytest.warns(UserWarning, match="only 20 calibration samples"):
        _, report = quantize(graph, calib[:20], "adaround", 4, iters=5, act_iters=0,
                             progress=False)
    assert report.calibration_samples == 20 and "only 20" in report.warnings[0]
    with warnings.catch_warnings():  # min-max reconstructs nothing: nothing to overfit
        warnings.simplefilter("error")
        _, report = quantize(graph, calib[:20], "minmax", 4, progress=False)
    assert not report.warnings
    with pytest.raises(EdgeqError, match="bit width 5"):
        quantize(graph, calib, "minmax", 5, progress=False)


def test_nan_loss_falls_back_to_minmax_weights(every_layer, monkeypatch):
    graph, calib, _ = every_layer
    monkeypatch.setattr(recon, "_finite", lambda loss: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        qgraph, report = quantize(graph, calib, "brecq", 4, iters=5, act_iters=0,
                                  progress=False)
    assert any("NaN" in str(w.message) for w in caught)
    assert len(report.warnings) == len(graph.blocks)
    assert all(b["kept"] == "minmax" and "NaN" in b["note"] for b in report.blocks)
    minmax = ranges.quantize_ranges(graph, calib, report.plan, "minmax", "minmax")
    for name, layer in minmax.layers.items():
        np.testing.assert_array_equal(qgraph.layers[name].qweight, layer.qweight)


def test_three_bit_layers_are_int4_tensors_holding_three_bit_integers(every_layer):
    """The QuantizedGraph goes straight to edgeq's writer: 3-bit layers are INT4 tensors whose
    values use only the 3-bit range [-4, 3] (and most of it), the plan in the metadata, and the
    file runs in TFLM exactly as simulated."""
    graph, calib, test = every_layer
    qgraph, report = quantize(graph, calib, "adaround", 3, iters=5, act_iters=0, progress=False)
    low = [n for n, b in report.plan.items() if b == 3]
    weighted = [n.name for n in graph.weighted_nodes]
    assert low and report.plan[weighted[0]] == report.plan[weighted[-1]] == 8
    model_bytes = assert_sim_matches_tflm(qgraph, test, interp_samples=5)
    kernels = {t.name: t for t in read_model(model_bytes).tensors if t.name.endswith("/kernel")}
    for name in low:
        kernel = kernels[f"{name}/kernel"]
        assert kernel.dtype == "int4" and kernel.data.min() >= -4 and kernel.data.max() <= 3
        assert len(np.unique(kernel.data)) >= 6, name  # the grid is used, not collapsed
    assert json.loads(read_model(model_bytes).metadata["edgeq"])["bits"] == report.plan
