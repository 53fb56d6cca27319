"""One folded graph from a Keras model: `capture(model) -> Graph`.

The Graph is plain data (dataclasses, numpy weights, no TensorFlow objects). Every node produces
one tensor named after the node, in NHWC layout. Capture reads the model with one of two small
adapters (edgeq/learn/keras_reader.py: Keras 2 and Keras 3), turns each layer into raw nodes, then runs
the rewrite passes listed in PASSES, in that order, each small and testable alone:

1. drop_identities         Dropout and Activation('linear') disappear.
   affines_before_relu      a positive per-channel scale after a ReLU moves before it (the
                            ReLU's max_value scaled): relu6(x + 3) * (1/6), Keras 3's
                            hard_sigmoid, becomes a scale and a ReLU(max_value=1).
   merge_affines            consecutive affines (BatchNormalization, Rescaling, Normalization,
                            `x + c`, `x * c`, hard_sigmoid's slope) become one.
2. fold_batchnorm          BatchNormalization folds into the Conv2D / DepthwiseConv2D / Dense
                           before it when that op's output feeds only the BN.
3. batchnorm_to_depthwise  any other BN (after an input, a pool, a ReLU, or a conv whose output
                           also feeds something else) becomes a 1x1 depthwise conv (4-D tensors)
                           or a diagonal dense (2-D), so that it still runs as integer ops.
4. fuse_activations        ReLU / ReLU6 fuse into the op that produces their input (conv,
                           depthwise, dense, add, mul, pools), which TFLite does as a clamp in
                           the quantized domain; a ReLU(max_value=m) with another m fuses as
                           ReLU plus a `clip` node (0, m): the producer's int8 range is then
                           exactly [0, m], so that its saturation is the clip and no op is
                           written for it (hard_sigmoid after a conv costs nothing).
5. fold_zero_padding       a ZeroPadding2D read only by a VALID conv / depthwise whose amounts
                           are exactly TFLite's SAME padding for it becomes that conv's SAME.
6. check_supported         anything left that TFLite cannot express raises
                           UnsupportedLayerError.

Padding: ZeroPadding2D becomes a `pad` node (TFLite PAD) unless fold_zero_padding folds it; Keras
'same' padding is TFLite SAME for every stride (both put the extra row/column at the
bottom/right), so it stays an attribute.
A softmax activation on a layer becomes its own `softmax` node; 'linear' is dropped.

Finally `mark_blocks` marks reconstruction blocks for AdaRound/BRECQ-style engines: residual
blocks (the nodes between a fork and its Add), MobileNetV2 inverted residual blocks,
squeeze-and-excitation blocks, depthwise+pointwise pairs, else single layers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from edgeq.errors import DataError, UnsupportedLayerError
from edgeq.intmath import nearest_indices
from edgeq.learn.keras_reader import KerasLayer, read_keras

ACTIVATIONS = ("NONE", "RELU", "RELU6")
PADDINGS = ("SAME", "VALID")


def _pair(v):
    return isinstance(v, tuple) and len(v) == 2 and all(isinstance(i, int) and i >= 1 for i in v)


def _is_act(v):
    return v in ACTIVATIONS


def _is_pad(v):
    return v in PADDINGS


# Declared attributes of every node kind: name -> check. A node must have exactly these.
def _real(v):
    return isinstance(v, float) and np.isfinite(v)


NODE_ATTRS = {
    "input": {},
    "conv2d": {"strides": _pair, "padding": _is_pad, "dilation": _pair, "activation": _is_act},
    "depthwise_conv2d": {"strides": _pair, "padding": _is_pad, "dilation": _pair,
                         "depth_multiplier": lambda v: isinstance(v, int) and v >= 1,
                         "activation": _is_act},
    "dense": {"activation": _is_act},
    "add": {"activation": _is_act},
    "avg_pool": {"pool_size": _pair, "strides": _pair, "padding": _is_pad, "activation": _is_act},
    "max_pool": {"pool_size": _pair, "strides": _pair, "padding": _is_pad, "activation": _is_act},
    "global_avg_pool": {"keepdims": lambda v: isinstance(v, bool)},
    "pad": {"paddings": lambda v: (isinstance(v, tuple) and len(v) == 2
                                   and all(_nonneg_pair(p) for p in v))},
    "reshape": {"target_shape": lambda v: isinstance(v, tuple) and all(
        isinstance(d, int) and d >= 1 for d in v)},
    "concat": {"axis": lambda v: isinstance(v, int) and v >= 1},
    "softmax": {},
    "mul": {"activation": _is_act},
    "leaky_relu": {"alpha": lambda v: _real(v) and v >= 0},
    "logistic": {},
    "tanh": {},
    "hard_swish": {},
    "sub": {"activation": _is_act},
    "maximum": {},
    "minimum": {},
    # UpSampling2D(interpolation="nearest"): output (y, x) reads input (y // sy, x // sx)
    "resize_nearest": {"size": _pair},
    "conv2d_transpose": {"strides": _pair, "padding": _is_pad, "activation": _is_act},
    # the producer's int8 range is exactly [lo, hi] (tied qparams): exported as no op
    "clip": {"lo": lambda v: v == 0.0, "hi": lambda v: _real(v) and v > 0},
}
NODE_WEIGHTS = {"conv2d": ("kernel", "bias"), "depthwise_conv2d": ("kernel", "bias"),
                "dense": ("kernel", "bias"), "conv2d_transpose": ("kernel", "bias")}
# Raw kinds that exist only while the passes run.
TRANSIENT_KINDS = ("batch_norm", "relu", "identity")
WEIGHTED_KINDS = tuple(NODE_WEIGHTS)
FUSABLE_KINDS = ("conv2d", "depthwise_conv2d", "dense", "add", "mul", "avg_pool", "max_pool",
                 "sub", "conv2d_transpose")

SUPPORTED_LAYERS = (
    "InputLayer", "Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Dense",
    "BatchNormalization", "ReLU(max_value, negative_slope; threshold 0)", "LeakyReLU",
    "PReLU(one shared slope)",
    "Activation(relu|relu6|linear|softmax|sigmoid|tanh|hard_sigmoid|hard_silu|hard_swish|"
    "leaky_relu)", "Softmax", "Add", "Multiply (same shape or a per-channel vector)",
    "AveragePooling2D", "MaxPooling2D", "GlobalAveragePooling2D", "GlobalMaxPooling2D",
    "ZeroPadding2D", "Flatten", "Reshape", "Concatenate", "Dropout", "Rescaling",
    "Subtract", "Maximum", "Minimum", "UpSampling2D(nearest)",
    "Conv2DTranspose(dilation 1, no output_padding)",
    "Normalization", "x + c, x - c, x * c, x / c with a constant c (Keras 3 operations)")
# Activation names (Keras `activation=` arguments and Activation layers) and what they become.
_ACTIVATION_NAMES = ("linear", "none", "relu", "relu6", "softmax", "sigmoid", "tanh",
                     "hard_sigmoid", "hard_silu", "hard_swish", "leaky_relu")


def _nonneg_pair(p):
    return isinstance(p, tuple) and len(p) == 2 and all(isinstance(i, int) and i >= 0 for i in p)


@dataclass
class Node:
    name: str
    kind: str
    inputs: list[str]
    attrs: dict = field(default_factory=dict)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    output_shape: tuple[int, ...] = ()  # without the batch dimension


@dataclass
class Block:
    kind: str  # "residual" | "inverted_residual" | "squeeze_excite" | "dw_pw" | "single"
    nodes: list[str]  # in topological order


@dataclass
class Graph:
    nodes: list[Node]  # topological
    inputs: list[str]
    outputs: list[str]
    blocks: list[Block] = field(default_factory=list)
    name: str = "model"
    # The declared input domain (e.g. (0, 1) for pixels / 255): when set, the input tensors'
    # int8 range is this rather than what the calibration data happen to cover. Zero-shot
    # images cover less of it (Fashion-MNIST: synthetic max 0.83 clipped real pixels).
    input_range: tuple[float, float] | None = None

    def with_input_range(self, input_range) -> Graph:
        """The same graph (nodes shared) with its input domain declared; None keeps it."""
        if input_range is None:
            return self
        lo, hi = (float(v) for v in input_range)
        return dataclasses.replace(self, input_range=(lo, hi))

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def uses(self, name: str) -> int:
        """How many times the tensor is read (by nodes or as a graph output)."""
        return sum(n.inputs.count(name) for n in self.nodes) + self.outputs.count(name)

    def replace_uses(self, old: str, new: str) -> None:
        for n in self.nodes:
            n.inputs = [new if i == old else i for i in n.inputs]
        self.outputs = [new if o == old else o for o in self.outputs]

    def remove(self, name: str, replacement: str) -> None:
        """Drop a node; its readers read `replacement` instead."""
        self.replace_uses(name, replacement)
        self.nodes = [n for n in self.nodes if n.name != name]

    @property
    def weighted_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.kind in WEIGHTED_KINDS]

    def run_float(self, x, batch_size: int = 64):
        """The folded graph in float (TensorFlow ops): one array per graph output (a single
        array when there is one output)."""
        return run_float(self, x, batch_size)


# --------------------------------------------------------------------------- validation


def validate_node(node: Node) -> None:
    """Declared attributes and weight shapes are checked, so that what reaches the exporter is
    well formed."""
    spec = NODE_ATTRS.get(node.kind)
    if spec is None:
        raise UnsupportedLayerError(f"node {node.name!r} has unknown kind {node.kind!r}",
                                    f"known kinds: {', '.join(NODE_ATTRS)}")
    if set(node.attrs) != set(spec):
        raise UnsupportedLayerError(
            f"node {node.name!r} ({node.kind}) has attributes {sorted(node.attrs)}, "
            f"expected {sorted(spec)}", "this is an edgeq bug: please report it")
    for key, check in spec.items():
        if not check(node.attrs[key]):
            raise UnsupportedLayerError(
                f"node {node.name!r} ({node.kind}): attribute {key}={node.attrs[key]!r} is not "
                "supported", "use channels-last layers with integer strides/sizes")
    wanted = NODE_WEIGHTS.get(node.kind, ())
    if set(node.weights) != set(wanted):
        raise UnsupportedLayerError(f"node {node.name!r} ({node.kind}) has weights "
                                    f"{sorted(node.weights)}, expected {sorted(wanted)}",
                                    "this is an edgeq bug: please report it")
    if wanted:
        kernel, bias = node.weights["kernel"], node.weights["bias"]
        rank = 2 if node.kind == "dense" else 4
        out = kernel.shape[-1] * (kernel.shape[-2] if node.kind == "depthwise_conv2d" else 1)
        if node.kind == "conv2d_transpose":  # Keras: [kh, kw, out_c, in_c]
            out = kernel.shape[2]
        if kernel.ndim != rank or bias.shape != (out,):
            raise UnsupportedLayerError(
                f"node {node.name!r} ({node.kind}): kernel {kernel.shape} and bias {bias.shape} "
                "do not match", "this is an edgeq bug: please report it")
    arity = {"input": 0, "add": 2, "mul": 2, "sub": 2, "maximum": 2, "minimum": 2,
             "concat": None}.get(node.kind, 1)
    if arity is not None and len(node.inputs) != arity:
        raise UnsupportedLayerError(f"node {node.name!r} ({node.kind}) has {len(node.inputs)} "
                                    f"inputs, expected {arity}",
                                    "TFLite ADD takes two inputs: chain two-input Add layers"
                                    if node.kind == "add" else "")


def validate(graph: Graph) -> None:
    names = set()
    for node in graph.nodes:
        validate_node(node)
        missing = [i for i in node.inputs if i not in names]
        if missing:
            raise UnsupportedLayerError(f"node {node.name!r} reads {missing} before they exist",
                                        "this is an edgeq bug: please report it")
        names.add(node.name)
    unflattened = [n.name for n in graph.nodes if n.kind == "dense"
                   and len(graph.node(n.inputs[0]).output_shape) != 1]
    if unflattened:
        raise UnsupportedLayerError(
            f"Dense layer(s) {unflattened} read a tensor of rank > 2",
            "add Flatten() or GlobalAveragePooling2D() before the Dense layer")


# --------------------------------------------------------------------------- capture


def capture(model) -> Graph:
    """A Keras 2 or Keras 3 model → the folded, validated Graph with blocks marked."""
    keras_model = read_keras(model)
    per_layer = [layer_to_nodes(layer) for layer in keras_model.layers]
    # A layer split into op + activation is read under its last node's name; only a layer's
    # first node reads other layers.
    last = {layer.name: nodes[-1].name
            for layer, nodes in zip(keras_model.layers, per_layer, strict=True)}
    for nodes in per_layer:
        nodes[0].inputs = [last[i] for i in nodes[0].inputs]
    graph = Graph(_toposort([n for nodes in per_layer for n in nodes]),
                  [last[i] for i in keras_model.inputs], [last[o] for o in keras_model.outputs],
                  name=keras_model.name)
    for rewrite in PASSES:
        rewrite(graph)
    validate(graph)
    graph.blocks = mark_blocks(graph)
    return graph


def _toposort(nodes: list[Node]) -> list[Node]:
    """Kahn's algorithm, keeping the given order among ready nodes (no recursion, so deep
    models are fine)."""
    waiting = {n.name: len(set(n.inputs)) for n in nodes}
    readers: dict[str, list[Node]] = {n.name: [] for n in nodes}
    for n in nodes:
        for i in set(n.inputs):
            readers[i].append(n)
    ready = [n for n in nodes if not waiting[n.name]]
    ordered = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for reader in readers[node.name]:
            waiting[reader.name] -= 1
            if not waiting[reader.name]:
                ready.append(reader)
    if len(ordered) != len(nodes):
        stuck = [n.name for n in nodes if waiting[n.name]]
        raise UnsupportedLayerError(f"layers {stuck} form a cycle", "edgeq needs an acyclic model")
    return ordered


def _activation_name(value) -> str:
    if isinstance(value, dict):  # Keras 3 may serialize a function as a dict
        value = value.get("config", value.get("class_name", ""))
    return str(value).lower()


def _unsupported(layer: KerasLayer, what: str = "") -> UnsupportedLayerError:
    detail = f" ({what})" if what else ""
    return UnsupportedLayerError(
        f"layer {layer.name!r} of class {layer.class_name}{detail} is not supported",
        f"edgeq supports: {', '.join(SUPPORTED_LAYERS)}; replace the layer or quantize the "
        "model with the TFLite converter")


def _tuple2(v) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    return tuple(int(i) for i in v)


def _channels_last(layer: KerasLayer) -> None:
    if layer.config.get("data_format", "channels_last") not in (None, "channels_last"):
        raise _unsupported(layer, "data_format must be channels_last")


def _activation_nodes(layer: KerasLayer, source: str) -> list[Node]:
    """The nodes that a layer's `activation` argument adds after the op."""
    act = _activation_name(layer.config.get("activation", "linear"))
    nodes = _named_activation(layer, act, f"{layer.name}/{act}", [source])
    return [n for n in nodes if n.kind != "identity"]


