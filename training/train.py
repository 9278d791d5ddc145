"""Train and sharpen a model end to end: the engine behind ``hone train``.

A run folder holds ``model.keras`` (loads with plain ``keras.saving.load_model``), ``history.json``
(per-epoch loss, accuracy, test accuracy, per-layer sharpness, seconds) and ``sharpening.png``.
"""

import dataclasses
import json
import math
import pathlib
import time
import warnings

import numpy as np
import keras

from . import layers  # noqa: F401  (registers hone's layers for saving and loading)
from .activations import spiking_layers
from hone.network.datasets import load_dataset
from .models import build_model
from .decode import SoftmaxDecode
from hone.network.nhot import decode_spikes
from .qat import QuantizeWhenSharp, quantized_layers
from .config import TrainConfig
from .distribute import batch_multiple, pad_to_multiple, placement, worker_shard
from .sharpeners import sharpness_of
from hone.network.errors import HoneError

__all__ = ["TrainConfig", "TrainingIncomplete", "compiled_model", "train", "hard_classes", "hard_accuracy", "output_spikes"]


class TrainingIncomplete(HoneError, RuntimeError):
    """Training ran out of epochs before every spiking layer was fully sharp.

    ``summary`` holds the run's figures all the same (its ``sharpened_accuracy`` forces every layer
    to a step).
    """

    def __init__(self, message, summary=None):
        super().__init__(message)
        self.summary = summary

def output_spikes(model, x, batch_size=1024):
    """The output layer's spikes (the input of :class:`SoftmaxDecode`) for a batch of images."""
    decode = model.layers[-1]
    if not isinstance(decode, SoftmaxDecode):
        raise ValueError(f"the model's last layer must be SoftmaxDecode, not {type(decode).__name__}")
    probe = keras.Model(model.inputs, decode.input)
    multiple = batch_multiple()
    padded, _, _ = pad_to_multiple(np.asarray(x), np.zeros(len(x)), multiple)
    return probe.predict(padded, batch_size=batch_size - batch_size % multiple or multiple, verbose=0)[:len(x)]


def hard_classes(model, x):
    """Classes with every spiking layer at sharpness 1 (exact steps), decoded with the N-hot key.

    The model's sharpness is restored afterwards.
    """
    spiking = spiking_layers(model)
    saved = [layer.get_sharpness() for layer in spiking]
    try:
        for layer in spiking:
            layer.set_sharpness(1.0)
        return decode_spikes(output_spikes(model, x), model.layers[-1].key)
    finally:
        for layer, value in zip(spiking, saved):
            layer.set_sharpness(value)


def hard_accuracy(model, x, y):
    """Test accuracy of :func:`hard_classes`."""
    return float(np.mean(hard_classes(model, x) == np.asarray(y)))


class _EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs["seconds"] = time.perf_counter() - self._start


class _FinetuneDecay(keras.callbacks.Callback):
    """Cosine-decay the learning rate over the sharpener's straight-through fine-tune epochs.

    A fully sharp net trains on straight-through gradients, which are noisy near the thresholds; a
    decaying rate lets it settle on thresholds instead of oscillating across them.
    """

    def __init__(self, sharpener, base_rate, floor=0.02):
        super().__init__()
        self.sharpener, self.base_rate, self.floor = sharpener, float(base_rate), float(floor)

    def on_epoch_begin(self, epoch, logs=None):
        sharp_epoch, total = self.sharpener.sharp_epoch, self.sharpener.finetune_epochs
        if sharp_epoch is None or total == 0 or epoch < sharp_epoch:
            rate = self.base_rate
        else:
            progress = min((epoch - sharp_epoch) / total, 1.0)
            rate = self.base_rate * (self.floor + (1 - self.floor) * 0.5 * (1 + math.cos(math.pi * progress)))
        self.model.optimizer.learning_rate.assign(rate)

    def on_epoch_end(self, epoch, logs=None):
        logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


