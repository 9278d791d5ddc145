"""How a network file maps onto the neuron array: geometry and ROM images, in numpy.

The gateware (:mod:`hone.rtl.core`), the cycle model (:mod:`hone.rtl.cycles`) and the testbenches all derive
their numbers from one :class:`CorePlan`, so they cannot disagree about a width or a layout.

Lanes have one default and one limit, here: :data:`DEFAULT_LANES`, and :func:`useful_lanes` (the widest
layer; :func:`most_lanes` from layer widths alone). :func:`lanes_for` applies both.
"""

import math
import operator

import numpy as np
from hone.network.errors import HoneError, ParameterError

__all__ = ["DEFAULT_LANES", "CorePlan", "ConvPlan", "LayerPlan", "PlanError", "check_lanes", "lanes_for",
           "most_lanes", "useful_lanes"]


class PlanError(HoneError, ValueError):
    """A network cannot be mapped onto the neuron array as asked."""


def _bits_for(count):
    """Bits of an unsigned counter that holds ``0 .. count`` (at least 1)."""
    return max(int(count).bit_length(), 1)


def _pack(values, width):
    """Pack the rows of ``values`` (two's complement, ``width`` bits each, lane 0 lowest) into ints."""
    values = np.asarray(values, dtype=np.int64)
    mask = (1 << width) - 1
    words = []
    for row in values.reshape(len(values), -1):
        word = 0
        for lane, value in enumerate(row.tolist()):
            word |= (value & mask) << (lane * width)
        words.append(word)
    return words


DEFAULT_LANES = 32
"""Neuron units of a core when none are asked for: ``hone rtl``, ``hone sim``, the simulated board and the
flow all start from it, capped at the widest layer (:func:`lanes_for`)."""


def most_lanes(widths):
    """The most lanes a network can keep busy, from the widths of its dense and conv2d layers.

    Lanes work over a dense layer's neurons and a conv2d layer's filters; beyond the widest such
    layer, extra lanes only ever hold padding (and elaboration grows with them). Takes the widths
    alone, so a caller can check lanes before the network exists (a training configuration).

    Args:
        widths: Positive ints: each dense layer's neurons and each conv2d layer's filters.

    Returns:
        int: ``max(widths)``.
    """
    return max(int(width) for width in widths)


def useful_lanes(network):
    """The most lanes ``network`` can keep busy, and the layer that sets it: its widest dense or conv2d
    layer (:func:`most_lanes` of their widths).

    Returns:
        ``(lanes, index, name)``: that layer's neurons (dense) or filters (conv2d), its index in
        ``network.layers`` and its name; the first such layer on a tie.
    """
    layers = [(index, layer) for index, layer in enumerate(network.layers) if layer.kind != "maxpool2d"]
    width = most_lanes(layer.weights.shape[0] for _, layer in layers)
    index, layer = next((index, layer) for index, layer in layers if layer.weights.shape[0] == width)
    return width, index, layer.name


def check_lanes(network, lanes):
    """Refuse more lanes than ``network``'s widest layer can use, before any work.

    Raises:
        ParameterError: ``lanes`` is above :func:`useful_lanes` (parameter ``"lanes"``; the message
            names the widest layer).
    """
    most, index, name = useful_lanes(network)
    if lanes > most:
        unit = "filters" if network.layers[index].kind == "conv2d" else "neurons"
        raise ParameterError("lanes", f"expected 1..{most} for this network (its widest layer, layers[{index}] "
                                      f"{name!r}, has {most} {unit}; more lanes would stay idle), got {lanes}")


def lanes_for(network, lanes=None, default=DEFAULT_LANES):
    """The lanes to build for ``network``.

    Args:
        network: A :class:`~hone.network.netfile.Network`.
        lanes: Lanes asked for (an int >= 1), or None for ``default``.
        default: Lanes when none are asked for. Defaults to :data:`DEFAULT_LANES`.

    Returns:
        int: ``lanes`` as given, or ``default`` capped at the widest layer's width (a small network
        gets no idle lanes).

    Raises:
        ParameterError: ``lanes`` is more than the widest layer can use (:func:`check_lanes`).
    """
    if lanes is None:
        return min(default, useful_lanes(network)[0])
    check_lanes(network, lanes)
    return lanes


