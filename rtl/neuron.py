"""``NeuronArray``: ``P`` binary integrate-and-fire units that share one input event per cycle."""

import operator

from amaranth import C, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["NeuronArray", "weighted"]


def _positive(name, value, minimum=1):
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name!r} must be an integer, not {value!r}") from None
    if value < minimum:
        raise ValueError(f"{name!r} must be at least {minimum}, not {value!r}")
    return value


def weighted(weight, value, value_bits):
    """``weight * value`` for a ``value_bits``-bit unsigned ``value``, as a balanced tree of shifted,
    gated weights: plain adders that synthesis keeps in the fabric (a ``*`` would claim one DSP block
    per lane). It is what the value's bit-planes would add one by one."""
    terms = [Mux(value[k], weight << k, 0) for k in range(value_bits)]
    while len(terms) > 1:
        terms = [a + b for a, b in zip(terms[0::2], terms[1::2])] + terms[len(terms) & ~1:]
    return terms[0]


class NeuronArray(wiring.Component):
    """``lanes`` integrate-and-fire units.

    Every unit holds a signed accumulator. An input event (an active input of value ``q``: a spike is
    1, a ``K``-bit pixel its value) adds each lane's weight times ``q`` to that lane's accumulator, the
    sum of what its ``K`` bit-planes would add one by one (``w << k`` for each set bit ``k``), in one
    cycle; ``fire`` is ``accumulator >= threshold`` per lane, and ``clear`` resets every accumulator
    (fire, then reset: the sequencer latches ``fire`` in the cycle it clears).

    Parameters
    ----------
    lanes : int
        Units ``P``.
    weight_bits : int
        Signed weight width ``B``.
    accumulator_bits : int
        Signed accumulator and threshold width ``A``; sums never leave this range (the network
        file sizes it).
    value_bits : int
        Width ``K`` of an event's value (pixels' bits; 1 for binary input).

    Members
    -------
    add : In(1)
        Accumulate ``weights * value`` this cycle.
    value : In(K)
    weights : In(ArrayLayout(signed(B), P))
        For ``B = 1`` (weights in {-1, +1}) each lane gets the sign bit: 0 is +1, 1 is -1.
    clear : In(1)
        Zero every accumulator (wins over ``add``).
    thresholds : In(ArrayLayout(signed(A), P))
    fire : Out(P)
        Lane ``j`` reaches its threshold.
    """

    def __init__(self, *, lanes, weight_bits, accumulator_bits, value_bits=1):
        self._lanes = _positive("lanes", lanes)
        self._weight_bits = _positive("weight_bits", weight_bits)
        self._accumulator_bits = _positive("accumulator_bits", accumulator_bits, 2)
        self._value_bits = _positive("value_bits", value_bits)
        super().__init__({
            "add": In(1),
            "value": In(self._value_bits),
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
                m.d.sync += accumulator.eq(accumulator + weighted(weight, self.value, self._value_bits))
            m.d.comb += self.fire[lane].eq(accumulator >= self.thresholds[lane])
        return m
