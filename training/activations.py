"""Spiking activations: bounded ramps that Whetstone sharpens, batch by batch, into binary steps.

Each layer owns one non-trainable scalar weight, ``sharpness`` in [0, 1], so the sharpening state is
saved and loaded with the model. At ``sharpness == 1`` the forward pass is *exactly* the step function
(float 0/1), which is what the hardware computes.
"""

import keras
from keras import ops

__all__ = ["Spiking", "SpikingBReLU", "SpikingSigmoid", "spiking_layers"]


def _check_sharpness(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`sharpness` must be a number in [0, 1]. Received: sharpness={value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`sharpness` must be in [0, 1]. Received: sharpness={value}")
    return value


class Spiking(keras.layers.Layer):
    """Base class of activations that sharpen into a step ``x >= threshold``.

    Once a layer is fully sharp its true gradient is zero everywhere, which is why plain Whetstone
    cannot fine-tune a sharp network. With ``straight_through=True`` the forward pass stays the exact
    step but the backward pass uses the gradient of the unsharpened (``sharpness=0``) curve, so the
    layers around a sharp layer keep learning.

    Args:
        sharpness: Initial sharpness in [0, 1]. Defaults to `0.0`.
        straight_through: Use the straight-through gradient at full sharpness. Defaults to `True`.
        **kwargs: Base layer keyword arguments, such as `name`.
    """

    #: Input value at which the fully sharp unit fires (``x >= threshold``).
    threshold = 0.5

    def __init__(self, sharpness=0.0, straight_through=True, **kwargs):
        super().__init__(**kwargs)
        self._initial_sharpness = _check_sharpness(sharpness)
        self.straight_through = bool(straight_through)
        self.sharpness = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self._initial_sharpness),
            trainable=False,
            name="sharpness",
        )
        self.supports_masking = True

    def soft(self, x, sharpness):
        """The differentiable curve at a given sharpness (< 1)."""
        raise NotImplementedError

    def call(self, inputs):
        s = ops.cast(self.sharpness, inputs.dtype)
        soft = self.soft(inputs, s)
        hard = ops.cast(ops.greater_equal(inputs, self.threshold), inputs.dtype)
        if self.straight_through:
            surrogate = self.soft(inputs, ops.zeros_like(s))
            # (a - stop_gradient(a)) is exactly 0.0, so the forward value stays the exact step.
            hard = hard + (surrogate - ops.stop_gradient(surrogate))
        return ops.where(ops.greater_equal(s, 1.0), hard, soft)

    def set_sharpness(self, value):
        self.sharpness.assign(_check_sharpness(value))

    def get_sharpness(self):
        return float(ops.convert_to_numpy(self.sharpness))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "sharpness": self._initial_sharpness,
            "straight_through": self.straight_through,
        })
        return config


@keras.saving.register_keras_serializable(package="hone")
class SpikingBReLU(Spiking):
    """Bounded ReLU that sharpens into the step ``x >= 0.5``.

    ``y = clip((x - 0.5) / (1 - s + 1e-3) + 0.5, 0, 1)`` for sharpness ``s < 1``; the exact step at
    ``s == 1``. At ``s == 0`` it is ``clip(x, 0, 1)`` (up to the 1e-3 guard).

    Example:

    >>> layer = SpikingBReLU(sharpness=1.0)
    >>> keras.ops.convert_to_numpy(layer(keras.ops.array([0.2, 0.5, 0.9]))).tolist()
    [0.0, 1.0, 1.0]
    """

    threshold = 0.5

    def soft(self, x, sharpness):
        return ops.clip((x - 0.5) / (1.0 - sharpness + 1e-3) + 0.5, 0.0, 1.0)


@keras.saving.register_keras_serializable(package="hone")
class SpikingSigmoid(Spiking):
    """Sigmoid that steepens into the step ``x >= 0``.

    ``y = sigmoid(x / (1 - s + 1e-3))`` for sharpness ``s < 1``; the exact step at ``s == 1``.
    """

    threshold = 0.0

    def soft(self, x, sharpness):
        return ops.sigmoid(x / (1.0 - sharpness + 1e-3))


def spiking_layers(model):
    """The model's spiking layers, bottom-up (in the order their outputs are computed)."""
    found = []
    for layer in model.layers:
        if isinstance(layer, Spiking):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(spiking_layers(layer))
    return found
