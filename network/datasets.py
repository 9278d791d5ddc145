"""Data sets, read from local files only (nothing is downloaded at run time).

- ``fashion-mnist``: 28x28 grey images, 60k train / 10k test, from the Debian package
  ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist/*.gz``), or from the folder named by
  the ``HONE_FASHION_MNIST_DIR`` environment variable.
- ``digits``: scikit-learn's bundled 8x8 digits (1,797 images, a fixed stratified 80/20 split), for fast
  tests.
- ``mnist``, ``fashion_mnist`` (also ``keras-fashion-mnist``), ``cifar10``, ``cifar100``: the files
  ``keras.datasets`` keeps in its cache (``$KERAS_HOME/datasets``, else ``~/.keras/datasets``), read here
  directly so that Keras never tries the network; a missing file is an error naming the file to place.
- a path to an ``.npz`` file holding ``x_train``, ``y_train``, ``x_test`` and ``y_test`` as
  ``keras.datasets`` returns them (see :func:`load_dataset`).

Pixels are float32 in [0, 1], shaped ``(n, height, width, channels)`` (one channel for grey images), or
``(n, features)`` for flat data. With ``binarize=True`` every pixel is ``1.0`` if it is ``>= 0.5`` else
``0.0``: binary input is the cheapest path into the hardware.
"""

import dataclasses
import gzip
import json
import os
import pathlib
import pickle
import zipfile

import numpy as np
from .errors import HoneError, ParameterError

__all__ = ["check_dataset_name", "network_test_images", "Dataset", "DatasetError", "DATASETS", "FASHION_MNIST_DIR", "keras_cache_dir",
           "load_dataset"]

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_ENV = "HONE_FASHION_MNIST_DIR"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


class DatasetError(HoneError):
    """A data set is missing or its files are not what they should be."""


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A data set: train and test pixels (floats in [0, 1]), integer labels 0..C-1 and class names."""
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


IDX_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz")


def _load_fashion_mnist(folder=None, missing=None):
    folder = pathlib.Path(folder or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DIR)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, magic, dims in (("images", 0x803, 3), ("labels", 0x801, 1)):
            path = folder / f"{prefix}-{kind}-idx{dims}-ubyte.gz"
            try:
                parts[split, kind] = _read_idx(path, magic, dims)
            except FileNotFoundError:
                if missing is not None:
                    raise DatasetError(missing(path)) from None
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


# --- .npz files in keras.datasets' convention -------------------------------------------------------

NPZ_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_PIXELS = "uint8 pixels 0..255 or float pixels in [0, 1]"


def _index(flat_position, shape):
    return ", ".join(str(int(i)) for i in np.unravel_index(flat_position, shape))


def _pixels(source, name, x, sample_shape=None):
    """Float32 pixels in [0, 1] from uint8 (scaled by 1/255) or float arrays, checked."""
    if x.dtype.kind not in "uf" or (x.dtype.kind == "u" and x.dtype != np.uint8):
        raise DatasetError(f"{source}: {name} has dtype {x.dtype}; expected {_PIXELS}")
    if x.ndim not in (2, 3, 4):
        raise DatasetError(f"{source}: {name} has shape {tuple(x.shape)}; expected (n, height, width), "
                           f"(n, height, width, channels) or flat (n, features)")
    if len(x) == 0:
        raise DatasetError(f"{source}: {name} holds no samples; expected at least one")
    if sample_shape is not None and x.shape[1:] != sample_shape:
        raise DatasetError(f"{source}: {name} samples have shape {tuple(x.shape[1:])} but x_train samples "
                           f"{tuple(sample_shape)}; expected the same shape")
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / np.float32(255.0)
    else:
        bad = ~((x >= 0) & (x <= 1))  # NaN fails both comparisons
        if bad.any():
            position = int(np.flatnonzero(bad.ravel())[0])
            raise DatasetError(f"{source}: {name}[{_index(position, x.shape)}] is {float(x.flat[position]):.6g}; "
                               f"expected {_PIXELS}")
        x = x.astype(np.float32)
    return x[..., None] if x.ndim == 3 else x


def _labels(source, name, y, samples):
    if y.dtype.kind not in "iu":
        raise DatasetError(f"{source}: {name} has dtype {y.dtype}; expected integer labels 0..C-1")
    if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise DatasetError(f"{source}: {name} has shape {tuple(y.shape)}; expected (n,) or (n, 1) integer labels")
    y = y.reshape(-1).astype(np.int64)
    if len(y) != samples:
        x_name = name.replace("y_", "x_")
        raise DatasetError(f"{source}: {name} has {len(y)} labels but {x_name} {samples} samples; expected one "
                           f"label per sample")
    if y.min() < 0:
        position = int(np.argmin(y))
        raise DatasetError(f"{source}: {name}[{position}] is {y[position]}; expected integer labels 0..C-1")
    return y


def _class_names(source, names):
    if names.ndim != 1 or names.dtype.kind not in "US" or len(names) < 2:
        raise DatasetError(f"{source}: class_names has dtype {names.dtype} and shape {tuple(names.shape)}; "
                           f"expected a 1-D array of at least 2 strings, one per class")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names.tolist())


def _checked(source, arrays, class_names=None):
    """Pixels and labels of one data set, checked and put in hone's form (see :func:`load_dataset`)."""
    x_train = _pixels(source, "x_train", arrays["x_train"])
    x_test = _pixels(source, "x_test", arrays["x_test"], arrays["x_train"].shape[1:])
    y_train = _labels(source, "y_train", arrays["y_train"], len(x_train))
    y_test = _labels(source, "y_test", arrays["y_test"], len(x_test))
    if class_names is not None:
        class_names = _class_names(source, np.asarray(class_names))
        for name, y in (("y_train", y_train), ("y_test", y_test)):
            if y.max() >= len(class_names):
                position = int(np.argmax(y))
                raise DatasetError(f"{source}: {name}[{position}] is {y[position]}; expected labels "
                                   f"0..{len(class_names) - 1} (class_names has {len(class_names)} names)")
        return x_train, y_train, x_test, y_test, class_names
    classes = int(max(y_train.max(), y_test.max())) + 1
    absent = np.flatnonzero(np.bincount(y_train, minlength=classes) == 0)
    if len(absent):
        raise DatasetError(f"{source}: y_train has no label {absent[0]} (its labels run {y_train.min()}.."
                           f"{y_train.max()}, y_test's {y_test.min()}..{y_test.max()}); expected integer "
                           f"labels 0..C-1 with every class in y_train")
    if classes < 2:
        raise DatasetError(f"{source}: y_train and y_test hold only label 0; expected at least 2 classes")
    return x_train, y_train, x_test, y_test, tuple(str(c) for c in range(classes))


