"""``hone sim``: test images through the RTL under cocotb, checked spike for spike; ``hone sim-board``.

:func:`hone.sim.runner.run_sim` does the work; this module parses, prints and refuses. A simulated
board given no clock or line rate (``hone sim-board``, ``hone infer --sim``) simulates a real target:
:func:`hone.host.board.simulated_target` is the one home of those defaults.
"""

import json
import pathlib

from hone.cli.arguments import UserError, integer_in, number_in
from hone.network.errors import HoneError
from hone.cli.rtl import lanes_argument
from hone.rtl.plan import DEFAULT_LANES

__all__ = ["add_board_arguments", "add_commands", "format_sim"]

LANES_HELP = (f"neuron units, at most the widest layer's (default: {DEFAULT_LANES}, or the widest layer's width "
              f"if smaller)")


def format_sim(report):
    """The lines ``hone sim`` prints for a :class:`~hone.sim.runner.SimReport`."""
    n = report.images
    lines = [f"images                  {n} ({report.dataset} test set), {report.simulator}, "
             f"{report.lanes} lanes"]
    for name, equal in report.layer_agreement.items():
        lines.append(f"  {name:<22}{equal}/{n} spike-for-spike equal")
    lines += [
        f"all layers equal        {report.all_layers_equal}/{n}",
    ]
    if report.reconstruction is not None:
        from hone.network.reconstruction import format_reconstruction

        lines += [f"reconstruction (RTL)    {format_reconstruction(report.reconstruction)}"]
    else:
        lines += [f"class agreement         {report.class_agreement}/{n}",
                  f"accuracy (RTL)          {100 * report.accuracy:.2f}%"]
    lines += [
        f"cycles / inference      mean {report.cycles_mean:.1f}, max {report.cycles_max} "
        f"(model: {report.cycles_equal_model}/{n} exact)",
        f"bound                   mean {report.bound_mean:.1f} -> ratio {report.cycles_over_bound:.3f}",
        f"at {report.clock_hz / 1e6:.0f} MHz               {report.images_per_s_at_clock:.0f} images/s "
        f"(back to back: loading one pixel per cycle overlaps the image ahead)",
        f"wall                    {report.sim_seconds_wall:.1f} s simulating "
        f"({report.sim_images_per_s_wall:.1f} images/s{_processes(report)}), "
        f"{report.build_seconds:.1f} s building",
    ]
    if report.activity:
        from hone.network.activity import format_activity

        lines += [f"activity                from the RTL's trace: "
                  + ("every count equal to the integer model's" if report.activity_equal
                     else "DIFFERS from the integer model's"),
                  format_activity(report.activity), f"activity plot           {report.activity['plot']}"]
    if report.waves is not None:
        lines.append(f"waves (first image)     {report.waves}")
    for mismatch in report.mismatches[:10]:
        lines.append(f"MISMATCH: {mismatch}")
    return "\n".join(lines)


def _processes(report):
    return f", {report.jobs} simulator processes" if report.jobs > 1 else ""


def cmd_sim(args):
    from hone.sim.runner import run_sim

    report = run_sim(args.network, images=args.images, simulator=args.simulator, lanes=args.lanes,
                     dataset=args.dataset, build_root=args.build_dir, backpressure=args.backpressure,
                     vcd=args.vcd, progress=not args.json, jobs=args.jobs, activity_plot=args.activity_plot)
    print(format_sim(report))
    if args.json:
        print(json.dumps(report.to_json()))
    if not report.equal:
        raise UserError(f"the RTL differs from the reference model on "
                        f"{report.images - report.all_layers_equal} of {report.images} images")


def add_commands(commands):
    from hone.cli.arguments import dataset_argument

    from hone.sim.runner import BACKPRESSURE_WHY, SIMULATORS

    sim = commands.add_parser(
        "sim", help="run test images through the RTL and check it spike for spike",
        description="Generate the RTL for a network file, stream test images through it under cocotb "
                    "and compare every layer's spikes, the class and the cycle count with the reference.")
    sim.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    sim.add_argument("--images", type=integer_in(1), default=100, metavar="N", help="first N test images (default: 100)")
    sim.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    sim.add_argument("--lanes", type=lanes_argument, metavar="P", help=LANES_HELP)
    sim.add_argument("--dataset", type=dataset_argument, metavar="NAME|FILE.npz",
                     help="test images (default: the one named in the network file)")
    sim.add_argument("--backpressure", type=number_in(0, 1, why=BACKPRESSURE_WHY), default=0.0, metavar="P",
                     help="chance per cycle that the result stream is not ready (default: 0)")
    sim.add_argument("--vcd", action="store_true", help="also dump waves of the first image")
    sim.add_argument("--activity-plot", type=pathlib.Path, metavar="FILE",
                     help="where to plot the activity counted from the RTL's trace (default: activity.png "
                          "in the run folder)")
    sim.add_argument("--jobs", type=integer_in(1), default=1, metavar="N",
                     help="simulator processes at once, each on a contiguous share of the images; one build "
                          "(default: 1)")
    sim.add_argument("--build-dir", type=pathlib.Path, default=pathlib.Path("runs/sim"), metavar="DIR",
                     help="Verilog and simulator builds, reused per network and lanes (default: runs/sim)")
    sim.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    sim.set_defaults(handler=cmd_sim)
    _add_sim_board(commands)


