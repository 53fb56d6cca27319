"""edgeq's reference integer interpreter: runs a Model (edgeq/tflite/model.py) with numpy only,
bit-exact with TFLM's reference kernels (double-rounding MultiplyByQuantizedMultiplier).

    from edgeq.tflite.read import read_model
    from edgeq.deploy.interp import run, run_batch
    model = read_model("model.tflite")
    outputs = run(model, x_int8)              # one sample: a list, one array per output
    scores = run_batch(model, xs_int8)[0]     # N stacked samples: first output, [N, ...]

Like TFLM, every op is prepared once (multipliers, shifts, clamp ranges, shape checks) when the
Interpreter is built, then `invoke` only does the integer arithmetic. Inputs are the model's own
input types: int8 for an int8 input tensor, float32 when the model starts with QUANTIZE from a
float32 input. `quantize_input` / `dequantize_output` convert with a tensor's parameters.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgeq.deploy import interp_conv, interp_ops
from edgeq.deploy.interp_common import OpContext
from edgeq.errors import DataError, EdgeqError, TFLiteFormatError, UnsupportedOpError
from edgeq.intmath import round_half_away
from edgeq.tflite.model import SUPPORTED_OPS, Model, Tensor

Kernel = Callable[[list[np.ndarray]], np.ndarray]

# One prepare function per operator; each returns the kernel that runs it.
PREPARE: dict[str, Callable[[OpContext], Kernel]] = {
    "CONV_2D": interp_conv.prepare_conv_2d,
    "DEPTHWISE_CONV_2D": interp_conv.prepare_depthwise_conv_2d,
    "FULLY_CONNECTED": interp_conv.prepare_fully_connected,
    "ADD": interp_ops.prepare_add,
    "AVERAGE_POOL_2D": interp_ops.prepare_average_pool_2d,
    "MAX_POOL_2D": interp_ops.prepare_max_pool_2d,
    "MEAN": interp_ops.prepare_mean,
    "PAD": interp_ops.prepare_pad,
    "RESHAPE": interp_ops.prepare_reshape,
    "CONCATENATION": interp_ops.prepare_concatenation,
    "SOFTMAX": interp_ops.prepare_softmax,
    "QUANTIZE": interp_ops.prepare_quantize,
    "DEQUANTIZE": interp_ops.prepare_dequantize,
    "MUL": interp_ops.prepare_mul,
    "LEAKY_RELU": interp_ops.prepare_leaky_relu,
    "LOGISTIC": interp_ops.prepare_logistic,
    "TANH": interp_ops.prepare_tanh,
    "HARD_SWISH": interp_ops.prepare_hard_swish,
    "SUB": interp_ops.prepare_sub,
    "MAXIMUM": interp_ops.prepare_maximum,
    "MINIMUM": interp_ops.prepare_minimum,
    "RESIZE_NEAREST_NEIGHBOR": interp_ops.prepare_resize_nearest_neighbor,
    "TRANSPOSE_CONV": interp_conv.prepare_transpose_conv,
}
assert set(PREPARE) == set(SUPPORTED_OPS)

# Tensor.dtype -> numpy dtype of the values the interpreter holds (INT4 is held unpacked).
_NUMPY_DTYPES = {"float32": np.float32, "int32": np.int32, "int16": np.int16, "int8": np.int8,
                 "uint8": np.uint8, "int4": np.int8, "int64": np.int64}


class Interpreter:
    """A prepared model; `invoke(inputs)` returns the output arrays. After an invoke,
    `values[i]` holds tensor i (activations and constants), for inspecting intermediates."""

    def __init__(self, model: Model):
        self.model = model
        self.kernels: list[Kernel] = []
        _check_execution_order(model)
        for index, op in enumerate(model.ops):
            if op.kind not in PREPARE:
                raise UnsupportedOpError(
                    f"operator {index} is {op.kind}, which the reference interpreter cannot run",
                    hint="supported operators: " + ", ".join(SUPPORTED_OPS))
            try:
                self.kernels.append(PREPARE[op.kind](OpContext(model, op, index)))
            except EdgeqError:
                raise
            except Exception as exc:  # noqa: BLE001 - inconsistent shapes/options of a bad file
                raise TFLiteFormatError(
                    f"operator {index} ({op.kind}) cannot be prepared: "
                    f"{type(exc).__name__}: {exc}",
                    hint="the model's shapes or options are inconsistent; re-export it") from exc
        self.constants = {i: t.data.astype(_NUMPY_DTYPES[t.dtype])
                          for i, t in enumerate(model.tensors) if t.data is not None}
        self.values: dict[int, np.ndarray] = {}

    def invoke(self, inputs: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(self.model.inputs):
            raise DataError(f"the model has {len(self.model.inputs)} inputs, got {len(inputs)}",
                            hint="pass one array per model input, in order")
        values = dict(self.constants)
        for position, (index, array) in enumerate(zip(self.model.inputs, inputs, strict=True)):
            values[index] = _check_input(self.model.tensors[index], np.asarray(array), position)
        for op, kernel in zip(self.model.ops, self.kernels, strict=True):
            values[op.outputs[0]] = kernel([values[i] if i >= 0 else None for i in op.inputs])
        self.values = values
        return [values[i] for i in self.model.outputs]


def _check_execution_order(model: Model) -> None:
    """Every operator reads only model inputs, constants and earlier operators' outputs."""
    available = set(model.inputs) | {i for i, t in enumerate(model.tensors) if t.is_constant}
    for index, op in enumerate(model.ops):
        for tensor in op.inputs:
            if tensor >= 0 and tensor not in available:
                raise TFLiteFormatError(
                    f"operator {index} ({op.kind}) reads tensor {tensor} "
                    f"'{model.tensors[tensor].name}', which nothing computes before it",
                    hint="the operators are not in execution order, or an input is missing")
        available.update(op.outputs)
    for tensor in model.outputs:
        if tensor not in available:
            raise TFLiteFormatError(f"model output tensor {tensor} is never computed",
                                    hint="re-export the model")


