"""Activity of a binary spiking network: spikes, synaptic operations and sparsity, per layer (numpy only).

Whetstone's paper (Severa et al. 2019) analyses how activity spreads over a sharpened network: it
measures sparsity with the Gini coefficient of per-neuron activity and compares optimizers and batch
normalization by it. This module is the one place hone computes those figures, from the spikes of
every layer of a network file, whoever produced them: :class:`~hone.network.integer.IntegerNetwork`
(``hone export``, ``hone infer``) or the RTL's trace (``hone sim``, through the cocotb testbench).

Definitions, per layer of the network file, over ``n`` images:

* **spikes per inference**: units of the layer that spike on one image (mean and maximum); the
  **firing rate** is the mean divided by the layer's units. A conv layer's units are its whole
  spike map (``H' * W' * filters``); a max-pool's are its pooled units (an OR of spikes).
* **synaptic operations per inference** (event-driven): each input event times the outputs it
  reaches. An event is a non-zero input: a spike of the layer below, or, for the first layer, a
  non-zero pixel (the core adds ``w * q`` for a K-bit pixel ``q`` in one operation, and skips zero
  pixels: see docs/rtl.md). A dense layer's event reaches all its outputs; a conv layer's event at
  ``(y, x, c)`` reaches ``filters`` outputs at every position its kernel offsets land inside the
  output map (fewer at the borders; :meth:`hone.rtl.plan.ConvPlan.reach` counts them the same way).
  This is the work of the event-driven core: with ``P = 1`` lane its cycle bound
  (:func:`hone.rtl.cycles.cycle_bound`) equals the layer's synaptic operations; with ``P`` lanes it
  takes ``ceil(outputs / P)`` cycles per event (or per reached position) of ``P`` operations each.
  A max-pool has no synapses (0).
* **dense engine**: a non-event-driven engine computes every synapse of every layer on every image,
  zeros included: ``inputs * outputs`` for a dense layer and, for a conv layer, every (input, output)
  pair its kernel connects (``filters * C * sum of reach``; 'same' padding's zeros are not synapses).
* **dead** units never spike on any image; **saturated** ones spike on every image.
* **Gini coefficient** of the per-unit spike counts (summed over the images):
  ``G = sum_i (2 i - m - 1) x_(i) / (m sum x)`` over the ``m`` counts sorted ascending (``i`` from 1):
  0 when every unit spikes equally often, ``1 - 1/m`` when one unit does all the spiking; 0 for a
  layer that never spikes.

:class:`ActivityCounter` accumulates the raw counts (:class:`ActivityCounts`, mergeable and
JSON-serialisable, so a testbench shard can hand them over); :func:`activity_report` turns them into
the JSON-ready report, :func:`format_activity` into a table and :func:`plot_activity` into a PNG.

Example:

>>> network, _ = read_network("net.hone")
>>> pixels = network.input.quantize(images)
>>> report = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes)
>>> print(format_activity(report))
"""

import dataclasses

import numpy as np

__all__ = ["LORENZ_POINTS", "ActivityCounts", "ActivityCounter", "measure_activity", "activity_report",
           "activity_equal", "gini", "fan_out", "dense_synapses", "format_activity", "plot_activity"]

LORENZ_POINTS = 21   # the Lorenz curve in a report: cumulative activity share at 0, 5, .., 100% of units


def gini(counts):
    """Gini coefficient of non-negative activity ``counts`` (any shape, flattened): a float in [0, 1).

    0 when every unit is equally active (or none is), ``1 - 1/m`` when one of ``m`` units does all of it.
    """
    x = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))
    total = x.sum()
    if len(x) == 0 or total <= 0:
        return 0.0
    m = len(x)
    return float(np.sum((2 * np.arange(1, m + 1) - m - 1) * x) / (m * total))


