"""Keras -> network file: folding, quantization and the per-stage accuracy table, on real models."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import keras
from hypothesis import given, settings, strategies as st

from hone.training.activations import SpikingBReLU, SpikingSigmoid, spiking_layers
from hone.training.export import ExportError, evaluate_export, export_network
from hone.training.integer import IntegerNetwork
from hone.training.models import build_model
from hone.training.netfile import read_network, write_network
from hone.training.train import output_spikes


def on_8bit_grid(x):
    """Digits pixels are v / 16, which 8-bit inputs q / 255 cannot represent: compare on the grid."""
    return np.floor(x * 255 + 0.5) / 255


def sharpen(model):
    for layer in spiking_layers(model):
        layer.set_sharpness(1.0)
    return model


@pytest.fixture(scope="module")
def trained(digits):
    """A small BN model trained briefly on digits with the straight-through recipe, fully sharp."""
    keras.utils.set_random_seed(0)
    model = build_model("dense", digits.input_shape, digits.classes, nhot=3, widths=(48, 24), dropout=0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)
    sharpen(model)
    model.fit(digits.x_train, digits.y_train, epochs=8, batch_size=32, verbose=0)  # straight-through
    return model


def test_sixteen_bit_export_agrees_with_keras(trained, digits):
    network, floats = export_network(trained, weight_bits=16, input_bits=8)
    report = evaluate_export(trained, network, floats, on_8bit_grid(digits.x_test), digits.y_test)
    assert report["accuracy"]["keras_sharpened"] > 0.7  # a working net (either backend), not a tuned one
    assert report["disagreements"] == report["disagreements_near_threshold"]
    assert report["class_agreement_keras_integer"] >= 0.99
    assert abs(report["accuracy"]["integer"] - report["accuracy"]["keras_sharpened"]) <= 0.01
    assert set(report["spike_rate"]) == {"dense_0", "dense_1", "dense_out"}
    assert all(0.0 < rate < 1.0 for rate in report["spike_rate"].values())


def test_every_layer_matches_keras_spike_for_spike_at_16_bits(trained, digits):
    network, _ = export_network(trained, weight_bits=16, input_bits=8)
    x = on_8bit_grid(digits.x_test)
    result = IntegerNetwork(network).run(network.input.quantize(x))
    names = [layer.name for layer in spiking_layers(trained)]
    probe = keras.Model(trained.inputs, [trained.get_layer(n).output for n in names])
    for keras_spikes, spikes in zip(probe.predict(x, verbose=0), result.spikes):
        assert np.mean(keras_spikes.astype(np.uint8) == spikes) > 0.999


def test_binary_input_export_is_exact_on_binarized_data(digits):
    """Binary pixels: integer inputs are the Keras inputs, so 16-bit export agrees image for image."""
    keras.utils.set_random_seed(1)
    binary = (digits.x_test >= 0.5).astype("float32")
    model = sharpen(build_model("dense", digits.input_shape, 10, nhot=2, widths=(32,)))
    network, floats = export_network(model, weight_bits=16, input_bits=1)
    report = evaluate_export(model, network, floats, binary, digits.y_test)
    assert report["disagreements"] == report["disagreements_near_threshold"]
    assert report["class_agreement_keras_integer"] >= 0.99


def test_conv_and_maxpool_export(digits):
    keras.utils.set_random_seed(2)
    model = build_model("conv", digits.input_shape, 10, nhot=2, filters=(4, 6), kernel=3, padding="same",
                        widths=(16,))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(digits.x_train, digits.y_train, epochs=2, batch_size=32, verbose=0)
    sharpen(model)
    network, floats = export_network(model, weight_bits=16, input_bits=8)
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d",
                                                        "dense", "dense"]
    report = evaluate_export(model, network, floats, on_8bit_grid(digits.x_test), digits.y_test)
    assert report["class_agreement_keras_integer"] >= 0.98
    assert report["disagreements"] == report["disagreements_near_threshold"]


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 1000), widths=st.lists(st.integers(2, 12), min_size=1, max_size=3),
       sigmoid=st.booleans())
def test_folding_and_quantization_on_random_nets(seed, widths, sigmoid):
    """Random weights and random BN statistics: 16-bit integer spikes equal Keras' exact steps."""
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_model("dense", (3, 3, 1), 3, nhot=2, widths=widths,
                        activation="sigmoid" if sigmoid else "brelu")
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.2, 3, n), rng.normal(size=n), rng.normal(size=n),
                               rng.uniform(0.1, 4, n)])
    sharpen(model)
    x = rng.integers(0, 2, size=(300, 3, 3, 1)).astype("float32")
    network, floats = export_network(model, weight_bits=16, input_bits=1)
    report = evaluate_export(model, network, floats, x, np.zeros(300, int))
    assert report["disagreements"] == report["disagreements_near_threshold"]
    assert report["class_agreement_keras_integer"] >= 0.98


