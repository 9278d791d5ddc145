"""Export a sharpened Keras model to a network file: fold BN, walk the layers, quantize per neuron.

The exporter follows the graph Keras traced, not ``model.layers`` (which lists each layer once, whatever
the wiring, and leaves out ``keras.ops`` calls): the network file is a chain, so the model must be one
too. One input, one output, every layer applied once to the output of the layer before it; a nested
Sequential or functional model that is itself such a chain is flattened into it. Branches, merges,
shared layers, unbuilt Sequentials, subclassed models and layer types the file cannot hold are refused
with :class:`ExportError`, naming the layer.

Each Dense/Conv2D followed by a spiking activation becomes one integer neuron layer (so does a
quantization-aware :class:`~hone.training.qat.QuantizedDense` / ``QuantizedConv2D``, whose BN it folds
itself; once it has trained as integers, those integers are written as they are when the export's bits
are the ones it trained at, else it is quantized like any other layer): it fires iff
``a . x >= T`` with ``a`` the folded weights and ``T = threshold - bias``; the first layer's inputs
are K-bit integers ``q`` standing for ``q / (2**K - 1)``, so its ``a`` absorbs that factor. Flatten
(channel-last, row-major; a Reshape to a flat vector is the same), Dropout, RandomFlip, RandomTranslation
and folded BN placeholders vanish; MaxPooling2D after a spiking layer is an OR of spikes;
``SoftmaxDecode`` gives the N-hot key. A model that ends in its last spiking layer instead (an
autoencoder, :mod:`hone.training.autoencoder`) has no key: its output is that layer's spike vector
(a network file of format version 2).
"""

import collections
import collections.abc
import dataclasses
import json
import pathlib
import zipfile

import numpy as np
import keras

from . import layers as hone_layers
from .folding import FoldingError, fold_batch_norm, fold_parameters
from .graph import Tensor, read_graph
from hone.network.activity import measure_activity, plot_activity
from hone.network.datasets import DatasetError, load_dataset
from hone.network.integer import IntegerNetwork
from .qat import QuantizedConv2D, QuantizedDense, quantized_layers
from hone.network.netfile import (ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, OutputCode, SpikeOutput,
                                  write_network)
from hone.network.nhot import decode_spikes
from hone.network.quantize import clip_thresholds, quantize_neurons
from .sharpeners import sharpness_of
from hone.network.errors import HoneError, ParameterError
from hone.network.reconstruction import pixel_targets
from hone.network.report import Report

__all__ = ["ExportError", "ExportReport", "FloatLayer", "RunSettings", "run_settings", "export_model",
           "export_network", "integers_source", "evaluate_export", "Handler", "HANDLERS", "handles", "handler_of",
           "supported_text", "Synapses", "Fire", "Key"]

class ExportError(HoneError, ValueError):
    """The model cannot be exported; the message names the layer and what was expected."""


@dataclasses.dataclass
class FloatLayer:
    """A folded neuron layer before quantization: fire iff ``a . x >= T``."""

    name: str
    kind: str                # "dense" or "conv2d"
    weights: np.ndarray      # (outputs, ...) real, in the file's layout
    thresholds: np.ndarray   # (outputs,) real
    padding: str = "valid"
    trained: tuple | None = None  # a quantization-aware layer's integers: (bits, input_bits, per_neuron, W, theta)


class RunSettings(collections.namedtuple("RunSettings", "dataset input_bits binarized weight_bits")):
    """What :func:`run_settings` returns."""


def run_settings(model_path, *, dataset=None, input_bits=None, weight_bits=None, model=None):
    """``RunSettings(dataset, input_bits, binarized, weight_bits)`` for exporting a run's model.

    Unset bits are the ones ``model``'s quantization-aware layers trained at, else the ones the run
    folder's ``history.json`` records (``hone train --weight-bits/--input-bits``), else input bits 1
    for a model trained on binarized pixels, else 8, and 4-bit weights. The data set is the one
    ``history.json`` records unless ``dataset`` is given; None when neither names one (a model
    trained outside ``hone train``): then there is nothing to evaluate on. Test images are binarized
    only for 1-bit input to a model trained on binary pixels.

    Raises:
        ExportError: ``history.json`` exists but is not a ``hone train`` history, or records bits
            outside 1..16.
    """
    history = pathlib.Path(model_path).with_name("history.json")
    config = {}
    if history.exists():
        try:
            config = json.loads(history.read_text())["summary"]["config"]
            recorded = {"dataset": config["dataset"], "binarize": bool(config["binarize"])}
        except (OSError, ValueError, KeyError, TypeError) as error:
            reason = f"no {error}" if isinstance(error, KeyError) else str(error).splitlines()[0][:200]
            raise ExportError(f"{history}: not the history of a hone train run ({reason}); move it away, "
                              f"or export the model from a folder without it") from None
        for name in ("weight_bits", "input_bits"):
            value = config.get(name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 16):
                raise ExportError(f"{history}: summary.config.{name} is {value!r}; expected an integer in 1..16")
    else:
        recorded = {"dataset": None, "binarize": False}
    trained = {}
    if model is not None:
        layers = quantized_layers(model)
        if layers:
            trained = {"weight_bits": layers[0].weight_bits, "input_bits": layers[0].input_bits}
    input_bits = input_bits or trained.get("input_bits") or config.get("input_bits") or (1 if recorded["binarize"] else 8)
    weight_bits = weight_bits or trained.get("weight_bits") or config.get("weight_bits") or 4
    return RunSettings(dataset or recorded["dataset"], input_bits, input_bits == 1 and recorded["binarize"], weight_bits)


