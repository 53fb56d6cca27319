"""The memory planner's streamed stages, joint placement and timeline, on small hand-built
graphs whose plans are worked out by hand below (numpy only, so that the mutation run of
edgeq/deploy/plan.py can run them: tests/test_stream.py builds its chains with Keras)."""

from __future__ import annotations

import numpy as np

from edgeq.deploy.plan import ARENA, CONSTANT, Buffer, MemoryPlan, _place, live_bytes, plan_memory
from edgeq.deploy.stream import Stage
from edgeq.tflite.model import Model, Op, Tensor


def _act(name, shape):
    return Tensor(name, tuple(shape), "int8", np.array([0.05], np.float32), np.array([0]))


def _chain(shapes, kinds=None) -> Model:
    """t0 -> op0 -> t1 -> op1 -> ... : op i reads t_i (twice for an ADD) and writes t_(i+1)."""
    tensors = [_act(f"t{i}", s) for i, s in enumerate(shapes)]
    kinds = kinds or ["MAX_POOL_2D"] * (len(shapes) - 1)
    ops = [Op(k, [i, i] if k == "ADD" else [i], [i + 1]) for i, k in enumerate(kinds)]
    return Model(tensors, ops, [0], [len(shapes) - 1])


def _spans(plan: MemoryPlan) -> dict[int, tuple[int, int, int]]:
    return {b.root: (b.size, b.first, b.last) for b in plan.buffers}


# (1, 8, 2, 8) int8: 128 bytes, 8 rows of 16 bytes (rows are axis 1, not axis 2)
WHOLE = (1, 8, 2, 8)
HALF = (1, 4, 2, 8)


def test_a_streamed_stage_holds_windows_through_the_stage_and_its_io_around_it():
    # op0 | stage: op1, op2, op3 | op4; the stage reads t1 whole and writes t4 whole; its inner
    # tensors t2, t3 keep windows of 3 and 2 rows (48 and 32 bytes)
    model = _chain([WHOLE] * 6)
    stage = Stage(ops=[1, 2, 3], input=1, output=4, band=1, windows={2: 3, 3: 2})
    plan = plan_memory(model, None, stage)
    plan.check()
    assert _spans(plan) == {
        0: (128, 0, 0),  # graph input, read by op0
        1: (128, 0, 3),  # written by op0, read by op1, held to the stage's last op
        2: (48, 1, 3), 3: (32, 1, 3),  # windows: the whole stage
        4: (128, 1, 4),  # the stage's output: from the stage's first op to its reader op4
        5: (128, 4, 5),  # graph output
    }
    assert all(type(b.size) is int and b.after is None for b in plan.buffers)
    # ops 1-3 hold t1, t2, t3, t4: 128 + 48 + 32 + 128, and best fit reaches that
    assert plan.arena_size == 336 and type(plan.arena_size) is int
    # the bound counts each op's own operands: op0 and op4 hold two whole tensors
    assert plan.lower_bound == 256
    assert live_bytes(plan, 6) == [256, 336, 336, 336, 256, 128]
    assert live_bytes(plan, 2) == [256, 336] and live_bytes(plan, 0) == []
    by_root = {b.root: b for b in plan.buffers}
    assert all(plan.location[t] == (ARENA, by_root[t].offset) for t in range(6))
    # unstreamed, every tensor lives from its writer to its reader: two at a time
    plain = plan_memory(model)
    assert _spans(plain) == {0: (128, 0, 0), 1: (128, 0, 1), 2: (128, 1, 2), 3: (128, 2, 3),
                             4: (128, 3, 4), 5: (128, 4, 5)}
    assert plain.arena_size == plain.lower_bound == 256
    assert live_bytes(plain, 6) == [256, 256, 256, 256, 256, 128]


