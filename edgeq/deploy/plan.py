"""Static memory plan for the generated engine: where each activation tensor lives in one arena.

Rules, in order:
1. Constant tensors live in flash and are not planned.
2. Aliases share storage: a RESHAPE output is its input's bytes under another shape. Tensors that
   share storage form one *buffer*, named by its root tensor.
3. The graph inputs are read in place from the caller's buffer (`edgeq_invoke(in, out)`), and
   the graph outputs are written straight into the caller's `out`; neither takes arena space.
   (A graph output that is an alias of a graph input stays in `in`; the engine copies it.)
4. In place: an element-wise op (ADD of equal shapes, int8 QUANTIZE) may write over an input
   whose life ends at that op, because each element is read before the same element is written.
5. Every other buffer lives from the op that writes it to the last op that reads it, and gets an
   offset by best fit, largest first (what TFLM's GreedyMemoryPlanner does in spirit): among the
   gaps between buffers alive at the same time, the smallest one that fits, else above them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeq.tflite.model import Model

ALIGNMENT = 16  # bytes; enough for any SIMD load the kernels do
INPUT, OUTPUT, ARENA, CONSTANT = "input", "output", "arena", "constant"
_ALIAS_OPS = ("RESHAPE",)


@dataclass
class Buffer:
    root: int  # tensor index that owns the storage
    size: int  # bytes
    first: int  # index of the op that writes it
    last: int  # index of the last op that reads it
    offset: int = -1

    def overlaps_in_time(self, other: Buffer) -> bool:
        return self.first <= other.last and other.first <= self.last


@dataclass
class MemoryPlan:
    arena_size: int
    buffers: list[Buffer]
    # tensor index -> (where, byte offset): where is INPUT, OUTPUT or ARENA; (CONSTANT, tensor)
    # for an alias of a constant tensor
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
    """output root -> input root for ops that may overwrite an input that dies with them."""
    pairs = {}
    graph_io = {root.get(t, t) for t in model.inputs + model.outputs}
    for index, op in enumerate(model.ops):
        out = model.tensors[op.outputs[0]]
        if root.get(op.outputs[0], op.outputs[0]) in graph_io:
            continue
        if op.kind == "ADD":
            candidates = [i for i in op.inputs if model.tensors[i].shape == out.shape]
        elif op.kind == "QUANTIZE" and out.dtype == "int8":
            candidates = [op.inputs[0]]
        else:
            continue
        for t in candidates:
            src = root.get(t, t)
            tensor = model.tensors[t]
            if (tensor.is_constant or src in graph_io or last_use.get(src) != index
                    or tensor.nbytes != out.nbytes or src in pairs.values()):
                continue
            pairs[root.get(op.outputs[0], op.outputs[0])] = src
            break
    return pairs


def plan_memory(model: Model, scratch: dict[int, int] | None = None) -> MemoryPlan:
    """Lifetimes and arena offsets of every non-constant tensor of `model`, plus `scratch`
    bytes that op i needs during its own run (scratch[i], e.g. for im2col columns)."""
    root = _roots(model)
    # Several graph inputs (outputs) sit back to back in the caller's `in` (`out`) buffer.
    external: dict[int, tuple[str, int]] = {}
    for where, tensors in ((OUTPUT, model.outputs), (INPUT, model.inputs)):
        offset = 0
        for t in tensors:
            external[root.get(t, t)] = (where, offset)
            offset += model.tensors[t].nbytes
    first: dict[int, int] = {}
    last: dict[int, int] = {}
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

    # An in-place output takes over its input's storage.
    storage_of = _in_place_pairs(model, last, root)

    def storage(r: int) -> int:
        while r in storage_of:
            r = storage_of[r]
        return r

    spans: dict[int, tuple[int, int]] = {}
    for r in first.keys() | last.keys():
        if r in external or model.tensors[r].is_constant:
            continue
        s = storage(r)
        lo, hi = spans.get(s, (first.get(r, 0), last[r]))
        spans[s] = (min(lo, first.get(r, 0)), max(hi, last[r]))

    buffers = [Buffer(root=s, size=_align(model.tensors[s].nbytes), first=lo, last=hi)
               for s, (lo, hi) in sorted(spans.items())]
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
        elif r in external:
            location[t] = external[r]
        elif storage(r) in by_root:
            owner[t] = storage(r)
            location[t] = (ARENA, by_root[owner[t]].offset)
    bound = 0
    for index, op in enumerate(model.ops):
        live = {owner[t] for t in op.inputs + op.outputs if t in owner}
        if -(index + 1) in by_root:
            live.add(-(index + 1))
        bound = max(bound, sum(by_root[r].size for r in live))
    return MemoryPlan(arena_size=arena_size, buffers=buffers, location=location,
                      lower_bound=bound,
                      scratch={-b.root - 1: b.offset for b in buffers if b.root < 0})


def _place(buffers: list[Buffer]) -> int:
    """Best-fit offsets, largest buffer first; returns the arena size."""
    placed: list[Buffer] = []
    for buf in sorted(buffers, key=lambda b: (-b.size, b.first, b.root)):
        live = sorted((p for p in placed if p.overlaps_in_time(buf)), key=lambda p: p.offset)
        best_offset, best_gap, cursor = None, None, 0
        for p in live:
            gap = p.offset - cursor
            if gap >= buf.size and (best_gap is None or gap < best_gap):
                best_offset, best_gap = cursor, gap
            cursor = max(cursor, p.offset + p.size)
        buf.offset = cursor if best_offset is None else best_offset
        placed.append(buf)
    return max((b.offset + b.size for b in buffers), default=0)
