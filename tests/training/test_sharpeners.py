import math
import re

import numpy as np
import pytest
import keras

from hone.training.activations import SpikingBReLU
from hone.training.sharpeners import AdaptiveSchedule, AdaptiveSharpener, SimpleSharpener, sharpness_of


def schedule(**kwargs):
    options = dict(min_init_epochs=3, patience=1, sig_increase=0.1, sig_decrease=0.1)
    options.update(kwargs)
    return AdaptiveSchedule(**options)


def drive(machine, losses):
    return [machine.update(loss) for loss in losses]


class TestAdaptiveSchedule:
    def test_waits_for_min_init_epochs_even_when_the_loss_stalls(self):
        assert drive(schedule(), [1.0, 1.0, 1.0]) == ["init", "init", "sharpening"]

    def test_keeps_training_while_the_loss_improves_significantly(self):
        states = drive(schedule(), [1.0, 0.8, 0.6, 0.45, 0.35, 0.34])
        assert states == ["init"] * 5 + ["sharpening"]

    def test_patience_counts_stalled_epochs_in_a_row(self):
        states = drive(schedule(patience=2), [1.0, 0.99, 0.98, 0.7, 0.69, 0.68])
        # epoch 3 has two stalls (epochs 2, 3); epoch 4 improves 28% and resets the count
        assert states == ["init", "init", "sharpening", "sharpening", "sharpening", "sharpening"]
        states = drive(schedule(patience=2), [1.0, 0.5, 0.25, 0.24, 0.23])
        assert states == ["init", "init", "init", "init", "sharpening"]

    def test_pauses_on_a_significant_rise_and_resumes_on_recovery(self):
        m = schedule()
        drive(m, [1.0, 1.0, 1.0])  # starts sharpening with reference loss 1.0
        assert m.update(1.05) == "sharpening"  # +5%: tolerated
        assert m.update(1.2) == "paused"  # +20% over the reference
        assert m.sharpening is False
        assert m.update(0.95) == "sharpening"  # back below the reference
        assert m.reference == 0.95

    def test_resumes_when_the_pause_stops_helping(self):
        m = schedule(patience=2)
        drive(m, [1.0, 1.0, 1.0, 1.0])
        assert m.state == "sharpening"
        assert m.update(1.5) == "paused"
        assert m.update(1.3) == "paused"  # still recovering by > 10%
        assert m.update(1.29) == "paused"  # first stalled epoch
        assert m.update(1.28) == "sharpening"  # second: patience exhausted

    def test_reset_starts_over(self):
        m = schedule()
        drive(m, [1.0, 1.0, 1.0])
        m.reset()
        assert (m.state, m.epochs, m.previous) == ("init", 0, None)

    def test_nan_loss_is_an_error(self):
        with pytest.raises(ValueError, match=r"^the monitored loss is NaN after epoch 2;"):
            drive(schedule(), [1.0, math.nan])


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(rate=0), ValueError, r"^`rate` must be finite and > 0\. Received: rate=0\.0$"),
    (dict(rate=-0.1), ValueError, r"^`rate` must be finite and > 0\. Received: rate=-0\.1$"),
    (dict(cz_rate=math.inf), ValueError, r"^`cz_rate` must be finite and > 0\. Received: cz_rate=inf$"),
    (dict(critical=1.5), ValueError, r"^`critical` must be in \[0, 1\]\. Received: critical=1\.5$"),
    (dict(patience=0), ValueError, r"^`patience` must be >= 1\. Received: patience=0$"),
    (dict(min_init_epochs=2.5), TypeError, r"^`min_init_epochs` must be an integer\. Received: min_init_epochs=2\.5$"),
    (dict(sig_increase=-1), ValueError, r"^`sig_increase` must be finite and >= 0\. Received: sig_increase=-1\.0$"),
    (dict(settle_epochs=-1), ValueError, r"^`settle_epochs` must be >= 0\. Received: settle_epochs=-1$"),
])
def test_adaptive_sharpener_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        AdaptiveSharpener(**kwargs)


def test_simple_sharpener_rejects_zero_steps():
    with pytest.raises(ValueError, match=r"^`steps` must be >= 1\. Received: steps=0$"):
        SimpleSharpener(steps=0)


