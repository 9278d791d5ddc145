import numpy as np
import pytest
import keras

from hone.training.activations import SpikingBReLU
from hone.training.folding import FoldingError, fold_batch_norm
from hone.training.models import build_model


def pre_activations(model, names, x):
    probe = keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    out = probe.predict(x, verbose=0)
    return out if isinstance(out, list) else [out]


def train_briefly(model, data, epochs=2):
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


@pytest.mark.parametrize("arch, kwargs", [
    ("dense", dict(widths=(32, 16))),
    ("conv", dict(filters=(4, 8), kernel=3, padding="same", widths=(16,))),
])
def test_folded_sequential_matches_batch_norm_on_real_data(digits, arch, kwargs):
    keras.utils.set_random_seed(1)
    model = train_briefly(build_model(arch, digits.input_shape, digits.classes, nhot=2, **kwargs), digits)
    folded = fold_batch_norm(model)
    assert not any(isinstance(l, keras.layers.BatchNormalization) for l in folded.layers)
    bn_names = [l.name for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    producers = [name.removeprefix("bn_") for name in bn_names]
    assert len(bn_names) == (4 if arch == "conv" else 3)
    before = pre_activations(model, bn_names, digits.x_test)
    after = pre_activations(folded, producers, digits.x_test)
    for a, b in zip(before, after):
        assert np.max(np.abs(a - b)) <= 1e-5
        assert np.std(a) > 0.1  # the comparison is on live, non-trivial activations
    for layer in producers:
        assert folded.get_layer(layer).use_bias
    np.testing.assert_allclose(folded.predict(digits.x_test, verbose=0),
                               model.predict(digits.x_test, verbose=0), atol=1e-5)


def test_folding_uses_keras_epsilon_and_moving_statistics(digits):
    keras.utils.set_random_seed(2)
    inputs = keras.Input(digits.input_shape)
    flat = keras.layers.Flatten()(inputs)
    z = keras.layers.Dense(12, name="d", use_bias=True)(flat)
    z = keras.layers.BatchNormalization(name="bn", epsilon=0.3, momentum=0.5)(z)
    out = SpikingBReLU(name="s")(z)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(out))
    train_briefly(model, digits, epochs=3)
    folded = fold_batch_norm(model)
    assert isinstance(folded, keras.Model)
    [a] = pre_activations(model, ["bn"], digits.x_test)
    [b] = pre_activations(folded, ["d"], digits.x_test)
    assert np.max(np.abs(a - b)) <= 1e-5


def test_functional_model_with_branches_folds():
    keras.utils.set_random_seed(3)
    inputs = keras.Input((6,))
    left = keras.layers.BatchNormalization(name="bn_l")(keras.layers.Dense(4, name="l")(inputs))
    right = keras.layers.BatchNormalization(name="bn_r")(keras.layers.Dense(4, name="r")(inputs))
    merged = keras.layers.Concatenate()([SpikingBReLU()(left), SpikingBReLU()(right)])
    model = keras.Model(inputs, keras.layers.Dense(2)(merged))
    for name in ("bn_l", "bn_r"):  # non-trivial statistics without training
        bn = model.get_layer(name)
        bn.set_weights([np.full(4, 1.5), np.full(4, -0.2), np.arange(4.0), np.arange(1.0, 5.0)])
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32")
    folded = fold_batch_norm(model)
    np.testing.assert_allclose(folded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-5)


def test_batch_norm_after_a_non_foldable_layer_is_named():
    model = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(name="flat"),
                              keras.layers.BatchNormalization(name="bn0")])
    with pytest.raises(FoldingError, match=r"^BatchNormalization 'bn0' follows Flatten 'flat'; only a BN "
                                           r"directly after a Dense or Conv2D can be folded$"):
        fold_batch_norm(model)


def test_batch_norm_whose_producer_feeds_other_layers_is_refused():
    inputs = keras.Input((6,))
    z = keras.layers.Dense(4, name="shared")(inputs)
    model = keras.Model(inputs, [keras.layers.BatchNormalization(name="bn")(z), keras.layers.ReLU()(z)])
    with pytest.raises(FoldingError, match=r"^'shared' feeds 2 layers besides BN 'bn'"):
        fold_batch_norm(model)


def test_a_model_without_a_layer_graph_is_refused():
    unbuilt = keras.Sequential([keras.layers.Dense(4), keras.layers.BatchNormalization()], name="unbuilt")
    with pytest.raises(FoldingError, match=r"^the model 'unbuilt' has no layer graph: fold_batch_norm takes a "
                                           r"built Sequential or functional model$"):
        fold_batch_norm(unbuilt)
