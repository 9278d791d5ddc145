"""The architectures hone trains: ``dense`` (an MLP), ``conv`` (conv-pool-conv-pool-dense) and
``autoencoder`` (a dense chain whose output reconstructs its input, see :mod:`hone.training.autoencoder`).

Every hidden and output unit is a spiking activation; a classifier's output layer has ``classes x nhot``
units read by a frozen N-hot key (:class:`~hone.network.nhot.SoftmaxDecode`), an autoencoder's has one
unit per input pixel and no key: its spikes are the output. Max-pooling comes *after* the
spiking activation, so in hardware it is an OR of binary spikes. With ``batch_norm=True`` each
Dense/Conv2D is followed by a BatchNormalization (folded away before export) and has no bias.
"""

import math
import operator

import keras

from .activations import SpikingBReLU, SpikingSigmoid
from .config import DEFAULT_AUTOENCODER_WIDTHS, DEFAULT_CONV, DEFAULT_DENSE_WIDTHS, DEFAULT_NHOT
from .decode import SoftmaxDecode
from hone.network.nhot import nhot_key
from .qat import QuantizedConv2D, QuantizedDense

__all__ = ["ARCHITECTURES", "ACTIVATIONS", "build_model", "DEFAULT_DENSE_WIDTHS", "DEFAULT_CONV"]

ARCHITECTURES = ("dense", "conv", "autoencoder")
ACTIVATIONS = {"brelu": SpikingBReLU, "sigmoid": SpikingSigmoid}


def _positive_ints(name, values):
    try:
        values = tuple(operator.index(v) for v in values)
    except TypeError:
        raise TypeError(f"`{name}` must be a sequence of positive integers. Received: {name}={values!r}") from None
    if not values or min(values) < 1:
        raise ValueError(f"`{name}` must be a non-empty sequence of positive integers. "
                         f"Received: {name}={values!r}")
    return values


