"""What the runtimes do with an INT2 weight tensor (TensorType INT2 = 19), measured (issue #16).

An INT2 tensor holds four signed 2-bit values [-2, 1] a byte, element k of the flat row-major
order in bits 2k mod 8 .. 2k+1 (least significant first), the last byte padded: LiteRT's
tensor_utils::UnpackPackedIntToInt8(bit_width 2) reads it so, which is edgeq.intmath.pack_bits
at 2 bits. The models are edgeq's own small single-op models (tests/opmodels.py) with weights in
[-2, 1], written by edgeq's writer as INT8 / INT4 containers; the INT2 file is the same file
with the weight tensor retyped to INT2 and its buffer repacked, through the schema object API.

Measured with ai-edge-litert 2.3.0 and tflite-micro 0.dev20261023182759:
- LiteRT runs FULLY_CONNECTED with INT2 weights, int8 activations, per-tensor and per-channel
  scales, with and without bias, 2-D and 4-D inputs, weight counts that are not a multiple of
  4: outputs identical to the same weights in INT8 and INT4 containers (the builtin kernels and
  the default XNNPACK delegate alike). It registers FULLY_CONNECTED up to version 14.
- LiteRT refuses INT2 weights in CONV_2D, DEPTHWISE_CONV_2D and TRANSPOSE_CONV when it
  prepares the node.
- TFLM refuses INT2 FULLY_CONNECTED: its allocator cannot read the tensor ("Failed to populate
  a temp TfLiteTensor struct from flatbuffer data!"), the op fails to prepare.
If a runtime changes any of this, a test here fails.
"""

from __future__ import annotations

import json

import flatbuffers
import numpy as np
import opmodels
import pytest
from test_packed import packed_variant

from edgeq import intmath
from edgeq.deploy import int2fc
from edgeq.deploy.check import TensorSpec, litert_outputs, quantize_inputs
from edgeq.deploy.int2fc import int2_fully_connected, int2fc_file
from edgeq.deploy.runtimes import litert_interpreter, litert_module, tflm_interpreter
from edgeq.deploy.tflm import captured_fd
from edgeq.errors import EdgeqError, TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.read import read_model
from edgeq.tflite.schema import schema
from edgeq.tflite.write import BUFFER_ALIGNMENT, write_model

INPUTS = 8  # seeded inputs per model


def _two_bit(model, bits=8):
    """`model` with its weights clipped to [-2, 1] (edgeq's 2-bit range); the container stays
    INT8 (bits=8) or becomes INT4 (bits=4)."""
    weights = model.tensors[model.ops[0].inputs[1]]
    weights.data = np.clip(weights.data, *intmath.WEIGHT_RANGES[2]).astype(np.int8)
    weights.dtype = "int8" if bits == 8 else "int4"
    return model


def _retyped_int2(model_bytes: bytes, tensor: int, order=None, version=None) -> bytes:
    """The file with tensor `tensor` (INT8 or INT4) stored as INT2: edgeq.intmath.pack_bits at
    2 bits, or the four 2-bit fields of each byte in `order` (a permutation of 0..3; the
    layout test). `version` overrides FULLY_CONNECTED's operator version."""
    m = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    t = m.subgraphs[0].tensors[tensor]
    count = int(np.prod(t.shape))
    raw = np.frombuffer(bytes(m.buffers[t.buffer].data), np.uint8)
    values = (intmath.unpack_int4(raw, count) if t.type == schema.TensorType.INT4
              else raw.view(np.int8)[:count])
    packed = intmath.pack_bits(values, 2)
    if order is not None:
        fields = (packed[:, None] >> (2 * np.arange(4, dtype=np.uint8))) & 3
        packed = (fields[:, order] << (2 * np.arange(4, dtype=np.uint8))).sum(1).astype(np.uint8)
    m.buffers[t.buffer].data = packed
    t.type = schema.TensorType.INT2
    for code in m.operatorCodes:
        if version is not None and code.builtinCode == schema.BuiltinOperator.FULLY_CONNECTED:
            code.version = version
    builder = flatbuffers.Builder(1024)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _litert(model_bytes: bytes, x: np.ndarray, default_delegates: bool = False) -> np.ndarray:
    """LiteRT's raw outputs for each row of `x` (the builtin kernels, or with LiteRT's default
    delegates: XNNPACK on this CPU)."""
    if default_delegates:
        module, _ = litert_module()
        interpreter = module.Interpreter(model_content=model_bytes)
        interpreter.allocate_tensors()
    else:
        interpreter = litert_interpreter(model_bytes)
    src = interpreter.get_input_details()[0]["index"]
    dst = interpreter.get_output_details()[0]["index"]
    out = []
    for row in x:
        interpreter.set_tensor(src, row)
        interpreter.invoke()
        out.append(interpreter.get_tensor(dst).copy())
    return np.stack(out)


