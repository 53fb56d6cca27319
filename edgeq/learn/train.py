"""Training a zoo model on its data (float), with a rich progress bar per epoch.

After training, BatchNorm's moving statistics are measured again on the training data: Keras
updates them with momentum 0.99 per step, so after a short run (16 steps of 2000 images) they
are still mostly their initial values (mean 0, variance 1) and the model in inference mode is at
chance while its training accuracy is fine."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from edgeq.data import Dataset, check_labels, class_labels, output_classes

BN_SAMPLES = 1024  # training samples that re-estimate the BatchNorm statistics


@dataclass
class TrainResult:
    model: object
    epochs: int
    seconds: float
    val_accuracy: float
    history: dict


def _progress_callback(progress, epochs: int, steps: int):
    import tf_keras as keras

    class RichProgress(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.task = progress.add_task("train", total=epochs * steps)

        def on_train_batch_end(self, batch, logs=None):
            progress.update(self.task, advance=1,
                            description=f"train loss {logs.get('loss', 0):.3f} acc {logs.get('accuracy', 0):.3f}")

        def on_epoch_end(self, epoch, logs=None):
            progress.console.log(f"epoch {epoch + 1}/{epochs}: loss {logs['loss']:.4f} "
                                 f"acc {logs['accuracy']:.4f}")

    return RichProgress()


def train(model, train_ds: Dataset, val_ds: Dataset | None, epochs: int, batch_size: int = 128,
          learning_rate: float = 1e-3, seed: int = 0, progress=None, augment: bool = False) -> TrainResult:
    """Adam with cosine decay on sparse categorical cross-entropy. Deterministic given `seed`
    up to TensorFlow's threading."""
    import tensorflow as tf
    import tf_keras as keras

    classes = output_classes(int(np.prod(model.outputs[0].shape[1:])))
    for ds in (train_ds, val_ds):
        if ds is not None:  # before Keras fails on them with a shape error
            check_labels(ds.y, classes, ds.source or "the training data")
    tf.keras.utils.set_random_seed(seed) if hasattr(tf.keras.utils, "set_random_seed") else None
    keras.utils.set_random_seed(seed)
    steps = int(np.ceil(len(train_ds) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, epochs * steps))
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = train_ds.x
    if augment:  # horizontal flips double the variety at no cost; Fashion-MNIST tolerates them
        flip = np.random.default_rng(seed).random(len(x)) < 0.5
        x = x.copy()
        x[flip] = x[flip, :, ::-1]
    callbacks = [_progress_callback(progress, epochs, steps)] if progress is not None else []
    start = time.perf_counter()
    # No validation during fit: Keras would measure it with the unsettled moving statistics.
    history = model.fit(x, train_ds.y, batch_size=batch_size, epochs=epochs, verbose=0,
                        callbacks=callbacks, shuffle=True)
    reestimate_batchnorm(model, x[np.random.default_rng(seed).permutation(len(x))[:BN_SAMPLES]])
    seconds = time.perf_counter() - start
    val_acc = evaluate_float(model, val_ds)[0] if val_ds is not None else float("nan")
    if progress is not None and val_ds is not None:
        progress.console.log(f"validation accuracy {100 * val_acc:.2f}% on {len(val_ds)} samples "
                             "(BatchNorm statistics re-estimated on the training data)")
    return TrainResult(model, epochs, seconds, val_acc, {k: [float(v) for v in vs]
                                                         for k, vs in history.history.items()})


def reestimate_batchnorm(model, x: np.ndarray, batch_size: int = 256) -> None:
    """Set every (top-level) BatchNormalization layer's moving mean and variance to the mean and
    variance of its input over `x`, layer after layer, each measured with the layers before it
    in inference mode: what the trained model will see once deployed."""
    import tf_keras as keras

    for layer in model.layers:
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        probe = keras.Model(model.inputs, layer.input)
        axes, total, sums, squares = None, 0, 0.0, 0.0
        for i in range(0, len(x), batch_size):
            h = np.asarray(probe(x[i:i + batch_size], training=False), np.float64)
            axes = tuple(a for a in range(h.ndim) if a != h.ndim - 1)
            total += int(np.prod([h.shape[a] for a in axes]))
            sums = sums + h.sum(axis=axes)
            squares = squares + (h * h).sum(axis=axes)
        mean = sums / total
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(squares / total - mean * mean, 0.0).astype(np.float32))


def evaluate_float(model, ds: Dataset, batch_size: int = 256) -> tuple[float, np.ndarray]:
    """(top-1 accuracy, raw outputs) of a Keras model; one sigmoid unit is a binary classifier."""
    out = np.concatenate([np.asarray(model(ds.x[i:i + batch_size], training=False))
                          for i in range(0, len(ds), batch_size)])
    return float((class_labels(out) == ds.y).mean()), out
