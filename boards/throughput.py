"""Throughput of a build: cycles per inference over the test set, at the clock and on the line.

The figures come from the verified cycle model of the core (:func:`hone.rtl.cycles.inference_cycles`)
overlapped with the board's loader, and from the protocol's line model (:func:`hone.rtl.protocol.line_rate`)
for the test images' mean bytes on the wire.
"""

import dataclasses
import functools
import typing

import numpy as np

from hone.network.report import Report

__all__ = ["TestImages", "InferenceFigures", "inference_figures"]


class _Loaded(typing.NamedTuple):
    network: object
    dataset: str | None
    pixels: object
    reference: object
    accuracy: float | None


class TestImages:
    """A network's test images and their reference spikes, loaded on first use and then kept for every
    lane count tried. When the network file names no data set there are none, and the core's worst
    case stands in for the cycles.

    Parameters
    ----------
    network_path : path-like
        A network file.
    images : int or None
        The first ``images`` test images (default: all).

    Loading raises what :func:`hone.network.datasets.network_test_images` raises (``NetworkFileError``,
    ``DatasetError``, ``ParameterError`` for ``images``).
    """

    __test__ = False     # not a pytest class

    def __init__(self, network_path, images=None):
        self.network_path = network_path
        self.images = images
        self._rates = {}

    @functools.cached_property
    def _loaded(self):
        from hone.network.datasets import network_test_images
        from hone.network.integer import IntegerNetwork
        from hone.network.netfile import read_network

        network, meta = read_network(self.network_path)
        if not meta.get("dataset"):
            return _Loaded(network, None, [], None, None)
        network, pixels, labels, dataset = network_test_images(self.network_path, self.images)
        reference = IntegerNetwork(network).run(pixels)
        if network.classes:
            accuracy = float((reference.classes == labels).mean())
        else:     # a spike output: the pixel accuracy of its reconstructions
            from hone.network.reconstruction import reconstruction_figures

            accuracy = reconstruction_figures(reference.outputs, labels)["pixel_accuracy"]
        return _Loaded(network, dataset, pixels, reference, accuracy)

    @property
    def network(self):
        """The :class:`~hone.network.netfile.Network`."""
        return self._loaded.network

    @property
    def dataset(self):
        """The data set's name, or None when the network file names none."""
        return self._loaded.dataset

    @property
    def pixels(self):
        """``(images, *input.shape)`` int64 pixels as the network takes them (``[]`` without a data set)."""
        return self._loaded.pixels

    @property
    def reference(self):
        """The integer model's run over :attr:`pixels` (None without a data set)."""
        return self._loaded.reference

    @property
    def accuracy(self):
        """The integer model's accuracy in 0..1 (pixel accuracy for a spike output; None without a data set)."""
        return self._loaded.accuracy

    def cycles(self, lanes):
        """Core cycles per test image, ``(images,)`` (or ``(1,)``: the worst case)."""
        from hone.rtl.cycles import inference_cycles
        from hone.rtl.plan import CorePlan

        plan = CorePlan(self.network, lanes=lanes)
        if self.dataset:
            return inference_cycles(plan, self.pixels, self.reference.spikes)
        return np.array([plan.worst_cycles()])

    def per_image(self, lanes):
        """Clocks per image back to back: the core double-buffers its input, so an image takes the
        longer of running the one ahead (plus the gap between results) and loading itself."""
        from hone.rtl.board import loader_cycles
        from hone.rtl.cycles import RESULT_GAP

        return float(np.maximum(self.cycles(lanes) + RESULT_GAP, loader_cycles(self.network)).mean())

    def line_rate(self, baud, clock_hz):
        """``(images/s, bytes up, bytes down)`` on the line at ``baud`` (:func:`protocol.line_rate`):
        with the test images' mean bytes on the wire, in the shortest encoding the board at ``clock_hz``
        decodes (:func:`hone.rtl.board.link_figures`)."""
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


@dataclasses.dataclass
class InferenceFigures(Report):
    """A build's inference figures: the ``inference`` object of ``hone build --json``.

    Cycles are clocks of the design clock; rates are inferences per second; bytes are per image.
    ``dataset`` and ``accuracy`` are None when the network file names no data set (``cycles_basis``
    says so, and ``uart_bytes_up`` is then a raw image frame's), ``compute_inferences_per_s_at_fmax``
    when no fmax was measured.
    """
    dataset: str | None
    images: int
    accuracy: float | None
    cycles_basis: str
    core_cycles_mean: float
    core_cycles_max: int
    load_cycles: int
    cycles_per_inference: float
    compute_inferences_per_s: float
    compute_inferences_per_s_at_fmax: float | None
    uart_inferences_per_s: float
    uart_bytes_up: float
    uart_bytes_down: int
    compute_over_line: float


def inference_figures(network_path, *, lanes, clock_hz, fmax_hz, baud, images=None, test=None):
    """:class:`InferenceFigures` for ``network_path`` on ``lanes`` at ``clock_hz`` (and ``fmax_hz``,
    or None) with the line at ``baud``, over ``test`` (a :class:`TestImages`; default: the first
    ``images`` test images)."""
    from hone.rtl.board import loader_cycles

    test = test or TestImages(network_path, images)
    cycles = test.cycles(lanes)
    per_image = test.per_image(lanes)
    uart, up, down = test.line_rate(baud, clock_hz)
    return InferenceFigures(
        dataset=test.dataset, images=len(test.pixels), accuracy=test.accuracy,
        cycles_basis="test images" if test.dataset else "worst case (the network file names no data set)",
        core_cycles_mean=float(cycles.mean()), core_cycles_max=int(cycles.max()),
        load_cycles=loader_cycles(test.network), cycles_per_inference=per_image,
        compute_inferences_per_s=clock_hz / per_image,
        compute_inferences_per_s_at_fmax=None if fmax_hz is None else fmax_hz / per_image,
        uart_inferences_per_s=uart, uart_bytes_up=up, uart_bytes_down=down,
        compute_over_line=clock_hz / per_image / uart)
