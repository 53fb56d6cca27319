"""Two small adapters that read a Keras model into plain `KerasLayer` records.

Keras 2 (tf_keras) and Keras 3 (keras) serialize a model's wiring differently; everything else
edgeq does works on these records (numpy weights, plain configs), so the rest of the pipeline
never depends on one Keras version. Only functional and Sequential models are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgeq.errors import ModelLoadError, UnsupportedLayerError


@dataclass
class KerasLayer:
    name: str
    class_name: str
    config: dict
    inbound: list[str]  # names of the layers whose outputs this layer consumes, in order
    weights: list[np.ndarray]  # as layer.get_weights() returns them
    output_shape: tuple[int, ...]  # without the batch dimension
    input_shapes: list[tuple[int, ...]] = field(default_factory=list)  # without the batch
    keras_version: int = 3


@dataclass
class KerasModel:
    name: str
    layers: list[KerasLayer]  # in the order the model lists them (topological)
    inputs: list[str]
    outputs: list[str]
    keras_version: int  # 2 or 3


def keras_version_of(model) -> int:
    """2 for a tf_keras model, 3 for a Keras 3 model; anything else is rejected."""
    for cls in type(model).__mro__:
        module = cls.__module__
        if module.startswith("tf_keras"):
            return 2
        if module.startswith("keras"):
            return 3
    raise ModelLoadError(f"{type(model).__name__} is not a Keras model",
                         "pass a tf_keras (Keras 2) or keras (Keras 3) functional or Sequential model")


def read_keras(model) -> KerasModel:
    version = keras_version_of(model)
    try:
        built = bool(model.inputs)
    except (AttributeError, ValueError):
        built = False
    if not built:
        raise ModelLoadError(f"model {model.name!r} has no defined input shape",
                             "build it with keras.Input(shape=...) as its first layer, or call "
                             "it once on data")
    config = model.get_config()
    if "layers" not in config:
        raise ModelLoadError(f"model {model.name!r} ({type(model).__name__}) is a subclassed model",
                             "rebuild it as a functional or Sequential model; edgeq reads its wiring "
                             "from get_config()")
    sequential = "input_layers" not in config
    layers = []
    previous = None
    for entry in config["layers"]:
        name = entry["config"]["name"] if sequential else entry["name"]
        if sequential:
            inbound = [previous] if previous else []
        else:
            inbound = _inbound_v2(entry, name) if version == 2 else _inbound_v3(entry, name)
        layers.append(_layer_record(model, entry, name, inbound, version))
        previous = name
    if sequential:
        if not layers or layers[0].class_name != "InputLayer":
            layers.insert(0, _sequential_input(model))
            if len(layers) > 1:
                layers[1].inbound = [layers[0].name]
        inputs, outputs = [layers[0].name], [layers[-1].name]
    else:
        inputs = _endpoint_names(config["input_layers"])
        outputs = _endpoint_names(config["output_layers"])
    return KerasModel(model.name, layers, inputs, outputs, version)


def _layer_record(model, entry, name, inbound, version) -> KerasLayer:
    class_name = entry["class_name"]
    cfg = dict(entry["config"])
    if str(entry.get("module", "")).startswith("keras.src.ops"):
        return _operation_record(entry, name, inbound)
    if class_name == "InputLayer":
        shape = cfg.get("batch_input_shape") or cfg.get("batch_shape")
        return KerasLayer(name, class_name, cfg, [], [], tuple(int(d) for d in shape[1:]))
    if "layers" in cfg:  # a nested model used as a layer
        raise UnsupportedLayerError(
            f"layer {name!r} ({class_name}) is a nested model",
            "flatten it: rebuild the model so that its layers are called directly")
    layer = model.get_layer(name)
    if len(layer._inbound_nodes) > 1:
        raise UnsupportedLayerError(f"layer {name!r} ({class_name}) is called more than once",
                                    "use a separate layer object for each call")
    weights = [np.asarray(w, dtype=np.float32) for w in layer.get_weights()]
    return KerasLayer(name, class_name, cfg, inbound, weights, _output_shape(layer, name, version),
                      _input_shapes(layer), version)


def _input_shapes(layer) -> list[tuple[int, ...]]:
    try:
        inputs = layer.input
    except (AttributeError, ValueError):
        return []
    inputs = inputs if isinstance(inputs, (list, tuple)) else [inputs]
    return [tuple(int(d) if d is not None else -1 for d in t.shape[1:]) for t in inputs]


def _operation_record(entry, name, inbound) -> KerasLayer:
    """A Keras 3 operation in a functional model (`x + 3.0`, `x * (1 / 6)`: keras.ops.add,
    keras.ops.multiply, ...): no layer object, no weights. Its record is class "ops.<Name>" with
    the non-tensor arguments in config["constants"] (None where a tensor is) and the output
    shape broadcast from the input tensors' shapes."""
    nodes = _single_call(entry, name)
    args = nodes[0].get("args", []) if nodes else []
    constants, shapes = [], []
    for arg in args:
        if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
            constants.append(None)
            shapes.append(tuple(int(d) for d in arg["config"]["shape"][1:]))
        else:
            constants.append(arg)
    cfg = {"name": name, "constants": constants}
    if not shapes:
        raise UnsupportedLayerError(f"operation {name!r} ({entry['class_name']}) reads no tensor",
                                    "edgeq reads operations on the model's tensors")
    shape = tuple(int(d) for d in np.broadcast_shapes(*shapes))
    return KerasLayer(name, "ops." + entry["class_name"], cfg, inbound, [], shape, shapes, 3)


def _output_shape(layer, name, version) -> tuple[int, ...]:
    output = layer.output
    if isinstance(output, (list, tuple)):
        raise UnsupportedLayerError(f"layer {name!r} ({type(layer).__name__}) has several outputs",
                                    "edgeq supports layers with one output")
    return tuple(int(d) for d in output.shape[1:])


def _sequential_input(model) -> KerasLayer:
    shape = tuple(int(d) for d in model.inputs[0].shape[1:])
    return KerasLayer(f"{model.name}_input", "InputLayer", {}, [], [], shape)


def _endpoint_names(endpoints) -> list[str]:
    # Keras 3 writes a single endpoint as [name, 0, 0], Keras 2 always as a list of them.
    if endpoints and isinstance(endpoints[0], str):
        endpoints = [endpoints]
    return [e[0] for e in endpoints]


def _single_call(entry, name) -> list:
    """The layer's inbound nodes; a layer object called twice (shared weights) is refused."""
    nodes = entry.get("inbound_nodes", [])
    if len(nodes) > 1:
        raise UnsupportedLayerError(f"layer {name!r} is called more than once",
                                    "use a separate layer object for each call")
    return nodes


def _inbound_v2(entry, name) -> list[str]:
    nodes = _single_call(entry, name)
    return [item[0] for item in nodes[0]] if nodes else []


def _inbound_v3(entry, name) -> list[str]:
    nodes = _single_call(entry, name)
    if not nodes:
        return []
    found: list[str] = []
    _collect_keras_tensors(nodes[0].get("args", []), found)
    return found


def _collect_keras_tensors(value, found: list[str]) -> None:
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            found.append(value["config"]["keras_history"][0])
            return
        for v in value.values():
            _collect_keras_tensors(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _collect_keras_tensors(v, found)
