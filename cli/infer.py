"""``hone infer``: test images through a board (real or simulated), checked against the reference."""

import json
import pathlib
import sys
import time

import numpy as np

from hone.cli.arguments import UsageError, UserError, integer_in, number_in

__all__ = ["add_commands", "format_infer", "run_infer"]

DEFAULT_BAUD = 115200


def _build_report(folder):
    path = pathlib.Path(folder) / "report.json"
    try:
        report = json.loads(path.read_text())
        return {key: report[key] for key in ("baud", "clock_hz", "lanes")}
    except FileNotFoundError:
        raise UsageError(f"argument --build: {path} not found: the output folder of hone build") from None
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise UsageError(f"argument --build: {path} is not a hone build report ({error!r})") from None


def run_infer(network_path, *, images, port=None, baud=115200, dataset=None, chunk=None, progress=True,
              activity_plot=None, simulation=None, deadline=None, keep_outputs=False):
    """Run the first ``images`` test images on the board at ``port`` (or on a simulated board started
    with the keywords in ``simulation``) and compare every result with :class:`IntegerNetwork`.

    Returns a report dict: accuracy, agreement (class and output spikes), exactly-one-result checks,
    images per second in wall time and in board time (from the board's cycle counter), the line-rate
    limit and the fraction of it reached, link statistics and the board's error counters.
    ``deadline``: seconds without an answer before giving up (see :class:`~hone.host.board.Board`).
    For a network whose output is its spike vector (an autoencoder) the accuracy is the pixel accuracy
    of the board's reconstructions (``reconstruction``: also bits wrong per image) against the binarized
    test images; ``keep_outputs`` adds the board's output spikes, ``(images, units)`` ``uint8``, as
    ``outputs`` (not JSON: pop it before dumping the report).
    """
    from hone.cli.rtl import lanes_for
    from hone.cli.sim import DEFAULT_LANES
    from hone.network.datasets import network_test_images
    from hone.network.integer import IntegerNetwork

    from hone.host.board import Board, LinkError, line_rate_limit

    network, pixels, labels, dataset = network_test_images(network_path, images, dataset)
    if simulation is not None:
        from hone.rtl.plan import CorePlan, PlanError

        simulation = dict(simulation, lanes=lanes_for(network, simulation.get("lanes"), DEFAULT_LANES))
        try:     # a network the core cannot run is refused here, not after a board build
            CorePlan(network, lanes=simulation["lanes"])
        except PlanError as error:
            raise UserError(str(error)) from None
    reference = IntegerNetwork(network).run(pixels)
    url = f"sim:{network_path}" if simulation is not None else str(port)
    try:
        board = Board.open(url, baud=baud, deadline=deadline, **(simulation or {}))
    except (LinkError, ValueError) as error:
        raise UserError(str(error)) from None
    results = []
    try:
        with board:
            if simulation is None:
                _check_baud(board, baud)
            info = board.check(network)
            before = board.info()
            sent_before = board.stats.bytes_sent
            started = time.perf_counter()
            stream = board.infer(pixels, chunk=chunk)
            if progress:
                from tqdm import tqdm
                stream = tqdm(stream, total=len(pixels), unit="img", desc="inferring", file=sys.stderr,
                              leave=False)
            results = list(stream)
            wall = time.perf_counter() - started
            sent = board.stats.bytes_sent - sent_before
            after = board.info()
            stats = board.stats.as_dict()
        simulated = board.simulation
    except LinkError as error:
        raise UserError(f"{error} ({len(results)} of {len(pixels)} images done)") from None

    index = np.array([r.index for r in results])
    spikes = np.array([r.spikes for r in results], dtype=np.uint8).reshape(len(results), reference.outputs.shape[1])
    if network.classes:
        got = np.array([r.label for r in results])
        accuracy, class_agreement = float((got == labels).mean()), int((got == reference.classes).sum())
    else:   # a spike output: the board's output spikes are the reconstruction, scored against the targets
        from hone.network.reconstruction import reconstruction_figures

        reconstruction = reconstruction_figures(spikes, labels[:len(results)]) if results else None
        accuracy = reconstruction["pixel_accuracy"] if results else 0.0
        class_agreement = sum(r.label is None for r in results)   # the board reports no class
    limit, up, down = line_rate_limit(info, pixels)
    raw_up = line_rate_limit(info)[1]
    board_seconds = (after.uptime_cycles - before.uptime_cycles) / info.clock_hz
    per_s_board = len(results) / board_seconds if board_seconds > 0 else 0.0
    report = {
        "board": board.description, "dataset": dataset, "images": len(pixels), "results": len(results),
        "lost": int(len(pixels) - len(set(index.tolist()))), "duplicated": int(len(index) - len(set(index.tolist()))),
        "in_order": bool(np.array_equal(index, np.arange(len(pixels)))),
        "accuracy": accuracy,
        "class_agreement": class_agreement,
        "spike_agreement": int((spikes == reference.outputs[:len(results)]).all(axis=1).sum()),
        "images_per_s_wall": len(results) / wall if wall else 0.0, "wall_seconds": wall,
        "board_seconds": board_seconds, "images_per_s_board": per_s_board,
        "line_rate_limit": limit, "line_rate_fraction": per_s_board / limit if limit else 0.0,
        "frame_bytes_up": up, "frame_bytes_down": down, "raw_frame_bytes_up": raw_up,
        "wire_bytes_up_per_image": sent / len(results) if results else 0.0, "encodings": info.encodings,
        "baud": info.baud, "clock_hz": info.clock_hz, "lanes": info.lanes, "slots": info.slots,
        "network_sha256": info.network_sha256, "cycles_mean": float(np.mean([r.cycles for r in results])),
        "infer_attempts_mean": float(np.mean([r.attempts for r in results])),
        "link": stats,
        "board_counters": {name: after.counters[name] - before.counters[name] for name in after.counters},
        "simulation": simulated,
    }
    if not network.classes:
        report["reconstruction"] = reconstruction
    if keep_outputs:
        report["outputs"] = spikes
    report["equal"] = (report["results"] == report["images"] and report["in_order"] and report["lost"] == 0
                       and report["class_agreement"] == len(pixels) and report["spike_agreement"] == len(pixels))
    # activity: a board returns the output layer's spikes only (checked above against the integer
    # model), so every layer's counts are the integer model's on the same images
    from hone.network.activity import measure_activity, plot_activity

    report["activity"] = measure_activity(network, pixels, reference.spikes,
                                          source="integer model; the board returns output spikes only")
    if activity_plot:
        report["activity"]["plot"] = str(plot_activity(report["activity"], activity_plot))
    return report


