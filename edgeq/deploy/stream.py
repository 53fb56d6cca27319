"""Row-streamed first stage: RAM below the layer-by-layer bound, bit-exact.

While activations are large (the first layers of a vision network), the engine can run a
chain of ops from the graph input a few output rows at a time instead of layer by layer, as
MCUNetV2's patch-based inference and StreamNet's stream buffers do, but without recomputing
any halo: each tensor inside the stage lives in a *window*, a buffer of the few rows its
readers still need. In every band the ops run in order, each computing the rows its readers
need next; before a window takes new rows, the rows no reader needs any more are dropped by
moving the kept ones to its front. The kernels are the ordinary ones: a band is the same
kernel call on fewer rows (`in_h`, `out_h` and the top padding `pad_h` of the band), so the
integers are the layer-by-layer ones.

Overlapped buffers: the stage's output may also take the bytes of the stage's input rows
that no op will read again (vMCU's idea), checked band by band here, so the image and the
stage's output need not both be whole at once.

`plan_stage(model, ops, band)` computes the schedule (windows, band calls, moves) in rows;
the memory planner (edgeq.deploy.plan) gives the windows their arena offsets and cgen
turns the schedule into a table that edgeq_invoke_in_place() walks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeq.tflite.model import Model, Op

# Ops a stage may hold: each output row depends on a band of input rows.
WINDOWED = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D")
ROWWISE = ("ADD",)  # output row r reads input row r (equal shapes)
STREAMABLE = WINDOWED + ROWWISE


@dataclass
class Call:
    """One band of one op: output rows [out_lo, out_hi), reading input rows from in_lo."""

    op: int
    out_lo: int
    out_hi: int
    in_rows: list[tuple[int, int, int]]  # per activation input: (first row read, rows given,
    # the first row its window holds then)
    out_base: int  # the first row the output's window holds
    pad_h: int  # the band's own top padding


@dataclass
class Move:
    """Drop a window's dead rows: rows [keep, keep + rows) of `tensor` move to its front."""

    tensor: int
    keep: int
    rows: int
    old_base: int  # the first row the window held before


@dataclass
class Stage:
    ops: list[int]  # op indices, in order: ops[0] reads the stage input
    input: int  # the stage's input tensor (whole)
    output: int  # the stage's output tensor (whole)
    band: int  # output rows per band
    windows: dict[int, int]  # tensor inside the stage -> rows its window holds
    steps: list = field(default_factory=list)  # Call | Move, in execution order
    output_in_input: bool = False  # the output may overwrite the input's dead rows

    def window_bytes(self, model: Model) -> dict[int, int]:
        return {t: rows * row_bytes(model, t) for t, rows in self.windows.items()}


def row_bytes(model: Model, t: int) -> int:
    shape = model.tensors[t].shape
    return int(shape[2] * shape[3])


def _geometry(model: Model, op: Op) -> tuple[int, int, int, int]:
    """(kernel rows, stride, dilation, top padding) of a windowed op (ADD: 1, 1, 1, 0)."""
    from edgeq.intmath import leading_padding

    if op.kind in ROWWISE:
        return 1, 1, 1, 0
    x, y = model.tensors[op.inputs[0]], model.tensors[op.outputs[0]]
    if op.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):  # filters [.., kernel rows, ..]
        kh = model.tensors[op.inputs[1]].shape[1]
    else:  # pools
        kh = int(op.options.get("filter_height", 1))
    stride = int(op.options.get("stride_h", 1))
    dilation = int(op.options.get("dilation_h_factor", 1))
    pad = 0
    if op.options.get("padding", "VALID") == "SAME":
        pad = leading_padding(x.shape[1], kh, stride, dilation, y.shape[1])
    return kh, stride, dilation, pad


