"""2- and 3-bit weights stored at their width (issue #16): the engine reads the plan in the
.tflite metadata, stores those layers' weights as dense bit streams (edgeq.intmath.pack_bits)
and gives int8 outputs identical to TFLM's on the very same INT4-container file, on the
portable kernels and on the (emulated) DSP fast paths, with ASan/UBSan; sizes are those of
edgeq.intmath.engine_layer_bytes."""

from __future__ import annotations

import copy
import json
import subprocess

import numpy as np
import opmodels
import pytest
import test_cgen as tc

from edgeq import intmath
from edgeq.deploy import cgen
from edgeq.errors import TFLiteFormatError
from edgeq.tflite.model import Model
from edgeq.tflite.read import read_model
from edgeq.tflite.write import write_model


def packed_variant(model: Model, bits: int | dict[int, int]) -> Model:
    """The same network with every weighted op's INT4/INT8 integers scaled into `bits` bits
    (the scales kept, so the output-stage regimes of the stress cases stay), one value at the
    most negative end (the sign bit of the stream), the tensors named "<layer>/kernel" and
    edgeq's plan in the metadata, as edgeq's exporter writes them. `bits` as a dict: op index
    -> width for those ops only (the others keep their type, at 8 or 4 bits in the plan)."""
    m = copy.deepcopy(model)
    plan = {}
    for k, op in enumerate(m.ops):
        if op.kind not in cgen.WEIGHTED:
            continue
        w = m.tensors[op.inputs[1]]
        width = bits.get(k) if isinstance(bits, dict) else bits
        if width is None:
            w.name = f"layer{k}/kernel"
            plan[f"layer{k}"] = 4 if w.dtype == "int4" else 8
            continue
        qmin, qmax = intmath.WEIGHT_RANGES[width]
        top = 7 if w.dtype == "int4" else 127
        q = np.clip(np.round(w.data.astype(np.float64) * qmax / top), qmin, qmax)
        q.reshape(-1)[k % q.size] = qmin
        w.data, w.dtype, w.name = q.astype(np.int8), "int4", f"layer{k}/kernel"
        plan[f"layer{k}"] = width
    m.metadata = {"edgeq": json.dumps({"bits": plan}).encode()}
    m.description = f"{model.description} at {bits} bits"
    return m


