"""What every kernel of the reference interpreter needs at prepare time: the op's tensors, their
quantization, and errors that name the op."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgeq.errors import TFLiteFormatError, UnsupportedOpError
from edgeq.tflite.model import Model, Op, Tensor

INT8_MIN, INT8_MAX = -128, 127


@dataclass
class OpContext:
    model: Model
    op: Op
    index: int

    @property
    def where(self) -> str:
        return f"operator {self.index} ({self.op.kind})"

    def unsupported(self, what: str, hint: str = "") -> UnsupportedOpError:
        return UnsupportedOpError(f"{self.where}: {what}",
                                  hint=hint or "TFLM's reference kernels do not support this")

    def invalid(self, what: str, hint: str = "") -> TFLiteFormatError:
        return TFLiteFormatError(f"{self.where}: {what}",
                                 hint=hint or "the model is inconsistent; re-export it")

    def has_input(self, position: int) -> bool:
        return position < len(self.op.inputs) and self.op.inputs[position] >= 0

    def input(self, position: int) -> Tensor:
        if not self.has_input(position):
            raise self.invalid(f"input {position} is missing")
        return self.model.tensors[self.op.inputs[position]]

    @property
    def output(self) -> Tensor:
        return self.model.tensors[self.op.outputs[0]]

    def expect_dtype(self, tensor: Tensor, role: str, *dtypes: str) -> None:
        if tensor.dtype not in dtypes:
            raise self.unsupported(
                f"{role} '{tensor.name}' is {tensor.dtype}; supported: {', '.join(dtypes)}",
                hint="convert with full-integer quantization (int8 activations, int8/int4 "
                     "weights, int32 bias)")

    def per_tensor(self, tensor: Tensor, role: str) -> tuple[np.float32, int]:
        """(scale, zero point) of a per-tensor quantized tensor."""
        if tensor.scale is None or len(tensor.scale) == 0:
            raise self.invalid(f"{role} '{tensor.name}' has no quantization parameters")
        if len(tensor.scale) > 1:
            raise self.unsupported(f"{role} '{tensor.name}' is quantized per channel; this "
                                   "operator needs per-tensor parameters")
        zero_point = int(tensor.zero_point[0]) if len(tensor.zero_point) else 0
        return np.float32(tensor.scale[0]), zero_point

    def constant(self, tensor: Tensor, role: str) -> np.ndarray:
        if tensor.data is None:
            raise self.unsupported(f"{role} '{tensor.name}' is not a constant",
                                   hint="TFLM needs this input stored in the model")
        return tensor.data

    def check_shape(self, expected: tuple[int, ...]) -> None:
        if tuple(self.output.shape) != tuple(expected):
            raise self.invalid(f"output '{self.output.name}' has shape {self.output.shape}, "
                               f"but the op computes {tuple(expected)}")


def clamp_int8(values: np.ndarray, low: int = INT8_MIN, high: int = INT8_MAX) -> np.ndarray:
    return np.clip(values, low, high).astype(np.int8)
