"""Static memory plan for the generated engine: where each activation tensor lives in one arena.

Rules, in order:
1. Constant tensors live in flash and are not planned.
2. Aliases share storage: a RESHAPE output is its input's bytes under another shape. Tensors that
   share storage form one *buffer*, named by its root tensor.
3. The graph inputs and outputs live in the arena too, as TFLM keeps them (`edgeq_input()`,
   `edgeq_output()` point there; `edgeq_invoke_in_place()` runs on them). A graph input is
   live from the start (the caller writes it before the first op) until its last reader; a
   graph output from the op that writes it to the end of the inference (the caller reads it
   afterwards). A buffer that is both (an output that is an alias of an input) is live
   throughout. So static RAM is the arena plus the stack (and a streamed stage's unpacked
   per-channel parameters, edgeq.deploy.cgen); the copying `edgeq_invoke(in, out)`
   copies into and out of these buffers.
4. In place: an element-wise op (ADD of equal shapes, int8 QUANTIZE) may write over an input
   whose life ends at that op, because each element is read before the same element is written
   (a graph input too: like TFLM, the engine may overwrite the input once it is no longer
   needed). Its output then takes over that storage, and the storage lives as long as both.
5. Every other buffer lives from the op that writes it to the last op that reads it. Offsets
   come by best fit (what TFLM's GreedyMemoryPlanner does in spirit): each buffer in turn takes,
   among the gaps between buffers alive at the same time, the smallest one that fits, else goes
   above them all. The turn order is largest first, earliest first and longest-lived first
   (PLACEMENT_ORDERS); the smallest of the three arenas is kept.

`MemoryPlan.lower_bound` is the largest sum of arena bytes any single op needs at once (its
operands' buffers and its scratch, graph inputs and outputs included): no plan can be smaller.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeq.tflite.model import Model

ALIGNMENT = 16  # bytes; enough for any SIMD load the kernels do
ARENA, CONSTANT = "arena", "constant"
_ALIAS_OPS = ("RESHAPE",)


@dataclass
class Buffer:
    root: int  # tensor index that owns the storage
    size: int  # bytes
    first: int  # index of the op that writes it
    last: int  # index of the last op that reads it
    offset: int = -1
    after: int | None = None  # root of the buffer this one must sit right after (a stage's
    # input below its output's end: see _stream)

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    arena_size: int
    buffers: list[Buffer]
    # tensor index -> (ARENA, byte offset), or (CONSTANT, tensor) for an alias of a constant
    # tensor (read in flash)
    location: dict[int, tuple[str, int]] = field(default_factory=dict)
    lower_bound: int = 0  # largest sum of arena bytes any single op needs at once
    scratch: dict[int, int] = field(default_factory=dict)  # op index -> offset of its scratch

    def check(self) -> None:
        """Raise AssertionError if two buffers alive at the same time share bytes."""
        for i, a in enumerate(self.buffers):
            assert a.offset >= 0 and a.offset % ALIGNMENT == 0, a
            assert a.offset + a.size <= self.arena_size, a
            for b in self.buffers[i + 1:]:
                if a.overlaps_in_time(b):
                    assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a, b)


def _align(n: int) -> int:
    return (n + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT


def _roots(model: Model) -> dict[int, int]:
    """tensor -> the tensor whose storage it uses (itself unless it is an alias)."""
    root = {}
    for op in model.ops:
        if op.kind in _ALIAS_OPS:
            src = op.inputs[0]
            root[op.outputs[0]] = root.get(src, src)
    return root


def _in_place_pairs(model: Model, last_use: dict[int, int], root: dict[int, int]) -> dict[int, int]:
    """output root -> input root for ops that may overwrite an input that dies with them (a
    graph output never dies: its last use is past the last op)."""
    pairs = {}
    for index, op in enumerate(model.ops):
        out = model.tensors[op.outputs[0]]
        if op.kind == "ADD":
            candidates = [i for i in op.inputs if model.tensors[i].shape == out.shape]
        elif op.kind == "QUANTIZE" and out.dtype == "int8":
            candidates = [op.inputs[0]]
        else:
            continue
        for t in candidates:
            src = root.get(t, t)
            tensor = model.tensors[t]
            if (tensor.is_constant or last_use.get(src) != index
                    or tensor.nbytes != out.nbytes or src in pairs.values()):
                continue
            pairs[root.get(op.outputs[0], op.outputs[0])] = src
            break
    return pairs


def plan_memory(model: Model, scratch: dict[int, int] | None = None,
                stage=None) -> MemoryPlan:
    """Lifetimes and arena offsets of every non-constant tensor of `model`, graph inputs and
    outputs included, plus `scratch` bytes that op i needs during its own run (scratch[i], e.g.
    for im2col columns). Op indices are the lifetimes' clock: a graph input is written at 0
    (before the first op), a graph output read at len(model.ops) (after the last).

    `stage` (edgeq.deploy.stream.Stage) streams its ops band by band: the tensors inside it
    take only their windows' bytes, live through the whole stage, as do its input and output;
    with `stage.output_in_input` the output shares the input's storage (from its start)."""
    root = _roots(model)
    end = len(model.ops)
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for t in model.inputs:  # the caller writes them before the first op
        r = root.get(t, t)
        first[r] = 0
        last.setdefault(r, 0)
    for index, op in enumerate(model.ops):
        for t in op.outputs:
            r = root.get(t, t)
            first.setdefault(r, index)
            last[r] = max(last.get(r, index), index)
        for t in op.inputs:
            if t < 0 or model.tensors[t].is_constant:
                continue
            r = root.get(t, t)
            last[r] = max(last.get(r, index), index)
    for t in model.outputs:  # the caller reads them after the last op
        r = root.get(t, t)
        first.setdefault(r, 0)
        last[r] = end

    # An in-place output takes over its input's storage.
    storage_of = _in_place_pairs(model, last, root)
    if stage is not None:  # windows hold rows at moving positions: nothing shares them
        streamed = {stage.input, stage.output, *stage.windows}
        storage_of = {k: v for k, v in storage_of.items()
                      if k not in streamed and v not in streamed}

    def storage(r: int) -> int:
        while r in storage_of:
            r = storage_of[r]
        return r

    spans: dict[int, tuple[int, int]] = {}
    for r in first.keys() | last.keys():
        if model.tensors[r].is_constant:
            continue
        s = storage(r)
        lo, hi = spans.get(s, (first.get(r, 0), last[r]))
        spans[s] = (min(lo, first.get(r, 0)), max(hi, last[r]))

    sizes = {s: model.tensors[s].nbytes for s in spans}
    joined = _stream(stage, model, spans, sizes, storage) if stage is not None else None
    buffers = [Buffer(root=s, size=_align(sizes[s]), first=lo, last=hi)
               for s, (lo, hi) in sorted(spans.items())]
    if joined is not None:
        head, tail = joined
        next(b for b in buffers if b.root == tail).after = head
    # Scratch buffers are named by -(op index + 1), so they never clash with tensor roots.
    buffers += [Buffer(root=-(op + 1), size=_align(n), first=op, last=op)
                for op, n in sorted((scratch or {}).items()) if n > 0]
    arena_size = _place(buffers)

    by_root = {b.root: b for b in buffers}
    location: dict[int, tuple[str, int]] = {}
    owner: dict[int, int] = {}
    for t, tensor in enumerate(model.tensors):
        if tensor.is_constant:
            continue
        r = root.get(t, t)
        if model.tensors[r].is_constant:  # e.g. a RESHAPE of a constant: read it in flash
            location[t] = (CONSTANT, r)
        elif storage(r) in by_root:
            owner[t] = storage(r)
            buf = by_root[owner[t]]
            # a tail buffer's tensor starts at the start of the buffer it follows
            location[t] = (ARENA, by_root[buf.after].offset if buf.after is not None
                           else buf.offset)
    bound = 0
    for index, op in enumerate(model.ops):
        live = {owner[t] for t in op.inputs + op.outputs if t in owner}
        if -(index + 1) in by_root:
            live.add(-(index + 1))
        bound = max(bound, sum(by_root[r].size for r in live))
    return MemoryPlan(arena_size=arena_size, buffers=buffers, location=location,
                      lower_bound=bound,
                      scratch={-b.root - 1: b.offset for b in buffers if b.root < 0})


