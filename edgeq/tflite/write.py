"""Write edgeq's Model (edgeq/tflite/model.py) as a TFLite flatbuffer that TFLM and LiteRT load.

The model is validated first (operators, tensor types, quantization parameters, shapes and the
TFLM restrictions that would otherwise only show up on the board), then serialized with the
schema's object API. The output is deterministic: the same Model always gives the same bytes.

Layout choices (all standard TFLite):
- buffer 0 is the empty sentinel; every constant tensor gets its own buffer, in tensor order,
  its data 16-byte aligned; metadata buffers follow, in name order;
- operator codes are deduplicated in first-use order, with builtin_code and the deprecated int8
  field set as the converter does, and the op version TFLite's versioning rules give for the
  tensor types (INT4 weights need newer kernels);
- INT4 constants are packed two per byte, first value in the low nibble; INT2 constants four
  per byte, least significant bits first (LiteRT's order, edgeq.intmath.pack_bits). INT2 is
  written only as FULLY_CONNECTED weights, the one place LiteRT runs it, and TFLM runs it
  nowhere (tests/test_int2.py): such a file is for LiteRT alone (edgeq.deploy.int2fc);
- quantization parameters are shared: every distinct scale vector, zero-point vector and
  whole QuantizationParameters table is stored once and referenced by all tensors that have
  it (a FlatBuffer may reference one object from many tables). Per-channel zero points are
  int64 zeros, 8 bytes per channel on every kernel and bias; shared, they cost one vector per
  channel count. vww_96: INT8 297,392 -> 256,832 bytes, INT4 193,776 -> 153,216 (0.652 ->
  0.597 of INT8), identical outputs in TFLM and LiteRT.

LiteRT's x86 kernels round requantization ties of negative values up where TFLM rounds them
away from zero; the exporter stores every layer without a clamp at its zero point from zero
point -128 so that this never shows (edgeq.learn.tiesafe). The writer itself writes the
parameters it is given.

Bias quantization parameters are always written, as TensorFlow's converter does: TFLM and LiteRT
read them for per-tensor FULLY_CONNECTED (bias scale within 2% of s_in * s_w, relative to the
output scale), and LiteRT's default XNNPACK delegate refuses an int8 CONV_2D or
DEPTHWISE_CONV_2D whose bias has none (the node silently falls back to the builtin kernel,
changing speed and outputs), although the builtin kernels and TFLM ignore them there.

Size floor (why an INT4 file cannot be 0.55x the INT8 one for vww_96): kernels are 208,112
bytes at INT8 and 104,420 at INT4 (first and last layer at 8 bits); what both files must hold
besides is at least 10,948 bytes of per-channel float32 kernel scales, 4,032 bytes of shared
int64 zero points (LiteRT requires as many zero points as scales) and 10,952 bytes of int32
biases: (104,420 + 25,932) / (208,112 + 25,932) = 0.557 with no tensor, operator, name or
bias-scale bytes at all.
"""

from __future__ import annotations

import math

import flatbuffers
import numpy as np

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.intmath import WEIGHT_RANGES, pack_bits, pack_int4
from edgeq.tflite.model import ACTIVATIONS, SUPPORTED_OPS, Model, Op, Tensor
from edgeq.tflite.schema import schema

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
BUFFER_ALIGNMENT = 16

_TENSOR_TYPES = {
    "float32": schema.TensorType.FLOAT32,
    "int32": schema.TensorType.INT32,
    "int16": schema.TensorType.INT16,
    "int8": schema.TensorType.INT8,
    "uint8": schema.TensorType.UINT8,
    "int4": schema.TensorType.INT4,
    "int2": schema.TensorType.INT2,
    "int64": schema.TensorType.INT64,
}

