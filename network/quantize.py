"""Per-neuron (or per-layer) quantization of threshold neurons into integer weights and thresholds.

A folded spiking neuron fires iff ``a . x >= T`` (real ``a``, ``T``; integer inputs ``x >= 0``). Since
its output is only a comparison, scaling both sides by any ``S > 0`` changes nothing, so each neuron
gets its own scale at no hardware cost. With ``W = round(S a)`` the integer neuron fires iff
``W . x >= ceil(S T)``: the sum is an integer, so rounding the threshold *up* reproduces ``>=`` exactly
whenever the weights are exact, and is the nearest integer rule otherwise.

- ``bits >= 2``: ``S = (2**(bits-1) - 1) / (c max|a|)``, weights in ``-(2**(bits-1)-1) .. 2**(bits-1)-1``
  (clipped), with the clipping fraction ``c`` in 0.3..1 that minimises the squared weight error
  (``c = 1`` at 8 bits and up in practice; at 2 bits it keeps most weights from rounding to zero).
- ``bits == 1``: weights ``sign(a)`` in ``{-1, +1}`` and ``S = 1 / mean|a|`` (the least-squares scale).
- A neuron whose weights are all zero is a constant: it always fires if ``T <= 0``, never otherwise
  (``W = 0``, or ``+1`` for 1-bit weights, which have no 0).
- Thresholds are clipped to ``[smallest possible sum, largest + 1]``: no output changes, and the
  accumulator never needs more bits than the sums themselves.
"""

import contextlib

import numpy as np

from .netfile import weight_range

__all__ = ["CLIP_FRACTIONS", "neuron_span", "neuron_integers", "clip_thresholds", "quantize_neurons"]

_TIE_TOLERANCE = 1e-9

#: Clipping fractions ``c`` tried, from 1 down; a later one must lower the squared error strictly.
CLIP_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def neuron_span(weights, bits, *, per_neuron=True, axis=1, xp=np):
    """The real range each neuron's integer weights span: ``c max|a|`` (``mean|a|`` at 1 bit), 0 for a
    neuron whose weights are all zero. Its scale is ``(2**(bits-1) - 1) / span`` (``1 / span`` at 1 bit).

    Args:
        weights: ``(outputs, fan_in)`` real weights, one row per neuron.
        bits: Weight width, 1..16 (a Python int).
        per_neuron: One range per neuron, else one per layer. Defaults to `True`.
        axis: The fan-in axis: `1` for rows ``(outputs, fan_in)``, `0` for a Keras kernel
            ``(fan_in, outputs)``. Defaults to `1`.
        xp: Array namespace, `numpy` or `keras.ops` (see :func:`neuron_integers`). Defaults to `numpy`.
    """
    a = weights
    low, high = weight_range(bits)
    magnitude = xp.abs(a)
    if bits == 1:
        reference = xp.mean(magnitude, axis=axis)
        target = 1.0
    else:
        reference = xp.max(magnitude, axis=axis)
        target = float(high)
    if not per_neuron:
        reference = xp.zeros_like(reference) + (xp.mean(reference) if bits == 1 else xp.max(reference))
    alive = reference > 0
    span = xp.where(alive, reference, xp.zeros_like(reference) + 1.0)
    if bits > 1:
        span, _ = _least_squares_range(a, span, target, low, high, per_neuron, axis, xp)
    return xp.where(alive, span, 0.0)


