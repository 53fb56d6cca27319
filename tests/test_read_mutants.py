"""edgeq.tflite.read's paths the mutation run found untested: the default hint of a format
error, INT4 byte counts in the message, options whose table is missing or whose type is no
known options type (numpy and the flatbuffer schema only)."""

from __future__ import annotations

import numpy as np
import pytest
from test_tflite_read import _object_model, _pack

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import SUPPORTED_OPS
from edgeq.tflite.read import read_model, unpack_int4
from edgeq.tflite.schema import schema


@pytest.fixture(scope="module")
def vww_bytes(vww_int8_path) -> bytes:
    return vww_int8_path.read_bytes()


def test_a_format_error_says_to_re_export_by_default(vww_bytes):
    model_t = _object_model(vww_bytes)
    model_t.version = 2
    with pytest.raises(TFLiteFormatError) as e:
        read_model(_pack(model_t))
    assert e.value.message == "<bytes>: schema version 2, expected 3"
    assert e.value.hint == "re-export the model with the TFLite converter"


def test_int4_byte_count_in_the_message():
    assert unpack_int4(bytes([0x21, 0x03]), 3).tolist() == [1, 2, 3]
    with pytest.raises(ValueError) as e:
        unpack_int4(bytes([0x21]), 4)
    assert str(e.value) == "4 INT4 values need 2 bytes, got 1"


def _first_conv(model_t):
    ops = model_t.subgraphs[0].operators
    index = next(i for i, op in enumerate(ops)
                 if model_t.operatorCodes[op.opcodeIndex].builtinCode
                 == schema.BuiltinOperator.CONV_2D)
    return index, ops[index]


def test_options_without_their_table_take_the_defaults_and_unknown_types_are_named(vww_bytes):
    model_t = _object_model(vww_bytes)
    index, op = _first_conv(model_t)
    stride = op.builtinOptions.strideW
    assert stride == 2  # vww's first convolution
    op.builtinOptions = None  # the type stays Conv2DOptions, the table is gone
    model = read_model(_pack(model_t))
    assert model.ops[index].options["stride_w"] == schema.Conv2DOptionsT().strideW
    model_t = _object_model(vww_bytes)
    index, op = _first_conv(model_t)
    op.builtinOptionsType = 250  # no options type has this number
    with pytest.raises(TFLiteFormatError) as e:
        read_model(_pack(model_t))
    assert "carries 250, expected Conv2DOptions" in e.value.message


def _broken(vww_bytes, change) -> Exception:
    model_t = _object_model(vww_bytes)
    change(model_t, model_t.subgraphs[0], model_t.subgraphs[0].operators[0])
    with pytest.raises((TFLiteFormatError, UnsupportedOpError)) as e:
        read_model(_pack(model_t))
    return e.value


def _set(op, side: str, k: int, value: int) -> None:
    values = list(getattr(op, side))
    values[k] = value
    setattr(op, side, values)


def test_indices_one_past_the_end_and_operand_counts_are_named(vww_bytes):
    default = "re-export the model with the TFLite converter"
    e = _broken(vww_bytes, lambda m, g, op: setattr(g.tensors[0], "buffer", len(m.buffers)))
    assert (e.message, e.hint) == ("<bytes>: tensor 0 'input_1_int8' refers to buffer 91, but "
                                   "the model has 91 buffers", default)
    e = _broken(vww_bytes, lambda m, g, op: setattr(op, "opcodeIndex", len(m.operatorCodes)))
    assert e.message == "<bytes>: operator 0 uses opcode 8, but the model has 8 opcodes"
    e = _broken(vww_bytes, lambda m, g, op: _set(op, "inputs", 0, len(g.tensors)))
    assert e.message == ("<bytes>: operator 0 (CONV_2D): input refers to tensor 89, but the "
                         "model has 89 tensors")
    # -1 is an omitted optional input, never an output
    e = _broken(vww_bytes, lambda m, g, op: _set(op, "outputs", 0, -1))
    assert e.message == ("<bytes>: operator 0 (CONV_2D): output refers to tensor -1, but the "
                         "model has 89 tensors")
    # the weights are not optional, although the input list is long enough
    e = _broken(vww_bytes, lambda m, g, op: _set(op, "inputs", 1, -1))
    assert e.message == "<bytes>: operator 0 (CONV_2D) has inputs [0, -1, 3]; it needs at least 2"
    e = _broken(vww_bytes, lambda m, g, op: setattr(op, "outputs", list(op.outputs) * 2))
    assert (e.message, e.hint) == ("<bytes>: operator 0 (CONV_2D) has 2 outputs, expected 1",
                                   default)
    e = _broken(vww_bytes, lambda m, g, op: setattr(op, "builtinOptionsType", 250))
    assert e.message == "<bytes>: operator 0 (CONV_2D) carries 250, expected Conv2DOptions"


