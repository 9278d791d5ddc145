"""Test images through a board (real or simulated), every result checked against the integer model:
:func:`run_infer` and its :class:`InferReport` (what ``hone infer`` prints)."""

import dataclasses
import sys
import time

import numpy as np

from hone.network.report import Report

from .board import Board, LinkError, line_rate_limit

__all__ = ["InferReport", "check_baud", "run_infer"]


@dataclasses.dataclass
class InferReport(Report):
    """The figures of :func:`run_infer`; ``to_json()`` is ``hone infer --json``'s object, without
    ``outputs``.

    Members
    -------
    board: the board's description (its port, or the simulated board's network and log).
    dataset, images, results: the test set, the images sent and the results that came back.
    lost, duplicated, in_order: images without a result, results beyond one per image, and whether the
        results came in image order.
    accuracy: the board's accuracy in [0, 1] (a spike output: the pixel accuracy of its reconstructions).
    class_agreement, spike_agreement: images whose class (a spike output: that no class came) and whose
        output spikes equal the integer model's.
    images_per_s_wall, wall_seconds: the run in wall time.
    board_seconds, images_per_s_board: the run in board time (its cycle counter at ``clock_hz``).
    line_rate_limit, line_rate_fraction: images/s the line allows (busier direction), and the share of
        it reached in board time.
    frame_bytes_up, frame_bytes_down, raw_frame_bytes_up: bytes per image on a clean line, each way, and
        up as raw frames.
    wire_bytes_up_per_image: bytes per image sent up, retries included.
    encodings, baud, clock_hz, lanes, slots, network_sha256: what the board's INFO said.
    cycles_mean, infer_attempts_mean: core cycles per image, and INFER frames sent per image.
    link: :class:`~hone.host.board.LinkStats` as a dict; board_counters: the board's error counters
        over the run; simulation: a simulated board's figures (None for a real one).
    reconstruction: a spike output's reconstruction figures (None, and left out, for classes).
    outputs: the board's output spikes, ``(results, units)`` ``uint8``, when asked for (never in JSON).
    equal: every image has exactly one result, in order, equal to the integer model's.
    activity: the integer model's activity on the same images (a board returns output spikes only).
    """

    _OPTIONAL = frozenset({"reconstruction"})

    board: str
    dataset: str
    images: int
    results: int
    lost: int
    duplicated: int
    in_order: bool
    accuracy: float
    class_agreement: int
    spike_agreement: int
    images_per_s_wall: float
    wall_seconds: float
    board_seconds: float
    images_per_s_board: float
    line_rate_limit: float
    line_rate_fraction: float
    frame_bytes_up: float
    frame_bytes_down: int
    raw_frame_bytes_up: float
    wire_bytes_up_per_image: float
    encodings: int
    baud: int
    clock_hz: int
    lanes: int
    slots: int
    network_sha256: str
    cycles_mean: float
    infer_attempts_mean: float
    link: dict
    board_counters: dict
    simulation: dict | None
    reconstruction: dict | None
    outputs: np.ndarray | None
    equal: bool
    activity: dict

    def to_json(self):
        out = super().to_json()
        del out["outputs"]
        return out


def check_baud(board, baud):
    """A board that does not answer at ``baud`` but does at another standard rate is a baud mismatch:
    say so with both rates instead of timing out.

    Raises:
        LinkError: No answer at ``baud`` (naming the rate it answers at, when one is found).
    """
    try:
        board.info(attempts=3)
    except LinkError:
        found = board.probe_baud(exclude=baud)
        if found is None:
            raise
        raise LinkError(f"{board.description} answers at {found:,} baud, not at {baud:,}: pass --baud {found} "
                        f"(or --build DIR, the folder of its bitstream's report)") from None


