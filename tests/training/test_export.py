"""Keras -> network file: folding, quantization and the per-stage accuracy table, on real models."""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest
import keras
from hypothesis import given, settings, strategies as st

import hone.training as training_package
from hone.training.activations import SpikingBReLU, SpikingSigmoid, spiking_layers
from hone.training.decode import SoftmaxDecode
from hone.training.export import ExportError, evaluate_export, export_network
from hone.network.integer import IntegerNetwork
from hone.training.models import build_model
from hone.network.netfile import read_network, write_network
from hone.network.nhot import nhot_key
from hone.network.quantize import quantize_neurons
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
                        widths=(16,), conv_dropout=0.2)
    assert [layer.name for layer in model.layers if isinstance(layer, keras.layers.Dropout)] == \
        ["dropout_conv_0", "dropout_conv_1"]       # after each pool; training only, so not exported
    assert model.name == "hone_conv"
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
                                          r"1\.0 .* or pass allow_unsharp=True \(--allow-unsharp\)"):
        export_network(model, weight_bits=4, input_bits=8)
    network, _ = export_network(model, weight_bits=4, input_bits=8, allow_unsharp=True)
    assert len(network.layers) == 2


def test_conv_dropout_is_refused_outside_conv(digits):
    with pytest.raises(ValueError, match=r"^`conv_dropout` applies to arch='conv' only\. Received: "
                                         r"conv_dropout=0\.2 with arch='dense'$"):
        build_model("dense", digits.input_shape, 10, conv_dropout=0.2)
    with pytest.raises(ValueError, match=r"^`conv_dropout` must be in \[0, 1\)\. Received: conv_dropout=1\.0$"):
        build_model("conv", digits.input_shape, 10, conv_dropout=1.0)


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
    with pytest.raises(ExportError, match=rf"^weight_bits \(--weight-bits\) must be in 1\.\.16, got {bits}$"):
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
    (["--weight-bits", "4", "--dataset", "fashion-mnist"],
     r"hone: error: dataset 'fashion-mnist' has \(28, 28, 1\) images but the model takes \(8, 8, 1\)"),
])
def test_cli_export_errors(saved, tmp_path, args, message):
    result = hone("export", saved, "-o", tmp_path / "n.hone", *args)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr


def test_cli_export_of_a_folder_that_is_no_run_folder(tmp_path):
    result = hone("export", tmp_path, "-o", tmp_path / "n.hone")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        f"hone: error: {tmp_path}: a folder without model.keras; expected a hone train run folder or its model.keras")


def test_cli_export_of_a_corrupted_model(tmp_path):
    bad = tmp_path / "model.keras"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    result = hone("export", bad, "--weight-bits", 4, "-o", tmp_path / "n.hone")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]  # TensorFlow's own start-up lines may come first
    assert last == f"hone: error: {bad}: not a .keras file (a zip archive): truncated or corrupted?"


def test_augmentation_layers_are_training_only_and_skipped_by_export(digits):
    model = sharpen(build_model("dense", digits.input_shape, 10, nhot=2, widths=(8,), augment=True))
    names = [layer.name for layer in model.layers]
    assert names[:2] == ["augment_flip", "augment_shift"]
    x = digits.x_test[:50]
    np.testing.assert_array_equal(model.predict(x, verbose=0), model.predict(x, verbose=0))  # inference: identity
    network, _ = export_network(model, weight_bits=8, input_bits=8)
    assert [layer.name for layer in network.layers] == ["dense_0", "dense_out"]


# -- the graph: the exporter follows the wiring Keras traced, not model.layers --------------------

KEY = nhot_key(3, 2)  # 3 classes, 6 output units
REFUSED = r"the network file is a chain: "
SUPPORTED = (r"hone exports Dense, Conv2D, QuantizedDense, QuantizedConv2D, spiking activations, MaxPooling2D, "
             r"Flatten, Reshape, Dropout, BatchNormalization, RandomFlip, RandomTranslation and SoftmaxDecode$")


def spike(name=None):
    return SpikingBReLU(sharpness=1.0, name=name)


def head(x, name="out"):
    """Dense -> spikes -> SoftmaxDecode on a flat tensor: the tail every test model shares."""
    return SoftmaxDecode(KEY, name="decode")(spike(f"spike_{name}")(keras.layers.Dense(6, name=name)(x)))


