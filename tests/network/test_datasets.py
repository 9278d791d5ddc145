import argparse
import collections
import gzip
import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest

from hone.cli.arguments import dataset_argument
from hone.network.datasets import DatasetError, load_dataset


def test_digits_split_shapes_and_range(digits):
    assert digits.x_train.shape == (1437, 8, 8, 1) and digits.x_test.shape == (360, 8, 8, 1)
    assert digits.x_train.dtype == np.float32
    assert 0.0 <= digits.x_train.min() and digits.x_train.max() == 1.0
    assert sorted(np.unique(digits.y_test)) == list(range(10))
    assert digits.encoding == "grey" and digits.classes == 10


def test_binarized_input_is_pixel_at_least_half():
    grey, binary = load_dataset("digits"), load_dataset("digits", binarize=True)
    assert set(np.unique(binary.x_train).tolist()) == {0.0, 1.0}
    np.testing.assert_array_equal(binary.x_train, (grey.x_train >= 0.5).astype(np.float32))
    assert binary.encoding == "binary"


def test_fashion_mnist_from_the_debian_package():
    data = load_dataset("fashion-mnist")
    assert data.x_train.shape == (60000, 28, 28, 1) and data.x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(data.y_test).tolist() == [1000] * 10
    assert data.class_names[9] == "Ankle boot"


def test_missing_fashion_mnist_names_the_apt_package(tmp_path, monkeypatch):
    monkeypatch.setenv("HONE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=rf"^Fashion-MNIST file {tmp_path}/train-images-idx3-ubyte\.gz "
                                           r"not found\. Install the Debian package 'dataset-fashion-mnist'"):
        load_dataset("fashion-mnist")


def write_idx(path, magic, dims, payload):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in dims)
    with gzip.open(path, "wb") as file:
        file.write(header + payload)


def fake_fashion(folder, train_images=None):
    write_idx(folder / "train-images-idx3-ubyte.gz", 0x803, (2, 28, 28), train_images or bytes(2 * 784))
    write_idx(folder / "train-labels-idx1-ubyte.gz", 0x801, (2,), bytes([0, 9]))
    write_idx(folder / "t10k-images-idx3-ubyte.gz", 0x803, (1, 28, 28), bytes([255]) * 784)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", 0x801, (1,), bytes([3]))


def test_fashion_mnist_reader_on_a_small_valid_copy(tmp_path, monkeypatch):
    fake_fashion(tmp_path)
    monkeypatch.setenv("HONE_FASHION_MNIST_DIR", str(tmp_path))
    data = load_dataset("fashion-mnist", binarize=True)
    assert data.x_train.shape == (2, 28, 28, 1) and data.y_train.tolist() == [0, 9]
    assert data.x_test.min() == 1.0


def test_truncated_fashion_mnist_file_is_reported(tmp_path, monkeypatch):
    fake_fashion(tmp_path, train_images=bytes(100))
    monkeypatch.setenv("HONE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: IDX header declares \[2, 28, 28\] "
                                           r"\(1568 bytes of data\) but the file holds 100 bytes$"):
        load_dataset("fashion-mnist")


def test_wrong_magic_and_non_gzip_are_reported(tmp_path, monkeypatch):
    fake_fashion(tmp_path)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 0x803, (1,), bytes([3]))
    monkeypatch.setenv("HONE_FASHION_MNIST_DIR", str(tmp_path))
    with pytest.raises(DatasetError, match=r"IDX magic number is 0x00000803, expected 0x00000801$"):
        load_dataset("fashion-mnist")
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip")
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: not a readable gzip file"):
        load_dataset("fashion-mnist")


UNKNOWN = (r"^unknown dataset 'imagenet'; expected one of fashion-mnist, digits, mnist, fashion_mnist, "
           r"keras-fashion-mnist, cifar10, cifar100, or a path to an \.npz file holding x_train, y_train, x_test, "
           r"y_test$")


