"""The cycle model of :class:`hone.rtl.core.NetworkCore`: exact cycles of one inference, and the bound.

An inference starts the cycle after the last pixel is accepted and ends the cycle the result is
offered. The core runs its neuron layers in order (a max-pool is folded into the conv layer before
it, see :class:`hone.rtl.plan.CorePlan`). For neuron layer ``l`` with ``G = ceil(filters or outputs / P)``
groups, ``E`` input events (layer 0: the non-zero pixels, each adding all of its bit-planes at once;
later layers: the spikes the layer below lists, after its pool) and ``S`` listed output spikes (after
the pool; the output layer: its spikes, which vote), the sequencer spends

* dense: ``1 + G (E + 4) + S`` (``1 + G + S`` when ``E = 0``): per group ``E`` cycles issuing events,
  3 while the last one goes through the pipeline (event list register -> weight ROM -> weight
  register -> lanes) and 1 to compare; then 1 cycle per spike to list it (or count its vote);
* conv2d: ``1 + G (R + 6) + G (H' W' + 1) + S`` (``1 + G (H' W' + 1) + S`` when ``E = 0``), where ``R`` is the sum,
  over the events, of the output positions each reaches (:meth:`~hone.rtl.plan.ConvPlan.reach`): per
  group 1 cycle to load the first event, one cycle per (event, reached position), 5 while the last
  read-modify-write of the accumulator memory drains; then one cycle per output position to compare
  (and clear) it, OR-ing its spikes into the pool window, 1 to end the walk, and 1 cycle per listed spike.

so ``cycles = sum_l ...`` against the lower bound ``sum_l G * E`` (dense) and ``sum_l G * R`` (conv):
no design with ``P`` units that touches each (active input, reached output) pair once can do better.
Stalls of the trace port are not counted (the model assumes it is always ready). The input is
double-buffered: the next image loads while one runs.
"""

import numpy as np

__all__ = ["layer_events", "inference_cycles", "cycle_bound", "CONV_DRAIN", "RESULT_GAP"]

# clocks between one result and the next inference starting (take the result, then IDLE) when the
# next image is already loaded: back to back, images take ``cycles + RESULT_GAP`` each
RESULT_GAP = 2

# cycles after a conv layer's last accumulator update is issued until its positions can be read:
# the read-modify-write pipeline (addresses, weight ROM, accumulator read, add, write) drains
CONV_DRAIN = 5


def _inputs(plan, pixels, spikes):
    """Per neuron layer, its input activity ``(n, ...)``: the pixels, then what the layer below lists."""
    n = len(pixels)
    maps = [np.asarray(pixels, dtype=np.int64).reshape((n,) + tuple(plan.network.input.shape))]
    for trace in plan.trace_layers[:-1]:
        maps.append(np.asarray(spikes[trace[-1]]).reshape(n, -1))
    return maps


def _reached(layer, activity):
    """``(n,)`` sum over the active inputs of a conv layer of the output positions each reaches."""
    active = (activity.reshape(len(activity), layer.in_height, layer.in_width, layer.channels) != 0)
    return np.einsum("nyxc,yx->n", active.astype(np.int64), layer.reach())


def layer_events(plan, pixels, spikes):
    """Input events of every neuron layer, ``(n, layers)``: non-zero pixels, then listed spikes."""
    return np.stack([(activity.reshape(len(activity), -1) != 0).sum(axis=1)
                     for activity in _inputs(plan, pixels, spikes)], axis=1).astype(np.int64)


def inference_cycles(plan, pixels, spikes):
    """Exact cycles per image (``(n,)`` int) for integer ``pixels`` and the reference ``spikes`` (one
    array per network layer, as :class:`~hone.network.integer.IntegerNetwork` returns them)."""
    n = len(pixels)
    total = np.zeros(n, dtype=np.int64)
    for layer, trace, activity in zip(plan.layers, plan.trace_layers, _inputs(plan, pixels, spikes)):
        e = (activity.reshape(n, -1) != 0).sum(axis=1)
        listed = np.asarray(spikes[trace[-1]]).reshape(n, -1).sum(axis=1, dtype=np.int64)
        if layer.kind == "dense":
            total += 1 + np.where(e > 0, layer.groups * (e + 4), layer.groups) + listed
        else:
            reached = _reached(layer, activity)
            total += 1 + np.where(e > 0, layer.groups * (reached + 1 + CONV_DRAIN), 0) \
                + layer.groups * (layer.positions + 1) + listed
    return total


def cycle_bound(plan, pixels, spikes):
    """The lower bound per image (``(n,)`` int): ``sum_l G * E`` (dense) and ``G * R`` (conv)."""
    n = len(pixels)
    total = np.zeros(n, dtype=np.int64)
    for layer, activity in zip(plan.layers, _inputs(plan, pixels, spikes)):
        work = (_reached(layer, activity) if layer.kind == "conv2d"
                else (activity.reshape(n, -1) != 0).sum(axis=1))
        total += layer.groups * work
    return total
