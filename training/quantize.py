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

import numpy as np

from .netfile import weight_range

__all__ = ["quantize_neurons"]

_TIE_TOLERANCE = 1e-9


_CLIP_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def _least_squares_range(a, reference, target, low, high, per_neuron):
    """Pick the clipping range ``c * max|a|`` (c from 1 down to 0.3) with the least squared weight
    error: at few bits, clipping the largest weights buys resolution for all the others.

    Returns the chosen range per neuron and the integer weights. Candidates are tried from ``c = 1``
    down and a later one must be strictly better, so an exactly representable neuron keeps ``c = 1``.
    """
    best_error = best_range = best_w = None
    for fraction in _CLIP_FRACTIONS:
        span = reference * fraction
        w = np.clip(np.rint(a / span[:, None] * target), low, high)  # divide first: no overflow
        error = ((w * (span / target)[:, None] - a) ** 2).sum(axis=1)
        if not per_neuron:
            error = np.full_like(error, error.sum())
        if best_error is None:
            best_error, best_range, best_w = error, span, w
            continue
        better = error < best_error
        best_error = np.where(better, error, best_error)
        best_range = np.where(better, span, best_range)
        best_w = np.where(better[:, None], w, best_w)
    return best_range, best_w


def quantize_neurons(weights, thresholds, bits, *, per_neuron=True, input_max=1):
    """Integer ``(W, theta)`` for real ``weights`` ``(outputs, fan_in)`` and ``thresholds`` ``(outputs,)``.

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
    low, high = weight_range(bits)
    magnitude = np.abs(a)
    if bits == 1:
        reference = magnitude.mean(axis=1) if per_neuron else np.full(len(a), magnitude.mean())
        target = 1.0
        w = np.where(a >= 0, 1, -1)
    else:
        reference = magnitude.max(axis=1) if per_neuron else np.full(len(a), magnitude.max(initial=0.0))
        target = float(high)
    alive = reference > 0
    safe = np.where(alive, reference, 1.0)
    if bits > 1:
        safe, w = _least_squares_range(a, safe, target, low, high, per_neuron)
    with np.errstate(over="ignore", invalid="ignore"):  # tiny weights: the threshold runs off to +-inf
        scaled = t / safe * target
        theta = np.where(np.isfinite(scaled),
                         np.ceil(scaled - _TIE_TOLERANCE * np.maximum(1.0, np.abs(scaled))), scaled)
    # constant neurons: all-zero weights fire iff 0 >= T
    if bits == 1:
        w = np.where(alive[:, None], w, 1)
    else:
        w = np.where(alive[:, None], w, 0)
    theta = np.where(alive, theta, np.where(t <= 0, -np.inf, np.inf))
    # A threshold below the smallest possible sum always fires, one above the largest never does:
    # clipping to [smallest, largest + 1] changes no output and bounds the accumulator.
    smallest = np.clip(w, None, 0).sum(axis=1) * float(input_max)
    largest = np.clip(w, 0, None).sum(axis=1) * float(input_max)
    theta = np.clip(theta, smallest, largest + 1)
    return w.astype(np.int64), theta.astype(np.int64)
