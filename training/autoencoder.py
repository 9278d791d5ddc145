"""The sharpened autoencoder's Keras side: its targets, metrics and hard-step reconstructions.

``hone train --arch autoencoder`` trains a dense chain (by default 784-384-192-384-784) whose every
hidden and output unit is a spiking activation, to reproduce its input binarized (``pixel >= 0.5``):
the output layer's spikes *are* the reconstruction, so the exported network file has no N-hot key
(an output of kind ``"spikes"``, format version 2). Two metrics follow training, both on the output
spikes' side of 0.5 (which, for :class:`~hone.training.activations.SpikingBReLU` at any sharpness,
is the side of its step): ``accuracy``, the fraction of pixels reconstructed right, and
``bits_wrong``, the pixels wrong per image.
"""

import keras
import numpy as np
from keras import ops

from .activations import spiking_layers
from .config import LOSSES
from hone.network.reconstruction import pixel_targets

__all__ = ["LOSSES", "pixel_accuracy", "bits_wrong", "reconstruction_metrics", "reconstruction_loss",
           "hard_reconstructions", "pixel_targets"]


def _wrong(y_true, y_pred):
    y_true, y_pred = ops.cast(y_true, "float32"), ops.cast(y_pred, "float32")
    return ops.cast(ops.not_equal(y_true >= 0.5, y_pred >= 0.5), "float32")


@keras.saving.register_keras_serializable(package="hone")
def pixel_accuracy(y_true, y_pred):
    """Per image: the fraction of output units on the same side of 0.5 as their binary target."""
    return 1.0 - ops.mean(_wrong(y_true, y_pred), axis=-1)


@keras.saving.register_keras_serializable(package="hone")
def bits_wrong(y_true, y_pred):
    """Per image: the output units on the other side of 0.5 from their binary target."""
    return ops.sum(_wrong(y_true, y_pred), axis=-1)


def reconstruction_metrics():
    """Keras metrics ``accuracy`` (pixel accuracy) and ``bits_wrong`` (per image), means over the images."""
    return [keras.metrics.MeanMetricWrapper(pixel_accuracy, name="accuracy"),
            keras.metrics.MeanMetricWrapper(bits_wrong, name="bits_wrong")]


def reconstruction_loss(name):
    """The training loss of the reconstruction: ``"mse"`` or ``"bce"`` (binary cross-entropy).

    Mean squared error keeps its gradient once the output layer is an exact step (a wrong bit pulls
    with ``2 (y - t)`` through the straight-through gradient); Keras' binary cross-entropy clips its
    input away from 0 and 1, so on an exact 0/1 output it passes no gradient at all.

    Raises:
        ValueError: an unknown name.
    """
    if name not in LOSSES:
        raise ValueError(f"`loss` must be one of {', '.join(LOSSES)}. Received: loss={name!r}")
    return {"mse": keras.losses.MeanSquaredError(), "bce": keras.losses.BinaryCrossentropy()}[name]


def hard_reconstructions(model, x, batch_size=1024):
    """The output spikes ``(n, units)`` ``uint8`` with every spiking layer at sharpness 1 (exact steps).

    The model's sharpness is restored afterwards.

    Example:

    >>> spikes = hard_reconstructions(model, data.x_test)
    >>> reconstruction_figures(spikes, pixel_targets(data.x_test))["pixel_accuracy"]
    """
    from .distribute import batch_multiple, pad_to_multiple

    spiking = spiking_layers(model)
    saved = [layer.get_sharpness() for layer in spiking]
    try:
        for layer in spiking:
            layer.set_sharpness(1.0)
        multiple = batch_multiple()
        padded, _, _ = pad_to_multiple(np.asarray(x), np.zeros(len(x)), multiple)
        out = model.predict(padded, batch_size=batch_size - batch_size % multiple or multiple, verbose=0)[:len(x)]
    finally:
        for layer, value in zip(spiking, saved):
            layer.set_sharpness(value)
    return (np.asarray(out).reshape(len(x), -1) >= 0.5).astype(np.uint8)
