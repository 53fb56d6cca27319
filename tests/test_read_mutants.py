"""edgeq.tflite.read's paths the mutation run found untested: the default hint of a format
error, INT4 byte counts in the message, options whose table is missing or whose type is no
known options type (numpy and the flatbuffer schema only)."""

from __future__ import annotations

import pytest
from test_tflite_read import _object_model, _pack

from edgeq.errors import TFLiteFormatError
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
