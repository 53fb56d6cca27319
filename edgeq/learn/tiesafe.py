"""Tie-safe storage: every edgeq export gives the same integers in LiteRT as in TFLM.

The problem. LiteRT (ai-edge-litert, x86, builtin kernels, no delegate) runs int8 CONV_2D,
DEPTHWISE_CONV_2D and FULLY_CONNECTED through ruy / its optimized kernels, whose final
rounding shift in MultiplyByQuantizedMultiplier rounds a tie up, (x + 2^(r-1)) >> r; TFLM's
reference kernels round it away from zero. A negative tie therefore comes out 1 LSB higher in
LiteRT. (The first fixed-point step, the doubling high multiply, rounds ties alike in both.)
Behind a ReLU or ReLU6 it never shows: the fused clamp cuts at the zero point, so a negative
value becomes the zero point in both. Any layer whose clamp does not cut there (activation NONE
with an output zero point above -128: a classifier's logits, a linear projection before a
residual ADD, a BatchNorm that stands alone) requantizes negative accumulators, and with few
bits of weights the shift r is small (2 to 5 at W4), so ties are common: on the 7-layer test
model of tests/test_rex.py, plain min-max export, 400 seeded inputs, LiteRT differed from TFLM
by 1 LSB on 2.0 % of them at W8 and on 24.75 % at W4 (bn_in, pw and the hidden dense; the
softmax head was already stored this way).

The fix. Such a layer is stored from zero point -128: its int32 bias becomes
B' = round((b + N * s_out) / (s_in * s_w)) (N ~= zp + 128 output steps), so that every
accumulator that is not clamped is non-negative, and a negative one clamps to -128 in every
runtime. The stored integers are then those of the layer (MBQM(acc + B') - 128 ~=
MBQM(acc + B) + zp) and only their meaning moved by N steps. How the meaning is moved back
depends on who reads the tensor; edgeq picks per layer (`plan`), cheapest first:

- "softmax": the only reader is a SOFTMAX (through reshapes that share the qparams). Softmax
  subtracts its row maximum and never reads its input zero point: nothing to undo, no op.
  N is one value for all channels (a per-channel shift would change the softmax).
- "fold": every reader is a CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED whose window never
  reaches padding (VALID, 1x1, dense; also through reshapes). A reader computes
  sum w * (q - zp_in) + B_r; reading zp_in = -128 instead of zp adds N * sum w to it, so its
  int32 bias gets B_r - N * sum w (per output channel, in integers): exact in every runtime,
  no op. Padding is why a SAME 3x3 reader cannot: TFLite skips padded taps, so the border
  outputs would be off by N * (the weights on padded taps).
- "add": anything else (a residual ADD, CONCATENATION, PAD, pools, MEAN, a model output). The
  layer writes `<name>/stored` (zero point -128) and an int8 ADD of the constant -N (per
  channel, same scale) writes the original tensor. That ADD is exact in every runtime (equal
  scales: multipliers 1/2 and 2^-19, nothing rounds). Here N may differ per channel (a few
  steps around zp + 128, `offsets`) so that the offset lands on the accumulator grid: with
  s_in * s_w >= s_out (2-bit layers) a single N would leave up to s_in * s_w / 2 of bias error
  even in REx orders that have no bias at all; the ADD's clamp then writes
  clip(q_stored + zp + 128 - N).

Why not absorb the offset in a residual ADD (or MEAN) through its input zero point: a tensor
has one zero point, the one its producer writes with and every reader reads with. An ADD that
reads -128 sees x + N * s and writes the sum shifted by N * s / s_out output steps, which is no
integer in general and moves the ADD's own output, so the shift only travels on (MEAN likewise).
Only readers that forget the shift (softmax) or can cancel it in their own integers (a weighted
reader's bias) absorb it exactly.

The exact simulation (edgeq.learn.quant.sim) applies the same `plan` and `offsets`, so the
simulated model, TFLM, edgeq's interpreter and the generated C engine give the same integers;
the QuantizedGraph keeps the logical (scale, zero point).

Measured (LiteRT vs TFLM on the raw int8 outputs, seeded inputs, min-max quantization; bytes
of the .tflite; TFLM arena as TFLM's allocator reports it):

    7-layer test model of tests/test_rex.py (48 uniform calibration inputs, 400 test inputs;
    before = the export before this module, with only the softmax input stored):
      W8: max 1 LSB on 2.0 % of inputs -> 0 LSB; 7,920 -> 8,592 bytes, arena 5,488 -> 6,048
      W4: max 1 LSB on 24.75 % of inputs -> 0 LSB; 6,736 -> 7,424 bytes, arena 6,368 -> 6,928
      (3 restore ADDs: bn_in, pw and the hidden dense; the head stays "softmax")
    fmnist zoo model (untrained, seeded BN, 64 calibration and 500 test images): 0 LSB before
      and after at W8 and W4, no extra op (its only linear layer feeds the softmax)
    fold against restore ADD, tests/test_litert_identity.py models (300 inputs), W8 / W4:
      logits model (2 folds + the output's ADD): no storage 1 LSB on 47 % / 77 % of inputs,
        fold 0 LSB, 3,888 / 3,632 bytes, arena 3,008 / 3,360; every layer by an ADD instead
        4,368 / 4,128 bytes, arena 3,568 / 3,728
      residual model (2 projections into ADDs + 1 fold): no storage 1 LSB on 3 % / 20 %,
        fold 0 LSB, 8,320 / 7,872 bytes, arena 8,160 / 8,224; all ADDs 8,544 / 8,112 bytes,
        arena 8,352 / 8,416

With one N for every channel, N = zp + 128, the restore ADD writes every int8 value as it
reads it (only the declared zero point changes): edgeq's C engine checks this on all 256 values
and copies the tensor instead (edgeq.deploy.cgen). Measured on person_detect_v2 W8 (15 restore
ADDs, QEMU mps2-an500, 128 photos): 21,952,140 -> 17,921,040 instructions per inference, the
same as the file without tie-safe storage (17,920,920), which LiteRT gets wrong on 240 of the
256 output values (up to 134 LSB).

So a restore ADD costs about 230 bytes of flatbuffer (one op, one activation tensor, its
constant: one byte when N is the same in every channel, which it is unless s_in * s_w reaches
s_out) and, where the stored and the restored tensor are both live at the arena's peak, one
activation tensor of RAM; it also costs one element-wise pass. The fold and the softmax cases
cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq import intmath
from edgeq.learn.graph import Graph, Node

STORED_ZERO_POINT = -128  # tie-safe tensors are stored from the bottom of the int8 range
MODES = ("softmax", "fold", "add")
_MAX_FOLD = 1 << 29  # a fold's bias correction bound, so that bias + correction fit in int32


@dataclass(frozen=True)
class Storage:
    """How one layer is stored tie-safe. `tensors`: the tensors written with zero point -128
    (the layer, then reshapes that share its qparams); `readers`: in "fold" mode the weighted
    nodes whose biases absorb the offset. `uniform`: one N for every channel."""

    producer: str
    mode: str
    tensors: tuple[str, ...]
    readers: tuple[str, ...] = ()

    @property
    def uniform(self) -> bool:
        return self.mode != "add"


# The layers stored tie-safe (and readers a stored tensor can be folded into). Not
# conv2d_transpose: its outputs sum a varying number of taps, which the bias fold cannot
# correct; it is exported plainly (LiteRT within 1 LSB, TFLM exact as for every op).
TIE_SAFE_KINDS = ("conv2d", "depthwise_conv2d", "dense")


def needs_storage(node: Node, zero_point: int) -> bool:
    """A conv / depthwise / dense whose fused clamp does not cut at its zero point, so that it
    requantizes negative accumulators (ReLU and ReLU6 clamp at the zero point)."""
    return (node.kind in TIE_SAFE_KINDS and int(zero_point) > STORED_ZERO_POINT
            and node.attrs.get("activation", "NONE") not in ("RELU", "RELU6"))


def _reshape_chain(graph: Graph, name: str) -> list[str]:
    """The single-use reshapes that follow tensor `name` (they share its qparams)."""
    chain = []
    while graph.uses(name) == 1 and name not in graph.outputs:
        (reader,) = graph.consumers(name)
        if reader.kind != "reshape":
            break
        chain.append(reader.name)
        name = reader.name
    return chain


def _no_padding(graph: Graph, reader: Node) -> bool:
    """True when no window of a conv / depthwise reader reaches padding (dense: always)."""
    if reader.kind == "dense":
        return True
    a = reader.attrs
    if a["padding"] == "VALID":
        return True
    kernel = reader.weights["kernel"].shape[:2]
    size_in = graph.node(reader.inputs[0]).output_shape[:2]
    for size, k, stride, dilation, out in zip(size_in, kernel, a["strides"], a["dilation"],
                                              reader.output_shape[:2], strict=True):
        if (out - 1) * stride + (k - 1) * dilation + 1 - size > 0:
            return False
    return True


def _fold_fits(reader: Node, steps: int) -> bool:
    """The bias correction stays far inside int32 for any weights of the reader's shape."""
    kernel = reader.weights["kernel"].shape
    fan_in = int(np.prod(kernel[:2])) if reader.kind == "depthwise_conv2d" else int(
        np.prod(kernel[:-1]))
    return steps * 127 * fan_in < _MAX_FOLD