class LayerPlan:
    """One dense layer on ``lanes`` neuron units.

    Output neurons are processed in ``groups`` of ``lanes``: neuron ``g * lanes + j`` runs on lane
    ``j`` during group ``g``. Weight ROM word ``g * inputs + i`` holds the ``lanes`` weights from input
    ``i`` to the neurons of group ``g`` (lane ``j`` at bits ``j*B .. j*B+B-1``, two's complement; for
    ``B = 1`` the sign bit, 0 for +1 and 1 for -1); threshold ROM word ``g`` holds their thresholds. Lanes past the last neuron get weight 0 and a threshold that 0 never
    reaches, so they never fire.
    """

    kind = "dense"
    pool = None

    def __init__(self, index, layer, *, lanes, weight_bits, accumulator_bits):
        self.index = index
        self.name = layer.name
        self.outputs, self.inputs = (int(n) for n in layer.weights.shape)
        self.emits = self.outputs
        self.lanes = lanes
        self.groups = math.ceil(self.outputs / lanes)
        padded = self.groups * lanes
        weights = np.zeros((padded, self.inputs), dtype=np.int64)
        weights[:self.outputs] = layer.weights
        if weight_bits == 1:   # padding lanes are never read for a decision, but keep them valid
            weights[self.outputs:] = 1
        thresholds = np.full(padded, 2 ** (accumulator_bits - 1) - 1, dtype=np.int64)
        thresholds[:self.outputs] = layer.thresholds
        self.weights = weights            # (groups * lanes, inputs), padded
        self.thresholds = thresholds      # (groups * lanes,), padded
        # word g * inputs + i = lanes weights of group g from input i
        by_word = weights.reshape(self.groups, lanes, self.inputs).transpose(0, 2, 1)
        if weight_bits == 1:   # {-1, +1} is stored as its sign bit: 0 is +1, 1 is -1
            by_word = (by_word < 0).astype(np.int64)
        self.weight_words = _pack(by_word.reshape(-1, lanes), weight_bits)
        self.threshold_words = _pack(thresholds.reshape(self.groups, lanes), accumulator_bits)


