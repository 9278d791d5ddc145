"""Whetstone training in Keras 3: spiking activations, sharpeners, N-hot output, BN folding.

The package itself imports nothing heavy, so the hardware side can use its Keras-free modules (and the
``hone`` command starts fast). Names below load their module on first use. To load a saved model with
plain ``keras.saving.load_model(path)``, ``import hone.training.layers`` first: it registers hone's layers.
"""

import importlib

_EXPORTS = {
    "Spiking": "activations", "SpikingBReLU": "activations", "SpikingSigmoid": "activations",
    "spiking_layers": "activations",
    "FoldedBatchNorm": "folding", "FoldingError": "folding", "fold_batch_norm": "folding",
    "SoftmaxDecode": "decode", "decode_spikes": "nhot", "nhot_key": "nhot",
    "AdaptiveSchedule": "sharpeners", "AdaptiveSharpener": "sharpeners", "Sharpener": "sharpeners",
    "SimpleSharpener": "sharpeners", "sharpness_of": "sharpeners",
    "TrainConfig": "config", "train": "train",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
