"""Whetstone training in Keras 3: spiking activations, sharpeners, N-hot output, BN folding.

Importing this package registers hone's custom layers with Keras, so a saved ``model.keras`` loads
with plain ``keras.saving.load_model(path)`` (no ``custom_objects``).
"""

from .activations import Spiking, SpikingBReLU, SpikingSigmoid, spiking_layers
from .folding import FoldedBatchNorm, FoldingError, fold_batch_norm
from .nhot import SoftmaxDecode, decode_spikes, nhot_key
from .sharpeners import AdaptiveSchedule, AdaptiveSharpener, Sharpener, SimpleSharpener, sharpness_of

__all__ = [
    "Spiking", "SpikingBReLU", "SpikingSigmoid", "spiking_layers",
    "FoldedBatchNorm", "FoldingError", "fold_batch_norm",
    "SoftmaxDecode", "decode_spikes", "nhot_key",
    "AdaptiveSchedule", "AdaptiveSharpener", "Sharpener", "SimpleSharpener", "sharpness_of",
]
