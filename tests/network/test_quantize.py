import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from hone.network.quantize import neuron_integers, quantize_neurons


def fires(w, t, x):
    return (x @ np.asarray(w, np.float64).T) >= t


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), bits=st.integers(2, 12), outputs=st.integers(1, 6),
       fan_in=st.integers(1, 40))
def test_exactly_representable_neurons_are_reproduced_exactly(seed, bits, outputs, fan_in):
    rng = np.random.default_rng(seed)
    high = 2 ** (bits - 1) - 1
    w0 = rng.integers(-high, high + 1, size=(outputs, fan_in))
    w0[:, 0] = high  # the largest magnitude is the full range, so the per-neuron scale is c
    c = rng.uniform(0.01, 10.0, size=outputs)
    t0 = rng.integers(-fan_in * high, fan_in * high + 1, size=outputs) + rng.choice([0.0, 0.5, 0.999], outputs)
    w, theta = quantize_neurons(w0 * c[:, None], t0 * c, bits)
    np.testing.assert_array_equal(w, w0)
    x = rng.integers(0, 2, size=(200, fan_in)).astype(np.float64)
    np.testing.assert_array_equal(fires(w, theta, x), fires(w0, t0, x))


# normal floats only: scaling a subnormal by 2**power is not exact, so invariance cannot be asked of it
def normal_floats(bound):
    return st.floats(-bound, bound, allow_nan=False, allow_subnormal=False).filter(
        lambda v: v == 0 or abs(v) > 1e-290)


@settings(max_examples=100, deadline=None)
@given(a=arrays(np.float64, (4, 12), elements=normal_floats(4)),
       t=arrays(np.float64, (4,), elements=normal_floats(8)),
       bits=st.integers(1, 16), power=st.integers(-6, 6))
def test_each_neuron_is_scale_invariant(a, t, bits, power):
    c = 2.0 ** power  # exact in binary floating point
    w1, t1 = quantize_neurons(a, t, bits)
    w2, t2 = quantize_neurons(a * c, t * c, bits)
    np.testing.assert_array_equal(w1, w2)
    np.testing.assert_array_equal(t1, t2)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), bits=st.integers(1, 16), per_neuron=st.booleans())
def test_weights_stay_in_range(seed, bits, per_neuron):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(8, 30)) * rng.uniform(0.001, 100, size=(8, 1))
    w, _ = quantize_neurons(a, rng.normal(size=8), bits, per_neuron=per_neuron)
    if bits == 1:
        assert set(np.unique(w)) <= {-1, 1}
    else:
        assert np.abs(w).max() <= 2 ** (bits - 1) - 1
        if per_neuron:  # every neuron uses its full range
            assert (np.abs(w).max(axis=1) == 2 ** (bits - 1) - 1).all()


def test_sixteen_bits_disagree_only_next_to_the_threshold():
    rng = np.random.default_rng(7)
    a = rng.normal(size=(64, 100))
    t = rng.normal(size=64) * 3
    w, theta = quantize_neurons(a, t, 16)
    x = rng.integers(0, 2, size=(2000, 100)).astype(np.float64)
    differ = fires(w, theta, x) != fires(a, t, x)
    margin = np.abs(x @ a.T - t) / np.abs(a).max(axis=1)
    assert differ.mean() < 1e-3
    assert (margin[differ] < 100 / 2 ** 15).all()  # at most fan_in half-steps of rounding away


def test_per_neuron_scaling_beats_one_scale_per_layer_at_low_bits():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(64, 100)) * np.geomspace(0.01, 10, 64)[:, None]  # very different neurons
    t = rng.normal(size=64) * np.geomspace(0.01, 10, 64)
    x = rng.integers(0, 2, size=(2000, 100)).astype(np.float64)
    agree = {}
    for per_neuron in (True, False):
        w, theta = quantize_neurons(a, t, 4, per_neuron=per_neuron)
        agree[per_neuron] = np.mean(fires(w, theta, x) == fires(a, t, x))
    assert agree[True] > agree[False] + 0.1


def test_constant_neurons():
    a = np.zeros((2, 5))
    w, theta = quantize_neurons(a, np.array([-1.0, 0.5]), 4)
    assert w.tolist() == [[0] * 5] * 2 and theta.tolist() == [0, 1]  # always, never
    w, theta = quantize_neurons(a, np.array([-1.0, 0.5]), 1, input_max=3)
    assert w.tolist() == [[1] * 5] * 2 and theta.tolist() == [0, 16]  # sum is at most 5 * 3


def test_thresholds_are_clipped_to_the_reachable_sums():
    a = np.array([[1.0, -1.0, 2.0], [1.0, 1.0, 1.0]])
    w, theta = quantize_neurons(a, np.array([100.0, -100.0]), 2)
    assert w.tolist() == [[1, -1, 1], [1, 1, 1]]  # row 0 clipped at half its range: less error
    assert theta.tolist() == [3, 0]  # sums reach 2 at most (never fires) and 0 at least (always)


def test_clipping_keeps_two_bit_weights_alive():
    a = np.random.default_rng(0).normal(size=(1, 784))  # bell-shaped, like trained weights
    w, _ = quantize_neurons(a, np.zeros(1), 2)
    plain = np.rint(a / np.abs(a).max())  # max-scaling: all but the tails round to 0
    assert np.mean(plain != 0) < 0.05
    assert np.mean(w != 0) > 0.3


@pytest.mark.parametrize("bits", [0, 17])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=rf"^weight bits must be in 1\.\.16\. Received: bits={bits}$"):
        quantize_neurons(np.ones((1, 2)), np.zeros(1), bits)


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("per_neuron", [True, False])
def test_training_runs_the_exporters_quantizer_on_keras_tensors(bits, per_neuron):
    """One quantizer: neuron_integers on keras.ops gives what it gives on numpy, at the same precision."""
    import keras

    rng = np.random.default_rng(bits)
    a = (rng.normal(size=(24, 50)) * rng.uniform(0.01, 3, size=(24, 1))).astype(np.float32)
    a[0] = 0.0  # a constant neuron
    t = rng.normal(size=24).astype(np.float32)
    t[0] = -1.0
    reference = neuron_integers(a, t, bits, per_neuron=per_neuron, input_max=255)
    keras_side = neuron_integers(keras.ops.convert_to_tensor(a), keras.ops.convert_to_tensor(t), bits,
                                 per_neuron=per_neuron, input_max=255, xp=keras.ops)
    w, theta, scale = (keras.ops.convert_to_numpy(v) for v in keras_side)
    np.testing.assert_array_equal(w, reference[0])
    np.testing.assert_array_equal(theta, reference[1])
    np.testing.assert_allclose(scale, reference[2], rtol=1e-5)  # a mean or sum in another order
    w, theta = quantize_neurons(a, t, bits, per_neuron=per_neuron, input_max=255)  # float64: the same here
    np.testing.assert_array_equal(w, reference[0])
