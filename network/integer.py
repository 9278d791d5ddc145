"""``IntegerNetwork``: the bit-exact integer reference model of a network file (numpy only).

It is the golden model that the RTL, the simulators and the boards are checked against: every
layer's spike vector, and the decoded class (none for a network whose output is its spike vector), for
a batch of images. Sums are computed with float64
matrix products, which are exact for integers below 2**53; the reader caps accumulators far below that.
"""

import numpy as np

from .nhot import decode_spikes

__all__ = ["IntegerNetwork", "conv_patches"]


def conv_patches(x, kh, kw, padding):
    """``(n, H', W', kh * kw * C)`` patches of channel-last maps ``x`` (stride 1), zero-padded for 'same'."""
    if padding == "same":
        top, left = (kh - 1) // 2, (kw - 1) // 2
        x = np.pad(x, ((0, 0), (top, kh - 1 - top), (left, kw - 1 - left), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # n, H', W', C, kh, kw
    n, height, width, channels = windows.shape[:4]
    return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n, height, width, kh * kw * channels)


class IntegerNetwork:
    """Run a :class:`~hone.network.netfile.Network` in integer arithmetic.

    Args:
        network: A validated :class:`~hone.network.netfile.Network`.
        chunk: Images per vectorized pass (memory bound for conv layers). Defaults to `500`.

    Example:

    >>> network, _ = read_network("net.hone")
    >>> result = IntegerNetwork(network).run(network.input.quantize(images))
    >>> result.classes, result.spikes[-1]
    """

    def __init__(self, network, *, chunk=500):
        self.network = network
        self.chunk = int(chunk)  # images per pass: bounds the memory of conv patches

    def run(self, pixels, *, bit_planes=False):
        """Spikes of every layer and the decoded classes for integer pixels ``q``.

        Args:
            pixels: ``(n, height, width, channels)`` or ``(n, height * width * channels)`` unsigned
                integers below ``2**input.bits``.
            bit_planes: Feed the first layer one binary bit-plane at a time, each with its weights
                shifted by the plane's significance (what the hardware does). Equal to the direct
                integer product by construction; kept to prove it.

        Returns:
            A :class:`Result` with ``spikes`` (one 0/1 ``uint8`` array per layer) and ``classes``
            (None for a spike output: the last layer's spikes are the output).
        """
        spec = self.network.input
        q = np.asarray(pixels)
        if not np.issubdtype(q.dtype, np.integer):
            raise TypeError(f"pixels must be integers (use network.input.quantize), got {q.dtype}")
        q = q.reshape((len(q),) + tuple(spec.shape))
        if q.size and (q.min() < 0 or q.max() >= 2 ** spec.bits):
            raise ValueError(f"pixels must be in 0..{2 ** spec.bits - 1} for {spec.bits}-bit input, "
                             f"got {q.min()}..{q.max()}")
        chunks = [self._forward(q[start:start + self.chunk], bit_planes)
                  for start in range(0, len(q), self.chunk)] or [self._forward(q, bit_planes)]
        spikes = [np.concatenate(layer_spikes) for layer_spikes in zip(*chunks)]
        if self.network.output.kind == "spikes":
            return Result(spikes, None)
        return Result(spikes, decode_spikes(spikes[-1], self.network.output.key))

    def _forward(self, q, bit_planes):
        x = q.astype(np.float64)
        spikes = []
        for index, layer in enumerate(self.network.layers):
            planes = bit_planes and index == 0 and self.network.input.bits > 1
            x = self._layer(layer, x, planes)
            spikes.append(x.astype(np.uint8))
        return spikes

    def _layer(self, layer, x, planes):
        if layer.kind == "maxpool2d":
            n, height, width, channels = x.shape
            ph, pw = layer.pool
            h, w = height // ph, width // pw
            x = x[:, :h * ph, :w * pw, :].reshape(n, h, ph, w, pw, channels)
            return x.max(axis=(2, 4))
        if planes:
            q = x.astype(np.int64)
            sums = sum(self._sums(layer, ((q >> k) & 1).astype(np.float64)) * (1 << k)
                       for k in range(self.network.input.bits))
        else:
            sums = self._sums(layer, x)
        return (sums >= layer.thresholds).astype(np.float64)

    @staticmethod
    def _sums(layer, x):
        if layer.kind == "dense":
            return x.reshape(len(x), -1) @ layer.weights.reshape(layer.outputs, -1).T.astype(np.float64)
        filters, kh, kw, _ = layer.weights.shape
        patches = conv_patches(x, kh, kw, layer.padding)
        return patches @ layer.weights.reshape(filters, -1).T.astype(np.float64)


class Result:
    """Spikes of every layer (list of ``uint8`` arrays, batch first) and the decoded ``classes``
    (None when the network's output is its last layer's spike vector)."""

    def __init__(self, spikes, classes):
        self.spikes = spikes
        self.classes = classes

    @property
    def outputs(self):
        """The output layer's spikes, ``(n, units)`` ``uint8``: a spike output's result itself."""
        return self.spikes[-1].reshape(len(self.spikes[-1]), -1)

    @property
    def labels(self):
        """The label field the hardware's RESULT carries: the class, or 0 for a spike output."""
        if self.classes is None:
            return np.zeros(len(self.spikes[-1]), dtype=np.int64)
        return self.classes

    def spike_rates(self):
        """Mean fraction of units spiking, per layer."""
        return [float(s.mean()) for s in self.spikes]
