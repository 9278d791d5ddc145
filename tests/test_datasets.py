import gzip

import numpy as np
import pytest

from hone.training.datasets import DatasetError, load_dataset


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


def test_unknown_dataset():
    with pytest.raises(ValueError, match=r"^unknown dataset 'mnist'; expected one of fashion-mnist, digits$"):
        load_dataset("mnist")