# -- the handler registry: one small handler per Keras layer type -----------------------------------
#
# Exact types, not isinstance: a subclass may override call(), so only these classes are known to compute
# what the file holds. Spiking layers are the exception: hone's base class fixes the sharp step.


@dataclasses.dataclass(frozen=True)
class Synapses:
    """What a Dense, Conv2D or quantization-aware layer holds: the weights of one neuron layer, before
    the spiking layer after it sets the threshold. ``weights``: ``(outputs, ...)`` float64 in the file's
    layout; ``bias``: ``(outputs,)`` float64; ``trained``: a quantization-aware layer's integers, as in
    :class:`FloatLayer`, and ``trained_threshold`` the threshold it trained for (None for a float layer)."""

    name: str
    described: str
    kind: str
    weights: np.ndarray
    bias: np.ndarray
    padding: str = "valid"
    trained: tuple | None = None
    trained_threshold: float | None = None


@dataclasses.dataclass(frozen=True)
class Fire:
    """A spiking layer: its neurons fire iff their input reaches ``threshold``."""

    described: str
    threshold: float


@dataclasses.dataclass(frozen=True)
class Key:
    """A SoftmaxDecode: the N-hot key, ``(classes, units)`` of 0/1."""

    key: np.ndarray


@dataclasses.dataclass(frozen=True)
class Handler:
    """How the export reads one Keras layer type.

    Args:
        read: ``layer -> plain data``: None (an identity at inference), :class:`Synapses`,
            :class:`Fire`, a :class:`~hone.network.netfile.MaxPoolLayer` or a :class:`Key`; raises
            :class:`ExportError` for a configuration the file cannot hold.
        label: The type's name in the list of supported layers; None: not listed (hone's own
            placeholders, and the model's input).
        flat_input: Keras applies the layer along the last axis only; the file to a flat vector.
        subclasses: Subclasses are handled too (spiking layers, whose base class fixes the step).
        check: ``layer -> None``, raising :class:`ExportError`; run on the model as given, before
            anything is read. Defaults to `None`.
    """

    read: collections.abc.Callable
    label: str | None
    flat_input: bool = False
    subclasses: bool = False
    check: collections.abc.Callable | None = None


HANDLERS = {}   # Keras layer class -> Handler, in the order the refusal message lists them


def handles(*classes, label=True, **options):
    """Register the decorated ``read`` function as the :class:`Handler` of ``classes`` (each listed
    under its class name, unless ``label`` is a name to list them by or None)."""
    def register(read):
        for cls in classes:
            HANDLERS[cls] = Handler(read, cls.__name__ if label is True else label, **options)
        return read
    return register


def handler_of(layer):
    """The :class:`Handler` of ``layer``'s exact type (or of a base class that takes subclasses); None
    for a type the network file cannot hold."""
    exact = HANDLERS.get(type(layer))
    if exact is not None:
        return exact
    return next((HANDLERS[cls] for cls in type(layer).__mro__
                 if cls in HANDLERS and HANDLERS[cls].subclasses), None)


def supported_text():
    """The refusal message's list of what hone exports, built from :data:`HANDLERS`."""
    labels = list(dict.fromkeys(handler.label for handler in HANDLERS.values() if handler.label))
    return f"hone exports {', '.join(labels[:-1])} and {labels[-1]}"


def _numpy(variable):
    return np.asarray(keras.ops.convert_to_numpy(variable), np.float64)


def _check_linear(layer):
    activation = layer.get_config().get("activation", "linear")
    if activation != "linear":
        raise ExportError(f"layer {_describe(layer)} has activation {activation!r}; hone needs a linear layer "
                          f"followed by a spiking activation")


@handles(keras.layers.Dense, flat_input=True)
def _dense(layer):
    _check_linear(layer)
    kernel = _numpy(layer.kernel)
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1])
    return Synapses(layer.name, _describe(layer), "dense", kernel.T, bias)


@handles(keras.layers.Conv2D)
def _conv2d(layer):
    _check_linear(layer)
    config = layer.get_config()
    if (tuple(config["strides"]) != (1, 1) or tuple(config["dilation_rate"]) != (1, 1)
            or config.get("groups", 1) != 1 or config["data_format"] != "channels_last"):
        raise ExportError(f"unsupported Conv2D {_describe(layer)}: hone needs strides 1, dilation 1, "
                          f"groups 1, channels_last; got {config['strides']}, {config['dilation_rate']}, "
                          f"{config.get('groups', 1)}, {config['data_format']}")
    kernel = _numpy(layer.kernel)
    bias = _numpy(layer.bias) if layer.use_bias else np.zeros(kernel.shape[-1])
    return Synapses(layer.name, _describe(layer), "conv2d", kernel.transpose(3, 0, 1, 2), bias, config["padding"])


