import numpy as np
import pytest
import keras

from hone.training.decode import SoftmaxDecode
from hone.network.nhot import decode_spikes, nhot_key


def test_key_has_n_disjoint_units_per_class_and_is_seeded():
    key = nhot_key(10, 4, seed=3)
    assert key.shape == (10, 40)
    assert key.sum(axis=1).tolist() == [4] * 10
    assert key.sum(axis=0).max() == 1
    np.testing.assert_array_equal(key, nhot_key(10, 4, seed=3))
    assert not np.array_equal(key, nhot_key(10, 4, seed=4))


def test_key_with_spare_width_leaves_units_unowned():
    key = nhot_key(3, 2, width=9, seed=0)
    assert key.shape == (3, 9) and key.sum() == 6


@pytest.mark.parametrize("kwargs, message", [
    (dict(classes=10, nhot=4, width=39),
     r"^`nhot` does not fit the output width: 10 classes x 4 units = 40 > width 39\. "
     r"Received: nhot=4, width=39$"),
    (dict(classes=10, nhot=0), r"^`nhot` must be at least 1\. Received: nhot=0$"),
    (dict(classes=1, nhot=2), r"^`classes` must be at least 2\. Received: classes=1$"),
])
def test_key_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        nhot_key(**kwargs)


def test_decode_counts_votes_and_breaks_ties_to_the_lowest_class():
    key = np.array([[1, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])
    spikes = np.array([
        [0, 0, 1, 1, 1, 0],  # class 1 has 2 votes
        [1, 0, 0, 0, 1, 0],  # 1-1 tie between classes 0 and 2 -> 0
        [0, 0, 1, 0, 1, 0],  # tie between 1 and 2 -> 1
        [0, 0, 0, 0, 0, 0],  # silence -> 0
        [1, 1, 1, 1, 1, 1],  # all tie -> 0
    ])
    assert decode_spikes(spikes, key).tolist() == [1, 0, 1, 0, 0]


def test_softmax_decode_argmax_is_the_hardware_decode():
    key = nhot_key(10, 4, seed=1)
    rng = np.random.default_rng(0)
    spikes = (rng.random((2000, 40)) < 0.15).astype("float32")
    probabilities = keras.ops.convert_to_numpy(SoftmaxDecode(key)(spikes))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(np.argmax(probabilities, axis=1), decode_spikes(spikes, key))


def test_softmax_decode_key_is_frozen_and_saved(tmp_path):
    key = nhot_key(3, 2, seed=5)
    model = keras.Sequential([keras.Input((6,)), SoftmaxDecode(key, scale=2.0, name="decode")])
    assert model.trainable_weights == []
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras").get_layer("decode")
    np.testing.assert_array_equal(loaded.key, key)
    assert loaded.scale == 2.0


@pytest.mark.parametrize("key, message", [
    ([[1, 0], [1, 0]], r"^classes must not share output units"),
    ([[1, 1, 0], [0, 0, 1]], r"^every class must own the same number \(>= 1\) of units\. "
                             r"Received: units per class=\[2, 1\]$"),
    ([[2, 0], [0, 1]], r"^`key` must hold only 0 and 1\. Received: values \[2\]$"),
    ([1, 0], r"^`key` must be a \(classes >= 2, width\) array\. Received: key.shape=\(2,\)$"),
])
def test_softmax_decode_rejects_bad_keys(key, message):
    with pytest.raises(ValueError, match=message):
        SoftmaxDecode(key)
