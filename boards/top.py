"""``BoardDesign``: :class:`hone.rtl.board.BoardTop` on a real board's pins, clock and LEDs."""

from amaranth import Cat, Elaboratable, Module, Signal

from hone.rtl.board import BoardTop

from .pll import ClockGenerator

__all__ = ["BoardDesign"]

ACTIVITY_MS = 30     # an LED pulse is long enough to see, short enough to follow traffic


class BoardDesign(Elaboratable):
    """The network on a board: UART 0 of the platform, the clock (through the PLL when
    ``pll`` is given), LED 0 lit while either line carries data, the other LEDs showing the last
    class in binary.

    Parameters
    ----------
    network : hone.network.netfile.Network
    lanes : int
    clock_hz : float
        The frequency ``sync`` runs at (the oscillator's, or the PLL's output).
    pll : hone.boards.pll.PLLSetting or None
    baud : int
    leds : int
        LEDs to drive (0 for none).
    """

    def __init__(self, network, *, lanes, clock_hz, pll, baud, leds, slots=4):
        self.top = BoardTop(network, lanes=lanes, clock_hz=clock_hz, baud=baud, slots=slots)
        self._clock_hz = clock_hz
        self._pll = pll
        self._leds = leds

    def elaborate(self, platform):
        m = Module()
        m.submodules.clock = ClockGenerator(self._pll)
        m.submodules.board = top = self.top
        uart = platform.request("uart", 0)
        m.d.comb += [top.rx.eq(uart.rx.i), uart.tx.o.eq(top.tx)]
        if self._leds:
            leds = Cat(platform.request("led", index).o for index in range(self._leds))
            pulse = int(self._clock_hz * ACTIVITY_MS / 1000)
            stretch = Signal(range(pulse + 1))
            with m.If(~uart.rx.i | ~top.tx):
                m.d.sync += stretch.eq(pulse)
            with m.Elif(stretch != 0):
                m.d.sync += stretch.eq(stretch - 1)
            m.d.comb += leds.eq(Cat(stretch != 0, top.last_label))
        return m