def test_unknown_dataset():
    with pytest.raises(DatasetError, match=UNKNOWN):
        load_dataset("imagenet")
    with pytest.raises(argparse.ArgumentTypeError, match=UNKNOWN):
        dataset_argument("imagenet")
    assert dataset_argument("digits") == "digits"
    assert dataset_argument("runs/../My Data.NPZ") == "runs/../My Data.NPZ"   # kept as given


# --- .npz files in keras.datasets' convention ------------------------------------------------------------

def write_npz(path, **arrays):
    """A small valid data set (uint8 (n, 4, 5) images, 3 classes); keyword arrays replace or (None) drop."""
    rng = np.random.default_rng(0)
    data = {"x_train": rng.integers(0, 256, (12, 4, 5), dtype=np.uint8), "y_train": np.arange(12) % 3,
            "x_test": rng.integers(0, 256, (6, 4, 5), dtype=np.uint8), "y_test": np.arange(6) % 3}
    data.update(arrays)
    np.savez(path, **{name: value for name, value in data.items() if value is not None})
    return path


def test_npz_uint8_images_get_a_channel_axis(tmp_path):
    path = write_npz(tmp_path / "data.npz")
    data = load_dataset(str(path))
    assert data.name == str(path) and data.x_train.dtype == np.float32
    assert data.x_train.shape == (12, 4, 5, 1) and data.x_test.shape == (6, 4, 5, 1)
    with np.load(path) as raw:
        np.testing.assert_array_equal(data.x_train[..., 0], raw["x_train"] / np.float32(255))
    assert data.y_train.dtype == np.int64 and data.class_names == ("0", "1", "2") and data.classes == 3
    binary = load_dataset(str(path), binarize=True)
    np.testing.assert_array_equal(binary.x_test, (data.x_test >= 0.5).astype(np.float32))


@pytest.mark.parametrize("shape", [(4, 5, 3), (20,)], ids=["channels", "flat"])
def test_npz_float_pixels_keep_their_shape(tmp_path, shape):
    rng = np.random.default_rng(1)
    x_train, x_test = rng.random((12, *shape)), rng.random((6, *shape)).astype(np.float32)
    x_train[0].flat[0], x_test[0].flat[0] = 0.0, 1.0   # both ends of [0, 1] are pixels
    path = write_npz(tmp_path / "data.npz", x_train=x_train, x_test=x_test, y_train=(np.arange(12) % 3)[:, None],
                     class_names=np.array(["cat", "dog", "eel"]))
    data = load_dataset(str(path))
    assert data.input_shape == shape and data.class_names == ("cat", "dog", "eel")
    np.testing.assert_array_equal(data.x_train, x_train.astype(np.float32))
    assert data.y_train.shape == (12,)


def bad(**arrays):
    return arrays


