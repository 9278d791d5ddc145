"""Sharpener callbacks: raise the sharpness of spiking layers a little every batch until all are steps.

Two schedules decide *when* and *how fast* to sharpen:

- :class:`SimpleSharpener`: a fixed schedule (start epoch, steps, epochs per step).
- :class:`AdaptiveSharpener`: Whetstone's loss-driven state machine, :class:`AdaptiveSchedule`, which
  is pure Python so it can be driven by scripted losses.

Both share the mechanics in :class:`Sharpener`: bottom-up (one layer at a time, first layer first) or
uniform (all layers together), a pause of ``settle_epochs`` after each layer becomes fully sharp so the
layers above it adapt, and ``finetune_epochs`` of straight-through training once every layer is sharp,
after which the callback stops training. The sharpness of every spiking layer is written into the
epoch logs (``sharpness/<layer>``), so it shows in Keras' progress bar and in ``History``.
"""

import math
import warnings

import keras

from .activations import PLAN_STEPS, spiking_layers

__all__ = ["Sharpener", "SimpleSharpener", "AdaptiveSchedule", "AdaptiveSharpener", "SharpeningWarning",
           "sharpness_of"]


class SharpeningWarning(UserWarning):
    """The sharpening schedule cannot finish in the epochs ``fit`` was given."""


def sharpness_of(model):
    """``{layer name: sharpness}`` of every spiking layer, bottom-up."""
    return {layer.name: layer.get_sharpness() for layer in spiking_layers(model)}


def _positive(name, value, *, allow_zero=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"`{name}` must be a number. Received: {name}={value!r}") from None
    if not (value >= 0 if allow_zero else value > 0) or math.isinf(value):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"`{name}` must be finite and {bound}. Received: {name}={value}")
    return value