def _affine(name: str, inputs: list[str], shape, scale, offset) -> Node:
    """A per-channel y = x * scale + offset (kind batch_norm: folds like a BatchNormalization)."""
    channels = shape[-1] if shape else 1
    return Node(name, "batch_norm", inputs,
                {"scale": np.broadcast_to(np.asarray(scale, np.float32), (channels,)).copy(),
                 "offset": np.broadcast_to(np.asarray(offset, np.float32), (channels,)).copy()},
                {}, shape)


def _named_activation(layer: KerasLayer, act: str, name: str, inputs: list[str]) -> list[Node]:
    """An activation function by its Keras name, as nodes reading `inputs`; the last node is
    named `name`."""
    shape = layer.output_shape
    if act in ("linear", "none"):
        return [Node(name, "identity", inputs, {}, {}, shape)]
    if act in ("relu", "relu6"):
        return [Node(name, "relu", inputs, {"max_value": 6.0 if act == "relu6" else None}, {},
                     shape)]
    if act == "softmax":
        return [Node(name, "softmax", inputs, {}, {}, shape)]
    if act == "sigmoid":
        return [Node(name, "logistic", inputs, {}, {}, shape)]
    if act == "tanh":
        return [Node(name, "tanh", inputs, {}, {}, shape)]
    if act in ("hard_silu", "hard_swish"):
        return [Node(name, "hard_swish", inputs, {}, {}, shape)]
    if act == "leaky_relu":  # keras.activations.leaky_relu's default slope
        return [Node(name, "leaky_relu", inputs, {"alpha": 0.2}, {}, shape)]
    if act == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6; tf_keras: clip(0.2 x + 0.5, 0, 1)
        slope = 1.0 / 6.0 if layer.keras_version == 3 else 0.2
        return [_affine(f"{name}/affine", inputs, shape, slope, 0.5),
                Node(name, "relu", [f"{name}/affine"], {"max_value": 1.0}, {}, shape)]
    raise _unsupported(layer, f"activation {act!r}")