def _history(raw, layer_names):
    epochs = len(raw.get("loss", []))
    sharpness = {name: [float(v) for v in raw.get(f"sharpness/{name}", [0.0] * epochs)]
                 for name in layer_names}
    extra = {}
    if "bits_wrong" in raw:   # an autoencoder's second metric
        extra = {"bits_wrong": [float(v) for v in raw["bits_wrong"]],
                 "test_bits_wrong": [float(v) for v in raw.get("val_bits_wrong", [])]}
    return extra | {
        "epoch": list(range(1, epochs + 1)),
        "loss": [float(v) for v in raw.get("loss", [])],
        "accuracy": [float(v) for v in raw.get("accuracy", [])],
        "test_loss": [float(v) for v in raw.get("val_loss", [])],
        "test_accuracy": [float(v) for v in raw.get("val_accuracy", [])],
        "seconds": [float(v) for v in raw.get("seconds", [])],
        "learning_rate": [float(v) for v in raw.get("learning_rate", [])],
        "sharpness": sharpness,
    }


def plot_sharpening(history, summary, path):
    """Test accuracy and per-layer sharpness against epoch, one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6.5), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    epochs = history["epoch"]
    top.plot(epochs, [100 * a for a in history["test_accuracy"]], marker=".", label="test (current sharpness)")
    top.plot(epochs, [100 * a for a in history["accuracy"]], alpha=0.5, label="train (current sharpness)")
    top.axhline(100 * summary["sharpened_accuracy"], color="C3", linestyle="--",
                label=f"sharpened, hard steps: {100 * summary['sharpened_accuracy']:.2f}%")
    if summary.get("best_accuracy_before_sharpening") is not None:
        top.axhline(100 * summary["best_accuracy_before_sharpening"], color="C2", linestyle=":",
                    label=f"best before sharpening: {100 * summary['best_accuracy_before_sharpening']:.2f}%")
    top.set_ylabel("accuracy (%)")
    output = "pixels of the binarized input" if summary["arch"] == "autoencoder" else f"{summary['nhot']}-hot"
    top.set_title(f"{summary['dataset']} / {summary['arch']} / {summary['encoding']} input / "
                  f"{output} / {summary['sharpener']} sharpener")
    top.legend(loc="lower left", fontsize=8)
    top.grid(alpha=0.3)
    for name, values in history["sharpness"].items():
        bottom.plot(epochs, values, marker=".", label=name)
    bottom.set_ylabel("sharpness (end of epoch)")
    bottom.set_xlabel("epoch")
    bottom.set_ylim(-0.05, 1.05)
    bottom.legend(loc="upper left", fontsize=8)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compiled_model(config, data):
    """The untrained model a :class:`TrainConfig` describes, for ``data``, compiled for training."""
    model = build_model(
        config.arch, data.input_shape, data.classes, nhot=config.nhot, output_width=config.output_width,
        widths=config.widths, filters=config.filters, kernel=config.kernel, padding=config.padding,
        batch_norm=config.batch_norm, dropout=config.dropout, conv_dropout=config.conv_dropout,
        decode_scale=config.decode_scale,
        gradient=config.gradient, augment=config.augment, activation=config.activation,
        key_seed=config.seed, weight_bits=config.weight_bits if config.qat else None,
        input_bits=config.network_input_bits, output_ramp=config.output_ramp)
    if config.arch == "autoencoder":   # the output spikes reconstruct the binarized input
        from .autoencoder import reconstruction_loss, reconstruction_metrics

        model.compile(optimizer=config.make_optimizer(), loss=reconstruction_loss(config.loss),
                      metrics=reconstruction_metrics())
        return model
    model.compile(optimizer=config.make_optimizer(),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(config, out_dir=None, *, verbose=1, data=None):
    """Train, sharpen and evaluate a model; write the run folder if ``out_dir`` is given.

    Returns ``(model, history, summary)``. Raises :class:`TrainingIncomplete` (after writing the run
    folder) when a sharpener ran out of epochs before every layer was sharp.
    """
    started = time.perf_counter()
    sharpener = config.make_sharpener(verbose=bool(verbose))  # validates its settings first
    keras.utils.set_random_seed(config.seed)
    data = data or load_dataset(config.dataset, binarize=config.binarize)
    y_train, y_test = data.y_train, data.y_test
    if config.arch == "autoencoder":   # the target is the image itself, binarized
        from .autoencoder import pixel_targets

        y_train, y_test = (pixel_targets(x).astype("float32") for x in (data.x_train, data.x_test))
    with placement(config.distribution) as where:
        model = compiled_model(config, data)
        callbacks = [_EpochTimer()]
        if sharpener is not None:
            callbacks += [sharpener, _FinetuneDecay(sharpener, config.learning_rate)]
            if config.qat:
                callbacks.append(QuantizeWhenSharp(sharpener))
        x, y, batch_size = worker_shard(where, data.x_train, y_train, config.batch_size)
        multiple = batch_multiple()
        if batch_size % multiple:
            raise ValueError(f"batch size {batch_size} does not split evenly over {multiple} devices; "
                             f"use a multiple of {multiple}")
        x, y, weights = pad_to_multiple(x, y, multiple)
        with warnings.catch_warnings():
            # The integer phase holds BN's scale still on purpose (hone.training.qat): TensorFlow's optimizer
            # warns that no gradient reaches it. Any other variable without a gradient is still reported.
            warnings.filterwarnings("ignore", message=r"Gradients do not exist for variables "
                                    r"\[('[^']*/norm/gamma'(, )?)+\] when minimizing", category=UserWarning)
            fit = model.fit(x, y, sample_weight=weights, batch_size=batch_size, epochs=config.epochs,
                            validation_data=pad_to_multiple(data.x_test, y_test, multiple),
                            callbacks=callbacks, verbose=verbose)
    if model.optimizer.use_ema:
        # Keras swaps the averages in by reference; on JAX the next jitted call donates (deletes) the
        # shared buffers, so each weight gets its own copy.
        for variable in model.trainable_variables:
            variable.assign(keras.ops.copy(variable))
    if where.backend == "jax" and where.workers > 1:
        # The trained variables span every process' devices; evaluate and save a local copy.
        trained, model = model, keras.models.clone_model(model)
        model.set_weights(trained.get_weights())
    reconstruction = None
    if config.arch == "autoencoder":
        from .autoencoder import hard_reconstructions
        from hone.network.reconstruction import reconstruction_figures

        reconstruction = reconstruction_figures(hard_reconstructions(model, data.x_test), y_test)
        sharpened_accuracy = reconstruction["pixel_accuracy"]
    else:
        sharpened_accuracy = hard_accuracy(model, data.x_test, data.y_test)
    layer_names = [layer.name for layer in spiking_layers(model)]
    history = _history(fit.history, layer_names)
    sharp = sharpness_of(model)
    quantized = quantized_layers(model)
    fully_sharp = all(v >= 1.0 for v in sharp.values())

    before = [acc for acc, *levels in zip(history["test_accuracy"], *history["sharpness"].values())
              if all(level == 0.0 for level in levels)]
    seconds = history["seconds"]
    summary = {
        "dataset": config.dataset,
        "arch": config.arch,
        "encoding": data.encoding,
        "nhot": config.nhot,
        "sharpener": config.sharpener,
        "epochs": len(history["epoch"]),
        "fully_sharp": fully_sharp,
        "sharpness": sharp,
        "best_accuracy_before_sharpening": max(before) if before else None,
        "final_test_accuracy": history["test_accuracy"][-1],
        "sharpened_accuracy": sharpened_accuracy,
        "reconstruction": reconstruction,     # autoencoder: pixel accuracy and bits wrong, hard steps
        "sharp_epoch": getattr(sharpener, "sharp_epoch", None),
        "weight_bits": config.weight_bits,
        "input_bits": config.network_input_bits,
        "quantization_aware": bool(quantized) and all(layer.is_quantized() for layer in quantized),
        "seconds_per_epoch": float(np.median(seconds)) if seconds else math.nan,
        "seconds": time.perf_counter() - started,
        "backend": keras.backend.backend(),
        "engine": where.engine,
        "replicas": where.replicas,
        "workers": where.workers,
        "config": {k: (list(v) if isinstance(v, tuple) else v)
                   for k, v in dataclasses.asdict(config).items()},
    }
    if out_dir is not None:
        # Every worker keeps its run folder; the chief's is the run's.
        out = pathlib.Path(out_dir) if where.chief else pathlib.Path(out_dir) / f"worker-{where.worker}"
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
        (out / "history.json").write_text(json.dumps({"history": history, "summary": summary}, indent=1))
        plot_sharpening(history, summary, out / "sharpening.png")
    if sharpener is not None and not fully_sharp:
        levels = ", ".join(f"{name}={value:.3f}" for name, value in sharp.items())
        raise TrainingIncomplete(
            f"training stopped after {summary['epochs']} epochs (--epochs) before every spiking layer "
            f"was fully sharp: {levels}. Raise --epochs or the sharpening rate.", summary)
    return model, history, summary
