"""edgeq.tflite.write: round trip with the reader, determinism, layout, validation errors."""

from __future__ import annotations

import copy

import numpy as np
import opmodels
import pytest

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import Model, Tensor
from edgeq.tflite.read import read_model
from edgeq.tflite.schema import schema
from edgeq.tflite.write import BUFFER_ALIGNMENT, write_model

# Schema defaults the reader fills in for options the writer was not given.
_DEFAULTS = {"dilation_w_factor": 1, "dilation_h_factor": 1, "fused_activation_function": "NONE",
             "keep_num_dims": False, "keep_dims": False}


def _case_id(case) -> str:
    name, _, options = case
    return name + "".join(f"-{k}={v}" for k, v in options.items())


def assert_same_model(a: Model, b: Model) -> None:
    assert (a.inputs, a.outputs, a.description, a.metadata) == (
        b.inputs, b.outputs, b.description, b.metadata)
    assert len(a.tensors) == len(b.tensors)
    for x, y in zip(a.tensors, b.tensors, strict=True):
        assert (x.name, tuple(x.shape), x.dtype) == (y.name, tuple(y.shape), y.dtype), x.name
        assert (x.scale is None) == (y.scale is None), x.name
        if x.scale is not None:
            np.testing.assert_array_equal(np.float32(x.scale), y.scale, err_msg=x.name)
            np.testing.assert_array_equal(x.zero_point, y.zero_point, err_msg=x.name)
            if x.per_channel:
                assert x.quantized_dimension == y.quantized_dimension, x.name
        assert (x.data is None) == (y.data is None), x.name
        if x.data is not None:
            np.testing.assert_array_equal(np.reshape(x.data, x.shape), y.data, err_msg=x.name)
    assert [(o.kind, o.inputs, o.outputs) for o in a.ops] == [
        (o.kind, o.inputs, o.outputs) for o in b.ops]
    for x, y in zip(a.ops, b.ops, strict=True):
        for key, value in y.options.items():
            assert x.options.get(key, _DEFAULTS.get(key)) == value, (x.kind, key)


@pytest.mark.parametrize("case", opmodels.CASES, ids=_case_id)
def test_round_trip_through_the_reader(case):
    _, build, options = case
    model = build(np.random.default_rng(11), **options)
    model.metadata = {"edgeq": b'{"version": "0.1"}'}
    data = write_model(model)
    assert data[4:8] == b"TFL3"
    again = read_model(data)
    assert_same_model(model, again)
    assert write_model(again) == data  # byte for byte


def test_deterministic_output():
    a = write_model(opmodels.conv_pool_fc(np.random.default_rng(3), weight_bits=4))
    b = write_model(opmodels.conv_pool_fc(np.random.default_rng(3), weight_bits=4))
    assert a == b
    model = opmodels.conv2d(np.random.default_rng(3))
    model.metadata = {"b": b"2", "a": b"1"}
    swapped = copy.deepcopy(model)
    swapped.metadata = {"a": b"1", "b": b"2"}
    assert write_model(model) == write_model(swapped)


def test_layout_opcodes_versions_buffers_int4_packing():
    model = opmodels.conv_pool_fc(np.random.default_rng(5), weight_bits=4)
    model.metadata = {"edgeq": b"{}"}
    data = write_model(model)
    fb = schema.Model.GetRootAs(data, 0)
    assert fb.Version() == 3
    codes = [fb.OperatorCodes(i) for i in range(fb.OperatorCodesLength())]
    B = schema.BuiltinOperator
    assert [(c.BuiltinCode(), c.DeprecatedBuiltinCode(), c.Version()) for c in codes] == [
        (B.CONV_2D, B.CONV_2D, 7), (B.MAX_POOL_2D, B.MAX_POOL_2D, 2), (B.RESHAPE, B.RESHAPE, 1),
        (B.FULLY_CONNECTED, B.FULLY_CONNECTED, 10), (B.SOFTMAX, B.SOFTMAX, 2)]
    assert fb.Buffers(0).DataLength() == 0
    graph = fb.Subgraphs(0)
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        buffer = fb.Buffers(tensor.Buffer())
        if model.tensors[i].is_constant:
            start = buffer.DataAsNumpy().ctypes.data - np.frombuffer(data, np.uint8).ctypes.data
            assert start % BUFFER_ALIGNMENT == 0
            assert buffer.DataLength() == model.tensors[i].nbytes
        else:
            assert tensor.Buffer() == 0
    weights = model.tensors[model.ops[0].inputs[1]]
    raw = fb.Buffers(graph.Tensors(model.ops[0].inputs[1]).Buffer()).DataAsNumpy()
    assert graph.Tensors(model.ops[0].inputs[1]).Type() == schema.TensorType.INT4
    flat = weights.data.reshape(-1)
    assert int(raw[0]) == (int(flat[0]) & 0xF) | ((int(flat[1]) & 0xF) << 4)
    assert fb.Metadata(0).Name() == b"edgeq"
    # Opcodes are shared: a second CONV_2D of the same version reuses opcode 0.
    twice = opmodels.conv2d(np.random.default_rng(1))
    twice.ops.append(copy.deepcopy(twice.ops[0]))
    out = twice.tensors[twice.ops[0].outputs[0]]
    twice.tensors.append(Tensor("second", out.shape, "int8", out.scale, out.zero_point))
    twice.ops[1].outputs = [len(twice.tensors) - 1]
    twice.outputs = [len(twice.tensors) - 1]
    assert schema.Model.GetRootAs(write_model(twice), 0).OperatorCodesLength() == 1