# Per op: the schema options class, then per Model option (schema field, value kind, required).
# Value kinds: "int", "bool", "float", "ints", or the name of a schema enum.
_OPTIONS = {
    "CONV_2D": ("Conv2DOptions", {
        "padding": ("padding", "Padding", True),
        "stride_w": ("strideW", "int", True),
        "stride_h": ("strideH", "int", True),
        "dilation_w_factor": ("dilationWFactor", "int", False),
        "dilation_h_factor": ("dilationHFactor", "int", False),
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", {
        "padding": ("padding", "Padding", True),
        "stride_w": ("strideW", "int", True),
        "stride_h": ("strideH", "int", True),
        "dilation_w_factor": ("dilationWFactor", "int", False),
        "dilation_h_factor": ("dilationHFactor", "int", False),
        "depth_multiplier": ("depthMultiplier", "int", True),
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "FULLY_CONNECTED": ("FullyConnectedOptions", {
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
        "keep_num_dims": ("keepNumDims", "bool", False),
    }),
    "AVERAGE_POOL_2D": ("Pool2DOptions", {
        "padding": ("padding", "Padding", True),
        "stride_w": ("strideW", "int", True),
        "stride_h": ("strideH", "int", True),
        "filter_width": ("filterWidth", "int", True),
        "filter_height": ("filterHeight", "int", True),
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "ADD": ("AddOptions", {
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "CONCATENATION": ("ConcatenationOptions", {
        "axis": ("axis", "int", True),
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "MEAN": ("ReducerOptions", {"keep_dims": ("keepDims", "bool", False)}),
    "SOFTMAX": ("SoftmaxOptions", {"beta": ("beta", "float", True)}),
    "RESHAPE": ("ReshapeOptions", {"new_shape": ("newShape", "ints", False)}),
    "PAD": ("PadOptions", {}),
    "QUANTIZE": ("QuantizeOptions", {}),
    "DEQUANTIZE": ("DequantizeOptions", {}),
    "MUL": ("MulOptions", {
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "LEAKY_RELU": ("LeakyReluOptions", {"alpha": ("alpha", "float", True)}),
    "HARD_SWISH": ("HardSwishOptions", {}),
    "LOGISTIC": (None, {}),  # written without an options table, as the converter does
    "TANH": (None, {}),
    "SUB": ("SubOptions", {
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
    "MAXIMUM": (None, {}),  # the converter writes no options table
    "MINIMUM": (None, {}),
    "RESIZE_NEAREST_NEIGHBOR": ("ResizeNearestNeighborOptions", {
        "align_corners": ("alignCorners", "bool", False),
        "half_pixel_centers": ("halfPixelCenters", "bool", False),
    }),
    "TRANSPOSE_CONV": ("TransposeConvOptions", {
        "padding": ("padding", "Padding", True),
        "stride_w": ("strideW", "int", True),
        "stride_h": ("strideH", "int", True),
        "fused_activation_function": ("fusedActivationFunction", "ActivationFunctionType", False),
    }),
}
_OPTIONS["MAX_POOL_2D"] = _OPTIONS["AVERAGE_POOL_2D"]

# Ops with weights (input 1) and an optional bias (input 2, -1 when omitted).
_WEIGHTED = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")


def write_model(model: Model, share_quantization: bool = True) -> bytes:
    """Validate `model` and serialize it as .tflite bytes (file identifier TFL3, schema v3).
    `share_quantization=False` writes every tensor's quantization parameters separately, as
    TensorFlow's converter does (same values, larger file).

    Raises UnsupportedOpError for an op or type edgeq does not write, TFLiteFormatError for a
    model that breaks the TFLite/TFLM rules; both name the op or tensor at fault.
    """
    validate_model(model)
    builder = flatbuffers.Builder(1024 + model.weight_bytes)
    shared = {} if share_quantization else None
    builder.Finish(_model_t(model, shared).Pack(builder), file_identifier=FILE_IDENTIFIER)
    return bytes(builder.Output())


# ---------------------------------------------------------------------------------------------
# Serialization


class _AlignedBufferT(schema.BufferT):
    """A BufferT whose data starts on a BUFFER_ALIGNMENT boundary, so int32/float constants
    are aligned when the model is used in place from flash."""

    def Pack(self, builder):  # noqa: N802 - the object API's method name
        data = None
        if self.data is not None and len(self.data):
            payload = bytes(self.data)
            builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
            builder.head = builder.head - len(payload)
            builder.Bytes[builder.head:builder.head + len(payload)] = payload
            data = builder.EndVector()
        schema.BufferStart(builder)
        if data is not None:
            schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


class _SharedQuantizationT(schema.QuantizationParametersT):
    """Quantization parameters packed once per distinct content: identical scale or
    zero-point vectors (the all-zero int64 zero points of every per-channel tensor with the
    same channel count) and identical whole tables are written once and referenced from every
    tensor that has them. A FlatBuffer may reference one object from many places; readers see
    exactly the same values, only the file is smaller."""

    def __init__(self, shared: dict | None):
        super().__init__()
        self.shared = shared  # one dict per written model: content -> packed offset

    def Pack(self, builder):  # noqa: N802 - the object API's method name
        shared = {} if self.shared is None else self.shared
        key = ("table", self.scale.tobytes(), self.zeroPoint.tobytes(), self.quantizedDimension)
        if key not in shared:
            scale = _shared_vector(builder, shared, self.scale)
            zero_point = _shared_vector(builder, shared, self.zeroPoint)
            schema.QuantizationParametersStart(builder)
            schema.QuantizationParametersAddScale(builder, scale)
            schema.QuantizationParametersAddZeroPoint(builder, zero_point)
            schema.QuantizationParametersAddQuantizedDimension(builder, self.quantizedDimension)
            shared[key] = schema.QuantizationParametersEnd(builder)
        return shared[key]


def _shared_vector(builder, shared: dict, values: np.ndarray) -> int:
    key = ("vector", values.dtype.str, values.tobytes())
    if key not in shared:
        shared[key] = builder.CreateNumpyVector(values)
    return shared[key]


def _tensor_bytes(tensor: Tensor) -> bytes:
    if tensor.dtype == "int4":
        return pack_int4(tensor.data).tobytes()
    if tensor.dtype == "int2":
        return pack_bits(np.asarray(tensor.data).reshape(-1), 2).tobytes()
    little_endian = np.dtype(tensor.dtype).newbyteorder("<")
    return np.ascontiguousarray(tensor.data, dtype=little_endian).tobytes()


def _model_t(model: Model, shared: dict | None):
    buffers = [_AlignedBufferT()]
    tensors = []
    for tensor in model.tensors:
        buffer_index = 0
        if tensor.is_constant:
            buffers.append(_AlignedBufferT(data=_tensor_bytes(tensor)))
            buffer_index = len(buffers) - 1
        tensors.append(_tensor_t(tensor, buffer_index, shared))

    opcodes: list[tuple[str, int]] = []
    operators = []
    for op in model.ops:
        key = (op.kind, op_version(op, model))
        if key not in opcodes:
            opcodes.append(key)
        operators.append(_operator_t(op, opcodes.index(key)))

    metadata = []
    for name in sorted(model.metadata):
        buffers.append(_AlignedBufferT(data=bytes(model.metadata[name])))
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(buffers) - 1
        metadata.append(entry)

    subgraph = schema.SubGraphT()
    subgraph.tensors = tensors
    subgraph.inputs = np.array(model.inputs, dtype=np.int32)
    subgraph.outputs = np.array(model.outputs, dtype=np.int32)
    subgraph.operators = operators
    subgraph.name = "main"

    result = schema.ModelT()
    result.version = SCHEMA_VERSION
    result.operatorCodes = [_opcode_t(kind, version) for kind, version in opcodes]
    result.subgraphs = [subgraph]
    result.description = model.description or None
    result.buffers = buffers
    result.metadata = metadata or None
    return result


def _opcode_t(kind: str, version: int):
    code = getattr(schema.BuiltinOperator, kind)
    opcode = schema.OperatorCodeT()
    opcode.builtinCode = code
    # Codes above 127 do not fit the old int8 field; TFLite stores 127 there
    # (PLACEHOLDER_FOR_GREATER_OP_CODES) and readers take the larger of the two.
    opcode.deprecatedBuiltinCode = min(code, 127)
    opcode.version = version
    return opcode


def _tensor_t(tensor: Tensor, buffer_index: int, shared: dict | None):
    result = schema.TensorT()
    result.name = tensor.name
    result.shape = np.array(tensor.shape, dtype=np.int32)
    result.type = _TENSOR_TYPES[tensor.dtype]
    result.buffer = buffer_index
    if tensor.scale is not None:
        quant = _SharedQuantizationT(shared)
        quant.scale = np.asarray(tensor.scale, dtype=np.float32).reshape(-1)
        quant.zeroPoint = np.asarray(tensor.zero_point, dtype=np.int64).reshape(-1)
        quant.quantizedDimension = int(tensor.quantized_dimension)
        result.quantization = quant
    return result


def _operator_t(op: Op, opcode_index: int):
    class_name, fields = _OPTIONS[op.kind]
    result = schema.OperatorT()
    result.opcodeIndex = opcode_index
    result.inputs = np.array(op.inputs, dtype=np.int32)
    result.outputs = np.array(op.outputs, dtype=np.int32)
    if class_name is None:
        result.builtinOptionsType = schema.BuiltinOptions.NONE
        return result
    options = getattr(schema, class_name + "T")()
    for key, (attr, kind, _) in fields.items():
        if key not in op.options:
            continue  # the schema default
        value = op.options[key]
        if kind == "int":
            value = int(value)
        elif kind == "bool":
            value = bool(value)
        elif kind == "float":
            value = float(value)
        elif kind == "ints":
            value = np.array(value, dtype=np.int32)
        else:
            value = getattr(getattr(schema, kind), value)
        setattr(options, attr, value)
    result.builtinOptionsType = getattr(schema.BuiltinOptions, class_name)
    result.builtinOptions = options
    return result


def _grouped(op: Op, model: Model) -> bool:
    """A CONV_2D whose filters see fewer input channels than the input has."""
    return model.tensors[op.inputs[0]].shape[-1] != model.tensors[op.inputs[1]].shape[-1]


def op_version(op: Op, model: Model) -> int:
    """The operator version TFLite's versioning rules (tools/versioning/op_version.cc) give this
    op for its tensor types; LiteRT refuses versions its kernels do not register."""
    types = [model.tensors[i].dtype if i >= 0 else None for i in op.inputs]
    first = types[0]
    kind = op.kind
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        if first == "int8" and types[1] == "int4":
            return 7
        if kind == "CONV_2D" and _grouped(op, model):
            return 6  # as TF's converter writes a grouped convolution
        if first == "int8":
            return 3
        return 2 if kind == "DEPTHWISE_CONV_2D" and _dilated(op) else 1
    if kind == "FULLY_CONNECTED":
        if types[1] == "int2":
            # The highest version LiteRT 2.3.0 registers (it refuses 15; tests/test_int2.py);
            # the INT2 rule of tools/versioning/op_version.cc was not in the sources read.
            return 14
        if len(op.inputs) == 2:
            return 6
        if op.options.get("keep_num_dims"):
            return 5
        if first == "int8" and types[1] == "int8":
            return 4
        if first == "int8" and types[1] == "int4":
            return 10
        return 1
    if kind == "DEQUANTIZE":
        return {"int4": 6, "int16": 3, "int8": 2}.get(first, 1)
    if kind == "QUANTIZE":
        return 2 if model.tensors[op.outputs[0]].dtype == "int16" else 1
    if kind == "PAD" and len(model.tensors[op.inputs[0]].shape) > 4:
        return 4
    if kind == "TRANSPOSE_CONV":
        if op.options.get("fused_activation_function", "NONE") != "NONE":
            return 4
        if len(op.inputs) == 4:
            return 3
        return 2 if types[2] == "int8" else 1
    if kind == "RESIZE_NEAREST_NEIGHBOR":
        if op.options.get("align_corners") or op.options.get("half_pixel_centers"):
            return 3
        return 2 if first == "int8" else 1
    if kind in ("ADD", "AVERAGE_POOL_2D", "MAX_POOL_2D", "PAD", "CONCATENATION", "SOFTMAX",
                "MEAN", "MUL", "LEAKY_RELU", "LOGISTIC", "TANH", "SUB", "MAXIMUM", "MINIMUM"):
        return {"int16": 3, "int8": 2}.get(first, 1)
    return 1


def _dilated(op: Op) -> bool:
    return op.options.get("dilation_w_factor", 1) != 1 or op.options.get("dilation_h_factor", 1) != 1


# ---------------------------------------------------------------------------------------------
# Validation


def validate_model(model: Model) -> None:
    """Check that `model` is something TFLM and LiteRT run; raise a named error otherwise."""
    count = len(model.tensors)
    for i, tensor in enumerate(model.tensors):
        _check_tensor(tensor, i)
    for role, indices in (("input", model.inputs), ("output", model.outputs)):
        if not indices:
            raise TFLiteFormatError(f"the model has no {role}s",
                                    hint=f"list the graph {role} tensor indices in Model.{role}s")
        for index in indices:
            if not 0 <= index < count:
                raise TFLiteFormatError(f"model {role} refers to tensor {index}, but the model "
                                        f"has {count} tensors")
    for name, value in model.metadata.items():
        if not isinstance(name, str) or not isinstance(value, (bytes, bytearray)):
            raise TFLiteFormatError(f"metadata entry {name!r} must map a str to bytes",
                                    hint="encode metadata values (e.g. json) to bytes first")
    for i, op in enumerate(model.ops):
        _OpCheck(model, op, i).run()


def _where(tensor: Tensor, index: int) -> str:
    return f"tensor {index} '{tensor.name}'"


def _check_tensor(tensor: Tensor, index: int) -> None:
    where = _where(tensor, index)
    if tensor.dtype not in _TENSOR_TYPES:
        raise UnsupportedOpError(f"{where} has type {tensor.dtype!r}; edgeq writes "
                                 + ", ".join(_TENSOR_TYPES),
                                 hint="quantize the model to int8 activations, int8/int4 weights")
    if any(int(d) < 0 for d in tensor.shape):
        raise TFLiteFormatError(f"{where} has a negative dimension in shape {tensor.shape}")
    if tensor.data is not None:
        data = np.asarray(tensor.data)
        if data.shape != tuple(tensor.shape) and data.size != math.prod(tensor.shape):
            raise TFLiteFormatError(f"{where} has shape {tensor.shape} but its data has shape "
                                    f"{data.shape}")
        for packed, bits in (("int4", 4), ("int2", 2)):
            lo, hi = WEIGHT_RANGES[bits]
            if tensor.dtype == packed and data.size and (data.min() < lo or data.max() > hi):
                raise TFLiteFormatError(
                    f"{where} is {packed.upper()} but holds values outside [{lo}, {hi}]",
                    hint=f"quantize the weights with bits={bits} (edgeq.intmath)")
    elif tensor.dtype in ("int4", "int2"):
        raise UnsupportedOpError(f"{where} is an {tensor.dtype.upper()} activation; only "
                                 f"constant weights can be {tensor.dtype.upper()}",
                                 hint="keep activations int8")
    if (tensor.scale is None) != (tensor.zero_point is None):
        raise TFLiteFormatError(f"{where} has a scale without a zero point or vice versa",
                                hint="set both Tensor.scale and Tensor.zero_point")
    if tensor.scale is None:
        return
    scale = np.asarray(tensor.scale).reshape(-1)
    zero_point = np.asarray(tensor.zero_point).reshape(-1)
    if len(scale) != len(zero_point) or len(scale) == 0:
        raise TFLiteFormatError(f"{where} has {len(scale)} scales and {len(zero_point)} zero "
                                "points; they must be equally many, at least one")
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise TFLiteFormatError(f"{where} has a zero, negative or non-finite scale",
                                hint="recalibrate; every scale must be a positive float")
    if len(scale) > 1:
        qdim = tensor.quantized_dimension
        if not 0 <= qdim < len(tensor.shape) or tensor.shape[qdim] != len(scale):
            raise TFLiteFormatError(
                f"{where} of shape {tensor.shape} has {len(scale)} per-channel scales, which "
                f"does not match its quantized dimension {qdim}",
                hint="quantized_dimension must index the channel axis, one scale per channel")
    lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int4": (-8, 7), "int2": (-2, 1),
              "int16": (-32768, 32767)}.get(tensor.dtype, (-(2**31), 2**31 - 1))
    if np.any(zero_point < lo) or np.any(zero_point > hi):
        raise TFLiteFormatError(f"{where} has zero points outside the {tensor.dtype} range")


def _conv_out(size: int, kernel: int, stride: int, dilation: int, padding: str) -> int:
    if padding == "SAME":
        return (size + stride - 1) // stride
    effective = (kernel - 1) * dilation + 1
    return (size - effective + stride) // stride


class _OpCheck:
    """The checks of one operator; each failure names the operator and the tensor."""

    def __init__(self, model: Model, op: Op, index: int):
        self.model = model
        self.op = op
        self.where = f"operator {index} ({op.kind})"

    def fail(self, message: str, hint: str = "") -> TFLiteFormatError:
        return TFLiteFormatError(f"{self.where}: {message}", hint=hint)

    def t(self, position: int) -> Tensor:
        return self.model.tensors[self.op.inputs[position]]

    @property
    def out(self) -> Tensor:
        return self.model.tensors[self.op.outputs[0]]

    def run(self) -> None:
        op = self.op
        if op.kind not in SUPPORTED_OPS:
            raise UnsupportedOpError(f"{self.where} is not supported by edgeq",
                                     hint="supported operators: " + ", ".join(SUPPORTED_OPS))
        count = len(self.model.tensors)
        optional = 2 if op.kind in _WEIGHTED else None
        for position, t in enumerate(op.inputs):
            if not (0 <= t < count or (t == -1 and position == optional)):
                raise self.fail(f"input {position} refers to tensor {t}, but the model has "
                                f"{count} tensors")
        if len(op.outputs) != 1 or not 0 <= op.outputs[0] < count:
            raise self.fail(f"needs exactly one output tensor, has {op.outputs}")
        if self.out.is_constant:
            raise self.fail(f"its output '{self.out.name}' is a constant tensor")
        self.check_options()
        getattr(self, "check_" + op.kind.lower())()

    def check_options(self) -> None:
        _, fields = _OPTIONS[self.op.kind]
        unknown = sorted(set(self.op.options) - set(fields))
        if unknown:
            raise self.fail(f"unknown options {unknown}", hint="known: " + ", ".join(fields))
        for key, (_, kind, required) in fields.items():
            if key not in self.op.options:
                if required:
                    raise self.fail(f"option {key!r} is missing")
                continue
            value = self.op.options[key]
            if kind in ("Padding", "ActivationFunctionType"):
                allowed = ("SAME", "VALID") if kind == "Padding" else ACTIVATIONS
                if value not in allowed:
                    raise self.fail(f"option {key}={value!r}; allowed: {', '.join(allowed)}")
            elif kind == "int" and key != "axis" and int(value) < 1:
                raise self.fail(f"option {key}={value} must be at least 1")

    # -- shared checks -------------------------------------------------------------------------

    def count_inputs(self, low: int, high: int | None = None) -> None:
        n = len(self.op.inputs)
        if n < low or n > (high if high is not None else low):
            expected = f"{low}" if high in (None, low) else f"{low} to {high}"
            raise self.fail(f"has {n} inputs, expects {expected}")

    def activation(self, tensor: Tensor, role: str, dtype: str = "int8") -> None:
        """An int8 activation: not constant, per-tensor quantized."""
        if tensor.dtype != dtype:
            raise UnsupportedOpError(
                f"{self.where}: {role} '{tensor.name}' is {tensor.dtype}, expected {dtype}",
                hint="edgeq writes fully integer models (int8 activations)")
        if dtype in ("int8", "int16") and (tensor.scale is None or len(tensor.scale) != 1):
            raise self.fail(f"{role} '{tensor.name}' must be quantized per tensor "
                            "(one scale and zero point)")

    def same_qparams(self, a: Tensor, b: Tensor, why: str) -> None:
        if not (np.float32(a.scale[0]) == np.float32(b.scale[0])
                and int(a.zero_point[0]) == int(b.zero_point[0])):
            raise self.fail(f"'{a.name}' and '{b.name}' must have the same scale and zero point "
                            f"({why})",
                            hint="insert a QUANTIZE (int8 -> int8) op to requantize")

    def same_shape(self, a: Tensor, b: Tensor) -> None:
        if tuple(a.shape) != tuple(b.shape):
            raise self.fail(f"'{a.name}' has shape {a.shape} but '{b.name}' has {b.shape}")

    def constant_int32(self, position: int, role: str) -> np.ndarray:
        tensor = self.t(position)
        if not tensor.is_constant or tensor.dtype != "int32":
            raise self.fail(f"{role} '{tensor.name}' must be a constant INT32 tensor")
        return np.asarray(tensor.data, dtype=np.int64).reshape(tensor.shape)

    def weights_and_bias(self, channels_dim: int, input_at: int = 0,
                         bias_at: int = 2) -> tuple[Tensor, Tensor | None]:
        """The weights (input 1) and the optional bias (input `bias_at`, its scale checked
        against input `input_at`'s)."""
        weights = self.t(1)
        where = f"weights '{weights.name}'"
        if weights.dtype == "int2" and self.op.kind != "FULLY_CONNECTED":
            raise UnsupportedOpError(f"{self.where}: {where} are INT2; LiteRT runs INT2 weights "
                                     "only in FULLY_CONNECTED, TFLM nowhere",
                                     hint="store them in an INT4 container")
        if not weights.is_constant or weights.dtype not in ("int8", "int4", "int2"):
            raise UnsupportedOpError(f"{self.where}: {where} must be constant int8 or int4, "
                                     f"not {'variable ' if not weights.is_constant else ''}"
                                     f"{weights.dtype}",
                                     hint="quantize weights with edgeq.intmath")
        if weights.scale is None:
            raise self.fail(f"{where} have no quantization parameters")
        if np.any(np.asarray(weights.zero_point) != 0):
            raise self.fail(f"{where} must be symmetric (all zero points 0)")
        if weights.per_channel and weights.quantized_dimension != channels_dim:
            raise self.fail(f"{where} are per-channel along dimension "
                            f"{weights.quantized_dimension}; {self.op.kind} needs "
                            f"{channels_dim} (the output channels)")
        if len(self.op.inputs) <= bias_at or self.op.inputs[bias_at] < 0:
            return weights, None
        bias = self.t(bias_at)
        where = f"bias '{bias.name}'"
        channels = weights.shape[channels_dim]
        if not bias.is_constant or bias.dtype != "int32":
            raise self.fail(f"{where} must be a constant int32 tensor, not {bias.dtype}",
                            hint="quantize the bias with edgeq.intmath.quantize_bias")
        if bias.num_elements != channels:
            raise self.fail(f"{where} has {bias.num_elements} values for {channels} channels")
        if bias.scale is None:
            raise self.fail(f"{where} has no quantization parameters (scale s_in * s_w)")
        if np.any(np.asarray(bias.zero_point) != 0):
            raise self.fail(f"{where} must have zero point 0")
        w_scale = np.asarray(weights.scale, dtype=np.float64).reshape(-1)
        b_scale = np.asarray(bias.scale, dtype=np.float64).reshape(-1)
        expected = float(self.t(input_at).scale[0]) * w_scale
        if len(b_scale) != len(w_scale):
            raise self.fail(f"{where} has {len(b_scale)} scales, the weights {len(w_scale)}")
        if not np.allclose(b_scale, expected, rtol=1e-5, atol=0):
            raise self.fail(f"{where} scale is not input scale * weight scale",
                            hint="the bias scale must be s_in * s_w per channel")
        return weights, bias

    def spatial(self, kernel_h: int, kernel_w: int) -> None:
        """Output height/width of a conv or pool from the padding, strides and dilation."""
        o = self.op.options
        inp, out = self.t(0), self.out
        dh, dw = o.get("dilation_h_factor", 1), o.get("dilation_w_factor", 1)
        h = _conv_out(inp.shape[1], kernel_h, o["stride_h"], dh, o["padding"])
        w = _conv_out(inp.shape[2], kernel_w, o["stride_w"], dw, o["padding"])
        if h < 1 or w < 1 or (out.shape[0], out.shape[1], out.shape[2]) != (inp.shape[0], h, w):
            raise self.fail(f"output '{out.name}' has shape {out.shape}, but input {inp.shape} "
                            f"with {o['padding']} padding gives [{inp.shape[0]}, {h}, {w}, ...]")

    def rank4(self, *tensors: Tensor) -> None:
        for tensor in tensors:
            if len(tensor.shape) != 4:
                raise self.fail(f"'{tensor.name}' must be 4-D (NHWC), has shape {tensor.shape}")

    # -- per op ----------------------------------------------------------------------------------

    def check_conv_2d(self) -> None:
        self.count_inputs(2, 3)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.rank4(inp, self.t(1), out)  # before the weight checks, which index dimensions
        weights, _ = self.weights_and_bias(0)
        if weights.shape[3] != inp.shape[3]:
            raise self.fail(f"weights {weights.shape} take {weights.shape[3]} input channels, "
                            f"the input has {inp.shape[3]}")
        if out.shape[3] != weights.shape[0]:
            raise self.fail(f"output has {out.shape[3]} channels, weights {weights.shape[0]}")
        self.spatial(weights.shape[1], weights.shape[2])

    def check_depthwise_conv_2d(self) -> None:
        self.count_inputs(2, 3)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.rank4(inp, self.t(1), out)  # before the weight checks, which index dimensions
        weights, _ = self.weights_and_bias(3)
        multiplier = self.op.options["depth_multiplier"]
        if weights.shape[0] != 1 or weights.shape[3] != inp.shape[3] * multiplier:
            raise self.fail(f"weights {weights.shape} do not match input channels "
                            f"{inp.shape[3]} x depth_multiplier {multiplier}")
        if out.shape[3] != weights.shape[3]:
            raise self.fail(f"output has {out.shape[3]} channels, weights {weights.shape[3]}")
        self.spatial(weights.shape[1], weights.shape[2])

    def check_fully_connected(self) -> None:
        self.count_inputs(2, 3)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        weights, _ = self.weights_and_bias(0)
        if weights.dtype == "int4" and weights.per_channel:
            raise UnsupportedOpError(
                f"{self.where}: INT4 weights '{weights.name}' are quantized per channel; TFLM's "
                "FULLY_CONNECTED rejects per-channel INT4 weights",
                hint="quantize FULLY_CONNECTED INT4 weights per tensor, or use INT8 weights")
        if len(weights.shape) != 2:
            raise self.fail(f"weights must be 2-D [units, depth], have shape {weights.shape}")
        units, depth = weights.shape
        if inp.num_elements % depth:
            raise self.fail(f"input {inp.shape} does not split into rows of {depth}")
        if out.shape[-1] != units or out.num_elements != inp.num_elements // depth * units:
            raise self.fail(f"output {out.shape} does not match {inp.num_elements // depth} "
                            f"rows of {units} units")

    def check_add(self) -> None:
        self.count_inputs(2)
        a, b, out = self.t(0), self.t(1), self.out
        for role, tensor in (("input 0", a), ("input 1", b), ("output", out)):
            self.activation(tensor, role)
        try:
            shape = np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            raise self.fail(f"inputs {a.shape} and {b.shape} do not broadcast") from None
        if tuple(shape) != tuple(out.shape):
            raise self.fail(f"output {out.shape} is not the broadcast shape {tuple(shape)}")

    def check_pool(self) -> None:
        self.count_inputs(1)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.rank4(inp, out)
        if out.shape[3] != inp.shape[3]:
            raise self.fail(f"output {out.shape} and input {inp.shape} differ in channels")
        self.same_qparams(inp, out, "TFLite pooling does not rescale")
        self.spatial(self.op.options["filter_height"], self.op.options["filter_width"])

    check_average_pool_2d = check_pool
    check_max_pool_2d = check_pool

    def check_mean(self) -> None:
        self.count_inputs(2)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        axes = self.constant_int32(1, "axes").reshape(-1)
        rank = len(inp.shape)
        if axes.size == 0 or np.any(axes < -rank) or np.any(axes >= rank):
            raise self.fail(f"axes {axes.tolist()} are not valid for input {inp.shape}")
        axes = set((axes % rank).tolist())
        keep = self.op.options.get("keep_dims", False)
        expected = tuple(1 if i in axes else d for i, d in enumerate(inp.shape) if keep
                         or i not in axes)
        if tuple(out.shape) != expected:
            raise self.fail(f"output {out.shape}, expected {expected} (keep_dims={keep})")

    def check_pad(self) -> None:
        self.count_inputs(2)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        pads = self.constant_int32(1, "paddings")
        if pads.shape != (len(inp.shape), 2) or np.any(pads < 0):
            raise self.fail(f"paddings {pads.tolist()} must be non-negative, shape "
                            f"[{len(inp.shape)}, 2]")
        expected = tuple(int(d + p.sum()) for d, p in zip(inp.shape, pads, strict=True))
        if tuple(out.shape) != expected:
            raise self.fail(f"output {out.shape}, expected {expected}")
        self.same_qparams(inp, out, "TFLite PAD does not rescale")

    def check_reshape(self) -> None:
        self.count_inputs(1, 2)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        if len(self.op.inputs) == 2:
            self.constant_int32(1, "shape")
        if inp.num_elements != out.num_elements:
            raise self.fail(f"input {inp.shape} and output {out.shape} differ in size")
        self.same_qparams(inp, out, "RESHAPE does not rescale")

    def check_concatenation(self) -> None:
        if not self.op.inputs:
            raise self.fail("has no inputs")
        out = self.out
        self.activation(out, "output")
        rank = len(out.shape)
        axis = self.op.options["axis"]
        if not -rank <= axis < rank:
            raise self.fail(f"axis {axis} is not valid for rank {rank}")
        axis %= rank
        total = 0
        for position in range(len(self.op.inputs)):
            tensor = self.t(position)
            self.activation(tensor, f"input {position}")
            # TFLite's and TFLM's int8 kernels copy bytes; the converter requantizes inputs.
            self.same_qparams(tensor, out, "int8 CONCATENATION does not rescale")
            if len(tensor.shape) != rank or any(
                    tensor.shape[i] != out.shape[i] for i in range(rank) if i != axis):
                raise self.fail(f"input '{tensor.name}' {tensor.shape} does not fit output "
                                f"{out.shape} along axis {axis}")
            total += tensor.shape[axis]
        if total != out.shape[axis]:
            raise self.fail(f"inputs add up to {total} along axis {axis}, output has "
                            f"{out.shape[axis]}")

    def check_softmax(self) -> None:
        self.count_inputs(1)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.same_shape(inp, out)
        if abs(float(out.scale[0]) - 1 / 256) > 1e-3 / 256 or int(out.zero_point[0]) != -128:
            raise self.fail(f"int8 output '{out.name}' must have scale 1/256 and zero point -128 "
                            f"(TFLM requires it), has {float(out.scale[0])}, "
                            f"{int(out.zero_point[0])}")

    def check_quantize(self) -> None:
        self.count_inputs(1)
        inp, out = self.t(0), self.out
        if inp.dtype not in ("float32", "int8"):
            raise UnsupportedOpError(f"{self.where}: input '{inp.name}' is {inp.dtype}; "
                                     "QUANTIZE takes float32 or int8 (requantize)")
        if inp.dtype == "int8":
            self.activation(inp, "input")
        self.activation(out, "output")
        self.same_shape(inp, out)

    def check_mul(self) -> None:
        self.check_add()

    def check_sub(self) -> None:
        self.check_add()

    def check_maximum(self) -> None:
        self.check_add()
        for position in (0, 1):
            self.same_qparams(self.t(position), self.out,
                              f"int8 {self.op.kind} compares the stored values")

    check_minimum = check_maximum

    def check_resize_nearest_neighbor(self) -> None:
        self.count_inputs(2)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.rank4(inp, out)
        size = self.constant_int32(1, "size").reshape(-1)
        if size.size != 2 or np.any(size < 1):
            raise self.fail(f"size {size.tolist()} must be two positive values [height, width]")
        expected = (inp.shape[0], int(size[0]), int(size[1]), inp.shape[3])
        if tuple(out.shape) != expected:
            raise self.fail(f"output {out.shape}, expected {expected}")
        if self.op.options.get("align_corners") and self.op.options.get("half_pixel_centers"):
            raise self.fail("align_corners and half_pixel_centers are both set",
                            hint="TFLite allows at most one of them")
        self.same_qparams(inp, out, "RESIZE_NEAREST_NEIGHBOR copies values")

    def check_transpose_conv(self) -> None:
        """Inputs [output_shape, weights, input, bias?]: the weights/bias checks of a conv
        on those positions."""
        self.count_inputs(3, 4)
        shape = self.constant_int32(0, "output_shape").reshape(-1)
        inp, out = self.t(2), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.rank4(inp, self.t(1), out)  # before the weight checks, which index dimensions
        weights, _ = self.weights_and_bias(0, input_at=2, bias_at=3)
        if weights.dtype == "int4":
            raise UnsupportedOpError(f"{self.where}: INT4 weights '{weights.name}'; TFLM's "
                                     "TRANSPOSE_CONV takes INT8 filters only",
                                     hint="keep Conv2DTranspose layers at 8 bits")
        if tuple(shape.tolist()) != tuple(out.shape):
            raise self.fail(f"output_shape {shape.tolist()} is not the output's {out.shape}")
        if weights.shape[3] != inp.shape[3] or weights.shape[0] != out.shape[3]:
            raise self.fail(f"weights {weights.shape} do not map {inp.shape[3]} input channels "
                            f"to {out.shape[3]} output channels")
        o = self.op.options
        for axis, stride, kernel in ((1, o["stride_h"], weights.shape[1]),
                                     (2, o["stride_w"], weights.shape[2])):
            # the conv of the output with this filter gives back the input's size
            if _conv_out(out.shape[axis], kernel, stride, 1, o["padding"]) != inp.shape[axis]:
                raise self.fail(f"output {out.shape} with {o['padding']} padding and stride "
                                f"{stride} does not map back to input {inp.shape}")

    def unary(self) -> tuple[Tensor, Tensor]:
        self.count_inputs(1)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output")
        self.same_shape(inp, out)
        return inp, out

    def fixed_output(self, out: Tensor, scale: float, zero_point: int) -> None:
        if abs(float(out.scale[0]) - scale) > 1e-3 * scale or int(out.zero_point[0]) != zero_point:
            raise self.fail(f"int8 output '{out.name}' must have scale {scale} and zero point "
                            f"{zero_point} (TFLM and LiteRT require it), has "
                            f"{float(out.scale[0])}, {int(out.zero_point[0])}")

    def check_leaky_relu(self) -> None:
        self.unary()
        if not float(self.op.options["alpha"]) >= 0:
            raise self.fail(f"alpha {self.op.options['alpha']} must be >= 0")

    def check_logistic(self) -> None:
        self.fixed_output(self.unary()[1], 1 / 256, -128)

    def check_tanh(self) -> None:
        self.fixed_output(self.unary()[1], 1 / 128, 0)

    def check_hard_swish(self) -> None:
        inp, out = self.unary()
        if np.float32(np.float32(1 / 128) * np.float32(inp.scale[0])) >= np.float32(out.scale[0]):
            raise self.fail(f"output scale {float(out.scale[0])} must exceed the input scale / "
                            f"128 ({float(inp.scale[0]) / 128}); TFLM refuses a smaller one")

    def check_dequantize(self) -> None:
        self.count_inputs(1)
        inp, out = self.t(0), self.out
        self.activation(inp, "input")
        self.activation(out, "output", dtype="float32")
        self.same_shape(inp, out)