def plan(graph: Graph, act: dict[str, tuple]) -> dict[str, Storage]:
    """Producer name -> its tie-safe Storage, for every layer that needs one."""
    out = {}
    for node in graph.nodes:
        if not needs_storage(node, act[node.name][1]):
            continue
        chain = _reshape_chain(graph, node.name)
        last = chain[-1] if chain else node.name
        readers = graph.consumers(last)
        tensors = (node.name, *chain)
        reaches_output = any(t in graph.outputs for t in tensors)
        if (not reaches_output and len(readers) == 1 and readers[0].kind == "softmax"
                and graph.uses(last) == 1):
            out[node.name] = Storage(node.name, "softmax", tensors)
        elif (not reaches_output and readers
              and all(r.kind in TIE_SAFE_KINDS and r.inputs.count(last) == 1
                      and _no_padding(graph, r)
                      and _fold_fits(r, act[node.name][1] - STORED_ZERO_POINT)
                      for r in readers)):
            out[node.name] = Storage(node.name, "fold", tensors,
                                     tuple(r.name for r in readers))
        else:
            out[node.name] = Storage(node.name, "add", (node.name,))
    return out


def accumulator_scales(input_scale, weight_scales, channels: int) -> np.ndarray:
    """s_in * s_w per output channel: the float64 product of the float32 scales, as the
    runtimes form the requantization multiplier."""
    s_w = np.asarray(weight_scales, np.float32).astype(np.float64).reshape(-1)
    return float(np.float32(input_scale)) * np.broadcast_to(s_w, (channels,))