@pytest.mark.parametrize("arrays, message", [
    (bad(y_test=None), r"no array 'y_test' \(the file holds x_train, y_train, x_test\); expected x_train, y_train, "
                       r"x_test, y_test as keras\.datasets' load_data\(\) returns them"),
    (bad(x_train=np.zeros((12, 4, 5), np.int64)),
     r"x_train has dtype int64; expected uint8 pixels 0\.\.255 or float pixels in \[0, 1\]"),
    (bad(x_train=np.zeros(12, np.uint8)), r"x_train has shape \(12,\); expected \(n, height, width\), "
                                          r"\(n, height, width, channels\) or flat \(n, features\)"),
    (bad(x_test=np.zeros((6, 5, 4), np.uint8)),
     r"x_test samples have shape \(5, 4\) but x_train samples \(4, 5\); expected the same shape"),
    (bad(x_test=np.zeros((0, 4, 5), np.uint8), y_test=np.zeros(0, int)),
     r"x_test holds no samples; expected at least one"),
    (bad(x_train=np.full((12, 4, 5), 0.25).clip(0, np.where(np.arange(20).reshape(4, 5) == 7, np.nan, 1))),
     r"x_train\[0, 1, 2\] is nan; expected uint8 pixels 0\.\.255 or float pixels in \[0, 1\]"),
    (bad(x_test=-np.ones((6, 4, 5)) / 8), r"x_test\[0, 0, 0\] is -0\.125; expected uint8 pixels 0\.\.255 or float "
                                          r"pixels in \[0, 1\]"),
    (bad(x_test=np.full((6, 4, 5), 255.0)), r"x_test\[0, 0, 0\] is 255; expected uint8 pixels 0\.\.255 or float "
                                            r"pixels in \[0, 1\]"),
    (bad(x_train=np.array([None] * 12)), r"x_train holds Python objects \(dtype object\); expected a numeric array"),
    (bad(y_train=(np.arange(12) % 3).astype(np.float32)),
     r"y_train has dtype float32; expected integer labels 0\.\.C-1"),
    (bad(y_train=np.zeros((12, 2), int)), r"y_train has shape \(12, 2\); expected \(n,\) or \(n, 1\) integer labels"),
    (bad(y_test=np.arange(5) % 3), r"y_test has 5 labels but x_test 6 samples; expected one label per sample"),
    (bad(y_test=np.array([0, 1, 2, -1, 0, 1])), r"y_test\[3\] is -1; expected integer labels 0\.\.C-1"),
    (bad(y_train=np.arange(12) % 3 + 1, y_test=np.arange(6) % 3 + 1),
     r"y_train has no label 0 \(its labels run 1\.\.3, y_test's 1\.\.3\); expected integer labels 0\.\.C-1 with "
     r"every class in y_train"),
    (bad(y_train=np.zeros(12, int), y_test=np.zeros(6, int)),
     r"y_train and y_test hold only label 0; expected at least 2 classes"),
    (bad(class_names=np.array(["a", "b"])), r"y_train\[2\] is 2; expected labels 0\.\.1 \(class_names has 2 names\)"),
    (bad(class_names=np.arange(3)), r"class_names has dtype int64 and shape \(3,\); expected a 1-D array of at "
                                    r"least 2 strings, one per class"),
], ids=["missing-array", "int64-pixels", "shape", "test-shape", "empty", "nan", "negative", "above-1",
        "objects", "float-labels", "label-shape", "label-count", "negative-label", "one-based-labels",
        "one-class", "short-class-names", "numeric-class-names"])
def test_bad_npz_is_refused_in_one_line(tmp_path, arrays, message):
    path = write_npz(tmp_path / "data.npz", **arrays)
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: {message}$"):
        load_dataset(str(path))


def test_npz_that_is_missing_or_not_an_archive(tmp_path):
    path = tmp_path / "data.npz"
    expected = r"; expected numpy\.savez output with x_train, y_train, x_test, y_test$"
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: no such file; expected an \.npz file "
                                           r"with x_train, y_train, x_test, y_test$"):
        load_dataset(str(path))
    path.write_text("x_train,y_train\n")
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: not an \.npz file \(not a zip archive\)"
                                           + expected):
        load_dataset(str(path))
    with open(path, "wb") as file:
        np.save(file, np.zeros(3))
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(path))}: not an \.npz file \(a \.npy file, one "
                                           r"array\)" + expected):
        load_dataset(str(path))


# --- keras.datasets' cache ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name, missing, place", [
    ("mnist", "mnist.npz", r"place https://storage\.googleapis\.com/tensorflow/tf-keras-datasets/mnist\.npz at "
                           r"{cache}/mnist\.npz"),
    ("cifar10", "cifar-10-batches-py-target/cifar-10-batches-py",
     r"extract https://www\.cs\.toronto\.edu/~kriz/cifar-10-python\.tar\.gz into {cache}/cifar-10-batches-py-target/"),
    ("fashion_mnist", "fashion-mnist/train-images-idx3-ubyte.gz",
     r"place train-images-idx3-ubyte\.gz, train-labels-idx1-ubyte\.gz, t10k-images-idx3-ubyte\.gz, "
     r"t10k-labels-idx1-ubyte\.gz from https://storage\.googleapis\.com/tensorflow/tf-keras-datasets/ in "
     r"{cache}/fashion-mnist/"),
])
def test_keras_dataset_not_cached_says_which_file_to_place(tmp_path, monkeypatch, name, missing, place):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    cache = re.escape(str(tmp_path / "datasets"))
    with pytest.raises(DatasetError, match=(
            rf"^Keras dataset '{name}' is not in the Keras cache: {cache}/{re.escape(missing)} not found\. "
            rf"Nothing is downloaded at run time: {place.format(cache=cache)}, or copy {cache} from a machine "
            rf"where keras\.datasets\.{name}\.load_data\(\) has run \(KERAS_HOME moves the cache\)$")):
        load_dataset(name)


