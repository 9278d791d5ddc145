"""``hone flow``: the main job, end to end, on ONE board configuration.

Train and sharpen the default network, export it, check its RTL, run test images over serial through
the simulated board with the host code, build its bitstream, and write one report.

The flow decides the board configuration once, after the export, by ``hone build``'s policy
(:func:`hone.boards.build.plan_build`): the target (``--board``; with ``--board none`` the default
target, :data:`~hone.boards.targets.DEFAULT_TARGET`, for the checks), its lanes (``--lanes``, else
:data:`AUTOENCODER_LANES` for an autoencoder, else the fewest that keep up with the line), its design
clock (``--clock``, else :data:`FLOW_CLOCK_MHZ` for the architecture, else the target's) and its line
rate (the target's at that clock). The RTL check runs at those lanes, the simulated board at those
lanes, clock and baud, and the bitstream is built with all three.

``report.json`` (and ``--json``'s last line) has the keys ``configuration`` (new: ``target``,
``lanes``, ``clock_hz``, ``baud``, ``lanes_policy``, ``bitstream``: whether a bitstream was built with
it), ``train``,
``export``, ``sim``, ``board`` (the simulated board over serial: ``hone infer --json``'s object) and
``bitstream`` (``hone build --json``'s, or null with ``--board none``).
"""

import dataclasses
import json
import pathlib

from hone.boards.targets import TARGETS, DEFAULT_TARGET
from hone.cli import train as training_cli
from hone.cli.arguments import UsageError, UserError, integer_in, number_in
from hone.network.report import Report

__all__ = ["AUTOENCODER_LANES", "FLOW_CLOCK_MHZ", "BoardConfiguration", "FlowReport", "add_commands",
           "board_configuration", "flow_build_lanes", "flow_clock"]


PLOTS = {"Training": "\n\n![sharpening](train/sharpening.png)",
         "Network": "\n\n![activity of the integer network on the test set](net.hone.activity.png)",
         "RTL": "\n\n![activity counted from the RTL's trace](sim-activity.png)",
         "Host": "\n\n![activity of the images sent to the board](board-activity.png)",
         "Bitstream": "\n\n![resources and throughput](bitstream/build.png)",
         "Reconstructions": "\n\n![originals, Keras' and the simulated board's reconstructions](reconstructions.png)"}

# hone flow's bitstream clock per architecture, unless --clock says (or the board's own, if lower): on a
# ULX3S-85F the autoencoder default's core closes timing at 30.2 MHz, the conv default's at 35.1 MHz
# (32 lanes, 179 of 208 block RAMs; the 256-40 conv net reached 39.1 at 40), short of the board's 45 (README). 30 MHz keeps
# the line at 3 Mbaud (10 clocks per bit), which the lanes are chosen to keep up with.
FLOW_CLOCK_MHZ = {"autoencoder": 30, "conv": 30}
# and the autoencoder's lanes, unless --lanes says: the default's weights fill 180 of a ULX3S-85F's 208
# block RAMs, and with 16 lanes (hone build's choice for the line) nextpnr routes for far longer (README)
AUTOENCODER_LANES = 8


@dataclasses.dataclass(frozen=True)
class BoardConfiguration:
    """The one board configuration of a flow, as its report states it: what its RTL check, simulated
    board and bitstream use.

    Members
    -------
    target: the board target's name (a key of :data:`hone.boards.targets.TARGETS`).
    lanes: neuron units of the core.
    clock_hz: the design clock in Hz (as the target's PLL makes it).
    baud: the line rate in baud.
    lanes_policy: how the lanes were chosen, in words (``hone build``'s ``lanes_policy``).
    bitstream: whether the flow builds a bitstream with it (False for ``--board none``: the default
        target's configuration, for the checks only).
    """

    target: str
    lanes: int
    clock_hz: float
    baud: int
    lanes_policy: str
    bitstream: bool

    @classmethod
    def of(cls, plan, *, bitstream):
        """The configuration of ``plan``, a :class:`~hone.boards.build.BuildConfig`."""
        return cls(target=plan.board, lanes=int(plan.lanes), clock_hz=float(plan.clock_hz), baud=int(plan.baud),
                   lanes_policy=plan.lanes_policy, bitstream=bitstream)

    def describe(self):
        """One line: the configuration and what used it."""
        users = ("the RTL check, the simulated board and the bitstream" if self.bitstream
                 else "the RTL check and the simulated board (no bitstream: --board none)")
        return (f"{self.target}: {self.lanes} lanes ({self.lanes_policy}), {self.clock_hz / 1e6:g} MHz, "
                f"{self.baud:,} baud; used by {users}")