CASES = [
    # CONV_2D: im2col fast path on the int4 copy (eq_conv2d_packed), odd channel counts,
    # strides, SAME and VALID padding, a 3x3 RGB first layer (27 taps padded to 32), every
    # output-stage regime
    (tc._conv, {"cin": 12, "cout": 7, "kernel": 3, "bits": 4}),
    (tc._conv, {"cin": 5, "cout": 9, "kernel": 3, "bits": 4, "stride": 2, "padding": "VALID",
                "h": 9, "w": 8}),
    (tc._conv_stress, {"kernel": 3, "cin": 3, "cout": 5, "bits": 4, "h": 6, "w": 5}),
    (tc._conv_stress, {"cin": 24, "cout": 13, "bits": 4, "h": 4, "w": 5}),
    # the 1x1 record paths over 8, 16 and 32 channels read the stream directly; a RELU6 clamp
    # and left-shift stages make them decline (the int4 copy then)
    (tc._conv_right_stages, {"cin": 8, "cout": 10, "kernel": 1, "bits": 4, "activation": "NONE"}),
    (tc._conv, {"cin": 8, "cout": 6, "kernel": 1, "bits": 4, "activation": "RELU6"}),
    (tc._conv_stress, {"cin": 16, "cout": 7, "bits": 4}),
    (tc._conv_right_stages, {"cin": 16, "cout": 5, "kernel": 1, "bits": 4, "stride": 2, "h": 7,
                             "w": 5, "activation": "NONE"}),
    (tc._conv_right_stages, {"cin": 32, "cout": 9, "kernel": 1, "bits": 4, "h": 16, "w": 17,
                             "activation": "NONE"}),
    # rows longer than the fast path takes (3x3 over 136 channels): the reference loops
    (tc._conv, {"cin": 136, "cout": 3, "kernel": 3, "bits": 4, "h": 3, "w": 4}),
    # random shapes, dilation (seeded)
    (opmodels.conv2d, {"weight_bits": 4, "padding": "VALID", "stride": 2}),
    (opmodels.conv2d, {"weight_bits": 4, "dilation": 2, "activation": "RELU"}),
    # DEPTHWISE_CONV_2D: narrow 3x3 quads, wide strips, 1x3 planes and strips, depth
    # multiplier 2 and 5x5 (reference), every regime
    (tc._depthwise_stress, {"h": 4, "w": 5, "stride": 2, "channels": 23, "bits": 4}),
    (tc._depthwise3x3, {"channels": 13, "h": 5, "w": 4, "bits": 4}),
    (tc._depthwise_stress, {"h": 4, "w": 12, "channels": 23, "activation": "RELU6", "bits": 4}),
    (tc._depthwise3x3, {"channels": 8, "h": 5, "w": 49, "stride": 2, "activation": "NONE",
                        "bits": 4}),
    # channel counts a multiple of 4: 2/3-bit quads read four weights at once (eq_dw_low_quad)
    (tc._depthwise_stress, {"h": 4, "w": 12, "channels": 24, "bits": 4}),
    (tc._depthwise1x3, {"channels": 6, "stride": 2, "w": 33, "bits": 4}),
    (tc._depthwise1x3, {"channels": 13, "h": 3, "w": 7, "stress": True, "bits": 4}),
    (opmodels.depthwise, {"weight_bits": 4, "depth_multiplier": 2}),
    (opmodels.depthwise, {"weight_bits": 4, "padding": "VALID", "stride": 2}),
    # FULLY_CONNECTED (INT4 per tensor, as TFLM requires), a 4-D input, no bias
    (opmodels.fully_connected, {"weight_bits": 4, "per_channel": False}),
    (opmodels.fully_connected, {"weight_bits": 4, "per_channel": False, "activation": "RELU",
                                "with_bias": False}),
    (opmodels.fully_connected, {"weight_bits": 4, "per_channel": False, "input_4d": True}),
]
SEEDS = (0, 1)
BITS = (2, 3)


@pytest.fixture(scope="module")
def packed_engines(tmp_path_factory):
    """Every case x seed x width as an engine, all linked into one sanitized runner per path."""
    work = tmp_path_factory.mktemp("packed_engines")
    cases = []
    for build, options in CASES:
        for seed in SEEDS:
            for bits in BITS:
                rng = np.random.default_rng(seed)
                model = packed_variant(build(rng, **options), bits)
                inputs = [[opmodels.random_input(model, rng)] for _ in range(tc.INPUTS_PER_MODEL)]
                name = f"case{len(cases)}"
                files = cgen.generate_engine(model, work, name=name)
                cases.append((f"{model.description} seed {seed}", model, inputs, name, files))
    (work / "dispatch.c").write_text(tc._dispatcher([c[3] for c in cases]))
    sources = [work / "dispatch.c"] + [c[4].source for c in cases]
    runners = {}
    for variant, flags in (("portable", ["-DEDGEQ_PORTABLE"]), ("fast", ["-DEDGEQ_FAST_EMULATED"])):
        runners[variant] = work / f"runner_{variant}"
        subprocess.run(["gcc", *cgen.HOST_CFLAGS, *flags, "-I", str(work), *map(str, sources),
                        str(work / "edgeq_kernels.c"), "-o", str(runners[variant])],
                       check=True, timeout=600, cwd=work)
    return work, runners, cases


@pytest.mark.parametrize("variant", ["portable", "fast"])
def test_packed_weights_match_tflm_on_the_int4_container(packed_engines, variant):
    work, runners, cases = packed_engines
    for k, (where, model, inputs, _, _) in enumerate(cases):
        tc.assert_case_matches_tflm(runners[variant], k, where, model, inputs, work)