def test_keras_mnist_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    (tmp_path / "datasets").mkdir()
    rng = np.random.default_rng(2)
    x_test = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "datasets" / "mnist.npz", x_train=rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
             y_train=(np.arange(20) % 10).astype(np.uint8), x_test=x_test, y_test=np.arange(10).astype(np.uint8))
    data = load_dataset("mnist")
    assert data.x_train.shape == (20, 28, 28, 1) and data.class_names == tuple("0123456789")
    np.testing.assert_array_equal(data.x_test[..., 0], x_test / np.float32(255))


def test_keras_cifar10_from_the_cache(tmp_path, monkeypatch):
    """Keras 3's layout: the archive extracted into datasets/cifar-10-batches-py-target/."""
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    folder = tmp_path / "datasets" / "cifar-10-batches-py-target" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    batches = {name: rng.integers(0, 256, (2, 3072), dtype=np.uint8)
               for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]}
    for name, rows in batches.items():
        with open(folder / name, "wb") as file:   # what cPickle wrote: bytes keys, a list of labels
            pickle.dump({b"batch_label": name.encode(), b"data": rows, b"labels": [9, 0]}, file)
    data = load_dataset("cifar10")
    assert data.x_train.shape == (10, 32, 32, 3) and data.x_test.shape == (2, 32, 32, 3)
    assert data.y_train.tolist() == [9, 0] * 5 and data.class_names[9] == "truck"
    np.testing.assert_array_equal(data.x_test[1] * np.float32(255),
                                  batches["test_batch"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    with open(folder / "test_batch", "wb") as file:   # only arrays and plain values are unpickled
        pickle.dump(collections.OrderedDict(data=batches["test_batch"], labels=[9, 0]), file)
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(folder / 'test_batch'))}: not a CIFAR batch file "
                                           r"\(UnpicklingError: refusing to unpickle collections\.OrderedDict\)$"):
        load_dataset("cifar10")


def test_keras_fashion_mnist_is_not_the_debian_one(tmp_path, monkeypatch):
    (tmp_path / "keras" / "datasets" / "fashion-mnist").mkdir(parents=True)
    fake_fashion(tmp_path / "keras" / "datasets" / "fashion-mnist")
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("HONE_FASHION_MNIST_DIR", str(tmp_path / "empty"))
    for name in ("fashion_mnist", "keras-fashion-mnist"):
        data = load_dataset(name)
        assert data.x_train.shape == (2, 28, 28, 1) and data.class_names[9] == "Ankle boot"
    with pytest.raises(DatasetError, match=r"^Fashion-MNIST file .*/empty/train-images-idx3-ubyte\.gz not found"):
        load_dataset("fashion-mnist")


# --- network files and the command line ---------------------------------------------------------------------

