"""The C inference engine generated from an integer Model: weights and requantization
parameters as const arrays (flash), one static arena laid out by the memory planner (no
malloc), and one kernel call per op. The kernel files its ops use (edgeq/kernels) are copied
beside it.

Requantization parameters are computed here exactly as TFLM computes them at Prepare time
(QuantizeMultiplier on double-precision ratios of the float32 scales), so the engine's results
are bit-exact with TFLM's reference kernels.

`generate_engine(model, out_dir)` writes:
    <name>_model.h / <name>_model.c   the model and its API (documented in the header):
        in place, as TFLM's input(0) / Invoke() / output(0): int8_t *<name>_input(void),
        int <name>_invoke_in_place(void), const int8_t *<name>_output(void), and for several
        inputs (outputs) <name>_input_at(i) / <name>_output_at(i) with <name>_input_bytes(i) /
        <name>_output_bytes(i); the graph inputs and outputs live in the arena (edgeq.deploy.plan
        rule 3), so static RAM is the arena, the stack and, with a streamed stage, its weighted
        ops' unpacked per-channel parameters (9 bytes a channel);
        copying: int <name>_invoke(const int8_t *in, int8_t *out), which copies `in` into the
        arena's inputs, runs in place and copies the outputs to `out` (several inputs or
        outputs back to back);
        macros <NAME>_ARENA_SIZE, _INPUT_SIZE, _OUTPUT_SIZE, shapes and quantization
    edgeq_kernels.h, the kernel files the model's ops use (KERNEL_FILES), and edgeq_kernels.c,
    the one unit that #includes them (compile it, not the eq_*.c files beside it)
The default name "edgeq" gives `edgeq_invoke_in_place` and EDGEQ_* macros; another name lets
several models share one firmware.

Layout choices made here for the kernels' fast paths (identical results either way): CONV_2D
filter rows are padded with zeros to a multiple of 4 (INT8) or 8 (INT4) values (filter_stride);
INT8 filters whose lines (filter_w * in_c values) are not whole words store each line's whole
words first, then the lines' leftovers (row_words: im2col from whole input words, e.g. the 3x3
RGB first layer); convolutions get an arena scratch for their im2col columns and prepared
per-channel output stages, 3x3 depthwise convolutions one for int16 planes of a band of input
rows of a channel quad (scratch_bytes). Each weighted layer's biases, multipliers and shifts
are one packed array (edgeq.intmath.pack_channels: value - base at the widths the layer's
values need, multipliers as the weight scale's mantissa and a residual) that eq_channels unpacks before the layer's kernel runs into the arena after the
op's scratch (channel_scratch; a streamed stage's ops into static slices, once before the
stage), so the kernels read plain int32/int8 arrays. Weights that edgeq's plan in the .tflite
metadata declares 2 or 3 bits wide (inside INT4 tensors) are stored at that width as dense bit
streams (declared_widths,
edgeq.intmath.pack_bits); a fast-path CONV_2D expands them to int4 in its scratch first
(eq_conv2d_packed). Sizes: edgeq.intmath.engine_layer_bytes. Opt-in (engine_options(wide_int8_weights=True)): INT8 CONV_2D weights stored
as int16 pairs for SMLAD, twice their flash. Build with -DEDGEQ_PORTABLE to force the portable
kernels.

Host side: build_host_runner / run_host compile the engine with gcc (warnings as errors,
AddressSanitizer, UBSan) and run it on inputs passed through a file: in place by default, the
copying <name>_invoke with HOST_COPYING_FLAG among the cflags.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import numpy as np

from edgeq import __version__, data_dir
from edgeq.deploy.carray import is_reserved_identifier
from edgeq.deploy.plan import ARENA, CONSTANT, MemoryPlan, plan_memory
from edgeq.deploy.stream import Stage, candidate_ends, choose_stage, plan_stage, stage_table
from edgeq.errors import OutputError, TFLiteFormatError, ToolchainError, UnsupportedOpError
from edgeq.intmath import (
    CHANNEL_OPS,
    FAST_MAX_FILTER,
    WEIGHT_RANGES,
    activation_range,
    conv_row_values,
    hard_swish_table,
    leading_padding,
    leaky_relu_table,
    logistic_table,
    multiply_by_quantized_multiplier,
    nearest_indices,
    op_channel_ratio,
    op_channel_values,
    output_size,
    pack_bits,
    pack_channels,
    pack_int4,
    quantize_multiplier,
    softmax_scaling,
    tanh_table,
    widened_rgb_filter,
)
from edgeq.outputs import write_file
from edgeq.tflite.model import Model, Op, Tensor

PACKED_CONV = "CONV_2D 2/3-bit"  # a KERNEL_FILES key beside the op kinds: eq_conv2d_packed
# another: 2/3-bit 3x3 depthwise weights on the quad path (before eq_depthwise.c)
PACKED_DEPTHWISE = "DEPTHWISE_CONV_2D 2/3-bit"
# The files of edgeq/kernels each op's kernel needs, in the order the engine's kernel unit
# includes them; None: every engine (the headers, the shared requantization, eq_copy for the
# copying <name>_invoke). RESHAPE is an alias or an eq_copy; the weighted ops' per-channel
# parameters are unpacked by eq_channels.
KERNEL_FILES = {
    None: ("edgeq_kernels.h", "eq_internal.h", "eq_requantize.c", "eq_copy.c"),
    "CONV_2D": ("eq_channels.c", "eq_conv_columns.h", "eq_conv_dot.h", "eq_conv_hot.h",
                "eq_conv_pw8.h", "eq_conv.c"),
    PACKED_DEPTHWISE: ("eq_depthwise_low.c",),
    "DEPTHWISE_CONV_2D": ("eq_channels.c", "eq_depthwise_asm.h", "eq_depthwise_strips.h",
                          "eq_depthwise_run.h", "eq_depthwise_pairs.h", "eq_depthwise.c"),
    "FULLY_CONNECTED": ("eq_channels.c", "eq_fully_connected.c"),
    "ADD": ("eq_add.c",),
    "AVERAGE_POOL_2D": ("eq_pool.c",),
    "MAX_POOL_2D": ("eq_pool.c",),
    "MEAN": ("eq_mean.c",),
    "PAD": ("eq_pad.c",),
    "CONCATENATION": ("eq_concat.c",),
    "SOFTMAX": ("eq_softmax.c",),
    "QUANTIZE": ("eq_requantize.c",),
    "RESHAPE": ("eq_copy.c",),
    "MUL": ("eq_mul.c",),
    "LEAKY_RELU": ("eq_activation.c",),
    "LOGISTIC": ("eq_activation.c",),
    "TANH": ("eq_activation.c",),
    "HARD_SWISH": ("eq_activation.c",),
    "SUB": ("eq_add.c",),
    "MAXIMUM": ("eq_minmax.c",),
    "MINIMUM": ("eq_minmax.c",),
    "RESIZE_NEAREST_NEIGHBOR": ("eq_resize.c",),
    "TRANSPOSE_CONV": ("eq_channels.c", "eq_transpose_conv.c"),
    # engines with 2- or 3-bit CONV_2D weights on the fast path (after eq_conv.c: it calls
    # eq_conv2d and the 1x1 record path)
    PACKED_CONV: ("eq_unpack.c",),
}
KERNEL_UNIT = "edgeq_kernels.c"  # generated: the only kernel file the engine compiles
VALUES_PER_LINE = 16


# ---- C identifiers and comments ----------------------------------------------------------------

def sanitize_identifier(name: str, prefix: str = "x") -> str:
    """Any string (a layer name such as 'model/conv 1;Relu') as a C identifier: other
    characters become '_', runs of '_' collapse; a leading digit, an empty result or a name C
    reserves (keywords, '__x', '_X') gets `prefix` + '_' in front."""
    cleaned = re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9_]", "_", str(name))).strip("_")
    if not cleaned or cleaned[0].isdigit() or is_reserved_identifier(cleaned):
        cleaned = f"{prefix}_{cleaned}".rstrip("_")
    return cleaned


def c_comment(text: str, limit: int = 100) -> str:
    """Text safe inside /* ... */: one line, no comment terminator, printable ASCII only."""
    text = "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in str(text))
    text = text.replace("*/", "* /").replace("/*", "/ *")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _float_literal(value: float) -> str:
    text = repr(float(np.float32(value)))
    return text + ("f" if any(c in text for c in ".e") else ".0f")


def int_lines(values, per_line: int = VALUES_PER_LINE) -> list[str]:
    """Integers as lines of C initializer text, each ending with a comma."""
    flat = [int(v) for v in np.asarray(values).reshape(-1)]
    return [", ".join(str(v) for v in flat[i:i + per_line]) + ","
            for i in range(0, len(flat), per_line)] or ["0,"]


# ---- lowering: one Model op -> declarations + one C statement ---------------------------------

@dataclass
class Array:
    name: str
    ctype: str  # int8_t | int32_t
    values: np.ndarray
    comment: str = ""

    @property
    def nbytes(self) -> int:
        return int(self.values.size) * (1 if self.ctype == "int8_t" else 4)


@dataclass
class Step:
    comment: str
    params_type: str | None
    params_name: str | None
    fields: list[tuple[str, str]]
    call: str
    function: str = ""  # the kernel, e.g. eq_conv2d
    args: list[str] = field(default_factory=list)  # its arguments after the parameters
    unpack: str = ""  # the eq_channels call that unpacks its per-channel parameters


@dataclass
class Engine:
    """Everything the templates need, plus facts for reports."""

    name: str
    model: Model
    plan: MemoryPlan
    arrays: list[Array] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    macs: int = 0
    stage: Stage | None = None  # the first ops streamed band by band (edgeq.deploy.stream)
    channel_slots: int = 0  # static per-channel parameter entries (a streamed stage's ops)

    @property
    def weight_bytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)

    @property
    def channel_scratch_bytes(self) -> int:
        """Static RAM of a streamed stage's unpacked per-channel parameters: int32 bias, int32
        multiplier, int8 shift per slot (the other ops' are in the arena)."""
        return 9 * self.channel_slots


def _scale(t: Tensor) -> float:
    return float(np.float32(t.scale[0]))


def _add_is_identity(a: Tensor, c: Tensor, y: Tensor, multipliers, act, left_shift) -> bool:
    """True when ADD(a, constant c) writes every int8 value of a unchanged, whatever the value
    and whichever element of c it meets (TFLM's integer ADD, run on all 256 values)."""
    m1, s1, m2, s2, mo, so = multipliers
    q = np.arange(-128, 128, dtype=np.int64)[:, None]
    k = np.asarray(c.data, np.int64).reshape(1, -1)
    total = (multiply_by_quantized_multiplier((q - _zp(a)) << left_shift, m1, s1)
             + multiply_by_quantized_multiplier((k - _zp(c)) << left_shift, m2, s2))
    out = np.clip(multiply_by_quantized_multiplier(total, mo, so) + _zp(y), *act)
    return bool(np.all(out == q))


def _zp(t: Tensor) -> int:
    return int(t.zero_point[0])


def _dims4(shape: tuple[int, ...], what: str) -> list[int]:
    if len(shape) > 4:
        raise UnsupportedOpError(f"{what}: tensors of rank {len(shape)} are not supported",
                                 "the engine handles tensors of rank up to 4")
    return [1] * (4 - len(shape)) + [int(d) for d in shape]


# Engine options that build_firmware cannot pass yet: set them with engine_options().
_OPTIONS = {"wide_int8_weights": False, "packed_weights": True, "packed_widths": (2, 3)}


@contextlib.contextmanager
def engine_options(*, wide_int8_weights: bool = False, packed_weights: bool | None = None,
                   packed_widths=None):
    """Options for every engine lowered inside the block (also through build_firmware).
    wide_int8_weights: INT8 CONV_2D weights of the DSP fast path stored as int16 pairs, ready
    for SMLAD (twice their flash; 2 instructions less per 24 MACs). INT4 weights never.
    packed_weights: weights the plan in the .tflite metadata declares 2 or 3 bits wide stored
    at that width (declared_widths; the default); False stores them as their INT4 container
    (comparisons); None keeps the enclosing block's choice.
    packed_widths: which of the declared widths (2, 3) are stored packed, the others as INT4
    containers (e.g. (2,): measuring what packing the 3-bit layers costs); None keeps the
    enclosing block's choice."""
    saved = dict(_OPTIONS)
    _OPTIONS["wide_int8_weights"] = bool(wide_int8_weights)
    if packed_weights is not None:
        _OPTIONS["packed_weights"] = bool(packed_weights)
    if packed_widths is not None:
        if not set(packed_widths) <= {2, 3}:
            raise ValueError(f"packed_widths {tuple(packed_widths)}: only 2 and 3 are packed")
        _OPTIONS["packed_widths"] = tuple(sorted(set(packed_widths)))
    try:
        yield
    finally:
        _OPTIONS.clear()
        _OPTIONS.update(saved)


class _Lowering:
    def __init__(self, model: Model, plan: MemoryPlan, kernel_scratch=None, stage_ops=()):
        self.model = model
        self.plan = plan
        self.arrays: list[Array] = []
        self.kernel_scratch = kernel_scratch or {}  # op index: bytes its kernel's scratch takes
        self.stage_ops = set(stage_ops)
        self.channel_slots = 0  # static channel scratch entries, the streamed stage's ops
        self.unpacks: dict[int, str] = {}  # op index: its eq_channels call
        self.macs = 0
        self.wide_int8_weights = _OPTIONS["wide_int8_weights"]
        self.widths = declared_widths(model)

    # pointers -----------------------------------------------------------------------------------
    def pointer(self, t: int, writable: bool = False) -> str:
        tensor = self.model.tensors[t]
        if tensor.is_constant:
            if writable:
                raise UnsupportedOpError(f"tensor {tensor.name!r} is constant but written")
            name = self.array(f"c{t}_{sanitize_identifier(tensor.name)[:40]}", "int8_t",
                              np.asarray(tensor.data).astype(np.int8), tensor.name)
            return name
        where, offset = self.plan.location[t]
        if where == CONSTANT:
            return self.pointer(offset, writable)
        assert where == ARENA, (t, where)
        if t in self.model.inputs and writable:
            raise UnsupportedOpError(f"tensor {tensor.name!r} is a graph input but written")
        return "edgeq_arena" if offset == 0 else f"(edgeq_arena + {offset})"

    def array(self, name: str, ctype: str, values: np.ndarray, comment: str = "") -> str:
        if not any(a.name == name for a in self.arrays):
            self.arrays.append(Array(name, ctype, np.asarray(values), c_comment(comment)))
        return name

    def weights(self, index: int, t: int, row_stride: int | None = None,
                order: np.ndarray | None = None) -> tuple[str, int]:
        """The weights as a const array (INT4 packed); with row_stride, each of the first
        dimension's rows is padded with zeros to that many values, after taking its values in
        `order` (indices into the row) if given."""
        tensor = self.model.tensors[t]
        if tensor.dtype not in ("int8", "int4"):
            raise UnsupportedOpError(
                f"op {index}: weights {tensor.name!r} are {tensor.dtype}",
                "the engine runs int8 and int4 weights; quantize the model to integers")
        data = np.asarray(tensor.data)
        if row_stride is not None:
            rows = data.reshape(data.shape[0], -1)
            if order is not None:
                rows = rows[:, order]
            data = np.pad(rows, ((0, 0), (0, row_stride - rows.shape[1])))
        bits = self.widths.get(t, 4 if tensor.dtype == "int4" else 8)
        if bits < 4:
            packed = pack_bits(data, bits).view(np.int8)
        elif bits == 4:
            packed = pack_int4(data).view(np.int8)
        else:
            packed = data.astype(np.int8)
        name = self.array(f"op{index}_weights", "int8_t", packed,
                          f"{tensor.name} {tensor.shape} int{bits}")
        return name, bits

    def wide_weights(self, index: int, t: int, row_stride: int,
                     order: np.ndarray | None) -> str:
        """INT8 CONV_2D weights as int16 (weight_bits 16): rows padded to row_stride values
        (whole runs of four), each run (v0 v1 v2 v3) as the words (v0 v2) (v1 v3)."""
        tensor = self.model.tensors[t]
        rows = np.asarray(tensor.data).reshape(tensor.shape[0], -1).astype(np.int64)
        if order is not None:
            rows = rows[:, order]
        rows = np.pad(rows, ((0, 0), (0, row_stride - rows.shape[1])))
        runs = rows.reshape(rows.shape[0], -1, 4) & 0xFFFF
        words = np.stack([runs[..., 0] | runs[..., 2] << 16, runs[..., 1] | runs[..., 3] << 16],
                         axis=-1).astype(np.uint32).view(np.int32)
        name = self.array(f"op{index}_weights16", "int32_t", words.reshape(-1),
                          f"{tensor.name} {tensor.shape} int8 as int16 pairs")
        return f"(const int8_t *)(const void *){name}"

    def channel_params(self, index: int, op: Op, t: int) -> list[tuple[str, str]]:
        """The bias (tensor t, -1: none), multiplier and shift fields of a weighted op: its
        packed per-channel array (intmath.op_channel_values, intmath.pack_channels) is
        unpacked by eq_channels before the kernel runs into the channel scratch; ops of a
        streamed stage each keep their own slice of it (unpacked once, before the stage), the
        others share its start."""
        if t >= 0 and (tensor := self.model.tensors[t]).dtype != "int32":
            raise UnsupportedOpError(f"op {index}: bias {tensor.name!r} is {tensor.dtype}",
                                     "int8 models have int32 biases")
        bias, multipliers, shifts = op_channel_values(self.model, op)
        packed = pack_channels(bias, multipliers, shifts, op_channel_ratio(self.model, op))
        n = len(multipliers)
        name = self.array(f"op{index}_channels", "int8_t", packed.view(np.int8),
                          f"op {index}: bias, multiplier, shift of {n} channel(s), packed")
        if index in self.stage_ops:  # its slice of the static scratch
            at = f" + {self.channel_slots}" if self.channel_slots else ""
            self.channel_slots += n
            b, m, s = (f"edgeq_channel_{k}{at}" for k in ("bias", "multiplier", "shift"))
            pointers = (b, m, s)
        else:  # the arena after its kernel's scratch (channel_scratch)
            at = self.plan.scratch[index] + _align4(self.kernel_scratch.get(index, 0))
            pointers = (f"(int32_t *)(void *)(edgeq_arena + {at})",
                        f"(int32_t *)(void *)(edgeq_arena + {at + 4 * n})",
                        f"(edgeq_arena + {at + 8 * n})")
            b, m, s = (p.replace("(int32_t *)(void *)", "(const int32_t *)(const void *)")
                       for p in pointers)
        self.unpacks[index] = f"eq_channels({name}, {packed.size}, {n}, {', '.join(pointers)});"
        return [("bias", "0" if bias is None else b), ("multiplier", m), ("shift", s)]

    # per op ------------------------------------------------------------------------------------
    def lower(self, index: int, op: Op) -> Step:
        for t in op.outputs + [op.inputs[0]]:
            tensor = self.model.tensors[t]
            if tensor.dtype != "int8" and not tensor.is_constant:
                raise UnsupportedOpError(
                    f"op {index} ({op.kind}): tensor {tensor.name!r} is {tensor.dtype}; the "
                    "engine runs int8 activations only",
                    "export it with int8 input and output: `edgeq export MODEL --io int8` "
                    "(the default; or the converter's inference_input_type = tf.int8)")
        handler = getattr(self, f"_{op.kind.lower()}", None)
        if handler is None:
            raise UnsupportedOpError(
                f"op {index}: {op.kind} is not supported by the C engine",
                "supported: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, ADD, AVERAGE_POOL_2D, "
                "MAX_POOL_2D, MEAN, PAD, RESHAPE, CONCATENATION, SOFTMAX, QUANTIZE (int8), MUL, "
                "LEAKY_RELU, LOGISTIC, TANH, HARD_SWISH, SUB, MAXIMUM, MINIMUM, "
                "RESIZE_NEAREST_NEIGHBOR, TRANSPOSE_CONV")
        step = handler(index, op)
        step.unpack = self.unpacks.get(index, "")
        name = self.model.tensors[op.outputs[0]].name
        step.comment = c_comment(f"{index}: {op.kind} -> {name}")
        return step

    def _step(self, index, kind, params_type, fields, call_args) -> Step:
        pname = f"op{index}_{kind}"
        call = f"eq_{kind}(&{pname}, {', '.join(call_args)});"
        return Step("", params_type, pname, fields, call, f"eq_{kind}", list(call_args))

    def _act(self, op: Op, out: Tensor) -> tuple[int, int]:
        return activation_range(op.options.get("fused_activation_function", "NONE"),
                                np.float32(out.scale[0]), _zp(out))

    def _spatial(self, op, in_hw, filter_hw, out_hw):
        sh, sw = int(op.options.get("stride_h", 1)), int(op.options.get("stride_w", 1))
        dh = int(op.options.get("dilation_h_factor", 1))
        dw = int(op.options.get("dilation_w_factor", 1))
        if op.options.get("padding", "VALID") == "SAME":
            ph = leading_padding(in_hw[0], filter_hw[0], sh, dh, out_hw[0])
            pw = leading_padding(in_hw[1], filter_hw[1], sw, dw, out_hw[1])
        else:
            ph = pw = 0
        return [("stride_h", sh), ("stride_w", sw), ("dilation_h", dh), ("dilation_w", dw),
                ("pad_h", ph), ("pad_w", pw)]

    def _conv_2d(self, index, op):
        m = self.model
        x, w, y = m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]]
        b, ih, iw, ic = x.shape
        oc, fh, fw, fic = w.shape
        _, oh, ow, _ = y.shape
        stride = filter_stride(x, w)
        words = line_words(x, w)
        order = line_order(fh, fw * fic, words) if words else None
        # 1x1 over 8, 16 or 32 channels runs from prepared records (eq_conv1x1_in8) either way:
        # widening its weights would only cost flash and take it off that faster path
        records = fh == fw == 1 and fic == ic and (
            ic == 16 or (ic == 8 and oc % 2 == 0) or (ic == 32 and oh * ow >= PW32_MIN_PIXELS))
        # a 3x3 filter over three channels (an RGB first layer: a few hundred bytes of weights)
        # is stored widened by default: 2 of the 18 instructions a run of its dot product saved
        rgb = widened_rgb_filter(fh, fw, fic, ic)
        if ((self.wide_int8_weights or rgb) and w.dtype == "int8" and fic == ic
                and stride % 4 == 0 and not records):
            wname, bits = self.wide_weights(index, op.inputs[1], stride, order), 16
        else:
            wname, bits = self.weights(index, op.inputs[1], stride, order)
        channels = self.channel_params(index, op, self._opt_input(op, 2))
        lo, hi = self._act(op, y)
        self.macs += b * oh * ow * oc * fh * fw * fic
        fields = [("batches", b), ("in_h", ih), ("in_w", iw), ("in_c", ic), ("out_h", oh),
                  ("out_w", ow), ("out_c", oc), ("filter_h", fh), ("filter_w", fw),
                  ("filter_in_c", fic), ("filter_stride", stride),
                  *self._spatial(op, (ih, iw), (fh, fw), (oh, ow)),
                  ("in_offset", -_zp(x)), ("out_offset", _zp(y)), ("act_min", lo),
                  ("act_max", hi), ("weight_bits", bits), ("weights", wname),
                  *channels, ("row_words", words)]
        scratch = self.plan.scratch.get(index) if self.kernel_scratch.get(index) else None
        scratch_ptr = "NULL" if scratch is None else f"(int16_t *)(void *)(edgeq_arena + {scratch})"
        kind = "conv2d_wide" if bits == 16 else "conv2d"
        if bits < 4 and scratch is not None:
            kind = "conv2d_packed"  # the fast path on an int4 copy (eq_unpack.c)
        return self._step(index, kind, "eq_conv_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True),
                           scratch_ptr])

    def _depthwise_conv_2d(self, index, op):
        m = self.model
        x, w, y = m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]]
        b, ih, iw, ic = x.shape
        _, fh, fw, oc = w.shape
        _, oh, ow, _ = y.shape
        wname, bits = self.weights(index, op.inputs[1])
        channels = self.channel_params(index, op, self._opt_input(op, 2))
        lo, hi = self._act(op, y)
        self.macs += b * oh * ow * oc * fh * fw
        fields = [("batches", b), ("in_h", ih), ("in_w", iw), ("in_c", ic), ("out_h", oh),
                  ("out_w", ow), ("out_c", oc), ("depth_multiplier", oc // ic),
                  ("filter_h", fh), ("filter_w", fw),
                  *self._spatial(op, (ih, iw), (fh, fw), (oh, ow)),
                  ("in_offset", -_zp(x)), ("out_offset", _zp(y)), ("act_min", lo),
                  ("act_max", hi), ("weight_bits", bits), ("weights", wname), *channels]
        scratch = self.plan.scratch.get(index) if self.kernel_scratch.get(index) else None
        scratch_ptr = "NULL" if scratch is None else f"(edgeq_arena + {scratch})"
        kind = "depthwise_conv2d_1x3" if (fh, fw) == (1, 3) else "depthwise_conv2d"
        return self._step(index, kind, "eq_depthwise_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True),
                           scratch_ptr])

    def _fully_connected(self, index, op):
        m = self.model
        x, w, y = m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]]
        out_depth, accum = w.shape[0], w.shape[-1]
        batches = x.num_elements // accum
        per_channel = len(w.scale) > 1
        wname, bits = self.weights(index, op.inputs[1])
        channels = self.channel_params(index, op, self._opt_input(op, 2))
        lo, hi = self._act(op, y)
        self.macs += batches * out_depth * accum
        fields = [("batches", batches), ("accum_depth", accum), ("out_depth", out_depth),
                  ("in_offset", -_zp(x)), ("weight_offset", -int(w.zero_point[0])),
                  ("out_offset", _zp(y)), ("act_min", lo), ("act_max", hi),
                  ("weight_bits", bits), ("per_channel", int(per_channel)),
                  ("weights", wname), *channels]
        return self._step(index, "fully_connected", "eq_fully_connected_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _sub(self, index, op):
        """SUB: ADD's parameters (eq_add_t), the difference taken in eq_sub."""
        step = self._add(index, op)
        step.params_name = f"op{index}_sub"
        step.call = step.call.replace(f"eq_add(&op{index}_add", f"eq_sub(&op{index}_sub", 1)
        step.function = "eq_sub"
        return step

    def _min_max(self, index, op):
        m = self.model
        a, c, y = (m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]])
        out_dims = _dims4(y.shape, f"op {index} {op.kind}")
        fields = [("out_dims", out_dims),
                  ("in1_strides", self._broadcast_strides(a, out_dims, index)),
                  ("in2_strides", self._broadcast_strides(c, out_dims, index))]
        return self._step(index, op.kind.lower(), "eq_minmax_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.inputs[1]),
                           self.pointer(op.outputs[0], True)])

    _maximum = _min_max
    _minimum = _min_max

    def _resize_nearest_neighbor(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        b, ih, iw, c = x.shape
        _, oh, ow, _ = y.shape
        align = bool(op.options.get("align_corners", False))
        half = bool(op.options.get("half_pixel_centers", False))
        rows = self.array(f"op{index}_rows", "int32_t", nearest_indices(ih, oh, align, half),
                          "input row of each output row")
        cols = self.array(f"op{index}_cols", "int32_t", nearest_indices(iw, ow, align, half),
                          "input column of each output column")
        fields = [("batches", b), ("in_h", ih), ("in_w", iw), ("channels", c), ("out_h", oh),
                  ("out_w", ow), ("rows", rows), ("cols", cols)]
        return self._step(index, "resize_nearest", "eq_resize_nearest_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _transpose_conv(self, index, op):
        m = self.model
        w, x, y = m.tensors[op.inputs[1]], m.tensors[op.inputs[2]], m.tensors[op.outputs[0]]
        b, ih, iw, ic = x.shape
        oc, fh, fw, _ = w.shape
        _, oh, ow, _ = y.shape
        sh, sw = int(op.options["stride_h"]), int(op.options["stride_w"])
        padding = op.options["padding"]
        # TFLite pads as for the conv from the output back to the input (dilation 1)
        ph = leading_padding(oh, fh, sh, 1, output_size(padding, oh, fh, sh, 1))
        pw = leading_padding(ow, fw, sw, 1, output_size(padding, ow, fw, sw, 1))
        wname, _ = self.weights(index, op.inputs[1])
        channels = self.channel_params(index, op, op.inputs[3] if len(op.inputs) > 3 else -1)
        lo, hi = self._act(op, y)
        self.macs += b * ih * iw * ic * fh * fw * oc
        fields = [("batches", b), ("in_h", ih), ("in_w", iw), ("in_c", ic), ("out_h", oh),
                  ("out_w", ow), ("out_c", oc), ("filter_h", fh), ("filter_w", fw),
                  ("stride_h", sh), ("stride_w", sw), ("pad_h", ph), ("pad_w", pw),
                  ("in_offset", -_zp(x)), ("out_offset", _zp(y)), ("act_min", lo),
                  ("act_max", hi), ("weights", wname), *channels]
        return self._step(index, "transpose_conv", "eq_transpose_conv_t", fields,
                          [self.pointer(op.inputs[2]), self.pointer(op.outputs[0], True)])

    def _add(self, index, op):
        m = self.model
        a, c, y = (m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]])
        out_dims = _dims4(y.shape, f"op {index} ADD")
        left_shift = 20
        twice_max = 2 * max(float(a.scale[0]), float(c.scale[0]))
        m1, s1 = quantize_multiplier(float(a.scale[0]) / twice_max)
        m2, s2 = quantize_multiplier(float(c.scale[0]) / twice_max)
        mo, so = quantize_multiplier(twice_max / ((1 << left_shift) * float(y.scale[0])))
        lo, hi = self._act(op, y)
        # (not inside a streamed stage: its row-band calls need the ADD's own parameters)
        if (c.is_constant and tuple(a.shape) == tuple(y.shape) and index not in self.stage_ops
                and _add_is_identity(a, c, y, (m1, s1, m2, s2, mo, so), (lo, hi), left_shift)):
            # a tie-safe restore ADD (edgeq.learn.tiesafe) changes only the declared zero
            # point: every int8 value comes out as it went in, so the engine copies it
            nbytes = y.nbytes
            return Step("", None, None, [], f"eq_copy({self.pointer(op.inputs[0])}, "
                                            f"{self.pointer(op.outputs[0], True)}, {nbytes});")
        fields = [("out_dims", out_dims),
                  ("in1_strides", self._broadcast_strides(a, out_dims, index)),
                  ("in2_strides", self._broadcast_strides(c, out_dims, index)),
                  ("in1_offset", -_zp(a)), ("in2_offset", -_zp(c)), ("out_offset", _zp(y)),
                  ("left_shift", left_shift), ("in1_multiplier", m1), ("in1_shift", s1),
                  ("in2_multiplier", m2), ("in2_shift", s2), ("out_multiplier", mo),
                  ("out_shift", so), ("act_min", lo), ("act_max", hi)]
        return self._step(index, "add", "eq_add_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.inputs[1]),
                           self.pointer(op.outputs[0], True)])

    def _broadcast_strides(self, t: Tensor, out_dims: list[int], index: int) -> list[int]:
        dims = _dims4(t.shape, f"op {index} ADD")
        strides, step = [0] * 4, 1
        for d in range(3, -1, -1):
            if dims[d] != out_dims[d] and dims[d] != 1:
                raise UnsupportedOpError(f"op {index} ADD: shape {t.shape} does not broadcast "
                                         f"to {tuple(out_dims)}")
            strides[d] = step if dims[d] == out_dims[d] and dims[d] > 1 else 0
            step *= dims[d]
        return strides

    def _pool(self, index, op, kind):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        b, ih, iw, c = x.shape
        _, oh, ow, _ = y.shape
        fh, fw = int(op.options["filter_height"]), int(op.options["filter_width"])
        spatial = dict(self._spatial(op, (ih, iw), (fh, fw), (oh, ow)))
        lo, hi = self._act(op, y)
        fields = [("batches", b), ("in_h", ih), ("in_w", iw), ("channels", c), ("out_h", oh),
                  ("out_w", ow), ("filter_h", fh), ("filter_w", fw),
                  ("stride_h", spatial["stride_h"]), ("stride_w", spatial["stride_w"]),
                  ("pad_h", spatial["pad_h"]), ("pad_w", spatial["pad_w"]),
                  ("act_min", lo), ("act_max", hi)]
        return self._step(index, kind, "eq_pool_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _average_pool_2d(self, index, op):
        return self._pool(index, op, "average_pool")

    def _max_pool_2d(self, index, op):
        return self._pool(index, op, "max_pool")

    def _mean(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        rank = len(x.shape)
        dims = _dims4(x.shape, f"op {index} MEAN")
        axes = {int(a) % rank + (4 - rank) for a in np.asarray(
            self.model.tensors[op.inputs[1]].data).reshape(-1)}
        reduce = [int(d in axes) for d in range(4)]
        count = int(np.prod([dims[d] for d in axes]))
        multiplier, shift = quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
        # QuantizedMeanOrSum folds 1/count into the multiplier with integer arithmetic.
        extra = min(63 - _clz64(count), 32, 31 + shift)
        multiplier = int((multiplier << extra) // count)
        shift -= extra
        fields = [("in_dims", dims), ("reduce", reduce), ("in_zero_point", _zp(x)),
                  ("out_zero_point", _zp(y)), ("multiplier", multiplier), ("shift", shift),
                  ("count", count)]
        return self._step(index, "mean", "eq_mean_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _pad(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            raise UnsupportedOpError(f"op {index} PAD: constant pad values are not supported")
        pads = np.asarray(self.model.tensors[op.inputs[1]].data).reshape(-1, 2)
        before = [0] * (4 - len(pads)) + [int(p) for p in pads[:, 0]]
        after = [0] * (4 - len(pads)) + [int(p) for p in pads[:, 1]]
        fields = [("in_dims", _dims4(x.shape, f"op {index} PAD")), ("before", before),
                  ("after", after), ("value", _zp(y))]
        return self._step(index, "pad", "eq_pad_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _reshape(self, index, op):
        src, dst = self.pointer(op.inputs[0]), self.pointer(op.outputs[0])
        if src == dst:
            return Step("", None, None, [], "/* alias: no data moves */")
        nbytes = self.model.tensors[op.outputs[0]].nbytes
        return Step("", None, None, [], f"eq_copy({src}, {dst}, {nbytes});")

    def _concatenation(self, index, op):
        m = self.model
        y = m.tensors[op.outputs[0]]
        axis = int(op.options.get("axis", 0)) % len(y.shape)
        for t in op.inputs:
            x = m.tensors[t]
            if _scale(x) != _scale(y) or _zp(x) != _zp(y):
                raise UnsupportedOpError(
                    f"op {index} CONCATENATION: input {x.name!r} has another scale or zero "
                    "point than the output (TFLM rejects this too)",
                    "requantize the inputs with QUANTIZE first, as the TFLite converter does")
        outer = int(np.prod(y.shape[:axis], dtype=np.int64))
        copies = [int(np.prod(m.tensors[t].shape[axis:], dtype=np.int64)) for t in op.inputs]
        copy = self.array(f"op{index}_copy", "int32_t", np.array(copies))
        pointers = ", ".join(self.pointer(t) for t in op.inputs)
        fields = [("outer", outer), ("num_inputs", len(op.inputs)), ("copy", copy)]
        step = self._step(index, "concat", "eq_concat_t", fields, [])
        step.call = ("{\n        const int8_t *const ins[] = {" + pointers + "};\n"
                     f"        eq_concat(&op{index}_concat, ins, "
                     f"{self.pointer(op.outputs[0], True)});\n    }}")
        return step

    def _softmax(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        if _zp(y) != -128 or np.float32(y.scale[0]) != np.float32(1.0 / 256):
            raise UnsupportedOpError(
                f"op {index} SOFTMAX: output {y.name!r} must have scale 1/256 and zero point "
                "-128 (TFLM requires it)", "convert the model with the TFLite converter")
        multiplier, left_shift, diff_min = softmax_scaling(float(op.options.get("beta", 1.0)),
                                                           np.float32(x.scale[0]))
        depth = x.shape[-1]
        fields = [("outer", x.num_elements // depth), ("depth", depth),
                  ("input_multiplier", multiplier), ("input_left_shift", left_shift),
                  ("diff_min", diff_min)]
        return self._step(index, "softmax", "eq_softmax_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _quantize(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        multiplier, shift = quantize_multiplier(float(x.scale[0]) / float(y.scale[0]))
        fields = [("count", x.num_elements), ("in_zero_point", _zp(x)),
                  ("out_zero_point", _zp(y)), ("multiplier", multiplier), ("shift", shift)]
        return self._step(index, "requantize", "eq_requantize_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    # ---- element-wise ops of issue #14: MUL and the table activations -------------------------

    def _mul(self, index, op):
        m = self.model
        a, c, y = (m.tensors[op.inputs[0]], m.tensors[op.inputs[1]], m.tensors[op.outputs[0]])
        out_dims = _dims4(y.shape, f"op {index} MUL")
        # CalculateOpDataMul: the double product of the float32 scales over the output's
        multiplier, shift = quantize_multiplier(float(np.float32(a.scale[0]))
                                                * float(np.float32(c.scale[0]))
                                                / float(np.float32(y.scale[0])))
        lo, hi = self._act(op, y)
        fields = [("out_dims", out_dims),
                  ("in1_strides", self._broadcast_strides(a, out_dims, index)),
                  ("in2_strides", self._broadcast_strides(c, out_dims, index)),
                  ("in1_offset", -_zp(a)), ("in2_offset", -_zp(c)), ("out_offset", _zp(y)),
                  ("multiplier", multiplier), ("shift", shift), ("act_min", lo), ("act_max", hi)]
        return self._step(index, "mul", "eq_mul_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.inputs[1]),
                           self.pointer(op.outputs[0], True)])

    def _lut(self, index, op, table: np.ndarray):
        """An element-wise int8 op as eq_lut over its 256-entry table (edgeq.intmath)."""
        x = self.model.tensors[op.inputs[0]]
        name = self.array(f"op{index}_table", "int8_t", np.asarray(table, np.int64),
                          f"{op.kind} output for inputs -128..127")
        fields = [("count", x.num_elements), ("table", name)]
        return self._step(index, "lut", "eq_lut_t", fields,
                          [self.pointer(op.inputs[0]), self.pointer(op.outputs[0], True)])

    def _leaky_relu(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        return self._lut(index, op, leaky_relu_table(x.scale[0], _zp(x), y.scale[0], _zp(y),
                                                     float(op.options.get("alpha", 0.2))))

    def _logistic(self, index, op):
        x = self.model.tensors[op.inputs[0]]
        return self._lut(index, op, logistic_table(x.scale[0], _zp(x)))

    def _tanh(self, index, op):
        x = self.model.tensors[op.inputs[0]]
        return self._lut(index, op, tanh_table(x.scale[0], _zp(x)))

    def _hard_swish(self, index, op):
        x, y = self.model.tensors[op.inputs[0]], self.model.tensors[op.outputs[0]]
        return self._lut(index, op, hard_swish_table(x.scale[0], _zp(x), y.scale[0], _zp(y)))

    @staticmethod
    def _opt_input(op: Op, position: int) -> int:
        return op.inputs[position] if len(op.inputs) > position else -1




def filter_stride(x: Tensor, w: Tensor) -> int:
    """Values per stored CONV_2D filter row: h * w * in_c, padded with zeros to a multiple of
    the fast path's run (4 for int8, 8 for int4 and the 2/3-bit widths inside INT4 tensors)
    when the fast path can take the op (edgeq.intmath.conv_row_values)."""
    return conv_row_values(w.shape[1] * w.shape[2] * w.shape[3], 4 if w.dtype == "int4" else 8,
                           grouped=w.shape[3] != x.shape[3])


WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def declared_widths(model: Model) -> dict[int, int]:
    """Weight tensor -> 2 or 3: the tensors that edgeq's plan in the .tflite metadata (entry
    "edgeq", {"bits": {layer: bits}}, the layer's weights named "<layer>/kernel") declares
    below 4 bits, to be stored at that width. Checked against the values: a tensor whose values
    do not fit its declared width is an error naming it. Empty without such a plan (any other
    .tflite) or under engine_options(packed_weights=False)."""
    if not _OPTIONS["packed_weights"]:
        return {}
    return plan_widths(model, _OPTIONS["packed_widths"])


def plan_widths(model: Model, widths) -> dict[int, int]:
    """declared_widths without the engine options: weight tensor -> bits for the weights the
    plan declares at one of `widths` (bit counts below 4), checked against the values."""
    raw = model.metadata.get("edgeq")
    if not raw:
        return {}
    try:
        plan = json.loads(bytes(raw).decode())["bits"]
        low = {f"{layer}/kernel": int(b) for layer, b in plan.items() if int(b) in widths}
    except (ValueError, KeyError, TypeError, AttributeError):
        return {}  # not edgeq's plan: every tensor keeps its own type
    found = {}
    for op in model.ops:
        if op.kind not in WEIGHTED or len(op.inputs) < 2:
            continue
        t = op.inputs[1]
        tensor = model.tensors[t]
        bits = low.get(tensor.name)
        if bits is None or not tensor.is_constant:
            continue
        qmin, qmax = WEIGHT_RANGES[bits]
        data = np.asarray(tensor.data)
        if tensor.dtype not in ("int4", "int8") or (data.size and (
                data.min() < qmin or data.max() > qmax or np.any(tensor.zero_point != 0))):
            span = f"[{data.min()}, {data.max()}]" if data.size else "no values"
            raise TFLiteFormatError(
                f"tensor {tensor.name!r}: the plan in the .tflite metadata declares {bits}-bit "
                f"weights, but it is {tensor.dtype} with values {span} (the {bits}-bit range is "
                f"[{qmin}, {qmax}], zero point 0)",
                "re-export the model with edgeq, or drop the metadata entry 'edgeq' to store "
                "the tensor as its own type")
        found[t] = bits
    return found


def line_words(x: Tensor, w: Tensor) -> int:
    """eq_conv_t.row_words: for an INT8 fast-path CONV_2D whose filter lines (filter_w * in_c
    values) are not whole words, the whole words per line (their values are stored line by
    line, then the lines' leftovers, so that im2col reads whole input words); else 0."""
    line = w.shape[2] * w.shape[3]
    fast = w.shape[3] == x.shape[3] and filter_stride(x, w) % 4 == 0
    if w.dtype != "int8" or not fast or w.shape[1] < 2 or line < 4 or line % 4 == 0:
        return 0
    return line // 4


def line_order(filter_h: int, line: int, words: int) -> np.ndarray:
    """The stored order of a filter row's values (indices in natural order) for row_words."""
    head = 4 * words
    natural = np.arange(filter_h * line).reshape(filter_h, line)
    return np.concatenate([natural[:, :head].ravel(), natural[:, head:].ravel()])


RQ_CHANNEL_BYTES = 16  # eq_rqc_t: the fast output stage of one channel, prepared per call
PW8_RECORD_BYTES = 32  # eq_conv1x1_in8: a 1x1, 8-input-channel convolution's output channel
PW16_RECORD_BYTES = 48  # eq_conv1x1_in8 over 16 input channels
PW32_RECORD_BYTES = 84  # eq_conv1x1_in8 over 32 input channels
PW32_MIN_PIXELS = 256  # EQ_PW32_MIN_PIXELS: from this many output pixels
IM2COL_COLUMNS = 6  # EQ_COLS: output pixels per im2col block (int16 columns)
DW_BAND_BYTES = 3584  # EQ_DW_BAND_BYTES: a band of a 3x3 depthwise channel quad's planes
DW_PAIR_ROW = 124  # EQ_DW_PR: bytes per channel and plane row of eq_depthwise3x3_pairs (at least)
DW_PAIR_ROW_MEDIUM = 64  # EQ_DW_PRM: the same for rows of at most 32 values
DW_PAIR_ROW_NARROW = 32  # EQ_DW_PRN: the same for rows of at most 16 values
DW_RING_ROW = 256  # EQ_DW_RS: bytes per int16 ring row of the 3x3 depthwise strips
DW_STRIP_BYTES = 3 * 4 * 8 * 4  # 3 rotations x 4 channels x 8 words of prepared strips
DW_PLANE_ROW = 32  # EQ_DWP_RS: bytes per channel and plane row (small 3x3 depthwise outputs)
DW_PLANE_ROWS = 32  # EQ_DWP_MAX_ROWS: at most this many padded input rows in planes
DW_PLANE_STRIP_BYTES = 4 * 8 * 4  # 4 channels x 8 words of prepared strips


def dw_band_bytes(out_h: int, out_w: int, stride_h: int, stride_w: int) -> int:
    """Scratch of eq_depthwise3x3_pairs (eq_dw_band): four int16 planes of a band of padded
    input rows, as many output rows as DW_BAND_BYTES allows (at least one)."""
    even = (out_w + 1) & ~1
    row = 2 * (((even - 1) * stride_w + 5) & ~1)
    for fixed in (DW_PAIR_ROW_NARROW, DW_PAIR_ROW_MEDIUM):
        if row <= fixed:
            row = fixed
            break
    else:
        row = max(DW_PAIR_ROW, row)
    band = int((DW_BAND_BYTES // (4 * row) - 3) / stride_h) + 1  # C division: toward zero
    band = max(1, min(out_h, band))
    return 4 * row * ((band - 1) * stride_h + 3)


def _align4(n: int) -> int:
    return -(-int(n) // 4) * 4


def channel_scratch(model: Model, kernel: dict[int, int], skip=()) -> dict[int, int]:
    """The arena scratch per op: its kernel's (`kernel`, scratch_bytes) and, after it, for each
    weighted op not in `skip`, its unpacked per-channel parameters (eq_channels: int32 biases,
    int32 multipliers, int8 shifts), live only while the op runs."""
    scratch = dict(kernel)
    for index, op in enumerate(model.ops):
        if op.kind in CHANNEL_OPS and index not in skip:
            n = len(op_channel_values(model, op)[1])
            scratch[index] = _align4(kernel.get(index, 0)) + 9 * n
    return scratch


def scratch_bytes(model: Model) -> dict[int, int]:
    """Arena scratch per op for the fast paths: CONV_2D with one group and a padded filter row
    of at most FAST_MAX_FILTER values gets IM2COL_COLUMNS int16 im2col columns and
    its output channels' prepared requantization (RQ_CHANNEL_BYTES each), a 1x1 over 8, 16 or
    32 input channels at least its records (PW8/PW16/PW32_RECORD_BYTES per output channel); a
    3x3 or 1x3 DEPTHWISE_CONV_2D with depth multiplier 1: a 3x3 of stride_w 1 or 2 a band of a
    channel quad's int16 planes (dw_band_bytes); a 1x3 whose rows fit planes all its padded
    input rows (DW_PLANE_ROW bytes per channel and row) and the quad's strips
    (DW_PLANE_STRIP_BYTES); other 1x3 a ring of three int16 rows for each of a channel quad's
    four channels (DW_RING_ROW bytes a row, more for rows wider than 126 values) and the quad's
    prepared strips (DW_STRIP_BYTES)."""
    scratch = {}
    widths = declared_widths(model)
    for index, op in enumerate(model.ops):
        if op.kind == "CONV_2D":
            x, w = model.tensors[op.inputs[0]], model.tensors[op.inputs[1]]
            stride = filter_stride(x, w)
            run = 8 if w.dtype == "int4" else 4
            if w.shape[3] == x.shape[3] and stride % run == 0 and stride <= FAST_MAX_FILTER:
                scratch[index] = 2 * IM2COL_COLUMNS * stride + RQ_CHANNEL_BYTES * w.shape[0]
                if w.shape[1:] == (1, 1, 8) and w.shape[0] % 2 == 0:
                    # eq_conv1x1_in8: one eight-word record per output channel
                    scratch[index] = max(scratch[index], PW8_RECORD_BYTES * w.shape[0])
                elif w.shape[1:] == (1, 1, 16):
                    # the same over 16 input channels: twelve words a channel
                    scratch[index] = max(scratch[index], PW16_RECORD_BYTES * w.shape[0])
                elif (w.shape[1:] == (1, 1, 32)
                        and model.tensors[op.outputs[0]].shape[1] * model.tensors[
                            op.outputs[0]].shape[2] >= PW32_MIN_PIXELS):
                    # over 32: 21 words a channel (its first pass's sum included)
                    scratch[index] = max(scratch[index], PW32_RECORD_BYTES * w.shape[0])
                if op.inputs[1] in widths:  # eq_conv2d_packed: first the weights as int4
                    scratch[index] += 4 * -(-w.shape[0] * stride // 8)
        elif op.kind == "DEPTHWISE_CONV_2D":
            x, w, y = (model.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
            options = op.options
            if (w.shape[1:3] in ((3, 3), (1, 3)) and w.shape[3] == x.shape[3]
                    and int(options.get("dilation_h_factor", 1)) == 1
                    and int(options.get("dilation_w_factor", 1)) == 1):
                width = (y.shape[2] - 1) * int(options.get("stride_w", 1)) + 3
                pad_w = 0
                if options.get("padding", "VALID") == "SAME":
                    pad_w = leading_padding(x.shape[2], 3, int(options.get("stride_w", 1)), 1,
                                            y.shape[2])
                lead, count = pad_w & 1, (width + 2) & ~1
                rows = (y.shape[1] - 1) * int(options.get("stride_h", 1)) + 3
                if (w.shape[1] == 1 and 2 * (count + lead) <= DW_PLANE_ROW
                        and rows <= DW_PLANE_ROWS):
                    # eq_depthwise3x3_planes (1x3 filters): every padded input row of a quad
                    scratch[index] = rows * 4 * DW_PLANE_ROW + DW_PLANE_STRIP_BYTES
                    continue
                stride_w = int(options.get("stride_w", 1))
                if w.shape[1] == 3:
                    if stride_w <= 2:  # eq_depthwise3x3_pairs: a band of a quad's planes
                        scratch[index] = dw_band_bytes(y.shape[1], y.shape[2],
                                                       int(options.get("stride_h", 1)), stride_w)
                    continue
                # the strips (eq_depthwise3x3_fast): the ring, one value past the row
                row = 2 * (count + lead)  # values at column + lead
                row = DW_RING_ROW if row <= DW_RING_ROW else (row + 3) & ~3
                scratch[index] = 12 * row + DW_STRIP_BYTES
    return scratch


def _clz64(value: int) -> int:
    return 64 - int(value).bit_length()


def _field_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return "{" + ", ".join(str(int(v)) for v in value) + "}"
    return str(value)


# ---- rendering ---------------------------------------------------------------------------------

def _environment() -> jinja2.Environment:
    root = Path(__file__).parent / "templates" / "engine"
    env = jinja2.Environment(loader=jinja2.FunctionLoader(
        lambda name: (root / name).read_text()), undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True)
    env.filters["ints"] = int_lines
    env.filters["field"] = _field_value
    env.filters["comment"] = c_comment
    env.filters["float"] = _float_literal
    return env


def lower_model(model: Model, name: str = "edgeq", arena_budget: int | None = None,
                stream: tuple[int, int] | None = None) -> Engine:
    """Plan the memory and lower every op; raises UnsupportedOpError naming the first op the
    engine cannot run. With `arena_budget` (bytes) and a layer-by-layer arena above it, the
    first ops are streamed band by band (edgeq.deploy.stream.choose_stage) when that fits;
    `stream` = (n, band) streams ops[0:n] by `band` output rows whatever the budget."""
    if not model.inputs or not model.outputs:
        raise UnsupportedOpError("the model has no input or no output tensor")
    kernel = scratch_bytes(model)
    scratch = channel_scratch(model, kernel)
    plan, stage = plan_memory(model, scratch), None
    if stream is not None:
        if stream[0] not in candidate_ends(model):
            raise UnsupportedOpError(f"ops 0 to {stream[0] - 1} cannot be streamed",
                                     f"streamable: the first n ops for n in "
                                     f"{candidate_ends(model)}")
        stage = plan_stage(model, *stream)
        plan = plan_memory(model, scratch, stage)
    elif arena_budget is not None and plan.arena_size > arena_budget:
        stage, plan = choose_stage(model, scratch, arena_budget) or (None, plan)
    if stage is not None:  # the stage's ops unpack their parameters into static RAM instead
        lean = plan_memory(model, channel_scratch(model, kernel, stage.ops), stage)
        plan = lean if lean.arena_size <= plan.arena_size else plan
    lowering = _Lowering(model, plan, kernel, stage.ops if stage else ())
    steps = [lowering.lower(i, op) for i, op in enumerate(model.ops)]
    return Engine(name=name, model=model, plan=plan, arrays=lowering.arrays, steps=steps,
                  macs=lowering.macs, stage=stage, channel_slots=lowering.channel_slots)


def _check_name(name: str) -> str:
    prefix = sanitize_identifier(name, "m")
    if prefix != name:
        raise OutputError(f"engine name {name!r} is not a C identifier",
                          f"use {prefix!r} or another plain name")
    return prefix


def _render(engine: Engine, source: str) -> dict[str, str]:
    model, prefix = engine.model, engine.name
    ins, outs = model.input_tensors, model.output_tensors
    lowering = _Lowering(model, engine.plan)  # pointers only: declares no arrays here

    def tensors(indices: list[int]) -> list[dict]:
        """Per graph input (output): its tensor, size, quantization, where it sits in the arena
        (`pointer`, a C expression) and its offset in the copying API's packed buffer."""
        packed, rows = 0, []
        for t in indices:
            tensor = model.tensors[t]
            rows.append({"tensor": tensor, "size": tensor.nbytes, "scale": _scale(tensor),
                         "zp": _zp(tensor), "pointer": lowering.pointer(t), "packed": packed})
            packed += tensor.nbytes
        return rows

    context = {
        "version": __version__, "source": source or model.description or "a Model",
        "prefix": prefix, "PREFIX": prefix.upper(), "engine": engine,
        "arena_size": engine.plan.arena_size,
        "inputs": tensors(model.inputs), "outputs": tensors(model.outputs),
        "input_size": sum(t.nbytes for t in ins), "output_size": sum(t.nbytes for t in outs),
        "stage": (stage_table(model, engine.stage, engine.plan, engine.steps)
                  if engine.stage else None),
    }
    env = _environment()
    return {f"{prefix}_model.h": env.get_template("model.h.j2").render(**context),
            f"{prefix}_model.c": env.get_template("model.c.j2").render(**context)}


def render_engine(model: Model, name: str = "edgeq", source: str = "") -> dict[str, str]:
    """{file name: text} of the model's .h and .c (the kernels are separate files)."""
    return _render(lower_model(model, _check_name(name)), source)


def kernel_dir() -> Path:
    return Path(__file__).parents[1] / "kernels"


@dataclass
class EngineFiles:
    out_dir: Path
    header: Path
    source: Path
    kernels: list[Path]
    arena_size: int
    weight_bytes: int
    macs: int
    plan: MemoryPlan
    stage: Stage | None = None  # the streamed first ops, if any

    @property
    def sources(self) -> list[Path]:
        return [self.source] + [k for k in self.kernels if k.name == KERNEL_UNIT]


def generate_engine(model: Model, out_dir, name: str = "edgeq", source: str = "",
                    arena_budget: int | None = None,
                    stream: tuple[int, int] | None = None) -> EngineFiles:
    """Write the engine for `model` into `out_dir` (created if needed); returns the paths and
    the arena size, weight bytes and multiply-accumulate count. `arena_budget`, `stream`: see
    lower_model (streams the first ops when the layer-by-layer arena would not fit)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot create {out}: {e.strerror}", "choose a writable folder") from None
    engine = lower_model(model, _check_name(name), arena_budget, stream)
    files = _render(engine, source)
    for file_name, text in files.items():
        _write_atomic(out / file_name, text)
    kinds = {op.kind for op in model.ops}
    if any(s.function == "eq_conv2d_packed" for s in engine.steps):
        kinds.add(PACKED_CONV)
    if any(s.function == "eq_depthwise_conv2d" and int(dict(s.fields)["weight_bits"]) < 4
           for s in engine.steps):
        kinds.add(PACKED_DEPTHWISE)
    kernels = _write_kernels(out, kinds)
    header, src = (out / n for n in files)
    return EngineFiles(out, header, src, kernels, engine.plan.arena_size, engine.weight_bytes,
                       engine.macs, engine.plan, engine.stage)


def kernel_files(kinds) -> list[str]:
    """The edgeq/kernels files that ops of these kinds need, in KERNEL_FILES order."""
    names = [n for kind, files in KERNEL_FILES.items() if kind is None or kind in kinds
             for n in files]
    return list(dict.fromkeys(names))


_UNIT_INCLUDE = re.compile(r'^#include "(eq_\w+\.c)"$', re.M)


def _write_kernels(out: Path, kinds: set[str]) -> list[Path]:
    """Copy the kernel files `kinds` need into `out` and write the unit that includes them; an
    edgeq unit already there (another engine in the same folder) keeps its kernels too."""
    unit = out / KERNEL_UNIT
    if unit.is_file() and "generated by edgeq" in (old := unit.read_text()):
        kept = set(_UNIT_INCLUDE.findall(old))
        # a kind's own file is its last (eq_channels.c is every weighted kind's)
        kinds = kinds | {k for k, files in KERNEL_FILES.items() if files[-1] in kept}
    names = kernel_files(kinds)
    for name in names:
        _write_atomic(out / name, (kernel_dir() / name).read_text())
    includes = "".join(f'#include "{n}"\n' for n in names if n.endswith(".c"))
    _write_atomic(unit, f"""/* {KERNEL_UNIT}: generated by edgeq {__version__}. Do not edit.
 * The kernels this folder's engines use (edgeq/kernels) as one translation unit, so that
 * their shared helpers inline as in one file: compile this file, not the eq_*.c it includes. */
{includes}""")
    return [out / n for n in names] + [unit]


def _write_atomic(path: Path, text: str) -> None:
    """edgeq.outputs.write_file: beside the target, then renamed (never half a file)."""
    write_file(path, text)


def count_macs(model: Model) -> int:
    """Multiply-accumulates of one inference (convolutions and fully connected layers)."""
    return lower_model(model).macs


# ---- the engine on the host (tests, `edgeq check --target host`) ---------------------------------

# host_main.c with this flag runs the copying <name>_invoke(in, out) on exact-size malloc'd
# buffers (AddressSanitizer sees any overrun of them); without it, it reads each input into
# <name>_input_at(k), runs <name>_invoke_in_place() and writes from <name>_output_at(k)
HOST_COPYING_FLAG = "-DEDGEQ_HOST_COPYING"
HOST_CFLAGS = ("-std=c99", "-O1", "-g", "-Wall", "-Wextra", "-Werror", "-Wshadow",
               "-fsanitize=address,undefined", "-fno-sanitize-recover=all",
               "-fno-omit-frame-pointer")


def write_host_runner(engine: EngineFiles, name: str = "edgeq") -> Path:
    """host_main.c beside the engine: reads inputs from a file, writes outputs to a file."""
    env = _environment()
    template = env.from_string((data_dir("firmware_templates") / "host" / "main.c.j2").read_text())
    path = engine.out_dir / "host_main.c"
    path.write_text(template.render(version=__version__, prefix=name, PREFIX=name.upper()))
    return path


def build_host_runner(engine: EngineFiles, exe=None, name: str = "edgeq",
                      cflags=HOST_CFLAGS, timeout: float = 300) -> Path:
    """Compile the engine and host_main.c with the host gcc (warnings are errors, ASan and
    UBSan on by default); returns the executable's path."""
    main = write_host_runner(engine, name)
    exe = Path(exe) if exe else engine.out_dir / "host_runner"
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise ToolchainError("no host C compiler (gcc) found", "install it: apt-get install gcc")
    cmd = [compiler, *cflags, "-I", str(engine.out_dir), str(main),
           *[str(p) for p in engine.sources], "-o", str(exe)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise ToolchainError(f"gcc failed on the generated engine in {engine.out_dir}:\n"
                             f"{result.stderr[-3000:]}", "report this as an edgeq bug")
    return exe


def run_host(exe, inputs: np.ndarray, output_size: int, timeout: float = 120) -> np.ndarray:
    """Run the host runner on int8 inputs [n, ...]; returns int8 outputs [n, output_size]."""
    inputs = np.ascontiguousarray(inputs, dtype=np.int8)
    with tempfile.TemporaryDirectory(prefix="edgeq_host_") as tmp:
        src, dst = Path(tmp) / "inputs.bin", Path(tmp) / "outputs.bin"
        src.write_bytes(inputs.tobytes())
        result = subprocess.run([str(exe), str(src), str(dst)], capture_output=True, text=True,
                                timeout=timeout)
        if result.returncode != 0:
            raise ToolchainError(f"{exe} failed (exit {result.returncode}):\n"
                                 f"{result.stderr[-3000:]}", "report this as an edgeq bug")
        out = np.frombuffer(dst.read_bytes(), dtype=np.int8)
    return out.reshape(len(inputs), output_size)
