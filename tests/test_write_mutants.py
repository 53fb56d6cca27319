"""The writer's mutation survivors (#18): operator versions as TFLite's versioning rules give
them (tensorflow/lite/tools/versioning/op_version.cc, written out here as a table, not derived
from edgeq's code), and the tensor checks at their boundaries with their whole messages."""

from __future__ import annotations

import numpy as np
import pytest

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import Model, Op, Tensor
from edgeq.tflite.write import _check_tensor, op_version


def _versioned(kind, dtypes, options=None, shapes=None, out_dtype="int8"):
    """An op whose inputs have `dtypes` (None: an absent optional input) and one output."""
    shapes = shapes or [(1, 4, 4, 8)] * len(dtypes)
    tensors = [Tensor(f"t{i}", shape, dtype or "int8") for i, (dtype, shape)
               in enumerate(zip(dtypes, shapes, strict=True))]
    tensors.append(Tensor("out", (1, 4, 4, 8), out_dtype))
    inputs = [i if dtype is not None else -1 for i, dtype in enumerate(dtypes)]
    op = Op(kind, inputs, [len(tensors) - 1], dict(options or {}))
    return op, Model(tensors, [op], [0], [len(tensors) - 1])


WEIGHTS = (8, 3, 3, 8)
GROUPED = [(1, 4, 4, 8), (8, 3, 3, 4), (8,)]


@pytest.mark.parametrize(("kind", "dtypes", "options", "shapes", "out_dtype", "version"), [
    ("CONV_2D", ["int8", "int4", "int32"], {}, None, "int8", 7),
    ("CONV_2D", ["int8", "int8", "int32"], {}, None, "int8", 3),
    ("CONV_2D", ["int8", "int8", "int32"], {}, GROUPED, "int8", 6),
    ("CONV_2D", ["int8", "int4", "int32"], {}, GROUPED, "int8", 7),
    ("CONV_2D", ["uint8", "uint8", "int32"], {}, None, "uint8", 1),
    ("DEPTHWISE_CONV_2D", ["int8", "int8", "int32"], {}, GROUPED, "int8", 3),
    ("DEPTHWISE_CONV_2D", ["int8", "int4", "int32"], {}, None, "int8", 7),
    ("DEPTHWISE_CONV_2D", ["uint8", "uint8", "int32"], {"dilation_h_factor": 2}, None, "uint8", 2),
    ("DEPTHWISE_CONV_2D", ["uint8", "uint8", "int32"], {"dilation_w_factor": 2}, None, "uint8", 2),
    ("DEPTHWISE_CONV_2D", ["uint8", "uint8", "int32"], {}, None, "uint8", 1),
    ("FULLY_CONNECTED", ["int8", "int8"], {}, None, "int8", 6),
    ("FULLY_CONNECTED", ["int8", "int8", "int32"], {"keep_num_dims": True}, None, "int8", 5),
    ("FULLY_CONNECTED", ["int8", "int8", "int32"], {"keep_num_dims": False}, None, "int8", 4),
    ("FULLY_CONNECTED", ["int8", "int4", "int32"], {}, None, "int8", 10),
    ("FULLY_CONNECTED", ["uint8", "int8", "int32"], {}, None, "int8", 1),
    ("FULLY_CONNECTED", ["uint8", "int4", "int32"], {}, None, "int8", 1),
    ("DEQUANTIZE", ["int4"], {}, None, "float32", 6),
    ("DEQUANTIZE", ["int16"], {}, None, "float32", 3),
    ("DEQUANTIZE", ["int8"], {}, None, "float32", 2),
    ("DEQUANTIZE", ["uint8"], {}, None, "float32", 1),
    ("QUANTIZE", ["float32"], {}, None, "int16", 2),
    ("QUANTIZE", ["float32"], {}, None, "int8", 1),
    ("PAD", ["int8", "int32"], {}, [(1, 2, 2, 2, 8), (5, 2)], "int8", 4),
    ("PAD", ["int8", "int32"], {}, [(1, 4, 4, 8), (4, 2)], "int8", 2),
    ("PAD", ["int16", "int32"], {}, [(1, 4, 4, 8), (4, 2)], "int16", 3),
    ("MEAN", ["int8", "int32"], {}, [(1, 2, 2, 2, 8), (2,)], "int8", 2),
    ("ADD", ["int8", "int8"], {}, None, "int8", 2),
    ("ADD", ["int16", "int16"], {}, None, "int16", 3),
    ("ADD", ["uint8", "uint8"], {}, None, "uint8", 1),
    ("CONCATENATION", ["int8", "int8"], {}, None, "int8", 2),
    ("SOFTMAX", ["int16"], {}, None, "int16", 3),
    ("RESHAPE", ["int8"], {}, None, "int8", 1),
    ("HARD_SWISH", ["int8"], {}, None, "int8", 1),
])
def test_op_versions_follow_tflites_rules(kind, dtypes, options, shapes, out_dtype, version):
    op, model = _versioned(kind, dtypes, options, shapes, out_dtype)
    assert op_version(op, model) == version


