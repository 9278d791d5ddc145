"""Export a sharpened Keras model to a network file: fold BN, walk the layers, quantize per neuron.

Each Dense/Conv2D followed by a spiking activation becomes one integer neuron layer: it fires iff
``a . x >= T`` with ``a`` the folded weights and ``T = threshold - bias``; the first layer's inputs
are K-bit integers ``q`` standing for ``q / (2**K - 1)``, so its ``a`` absorbs that factor. Flatten
(channel-last, row-major), Dropout and folded BN placeholders vanish; MaxPooling2D after a spiking
layer is an OR of spikes; ``SoftmaxDecode`` gives the N-hot key.
"""

import dataclasses
import json
import pathlib

import numpy as np
import keras

from . import layers as hone_layers
from .folding import FoldingError, fold_batch_norm
from .integer import IntegerNetwork
from .netfile import ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, OutputCode
from .nhot import decode_spikes
from .quantize import quantize_neurons
from .sharpeners import sharpness_of

__all__ = ["ExportError", "FloatLayer", "run_settings", "export_network", "evaluate_export"]

_SKIPPED = (keras.layers.InputLayer, keras.layers.Flatten, keras.layers.Dropout, hone_layers.FoldedBatchNorm,
            keras.layers.RandomFlip, keras.layers.RandomTranslation)  # identities at inference


class ExportError(ValueError):
    """The model cannot be exported; the message names the layer and what was expected."""


@dataclasses.dataclass
class FloatLayer:
    """A folded neuron layer before quantization: fire iff ``a . x >= T``."""

    name: str
    kind: str                # "dense" or "conv2d"
    weights: np.ndarray      # (outputs, ...) real, in the file's layout
    thresholds: np.ndarray   # (outputs,) real
    padding: str = "valid"


