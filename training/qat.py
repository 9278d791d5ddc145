"""Quantization-aware layers: a Dense or Conv2D with its BatchNormalization, whose forward pass is, once
switched on, the integer neuron of the network file.

:class:`QuantizedDense` and :class:`QuantizedConv2D` hold a kernel and either a bias or a
BatchNormalization of their own. Until quantization is switched on (``quantizing``, a non-trainable
flag that :class:`QuantizeWhenSharp` sets once every spiking layer is a step) they compute what Dense
(or Conv2D) + BatchNormalization compute. From then on each training step folds BN with its moving
statistics (which then hold still), quantizes every neuron with
:func:`~hone.network.quantize.neuron_integers` (the exporter's own function, here on ``keras.ops``:
the same per-neuron range, chosen once per epoch by the exporter's least-squares clipping
(:func:`~hone.network.quantize.neuron_span`), rounding and ceiled threshold), quantizes the first
layer's pixels to the network file's K bits, and fires the next spiking layer iff the integer sum
reaches the integer threshold. Gradients pass straight through to the float weights and BN's shift
(BN's scale holds still with its statistics). The integers of the weights as they stand before each
validation pass and at the end of training (:meth:`Quantized.requantize`, the same function on the
span the epoch trained with) are kept in non-trainable weights; inference uses them, and
:func:`~hone.training.export.export_network` writes them as they are (thresholds clipped to the reachable sums, which changes no output), so the Keras model and the network file compute the
same function.

The output handed to the spiking layer is ``threshold + (W . q - theta) / S``: on the float scale of
the folded neuron (its straight-through gradient is the ramp's), and on the right side of the threshold
exactly when ``W . q >= theta``. Sums are exact in float32 below ``2**24``.
"""

import warnings

import numpy as np
import keras
from keras import ops

from .activations import layers_of
from hone.network.quantize import neuron_integers, neuron_span

__all__ = ["Quantized", "QuantizedDense", "QuantizedConv2D", "QuantizeWhenSharp", "quantized_layers", "start_quantizing"]