def test_packed_cases_take_every_path(packed_engines):
    """The sweep reaches the int4 copy (eq_conv2d_packed), the stream read in place by
    eq_conv2d (records, reference loops), depthwise and fully connected, at both widths."""
    _, _, cases = packed_engines
    functions = {}
    for _, model, _, _, _ in cases:
        engine = cgen.lower_model(model)
        bits = {int(dict(s.fields)["weight_bits"]) for s in engine.steps}
        for s in engine.steps:
            functions.setdefault(s.function, set()).update(bits)
    for function in ("eq_conv2d_packed", "eq_conv2d", "eq_depthwise_conv2d",
                     "eq_depthwise_conv2d_1x3", "eq_fully_connected"):
        assert functions.get(function) == {2, 3}, (function, functions)


def test_stored_bytes_are_engine_layer_bytes():
    """The engine's weight and per-channel arrays are what engine_layer_bytes says (the one
    formula the planner and the report use), and far below the INT4 container's."""
    rng = np.random.default_rng(5)
    for build, options, kind in ((tc._conv, {"cin": 5, "cout": 9, "kernel": 3}, "conv"),
                                 (tc._conv, {"cin": 16, "cout": 7, "kernel": 1}, "conv"),
                                 (tc._depthwise3x3, {"channels": 13, "bits": 4}, "depthwise"),
                                 (opmodels.fully_connected, {"weight_bits": 4, "per_channel": False},
                                  "dense")):
        base = build(rng, **options)
        for bits in (2, 3, 4):
            model = packed_variant(base, bits) if bits < 4 else base
            engine = cgen.lower_model(model)
            w = model.tensors[model.ops[0].inputs[1]]
            channels = w.shape[3] if kind == "depthwise" else w.shape[0]
            fields, _, _ = intmath.op_channel_fields(model, model.ops[0])
            weights, params = intmath.engine_layer_bytes(
                kind, channels, w.data.size // channels, bits, per_channel=len(w.scale) > 1,
                fields=fields)
            arrays = {a.name.split("_", 1)[1]: a.nbytes for a in engine.arrays}
            assert arrays["weights"] == weights, (kind, bits)
            assert arrays["channels"] == params
            # the widest fields bound them
            assert params <= intmath.engine_layer_bytes(
                kind, channels, w.data.size // channels, bits, per_channel=len(w.scale) > 1)[1]
            if bits < 4:
                container = intmath.engine_layer_bytes(kind, channels,
                                                       w.data.size // channels, 4)[0]
                assert weights <= container * bits / 4 + 2, (kind, bits, weights, container)


def test_bit_stream_layout():
    """pack_bits: value k at bits [b*k, b*(k+1)), least significant first; 4 bits is INT4's
    nibble order; unpack_bits inverts it; values outside the width are refused."""
    for bits in (2, 3, 4):
        qmin, qmax = intmath.WEIGHT_RANGES[bits]
        v = np.arange(qmin, qmax + 1).repeat(3)[np.random.default_rng(bits).permutation(
            3 * (qmax - qmin + 1))]
        packed = intmath.pack_bits(v, bits)
        assert packed.size == intmath.stored_weight_bytes(v.size, bits)
        np.testing.assert_array_equal(intmath.unpack_bits(packed, v.size, bits), v)
    assert intmath.pack_bits([1, -2, -1, 0, 1], 2).tolist() == [0b00111001, 0b01]
    assert intmath.pack_bits([3, -4, -1], 3).tolist() == [0b11100011, 0b1]
    np.testing.assert_array_equal(intmath.pack_bits(np.array([-8, 7, 3]), 4),
                                  intmath.pack_int4(np.array([-8, 7, 3])))
    with pytest.raises(Exception, match="2-bit range"):
        intmath.pack_bits([2], 2)


def test_values_wider_than_the_declared_width_are_named():
    model = packed_variant(tc._conv(np.random.default_rng(0), cin=8, cout=4, kernel=3), 2)
    w = model.tensors[model.ops[0].inputs[1]]
    w.data.reshape(-1)[3] = 5
    with pytest.raises(TFLiteFormatError, match="'layer0/kernel'.*2-bit weights"):
        cgen.lower_model(model)


def test_other_files_and_the_off_switch_keep_int4(tmp_path):
    """Without edgeq's plan (or with packed_weights=False) 2-bit integers in INT4 tensors stay
    INT4; the round trip through the .tflite keeps the plan."""
    model = packed_variant(tc._conv(np.random.default_rng(1), cin=8, cout=4, kernel=3), 2)
    again = read_model(write_model(model))
    assert cgen.declared_widths(again) == {again.ops[0].inputs[1]: 2}
    with cgen.engine_options(packed_weights=False):
        assert cgen.declared_widths(again) == {}
        bits = dict(cgen.lower_model(again).steps[0].fields)["weight_bits"]
    assert bits == 4
    plain = copy.deepcopy(model)
    plain.metadata = {}
    assert dict(cgen.lower_model(plain).steps[0].fields)["weight_bits"] == 4


def test_low_bit_depthwise_units_include_the_quad_reader(tmp_path):
    """An engine with 2/3-bit 3x3 depthwise weights gets eq_depthwise_low.c (their quads on the
    fast path) in its kernel unit, before eq_depthwise.c; at 4 bits it is left out, so that
    int8 and int4 engines compile as before."""
    def unit(model, name):
        cgen.generate_engine(model, tmp_path / name)
        return (tmp_path / name / cgen.KERNEL_UNIT).read_text()

    base = tc._depthwise3x3(np.random.default_rng(3), channels=8, h=5, w=6, bits=4)
    low = unit(packed_variant(base, 3), "low")
    assert '#include "eq_depthwise_low.c"' in low
    assert low.index("eq_depthwise_low.c") < low.index('"eq_depthwise.c"')
    assert "eq_depthwise_low.c" not in unit(base, "int4")
    with cgen.engine_options(packed_widths=(2,)):
        assert "eq_depthwise_low.c" not in unit(packed_variant(base, 3), "as_int4")


def test_packed_widths_keeps_the_other_width_in_int4():
    """engine_options(packed_widths=(2,)) packs the 2-bit layer and leaves the 3-bit one an
    INT4 container (the benchmark that measures what packing 3 bits costs); the option ends
    with its block and refuses widths the engine does not pack."""
    model = packed_variant(opmodels.conv_pool_fc(np.random.default_rng(2), weight_bits=4),
                           {0: 2, 3: 3})
    kinds = [op.kind for op in model.ops]
    assert kinds[0] == "CONV_2D" and kinds[3] == "FULLY_CONNECTED"

    def widths():
        return [int(dict(s.fields)["weight_bits"]) for s in cgen.lower_model(model).steps
                if "weight_bits" in dict(s.fields)]

    assert widths() == [2, 3]
    with cgen.engine_options(packed_widths=(2,)):
        assert widths() == [2, 4]
        with cgen.engine_options(packed_widths=(3,)):
            assert widths() == [4, 3]
    assert widths() == [2, 3]
    with pytest.raises(ValueError, match="only 2 and 3"):
        with cgen.engine_options(packed_widths=(4,)):
            pass


# ---- under QEMU (mps2-an500, Cortex-M7 with the real DSP instructions) ---------------------------

QEMU_CASES = [
    (tc._conv, {"cin": 12, "cout": 7, "kernel": 3, "bits": 4}),  # the int4 copy
    (tc._conv_stress, {"kernel": 3, "cin": 3, "cout": 5, "bits": 4, "h": 6, "w": 5}),
    (tc._conv_right_stages, {"cin": 16, "cout": 5, "kernel": 1, "bits": 4, "stride": 2, "h": 7,
                             "w": 5, "activation": "NONE"}),  # records on the stream
    (tc._conv, {"cin": 8, "cout": 6, "kernel": 1, "bits": 4, "activation": "RELU6"}),
    (tc._depthwise_stress, {"h": 4, "w": 12, "channels": 23, "activation": "RELU6", "bits": 4}),
    (tc._depthwise_stress, {"h": 4, "w": 5, "stride": 2, "channels": 23, "bits": 4}),
    # quads of 2/3-bit weights (eq_dw_low_quad) into the whole-image assembly band
    (tc._depthwise_stress, {"h": 6, "w": 10, "channels": 24, "bits": 4}),
    (tc._depthwise_stress, {"h": 5, "w": 9, "stride": 2, "channels": 16, "bits": 4}),
    (tc._depthwise1x3, {"channels": 13, "h": 3, "w": 7, "stress": True, "bits": 4}),
    (opmodels.conv_pool_fc, {"weight_bits": 4}),  # FULLY_CONNECTED too
]


@pytest.mark.parametrize("bits", BITS)
@pytest.mark.parametrize("case", range(len(QEMU_CASES)))
def test_packed_ops_under_qemu_match_tflm(case, bits, tmp_path):
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import run_qemu

    build, options = QEMU_CASES[case]
    rng = np.random.default_rng(11 + case)
    model = packed_variant(build(rng, **options), bits)
    inputs = np.stack([opmodels.random_input(model, rng) for _ in range(4)])
    fw = build_firmware(model, "mps2-an500", tmp_path / "fw", extra_cflags=("-Werror",))
    assert {int(dict(s.fields)["weight_bits"]) for s in cgen.lower_model(model).steps
            if "weight_bits" in dict(s.fields)} == {bits}
    result = run_qemu(fw.elf, inputs.reshape(len(inputs), -1), timeout=60)
    expected = np.stack([e.reshape(-1) for e in tc._tflm_outputs(
        write_model(model), [[x] for x in inputs])])
    np.testing.assert_array_equal(result.outputs, expected)
    tc._assert_varied(model.description, expected)


def test_mixed_vww_under_qemu_is_exact_and_smaller_than_its_int4_container(vww_int8_path,
                                                                         tmp_path):
    """vww_96 with INT4 weights and every convolution between the first and the last at 2 or 3
    bits (alternating): exact against TFLM under QEMU, and the firmware's flash below the same
    file's with the weights stored as their INT4 containers (kernel code included)."""
    from edgeq.deploy.firmware import build_firmware
    from edgeq.deploy.qemu import run_qemu

    base = tc.int4_variant(read_model(vww_int8_path))
    weighted = [k for k, op in enumerate(base.ops) if op.kind in cgen.WEIGHTED]
    model = packed_variant(base, {k: 2 + i % 2 for i, k in enumerate(weighted[1:-1])})
    inputs = np.random.default_rng(4).integers(-128, 128, size=(2, 96 * 96 * 3), dtype=np.int8)
    packed = build_firmware(model, "mps2-an500", tmp_path / "packed", extra_cflags=("-Werror",))
    with cgen.engine_options(packed_weights=False):
        container = build_firmware(model, "mps2-an500", tmp_path / "int4",
                                   extra_cflags=("-Werror",))
    result = run_qemu(packed.elf, inputs, timeout=180)
    np.testing.assert_array_equal(result.outputs, np.stack([e.reshape(-1) for e in tc._tflm_outputs(
        write_model(model), [[x.reshape(1, 96, 96, 3)] for x in inputs])]))
    print("packed", packed.sizes, "int4", container.sizes,
          "instructions/MAC", result.instructions[0] / packed.engine.macs)
    assert packed.sizes["model_flash"] < 0.8 * container.sizes["model_flash"]
    assert packed.sizes["flash"] < container.sizes["flash"]
