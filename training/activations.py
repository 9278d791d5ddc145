"""Spiking activations: bounded ramps that Whetstone sharpens, batch by batch, into binary steps.

Each layer owns a non-trainable scalar weight, ``sharpness`` in [0, 1], so the sharpening state is
saved and loaded with the model. At ``sharpness == 1`` the forward pass is *exactly* the step function
(float 0/1), which is what the hardware computes.

Sharpness changes every training step, but a host-side assignment every step is slow on engines that
keep the training state off the model (Keras' JAX trainer) or mirror it over devices. So a sharpener
writes each epoch's per-step values ahead of time into the layer's ``sharpness_plan``; the training
step reads its entry and advances ``plan_step`` itself, on every backend and under every distribution.
"""

import keras
import numpy as np
from keras import ops

__all__ = ["PLAN_STEPS", "Spiking", "SpikingBReLU", "SpikingSigmoid", "layers_of", "spiking_layers"]

#: Training steps a sharpener can plan at once: one epoch (469 at batch 128 on 60k images). Longer
#: epochs fall back to setting the sharpness after every step.
PLAN_STEPS = 4096


def _check_sharpness(value):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`sharpness` must be a number in [0, 1]. Received: sharpness={value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"`sharpness` must be in [0, 1]. Received: sharpness={value}")
    return value


GRADIENTS = ("exact", "straight-through", "surrogate")


class Spiking(keras.layers.Layer):
    """Base class of activations that sharpen into a step ``x >= threshold``.

    The forward pass is always the curve at the current sharpness (the exact step at 1). The backward
    pass is chosen by ``gradient``:

    - ``"exact"``: the true gradient, as in plain Whetstone. Its slope grows as ``1 / (1 - s)`` while
      sharpening and is zero everywhere once sharp, so a sharp network cannot be fine-tuned.
    - ``"straight-through"``: exact while ``s < 1``; once sharp, the gradient of the unsharpened
      (``s = 0``) curve, so the layers around a sharp layer keep learning.
    - ``"surrogate"``: always the gradient of the unsharpened curve: no gradient blow-up in the
      critical zone near ``s = 1``, and the same backward pass before and after the step.

    Args:
        sharpness: Initial sharpness in [0, 1]. Defaults to `0.0`.
        gradient: `"exact"`, `"straight-through"` or `"surrogate"`. Defaults to `"straight-through"`.
        ramp_in_training: Training steps see the unsharpened curve (``s = 0``) at every sharpness;
            inference sees the curve at the layer's sharpness. Both are on the same side of 0.5 for
            every input, so a metric of that side (pixel accuracy) is the step's, while the loss keeps
            a margin: a target of 1 pulls the input up to 1, not just past the threshold. For an
            output layer whose spikes are compared with binary targets (the autoencoder's).
            Defaults to `False`.
        **kwargs: Base layer keyword arguments, such as `name`.
    """

    #: Input value at which the fully sharp unit fires (``x >= threshold``).
    threshold = 0.5

    def __init__(self, sharpness=0.0, gradient="straight-through", ramp_in_training=False, **kwargs):
        super().__init__(**kwargs)
        self.ramp_in_training = bool(ramp_in_training)
        self._initial_sharpness = _check_sharpness(sharpness)
        if gradient not in GRADIENTS:
            raise ValueError(f"`gradient` must be one of {', '.join(map(repr, GRADIENTS))}. "
                             f"Received: gradient={gradient!r}")
        self.gradient = gradient
        # Assigned inside the training step: with replicas, the first replica's value stands (all agree).
        self.sharpness = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(self._initial_sharpness),
            trainable=False,
            name="sharpness",
            aggregation="only_first_replica",
        )
        self.sharpness_plan = self.add_weight(
            shape=(PLAN_STEPS,),
            initializer=keras.initializers.Constant(self._initial_sharpness),
            trainable=False,
            name="sharpness_plan",
            aggregation="only_first_replica",
        )
        self.plan_step = self.add_weight(
            shape=(), initializer="zeros", dtype="int32", trainable=False, name="plan_step",
            aggregation="only_first_replica",
        )
        self.supports_masking = True

    def soft(self, x, sharpness):
        """The differentiable curve at a given sharpness (< 1)."""
        raise NotImplementedError

    def call(self, inputs, training=False):
        if training:
            # This step's planned sharpness; the next entry is the sharpness once it is done.
            step = ops.minimum(self.plan_step, PLAN_STEPS - 2)
            s = ops.cast(ops.take(self.sharpness_plan, step), inputs.dtype)
            self.plan_step.assign(step + 1)
            self.sharpness.assign(ops.take(self.sharpness_plan, step + 1))
            if self.ramp_in_training:
                return self.soft(inputs, ops.zeros_like(s))
        else:
            s = ops.cast(self.sharpness, inputs.dtype)
        soft = self.soft(inputs, s)
        hard = ops.cast(ops.greater_equal(inputs, self.threshold), inputs.dtype)
        if self.gradient != "exact":
            surrogate = self.soft(inputs, ops.zeros_like(s))
            # (a - stop_gradient(a)) is exactly 0.0, so forward values are unchanged.
            carrier = surrogate - ops.stop_gradient(surrogate)
            hard = hard + carrier
            if self.gradient == "surrogate":
                soft = ops.stop_gradient(soft) + carrier
        return ops.where(ops.greater_equal(s, 1.0), hard, soft)

    def set_sharpness(self, value):
        """Set the sharpness, and hold it through the training steps to come."""
        value = _check_sharpness(value)
        self.set_plan([value])

    def set_plan(self, values):
        """Sharpness before each coming training step: ``values[k]`` for step ``k``, the last one held.

        ``values[0]`` is the sharpness now. At most :data:`PLAN_STEPS` - 1 steps can be planned.
        """
        values = [_check_sharpness(value) for value in values]
        if not 1 <= len(values) <= PLAN_STEPS - 1:
            raise ValueError(f"a sharpness plan holds 1 to {PLAN_STEPS - 1} values. Received {len(values)}")
        plan = np.full(PLAN_STEPS, values[-1], dtype="float32")
        plan[:len(values)] = values
        self.sharpness_plan.assign(plan)
        self.plan_step.assign(0)
        self.sharpness.assign(values[0])

    def get_sharpness(self):
        return float(ops.convert_to_numpy(self.sharpness))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update({
            "sharpness": self._initial_sharpness,
            "gradient": self.gradient,
            "ramp_in_training": self.ramp_in_training,
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


def layers_of(model, kind):
    """The model's layers of class ``kind``, in order, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, kind):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(layers_of(layer, kind))
    return found


def spiking_layers(model):
    """The model's spiking layers, bottom-up (in the order their outputs are computed)."""
    return layers_of(model, Spiking)
