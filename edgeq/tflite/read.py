"""Read an integer .tflite flatbuffer into edgeq's Model (edgeq/tflite/model.py).

Only the flatbuffer accessor API is used (no TensorFlow, no interpreter), and every field is
checked before it is trusted: a corrupt or truncated file raises TFLiteFormatError, an operator
or tensor type edgeq cannot handle raises UnsupportedOpError, each naming what is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from edgeq import intmath
from edgeq.errors import EdgeqError, ModelLoadError, TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import SUPPORTED_OPS, Model, Op, Tensor
from edgeq.tflite.schema import schema

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3

# schema TensorType name -> (Tensor.dtype, little-endian numpy dtype of the stored bytes)
_TENSOR_TYPES = {
    "FLOAT32": ("float32", "<f4"),
    "INT32": ("int32", "<i4"),
    "INT16": ("int16", "<i2"),
    "INT8": ("int8", "i1"),
    "UINT8": ("uint8", "u1"),
    "INT4": ("int4", None),  # packed two per byte, see unpack_int4
    "INT64": ("int64", "<i8"),
}

# A zero point must be a value of the tensor's own type.
_ZERO_POINT_RANGES = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7),
                      "int16": (-32768, 32767)}

# Per op: the schema options class and (schema field, Model option name, enum class or None).
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", [
        ("padding", "padding", "Padding"),
        ("strideW", "stride_w", None),
        ("strideH", "stride_h", None),
        ("dilationWFactor", "dilation_w_factor", None),
        ("dilationHFactor", "dilation_h_factor", None),
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", [
        ("padding", "padding", "Padding"),
        ("strideW", "stride_w", None),
        ("strideH", "stride_h", None),
        ("dilationWFactor", "dilation_w_factor", None),
        ("dilationHFactor", "dilation_h_factor", None),
        ("depthMultiplier", "depth_multiplier", None),
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "FULLY_CONNECTED": ("FullyConnectedOptions", [
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
        ("keepNumDims", "keep_num_dims", None),
    ]),
    "AVERAGE_POOL_2D": ("Pool2DOptions", [
        ("padding", "padding", "Padding"),
        ("strideW", "stride_w", None),
        ("strideH", "stride_h", None),
        ("filterWidth", "filter_width", None),
        ("filterHeight", "filter_height", None),
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "ADD": ("AddOptions", [
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "CONCATENATION": ("ConcatenationOptions", [
        ("axis", "axis", None),
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "MEAN": ("ReducerOptions", [("keepDims", "keep_dims", None)]),
    "SOFTMAX": ("SoftmaxOptions", [("beta", "beta", None)]),
    "RESHAPE": ("ReshapeOptions", [("newShape", "new_shape", None)]),
    "PAD": ("PadOptions", []),
    "QUANTIZE": ("QuantizeOptions", []),
    "DEQUANTIZE": ("DequantizeOptions", []),
    "MUL": ("MulOptions", [
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "LEAKY_RELU": ("LeakyReluOptions", [("alpha", "alpha", None)]),
    "HARD_SWISH": ("HardSwishOptions", []),
    "LOGISTIC": (None, []),  # no options table
    "TANH": (None, []),
    "SUB": ("SubOptions", [
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
    "MAXIMUM": (None, []),  # the converter writes no options table
    "MINIMUM": (None, []),
    "RESIZE_NEAREST_NEIGHBOR": ("ResizeNearestNeighborOptions", [
        ("alignCorners", "align_corners", None),
        ("halfPixelCenters", "half_pixel_centers", None),
    ]),
    "TRANSPOSE_CONV": ("TransposeConvOptions", [
        ("padding", "padding", "Padding"),
        ("strideW", "stride_w", None),
        ("strideH", "stride_h", None),
        ("fusedActivationFunction", "fused_activation_function", "ActivationFunctionType"),
    ]),
}
_OPTIONS["MAX_POOL_2D"] = _OPTIONS["AVERAGE_POOL_2D"]

# Fewest inputs each op needs (optional inputs such as a bias may be -1).
_MIN_INPUTS = {
    "CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "ADD": 2,
    "AVERAGE_POOL_2D": 1, "MAX_POOL_2D": 1, "MEAN": 2, "PAD": 2, "RESHAPE": 1,
    "CONCATENATION": 1, "SOFTMAX": 1, "QUANTIZE": 1, "DEQUANTIZE": 1, "MUL": 2,
    "LEAKY_RELU": 1, "LOGISTIC": 1, "TANH": 1, "HARD_SWISH": 1, "SUB": 2, "MAXIMUM": 2,
    "MINIMUM": 2, "RESIZE_NEAREST_NEIGHBOR": 2, "TRANSPOSE_CONV": 3,
}


def _enum_names(enum_class) -> dict[int, str]:
    return {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}


_OPERATOR_NAMES = _enum_names(schema.BuiltinOperator)
_TYPE_NAMES = _enum_names(schema.TensorType)
_OPTION_TYPE_NAMES = _enum_names(schema.BuiltinOptions)


def unpack_int4(packed: bytes | np.ndarray, count: int) -> np.ndarray:
    """INT4 bytes (two values per byte, the first in the low nibble) -> `count` int8 values in
    [-8, 7]; the byte count must be exactly ceil(count / 2)."""
    data = packed.tobytes() if isinstance(packed, np.ndarray) else bytes(packed)
    raw = np.frombuffer(data, dtype=np.uint8)
    if raw.size != (count + 1) // 2:
        raise ValueError(f"{count} INT4 values need {(count + 1) // 2} bytes, got {raw.size}")
    return intmath.unpack_int4(raw, count)


def read_model(source: bytes | bytearray | str | Path) -> Model:
    """Parse a .tflite file (path) or its bytes into a Model; raises TFLiteFormatError or
    UnsupportedOpError on anything edgeq cannot run."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, origin = bytes(source), "<bytes>"
    else:
        path = Path(source)
        origin = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ModelLoadError(f"{path}: cannot read the file ({exc.strerror or exc})",
                                 hint="check the path and permissions") from exc
    try:
        return _Reader(data, origin).read()
    except EdgeqError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt flatbuffer
        raise TFLiteFormatError(
            f"{origin}: corrupt or truncated TFLite flatbuffer ({type(exc).__name__}: {exc})",
            hint="re-export the model; the file does not decode as a TFLite schema v3 model",
        ) from exc


