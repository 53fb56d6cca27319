"""Mixed precision: the integer program against brute force, budgets (weight memory, BOPs), the
impossible-budget error, and the facade's mixed plan end to end."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from edgeq.errors import DataError
from edgeq.learn.graph import Graph, Node, capture
from edgeq.learn.quant import mixed
from edgeq.learn.quantize import quantize


def _dense_graph(sizes: list[int]) -> Graph:
    """Dense layers with the given weight counts (the program reads only sizes and MACs)."""
    nodes = [Node("in", "input", [], {}, {}, (1,))]
    for i, size in enumerate(sizes):
        nodes.append(Node(f"d{i}", "dense", [nodes[-1].name], {"activation": "NONE"},
                          {"kernel": np.ones((size, 1), np.float32),
                           "bias": np.zeros(1, np.float32)}, (1,)))
    return Graph(nodes, ["in"], [nodes[-1].name])


def _brute_force(graph, sens, budget, bops=None):
    names = list(sens)
    best = (np.inf, None)
    for combo in itertools.product(*(sens[n] for n in names)):
        plan = dict(zip(names, combo, strict=True))
        size = sum(mixed.layer_bytes(graph.node(n), b) for n, b in plan.items())
        ops = sum(mixed.layer_macs(graph.node(n)) * b * 8 for n, b in plan.items())
        if size > budget or (bops is not None and ops > bops):
            continue
        cost = sum(sens[n][b] for n, b in plan.items())
        if cost < best[0]:
            best = (cost, plan)
    return best


# three one-unit dense layers, parameters packed with the widest fields (values unknown): a
# 18-byte header (bases: the multiplier and shift) and a 32-bit bias each
PARAMS = 3 * (18 + 4)


def test_board_bytes_are_the_engines():
    """Budgets count what the engine stores: weights at their width (3 bits: a dense stream,
    rounded up to whole bytes), bias and requantization parameters (packed: measured field
    widths when given, else the widest)."""
    graph = _dense_graph([64, 128, 256])
    assert [mixed.layer_bytes(graph.node("d0"), b) for b in (8, 4, 3, 2)] == [86, 54, 46, 38]
    # a 12-bit bias: 2 bytes after the header
    assert mixed.layer_bytes(graph.node("d0"), 4, {("d0", 4): (12, 0, 0)}) == 32 + 18 + 2
    assert mixed.logical_bytes(graph.node("d0"), 3) == 24.0


def test_hand_checkable_plan():
    """Three layers of 64, 128 and 256 weights. All at 8 bits = 448 bytes (+ PARAMS); the
    budget of 320 bytes forces 128 bytes of savings: the 256-weight layer to 4 bits saves
    exactly 128 and is the cheapest way (sensitivity 1), better than 64- and 128-weight layers
    at 2 bits (saves 48 + 96 = 144 for 3 + 3)."""
    graph = _dense_graph([64, 128, 256])
    sens = {"d0": {8: 0.0, 4: 1.0, 2: 3.0}, "d1": {8: 0.0, 4: 2.0, 2: 3.0},
            "d2": {8: 0.0, 4: 1.0, 2: 10.0}}
    result = mixed.solve(graph, sens, budget_bytes=320 + PARAMS)
    assert result.plan == {"d0": 8, "d1": 8, "d2": 4}
    assert result.weight_bytes == 320 + PARAMS and result.objective == 1.0
    # A tighter budget: 256 bytes needs 192 saved; cheapest: d1 and d2 at 4 (64+128, cost 3).
    assert mixed.solve(graph, sens, budget_bytes=256 + PARAMS).plan == {"d0": 8, "d1": 4,
                                                                        "d2": 4}


@pytest.mark.parametrize("seed", range(6))
def test_integer_program_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    sizes = [int(s) * 4 for s in rng.integers(4, 80, size=5)]
    graph = _dense_graph(sizes)
    sens = {}
    for i in range(5):
        s2 = rng.uniform(0.5, 5)  # fewer bits never hurt less
        sens[f"d{i}"] = {8: 0.0, 4: s2 * rng.uniform(0.05, 0.6), 2: s2}
    full = sum(sizes)
    budget = float(rng.uniform(0.3, 0.8) * full) + 5 * PARAMS / 3  # + the parameters
    bops = None if seed % 2 else float(rng.uniform(0.4, 0.9) * full * 8 * 8)
    result = mixed.solve(graph, sens, budget, bops)
    best_cost, best_plan = _brute_force(graph, sens, budget, bops)
    assert result.weight_bytes <= budget
    if bops is not None:
        assert result.bops <= bops
    assert result.objective == pytest.approx(best_cost, abs=1e-9), (result.plan, best_plan)


def test_impossible_budget_names_the_smallest_possible():
    graph = _dense_graph([64, 128, 256])
    sens = {n: {8: 0.0, 4: 1.0, 2: 2.0} for n in ("d0", "d1", "d2")}
    with pytest.raises(DataError) as info:
        mixed.solve(graph, sens, budget_bytes=100)
    # smallest: every layer at 2 bits = 448 / 4 = 112 bytes, + 66 of parameters
    assert "smallest possible" in str(info.value) and "178 bytes" in str(info.value)


def test_edge_layers_stay_at_8_bits_by_default():
    graph = _dense_graph([64, 128, 256, 64])
    allowed = mixed.allowed_widths(graph)
    assert allowed["d0"] == allowed["d3"] == (8,) and allowed["d1"] == (8, 4, 3, 2)
    assert mixed.allowed_widths(graph, edge_bits=None)["d0"] == (8, 4, 3, 2)


@pytest.fixture(scope="module")
def tiny():
    import tf_keras

    tf_keras.utils.set_random_seed(11)
    L = tf_keras.layers
    inputs = tf_keras.Input((8, 8, 2))
    x = L.Conv2D(8, 3, activation="relu", name="c0")(inputs)
    x = L.Conv2D(16, 3, activation="relu", name="c1")(x)
    x = L.Conv2D(16, 3, activation="relu", name="c2")(x)
    x = L.Flatten()(x)
    outputs = L.Dense(3, activation="softmax", name="head")(x)
    model = tf_keras.Model(inputs, outputs)
    calib = np.random.default_rng(11).uniform(0, 1, (64, 8, 8, 2)).astype(np.float32)
    return capture(model), calib


def test_sensitivity_grows_as_bits_fall(tiny):
    graph, calib = tiny
    sens = mixed.sensitivity(graph, calib, mixed.allowed_widths(graph, edge_bits=None))
    for name, by_bits in sens.items():
        assert by_bits[8] <= by_bits[4] <= by_bits[2], (name, by_bits)
        assert by_bits[2] > 0


def test_facade_mixed_plan_within_budget(tiny):
    graph, calib = tiny
    full = sum(mixed.layer_bytes(n, 8) for n in graph.weighted_nodes)  # stored at 8 bits
    budget_kb = 0.5 * full / 1024
    qgraph, report = quantize(graph, calib, "minmax", "mixed", budget_kb=budget_kb,
                              progress=False)
    assert report.weight_bytes <= report.board_weight_bytes
    assert report.board_weight_bytes + report.board_param_bytes <= budget_kb * 1024
    assert report.mixed["plan"] == report.plan and min(report.plan.values()) < 8
    assert report.plan["c0"] == report.plan["head"] == 8
    assert {layer.bits for layer in qgraph.layers.values()} <= {8, 4}
    with pytest.raises(DataError, match="smallest possible"):
        quantize(graph, calib, "minmax", "mixed", budget_kb=0.01, progress=False)
    with pytest.raises(DataError, match="budget"):
        quantize(graph, calib, "minmax", "mixed", progress=False)
