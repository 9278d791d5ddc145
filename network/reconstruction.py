"""Figures of a network whose output is a spike vector: a binary reconstruction of its input (numpy only).

An autoencoder's target is its own input, binarized (``pixel >= 0.5``, what ``--binarize`` feeds); its
output layer has one spiking unit per pixel. Two figures say how close a reconstruction is: the
**pixel accuracy** (the fraction of output bits equal to their target) and the **bits wrong per image**
(the Hamming distance to the target, averaged over the images).
"""

import numpy as np

__all__ = ["pixel_targets", "reconstruction_figures", "format_reconstruction", "plot_reconstructions"]


def pixel_targets(images):
    """Binary targets ``(n, pixels)`` ``uint8``: ``pixel >= 0.5`` of float ``images`` in [0, 1], any shape."""
    images = np.asarray(images)
    return (images.reshape(len(images), -1) >= 0.5).astype(np.uint8)


def reconstruction_figures(outputs, targets):
    """Pixel accuracy and bits wrong of binary ``outputs`` against binary ``targets``.

    Args:
        outputs: ``(n, units)`` 0/1 (any shape holding ``n`` rows of ``units``).
        targets: The same shape, 0/1.

    Returns:
        A dict of plain numbers: ``images``, ``pixels`` (per image), ``pixel_accuracy``,
        ``bits_wrong_per_image`` (mean), ``bits_wrong_max`` and ``exact_images`` (no bit wrong).

    Raises:
        ValueError: the shapes differ.
    """
    outputs, targets = np.asarray(outputs), np.asarray(targets)
    outputs = outputs.reshape(len(outputs), -1)
    targets = targets.reshape(len(targets), -1)
    if outputs.shape != targets.shape:
        raise ValueError(f"{outputs.shape[0]} outputs of {outputs.shape[1]} units but {targets.shape[0]} "
                         f"targets of {targets.shape[1]}")
    wrong = (outputs.astype(bool) != targets.astype(bool)).sum(axis=1)
    n, pixels = outputs.shape
    return {"images": int(n), "pixels": int(pixels),
            "pixel_accuracy": float(1 - wrong.sum() / max(n * pixels, 1)),
            "bits_wrong_per_image": float(wrong.mean()) if n else 0.0,
            "bits_wrong_max": int(wrong.max(initial=0)), "exact_images": int((wrong == 0).sum())}


def format_reconstruction(figures):
    """One line: pixel accuracy and bits wrong per image."""
    return (f"{100 * figures['pixel_accuracy']:.2f}% of pixels right, {figures['bits_wrong_per_image']:.1f} "
            f"of {figures['pixels']} bits wrong per image (max {figures['bits_wrong_max']}, "
            f"{figures['exact_images']}/{figures['images']} exact)")


def plot_reconstructions(path, images, rows, *, shape, count=10):
    """Originals next to reconstructions, one PNG: a row of ``images`` (floats in [0, 1]), a row of
    their binary targets (``pixel >= 0.5``) and one row per entry of ``rows`` (a title -> ``(n, pixels)``
    0/1 array), the first ``count`` images, each reconstruction titled with its bits wrong."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    count = min(count, len(images))
    targets = pixel_targets(images[:count])
    rows = {"target (>= 0.5)": targets, **rows}
    height, width = shape[0], shape[1]
    fig, axes = plt.subplots(1 + len(rows), count, figsize=(1.1 * count, 1.25 * (1 + len(rows))), squeeze=False)
    for column in range(count):
        axes[0][column].imshow(images[column].reshape(height, width), cmap="gray", vmin=0, vmax=1)
        for row, (title, spikes) in enumerate(rows.items(), start=1):
            picture = np.asarray(spikes)[column].reshape(height, width)
            wrong = int((picture.reshape(-1) != targets[column]).sum())
            axes[row][column].imshow(picture, cmap="gray", vmin=0, vmax=1)
            if spikes is not targets:
                axes[row][column].set_title(f"{wrong} wrong", fontsize=7)
    for row, title in enumerate(["original"] + list(rows)):
        axes[row][0].set_ylabel(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