def run_infer(network_path, *, images, port=None, baud=None, dataset=None, chunk=None, progress=True,
              activity_plot=None, simulation=None, deadline=None, keep_outputs=False):
    """Run the first ``images`` test images on the board at ``port`` (or on a simulated board started
    with the keywords in ``simulation``) and compare every result with :class:`IntegerNetwork`.

    Args:
        network_path: The network file the board runs.
        images: How many test images, from the first.
        port: A serial port (:meth:`Board.open`'s ``url``), when ``simulation`` is None.
        baud: The line rate; None: :data:`~hone.host.board.SERIAL_BAUD` for a port, the target's for a
            simulated board.
        dataset: Test images (a name or an ``.npz`` file); None: the one the network file names.
        chunk: Image bytes per frame; None: adaptive.
        progress: Show a progress bar on stderr.
        activity_plot: Also plot the activity report here.
        simulation: Keywords of a simulated board (``target``, ``simulator``, ``lanes``, ``clock_hz``,
            ``slots``, ``faults``, ``seed``, ``build_root``; see :meth:`Board.open`); None: a real one.
        deadline: Seconds without an answer before giving up (see :class:`~hone.host.board.Board`).
        keep_outputs: Keep the board's output spikes in ``outputs``.

    For a network whose output is its spike vector (an autoencoder) the accuracy is the pixel accuracy
    of the board's reconstructions (``reconstruction``: also bits wrong per image) against the binarized
    test images.

    Returns:
        An :class:`InferReport`.

    Raises:
        ParameterError: ``simulation["lanes"]`` is more than the network's widest layer can use.
        PlanError: The core cannot run the network (refused before a simulated board is built).
        NetworkFileError, DatasetError: The network file or its test images cannot be read.
        LinkError: The board cannot be opened, does not answer, runs another network, or fails while
            inferring (the message says how many images were done).
    """
    from hone.network.activity import measure_activity, plot_activity
    from hone.network.datasets import network_test_images
    from hone.network.integer import IntegerNetwork
    from hone.rtl.plan import CorePlan, lanes_for

    network, pixels, labels, dataset = network_test_images(network_path, images, dataset)
    if simulation is not None:
        simulation = dict(simulation, lanes=lanes_for(network, simulation.get("lanes")))
        CorePlan(network, lanes=simulation["lanes"])   # a network the core cannot run: refused before a build
    reference = IntegerNetwork(network).run(pixels)
    url = f"sim:{network_path}" if simulation is not None else str(port)
    board = Board.open(url, baud=baud, deadline=deadline, **(simulation or {}))
    results = []
    try:
        with board:
            if simulation is None:
                check_baud(board, board.baud)
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
        raise LinkError(f"{error} ({len(results)} of {len(pixels)} images done)") from None

    index = np.array([r.index for r in results])
    spikes = np.array([r.spikes for r in results], dtype=np.uint8).reshape(len(results), reference.outputs.shape[1])
    reconstruction = None
    if network.classes:
        got = np.array([r.label for r in results])
        accuracy, class_agreement = float((got == labels).mean()), int((got == reference.classes).sum())
    else:   # a spike output: the board's output spikes are the reconstruction, scored against the targets
        from hone.network.reconstruction import reconstruction_figures

        reconstruction = reconstruction_figures(spikes, labels[:len(results)]) if results else None
        accuracy = reconstruction["pixel_accuracy"] if results else 0.0
        class_agreement = sum(r.label is None for r in results)   # the board reports no class
    limit, up, down = line_rate_limit(info, pixels)
    board_seconds = (after.uptime_cycles - before.uptime_cycles) / info.clock_hz
    per_s_board = len(results) / board_seconds if board_seconds > 0 else 0.0
    unique = len(set(index.tolist()))
    in_order = bool(np.array_equal(index, np.arange(len(pixels))))
    spike_agreement = int((spikes == reference.outputs[:len(results)]).all(axis=1).sum())
    # activity: a board returns the output layer's spikes only (checked above against the integer
    # model), so every layer's counts are the integer model's on the same images
    activity = measure_activity(network, pixels, reference.spikes,
                                source="integer model; the board returns output spikes only")
    if activity_plot:
        activity["plot"] = str(plot_activity(activity, activity_plot))
    return InferReport(
        board=board.description, dataset=dataset, images=len(pixels), results=len(results),
        lost=int(len(pixels) - unique), duplicated=int(len(index) - unique), in_order=in_order,
        accuracy=accuracy, class_agreement=class_agreement, spike_agreement=spike_agreement,
        images_per_s_wall=len(results) / wall if wall else 0.0, wall_seconds=wall,
        board_seconds=board_seconds, images_per_s_board=per_s_board,
        line_rate_limit=limit, line_rate_fraction=per_s_board / limit if limit else 0.0,
        frame_bytes_up=up, frame_bytes_down=down, raw_frame_bytes_up=line_rate_limit(info)[1],
        wire_bytes_up_per_image=sent / len(results) if results else 0.0, encodings=info.encodings,
        baud=info.baud, clock_hz=info.clock_hz, lanes=info.lanes, slots=info.slots,
        network_sha256=info.network_sha256, cycles_mean=float(np.mean([r.cycles for r in results])),
        infer_attempts_mean=float(np.mean([r.attempts for r in results])),
        link=stats, board_counters={name: after.counters[name] - before.counters[name] for name in after.counters},
        simulation=simulated, reconstruction=reconstruction, outputs=spikes if keep_outputs else None,
        equal=(len(results) == len(pixels) and in_order and unique == len(pixels)
               and class_agreement == len(pixels) and spike_agreement == len(pixels)),
        activity=activity)