class ConvPlan:
    """One conv2d layer (stride 1), and the max-pool that may follow it, on ``lanes`` neuron units.

    Lanes work over filters: filter ``g * lanes + j`` runs on lane ``j`` during group ``g``, for every
    output position at once, through a per-position accumulator memory (``H' * W'`` words of
    ``lanes * A`` bits). Weight ROM word ``g * kh * kw * C + (i * kw + j) * C + c`` holds the ``lanes``
    weights of kernel offset ``(i, j)`` and input channel ``c``; threshold ROM word ``g`` the group's
    thresholds. An input event ``(y, x, c)`` reaches the outputs ``(y + top - i, x + left - j)`` for the
    offsets ``(i, j)`` that land inside the output map (:meth:`reach`), ``top, left`` being the
    'same' padding of docs/network-file.md (0 for 'valid').

    A following maxpool2d ``(ph, pw)`` is an OR folded into the walk that compares the positions: its
    pooled unit ``(y // ph, x // pw, f)`` is listed once, when its window's last position is compared;
    positions past the last whole window are compared (they are spikes of the conv layer) but pool
    into nothing.
    """

    kind = "conv2d"

    def __init__(self, index, layer, input_shape, *, lanes, weight_bits, accumulator_bits, pool=None):
        self.index = index
        self.name = layer.name
        self.filters, self.kh, self.kw, self.channels = (int(n) for n in layer.weights.shape)
        self.in_height, self.in_width, _ = (int(n) for n in input_shape)
        self.out_height, self.out_width, _ = layer.output_shape(tuple(input_shape))
        if layer.padding == "same":
            self.top, self.left = (self.kh - 1) // 2, (self.kw - 1) // 2
        else:
            self.top = self.left = 0
        self.positions = self.out_height * self.out_width
        self.outputs = self.positions * self.filters          # units of the conv layer's spike map
        self.inputs = self.in_height * self.in_width * self.channels
        self.lanes = lanes
        self.groups = math.ceil(self.filters / lanes)
        self.taps = self.kh * self.kw * self.channels           # weight ROM words per group
        self.pool = None if pool is None else tuple(int(n) for n in pool.pool)
        if self.pool is None:
            self.emit_height, self.emit_width = self.out_height, self.out_width
        else:
            self.emit_height = self.out_height // self.pool[0]
            self.emit_width = self.out_width // self.pool[1]
        self.emits = self.emit_height * self.emit_width * self.filters   # units the next layer reads
        padded = self.groups * lanes
        weights = np.zeros((padded, self.kh, self.kw, self.channels), dtype=np.int64)
        weights[:self.filters] = layer.weights
        if weight_bits == 1:
            weights[self.filters:] = 1
        thresholds = np.full(padded, 2 ** (accumulator_bits - 1) - 1, dtype=np.int64)
        thresholds[:self.filters] = layer.thresholds
        self.weights, self.thresholds = weights, thresholds
        by_word = weights.reshape(self.groups, lanes, self.taps).transpose(0, 2, 1)
        if weight_bits == 1:
            by_word = (by_word < 0).astype(np.int64)
        self.weight_words = _pack(by_word.reshape(-1, lanes), weight_bits)
        self.threshold_words = _pack(thresholds.reshape(self.groups, lanes), accumulator_bits)

    def offsets(self, y, x):
        """``(i_lo, i_hi, j_lo, j_hi)``: the kernel offsets by which input ``(y, x)`` reaches an output."""
        return (max(0, y + self.top - self.out_height + 1), min(self.kh - 1, y + self.top),
                max(0, x + self.left - self.out_width + 1), min(self.kw - 1, x + self.left))

    def reach(self):
        """``(H, W)`` array: output positions each input position reaches."""
        counts = np.zeros((self.in_height, self.in_width), dtype=np.int64)
        for y in range(self.in_height):
            for x in range(self.in_width):
                i_lo, i_hi, j_lo, j_hi = self.offsets(y, x)
                counts[y, x] = (i_hi - i_lo + 1) * (j_hi - j_lo + 1)
        return counts