def _separable(layer: KerasLayer) -> list[Node]:
    """SeparableConv2D: a depthwise convolution (no bias) and a 1x1 convolution with the bias."""
    cfg, name, shape = layer.config, layer.name, layer.output_shape
    _channels_last(layer)
    depthwise, pointwise = layer.weights[0], layer.weights[1]
    bias = layer.weights[2] if cfg.get("use_bias", True) else np.zeros(shape[-1], np.float32)
    padding = cfg["padding"].upper()
    if padding not in PADDINGS:
        raise _unsupported(layer, f"padding {cfg['padding']!r}")
    mid = depthwise.shape[2] * depthwise.shape[3]
    dw = Node(f"{name}/depthwise", "depthwise_conv2d", list(layer.inbound),
              {"strides": _tuple2(cfg["strides"]), "padding": padding,
               "dilation": _tuple2(cfg.get("dilation_rate", 1)),
               "depth_multiplier": int(cfg.get("depth_multiplier", 1)), "activation": "NONE"},
              {"kernel": depthwise, "bias": np.zeros(mid, np.float32)},
              (*shape[:-1], mid))
    pw = Node(name, "conv2d", [dw.name], {"strides": (1, 1), "padding": "VALID",
                                          "dilation": (1, 1), "activation": "NONE"},
              {"kernel": pointwise, "bias": bias}, shape)
    return [dw, pw, *_activation_nodes(layer, name)]