def _stream(stage, model: Model, spans: dict, sizes: dict, storage) -> tuple[int, int] | None:
    """Lifetimes and sizes of a streamed stage (see plan_memory); (output, input) when the
    input's storage is to sit right after the output's (the output overwrites the input)."""
    end = stage.ops[-1]
    for t, size in stage.window_bytes(model).items():
        s = storage(t)
        sizes[s] = size
        spans[s] = (stage.ops[0], end)
    src, sink = storage(stage.input), storage(stage.output)
    spans[src] = (spans[src][0], max(spans[src][1], end))
    spans[sink] = (min(spans[sink][0], stage.ops[0]), spans[sink][1])
    if stage.output_in_input and sizes[src] > sizes[sink]:
        # the output starts where the input starts and outlives it: the input's storage is
        # the output's buffer plus a tail right after it that lives only through the stage
        spans[sink] = (min(spans[src][0], spans[sink][0]), spans[sink][1])
        sizes[src] -= sizes[sink]
        return sink, src
    return None


# The orders in which _place tries buffers; the first order that gives the smallest arena wins.
PLACEMENT_ORDERS = (
    ("largest first", lambda b: (-b.size, b.first, b.root)),
    ("earliest first", lambda b: (b.first, -b.size, b.root)),
    ("longest-lived first", lambda b: (b.first - b.last, -b.size, b.root)),
)