def _read_npz(path):
    """The arrays of an ``.npz`` file (no pickles), or :class:`DatasetError` naming what is wrong."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file; expected an .npz file with {', '.join(NPZ_ARRAYS)}")
    expected = f"expected numpy.savez output with {', '.join(NPZ_ARRAYS)}"
    try:
        if not zipfile.is_zipfile(path):
            with open(path, "rb") as file:
                what = "a .npy file, one array" if file.read(6) == b"\x93NUMPY" else "not a zip archive"
            raise DatasetError(f"{path}: not an .npz file ({what}); {expected}")
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            arrays = {}
            for name in (*NPZ_ARRAYS, "class_names"):
                if name in names:
                    try:
                        arrays[name] = npz[name]
                    except ValueError:  # object arrays need pickle, which is never allowed
                        raise DatasetError(f"{path}: {name} holds Python objects (dtype object); expected "
                                           f"a numeric array") from None
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise DatasetError(f"{path}: not a readable .npz file ({error}); {expected}") from None
    missing = [name for name in NPZ_ARRAYS if name not in arrays]
    if missing:
        raise DatasetError(f"{path}: no array {missing[0]!r} (the file holds {', '.join(names) or 'nothing'}); "
                           f"expected {', '.join(NPZ_ARRAYS)} as keras.datasets' load_data() returns them")
    return arrays


def _load_npz(path):
    arrays = _read_npz(path)
    return _checked(path, arrays, arrays.get("class_names"))


# --- keras.datasets' cache -----------------------------------------------------------------------------

KERAS_ORIGIN = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def keras_cache_dir():
    """The folder ``keras.datasets`` caches its files in: ``$KERAS_HOME/datasets``, else
    ``~/.keras/datasets`` (``/tmp/.keras/datasets`` when the home folder is not writable, as Keras does)."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        base = os.path.expanduser("~")
        home = os.path.join(base if os.access(base, os.W_OK) else "/tmp", ".keras")
    return pathlib.Path(os.path.expanduser(home)) / "datasets"


def _not_cached(name, missing, place):
    return (f"Keras dataset {name!r} is not in the Keras cache: {missing} not found. Nothing is downloaded "
            f"at run time: {place}, or copy {keras_cache_dir()} from a machine where "
            f"keras.datasets.{name}.load_data() has run (KERAS_HOME moves the cache)")