def export(model, bits=4):
    return export_network(model, weight_bits=bits, input_bits=8)


def assert_same_network(network, expected):
    assert network.input == expected.input and network.weight_bits == expected.weight_bits
    np.testing.assert_array_equal(network.output.key, expected.output.key)
    assert [(layer.kind, layer.name) for layer in network.layers] == \
           [(layer.kind, layer.name) for layer in expected.layers]
    for layer, other in zip(network.layers, expected.layers):
        if layer.kind != "maxpool2d":
            np.testing.assert_array_equal(layer.weights, other.weights, err_msg=layer.name)
            np.testing.assert_array_equal(layer.thresholds, other.thresholds, err_msg=layer.name)


def test_a_shared_layer_is_refused_not_exported_once():
    x = keras.Input((6,), name="x")
    shared = keras.layers.Dense(6, name="d1")
    y = spike("s2")(shared(spike("s1")(shared(x))))
    model = keras.Model(x, SoftmaxDecode(KEY)(y))
    assert [layer.name for layer in model.layers].count("d1") == 1  # what the old list walk saw
    with pytest.raises(ExportError, match=r"^layer 'd1' \(Dense\) is applied 2 times \(shared weights\); the "
                                          r"network file holds each layer once: give each application its "
                                          r"own layer$"):
        export(model)


def test_an_unbuilt_sequential_is_refused_with_how_to_build_it():
    model = keras.Sequential([keras.layers.Dense(6, name="d"), spike("s"), SoftmaxDecode(KEY)], name="unbuilt")
    with pytest.raises(ExportError, match=r"^the Sequential model 'unbuilt' is not built: it has no input "
                                          r"shape\. Start it with keras\.Input\(shape=\.\.\.\) or call "
                                          r"model\.build\(\(None, \.\.\.\)\) before exporting$"):
        export(model)
    model.build((None, 6))  # what the message says
    network, _ = export(model)
    assert network.input.shape == (1, 6, 1) and [layer.name for layer in network.layers] == ["d"]


def test_a_branch_is_refused():
    x = keras.Input((6,), name="x")
    a = spike("sa")(keras.layers.Dense(6, name="da")(x))
    b = spike("sb")(keras.layers.Dense(6, name="db")(x))
    model = keras.Model(x, SoftmaxDecode(KEY)(keras.layers.Add(name="add")([a, b])))
    with pytest.raises(ExportError, match=r"^the model input 'x' feeds 2 layers \('da', 'db'\); " + REFUSED +
                                          r"each layer's output must go to exactly one layer, the last to "
                                          r"the output$"):
        export(model)


def test_a_branch_after_a_layer_names_that_layer():
    x = keras.Input((6,), name="x")
    a = spike("sa")(keras.layers.Dense(6, name="da")(x))
    b = keras.layers.Dense(6, name="db")(a)
    model = keras.Model(x, head(keras.layers.Add(name="add")([a, b])))  # a residual connection
    with pytest.raises(ExportError, match=r"^layer 'sa' \(SpikingBReLU\) feeds 2 layers \('add', 'db'\); "):
        export(model)


@pytest.mark.parametrize("merge", [keras.layers.Add, keras.layers.Concatenate])
def test_a_merge_is_refused(merge):
    x = keras.Input((6,), name="x")
    a = spike("sa")(keras.layers.Dense(3, name="da")(x))
    layer = merge(name="merge")
    model = keras.Model(x, head(layer([a, a])))
    with pytest.raises(ExportError, match=rf"^layer 'merge' \({type(layer).__name__}\) merges 2 inputs; "
                                          + REFUSED + r"each layer takes only the output of the layer "
                                                      r"before it$"):
        export(model)


def test_two_inputs_or_two_outputs_are_refused():
    x1, x2 = keras.Input((6,), name="x1"), keras.Input((6,), name="x2")
    model = keras.Model([x1, x2], head(keras.layers.Add()([x1, x2])))
    with pytest.raises(ExportError, match=r"^the model has 2 inputs \('x1', 'x2'\); the network file takes "
                                          r"one input image$"):
        export(model)
    x = keras.Input((6,), name="x")
    hidden = spike("s")(keras.layers.Dense(6, name="d")(x))
    model = keras.Model(x, [head(hidden), hidden])
    with pytest.raises(ExportError, match=r"^the model has 2 outputs \(from 'decode', 's'\); the network file "
                                          r"has one output: the class its SoftmaxDecode key decodes, or the last "
                                          r"layer's spikes$"):
        export(model)