def test_reference_model_round_trips_and_runs_identically(vww_int8_path):
    from tflite_micro.python.tflite_micro import runtime

    original = vww_int8_path.read_bytes()
    written = write_model(read_model(original))
    assert write_model(read_model(written)) == written
    x = np.random.default_rng(0).integers(-128, 128, size=(1, 96, 96, 3), dtype=np.int8)
    outputs = []
    for data in (original, written):
        interpreter = runtime.Interpreter.from_bytes(data, arena_size=400_000)
        interpreter.set_input(x, 0)
        interpreter.invoke()
        outputs.append(interpreter.get_output(0))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def _position(array: np.ndarray, data: bytes) -> int:
    return array.ctypes.data - np.frombuffer(data, np.uint8).ctypes.data


def test_quantization_parameters_are_stored_once_per_distinct_content():
    model = opmodels.conv_pool_fc(np.random.default_rng(6), weight_bits=4)
    data, unshared = write_model(model), write_model(model, share_quantization=False)
    assert len(data) < len(unshared)
    assert_same_model(read_model(data), read_model(unshared))
    graph = schema.Model.GetRootAs(data, 0).Subgraphs(0)
    places: dict[str, dict[bytes, set[int]]] = {"scale": {}, "zero_point": {}}
    for i, tensor in enumerate(model.tensors):
        if tensor.scale is None:
            continue
        quant = graph.Tensors(i).Quantization()
        for field, values in (("scale", quant.ScaleAsNumpy()), ("zero_point",
                                                              quant.ZeroPointAsNumpy())):
            places[field].setdefault(values.tobytes(), set()).add(_position(values, data))
    # One place per distinct vector: the kernel's and the bias's all-zero per-channel zero
    # points are one vector, every per-tensor (scale, zero point) pair one table.
    assert all(len(p) == 1 for field in places.values() for p in field.values())
    kernel, bias = model.tensors[model.ops[0].inputs[1]], model.tensors[model.ops[0].inputs[2]]
    assert len(kernel.scale) > 1 and len(places["zero_point"]) < sum(
        t.scale is not None for t in model.tensors)
    zeros = np.zeros(len(kernel.scale), np.int64).tobytes()
    assert zeros in places["zero_point"] and np.array_equal(bias.zero_point, kernel.zero_point)


def test_shared_quantization_runs_identically_in_tflm_and_litert(vww_int8_path):
    """The MLPerf model written with and without shared quantization parameters: the same
    outputs in both runtimes, ~40 KB less file."""
    from edgeq.deploy.runtimes import litert_interpreter, tflm_interpreter

    model = read_model(vww_int8_path.read_bytes())
    shared, unshared = write_model(model), write_model(model, share_quantization=False)
    assert len(unshared) - len(shared) > 40_000
    x = np.random.default_rng(1).integers(-128, 128, size=(4, 1, 96, 96, 3), dtype=np.int8)
    for run in ("tflm", "litert"):
        outputs = []
        for data in (shared, unshared):
            if run == "tflm":
                interpreter = tflm_interpreter(data, 400_000)
                for sample in x:
                    interpreter.set_input(sample, 0)
                    interpreter.invoke()
                    outputs.append(interpreter.get_output(0).copy())
            else:
                interpreter = litert_interpreter(data)
                index = interpreter.get_input_details()[0]["index"]
                out = interpreter.get_output_details()[0]["index"]
                for sample in x:
                    interpreter.set_tensor(index, sample)
                    interpreter.invoke()
                    outputs.append(interpreter.get_tensor(out).copy())
        half = len(outputs) // 2
        np.testing.assert_array_equal(np.stack(outputs[:half]), np.stack(outputs[half:]), run)