def _relu_layer(layer: KerasLayer) -> list[Node]:
    cfg = layer.config
    slope = float(cfg.get("negative_slope", 0) or 0)
    threshold = float(cfg.get("threshold", 0) or 0)
    max_value = cfg.get("max_value")
    if threshold != 0:
        raise _unsupported(layer, f"threshold={threshold} (TFLite has no thresholded ReLU; "
                                  "only threshold 0)")
    if slope:
        if max_value is not None:
            raise _unsupported(layer, "negative_slope together with max_value")
        return [Node(layer.name, "leaky_relu", list(layer.inbound), {"alpha": slope}, {},
                     layer.output_shape)]
    if max_value is not None and not float(max_value) > 0:
        raise _unsupported(layer, f"max_value={max_value} (it must be positive)")
    return [Node(layer.name, "relu", list(layer.inbound),
                 {"max_value": None if max_value is None else float(max_value)}, {},
                 layer.output_shape)]


def _operation(layer: KerasLayer) -> list[Node]:
    """Keras 3 operations in a functional model: x + c, x - c, x * c, x / c with a constant c
    (an affine), and the tensor-tensor add, subtract, multiply, maximum and minimum."""
    op = layer.class_name[len("ops."):]
    constants = layer.config["constants"]
    tensors = [c for c in constants if c is None]
    values = [c for c in constants if c is not None]
    shape = layer.output_shape
    binary = {"Add": "add", "Multiply": "mul", "Subtract": "sub", "Maximum": "maximum",
              "Minimum": "minimum"}
    if len(tensors) == 2 and not values and op in binary:
        attrs = {} if op in ("Maximum", "Minimum") else {"activation": "NONE"}
        return [Node(layer.name, binary[op], list(layer.inbound), attrs, {}, shape)]
    if len(tensors) == 1 and len(values) == 1 and isinstance(values[0], (int, float)):
        c, first = float(values[0]), constants[0] is None
        affine = {"Add": (1.0, c), "Subtract": (1.0, -c) if first else (-1.0, c),
                  "Multiply": (c, 0.0)}
        if op in ("Divide", "TrueDivide") and first and c != 0:
            affine[op] = (1.0 / c, 0.0)
        if op in affine:
            return [_affine(layer.name, list(layer.inbound), shape, *affine[op])]
    raise _unsupported(layer, "this operation (edgeq reads x + c, x - c, x * c, x / c with a "
                              "constant c, and the add, subtract, multiply, maximum or minimum "
                              "of two tensors)")


