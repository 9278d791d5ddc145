"""The ``hone`` command line: one entry point over training, rtl and sim (and later boards, host).

Subcommands import their heavy dependencies (TensorFlow, Keras, Amaranth, cocotb) only when they run,
so ``hone --help`` is instant. User errors print one ``hone: error: ...`` line and exit with status 2
(usage) or 1 (run failed), never a traceback. With ``--json`` the last line on stdout is one JSON
object with the figures the command reports.
"""

import argparse
import json
import os
import pathlib
import signal
import sys
import warnings

from hone.boards.targets import BOARDS
from hone.cli import rtl as rtl_cli
from hone.cli import sim as sim_cli
from hone.cli import train as training_cli
from hone.cli.arguments import UsageError, UserError, integer_in, number_in
from hone.network.errors import HoneError, ParameterError

__all__ = ["main", "build_parser"]


PLOTS = {"Training": "\n\n![sharpening](train/sharpening.png)",
         "Network": "\n\n![activity of the integer network on the test set](net.hone.activity.png)",
         "RTL": "\n\n![activity counted from the RTL's trace](sim-activity.png)",
         "Host": "\n\n![activity of the images sent to the board](board-activity.png)",
         "Bitstream": "\n\n![resources and throughput](bitstream/build.png)",
         "Reconstructions": "\n\n![originals, Keras' and the simulated board's reconstructions](reconstructions.png)"}


def cmd_flow(args):
    """The main job: train and sharpen the default network, export it, check its RTL, run test images
    over serial through the simulated board with the host code, write one report. With ``--arch
    autoencoder`` the figures are pixel accuracy and bits wrong per image, and ``reconstructions.png``
    shows test images next to Keras' and the simulated board's reconstructions."""
    config = training_cli.config_from(args)
    if args.lanes is not None:
        _check_flow_lanes(config, args.lanes)
    args.clock = flow_clock(config.arch, args.board, args.clock)
    out = pathlib.Path(args.out)
    summary = training_cli.run_training(config, out / "train", quiet=args.json, backend=args.backend,
                                        cpu_devices=args.cpu_devices)
    network_path = out / "net.hone"
    exported = training_cli.export_model(out / "train" / "model.keras", network_path,
                                         weight_bits=args.weight_bits)
    from hone.network.netfile import read_network
    given_lanes = args.lanes
    args.lanes = rtl_cli.lanes_for(read_network(network_path)[0], args.lanes, 32)
    simulated = sim_cli.run_sim(network_path, images=args.sim_images, simulator=args.simulator,
                                lanes=args.lanes, build_root=out / "sim", progress=not args.json,
                                activity_plot=out / "sim-activity.png")
    from hone.cli.infer import format_infer, run_infer
    autoencoder = config.arch == "autoencoder"
    hosted = run_infer(network_path, images=args.board_images, progress=not args.json,
                       activity_plot=out / "board-activity.png",
                       simulation={"simulator": args.simulator, "lanes": args.lanes,
                                   "build_root": out / "sim-board"}, keep_outputs=autoencoder)
    reconstructions = _plot_reconstructions(config, out, hosted.pop("outputs")) if autoencoder else None
    from hone.cli import build as boards_cli
    built = None
    if args.board != "none":
        built = boards_cli.build_bitstream(network_path, board=args.board, output=out / "bitstream",
                                           lanes=flow_build_lanes(config.arch, given_lanes),
                                           clock_mhz=args.clock, time_limit_s=args.time_limit * 60,
                                           progress=not args.json,
                                           log=(lambda *_: None) if args.json else print)
    report = {"train": training_cli.train_figures(summary), "export": exported, "sim": simulated,
              "board": hosted, "bitstream": built}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    sections = [
        ("Training", training_cli.format_summary(summary, out / "train")),
        ("Network file", training_cli.format_export(exported, network_path)),
        ("RTL simulation", sim_cli.format_sim(simulated)),
        ("Host over serial to the simulated board", format_infer(hosted)),
    ]
    if built is not None:
        sections.append((f"Bitstream for {built['board']}", boards_cli.format_build(built)))
    if reconstructions is not None:
        sections.append(("Reconstructions", f"the first {reconstructions} test images: originals, Keras (exact "
                                            f"steps) and the simulated board over serial"))
    (out / "report.md").write_text(
        "# hone flow report\n\n" + "\n\n".join(
            f"## {title}\n\n" + (text if title.startswith("Bitstream") else f"```\n{text}\n```")
            + PLOTS.get(title.split()[0], "") for title, text in sections) + "\n")
    for _, text in sections:
        print(text)
        print()
    print(f"report                  {out / 'report.md'}")
    if args.json:
        print(json.dumps(report))
    if not simulated["equal"]:
        raise UserError("the RTL differs from the reference model; see the report")
    if not hosted["equal"]:
        raise UserError("the simulated board's results over serial differ from the reference; see the report")
    if built is not None and not built["timing_met"]:
        raise UserError(f"the bitstream for {built['board']} does not meet timing; see the report")


