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
