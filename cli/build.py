"""``hone build`` and ``hone program``: a network file to a bitstream, and onto a board."""

import json
import pathlib
import shutil
import subprocess

from hone.cli.rtl import check_lanes, lanes_argument
from hone.cli.arguments import UserError, integer_in, number_in

from hone.boards.targets import BOARDS, BoardError, get_board

__all__ = ["add_commands", "build_bitstream", "format_build", "program_command"]


TIME_LIMIT_S = 3600   # default bound on a build's tool run; nextpnr on a congested part can route for hours
# block RAM fill above which nextpnr's router2 routes instead of router1: the 784-384-192-384-784
# autoencoder (180 of the ULX3S-85F's 208) left router1 with 35,000 unrouted arcs after 12 minutes and
# router2 done in 3; at 113 of 208 (the dense default) router1 finishes in 3 minutes with more fmax
# (52.3 against 45.2 MHz), so it stays the default below (README "Bitstreams")
CONGESTED_BRAM = 0.75
LINE_MARGIN = 1.5    # default lanes: the fewest whose compute rate is at least this times the line rate


def lanes_choice(text):
    """``--lanes``: a positive integer, or ``max`` (the most that fit)."""
    return "max" if text == "max" else lanes_argument(text)


class TestImages:
    """The network's test images and their reference spikes, loaded once for every lane count tried
    (none when the network file names no data set: then the core's worst case stands in)."""

    def __init__(self, network_path, images=None):
        from hone.network.datasets import network_test_images
        from hone.network.integer import IntegerNetwork
        from hone.network.netfile import read_network

        network, meta = read_network(network_path)
        self.dataset = None
        if meta.get("dataset"):
            network, self.pixels, labels, self.dataset = network_test_images(network_path, images)
            self.reference = IntegerNetwork(network).run(self.pixels)
            if network.classes:
                self.accuracy = float((self.reference.classes == labels).mean())
            else:     # a spike output: the pixel accuracy of its reconstructions
                from hone.network.reconstruction import reconstruction_figures

                self.accuracy = reconstruction_figures(self.reference.outputs, labels)["pixel_accuracy"]
        else:
            self.pixels, self.reference, self.accuracy = [], None, None
        self.network = network
        self._rates = {}

    def cycles(self, lanes):
        """Core cycles per test image (or the worst case, as one figure)."""
        import numpy as np

        from hone.rtl.cycles import inference_cycles
        from hone.rtl.plan import CorePlan

        plan = CorePlan(self.network, lanes=lanes)
        if self.dataset:
            return inference_cycles(plan, self.pixels, self.reference.spikes)
        return np.array([plan.worst_cycles()])

    def per_image(self, lanes):
        """Clocks per image back to back: the core double-buffers its input, so an image takes the
        longer of running the one ahead (plus the gap between results) and loading itself."""
        import numpy as np

        from hone.rtl.board import loader_cycles
        from hone.rtl.cycles import RESULT_GAP

        return float(np.maximum(self.cycles(lanes) + RESULT_GAP, loader_cycles(self.network)).mean())

    def line_rate(self, baud, clock_hz):
        """``(images/s, bytes up, bytes down)`` on the line at ``baud`` (:func:`protocol.line_rate`):
        with the test images' mean bytes on the wire, in the shortest encoding the board at ``clock_hz``
        decodes (:func:`hone.rtl.board.link_figures`)."""
        import numpy as np

        from hone.rtl import protocol
        from hone.rtl.board import link_figures

        figures = link_figures(self.network, clock_hz=clock_hz, baud=baud, slots=4)
        encodings = figures["encodings"]
        if (baud, encodings) in self._rates:
            return self._rates[baud, encodings]
        up = None
        if len(self.pixels):
            flat = np.asarray(self.pixels).reshape(len(self.pixels), -1)
            up = float(np.mean([protocol.request_frame_bytes(protocol.pack_image(image, self.network.input.bits),
                                                             encodings=encodings, row_bytes=figures["row_bytes"])
                                for image in flat]))
        self._rates[baud, encodings] = protocol.line_rate(
            baud=baud, image_bytes=protocol.image_bytes(self.network.input.size, self.network.input.bits),
            outputs=self.network.layers[-1].outputs, up=up)
        return self._rates[baud, encodings]