def _joint_fit(buffers: list[Buffer], offsets: dict[int, int], head: int, tail: int) -> None:
    """The lowest offset where buffers[head] and, right after it, buffers[tail] both fit."""
    parts = ((buffers[head], 0), (buffers[tail], buffers[head].size))
    ends = {0} | {offsets[j] + buffers[j].size for j in offsets}
    for start in sorted(ends | {e - buffers[head].size for e in ends if e >= buffers[head].size}):
        if all(not (offsets[j] < start + rel + buf.size and start + rel < offsets[j] + other.size)
               for buf, rel in parts for j, other in ((j, buffers[j]) for j in offsets)
               if other.overlaps_in_time(buf)):
            offsets[head], offsets[tail] = start, start + buffers[head].size
            return


def _best_fit(buffers: list[Buffer], key) -> dict[int, int]:
    """Offsets (by position in `buffers`) of a best-fit placement in the order `key` gives; a
    buffer that must sit right after another is placed with it (_joint_fit)."""
    offsets: dict[int, int] = {}
    position = {b.root: i for i, b in enumerate(buffers)}
    pairs = {i: position[b.after] for i, b in enumerate(buffers) if b.after is not None}
    pairs |= {head: tail for tail, head in list(pairs.items())}
    for i in sorted(range(len(buffers)), key=lambda i: key(buffers[i])):
        if i in offsets:
            continue
        if i in pairs:
            tail = i if buffers[i].after is not None else pairs[i]
            _joint_fit(buffers, offsets, position[buffers[tail].after], tail)
            continue
        buf = buffers[i]
        live = sorted((offsets[j], buffers[j].size) for j in offsets
                       if buffers[j].overlaps_in_time(buf))
        best_offset, best_gap, cursor = None, None, 0
        for offset, size in live:
            gap = offset - cursor
            if gap >= buf.size and (best_gap is None or gap < best_gap):
                best_offset, best_gap = cursor, gap
            cursor = max(cursor, offset + size)
        offsets[i] = cursor if best_offset is None else best_offset
    return offsets


def _place(buffers: list[Buffer]) -> int:
    """Best-fit offsets in each of PLACEMENT_ORDERS, keeping the smallest arena (graph inputs,
    alive from the start, and outputs, alive to the end, make largest-first alone miss the
    layer-by-layer bound: 64,512 B instead of 55,648 B on vww_96_int8); returns its size."""
    best, best_size = {}, None
    for _, key in PLACEMENT_ORDERS:
        offsets = _best_fit(buffers, key)
        size = max((offsets[i] + b.size for i, b in enumerate(buffers)), default=0)
        if best_size is None or size < best_size:
            best, best_size = offsets, size
    for i, buf in enumerate(buffers):
        buf.offset = best[i]
    return best_size or 0


def live_bytes(plan: MemoryPlan, ops: int) -> list[int]:
    """Arena bytes alive during each of `ops` ops (buffers and scratch): the memory timeline."""
    return [sum(b.size for b in plan.buffers if b.first <= i <= b.last) for i in range(ops)]