def test_network_test_images_reads_flat_npz_named_in_the_network_file(tmp_path):
    from hone.network.datasets import network_test_images
    from hone.network.netfile import DenseLayer, InputSpec, Network, OutputCode, write_network
    from hone.network.nhot import nhot_key

    rng = np.random.default_rng(4)
    x_test = rng.integers(0, 256, (6, 20), dtype=np.uint8)
    flat = write_npz(tmp_path / "flat.npz", x_train=rng.integers(0, 256, (12, 20), dtype=np.uint8), x_test=x_test)
    images = write_npz(tmp_path / "images.npz", x_train=x_test[[0] * 12].reshape(12, 4, 5),
                       x_test=x_test.reshape(6, 4, 5))
    network = Network(InputSpec((1, 20, 1), 8), (DenseLayer("out", rng.integers(-3, 4, (6, 20)), np.zeros(6, int)),),
                      OutputCode(nhot_key(3, 2)), 4)
    write_network(tmp_path / "net.hone", network, meta={"dataset": str(flat)})
    _, pixels, labels, dataset = network_test_images(tmp_path / "net.hone", 4)
    assert dataset == str(flat) and pixels.shape == (4, 1, 20, 1) and labels.tolist() == [0, 1, 2, 0]
    np.testing.assert_array_equal(pixels.reshape(4, 20), x_test[:4])
    # a dense first layer reads (4, 5, 1) images of the same size, flattened as Keras does
    _, pixels, _, _ = network_test_images(tmp_path / "net.hone", None, str(images))
    np.testing.assert_array_equal(pixels.reshape(6, 20), x_test)
    (tmp_path / "flat.npz").unlink()
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(flat))}: no such file; expected an \.npz file with "
                                        rf"x_train, y_train, x_test, y_test \(the data set {re.escape(str(tmp_path))}"
                                        r"/net\.hone names; pass another with --dataset\)$"):
        network_test_images(tmp_path / "net.hone", 4)


def hone_cli(*args):
    return subprocess.run([sys.executable, "-m", "hone", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def digits_npz(tmp_path_factory):
    """500 of scikit-learn's digits as flat uint8 rows (0..16 scaled to 0..255), 400 train / 100 test."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = np.round(digits.data[:500] * 255 / 16).astype(np.uint8)
    path = tmp_path_factory.mktemp("npz") / "digits-flat.npz"
    y = digits.target[:500]
    np.savez(path, x_train=x[:400], y_train=y[:400], x_test=x[400:], y_test=y[400:])
    return path


def test_train_on_a_flat_npz_through_the_cli(tmp_path, digits_npz):
    out = tmp_path / "run"
    result = hone_cli("train", "--dataset", digits_npz, "--epochs", "3", "--widths", "32", "--start-epoch", "1",
                  "--steps", "1", "--settle-epochs", "0", "--finetune-epochs", "0", "--out", out, "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["dataset"] == str(digits_npz) and summary["fully_sharp"]
    recorded = json.loads((out / "history.json").read_text())["summary"]["config"]["dataset"]
    assert recorded == str(digits_npz)

    import keras
    import hone.training.layers  # noqa: F401
    model = keras.saving.load_model(out / "model.keras")
    assert model.input_shape == (None, 64)
    assert not any(isinstance(layer, keras.layers.Flatten) for layer in model.layers)


@pytest.mark.parametrize("args, message, status", [
    (["--dataset", "{bad}"], r"{bad}: x_train\[0, 0\] is 1\.5; expected uint8 pixels 0\.\.255 or float pixels in "
                             r"\[0, 1\]", 1),
    (["--dataset", "{flat}", "--arch", "conv"],
     r"`arch='conv'` \(train flat data with arch 'dense'\) needs image input \(height, width, channels\)\. "
     r"Received: input_shape=\(20,\)", 2),    # an argument that does not fit the data: a usage error
], ids=["bad-pixels", "conv-on-flat"])
def test_bad_npz_in_the_cli_is_one_error_line(tmp_path, args, message, status):
    paths = {"bad": write_npz(tmp_path / "bad.npz", x_train=np.full((12, 20), 1.5), x_test=np.zeros((6, 20))),
             "flat": write_npz(tmp_path / "flat.npz", x_train=np.zeros((12, 20)), x_test=np.zeros((6, 20)))}
    result = hone_cli("train", *[arg.format(**paths) for arg in args], "--out", tmp_path / "run")
    assert result.returncode == status
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hone")]
    escaped = {name: re.escape(str(path)) for name, path in paths.items()}
    assert len(errors) == 1 and re.match(rf"^hone: error: {message.format(**escaped)}$", errors[0]), result.stderr
