"""Per-channel parameters packed per layer (issue #16): edgeq.intmath.pack_channels writes a
layer's biases, Q31 multipliers and shifts as value - base at the layer's widths, the engine's
eq_channels (compiled here with ASan/UBSan) unpacks the very same integers, dead channels
(multiplier 0) give TFLM's outputs whatever their bias, and the arrays compiled for the board
hold exactly engine_layer_bytes' total."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest
import test_cgen as tc
from test_litert_identity import every_layer  # noqa: F401  (a fixture)

from edgeq import intmath
from edgeq.deploy import cgen
from edgeq.tflite.read import read_model

HARNESS = r"""
#include <stdio.h>
#include <stdlib.h>
#include "edgeq_kernels.h"
int main(int argc, char **argv)
{
    FILE *f = fopen(argv[1], "rb");
    long n;
    (void)argc;
    int32_t channels = atoi(argv[2]), c;
    int8_t *packed, *shift;
    int32_t *bias, *mult;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    rewind(f);
    packed = malloc((size_t)n); /* exact size: ASan sees any read past the stream */
    if (fread(packed, 1, (size_t)n, f) != (size_t)n) return 1;
    bias = malloc(4 * (size_t)channels);
    mult = malloc(4 * (size_t)channels);
    shift = malloc((size_t)channels);
    eq_channels(packed, (int32_t)n, channels, bias, mult, shift);
    for (c = 0; c < channels; ++c) printf("%d %d %d\n", bias[c], mult[c], shift[c]);
    free(packed);
    free(bias);
    free(mult);
    free(shift);
    fclose(f);
    return 0;
}
"""


@pytest.fixture(scope="module")
def unpacker(tmp_path_factory):
    work = tmp_path_factory.mktemp("channels")
    (work / "main.c").write_text(HARNESS)
    exe = work / "unpack"
    subprocess.run(["gcc", *cgen.HOST_CFLAGS, "-I", str(cgen.kernel_dir()), str(work / "main.c"),
                    str(cgen.kernel_dir() / "eq_channels.c"), "-o", str(exe)],
                   check=True, timeout=120)

    def run(packed: np.ndarray, channels: int) -> np.ndarray:
        (work / "packed.bin").write_bytes(packed.astype(np.uint8).tobytes())
        out = subprocess.run([str(exe), str(work / "packed.bin"), str(channels)],
                             capture_output=True, text=True, check=True, timeout=60).stdout
        return np.array([line.split() for line in out.splitlines()], np.int64).reshape(-1, 3)
    return run


def _snapped(rng, n: int, ratio: float, bits: int = 2):
    """Multipliers and shifts of snapped float32 weight scales at `ratio` (TFLM's Prepare)."""
    scales = intmath.snap_weight_scales(rng.uniform(1e-3, 1e-1, n).astype(np.float32), bits)
    pairs = [intmath.quantize_multiplier(ratio * float(s)) for s in scales]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def _layers():
    """(bias or None, multipliers, shifts, ratio) covering the widths' corners."""
    rng = np.random.default_rng(3)
    n = 37
    mult = rng.integers(1 << 30, 1 << 31, n)
    shift = rng.integers(-31, 31, n)
    full_bias = rng.integers(-(1 << 31), 1 << 31, n)
    full_bias[:2] = [-(1 << 31), (1 << 31) - 1]  # a 32-bit span
    dead_mult, dead_shift = mult.copy(), shift.copy()
    dead_mult[[0, 5, 36]] = 0
    dead_shift[[0, 5, 36]] = 0
    snap_mult, snap_shift = _snapped(rng, n, 0.37)
    snap_dead, snap_dead_shift = snap_mult.copy(), snap_shift.copy()
    snap_dead[[1, 7]], snap_dead_shift[[1, 7]] = 0, 0
    wide_mult, wide_shift = _snapped(rng, n, 3.1, bits=0)  # not snapped: 24-bit mantissas
    return [
        (full_bias, mult, shift, None),                             # every field at its widest
        (full_bias, mult, shift, 0.77),  # random multipliers: K does not help, stored as is
        (rng.integers(-300, 300, n), np.full(n, 1 << 30), np.full(n, 3), None),  # zero bits
        (None, mult, shift, None),                                  # no bias
        (full_bias, dead_mult, dead_shift, None),                   # dead channels, coded 0
        (rng.integers(-5, 5, 1), np.array([1518500250]), np.array([-31]), None),  # one channel
        (rng.integers(-5, 5, 4), np.zeros(4, np.int64), np.zeros(4, np.int64), 0.5),  # all dead
        (rng.integers(0, 1 << 20, n), mult, np.full(n, 30), None),
        (rng.integers(-900, 900, n), snap_mult, snap_shift, 0.37),  # mantissa codes + residuals
        (full_bias, snap_dead, snap_dead_shift, 0.37),              # ... with dead channels
        (None, wide_mult, wide_shift, 3.1),  # 23-bit codes + 2-bit residuals: one read
        (None, wide_mult + rng.integers(-6, 6, n), wide_shift, 3.1),  # 23 + 5 bits: two reads
    ]


def test_eq_channels_unpacks_what_pack_channels_stores(unpacker):
    """Live channels come back exactly; dead ones as multiplier 0 (TFLM's output is then the
    zero point whatever the bias and shift); the array is channel_param_bytes long."""
    for bias, mult, shift, ratio in _layers():
        packed = intmath.pack_channels(bias, mult, shift, ratio)
        fields, _, _ = intmath.channel_fields(bias, mult, shift, ratio)
        assert packed.size == intmath.channel_param_bytes(mult.size, fields)
        got = unpacker(packed, mult.size)
        live = mult != 0
        if bias is not None:
            np.testing.assert_array_equal(got[live, 0], bias[live])
        np.testing.assert_array_equal(got[:, 1], mult)
        np.testing.assert_array_equal(got[live, 2], shift[live])
        assert (got[~live, 2] == 0).all()


def test_snapped_scales_give_short_multiplier_codes():
    """Scales snapped to n significant bits: each multiplier is an (n-1)-bit mantissa code
    and no residual (K has 16 bits more than Q31: TFLM's rounding is reproduced), 23 bits
    and at most a 1-bit residual for float32 mantissas; the header keeps K."""
    rng = np.random.default_rng(5)
    for bits, n in intmath.SNAP_SCALE_BITS.items():
        mult, shift = _snapped(rng, 200, 0.37, bits)
        (_, wm, _), _, _ = intmath.channel_fields(None, mult, shift, 0.37)
        assert wm == n - 1, (bits, wm)
        header = intmath.pack_channels(None, mult, shift, 0.37)[-18:]
        k = int(np.concatenate([header[8:14], np.zeros(2, np.uint8)]).view("<u8")[0])
        assert (k + (1 << 15)) >> 16 == intmath.quantize_multiplier(0.37)[0]
    mult, shift = _snapped(rng, 200, 0.37, 0)
    assert intmath.channel_fields(None, mult, shift, 0.37)[0][1] <= 24


def test_fields_are_the_narrowest_for_the_values():
    fields, bases, dead = intmath.channel_fields([10, 13, 17], [1 << 30, (1 << 30) + 5, 0],
                                                 [-2, 1, 7])
    # bias 10..13 (dead 17 ignored): 2 bits; multiplier span 5: 3 bits; shift codes 0 (dead),
    # 1 and 4 above base -3: 3 bits
    assert (fields, bases, dead) == ((2, 3, 3), (10, 1 << 30, -3), True)
    assert intmath.channel_param_bytes(3, fields) == intmath.CHANNEL_HEADER_BYTES + 3  # 24 bits
    # the widest fields bound any values
    assert intmath.channel_param_bytes(3) >= intmath.channel_param_bytes(3, fields)


def _with_dead_channel(model, channel: int):
    """The layer's output channel `channel` dead (weight scale so small that QuantizeMultiplier
    flushes its multiplier to 0) with a bias far outside any other channel's."""
    op = model.ops[0]
    w, b = model.tensors[op.inputs[1]], model.tensors[op.inputs[2]]
    scale = np.asarray(w.scale, np.float32).copy()
    scale[channel] = 1e-30
    w.scale = scale
    x = model.tensors[op.inputs[0]]
    b.scale = (np.float32(x.scale[0]) * scale).astype(np.float32)
    b.data = np.asarray(b.data, np.int32).copy()
    b.data[channel] = 1 << 29
    return model


@pytest.mark.parametrize("variant", ["portable", "fast"])
def test_dead_channels_match_tflm(tmp_path, variant):
    """A dead channel's bias is not stored (it widens no field) and its shift is coded 0:
    outputs still identical to TFLM, on the portable kernels and the DSP paths."""
    rng = np.random.default_rng(11)
    models = [_with_dead_channel(tc._conv(rng, cin=16, cout=7, kernel=3, bits=4), 2),
              _with_dead_channel(tc._depthwise3x3(rng, channels=13, bits=8), 6)]
    names = []
    for k, model in enumerate(models):
        engine = cgen.lower_model(model)
        packed = next(a for a in engine.arrays if a.name.endswith("_channels")).values
        assert packed.view(np.uint8)[-1] & 0x80, "the dead channel is not coded as dead"
        names.append(f"case{k}")
        cgen.generate_engine(model, tmp_path, name=names[-1])
    (tmp_path / "dispatch.c").write_text(tc._dispatcher(names))
    exe = tmp_path / "runner"
    flags = ["-DEDGEQ_PORTABLE"] if variant == "portable" else ["-DEDGEQ_FAST_EMULATED"]
    subprocess.run(["gcc", *cgen.HOST_CFLAGS, *flags, "-I", str(tmp_path),
                    str(tmp_path / "dispatch.c"), *[str(tmp_path / f"{n}_model.c") for n in names],
                    str(tmp_path / "edgeq_kernels.c"), "-o", str(exe)], check=True, timeout=300)
    for k, model in enumerate(models):
        inputs = [[tc.opmodels.random_input(model, rng)] for _ in range(tc.INPUTS_PER_MODEL)]
        tc.assert_case_matches_tflm(exe, k, f"dead channel case {k}", model, inputs, tmp_path)


def _formula_bytes(model) -> int:
    """engine_layer_bytes' total for the model's weighted ops, from the .tflite's values."""
    total = 0
    for op in model.ops:
        if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            continue
        x, w, y = (model.tensors[t] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
        bias = (np.asarray(model.tensors[op.inputs[2]].data, np.int64)
                if len(op.inputs) > 2 and op.inputs[2] >= 0 else None)
        scales = np.asarray(w.scale, np.float32)
        pairs = [intmath.quantize_multiplier(float(x.scale[0]) * float(s) / float(y.scale[0]))
                 for s in scales]
        if op.kind == "DEPTHWISE_CONV_2D":
            kind, channels = "depthwise", w.shape[3]
        else:
            kind, channels = ("conv" if op.kind == "CONV_2D" else "dense"), w.shape[0]
        if len(pairs) == 1 and bias is not None:
            pairs *= bias.size
        fields, _, _ = intmath.channel_fields(bias, [p[0] for p in pairs], [p[1] for p in pairs],
                                              float(x.scale[0]) / float(y.scale[0]))
        grouped = op.kind == "CONV_2D" and w.shape[3] != x.shape[3]
        weights, params = intmath.engine_layer_bytes(
            kind, channels, w.num_elements // channels, 4 if w.dtype == "int4" else 8,
            grouped=grouped, bias=bias is not None, per_channel=len(scales) > 1, fields=fields,
            widened=op.kind == "CONV_2D" and intmath.widened_rgb_filter(*w.shape[1:], x.shape[3]))
        total += weights + params
    return total


@pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None, reason="needs arm-none-eabi-gcc")
def test_compiled_arrays_are_engine_layer_bytes(tmp_path, vww_int8_path):
    """The person detector's weight and per-channel arrays as arm-none-eabi-gcc compiles them
    (nm -S sizes) add up to engine_layer_bytes' total computed from the .tflite's values, and
    the packed parameters are below the 9 bytes a channel of int32 bias + int32 multiplier +
    int8 shift."""
    model = read_model(vww_int8_path)
    files = cgen.generate_engine(model, tmp_path)
    obj = tmp_path / "model.o"
    subprocess.run(["arm-none-eabi-gcc", "-mcpu=cortex-m7", "-mthumb", "-O2", "-c",
                    "-I", str(tmp_path), str(files.source), "-o", str(obj)], check=True,
                   timeout=300)
    nm = subprocess.run(["arm-none-eabi-nm", "-S", str(obj)], capture_output=True, text=True,
                        check=True).stdout
    sizes = {}
    for line in nm.splitlines():
        parts = line.split()
        if len(parts) == 4 and re.fullmatch(r"op\d+_(weights16|weights|channels)", parts[3]):
            sizes[parts[3]] = int(parts[1], 16)
    params = sum(v for k, v in sizes.items() if k.endswith("_channels"))
    assert sum(sizes.values()) == _formula_bytes(model)
    channels = sum(int(s) for s in re.findall(r"bias, multiplier, shift of (\d+) channel",
                                              files.source.read_text()))
    assert channels == 2738 and params < 9 * channels


def test_weights_hint_counts_what_the_board_stores():
    """fit.weights_hint sizes the current and the 4-bit model with the stored-bytes formula
    it is given (the build passes edgeq.learn.quant.mixed.layer_bytes: packed weights +
    per-channel parameters), so the budget it suggests is one of stored model."""
    from edgeq.boards import load_board
    from edgeq.errors import BoardFitError
    from edgeq.fit import fit_board, sizes_from_plan, weights_hint

    kernels, plan = {"first": 1000, "middle": 2**20, "last": 1000}, {"middle": 8}
    params = {"first": 300, "middle": 9000, "last": 40}  # per-channel parameter bytes

    def layer_bytes(name, bits):
        return intmath.stored_weight_bytes(kernels[name], bits) + params[name]

    now = sum(layer_bytes(n, plan.get(n, 8)) for n in kernels)
    sizes = sizes_from_plan(1024, now, 2048)
    with pytest.raises(BoardFitError) as e:
        fit_board(load_board("nrf52840"), sizes,
                  weights_hint(sizes["flash_bytes"], kernels, plan, ("first", "last"),
                               layer_bytes=layer_bytes))
    over = sizes["flash_bytes"] - 2**20
    four = 1000 + 2**19 + 1000 + sum(params.values())
    assert f"`--bits 4`) store {four:,} bytes of weights and parameters instead of {now:,}" \
        in e.value.hint
    assert f"--bits mixed --budget-kb {(now - over) // 1024}" in e.value.hint


def test_snapped_file_multipliers_are_tflms_and_short(unpacker, every_layer):  # noqa: F811
    """A mixed 8/4/3/2 model through storable (scales snapped) and edgeq's writer: every weight
    scale in the file has at most SNAP_SCALE_BITS significant bits and moved by at most
    2^-that from the unsnapped one; what eq_channels decodes from the engine's array is
    TFLM's Prepare on that file (op_channel_values); each per-channel multiplier costs about
    SNAP_SCALE_BITS bits instead of 30 (a code of one bit fewer, the residual rarely 1 bit)."""
    from test_litert_identity import _mixed_plan

    from edgeq.learn.export import quantize_minmax, to_tflite_model
    from edgeq.learn.quantize import storable
    from edgeq.tflite.write import write_model

    graph, calib, _ = every_layer
    plain = quantize_minmax(graph, calib, _mixed_plan(graph))
    qgraph = storable(plain)
    model = read_model(write_model(to_tflite_model(qgraph)))
    arrays = {a.name: a.values for a in cgen.lower_model(model).arrays}
    checked = 0
    for index, op in enumerate(model.ops):
        if op.kind not in intmath.CHANNEL_OPS:
            continue
        w = model.tensors[op.inputs[1]]
        name = w.name.rsplit("/", 1)[0]
        bits, n = qgraph.plan[name], intmath.SNAP_SCALE_BITS[qgraph.plan[name]]
        scales = np.asarray(w.scale, np.float64)
        mant = np.frexp(scales)[0] * (1 << n)
        assert (mant == np.round(mant)).all(), name
        before = np.asarray(plain.layers[name].scales, np.float64)
        assert (np.abs(scales / before - 1) <= 2.0 ** -n).all(), name
        bias, mult, shift = intmath.op_channel_values(model, op)
        got = unpacker(arrays[f"op{index}_channels"].view(np.uint8), len(mult))
        np.testing.assert_array_equal(got[:, 1], mult)
        np.testing.assert_array_equal(got[:, 2], shift)
        if bias is not None:
            np.testing.assert_array_equal(got[:, 0], bias)
        if scales.size > 1:
            (_, wm, _), _, _ = intmath.op_channel_fields(model, op)
            assert wm <= n, (name, bits, wm)
            checked += 1
    assert checked >= 4