def layer_to_nodes(layer: KerasLayer) -> list[Node]:
    """One Keras layer → its raw nodes (transient kinds allowed; the passes clean them up)."""
    cfg, name, shape, inbound = layer.config, layer.name, layer.output_shape, layer.inbound
    cls = layer.class_name
    if cls == "InputLayer":
        return [Node(name, "input", [], {}, {}, shape)]
    if cls.startswith("ops."):
        return _operation(layer)
    if cls == "SeparableConv2D":
        return _separable(layer)
    if cls in ("Conv2D", "DepthwiseConv2D"):
        _channels_last(layer)
        if cfg.get("groups", 1) != 1:
            raise _unsupported(layer, "grouped convolution")
        kernel = layer.weights[0]
        bias = layer.weights[1] if cfg.get("use_bias", True) else None
        attrs = {"strides": _tuple2(cfg["strides"]), "padding": cfg["padding"].upper(),
                 "dilation": _tuple2(cfg.get("dilation_rate", 1)), "activation": "NONE"}
        if attrs["padding"] not in PADDINGS:
            raise _unsupported(layer, f"padding {cfg['padding']!r}")
        kind = "conv2d"
        if cls == "DepthwiseConv2D":
            kind = "depthwise_conv2d"
            attrs["depth_multiplier"] = int(cfg.get("depth_multiplier", 1))
        out = shape[-1]
        weights = {"kernel": kernel, "bias": bias if bias is not None else np.zeros(out, np.float32)}
        return [Node(name, kind, list(inbound), attrs, weights, shape),
                *_activation_nodes(layer, name)]
    if cls == "Dense":
        kernel = layer.weights[0]
        bias = layer.weights[1] if cfg.get("use_bias", True) else np.zeros(kernel.shape[1],
                                                                           np.float32)
        return [Node(name, "dense", list(inbound), {"activation": "NONE"},
                     {"kernel": kernel, "bias": bias}, shape), *_activation_nodes(layer, name)]
    if cls == "BatchNormalization":
        return [Node(name, "batch_norm", list(inbound), _bn_attrs(layer), {}, shape)]
    if cls == "ReLU":
        return _relu_layer(layer)
    if cls == "LeakyReLU":
        alpha = cfg.get("negative_slope", cfg.get("alpha", 0.3))
        return [Node(name, "leaky_relu", list(inbound), {"alpha": float(alpha)}, {}, shape)]
    if cls == "PReLU":
        alpha = layer.weights[0]
        if alpha.size == 0 or not np.all(alpha == alpha.reshape(-1)[0]):
            raise _unsupported(layer, "a slope per element or channel (edgeq maps a PReLU with "
                                      "one shared slope to LEAKY_RELU)")
        if float(alpha.reshape(-1)[0]) < 0:
            raise _unsupported(layer, "a negative slope")
        return [Node(name, "leaky_relu", list(inbound), {"alpha": float(alpha.reshape(-1)[0])},
                     {}, shape)]
    if cls == "Activation":
        act = _activation_name(cfg["activation"])
        return _named_activation(layer, act, name, list(inbound))
    if cls == "Multiply":
        if len(inbound) != 2:
            raise _unsupported(layer, f"{len(inbound)} inputs (TFLite MUL takes two)")
        return [Node(name, "mul", list(inbound), {"activation": "NONE"}, {}, shape)]
    if cls in ("Subtract", "Maximum", "Minimum"):
        if len(inbound) != 2:
            raise _unsupported(layer, f"{len(inbound)} inputs (TFLite's op takes two)")
        kind = {"Subtract": "sub", "Maximum": "maximum", "Minimum": "minimum"}[cls]
        attrs = {"activation": "NONE"} if kind == "sub" else {}
        return [Node(name, kind, list(inbound), attrs, {}, shape)]
    if cls == "UpSampling2D":
        _channels_last(layer)
        if cfg.get("interpolation", "nearest") != "nearest":
            raise _unsupported(layer, f"interpolation {cfg['interpolation']!r} (only nearest)")
        return [Node(name, "resize_nearest", list(inbound), {"size": _tuple2(cfg["size"])}, {},
                     shape)]
    if cls == "Conv2DTranspose":
        _channels_last(layer)
        if _tuple2(cfg.get("dilation_rate", 1)) != (1, 1):
            raise _unsupported(layer, "dilation (TFLite's TRANSPOSE_CONV has none)")
        if cfg.get("output_padding") is not None:
            raise _unsupported(layer, "output_padding (TFLite's TRANSPOSE_CONV has none)")
        if cfg.get("groups", 1) != 1:
            raise _unsupported(layer, "grouped convolution")
        attrs = {"strides": _tuple2(cfg["strides"]), "padding": cfg["padding"].upper(),
                 "activation": "NONE"}
        if attrs["padding"] not in PADDINGS:
            raise _unsupported(layer, f"padding {cfg['padding']!r}")
        kernel = layer.weights[0]
        bias = (layer.weights[1] if cfg.get("use_bias", True)
                else np.zeros(kernel.shape[2], np.float32))
        return [Node(name, "conv2d_transpose", list(inbound), attrs,
                     {"kernel": kernel, "bias": bias}, shape), *_activation_nodes(layer, name)]
    if cls == "Rescaling":
        return [_affine(name, list(inbound), shape, cfg.get("scale", 1.0),
                        cfg.get("offset", 0.0))]
    if cls == "Normalization":
        if cfg.get("invert"):
            raise _unsupported(layer, "invert=True")
        axis = cfg.get("axis", -1)
        if axis not in (-1, [-1], (-1,), len(shape), [len(shape)]):
            raise _unsupported(layer, f"normalization over axis {axis} (only the channels)")
        mean, variance = (np.asarray(w, np.float32).reshape(-1) for w in layer.weights[:2])
        std = np.sqrt(np.maximum(variance, np.float32(1e-7)))
        return [_affine(name, list(inbound), shape, 1.0 / std, -mean / std)]
    if cls == "GlobalMaxPooling2D":
        _channels_last(layer)
        h, w = layer.input_shapes[0][:2]
        keep = bool(cfg.get("keepdims", False))
        pooled = Node(name if keep else f"{name}/pool", "max_pool", list(inbound),
                      {"pool_size": (h, w), "strides": (h, w), "padding": "VALID",
                       "activation": "NONE"}, {}, (1, 1, shape[-1]))
        if keep:
            return [pooled]
        return [pooled, Node(name, "reshape", [pooled.name], {"target_shape": tuple(shape)}, {},
                             shape)]
    if cls == "Softmax":
        axis = cfg.get("axis", -1)
        if axis not in (-1, len(shape), [-1]):
            raise _unsupported(layer, f"softmax over axis {axis}")
        return [Node(name, "softmax", list(inbound), {}, {}, shape)]
    if cls == "Dropout":
        return [Node(name, "identity", list(inbound), {}, {}, shape)]
    if cls == "Add":
        return [Node(name, "add", list(inbound), {"activation": "NONE"}, {}, shape)]
    if cls in ("AveragePooling2D", "MaxPooling2D"):
        _channels_last(layer)
        pool = _tuple2(cfg["pool_size"])
        strides = _tuple2(cfg["strides"]) if cfg.get("strides") is not None else pool
        kind = "avg_pool" if cls == "AveragePooling2D" else "max_pool"
        return [Node(name, kind, list(inbound),
                     {"pool_size": pool, "strides": strides, "padding": cfg["padding"].upper(),
                      "activation": "NONE"}, {}, shape)]
    if cls == "GlobalAveragePooling2D":
        _channels_last(layer)
        return [Node(name, "global_avg_pool", list(inbound),
                     {"keepdims": bool(cfg.get("keepdims", False))}, {}, shape)]
    if cls == "ZeroPadding2D":
        _channels_last(layer)
        pads = cfg["padding"]
        if isinstance(pads, int):
            pads = ((pads, pads), (pads, pads))
        pads = tuple(_tuple2(p) if not isinstance(p, int) else (p, p) for p in pads)
        return [Node(name, "pad", list(inbound), {"paddings": pads}, {}, shape)]
    if cls in ("Flatten", "Reshape"):
        return [Node(name, "reshape", list(inbound), {"target_shape": tuple(shape)}, {}, shape)]
    if cls == "Concatenate":
        axis = int(cfg.get("axis", -1))
        rank = len(shape) + 1
        axis = axis + rank if axis < 0 else axis
        return [Node(name, "concat", list(inbound), {"axis": axis}, {}, shape)]
    raise _unsupported(layer)


def _bn_attrs(layer: KerasLayer) -> dict:
    """Folded BN as y = x * scale + offset, per channel."""
    cfg = layer.config
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
    if axis not in (-1, len(layer.output_shape)):
        raise _unsupported(layer, f"normalization over axis {axis} (only the channel axis)")
    weights = list(layer.weights)
    channels = layer.output_shape[-1]
    gamma = weights.pop(0) if cfg.get("scale", True) else np.ones(channels, np.float32)
    beta = weights.pop(0) if cfg.get("center", True) else np.zeros(channels, np.float32)
    mean, var = weights
    scale = gamma / np.sqrt(var + float(cfg.get("epsilon", 1e-3)))
    return {"scale": scale.astype(np.float32), "offset": (beta - mean * scale).astype(np.float32)}


# --------------------------------------------------------------------------- passes