def test_a_stage_at_the_start_takes_the_graph_input_and_scratch_counts():
    model = _chain([WHOLE, WHOLE, WHOLE, HALF])
    stage = Stage(ops=[0, 1], input=0, output=2, band=2, windows={1: 5})
    plan = plan_memory(model, {1: 20, 2: 0}, stage)  # 20 bytes -> 32 aligned; 0: no buffer
    plan.check()
    assert _spans(plan) == {0: (128, 0, 1), 1: (80, 0, 1), 2: (128, 0, 2), 3: (64, 2, 3),
                            -2: (32, 1, 1)}
    # during op1, t0, t1, t2 and op1's scratch are alive: 128 + 80 + 128 + 32; the bound
    # counts op1's operands and scratch only (80 + 128 + 32)
    assert plan.arena_size == 368 and plan.lower_bound == 240
    assert set(plan.scratch) == {1}
    assert plan.scratch[1] == {b.root: b for b in plan.buffers}[-2].offset
    assert live_bytes(plan, 3) == [336, 368, 192]


def test_the_output_over_the_input_sits_at_its_start_with_the_rest_right_after():
    # stage op1, op2 reads t1 (128 bytes) and writes t3 (64 bytes) over t1's dead rows: t1's
    # storage is t3's buffer plus a 64-byte tail right after it, alive through the stage
    model = _chain([WHOLE, WHOLE, HALF, HALF, HALF])
    stage = Stage(ops=[1, 2], input=1, output=3, band=1, windows={2: 2},
                  output_in_input=True)
    plan = plan_memory(model, None, stage)
    plan.check()
    assert _spans(plan) == {0: (128, 0, 0), 1: (64, 0, 2), 2: (32, 1, 2), 3: (64, 0, 3),
                            4: (64, 3, 4)}
    by_root = {b.root: b for b in plan.buffers}
    assert by_root[1].after == 3 and all(b.after is None for b in plan.buffers if b.root != 1)
    # at op0: t0, t1 = t3 + tail: 128 + 128. Largest first: t0 at 0; the pair (t3, then
    # t1's tail) at the lowest offset where both fit, 128 (t0 is alive at op0); t4 and t2 at 0
    offsets = {r: b.offset for r, b in by_root.items()}
    assert offsets == {0: 0, 3: 128, 1: 192, 4: 0, 2: 0}
    assert plan.arena_size == 256
    # t1 starts where t3 starts (the stage writes t3 over t1's first rows)
    assert plan.location[1] == plan.location[3] == (ARENA, 128)
    assert plan.location[2] == plan.location[4] == (ARENA, 0)
    # an output as large as the input: nothing to join, the two buffers stay apart
    model = _chain([WHOLE, WHOLE, WHOLE, WHOLE, HALF])
    plan = plan_memory(model, None, Stage(ops=[1, 2], input=1, output=3, band=1,
                                          windows={2: 2}, output_in_input=True))
    plan.check()
    assert all(b.after is None for b in plan.buffers)
    assert _spans(plan)[1] == (128, 0, 2) and _spans(plan)[3] == (128, 1, 3)
    assert plan.location[1] != plan.location[3]


def test_nothing_streamed_runs_in_place():
    # op0 | stage: op1 ADD, op2 | op3 ADD, op4, op5 ADD (output): each ADD's input dies with
    # it, so unstreamed all three run in place; streamed, only the one that touches no
    # streamed tensor (t2 is a window, t1 the stage input, t3 its output)
    model = _chain([WHOLE] * 7, ["MAX_POOL_2D", "ADD", "MAX_POOL_2D", "ADD", "MAX_POOL_2D",
                                 "ADD"])
    plain = plan_memory(model)
    assert plain.location[2] == plain.location[1]
    assert plain.location[4] == plain.location[3]
    assert plain.location[6] == plain.location[5]
    plan = plan_memory(model, None, Stage(ops=[1, 2], input=1, output=3, band=1,
                                          windows={2: 1}))
    plan.check()
    assert plan.location[2] != plan.location[1]
    assert plan.location[4] != plan.location[3]
    assert plan.location[6] == plan.location[5]
    assert set(_spans(plan)) == {0, 1, 2, 3, 4, 5}  # t6 shares t5's buffer
    assert _spans(plan)[5] == (128, 4, 6)


def _peak(plan: MemoryPlan, ops: int) -> int:
    """The most bytes alive at once, from the buffers' lifetimes: no arena can be smaller."""
    return max(sum(b.size for b in plan.buffers if b.first <= i <= b.last)
               for i in range(ops + 1))