def test_unsupported_features_name_the_fix(vww_bytes):
    def shuffled(m, g, op):
        fc = next(o for o in g.operators if m.operatorCodes[o.opcodeIndex].builtinCode
                  == schema.BuiltinOperator.FULLY_CONNECTED)
        fc.builtinOptions.weightsFormat = 1

    e = _broken(vww_bytes, shuffled)
    assert isinstance(e, UnsupportedOpError)
    assert e.message == ("<bytes>: operator 29 (FULLY_CONNECTED) uses shuffled weights "
                         "(format 1)")
    assert e.hint == "export FULLY_CONNECTED with the DEFAULT weights format"

    def lstm(m, g, op):
        code = m.operatorCodes[op.opcodeIndex]
        code.builtinCode = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
        code.deprecatedBuiltinCode = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM

    e = _broken(vww_bytes, lstm)
    assert e.hint == "supported operators: " + ", ".join(SUPPORTED_OPS)


def test_an_offset_of_1_means_the_data_is_inline(vww_bytes):
    """Buffer.offset 0 and 1 both mean 'no data after the flatbuffer' (TFLite's own rule is
    offset > 1), so the inline data is read."""
    from test_tflite_read import _conv_weights_index

    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    model_t.buffers[model_t.subgraphs[0].tensors[index].buffer].offset = 1
    np.testing.assert_array_equal(read_model(_pack(model_t)).tensors[index].data,
                                  read_model(vww_bytes).tensors[index].data)


def test_names_for_codes_the_schema_does_not_know_and_their_hints(vww_bytes):
    def code(value, custom=None):
        def change(m, g, op):
            c = m.operatorCodes[op.opcodeIndex]
            c.builtinCode, c.deprecatedBuiltinCode, c.customCode = value, min(value, 127), custom
        return change

    e = _broken(vww_bytes, code(250))
    assert e.message == "<bytes>: operator 0 is builtin code 250, which edgeq does not support"
    e = _broken(vww_bytes, code(schema.BuiltinOperator.CUSTOM))
    assert e.message == ("<bytes>: operator 0 is CUSTOM (no custom code), which edgeq does not "
                         "support")
    e = _broken(vww_bytes, lambda m, g, op: setattr(g.tensors[0], "type", 99))
    assert e.message == ("<bytes>: tensor 0 'input_1_int8' has type type code 99; edgeq "
                         "supports FLOAT32, INT32, INT16, INT8, UINT8, INT4, INT64")
    assert e.hint == "quantize the model to full integer (int8 activations, int8/int4 weights)"

    def far(m, g, op):
        buffer = m.buffers[g.tensors[op.inputs[1]].buffer]
        buffer.data, buffer.offset, buffer.size = None, 10**6, 16

    e = _broken(vww_bytes, far)
    assert e.message.endswith("buffer 45 at offset 1000000 with 16 bytes runs past the end of "
                              "the 333120-byte file")
    assert e.hint == "the file is truncated; copy or export it again"


# -- the second review (2026-12-02): the survivors of the full run at 84.3% -------------------


def test_enum_names_are_the_schema_values_only():
    from edgeq.tflite.read import _enum_names

    assert _enum_names(schema.Padding) == {0: "SAME", 1: "VALID"}


def _with_length(data: bytes, table, field: int, length: int) -> bytes:
    """`data` with the length word of the vector at vtable slot `field` of `table` (an
    accessor object) set to `length`."""
    at = table._tab.Pos + table._tab.Offset(field)
    at += int.from_bytes(data[at:at + 4], "little")  # the uoffset to the vector
    return data[:at] + length.to_bytes(4, "little") + data[at + 4:]