def format_infer(report):
    from hone.network.reconstruction import format_reconstruction

    n = report["images"]
    link = report["link"]
    errors = ", ".join(f"{name} {count}" for name, count in sorted(link["errors"].items())) or "none"
    return "\n".join([
        f"board                   {report['board']}",
        f"images                  {n} ({report['dataset']} test set): {report['results']} results, "
        f"{report['lost']} lost, {report['duplicated']} duplicated, {'in order' if report['in_order'] else 'OUT OF ORDER'}",
    ] + ([
        f"reconstruction          {format_reconstruction(report['reconstruction'])}",
        f"agreement               output spikes {report['spike_agreement']}/{n} with the integer reference "
        f"(bit for bit)",
    ] if "reconstruction" in report else [
        f"accuracy                {report['accuracy']:.2%}",
        f"agreement               classes {report['class_agreement']}/{n}, output spikes "
        f"{report['spike_agreement']}/{n} with the integer reference",
    ]) + [
        f"throughput              {report['images_per_s_board']:.2f} images/s in board time "
        f"({report['board_seconds']:.2f} s at {report['clock_hz'] / 1e6:g} MHz), "
        f"{report['images_per_s_wall']:.2f} images/s wall",
        f"bytes per image         {report['wire_bytes_up_per_image']:.1f} up on the wire (retries included; "
        f"{report['frame_bytes_up']:.1f} on a clean line, {report['raw_frame_bytes_up']} as raw frames"
        f"{', encoded where it pays' if report['encodings'] else ''}), {report['frame_bytes_down']} down",
        f"line-rate limit         {report['line_rate_limit']:.2f} images/s at {report['baud']:,} baud "
        f"-> {report['line_rate_fraction']:.1%} reached",
        f"link                    {link['frames_sent']} frames, {link['retransmissions']} resent "
        f"({link['timeouts']} timeouts, {link['overtaken']} overtaken), errors from the board: {errors}, "
        f"{link['bad_frames_received']} bad frames received, final chunk {link['chunk']} bytes",
        f"INFER frames per image  {report['infer_attempts_mean']:.2f}",
    ] + ([f"faults injected         to the board {_faults(report['simulation']['faults_to_board'])}; to the host "
          f"{_faults(report['simulation']['faults_to_host'])}"] if report.get("simulation") else []) + _activity_lines(report))