# --- validation ---------------------------------------------------------------------------


def _broken(build, change, **options):
    model = build(np.random.default_rng(2), **options)
    change(model)
    return model


def _set(obj, **fields):
    for key, value in fields.items():
        setattr(obj, key, value)


@pytest.mark.parametrize(
    ("build", "options", "change", "error", "match"),
    [
        (opmodels.conv2d, {}, lambda m: _set(m.ops[0], kind="GELU"), UnsupportedOpError,
         "operator 0 \\(GELU\\) is not supported"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[0], dtype="float16"), UnsupportedOpError,
         "tensor 0 'input' has type 'float16'"),
        (opmodels.fully_connected, {"weight_bits": 4, "per_channel": True}, lambda m: None,
         UnsupportedOpError, "INT4 weights 'weights' are quantized per channel"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[1], scale=m.tensors[1].scale[:-1],
                                             zero_point=m.tensors[1].zero_point[:-1]),
         TFLiteFormatError, "'weights' .* per-channel scales|'weights' .* scales"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[1], scale=m.tensors[1].scale[:1]),
         TFLiteFormatError, "'weights' has 1 scales and"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[2], scale=m.tensors[2].scale * 2),
         TFLiteFormatError, "bias 'bias' scale is not input scale \\* weight scale"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[2], dtype="int8",
                                             data=m.tensors[2].data.astype(np.int8)),
         TFLiteFormatError, "bias 'bias' must be a constant int32"),
        (opmodels.conv2d, {}, lambda m: _set(m.tensors[3], shape=(1, 1, 1, 1)),
         TFLiteFormatError, "operator 0 \\(CONV_2D\\): output"),
        (opmodels.conv2d, {}, lambda m: m.ops[0].options.pop("padding"), TFLiteFormatError,
         "option 'padding' is missing"),
        (opmodels.conv2d, {}, lambda m: m.ops[0].options.update(paddding="SAME"),
         TFLiteFormatError, "unknown options \\['paddding'\\]"),
        (opmodels.conv2d, {"weight_bits": 4},
         lambda m: m.tensors[1].data.__setitem__((0, 0, 0, 0), 9), TFLiteFormatError,
         "INT4 but holds values outside"),
        (opmodels.softmax, {}, lambda m: _set(m.tensors[1], zero_point=np.array([0])),
         TFLiteFormatError, "scale 1/256 and zero point -128"),
        (opmodels.concatenation, {"same_scales": True},
         lambda m: _set(m.tensors[1], scale=m.tensors[1].scale * 2), TFLiteFormatError,
         "same scale and zero point"),
        (opmodels.mean, {"keep_dims": True}, lambda m: _set(m.tensors[2], shape=(1, 1)),
         TFLiteFormatError, "keep_dims=True"),
        (opmodels.reshape, {}, lambda m: _set(m, outputs=[7]), TFLiteFormatError,
         "model output refers to tensor 7"),
        (opmodels.add, {}, lambda m: _set(m.ops[0], inputs=[0, -1]), TFLiteFormatError,
         "input 1 refers to tensor -1"),
        (opmodels.dequantize, {}, lambda m: _set(m.tensors[1], dtype="int8"), UnsupportedOpError,
         "output 'output' is int8, expected float32"),
    ],
)
def test_validation_names_the_op_and_tensor(build, options, change, error, match):
    model = _broken(build, change, **options)
    with pytest.raises(error, match=match):
        write_model(model)


def converter_versions_disagreeing(model_bytes: bytes) -> list[tuple[str, int, int]]:
    """(op, version in the file, edgeq's op_version) for every op of a file whose version
    edgeq's writer would write differently (files from TF's converter are the reference)."""
    from edgeq.tflite.schema import schema
    from edgeq.tflite.write import op_version

    fb = schema.Model.GetRootAs(model_bytes, 0)
    versions = [fb.OperatorCodes(i).Version() for i in range(fb.OperatorCodesLength())]
    model = read_model(model_bytes)
    operators = fb.Subgraphs(0)
    return [(op.kind, versions[operators.Operators(j).OpcodeIndex()], op_version(op, model))
            for j, op in enumerate(model.ops)
            if versions[operators.Operators(j).OpcodeIndex()] != op_version(op, model)]


