"""From a folded Graph to a quantized model and an integer TFLite flatbuffer.

- `bit_plan(graph, bits)`: weight bits per weighted layer (first and last stay at 8 bits).
- `quantize_minmax(graph, calib_x, bits)`: min-max PTQ → QuantizedGraph (the object that
  reconstruction engines improve and the exporter writes).
- `nonnegative_logits(graph, ranges)`: the softmax-input shift that keeps LiteRT bit-exact
  with TFLM on classifier heads (see its docstring); quantize_minmax applies it.
- `to_tflite_model(qgraph, io_dtype)`: QuantizedGraph → edgeq's TFLite Model IR.
- `export_tflite(keras_model, calib_x, bits, path)`: the whole way to .tflite bytes.

Layout conversions (Keras → TFLite): conv kernels HWIO → OHWI, depthwise HWC·M → 1HW(C·M),
dense (in, out) → (out, in). INT4 weights: per channel for CONV_2D / DEPTHWISE_CONV_2D, per tensor
for FULLY_CONNECTED (TFLM rejects per-channel INT4 there), so dense is always per tensor.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from . import __version__
from .errors import DataError, OutputError, UnsupportedLayerError
from .graph import WEIGHTED_KINDS, Graph, Node, capture
from .quant import grid
from .quant.observe import observe_ranges
from .quant.sim import QuantizedGraph, assign_activation_qparams, quantize_layer
from .tflite.model import Model, Op, Tensor

EXPORT_BITS = (8, 4)  # weight widths TFLite / TFLM can store and run
IO_DTYPES = ("int8", "float32")


def bit_plan(graph: Graph, bits: int | dict[str, int] = 8, edge_bits: int = 8) -> dict[str, int]:
    """Weight bits for every weighted node. An int gives that width to every layer except the
    first and last, which stay at `edge_bits` (they are small and the most sensitive, the usual
    practice); a dict is taken as is, layers not named get 8 bits. Unknown names are rejected."""
    weighted = [n.name for n in graph.weighted_nodes]
    if isinstance(bits, dict):
        unknown = sorted(set(bits) - set(weighted))
        if unknown:
            raise DataError(f"bit plan names layers that the model does not have: {unknown}",
                            f"weighted layers are: {', '.join(weighted)}")
        plan = {name: int(bits.get(name, 8)) for name in weighted}
    else:
        plan = {name: int(bits) for name in weighted}
        if weighted and int(bits) < edge_bits:
            plan[weighted[0]] = plan[weighted[-1]] = edge_bits
    for b in set(plan.values()):
        grid.weight_qrange(b)  # rejects unknown widths with the list of known ones
    return plan


def quantize_minmax(graph: Graph, calib_x, bits: int | dict[str, int] = 8,
                    batch_size: int = 64, shift_logits: bool = True) -> QuantizedGraph:
    """Min-max post-training quantization: weights per channel from their own range,
    activations from the range observed on `calib_x` (an array of samples or batches).
    With `shift_logits` (the default) the inputs of a softmax are made non-negative first
    (`nonnegative_logits`); the QuantizedGraph then holds that shifted graph."""
    plan = bit_plan(graph, bits)
    ranges = observe_ranges(graph, calib_x, batch_size)
    if shift_logits:
        graph, ranges = nonnegative_logits(graph, ranges)
    act = assign_activation_qparams(graph, ranges)
    layers = {name: quantize_layer(graph.node(name), b) for name, b in plan.items()}
    return QuantizedGraph(graph, layers, act, plan)


def nonnegative_logits(graph: Graph, ranges: dict[str, tuple[float, float]]
                       ) -> tuple[Graph, dict[str, tuple[float, float]]]:
    """Shift the logits of every softmax so that their calibrated range starts at 0: the
    producing conv/dense (no fused activation, read only by the softmax, possibly through
    reshapes) gets `-lo` added to its bias, its range becomes [0, hi - lo] (same width, so the
    same scale) and its zero point therefore -128. Returns a new graph and ranges; the inputs
    are not changed. A softmax is invariant to adding one constant to all its inputs, and
    TFLite's int8 SOFTMAX never reads its input zero point (it subtracts the row maximum), so
    the model computes the same probabilities.

    Why: LiteRT on x86 runs int8 FULLY_CONNECTED and CONV_2D through ruy, whose requantization
    rounds ties toward +infinity in both fixed-point steps ((acc*M + 2^30) >> 31, then
    (x + 2^(r-1)) >> r); TFLM's MultiplyByQuantizedMultiplier rounds them away from zero. The
    two differ by 1 LSB exactly when a negative value lands on a tie. Behind a ReLU that never
    shows (negative values clamp to the zero point), but a classifier head has no ReLU, and the
    softmax after it turns 1 LSB of logit into up to 64 * s_logit LSB of probability
    (d p / d z <= 1/4, output step 1/256): 2 LSB on vww_96. With zero point -128 every
    negative requantized value clamps to -128 in both runtimes, so they agree exactly."""
    new_nodes = {}
    ranges = dict(ranges)
    for node in graph.nodes:
        if node.kind != "softmax":
            continue
        chain = []  # reshapes between the producer and the softmax share its qparams
        name = node.inputs[0]
        while graph.node(name).kind == "reshape" and graph.uses(name) == 1:
            chain.append(name)
            name = graph.node(name).inputs[0]
        producer = graph.node(name)
        if (producer.kind not in WEIGHTED_KINDS or graph.uses(name) != 1
                or producer.attrs.get("activation", "NONE") != "NONE"):
            continue
        lo, hi = ranges[name]
        if lo >= 0:
            continue
        bias = np.asarray(producer.weights["bias"], np.float32)
        new_nodes[name] = dataclasses.replace(
            producer, weights={**producer.weights, "bias": (bias - np.float32(lo))})
        for tensor in (name, *chain):
            ranges[tensor] = (0.0, float(hi) - float(lo))
    if not new_nodes:
        return graph, ranges
    nodes = [dataclasses.replace(new_nodes.get(n.name, n), inputs=list(n.inputs))
             for n in graph.nodes]
    return dataclasses.replace(graph, nodes=nodes), ranges


# --------------------------------------------------------------------------- to the Model IR


class _ModelBuilder:
    def __init__(self):
        self.tensors: list[Tensor] = []
        self.ops: list[Op] = []

    def add(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def const_int32(self, name: str, values) -> int:
        data = np.asarray(values, dtype=np.int32)
        return self.add(Tensor(name, tuple(data.shape), "int32", data=data))

    def op(self, kind: str, inputs: list[int], outputs: list[int], **options) -> None:
        self.ops.append(Op(kind, inputs, outputs, options))


def _act_tensor(name: str, shape, qparams) -> Tensor:
    scale, zp = qparams
    return Tensor(name, (1, *shape), "int8", np.array([scale], np.float32),
                  np.array([zp], np.int64))


def _weights_tensors(b: _ModelBuilder, qgraph: QuantizedGraph, node: Node) -> tuple[int, int]:
    layer = qgraph.layers[node.name]
    if layer.bits not in EXPORT_BITS:
        raise UnsupportedLayerError(
            f"layer {node.name!r} is quantized to {layer.bits} bits, which TFLite cannot store",
            f"export with {' or '.join(map(str, EXPORT_BITS))}-bit weights")
    q = layer.qweight
    if node.kind == "conv2d":
        data, qdim = q.transpose(3, 0, 1, 2), 0
    elif node.kind == "depthwise_conv2d":
        kh, kw, c, m = q.shape
        data, qdim = q.reshape(1, kh, kw, c * m), 3
    else:
        data, qdim = q.T, 0
    data = np.ascontiguousarray(data).astype(np.int8)
    channels = len(layer.scales)
    dtype = "int4" if layer.bits == 4 else "int8"
    w = b.add(Tensor(f"{node.name}/kernel", tuple(data.shape), dtype,
                     layer.scales.astype(np.float32), np.zeros(channels, np.int64), qdim, data))
    bias = qgraph.quantized_bias(node.name)
    s_bias = grid.bias_scales(qgraph.input_scale(node), layer.scales)
    bt = b.add(Tensor(f"{node.name}/bias", tuple(bias.shape), "int32", s_bias,
                      np.zeros(channels, np.int64), 0, bias))
    return w, bt


def to_tflite_model(qgraph: QuantizedGraph, io_dtype: str = "int8") -> Model:
    """The quantized graph as edgeq's TFLite Model IR (batch 1), ready for the writer."""
    if io_dtype not in IO_DTYPES:
        raise DataError(f"io_dtype {io_dtype!r} is not supported", f"use one of {IO_DTYPES}")
    graph = qgraph.graph
    missing = [n.name for n in graph.weighted_nodes if n.name not in qgraph.layers]
    missing += [n.name for n in graph.nodes if n.name not in qgraph.act]
    if missing:
        raise DataError(f"quantized graph {graph.name!r} lacks weights or qparams for {missing}",
                        "make it with quantize_minmax (or SimModel.to_qgraph) on this graph")
    b = _ModelBuilder()
    index: dict[str, int] = {}
    model_inputs = []
    for node in graph.nodes:
        out = b.add(_act_tensor(node.name, node.output_shape, qgraph.act[node.name]))
        index[node.name] = out
        ins = [index[i] for i in node.inputs]
        a = node.attrs
        if node.kind == "input":
            if io_dtype == "float32":
                f = b.add(Tensor(f"{node.name}/float", (1, *node.output_shape), "float32"))
                b.op("QUANTIZE", [f], [out])
                model_inputs.append(f)
            else:
                model_inputs.append(out)
        elif node.kind in ("conv2d", "depthwise_conv2d"):
            w, bias = _weights_tensors(b, qgraph, node)
            options = dict(padding=a["padding"], stride_w=a["strides"][1],
                           stride_h=a["strides"][0], dilation_w_factor=a["dilation"][1],
                           dilation_h_factor=a["dilation"][0],
                           fused_activation_function=a["activation"])
            if node.kind == "depthwise_conv2d":
                options["depth_multiplier"] = a["depth_multiplier"]
            b.op("CONV_2D" if node.kind == "conv2d" else "DEPTHWISE_CONV_2D",
                 [ins[0], w, bias], [out], **options)
        elif node.kind == "dense":
            w, bias = _weights_tensors(b, qgraph, node)
            b.op("FULLY_CONNECTED", [ins[0], w, bias], [out],
                 fused_activation_function=a["activation"], keep_num_dims=False)
        elif node.kind == "add":
            b.op("ADD", ins, [out], fused_activation_function=a["activation"])
        elif node.kind in ("avg_pool", "max_pool"):
            b.op("AVERAGE_POOL_2D" if node.kind == "avg_pool" else "MAX_POOL_2D", ins, [out],
                 padding=a["padding"], stride_w=a["strides"][1], stride_h=a["strides"][0],
                 filter_width=a["pool_size"][1], filter_height=a["pool_size"][0],
                 fused_activation_function=a["activation"])
        elif node.kind == "global_avg_pool":
            axes = b.const_int32(f"{node.name}/axes", [1, 2])
            b.op("MEAN", [ins[0], axes], [out], keep_dims=a["keepdims"])
        elif node.kind == "pad":
            pads = b.const_int32(f"{node.name}/paddings",
                                 [[0, 0], list(a["paddings"][0]), list(a["paddings"][1]), [0, 0]])
            b.op("PAD", [ins[0], pads], [out])
        elif node.kind == "reshape":
            new_shape = [1, *a["target_shape"]]
            shape = b.const_int32(f"{node.name}/shape", new_shape)
            b.op("RESHAPE", [ins[0], shape], [out], new_shape=new_shape)
        elif node.kind == "concat":
            b.op("CONCATENATION", ins, [out], axis=a["axis"], fused_activation_function="NONE")
        elif node.kind == "softmax":
            b.op("SOFTMAX", ins, [out], beta=1.0)
        else:
            raise UnsupportedLayerError(f"node {node.name!r}: kind {node.kind!r} has no TFLite op")
    model_outputs = []
    for name in graph.outputs:
        if io_dtype == "float32":
            f = b.add(Tensor(f"{name}/float", b.tensors[index[name]].shape, "float32"))
            b.op("DEQUANTIZE", [index[name]], [f])
            model_outputs.append(f)
        else:
            model_outputs.append(index[name])
    meta = {"version": __version__, "bits": qgraph.plan, "io_dtype": io_dtype}
    return Model(b.tensors, b.ops, model_inputs, model_outputs,
                 description=f"edgeq {__version__}: {graph.name}",
                 metadata={"edgeq": json.dumps(meta, sort_keys=True).encode()})


def export_tflite(keras_model, calib_x, bits: int | dict[str, int] = 8,
                  path: str | os.PathLike | None = None, io_dtype: str = "int8") -> bytes:
    """Keras model → min-max quantized .tflite bytes (also written to `path` atomically)."""
    from .tflite.write import write_model

    qgraph = quantize_minmax(capture(keras_model), calib_x, bits)
    data = write_model(to_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data


def write_atomically(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, then rename: never a half-written file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}",
                          "choose a writable output folder") from e
