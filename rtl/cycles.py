"""The cycle model of :class:`hone.rtl.core.NetworkCore`: exact cycles of one inference, and the bound.

An inference starts the cycle after the last pixel is accepted and ends the cycle the result is
offered. For layer ``l`` with ``G = ceil(outputs / P)`` groups, ``E`` input events (layer 0: the
non-zero pixels, each adding all of its bit-planes at once; later layers: the spikes of the layer
below) and ``S`` output spikes, the sequencer spends

* 1 cycle to start the layer,
* per group: ``E`` cycles issuing events, then 3 while the last one goes through the pipeline
  (event list register -> weight ROM -> weight register -> lanes) and 1 to compare (without events
  only the compare: ``1``),
* 1 cycle per output spike, to append it to the next layer's event list (or count its vote).

so ``cycles = sum_l 1 + G (E + 4) + S`` (``1 + G + S`` when ``E = 0``), against the lower bound
``sum_l G * E``: no design with ``P`` units that touches each (active input, neuron) pair once can
do better. Stalls of the trace port are not counted (the model assumes it is always ready). The
input is double-buffered: the next image loads while one runs.
"""

import numpy as np

__all__ = ["layer_events", "inference_cycles", "cycle_bound", "RESULT_GAP"]

# clocks between one result and the next inference starting (take the result, then IDLE) when the
# next image is already loaded: back to back, images take ``cycles + RESULT_GAP`` each
RESULT_GAP = 2


def layer_events(pixels, spikes):
    """Input events of every layer, ``(n, layers)``: non-zero pixels, then spikes of each layer below."""
    q = np.asarray(pixels, dtype=np.int64).reshape(len(pixels), -1)
    counts = [(q != 0).sum(axis=1)] + [np.asarray(s).reshape(len(s), -1).sum(axis=1).astype(np.int64) for s in spikes[:-1]]
    return np.stack(counts, axis=1)


def inference_cycles(plan, pixels, spikes):
    """Exact cycles per image (``(n,)`` int) for integer ``pixels`` and the reference ``spikes``."""
    events = layer_events(pixels, spikes)
    total = np.zeros(len(events), dtype=np.int64)
    for index, layer in enumerate(plan.layers):
        e = events[:, index]
        fired = np.asarray(spikes[index]).reshape(len(e), -1).sum(axis=1, dtype=np.int64)
        total += 1 + np.where(e > 0, layer.groups * (e + 4), layer.groups) + fired
    return total


def cycle_bound(plan, pixels, spikes):
    """The lower bound ``sum_l ceil(N_out / P) * active inputs`` per image (``(n,)`` int)."""
    events = layer_events(pixels, spikes)
    groups = np.array([layer.groups for layer in plan.layers], dtype=np.int64)
    return events @ groups