def _count(name, value, minimum=0):
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, float) and value.is_integer()):
        raise TypeError(f"`{name}` must be an integer. Received: {name}={value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"`{name}` must be >= {minimum}. Received: {name}={value}")
    return value


class Sharpener(keras.callbacks.Callback):
    """Base class: applies a per-epoch sharpening rate in per-batch increments.

    Subclasses implement :meth:`epoch_rate` (sharpness per epoch to apply during the coming epoch, 0 to
    hold) and may use :meth:`epoch_ended` to observe the logs.

    Args:
        bottom_up: Sharpen one layer at a time, first layer first; otherwise all layers together.
            Defaults to `True`.
        settle_epochs: Epochs to hold sharpening after a layer becomes fully sharp. Defaults to `0`.
        finetune_epochs: Epochs of straight-through training once all layers are sharp, before
            training stops. Defaults to `0`.
        verbose: Print state changes. Defaults to `False`.
    """

    def __init__(self, *, bottom_up=True, settle_epochs=0, finetune_epochs=0, verbose=False):
        super().__init__()
        self.bottom_up = bool(bottom_up)
        self.settle_epochs = _count("settle_epochs", settle_epochs)
        self.finetune_epochs = _count("finetune_epochs", finetune_epochs)
        self.verbose = bool(verbose)
        self._behind = False   # an unplanned call's sharpness is still to be set
        self._behind_from = 0  # the first step of that call

    # -- mechanics ---------------------------------------------------------------------------------

    def on_train_begin(self, logs=None):
        self.layers = spiking_layers(self.model)
        self._jax_state_sync = getattr(self.model, "jax_state_sync", None)
        if not self.layers:
            raise ValueError("the model has no spiking layers to sharpen (expected SpikingBReLU or "
                             "SpikingSigmoid activations)")
        self._values = [layer.get_sharpness() for layer in self.layers]
        self._settle_left = 0
        self._finetune_done = 0
        self._epoch_rate = 0.0
        self._steps = None
        self._planned = False
        self._behind = False
        self.sharp_epoch = None if not self.fully_sharp else 0
        self.reset()
        epochs = self.params.get("epochs") if self.params else None
        if epochs is not None and not self.fully_sharp:
            needed = self.minimum_epochs()
            if needed > epochs:
                outcome = ("the model will not be fully sharp" if needed - self.finetune_epochs > epochs
                           else "fine-tuning will be cut short")
                warnings.warn(
                    f"{type(self).__name__} cannot finish in {epochs} epochs: sharpening "
                    f"{len(self.layers)} layer(s) {'bottom-up' if self.bottom_up else 'together'} takes at "
                    f"least {needed} ({self.describe_minimum()}), so {outcome}. Train for more epochs "
                    f"or sharpen sooner and faster", SharpeningWarning, stacklevel=2)

    def minimum_epochs(self):
        """The fewest epochs in which the schedule can sharpen every layer and fine-tune (a lower bound:
        the schedule may need more, never less). Counts from the sharpness the layers have now."""
        return math.ceil(self._start_epochs() + self._sharpening_epochs() + self._settling_epochs()
                         + self.finetune_epochs - 1e-9)

    def describe_minimum(self):
        return (f"{self._start_epochs()} before it starts, {self._sharpening_epochs():g} sharpening, "
                f"{self._settling_epochs()} settling, {self.finetune_epochs} fine-tuning")

    def _sharpening_epochs(self):
        if not self.bottom_up:
            return self.ramp_epochs(min(self._values))
        return sum(self.ramp_epochs(value) for value in self._values if value < 1.0)

    def _settling_epochs(self):
        left = sum(1 for value in self._values if value < 1.0)
        return self.settle_epochs * max(left - 1, 0) if self.bottom_up else 0

    def _start_epochs(self):
        """Epochs of plain training before the schedule can start sharpening."""
        return 0

    def ramp_epochs(self, sharpness):
        """Fewest epochs to take one layer from ``sharpness`` to 1."""
        raise NotImplementedError

    def reset(self):
        """Reset schedule state; called at the start of every ``fit``."""

    @property
    def fully_sharp(self):
        return all(value >= 1.0 for value in self._values)

    @property
    def current_layer(self):
        """Index of the layer being sharpened bottom-up (None when all are sharp)."""
        for index, value in enumerate(self._values):
            if value < 1.0:
                return index
        return None

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._finished_this_epoch = False
        if self.fully_sharp or self._settle_left > 0:
            self._epoch_rate = 0.0
        else:
            self._epoch_rate = float(self.epoch_rate(epoch))
        self._steps = self.params.get("steps") or self._steps
        # Known steps: run the epoch's batch-by-batch schedule now and hand every layer its per-step
        # plan, which the training steps follow on their own (no host round trip per step).
        self._planned = self._steps is not None and self._steps < PLAN_STEPS - 1
        if self._planned:
            trajectory = [list(self._values)]
            for _ in range(self._steps):
                self.step()
                trajectory.append(list(self._values))
            for index, layer in enumerate(self.layers):
                layer.set_plan([values[index] for values in trajectory])

    def on_train_batch_begin(self, batch, logs=None):
        # Unknown or very long epochs: set the sharpness between Keras' calls instead, the share of the
        # steps since the last call before the next (with ``steps_per_execution`` a call runs several
        # steps at one sharpness). Not in on_train_batch_end: a callback there makes Keras wait for every
        # call's logs, which costs a planned epoch its asynchronous dispatch.
        self._catch_up(batch)
        self._behind = not self._planned and self._epoch_rate > 0.0
        self._behind_from = batch

    def on_test_begin(self, logs=None):
        self._catch_up()   # validation sees the epoch's last step

    def _catch_up(self, batch=None):
        if not self._behind:
            return
        self._behind = False
        if batch is None:   # the epoch's last call: it ran up to steps_per_execution steps
            batch = self._behind_from + getattr(self.model, "steps_per_execution", 1)
            if self._steps is not None:
                batch = min(batch, self._steps)
        # Keras' JAX trainer keeps the training state off the model between steps: attach it first, so
        # the value set now is what the next step reads back.
        if self._jax_state_sync is not None:
            self._jax_state_sync()
        before = list(self._values)
        for _ in range(max(batch - self._behind_from, 1)):
            self.step()
        for layer, old, new in zip(self.layers, before, self._values):
            if new != old:
                layer.set_sharpness(new)

    def step(self):
        """Sharpen by one training step's share of the epoch's rate."""
        if self._epoch_rate > 0.0:
            self.advance(self._epoch_rate / (self._steps or 1))

    def advance(self, amount):
        """Add ``amount`` of sharpness: to the current layer (spilling over) or to every layer."""
        if self.bottom_up:
            while amount > 0 and (index := self.current_layer) is not None:
                step = min(amount, 1.0 - self._values[index])
                self._set(index, self._values[index] + step)
                amount -= step
                if self._values[index] >= 1.0:
                    self._layer_done(index)
                    break  # the next layer waits for the next batch (and for settling, if any)
        else:
            for index in range(len(self._values)):
                if self._values[index] < 1.0:
                    self._set(index, self._values[index] + amount)
            if self.fully_sharp:
                self._layer_done(len(self._values) - 1)

    def _set(self, index, value):
        self._values[index] = 1.0 if value >= 1.0 - 1e-9 else value

    def _layer_done(self, index):
        if self.verbose:
            print(f"\n{type(self).__name__}: layer {self.layers[index].name!r} is fully sharp "
                  f"(epoch {self._epoch + 1})")
        self._finished_this_epoch = True
        if self.settle_epochs:
            self._epoch_rate = 0.0
            self._settle_left = self.settle_epochs
        if self.fully_sharp:
            self._epoch_rate = 0.0
            self.sharp_epoch = self._epoch + 1

    def on_epoch_end(self, epoch, logs=None):
        self._catch_up()
        if logs is not None:
            for layer, value in zip(self.layers, self._values):
                logs[f"sharpness/{layer.name}"] = value
        if self.fully_sharp:
            if self.sharp_epoch is not None and epoch + 1 > self.sharp_epoch:
                self._finetune_done += 1
            if self._finetune_done >= self.finetune_epochs:
                self.model.stop_training = True
            return
        if self._settle_left > 0 and not self._finished_this_epoch:
            self._settle_left -= 1
        self.epoch_ended(epoch, logs or {})

    # -- schedule ----------------------------------------------------------------------------------

    def epoch_rate(self, epoch):
        """Sharpness per epoch to apply during ``epoch`` (0-based)."""
        raise NotImplementedError

    def epoch_ended(self, epoch, logs):
        """Observe an epoch's logs (not called once fully sharp)."""


class SimpleSharpener(Sharpener):
    """Fixed schedule: from ``start_epoch`` on, each layer goes 0 -> 1 in ``steps`` steps of
    ``epochs_per_step`` epochs each, spread evenly over the batches.

    Args:
        start_epoch: First epoch (0-based) that sharpens. Defaults to `6` (``hone train`` starts at 15).
        steps: Steps per layer; sharpness reaches ``k / steps`` at the end of step ``k``. Defaults to
            `2`, as ``hone train``.
        epochs_per_step: Epochs per step. Defaults to `1`.
        **kwargs: :class:`Sharpener` arguments (`bottom_up`, `settle_epochs`, `finetune_epochs`).

    Example:

    >>> model.fit(x, y, epochs=40, callbacks=[SimpleSharpener(start_epoch=5, steps=4)])
    """

    def __init__(self, start_epoch=6, steps=2, epochs_per_step=1, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = _count("start_epoch", start_epoch)
        self.steps = _count("steps", steps, minimum=1)
        self.epochs_per_step = _positive("epochs_per_step", epochs_per_step)

    def epoch_rate(self, epoch):
        if epoch < self.start_epoch:
            return 0.0
        return 1.0 / (self.steps * self.epochs_per_step)

    def _start_epochs(self):
        return self.start_epoch

    def ramp_epochs(self, sharpness):
        return (1.0 - sharpness) * self.steps * self.epochs_per_step


class AdaptiveSchedule:
    """Whetstone's loss-driven sharpening state machine, independent of Keras.

    States: ``"init"`` (plain training), ``"sharpening"`` and ``"paused"``. Feed it one loss per
    epoch with :meth:`update`; :attr:`sharpening` tells whether the next epoch sharpens.

    - ``init`` -> ``sharpening`` once at least ``min_init_epochs`` epochs are done and the loss has
      improved by less than ``sig_decrease`` (relative) for ``patience`` epochs in a row: the net has
      learned what it can unsharpened.
    - ``sharpening`` -> ``paused`` when an epoch's loss rises by more than ``sig_increase`` relative to
      the loss when sharpening (re)started: sharpening went too fast, let the weights catch up.
    - ``paused`` -> ``sharpening`` when the loss is back below that reference, or has stopped improving
      significantly for ``patience`` epochs.
    """

    def __init__(self, *, min_init_epochs, patience, sig_increase, sig_decrease):
        self.min_init_epochs = _count("min_init_epochs", min_init_epochs)
        self.patience = _count("patience", patience, minimum=1)
        self.sig_increase = _positive("sig_increase", sig_increase, allow_zero=True)
        self.sig_decrease = _positive("sig_decrease", sig_decrease, allow_zero=True)
        self.reset()

    def reset(self):
        self.state = "init"
        self.epochs = 0
        self.previous = None
        self.reference = None
        self.stalled = 0

    @property
    def sharpening(self):
        return self.state == "sharpening"

    def update(self, loss):
        """Record one epoch's loss; returns the new state."""
        loss = float(loss)
        if math.isnan(loss):
            raise ValueError(f"the monitored loss is NaN after epoch {self.epochs + 1}; "
                             "lower the learning rate or the sharpening rate")
        self.epochs += 1
        improvement = (math.inf if self.previous is None
                       else (self.previous - loss) / max(abs(self.previous), 1e-12))
        self.stalled = self.stalled + 1 if improvement < self.sig_decrease else 0
        if self.state == "init":
            if self.epochs >= self.min_init_epochs and self.stalled >= self.patience:
                self._start(loss)
        elif self.state == "sharpening":
            if loss > self.reference * (1.0 + self.sig_increase):
                self.state = "paused"
                self.stalled = 0
        elif self.state == "paused":
            if loss <= self.reference or self.stalled >= self.patience:
                self._start(loss)
        self.previous = loss
        return self.state

    def _start(self, loss):
        self.state = "sharpening"
        self.reference = loss
        self.stalled = 0


class AdaptiveSharpener(Sharpener):
    """Loss-driven sharpening (Whetstone's adaptive sharpener), with a slower critical zone.

    While :class:`AdaptiveSchedule` says "sharpening", the current layer (or all layers) sharpens at
    ``rate`` per epoch, and at ``cz_rate`` once its sharpness passes ``critical``: the last part of the
    ramp is where accuracy is lost, so it is taken slowly. Whetstone's own defaults are
    ``min_init_epochs=10, rate=0.25, critical=0.75, cz_rate=0.126, patience=1``.

    Args:
        min_init_epochs: Epochs before sharpening may start. Defaults to `10`.
        rate: Sharpness per epoch below `critical`. Defaults to `0.25`.
        critical: Sharpness where the critical zone begins. Defaults to `0.75`.
        cz_rate: Sharpness per epoch in the critical zone. Defaults to `0.126`.
        patience: Epochs of stalled loss that start or resume sharpening. Defaults to `1`.
        sig_increase: Relative loss rise that pauses sharpening. Defaults to `0.1`.
        sig_decrease: Relative loss fall per epoch that counts as progress. Defaults to `0.1`.
        monitor: Log entry to watch. Defaults to `"loss"`.
        **kwargs: :class:`Sharpener` arguments (`bottom_up`, `settle_epochs`, `finetune_epochs`).
    """

    def __init__(self, min_init_epochs=10, rate=0.25, critical=0.75, cz_rate=0.126, patience=1,
                 sig_increase=0.1, sig_decrease=0.1, monitor="loss", **kwargs):
        super().__init__(**kwargs)
        self.rate = _positive("rate", rate)
        self.cz_rate = _positive("cz_rate", cz_rate)
        self.critical = float(critical)
        if not 0.0 <= self.critical <= 1.0:
            raise ValueError(f"`critical` must be in [0, 1]. Received: critical={critical}")
        self.monitor = str(monitor)
        self.schedule = AdaptiveSchedule(min_init_epochs=min_init_epochs, patience=patience,
                                         sig_increase=sig_increase, sig_decrease=sig_decrease)

    def reset(self):
        self.schedule.reset()

    def epoch_rate(self, epoch):
        if not self.schedule.sharpening:
            return 0.0
        if self.bottom_up:
            level = self._values[self.current_layer]
        else:
            level = min(self._values)
        return self.cz_rate if level >= self.critical else self.rate

    def _start_epochs(self):
        return max(self.schedule.min_init_epochs, self.schedule.patience)

    def ramp_epochs(self, sharpness):
        below = max(self.critical - sharpness, 0.0)
        return below / self.rate + (1.0 - max(sharpness, self.critical)) / self.cz_rate

    def step(self):
        rate_before = self._epoch_rate
        super().step()
        # Entering the critical zone mid-epoch switches to the slower rate at once.
        if rate_before > 0 and self._epoch_rate > 0 and not self.fully_sharp:
            self._epoch_rate = self.epoch_rate(self._epoch)

    def epoch_ended(self, epoch, logs):
        if self.monitor not in logs:
            raise KeyError(f"AdaptiveSharpener monitors {self.monitor!r}, which is not in the epoch "
                           f"logs; available: {sorted(logs)}")
        before = self.schedule.state
        after = self.schedule.update(logs[self.monitor])
        if self.verbose and after != before:
            print(f"\nAdaptiveSharpener: {before} -> {after} after epoch {epoch + 1}")
