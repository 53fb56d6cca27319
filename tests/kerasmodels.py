"""Keras 3 models of issue #14 for the tests: the layers users bring (SeparableConv2D,
LeakyReLU, PReLU, sigmoid, hard_sigmoid, hard_swish, Multiply, ReLU variants,
GlobalMaxPooling2D, Rescaling) in tiny models, and the whole models (MobileNetV2 alpha 0.35,
MobileNetV3Small with and without minimalism and preprocessing, a DS-CNN), with BatchNorm
statistics measured on real photos (`set_bn_statistics`), so that random weights still give
activations of plausible ranges.
"""

from __future__ import annotations

import numpy as np
from conftest import SHARED

PHOTOS = SHARED / "data" / "coco-vww-256"  # ../shared, or EDGEQ_SHARED as for every test


def photos(n: int, size: int = 96, scale: float = 255.0) -> np.ndarray:
    """`n` coco-vww-256 photos (half per class), resized to size x size, divided by `scale`."""
    from edgeq.data import load_dataset

    ds = load_dataset(PHOTOS, (size, size, 3), scale=scale)
    rng = np.random.default_rng(0)
    picks = [rng.choice(np.flatnonzero(ds.y == c), n // 2 + (c < n % 2), replace=False)
             for c in range(2)]
    return ds.x[np.sort(np.concatenate(picks))].astype(np.float32)


def set_bn_statistics(model, x, batch_size: int = 16) -> None:
    """Every BatchNormalization's moving mean and variance set to its input's moments over
    `x`, layer after layer (each measured with the earlier layers in inference mode)."""
    import keras

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(model.inputs, layer.input)
        h = np.concatenate([np.asarray(probe(x[i:i + batch_size], training=False), np.float64)
                            for i in range(0, len(x), batch_size)])
        axes = tuple(range(h.ndim - 1))
        gamma, beta, _, _ = layer.get_weights()
        layer.set_weights([gamma, beta, h.mean(axis=axes).astype(np.float32),
                           h.var(axis=axes).astype(np.float32)])


def mobilenet_v2(x, alpha: float = 0.35, size: int = 96, classes: int = 2):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV2(input_shape=(size, size, 3), weights=None,
                                           alpha=alpha, classes=classes)
    set_bn_statistics(model, x)
    return model


def mobilenet_v3_small(x, minimalistic: bool = False, preprocessing: bool = True,
                       alpha: float = 0.75, size: int = 96, classes: int = 2):
    """keras.applications.MobileNetV3Small; with preprocessing it takes pixels in [0, 255]
    (a Rescaling layer), without it [-1, 1]."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(
        input_shape=(size, size, 3), weights=None, alpha=alpha, classes=classes,
        minimalistic=minimalistic, include_preprocessing=preprocessing)
    set_bn_statistics(model, x)
    return model


def ds_cnn(x, filters: int = 16, classes: int = 4):
    """A keyword-spotting DS-CNN on a (49, 10, 1) spectrogram: a strided conv, SeparableConv2D
    blocks with BatchNormalization and ReLU, global pooling, a dense softmax."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input(x.shape[1:])
    h = layers.Conv2D(filters, (5, 3), strides=(2, 2), padding="same", use_bias=False)(inp)
    h = layers.ReLU()(layers.BatchNormalization()(h))
    for _ in range(2):
        h = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False)(h)
        h = layers.ReLU()(layers.BatchNormalization()(h))
    h = layers.GlobalAveragePooling2D()(h)
    out = layers.Dense(classes, activation="softmax")(h)
    model = keras.Model(inp, out, name="ds_cnn")
    set_bn_statistics(model, x)
    return model


def unet(x, size: int = 64, classes: int = 2):
    """A small U-Net on size x size RGB: two strided Conv2D down (BN, ReLU), back up by
    UpSampling2D with a Concatenate skip and by Conv2DTranspose (stride 2, BN) with an Add
    skip, a 1x1 Conv2D to `classes` maps. The maps are averaged and soft-maxed so that the
    build's label checks apply (a per-image decision from the per-pixel head)."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(0)
    inp = keras.Input((size, size, 3))

    def conv(h, filters, strides=1):
        h = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False)(h)
        return layers.ReLU()(layers.BatchNormalization()(h))

    e1 = conv(inp, 8)
    e2 = conv(e1, 16, 2)
    e3 = conv(e2, 24, 2)
    d2 = conv(layers.Concatenate()([layers.UpSampling2D()(e3), e2]), 16)
    up = layers.Conv2DTranspose(8, 3, strides=2, padding="same", use_bias=False)(d2)
    d1 = layers.ReLU()(layers.Add()([layers.BatchNormalization()(up), e1]))
    h = layers.GlobalAveragePooling2D()(layers.Conv2D(classes, 1)(d1))
    model = keras.Model(inp, layers.Softmax()(h), name="unet")
    set_bn_statistics(model, x)
    return model
