"""The static memory plan: no two live tensors share bytes, aliases and in-place ops share
storage, graph inputs and outputs live in the arena (inputs from the start to their last reader,
outputs from their producer to the end), and the MLPerf VWW model reaches the layer-by-layer
bound (55,296 bytes, its input included, against TFLM's 103,680)."""

from __future__ import annotations

import numpy as np
import opmodels
import pytest

from edgeq.deploy.plan import ALIGNMENT, ARENA, plan_memory
from edgeq.tflite.model import Model, Op, Tensor
from edgeq.tflite.read import read_model


def _act(name, shape):
    return Tensor(name, tuple(shape), "int8", np.array([0.05], np.float32), np.array([0]))


def _random_dag(rng: np.random.Generator, n_ops: int) -> Model:
    """A random graph of element-wise ops (ADD of two earlier tensors, QUANTIZE, RESHAPE) with
    tensors of random sizes: enough to exercise lifetimes, aliases and in-place reuse."""
    tensors = [_act("in", (1, int(rng.integers(1, 300))))]
    ops = []
    for i in range(n_ops):
        src = int(rng.integers(len(tensors)))
        size = tensors[src].num_elements
        kind = rng.choice(["ADD", "RESHAPE", "QUANTIZE", "NEW"])
        if kind == "QUANTIZE":  # int8 -> int8 requantization, element-wise: may run in place
            tensors.append(_act(f"t{i}", tensors[src].shape))
            ops.append(Op("QUANTIZE", [src], [len(tensors) - 1]))
        elif kind == "RESHAPE":
            tensors.append(_act(f"t{i}", (size, 1)))
            ops.append(Op("RESHAPE", [src], [len(tensors) - 1]))
        elif kind == "ADD":
            same = [j for j, t in enumerate(tensors) if t.num_elements == size]
            other = int(rng.choice(same))
            tensors.append(_act(f"t{i}", tensors[src].shape))
            if tensors[other].shape != tensors[src].shape:
                other = src
            ops.append(Op("ADD", [src, other], [len(tensors) - 1]))
        else:  # a shape-changing op with a fresh output (stands in for a conv)
            tensors.append(_act(f"t{i}", (1, int(rng.integers(1, 300)))))
            ops.append(Op("MAX_POOL_2D", [src], [len(tensors) - 1]))
    return Model(tensors, ops, [0], [len(tensors) - 1])


@pytest.mark.parametrize("seed", range(30))
def test_random_graphs_never_overlap_live_tensors(seed):
    rng = np.random.default_rng(seed)
    model = _random_dag(rng, int(rng.integers(2, 25)))
    plan = plan_memory(model)
    plan.check()
    assert plan.lower_bound <= plan.arena_size
    # Independently of the planner's own bookkeeping: replay the ops and check that no tensor
    # an op reads was overwritten since it was written.
    owner: dict[int, int] = {}  # arena byte -> tensor storage root whose bytes are there
    root = {}
    for op in model.ops:
        if op.kind == "RESHAPE":
            root[op.outputs[0]] = root.get(op.inputs[0], op.inputs[0])
    for t in model.inputs:  # the caller writes the inputs into the arena first
        where, offset = plan.location[t]
        assert where == ARENA
        for b in range(offset, offset + model.tensors[t].nbytes):
            owner[b] = root.get(t, t)
    for op in model.ops:
        for t in op.inputs:
            where, offset = plan.location[t]
            if where == ARENA:
                r = root.get(t, t)
                span = range(offset, offset + model.tensors[t].nbytes)
                assert all(owner.get(b) == r for b in span), f"seed {seed}: {t} clobbered"
        for t in op.outputs:
            where, offset = plan.location[t]
            if where == ARENA and op.kind != "RESHAPE":
                for b in range(offset, offset + model.tensors[t].nbytes):
                    owner[b] = root.get(t, t)
    for t in model.outputs:  # ... and reads the outputs after the last op
        where, offset = plan.location[t]
        span = range(offset, offset + model.tensors[t].nbytes)
        assert where == ARENA and all(owner.get(b) == root.get(t, t) for b in span), seed


def test_vww_reaches_the_layer_by_layer_bound(vww_int8_path):
    plan = plan_memory(read_model(vww_int8_path))
    plan.check()
    # first pointwise conv: 48x48x8 input + 48x48x16 output
    assert plan.lower_bound == 48 * 48 * 8 + 48 * 48 * 16 == 55_296
    assert plan.arena_size == 55_296 <= 56 * 1024
    assert all(b.offset % ALIGNMENT == 0 for b in plan.buffers)