def input_rows(model: Model, op: Op, out_lo: int, out_hi: int) -> tuple[int, int]:
    """Input rows [lo, hi) that output rows [out_lo, out_hi) of `op` read (clipped to the
    input: rows outside it are padding)."""
    kh, stride, dilation, pad = _geometry(model, op)
    height = model.tensors[op.inputs[0]].shape[1]
    lo = out_lo * stride - pad
    hi = (out_hi - 1) * stride - pad + (kh - 1) * dilation + 1
    return max(0, lo), min(height, max(hi, 0))


def _activations(model: Model, op: Op) -> list[int]:
    if op.kind in ROWWISE:
        return [t for t in op.inputs if t >= 0 and not model.tensors[t].is_constant]
    return [op.inputs[0]]


def candidate_ends(model: Model) -> list[int]:
    """Stage lengths n for which ops[0:n] can stream: a chain from the graph input of
    STREAMABLE ops on batch-1 NHWC tensors whose inner tensors are read only inside it."""
    if len(model.inputs) != 1 or not model.ops:
        return []
    readers: dict[int, list[int]] = {}
    for i, op in enumerate(model.ops):
        for t in op.inputs:
            readers.setdefault(t, []).append(i)
    ends, produced = [], {model.inputs[0]}
    for n, op in enumerate(model.ops):
        if op.kind not in STREAMABLE:
            break
        ins = _activations(model, op)
        if any(t not in produced for t in ins) or len(op.outputs) != 1:
            break
        if op.kind in ROWWISE and len({model.tensors[t].shape for t in ins}) != 1:
            break
        y = model.tensors[op.outputs[0]]
        if len(y.shape) != 4 or y.shape[0] != 1 or op.outputs[0] in model.outputs:
            break
        produced.add(op.outputs[0])
        inner = produced - {model.inputs[0], op.outputs[0]}
        if n >= 1 and all(r <= n for t in inner for r in readers.get(t, [])):
            ends.append(n + 1)
    return ends


def plan_stage(model: Model, n: int, band: int) -> Stage:
    """The schedule of ops[0:n] streamed `band` output rows at a time."""
    ops = list(range(n))
    source, sink = model.inputs[0], model.ops[n - 1].outputs[0]
    height = {t: model.tensors[t].shape[1] for i in ops for t in
              _activations(model, model.ops[i]) + model.ops[i].outputs}
    consumers: dict[int, list[int]] = {}
    for i in ops:
        for t in _activations(model, model.ops[i]):
            consumers.setdefault(t, []).append(i)
    done = {t: 0 for t in height}
    done[source] = height[source]  # the whole input is there before the first op
    base = dict.fromkeys(height, 0)  # first row each window holds
    rows_held: dict[int, int] = {}
    steps: list = []
    output_in_input = True
    src_bytes, sink_bytes = row_bytes(model, source), row_bytes(model, sink)

    def next_needed(t: int) -> int:
        """The first row of `t` any reader still has to read."""
        firsts = [input_rows(model, model.ops[c], done[model.ops[c].outputs[0]],
                             done[model.ops[c].outputs[0]] + 1)[0]
                  if done[model.ops[c].outputs[0]] < height[model.ops[c].outputs[0]]
                  else height[t] for c in consumers.get(t, [])]
        return min(firsts, default=height[t])

    for target in range(band, height[sink] + band, band):
        need = {sink: min(target, height[sink])}
        for i in reversed(ops):
            op = model.ops[i]
            out = op.outputs[0]
            if out not in need:
                continue
            for t in _activations(model, op):
                hi = input_rows(model, op, 0, need[out])[1] if need[out] else 0
                need[t] = max(need.get(t, 0), hi)
        for i in ops:
            op = model.ops[i]
            out = op.outputs[0]
            lo, hi = done[out], need.get(out, 0)
            if hi <= lo:
                continue
            if out != sink:  # drop the rows no reader needs any more
                keep = min(next_needed(out), lo)
                if keep > base[out]:
                    steps.append(Move(out, keep, lo - keep, base[out]))
                    base[out] = keep
                rows_held[out] = max(rows_held.get(out, 0), hi - base[out])
            reads = []
            for t in _activations(model, op):
                first, last = input_rows(model, op, lo, hi)
                assert done[t] >= last and first >= base[t], (i, t, first, last, base[t])
                reads.append((first, last - first, base[t]))
            kh, stride, dilation, pad = _geometry(model, op)
            steps.append(Call(i, lo, hi, reads, base[out], max(0, pad - lo * stride)))
            done[out] = hi
        # the output's rows written so far must lie in input bytes no op reads again
        if sink_bytes * done[sink] > src_bytes * next_needed(source):
            output_in_input = False
    return Stage(ops, source, sink, band, rows_held, steps, output_in_input=output_in_input)


