"""Data sets, read from local files only (nothing is downloaded at run time).

- ``fashion-mnist``: 28x28 grey images, 60k train / 10k test, from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``), or from the folder named by
  the ``HONE_FASHION_MNIST_DIR`` environment variable.
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, a fixed stratified 80/20 split), for fast
  tests.

Pixels are float32 in [0, 1], shaped ``(n, height, width, 1)``. With ``binarize=True`` every pixel is
``1.0`` if it is ``>= 0.5`` else ``0.0``: binary input is the cheapest path into the hardware.
"""

import dataclasses
import gzip
import os
import pathlib

import numpy as np

__all__ = ["Dataset", "DatasetError", "DATASETS", "FASHION_MNIST_DIR", "load_dataset"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HONE_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetError(Exception):
    """A data set is missing or its files are not what they should be."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple
    binarized: bool

    @property
    def classes(self):
        return len(self.class_names)

    @property
    def input_shape(self):
        return self.x_train.shape[1:]

    @property
    def encoding(self):
        return "binary" if self.binarized else "grey"


def _read_idx(path, magic, expected_dims):
    try:
        with gzip.open(path, "rb") as file:
            data = file.read()
    except FileNotFoundError:
        raise
    except (OSError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None
    if len(data) < 4 + 4 * expected_dims:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    if found != magic:
        raise DatasetError(f"{path}: IDX magic number is {found:#010x}, expected {magic:#010x}")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(expected_dims)]
    offset = 4 + 4 * expected_dims
    size = int(np.prod(dims))
    if len(data) - offset != size:
        raise DatasetError(f"{path}: IDX header declares {dims} ({size} bytes of data) but the file "
                           f"holds {len(data) - offset} bytes")
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _load_fashion_mnist():
    folder = pathlib.Path(os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, magic, dims in (("images", 0x803, 3), ("labels", 0x801, 1)):
            path = folder / f"{prefix}-{kind}-idx{dims}-ubyte.gz"
            try:
                parts[split, kind] = _read_idx(path, magic, dims)
            except FileNotFoundError:
                raise DatasetError(
                    f"Fashion-MNIST file {path} not found. Install the Debian package "
                    f"'dataset-fashion-mnist' (apt-get install dataset-fashion-mnist), or set "
                    f"{FASHION_MNIST_ENV} to a folder holding train-images-idx3-ubyte.gz, "
                    f"train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz and "
                    f"t10k-labels-idx1-ubyte.gz") from None
    for split in ("train", "test"):
        images, labels = parts[split, "images"], parts[split, "labels"]
        if len(images) != len(labels):
            raise DatasetError(f"Fashion-MNIST {split}: {len(images)} images but {len(labels)} labels")
        if labels.max() >= len(FASHION_MNIST_CLASSES):
            raise DatasetError(f"Fashion-MNIST {split}: label {labels.max()} outside 0..9")
    scale = lambda images: (images.astype(np.float32) / 255.0)[..., None]
    return (scale(parts["train", "images"]), parts["train", "labels"].astype(np.int64),
            scale(parts["test", "images"]), parts["test", "labels"].astype(np.int64),
            FASHION_MNIST_CLASSES)


def _load_digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target.astype(np.int64), test_size=0.2, random_state=0, stratify=digits.target)
    return x_train, y_train, x_test, y_test, tuple(str(d) for d in range(10))


DATASETS = {"fashion-mnist": _load_fashion_mnist, "digits": _load_digits}


def load_dataset(name, *, binarize=False):
    """Load a data set by name (see :data:`DATASETS`)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    x_train, y_train, x_test, y_test, class_names = DATASETS[name]()
    if binarize:
        x_train = (x_train >= 0.5).astype(np.float32)
        x_test = (x_test >= 0.5).astype(np.float32)
    return Dataset(name, x_train, y_train, x_test, y_test, tuple(class_names), bool(binarize))
