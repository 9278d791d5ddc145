"""hone: Whetstone-sharpened binary spiking networks, from Keras to an FPGA.

The user-facing API in one place. Names load their module on first use, so ``import hone`` (and the
``hone`` command) stays fast; Keras is imported only by the names that need it.

Training (Keras 3, Severa et al. 2019, "Training deep neural networks for binary communication with
the Whetstone method"):
    :class:`SpikingBReLU`, :class:`SpikingSigmoid`: activations sharpened into the step ``x >= 0.5``.
    :class:`SimpleSharpener`, :class:`AdaptiveSharpener`: callbacks that sharpen them, bottom-up.
    :func:`nhot_key`, :class:`SoftmaxDecode`, :func:`decode_spikes`: the N-hot output code.
    :func:`fold_batch_norm`, :func:`build_model`, :func:`load_dataset`.
The network file (the only contract between the ML and the hardware side; docs/network-file.md):
    :func:`export_network` (model -> :class:`Network`), :func:`evaluate_export`,
    :func:`write_network`, :func:`read_network`, :class:`IntegerNetwork` (the bit-exact reference).
Hardware:
    :func:`simulate`: a network's RTL on given pixels under cocotb (Icarus or Verilator).
    :class:`Board`: a board (or a simulated one) over serial.

Pixels enter as floats in [0, 1]; the network file quantizes them to K-bit integers
(:meth:`InputSpec.quantize`), which is what :class:`IntegerNetwork`, :func:`simulate` and
:class:`Board` take.

A model saved with ``model.save()`` loads with :func:`load_model` (or plain
``keras.saving.load_model(path)`` once ``import hone.training.layers`` has registered hone's layers).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # training
    "Spiking": "training.activations", "SpikingBReLU": "training.activations",
    "SpikingSigmoid": "training.activations", "spiking_layers": "training.activations",
    "Sharpener": "training.sharpeners", "SimpleSharpener": "training.sharpeners",
    "SharpeningWarning": "training.sharpeners", "load_model": "training.layers",
    "AdaptiveSharpener": "training.sharpeners", "sharpness_of": "training.sharpeners",
    "nhot_key": "network.nhot", "decode_spikes": "network.nhot", "SoftmaxDecode": "training.decode",
    "fold_batch_norm": "training.folding", "FoldingError": "training.folding",
    "build_model": "training.models",
    "load_dataset": "network.datasets", "Dataset": "network.datasets", "DatasetError": "network.datasets",
    # the network file
    "export_network": "training.export", "evaluate_export": "training.export",
    "ExportError": "training.export",
    "read_network": "network.netfile", "write_network": "network.netfile", "Network": "network.netfile",
    "InputSpec": "network.netfile", "NetworkFileError": "network.netfile",
    "IntegerNetwork": "network.integer",
    # hardware
    "simulate": "sim.runner", "SimulationError": "sim.runner", "PlanError": "rtl.plan",
    "Board": "host.board", "LinkError": "host.board",
}

_KERAS_MODULES = {"training.activations", "training.sharpeners", "training.decode", "training.folding",
                  "training.models", "training.export"}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _EXPORTS[name]
    if module in _KERAS_MODULES:  # register every hone layer, so saved models load
        importlib.import_module(".training.layers", __name__)
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(__all__) | {"__version__"})