def inference_figures(network_path, *, lanes, clock_hz, fmax_hz, baud, images=None, test=None):
    """Cycles per inference over the test set (the verified cycle model of the core, overlapped
    with the board's loader), compute throughput at the clock and at fmax, and the UART-bound
    throughput."""
    test = test or TestImages(network_path, images)
    cycles = test.cycles(lanes)
    per_image = test.per_image(lanes)
    from hone.rtl.board import loader_cycles

    uart, up, down = test.line_rate(baud, clock_hz)
    return {
        "dataset": test.dataset, "images": len(test.pixels), "accuracy": test.accuracy,
        "cycles_basis": "test images" if test.dataset else "worst case (the network file names no data set)",
        "core_cycles_mean": float(cycles.mean()), "core_cycles_max": int(cycles.max()),
        "load_cycles": loader_cycles(test.network), "cycles_per_inference": per_image,
        "compute_inferences_per_s": clock_hz / per_image,
        "compute_inferences_per_s_at_fmax": None if fmax_hz is None else fmax_hz / per_image,
        "uart_inferences_per_s": uart, "uart_bytes_up": up, "uart_bytes_down": down,
        "compute_over_line": clock_hz / per_image / uart,
    }


def lanes_for_link(test, fitting, *, clock_hz, baud, margin=LINE_MARGIN):
    """The fewest of ``fitting`` lane counts whose compute rate at ``clock_hz`` is at least ``margin``
    times the line rate at ``baud`` (more lanes would only wait for the line), or the most of them
    when none keeps up; with the rates, for the log."""
    line = test.line_rate(baud, clock_hz)[0]
    for lanes in sorted(fitting):
        rate = clock_hz / test.per_image(lanes)
        if rate >= margin * line:
            return lanes, rate, line
    lanes = max(fitting)
    return lanes, clock_hz / test.per_image(lanes), line


def choose_router(fit):
    """nextpnr's router for a design of this :class:`~hone.boards.fit.FitReport`: ``"router2"`` when its
    block RAM estimate fills more than :data:`CONGESTED_BRAM` of the part, else ``"router1"``."""
    return "router2" if fit.bram_blocks > CONGESTED_BRAM * fit.bram_available else "router1"


