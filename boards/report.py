"""A build's report: :class:`BuildReport` (``hone build --json``), its markdown and its plot."""

import dataclasses
import pathlib

from hone.network.report import Report

from .throughput import InferenceFigures

__all__ = ["BuildReport", "format_build", "plot_build"]


@dataclasses.dataclass
class BuildReport(Report):
    """What :func:`hone.boards.build.build_bitstream` measured; ``to_json()`` is ``hone build --json``.

    ``resources`` maps ``logic``, ``ff``, ``bram`` and ``dsp`` to ``{"used", "available"}`` cells (post
    route); ``fmax_hz`` is nextpnr's post-route fmax in Hz (None when it reports none); ``seconds`` the
    tool time per stage (``elaborate``, ``synthesis``, ``place``, ``bitstream``, ``total``) and over every
    attempt (``total_all_attempts``); ``pll`` the PLL's divider parameters (None: the oscillator);
    ``uart`` the bridge and :meth:`~hone.boards.targets.UARTSetting.as_dict`; ``fit_estimate``
    :meth:`~hone.boards.fit.FitReport.as_dict` of the lanes built; ``attempts`` one
    ``{"lanes", "fmax_hz", "timing_met", "seconds"}`` (or ``{"lanes", "failed"}``) per build tried.
    """
    network: pathlib.Path
    network_sha256: str
    board: str
    part: str
    family: str
    lanes: int
    clock_hz: float
    oscillator_hz: float
    pll: dict | None
    baud: int
    seed: int
    router: str
    resources: dict
    fmax_hz: float | None
    timing_met: bool
    seconds: dict
    bitstream: pathlib.Path
    bitstream_bytes: int
    uart: dict
    lanes_policy: str
    fit_estimate: dict
    attempts: list
    inference: InferenceFigures


def plot_build(report, path):
    """Write a PNG to ``path``: resource use against the part, and throughput: compute (clock, fmax)
    against the UART."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [("logic", "LUT"), ("ff", "FF"), ("bram", "block RAM"), ("dsp", "DSP")]
    res = report.resources
    shares = [100 * res[k]["used"] / max(res[k]["available"], 1) for k, _ in kinds]
    inf = report.inference
    rates = [("compute @ clock", inf.compute_inferences_per_s),
             ("compute @ fmax", inf.compute_inferences_per_s_at_fmax or 0),
             ("UART end-to-end", inf.uart_inferences_per_s)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar([label for _, label in kinds], shares, color="tab:blue")
    for x, (share, (kind, _)) in enumerate(zip(shares, kinds)):
        left.text(x, share + 1, f"{res[kind]['used']:,}", ha="center", fontsize=8)
    left.set_ylim(0, 110)
    left.set_ylabel(f"% of {report.part}")
    left.set_title(f"{report.board}, {report.lanes} lanes")
    right.bar([name for name, _ in rates], [rate for _, rate in rates], color=["tab:green", "tab:olive", "tab:red"])
    right.set_yscale("log")
    right.set_ylabel("inferences / s")
    right.set_title(f"clock {report.clock_hz / 1e6:g} MHz, fmax {(report.fmax_hz or 0) / 1e6:.1f} MHz")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_build(report):
    """The :class:`BuildReport` as a markdown table (``report.md``)."""
    res = report.resources
    inf = report.inference
    fmax = report.fmax_hz
    uart = report.uart
    seconds = report.seconds
    pll = "oscillator" if report.pll is None else "PLL " + ", ".join(f"{k}={v}" for k, v in report.pll.items())
    lines = [
        f"**{report.board}** ({report.part}): `{report.network}`",
        "",
        "| | |",
        "|---|---|",
        f"| bitstream | `{report.bitstream}` ({report.bitstream_bytes:,} bytes) |",
        f"| lanes | {report.lanes} |",
        f"| clock | {report.clock_hz / 1e6:g} MHz ({pll}) |",
        "| post-route fmax | " + (f"{fmax / 1e6:.1f} MHz" if fmax else "not reported by nextpnr")
        + f": timing {'met' if report.timing_met else 'NOT met'} |",
        f"| logic cells (LUT) | {res['logic']['used']:,} / {res['logic']['available']:,} "
        f"({100 * res['logic']['used'] / max(res['logic']['available'], 1):.1f}%) |",
        f"| flip-flops | {res['ff']['used']:,} / {res['ff']['available']:,} |",
        f"| block RAM | {res['bram']['used']} / {res['bram']['available']} blocks "
        f"(estimated before synthesis: {report.fit_estimate['bram_blocks']}) |",
        f"| DSP | {res['dsp']['used']} / {res['dsp']['available']} |",
        f"| cycles per inference | {inf.cycles_per_inference:,.0f} back to back: core {inf.core_cycles_mean:,.0f} "
        f"mean (max {inf.core_cycles_max:,}) overlapped with loading {inf.load_cycles:,}; "
        + (f"{inf.images:,} {inf.dataset} test images |" if inf.dataset else f"{inf.cycles_basis} |"),
        f"| compute throughput | {inf.compute_inferences_per_s:,.0f} inferences/s at the clock"
        + (f", {inf.compute_inferences_per_s_at_fmax:,.0f} at fmax" if fmax else "") + " |",
        f"| UART | {report.baud:,} baud ({uart['bridge']}, up to {uart['bridge_max_baud']:,}): "
        f"{uart['clocks_per_bit']} clocks per bit, bit time {uart['rate_error']:+.2%} off "
        f"nominal; the receiver tolerates bits {uart['tolerance_slower']:.1%} slower and "
        f"{uart['tolerance_faster']:.1%} faster |",
        f"| end-to-end (UART) | {inf.uart_inferences_per_s:,.1f} inferences/s at {report.baud:,} baud "
        f"({inf.uart_bytes_up:.1f} bytes up, {inf.uart_bytes_down} down per image); compute is "
        f"{inf.compute_over_line:.1f}x the line rate (lanes: {report.lanes_policy}) |",
        "| integer-model accuracy | "
        + ("- (no test images)" if inf.accuracy is None else f"{100 * inf.accuracy:.2f}%") + " |",
        f"| build time | {seconds['total']:.0f} s (elaborate {seconds['elaborate']:.0f}, "
        f"synthesis {seconds['synthesis']:.0f}, place and route {seconds['place']:.0f} "
        f"with nextpnr's {report.router}, pack {seconds['bitstream']:.0f}) |",
    ]
    if len(report.attempts) > 1:
        lines.append("")
        lines.append("Lanes tried: " + ", ".join(
            f"{a['lanes']} (did not build)" if "failed" in a else
            f"{a['lanes']} ({a['fmax_hz'] / 1e6:.1f} MHz, {'met' if a['timing_met'] else 'failed'})"
            for a in report.attempts))
    return "\n".join(lines)