class Twice(keras.layers.Layer):
    """A custom layer: the exporter cannot know what it computes."""

    def call(self, inputs):
        return 2.0 * inputs


class ScaledDense(keras.layers.Dense):
    """A Dense subclass whose call() differs: a subclass is not a Dense to the exporter."""

    def call(self, inputs):
        return 2.0 * super().call(inputs)


@pytest.mark.parametrize("make, described", [
    (lambda: keras.layers.LayerNormalization(name="odd"), r"'odd' \(LayerNormalization\)"),
    (lambda: keras.layers.Lambda(lambda t: t, name="odd"), r"'odd' \(Lambda\)"),
    (lambda: Twice(name="odd"), r"'odd' \(Twice\)"),
    (lambda: ScaledDense(6, name="odd"), r"'odd' \(ScaledDense\)"),
    (lambda: keras.layers.Activation("relu", name="odd"), r"'odd' \(Activation\)"),
])
def test_unknown_layer_types_are_refused_by_name(make, described):
    x = keras.Input((6,), name="x")
    model = keras.Model(x, head(make()(spike("s")(keras.layers.Dense(6, name="d")(x)))))
    with pytest.raises(ExportError, match=rf"^unsupported layer {described}: " + SUPPORTED):
        export(model)


def test_a_keras_ops_call_is_refused_not_dropped():
    x = keras.Input((6,), name="x")
    hidden = keras.layers.Dense(6, name="d")(x)
    model = keras.Model(x, head(spike("s")(keras.ops.multiply(hidden, 2.0))))
    assert all(layer.name != "multiply" for layer in model.layers)  # model.layers does not list it
    with pytest.raises(ExportError, match=r"^unsupported operation 'multiply' \(Multiply\), a keras\.ops call: "
                                          + SUPPORTED):
        export(model)


def test_a_subclassed_model_is_refused():
    class Net(keras.Model):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.dense = keras.layers.Dense(6)

        def call(self, inputs):
            return self.dense(inputs)

    message = (r"is a subclassed Model: its call\(\) wires the layers in Python, which hone cannot read; "
               r"build it as a Sequential or functional model$")
    with pytest.raises(ExportError, match=r"^the model 'net' \(Net\) " + message):
        export(Net(name="net"))
    x = keras.Input((6,), name="x")
    with pytest.raises(ExportError, match=r"^the nested model 'net' \(Net\) " + message):
        export(keras.Model(x, head(spike("s")(Net(name="net")(x)))))


PRIVATE_KERAS = re.compile(r"keras\.src|\._functional|_nodes_by_depth|_keras_history|_inbound_nodes")


def test_training_reads_the_keras_graph_through_public_names_only():
    root = pathlib.Path(training_package.__file__).parent
    found = [f"{path.name}:{number}: {line.strip()}" for path in sorted(root.glob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if PRIVATE_KERAS.search(line)]
    assert found == []


def test_dense_and_decode_need_a_flat_input():
    x = keras.Input((4, 4, 1), name="x")
    hidden = spike("s")(keras.layers.Dense(6, name="d")(x))  # Dense on each pixel, not on the image
    model = keras.Model(x, SoftmaxDecode(KEY)(keras.layers.Flatten()(hidden)))
    with pytest.raises(ExportError, match=r"^layer 'd' \(Dense\) takes input of shape \(None, 4, 4, 1\); Keras "
                                          r"applies it along the last axis only, the network file to a flat "
                                          r"vector: put a Flatten before it$"):
        export(model)
    model = keras.Model(x, SoftmaxDecode(KEY, name="decode")(spike("s")(keras.layers.Conv2D(6, 3, name="c")(x))))
    with pytest.raises(ExportError, match=r"^layer 'decode' \(SoftmaxDecode\) takes input of shape "
                                          r"\(None, 2, 2, 6\); "):
        export(model)


def conv_net(flatten):
    keras.utils.set_random_seed(4)
    return keras.Sequential([keras.Input((4, 4, 1), name="x"), keras.layers.Conv2D(3, 3, name="c"), spike("sc"),
                             flatten, keras.layers.Dense(6, name="out"), spike("so"), SoftmaxDecode(KEY)])


def test_a_flat_reshape_is_a_flatten_and_any_other_reshape_is_refused():
    expected, _ = export(conv_net(keras.layers.Flatten()), bits=16)
    network, _ = export(conv_net(keras.layers.Reshape((12,))), bits=16)
    assert_same_network(network, expected)
    network, _ = export(conv_net(keras.layers.Reshape((-1,))), bits=16)
    assert_same_network(network, expected)
    with pytest.raises(ExportError, match=r"^layer 'r' \(Reshape\) reshapes to \(2, 2, 3\); the network file "
                                          r"has no reshape: hone accepts only a Reshape to a flat vector, "
                                          r"which is a Flatten$"):
        export(keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Conv2D(3, 3, name="c"), spike("sc"),
                                 keras.layers.Reshape((2, 2, 3), name="r"), keras.layers.Flatten(),
                                 keras.layers.Dense(6, name="out"), spike("so"), SoftmaxDecode(KEY)]))