def build_bitstream(network_path, *, board, output, lanes=None, clock_mhz=None, baud=None, seed=1,
                    router=None, images=None, time_limit_s=TIME_LIMIT_S, progress=True, log=print):
    """Fit check, lane choice, bitstream, figures; writes ``output``/report.json and report.md.

    ``lanes`` None: the fewest lanes whose compute keeps up with the line (with :data:`LINE_MARGIN`);
    ``"max"``: the most that fit (fewer if timing fails). ``baud`` None: the target's rate at the clock
    (:meth:`~hone.boards.targets.BoardTarget.uart`). ``router`` None: :func:`choose_router`'s, per
    attempt. ``time_limit_s`` bounds each attempt's tool run, in seconds; one that runs over is
    stopped and raises :class:`UserError`."""
    from hone.network.netfile import NetworkFileError, read_network

    from hone.boards.build import BuildError, run_flow
    from hone.boards.fit import FitError, check_fit, choose_lanes
    from hone.boards.pll import plan_clock
    from hone.boards.targets import uart_setting

    test = None
    try:
        target = get_board(board)
        network, _ = read_network(network_path)
        if isinstance(lanes, int):
            check_lanes(network, lanes)
        clock_hz = target.clock_hz if clock_mhz is None else clock_mhz * 1e6
        if not 0 < clock_hz <= target.max_clock_hz:
            raise BoardError(f"--clock {clock_hz / 1e6:g} MHz is outside 0..{target.max_clock_hz / 1e6:g} "
                             f"MHz for {target.name}")
        clock_hz, _ = plan_clock(target.family, target.oscillator_hz(), clock_hz)
        try:
            uart = target.uart(clock_hz) if baud is None else uart_setting(clock_hz, baud)
        except ValueError as error:
            raise BoardError(f"--baud {baud}: {error}") from None
        baud = uart.baud
        log(f"UART {uart.describe()} ({target.uart_bridge}: up to {target.max_baud:,} baud)")
        if lanes not in (None, "max"):
            candidates = [lanes]
            fit = check_fit(network, target, lanes=lanes, clock_hz=clock_hz, baud=baud)
        else:
            candidates = choose_lanes(network, target, clock_hz=clock_hz, baud=baud)
            if lanes == "max":
                log(f"lanes that fit {target.name}: {', '.join(map(str, candidates))} (trying the most first)")
            else:
                test = TestImages(network_path, images)
                chosen, rate, line = lanes_for_link(test, candidates, clock_hz=clock_hz, baud=baud)
                log(f"{chosen} lanes: {rate:,.0f} inferences/s at {clock_hz / 1e6:g} MHz against the line's "
                    f"{line:,.0f}/s at {baud:,} baud (the fewest lanes with at least {LINE_MARGIN:g}x; "
                    f"--lanes max builds the most that fit: {candidates[0]})")
                candidates = [chosen]
    except (NetworkFileError, FitError, BoardError, ValueError) as error:
        raise UserError(str(error)) from None

    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    attempts = []
    for candidate in candidates:
        if lanes != candidate:
            fit = check_fit(network, target, lanes=candidate, clock_hz=clock_hz, baud=baud)
        chosen_router = router or choose_router(fit)
        log(f"building {target.name} with {candidate} lanes at {clock_hz / 1e6:g} MHz (nextpnr {chosen_router})")
        try:
            result = run_flow(network, target, lanes=candidate, clock_hz=clock_hz, baud=baud,
                              build_dir=output / "build", seed=seed, router=chosen_router, progress=progress,
                              time_limit_s=time_limit_s)
        except BuildError as error:
            # a choice of ours that the tools could not place (the logic estimate is a model) is
            # not the user's error while fewer lanes remain to try
            if lanes != "max" or candidate == candidates[-1]:
                raise UserError(str(error)) from None
            attempts.append({"lanes": candidate, "failed": str(error).splitlines()[0]})
            log(f"{candidate} lanes did not build ({str(error).splitlines()[0]}); trying fewer lanes")
            continue
        attempts.append({"lanes": candidate, "fmax_hz": result["fmax_hz"], "timing_met": result["timing_met"],
                         "seconds": result["seconds"]["total"]})
        if result["timing_met"] or lanes != "max":
            break
        log(f"timing not met with {candidate} lanes: fmax {result['fmax_hz'] / 1e6:.1f} MHz < "
            f"{clock_hz / 1e6:g} MHz; trying fewer lanes")

    bitstream = output / pathlib.Path(result["bitstream"]).name
    shutil.copyfile(result["bitstream"], bitstream)
    report = {
        "network": str(network_path), "network_sha256": network.sha256, **result,
        "bitstream": str(bitstream), "bitstream_bytes": bitstream.stat().st_size,
        "uart": {"bridge": target.uart_bridge, "bridge_max_baud": target.max_baud, **uart.as_dict()},
        "lanes_policy": {None: f"fewest with compute >= {LINE_MARGIN:g}x line rate", "max": "most that fit"}.get(
            lanes, "given"),
        "fit_estimate": fit.as_dict(), "attempts": attempts,
        "inference": inference_figures(network_path, lanes=result["lanes"], clock_hz=result["clock_hz"],
                                       fmax_hz=result["fmax_hz"], baud=baud, images=images, test=test),
    }
    report["seconds"]["total_all_attempts"] = round(sum(a.get("seconds", 0) for a in attempts), 1)
    (output / "report.json").write_text(json.dumps(report, indent=1))
    plot_build(report, output / "build.png")
    (output / "report.md").write_text(format_build(report) + "\n\n![resources and throughput](build.png)\n")
    return report