@dataclasses.dataclass
class FlowReport(Report):
    """What ``hone flow`` measured; ``to_json()`` is ``report.json``.

    Members
    -------
    configuration: the :class:`BoardConfiguration` every stage below used.
    train: the training figures; export: the network file's.
    sim: the RTL check (:class:`~hone.sim.runner.SimReport`).
    board: the simulated board over serial (:class:`~hone.host.infer.InferReport`).
    bitstream: ``hone build``'s :class:`~hone.boards.report.BuildReport`, or None with ``--board none``.
    """

    configuration: BoardConfiguration
    train: dict
    export: object
    sim: Report
    board: Report
    bitstream: Report | None


def flow_clock(arch, board, mhz=None):
    """The flow's bitstream clock in MHz: ``mhz`` (checked against the board and its PLL before any
    training), else :data:`FLOW_CLOCK_MHZ` for the architecture (or the board's own clock if lower),
    else None: the board's default. ``board`` "none" stands for :data:`DEFAULT_TARGET`.
    Raises :class:`UsageError`."""
    from hone.boards.targets import get_target

    board = DEFAULT_TARGET if board == "none" else board
    if mhz is None and arch in FLOW_CLOCK_MHZ:
        mhz = min(FLOW_CLOCK_MHZ[arch], get_target(board).clock_hz / 1e6)
    if mhz is not None:
        _check_flow_clock(board, mhz)
    return mhz


def flow_build_lanes(arch, lanes=None):
    """The flow's lanes: ``lanes`` (``--lanes``), else :data:`AUTOENCODER_LANES` for an autoencoder,
    else None: hone build's choice, the fewest that keep up with the line (the shortest build, the
    smallest design)."""
    if lanes is None and arch == "autoencoder":
        return AUTOENCODER_LANES
    return lanes


def board_configuration(network_path, board, *, arch, lanes=None, clock_mhz=None):
    """The flow's one configuration for the network at ``network_path``: ``hone build``'s
    (:func:`hone.boards.build.plan_build`) with the flow's lanes (:func:`flow_build_lanes`) and
    ``clock_mhz`` (:func:`flow_clock`'s). ``board`` "none": :data:`DEFAULT_TARGET`'s.

    Returns:
        A :class:`~hone.boards.build.BuildConfig`.

    Raises:
        ParameterError, FitError, TargetError: as :func:`~hone.boards.build.plan_build` raises them.
    """
    from hone.boards.build import plan_build

    target = DEFAULT_TARGET if board == "none" else board
    return plan_build(network_path, target, lanes=flow_build_lanes(arch, lanes), clock_mhz=clock_mhz)


def cmd_flow(args):
    """The main job: train and sharpen the default network, export it, check its RTL, run test images
    over serial through the simulated board with the host code, build its bitstream, write one report,
    all on one :class:`BoardConfiguration`. With ``--arch autoencoder`` the figures are pixel accuracy
    and bits wrong per image, and ``reconstructions.png`` shows test images next to Keras' and the
    simulated board's reconstructions."""
    from hone.boards.build import build_bitstream
    from hone.boards.report import format_build
    from hone.cli.infer import format_infer
    from hone.cli.sim import format_sim
    from hone.host.infer import run_infer
    from hone.sim.runner import run_sim

    config = training_cli.config_from(args)
    if args.lanes is not None:
        _check_flow_lanes(config, args.lanes)
    clock_mhz = flow_clock(config.arch, args.board, args.clock)
    out = pathlib.Path(args.out)
    summary = training_cli.run_training(config, out / "train", quiet=args.json, backend=args.backend,
                                        cpu_devices=args.cpu_devices)
    network_path = out / "net.hone"
    exported = training_cli.export_model(out / "train" / "model.keras", network_path,
                                         weight_bits=args.weight_bits)
    log = (lambda *_: None) if args.json else print
    plan = board_configuration(network_path, args.board, arch=config.arch, lanes=args.lanes, clock_mhz=clock_mhz)
    board = BoardConfiguration.of(plan, bitstream=args.board != "none")
    log(f"board configuration     {board.describe()}")
    simulated = run_sim(network_path, images=args.sim_images, simulator=args.simulator, lanes=board.lanes,
                        build_root=out / "sim", progress=not args.json, activity_plot=out / "sim-activity.png")
    autoencoder = config.arch == "autoencoder"
    hosted = run_infer(network_path, images=args.board_images, baud=board.baud, progress=not args.json,
                       activity_plot=out / "board-activity.png",
                       simulation={"target": board.target, "simulator": args.simulator, "lanes": board.lanes,
                                   "clock_hz": board.clock_hz, "build_root": out / "sim-board"},
                       keep_outputs=autoencoder)
    reconstructions = _plot_reconstructions(config, out, hosted.outputs) if autoencoder else None
    built = None
    if board.bitstream:
        built = build_bitstream(network_path, board=board.target, output=out / "bitstream", config=plan,
                                time_limit_s=args.time_limit * 60, progress=not args.json, log=log)
    report = FlowReport(configuration=board, train=training_cli.train_figures(summary), export=exported,
                        sim=simulated, board=hosted, bitstream=built).to_json()
    (out / "report.json").write_text(json.dumps(report, indent=1))
    sections = [
        ("Board configuration", board.describe()),
        ("Training", training_cli.format_summary(summary, out / "train")),
        ("Network file", training_cli.format_export(exported, network_path)),
        ("RTL simulation", format_sim(simulated)),
        ("Host over serial to the simulated board", format_infer(hosted)),
    ]
    if built is not None:
        sections.append((f"Bitstream for {built.board}", format_build(built)))
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
    if not simulated.equal:
        raise UserError("the RTL differs from the reference model; see the report")
    if not hosted.equal:
        raise UserError("the simulated board's results over serial differ from the reference; see the report")
    if built is not None and not built.timing_met:
        raise UserError(f"the bitstream for {built.board} does not meet timing; see the report")


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