def test_reshape_aliases_share_and_graph_io_live_in_the_arena():
    model = opmodels.conv_pool_fc(np.random.default_rng(0))
    plan = plan_memory(model)
    plan.check()
    reshape = next(op for op in model.ops if op.kind == "RESHAPE")
    assert plan.location[reshape.outputs[0]] == plan.location[reshape.inputs[0]]
    by_root = {b.root: b for b in plan.buffers}
    x, y = by_root[model.inputs[0]], by_root[model.outputs[0]]
    readers = [i for i, op in enumerate(model.ops) if model.inputs[0] in op.inputs]
    producer = next(i for i, op in enumerate(model.ops) if model.outputs[0] in op.outputs)
    assert (x.first, x.last) == (0, max(readers))
    assert (y.first, y.last) == (producer, len(model.ops))
    assert plan.location[model.inputs[0]] == (ARENA, x.offset)
    assert plan.location[model.outputs[0]] == (ARENA, y.offset)
    assert x.size >= model.tensors[model.inputs[0]].nbytes


def test_add_runs_in_place_when_its_input_dies():
    # in -> pool -> a ; a -> pool -> b ; c = a + b ; out = pool(c)
    t = [_act("in", (1, 64)), _act("a", (1, 64)), _act("b", (1, 64)), _act("c", (1, 64)),
         _act("out", (1, 8))]
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("MAX_POOL_2D", [1], [2]), Op("ADD", [1, 2], [3]),
           Op("MAX_POOL_2D", [3], [4])]
    plan = plan_memory(Model(t, ops, [0], [4]))
    plan.check()
    assert plan.location[3] in (plan.location[1], plan.location[2])
    assert plan.arena_size == 128


def test_several_inputs_each_have_their_own_arena_bytes():
    model = opmodels.add(np.random.default_rng(1))
    plan = plan_memory(model)
    plan.check()
    a, b = model.inputs
    (where_a, off_a), (where_b, off_b) = plan.location[a], plan.location[b]
    assert where_a == where_b == ARENA
    size = -(-model.tensors[a].nbytes // ALIGNMENT) * ALIGNMENT
    assert abs(off_a - off_b) >= size  # both alive at the start: never the same bytes
    # the ADD writes its output over one of its inputs, which die with it
    assert plan.location[model.outputs[0]] in (plan.location[a], plan.location[b])
    assert plan.arena_size == 2 * size


def test_quantize_runs_in_place_only_when_its_input_dies():
    # in -> pool -> a -> QUANTIZE -> b -> pool -> out: b takes a's bytes
    t = [_act("in", (1, 64)), _act("a", (1, 64)), _act("b", (1, 64)), _act("out", (1, 8))]
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("QUANTIZE", [1], [2]), Op("MAX_POOL_2D", [2], [3])]
    plan = plan_memory(Model(t, ops, [0], [3]))
    plan.check()
    # op 0 holds the input and a (64 + 64 bytes); b then takes a's bytes
    assert plan.location[2] == plan.location[1] and plan.arena_size == 128
    # a read again after the QUANTIZE: b needs bytes of its own
    t.append(_act("c", (1, 64)))
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("QUANTIZE", [1], [2]), Op("ADD", [1, 2], [4]),
           Op("MAX_POOL_2D", [4], [3])]
    plan = plan_memory(Model(t, ops, [0], [3]))
    plan.check()
    # a and b at op 2 (the ADD writes over one of them), the input and a at op 0
    assert plan.location[2] != plan.location[1] and plan.arena_size == 128


def test_an_output_reshaped_from_an_inner_tensor_lives_to_the_end():
    # in -> pool -> a -> RESHAPE -> out: a is the output's storage, so it lives to the end
    t = [_act("in", (1, 64)), _act("a", (1, 16)), _act("out", (16, 1))]
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("RESHAPE", [1], [2])]
    plan = plan_memory(Model(t, ops, [0], [2]))
    plan.check()
    assert plan.location[1] == plan.location[2] != plan.location[0]
    by_root = {b.root: b for b in plan.buffers}
    assert (by_root[1].first, by_root[1].last) == (0, 2) and plan.arena_size == 64 + 16


def test_check_refuses_overlapping_misaligned_and_oversized_plans():
    from edgeq.deploy.plan import Buffer, MemoryPlan

    good = MemoryPlan(64, [Buffer(0, 32, 0, 1, 0), Buffer(1, 32, 1, 2, 32),
                           Buffer(2, 32, 2, 3, 0)])  # 0 and 2 share bytes, never alive together
    good.check()
    for buffers in ([Buffer(0, 32, 0, 2, 0), Buffer(1, 32, 1, 3, 16)],  # alive together, overlap
                    [Buffer(0, 32, 0, 1, 8)],  # not aligned
                    [Buffer(0, 48, 0, 1, 32)],  # past the arena
                    [Buffer(0, 16, 0, 3, 0), Buffer(1, 16, 0, 1, 32), Buffer(2, 16, 2, 3, 0)],
                    [Buffer(0, 16, 0, 1, -16)]):
        with pytest.raises(AssertionError):
            MemoryPlan(64, buffers).check()