# -- the callbacks on a real (tiny) model ---------------------------------------------------------

STEPS_PER_EPOCH = 5


def tiny_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6,)),
        keras.layers.Dense(8), SpikingBReLU(name="s0"),
        keras.layers.Dense(8), SpikingBReLU(name="s1"),
        keras.layers.Dense(2), SpikingBReLU(name="s2"),
    ])
    model.compile(optimizer="sgd", loss="mse")
    return model


def fit(model, sharpener, epochs):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(STEPS_PER_EPOCH * 4, 6)).astype("float32")
    y = rng.random((len(x), 2)).astype("float32")
    return model.fit(x, y, batch_size=4, epochs=epochs, callbacks=sharpener if isinstance(sharpener, list) else [sharpener],
                     verbose=0)


def test_simple_sharpener_bottom_up_follows_the_schedule_exactly():
    model = tiny_model()
    history = fit(model, SimpleSharpener(start_epoch=1, steps=2, epochs_per_step=1), epochs=20)
    h = history.history
    # epoch 1 holds; then each layer takes 2 epochs
    assert h["sharpness/s0"] == pytest.approx([0, 0.5, 1, 1, 1, 1, 1])
    assert h["sharpness/s1"] == pytest.approx([0, 0, 0, 0.5, 1, 1, 1])
    assert h["sharpness/s2"] == pytest.approx([0, 0, 0, 0, 0, 0.5, 1])
    assert len(h["loss"]) == 7  # stops as soon as every layer is sharp
    assert sharpness_of(model) == {"s0": 1.0, "s1": 1.0, "s2": 1.0}


def test_uniform_sharpening_moves_all_layers_together():
    model = tiny_model()
    h = fit(model, SimpleSharpener(start_epoch=0, steps=4, bottom_up=False), epochs=20).history
    for name in ("s0", "s1", "s2"):
        assert h[f"sharpness/{name}"] == pytest.approx([0.25, 0.5, 0.75, 1.0])


def test_sharpness_rises_a_little_every_batch():
    model = tiny_model()
    seen = []

    class Probe(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            # through self.model: on JAX that attaches the training state mid-epoch
            seen.append(self.model.get_layer("s0").get_sharpness())

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 6)).astype("float32")
    model.fit(x, x[:, :2], batch_size=4, epochs=1, verbose=0,
              callbacks=[SimpleSharpener(start_epoch=0, steps=1), Probe()])
    assert seen == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])


@pytest.mark.parametrize("steps_per_execution", [1, 2, STEPS_PER_EPOCH, 8])
def test_epochs_too_long_to_plan_sharpen_step_by_step_the_same_way(monkeypatch, steps_per_execution):
    """Unplanned, the sharpness moves between Keras' calls, by the share of every step the call ran
    (2: the epoch's last call runs one step; 8: one call runs the whole epoch)."""
    import hone.training.sharpeners

    planned = fit(tiny_model(), SimpleSharpener(start_epoch=1, steps=2), epochs=20).history
    monkeypatch.setattr(hone.training.sharpeners, "PLAN_STEPS", STEPS_PER_EPOCH)  # too short for an epoch
    model = tiny_model()
    model.compile(optimizer="sgd", loss="mse", steps_per_execution=steps_per_execution)
    sharpener = SimpleSharpener(start_epoch=1, steps=2)
    stepped = fit(model, sharpener, epochs=20).history
    assert not sharpener._planned
    for name in ("s0", "s1", "s2"):
        assert stepped[f"sharpness/{name}"] == pytest.approx(planned[f"sharpness/{name}"])
    assert sharpness_of(model) == {"s0": 1.0, "s1": 1.0, "s2": 1.0}