def _activity_lines(report):
    if not report.get("activity"):
        return []
    from hone.network.activity import format_activity

    plot = report["activity"].get("plot")
    return [format_activity(report["activity"])] + ([f"activity plot           {plot}"] if plot else [])


def _check_baud(board, baud):
    """A board that does not answer at ``baud`` but does at another standard rate is a baud mismatch:
    say so with both rates instead of timing out."""
    from hone.host.board import LinkError

    try:
        board.info(attempts=3)
    except LinkError:
        found = board.probe_baud(exclude=baud)
        if found is None:
            raise
        raise LinkError(f"{board.description} answers at {found:,} baud, not at {baud:,}: pass --baud {found} "
                        f"(or --build DIR, the folder of its bitstream's report)") from None


def _faults(counts):
    return ", ".join(f"{count} {kind}" for kind, count in counts.items())


def cmd_infer(args):
    if (args.port is None) == (not args.sim):
        raise UsageError("give either --port PORT (a board) or --sim (a simulated board)")
    simulation = None
    baud, clock_hz, lanes = args.baud, args.clock, args.lanes
    if args.build is not None:                  # the board a hone build made: its rate (and for --sim all of it)
        report = _build_report(args.build)
        baud, clock_hz, lanes = baud or report["baud"], report["clock_hz"], report["lanes"]
    elif args.board is not None:               # a board target's clock and rate
        from hone.boards.targets import get_board

        target = get_board(args.board)
        baud, clock_hz = baud or target.uart().baud, target.clock_hz
    if baud is None:
        baud = DEFAULT_BAUD
    if args.sim:
        simulation = {"simulator": args.simulator, "lanes": lanes, "clock_hz": clock_hz,
                      "slots": args.slots, "faults": args.faults, "seed": args.seed,
                      "build_root": args.build_dir}
    elif args.faults:
        raise UsageError("argument --faults: applies to a simulated board (--sim) only")
    report = run_infer(args.network, images=args.images, port=args.port, baud=baud, dataset=args.dataset,
                       chunk=args.chunk, progress=not args.json, activity_plot=args.activity_plot,
                       simulation=simulation, deadline=args.deadline)
    print(format_infer(report))
    if args.json:
        print(json.dumps(report))
    if not report["equal"]:
        raise UserError("the board's results differ from the reference or are incomplete")


def add_commands(commands):
    from hone.boards.targets import BOARDS
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
                       help=f"line rate (default: the rate in --build's report or --board's, else {DEFAULT_BAUD}; a "
                            f"board that answers at another standard rate is named with it)")
    target = infer.add_mutually_exclusive_group()
    target.add_argument("--build", type=pathlib.Path, metavar="DIR",
                        help="the folder of the board's hone build: its baud rate; with --sim, a simulated board "
                             "at its clock, rate and lanes")
    target.add_argument("--board", choices=sorted(BOARDS),
                        help="with --sim: simulate this board's clock and rate (default: a 1.8432 MHz clock)")
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