def test_op_versions_are_the_converters(vww_int8_path, shared_dir):
    """Operator versions as TF's converter wrote them in the MLPerf files (the per-op sweeps of
    test_interp check the converter's other ops the same way)."""
    for path in (vww_int8_path, shared_dir / "models" / "kws_ref_model.tflite"):
        assert converter_versions_disagreeing(path.read_bytes()) == [], path.name


def _data(index, value):
    """Replace constant tensor `index` (its data and its shape)."""
    def change(model):
        data = np.array(value, np.int32)
        _set(model.tensors[index], data=data, shape=data.shape)
    return change


@pytest.mark.parametrize(("build", "options", "change", "match"), [
    (opmodels.mean, {}, _data(1, [1, 4]), r"axes \[1, 4\] are not valid for input"),
    (opmodels.mean, {}, _data(1, [-5]), r"axes \[-5\] are not valid"),
    (opmodels.mean, {}, _data(1, []), r"axes \[\] are not valid"),
    (opmodels.mean, {"keep_dims": False}, lambda m: _set(m.tensors[2], shape=(1, 1, 1, 3)),
     "keep_dims=False"),
    (opmodels.mean, {}, lambda m: _set(m.ops[0], inputs=[0]), "MEAN"),
    (opmodels.pad, {}, _data(1, [[0, 0], [1, -1], [0, 0], [0, 0]]), "must be non-negative"),
    (opmodels.pad, {}, _data(1, [[0, 0], [1, 1]]), r"shape \[4, 2\]"),
    (opmodels.pad, {}, lambda m: _set(m.tensors[2], shape=(1, 99, 1, 1)), r"output \(1, 99"),
    (opmodels.pad, {}, lambda m: _set(m.tensors[2], scale=m.tensors[2].scale * 2),
     "PAD does not rescale"),
    (opmodels.reshape, {}, lambda m: _set(m.tensors[2], shape=(1, 9999)), "differ in size"),
    (opmodels.reshape, {}, lambda m: _set(m.tensors[2], zero_point=np.array([5])),
     "RESHAPE does not rescale"),
    (opmodels.reshape, {}, lambda m: _set(m.ops[0], inputs=[0, 1, 1]), "RESHAPE"),
])
def test_validation_of_mean_pad_and_reshape(build, options, change, match):
    model = _broken(build, change, **options)
    with pytest.raises(TFLiteFormatError, match=match):
        write_model(model)


def test_mean_accepts_negative_axes():
    model = _broken(opmodels.mean, _data(1, [-3, -2]))  # the same axes as [1, 2]
    assert read_model(write_model(model)).ops[0].kind == "MEAN"


def _shorter_bias(model):
    bias = model.tensors[2]
    _set(bias, data=bias.data[:-1], shape=(bias.shape[0] - 1,), scale=bias.scale[:-1],
         zero_point=bias.zero_point[:-1])


BIAS_HINT = "quantize the bias with edgeq.intmath.quantize_bias"