@pytest.mark.parametrize("kind", [SimpleSharpener, AdaptiveSharpener])
def test_sharpeners_leave_the_batch_end_hooks_to_keras(kind):
    # A callback with a batch-end hook makes Keras (JAX) wait for every step's logs before dispatching
    # the next step (bench/train.py --parts speed: sharpening_overhead).
    for hook in ("on_batch_end", "on_train_batch_end", "on_test_batch_end"):
        assert getattr(kind, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_settle_and_finetune_epochs():
    model = tiny_model()
    sharpener = SimpleSharpener(start_epoch=0, steps=1, settle_epochs=2, finetune_epochs=3)
    h = fit(model, sharpener, epochs=40).history
    # each layer: one epoch to sharpen, two to settle; the last layer's settling is the fine-tune
    assert h["sharpness/s0"] == [1.0] * 10
    assert h["sharpness/s1"] == [0, 0, 0] + [1] * 7
    assert h["sharpness/s2"] == [0] * 6 + [1] * 4
    assert sharpener.sharp_epoch == 7
    assert len(h["loss"]) == 10


def test_callback_resets_between_fits():
    model = tiny_model()
    sharpener = SimpleSharpener(start_epoch=1, steps=1)
    fit(model, sharpener, epochs=1)
    assert sharpness_of(model)["s0"] == 0.0
    for layer in ("s0", "s1", "s2"):
        model.get_layer(layer).set_sharpness(0.0)
    h = fit(model, sharpener, epochs=2).history
    assert h["sharpness/s0"] == [0.0, 1.0]


def test_adaptive_sharpener_takes_the_critical_zone_slowly():
    model = tiny_model()
    # huge sig_decrease: every epoch after the first counts as stalled, so sharpening starts at once
    sharpener = AdaptiveSharpener(min_init_epochs=1, rate=0.5, critical=0.5, cz_rate=0.25,
                                  sig_increase=1e9, sig_decrease=1e9)
    h = fit(model, sharpener, epochs=30).history
    assert h["sharpness/s0"][:5] == pytest.approx([0.0, 0.0, 0.5, 0.75, 1.0])
    assert sharpener.sharp_epoch == len(h["loss"]) == 2 + 3 * 3


def test_adaptive_sharpener_needs_its_monitor():
    model = tiny_model()
    with pytest.raises(KeyError, match=r"AdaptiveSharpener monitors 'val_loss', which is not in"):
        fit(model, AdaptiveSharpener(monitor="val_loss"), epochs=1)


def test_a_model_without_spiking_layers_is_refused():
    model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match=r"^the model has no spiking layers to sharpen"):
        fit(model, SimpleSharpener(), epochs=1)


# -- a schedule that cannot finish says so before the first epoch ----------------------------------

@pytest.mark.parametrize("make, needed, outcome", [
    # 3 layers, one epoch each after epoch 0, 2 settling epochs between layers, 3 fine-tuning: 10
    (lambda: SimpleSharpener(start_epoch=0, steps=1, settle_epochs=2, finetune_epochs=3), 10,
     "fine-tuning will be cut short"),
    (lambda: SimpleSharpener(), 12, "the model will not be fully sharp"),   # the class defaults: 6 + 3 x 2
    # 10 epochs before it may start, then 3 x (0.75 / 0.25 + 0.25 / 0.126) epochs
    (lambda: AdaptiveSharpener(), 25, "the model will not be fully sharp"),
])
def test_a_schedule_that_cannot_finish_warns_when_training_starts(make, needed, outcome):
    from hone.training.sharpeners import SharpeningWarning

    warned_before_epoch_0 = []

    class Probe(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            warned_before_epoch_0.append(sum(w.category is SharpeningWarning for w in record))

    with pytest.warns(SharpeningWarning) as record:
        fit(tiny_model(), [make(), Probe()], epochs=needed - 1)
    assert warned_before_epoch_0[0] == 1
    message = next(str(w.message) for w in record if w.category is SharpeningWarning)
    assert re.fullmatch(rf"\w+Sharpener cannot finish in {needed - 1} epochs: sharpening 3 layer\(s\) "
                        rf"bottom-up takes at least {needed} \(.*\), so {outcome}\. Train for more epochs "
                        r"or sharpen sooner and faster", message)


def test_the_epoch_bound_is_tight_for_the_simple_sharpener():
    import warnings

    sharpener = SimpleSharpener(start_epoch=0, steps=1, settle_epochs=2, finetune_epochs=3)
    model = tiny_model()
    from hone.training.sharpeners import SharpeningWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpeningWarning)  # none at exactly the bound
        fit(model, sharpener, epochs=10)
    assert sharpness_of(model) == {"s0": 1.0, "s1": 1.0, "s2": 1.0}
    assert sharpener.sharp_epoch == 7