def test_unsharp_model_is_refused_with_each_layers_sharpness(digits):
    model = build_model("dense", digits.input_shape, 10, nhot=2, widths=(8,))
    model.get_layer("spike_dense_0").set_sharpness(1.0)
    model.get_layer("spike_dense_out").set_sharpness(0.5)
    with pytest.raises(ExportError, match=r"^the model is not fully sharp \(spike_dense_0=1\.000, "
                                          r"spike_dense_out=0\.500\); every spiking layer must have sharpness "
                                          r"1\.0 .* or pass --allow-unsharp"):
        export_network(model, weight_bits=4, input_bits=8)
    network, _ = export_network(model, weight_bits=4, input_bits=8, allow_unsharp=True)
    assert len(network.layers) == 2


def test_unsupported_layers_are_named():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d"), SpikingBReLU(sharpness=1.0),
                              keras.layers.LayerNormalization(name="ln")])
    with pytest.raises(ExportError, match=r"^unsupported layer 'ln' \(LayerNormalization\): hone exports Dense"):
        export_network(model, weight_bits=4, input_bits=1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="d"),
                              SpikingSigmoid(sharpness=1.0)])
    with pytest.raises(ExportError, match=r"^layer 'd' \(Dense\) has activation 'relu'"):
        export_network(model, weight_bits=4, input_bits=1)


@pytest.mark.parametrize("bits", [0, 17])
def test_weight_bits_out_of_range(trained, bits):
    with pytest.raises(ExportError, match=rf"^--weight-bits must be in 1\.\.16, got {bits}$"):
        export_network(trained, weight_bits=bits, input_bits=8)


# -- the CLI --------------------------------------------------------------------------------------

def hone(*args):
    return subprocess.run([sys.executable, "-m", "hone", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    trained.save(folder / "model.keras")
    return folder / "model.keras"


def test_cli_export_writes_file_and_report(saved, tmp_path):
    out = tmp_path / "net.hone"
    result = hone("export", saved, "--weight-bits", 4, "-o", out, "--dataset", "digits", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "net.hone.json").read_text())
    network, meta = read_network(out)
    assert network.sha256 == report["sha256"] and network.weight_bits == 4
    assert meta["accuracy"] == report["accuracy"]
    for stage in ("keras sharpened (steps)", "float folded", "integer"):
        assert re.search(rf"^{re.escape(stage)}\s+\d+\.\d\d%$", result.stdout, re.M), stage


@pytest.mark.parametrize("args, message", [
    (["--weight-bits", "0"], r"hone: error: --weight-bits must be in 1\.\.16, got 0"),
    (["--weight-bits", "4", "--dataset", "fashion-mnist"],
     r"hone: error: dataset 'fashion-mnist' has \(28, 28, 1\) images but the model takes \(8, 8, 1\)"),
])
def test_cli_export_errors(saved, tmp_path, args, message):
    result = hone("export", saved, "-o", tmp_path / "n.hone", *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_cli_export_of_a_corrupted_model(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = hone("export", bad, "--weight-bits", 4, "-o", tmp_path / "n.hone")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # TensorFlow's own start-up lines may come first
    assert last.startswith(f"hone: error: {bad}: cannot load the Keras model: ")


def test_augmentation_layers_are_training_only_and_skipped_by_export(digits):
    model = sharpen(build_model("dense", digits.input_shape, 10, nhot=2, widths=(8,), augment=True))
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["augment_flip", "augment_shift"]
    x = digits.x_test[:50]
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))  # inference: identity
    network, _ = export_network(model, weight_bits=8, input_bits=8)
    assert [layer.name for layer in network.layers] == ["dense_0", "dense_out"]