def _lorenz(counts):
    """Cumulative share of activity held by the least active 0, 5, .., 100% of units (``LORENZ_POINTS``)."""
    x = np.sort(np.asarray(counts, dtype=np.float64).reshape(-1))
    total = x.sum()
    if len(x) == 0 or total <= 0:
        return np.linspace(0.0, 1.0, LORENZ_POINTS).tolist()
    cumulative = np.concatenate([[0.0], np.cumsum(x) / total])
    at = np.linspace(0.0, len(x), LORENZ_POINTS)
    return np.interp(at, np.arange(len(x) + 1), cumulative).tolist()


def _conv_reach(layer, input_shape):
    """``(H, W)`` int64: output positions of ``layer`` that an input at each position reaches."""
    height, width, _ = input_shape
    _, kh, kw, _ = layer.weights.shape
    out_height, out_width, _ = layer.output_shape(tuple(input_shape))
    top, left = ((kh - 1) // 2, (kw - 1) // 2) if layer.padding == "same" else (0, 0)

    def span(size, out_size, k, pad):
        # offsets i with 0 <= position + pad - i < out_size and 0 <= i < k
        position = np.arange(size)
        low = np.maximum(0, position + pad - out_size + 1)
        high = np.minimum(k - 1, position + pad)
        return np.maximum(high - low + 1, 0)

    return np.outer(span(height, out_height, kh, top), span(width, out_width, kw, left)).astype(np.int64)


def fan_out(network):
    """Outputs each input unit of every layer reaches: one int64 array per layer of ``network``.

    Dense layer: ``(inputs,)`` all equal to its outputs. Conv layer: ``(H, W, C)``, ``filters`` times
    the output positions the input's position reaches. Max-pool: ``None`` (no synapses).
    """
    result, shape = [], tuple(network.input.shape)
    for layer in network.layers:
        if layer.kind == "dense":
            result.append(np.full(int(np.prod(shape)), layer.outputs, dtype=np.int64))
        elif layer.kind == "conv2d":
            reach = _conv_reach(layer, shape)
            result.append(np.repeat(reach[:, :, None], shape[2], axis=2) * layer.outputs)
        else:
            result.append(None)
        shape = layer.output_shape(shape)
    return result


def dense_synapses(network):
    """Synapses of every layer (``list`` of int): what a dense, non-event-driven engine computes per
    inference. Dense: ``inputs * outputs``; conv: every (input, output) pair its kernel connects;
    max-pool: 0."""
    return [0 if fan is None else int(fan.sum()) for fan in fan_out(network)]


@dataclasses.dataclass
class ActivityCounts:
    """Raw activity of ``images`` images: what every report figure is computed from.

    Args:
        names: Layer names, in the network file's order.
        kinds: Layer kinds (``"dense"``, ``"conv2d"``, ``"maxpool2d"``).
        input_events: ``(images,)`` int64, non-zero pixels per image.
        spikes: Per layer, ``(images,)`` int64 spiking units per image.
        synops: Per layer, ``(images,)`` int64 event-driven synaptic operations per image.
        neurons: Per layer, ``(units,)`` int64 spikes of each unit summed over the images (flattened
            in the file's row-major H, W, C order).
        dense_synapses: Per layer, synapses a dense engine computes per image (int).
    """

    names: list
    kinds: list
    input_events: np.ndarray
    spikes: list
    synops: list
    neurons: list
    dense_synapses: list

    @property
    def images(self):
        """Images counted (int)."""
        return int(len(self.input_events))

    def to_dict(self):
        """A JSON-ready dict (lists of ints) that :meth:`from_dict` reads back."""
        return {"names": list(self.names), "kinds": list(self.kinds),
                "input_events": self.input_events.tolist(),
                "spikes": [s.tolist() for s in self.spikes], "synops": [s.tolist() for s in self.synops],
                "neurons": [s.tolist() for s in self.neurons], "dense_synapses": list(self.dense_synapses)}

    @classmethod
    def from_dict(cls, data):
        def arrays(key):
            return [np.asarray(values, dtype=np.int64) for values in data[key]]
        return cls(list(data["names"]), list(data["kinds"]), np.asarray(data["input_events"], dtype=np.int64),
                   arrays("spikes"), arrays("synops"), arrays("neurons"), list(data["dense_synapses"]))

    @classmethod
    def concatenate(cls, parts):
        """One :class:`ActivityCounts` of consecutive batches ``parts`` (same network), images in order."""
        parts = list(parts)
        first = parts[0]
        return cls(first.names, first.kinds, np.concatenate([p.input_events for p in parts]),
                   [np.concatenate(layer) for layer in zip(*(p.spikes for p in parts))],
                   [np.concatenate(layer) for layer in zip(*(p.synops for p in parts))],
                   [np.sum(layer, axis=0) for layer in zip(*(p.neurons for p in parts))],
                   first.dense_synapses)


def activity_equal(a, b):
    """Whether two :class:`ActivityCounts` hold the same numbers (every image, every unit)."""
    return (a.names == b.names and a.dense_synapses == b.dense_synapses
            and np.array_equal(a.input_events, b.input_events)
            and all(len(x) == len(y) and all(np.array_equal(u, v) for u, v in zip(x, y))
                    for x, y in ((a.spikes, b.spikes), (a.synops, b.synops), (a.neurons, b.neurons))))


class ActivityCounter:
    """Accumulates :class:`ActivityCounts` batch by batch (a testbench adds one image at a time).

    Args:
        network: The :class:`~hone.network.netfile.Network` whose spikes are counted.

    Example:

    >>> counter = ActivityCounter(network)
    >>> counter.add(pixels, IntegerNetwork(network).run(pixels).spikes)
    >>> counts = counter.counts()
    """

    def __init__(self, network):
        self.network = network
        self._shapes = [tuple(network.input.shape)] + [tuple(s) for s in network.shapes()]
        self._units = [int(np.prod(shape)) for shape in self._shapes[1:]]
        self._fan_out = fan_out(network)
        self._dense = dense_synapses(network)
        self._parts = []
        self._neurons = [np.zeros(units, dtype=np.int64) for units in self._units]

    def add(self, pixels, spikes):
        """Count a batch.

        Args:
            pixels: ``(n, *input.shape)`` or ``(n, input.size)`` integer pixels the network ran on.
            spikes: One array per layer of the network, ``(n, units)`` or ``(n, *shape)``, 0/1 (any
                integer or bool dtype), as ``IntegerNetwork.run(pixels).spikes`` gives them.

        Raises:
            ValueError: ``spikes`` has the wrong number of layers, or an array of the wrong size.
        """
        pixels = np.asarray(pixels)
        n = len(pixels)
        if len(spikes) != len(self._units):
            raise ValueError(f"expected spikes of {len(self._units)} layers, got {len(spikes)}")
        flat = []
        for index, (layer_spikes, units) in enumerate(zip(spikes, self._units)):
            array = np.asarray(layer_spikes)
            if array.size != n * units:
                raise ValueError(f"layer {index} ({self.network.layers[index].name}): expected {n} x {units} "
                                 f"spikes, got shape {array.shape}")
            flat.append(array.reshape(n, units) != 0)
        inputs = [pixels.reshape(n, -1) != 0] + flat[:-1]
        synops = []
        for active, fan in zip(inputs, self._fan_out):
            if fan is None:
                synops.append(np.zeros(n, dtype=np.int64))
            else:
                synops.append(active.astype(np.int64) @ fan.reshape(-1))
        for total, active in zip(self._neurons, flat):
            total += active.sum(axis=0, dtype=np.int64)
        self._parts.append((inputs[0].sum(axis=1, dtype=np.int64),
                            [active.sum(axis=1, dtype=np.int64) for active in flat], synops))

    def counts(self):
        """The :class:`ActivityCounts` of every image added so far, in order."""
        layers = len(self._units)
        names = [layer.name for layer in self.network.layers]
        kinds = [layer.kind for layer in self.network.layers]
        if not self._parts:
            empty = np.zeros(0, dtype=np.int64)
            return ActivityCounts(names, kinds, empty, [empty] * layers, [empty] * layers,
                                  [t.copy() for t in self._neurons], list(self._dense))
        return ActivityCounts(
            names, kinds, np.concatenate([p[0] for p in self._parts]),
            [np.concatenate([p[1][i] for p in self._parts]) for i in range(layers)],
            [np.concatenate([p[2][i] for p in self._parts]) for i in range(layers)],
            [t.copy() for t in self._neurons], list(self._dense))


def activity_report(counts, *, source="integer model"):
    """The activity report: per layer and in total, JSON-ready.

    Args:
        counts: :class:`ActivityCounts` of at least one image.
        source: What produced the spikes (shown in the table), e.g. ``"integer model"`` or ``"RTL trace"``.

    Returns:
        A dict: ``images``, ``source``, ``input_events_mean`` (non-zero pixels per image), ``layers``
        (one dict per layer: ``name``, ``kind``, ``units``, ``spikes_mean``, ``spikes_max`` (spikes per
        inference), ``rate`` (fraction of units spiking per inference), ``events_mean`` (input events
        per inference), ``synops_mean``, ``synops_max`` (event-driven synaptic operations per
        inference), ``dense_synops`` (a dense engine's, per inference), ``synops_fraction``
        (event-driven over dense), ``dead``, ``saturated`` (units), ``gini``, ``lorenz``
        (``LORENZ_POINTS`` cumulative activity shares of the least active 0..100% of units)) and
        ``total`` (``synops_mean``, ``synops_max``, ``dense_synops``, ``synops_fraction``,
        ``spikes_mean`` of the neuron layers, dense and conv).

    Raises:
        ValueError: ``counts`` holds no image.
    """
    n = counts.images
    if n == 0:
        raise ValueError("no images: activity needs at least one")
    inputs = [counts.input_events] + list(counts.spikes[:-1])
    layers = []
    for index, name in enumerate(counts.names):
        neurons, spikes, synops = counts.neurons[index], counts.spikes[index], counts.synops[index]
        dense = int(counts.dense_synapses[index])
        layers.append({
            "name": name, "kind": counts.kinds[index], "units": int(len(neurons)),
            "spikes_mean": float(spikes.mean()), "spikes_max": int(spikes.max()),
            "rate": float(spikes.mean() / max(len(neurons), 1)),
            "events_mean": float(inputs[index].mean()),
            "synops_mean": float(synops.mean()), "synops_max": int(synops.max()), "dense_synops": dense,
            "synops_fraction": float(synops.mean() / dense) if dense else 0.0,
            "dead": int((neurons == 0).sum()), "saturated": int((neurons == n).sum()),
            "gini": gini(neurons), "lorenz": _lorenz(neurons),
        })
    total_synops = np.sum(counts.synops, axis=0)
    dense_total = int(sum(counts.dense_synapses))
    neuron_spikes = np.sum([s for s, kind in zip(counts.spikes, counts.kinds) if kind != "maxpool2d"], axis=0)
    return {
        "images": n, "source": source, "input_events_mean": float(counts.input_events.mean()),
        "layers": layers,
        "total": {"synops_mean": float(total_synops.mean()), "synops_max": int(total_synops.max()),
                  "dense_synops": dense_total,
                  "synops_fraction": float(total_synops.mean() / dense_total) if dense_total else 0.0,
                  "spikes_mean": float(neuron_spikes.mean())},
    }


def measure_activity(network, pixels, spikes, *, source="integer model"):
    """:func:`activity_report` of ``network`` on ``pixels`` with every layer's ``spikes`` (see
    :meth:`ActivityCounter.add` for the shapes)."""
    counter = ActivityCounter(network)
    counter.add(pixels, spikes)
    return activity_report(counter.counts(), source=source)


def _count(value):
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def format_activity(report):
    """The report as a fixed-width text table (one row per layer, then the total)."""
    lines = [f"activity over {report['images']} images ({report['source']}); input: "
             f"{report['input_events_mean']:.1f} non-zero pixels per image",
             f"{'layer':<16}{'kind':<10}{'units':>7}{'spikes/inf':>12}{'max':>7}{'rate':>7}{'dead':>6}"
             f"{'sat.':>6}{'Gini':>7}{'synaptic ops/inf':>18}{'dense engine':>14}{'ratio':>8}"]
    for layer in report["layers"]:
        synapses = layer["kind"] != "maxpool2d"
        lines.append(
            f"{layer['name']:<16}{layer['kind']:<10}{layer['units']:>7}{layer['spikes_mean']:>12.1f}"
            f"{layer['spikes_max']:>7}{layer['rate']:>7.3f}{layer['dead']:>6}{layer['saturated']:>6}"
            f"{layer['gini']:>7.3f}"
            + (f"{_count(layer['synops_mean']):>18}{layer['dense_synops']:>14,}{layer['synops_fraction']:>8.1%}"
               if synapses else f"{'-':>18}{'-':>14}{'':>8}"))
    total = report["total"]
    lines.append(f"{'total':<16}{'':<10}{'':>7}{total['spikes_mean']:>12.1f}{'':>7}{'':>7}{'':>6}{'':>6}{'':>7}"
                 f"{_count(total['synops_mean']):>18}{total['dense_synops']:>14,}{total['synops_fraction']:>8.1%}")
    return "\n".join(lines)


def plot_activity(report, path):
    """Write the report as a PNG at ``path``: firing rate with dead and saturated units, synaptic
    operations per inference (event-driven against a dense engine, log scale) and each layer's
    Lorenz curve with its Gini coefficient. Returns ``path``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = report["layers"]
    names = [layer["name"] for layer in layers]
    positions = np.arange(len(layers))
    figure, (rates, work, lorenz) = plt.subplots(1, 3, figsize=(15, 4.2))
    rates.bar(positions, [layer["rate"] for layer in layers], color="tab:blue", label="firing rate")
    rates.plot(positions, [layer["dead"] / max(layer["units"], 1) for layer in layers], "kv",
               label="dead (fraction of units)")
    rates.plot(positions, [layer["saturated"] / max(layer["units"], 1) for layer in layers], "r^",
               label="saturated (fraction)")
    rates.set_xticks(positions, names, rotation=30, ha="right")
    rates.set_ylim(0, 1)
    rates.set_title(f"activity over {report['images']} images ({report['source']})")
    rates.legend(fontsize=8)
    synaptic = [i for i, layer in enumerate(layers) if layer["kind"] != "maxpool2d"]
    width = 0.4
    work.bar(np.arange(len(synaptic)) - width / 2, [layers[i]["synops_mean"] for i in synaptic], width,
             label="event-driven (mean)")
    work.bar(np.arange(len(synaptic)) + width / 2, [layers[i]["dense_synops"] for i in synaptic], width,
             label="dense engine")
    work.set_yscale("log")
    work.set_xticks(np.arange(len(synaptic)), [names[i] for i in synaptic], rotation=30, ha="right")
    total = report["total"]
    work.set_title(f"synaptic ops / inference: {total['synops_mean']:,.0f} vs {total['dense_synops']:,} "
                   f"({total['synops_fraction']:.1%})")
    work.legend(fontsize=8)
    share = np.linspace(0, 1, LORENZ_POINTS)
    lorenz.plot(share, share, "k:", linewidth=1)
    for layer in layers:
        lorenz.plot(share, layer["lorenz"], label=f"{layer['name']} (Gini {layer['gini']:.2f})")
    lorenz.set_xlabel("share of units, least active first")
    lorenz.set_ylabel("share of spikes")
    lorenz.set_title("Lorenz curves of per-unit activity")
    lorenz.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