def test_op_versions_of_every_int8_elementwise_op():
    for kind in ("ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "CONCATENATION", "SOFTMAX",
                 "MEAN", "MUL", "LEAKY_RELU", "LOGISTIC", "TANH", "SUB", "MAXIMUM", "MINIMUM"):
        for dtype, version in (("int8", 2), ("int16", 3), ("uint8", 1)):
            op, model = _versioned(kind, [dtype], out_dtype=dtype)
            assert op_version(op, model) == version, (kind, dtype)


# -- tensor checks --------------------------------------------------------------------------


def _tensor(dtype="int8", shape=(2, 3), data=None, scale=(0.5,), zero_point=(0,), qdim=0):
    return Tensor("w", tuple(shape), dtype,
                  None if scale is None else np.asarray(scale, np.float32),
                  None if zero_point is None else np.asarray(zero_point, np.int64), qdim,
                  None if data is None else np.asarray(data))


def _error(tensor):
    with pytest.raises((TFLiteFormatError, UnsupportedOpError)) as e:
        _check_tensor(tensor, 3)
    return e.value


WHERE = "tensor 3 'w'"


def test_unknown_type_lists_the_types_and_says_what_to_do():
    e = _error(_tensor("float16"))
    assert isinstance(e, UnsupportedOpError)
    assert e.message == (f"{WHERE} has type 'float16'; edgeq writes "
                         "float32, int32, int16, int8, uint8, int4, int64")
    assert e.hint == "quantize the model to int8 activations, int8/int4 weights"


def test_int4_data_inside_and_outside_its_range():
    for values in ([-8, 7], [0, 0]):
        _check_tensor(_tensor("int4", (2,), values, None, None), 3)
    for values in ([-9, 0], [0, 8]):
        e = _error(_tensor("int4", (2,), values, None, None))
        assert e.message == f"{WHERE} is INT4 but holds values outside [-8, 7]"
        assert e.hint == "quantize the weights with bits=4 (edgeq.intmath)"
    _check_tensor(_tensor("int4", (0,), np.zeros(0, np.int8), None, None), 3)  # empty: no range
    e = _error(_tensor("int4", (2,), None, None, None))
    assert e.message == f"{WHERE} is an INT4 activation; only constant weights can be INT4"
    assert e.hint == "keep activations int8"


def test_data_of_another_shape_or_size():
    _check_tensor(_tensor("int8", (2, 3), np.zeros(6, np.int8)), 3)  # same size, flat: accepted
    for data in (np.zeros((3, 3), np.int8), np.zeros(5, np.int8)):
        e = _error(_tensor("int8", (2, 3), data))
        assert e.message == f"{WHERE} has shape (2, 3) but its data has shape {data.shape}"