def test_counts_are_bounded_by_the_file_size(vww_bytes):
    """Each vector entry takes at least a 4-byte offset: one more entry than a quarter of the
    file is refused before anything is read; a quarter of it passes that bound (and then fails
    to decode, or is one of many subgraphs)."""
    fb = schema.Model.GetRootAs(vww_bytes, 0)
    graph = fb.Subgraphs(0)
    size = len(vww_bytes)
    limit = size // 4
    assert size % 4 == 0
    for what, table, field in (("buffers", fb, 12), ("operator codes", fb, 6),
                               ("tensors", graph, 4), ("operators", graph, 10),
                               ("metadata entries", fb, 16)):
        with pytest.raises(TFLiteFormatError) as e:
            read_model(_with_length(vww_bytes, table, field, limit + 1))
        assert e.value.message == (f"<bytes>: claims {limit + 1} {what}, more than a "
                                   f"{size}-byte file can hold"), what
    with pytest.raises(TFLiteFormatError) as e:
        read_model(_with_length(vww_bytes, fb, 12, limit))
    assert e.value.message.startswith("<bytes>: corrupt or truncated TFLite flatbuffer (")
    with pytest.raises(TFLiteFormatError) as e:
        read_model(_with_length(vww_bytes, fb, 8, limit + 1))
    assert e.value.message == f"<bytes>: claims {limit + 1} subgraphs, more than the file holds"
    with pytest.raises(UnsupportedOpError) as e:
        read_model(_with_length(vww_bytes, fb, 8, limit))
    assert e.value.message == f"<bytes>: {limit} subgraphs; edgeq supports exactly one"
    assert e.value.hint == ("control flow (WHILE/IF/CALL_ONCE) is not supported; export a plain "
                            "feed-forward model")


def test_identifier_and_decoding_errors_in_full(vww_bytes, tmp_path):
    with pytest.raises(TFLiteFormatError) as e:
        read_model(vww_bytes[:4] + b"XXXX" + vww_bytes[8:])
    assert e.value.message == ("<bytes>: not a TFLite flatbuffer (file identifier b'XXXX', "
                               "expected b'TFL3')")
    assert e.value.hint == "pass a .tflite file written by the TFLite converter or edgeq"
    # Eight bytes with the right identifier are a TFLite file cut short, not another format.
    with pytest.raises(TFLiteFormatError) as e:
        read_model(vww_bytes[:8])
    assert e.value.message.startswith("<bytes>: corrupt or truncated TFLite flatbuffer (error: ")
    assert e.value.hint == ("re-export the model; the file does not decode as a TFLite schema "
                            "v3 model")
    from edgeq.errors import ModelLoadError

    path = tmp_path / "nope.tflite"
    with pytest.raises(ModelLoadError) as e:
        read_model(path)
    assert e.value.message == f"{path}: cannot read the file (No such file or directory)"
    assert e.value.hint == "check the path and permissions"


def test_graph_io_and_metadata_references_are_checked(vww_bytes):
    e = _broken(vww_bytes, lambda m, g, op: setattr(g, "inputs", [len(g.tensors)]))
    assert e.message == "<bytes>: model input refers to tensor 89, but the model has 89 tensors"
    e = _broken(vww_bytes, lambda m, g, op: setattr(g, "outputs", [-1]))
    assert e.message == "<bytes>: model output refers to tensor -1, but the model has 89 tensors"
    e = _broken(vww_bytes, lambda m, g, op: setattr(m.metadata[0], "buffer", len(m.buffers)))
    assert e.message == "<bytes>: metadata 0 refers to buffer 91, but the model has 91 buffers"


def test_description_metadata_and_names_that_are_not_utf8(vww_bytes):
    model = read_model(vww_bytes)
    assert model.description == "MLIR Converted."
    assert list(model.metadata) == ["min_runtime_version"]
    assert model.metadata["min_runtime_version"].rstrip(b"\0") == b"1.5.0"
    model_t = _object_model(vww_bytes)
    model_t.description = None
    model_t.subgraphs[0].tensors[0].name = b"caf\xe9"  # Latin-1, not UTF-8
    model = read_model(_pack(model_t))
    assert model.description == ""
    assert model.tensors[0].name == "caf\ufffd"


def test_dimensions_may_be_zero_but_not_negative(vww_bytes):
    model_t = _object_model(vww_bytes)
    model_t.subgraphs[0].tensors[0].shape = [1, 0, 96, 3]
    assert read_model(_pack(model_t)).tensors[0].shape == (1, 0, 96, 3)
    e = _broken(vww_bytes, lambda m, g, op: setattr(g.tensors[0], "shape", [-1, 96, 96, 3]))
    assert e.message == ("<bytes>: tensor 0 'input_1_int8' has a negative dimension in shape "
                         "(-1, 96, 96, 3)")