def test_best_fit_reaches_the_peak_where_placing_in_tensor_order_does_not():
    # in (208 B) -> a (144 B) -> out (288 B): 352 B alive at op0, 432 B at op1. Placed in
    # tensor order, in and a take [0, 352) and out goes above: 640 B; largest first, out and
    # in share [0, 288) (never alive together) and a sits above them: 432 B
    model = _chain([(1, 208), (1, 144), (1, 288)])
    plan = plan_memory(model)
    plan.check()
    assert plan.arena_size == _peak(plan, 2) == 432
    # four 64-byte tensors in a chain: each new one fits exactly into the gap its
    # grandparent left, so two 64-byte slots suffice
    plan = plan_memory(_chain([(1, 64)] * 4))
    plan.check()
    assert plan.arena_size == _peak(plan, 3) == 128
    assert [b.offset for b in plan.buffers] == [0, 64, 0, 64]


def test_aliases_are_not_buffers_of_their_own_and_in_place_follows_the_root():
    # in -> pool -> a -> RESHAPE -> r -> ADD(r, r) -> s -> pool -> out: r is a's bytes, so the
    # ADD's input that dies is a, and s takes a's bytes
    t = [_act("in", (1, 64)), _act("a", (1, 64)), _act("r", (64, 1)), _act("s", (64, 1)),
         _act("out", (1, 32))]
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("RESHAPE", [1], [2]), Op("ADD", [2, 2], [3]),
           Op("MAX_POOL_2D", [3], [4])]
    plan = plan_memory(Model(t, ops, [0], [4]))
    plan.check()
    assert _spans(plan) == {0: (64, 0, 0), 1: (64, 0, 3), 4: (32, 3, 4)}
    assert plan.location[1] == plan.location[2] == plan.location[3] != plan.location[0]
    assert plan.arena_size == 128


def test_in_place_needs_the_same_bytes_and_takes_the_input_that_dies():
    # an int16 -> int8 QUANTIZE writes half the bytes it reads: not over its input
    t = [_act("in", (1, 64)), Tensor("w", (1, 64), "int16", np.array([0.05], np.float32),
                                     np.array([0])), _act("q", (1, 64)), _act("out", (1, 8))]
    ops = [Op("DEQUANTIZE", [0], [1]), Op("QUANTIZE", [1], [2]), Op("MAX_POOL_2D", [2], [3])]
    plan = plan_memory(Model(t, ops, [0], [3]))
    plan.check()
    assert _spans(plan) == {0: (64, 0, 0), 1: (128, 0, 1), 2: (64, 1, 2), 3: (16, 2, 3)}
    assert plan.location[2] != plan.location[1]
    # ADD(a, b) with a read again later: it writes over b, its second input
    t = [_act("in", (1, 64)), _act("a", (1, 64)), _act("b", (1, 64)), _act("c", (1, 64)),
         _act("out", (1, 64))]
    ops = [Op("MAX_POOL_2D", [0], [1]), Op("MAX_POOL_2D", [1], [2]), Op("ADD", [1, 2], [3]),
           Op("ADD", [3, 1], [4])]
    plan = plan_memory(Model(t, ops, [0], [4]))
    plan.check()
    assert plan.location[3] == plan.location[2] != plan.location[1]
    assert plan.location[4] == plan.location[3]  # and the last ADD over c, which dies there
    assert _spans(plan) == {0: (64, 0, 0), 1: (64, 0, 3), 2: (64, 1, 4)}


def test_constants_and_missing_inputs_take_no_arena_bytes():
    # CONV_2D(x, w, no bias) -> y; MUL(c, y) -> z: the constant c comes first, y must still
    # live to the MUL; the missing bias (-1) is not a tensor (and -1 is not the last tensor z)
    const = np.zeros(64, np.int8)
    t = [_act("x", (1, 64)), Tensor("w", (1, 64), "int8", data=const), _act("y", (1, 64)),
         Tensor("c", (1, 64), "int8", data=const), _act("z", (1, 64))]
    ops = [Op("CONV_2D", [0, 1, -1], [2]), Op("MUL", [3, 2], [4])]
    plan = plan_memory(Model(t, ops, [0], [4]))
    plan.check()
    assert _spans(plan) == {0: (64, 0, 0), 2: (64, 0, 1), 4: (64, 1, 2)}
    assert plan.arena_size == plan.lower_bound == 128 and set(plan.location) == {0, 2, 4}
    # a graph whose only output is a RESHAPE of a constant: read in flash, no arena at all
    t = [Tensor("c", (1, 64), "int8", data=const), _act("flat", (64,))]
    plan = plan_memory(Model(t, [Op("RESHAPE", [0], [1])], [], [1]))
    assert plan.location == {1: (CONSTANT, 0)}
    assert plan.buffers == [] and plan.arena_size == 0 and plan.lower_bound == 0
    assert live_bytes(plan, 1) == [0]