def drop_identities(graph: Graph) -> None:
    for node in [n for n in graph.nodes if n.kind == "identity"]:
        graph.remove(node.name, node.inputs[0])


def affines_before_relu(graph: Graph) -> None:
    """relu(x, max m) * s with s > 0 per channel and no offset is relu(x * s, max m * s) (one m
    for all channels): the scale moves before the ReLU, where it can fold into a conv."""
    changed = True
    while changed:
        changed = False
        for bn in [n for n in graph.nodes if n.kind == "batch_norm"]:
            relu = graph.node(bn.inputs[0])
            scale, offset = bn.attrs["scale"], bn.attrs["offset"]
            if (relu.kind != "relu" or graph.uses(relu.name) != 1 or np.any(offset != 0)
                    or not np.all(scale > 0)):
                continue
            m = relu.attrs["max_value"]
            if m is not None and not np.all(scale == scale[0]):
                continue
            # the two nodes swap their work; names and wiring stay
            relu.kind, relu.attrs = "batch_norm", dict(bn.attrs)
            bn.kind, bn.attrs = "relu", {"max_value": None if m is None
                                         else float(np.float32(m * float(scale[0])))}
            changed = True


def merge_affines(graph: Graph) -> None:
    """An affine (batch_norm kind) that reads only another affine becomes one with it."""
    for bn in [n for n in graph.nodes if n.kind == "batch_norm"]:
        first = graph.node(bn.inputs[0])
        if first.kind != "batch_norm" or graph.uses(first.name) != 1:
            continue
        s1, o1 = first.attrs["scale"], first.attrs["offset"]
        s2, o2 = bn.attrs["scale"], bn.attrs["offset"]
        bn.attrs = {"scale": (s1 * s2).astype(np.float32),
                    "offset": (o1 * s2 + o2).astype(np.float32)}
        bn.inputs = list(first.inputs)
        graph.nodes = [n for n in graph.nodes if n.name != first.name]


def fold_batchnorm(graph: Graph) -> None:
    for bn in [n for n in graph.nodes if n.kind == "batch_norm"]:
        producer = graph.node(bn.inputs[0])
        if producer.kind not in WEIGHTED_KINDS or graph.uses(producer.name) != 1:
            continue
        if producer.attrs["activation"] != "NONE":
            continue
        scale, offset = bn.attrs["scale"], bn.attrs["offset"]
        kernel, bias = producer.weights["kernel"], producer.weights["bias"]
        if producer.kind == "depthwise_conv2d":  # output channel c*multiplier + m
            k = kernel * scale.reshape(kernel.shape[2], kernel.shape[3])
        elif producer.kind == "conv2d_transpose":  # output channels on axis 2
            k = kernel * scale.reshape(-1, 1)
        else:
            k = kernel * scale
        producer.weights = {"kernel": k.astype(np.float32),
                            "bias": (bias * scale + offset).astype(np.float32)}
        graph.remove(bn.name, producer.name)


def batchnorm_to_depthwise(graph: Graph) -> None:
    for bn in [n for n in graph.nodes if n.kind == "batch_norm"]:
        scale, offset = bn.attrs["scale"], bn.attrs["offset"]
        if len(bn.output_shape) == 3:
            bn.kind = "depthwise_conv2d"
            bn.attrs = {"strides": (1, 1), "padding": "VALID", "dilation": (1, 1),
                        "depth_multiplier": 1, "activation": "NONE"}
            bn.weights = {"kernel": scale.reshape(1, 1, -1, 1), "bias": offset}
        elif len(bn.output_shape) == 1:
            bn.kind = "dense"
            bn.attrs = {"activation": "NONE"}
            bn.weights = {"kernel": np.diag(scale).astype(np.float32), "bias": offset}
        else:
            raise UnsupportedLayerError(
                f"BatchNormalization {bn.name!r} on a rank-{len(bn.output_shape) + 1} tensor "
                "cannot be folded", "put it directly after a Conv2D/Dense layer")


def fuse_activations(graph: Graph) -> None:
    for relu in [n for n in graph.nodes if n.kind == "relu"]:
        producer = graph.node(relu.inputs[0])
        if producer.kind not in FUSABLE_KINDS or graph.uses(producer.name) != 1:
            raise UnsupportedLayerError(
                f"activation {relu.name!r} follows {producer.name!r} ({producer.kind}) and "
                "cannot be fused into it",
                "TFLite fuses ReLU/ReLU6 only into a conv, dense, add or pool whose output "
                "feeds nothing else; restructure the model accordingly")
        m = relu.attrs["max_value"]
        if m is not None and m != 6.0:
            if producer.attrs["activation"] == "RELU6" and m > 6.0:
                graph.remove(relu.name, producer.name)  # relu6 stays below m
                continue
            # RELU, and the clip (0, m): the producer's int8 range becomes exactly [0, m]
            producer.attrs["activation"] = "RELU"
            relu.kind, relu.attrs = "clip", {"lo": 0.0, "hi": float(m)}
            if any(n.kind == "clip" for n in graph.consumers(producer.name) if n is not relu):
                raise UnsupportedLayerError(f"{relu.name!r}: two clips of one tensor")
            continue
        new = "RELU6" if m is not None else "RELU"
        if producer.attrs["activation"] == "RELU6" or new == "RELU6":
            new = "RELU6"  # relu(relu6(x)) == relu6(relu(x)) == relu6(x)
        producer.attrs["activation"] = new
        graph.remove(relu.name, producer.name)


