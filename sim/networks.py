"""Random dense networks for verification: every corner a network file allows, on demand."""

import numpy as np

from hone.training.netfile import DenseLayer, InputSpec, Network, OutputCode, weight_range
from hone.training.nhot import nhot_key

__all__ = ["random_dense_network"]


def random_dense_network(rng, *, input_shape=(4, 4, 1), input_bits=1, widths=(12,), classes=3, nhot=2,
                         output_width=None, weight_bits=4, thresholds="random"):
    """A valid dense network with random weights.

    ``thresholds`` is ``"random"`` (around the typical sum, so neurons fire sometimes), ``"low"``
    (the lowest sum reachable: always fires), ``"high"`` (the highest reachable sum plus one: never
    fires) or ``"mixed"`` (each neuron picks one of the three).
    """
    low, high = weight_range(weight_bits)
    output_width = classes * nhot if output_width is None else output_width
    layers, fan_in = [], int(np.prod(input_shape))
    for index, width in enumerate(tuple(widths) + (output_width,)):
        w = rng.integers(low, high + 1, size=(width, fan_in))
        if weight_bits == 1:
            w = np.where(w == 0, 1, w)
        input_max = 2 ** input_bits - 1 if index == 0 else 1
        lowest = np.clip(w, None, 0).sum(axis=1) * input_max
        highest = np.clip(w, 0, None).sum(axis=1) * input_max
        spread = np.abs(w).sum(axis=1) * input_max
        typical = rng.integers(-(spread // 4) - 1, spread // 4 + 2)
        extremes = {"random": typical, "low": lowest, "high": highest + 1}
        if thresholds == "mixed":
            pick = rng.integers(0, 3, size=width)
            theta = np.choose(pick, [typical, lowest, highest + 1])
        else:
            theta = extremes[thresholds]
        name = "out" if index == len(widths) else f"dense_{index}"
        layers.append(DenseLayer(name, w.astype(np.int64), np.asarray(theta, dtype=np.int64)))
        fan_in = width
    key = nhot_key(classes, nhot, width=output_width, seed=int(rng.integers(1 << 16)))
    return Network(InputSpec(tuple(input_shape), input_bits), tuple(layers), OutputCode(key), weight_bits)
