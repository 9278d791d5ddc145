"""How a network file maps onto the neuron array: geometry and ROM images, in numpy.

The gateware (:mod:`hone.rtl.core`), the cycle model (:mod:`hone.rtl.cycles`) and the testbenches all derive
their numbers from one :class:`CorePlan`, so they cannot disagree about a width or a layout.
"""

import math
import operator

import numpy as np

__all__ = ["CorePlan", "LayerPlan", "PlanError"]


class PlanError(ValueError):
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


class LayerPlan:
    """One dense layer on ``lanes`` neuron units.

    Output neurons are processed in ``groups`` of ``lanes``: neuron ``g * lanes + j`` runs on lane
    ``j`` during group ``g``. Weight ROM word ``g * inputs + i`` holds the ``lanes`` weights from input
    ``i`` to the neurons of group ``g`` (lane ``j`` at bits ``j*B .. j*B+B-1``, two's complement; for
    ``B = 1`` the sign bit, 0 for +1 and 1 for -1); threshold ROM word ``g`` holds their thresholds. Lanes past the last neuron get weight 0 and a threshold that 0 never
    reaches, so they never fire.
    """

    def __init__(self, index, layer, *, lanes, weight_bits, accumulator_bits):
        self.index = index
        self.name = layer.name
        self.outputs, self.inputs = (int(n) for n in layer.weights.shape)
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


class CorePlan:
    """Geometry of the whole core for ``network`` on ``lanes`` neuron units.

    Parameters
    ----------
    network : hone.training.netfile.Network
        A validated network (dense layers only, for now).
    lanes : int
        Neuron units ``P`` working in parallel.

    Raises
    ------
    TypeError
        If ``lanes`` is not an integer.
    PlanError
        If ``lanes`` is not positive, or the network holds a layer kind the core does not run.
    """

    def __init__(self, network, *, lanes):
        try:
            lanes = operator.index(lanes)
        except TypeError:
            raise TypeError(f"'lanes' must be a positive integer, not {lanes!r}") from None
        if lanes < 1:
            raise PlanError(f"'lanes' must be a positive integer, not {lanes!r}")
        for layer in network.layers:
            if layer.kind != "dense":
                raise PlanError(
                    f"layer {layer.name!r} is {layer.kind}: the neuron array runs dense layers only "
                    f"(docs/rtl.md says how conv2d/maxpool2d fit the sequencer)")
        self.network = network
        self.lanes = lanes
        self.input_size = network.input.size
        self.input_bits = network.input.bits
        self.weight_bits = network.weight_bits
        widths = network.accumulator_bits()
        # one accumulator width for every layer (the array is shared); >= 2 so that padded lanes'
        # threshold (2**(A-1) - 1) is above their sum of 0
        self.accumulator_bits = max(2, *widths.values())
        self.layers = [LayerPlan(index, layer, lanes=lanes, weight_bits=self.weight_bits,
                                 accumulator_bits=self.accumulator_bits)
                       for index, layer in enumerate(network.layers)]
        key = network.output.key
        self.classes = int(key.shape[0])
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

    def list_depths(self):
        """Entries of each layer's input event list (list 0 holds pixels, list l spikes of layer l-1)."""
        return [self.input_size] + [layer.outputs for layer in self.layers[:-1]]

    def worst_cycles(self):
        """Cycles of an inference in which every pixel and every neuron is active."""
        events = [self.input_size] + [layer.outputs for layer in self.layers[:-1]]
        return len(self.layers) + sum(plan.groups * (count + 4) + plan.outputs
                                      for plan, count in zip(self.layers, events))

    def describe(self):
        """Plain figures of the mapping, for reports."""
        return {
            "lanes": self.lanes, "input_size": self.input_size, "input_bits": self.input_bits,
            "weight_bits": self.weight_bits, "accumulator_bits": self.accumulator_bits,
            "classes": self.classes, "nhot": self.nhot,
            "layers": [{"name": p.name, "inputs": p.inputs, "outputs": p.outputs, "groups": p.groups,
                        "weight_rom_bits": p.groups * p.inputs * self.lanes * self.weight_bits}
                       for p in self.layers],
            "rom_bits": sum(p.groups * (p.inputs * self.weight_bits + self.accumulator_bits) * self.lanes
                            for p in self.layers),
        }