class CorePlan:
    """Geometry of the whole core for ``network`` on ``lanes`` neuron units.

    The core runs *neuron layers* (dense and conv2d) in order; a maxpool2d is folded into the conv2d
    before it. :attr:`layers` are the neuron layers (:class:`LayerPlan` or :class:`ConvPlan`);
    :attr:`trace_layers` maps each to the network layers whose spikes the trace reports
    (``[conv, pool]`` or ``[layer]``).

    Parameters
    ----------
    network : hone.network.netfile.Network
        A validated network: dense, conv2d and maxpool2d layers.
    lanes : int
        Neuron units ``P`` working in parallel.

    Raises
    ------
    TypeError
        If ``lanes`` is not an integer.
    PlanError
        If ``lanes`` is not positive, or the network has a layer order the core does not run
        (a maxpool2d that does not follow a conv2d, a conv2d after a dense layer).
    """

    def __init__(self, network, *, lanes):
        try:
            lanes = operator.index(lanes)
        except TypeError:
            raise TypeError(f"'lanes' must be a positive integer, not {lanes!r}") from None
        if lanes < 1:
            raise PlanError(f"'lanes' must be a positive integer, not {lanes!r}")
        self.network = network
        self.lanes = lanes
        self.input_size = network.input.size
        self.input_bits = network.input.bits
        self.weight_bits = network.weight_bits
        widths = network.accumulator_bits()
        # one accumulator width for every layer (the array is shared); >= 2 so that padded lanes'
        # threshold (2**(A-1) - 1) is above their sum of 0
        self.accumulator_bits = max(2, *widths.values())
        shapes = [tuple(network.input.shape)] + network.shapes()
        self.layers, self.trace_layers = [], []
        layers = list(network.layers)
        position = 0
        while position < len(layers):
            layer = layers[position]
            options = dict(lanes=lanes, weight_bits=self.weight_bits, accumulator_bits=self.accumulator_bits)
            if layer.kind == "maxpool2d":
                raise PlanError(f"layer {layer.name!r} is maxpool2d after "
                                + (f"{layers[position - 1].kind} {layers[position - 1].name!r}" if position
                                   else "the input")
                                + ": the core pools the spikes of a conv2d layer only (an OR folded into "
                                  "its output)")
            if layer.kind == "conv2d":
                if self.layers and self.layers[-1].kind == "dense":
                    raise PlanError(f"layer {layer.name!r} is conv2d after a dense layer: the core runs "
                                    f"conv2d layers before dense ones")
                pool = layers[position + 1] if (position + 1 < len(layers)
                                                and layers[position + 1].kind == "maxpool2d") else None
                plan = ConvPlan(len(self.layers), layer, shapes[position], pool=pool, **options)
                self.trace_layers.append([position] + ([position + 1] if pool else []))
                position += 2 if pool else 1
            elif layer.kind == "dense":
                plan = LayerPlan(len(self.layers), layer, **options)
                self.trace_layers.append([position])
                position += 1
            else:
                raise PlanError(f"layer {layer.name!r} is {layer.kind}, which the core does not run")
            self.layers.append(plan)
        # classes 0: the output is the last layer's spikes themselves (no key ROM, no vote)
        self.classes = network.classes
        self.unit_class, self.nhot = [], 0
        if self.classes:
            key = network.output.key
            # output unit -> class, or `classes` for a unit that belongs to none
            owner = np.full(key.shape[1], self.classes, dtype=np.int64)
            for cls, row in enumerate(key):
                owner[np.flatnonzero(row)] = cls
            self.unit_class = owner.tolist()
            self.nhot = network.output.nhot
        self.cycle_bits = max(32, _bits_for(self.worst_cycles()))

    @property
    def sha256(self):
        return self.network.sha256

    @property
    def has_conv(self):
        return any(layer.kind == "conv2d" for layer in self.layers)

    def trace_widths(self):
        """Units of every network layer, in the network's order (what the trace reports)."""
        return [int(np.prod(shape)) for shape in self.network.shapes()]

    def list_depths(self):
        """Entries of each layer's input event list (list 0 holds pixels, list l the units of layer
        l-1 after its pool)."""
        return [self.input_size] + [layer.emits for layer in self.layers[:-1]]

    def worst_cycles(self):
        """Cycles of an inference in which every pixel and every neuron is active (an upper bound)."""
        total = 0
        for plan, count in zip(self.layers, self.list_depths()):
            if plan.kind == "dense":
                total += 1 + plan.groups * (count + 4) + plan.outputs
            else:
                total += 1 + plan.groups * (7 + int(plan.reach().sum()) * plan.channels + plan.positions) \
                    + plan.emits
        return total

    def accumulator_words(self):
        """Words of the per-position accumulator memory (0 without conv layers)."""
        return max([layer.positions for layer in self.layers if layer.kind == "conv2d"], default=0)

    def describe(self):
        """Plain figures of the mapping, for reports."""
        layers = []
        for p in self.layers:
            entry = {"name": p.name, "kind": p.kind, "inputs": p.inputs, "outputs": p.outputs,
                     "groups": p.groups, "weight_rom_bits": len(p.weight_words) * self.lanes * self.weight_bits}
            if p.kind == "conv2d":
                entry.update(kernel=[p.kh, p.kw], positions=p.positions, pool=p.pool and list(p.pool))
            layers.append(entry)
        return {
            "lanes": self.lanes, "input_size": self.input_size, "input_bits": self.input_bits,
            "weight_bits": self.weight_bits, "accumulator_bits": self.accumulator_bits,
            "classes": self.classes, "nhot": self.nhot, "layers": layers,
            "rom_bits": sum((len(p.weight_words) * self.weight_bits + p.groups * self.accumulator_bits)
                            * self.lanes for p in self.layers),
            "accumulator_memory_bits": self.accumulator_words() * self.lanes * self.accumulator_bits,
        }