def _check_flow_clock(board, mhz):
    """``--clock`` against the board's limit and its PLL, before training starts."""
    from hone.boards.pll import plan_clock
    from hone.boards.targets import get_target

    target = get_target(board)
    if mhz * 1e6 > target.max_clock_hz:
        raise UsageError(f"argument --clock: expected at most {target.max_clock_hz / 1e6:g} MHz for {target.name}, "
                         f"got {mhz:g}")
    try:
        plan_clock(target.family, target.oscillator_hz(), mhz * 1e6)
    except ValueError as error:
        raise UsageError(f"argument --clock: {error}") from None


def _check_flow_lanes(config, lanes):
    """``--lanes`` against the widest layer the configured network will have, before training starts
    (:func:`hone.rtl.plan.most_lanes` of its configured widths)."""
    import numpy as np

    from hone.network.datasets import DatasetError, load_dataset
    from hone.rtl.plan import most_lanes
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
    most = most_lanes([*widths, *filters, output])
    if lanes > most:
        raise UsageError(f"argument --lanes: expected 1..{most} for this network (its widest layer has {most} "
                         f"neurons or filters; more lanes would stay idle), got {lanes}")


def add_commands(commands):
    from hone.cli import build as boards_cli
    from hone.cli.rtl import lanes_argument
    from hone.training.config import TrainConfig

    flow = commands.add_parser("flow", help="the main job, end to end, on the default data",
                               description="Train and sharpen the default network, export it to a "
                                           "network file, run test images through its RTL and over serial "
                                           "through the simulated board, build its bitstream and write a report, "
                                           "all on one board configuration (lanes, clock, baud).")
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
    flow.add_argument("--lanes", type=lanes_argument, metavar="P",
                      help="neuron units of the RTL check, the simulated board and the bitstream (default: hone "
                           f"build's, the fewest that keep up with the line; {AUTOENCODER_LANES} for --arch "
                           "autoencoder)")
    flow.add_argument("--board", default=DEFAULT_TARGET, choices=["none", *sorted(TARGETS)],
                      help=f"board target to configure for and build a bitstream for (default: {DEFAULT_TARGET}; "
                           f"none: no bitstream, the checks on {DEFAULT_TARGET}'s configuration)")
    flow.add_argument("--clock", type=number_in(0, low_open=True), metavar="MHZ",
                      help="the design clock in MHz, through the PLL, of the simulated board and the bitstream "
                           "(default: the board's for dense; "
                           + ", ".join(f"{mhz} for --arch {arch}" for arch, mhz in FLOW_CLOCK_MHZ.items())
                           + ", or the board's if lower: their default cores close timing at 30.2 and 35.1 MHz "
                           "on a ULX3S-85F)")
    boards_cli.time_limit_argument(flow)
    flow.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    flow.set_defaults(handler=cmd_flow)