def build_model(arch, input_shape, classes, *, nhot=None, output_width=None, widths=None, filters=None,
                kernel=None, padding=None, batch_norm=True, dropout=0.0, conv_dropout=0.0, activation="brelu",
                key_seed=0,
                decode_scale=0.25, gradient="straight-through", augment=False, weight_bits=None, input_bits=None,
                output_ramp=False, name=None):
    """Build an untrained Whetstone model.

    Args:
        arch: `"dense"`, `"conv"` or `"autoencoder"` (dense layers of `widths`, then one spiking
            unit per input pixel as the output, with no key: ``classes``, ``nhot`` and
            ``output_width`` do not apply).
        input_shape: Shape of one image, e.g. `(28, 28, 1)`, or `(features,)` for flat input (dense
            only; no Flatten layer then).
        classes: Number of classes.
        nhot: Output units per class. Defaults to `8` for dense and conv.
        output_width: Output layer width (>= classes * nhot). Defaults to `classes * nhot`.
        widths: Hidden dense widths. Defaults to `(256, 64)` for dense, `(512,)` for conv,
            `(384, 192, 384)` for autoencoder.
        filters: Conv filters per conv-pool stage (conv only). Defaults to `(32, 64)`.
        kernel: Conv kernel size (conv only). Defaults to `5`.
        padding: `"valid"` or `"same"` (conv only). Defaults to `"valid"`.
        batch_norm: BatchNormalization after every Dense/Conv2D. Defaults to `True`.
        dropout: Dropout rate after each hidden dense spiking layer (training only; an identity at
            inference, so the hardware never sees it). Defaults to `0.0`.
        conv_dropout: Dropout rate after each conv stage's max-pool (conv only; training only, like
            `dropout`). Defaults to `0.0`.
        activation: `"brelu"` (step at 0.5) or `"sigmoid"` (step at 0). Defaults to `"brelu"`.
        key_seed: Seed of the N-hot key. Defaults to `0`.
        augment: Random horizontal flips and shifts of up to 2 pixels, in training only (identity at
            inference; the export skips them). Only for data whose mirror images keep their class.
            Defaults to `False`.
        gradient: Backward pass of the spiking layers (see :class:`~hone.training.activations.Spiking`).
            Defaults to `"straight-through"`.
        decode_scale: Softmax scale of :class:`SoftmaxDecode` (training dynamics only; the decoded
            class does not depend on it). Defaults to `0.25`, as ``hone train``.
        weight_bits: Quantization-aware training: each Dense/Conv2D and its BN become one
            :class:`~hone.training.qat.QuantizedDense` / :class:`~hone.training.qat.QuantizedConv2D`
            that trains as ``weight_bits``-bit integer neurons once switched on. `None`: plain
            Dense/Conv2D + BatchNormalization (quantized after training only). Defaults to `None`.
        input_bits: Pixel bits the first quantization-aware layer sees (the network file's input).
            Defaults to `8` when `weight_bits` is set.
        output_ramp: The output layer trains on its unsharpened ramp (``ramp_in_training`` of
            :class:`~hone.training.activations.Spiking`); inference and the export see its step.
            Defaults to `False` (`hone train` turns it on for the autoencoder: +2.3 points of pixel
            accuracy, README "A sharpened autoencoder").
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {', '.join(ARCHITECTURES)}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)}")
    autoencoder = arch == "autoencoder"
    if autoencoder and augment:
        raise ValueError("`augment` does not apply to arch='autoencoder' (its target is its own input). "
                         "Received: augment=True")
    nhot = (DEFAULT_NHOT.get(arch) or 4) if nhot is None else nhot
    key = None if autoencoder else nhot_key(classes, nhot, width=output_width, seed=key_seed)
    spiking = ACTIVATIONS[activation]
    is_dense = arch in ("dense", "autoencoder")
    default_widths = {"dense": DEFAULT_DENSE_WIDTHS, "conv": DEFAULT_CONV["widths"],
                      "autoencoder": DEFAULT_AUTOENCODER_WIDTHS}[arch]
    widths = _positive_ints("widths", widths if widths is not None else default_widths)

    input_shape = tuple(input_shape)
    if len(input_shape) != 3 and (not is_dense or augment):
        what = "`augment`" if is_dense else "`arch='conv'` (train flat data with arch 'dense')"
        raise ValueError(f"{what} needs image input (height, width, channels). Received: "
                         f"input_shape={input_shape}")
    layers = [keras.Input(shape=input_shape, name="image")]
    if augment:
        layers.append(keras.layers.RandomFlip("horizontal", name="augment_flip"))
        layers.append(keras.layers.RandomTranslation(2 / input_shape[0], 2 / input_shape[1],
                                                     fill_mode="constant", name="augment_shift"))

    if conv_dropout and is_dense:
        raise ValueError(f"`conv_dropout` applies to arch='conv' only. Received: conv_dropout={conv_dropout} "
                         f"with arch={arch!r}")
    for argument, rate in (("dropout", dropout), ("conv_dropout", conv_dropout)):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"`{argument}` must be in [0, 1). Received: {argument}={rate}")

    first = [True]

    def block(kind, index, make):
        if weight_bits is None:
            layers.append(make(use_bias=not batch_norm, name=f"{kind}_{index}"))
            if batch_norm:
                layers.append(keras.layers.BatchNormalization(name=f"bn_{kind}_{index}"))
        else:
            quantized = QuantizedDense if kind == "dense" else QuantizedConv2D
            layers.append(make(quantized, weight_bits=weight_bits, batch_norm=batch_norm,
                               input_bits=(input_bits or 8) if first[0] else None,
                               threshold=spiking.threshold, name=f"{kind}_{index}"))
        first[0] = False
        ramp = output_ramp and index == "out"
        layers.append(spiking(gradient=gradient, ramp_in_training=ramp, name=f"spike_{kind}_{index}"))
        if dropout and kind == "dense" and index != "out":
            layers.append(keras.layers.Dropout(dropout, name=f"dropout_{index}"))

    if not is_dense:
        filters = _positive_ints("filters", filters if filters is not None else DEFAULT_CONV["filters"])
        kernel = operator.index(kernel if kernel is not None else DEFAULT_CONV["kernel"])
        padding = padding or DEFAULT_CONV["padding"]
        if padding not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
        height, width = input_shape[:2]
        for index, count in enumerate(filters):
            if padding == "valid":
                height, width = height - kernel + 1, width - kernel + 1
            if min(height, width) < 2:
                raise ValueError(
                    f"conv stage {index} leaves a {max(height, 0)}x{max(width, 0)} map from a "
                    f"{input_shape[0]}x{input_shape[1]} input (kernel {kernel}, padding {padding!r}); "
                    f"use a smaller kernel, padding='same' or fewer stages")
            height, width = height // 2, width // 2
            block("conv", index, lambda cls=keras.layers.Conv2D, **kw: cls(count, kernel, padding=padding, **kw))
            layers.append(keras.layers.MaxPooling2D(2, name=f"pool_{index}"))
            if conv_dropout:
                layers.append(keras.layers.Dropout(conv_dropout, name=f"dropout_conv_{index}"))
    if len(input_shape) > 1:
        layers.append(keras.layers.Flatten(name="flatten"))
    for index, units in enumerate(widths):
        block("dense", index, lambda cls=keras.layers.Dense, **kw: cls(units, **kw))
    outputs = math.prod(input_shape) if autoencoder else key.shape[1]
    block("dense", "out", lambda cls=keras.layers.Dense, **kw: cls(outputs, **kw))
    if not autoencoder:
        layers.append(SoftmaxDecode(key, scale=decode_scale, name="decode"))
    return keras.Sequential(layers, name=name or f"hone_{arch}")