def _bits(name, value, *, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`{name}` must be an integer in 1..16. Received: {name}={value!r}")
    if not 1 <= value <= 16:
        raise ValueError(f"`{name}` must be in 1..16. Received: {name}={value}")
    return value


class Quantized(keras.layers.Layer):
    """Base class: a linear map, a bias or a BatchNormalization, and quantization-aware training.

    Args:
        weight_bits: Weight width of the integer neurons, 1..16. Defaults to `4`.
        input_bits: Pixel bits for the first layer (its inputs are quantized to ``2**K - 1`` levels);
            `None` for a layer fed spikes. Defaults to `None`.
        threshold: Firing threshold of the spiking activation that follows. Defaults to `0.5`.
        batch_norm: A BatchNormalization (folded into the integers) instead of a bias. Defaults to `True`.
        per_neuron: One weight scale per neuron, else one per layer. Defaults to `True`.
        kernel_initializer: Defaults to `"glorot_uniform"`.
        **kwargs: Base layer keyword arguments, such as `name`.
    """

    def __init__(self, *, weight_bits=4, input_bits=None, threshold=0.5, batch_norm=True, per_neuron=True,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.weight_bits = _bits("weight_bits", weight_bits)
        self.input_bits = _bits("input_bits", input_bits, allow_none=True)
        self.threshold = float(threshold)
        self.batch_norm = bool(batch_norm)
        self.per_neuron = bool(per_neuron)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.norm = keras.layers.BatchNormalization(name="norm") if self.batch_norm else None
        self._below = self.threshold - max(1.0, abs(self.threshold)) * 2.0 ** -20  # just below, in float32
        #: Set by :class:`QuantizeWhenSharp` (the training step is traced again): train as integers.
        self.quantize_training = False

    # -- subclasses --------------------------------------------------------------------------------

    def kernel_shape(self, input_shape):
        raise NotImplementedError

    def linear(self, x, kernel):
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------------------

    def build(self, input_shape):
        shape = self.kernel_shape(input_shape)
        units = shape[-1]
        self.kernel = self.add_weight(shape=shape, initializer=self.kernel_initializer, name="kernel")
        self.bias = None if self.batch_norm else self.add_weight(shape=(units,), initializer="zeros", name="bias")
        if self.norm is not None:
            self.norm.build(tuple(input_shape[:-1]) + (units,))

        def state(name, shape_, value):
            return self.add_weight(shape=shape_, initializer=keras.initializers.Constant(value), trainable=False,
                                   name=name, aggregation="only_first_replica")

        self.quantizing = state("quantizing", (), 0.0)
        self.integer_kernel = state("integer_kernel", shape, 0.0)
        self.integer_threshold = state("integer_threshold", (units,), 0.0)
        self.integer_scale = state("integer_scale", (units,), 1.0)
        self.integer_span = state("integer_span", (units,), 0.0)

    def folded(self):
        """``(kernel, bias)`` with BN folded by its moving statistics (keras tensors).

        BN's scale ``gamma / sqrt(var + eps)`` is held (no gradient): while the layer trains as integers
        the kernel and BN's shift learn, its scale and statistics stay as they were (a gradient into
        ``gamma`` through every folded weight cost a quarter of the training step).
        """
        kernel = ops.convert_to_tensor(self.kernel)
        if self.norm is None:
            return kernel, ops.convert_to_tensor(self.bias)
        norm = self.norm
        gamma = norm.gamma if norm.scale else ops.ones_like(norm.moving_variance)
        beta = norm.beta if norm.center else ops.zeros_like(norm.moving_mean)
        scale = ops.stop_gradient(gamma / ops.sqrt(norm.moving_variance + norm.epsilon))
        return kernel * scale, beta - scale * norm.moving_mean

    def _neurons(self):
        """``(a, T, input_max)``: the folded neurons as the exporter sees them, one column each
        (``(fan_in, outputs)``; a first layer's weights absorb ``1 / (2**K - 1)``), and their thresholds."""
        kernel, bias = self.folded()
        input_max = 1 if self.input_bits is None else 2 ** self.input_bits - 1
        if self.input_bits is not None:
            kernel = kernel / float(input_max)
        return ops.reshape(kernel, (-1, kernel.shape[-1])), self.threshold - bias, input_max

    def choose_span(self):
        """Set each neuron's range (hence its scale) from the weights now, as the exporter chooses it
        (:func:`~hone.network.quantize.neuron_span`); the training steps hold it."""
        columns = np.asarray(ops.convert_to_numpy(self._neurons()[0]), np.float64)
        span = neuron_span(columns, self.weight_bits, per_neuron=self.per_neuron, axis=0)
        self.integer_span.assign(span.astype(self.integer_span.dtype))

    def _pixels(self, inputs):
        if self.input_bits is None:
            return inputs
        return ops.floor(ops.stop_gradient(inputs) * float(2 ** self.input_bits - 1) + 0.5)  # InputSpec.quantize

    def _fire_side(self, margin, scale):
        """``threshold + margin / scale``, strictly below the threshold iff ``margin < 0``."""
        value = self.threshold + margin / scale
        return ops.where(ops.stop_gradient(margin) < 0, ops.minimum(value, self._below), value)

    def call(self, inputs, training=False):
        if training and self.quantize_training:
            return self._integer_training_step(inputs)
        if training:
            return self._float(inputs, training)
        return ops.cond(self.quantizing > 0.5, lambda: self._integer(inputs), lambda: self._float(inputs, False))

    def _float(self, inputs, training):
        z = self.linear(inputs, self.kernel)
        return z + self.bias if self.norm is None else self.norm(z, training=training)

    def _integer(self, inputs):
        """The stored integers (:meth:`requantize`), on the network file's pixels."""
        margin = self.linear(self._pixels(inputs), self.integer_kernel) - self.integer_threshold
        return ops.stop_gradient(self._fire_side(margin, self.integer_scale))

    def _integers(self):
        """``(a, T, (W, theta, S))``: the folded neurons and their integers on the held span (thresholds
        unclipped: clipping changes no output, and the export clips, :mod:`hone.training.export`)."""
        a, t, input_max = self._neurons()
        return a, t, neuron_integers(a, t, self.weight_bits, span=ops.convert_to_tensor(self.integer_span),
                                     input_max=input_max, clip=False, axis=0, xp=ops)

    def _integer_training_step(self, inputs):
        """The integer neurons of the parameters now, with straight-through gradients.

        BN is folded with its moving statistics, which hold still meanwhile (as the exporter folds it).
        The forward value is exact: ``W + (v - stop_gradient(v)) == W``.
        """
        a, t, (w, theta, scale) = self._integers()
        w, theta, scale = (ops.stop_gradient(v) for v in (w, theta, scale))
        carry = ops.stop_gradient(ops.minimum(scale, 1e30))  # finite: 0 * carry stays 0
        w = w + (a - ops.stop_gradient(a)) * ops.expand_dims(carry, 0)
        theta = theta + (t - ops.stop_gradient(t)) * carry
        margin = self.linear(self._pixels(inputs), ops.reshape(w, self.kernel.shape)) - theta
        return self._fire_side(margin, scale)

    def requantize(self):
        """Set the integers (inference's and the export's) from the weights as they are now, on the span
        the epoch trained with. The training step computes the same integers but does not store them.

        The span is not chosen again here: a fresh least-squares choice moves some neurons' clip fraction,
        rescaling all their weights, and the network the epoch trained for is lost (a conv run validated
        between 86.6% and 91.3% from epoch to epoch that way, against 91.0 to 91.9% on the trained span).
        """
        _, _, (w, theta, scale) = self._integers()
        self.integer_kernel.assign(ops.reshape(w, self.kernel.shape))
        self.integer_threshold.assign(theta)
        self.integer_scale.assign(scale)

    def worst_case_sum(self):
        """The largest ``|W . q|`` the layer's integers can reach: fan-in x ``2**(B-1)`` x the largest
        input (``2**K - 1`` pixels for a first layer, 1 for spikes). float32 holds it exactly below ``2**24``."""
        fan_in = int(np.prod(self.kernel.shape[:-1]))
        return fan_in * 2 ** (self.weight_bits - 1) * (1 if self.input_bits is None else 2 ** self.input_bits - 1)

    def is_quantized(self):
        """Whether the layer has trained quantization-aware (its integers are the ones that ran)."""
        return float(ops.convert_to_numpy(self.quantizing)) > 0.5

    def get_config(self):
        config = super().get_config()
        config.update({
            "weight_bits": self.weight_bits,
            "input_bits": self.input_bits,
            "threshold": self.threshold,
            "batch_norm": self.batch_norm,
            "per_neuron": self.per_neuron,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        })
        return config


@keras.saving.register_keras_serializable(package="hone")
class QuantizedDense(Quantized):
    """A Dense layer (and its BatchNormalization) that trains as integer neurons once switched on.

    Args:
        units: Output units.
        **kwargs: :class:`Quantized` arguments (`weight_bits`, `input_bits`, `threshold`,
            `batch_norm`, `per_neuron`) and base layer arguments.

    Example:

    >>> layer = QuantizedDense(64, weight_bits=4, name="dense_0")
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self._units = int(units)
        if self._units < 1:
            raise ValueError(f"`units` must be a positive integer. Received: units={units}")

    def kernel_shape(self, input_shape):
        return (int(input_shape[-1]), self._units)

    def linear(self, x, kernel):
        return ops.matmul(x, kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self._units,)

    def get_config(self):
        config = super().get_config()
        config["units"] = self._units
        return config


@keras.saving.register_keras_serializable(package="hone")
class QuantizedConv2D(Quantized):
    """A stride-1 Conv2D (and its BatchNormalization) that trains as integer neurons once switched on.

    Args:
        filters: Output channels.
        kernel_size: Square kernel side.
        padding: `"valid"` or `"same"`. Defaults to `"valid"`.
        **kwargs: :class:`Quantized` arguments and base layer arguments.
    """

    def __init__(self, filters, kernel_size, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size = int(filters), int(kernel_size)
        if padding not in ("valid", "same"):
            raise ValueError(f"`padding` must be 'valid' or 'same'. Received: padding={padding!r}")
        self.padding = padding

    def kernel_shape(self, input_shape):
        return (self.kernel_size, self.kernel_size, int(input_shape[-1]), self.filters)

    def linear(self, x, kernel):
        return ops.conv(x, kernel, strides=1, padding=self.padding, data_format="channels_last")

    def compute_output_shape(self, input_shape):
        n, height, width, _ = input_shape
        if self.padding == "valid":
            height = None if height is None else height - self.kernel_size + 1
            width = None if width is None else width - self.kernel_size + 1
        return (n, height, width, self.filters)

    def get_config(self):
        config = super().get_config()
        config.update({"filters": self.filters, "kernel_size": self.kernel_size, "padding": self.padding})
        return config


def quantized_layers(model):
    """The model's quantization-aware layers, in order (nested models included)."""
    return layers_of(model, Quantized)


def start_quantizing(model, layers=None):
    """Switch ``model``'s quantization-aware layers to the integer forward (spans chosen now) and
    trace its training step again. Its spiking layers should be sharp: the integers fire as steps."""
    layers = quantized_layers(model) if layers is None else layers
    inexact = [f"{layer.name} ({layer.worst_case_sum():,})" for layer in layers if layer.worst_case_sum() >= 2 ** 24]
    if inexact:
        warnings.warn(f"quantization-aware training sums the integers in float32, exact below 2**24 = 16,777,216; "
                      f"the worst-case sums of {', '.join(inexact)} are not, so Keras may differ from the network "
                      f"file on some images (hone export counts them). Fewer weight or input bits keep them exact",
                      stacklevel=2)
    for layer in layers:
        layer.choose_span()
        layer.quantizing.assign(1.0)
        layer.quantize_training = True
    model.make_train_function(force=True)


class QuantizeWhenSharp(keras.callbacks.Callback):
    """Switch every quantization-aware layer to its integer forward once the sharpener is done.

    Quantization starts with the first epoch that begins with every spiking layer a step (the
    straight-through fine-tuning), and stays on.

    Args:
        sharpener: The :class:`~hone.training.sharpeners.Sharpener` of the same ``fit``.
    """

    def __init__(self, sharpener):
        super().__init__()
        self.sharpener = sharpener

    def on_train_begin(self, logs=None):
        self.layers = quantized_layers(self.model)
        self.quantize_epoch = None
        for layer in self.layers:
            layer.quantize_training = False

    def _requantize(self):
        if self.quantize_epoch is not None:
            for layer in self.layers:
                layer.requantize()

    def on_test_begin(self, logs=None):
        self._requantize()   # the validation pass runs the integers of the weights as they are

    def on_train_end(self, logs=None):
        for layer in self.layers:
            layer.quantize_training = False
        self._requantize()   # after fit's last update (and its weight average, if any)

    def on_epoch_begin(self, epoch, logs=None):
        if not self.layers or not self.sharpener.fully_sharp:
            return
        if self.quantize_epoch is not None:
            for layer in self.layers:
                layer.choose_span()  # each epoch, from the weights as they are
        else:
            start_quantizing(self.model, self.layers)
            self.quantize_epoch = epoch + 1
            if self.sharpener.verbose:
                print(f"\nQuantizeWhenSharp: {len(self.layers)} layers train as "
                      f"{self.layers[0].weight_bits}-bit integer neurons from epoch {epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["quantizing"] = float(self.quantize_epoch is not None)