def randomize_batch_norm(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.moving_mean.shape[0]
            layer.set_weights([rng.uniform(0.2, 3, n), rng.normal(size=n), rng.normal(size=n),
                               rng.uniform(0.1, 4, n)])


def nested_chain(kind):
    """A hidden block (Dense, BN, spikes) as a nested model of ``kind``, the head around it."""
    keras.utils.set_random_seed(5)
    layers = [keras.layers.Dense(8, use_bias=False, name="hidden"), keras.layers.BatchNormalization(name="bn"),
              spike("spike_hidden")]
    if kind == "sequential":
        inner = keras.Sequential([keras.Input((12,), name="inner_x"), *layers], name="block")
        model = keras.Sequential([keras.Input((12,), name="x"), inner, keras.layers.Dense(6, name="out"),
                                  spike("spike_out"), SoftmaxDecode(KEY, name="decode")])
    else:
        inner_x = keras.Input((12,), name="inner_x")
        y = inner_x
        for layer in layers:
            y = layer(y)
        inner = keras.Model(inner_x, y, name="block")
        x = keras.Input((12,), name="x")
        model = keras.Model(x, head(inner(x)))
    randomize_batch_norm(inner, 5)
    return model, inner


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_a_nested_chain_is_flattened_and_exports_as_the_flat_model(kind):
    model, inner = nested_chain(kind)
    flat = keras.Sequential([keras.Input((12,)), keras.layers.Dense(8, use_bias=False, name="hidden"),
                             keras.layers.BatchNormalization(name="bn"), spike("spike_hidden"),
                             keras.layers.Dense(6, name="out"), spike("spike_out"), SoftmaxDecode(KEY)])
    for layer in flat.layers:
        source = inner if layer.name in ("hidden", "bn") else model
        if layer.weights and layer.name != "spike_hidden":
            layer.set_weights(source.get_layer(layer.name).get_weights())
    x = np.random.default_rng(5).uniform(size=(64, 12)).astype("float32")
    np.testing.assert_array_equal(model.predict(x, verbose=0), flat.predict(x, verbose=0))
    network, floats = export(model, bits=8)
    expected, expected_floats = export(flat, bits=8)
    assert_same_network(network, expected)
    assert [layer.name for layer in network.layers] == ["hidden", "out"]  # BN folded inside the nested model
    np.testing.assert_array_equal(floats[0].weights, expected_floats[0].weights)
    assert len(inner.get_layer("hidden")._inbound_nodes) == 1  # the user's layers were copied, not called


def test_a_nested_model_that_is_not_a_chain_is_refused_with_its_name():
    inner_x = keras.Input((6,), name="inner_x")
    inner = keras.Model(inner_x, keras.layers.LayerNormalization(name="ln")(inner_x), name="block")
    x = keras.Input((6,), name="x")
    with pytest.raises(ExportError, match=r"^in nested model 'block': unsupported layer 'ln' "
                                          r"\(LayerNormalization\): " + SUPPORTED):
        export(keras.Model(x, head(inner(x))))


def test_a_nested_model_applied_twice_or_sharing_a_layer_is_refused():
    shared = keras.layers.Dense(6, name="d")
    inner = keras.Sequential([keras.Input((6,)), shared, spike("s")], name="block")
    x = keras.Input((6,), name="x")
    with pytest.raises(ExportError, match=r"^layer 'block' \(Sequential\) is applied 2 times \(shared weights\)"):
        export(keras.Model(x, head(inner(inner(x)))))
    with pytest.raises(ExportError, match=r"^layer 'd' \(Dense\) is applied 2 times \(shared weights\)"):
        export(keras.Model(x, SoftmaxDecode(KEY)(spike("s2")(shared(inner(x))))))


def test_layers_of_the_same_name_inside_and_outside_a_nested_model_are_refused():
    inner = keras.Sequential([keras.Input((6,)), keras.layers.Dense(6, name="out"), spike("inner_s")],
                             name="block")
    x = keras.Input((6,), name="x")
    with pytest.raises(ExportError, match=r"^2 layers are named 'out' once the nested models are flattened; "
                                          r"the network file names each layer once: rename them$"):
        export(keras.Model(x, head(inner(x), name="out")))


def test_a_flat_input_exports_as_a_one_row_image():
    keras.utils.set_random_seed(6)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(12, name="hidden"), spike(),
                              keras.layers.Dense(6, name="out"), spike(), SoftmaxDecode(KEY)])
    network, _ = export_network(model, weight_bits=16, input_bits=1)
    assert network.input.shape == (1, 64, 1)
    x = np.random.default_rng(6).integers(0, 2, size=(300, 64)).astype("float32")
    spikes = IntegerNetwork(network).run(network.input.quantize(x.reshape(-1, 1, 64, 1))).spikes[-1]
    assert np.mean(output_spikes(model, x).astype(np.uint8) == spikes.reshape(len(x), -1)) > 0.999