@handles(QuantizedConv2D)
@handles(QuantizedDense, flat_input=True)
def _quantized(layer):
    """A quantization-aware layer: BN folded in float64, and the integers it trained as, if it did."""
    kernel = _numpy(layer.kernel)
    if layer.norm is None:
        bias = _numpy(layer.bias)
    else:
        norm, channels = layer.norm, kernel.shape[-1]
        kernel, bias = fold_parameters(
            kernel, None, _numpy(norm.gamma) if norm.scale else np.ones(channels),
            _numpy(norm.beta) if norm.center else np.zeros(channels), _numpy(norm.moving_mean),
            _numpy(norm.moving_variance), norm.epsilon)
    if isinstance(layer, QuantizedDense):
        order, kind, padding = (1, 0), "dense", "valid"
    else:
        order, kind, padding = (3, 0, 1, 2), "conv2d", layer.padding
    trained = None
    if layer.is_quantized():
        w = np.rint(keras.ops.convert_to_numpy(layer.integer_kernel)).astype(np.int64).transpose(order)
        theta = _numpy(layer.integer_threshold)  # unclipped
        trained = (layer.weight_bits, layer.input_bits, layer.per_neuron, w, theta)
    return Synapses(layer.name, _describe(layer), kind, kernel.transpose(order), bias, padding, trained,
                    layer.threshold)


@handles(hone_layers.Spiking, label="spiking activations", subclasses=True)
def _spiking(layer):
    return Fire(_describe(layer), layer.threshold)


@handles(keras.layers.MaxPooling2D)
def _max_pool(layer):
    config = layer.get_config()
    if tuple(config["strides"]) != tuple(config["pool_size"]) or config["padding"] != "valid":
        raise _misplaced_pool(layer)
    return MaxPoolLayer(layer.name, tuple(config["pool_size"]))


def _misplaced_pool(layer):
    return ExportError(f"unsupported MaxPooling2D {_describe(layer)}: hone needs it after a spiking layer, "
                       f"with strides equal to the pool size and 'valid' padding")


def _identity(layer):
    return None


def _flat_reshape(layer):
    if len(layer.target_shape) != 1:
        raise ExportError(f"layer {_describe(layer)} reshapes to {tuple(layer.target_shape)}; the network file "
                          f"has no reshape: hone accepts only a Reshape to a flat vector, which is a Flatten")


handles(keras.layers.Flatten)(_identity)   # channel-last, row-major: the file's order
handles(keras.layers.Reshape, check=_flat_reshape)(_identity)  # to a flat vector: a Flatten
handles(keras.layers.Dropout)(_identity)  # training only


@handles(keras.layers.BatchNormalization)
def _batch_norm(layer):   # folded into the layer before it (a FoldedBatchNorm) before the walk
    raise ExportError(f"layer {_describe(layer)} is not folded into the layer before it")


handles(keras.layers.RandomFlip, keras.layers.RandomTranslation)(_identity)  # training only
handles(keras.layers.InputLayer, hone_layers.FoldedBatchNorm, label=None)(_identity)


@handles(hone_layers.SoftmaxDecode, flat_input=True)
def _decode(layer):
    return Key(layer.key)


def _check_sharp(model, allow_unsharp):
    levels = sharpness_of(model)
    if not levels:
        raise ExportError("the model has no spiking layers (SpikingBReLU / SpikingSigmoid); "
                          "train it with hone train")
    unsharp = {name: value for name, value in levels.items() if value < 1.0}
    if unsharp and not allow_unsharp:
        listing = ", ".join(f"{name}={value:.3f}" for name, value in levels.items())
        raise ExportError(f"the model is not fully sharp ({listing}); every spiking layer must have "
                          f"sharpness 1.0 to become integer neurons. Train longer, or pass "
                          f"allow_unsharp=True (--allow-unsharp) to export it as if it were sharp")


def _describe(operation):
    return f"{operation.name!r} ({type(operation).__name__})"


def _shared(layer, times):
    return ExportError(f"layer {_describe(layer)} is applied {times} times (shared weights); the network file "
                       f"holds each layer once: give each application its own layer")


def _graph(model):
    """The :class:`~hone.training.graph.Graph` Keras traced for ``model``: its own, or a built Sequential's.

    Raises:
        ExportError: for a Sequential without a graph (never built, so Keras does not know its input
            shape) or a subclassed Model (its ``call`` wires the layers in Python, which hone cannot read).
    """
    graph = read_graph(model)
    if graph is not None:
        return graph
    if isinstance(model, keras.Sequential):
        if not model.built:
            raise ExportError(f"the Sequential model {model.name!r} is not built: it has no input shape. "
                              f"Start it with keras.Input(shape=...) or call model.build((None, ...)) "
                              f"before exporting")
        raise ExportError(f"the Sequential model {model.name!r} has no layer graph: Keras could not trace "
                          f"its layers from its input shape; start it with keras.Input(shape=...)")
    raise _subclassed(f"the model {_describe(model)}")


def _subclassed(what):
    return ExportError(f"{what} is a subclassed Model: its call() wires the layers in Python, which hone "
                       f"cannot read; build it as a Sequential or functional model")