def run_settings(model_path, *, dataset=None, input_bits=None):
    """``(dataset, input_bits, binarized)`` for exporting a run's model.

    Unset values come from the run folder's ``history.json`` (the data the model was trained on):
    input bits 1 for a model trained on binarized pixels, else 8; Fashion-MNIST when nothing is
    recorded. Test images are binarized only for 1-bit input to a model trained on binary pixels.
    """
    recorded_dataset, recorded_binary = None, False
    try:
        config = json.loads(pathlib.Path(model_path).with_name("history.json").read_text())["summary"]["config"]
        recorded_dataset, recorded_binary = config["dataset"], bool(config["binarize"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    input_bits = input_bits or (1 if recorded_binary else 8)
    return dataset or recorded_dataset or "fashion-mnist", input_bits, input_bits == 1 and recorded_binary


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
                          f"--allow-unsharp to export it as if it were sharp")


def _folded_layers(model):
    """Walk the folded model into float neuron layers, max-pools and the key."""
    try:
        folded = fold_batch_norm(model)
    except FoldingError as error:
        raise ExportError(str(error)) from None
    items, pending, key = [], None, None
    for layer in folded.layers:
        name = f"{layer.name!r} ({type(layer).__name__})"
        if key is not None:
            raise ExportError(f"layer {name} follows SoftmaxDecode; the decode must be the last layer")
        if isinstance(layer, _SKIPPED):
            continue
        if isinstance(layer, (keras.layers.Dense, keras.layers.Conv2D)):
            if pending is not None:
                raise ExportError(f"layer {name} follows {pending[0].name!r} without a spiking activation "
                                  f"between them")
            if layer.get_config().get("activation", "linear") != "linear":
                raise ExportError(f"layer {name} has activation {layer.get_config()['activation']!r}; "
                                  f"hone needs a linear layer followed by a spiking activation")
            if isinstance(layer, keras.layers.Conv2D):
                if type(layer) is not keras.layers.Conv2D:
                    raise ExportError(f"unsupported layer {name}: only plain Conv2D convolutions")
                config = layer.get_config()
                if (tuple(config["strides"]) != (1, 1) or tuple(config["dilation_rate"]) != (1, 1)
                        or config.get("groups", 1) != 1 or config["data_format"] != "channels_last"):
                    raise ExportError(f"unsupported Conv2D {name}: hone needs strides 1, dilation 1, "
                                      f"groups 1, channels_last; got {config['strides']}, "
                                      f"{config['dilation_rate']}, {config.get('groups', 1)}, "
                                      f"{config['data_format']}")
            pending = (layer,)
            continue
        if isinstance(layer, hone_layers.Spiking):
            if pending is None:
                raise ExportError(f"spiking layer {name} does not follow a Dense or Conv2D")
            source = pending[0]
            kernel = np.asarray(source.kernel.numpy(), np.float64)
            bias = np.asarray(source.bias.numpy(), np.float64) if source.use_bias else np.zeros(kernel.shape[-1])
            if isinstance(source, keras.layers.Dense):
                weights, kind, padding = kernel.T, "dense", "valid"
            else:
                weights, kind, padding = kernel.transpose(3, 0, 1, 2), "conv2d", source.padding
            items.append(FloatLayer(source.name, kind, weights, layer.threshold - bias, padding))
            pending = None
            continue
        if isinstance(layer, keras.layers.MaxPooling2D):
            config = layer.get_config()
            if (pending is not None or tuple(config["strides"]) != tuple(config["pool_size"])
                    or config["padding"] != "valid"):
                raise ExportError(f"unsupported MaxPooling2D {name}: hone needs it after a spiking layer, "
                                  f"with strides equal to the pool size and 'valid' padding")
            items.append(MaxPoolLayer(layer.name, tuple(config["pool_size"])))
            continue
        if isinstance(layer, hone_layers.SoftmaxDecode):
            key = layer.key
            continue
        raise ExportError(f"unsupported layer {name}: hone exports Dense, Conv2D, spiking activations, "
                          f"MaxPooling2D, Flatten, Dropout, BatchNormalization and SoftmaxDecode")
    if pending is not None:
        raise ExportError(f"layer {pending[0].name!r} is not followed by a spiking activation")
    if key is None:
        raise ExportError("the model does not end in SoftmaxDecode (the N-hot key)")
    return items, key


def export_network(model, *, weight_bits, input_bits, per_neuron=True, allow_unsharp=False):
    """Quantize a sharpened Keras model into a :class:`~hone.training.netfile.Network`.

    Returns ``(network, float_layers)``; the float layers (folded, unquantized) are what
    :func:`evaluate_export` compares against.
    """
    weight_bits, input_bits = int(weight_bits), int(input_bits)
    if not 1 <= weight_bits <= 16:
        raise ExportError(f"--weight-bits must be in 1..16, got {weight_bits}")
    if not 1 <= input_bits <= 16:
        raise ExportError(f"--input-bits must be in 1..16, got {input_bits}")
    _check_sharp(model, allow_unsharp)
    items, key = _folded_layers(model)
    input_max = 2 ** input_bits - 1
    layers, floats = [], []
    for index, item in enumerate(items):
        if isinstance(item, MaxPoolLayer):
            layers.append(item)
            floats.append(item)
            continue
        if index == 0:  # integer pixels q stand for q / (2**K - 1)
            item = dataclasses.replace(item, weights=item.weights / input_max)
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
    network = Network(InputSpec(shape, input_bits), tuple(layers), OutputCode(np.asarray(key, np.int8)),
                      weight_bits)
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
    """The per-stage accuracy table of an export on images ``x`` (floats in [0, 1]) and labels ``y``.

    Stages: the Keras model with exact steps, the folded float network, the integer network. Also the
    class agreement Keras vs integer, how many disagreements have a neuron within ``tie_margin`` of its
    threshold in the float network (relative to ``sum |a_i x_i| + |T|``, the scale of float rounding:
    Keras sums in float32, so such a neuron's side of the threshold is a rounding accident), and the
    spike rate of every layer.
    """
    from .train import hard_classes

    y = np.asarray(y)
    keras_classes = hard_classes(model, x)
    q = network.input.quantize(x.reshape((len(x),) + network.input.shape))
    integer = IntegerNetwork(network).run(q)
    float_input = q.astype(np.float64)  # the float network sees exactly what the integer one sees
    float_spikes, margins = _float_forward(network, floats, float_input)
    float_classes = decode_spikes(float_spikes[-1], network.output.key)
    disagree = keras_classes != integer.classes
    names = [layer.name for layer in network.layers]
    return {
        "images": int(len(y)),
        "weight_bits": network.weight_bits,
        "input_bits": network.input.bits,
        "accuracy": {
            "keras_sharpened": float(np.mean(keras_classes == y)),
            "float_folded": float(np.mean(float_classes == y)),
            "integer": float(np.mean(integer.classes == y)),
        },
        "class_agreement_keras_integer": float(np.mean(~disagree)),
        "disagreements": int(disagree.sum()),
        "disagreements_near_threshold": int((disagree & (margins < tie_margin)).sum()),
        "spike_rate": dict(zip(names, integer.spike_rates())),
        "accumulator_bits": network.accumulator_bits(),
    }
