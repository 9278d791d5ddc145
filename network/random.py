"""Random networks for verification: every corner a network file allows, on demand.

``random_dense_network`` and ``random_conv_network`` build valid :class:`~hone.network.netfile.Network`
objects with random integer weights and thresholds chosen so that neurons fire sometimes, always or
never; ``random_conv_stages`` and ``random_conv_architecture`` draw conv/maxpool architectures that
are always valid (no map ever shrinks below 1x1) and cover even kernels, both paddings and pools
that drop trailing rows and columns.
"""

import operator

import numpy as np

from hone.network.netfile import (ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, OutputCode, SpikeOutput,
                                  weight_range)
from hone.network.nhot import nhot_key

__all__ = ["THRESHOLDS", "random_dense_network", "random_conv_network", "random_conv_stages",
           "random_conv_architecture"]

THRESHOLDS = ("random", "low", "high", "mixed")


def _weights(rng, shape, weight_bits):
    """Uniform integer weights of ``weight_bits`` bits (never 0 for 1-bit weights: those are -1 or +1)."""
    low, high = weight_range(weight_bits)
    w = rng.integers(low, high + 1, size=shape)
    if weight_bits == 1:
        w = np.where(w == 0, 1, w)
    return w.astype(np.int64)


def _thresholds(rng, flat, input_max, thresholds):
    """Thresholds for ``flat`` weights ``(outputs, fan_in)`` with inputs in ``0 .. input_max``.

    Every sum of a neuron lies between the sum of its negative weights and the sum of its positive
    weights (times ``input_max``), whatever the input and wherever 'same' padding puts zeros: "low"
    (the lowest of those) always fires, "high" (the highest plus one) never does.
    """
    lowest = np.clip(flat, None, 0).sum(axis=1) * input_max
    highest = np.clip(flat, 0, None).sum(axis=1) * input_max
    spread = np.abs(flat).sum(axis=1) * input_max
    typical = rng.integers(-(spread // 4) - 1, spread // 4 + 2)
    if thresholds == "mixed":
        pick = rng.integers(0, 3, size=len(flat))
        theta = np.choose(pick, [typical, lowest, highest + 1])
    else:
        theta = {"random": typical, "low": lowest, "high": highest + 1}[thresholds]
    return np.asarray(theta, dtype=np.int64)


def _check_thresholds(thresholds):
    if thresholds not in THRESHOLDS:
        raise ValueError(f"'thresholds' must be one of {', '.join(THRESHOLDS)}, not {thresholds!r}")


def random_dense_network(rng, *, input_shape=(4, 4, 1), input_bits=1, widths=(12,), classes=3, nhot=2,
                         output_width=None, weight_bits=4, thresholds="random"):
    """A valid dense network with random weights.

    ``thresholds`` is ``"random"`` (around the typical sum, so neurons fire sometimes), ``"low"``
    (the lowest sum reachable: always fires), ``"high"`` (the highest reachable sum plus one: never
    fires) or ``"mixed"`` (each neuron picks one of the three). ``classes=0`` makes the output the
    last layer's spike vector itself (no key; an autoencoder's shape: ``output_width`` defaults to the
    input's size then).
    """
    _check_thresholds(thresholds)
    if output_width is None:
        output_width = classes * nhot if classes else int(np.prod(input_shape))
    layers, fan_in = [], int(np.prod(input_shape))
    for index, width in enumerate(tuple(widths) + (output_width,)):
        w = _weights(rng, (width, fan_in), weight_bits)
        input_max = 2 ** input_bits - 1 if index == 0 else 1
        theta = _thresholds(rng, w, input_max, thresholds)
        name = "out" if index == len(widths) else f"dense_{index}"
        layers.append(DenseLayer(name, w, theta))
        fan_in = width
    if not classes:
        return Network(InputSpec(tuple(input_shape), input_bits), tuple(layers), SpikeOutput(), weight_bits)
    key = nhot_key(classes, nhot, width=output_width, seed=int(rng.integers(1 << 16)))
    return Network(InputSpec(tuple(input_shape), input_bits), tuple(layers), OutputCode(key), weight_bits)


def _positive(value, what, stage):
    if isinstance(value, bool):
        value = None
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"stage {stage}: {what} must be a positive integer, not {value!r}") from None
    if value < 1:
        raise ValueError(f"stage {stage}: {what} must be a positive integer, not {value!r}")
    return value


def _pair(value, what, stage):
    """``(a, b)`` of positive integers from a positive integer or a pair of them."""
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return tuple(_positive(v, what, stage) for v in value)
    value = _positive(value, what, stage)
    return value, value


def _stage_layer(rng, stage, index, shape, *, input_max, weight_bits, thresholds):
    """The layer of one ``stages`` entry on a ``shape`` input (validated), named after its index."""
    if not isinstance(stage, (tuple, list)) or not stage or stage[0] not in ("conv", "pool"):
        raise ValueError(f"stage {index}: expected ('conv', filters, kernel, padding) or ('pool', size), "
                         f"not {stage!r}")
    height, width, channels = shape
    if stage[0] == "pool":
        if len(stage) != 2:
            raise ValueError(f"stage {index}: expected ('pool', size), not {stage!r}")
        layer = MaxPoolLayer(f"pool_{index}", _pair(stage[1], "the pool size", index))
    else:
        if len(stage) != 4:
            raise ValueError(f"stage {index}: expected ('conv', filters, kernel, padding), not {stage!r}")
        _, filters, kernel, padding = stage
        filters, (kh, kw) = _positive(filters, "filters", index), _pair(kernel, "the kernel", index)
        if padding not in ("valid", "same"):
            raise ValueError(f"stage {index}: padding must be 'valid' or 'same', not {padding!r}")
        w = _weights(rng, (filters, kh, kw, channels), weight_bits)
        theta = _thresholds(rng, w.reshape(filters, -1), input_max, thresholds)
        layer = ConvLayer(f"conv_{index}", w, theta, padding)
    out = layer.output_shape(shape)
    if min(out) < 1:
        raise ValueError(f"stage {index} {tuple(stage)!r} leaves a {out[0]}x{out[1]} map from a "
                         f"{height}x{width} input")
    return layer, out


def random_conv_network(rng, *, input_shape=(8, 8, 1), input_bits=1, stages=(("conv", 4, 3, "same"), ("pool", 2)),
                        widths=(), classes=3, nhot=2, output_width=None, weight_bits=4, thresholds="random"):
    """A valid network of conv2d / maxpool2d stages, then dense layers, with random integer weights.

    Args:
        rng: A ``numpy.random.Generator``; the same state gives the same network.
        input_shape: ``(height, width, channels)`` of the image. Defaults to `(8, 8, 1)`.
        input_bits: Pixel bits. Defaults to `1`.
        stages: In order, ``("conv", filters, kernel, padding)`` (stride 1; ``kernel`` an integer or
            ``(kh, kw)``, even sizes allowed; ``padding`` ``"valid"`` or ``"same"``, which pads
            ``floor((k - 1) / 2)`` on top / left and the rest below / right) or ``("pool", size)``
            (``size`` an integer or ``(ph, pw)``; stride equal to the size, trailing rows and
            columns that do not fill a window are dropped). Layers are named ``conv_<i>`` and
            ``pool_<i>`` after their index in ``stages``. Defaults to one 3x3 'same' conv of 4
            filters and a 2x2 pool.
        widths: Hidden dense layers after the stages (on the flattened map). Defaults to `()`.
        classes: Classes of the N-hot output. Defaults to `3`.
        nhot: Output units per class. Defaults to `2`.
        output_width: Width of the output layer. Defaults to `classes * nhot`.
        weight_bits: Weight width, 1 to 16. Defaults to `4`.
        thresholds: ``"random"`` (around the typical sum, so neurons fire sometimes), ``"low"`` (the
            lowest sum a neuron can reach: always fires), ``"high"`` (its highest plus one: never
            fires) or ``"mixed"`` (each neuron or filter picks one of the three). Defaults to
            `"random"`.

    Returns:
        A :class:`~hone.network.netfile.Network` that ``write_network`` / ``read_network`` accept.

    Raises:
        ValueError: a malformed stage, or one that leaves an empty map (the message names it and
            the map it gets), or bad ``thresholds``.
        TypeError: a stage's filters, kernel or pool size is not an integer (or pair of them).

    Example:

    >>> rng = np.random.default_rng(0)
    >>> network = random_conv_network(rng, input_shape=(7, 6, 2), input_bits=3,
    ...                               stages=(("conv", 3, 2, "same"), ("pool", 3), ("conv", 2, 1, "valid")),
    ...                               widths=(8,), thresholds="mixed")
    >>> network.shapes()
    [(7, 6, 3), (2, 2, 3), (2, 2, 2), (8,), (6,)]
    """
    _check_thresholds(thresholds)
    shape = tuple(operator.index(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"'input_shape' must be (height, width, channels) of positive integers, "
                         f"not {input_shape!r}")
    layers = []
    input_max = 2 ** input_bits - 1   # the largest input of the next neuron layer: pixels until one fires
    for index, stage in enumerate(stages):
        layer, shape = _stage_layer(rng, stage, index, shape, input_max=input_max, weight_bits=weight_bits,
                                    thresholds=thresholds)
        layers.append(layer)
        input_max = input_max if layer.kind == "maxpool2d" else 1
    output_width = classes * nhot if output_width is None else output_width
    fan_in = int(np.prod(shape))
    for index, width in enumerate(tuple(widths) + (output_width,)):
        w = _weights(rng, (width, fan_in), weight_bits)
        layers.append(DenseLayer("out" if index == len(widths) else f"dense_{index}", w,
                                 _thresholds(rng, w, input_max, thresholds)))
        input_max, fan_in = 1, width
    key = nhot_key(classes, nhot, width=output_width, seed=int(rng.integers(1 << 16)))
    return Network(InputSpec(tuple(input_shape), input_bits), tuple(layers), OutputCode(key), weight_bits)


def random_conv_stages(rng, input_shape, *, blocks=(1, 3), filters=(1, 4), kernels=(1, 5), pools=(2, 3),
                       pool_chance=0.6, rectangular=True):
    """Draw ``stages`` for :func:`random_conv_network` that are valid on ``input_shape``.

    ``blocks`` conv blocks (a range, inclusive), each a conv (``filters`` and ``kernels`` sizes drawn
    in their inclusive ranges, even sizes included; padding 'valid' or 'same') followed, with chance
    ``pool_chance``, by a pool of a size in ``pools``. A 'valid' kernel is never larger than its
    map and a pool never larger than its map, so every map stays at least 1x1; pools whose size does
    not divide the map drop its trailing rows or columns. With ``rectangular``, a quarter of the
    kernels and pools have different height and width.

    Returns:
        A tuple of ``("conv", filters, (kh, kw), padding)`` and ``("pool", (ph, pw))``.
    """
    height, width = int(input_shape[0]), int(input_shape[1])
    stages = []
    for _ in range(int(rng.integers(blocks[0], blocks[1] + 1))):
        padding = "same" if rng.random() < 0.5 or kernels[0] > min(height, width) else "valid"
        # 'same' keeps the map whatever the kernel; a 'valid' kernel fits inside it
        top_h, top_w = ((kernels[1], kernels[1]) if padding == "same"
                        else (min(kernels[1], height), min(kernels[1], width)))
        kh = int(rng.integers(kernels[0], top_h + 1))
        if rectangular and rng.random() < 0.25:
            kw = int(rng.integers(kernels[0], top_w + 1))
        else:
            kw = min(kh, top_w)
        stages.append(("conv", int(rng.integers(filters[0], filters[1] + 1)), (kh, kw), padding))
        if padding == "valid":
            height, width = height - kh + 1, width - kw + 1
        if rng.random() < pool_chance:
            fits = [p for p in range(pools[0], pools[1] + 1) if p <= min(height, width)]
            if fits:
                ph = int(rng.choice(fits))
                pw = int(rng.choice(fits)) if rectangular and rng.random() < 0.25 else ph
                stages.append(("pool", (ph, pw)))
                height, width = height // ph, width // pw
    return tuple(stages)


def random_conv_architecture(rng, *, sizes=(5, 12), channels=(1, 4), input_bits=(1, 8), weight_bits=(1, 8),
                             widths=(0, 2), thresholds=THRESHOLDS, **stage_options):
    """Draw keyword arguments for :func:`random_conv_network`: an always-valid random architecture.

    Images of ``sizes`` pixels a side (height and width drawn apart), ``channels`` input channels,
    ``input_bits`` and ``weight_bits`` widths, ``widths`` hidden dense layers of 1 to 12 units
    (all ranges inclusive), a ``thresholds`` mode drawn from the given ones (``"mixed"`` half the
    time when it is among them), the stages from :func:`random_conv_stages` (``stage_options`` go to
    it), 2 to 4 classes of 1 or 2 units.

    Example:

    >>> rng = np.random.default_rng(3)
    >>> network = random_conv_network(rng, **random_conv_architecture(rng))
    """
    height, width = (int(v) for v in rng.integers(sizes[0], sizes[1] + 1, size=2))
    shape = (height, width, int(rng.integers(channels[0], channels[1] + 1)))
    modes = tuple(thresholds)
    mode = "mixed" if "mixed" in modes and rng.random() < 0.5 else str(rng.choice(modes))
    return {
        "input_shape": shape,
        "input_bits": int(rng.integers(input_bits[0], input_bits[1] + 1)),
        "stages": random_conv_stages(rng, shape, **stage_options),
        "widths": tuple(int(w) for w in rng.integers(1, 13, size=int(rng.integers(widths[0], widths[1] + 1)))),
        "classes": int(rng.integers(2, 5)),
        "nhot": int(rng.integers(1, 3)),
        "weight_bits": int(rng.integers(weight_bits[0], weight_bits[1] + 1)),
        "thresholds": mode,
    }