def _check_supported(layer, shape):
    """Refuse a layer the network file cannot hold, whatever its place in the chain; ``shape`` is its input's.

    Raises:
        ExportError: for a ``keras.ops`` call, a layer type without a :class:`Handler` (subclasses
            included: they may compute something else), one its handler's ``check`` refuses (a Reshape
            to anything but a flat vector), or a Dense or SoftmaxDecode on a tensor that is not flat
            (Keras applies them along the last axis only).
    """
    name = _describe(layer)
    if not isinstance(layer, keras.layers.Layer):
        raise ExportError(f"unsupported operation {name}, a keras.ops call: {supported_text()}")
    handler = handler_of(layer)
    if handler is None:
        raise ExportError(f"unsupported layer {name}: {supported_text()}")
    if handler.check is not None:
        handler.check(layer)
    if handler.flat_input and len(shape) != 2:
        raise ExportError(f"layer {name} takes input of shape {shape}; Keras applies it along the last "
                          f"axis only, the network file to a flat vector: put a Flatten before it")


def _layer_chain(model, graph=None):
    """The layers of ``model`` from its input to its output, nested models flattened, InputLayers left out.

    Follows the graph Keras traced (``graph``, read from ``model`` when None), not ``model.layers``:
    that list holds each layer once whatever the wiring, so a shared layer or a branch would be exported
    as something else. From the one input, each tensor must go to exactly one layer, which takes only
    that tensor, is applied once and is a type the network file holds; a nested Sequential or
    functional model must be such a chain itself.

    Returns:
        ``(layers, nested)``: the layers in order, and whether a nested model was flattened into them.

    Raises:
        ExportError: for any model the network file cannot represent; the message names the layer.
    """
    if graph is None:
        graph = _graph(model)
    if len(graph.inputs) != 1:
        names = ", ".join(repr(tensor.name) for tensor in graph.model.inputs)
        raise ExportError(f"the model has {len(graph.inputs)} inputs ({names}); the network file takes "
                          f"one input image")
    if len(graph.outputs) != 1:
        names = ", ".join(repr(tensor.producer) for tensor in graph.outputs)
        raise ExportError(f"the model has {len(graph.outputs)} outputs (from {names}); the network file has "
                          f"one output: the class its SoftmaxDecode key decodes, or the last layer's spikes")
    applied = collections.Counter(id(call.operation) for call in graph.calls)
    for call in graph.calls:
        if applied[id(call.operation)] > 1:
            raise _shared(call.operation, applied[id(call.operation)])
    consumers = collections.defaultdict(dict)  # tensor -> {id(call): call}, in graph order
    for call in graph.calls:
        for tensor in call.inputs:
            consumers[tensor][id(call)] = call
    tensor, output = graph.inputs[0], graph.outputs[0]
    source = f"the model input {tensor.producer!r}"
    layers, nested, visited = [], False, set()
    while tensor != output:
        users = list(consumers[tensor].values())
        if len(users) != 1:
            names = ", ".join(sorted(repr(call.operation.name) for call in users))
            raise ExportError(f"{source} feeds {len(users)} layers ({names}); the network file is a chain: "
                              f"each layer's output must go to exactly one layer, the last to the output")
        call = users[0]
        layer, name = call.operation, _describe(call.operation)
        if len(call.inputs) != 1:
            raise ExportError(f"layer {name} merges {len(call.inputs)} inputs; the network file is a "
                              f"chain: each layer takes only the output of the layer before it")
        returned = len(keras.tree.flatten(layer.output))  # the layer is applied once: its one output
        if returned != 1:
            raise ExportError(f"layer {name} returns {returned} tensors; the network file is a "
                              f"chain: each layer gives one output to the layer after it")
        if isinstance(layer, keras.Model):
            inner = read_graph(layer)
            if inner is None and not isinstance(layer, keras.Sequential):
                raise _subclassed(f"the nested model {name}")
            try:
                layers.extend(_layer_chain(layer, inner)[0])
            except ExportError as error:
                raise ExportError(f"in nested model {layer.name!r}: {error}") from None
            nested = True
        else:
            _check_supported(layer, call.inputs[0].shape)
            layers.append(layer)
        visited.add(id(call))
        tensor, source = Tensor(layer.name, 0), f"layer {name}"
    for call in graph.calls:  # unreachable for one input and one output; kept so nothing is dropped silently
        if id(call) not in visited:
            raise ExportError(f"layer {_describe(call.operation)} is not on the chain from the model's "
                              f"input to its output")
    applied = collections.Counter(map(id, layers))  # a layer both inside and outside a nested model
    named = collections.Counter(layer.name for layer in layers)
    for layer in layers:
        if applied[id(layer)] > 1:
            raise _shared(layer, applied[id(layer)])
        if named[layer.name] > 1:
            raise ExportError(f"{named[layer.name]} layers are named {layer.name!r} once the nested models are "
                              f"flattened; the network file names each layer once: rename them")
    return layers, nested


def _flat_copy(model, layers):
    """A Sequential of copies of ``layers``, weights included: a model with nested models, flattened.

    Copies, so the user's layers gain no call node; :func:`fold_batch_norm` then sees one flat model and
    folds a BatchNormalization that sat inside a nested model too.
    """
    copies = [type(layer).from_config(layer.get_config()) for layer in layers]
    flat = keras.Sequential([keras.Input(shape=model.input_shape[1:])] + copies, name=model.name)
    for layer, copy in zip(layers, copies):
        if layer.weights:
            copy.set_weights(layer.get_weights())
    return flat