def test_a_one_byte_scratch_takes_an_aligned_buffer():
    model = _chain([(1, 64)] * 3)
    plan = plan_memory(model, {0: 1, 1: 17})
    plan.check()
    assert _spans(plan)[-1] == (16, 0, 0) and _spans(plan)[-2] == (32, 1, 1)
    assert set(plan.scratch) == {0, 1}
    by_root = {b.root: b for b in plan.buffers}
    assert plan.scratch == {0: by_root[-1].offset, 1: by_root[-2].offset}
    # op0 holds in, t1 and 16 scratch bytes; op1 t1, out and 32
    assert plan.lower_bound == 160 and plan.arena_size == _peak(plan, 2) == 160


def test_a_reshaped_constant_beside_activations_leaves_them_planned():
    # flat = RESHAPE(c) is c's bytes in flash; out = ADD(x, flat) still gets its buffer
    t = [Tensor("c", (1, 64), "int8", data=np.zeros(64, np.int8)), _act("x", (1, 64)),
         _act("flat", (64, 1)), _act("out", (1, 64))]
    ops = [Op("RESHAPE", [0], [2]), Op("ADD", [1, 2], [3])]
    plan = plan_memory(Model(t, ops, [1], [3]))
    plan.check()
    assert plan.location[2] == (CONSTANT, 0)
    # the ADD writes over x, which dies with it
    assert _spans(plan) == {1: (64, 0, 2)} and plan.location[3] == plan.location[1]


def test_a_stage_over_the_graph_input_puts_the_output_first_at_offset_0():
    # stage op0, op1 reads the graph input t0 (128 B) and writes t2 (32 B) over its first
    # rows: the input's other 96 B are a tail right after t2, alive through the stage
    model = _chain([WHOLE, HALF, (1, 2, 2, 8), (1, 2, 2, 8)])
    stage = Stage(ops=[0, 1], input=0, output=2, band=1, windows={1: 2},
                  output_in_input=True)
    plan = plan_memory(model, None, stage)
    plan.check()
    assert _spans(plan) == {0: (96, 0, 1), 1: (32, 0, 1), 2: (32, 0, 2), 3: (32, 2, 3)}
    # op0 holds t0 (t2 + tail) and t1's window: 160 B, and largest first reaches it
    assert {b.root: b.offset for b in plan.buffers} == {2: 0, 0: 32, 1: 128, 3: 32}
    assert plan.arena_size == _peak(plan, 3) == 160
    assert plan.location[0] == plan.location[2] == (ARENA, 0)


def test_the_joint_placement_takes_the_lowest_start_where_both_parts_fit():
    # b1 (64 B, op0) at 0 and b2 (48 B, ops 0-5) at 64; the pair head (32 B, ops 1-4) + tail
    # (32 B, ops 1-2) fits exactly below b2, at 0 (b1 is dead by then): 112 B, the peak
    buffers = [Buffer(0, 64, 0, 0), Buffer(1, 48, 0, 5), Buffer(2, 32, 1, 4),
               Buffer(3, 32, 1, 2, after=2)]
    assert _place(buffers) == 112
    assert [b.offset for b in buffers] == [0, 64, 0, 32]
    MemoryPlan(112, buffers).check()
    # b2 (32 B) at 48 over the tail's bytes at start 0: largest first has to lift the pair
    # to 80 (144 B); longest-lived first (b2 at 0, the pair at 32, b1 at 32) gives 96 B, the
    # peak, and wins
    buffers = [Buffer(0, 48, 0, 0), Buffer(1, 32, 0, 5), Buffer(2, 32, 1, 4),
               Buffer(3, 32, 1, 2, after=2)]
    assert _place(buffers) == 96
    assert [b.offset for b in buffers] == [32, 0, 32, 64]
    MemoryPlan(96, buffers).check()
