"""Model zoo: model cards (models/*.yaml, read in one place) and their builders.

Reading a card needs no TensorFlow; `build_model` imports tf_keras (Keras 2), which is what
tfmot and the TFLite converter work with best.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from edgeq import data_dir
from edgeq.errors import UnknownModelError

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Preprocess:
    color: str  # "grayscale" | "rgb"
    resize: tuple[int, int]  # (height, width)
    scale: float  # divide pixels by this

    @property
    def channels(self) -> int:
        return 1 if self.color == "grayscale" else 3


@dataclass(frozen=True)
class ModelCard:
    name: str
    description: str
    builder: str
    params: dict
    input_shape: tuple[int, int, int]
    preprocess: Preprocess
    labels: list[str]
    datasets: list[dict] = field(default_factory=list)
    train: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["preprocess"] = dict(color=self.preprocess.color, resize=list(self.preprocess.resize),
                               scale=self.preprocess.scale)
        d["input_shape"] = list(self.input_shape)
        return d


def _card_dir():
    return data_dir("models")


def model_names() -> list[str]:
    return sorted(p.name[:-5] for p in _card_dir().iterdir() if p.name.endswith(".yaml"))


def load_card(name: str) -> ModelCard:
    resource = _card_dir() / f"{name}.yaml"
    if not resource.is_file():
        raise UnknownModelError(f"unknown model {name!r}",
                                f"known models: {', '.join(model_names())}; "
                                "or pass your own with --keras-model PATH")
    raw = yaml.safe_load(resource.read_text())
    if raw.get("schema") != SCHEMA_VERSION:
        raise UnknownModelError(f"{name}.yaml: model card schema {raw.get('schema')!r} is not supported")
    if raw["builder"] not in BUILDERS:
        raise UnknownModelError(f"{name}.yaml: unknown builder {raw['builder']!r}",
                                f"use one of {', '.join(BUILDERS)}")
    pre = raw["preprocess"]
    return ModelCard(
        name=raw["name"], description=" ".join(raw["description"].split()), builder=raw["builder"],
        params=raw.get("params", {}), input_shape=tuple(raw["input_shape"]),
        preprocess=Preprocess(pre["color"], tuple(pre["resize"]), float(pre["scale"])),
        labels=list(raw["labels"]), datasets=raw.get("datasets", []), train=raw.get("train", {}))


def list_cards() -> list[ModelCard]:
    return [load_card(n) for n in model_names()]


def mobilenet_v1(input_shape, num_classes, alpha=0.25, first_stride=2, blocks=(), dropout=0.0,
                 name="mobilenet_v1"):
    """MobileNetV1 as MLPerf Tiny's VWW model builds it: conv(bias)+BN+ReLU, then depthwise /
    pointwise pairs, average pooling over the whole map, flatten, dense softmax. The layer order
    matches vww_96.h5 so its weights load by position."""
    import tf_keras as keras
    from tf_keras import layers, regularizers

    reg = regularizers.l2(1e-4)

    def bn_relu(x):
        x = layers.BatchNormalization()(x)
        return layers.Activation("relu")(x)

    inputs = keras.Input(shape=tuple(input_shape))
    x = layers.Conv2D(max(8, int(32 * alpha)), 3, strides=first_stride, padding="same",
                      kernel_regularizer=reg)(inputs)
    x = bn_relu(x)
    for filters, stride in blocks:
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same")(x)
        x = bn_relu(x)
        x = layers.Conv2D(int(filters * alpha), 1, padding="same", kernel_regularizer=reg)(x)
        x = bn_relu(x)
    x = layers.AveragePooling2D(pool_size=tuple(x.shape[1:3]))(x)
    x = layers.Flatten()(x)
    if dropout:
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name=name)


def mobilenet_v2(input_shape, num_classes, alpha=0.35, name="mobilenet_v2"):
    """keras.applications.MobileNetV2 (Keras 2's, randomly initialised): inverted residual
    blocks of expand 1x1, depthwise 3x3 and project 1x1 convolutions, global average pooling
    and a dense softmax; its layer names (block_N_expand, ...) are Keras's own."""
    import tf_keras as keras

    model = keras.applications.MobileNetV2(input_shape=tuple(input_shape), alpha=alpha,
                                           weights=None, classes=num_classes)
    return keras.Model(model.inputs, model.outputs, name=name)


BUILDERS = {"mobilenet_v1": mobilenet_v1, "mobilenet_v2": mobilenet_v2}


def build_model(card: ModelCard):
    """A fresh, untrained tf_keras model for the card."""
    return BUILDERS[card.builder](card.input_shape, card.num_classes, name=card.name, **card.params)
