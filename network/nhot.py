"""N-hot population code for the output layer: a fixed key and its decoder.

The output layer has ``width`` spiking units; class ``c`` owns the ``nhot`` units where
``key[c] == 1`` (no unit is shared between classes). An output spike vector ``z`` decodes to the
class with the most *agreeing* units, ``agree[c] = sum_j (z[j] == key[c, j])``. Because every class
owns exactly ``nhot`` units, ``agree[c] = 2 * votes[c] + width - nhot - sum(z)`` with
``votes[c] = sum_j z[j] * key[c, j]``, so the arg-max of agreement is the arg-max of votes: hardware
only counts the spikes in each class's group.

Tie-break: among classes with equal votes the **lowest class index wins** (a strict ``>`` scan
from class 0 upwards). This includes the all-silent output, which decodes to class 0.

This module is numpy only, so the hardware side can use it; the Keras layer that trains through the
key is :class:`hone.training.decode.SoftmaxDecode`.
"""

import numpy as np

__all__ = ["nhot_key", "check_key", "decode_spikes"]


def nhot_key(classes, nhot, *, width=None, seed=0):
    """A seeded N-hot key: a ``(classes, width)`` 0/1 array with ``nhot`` ones per row, no shared columns.

    Args:
        classes: Number of classes (>= 2).
        nhot: Units per class (>= 1).
        width: Output layer width. Defaults to `classes * nhot`; extra units belong to no class.
        seed: Seed of the column permutation. Defaults to `0`.
    """
    classes, nhot = int(classes), int(nhot)
    if classes < 2:
        raise ValueError(f"`classes` must be at least 2. Received: classes={classes}")
    if nhot < 1:
        raise ValueError(f"`nhot` must be at least 1. Received: nhot={nhot}")
    width = classes * nhot if width is None else int(width)
    if classes * nhot > width:
        raise ValueError(
            f"`nhot` does not fit the output width: {classes} classes x {nhot} units = "
            f"{classes * nhot} > width {width}. Received: nhot={nhot}, width={width}")
    columns = np.random.default_rng(seed).permutation(width)[:classes * nhot].reshape(classes, nhot)
    key = np.zeros((classes, width), dtype=np.int8)
    np.put_along_axis(key, columns, 1, axis=1)
    return key


def check_key(key):
    """Validate and normalise a key to an int8 0/1 array with equal, disjoint rows."""
    key = np.asarray(key)
    if key.ndim != 2 or key.shape[0] < 2:
        raise ValueError(f"`key` must be a (classes >= 2, width) array. Received: key.shape={key.shape}")
    if not np.isin(key, (0, 1)).all():
        raise ValueError("`key` must hold only 0 and 1. Received: values "
                         f"{sorted(set(np.unique(key).tolist()) - {0, 1})}")
    key = key.astype(np.int8)
    per_class = key.sum(axis=1)
    if per_class.min() < 1 or per_class.min() != per_class.max():
        raise ValueError(f"every class must own the same number (>= 1) of units. "
                         f"Received: units per class={per_class.tolist()}")
    if key.sum(axis=0).max() > 1:
        raise ValueError("classes must not share output units. Received: a column owned by "
                         f"{int(key.sum(axis=0).max())} classes")
    return key


def decode_spikes(spikes, key):
    """Classes of a batch of output spike vectors: most votes, lowest class index on ties."""
    spikes = np.asarray(spikes)
    votes = (spikes != 0).astype(np.int32) @ np.asarray(key, dtype=np.int32).T
    return np.argmax(votes, axis=-1)  # np.argmax returns the first maximum: lowest index wins
