"""hone's custom Keras layers, in one import.

``import hone.training.layers`` registers every layer a hone model can contain (and the
autoencoder's metrics), so a saved ``model.keras``
loads with plain ``keras.saving.load_model(path)`` (no ``custom_objects``). The modules that build or
train models import it themselves.
"""

from .activations import Spiking, SpikingBReLU, SpikingSigmoid
from .autoencoder import bits_wrong, pixel_accuracy  # noqa: F401  (an autoencoder's compiled metrics)
from .folding import FoldedBatchNorm
from .decode import SoftmaxDecode
from .qat import QuantizedConv2D, QuantizedDense

__all__ = ["Spiking", "SpikingBReLU", "SpikingSigmoid", "FoldedBatchNorm", "SoftmaxDecode", "QuantizedDense",
           "QuantizedConv2D", "load_model"]


def load_model(path):
    """A saved ``.keras`` model with hone's layers (models saved before the package was named
    ``hone`` included): :func:`keras.saving.load_model` once the layers are registered.

    Raises:
        ValueError, OSError: what Keras raises for a missing or unreadable file.
    """
    import keras

    return keras.saving.load_model(path)