def offsets(bias, input_scale, weight_scales, output_scale, zero_point: int, uniform: bool
            ) -> tuple[np.ndarray, np.ndarray]:
    """(int64 bias offsets on the accumulator grid, int64 output steps N per channel) that
    store an output of logical zero point `zero_point` from -128: the stored bias is
    intmath.quantize_bias(bias, ...) + offsets ~= (b + N * s_out) / (s_in * s_w), rounded once.

    `uniform`: N = zp + 128 in every channel. Otherwise N per channel, within ceil(s_acc/s_out)
    steps of zp + 128 when the accumulator step s_acc reaches an output step (else exactly
    zp + 128), the one whose offset lands closest on the accumulator grid: the error left is
    then at most that of rounding b alone."""
    bias = np.asarray(bias, np.float32).astype(np.float64).reshape(-1)
    acc = accumulator_scales(input_scale, weight_scales, len(bias))
    s_out = float(np.float32(output_scale))
    steps = int(zero_point) - STORED_ZERO_POINT
    ratio = float(acc.max()) / s_out
    width = 0 if uniform or ratio < 1.0 else int(np.ceil(ratio))
    candidates = np.arange(max(0, steps - width), min(255, steps + width) + 1)
    wanted = bias[:, None] + candidates[None, :] * s_out  # [channels, candidates]
    q = intmath.round_half_away(wanted / acc[:, None])
    error = np.abs(q * acc[:, None] - wanted) + 1e-12 * np.abs(candidates - steps)[None, :]
    best = np.argmin(error, axis=1)
    rows = np.arange(len(bias))
    stored = np.clip(q[rows, best], *intmath.BIAS_RANGE).astype(np.int64)
    plain = intmath.quantize_bias(bias, input_scale, weight_scales).astype(np.int64)
    return stored - plain, candidates[best].astype(np.int64)


def fold_correction(reader: Node, qweight: np.ndarray, steps: int) -> np.ndarray:
    """What a weighted reader's int32 bias loses when its input, of logical zero point
    -128 + steps, is read at zero point -128: steps * (sum of its integer weights), per output
    channel (qweight in the Keras layout; TFLite's channel order)."""
    w = np.asarray(qweight, np.int64)
    if reader.kind == "depthwise_conv2d":
        sums = w.sum(axis=(0, 1)).reshape(-1)  # channel c * multiplier + m
    else:
        sums = w.reshape(-1, w.shape[-1]).sum(axis=0)
    return int(steps) * sums