def _inputs(model, rng) -> np.ndarray:
    return np.stack([opmodels.random_input(model, rng) for _ in range(INPUTS)])


FC_CASES = [
    ("per-tensor, bias", dict(per_channel=False)),
    ("per-channel, bias", dict(per_channel=True)),
    ("per-tensor, no bias", dict(per_channel=False, with_bias=False)),
    ("per-channel, no bias", dict(per_channel=True, with_bias=False)),
    ("per-tensor, 4-D input, RELU", dict(per_channel=False, input_4d=True, activation="RELU")),
]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("name, options", FC_CASES, ids=[c[0] for c in FC_CASES])
def test_litert_runs_int2_fully_connected_like_int8_and_int4(name, options, seed):
    rng = np.random.default_rng(seed)
    model = _two_bit(opmodels.fully_connected(rng, **options))
    weights = model.ops[0].inputs[1]
    int8 = write_model(model)
    x = _inputs(model, rng)
    expected = _litert(int8, x)
    assert len(np.unique(expected)) > 4  # a varied output, not a clamp everywhere
    int2 = _retyped_int2(int8, weights)
    np.testing.assert_array_equal(_litert(int2, x), expected)
    np.testing.assert_array_equal(_litert(int2, x, default_delegates=True), expected)
    if not options["per_channel"]:  # per-channel INT4 FULLY_CONNECTED is not written (TFLM)
        int4 = write_model(_two_bit(model, bits=4))
        np.testing.assert_array_equal(_litert(int4, x), expected)
        np.testing.assert_array_equal(_litert(_retyped_int2(int4, weights), x), expected)
    assert len(int2) < len(int8)


def test_weight_counts_not_a_multiple_of_four_are_covered():
    """The cases above include weight tensors whose last byte is partly padding."""
    counts = {int(np.prod(model.tensors[model.ops[0].inputs[1]].shape))
              for seed in range(3) for _, options in FC_CASES
              for model in [opmodels.fully_connected(np.random.default_rng(seed), **options)]}
    assert {c % 4 for c in counts} - {0}


def test_litert_reads_the_low_bits_first():
    """Any other order of the four fields in a byte gives other outputs: the layout matters and
    pack_bits' is LiteRT's."""
    rng = np.random.default_rng(7)
    model = _two_bit(opmodels.fully_connected(rng, per_channel=False, depth=64))
    int8 = write_model(model)
    x = _inputs(model, rng)
    expected = _litert(int8, x)
    for order in ([3, 2, 1, 0], [1, 0, 3, 2], [2, 3, 0, 1]):
        swapped = _retyped_int2(int8, model.ops[0].inputs[1], order=order)
        assert not np.array_equal(_litert(swapped, x), expected), order


def test_litert_registers_fully_connected_up_to_version_14():
    rng = np.random.default_rng(3)
    model = _two_bit(opmodels.fully_connected(rng, per_channel=False))
    int8 = write_model(model)
    x = _inputs(model, rng)
    np.testing.assert_array_equal(
        _litert(_retyped_int2(int8, model.ops[0].inputs[1], version=14), x), _litert(int8, x))
    with pytest.raises(TFLiteFormatError, match="FULLY_CONNECTED' version '15'"):
        litert_interpreter(_retyped_int2(int8, model.ops[0].inputs[1], version=15))


@pytest.mark.parametrize("kind, build, refusal", [
    ("CONV_2D", lambda rng: opmodels.conv2d(rng), "filter->type == kTfLiteInt8 || "
                                                  "filter->type == kTfLiteInt4 was not true"),
    ("DEPTHWISE_CONV_2D", lambda rng: opmodels.depthwise(rng), "depthwise_conv.cc"),
    ("TRANSPOSE_CONV", lambda rng: opmodels.transpose_conv(rng), r"\(INT2 != INT8\)"),
])
def test_litert_refuses_int2_convolution_weights(kind, build, refusal):
    """Weights are input 1 in all three ops."""
    model = _two_bit(build(np.random.default_rng(0)))
    int8 = write_model(model)
    _litert(int8, _inputs(model, np.random.default_rng(1)))  # the INT8 container runs
    with pytest.raises(TFLiteFormatError, match=f"(?s){refusal}.*{kind}"):
        litert_interpreter(_retyped_int2(int8, model.ops[0].inputs[1]))


def test_tflm_refuses_int2_fully_connected():
    rng = np.random.default_rng(0)
    model = _two_bit(opmodels.fully_connected(rng, per_channel=False))
    int8 = write_model(model)
    tflm_interpreter(int8, 1 << 20)  # the INT8 container allocates in the same arena
    with captured_fd() as log, pytest.raises(RuntimeError, match="allocate"):
        tflm_interpreter(_retyped_int2(int8, model.ops[0].inputs[1]), 1 << 20)
    assert "Failed to populate a temp TfLiteTensor struct from flatbuffer data" in log[0]
    assert "FULLY_CONNECTED (number 0) failed to prepare" in log[0]


