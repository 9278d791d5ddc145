"""``NeuronArray``: ``P`` binary integrate-and-fire units that share one input event per cycle."""

import operator

from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["NeuronArray"]


def _positive(name, value, minimum=1):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name!r} must be an integer, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name!r} must be at least {minimum}, not {value!r}")
    return value


class NeuronArray(wiring.Component):
    """``lanes`` integrate-and-fire units.

    Every unit holds a signed accumulator. An input event (one active input bit, from bit-plane
    ``shift``) adds each lane's weight, scaled by ``2**shift``, to that lane's accumulator; ``fire``
    is ``accumulator >= threshold`` per lane, and ``clear`` resets every accumulator (fire, then
    reset: the sequencer latches ``fire`` in the cycle it clears).

    Parameters
    ----------
    lanes : int
        Units ``P``.
    weight_bits : int
        Signed weight width ``B``.
    accumulator_bits : int
        Signed accumulator and threshold width ``A``; sums never leave this range (the network
        file sizes it).
    max_shift : int
        Highest bit-plane, ``K - 1`` for ``K``-bit pixels (0 for binary input).

    Members
    -------
    add : In(1)
        Accumulate ``weights << shift`` this cycle.
    shift : In(range(max_shift + 1))
    weights : In(ArrayLayout(signed(B), P))
        For ``B = 1`` (weights in {-1, +1}) each lane gets the sign bit: 0 is +1, 1 is -1.
    clear : In(1)
        Zero every accumulator (wins over ``add``).
    thresholds : In(ArrayLayout(signed(A), P))
    fire : Out(P)
        Lane ``j`` reaches its threshold.
    """

    def __init__(self, *, lanes, weight_bits, accumulator_bits, max_shift=0):
        self._lanes = _positive("lanes", lanes)
        self._weight_bits = _positive("weight_bits", weight_bits)
        self._accumulator_bits = _positive("accumulator_bits", accumulator_bits, 2)
        self._max_shift = _positive("max_shift", max_shift, 0)
        super().__init__({
            "add": In(1),
            "shift": In(range(self._max_shift + 1)),
            "weights": In(data.ArrayLayout(
                unsigned(1) if self._weight_bits == 1 else signed(self._weight_bits), self._lanes)),
            "clear": In(1),
            "thresholds": In(data.ArrayLayout(signed(self._accumulator_bits), self._lanes)),
            "fire": Out(self._lanes),
        })

    @property
    def lanes(self):
        return self._lanes

    def elaborate(self, platform):
        m = Module()
        for lane in range(self._lanes):
            accumulator = Signal(signed(self._accumulator_bits), name=f"accumulator_{lane}")
            weight = self.weights[lane]
            if self._weight_bits == 1:
                weight = Mux(weight, C(-1, signed(2)), C(1, signed(2)))
            with m.If(self.clear):
                m.d.sync += accumulator.eq(0)
            with m.Elif(self.add):
                m.d.sync += accumulator.eq(accumulator + (weight << self.shift))
            m.d.comb += self.fire[lane].eq(accumulator >= self.thresholds[lane])
        return m
