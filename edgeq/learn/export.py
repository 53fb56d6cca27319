"""From a folded Graph to a quantized model and an integer TFLite flatbuffer.

- `bit_plan(graph, bits)`: weight bits per weighted layer (first and last stay at 8 bits).
- `quantize_minmax(graph, calib_x, bits)`: min-max PTQ → QuantizedGraph (the object that
  reconstruction engines improve and the exporter writes).
- `to_tflite_model(qgraph, io_dtype)`: QuantizedGraph → edgeq's TFLite Model IR. Every conv,
  depthwise or dense layer without a clamp at its zero point is stored tie-safe (from zero
  point -128 with bias offsets; edgeq.learn.tiesafe says why and how), so that LiteRT's x86
  kernels give TFLM's integers.
- `export_tflite(keras_model, calib_x, bits, path)`: the whole way to .tflite bytes.

Layout conversions (Keras → TFLite): conv kernels HWIO → OHWI, depthwise HWC·M → 1HW(C·M),
dense (in, out) → (out, in). INT4 weights: per channel for CONV_2D / DEPTHWISE_CONV_2D, per tensor
for FULLY_CONNECTED (TFLM rejects per-channel INT4 there), so dense is always per tensor.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from edgeq import __version__, intmath
from edgeq.errors import DataError, UnsupportedLayerError
from edgeq.learn import tiesafe
from edgeq.learn.graph import Graph, Node, capture
from edgeq.learn.quant.observe import observe_ranges
from edgeq.learn.quant.sim import QuantizedGraph, assign_activation_qparams, quantize_layer
from edgeq.outputs import write_file
from edgeq.tflite.model import Model, Op, Tensor

EXPORT_BITS = (8, 4)  # weight widths TFLite / TFLM can store and run
IO_DTYPES = ("int8", "float32")


def eight_bit_only(graph: Graph) -> list[str]:
    """Weighted layers that must keep 8-bit weights: Conv2DTranspose (TFLM's TRANSPOSE_CONV
    refuses INT4 filters as a hybrid model)."""
    return [n.name for n in graph.weighted_nodes if n.kind == "conv2d_transpose"]


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
        for name in eight_bit_only(graph):  # TFLM has no INT4 TRANSPOSE_CONV
            plan[name] = max(plan[name], 8)
    asked = sorted(n for n in eight_bit_only(graph) if plan[n] != 8)
    if asked:
        raise DataError(f"bit plan gives {asked} {plan[asked[0]]} bits; Conv2DTranspose layers "
                        "are exported as TRANSPOSE_CONV, which TFLM runs with 8-bit weights only",
                        "give these layers 8 bits")
    for b in set(plan.values()):
        intmath.weight_qrange(b)  # rejects unknown widths with the list of known ones
    return plan


def quantize_minmax(graph: Graph, calib_x, bits: int | dict[str, int] = 8,
                    batch_size: int = 64) -> QuantizedGraph:
    """Min-max post-training quantization: weights per channel from their own range,
    activations from the range observed on `calib_x` (an array of samples or batches)."""
    plan = bit_plan(graph, bits)
    ranges = observe_ranges(graph, calib_x, batch_size)
    act = assign_activation_qparams(graph, ranges)
    layers = {name: quantize_layer(graph.node(name), b) for name, b in plan.items()}
    return QuantizedGraph(graph, layers, act, plan)


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


def _tie_safe_biases(qgraph: QuantizedGraph, storage: dict[str, tiesafe.Storage]
                     ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({layer: int64 offsets added to its int32 bias}, {layer: output steps N per channel})
    for the tie-safe storage (edgeq.learn.tiesafe): a stored layer's own offsets, and a "fold"
    reader's correction for reading its input at zero point -128. The exact simulation applies
    the same offsets, so the file stays bit-exact with it."""
    bias_offsets: dict[str, np.ndarray] = {}
    steps: dict[str, np.ndarray] = {}
    for name, st in storage.items():
        node, layer = qgraph.graph.node(name), qgraph.layers[name]
        scale, zp = qgraph.act[name]
        own, steps[name] = tiesafe.offsets(layer.bias, qgraph.input_scale(node), layer.scales,
                                           scale, zp, st.uniform)
        bias_offsets[name] = bias_offsets.get(name, 0) + own
        for reader in st.readers:
            correction = tiesafe.fold_correction(qgraph.graph.node(reader),
                                                 qgraph.layers[reader].qweight,
                                                 zp - tiesafe.STORED_ZERO_POINT)
            bias_offsets[reader] = bias_offsets.get(reader, 0) - correction
    return bias_offsets, steps


def _weights_tensors(b: _ModelBuilder, qgraph: QuantizedGraph, node: Node,
                     bias_offsets: np.ndarray | None = None) -> tuple[int, int]:
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
    elif node.kind == "conv2d_transpose":  # Keras [kh, kw, out, in] -> TFLite [out, kh, kw, in]
        data, qdim = q.transpose(2, 0, 1, 3), 0
    else:
        data, qdim = q.T, 0
    data = np.ascontiguousarray(data).astype(np.int8)
    channels = len(layer.scales)
    dtype = "int4" if layer.bits == 4 else "int8"
    w = b.add(Tensor(f"{node.name}/kernel", tuple(data.shape), dtype,
                     layer.scales.astype(np.float32), np.zeros(channels, np.int64), qdim, data))
    bias = qgraph.quantized_bias(node.name)
    if bias_offsets is not None:
        bias = np.clip(bias.astype(np.int64) + bias_offsets, *intmath.BIAS_RANGE).astype(np.int32)
    s_bias = intmath.bias_scales(qgraph.input_scale(node), layer.scales)
    bt = b.add(Tensor(f"{node.name}/bias", tuple(bias.shape), "int32", s_bias,
                      np.zeros(channels, np.int64), 0, bias))
    return w, bt


