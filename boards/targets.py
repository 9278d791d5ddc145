"""Board targets: one small record per board, so a new board is a few lines.

A target names an amaranth-boards platform and what hone needs to know about its part that the
platform does not say: the block RAM that synthesis can initialise (ROMs live there), the logic
cells, the PLL family, the clock the design runs at by default, its USB-serial bridge (the line rate
follows from it and the clock: :meth:`Target.uart`) and how openFPGALoader reaches it.
"""

import dataclasses
import importlib
from hone.network.errors import HoneError

__all__ = ["Target", "TARGETS", "DEFAULT_TARGET", "STANDARD_BAUDS", "BAUD_ERROR", "UARTSetting", "get_target", "TargetError"]

# line rates a host's serial driver offers by name (Linux B... constants), fastest first
STANDARD_BAUDS = (12_000_000, 6_000_000, 4_000_000, 3_000_000, 2_000_000, 1_500_000, 1_000_000, 921_600,
                  500_000, 460_800, 230_400, 115_200, 57_600, 38_400, 19_200, 9_600)
BAUD_ERROR = 0.005   # the board's bit time may differ from the nominal rate's by this much at most


class TargetError(HoneError, ValueError):
    """A board name, clock or lane count that cannot be built."""


@dataclasses.dataclass(frozen=True)
class UARTSetting:
    """A line rate on a board clock: the clocks per bit, how far the bit time is from the nominal
    rate's, and the bit-time skew the receiver tolerates (``(slower, faster)``, from
    :func:`hone.rtl.uart.receiver_tolerance`)."""
    baud: int
    clock_hz: float
    divisor: int
    rate_error: float
    tolerance: tuple

    def as_dict(self):
        return {"baud": self.baud, "clocks_per_bit": self.divisor, "rate_error": self.rate_error,
                "tolerance_slower": self.tolerance[0], "tolerance_faster": self.tolerance[1]}

    def describe(self):
        return (f"{self.baud:,} baud: {self.divisor} clocks per bit at {self.clock_hz / 1e6:g} MHz, bit time "
                f"{self.rate_error:+.2%} off, receiver tolerates bits {self.tolerance[0]:.1%} slower / "
                f"{self.tolerance[1]:.1%} faster")


def uart_setting(clock_hz, baud):
    """:class:`UARTSetting` for ``baud`` on a ``clock_hz`` clock (ValueError if the receiver cannot
    sample it: see :func:`hone.rtl.uart.divisor_for`)."""
    from hone.rtl.uart import divisor_for, receiver_tolerance

    divisor = divisor_for(clock_hz, baud)
    return UARTSetting(int(baud), clock_hz, divisor, divisor * baud / clock_hz - 1 + 0.0,
                       receiver_tolerance(divisor))


@dataclasses.dataclass(frozen=True)
class Target:
    """What hone needs to build for one board.

    ``bram_blocks`` x ``bram_block_bits`` is the block RAM that can be loaded from the bitstream
    (ROMs must live there); ``luts`` and ``ffs`` the logic cells; ``clock_hz`` the design clock
    hone picks when ``--clock`` is not given (through the PLL when it differs from the oscillator),
    chosen so that the bridge's top rate is a whole number of clocks per bit; ``uart_bridge`` and
    ``max_baud`` the USB-serial bridge on the UART pins and the fastest rate it runs.
    """
    name: str
    platform: str                 # "module:Class" in amaranth_boards
    family: str                   # "ice40" | "ecp5"
    part: str
    luts: int
    ffs: int
    bram_blocks: int
    bram_block_bits: int
    clock_hz: float
    max_clock_hz: float           # above this hone refuses (the PLL's or the fabric's limit)
    loader_board: str             # openFPGALoader -b
    bitstream_suffix: str         # what the platform writes and openFPGALoader takes
    leds: int
    uart_bridge: str
    max_baud: int
    notes: str = ""

    @property
    def bram_bits(self):
        return self.bram_blocks * self.bram_block_bits

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)

    def oscillator_hz(self):
        return float(self.platform_class()().default_clk_frequency)

    def uart(self, clock_hz=None):
        """The :class:`UARTSetting` a build at ``clock_hz`` (default: the target's clock) uses: the
        fastest standard rate up to the bridge's ``max_baud`` that the receiver samples with at least
        :data:`~hone.rtl.uart.MIN_DIVISOR` clocks per bit and a bit time within :data:`BAUD_ERROR`."""
        from hone.rtl.uart import MIN_DIVISOR

        clock_hz = self.clock_hz if clock_hz is None else clock_hz
        for baud in STANDARD_BAUDS:
            divisor = round(clock_hz / baud)
            if (baud <= self.max_baud and divisor >= MIN_DIVISOR
                    and abs(clock_hz / divisor - baud) <= BAUD_ERROR * baud):
                return uart_setting(clock_hz, baud)
        raise TargetError(f"no standard baud rate up to {self.max_baud:,} has a whole number of clocks per bit "
                         f"(at least {MIN_DIVISOR}) at {clock_hz / 1e6:g} MHz on {self.name}: pass --baud")


