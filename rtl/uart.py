"""8N1 UART: an oversampling receiver and a transmitter, as streams.

The receiver samples the line every clock (the oversampling ratio is ``clock / baud``): it times
each bit from the start bit's falling edge, takes a majority of three samples at the bit's centre,
and rejects glitches shorter than half a bit. A byte whose stop bit is low (a framing error, e.g. a
line held low) is delivered flagged, and the receiver then waits for the line to return high, so a
stuck line yields one error, never a lock-up.
"""

import operator

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTReceiver", "UARTTransmitter", "MIN_DIVISOR", "divisor_for", "receiver_tolerance", "rx_layout"]

MIN_DIVISOR = 8      # clocks per bit the receiver needs: a 3-sample vote and room either side of it

rx_layout = data.StructLayout({"data": unsigned(8), "error": unsigned(1)})


def divisor_for(clock_hz, baud):
    """Clock cycles per bit; refuses rates the receiver cannot sample or time to within 2%."""
    if baud <= 0 or clock_hz <= 0:
        raise ValueError(f"clock and baud must be positive, got clock_hz={clock_hz} baud={baud}")
    divisor = round(clock_hz / baud)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"baud {baud} is too fast for a {clock_hz / 1e6:g} MHz clock: the receiver "
                         f"needs at least {MIN_DIVISOR} clocks per bit, got {clock_hz / baud:.2f}")
    error = abs(clock_hz / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud {baud} is {error:.1%} off at {clock_hz / 1e6:g} MHz with divisor "
                         f"{divisor}; UART needs under 2%")
    return divisor


def _sample_offsets(divisor):
    """Clocks from the first clock edge at or after a start bit's falling edge to the three samples
    :class:`UARTReceiver` votes on for bit ``k`` (0: start, 1..8: data, 9: stop), less ``k * divisor``:
    two clocks of synchroniser, one of history, then ``divisor // 2`` to the start bit's centre."""
    first = divisor // 2 - 2
    return (first, first + 1, first + 2)


def receiver_tolerance(divisor, *, steps=200):
    """The bit-time skew :class:`UARTReceiver` tolerates at ``divisor`` clocks per bit, as
    ``(slower, faster)`` fractions: the largest ``s`` such that bits of ``divisor * (1 + s)`` clocks
    (``slower``) or ``divisor * (1 - s)`` (``faster``) are voted right for every bit of a byte at any
    phase of the line against the clock (two of three samples inside the bit), bytes back to back. The model of timing the
    receiver is tested against (``tests/test_link.py``)."""
    divisor = operator.index(divisor)
    if divisor < MIN_DIVISOR:
        raise ValueError(f"divisor must be at least {MIN_DIVISOR}, got {divisor}")
    offsets = _sample_offsets(divisor)

    def holds(skew):
        bit = divisor * (1 + skew)
        for phase in (i / steps for i in range(steps)):
            for k in range(10):
                inside = sum(k * bit <= phase + offset + k * divisor < (k + 1) * bit for offset in offsets)
                if inside < 2:
                    return False
        return True

    def largest(sign):
        low, high = 0.0, 0.5
        for _ in range(20):
            middle = (low + high) / 2
            low, high = (middle, high) if holds(sign * middle) else (low, middle)
        return low

    # back to back, the next start bit must not fall before the receiver is idle again (a clock
    # after it voted on the stop bit), or the next byte is timed from a late edge
    idle = offsets[2] + 9 * divisor + 2
    return largest(+1), min(largest(-1), (10 * divisor - idle) / (10 * divisor))


class UARTReceiver(wiring.Component):
    """Parameters
    ----------
    divisor : int
        Clock cycles per bit (see :func:`divisor_for`).

    Members
    -------
    rx : In(1)
        The line (idle high); synchronised inside.
    bytes : Out(stream.Signature(rx_layout, always_ready=True))
        One transfer per received byte; ``error`` set when its stop bit was low.
    """

    def __init__(self, divisor):
        if divisor < MIN_DIVISOR:
            raise ValueError(f"divisor must be at least {MIN_DIVISOR}, got {divisor}")
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "bytes": Out(stream.Signature(rx_layout, always_ready=True)),
        })

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        line = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, line, init=1)
        history = Signal(3, init=0b111)
        m.d.sync += history.eq((history << 1) | line)
        vote = Signal()
        m.d.comb += vote.eq((history[0] & history[1]) | (history[1] & history[2]) |
                            (history[0] & history[2]))

        timer = Signal(range(divisor + divisor // 2 + 1))
        bit = Signal(range(9))
        shift = Signal(8)
        m.d.sync += self.bytes.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    # centre of the start bit; the vote lags the line by one clock
                    m.d.sync += timer.eq(divisor // 2)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(vote):                 # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [shift.eq((shift >> 1) | (vote << 7)), timer.eq(divisor - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [self.bytes.valid.eq(1), self.bytes.payload.data.eq(shift),
                                 self.bytes.payload.error.eq(~vote)]
                    with m.If(vote):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "BREAK"
            with m.State("BREAK"):                   # wait for the line to be released
                with m.If(vote):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """Parameters
    ----------
    divisor : int
        Clock cycles per bit.

    Members
    -------
    bytes : In(stream.Signature(8))
        Bytes to send; ready while the transmitter is idle.
    tx : Out(1)
        The line (idle high).
    """

    def __init__(self, divisor):
        if divisor < 1:
            raise ValueError(f"divisor must be at least 1, got {divisor}")
        self._divisor = divisor
        super().__init__({
            "bytes": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self._divisor))
        shift = Signal(10, init=0x3FF)
        left = Signal(range(11))
        m.d.comb += self.tx.eq(shift[0])
        with m.If(left == 0):
            m.d.comb += self.bytes.ready.eq(1)
            with m.If(self.bytes.valid):
                m.d.sync += [shift.eq(0b1_00000000_0 | (self.bytes.payload << 1)), left.eq(10),
                             timer.eq(self._divisor - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
            with m.If(timer == 0):
                m.d.sync += [shift.eq((shift >> 1) | 0x200), left.eq(left - 1),
                             timer.eq(self._divisor - 1)]
        return m