def _restore_add(b: _ModelBuilder, node: Node, qparams, stored: int, steps: np.ndarray) -> int:
    """ADD(stored, constant -N) -> the layer's logical tensor (edgeq.learn.tiesafe): equal
    scales, so exact in every runtime. One N for all channels gives a one-value constant."""
    scale = np.array([qparams[0]], np.float32)
    values = steps[:1] if np.all(steps == steps[0]) else steps
    shape = (1,) * len(node.output_shape) + (len(values),)
    constant = b.add(Tensor(f"{node.name}/offset", shape, "int8", scale,
                            np.array([127], np.int64),
                            data=(127 - values).astype(np.int8).reshape(shape)))
    out = b.add(_act_tensor(node.name, node.output_shape, qparams))
    b.op("ADD", [stored, constant], [out], fused_activation_function="NONE")
    return out


def to_tflite_model(qgraph: QuantizedGraph, io_dtype: str = "int8", *,
                    _tie_safe: bool = True) -> Model:
    """The quantized graph as edgeq's TFLite Model IR (batch 1), ready for the writer, with
    every layer that needs it stored tie-safe (edgeq.learn.tiesafe). `_tie_safe=False` (tests
    only) writes the same graph without that storage: TFLM runs it as the simulation does,
    LiteRT does not."""
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
    storage = tiesafe.plan(graph, qgraph.act) if _tie_safe else {}
    stored = {t for st in storage.values() if st.mode != "add" for t in st.tensors}
    bias_offsets, steps = _tie_safe_biases(qgraph, storage)
    for node in graph.nodes:
        if node.kind == "clip":  # the producer's int8 range is the clip: no op, same tensor
            index[node.name] = index[node.inputs[0]]
            continue
        qparams = qgraph.act[node.name]
        restore = node.name in storage and storage[node.name].mode == "add"
        if node.name in stored:
            qparams = (qparams[0], tiesafe.STORED_ZERO_POINT)
        if restore:  # the layer writes <name>/stored; an ADD of -N writes <name>
            out = b.add(_act_tensor(f"{node.name}/stored", node.output_shape,
                                    (qparams[0], tiesafe.STORED_ZERO_POINT)))
        else:
            out = b.add(_act_tensor(node.name, node.output_shape, qparams))
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
            w, bias = _weights_tensors(b, qgraph, node, bias_offsets.get(node.name))
            options = dict(padding=a["padding"], stride_w=a["strides"][1],
                           stride_h=a["strides"][0], dilation_w_factor=a["dilation"][1],
                           dilation_h_factor=a["dilation"][0],
                           fused_activation_function=a["activation"])
            if node.kind == "depthwise_conv2d":
                options["depth_multiplier"] = a["depth_multiplier"]
            b.op("CONV_2D" if node.kind == "conv2d" else "DEPTHWISE_CONV_2D",
                 [ins[0], w, bias], [out], **options)
        elif node.kind == "dense":
            w, bias = _weights_tensors(b, qgraph, node, bias_offsets.get(node.name))
            b.op("FULLY_CONNECTED", [ins[0], w, bias], [out],
                 fused_activation_function=a["activation"], keep_num_dims=False)
        elif node.kind == "conv2d_transpose":
            w, bias = _weights_tensors(b, qgraph, node, bias_offsets.get(node.name))
            shape = b.const_int32(f"{node.name}/output_shape", [1, *node.output_shape])
            b.op("TRANSPOSE_CONV", [shape, w, ins[0], bias], [out], padding=a["padding"],
                 stride_w=a["strides"][1], stride_h=a["strides"][0],
                 fused_activation_function=a["activation"])
        elif node.kind == "add":
            b.op("ADD", ins, [out], fused_activation_function=a["activation"])
        elif node.kind == "sub":
            b.op("SUB", ins, [out], fused_activation_function=a["activation"])
        elif node.kind in ("maximum", "minimum"):
            b.op(node.kind.upper(), ins, [out])
        elif node.kind == "resize_nearest":
            size = b.const_int32(f"{node.name}/size", list(node.output_shape[:2]))
            # as the converter writes tf_keras's UpSampling2D (the same indices for whole
            # factors as Keras 3's repeat)
            b.op("RESIZE_NEAREST_NEIGHBOR", [ins[0], size], [out], align_corners=False,
                 half_pixel_centers=True)
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
        elif node.kind == "mul":
            b.op("MUL", ins, [out], fused_activation_function=a["activation"])
        elif node.kind == "leaky_relu":
            b.op("LEAKY_RELU", ins, [out], alpha=float(a["alpha"]))
        elif node.kind in ("logistic", "tanh", "hard_swish"):
            b.op(node.kind.upper(), ins, [out])
        else:
            raise UnsupportedLayerError(f"node {node.name!r}: kind {node.kind!r} has no TFLite op")
        if restore:
            index[node.name] = _restore_add(b, node, qgraph.act[node.name], out,
                                            steps[node.name])
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
    from edgeq.tflite.write import write_model

    qgraph = quantize_minmax(capture(keras_model), calib_x, bits)
    data = write_model(to_tflite_model(qgraph, io_dtype))
    if path is not None:
        write_atomically(Path(path), data)
    return data


def write_atomically(path: Path, data: bytes) -> None:
    """edgeq.outputs.write_file under the name rex and qgt import: atomic, with the umask."""
    write_file(path, data)
