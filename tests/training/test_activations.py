import numpy as np
import pytest
import keras

from hone.training.activations import SpikingBReLU, SpikingSigmoid, spiking_layers
from conftest import gradient

X = np.linspace(-1.0, 2.0, 301).astype("float32")


def brelu_reference(x, s):
    return np.clip((x - 0.5) / (1.0 - s + 1e-3) + 0.5, 0.0, 1.0)


@pytest.mark.parametrize("s", [0.0, 0.25, 0.5, 0.75, 0.9, 0.999])
def test_brelu_values_follow_the_ramp(s):
    out = keras.ops.convert_to_numpy(SpikingBReLU(sharpness=s)(X))
    np.testing.assert_allclose(out, brelu_reference(X, s), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("s", [0.0, 0.5, 0.9])
def test_brelu_gradient_is_the_ramp_slope(s):
    grad = gradient(SpikingBReLU(sharpness=s), X)
    soft = (X - 0.5) / (1.0 - s + 1e-3) + 0.5
    inside = (soft > 1e-4) & (soft < 1 - 1e-4)
    np.testing.assert_allclose(grad[inside], 1.0 / (1.0 - s + 1e-3), rtol=1e-5)
    outside = (soft < -1e-4) | (soft > 1 + 1e-4)
    assert np.all(grad[outside] == 0.0)


def test_brelu_is_exact_step_at_full_sharpness():
    x = np.array([-3.0, 0.0, 0.4999, np.nextafter(np.float32(0.5), np.float32(0)), 0.5, 0.5001, 1.0, 7.0],
                 dtype="float32")
    out = keras.ops.convert_to_numpy(SpikingBReLU(sharpness=1.0)(x))
    assert out.tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]
    assert out.dtype == np.float32


def test_sharp_gradient_is_zero_with_the_exact_gradient():
    grad = gradient(SpikingBReLU(sharpness=1.0, gradient="exact"), X)
    assert np.all(grad == 0.0)


@pytest.mark.parametrize("s", [0.0, 0.5, 0.9, 1.0])
def test_surrogate_gradient_is_the_unsharpened_ramp_at_every_sharpness(s):
    layer = SpikingBReLU(sharpness=s, gradient="surrogate")
    expected_values = brelu_reference(X, s) if s < 1 else (X >= 0.5).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(X)), expected_values, atol=1e-6)
    np.testing.assert_array_equal(gradient(layer, X), gradient(SpikingBReLU(sharpness=0.0), X))


def test_invalid_gradient_is_rejected():
    with pytest.raises(ValueError, match=r"^`gradient` must be one of 'exact', 'straight-through', "
                                         r"'surrogate'\. Received: gradient='ste'$"):
        SpikingBReLU(gradient="ste")


def test_sharp_gradient_is_the_unsharpened_ramp_with_straight_through():
    layer = SpikingBReLU(sharpness=1.0, gradient="straight-through")
    out = keras.ops.convert_to_numpy(layer(X))
    assert set(np.unique(out).tolist()) == {0.0, 1.0}  # forward stays the exact step
    grad = gradient(layer, X)
    expected = gradient(SpikingBReLU(sharpness=0.0), X)
    np.testing.assert_array_equal(grad, expected)
    assert grad.max() > 0.99


@pytest.mark.parametrize("s", [0.0, 0.5, 0.9])
def test_sigmoid_values_and_gradient(s):
    layer = SpikingSigmoid(sharpness=s)
    t = 1.0 - s + 1e-3
    expected = 1.0 / (1.0 + np.exp(-X / t))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(X)), expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gradient(layer, X), expected * (1 - expected) / t, rtol=1e-4, atol=1e-6)


def test_sigmoid_is_exact_step_at_zero():
    x = np.array([-1.0, -1e-6, 0.0, 1e-6, 3.0], dtype="float32")
    assert keras.ops.convert_to_numpy(SpikingSigmoid(sharpness=1.0)(x)).tolist() == [0, 0, 1, 1, 1]


def test_set_sharpness_changes_the_output_without_retracing_the_layer():
    layer = SpikingBReLU()
    layer.set_sharpness(0.6)
    assert layer.get_sharpness() == pytest.approx(0.6)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(X)), brelu_reference(X, 0.6), atol=1e-6)
    assert layer.trainable_weights == []


@pytest.mark.parametrize("bad, error, message", [
    (1.5, ValueError, r"^`sharpness` must be in \[0, 1\]\. Received: sharpness=1\.5$"),
    (-0.1, ValueError, r"^`sharpness` must be in \[0, 1\]\. Received: sharpness=-0\.1$"),
    ("sharp", TypeError, r"^`sharpness` must be a number in \[0, 1\]\. Received: sharpness='sharp'$"),
])
def test_invalid_sharpness_is_rejected(bad, error, message):
    with pytest.raises(error, match=message):
        SpikingBReLU(sharpness=bad)
    with pytest.raises(error, match=message):
        SpikingBReLU().set_sharpness(bad)


def test_model_round_trip_keeps_sharpness_and_outputs(tmp_path):
    model = keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, name="d0"),
        SpikingBReLU(name="s0", gradient="exact"),
        keras.layers.Dense(3, name="d1"),
        SpikingSigmoid(name="s1"),
    ])
    model.get_layer("s0").set_sharpness(0.37)
    model.get_layer("s1").set_sharpness(1.0)
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert [layer.name for layer in spiking_layers(loaded)] == ["s0", "s1"]
    assert loaded.get_layer("s0").get_sharpness() == pytest.approx(0.37)
    assert loaded.get_layer("s1").get_sharpness() == 1.0
    assert loaded.get_layer("s0").gradient == "exact"
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("layer_class", [SpikingBReLU, SpikingSigmoid])
@pytest.mark.parametrize("s", [0.0, 0.6, 1.0])
def test_ramp_in_training_trains_on_the_ramp_on_the_step_side(layer_class, s):
    layer = layer_class(sharpness=s, ramp_in_training=True)
    layer.set_sharpness(s)
    trained = keras.ops.convert_to_numpy(layer(X, training=True))
    ramp = keras.ops.convert_to_numpy(layer_class(sharpness=0.0)(X))
    np.testing.assert_array_equal(trained, ramp)
    assert layer.get_sharpness() == pytest.approx(s)   # the plan is still followed
    inferred = keras.ops.convert_to_numpy(layer(X))
    if s == 1.0:
        assert set(np.unique(inferred).tolist()) == {0.0, 1.0}
    # what a pixel-accuracy metric reads: the same side of 0.5 as the exact step, for every input
    step = (X >= layer.threshold)
    np.testing.assert_array_equal(trained >= 0.5, step)
    np.testing.assert_array_equal(inferred >= 0.5, step)


def test_ramp_in_training_survives_a_round_trip(tmp_path):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), SpikingBReLU(ramp_in_training=True, name="s")])
    model.save(tmp_path / "m.keras")
    assert keras.saving.load_model(tmp_path / "m.keras").get_layer("s").ramp_in_training is True
    assert SpikingBReLU().ramp_in_training is False