def cmd_sim_board(args):
    import os
    import threading
    import time

    from hone.network.netfile import read_network
    from hone.rtl.plan import lanes_for

    from hone.sim.board import run_bridge

    ready = pathlib.Path(args.ready_file) if args.ready_file else pathlib.Path(
        __import__("tempfile").mkdtemp(prefix="hone-board-")) / "ready.json"
    if ready.exists():
        ready.unlink()

    def announce():
        while not ready.exists():
            time.sleep(0.2)
        path = json.loads(ready.read_text())["pty"]
        if args.link:
            link = pathlib.Path(args.link)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(path)
            path = f"{link} -> {path}"
        print(f"simulated board on {path} ({args.baud} baud); Ctrl-C stops it", flush=True)

    from hone.host.board import simulated_target

    network, _ = read_network(args.network)
    args.lanes = lanes_for(network, args.lanes)
    args.clock, args.baud = simulated_target(args.board, clock_hz=args.clock, baud=args.baud)
    threading.Thread(target=announce, daemon=True).start()
    print(f"building the board for {args.network} ({args.simulator}, {args.lanes} lanes, "
          f"{args.clock / 1e6:g} MHz, {args.baud} baud)...", flush=True)
    try:
        results = run_bridge(args.network, simulator=args.simulator, lanes=args.lanes, clock_hz=args.clock,
                             baud=args.baud, slots=args.slots, build_root=args.build_dir, seed=args.seed,
                             config={"ready": str(ready), "faults": args.faults,
                                     "parent": args.parent or os.getpid(),
                                     "stop": str(ready.with_name("stop"))})
    except ValueError as error:   # the board cannot be built as asked (its UART at this clock and baud, ...)
        if isinstance(error, HoneError):
            raise
        raise UserError(str(error)) from None
    ready.with_name("results.json").write_text(json.dumps(results))
    print(f"simulated {results['sim_ns'] / 1e9:.3f} s: {results['bytes_to_board']} bytes in, "
          f"{results['bytes_to_host']} bytes out; faults injected in {results['faults_to_board']}, "
          f"out {results['faults_to_host']}")
    if args.json:
        print(json.dumps(results))


def add_board_arguments(parser):
    """Options of a simulated board, shared by ``hone sim-board`` and ``hone infer --sim``."""
    from hone.boards.targets import DEFAULT_TARGET
    from hone.sim.runner import SIMULATORS

    parser.add_argument("--simulator", choices=SIMULATORS, default="verilator")
    parser.add_argument("--lanes", type=lanes_argument, metavar="P", help=LANES_HELP)
    parser.add_argument("--clock", type=number_in(0, low_open=True), metavar="HZ",
                        help=f"the simulated board's clock (default: the target's design clock, "
                             f"{DEFAULT_TARGET}'s unless --board names another)")
    parser.add_argument("--slots", type=integer_in(1, 255), default=4, metavar="S", help="image buffers (default: 4)")
    parser.add_argument("--faults", type=number_in(0, 1), default=0.0, metavar="RATE",
                        help="chance per byte, each way, of a bit flip, a drop or a duplicate (default: 0)")
    parser.add_argument("--seed", type=integer_in(0), default=0, help="fault injection seed (default: 0)")
    parser.add_argument("--build-dir", type=pathlib.Path, default=pathlib.Path("runs/sim-board"), metavar="DIR",
                        help="board builds, reused per network and settings (default: runs/sim-board)")


def _add_sim_board(commands):
    from hone.boards.targets import TARGETS, DEFAULT_TARGET

    board = commands.add_parser(
        "sim-board", help="a simulated board behind a pseudo-terminal",
        description="Run the whole board top level (UART pins included) cycle-accurately under cocotb, "
                    "bridged to a pseudo-terminal that host tools open like a USB serial port.")
    board.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    board.add_argument("--baud", type=integer_in(1),
                       help="line rate (default: the rate a build of the target uses at --clock)")
    board.add_argument("--board", choices=sorted(TARGETS),
                       help=f"simulate this target's design clock and line rate (default: {DEFAULT_TARGET})")
    add_board_arguments(board)
    board.add_argument("--link", metavar="PATH", help="also make PATH a symlink to the pty")
    board.add_argument("--ready-file", metavar="FILE", help="write {\"pty\": path} here once serving")
    board.add_argument("--parent", type=integer_in(1), metavar="PID", help="stop when this process ends (default: this one)")
    board.add_argument("--json", action="store_true", help="last stdout line: the run's figures as JSON")
    board.set_defaults(handler=cmd_sim_board)