BANDS = (8, 4, 2, 1)  # output rows per band tried, fewest kernel calls first


def choose_stage(model: Model, scratch: dict[int, int], arena_budget: int):
    """(Stage, MemoryPlan) with the fewest band calls and moves (the instructions a stage
    adds) whose arena fits `arena_budget`; else the one with the smallest arena; None when the
    model has no stage to stream."""
    from edgeq.deploy.plan import plan_memory

    best = smallest = None
    for n in candidate_ends(model):
        for band in BANDS:
            stage = plan_stage(model, n, band)
            plan = plan_memory(model, scratch, stage)
            cost = len(stage.steps)
            if plan.arena_size <= arena_budget and (best is None or cost < best[0]):
                best = (cost, stage, plan)
            if smallest is None or plan.arena_size < smallest[2].arena_size:
                smallest = (cost, stage, plan)
    chosen = best or smallest
    return None if chosen is None else chosen[1:]


MOVE = -1  # the table's slot for a window move


def stage_table(model: Model, stage: Stage, plan, steps) -> dict:
    """What the engine template needs: one row per band call or move (arena offsets, rows,
    padding) and, per op of the stage, how its kernel is called on a band."""
    slots = {i: k for k, i in enumerate(stage.ops)}
    offset = {t: plan.location[t][1] for t in {stage.input, stage.output, *stage.windows}}
    rows = []
    for step in stage.steps:
        if isinstance(step, Move):
            width = row_bytes(model, step.tensor)
            rows.append((offset[step.tensor] + (step.keep - step.old_base) * width,
                         step.rows * width, offset[step.tensor], MOVE, 0, 0, 0))
            continue
        op = model.ops[step.op]
        pointers = [offset[t] + (first - base) * row_bytes(model, t)
                    for t, (first, _, base) in zip(_activations(model, op), step.in_rows,
                                                   strict=True)]
        out = op.outputs[0]
        rows.append((pointers[0], pointers[1] if len(pointers) > 1 else 0,
                     offset[out] + (step.out_lo - step.out_base) * row_bytes(model, out),
                     slots[step.op], step.in_rows[0][1], step.out_hi - step.out_lo, step.pad_h))
    cases = []
    for i in stage.ops:
        s, op = steps[i], model.ops[i]
        # the kernel's arguments: its inputs (ADD: two, a constant one kept), its output,
        # then the rest (scratch) as lowered
        arity = 2 if op.kind in ROWWISE else 1
        pointers = iter(["edgeq_arena + e->a", "edgeq_arena + e->b"])
        activations = _activations(model, op)
        args = [next(pointers) if op.inputs[k] in activations else s.args[k]
                for k in range(arity)]
        args += ["edgeq_arena + e->out", *s.args[arity + 1:]]
        band = (["p.out_dims[1] = e->out_h;"] if op.kind in ROWWISE else
                ["p.in_h = e->in_h;", "p.out_h = e->out_h;", "p.pad_h = e->pad_h;"])
        cases.append({"slot": slots[i], "comment": s.comment, "params_type": s.params_type,
                      "params_name": s.params_name, "band": band,
                      "call": f"{s.function}(&p, {', '.join(args)});"})
    return {"rows": rows, "cases": cases, "ops": stage.ops, "band": stage.band,
            "windows": stage.window_bytes(model), "output_in_input": stage.output_in_input}
