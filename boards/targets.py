"""Board targets: one small record per board, so a new board is a few lines.

A target names an amaranth-boards platform and what hone needs to know about its part that the
platform does not say: the block RAM that synthesis can initialise (ROMs live there), the logic
cells, the PLL family, the clock the design runs at by default and how openFPGALoader reaches it.
"""

import dataclasses
import importlib

__all__ = ["BoardTarget", "BOARDS", "get_board", "BoardError"]


class BoardError(ValueError):
    """A board name, clock or lane count that cannot be built."""


@dataclasses.dataclass(frozen=True)
class BoardTarget:
    """What hone needs to build for one board.

    ``bram_blocks`` x ``bram_block_bits`` is the block RAM that can be loaded from the bitstream
    (ROMs must live there); ``luts`` and ``ffs`` the logic cells; ``clock_hz`` the design clock
    hone picks when ``--clock`` is not given (through the PLL when it differs from the oscillator).
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
    notes: str = ""

    @property
    def bram_bits(self):
        return self.bram_blocks * self.bram_block_bits

    def platform_class(self):
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(f"amaranth_boards.{module}"), cls)

    def oscillator_hz(self):
        return float(self.platform_class()().default_clk_frequency)


def _ulx3s(size, luts, ebr, clock_hz):
    return BoardTarget(
        name=f"ulx3s-{size}", platform=f"ulx3s:ULX3S_{size.upper()}_Platform", family="ecp5",
        part=f"LFE5U-{size.upper()}-6BG381C", luts=luts, ffs=luts, bram_blocks=ebr,
        bram_block_bits=18 * 1024, clock_hz=clock_hz, max_clock_hz=200e6, loader_board="ulx3s",
        bitstream_suffix=".bit", leds=8,
        notes="25 MHz oscillator, EHXPLLL; FTDI UART (us1) at 115200 baud by default")


BOARDS = {target.name: target for target in [
    BoardTarget(
        name="icebreaker", platform="icebreaker:ICEBreakerPlatform", family="ice40",
        part="iCE40UP5K-SG48", luts=5280, ffs=5280, bram_blocks=30, bram_block_bits=4096,
        clock_hz=12e6, max_clock_hz=100e6, loader_board="ice40_generic", bitstream_suffix=".bin",
        leds=2,
        notes="12 MHz oscillator, SB_PLL40_PAD; FTDI channel B UART; 120 kbit EBR (the 1 Mbit SPRAM "
              "cannot be initialised from the bitstream)"),
    _ulx3s("12f", 12_000, 32, 40e6),
    _ulx3s("25f", 24_000, 56, 40e6),
    _ulx3s("45f", 44_000, 108, 40e6),
    _ulx3s("85f", 84_000, 208, 40e6),
]}


def get_board(name):
    try:
        return BOARDS[name]
    except KeyError:
        raise BoardError(f"unknown board {name!r}: expected one of {', '.join(BOARDS)}") from None