def test_cli_export_refuses_a_shared_layer_and_an_unbuilt_sequential(tmp_path):
    x = keras.Input((6,), name="x")
    shared = keras.layers.Dense(6, name="d1")
    model = keras.Model(x, SoftmaxDecode(KEY)(spike("s2")(shared(spike("s1")(shared(x))))))
    model.save(tmp_path / "shared.keras")
    unbuilt = keras.Sequential([keras.layers.Dense(6), spike(), SoftmaxDecode(KEY)], name="unbuilt")
    with warnings.catch_warnings():  # Keras warns that an unbuilt model has no weights yet: that is the point
        warnings.simplefilter("ignore")
        unbuilt.save(tmp_path / "unbuilt.keras")
    for name, message in [
        ("shared", "layer 'd1' (Dense) is applied 2 times (shared weights); the network file holds each layer "
                   "once: give each application its own layer"),
        ("unbuilt", "the Sequential model 'unbuilt' is not built: it has no input shape. Start it with "
                    "keras.Input(shape=...) or call model.build((None, ...)) before exporting"),
    ]:
        result = hone("export", tmp_path / f"{name}.keras", "--weight-bits", 4, "-o", tmp_path / f"{name}.hone",
                      "--dataset", "digits")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
        errors = [line for line in result.stderr.splitlines() if line.startswith("hone: error:")]
        assert errors == [f"hone: error: {message}"], result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1] == errors[0]  # TensorFlow's start-up lines may come first
        assert not (tmp_path / f"{name}.hone").exists()


# -- quantization-aware training: the Keras model is the integer network ----------------------------

@pytest.mark.parametrize("weight_bits, input_bits, inexact", [(4, 8, None), (16, 8, "dense_0 (534,773,760)"),
                                                                (8, 16, "dense_0 (536,862,720)")])
def test_quantization_aware_training_warns_where_float32_sums_may_be_inexact(weight_bits, input_bits, inexact):
    from hone.training.qat import start_quantizing

    # digits: 64 pixels; hidden layers take spikes (16 x 2**15 = 524,288 at 16 bits: exact)
    model = build_model("dense", (64,), 10, nhot=1, widths=(16,), weight_bits=weight_bits, input_bits=input_bits)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        start_quantizing(model)
    messages = [str(w.message) for w in caught if "2**24" in str(w.message)]
    if inexact is None:
        assert messages == []
    else:
        assert len(messages) == 1 and f"the worst-case sums of {inexact} are not" in messages[0], messages


def qat_config():
    from hone.training.config import TrainConfig

    return TrainConfig(dataset="digits", widths=(48, 24), weight_bits=3, input_bits=6, start_epoch=3, steps=1,
                       settle_epochs=0, finetune_epochs=3)