def _folded_layers(model, chain):
    """Fold the model's BN and walk its chain into float neuron layers, max-pools and the key.

    ``chain`` is :func:`_layer_chain` of ``model``: a model with nested models is flattened first.
    Each layer is read by its :class:`Handler`; the walk checks their order: a neuron layer
    (:class:`Synapses`), then its spiking layer (:class:`Fire`), max-pools after a spiking layer, and
    the key last.
    """
    layers, nested = chain
    try:
        folded = fold_batch_norm(_flat_copy(model, layers) if nested else model)
    except FoldingError as error:
        raise ExportError(str(error)) from None
    items, pending, key = [], None, None
    for layer in _layer_chain(folded)[0]:
        name = _describe(layer)
        if key is not None:
            raise ExportError(f"layer {name} follows SoftmaxDecode; the decode must be the last layer")
        handler = handler_of(layer)
        if handler is None:   # refused by _layer_chain already; kept so nothing is dropped silently
            raise ExportError(f"unsupported layer {name}: {supported_text()}")
        data = handler.read(layer)
        if isinstance(data, Synapses):
            if pending is not None:
                raise ExportError(f"layer {name} follows {pending.name!r} without a spiking activation "
                                  f"between them")
            pending = data
        elif isinstance(data, Fire):
            if pending is None:
                raise ExportError(f"spiking layer {name} does not follow a Dense or Conv2D")
            if pending.trained_threshold is not None and pending.trained_threshold != data.threshold:
                raise ExportError(f"layer {pending.described} trained for a threshold of "
                                  f"{pending.trained_threshold:g} but {data.described} fires at {data.threshold:g}")
            items.append(FloatLayer(pending.name, pending.kind, pending.weights, data.threshold - pending.bias,
                                    pending.padding, pending.trained))
            pending = None
        elif isinstance(data, MaxPoolLayer):
            if pending is not None:
                raise _misplaced_pool(layer)
            items.append(data)
        elif isinstance(data, Key):
            key = data.key
    if pending is not None:
        raise ExportError(f"layer {pending.name!r} is not followed by a spiking activation")
    return items, key   # key None: the last layer's spikes are the output


def _writes_trained(item, first, weight_bits, input_bits, per_neuron):
    """Whether a quantization-aware layer's own integers are written: only at the bits and scaling it
    trained at (any other width is quantized afresh from its float weights)."""
    return item.trained is not None and item.trained[:3] == (weight_bits, input_bits if first else None, per_neuron)


def integers_source(floats, *, weight_bits, input_bits, per_neuron=True):
    """Which integers :func:`export_network` wrote, in words: the ones the model trained as, ones
    quantized afresh at another width (naming the trained one), or a float model's. ``floats``: the
    float layers it returned, for the same bits."""
    first = floats[0]
    if first.trained is None:
        return "quantized after training (post-training quantization)"
    if _writes_trained(first, True, weight_bits, input_bits, per_neuron):
        return "the ones the model trained as (quantization-aware)"
    bits, pixels, trained_per_neuron = first.trained[:3]
    return (f"quantized afresh: the model trained as {bits}-bit weights "
            f"({'per-neuron' if trained_per_neuron else 'per-layer'} scale) on {pixels}-bit pixels, so Keras "
            f"is no longer the file")


def export_network(model, *, weight_bits, input_bits, per_neuron=True, allow_unsharp=False):
    """Quantize a sharpened Keras model into a :class:`~hone.network.netfile.Network`.

    Returns ``(network, float_layers)``; the float layers (folded, unquantized) are what
    :func:`evaluate_export` compares against.

    The model must be a chain (one input, one output, each layer applied once to the output of the
    layer before it); nested Sequential or functional chains are flattened into it. A flat input such
    as ``(64,)`` becomes a ``(1, 64, 1)`` image.

    Raises:
        ExportError: for bits outside 1..16, a model the network file cannot represent (branches,
            merges, shared layers, several inputs or outputs, an unbuilt Sequential, a subclassed
            model, an unsupported layer or activation), or one not fully sharp. The message is one
            line naming the layer and what was expected.

    Example:

    >>> network, floats = export_network(keras.saving.load_model("run/model.keras"), weight_bits=4,
    ...                                  input_bits=8)
    """
    weight_bits, input_bits = int(weight_bits), int(input_bits)
    if not 1 <= weight_bits <= 16:
        raise ExportError(f"weight_bits (--weight-bits) must be in 1..16, got {weight_bits}")
    if not 1 <= input_bits <= 16:
        raise ExportError(f"input_bits (--input-bits) must be in 1..16, got {input_bits}")
    chain = _layer_chain(model)  # first: refuse what the file cannot hold before reading any layer
    _check_sharp(model, allow_unsharp)
    items, key = _folded_layers(model, chain)
    input_max = 2 ** input_bits - 1
    layers, floats = [], []
    for index, item in enumerate(items):
        if isinstance(item, MaxPoolLayer):
            layers.append(item)
            floats.append(item)
            continue
        if index == 0:  # integer pixels q stand for q / (2**K - 1)
            item = dataclasses.replace(item, weights=item.weights / input_max)
        if _writes_trained(item, index == 0, weight_bits, input_bits, per_neuron):
            w, theta = item.trained[3:]  # what the quantization-aware layer computed: no second rounding
            theta = clip_thresholds(w.reshape(len(w), -1).astype(np.float64), theta,
                                    input_max if index == 0 else 1).astype(np.int64)
        else:
            flat = item.weights.reshape(len(item.weights), -1)
            w, theta = quantize_neurons(flat, item.thresholds, weight_bits, per_neuron=per_neuron,
                                        input_max=input_max if index == 0 else 1)
            w = w.reshape(item.weights.shape)
        layers.append(DenseLayer(item.name, w, theta) if item.kind == "dense"
                      else ConvLayer(item.name, w, theta, item.padding))
        floats.append(item)
    if not layers or layers[0].kind == "maxpool2d":
        raise ExportError("the first layer after the input must be a Dense or Conv2D neuron layer")
    shape = tuple(int(d) for d in model.input_shape[1:])
    if len(shape) == 1:
        shape = (1, shape[0], 1)
    if len(shape) == 2:
        shape = shape + (1,)
    if key is None and layers[-1].kind != "dense":
        raise ExportError(f"the model ends in {layers[-1].kind} layer {layers[-1].name!r}: it needs SoftmaxDecode "
                          f"(the N-hot key) or a Dense layer with a spiking activation last (its spikes are the "
                          f"output)")
    output = SpikeOutput() if key is None else OutputCode(np.asarray(key, np.int8))
    network = Network(InputSpec(shape, input_bits), tuple(layers), output, weight_bits)
    return network, floats