def _quantized(vww_bytes, change, index=0):
    """The error reading vww with tensor `index`'s quantization changed, or the tensor read."""
    model_t = _object_model(vww_bytes)
    tensor = model_t.subgraphs[0].tensors[index]
    change(tensor, tensor.quantization)
    try:
        return read_model(_pack(model_t)).tensors[index]
    except (TFLiteFormatError, UnsupportedOpError) as e:
        return e


WHERE0 = "<bytes>: tensor 0 'input_1_int8'"


def test_scales_and_zero_points_are_checked_with_whole_messages(vww_bytes):
    def set_quant(**fields):
        def change(tensor, quant):
            for key, value in fields.items():
                setattr(quant, key, value)
        return change

    e = _quantized(vww_bytes, set_quant(zeroPoint=None))
    assert e.message == f"{WHERE0} has 1 scales but 0 zero points"
    for scale in (0.0, -0.5, np.inf, np.nan):
        e = _quantized(vww_bytes, set_quant(scale=np.array([scale], np.float32)))
        assert e.message == f"{WHERE0} has a zero, negative or non-finite scale", scale
    for zero_point in (-128, 127):
        read = _quantized(vww_bytes, set_quant(zeroPoint=np.array([zero_point], np.int64)))
        assert read.zero_point.tolist() == [zero_point]
    for zero_point in (-129, 128):
        e = _quantized(vww_bytes, set_quant(zeroPoint=np.array([zero_point], np.int64)))
        assert e.message == f"{WHERE0} has a zero point outside the int8 range [-128, 127]"

    # Float tensors' quantization is not used: TFLite does not check it, nor does edgeq.
    def float_with_zero_scale(tensor, quant):
        tensor.type = schema.TensorType.FLOAT32
        quant.scale = np.array([0.0], np.float32)

    read = _quantized(vww_bytes, float_with_zero_scale)
    assert (read.dtype, read.scale.tolist()) == ("float32", [0.0])
    # A tensor without quantization parameters.
    read = read_model(vww_bytes).tensors[2]
    assert (read.name, read.scale, read.zero_point, read.quantized_dimension) == (
        "model/flatten/Const", None, None, 0)


def test_per_channel_dimension_and_channel_count(vww_bytes):
    from test_tflite_read import _conv_weights_index

    index = _conv_weights_index(_object_model(vww_bytes))
    where = f"<bytes>: tensor {index} 'model/conv2d/Conv2D'"

    def qdim(value):
        return lambda tensor, quant: setattr(quant, "quantizedDimension", value)

    e = _quantized(vww_bytes, qdim(4), index)
    assert e.message == (f"{where} of shape (8, 3, 3, 3) is quantized per channel along "
                         "dimension 4, which it does not have")

    def two_scales(tensor, quant):
        quant.scale, quant.zeroPoint = quant.scale[:2], quant.zeroPoint[:2]

    e = _quantized(vww_bytes, two_scales, index)
    assert e.message == (f"{where} of shape (8, 3, 3, 3) has 2 scales, but its quantized "
                         "dimension 0 has 8 channels")


def test_an_offset_of_2_is_outside_the_flatbuffer(vww_bytes):
    """TFLite's rule is offset > 1: from 2 on, the data is `size` bytes at that file offset."""
    from test_tflite_read import _conv_weights_index

    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    buffer = model_t.buffers[model_t.subgraphs[0].tensors[index].buffer]
    size = len(buffer.data)
    buffer.data, buffer.offset, buffer.size = None, 2, size
    data = _pack(model_t)
    got = read_model(data).tensors[index].data
    np.testing.assert_array_equal(got.reshape(-1), np.frombuffer(data[2:2 + size], np.int8))


def test_constants_keep_their_tflite_dtype(vww_bytes):
    model = read_model(vww_bytes)
    dtypes = {t.dtype: t.data.dtype for t in model.tensors if t.data is not None}
    assert dtypes == {"int8": np.int8, "int32": np.int32}


def test_errors_of_a_file_name_the_file(tmp_path):
    """A model read from a path names that path in its errors (not "None")."""
    path = tmp_path / "cut.tflite"
    path.write_bytes(b"\x10\x00\x00\x00TFL3" + bytes(8))
    with pytest.raises(TFLiteFormatError) as e:
        read_model(path)
    assert str(e.value).startswith(f"{path}: "), str(e.value)
