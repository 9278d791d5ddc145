"""``hone build`` and ``hone program``: a network file to a bitstream, and onto a board.

The work is :func:`hone.boards.build.build_bitstream` and :func:`hone.boards.build.program_command`;
this module parses the arguments and prints the report.
"""

import json
import pathlib
import subprocess

from hone.boards.build import CONGESTED_BRAM, LINE_MARGIN, TIME_LIMIT_S, build_bitstream, program_command
from hone.boards.report import format_build
from hone.boards.targets import TARGETS
from hone.cli.arguments import UserError, integer_in, number_in
from hone.cli.rtl import lanes_argument

__all__ = ["add_commands", "format_build", "time_limit_argument"]


def lanes_choice(text):
    """``--lanes``: a positive integer, or ``max`` (the most that fit)."""
    return "max" if text == "max" else lanes_argument(text)


def cmd_build(args):
    report = build_bitstream(args.network, board=args.board, output=args.output, lanes=args.lanes,
                             clock_mhz=args.clock, baud=args.baud, seed=args.seed,
                             router=None if args.router == "auto" else args.router, images=args.images,
                             time_limit_s=args.time_limit * 60, progress=not args.json)
    print(format_build(report))
    if args.json:
        print(json.dumps(report.to_json()))
    if not report.timing_met:
        raise UserError(f"timing not met: fmax {report.fmax_hz / 1e6:.1f} MHz < clock "
                        f"{report.clock_hz / 1e6:g} MHz (bitstream kept in {report.bitstream}); "
                        f"build again with --clock {int(report.fmax_hz / 1e6)} or fewer --lanes")


def time_limit_argument(parser):
    """``--time-limit MINUTES``, shared by ``hone build`` and ``hone flow``."""
    parser.add_argument("--time-limit", type=number_in(0, low_open=True), default=TIME_LIMIT_S / 60,
                        metavar="MINUTES", help="stop Yosys and nextpnr, and fail, when a build runs longer "
                                                "(default: %(default)g)")


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
    build.add_argument("--board", required=True, choices=sorted(TARGETS))
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
    program.add_argument("--board", choices=sorted(TARGETS), help="refuse a DIR built for another board")
    program.add_argument("--flash", action="store_true", help="write the configuration flash (persists)")
    program.add_argument("--cable", help="an openFPGALoader cable instead of the board's own programmer")
    program.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    program.set_defaults(handler=cmd_program)