def plot_build(report, path):
    """Resource use against the part, and throughput: compute (clock, fmax) against the UART."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [("logic", "LUT"), ("ff", "FF"), ("bram", "block RAM"), ("dsp", "DSP")]
    res = report["resources"]
    shares = [100 * res[k]["used"] / max(res[k]["available"], 1) for k, _ in kinds]
    inf = report["inference"]
    rates = [("compute @ clock", inf["compute_inferences_per_s"]),
             ("compute @ fmax", inf["compute_inferences_per_s_at_fmax"] or 0),
             ("UART end-to-end", inf["uart_inferences_per_s"])]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    left.bar([label for _, label in kinds], shares, color="tab:blue")
    for x, (share, (kind, _)) in enumerate(zip(shares, kinds)):
        left.text(x, share + 1, f"{res[kind]['used']:,}", ha="center", fontsize=8)
    left.set_ylim(0, 110)
    left.set_ylabel(f"% of {report['part']}")
    left.set_title(f"{report['board']}, {report['lanes']} lanes")
    right.bar([name for name, _ in rates], [rate for _, rate in rates], color=["tab:green", "tab:olive", "tab:red"])
    right.set_yscale("log")
    right.set_ylabel("inferences / s")
    right.set_title(f"clock {report['clock_hz'] / 1e6:g} MHz, fmax {report['fmax_hz'] / 1e6:.1f} MHz")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def format_build(report):
    res = report["resources"]
    inf = report["inference"]
    fmax = report["fmax_hz"]
    pll = "oscillator" if report["pll"] is None else "PLL " + ", ".join(f"{k}={v}" for k, v in report["pll"].items())
    lines = [
        f"**{report['board']}** ({report['part']}): `{report['network']}`",
        "",
        f"| | |",
        f"|---|---|",
        f"| bitstream | `{report['bitstream']}` ({report['bitstream_bytes']:,} bytes) |",
        f"| lanes | {report['lanes']} |",
        f"| clock | {report['clock_hz'] / 1e6:g} MHz ({pll}) |",
        f"| post-route fmax | {fmax / 1e6:.1f} MHz: timing {'met' if report['timing_met'] else 'NOT met'} |",
        f"| logic cells (LUT) | {res['logic']['used']:,} / {res['logic']['available']:,} "
        f"({100 * res['logic']['used'] / max(res['logic']['available'], 1):.1f}%) |",
        f"| flip-flops | {res['ff']['used']:,} / {res['ff']['available']:,} |",
        f"| block RAM | {res['bram']['used']} / {res['bram']['available']} blocks "
        f"(estimated before synthesis: {report['fit_estimate']['bram_blocks']}) |",
        f"| DSP | {res['dsp']['used']} / {res['dsp']['available']} |",
        f"| cycles per inference | {inf['cycles_per_inference']:,.0f} back to back: core {inf['core_cycles_mean']:,.0f} "
        f"mean (max {inf['core_cycles_max']:,}) overlapped with loading {inf['load_cycles']:,}; "
        + (f"{inf['images']:,} {inf['dataset']} test images |" if inf["dataset"] else f"{inf['cycles_basis']} |"),
        f"| compute throughput | {inf['compute_inferences_per_s']:,.0f} inferences/s at the clock"
        + (f", {inf['compute_inferences_per_s_at_fmax']:,.0f} at fmax" if fmax else "") + " |",
        f"| UART | {report['baud']:,} baud ({report['uart']['bridge']}, up to {report['uart']['bridge_max_baud']:,}): "
        f"{report['uart']['clocks_per_bit']} clocks per bit, bit time {report['uart']['rate_error']:+.2%} off "
        f"nominal; the receiver tolerates bits {report['uart']['tolerance_slower']:.1%} slower and "
        f"{report['uart']['tolerance_faster']:.1%} faster |",
        f"| end-to-end (UART) | {inf['uart_inferences_per_s']:,.1f} inferences/s at {report['baud']:,} baud "
        f"({inf['uart_bytes_up']:.1f} bytes up, {inf['uart_bytes_down']} down per image); compute is "
        f"{inf['compute_over_line']:.1f}x the line rate (lanes: {report['lanes_policy']}) |",
        f"| integer-model accuracy | "
        + ("- (no test images)" if inf["accuracy"] is None else f"{100 * inf['accuracy']:.2f}%") + " |",
        f"| build time | {report['seconds']['total']:.0f} s (elaborate {report['seconds']['elaborate']:.0f}, "
        f"synthesis {report['seconds']['synthesis']:.0f}, place and route {report['seconds']['place']:.0f} "
        f"with nextpnr's {report['router']}, pack {report['seconds']['bitstream']:.0f}) |",
    ]
    if len(report["attempts"]) > 1:
        lines.append("")
        lines.append("Lanes tried: " + ", ".join(
            f"{a['lanes']} (did not build)" if "failed" in a else
            f"{a['lanes']} ({a['fmax_hz'] / 1e6:.1f} MHz, {'met' if a['timing_met'] else 'failed'})"
            for a in report["attempts"]))
    return "\n".join(lines)


def cmd_build(args):
    report = build_bitstream(args.network, board=args.board, output=args.output, lanes=args.lanes,
                             clock_mhz=args.clock, baud=args.baud, seed=args.seed,
                             router=None if args.router == "auto" else args.router, images=args.images,
                             time_limit_s=args.time_limit * 60, progress=not args.json)
    print(format_build(report))
    if args.json:
        print(json.dumps(report))
    if not report["timing_met"]:
        raise UserError(f"timing not met: fmax {report['fmax_hz'] / 1e6:.1f} MHz < clock "
                        f"{report['clock_hz'] / 1e6:g} MHz (bitstream kept in {report['bitstream']}); "
                        f"build again with --clock {int(report['fmax_hz'] / 1e6)} or fewer --lanes")


def time_limit_argument(parser):
    """``--time-limit MINUTES``, shared by ``hone build`` and ``hone flow``."""
    parser.add_argument("--time-limit", type=number_in(0, low_open=True), default=TIME_LIMIT_S / 60,
                        metavar="MINUTES", help="stop Yosys and nextpnr, and fail, when a build runs longer "
                                                "(default: %(default)g)")


def program_command(build_dir, *, board=None, flash=False, cable=None):
    """The openFPGALoader command line that loads ``build_dir``'s bitstream."""
    from hone.boards.build import BuildError, tool_environment

    report_path = pathlib.Path(build_dir) / "report.json"
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise UserError(f"{report_path} not found: run hone build ... -o {build_dir} first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{report_path} is not valid JSON ({error})") from None
    except OSError as error:
        raise UserError(f"{report_path}: cannot read it ({error.strerror or error})") from None
    if not isinstance(report, dict):
        raise UserError(f"{report_path}: expected an object (hone build's report), got {type(report).__name__}")
    for field, what in (("board", "a board name"), ("bitstream", "a file name")):
        if not isinstance(report.get(field), str):
            raise UserError(f"{report_path}: {field}: expected {what}, got {json.dumps(report.get(field))[:60]}")
    built_for = report.get("board")
    if board is not None and board != built_for:
        raise UserError(f"{build_dir} was built for {built_for!r}, not {board!r}: build it for {board} first")
    try:
        target = get_board(built_for)
        loader = tool_environment()["OPENFPGALOADER"]
    except (BoardError, BuildError) as error:
        raise UserError(str(error)) from None
    bitstream = pathlib.Path(build_dir) / pathlib.Path(report["bitstream"]).name
    if not bitstream.exists():
        raise UserError(f"bitstream {bitstream} not found (report.json names it)")
    command = [loader]
    command += ["-c", cable] if cable else ["-b", target.loader_board]
    # iCE40 boards are loaded through their SPI flash; ECP5 into SRAM unless asked for flash
    if flash or target.family == "ice40":
        command.append("-f")
    command.append(str(bitstream))
    return command