def _float_forward(network, floats, x, chunk=500):
    """Spikes of the folded float network (fire iff ``a . x >= T``), and each image's smallest margin."""
    float_network = dataclasses.replace(network, layers=tuple(
        item if isinstance(item, MaxPoolLayer) else
        (DenseLayer(item.name, item.weights, item.thresholds) if item.kind == "dense"
         else ConvLayer(item.name, item.weights, item.thresholds, item.padding))
        for item in floats))
    runner = IntegerNetwork(float_network)
    spikes, margins = [], []
    for start in range(0, len(x), chunk):
        part, part_spikes = x[start:start + chunk], []
        margin = np.full(len(part), np.inf)
        for layer in float_network.layers:
            if layer.kind == "maxpool2d":
                part = runner._layer(layer, part, False)
            else:
                sums = IntegerNetwork._sums(layer, part)
                magnitude = dataclasses.replace(layer, weights=np.abs(layer.weights))
                scale = IntegerNetwork._sums(magnitude, part) + np.abs(layer.thresholds) + 1e-30
                relative = np.abs(sums - layer.thresholds) / scale  # relative to float rounding's scale
                margin = np.minimum(margin, relative.reshape(len(part), -1).min(axis=1))
                part = (sums >= layer.thresholds).astype(np.float64)
            part_spikes.append(part.astype(np.uint8))
        spikes.append(part_spikes)
        margins.append(margin)
    return [np.concatenate(layer) for layer in zip(*spikes)], np.concatenate(margins)