def _load_keras_mnist():
    path = keras_cache_dir() / "mnist.npz"
    if not path.is_file():
        raise DatasetError(_not_cached("mnist", path, f"place {KERAS_ORIGIN}mnist.npz at {path}"))
    return _checked(path, _read_npz(path))


def _load_keras_fashion_mnist():
    folder = keras_cache_dir() / "fashion-mnist"
    place = f"place {', '.join(IDX_FILES)} from {KERAS_ORIGIN} in {folder}/"
    return _load_fashion_mnist(folder, lambda path: _not_cached("fashion_mnist", path, place))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and plain Python values only (as keras.datasets reads CIFAR batches)."""

    ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
               ("numpy._core.multiarray", "_reconstruct")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")


def _read_cifar_batch(path, label_key):
    try:
        with open(path, "rb") as file:
            batch = {(k.decode() if isinstance(k, bytes) else k): v
                     for k, v in _ArrayUnpickler(file, encoding="bytes").load().items()}
        images = np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        labels = np.asarray(batch[label_key], dtype=np.int64)
    except FileNotFoundError:
        raise
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise DatasetError(f"{path}: not a CIFAR batch file ({type(error).__name__}: {error})") from None
    return images, labels


def _load_keras_cifar(name, url, target, inner, batches, label_key, names):
    # Keras 3 extracts the archive into datasets/<target>/<inner>; tf.keras 2 into datasets/<inner>.
    cache = keras_cache_dir()
    folders = [cache / target / inner, cache / inner]
    folder = next((f for f in folders if f.is_dir()), None)
    if folder is None:
        raise DatasetError(_not_cached(name, folders[0], f"extract {url} into {cache / target}/"))
    parts = {}
    for split, files in batches.items():
        try:
            read = [_read_cifar_batch(folder / file, label_key) for file in files]
        except FileNotFoundError as error:
            raise DatasetError(_not_cached(name, error.filename, f"extract {url} into {cache / target}/")) from None
        parts["x_" + split] = np.concatenate([images for images, _ in read])
        parts["y_" + split] = np.concatenate([labels for _, labels in read])
    return _checked(folder, parts, names(folder) if names else None)


def _cifar100_names(folder):
    try:
        with open(folder / "meta", "rb") as file:
            meta = _ArrayUnpickler(file, encoding="bytes").load()
        return [n.decode() for n in meta[b"fine_label_names"]]
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, AttributeError):
        return None  # the label values then name the classes


def _load_keras_cifar10():
    return _load_keras_cifar("cifar10", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                             "cifar-10-batches-py-target", "cifar-10-batches-py",
                             {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]},
                             "labels", lambda folder: CIFAR10_CLASSES)


def _load_keras_cifar100():
    return _load_keras_cifar("cifar100", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
                             "cifar-100-python-target", "cifar-100-python",
                             {"train": ["train"], "test": ["test"]}, "fine_labels", _cifar100_names)


DATASETS = {"fashion-mnist": _load_fashion_mnist, "digits": _load_digits, "mnist": _load_keras_mnist,
            "fashion_mnist": _load_keras_fashion_mnist, "keras-fashion-mnist": _load_keras_fashion_mnist,
            "cifar10": _load_keras_cifar10, "cifar100": _load_keras_cifar100}


def check_dataset_name(name):
    """``name`` if it is a name from :data:`DATASETS` or a path ending in ``.npz`` (the file itself is read,
    and checked, by :func:`load_dataset`); else :class:`DatasetError` listing the names."""
    if name in DATASETS or _is_npz(name):
        return name
    raise DatasetError(_unknown(name))


def _is_npz(name):
    return str(name).lower().endswith(".npz")


def _unknown(name):
    return (f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}, or a path to an .npz file "
            f"holding {', '.join(NPZ_ARRAYS)}")


def load_dataset(name, *, binarize=False):
    """Load a data set by name (see :data:`DATASETS`) or from an ``.npz`` file.

    An ``.npz`` file holds ``x_train``, ``y_train``, ``x_test`` and ``y_test`` as ``keras.datasets``'
    ``load_data()`` returns them, plus an optional ``class_names`` (1-D strings):

    - images ``(n, height, width)`` (given one channel), ``(n, height, width, channels)``, or flat
      ``(n, features)`` (kept flat: for dense networks);
    - pixels ``uint8`` 0..255 (scaled by 1/255) or floats in [0, 1] (NaN, negatives, values above 1 and
      other dtypes are refused);
    - labels integers ``(n,)`` or ``(n, 1)``, one per sample, 0..C-1 with every class in ``y_train``
      (or below ``len(class_names)``). The class names are the label values unless the file names them.

    Args:
        name: A name from :data:`DATASETS` or a path to an ``.npz`` file (kept as given in
            :attr:`Dataset.name`).
        binarize: Pixels become ``1.0`` where ``>= 0.5``, else ``0.0``. Defaults to `False`.

    Raises:
        DatasetError: An unknown name, or a missing or malformed file; one line naming the file, the
            array, the value found and what was expected.

    Example:

    >>> data = load_dataset("digits")
    >>> data.input_shape, data.classes
    ((8, 8, 1), 10)
    """
    if _is_npz(name):
        x_train, y_train, x_test, y_test, class_names = _load_npz(pathlib.Path(name).expanduser())
    elif name in DATASETS:
        x_train, y_train, x_test, y_test, class_names = DATASETS[name]()
    else:
        raise DatasetError(_unknown(name))
    if binarize:
        x_train = (x_train >= 0.5).astype(np.float32)
        x_test = (x_test >= 0.5).astype(np.float32)
    return Dataset(str(name), x_train, y_train, x_test, y_test, tuple(class_names), bool(binarize))


def network_test_images(network_path, images=None, dataset=None):
    """The network and the first ``images`` (default: all) test images of its data set, quantized as
    it takes them.

    Returns ``(network, pixels, labels, dataset)``: the network (:class:`~hone.network.netfile.Network`),
    pixels ``(images, *network.input.shape)`` int64 as :meth:`InputSpec.quantize` gives them, labels
    ``(images,)`` int64, and the data set's name.

    Raises:
        NetworkFileError: the file is not a valid network file, or its output cannot be measured on its
            input.
        DatasetError: no data set is named or found, or its images do not fit the network.
        ParameterError: ``images`` is outside ``1..len(test set)``.
    For a network whose output is its spike vector (an autoencoder), ``labels`` are the binary targets
    ``(images, pixels)``: the test images binarized (``pixel >= 0.5``).
    """
    from .netfile import NetworkFileError, read_network

    network, meta = read_network(network_path)
    if dataset is None and meta.get("dataset") is not None and not isinstance(meta.get("dataset"), str):
        raise DatasetError(f"{network_path}: meta.dataset: expected a data set name, got "
                        f"{json.dumps(meta['dataset'])[:60]}; pass the test images with --dataset")
    recorded = dataset is None and meta.get("dataset")
    dataset = dataset or meta.get("dataset")
    if dataset is None:
        raise DatasetError(f"{network_path} names no data set (it was exported without one): pass the test "
                        f"images with --dataset")
    try:
        data = load_dataset(dataset, binarize=network.input.bits == 1)
    except DatasetError as error:
        hint = f" (the data set {network_path} names; pass another with --dataset)" if recorded else ""
        raise DatasetError(f"{error}{hint}") from None
    # A flat sample (F,) is the network input (1, F, 1); a network whose first layer is dense reads any
    # sample of its input's size, flattened in (height, width, channel) order as Keras' Flatten does.
    shape, wanted = tuple(data.input_shape), tuple(network.input.shape)
    as_input = (1, shape[0], 1) if len(shape) == 1 else shape
    if as_input != wanted and not (network.layers[0].kind == "dense" and np.prod(shape) == np.prod(wanted)):
        raise DatasetError(f"dataset {dataset!r} has {shape} images but {network_path} takes "
                        f"{wanted}; pass the right one with --dataset")
    if images is None:
        images = len(data.x_test)
    if images < 1 or images > len(data.x_test):
        raise ParameterError("images", f"expected 1..{len(data.x_test)} (the {dataset} test set), "
                         f"got {images}")
    pixels = data.x_test[:images].reshape((images,) + wanted)
    if network.output.kind == "spikes":
        from .reconstruction import pixel_targets

        if network.layers[-1].outputs != network.input.size:
            raise NetworkFileError(f"{network_path}: its output is {network.layers[-1].outputs} spikes, not a "
                            f"reconstruction of its {network.input.size} input pixels: hone measures a spike "
                            f"output against its binarized input only")
        return network, network.input.quantize(pixels), pixel_targets(pixels), dataset
    return network, network.input.quantize(pixels), data.y_test[:images], dataset