@pytest.fixture(scope="module")
def qat_run(tmp_path_factory):
    """A short quantization-aware training on digits (3-bit weights, 6-bit pixels), in this process."""
    from hone.training.train import train

    out = tmp_path_factory.mktemp("qat") / "run"
    model, _, summary = train(qat_config(), out, verbose=0)
    return model, summary, out


def test_a_quantization_aware_model_is_its_network_file(qat_run, digits):
    model, summary, _ = qat_run
    assert summary["quantization_aware"] and summary["weight_bits"] == 3 and summary["input_bits"] == 6
    network, floats = export_network(model, weight_bits=3, input_bits=6)
    report = evaluate_export(model, network, floats, digits.x_test, digits.y_test)
    assert report["disagreements"] == report["disagreements_near_threshold"] == 0, report
    assert report["accuracy"]["integer"] == report["accuracy"]["keras_sharpened"] == summary["sharpened_accuracy"]
    # spike for spike, every layer: Keras on the raw pixels, the integer network on the file's pixels
    integer = IntegerNetwork(network).run(network.input.quantize(digits.x_test))
    for layer, spikes in zip(spiking_layers(model), integer.spikes):
        probe = keras.Model(model.inputs, layer.output)
        np.testing.assert_array_equal(probe.predict(digits.x_test, verbose=0), spikes, err_msg=layer.name)


def test_a_quantization_aware_model_exports_at_other_widths_by_quantizing_again(qat_run, digits):
    model, _, _ = qat_run
    network, floats = export_network(model, weight_bits=8, input_bits=8)
    w, theta = quantize_neurons(floats[1].weights, floats[1].thresholds, 8)  # post-training quantization
    np.testing.assert_array_equal(network.layers[1].weights, w)
    np.testing.assert_array_equal(network.layers[1].thresholds, theta)
    # The float weights trained for 3 bits are no float model of their own: nothing is promised of
    # their accuracy at 8 bits, only that the report measures it.
    report = evaluate_export(model, network, floats, digits.x_test, digits.y_test)
    classes = IntegerNetwork(network).run(network.input.quantize(digits.x_test)).classes
    assert report["weight_bits"] == 8
    assert report["accuracy"]["integer"] == np.mean(classes == digits.y_test)   # measured, not assumed


def test_export_uses_the_bits_recorded_in_the_run_folder(qat_run, tmp_path):
    _, _, out = qat_run
    result = hone("export", out, "-o", tmp_path / "net.hone", "--json")   # the run folder names its model
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    network, _ = read_network(tmp_path / "net.hone")
    assert (network.weight_bits, network.input.bits) == (3, 6)
    assert report["disagreements"] == 0 and report["accuracy"]["integer"] == report["accuracy"]["keras_sharpened"]
    assert report["integers"] == "the ones the model trained as (quantization-aware)"
    result = hone("export", out / "model.keras", "-o", tmp_path / "other.hone", "--weight-bits", 5, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    network, _ = read_network(tmp_path / "other.hone")
    assert (network.weight_bits, network.input.bits) == (5, 6)
    assert json.loads(result.stdout.strip().splitlines()[-1])["integers"] == (
        "quantized afresh: the model trained as 3-bit weights (per-neuron scale) on 6-bit pixels, so Keras is "
        "no longer the file")


def test_a_model_moved_out_of_its_run_folder_exports_at_the_bits_it_trained_at(qat_run, tmp_path):
    _, _, out = qat_run
    moved = tmp_path / "moved.keras"
    shutil.copy(out / "model.keras", moved)    # no history.json beside it
    result = hone("export", moved, "-o", tmp_path / "net.hone", "--dataset", "digits", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    network, _ = read_network(tmp_path / "net.hone")
    assert (network.weight_bits, network.input.bits) == (3, 6)
    assert json.loads(result.stdout.strip().splitlines()[-1])["disagreements"] == 0


def test_export_refuses_a_bad_history_and_outputs_over_its_own_inputs(qat_run, tmp_path):
    _, _, out = qat_run
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(out / "model.keras", run / "model.keras")
    for history, message in [
            ("x", r"history\.json: not the history of a hone train run \(Expecting value"),
            ('{"summary": {"config": {"dataset": "digits", "binarize": false, "weight_bits": 99}}}',
             r"history\.json: summary\.config\.weight_bits is 99; expected an integer in 1\.\.16$")]:
        (run / "history.json").write_text(history)
        result = hone("export", run, "-o", tmp_path / "n.hone")
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert re.search(message, result.stderr.strip().splitlines()[-1]), result.stderr
    for output, clobbered in [(run / "model.keras", "model.keras"), (run / "history", "history.json")]:
        result = hone("export", run, "-o", output)
        assert result.returncode == 2
        assert result.stderr.strip().splitlines()[-1] == (
            f"hone: error: argument -o/--output: {output} would overwrite {run / clobbered}, which the export "
            f"reads; expected another path")
    result = hone("export", run / "history.json", "-o", tmp_path / "n.hone")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"hone: error: {run / 'history.json'}: expected a hone train run folder or its model.keras")
    assert not (tmp_path / "n.hone").exists()


@pytest.mark.parametrize("command, flag, value", [
    ("train", "--weight-bits", "0"), ("train", "--weight-bits", "17"), ("train", "--input-bits", "0"),
    ("train", "--input-bits", "x"), ("export", "--weight-bits", "0"), ("export", "--input-bits", "17"),
])
def test_bad_bits_are_one_usage_error(command, flag, value, tmp_path):
    args = ["--dataset", "digits", "--out", tmp_path] if command == "train" else [tmp_path / "m.keras", "-o",
                                                                                  tmp_path / "n.hone"]
    result = hone(command, *args, flag, value)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("hone")]
    expected = f"expected an integer in 1..16, got {value if value == 'x' else int(value)}"
    expected = expected.replace("got x", "got 'x'")
    assert lines == [f"hone: error: argument {flag}: {expected} (see: hone {command} --help)"], result.stderr