def evaluate_export(model, network, floats, x, y, *, tie_margin=1e-5):
    """The per-stage accuracy table of an export, on images ``x`` with labels ``y``.

    Stages: the Keras model with exact steps on the raw pixels, the same on the pixels the network
    file delivers (each quantized to ``network.input.bits`` and back), the folded float network and
    the integer network. The Keras/integer class disagreements are split by source: pixel quantization
    (Keras on raw against Keras on quantized pixels) and weight quantization (Keras on quantized pixels
    against the integer network). A disagreement is a tie when a neuron of the float network lies
    within ``tie_margin`` of its threshold, relative to ``sum |a_i x_i| + |T|``, the scale of float
    rounding: Keras sums in float32, so such a neuron's side of the threshold is a rounding accident.
    Also the spike rate of every layer and each layer's accumulator width.

    Args:
        model: The sharpened Keras model that ``network`` was exported from.
        network: Its :class:`~hone.network.netfile.Network`; ``floats`` the float layers that
            :func:`export_network` returned with it.
        x: ``(n, *model.input_shape[1:])`` floats in [0, 1] (any shape holding ``n`` images of
            ``network.input.size`` pixels).
        y: ``(n,)`` integer class labels; for a network whose output is its spike vector (an
            autoencoder), the binary targets ``(n, units)`` (:func:`~hone.network.reconstruction.pixel_targets`),
            and the stages are measured in pixel accuracy and bits wrong per image, the agreement
            image by image, bit for bit.
        tie_margin: Relative margin that counts as "at the threshold". Defaults to `1e-5`.

    Returns:
        A dict of plain numbers (JSON-ready).

    Raises:
        ValueError: ``x`` holds pixels outside [0, 1], or ``x`` and ``y`` differ in length.
    """
    from .train import hard_classes

    spike_output = network.output.kind == "spikes"
    x, y = np.asarray(x), np.asarray(y)
    y = y if spike_output else y.reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{len(x)} images but {len(y)} {'targets' if spike_output else 'labels'}")
    q = network.input.quantize(x.reshape((len(x),) + network.input.shape))
    requantized = (q / (2 ** network.input.bits - 1)).astype(np.float32).reshape(x.shape)
    integer = IntegerNetwork(network).run(q)
    float_spikes, margins = _float_forward(network, floats, q.astype(np.float64))  # what the integers see
    if spike_output:
        from .autoencoder import hard_reconstructions
        from hone.network.reconstruction import reconstruction_figures

        stages = {"keras_sharpened": hard_reconstructions(model, x),
                  "keras_quantized_pixels": hard_reconstructions(model, requantized),
                  "float_folded": float_spikes[-1].reshape(len(x), -1), "integer": integer.outputs}

        def differ(a, b):   # image by image, bit for bit
            return (a != b).any(axis=1)
    else:
        stages = {"keras_sharpened": hard_classes(model, x), "keras_quantized_pixels": hard_classes(model, requantized),
                  "float_folded": decode_spikes(float_spikes[-1], network.output.key), "integer": integer.classes}

        def differ(a, b):
            return a != b
    keras, quantized, integer_out = (stages[name] for name in ("keras_sharpened", "keras_quantized_pixels", "integer"))
    disagree, by_pixels, by_weights = differ(keras, integer_out), differ(keras, quantized), differ(quantized, integer_out)
    tie = margins < tie_margin
    report = {"images": int(len(x)), "weight_bits": network.weight_bits, "input_bits": network.input.bits}
    if spike_output:
        figures = {name: reconstruction_figures(spikes, y) for name, spikes in stages.items()}
        report.update({
            "output": "spikes",
            "accuracy": {name: figure["pixel_accuracy"] for name, figure in figures.items()},
            "bits_wrong_per_image": {name: figure["bits_wrong_per_image"] for name, figure in figures.items()},
            "reconstruction": figures["integer"],
            "image_agreement_keras_integer": float(np.mean(~disagree)),
            "bits_differing_keras_integer": int((keras != integer_out).sum()),
        })
    else:
        report.update({
            "accuracy": {name: float(np.mean(classes == y)) for name, classes in stages.items()},
            "class_agreement_keras_integer": float(np.mean(~disagree)),
        })
    names = [layer.name for layer in network.layers]
    report.update({
        "disagreements": int(disagree.sum()),
        "disagreements_near_threshold": int((disagree & tie).sum()),
        "disagreement_sources": {
            "pixel_quantization": int(by_pixels.sum()),
            "weight_quantization": int(by_weights.sum()),
            "weight_quantization_near_threshold": int((by_weights & tie).sum()),
        },
        "spike_rate": dict(zip(names, integer.spike_rates())),
        "accumulator_bits": network.accumulator_bits(),
    })
    return report


@dataclasses.dataclass
class ExportReport(Report):
    """What :func:`export_model` measured and wrote; ``to_json()`` is ``hone export --json``'s object
    (and the ``.json`` beside the network file). The evaluation's figures are None (left out) when the
    export had no test data, and ``evaluation`` says why."""

    _OPTIONAL = frozenset({"evaluation", "images", "output", "accuracy", "bits_wrong_per_image", "reconstruction",
                           "image_agreement_keras_integer", "bits_differing_keras_integer",
                           "class_agreement_keras_integer", "disagreements", "disagreements_near_threshold",
                           "disagreement_sources", "spike_rate", "activity"})

    dataset: str | None                  # the test data's name or .npz path; None: not evaluated
    scaling: str                         # "per-neuron" or "per-layer"
    model: str                           # the .keras file read
    weight_bits: int                     # 1..16
    input_bits: int                      # 1..16
    integers: str                        # which integers were written, in words (integers_source)
    evaluation: str | None = None        # why nothing was measured
    images: int | None = None            # test images evaluated
    output: str | None = None            # "spikes" for an autoencoder (no key)
    accuracy: dict | None = None         # stage -> accuracy in [0, 1] (pixel accuracy for spikes)
    bits_wrong_per_image: dict | None = None         # spikes: stage -> mean bits wrong
    reconstruction: dict | None = None               # spikes: the integer network's figures
    image_agreement_keras_integer: float | None = None   # spikes: images equal bit for bit, [0, 1]
    bits_differing_keras_integer: int | None = None      # spikes
    class_agreement_keras_integer: float | None = None   # classes: [0, 1]
    disagreements: int | None = None
    disagreements_near_threshold: int | None = None
    disagreement_sources: dict | None = None         # pixel_quantization, weight_quantization(_near_threshold)
    spike_rate: dict | None = None                   # layer -> mean spikes per neuron and image, [0, 1]
    accumulator_bits: dict = dataclasses.field(default_factory=dict)   # layer -> bits
    layers: dict = dataclasses.field(default_factory=dict)             # layer -> kind
    activity: dict | None = None                     # hone.network.activity's report, with its "plot"
    sha256: str = ""                                 # the network file's hash