def test_scales_zero_points_and_their_ranges():
    e = _error(_tensor(scale=(0.5,), zero_point=None))
    assert e.message == f"{WHERE} has a scale without a zero point or vice versa"
    assert e.hint == "set both Tensor.scale and Tensor.zero_point"
    for scale in ((0.0,), (-1.0,), (np.inf,), (np.nan,)):
        e = _error(_tensor(scale=scale))
        assert e.message == f"{WHERE} has a zero, negative or non-finite scale"
        assert e.hint == "recalibrate; every scale must be a positive float"
    for dtype, lo, hi in (("int8", -128, 127), ("uint8", 0, 255), ("int16", -32768, 32767),
                          ("int32", -(2**31), 2**31 - 1)):
        _check_tensor(_tensor(dtype, zero_point=(lo,)), 3)
        _check_tensor(_tensor(dtype, zero_point=(hi,)), 3)
        for zp in (lo - 1, hi + 1):
            e = _error(_tensor(dtype, zero_point=(zp,)))
            assert e.message == f"{WHERE} has zero points outside the {dtype} range", dtype
    _check_tensor(_tensor("int4", (2,), [1, 2], zero_point=(-8,)), 3)
    _check_tensor(_tensor("int4", (2,), [1, 2], zero_point=(7,)), 3)
    for zp in (-9, 8):
        assert "outside the int4 range" in _error(_tensor("int4", (2,), [1, 2], zero_point=(zp,))).message


def test_per_channel_scales_must_match_their_dimension():
    two = dict(scale=(0.5, 0.25), zero_point=(0, 0))
    _check_tensor(_tensor(shape=(2, 3), qdim=0, **two), 3)
    _check_tensor(_tensor(shape=(3, 2), qdim=1, **two), 3)
    for shape, qdim in (((2, 3), 1), ((2, 3), 2), ((3, 2), -1)):
        e = _error(_tensor(shape=shape, qdim=qdim, **two))
        assert e.message == (f"{WHERE} of shape {shape} has 2 per-channel scales, which does "
                             f"not match its quantized dimension {qdim}")
        assert e.hint == "quantized_dimension must index the channel axis, one scale per channel"
    # One scale is per tensor: the quantized dimension is not looked at.
    _check_tensor(_tensor(shape=(2, 3), qdim=5), 3)
    e = _error(_tensor(scale=(0.5, 0.5), zero_point=(0,)))
    assert e.message == (f"{WHERE} has 2 scales and 1 zero points; they must be equally many, "
                         "at least one")


# -- every op names its activations -----------------------------------------------------------

ONE_INPUT = ("conv2d", "depthwise", "fully_connected", "avg_pool", "max_pool", "mean", "pad",
             "reshape", "softmax", "leaky_relu", "logistic", "tanh", "hard_swish",
             "resize_nearest", "transpose_conv")
TWO_INPUTS = ("add", "mul", "sub", "min_max", "concatenation")


def _activations(model):
    """(tensor index, role) of the op's activation inputs and its output."""
    op = model.ops[0]
    inputs = [i for i in op.inputs if i >= 0 and model.tensors[i].data is None]
    roles = ["input"] if len(inputs) == 1 else [f"input {k}" for k in range(len(inputs))]
    return [*zip(inputs, roles, strict=True), (op.outputs[0], "output")]


@pytest.mark.parametrize("builder", ONE_INPUT + TWO_INPUTS)
def test_every_op_names_the_activation_that_is_not_int8_per_tensor(builder):
    import opmodels

    from edgeq.tflite.write import write_model

    build = getattr(opmodels, builder)
    kind = build(np.random.default_rng(2)).ops[0].kind
    for index, role in _activations(build(np.random.default_rng(2))):
        model = build(np.random.default_rng(2))
        tensor = model.tensors[index]
        tensor.dtype = "int16"
        with pytest.raises(UnsupportedOpError) as e:
            write_model(model)
        assert e.value.message == (f"operator 0 ({kind}): {role} '{tensor.name}' is int16, "
                                   "expected int8"), builder
        assert e.value.hint == "edgeq writes fully integer models (int8 activations)"
        model = build(np.random.default_rng(2))
        tensor = model.tensors[index]
        axis = int(np.argmax(tensor.shape))  # a dimension with several channels
        tensor.scale = np.full(tensor.shape[axis], float(tensor.scale[0]), np.float32)
        tensor.zero_point = np.full(tensor.shape[axis], int(tensor.zero_point[0]), np.int64)
        tensor.quantized_dimension = axis
        with pytest.raises(TFLiteFormatError) as e:
            write_model(model)
        assert e.value.message == (f"operator 0 ({kind}): {role} '{tensor.name}' must be "
                                   "quantized per tensor (one scale and zero point)"), builder


