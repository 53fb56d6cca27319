"""The .tflite reader: the real MLPerf VWW model against LiteRT's view of it, crafted bad files
(via the schema object API) and fuzzed bytes."""

from __future__ import annotations

import flatbuffers
import numpy as np
import pytest

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import SUPPORTED_OPS
from edgeq.tflite.read import read_model, unpack_int4
from edgeq.tflite.schema import schema


@pytest.fixture(scope="module")
def vww_bytes(vww_int8_path) -> bytes:
    return vww_int8_path.read_bytes()


def _object_model(data: bytes):
    return schema.ModelT.InitFromPackedBuf(data, 0)


def _pack(model_t) -> bytes:
    builder = flatbuffers.Builder(1024)
    builder.Finish(model_t.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _pack_int4_reference(values: np.ndarray) -> bytes:
    """Independent packer: first value in the low nibble, two's complement nibbles."""
    flat = [int(v) & 0xF for v in values.ravel()]
    if len(flat) % 2:
        flat.append(0)
    return bytes(lo | (hi << 4) for lo, hi in zip(flat[0::2], flat[1::2], strict=True))


def test_vww_matches_litert_view(vww_int8_path):
    from ai_edge_litert.interpreter import Interpreter

    model = read_model(vww_int8_path)
    kinds = [op.kind for op in model.ops]
    assert kinds.count("CONV_2D") == 14 and kinds.count("DEPTHWISE_CONV_2D") == 13
    assert kinds[-1] == "SOFTMAX"
    assert model.input_tensors[0].shape == (1, 96, 96, 3)
    assert model.output_tensors[0].shape == (1, 2)
    assert model.ops[0].options["padding"] == "SAME"
    assert model.ops[0].options["fused_activation_function"] == "RELU"
    assert "min_runtime_version" in model.metadata

    litert = Interpreter(model_path=str(vww_int8_path))
    details = {d["index"]: d for d in litert.get_tensor_details()}
    assert len(details) == len(model.tensors)
    constants = 0
    for index, tensor in enumerate(model.tensors):
        d = details[index]
        assert tuple(d["shape"]) == tensor.shape, tensor.name
        assert np.dtype(d["dtype"]).name == tensor.dtype, tensor.name
        q = d["quantization_parameters"]
        if tensor.scale is None:
            assert len(q["scales"]) == 0
        else:
            np.testing.assert_array_equal(q["scales"], tensor.scale)
            np.testing.assert_array_equal(q["zero_points"], tensor.zero_point)
            assert q["quantized_dimension"] == tensor.quantized_dimension
        if tensor.is_constant:
            constants += 1
            np.testing.assert_array_equal(litert.get_tensor(index), tensor.data)
    assert constants >= 2 * 27  # every conv has weights and bias


def test_bytes_and_path_read_the_same(vww_int8_path, vww_bytes):
    a, b = read_model(vww_int8_path), read_model(vww_bytes)
    assert [op.kind for op in a.ops] == [op.kind for op in b.ops]
    np.testing.assert_array_equal(a.tensors[44].data, b.tensors[44].data)


@pytest.mark.parametrize("count", [0, 1, 2, 7, 8, 33])
def test_int4_unpack_roundtrip(count):
    rng = np.random.default_rng(count)
    values = rng.integers(-8, 8, size=count).astype(np.int8)
    packed = _pack_int4_reference(values)
    assert len(packed) == (count + 1) // 2
    np.testing.assert_array_equal(unpack_int4(packed, count), values)


def test_int4_unpack_nibble_order():
    # 0x8F: low nibble 0xF = -1 comes first, high nibble 0x8 = -8 second.
    np.testing.assert_array_equal(unpack_int4(b"\x8f\x07", 3), [-1, -8, 7])
    with pytest.raises(ValueError, match="3 INT4 values need 2 bytes, got 1"):
        unpack_int4(b"\x00", 3)


def _conv_weights_index(model_t) -> int:
    return model_t.subgraphs[0].operators[0].inputs[1]


def test_int4_constant_in_model(vww_bytes):
    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    tensor = model_t.subgraphs[0].tensors[index]
    shape = tuple(int(d) for d in tensor.shape)
    values = np.random.default_rng(0).integers(-8, 8, size=shape).astype(np.int8)
    tensor.type = schema.TensorType.INT4
    model_t.buffers[tensor.buffer].data = np.frombuffer(_pack_int4_reference(values), np.uint8)
    model = read_model(_pack(model_t))
    assert model.tensors[index].dtype == "int4"
    np.testing.assert_array_equal(model.tensors[index].data, values)
    assert model.tensors[index].nbytes == (values.size + 1) // 2


def test_bad_identifier(vww_bytes):
    with pytest.raises(TFLiteFormatError, match="file identifier"):
        read_model(vww_bytes[:4] + b"XXXX" + vww_bytes[8:])
    with pytest.raises(TFLiteFormatError, match="not a TFLite flatbuffer"):
        read_model(b"")


def test_missing_file(tmp_path):
    from edgeq.errors import ModelLoadError

    with pytest.raises(ModelLoadError, match="nope.tflite"):
        read_model(tmp_path / "nope.tflite")


def test_unsupported_op_is_named(vww_bytes):
    model_t = _object_model(vww_bytes)
    code = model_t.operatorCodes[model_t.subgraphs[0].operators[0].opcodeIndex]
    assert "UNIDIRECTIONAL_SEQUENCE_LSTM" not in SUPPORTED_OPS  # (TANH, used before, now is)
    code.builtinCode = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
    code.deprecatedBuiltinCode = schema.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
    with pytest.raises(UnsupportedOpError) as info:
        read_model(_pack(model_t))
    text = str(info.value)
    assert "operator 0 is UNIDIRECTIONAL_SEQUENCE_LSTM" in text and all(op in text for op in SUPPORTED_OPS)


def test_custom_op_is_named(vww_bytes):
    model_t = _object_model(vww_bytes)
    code = model_t.operatorCodes[model_t.subgraphs[0].operators[0].opcodeIndex]
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CUSTOM
    code.customCode = "MyOp"
    with pytest.raises(UnsupportedOpError, match="CUSTOM \\(MyOp\\)"):
        read_model(_pack(model_t))


def test_opcode_takes_max_of_deprecated_and_new_field(vww_bytes):
    model_t = _object_model(vww_bytes)
    for code in model_t.operatorCodes:  # an old file: only the deprecated int8 field is set
        code.deprecatedBuiltinCode, code.builtinCode = code.builtinCode, 0
    model = read_model(_pack(model_t))
    assert [op.kind for op in model.ops] == [op.kind for op in read_model(vww_bytes).ops]


def test_unsupported_tensor_type(vww_bytes):
    model_t = _object_model(vww_bytes)
    model_t.subgraphs[0].tensors[5].type = schema.TensorType.FLOAT16
    with pytest.raises(UnsupportedOpError, match="tensor 5 .* FLOAT16"):
        read_model(_pack(model_t))


def test_two_subgraphs_rejected(vww_bytes):
    model_t = _object_model(vww_bytes)
    model_t.subgraphs.append(model_t.subgraphs[0])
    with pytest.raises(UnsupportedOpError, match="2 subgraphs"):
        read_model(_pack(model_t))


def test_buffer_size_mismatch(vww_bytes):
    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    tensor = model_t.subgraphs[0].tensors[index]
    model_t.buffers[tensor.buffer].data = model_t.buffers[tensor.buffer].data[:-1]
    with pytest.raises(TFLiteFormatError, match=f"tensor {index} .*needs \\d+ bytes"):
        read_model(_pack(model_t))


def test_scale_count_must_match_quantized_dimension(vww_bytes):
    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    quant = model_t.subgraphs[0].tensors[index].quantization
    quant.scale, quant.zeroPoint = quant.scale[:-1], quant.zeroPoint[:-1]
    with pytest.raises(TFLiteFormatError, match=f"tensor {index} .*quantized dimension"):
        read_model(_pack(model_t))
    quant.zeroPoint = quant.zeroPoint[:-1]
    with pytest.raises(TFLiteFormatError, match="zero points"):
        read_model(_pack(model_t))


def test_zero_point_outside_type_range(vww_bytes):
    model_t = _object_model(vww_bytes)
    model_t.subgraphs[0].tensors[0].quantization.zeroPoint = np.array([200], np.int64)
    with pytest.raises(TFLiteFormatError, match="tensor 0 'input_1_int8' has a zero point"):
        read_model(_pack(model_t))


def test_int4_per_channel_fully_connected_rejected(vww_bytes):
    model_t = _object_model(vww_bytes)
    graph = model_t.subgraphs[0]
    fc = next(op for op in graph.operators
              if model_t.operatorCodes[op.opcodeIndex].builtinCode
              == schema.BuiltinOperator.FULLY_CONNECTED)
    weights = graph.tensors[fc.inputs[1]]
    units = int(weights.shape[0])
    values = np.zeros(int(np.prod(weights.shape)), np.int8)
    weights.type = schema.TensorType.INT4
    model_t.buffers[weights.buffer].data = np.frombuffer(_pack_int4_reference(values), np.uint8)
    weights.quantization.scale = np.full(units, 0.01, np.float32)
    weights.quantization.zeroPoint = np.zeros(units, np.int64)
    weights.quantization.quantizedDimension = 0
    with pytest.raises(UnsupportedOpError, match="FULLY_CONNECTED.*TFLM") as e:
        read_model(_pack(model_t))
    assert e.value.hint == "quantize FULLY_CONNECTED INT4 weights per tensor, or use INT8 weights"


def _clean_failure_or_model(data: bytes) -> bool:
    """True when the reader rejected the bytes with one of edgeq's errors, False when it read
    them; any other exception fails the test."""
    try:
        read_model(data)
    except (TFLiteFormatError, UnsupportedOpError):
        return True
    return False


def test_fuzz_truncated(vww_bytes):
    rng = np.random.default_rng(1)
    lengths = set(range(0, 64)) | set(rng.integers(0, len(vww_bytes), 200).tolist())
    for length in sorted(lengths):
        with pytest.raises(TFLiteFormatError):  # never another error type, never a crash
            read_model(vww_bytes[:length])


def _table_positions(data: bytes) -> np.ndarray:
    """Offsets of the bytes that are flatbuffer structure (tables, vectors, names), not weight
    data: flipping those is what exercises the decoder."""
    fb = schema.Model.GetRootAs(data, 0)
    structural = np.ones(len(data), dtype=bool)
    for i in range(fb.BuffersLength()):
        buffer = fb.Buffers(i)
        if buffer.DataLength():
            table = buffer._tab
            start = table.Vector(table.Offset(4))
            structural[start:start + buffer.DataLength()] = False
    return np.flatnonzero(structural)


def test_fuzz_bit_flips(vww_bytes):
    rng = np.random.default_rng(2)
    positions = _table_positions(vww_bytes)
    assert 1000 < len(positions) < len(vww_bytes) // 2
    failures = 0
    for _ in range(400):
        data = bytearray(vww_bytes)
        for pos in rng.choice(positions, size=int(rng.integers(1, 4))):
            data[int(pos)] ^= 1 << int(rng.integers(0, 8))
        failures += _clean_failure_or_model(bytes(data))
    assert failures > 40  # the flips do hit the structure


def test_fuzz_random_words_in_tables(vww_bytes):
    rng = np.random.default_rng(3)
    positions = _table_positions(vww_bytes)
    failures = 0
    for _ in range(300):
        data = bytearray(vww_bytes)
        pos = int(rng.choice(positions[positions < len(vww_bytes) - 4]))
        data[pos:pos + 4] = int(rng.integers(0, 2**32)).to_bytes(4, "little")
        failures += _clean_failure_or_model(bytes(data))
    assert failures > 30


def test_reader_and_interpreter_do_not_import_tensorflow():
    import subprocess
    import sys

    code = ("import sys, edgeq.tflite.read, edgeq.deploy.interp; "
            "sys.exit(1 if 'tensorflow' in sys.modules or 'keras' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


def test_missing_schema_module_is_a_clear_error(monkeypatch):
    from edgeq.errors import RuntimeMissingError
    from edgeq.tflite import schema as schema_module

    monkeypatch.setattr(schema_module, "_CANDIDATES", ("no_such_package.schema_py_generated",))
    with pytest.raises(RuntimeMissingError, match="pip install ai-edge-litert"):
        schema_module._load_schema()


def test_fuzzed_models_prepare_and_run_cleanly(vww_bytes):
    """A corrupt file that still reads either prepares in the reference interpreter and runs, or
    is refused with one of edgeq's errors; never a numpy/Python error."""
    from edgeq.deploy.interp import Interpreter
    from edgeq.errors import EdgeqError

    rng = np.random.default_rng(4)
    positions = _table_positions(vww_bytes)
    ran = 0
    for _ in range(120):
        data = bytearray(vww_bytes)
        data[int(rng.choice(positions))] ^= 1 << int(rng.integers(0, 8))
        try:
            model = read_model(bytes(data))
            interpreter = Interpreter(model)
        except EdgeqError:
            continue
        inputs = [np.zeros(t.shape, np.float32 if t.dtype == "float32" else np.int8)
                  for t in model.input_tensors]
        interpreter.invoke(inputs)
        ran += 1
    assert ran > 10


def test_operators_out_of_order_are_refused(vww_bytes):
    from edgeq.deploy.interp import Interpreter

    model = read_model(vww_bytes)
    model.ops[0], model.ops[1] = model.ops[1], model.ops[0]
    with pytest.raises(TFLiteFormatError, match="operator 0 \\(DEPTHWISE_CONV_2D\\) reads"):
        Interpreter(model)


def test_buffer_stored_after_the_flatbuffer(vww_bytes):
    """Large models keep buffer data after the flatbuffer (Buffer.offset/size); the reader
    takes it from there, and refuses an offset that runs past the end of the file."""
    model_t = _object_model(vww_bytes)
    index = _conv_weights_index(model_t)
    buffer = model_t.buffers[model_t.subgraphs[0].tensors[index].buffer]
    payload = bytes(np.asarray(buffer.data, dtype=np.uint8))
    buffer.data, buffer.offset, buffer.size = None, 2, len(payload)
    first = _pack(model_t)
    buffer.offset = (len(first) + 15) // 16 * 16  # a fixed-width field: the layout stays
    packed = _pack(model_t)
    assert len(packed) == len(first)
    data = packed + bytes(buffer.offset - len(packed)) + payload
    model = read_model(data)
    np.testing.assert_array_equal(model.tensors[index].data,
                                  read_model(vww_bytes).tensors[index].data)
    with pytest.raises(TFLiteFormatError, match="runs past the end"):
        read_model(data[:-1])