def _int_list(obj, field: str) -> list[int]:
    """An int vector field of an accessor object as a list (the API returns 0 when absent)."""
    if getattr(obj, field + "Length")() == 0:
        return []
    return [int(v) for v in getattr(obj, field + "AsNumpy")()]


def _text(raw: bytes | None) -> str:
    return raw.decode("utf-8", errors="replace") if raw else ""


class _Reader:
    def __init__(self, data: bytes, origin: str):
        self.data = data
        self.origin = origin

    def fail(self, message: str, hint: str = "") -> TFLiteFormatError:
        return TFLiteFormatError(f"{self.origin}: {message}",
                                 hint=hint or "re-export the model with the TFLite converter")

    def read(self) -> Model:
        if len(self.data) < 8 or self.data[4:8] != FILE_IDENTIFIER:
            raise self.fail(f"not a TFLite flatbuffer (file identifier {self.data[4:8]!r}, "
                            f"expected {FILE_IDENTIFIER!r})",
                            hint="pass a .tflite file written by the TFLite converter or edgeq")
        fb = schema.Model.GetRootAs(self.data, 0)
        if fb.Version() != SCHEMA_VERSION:
            raise self.fail(f"schema version {fb.Version()}, expected {SCHEMA_VERSION}")
        if fb.SubgraphsLength() * 4 > len(self.data):
            raise self.fail(f"claims {fb.SubgraphsLength()} subgraphs, more than the file holds")
        if fb.SubgraphsLength() != 1:
            raise UnsupportedOpError(
                f"{self.origin}: {fb.SubgraphsLength()} subgraphs; edgeq supports exactly one",
                hint="control flow (WHILE/IF/CALL_ONCE) is not supported; export a plain "
                     "feed-forward model")
        graph = fb.Subgraphs(0)
        counts = {"buffers": fb.BuffersLength(), "operator codes": fb.OperatorCodesLength(),
                  "tensors": graph.TensorsLength(), "operators": graph.OperatorsLength(),
                  "metadata entries": fb.MetadataLength()}
        for what, count in counts.items():
            if count * 4 > len(self.data):  # each entry is at least a 4-byte offset
                raise self.fail(f"claims {count} {what}, more than a {len(self.data)}-byte "
                                "file can hold")
        self.buffers = [fb.Buffers(i) for i in range(fb.BuffersLength())]
        opcodes = [self.opcode_name(fb.OperatorCodes(i)) for i in range(fb.OperatorCodesLength())]
        tensors = [self.tensor(graph.Tensors(i), i) for i in range(graph.TensorsLength())]
        ops = [self.op(graph.Operators(i), i, opcodes, tensors)
               for i in range(graph.OperatorsLength())]
        inputs, outputs = _int_list(graph, "Inputs"), _int_list(graph, "Outputs")
        for kind, indices in (("input", inputs), ("output", outputs)):
            for index in indices:
                if not 0 <= index < len(tensors):
                    raise self.fail(f"model {kind} refers to tensor {index}, but the model has "
                                    f"{len(tensors)} tensors")
        metadata = {}
        for i in range(fb.MetadataLength()):
            entry = fb.Metadata(i)
            metadata[_text(entry.Name())] = self.buffer_bytes(entry.Buffer(), f"metadata {i}")
        return Model(tensors=tensors, ops=ops, inputs=inputs, outputs=outputs,
                     description=_text(fb.Description()), metadata=metadata)

    def opcode_name(self, code) -> str:
        # Builtin codes above 127 live only in builtin_code; old files only set the deprecated
        # int8 field. TFLite takes the larger of the two, and so do we.
        value = max(int(code.BuiltinCode()), int(code.DeprecatedBuiltinCode()))
        name = _OPERATOR_NAMES.get(value, f"builtin code {value}")
        if name == "CUSTOM":
            name = f"CUSTOM ({_text(code.CustomCode()) or 'no custom code'})"
        return name

    def buffer_bytes(self, index: int, owner: str) -> bytes:
        if not 0 <= index < len(self.buffers):
            raise self.fail(f"{owner} refers to buffer {index}, but the model has "
                            f"{len(self.buffers)} buffers")
        buffer = self.buffers[index]
        offset = int(buffer.Offset())
        if offset > 1:  # data stored after the flatbuffer (models over 2 GB)
            size = int(buffer.Size())
            if offset + size > len(self.data):
                raise self.fail(f"{owner}: buffer {index} at offset {offset} with {size} bytes "
                                f"runs past the end of the {len(self.data)}-byte file",
                                hint="the file is truncated; copy or export it again")
            return self.data[offset:offset + size]
        if buffer.DataLength() == 0:
            return b""
        return buffer.DataAsNumpy().tobytes()

    def tensor(self, fb_tensor, index: int) -> Tensor:
        name = _text(fb_tensor.Name())
        where = f"tensor {index} '{name}'"
        type_name = _TYPE_NAMES.get(fb_tensor.Type(), f"type code {fb_tensor.Type()}")
        if type_name == "INT2":
            raise UnsupportedOpError(
                f"{self.origin}: {where} has type INT2, which TFLM cannot run (only LiteRT "
                "does, in FULLY_CONNECTED)",
                hint="use the standard .tflite; edgeq build --int2-fc writes the INT2 one "
                     "(model_int2fc.tflite) beside it for LiteRT alone")
        if type_name not in _TENSOR_TYPES:
            raise UnsupportedOpError(
                f"{self.origin}: {where} has type {type_name}; edgeq supports "
                + ", ".join(_TENSOR_TYPES),
                hint="quantize the model to full integer (int8 activations, int8/int4 weights)")
        dtype, stored = _TENSOR_TYPES[type_name]
        shape = tuple(_int_list(fb_tensor, "Shape"))
        if any(d < 0 for d in shape):
            raise self.fail(f"{where} has a negative dimension in shape {shape}")
        if fb_tensor.Sparsity() is not None:
            raise UnsupportedOpError(f"{self.origin}: {where} is sparse",
                                     hint="export the model without sparsity encoding")
        scale, zero_point, qdim = self.quantization(fb_tensor, where, shape, dtype)

        count = math.prod(shape)
        raw = self.buffer_bytes(fb_tensor.Buffer(), where)
        values = None
        if raw:
            expected = (count + 1) // 2 if dtype == "int4" else count * np.dtype(stored).itemsize
            if len(raw) != expected:
                raise self.fail(f"{where} of shape {shape} and type {dtype} needs {expected} "
                                f"bytes, its buffer has {len(raw)}")
            if dtype == "int4":
                values = unpack_int4(raw, count).reshape(shape)
            else:
                values = np.frombuffer(raw, dtype=stored).astype(dtype).reshape(shape)
        return Tensor(name=name, shape=shape, dtype=dtype, scale=scale, zero_point=zero_point,
                      quantized_dimension=qdim, data=values)

    def quantization(self, fb_tensor, where: str, shape: tuple[int, ...], dtype: str):
        quant = fb_tensor.Quantization()
        if quant is None or quant.ScaleLength() == 0:
            return None, None, 0
        if quant.DetailsType() != 0:
            raise UnsupportedOpError(f"{self.origin}: {where} uses custom or blockwise "
                                     "quantization details",
                                     hint="use per-tensor or per-channel affine quantization")
        scale = np.array(quant.ScaleAsNumpy(), dtype=np.float32)
        zero_point = (np.array(quant.ZeroPointAsNumpy(), dtype=np.int64)
                      if quant.ZeroPointLength() else np.zeros(0, dtype=np.int64))
        qdim = int(quant.QuantizedDimension())
        if len(zero_point) != len(scale):
            raise self.fail(f"{where} has {len(scale)} scales but {len(zero_point)} zero points")
        if len(scale) > 1:
            if not 0 <= qdim < len(shape):
                raise self.fail(f"{where} of shape {shape} is quantized per channel along "
                                f"dimension {qdim}, which it does not have")
            if shape[qdim] != len(scale):
                raise self.fail(f"{where} of shape {shape} has {len(scale)} scales, but its "
                                f"quantized dimension {qdim} has {shape[qdim]} channels")
        if dtype != "float32" and not np.all(np.isfinite(scale) & (scale > 0)):
            raise self.fail(f"{where} has a zero, negative or non-finite scale")
        if dtype in _ZERO_POINT_RANGES:
            low, high = _ZERO_POINT_RANGES[dtype]
            if np.any((zero_point < low) | (zero_point > high)):
                raise self.fail(f"{where} has a zero point outside the {dtype} range "
                                f"[{low}, {high}]")
        return scale, zero_point, qdim

    def op(self, fb_op, index: int, opcodes: list[str], tensors: list[Tensor]) -> Op:
        code_index = fb_op.OpcodeIndex()
        if not 0 <= code_index < len(opcodes):
            raise self.fail(f"operator {index} uses opcode {code_index}, but the model has "
                            f"{len(opcodes)} opcodes")
        kind = opcodes[code_index]
        if kind not in SUPPORTED_OPS:
            raise UnsupportedOpError(
                f"{self.origin}: operator {index} is {kind}, which edgeq does not support",
                hint="supported operators: " + ", ".join(SUPPORTED_OPS))
        where = f"operator {index} ({kind})"
        inputs, outputs = _int_list(fb_op, "Inputs"), _int_list(fb_op, "Outputs")
        for role, indices, optional in (("input", inputs, True), ("output", outputs, False)):
            for t in indices:
                if not (0 <= t < len(tensors) or (optional and t == -1)):
                    raise self.fail(f"{where}: {role} refers to tensor {t}, but the model has "
                                    f"{len(tensors)} tensors")
        if len(inputs) < _MIN_INPUTS[kind] or any(t < 0 for t in inputs[:_MIN_INPUTS[kind]]):
            raise self.fail(f"{where} has inputs {inputs}; it needs at least "
                            f"{_MIN_INPUTS[kind]}")
        if len(outputs) != 1:
            raise self.fail(f"{where} has {len(outputs)} outputs, expected 1")
        options = self.options(fb_op, kind, where)
        self.check_weights(kind, where, inputs, tensors)
        return Op(kind=kind, inputs=inputs, outputs=outputs, options=options)

    def options(self, fb_op, kind: str, where: str) -> dict:
        class_name, fields = _OPTIONS[kind]
        stored_type = fb_op.BuiltinOptionsType()
        table = fb_op.BuiltinOptions()
        if class_name is None:  # an op without options (LOGISTIC, TANH)
            return {}
        options_class = getattr(schema, class_name + "T")
        if stored_type == 0 or table is None:
            values = options_class()  # defaults, as TFLite uses when options are omitted
        else:
            stored_name = _OPTION_TYPE_NAMES.get(stored_type, str(stored_type))
            if stored_name != class_name:
                raise self.fail(f"{where} carries {stored_name}, expected {class_name}")
            values = options_class.InitFromBuf(table.Bytes, table.Pos)
        result = {}
        for schema_field, name, enum in fields:
            value = getattr(values, schema_field)
            if enum is not None:
                names = _enum_names(getattr(schema, enum))
                if value not in names:
                    raise self.fail(f"{where}: unknown {enum} value {value}")
                result[name] = names[value]
            elif name == "new_shape":
                if value is not None and len(value):
                    result[name] = [int(v) for v in value]
            elif isinstance(value, (bool, np.bool_)):
                result[name] = bool(value)
            elif isinstance(value, (float, np.floating)):
                result[name] = float(value)
            else:
                result[name] = int(value)
        if kind == "FULLY_CONNECTED" and values.weightsFormat != 0:
            raise UnsupportedOpError(
                f"{self.origin}: {where} uses shuffled weights (format {values.weightsFormat})",
                hint="export FULLY_CONNECTED with the DEFAULT weights format")
        return result

    def check_weights(self, kind: str, where: str, inputs: list[int], tensors: list[Tensor]):
        if kind != "FULLY_CONNECTED":
            return
        weights = tensors[inputs[1]]
        if weights.dtype == "int4" and weights.per_channel:
            raise UnsupportedOpError(
                f"{self.origin}: {where} has INT4 weights '{weights.name}' quantized per "
                "channel; TFLM's FULLY_CONNECTED rejects per-channel INT4 weights",
                hint="quantize FULLY_CONNECTED INT4 weights per tensor, or use INT8 weights")