@pytest.mark.parametrize(("build", "options", "change", "error", "match", "hint"), [
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[1], data=None), UnsupportedOpError,
     r"weights 'weights' must be constant int8 or int4, not variable int8",
     "quantize weights with edgeq.intmath"),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[1], scale=None, zero_point=None),
     TFLiteFormatError, "weights 'weights' have no quantization parameters", None),
    (opmodels.conv2d, {}, lambda m: m.tensors[1].zero_point.__setitem__(0, 3), TFLiteFormatError,
     r"weights 'weights' must be symmetric \(all zero points 0\)", None),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[2], dtype="int8",
                                         data=m.tensors[2].data.astype(np.int8)),
     TFLiteFormatError, "bias 'bias' must be a constant int32 tensor, not int8", BIAS_HINT),
    (opmodels.conv2d, {}, _shorter_bias, TFLiteFormatError,
     r"bias 'bias' has \d+ values for \d+ channels", None),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[2], scale=None, zero_point=None),
     TFLiteFormatError, r"bias 'bias' has no quantization parameters \(scale s_in \* s_w\)",
     None),
    (opmodels.conv2d, {}, lambda m: m.tensors[2].zero_point.__setitem__(0, 1), TFLiteFormatError,
     "bias 'bias' must have zero point 0", None),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[2], scale=m.tensors[2].scale * 1.001),
     TFLiteFormatError, r"scale is not input scale \* weight scale",
     "the bias scale must be s_in * s_w per channel"),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[0], dtype="int16"), UnsupportedOpError,
     r"input 'input' is int16, expected int8",
     "edgeq writes fully integer models (int8 activations)"),
    (opmodels.conv2d, {}, lambda m: _set(m.tensors[3], scale=np.full(4, 0.1, np.float32),
                                         zero_point=np.zeros(4, np.int64),
                                         quantized_dimension=3), TFLiteFormatError,
     r"output 'output' must be quantized per tensor", None),
    (opmodels.fully_connected, {"weight_bits": 4, "per_channel": True}, lambda m: None,
     UnsupportedOpError, "INT4 weights 'weights' are quantized per channel",
     "quantize FULLY_CONNECTED INT4 weights per tensor, or use INT8 weights"),
])
def test_weights_bias_and_activation_errors_say_what_to_do(build, options, change, error, match,
                                                           hint):
    model = _broken(build, change, **options)
    with pytest.raises(error, match=match) as e:
        write_model(model)
    if hint is not None:
        assert e.value.hint == hint


def test_op_versions_of_issue_14_ops_are_the_converters():
    """SUB, MAXIMUM, MINIMUM, RESIZE_NEAREST_NEIGHBOR (tf_keras's UpSampling2D: half-pixel
    centres) and TRANSPOSE_CONV (with a bias and a fused ReLU, with a bias, without one) as
    TF's converter versions them in an int8 file of tf_keras layers (batch 1, so that the
    output_shape is a constant)."""
    import tensorflow as tf
    import tf_keras as k

    k.utils.set_random_seed(0)
    L = k.layers
    inp = k.Input((6, 6, 3), batch_size=1)
    a, b = L.Conv2D(4, 3, padding="same")(inp), L.Conv2D(4, 1)(inp)
    h = L.Minimum()([L.Maximum()([L.Subtract()([a, b]), b]), a])
    biased = "random_normal"
    outs = [L.UpSampling2D()(h),
            L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu",
                              bias_initializer=biased)(h),
            L.Conv2DTranspose(3, 2, strides=2, padding="valid", bias_initializer=biased)(h),
            L.Conv2DTranspose(3, 3, padding="valid", use_bias=False)(h)]
    rng = np.random.default_rng(0)
    converter = tf.lite.TFLiteConverter.from_keras_model(k.Model(inp, outs))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: (
        [rng.uniform(-1, 1, (1, 6, 6, 3)).astype(np.float32)] for _ in range(8))
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    data = converter.convert()
    model = read_model(data)
    kinds = {op.kind for op in model.ops}
    assert {"SUB", "MAXIMUM", "MINIMUM", "RESIZE_NEAREST_NEIGHBOR", "TRANSPOSE_CONV"} <= kinds
    from edgeq.tflite.write import op_version

    transposes = [op for op in model.ops if op.kind == "TRANSPOSE_CONV"]
    assert sorted(len(op.inputs) for op in transposes) == [3, 4, 4]
    # One operator code per op in the converter's file, at the highest version of its uses
    # (edgeq writes one per version): 4 for the fused ReLU, 3 with a bias, 2 without.
    assert sorted(op_version(op, model) for op in transposes) == [2, 3, 4]
    disagreeing = converter_versions_disagreeing(data)
    assert {(kind, file) for kind, file, _ in disagreeing} <= {("TRANSPOSE_CONV", 4)}
    # and the converter's own file runs in edgeq's interpreter exactly as in TFLM
    from tflite_micro.python.tflite_micro import runtime

    from edgeq.deploy.interp import Interpreter

    x = rng.integers(-128, 128, size=(1, 6, 6, 3)).astype(np.int8)
    tflm = runtime.Interpreter.from_bytes(data, arena_size=256 * 1024)
    tflm.set_input(x, 0)
    tflm.invoke()
    got = Interpreter(model).invoke([x])
    for i, out in enumerate(got):
        np.testing.assert_array_equal(out, tflm.get_output(i), f"output {i}")