def _plot_reconstructions(config, out, board_outputs):
    """``reconstructions.png``: test images, Keras' reconstructions (exact steps) and the simulated
    board's; the number of images shown."""
    import keras

    from hone.training import layers  # noqa: F401  (registers hone's layers and metrics)
    from hone.training.autoencoder import hard_reconstructions
    from hone.network.datasets import load_dataset
    from hone.network.reconstruction import plot_reconstructions

    data = load_dataset(config.dataset, binarize=config.binarize)
    count = min(10, len(board_outputs))
    images = data.x_test[:count]
    model = keras.saving.load_model(out / "train" / "model.keras")
    shape = data.input_shape if len(data.input_shape) > 1 else (1, data.input_shape[0])
    plot_reconstructions(out / "reconstructions.png", images,
                         {"Keras": hard_reconstructions(model, images), "board": board_outputs[:count]},
                         shape=shape, count=count)
    return count


# hone flow's bitstream clock per architecture, unless --clock says (or the board's own, if lower): on a
# ULX3S-85F the autoencoder default's core closes timing at 30.2 MHz, the conv default's at 35.1 MHz
# (32 lanes, 179 of 208 block RAMs; the 256-40 conv net reached 39.1 at 40), short of the board's 45 (README). 30 MHz keeps
# the line at 3 Mbaud (10 clocks per bit), which the lanes are chosen to keep up with.
FLOW_CLOCK_MHZ = {"autoencoder": 30, "conv": 30}
# and the autoencoder's lanes, unless --lanes says: the default's weights fill 180 of a ULX3S-85F's 208
# block RAMs, and with 16 lanes (hone build's choice for the line) nextpnr routes for far longer (README)
AUTOENCODER_LANES = 8


def flow_clock(arch, board, mhz=None):
    """The flow's bitstream clock in MHz: ``mhz`` (checked against the board and its PLL before any
    training), else :data:`FLOW_CLOCK_MHZ` for the architecture (or the board's own clock if lower),
    else the board's. ``None``: the board's default. Raises :class:`UsageError`."""
    if board == "none":
        return mhz
    if mhz is None and arch in FLOW_CLOCK_MHZ:
        from hone.boards.targets import get_board

        mhz = min(FLOW_CLOCK_MHZ[arch], get_board(board).clock_hz / 1e6)
    if mhz is not None:
        _check_flow_clock(board, mhz)
    return mhz


def flow_build_lanes(arch, lanes=None):
    """The flow's bitstream lanes: ``lanes`` (``--lanes``), else :data:`AUTOENCODER_LANES` for an
    autoencoder, else None: hone build's choice, the fewest that keep up with the line (the shortest
    build, the smallest design)."""
    if lanes is None and arch == "autoencoder":
        return AUTOENCODER_LANES
    return lanes


def _check_flow_clock(board, mhz):
    """``--clock`` against the board's limit and its PLL, before training starts."""
    from hone.boards.pll import plan_clock
    from hone.boards.targets import get_board

    target = get_board(board)
    if mhz * 1e6 > target.max_clock_hz:
        raise UsageError(f"argument --clock: expected at most {target.max_clock_hz / 1e6:g} MHz for {target.name}, "
                         f"got {mhz:g}")
    try:
        plan_clock(target.family, target.oscillator_hz(), mhz * 1e6)
    except ValueError as error:
        raise UsageError(f"argument --clock: {error}") from None


def _check_flow_lanes(config, lanes):
    """``--lanes`` against the widest layer the configured network will have, before training starts."""
    from hone.network.datasets import DatasetError, load_dataset
    import numpy as np

    from hone.training.config import DEFAULT_AUTOENCODER_WIDTHS, DEFAULT_CONV, DEFAULT_DENSE_WIDTHS

    try:
        data = load_dataset(config.dataset)
    except DatasetError:
        return       # training says what is wrong with the data
    conv = config.arch == "conv"
    if config.arch == "autoencoder":    # its output layer has one unit per pixel
        widths = config.widths or DEFAULT_AUTOENCODER_WIDTHS
        filters, output = (), int(np.prod(data.input_shape))
    else:
        widths = config.widths or (DEFAULT_CONV["widths"] if conv else DEFAULT_DENSE_WIDTHS)
        filters = (config.filters or DEFAULT_CONV["filters"]) if conv else ()
        output = config.output_width or data.classes * config.nhot
    most = max(*widths, *filters, output)
    if lanes > most:
        raise UsageError(f"argument --lanes: expected 1..{most} for this network (its widest layer has {most} "
                         f"neurons or filters; more lanes would stay idle), got {lanes}")