def neuron_integers(weights, thresholds, bits, *, span=None, per_neuron=True, input_max=1, clip=True, axis=1,
                    xp=np):
    """Integer-valued ``(W, theta, scale)`` of real neurons, in any array namespace: the one quantizer.

    Export calls it with numpy in float64 (:func:`quantize_neurons`); quantization-aware training calls
    it with ``keras.ops`` on the folded weights inside the forward pass (:mod:`hone.training.qat`), so
    the network that trains is the network the file holds. ``xp`` needs numpy's ``abs, max, mean,
    sum, round, clip, ceil, where, isfinite, maximum, minimum, expand_dims, zeros_like``, which
    ``keras.ops`` mirrors; no other function is used.

    Args:
        weights: ``(outputs, fan_in)`` real weights, one row per neuron.
        thresholds: ``(outputs,)`` real thresholds ``T`` (fire iff ``weights @ x >= T``).
        bits: Weight width, 1..16 (a Python int).
        span: Each neuron's range, from :func:`neuron_span` (0: a constant neuron). Defaults to `None`:
            chosen for these weights.
        per_neuron: One scale per neuron, else one per layer (when choosing the span). Defaults to `True`.
        input_max: Largest input value (1 for spikes, ``2**K - 1`` for K-bit pixels). Defaults to `1`.
        clip: Clip the thresholds to the reachable sums (:func:`clip_thresholds`, which changes no
            output). Defaults to `True`.
        axis: The fan-in axis, as in :func:`neuron_span`. Defaults to `1`.
        xp: Array namespace, `numpy` or `keras.ops`. Defaults to `numpy`.

    Returns:
        ``(W, theta, scale)`` in the inputs' float dtype: integer weights and thresholds, and each
        neuron's scale ``S`` (``W ~ S a``, ``theta = ceil(S T)`` before clipping).
    """
    a, t = weights, thresholds
    low, high = weight_range(bits)
    target = 1.0 if bits == 1 else float(high)
    if span is None:
        span = neuron_span(a, bits, per_neuron=per_neuron, axis=axis, xp=xp)
    alive = span > 0
    span = xp.where(alive, span, xp.zeros_like(span) + 1.0)
    if bits == 1:
        w = xp.where(a >= 0, 1.0, -1.0)
    else:
        w = xp.clip(xp.round(a / xp.expand_dims(span, axis) * target), low, high)  # divide first: no overflow
    errors = np.errstate(over="ignore", invalid="ignore") if xp is np else contextlib.nullcontext()
    with errors:  # tiny weights: the threshold runs off to +-inf
        scaled = t / span * target
        theta = xp.where(xp.isfinite(scaled),
                         xp.ceil(scaled - _TIE_TOLERANCE * xp.maximum(1.0, xp.abs(scaled))), scaled)
    # constant neurons: all-zero weights fire iff 0 >= T
    w = xp.where(xp.expand_dims(alive, axis), w, 1.0 if bits == 1 else 0.0)
    theta = xp.where(alive, theta, xp.where(t <= 0, -np.inf, np.inf))
    if clip:
        theta = clip_thresholds(w, theta, input_max, axis=axis, xp=xp)
    return w, theta, target / span


def clip_thresholds(w, theta, input_max=1, *, axis=1, xp=np):
    """Thresholds clipped to ``[smallest possible sum, largest + 1]`` of integer weights ``w``
    ``(outputs, fan_in)`` on inputs in ``0..input_max``.

    A threshold below the smallest sum always fires, one above the largest never does: clipping changes
    no output and bounds the accumulator.
    """
    smallest = xp.sum(xp.minimum(w, 0.0), axis=axis) * float(input_max)
    largest = xp.sum(xp.maximum(w, 0.0), axis=axis) * float(input_max)
    return xp.minimum(xp.maximum(theta, smallest), largest + 1.0)


def _least_squares_range(a, reference, target, low, high, per_neuron, axis, xp):
    """Pick the clipping range ``c * max|a|`` (c from 1 down to 0.3) with the least squared weight
    error: at few bits, clipping the largest weights buys resolution for all the others.

    Returns the chosen range per neuron and the integer weights. Candidates are tried from ``c = 1``
    down and a later one must be strictly better, so an exactly representable neuron keeps ``c = 1``.
    """
    best_error = best_range = best_w = None
    for fraction in CLIP_FRACTIONS:
        span = reference * fraction
        w = xp.clip(xp.round(a / xp.expand_dims(span, axis) * target), low, high)  # divide first: no overflow
        error = xp.sum((w * xp.expand_dims(span / target, axis) - a) ** 2, axis=axis)
        if not per_neuron:
            error = xp.zeros_like(error) + xp.sum(error)
        if best_error is None:
            best_error, best_range, best_w = error, span, w
            continue
        better = error < best_error
        best_error = xp.where(better, error, best_error)
        best_range = xp.where(better, span, best_range)
        best_w = xp.where(xp.expand_dims(better, axis), w, best_w)
    return best_range, best_w


def quantize_neurons(weights, thresholds, bits, *, per_neuron=True, input_max=1):
    """Integer ``(W, theta)`` for real ``weights`` ``(outputs, fan_in)`` and ``thresholds`` ``(outputs,)``.

    :func:`neuron_integers` in numpy, float64.

    Args:
        weights: Real weights, one row per neuron.
        thresholds: Real thresholds ``T`` (fire iff ``weights @ x >= T``).
        bits: Weight width, 1..16.
        per_neuron: One scale per neuron (default) or one per layer.
        input_max: Largest input value (1 for spikes, ``2**K - 1`` for K-bit pixels).
    """
    bits = int(bits)
    if not 1 <= bits <= 16:
        raise ValueError(f"weight bits must be in 1..16. Received: bits={bits}")
    a = np.asarray(weights, dtype=np.float64)
    t = np.asarray(thresholds, dtype=np.float64)
    if a.ndim != 2 or t.shape != (a.shape[0],):
        raise ValueError(f"expected weights (outputs, fan_in) and thresholds (outputs,), "
                         f"got {a.shape} and {t.shape}")
    w, theta, _ = neuron_integers(a, t, bits, per_neuron=per_neuron, input_max=input_max)
    return w.astype(np.int64), theta.astype(np.int64)