# --------------------------------------------------------------------------------------------
# edgeq's INT2 writing (edgeq.tflite.write) and the --int2-fc file (edgeq.deploy.int2fc)


def test_the_writer_writes_int2_fully_connected_weights_litert_runs():
    for seed, options in enumerate(FC_CASES * 2):
        rng = np.random.default_rng(seed)
        model = _two_bit(opmodels.fully_connected(rng, **options[1]))
        int8 = write_model(model)
        weights = model.tensors[model.ops[0].inputs[1]]
        weights.dtype = "int2"
        int2 = write_model(model)
        assert weights.nbytes == -(-weights.num_elements // 4)
        saved = weights.num_elements - weights.nbytes  # up to the buffers' 16-byte alignment
        assert abs(len(int8) - len(int2) - saved) < BUFFER_ALIGNMENT
        x = _inputs(model, rng)
        np.testing.assert_array_equal(_litert(int2, x), _litert(int8, x))


def test_the_writer_refuses_int2_where_no_runtime_runs_it():
    for build in (opmodels.conv2d, opmodels.depthwise, opmodels.transpose_conv):
        conv = _two_bit(build(np.random.default_rng(0)))
        conv.tensors[conv.ops[0].inputs[1]].dtype = "int2"
        with pytest.raises(UnsupportedOpError, match="only in FULLY_CONNECTED"):
            write_model(conv)
    fc = _two_bit(opmodels.fully_connected(np.random.default_rng(0)))
    weights = fc.tensors[fc.ops[0].inputs[1]]
    weights.dtype = "int2"
    weights.data = weights.data.copy()
    weights.data.reshape(-1)[0] = 2
    with pytest.raises(TFLiteFormatError, match=r"INT2 but holds values outside \[-2, 1\]"):
        write_model(fc)


def test_the_reader_refuses_int2_and_points_to_the_standard_file():
    model = _two_bit(opmodels.fully_connected(np.random.default_rng(0)))
    model.tensors[model.ops[0].inputs[1]].dtype = "int2"
    with pytest.raises(UnsupportedOpError, match="INT2, which TFLM cannot run") as e:
        read_model(write_model(model))
    assert "model_int2fc.tflite" in e.value.hint


def _planned(seed: int):
    """conv_pool_fc with both weighted layers declared 2 bits in edgeq's plan (test_packed)."""
    return packed_variant(opmodels.conv_pool_fc(np.random.default_rng(seed), 4), 2)


def test_int2fc_file_retypes_only_the_2_bit_fully_connected_weights():
    for seed in range(3):
        model = _planned(seed)
        standard = write_model(model)
        x = np.random.default_rng(seed).random((16, 8, 8, 3), np.float32) * 2 - 1
        twin, names = int2fc_file(standard, x)
        assert names == ["layer3/kernel"]  # the FULLY_CONNECTED op; CONV_2D stays INT4
        retyped, _ = int2_fully_connected(read_model(standard))
        assert [t.dtype for t in retyped.tensors if t.is_constant and "kernel" in t.name] == \
            ["int4", "int2"]
        fc = model.tensors[model.ops[3].inputs[1]]  # 640 values: 320 bytes as INT4, 160 INT2
        assert len(standard) - len(twin) == fc.nbytes - -(-fc.num_elements // 4)  # 160
        outputs = litert_outputs(standard, x)
        assert len(np.unique(outputs)) > 10
        np.testing.assert_array_equal(litert_outputs(twin, x), outputs)
        np.testing.assert_array_equal(  # the standard file is untouched: TFLM still runs it
            np.concatenate([_tflm(standard, row) for row in _quantized(standard, x)]), outputs)


def test_int2fc_file_refuses_a_twin_litert_runs_differently(monkeypatch):
    """The guard the build relies on: a twin whose INT2 weights LiteRT reads otherwise (here one
    weight changed, as a wrong packing would) is an error, not a shipped file."""
    retype = int2fc.int2_fully_connected

    def one_weight_off(model):
        twin, names = retype(model)
        weights = next(t for t in twin.tensors if t.name == names[0])
        weights.data = weights.data.copy()
        flat = weights.data.reshape(-1)
        flat[0] = 1 if flat[0] != 1 else -2
        return twin, names

    monkeypatch.setattr(int2fc, "int2_fully_connected", one_weight_off)
    standard = write_model(_planned(0))
    x = np.random.default_rng(0).random((16, 8, 8, 3), np.float32) * 2 - 1
    with pytest.raises(EdgeqError, match=r"differ from the standard file's on [1-9]\d* of 16"):
        int2fc_file(standard, x)
    expected = litert_outputs(standard, x)  # the build passes its check's LiteRT outputs
    with pytest.raises(EdgeqError, match="differ from the standard file's"):
        int2fc_file(standard, x, expected)


def _quantized(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    spec = TensorSpec.from_details(litert_interpreter(model_bytes).get_input_details()[0])
    return quantize_inputs(x, spec)


def _tflm(model_bytes: bytes, row: np.ndarray) -> np.ndarray:
    interpreter = tflm_interpreter(model_bytes, 1 << 20)
    interpreter.set_input(row[None], 0)
    interpreter.invoke()
    return interpreter.get_output(0).copy()


def test_int2fc_file_is_none_without_a_2_bit_fully_connected_layer():
    x = np.random.default_rng(0).random((4, 8, 8, 3), np.float32)
    plain = opmodels.conv_pool_fc(np.random.default_rng(0), 4)
    assert int2fc_file(write_model(plain), x) is None  # no plan
    conv_only = packed_variant(plain, {0: 2})  # the plan gives only the CONV_2D 2 bits
    assert int2fc_file(write_model(conv_only), x) is None


@pytest.fixture(scope="module")
def two_dense(tmp_path_factory):
    """A small trained model whose inner Dense layer a W2 plan gives 2 bits (the first and last
    layers stay at 8), and an .npz of inputs it separates (test_build's task)."""
    import tf_keras as keras
    from test_build import fit_two_halves

    d = tmp_path_factory.mktemp("two_dense")
    keras.utils.set_random_seed(0)
    inp = keras.Input((16, 16, 1))
    h = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(inp)
    h = keras.layers.GlobalAveragePooling2D()(h)
    h = keras.layers.Dense(24, activation="relu")(h)
    fit_two_halves(keras.Model(inp, keras.layers.Dense(2, activation="softmax")(h)),
                   d / "two_dense.h5")
    return d


def test_build_int2_fc_writes_the_litert_file_beside_the_standard_one(two_dense, tmp_path):
    from click.testing import CliRunner

    from edgeq.cli import main

    out = tmp_path / "out"
    result = CliRunner().invoke(main, [
        "build", "--keras-model", str(two_dense / "two_dense.h5"), "--data",
        str(two_dense / "data.npz"), "--bits", "2", "--method", "minmax", "--no-firmware",
        "--no-baseline", "--int2-fc", "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    section = report["int2_fc"]
    assert section["file"] == "model_int2fc.tflite" and section["standard_file"] == "model.tflite"
    standard, twin = (out / "model.tflite").read_bytes(), (out / section["file"]).read_bytes()
    assert section["bytes"] == len(twin) and section["standard_bytes"] == len(standard)
    inner = next(name for name, bits in report["model"]["bits"].items() if bits == 2)
    assert section["int2_tensors"] == [f"{inner}/kernel"]
    # The saving is the inner kernel's: 8 x 24 values in their container (INT4: 96 bytes) -> 48.
    kernel = {t.name: t for t in read_model(standard).tensors}[f"{inner}/kernel"]
    assert len(standard) - len(twin) == kernel.nbytes - 48
    x = np.load(two_dense / "data.npz")["x"]
    assert section["litert_identical_on"] == report["data"]["evaluation_samples"] > 0
    np.testing.assert_array_equal(litert_outputs(twin, x), litert_outputs(standard, x))
    tflm_interpreter(standard, 1 << 20)  # read_model above: the standard file has no INT2
    console = " ".join(result.output.split())  # the console wraps long lines
    assert f"model_int2fc.tflite: {len(twin):,} bytes (model.tflite {len(standard):,})" in console
    assert "LiteRT only (TFLM refuses INT2 tensors)" in console


def test_build_says_when_the_plan_has_no_2_bit_fully_connected_layer():
    """edgeq's plans keep the first and last weighted layers at 8 bits (edge_bits), so a model
    whose only FULLY_CONNECTED is the last (the person detector's dense, 2 x 256) has none at
    2 bits: --int2-fc then writes no file and says why."""
    from types import SimpleNamespace

    from edgeq.build import _int2fc_stage
    from edgeq.report import int2fc_line

    plain = write_model(packed_variant(opmodels.conv_pool_fc(np.random.default_rng(0), 4),
                                       {0: 2}))
    test = SimpleNamespace(x=np.random.default_rng(0).random((4, 8, 8, 3), np.float32))
    twin, section = _int2fc_stage(plain, test, "model.tflite")
    assert twin is None and section["file"] is None and section["standard_bytes"] == len(plain)
    assert int2fc_line(section) == ("--int2-fc: the plan gives no FULLY_CONNECTED layer 2 bits: "
                                    "no file written")