def _write_error(build, change, error=TFLiteFormatError):
    import opmodels

    from edgeq.tflite.write import write_model

    model = getattr(opmodels, build)(np.random.default_rng(2))
    change(model)
    with pytest.raises(error) as e:
        write_model(model)
    return e.value


def test_options_are_checked_by_their_kind_with_whole_messages():
    e = _write_error("conv2d", lambda m: m.ops[0].options.update(colour=1))
    assert e.message == "operator 0 (CONV_2D): unknown options ['colour']"
    assert e.hint == ("known: padding, stride_w, stride_h, dilation_w_factor, "
                      "dilation_h_factor, fused_activation_function")
    e = _write_error("conv2d", lambda m: m.ops[0].options.update(padding="FULL"))
    assert e.message == "operator 0 (CONV_2D): option padding='FULL'; allowed: SAME, VALID"
    e = _write_error("conv2d", lambda m: m.ops[0].options.update(fused_activation_function="GELU"))
    assert e.message.startswith("operator 0 (CONV_2D): option fused_activation_function='GELU'; "
                                "allowed: NONE, RELU")
    for key in ("stride_w", "stride_h", "dilation_w_factor", "dilation_h_factor"):
        e = _write_error("conv2d", lambda m, key=key: m.ops[0].options.update({key: 0}))
        assert e.message == f"operator 0 (CONV_2D): option {key}=0 must be at least 1"
    e = _write_error("conv2d", lambda m: m.ops[0].options.pop("stride_w"))
    assert e.message == "operator 0 (CONV_2D): option 'stride_w' is missing"
    # CONCATENATION's axis may be 0 or negative: only its range is checked.
    import opmodels

    from edgeq.tflite.write import write_model

    model = opmodels.concatenation(np.random.default_rng(2))
    model.ops[0].options["axis"] = -1
    write_model(model)


def test_input_counts_and_references():
    e = _write_error("conv2d", lambda m: setattr(m.ops[0], "inputs", m.ops[0].inputs[:1]))
    assert e.message == "operator 0 (CONV_2D): has 1 inputs, expects 2 to 3"
    e = _write_error("add", lambda m: setattr(m.ops[0], "inputs", m.ops[0].inputs * 2))
    assert e.message == "operator 0 (ADD): has 4 inputs, expects 2"
    e = _write_error("conv2d", lambda m: m.ops[0].inputs.__setitem__(0, len(m.tensors)))
    assert e.message == f"operator 0 (CONV_2D): input 0 refers to tensor {len_tensors('conv2d')}, " \
                        f"but the model has {len_tensors('conv2d')} tensors"
    e = _write_error("conv2d", lambda m: m.ops[0].inputs.__setitem__(1, -1))
    assert e.message.startswith("operator 0 (CONV_2D): input 1 refers to tensor -1")
    e = _write_error("conv2d", lambda m: setattr(m.ops[0], "outputs", [len(m.tensors)]))
    assert e.message == f"operator 0 (CONV_2D): needs exactly one output tensor, has [{len_tensors('conv2d')}]"


def len_tensors(build):
    import opmodels

    return len(getattr(opmodels, build)(np.random.default_rng(2)).tensors)


def test_weights_and_bias_messages():
    e = _write_error("conv2d", lambda m: setattr(m.tensors[1], "dtype", "int16"),
                     UnsupportedOpError)
    assert e.message == ("operator 0 (CONV_2D): weights 'weights' must be constant int8 or int4, "
                         "not int16")
    def one_bias_scale(m):
        m.tensors[2].scale = np.asarray(m.tensors[2].scale[:1])
        m.tensors[2].zero_point = np.asarray(m.tensors[2].zero_point[:1])

    e = _write_error("conv2d", one_bias_scale)
    assert e.message == "operator 0 (CONV_2D): bias 'bias' has 1 scales, the weights 4"
