"""``hone infer``: test images through a board (real or simulated), checked against the reference.

:func:`hone.host.infer.run_infer` does the work; this module parses, prints and refuses. A simulated
board (``--sim``) simulates a board target: ``--build``'s, ``--board``'s, or
:data:`~hone.boards.targets.DEFAULT_TARGET`, at its design clock and line rate
(:func:`hone.host.board.simulated_target`).
"""

import json
import pathlib

from hone.cli.arguments import UsageError, UserError, integer_in, number_in
from hone.host.board import SERIAL_BAUD

__all__ = ["add_commands", "format_infer"]


def _build_report(folder):
    path = pathlib.Path(folder) / "report.json"
    try:
        report = json.loads(path.read_text())
        return {key: report[key] for key in ("baud", "clock_hz", "lanes")}
    except FileNotFoundError:
        raise UsageError(f"argument --build: {path} not found: the output folder of hone build") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(f"argument --build: {path} is not a hone build report ({error!r})") from None


def format_infer(report):
    """The lines ``hone infer`` prints for an :class:`~hone.host.infer.InferReport`."""
    from hone.network.reconstruction import format_reconstruction

    n = report.images
    link = report.link
    errors = ", ".join(f"{name} {count}" for name, count in sorted(link["errors"].items())) or "none"
    return "\n".join([
        f"board                   {report.board}",
        f"images                  {n} ({report.dataset} test set): {report.results} results, "
        f"{report.lost} lost, {report.duplicated} duplicated, {'in order' if report.in_order else 'OUT OF ORDER'}",
    ] + ([
        f"reconstruction          {format_reconstruction(report.reconstruction)}",
        f"agreement               output spikes {report.spike_agreement}/{n} with the integer reference "
        f"(bit for bit)",
    ] if report.reconstruction is not None else [
        f"accuracy                {report.accuracy:.2%}",
        f"agreement               classes {report.class_agreement}/{n}, output spikes "
        f"{report.spike_agreement}/{n} with the integer reference",
    ]) + [
        f"throughput              {report.images_per_s_board:.2f} images/s in board time "
        f"({report.board_seconds:.2f} s at {report.clock_hz / 1e6:g} MHz), "
        f"{report.images_per_s_wall:.2f} images/s wall",
        f"bytes per image         {report.wire_bytes_up_per_image:.1f} up on the wire (retries included; "
        f"{report.frame_bytes_up:.1f} on a clean line, {report.raw_frame_bytes_up} as raw frames"
        f"{', encoded where it pays' if report.encodings else ''}), {report.frame_bytes_down} down",
        f"line-rate limit         {report.line_rate_limit:.2f} images/s at {report.baud:,} baud "
        f"-> {report.line_rate_fraction:.1%} reached",
        f"link                    {link['frames_sent']} frames, {link['retransmissions']} resent "
        f"({link['timeouts']} timeouts, {link['overtaken']} overtaken), errors from the board: {errors}, "
        f"{link['bad_frames_received']} bad frames received, final chunk {link['chunk']} bytes",
        f"INFER frames per image  {report.infer_attempts_mean:.2f}",
    ] + ([f"faults injected         to the board {_faults(report.simulation['faults_to_board'])}; to the host "
          f"{_faults(report.simulation['faults_to_host'])}"] if report.simulation else []) + _activity_lines(report))


def _activity_lines(report):
    if not report.activity:
        return []
    from hone.network.activity import format_activity

    plot = report.activity.get("plot")
    return [format_activity(report.activity)] + ([f"activity plot           {plot}"] if plot else [])


def _faults(counts):
    return ", ".join(f"{count} {kind}" for kind, count in counts.items())


def cmd_infer(args):
    from hone.host.infer import run_infer

    if (args.port is None) == (not args.sim):
        raise UsageError("give either --port PORT (a board) or --sim (a simulated board)")
    simulation = None
    baud, clock_hz, lanes = args.baud, args.clock, args.lanes
    if args.build is not None:                  # the board a hone build made: its rate (and for --sim all of it)
        report = _build_report(args.build)
        baud, clock_hz, lanes = baud or report["baud"], report["clock_hz"], report["lanes"]
    elif args.board is not None and not args.sim:   # a board target's rate
        from hone.boards.targets import get_target

        baud = baud or get_target(args.board).uart().baud
    if args.sim:         # Board.open: the target's clock and its rate at that clock, unless given
        simulation = {"target": args.board, "simulator": args.simulator, "lanes": lanes, "clock_hz": clock_hz,
                      "slots": args.slots, "faults": args.faults, "seed": args.seed, "build_root": args.build_dir}
    elif args.faults:
        raise UsageError("argument --faults: applies to a simulated board (--sim) only")
    report = run_infer(args.network, images=args.images, port=args.port, baud=baud, dataset=args.dataset,
                       chunk=args.chunk, progress=not args.json, activity_plot=args.activity_plot,
                       simulation=simulation, deadline=args.deadline)
    print(format_infer(report))
    if args.json:
        print(json.dumps(report.to_json()))
    if not report.equal:
        raise UserError("the board's results differ from the reference or are incomplete")


def add_commands(commands):
    from hone.boards.targets import TARGETS, DEFAULT_TARGET
    from hone.cli.sim import add_board_arguments
    from hone.cli.arguments import dataset_argument

    infer = commands.add_parser(
        "infer", help="run test images on a board over serial and check them",
        description="Stream test images to a board (or a simulated one) over the serial protocol, and "
                    "compare every class and output spike vector with the integer reference.")
    infer.add_argument("network", type=pathlib.Path, help="the network file the board runs")
    where = infer.add_mutually_exclusive_group()
    where.add_argument("--port", metavar="PORT", help="serial port of the board, e.g. /dev/ttyUSB1")
    where.add_argument("--sim", action="store_true", help="start a simulated board and use it")
    infer.add_argument("--baud", type=integer_in(1),
                       help=f"line rate (default: the rate in --build's report or --board's, else {SERIAL_BAUD} "
                            f"for --port and {DEFAULT_TARGET}'s for --sim; a board that answers at another "
                            f"standard rate is named with it)")
    target = infer.add_mutually_exclusive_group()
    target.add_argument("--build", type=pathlib.Path, metavar="DIR",
                        help="the folder of the board's hone build: its baud rate; with --sim, a simulated board "
                             "at its clock, rate and lanes")
    target.add_argument("--board", choices=sorted(TARGETS),
                        help=f"the board's target: its rate; with --sim, simulate its design clock and rate "
                             f"(default: {DEFAULT_TARGET})")
    infer.add_argument("--images", type=integer_in(1), default=100, metavar="N", help="first N test images (default: 100)")
    infer.add_argument("--dataset", type=dataset_argument, metavar="NAME|FILE.npz",
                       help="test images (default: the one named in the network file)")
    infer.add_argument("--chunk", type=integer_in(1), metavar="BYTES",
                       help="image bytes per frame (default: adaptive, from the whole image down)")
    infer.add_argument("--deadline", type=number_in(0, low_open=True), metavar="S",
                       help="give up when the board has answered nothing for S seconds (default: 30; 120 "
                            "for a simulated board)")
    infer.add_argument("--activity-plot", type=pathlib.Path, metavar="FILE",
                       help="also plot the activity report (spikes, synaptic operations, Gini per layer) here")
    add_board_arguments(infer)
    infer.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    infer.set_defaults(handler=cmd_infer)