def _ulx3s(size, luts, ebr, clock_hz):
    # 45 MHz (EHXPLLL 25 MHz x 9 / 5) is 15 clocks per bit at the FT231X's 3 Mbaud
    return Target(
        name=f"ulx3s-{size}", platform=f"ulx3s:ULX3S_{size.upper()}_Platform", family="ecp5",
        part=f"LFE5U-{size.upper()}-6BG381C", luts=luts, ffs=luts, bram_blocks=ebr,
        bram_block_bits=18 * 1024, clock_hz=clock_hz, max_clock_hz=200e6, loader_board="ulx3s",
        bitstream_suffix=".bit", leds=8, uart_bridge="FTDI FT231X", max_baud=3_000_000,
        notes="25 MHz oscillator, EHXPLLL (45 MHz by default: 15 clocks per bit at 3 Mbaud); FT231X UART (us1)")


TARGETS = {target.name: target for target in [
    Target(
        name="icebreaker", platform="icebreaker:ICEBreakerPlatform", family="ice40",
        part="iCE40UP5K-SG48", luts=5280, ffs=5280, bram_blocks=30, bram_block_bits=4096,
        clock_hz=12e6, max_clock_hz=100e6, loader_board="ice40_generic", bitstream_suffix=".bin",
        leds=2, uart_bridge="FTDI FT2232H", max_baud=12_000_000,
        notes="12 MHz oscillator, SB_PLL40_PAD; FT2232H channel B UART (1.5 Mbaud at 12 MHz: 8 clocks "
              "per bit; the bridge runs up to 12 Mbaud, a faster clock allows more); 120 kbit EBR (the 1 Mbit SPRAM "
              "cannot be initialised from the bitstream)"),
    _ulx3s("12f", 12_000, 32, 45e6),
    _ulx3s("25f", 24_000, 56, 45e6),
    _ulx3s("45f", 44_000, 108, 45e6),
    _ulx3s("85f", 84_000, 208, 45e6),
]}


DEFAULT_TARGET = "ulx3s-85f"   # the target hone flow builds for, and a simulated board simulates, unless told


def get_target(name):
    try:
        return TARGETS[name]
    except KeyError:
        raise TargetError(f"unknown board {name!r}: expected one of {', '.join(TARGETS)}") from None


_DEPRECATED = {"BoardTarget": "Target", "BOARDS": "TARGETS", "get_board": "get_target", "BoardError": "TargetError"}


def __getattr__(name):
    # the names before "target" meant one thing (a kind of board): they work for one more version
    if name in _DEPRECATED:
        import warnings

        warnings.warn(f"hone.boards.targets.{name} is deprecated; use {_DEPRECATED[name]}", DeprecationWarning,
                      stacklevel=2)
        return globals()[_DEPRECATED[name]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
