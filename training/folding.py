"""Fold BatchNormalization into the preceding Dense or Conv2D.

In inference mode BN computes ``gamma * (z - mean) / sqrt(var + eps) + beta`` per channel of the
pre-activation ``z = x @ W + b``. Folding scales each output channel's weights by
``a = gamma / sqrt(var + eps)`` and sets the bias to ``a * (b - mean) + beta``, with Keras' own
``epsilon``, computed in float64: the folded model's pre-activations equal BN's outputs to float32
rounding. After folding a spiking unit fires iff ``x @ W' + b' >= threshold``, the form the network
file quantizes.
"""

import numpy as np
import keras
from hone.network.errors import HoneError
from .graph import read_graph

__all__ = ["FoldingError", "FoldedBatchNorm", "fold_batch_norm", "fold_parameters"]

_FOLDABLE = (keras.layers.Dense, keras.layers.Conv2D)


class FoldingError(HoneError, ValueError):
    """A BatchNormalization cannot be folded into its producer."""


@keras.saving.register_keras_serializable(package="hone")
class FoldedBatchNorm(keras.layers.Layer):
    """Pass-through left where a BatchNormalization was folded (Functional models keep their graph)."""

    def call(self, inputs, training=None, mask=None):
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape


def fold_parameters(kernel, bias, gamma, beta, mean, variance, epsilon):
    """Folded ``(kernel, bias)`` for a kernel whose last axis is the BN channel axis (float64 math)."""
    kernel = np.asarray(kernel, np.float64)
    scale = np.asarray(gamma, np.float64) / np.sqrt(np.asarray(variance, np.float64) + epsilon)
    bias = np.zeros(kernel.shape[-1]) if bias is None else np.asarray(bias, np.float64)
    folded_bias = scale * (bias - np.asarray(mean, np.float64)) + np.asarray(beta, np.float64)
    return kernel * scale, folded_bias


def _bn_parameters(bn):
    channels = bn.moving_mean.shape[0]
    gamma = np.asarray(bn.gamma.numpy()) if bn.scale else np.ones(channels)
    beta = np.asarray(bn.beta.numpy()) if bn.center else np.zeros(channels)
    return gamma, beta, np.asarray(bn.moving_mean.numpy()), np.asarray(bn.moving_variance.numpy())


def _producers(model):
    """``{bn name: producer layer}`` for every BN, checking each can be folded."""
    graph = read_graph(model)
    if graph is None:
        raise FoldingError(f"the model {model.name!r} has no layer graph: fold_batch_norm takes a built "
                           f"Sequential or functional model")
    calls = graph.calls
    sources = {id(call): [graph.operations[tensor.producer] for tensor in call.inputs] for call in calls}
    pairs = {}
    for call in calls:
        layer = call.operation
        if not isinstance(layer, keras.layers.BatchNormalization):
            continue
        parents = sources[id(call)]
        producer = parents[0] if len(parents) == 1 else None
        if not isinstance(producer, _FOLDABLE):
            name = type(producer).__name__ if producer is not None else "several layers"
            raise FoldingError(f"BatchNormalization {layer.name!r} follows {name} "
                               f"{getattr(producer, 'name', '')!r}; only a BN directly after a Dense "
                               f"or Conv2D can be folded")
        axis = layer.axis if isinstance(layer.axis, int) else tuple(layer.axis)
        rank = len(producer.output.shape)
        if axis not in (-1, rank - 1, [-1], (rank - 1,), (-1,)):
            raise FoldingError(f"BatchNormalization {layer.name!r} normalises axis {layer.axis}; "
                               f"folding needs the channel (last) axis")
        consumers = sum(producer in parents for parents in sources.values())
        if consumers != 1:
            raise FoldingError(f"{producer.name!r} feeds {consumers} layers besides BN {layer.name!r}; "
                               f"folding would change their inputs")
        pairs[layer.name] = producer
    return pairs


def fold_batch_norm(model):
    """A copy of a Sequential or Functional model with every BatchNormalization folded away.

    The copy has the same layer names; Sequential copies drop the BN layers, Functional copies keep
    a pass-through :class:`FoldedBatchNorm` in their place. Folded Dense/Conv2D layers gain a bias.
    Raises :class:`FoldingError` for a BN that does not directly follow a Dense/Conv2D on the channel
    axis, or whose producer also feeds other layers, and for a model without a layer graph (an unbuilt
    Sequential, a subclassed Model).

    Example:

    >>> folded = fold_batch_norm(keras.saving.load_model("run/model.keras"))
    """
    pairs = _producers(model)
    folded_names = {producer.name: bn_name for bn_name, producer in pairs.items()}

    def clone(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return FoldedBatchNorm(name=layer.name)
        config = layer.get_config()
        if layer.name in folded_names:
            config["use_bias"] = True
        return layer.__class__.from_config(config)

    if isinstance(model, keras.Sequential):
        copy = keras.Sequential([keras.Input(shape=model.input_shape[1:], name=model.inputs[0].name)]
                                + [clone(layer) for layer in model.layers
                                   if not isinstance(layer, keras.layers.BatchNormalization)],
                                name=model.name)
    else:
        copy = keras.models.clone_model(model, clone_function=clone)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization) or not layer.weights:
            continue
        target = copy.get_layer(layer.name)
        if layer.name in folded_names:
            bn = model.get_layer(folded_names[layer.name])
            bias = layer.bias.numpy() if layer.use_bias else None
            kernel, bias = fold_parameters(layer.kernel.numpy(), bias, *_bn_parameters(bn), bn.epsilon)
            target.set_weights([kernel.astype(np.float32), bias.astype(np.float32)])
        else:
            target.set_weights(layer.get_weights())
    return copy