def _model_file(model_path, output):
    """The ``.keras`` (or ``.h5``) file of ``model_path`` (a run folder or the file itself).

    Raises:
        ExportError: no such file, a folder without ``model.keras``, another suffix, or a ``.keras``
            that is not a zip archive.
        ParameterError: ``output`` (or its ``.json``) would overwrite the model or its ``history.json``.
    """
    if model_path.is_dir():   # a run folder of hone train
        if not (model_path / "model.keras").is_file():
            raise ExportError(f"{model_path}: a folder without model.keras; expected a hone train run folder "
                              f"or its model.keras")
        model_path = model_path / "model.keras"
    if not model_path.exists():
        raise ExportError(f"{model_path}: no such model file")
    written = {output.resolve(), output.with_name(output.name + ".json").resolve()}
    for own in (model_path, model_path.with_name("history.json")):
        if own.resolve() in written:
            raise ParameterError("output", f"{output} would overwrite {own}, which the export reads; "
                                           f"expected another path")
    if model_path.suffix not in (".keras", ".h5"):
        raise ExportError(f"{model_path}: expected a hone train run folder or its model.keras")
    if model_path.suffix == ".keras" and not zipfile.is_zipfile(model_path):
        raise ExportError(f"{model_path}: not a .keras file (a zip archive): truncated or corrupted?")
    return model_path


def _integer_activity(network, images, plot):
    """The activity report (:mod:`hone.network.activity`) of the integer network on float ``images``
    in [0, 1], with its plot written to ``plot``."""
    pixels = network.input.quantize(np.asarray(images).reshape((len(images),) + tuple(network.input.shape)))
    report = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes)
    report["plot"] = str(plot_activity(report, plot))
    return report


def export_model(model_path, output, *, weight_bits=None, input_bits=None, per_layer=False, allow_unsharp=False,
                 dataset=None):
    """Export a run's model to a network file and its report (``output`` + ``.json``).

    The accuracy table is measured on ``dataset`` (default: the one the run folder records); with
    neither, the export is written unevaluated and the report says so. Unset bits are the ones the run
    folder records (``hone train --weight-bits/--input-bits``), else 4-bit weights and 8-bit pixels (1
    for a model trained on binarized input). With test data, the integer network's activity plot is
    written to ``output`` + ``.activity.png``.

    Args:
        model_path: A ``hone train`` run folder, or its ``model.keras``.
        output: The network file to write.
        weight_bits: Weight width, 1..16. Defaults to `None` (the run's).
        input_bits: Pixel bits, 1..16. Defaults to `None` (the run's).
        per_layer: One weight scale per layer, not per neuron. Defaults to `False`.
        allow_unsharp: Export a model not fully sharp as if it were. Defaults to `False`.
        dataset: A data set name or ``.npz`` path. Defaults to `None` (the run's).

    Returns:
        The :class:`ExportReport`.

    Raises:
        ExportError: a missing, corrupted or unloadable model file, a bad ``history.json``, or a model
            the network file cannot hold (see :func:`export_network`).
        ParameterError: ``output`` would overwrite the model or its ``history.json``.
        DatasetError: the data set is missing or its images do not fit the model.

    Example:

    >>> report = export_model("runs/digits", "net.hone", weight_bits=4)
    """
    model_path, output = pathlib.Path(model_path), pathlib.Path(output)
    model_path = _model_file(model_path, output)
    try:
        model = keras.saving.load_model(model_path)
    except Exception as error:  # Keras raises many types for a bad file; its last line says why
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        raise ExportError(f"{model_path}: cannot load the Keras model: {reason}") from None
    dataset, input_bits, binarized, weight_bits = run_settings(model_path, dataset=dataset, input_bits=input_bits,
                                                               weight_bits=weight_bits, model=model)
    network, floats = export_network(model, weight_bits=weight_bits, input_bits=input_bits,
                                     per_neuron=not per_layer, allow_unsharp=allow_unsharp)
    data = None if dataset is None else load_dataset(dataset, binarize=binarized)
    report = ExportReport(dataset=dataset, scaling="per-layer" if per_layer else "per-neuron", model=str(model_path),
                          weight_bits=network.weight_bits, input_bits=network.input.bits,
                          integers=integers_source(floats, weight_bits=weight_bits, input_bits=input_bits,
                                                   per_neuron=not per_layer))
    if data is None:
        report.evaluation = ("skipped: no test data (no --dataset, and no history.json of a hone train run beside "
                             "the model); pass --dataset to measure accuracy and agreement")
    else:
        model_shape = tuple(int(d) for d in model.input_shape[1:])
        if int(np.prod(data.input_shape)) != network.input.size:
            raise DatasetError(f"dataset {dataset!r} has {tuple(data.input_shape)} images but the model takes "
                               f"{model_shape}; pass the data set it was trained on with --dataset")
        x_test = data.x_test.reshape((len(data.x_test),) + model_shape)
        targets = pixel_targets(data.x_test) if network.output.kind == "spikes" else data.y_test
        try:   # an autoencoder's target is its binarized input
            figures = evaluate_export(model, network, floats, x_test, targets)
        except ValueError as error:
            raise DatasetError(f"dataset {dataset!r}: {error}") from None
        report = dataclasses.replace(report, **figures)
    report.layers = {layer.name: layer.kind for layer in network.layers}
    report.accumulator_bits = network.accumulator_bits()
    output.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:   # spikes, synaptic operations and sparsity of the integer network, test set
        report.activity = _integer_activity(network, x_test, output.with_name(output.name + ".activity.png"))
    meta = {"source": str(model_path), "scaling": report.scaling}
    if data is not None:
        meta.update(dataset=dataset, accuracy=report.accuracy)
    report.sha256 = write_network(output, network, meta=meta)
    output.with_name(output.name + ".json").write_text(json.dumps(report.to_json(), indent=1))
    return report