def _check_input(tensor: Tensor, array: np.ndarray, position: int) -> np.ndarray:
    expected = np.dtype(_NUMPY_DTYPES[tensor.dtype])
    if array.dtype != expected:
        raise DataError(
            f"input {position} '{tensor.name}' must be {expected.name}, got {array.dtype.name}",
            hint="quantize float data first: edgeq.deploy.interp.quantize_input(tensor, x)"
            if tensor.dtype == "int8" else "pass float32 data")
    if tuple(array.shape) != tuple(tensor.shape):
        raise DataError(f"input {position} '{tensor.name}' must have shape {tensor.shape}, "
                        f"got {array.shape}", hint="reshape or resize the input")
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        # C's float->int conversion of NaN/Inf differs between x86 and Arm: no defined answer
        raise DataError(f"input {position} '{tensor.name}' contains NaN or Inf",
                        hint="clean the data before running the model")
    return array


def run(model: Model, x: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """Run the model once on `x` (one array, or one per input); returns the outputs."""
    return Interpreter(model).invoke(x)


def run_batch(model: Model, xs: np.ndarray) -> list[np.ndarray]:
    """Run a single-input model whose input has batch 1 on each sample of `xs` (shape
    [N, *input shape without the batch]); returns each output stacked to [N, ...]."""
    if len(model.inputs) != 1 or not model.input_tensors[0].shape:
        raise DataError("run_batch needs a model with one batched input",
                        hint="call Interpreter(model).invoke(...) per sample instead")
    tensor = model.input_tensors[0]
    xs = np.asarray(xs)
    if tuple(xs.shape[1:]) != tuple(tensor.shape[1:]) or tensor.shape[0] != 1 or not len(xs):
        raise DataError(f"{len(xs)} samples of shape {xs.shape[1:]} do not fit input "
                        f"'{tensor.name}' of shape {tensor.shape}",
                        hint="stack one or more samples along a first axis")
    interpreter = Interpreter(model)
    per_sample = [interpreter.invoke(sample[None]) for sample in xs]
    return [np.concatenate(outputs) for outputs in zip(*per_sample, strict=True)]


def quantize_input(tensor: Tensor, x: np.ndarray) -> np.ndarray:
    """float data -> the tensor's int8 values (round half away from zero, clamp), as TFLite's
    QUANTIZE computes it."""
    if tensor.scale is None or tensor.dtype != "int8":
        raise DataError(f"tensor '{tensor.name}' is not an int8 quantized tensor",
                        hint="pass the model's int8 input tensor")
    x = np.asarray(x, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise DataError(f"data for '{tensor.name}' contains NaN or Inf",
                        hint="clean the data before quantizing it")
    scale, zero_point = np.float32(tensor.scale[0]), int(tensor.zero_point[0])
    quotient = x / scale
    return np.clip(round_half_away(quotient) + zero_point, -128, 127).astype(np.int8)


def dequantize_output(tensor: Tensor, q: np.ndarray) -> np.ndarray:
    """int8 values -> float32 real values of the tensor."""
    if tensor.scale is None:
        return np.asarray(q, dtype=np.float32)
    scale, zero_point = float(tensor.scale[0]), int(tensor.zero_point[0])
    return (scale * (np.asarray(q, dtype=np.float64) - zero_point)).astype(np.float32)
