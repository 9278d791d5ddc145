"""PLL settings for a wanted clock, and the instances that make it.

The divider search is plain arithmetic over each family's documented ranges (Lattice TN1251 for
the iCE40 ``SB_PLL40``, TN1263 for the ECP5 ``EHXPLLL``), so a report can say which clock a board
really runs at before anything is synthesised.
"""

import dataclasses

from amaranth import ClockDomain, ClockSignal, Elaboratable, Instance, Module, ResetSignal, Signal

from .targets import TargetError

__all__ = ["PLLSetting", "ice40_pll", "ecp5_pll", "plan_clock", "ClockGenerator"]


@dataclasses.dataclass(frozen=True)
class PLLSetting:
    family: str
    input_hz: float
    output_hz: float
    params: dict      # divider parameters for the primitive


def ice40_pll(input_hz, output_hz):
    """Closest ``SB_PLL40`` setting: f = fin (DIVF+1) / ((DIVR+1) 2^DIVQ)."""
    best = None
    for divr in range(16):
        pfd = input_hz / (divr + 1)
        if not 10e6 <= pfd <= 133e6:
            continue
        for divf in range(128):
            vco = pfd * (divf + 1)
            if not 533e6 <= vco <= 1066e6:
                continue
            for divq in range(1, 7):
                out = vco / 2 ** divq
                if not 16e6 <= out <= 275e6:
                    continue
                if best is None or abs(out - output_hz) < abs(best[0] - output_hz):
                    filter_range = next(i for i, top in enumerate(
                        [17e6, 26e6, 44e6, 66e6, 101e6, float("inf")], start=1) if pfd < top)
                    best = (out, dict(DIVR=divr, DIVF=divf, DIVQ=divq, FILTER_RANGE=filter_range))
    if best is None:
        return None
    return PLLSetting("ice40", input_hz, best[0], best[1])


def ecp5_pll(input_hz, output_hz):
    """Closest ``EHXPLLL`` setting with CLKOP feedback: f = fin CLKFB_DIV / CLKI_DIV, VCO = f CLKOP_DIV."""
    best = None
    for clki in range(1, 129):
        pfd = input_hz / clki
        if not 3.125e6 <= pfd <= 400e6:
            continue
        for clkfb in range(1, 81):
            out = pfd * clkfb
            if not 3.125e6 <= out <= 400e6:
                continue
            dividers = [d for d in range(1, 129) if 400e6 <= out * d <= 800e6]
            if not dividers:
                continue
            clkop = min(dividers, key=lambda d: abs(out * d - 600e6))   # mid-range VCO
            if best is None or abs(out - output_hz) < abs(best[0] - output_hz):
                best = (out, dict(CLKI_DIV=clki, CLKFB_DIV=clkfb, CLKOP_DIV=clkop))
    if best is None:
        return None
    return PLLSetting("ecp5", input_hz, best[0], best[1])


def plan_clock(family, oscillator_hz, wanted_hz):
    """``(clock_hz, PLLSetting | None)``: the oscillator itself when asked for, else the PLL's
    closest frequency (within 1%).

    Raises:
        TargetError: no PLL setting of ``family`` comes within 1% of ``wanted_hz`` (the message names
            the nearest one).
    """
    if abs(wanted_hz - oscillator_hz) < 1:
        return oscillator_hz, None
    setting = {"ice40": ice40_pll, "ecp5": ecp5_pll}[family](oscillator_hz, wanted_hz)
    if setting is None or abs(setting.output_hz - wanted_hz) > 0.01 * wanted_hz:
        nearest = f"; nearest {setting.output_hz / 1e6:.3f} MHz" if setting else ""
        raise TargetError(f"no {family} PLL setting makes {wanted_hz / 1e6:.3f} MHz from the "
                         f"{oscillator_hz / 1e6:.3f} MHz oscillator within 1%{nearest}")
    return setting.output_hz, setting


class ClockGenerator(Elaboratable):
    """Drives the ``sync`` domain from the board oscillator, through the PLL when there is one;
    ``sync`` is held in reset until the PLL locks."""

    def __init__(self, pll):
        self.pll = pll

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = sync = ClockDomain("sync")
        if self.pll is None:
            clock = platform.request(platform.default_clk, dir="i")
            m.d.comb += ClockSignal("sync").eq(clock.i)
            return m
        locked = Signal()
        params = self.pll.params
        if self.pll.family == "ice40":
            pin = platform.request(platform.default_clk, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_PLLOUT_SELECT="GENCLK",
                p_DIVR=params["DIVR"], p_DIVF=params["DIVF"], p_DIVQ=params["DIVQ"],
                p_FILTER_RANGE=params["FILTER_RANGE"],
                io_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=ClockSignal("sync"), o_LOCK=locked)
            # the oscillator pin is not requested as a clock here, so say what the PLL makes
            platform.add_clock_constraint(sync.clk, self.pll.output_hz)
        else:
            clock = platform.request(platform.default_clk, dir="i")
            feedback = Signal()
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{self.pll.input_hz / 1e6:g}",
                a_FREQUENCY_PIN_CLKOP=f"{self.pll.output_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1",
                a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_FEEDBK_PATH="CLKOP",
                p_CLKI_DIV=params["CLKI_DIV"], p_CLKFB_DIV=params["CLKFB_DIV"],
                p_CLKOP_DIV=params["CLKOP_DIV"], p_CLKOP_CPHASE=params["CLKOP_DIV"] - 1,
                p_CLKOP_FPHASE=0, p_CLKOP_ENABLE="ENABLED",
                i_CLKI=clock.i, i_CLKFB=feedback, o_CLKOP=feedback, i_RST=0, i_STDBY=0,
                i_PHASESEL0=0, i_PHASESEL1=0, i_PHASEDIR=0, i_PHASESTEP=0, i_PHASELOADREG=0,
                i_PLLWAKESYNC=0, i_ENCLKOP=0, o_LOCK=locked)
            m.d.comb += ClockSignal("sync").eq(feedback)   # nextpnr derives its constraint from CLKI
        m.d.comb += ResetSignal("sync").eq(~locked)
        return m