def cmd_program(args):
    command = program_command(args.build_dir, board=args.board, flash=args.flash, cable=args.cable)
    print(" ".join(command))
    if args.dry_run:
        return
    result = subprocess.run(command, capture_output=True, text=True)
    output = (result.stdout + result.stderr).strip()
    if result.returncode != 0 or "unable to open" in output or "JTAG init failed" in output:
        if any(text in output for text in ("device not found", "unable to open", "Failed to claim", "No cable")):
            raise UserError("no programming cable found: is the board plugged in over USB, and may this "
                            "user open it (udev rules / plugdev group)? openFPGALoader said:\n" + output)
        raise UserError(f"openFPGALoader failed (exit {result.returncode}):\n{output}")
    print(output)


def add_commands(commands):
    build = commands.add_parser(
        "build", help="build a bitstream for a board",
        description="Check that the network fits, choose the lanes, elaborate the board top level and "
                    "run Yosys, nextpnr and the packer (YoWASP); writes the bitstream, report.json and "
                    "report.md (resources, fmax, cycles per inference, throughput).")
    build.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    build.add_argument("--board", required=True, choices=sorted(BOARDS))
    build.add_argument("--lanes", type=lanes_choice, metavar="P|max",
                       help=f"neuron units (default: the fewest whose compute rate is at least {LINE_MARGIN:g}x "
                            f"the line rate; max: the most that fit and meet timing)")
    build.add_argument("--clock", type=number_in(0, low_open=True), metavar="MHZ",
                       help="design clock in MHz, through the PLL (default: the board's)")
    build.add_argument("--baud", type=integer_in(1),
                       help="UART line rate (default: the board's: the fastest standard rate its USB-serial "
                            "bridge runs at a whole number of clocks per bit)")
    build.add_argument("--seed", type=integer_in(0), default=1, help="nextpnr placement seed")
    build.add_argument("--router", choices=("auto", "router1", "router2"), default="auto",
                       help=f"nextpnr's router (default auto: router2 when block RAM is more than "
                            f"{CONGESTED_BRAM * 100:g}%% full, where router1 takes far longer; else router1)")
    build.add_argument("--images", type=integer_in(1), help="test images for the cycle figures (default: all)")
    time_limit_argument(build)
    build.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="DIR")
    build.add_argument("--json", action="store_true", help="last stdout line: the report as one JSON object")
    build.set_defaults(handler=cmd_build)

    program = commands.add_parser(
        "program", help="load a built bitstream onto a board (openFPGALoader)",
        description="Load DIR's bitstream with openFPGALoader: ECP5 boards into SRAM (--flash: into the "
                    "configuration flash), iCE40 boards through their SPI flash.")
    program.add_argument("build_dir", type=pathlib.Path, metavar="DIR", help="output folder of hone build")
    program.add_argument("--board", choices=sorted(BOARDS), help="refuse a DIR built for another board")
    program.add_argument("--flash", action="store_true", help="write the configuration flash (persists)")
    program.add_argument("--cable", help="an openFPGALoader cable instead of the board's own programmer")
    program.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    program.set_defaults(handler=cmd_program)
