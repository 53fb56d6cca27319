"""edgeq's in-memory form of an integer TFLite model: what the reader produces, the writer
serializes, the reference interpreter runs and the C generator lowers.

It is deliberately small and plain (numpy arrays, strings, dicts) so that the deploy side needs
neither TensorFlow nor the flatbuffer object API. Conventions:

- `Tensor.dtype` is one of DTYPES. INT4 constants are held *unpacked*, one int8 value per
  element in [-8, 7]; the writer packs two per byte (first value in the low nibble). INT2
  constants likewise, in [-2, 1], packed four per byte (least significant bits first); only
  LiteRT runs them, and only as FULLY_CONNECTED weights (tests/test_int2.py), so the writer
  writes them there alone and the reader refuses them (edgeq.deploy.int2fc).
- `Tensor.scale` / `Tensor.zero_point` are 1-D arrays (length 1 = per tensor, length C = per
  channel along `quantized_dimension`), or None for a tensor without quantization.
- `Op.kind` is the TFLite BuiltinOperator name ("CONV_2D", ...). `Op.inputs` holds tensor indices,
  -1 for an omitted optional input (e.g. no bias). `Op.options` uses the schema's option field
  names in snake_case; enums are strings:
    CONV_2D:            padding ("SAME"|"VALID"), stride_w, stride_h, dilation_w_factor,
                        dilation_h_factor, fused_activation_function
    DEPTHWISE_CONV_2D:  the same + depth_multiplier
    FULLY_CONNECTED:    fused_activation_function, keep_num_dims
    AVERAGE_POOL_2D, MAX_POOL_2D: padding, stride_w, stride_h, filter_width, filter_height,
                        fused_activation_function
    ADD:                fused_activation_function
    CONCATENATION:      axis, fused_activation_function
    MEAN:               keep_dims  (the axes are the op's second input, an INT32 constant)
    SOFTMAX:            beta
    RESHAPE:            new_shape (may be absent; the shape is then the second input)
    MUL:                fused_activation_function (the inputs broadcast, e.g. [1,h,w,c] by
                        [1,1,1,c])
    LEAKY_RELU:         alpha
    SUB:                fused_activation_function (broadcasting as ADD)
    MAXIMUM, MINIMUM:   no options; both inputs and the output share one scale and zero point
                        (the int8 kernels compare stored values; the converter requantizes)
    RESIZE_NEAREST_NEIGHBOR: align_corners, half_pixel_centers (the new size [h, w] is the
                        second input, an INT32 constant); input and output share qparams
    TRANSPOSE_CONV:     padding, stride_w, stride_h, fused_activation_function; inputs
                        [output_shape (INT32 constant [4]), weights [out_c, kh, kw, in_c],
                        input, bias (optional, omitted from the list when absent)]
    PAD, QUANTIZE, DEQUANTIZE, LOGISTIC, TANH, HARD_SWISH: no options (LOGISTIC's int8
                        output is 1/256, -128; TANH's 1/128, 0)
  fused_activation_function is one of "NONE", "RELU", "RELU_N1_TO_1", "RELU6".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

DTYPES = ("float32", "int32", "int16", "int8", "uint8", "int4", "int2", "int64")

# Operators edgeq reads, writes, interprets and generates C for.
SUPPORTED_OPS = (
    "CONV_2D",
    "DEPTHWISE_CONV_2D",
    "FULLY_CONNECTED",
    "ADD",
    "AVERAGE_POOL_2D",
    "MAX_POOL_2D",
    "MEAN",
    "PAD",
    "RESHAPE",
    "CONCATENATION",
    "SOFTMAX",
    "QUANTIZE",
    "DEQUANTIZE",
    "MUL",
    "LEAKY_RELU",
    "LOGISTIC",
    "TANH",
    "HARD_SWISH",
    "SUB",
    "MAXIMUM",
    "MINIMUM",
    "RESIZE_NEAREST_NEIGHBOR",
    "TRANSPOSE_CONV",
)

ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6")


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: np.ndarray | None = None
    zero_point: np.ndarray | None = None
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constant tensors only (weights, bias, shapes, axes)

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and len(self.scale) > 1

    @property
    def num_elements(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) if self.shape else 1

    @property
    def nbytes(self) -> int:
        """Bytes the tensor takes in the flatbuffer or the arena (INT4 packs two per byte,
        INT2 four)."""
        if self.dtype == "int4":
            return (self.num_elements + 1) // 2
        if self.dtype == "int2":
            return (self.num_elements + 3) // 4
        return self.num_elements * np.dtype(self.dtype).itemsize


@dataclass
class Op:
    kind: str
    inputs: list[int]
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class Model:
    tensors: list[Tensor]
    ops: list[Op]
    inputs: list[int]
    outputs: list[int]
    description: str = ""
    metadata: dict[str, bytes] = field(default_factory=dict)

    def tensor(self, index: int) -> Tensor:
        return self.tensors[index]

    @property
    def input_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.inputs]

    @property
    def output_tensors(self) -> list[Tensor]:
        return [self.tensors[i] for i in self.outputs]

    @property
    def weight_bytes(self) -> int:
        """Bytes of all constant tensors, as stored."""
        return sum(t.nbytes for t in self.tensors if t.is_constant)