def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """TFLite's SAME padding (before, after) of one spatial axis: the extra row or column,
    if any, goes after (TensorFlow's and Keras's 'same' alike)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def fold_zero_padding(graph: Graph) -> None:
    """A ZeroPadding2D read only by a VALID conv / depthwise becomes that conv's SAME padding
    when its amounts are exactly SAME's for the unpadded input (Keras MobileNetV2's
    correct_pad before each stride-2 depthwise): one op and one tensor fewer, as TF's
    converter writes it. Exact in integers: PAD writes the zero point (it shares its input's
    qparams) and a SAME conv skips padded taps, which is reading the zero point."""
    for pad in [n for n in graph.nodes if n.kind == "pad"]:
        readers = graph.consumers(pad.name)
        if graph.uses(pad.name) != 1 or len(readers) != 1:
            continue
        conv = readers[0]
        if conv.kind not in ("conv2d", "depthwise_conv2d") or conv.attrs["padding"] != "VALID":
            continue
        size = graph.node(pad.inputs[0]).output_shape[:2]
        a, kernel = conv.attrs, conv.weights["kernel"].shape[:2]
        same = tuple(same_padding(*args) for args in zip(size, kernel, a["strides"],
                                                         a["dilation"], strict=True))
        out = tuple(-(-s // st) for s, st in zip(size, a["strides"], strict=True))
        if same != pad.attrs["paddings"] or out != tuple(conv.output_shape[:2]):
            continue
        conv.attrs["padding"] = "SAME"
        graph.remove(pad.name, pad.inputs[0])


def check_supported(graph: Graph) -> None:
    for node in graph.nodes:
        if node.kind in TRANSIENT_KINDS:
            raise UnsupportedLayerError(f"layer {node.name!r} ({node.kind}) is left after folding",
                                        "this is an edgeq bug: please report it")


PASSES = (drop_identities, affines_before_relu, merge_affines, fold_batchnorm,
          batchnorm_to_depthwise, fuse_activations, fold_zero_padding, check_supported)


# --------------------------------------------------------------------------- blocks


# Unweighted one-input nodes that may sit inside an inverted residual or SE block.
PASS_THROUGH = ("pad", "hard_swish", "clip", "leaky_relu", "logistic", "tanh", "reshape")


def mark_blocks(graph: Graph) -> list[Block]:
    """Residual blocks first (outermost wins when they nest; "inverted_residual" when inside
    they are MobileNetV2's expand 1x1 → depthwise → linear project 1x1, with or without a
    squeeze-and-excitation), then inverted residual blocks without an ADD, then
    squeeze-and-excitation blocks on their own (GAP → two 1x1 conv / dense → MUL), then
    depthwise+pointwise pairs, then every remaining weighted node as a single block. Every
    weighted node is in exactly one block; unweighted nodes appear only inside the first four
    kinds."""
    order = {n.name: i for i, n in enumerate(graph.nodes)}
    ancestors: dict[str, set[str]] = {}
    for n in graph.nodes:
        ancestors[n.name] = {n.name}.union(*(ancestors[i] for i in n.inputs))
    taken: set[str] = set()
    blocks = []
    for add in reversed([n for n in graph.nodes if n.kind == "add"]):
        common = set.intersection(*(ancestors[i] for i in add.inputs))
        if not common:
            continue
        fork = max(common, key=order.get)
        inner = set().union(*(ancestors[i] for i in add.inputs)) - ancestors[fork]
        if inner & taken or any(c.name not in inner and c.name != add.name
                                for m in inner for c in graph.consumers(m)):
            continue
        members = sorted(inner | {add.name}, key=order.get)
        taken.update(members)
        chain = _inverted_residual(graph, graph.node(members[0]), set())
        kind = "inverted_residual" if chain and set(chain) | {add.name} == set(members) \
            else "residual"
        blocks.append(Block(kind, members))
    for n in graph.nodes:
        chain = None if n.name in taken else _inverted_residual(graph, n, taken)
        if chain:
            blocks.append(Block("inverted_residual", chain))
            taken.update(chain)
    for n in graph.nodes:
        se = None if n.name in taken else _squeeze_excite(graph, n.name, taken)
        if se:
            blocks.append(Block("squeeze_excite", se))
            taken.update(se)
    for n in graph.nodes:
        if n.kind != "depthwise_conv2d" or n.name in taken:
            continue
        readers = graph.consumers(n.name)
        if (len(readers) == 1 and readers[0].kind == "conv2d" and readers[0].name not in taken
                and readers[0].weights["kernel"].shape[:2] == (1, 1) and graph.uses(n.name) == 1):
            blocks.append(Block("dw_pw", [n.name, readers[0].name]))
            taken.update((n.name, readers[0].name))
    for n in graph.weighted_nodes:
        if n.name not in taken:
            blocks.append(Block("single", [n.name]))
    first = {b.nodes[0]: b for b in blocks}
    return [first[n.name] for n in graph.nodes if n.name in first]


def _is_pointwise(node: Node | None) -> bool:
    return (node is not None and node.kind == "conv2d"
            and node.weights["kernel"].shape[:2] == (1, 1))


def _only_reader(graph: Graph, name: str, taken: set[str]) -> Node | None:
    """The one node that reads tensor `name` (read once, not a graph output), if not taken."""
    readers = graph.consumers(name)
    if len(readers) != 1 or graph.uses(name) != 1 or readers[0].name in taken:
        return None
    return readers[0]


def _through(graph: Graph, node: Node, taken: set[str]) -> tuple[list[Node], Node | None]:
    """The PASS_THROUGH nodes after `node`, and the node after them (None: no single reader)."""
    chain = []
    nxt = _only_reader(graph, node.name, taken)
    while nxt is not None and nxt.kind in PASS_THROUGH:
        chain.append(nxt)
        nxt = _only_reader(graph, nxt.name, taken)
    return chain, nxt


def _inverted_residual(graph: Graph, expand: Node, taken: set[str]) -> list[str] | None:
    """expand 1x1 conv → depthwise → [squeeze-excite] → project 1x1 conv with no activation
    (the linear bottleneck, which tells it from MobileNetV1's pointwise-depthwise-pointwise),
    PASS_THROUGH nodes allowed between them, every inner tensor read only inside; node names
    or None."""
    if not _is_pointwise(expand):
        return None
    mid, dw = _through(graph, expand, taken)
    if dw is None or dw.kind != "depthwise_conv2d":
        return None
    names = [n.name for n in (expand, *mid, dw)]
    chain, project = _through(graph, dw, taken)
    names += [n.name for n in chain]
    if project is None:
        se = _squeeze_excite(graph, names[-1], taken)
        if se is None:
            return None
        chain, project = _through(graph, graph.node(se[-1]), taken)
        names += se + [n.name for n in chain]
    if not _is_pointwise(project) or project.attrs["activation"] != "NONE":
        return None
    return names + [project.name]


def _squeeze_excite(graph: Graph, tensor: str, taken: set[str]) -> list[str] | None:
    """Tensor `tensor` read by a global average pool and a MUL, the pool reaching the MUL's
    other input through two 1x1 conv / dense layers and PASS_THROUGH nodes (the gate, e.g.
    hard_sigmoid = a clip after the folded conv): the block's node names or None."""
    readers = graph.consumers(tensor)
    if graph.uses(tensor) != 2 or sorted(r.kind for r in readers) != ["global_avg_pool", "mul"]:
        return None
    gap, mul = sorted(readers, key=lambda r: r.kind)
    if gap.name in taken or mul.name in taken:
        return None
    names, node, weighted = [gap.name], gap, 0
    while True:
        node = _only_reader(graph, node.name, taken)
        if node is None:
            return None
        if node is mul:
            break
        if _is_pointwise(node) or node.kind == "dense":
            weighted += 1
        elif node.kind not in PASS_THROUGH:
            return None
        names.append(node.name)
    return names + [mul.name] if weighted == 2 else None


# --------------------------------------------------------------------------- float execution


def apply_node(node: Node, inputs: list, weights: dict | None = None, activation: bool = True):
    """One node in TensorFlow ops. `weights` overrides the node's own (e.g. fake-quantized
    variables); `activation=False` leaves out the fused activation."""
    import tensorflow as tf

    w = node.weights if weights is None else weights
    a = node.attrs
    x = inputs[0] if inputs else None
    kind = node.kind
    if kind == "conv2d":
        y = tf.nn.conv2d(x, w["kernel"], strides=[1, *a["strides"], 1], padding=a["padding"],
                         dilations=[1, *a["dilation"], 1]) + w["bias"]
    elif kind == "depthwise_conv2d":
        y = tf.nn.depthwise_conv2d(x, w["kernel"], strides=[1, *a["strides"], 1],
                                   padding=a["padding"], dilations=a["dilation"]) + w["bias"]
    elif kind == "dense":
        y = tf.matmul(x, w["kernel"]) + w["bias"]
    elif kind == "conv2d_transpose":
        shape = tf.concat([tf.shape(x)[:1], node.output_shape], 0)
        y = tf.nn.conv2d_transpose(x, tf.cast(w["kernel"], x.dtype), shape,
                                   strides=[1, *a["strides"], 1], padding=a["padding"]) + w["bias"]
    elif kind == "sub":
        y = inputs[0] - inputs[1]
    elif kind in ("maximum", "minimum"):
        return (tf.maximum if kind == "maximum" else tf.minimum)(inputs[0], inputs[1])
    elif kind == "resize_nearest":
        rows, cols = (nearest_indices(int(x.shape[axis]), node.output_shape[axis - 1], False,
                                      True) for axis in (1, 2))
        return tf.gather(tf.gather(x, rows, axis=1), cols, axis=2)
    elif kind == "add":
        y = tf.add_n(list(inputs))
    elif kind in ("avg_pool", "max_pool"):
        pool = tf.nn.avg_pool2d if kind == "avg_pool" else tf.nn.max_pool2d
        y = pool(x, a["pool_size"], a["strides"], a["padding"])
    elif kind == "global_avg_pool":
        return tf.reduce_mean(x, axis=[1, 2], keepdims=a["keepdims"])
    elif kind == "pad":
        return tf.pad(x, [[0, 0], list(a["paddings"][0]), list(a["paddings"][1]), [0, 0]])
    elif kind == "reshape":
        return tf.reshape(x, [-1, *a["target_shape"]])
    elif kind == "concat":
        return tf.concat(list(inputs), axis=a["axis"])
    elif kind == "softmax":
        return tf.nn.softmax(x, axis=-1)
    elif kind == "mul":
        y = inputs[0] * inputs[1]
    elif kind == "leaky_relu":
        return tf.nn.leaky_relu(x, alpha=a["alpha"])
    elif kind == "logistic":
        return tf.sigmoid(x)
    elif kind == "tanh":
        return tf.tanh(x)
    elif kind == "hard_swish":
        return x * tf.nn.relu6(x + 3.0) / 6.0
    elif kind == "clip":
        return tf.clip_by_value(x, a["lo"], a["hi"])
    elif kind == "input":
        return x
    else:
        raise UnsupportedLayerError(f"node {node.name!r}: cannot run kind {kind!r}")
    if activation and a["activation"] == "RELU":
        y = tf.nn.relu(y)
    elif activation and a["activation"] == "RELU6":
        y = tf.nn.relu6(y)
    return y


def run_tf(graph: Graph, x) -> dict:
    """Every node's float output for one batch, as TensorFlow tensors keyed by node name."""
    import tensorflow as tf

    if len(graph.inputs) != 1:
        raise DataError(f"graph {graph.name!r} has {len(graph.inputs)} inputs",
                        "edgeq runs single-input models")
    values = {graph.inputs[0]: tf.convert_to_tensor(x, tf.float32)}
    for node in graph.nodes:
        if node.kind != "input":
            values[node.name] = apply_node(node, [values[i] for i in node.inputs])
    return values


def check_input(graph: Graph, x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    want = graph.node(graph.inputs[0]).output_shape
    if x.shape[1:] != tuple(want):
        raise DataError(f"input batch of shape {x.shape} does not fit model {graph.name!r} "
                        f"(expects (N, {', '.join(map(str, want))}))",
                        "resize/convert the data to the model's input shape")
    if not np.all(np.isfinite(x)):
        raise DataError("input batch contains NaN or Inf", "clean the data")
    return x


def run_float(graph: Graph, x, batch_size: int = 64):
    x = check_input(graph, x)
    outs: list[list[np.ndarray]] = [[] for _ in graph.outputs]
    for start in range(0, len(x), batch_size):
        values = run_tf(graph, x[start:start + batch_size])
        for k, name in enumerate(graph.outputs):
            outs[k].append(values[name].numpy())
    arrays = [np.concatenate(o) for o in outs]
    return arrays[0] if len(arrays) == 1 else arrays