@pytest.mark.slow
def test_the_same_seed_gives_the_same_network_file(qat_run, tmp_path):
    from hone.training.train import train

    first, _, _ = qat_run
    keras.backend.clear_session()
    second, _, _ = train(qat_config(), None, verbose=0)
    hashes = [write_network(tmp_path / f"{index}.hone", export_network(model, weight_bits=3, input_bits=6)[0])
              for index, model in enumerate((first, second))]
    assert hashes[0] == hashes[1]


def test_a_weight_average_ends_training_as_its_network_file(qat_run, digits):
    """``ema_momentum``: fit ends on the averaged weights, quantized again, so Keras is its network file."""
    import dataclasses
    from hone.training.train import train

    plain, _, _ = qat_run
    keras.backend.clear_session()
    model, _, summary = train(dataclasses.replace(qat_config(), ema_momentum=0.9), None, verbose=0)
    assert model.optimizer.use_ema and summary["quantization_aware"]
    network, floats = export_network(model, weight_bits=3, input_bits=6)
    report = evaluate_export(model, network, floats, digits.x_test, digits.y_test)
    assert report["disagreements"] == 0 and report["accuracy"]["integer"] == summary["sharpened_accuracy"]
    # the same seed trains the same trajectory; only the average makes the networks differ
    other, _ = export_network(plain, weight_bits=3, input_bits=6)
    assert any((a.weights != b.weights).any() for a, b in zip(network.layers, other.layers))


def test_a_weight_average_on_jax_saves_and_exports(tmp_path):
    """Keras' JAX fit swaps the averages in by reference, and the next jitted call would delete them
    (model.save then failed with "Array has been deleted")."""
    result = hone("train", "--backend", "jax", "--dataset", "digits", "--widths", "48,24", "--start-epoch", "3",
                  "--steps", "1", "--settle-epochs", "0", "--finetune-epochs", "3", "--ema-momentum", "0.9",
                  "--out", tmp_path / "run", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    result = hone("export", tmp_path / "run", "-o", tmp_path / "net.hone", "--json")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["disagreements"] == 0 and report["accuracy"]["integer"] == report["accuracy"]["keras_sharpened"]


@pytest.mark.parametrize("value", ["1", "-0.1", "x"])
def test_a_bad_ema_momentum_is_one_usage_error(value, tmp_path):
    result = hone("train", "--dataset", "digits", "--out", tmp_path / "run", "--ema-momentum", value)
    assert result.returncode == 2
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("hone")]
    assert len(lines) == 1 and "ema" in lines[0] and value in lines[0], result.stderr