def build_parser():
    from hone.training.config import TrainConfig

    parser = _Parser(
        prog="hone", description="Whetstone-sharpened binary spiking networks, from Keras to an FPGA.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    training_cli.add_commands(commands)
    rtl_cli.add_commands(commands)
    sim_cli.add_commands(commands)
    from hone.cli import build as boards_cli

    from hone.cli import infer as infer_cli
    boards_cli.add_commands(commands)
    infer_cli.add_commands(commands)
    from hone.cli import nir as nir_cli
    nir_cli.add_commands(commands)

    flow = commands.add_parser("flow", help="the main job, end to end, on the default data",
                               description="Train and sharpen the default network, export it to a "
                                           "network file, run test images through its RTL and over serial "
                                           "through the simulated board, build its bitstream and write a report.")
    training_cli.add_train_arguments(flow, TrainConfig())
    flow.add_argument("--out", type=pathlib.Path, default=pathlib.Path("runs/flow"), metavar="DIR",
                      help="output folder (default: runs/flow)")
    flow.add_argument("--weight-bits", type=integer_in(1, 16), default=4, metavar="B",
                      help="weight width of the exported network file (default: 4)")
    flow.add_argument("--sim-images", type=integer_in(1), default=200, metavar="N",
                      help="test images run through the RTL (default: 200)")
    flow.add_argument("--board-images", type=integer_in(1), default=50, metavar="N",
                      help="test images sent over serial to the simulated board (default: 50)")
    flow.add_argument("--simulator", choices=("icarus", "verilator"), default="verilator")
    flow.add_argument("--lanes", type=rtl_cli.lanes_argument, metavar="P",
                      help="neuron units of the RTL and the bitstream (default: 32, or the widest layer's width "
                           "if smaller, for the simulations; hone build's for the bitstream: the fewest that keep up "
                           f"with the line; {AUTOENCODER_LANES} for --arch autoencoder)")
    flow.add_argument("--board", default="ulx3s-85f", choices=["none", *sorted(BOARDS)],
                      help="board to build a bitstream for, with --lanes (default: ulx3s-85f; none: skip)")
    flow.add_argument("--clock", type=number_in(0, low_open=True), metavar="MHZ",
                      help="the bitstream's design clock in MHz, through the PLL (default: the board's for "
                           "dense; " + ", ".join(f"{mhz} for --arch {arch}" for arch, mhz in FLOW_CLOCK_MHZ.items())
                           + ", or the board's if lower: their default cores close timing at 30.2 and 35.1 MHz "
                           "on a ULX3S-85F)")
    boards_cli.time_limit_argument(flow)
    flow.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    flow.set_defaults(handler=cmd_flow)
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line like every other hone error (status 2 all the same)."""

    def error(self, message):
        self.exit(2, f"hone: error: {message} (see: {self.prog} --help)\n")


def _internal_error(error):
    """Keep the traceback of an unexpected exception in a log file; the one line to print."""
    import tempfile
    import time
    import traceback

    log = pathlib.Path(tempfile.gettempdir()) / f"hone-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        log.write_text(f"hone {' '.join(sys.argv[1:])}\n\n" + "".join(traceback.format_exception(error)))
        where = f"the traceback is in {log}"
    except OSError as cause:
        where = f"its traceback could not be written to {log} ({cause})"
    reason = (str(error).strip().splitlines() or [""])[0][:200]
    return (f"hone: internal error: {type(error).__name__}{': ' + reason if reason else ''} "
            f"({where}; please report it)")


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """hone's own warnings are one ``hone: warning: ...`` line; others keep Python's format."""
    if category.__module__.startswith("hone."):
        print(f"hone: warning: {message}", file=sys.stderr, flush=True)
    else:
        _default(message, category, filename, lineno, file, line)


def _terminate(signum, frame):
    raise KeyboardInterrupt     # unwinds like Ctrl-C, so that running tools (nextpnr) are stopped too


def main(argv=None):
    """The ``hone`` command: 0 on success, 1 when a run fails, 2 for a usage error, 130 on Ctrl-C or
    SIGTERM (tools it started, such as nextpnr, are stopped with it).

    Every error is one ``hone: error: ...`` line on stderr; a file that cannot be read or written
    (permissions, a missing folder, a full disk) is one too, naming it. An unexpected exception (a bug in
    hone, not a user error) is one ``hone: internal error: ...`` line naming a log file with its traceback.
    """
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    terminate = signal.signal(signal.SIGTERM, _terminate)
    try:
        args.handler(args)
    except UsageError as error:
        print(f"hone: error: {error}", file=sys.stderr)
        return 2
    except ParameterError as error:   # the library names its parameter; the user knows it as an option
        print(f"hone: error: argument --{error.parameter.replace('_', '-')}: {error.message}", file=sys.stderr)
        return 2
    except (UserError, HoneError) as error:
        print(f"hone: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("hone: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:      # stdout piped into `head`: not an error of ours
        sys.stderr.close()
        return 1
    except OSError as error:     # a file or folder the user named cannot be read or written
        where = f"{error.filename}: " if error.filename else ""
        reason = {FileExistsError: "exists and is not a folder",
                  NotADirectoryError: "a part of this path is a file, not a folder"}.get(type(error))
        print(f"hone: error: {where}{reason or error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:
        print(_internal_error(error), file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGTERM, terminate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
