"""Networks whose output is the last layer's spike vector (format version 2), end to end: the file,
the integer model, the RTL under cocotb, a simulated board over serial, and hone's autoencoder."""

import json
import pathlib
import re

import numpy as np
import pytest

from hone.network.random import random_dense_network
from hone.network.integer import IntegerNetwork
from hone.network.netfile import NetworkFileError, SpikeOutput, read_network, write_network
from hone.network.reconstruction import pixel_targets, reconstruction_figures
from conftest import edit, rehash

DATA = pathlib.Path(__file__).parents[1] / "data"


@pytest.fixture
def autoencoder():
    """A random 16-6-16 network with a spike output: 2-bit 4x4 images in, 16 spikes out."""
    return random_dense_network(np.random.default_rng(3), input_shape=(4, 4, 1), input_bits=2, widths=(6,),
                                classes=0)


# -- the network file ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["digits-dense-4bit", "fashion-dense-4bit", "fashion-conv-4bit"])
def test_version_1_files_read_hash_and_write_back_byte_for_byte(tmp_path, name):
    source = DATA / f"{name}.hone"
    network, meta = read_network(source)
    assert network.format_version == 1 and network.classes > 0
    assert network.sha256 == json.loads(source.read_text())["sha256"]
    copy = tmp_path / "copy.hone"
    write_network(copy, network, meta=meta)
    assert copy.read_bytes() == source.read_bytes()


def test_a_spike_output_is_a_version_2_file_that_round_trips(tmp_path, autoencoder):
    path = tmp_path / "ae.hone"
    digest = write_network(path, autoencoder, meta={"dataset": "none"})
    document = json.loads(path.read_text())
    assert document["version"] == 2 and document["network"]["output"] == {"kind": "spikes"}
    network, meta = read_network(path)
    assert network.output == SpikeOutput() and network.classes == 0 and network.sha256 == digest
    assert meta == {"dataset": "none"}
    for mine, theirs in zip(network.layers, autoencoder.layers):
        np.testing.assert_array_equal(mine.weights, theirs.weights)
        np.testing.assert_array_equal(mine.thresholds, theirs.thresholds)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=1),
     r"network\.output\.kind: a spike output needs format version 2, the file declares version 1$"),
    (lambda d: (d["network"]["output"].update(key=[[1] * 16]), rehash(d)),
     r"network\.output\.key: a spike output has no key, nhot or tie-break \(the output is the last "
     r"layer's spikes themselves\)$"),
    (lambda d: (d["network"]["output"].update(kind="classes"), rehash(d)),
     r"network\.output\.kind: unknown output kind \"classes\" \(expected 'spikes'; a classifier's output "
     r"has no kind, only its key\)$"),
    (lambda d: (d["network"]["output"].update(kind=7), rehash(d)),
     r"network\.output\.kind: expected str, got int 7$"),
    (lambda d: (d["network"].update(output={}), rehash(d)), r"network\.output\.key: missing \(expected list\)$"),
    (lambda d: d.update(version=3), r"version: format version 3 is newer than this hone reads \(2\); upgrade hone$"),
])
def test_reader_refuses_a_malformed_spike_output(tmp_path, autoencoder, change, message):
    path = tmp_path / "ae.hone"
    write_network(path, autoencoder)
    edit(path, change)
    with pytest.raises(NetworkFileError, match=f"^{path}: " + message):
        read_network(path)


# -- the integer model --------------------------------------------------------------------------

def test_integer_model_gives_the_output_spikes_and_no_class(autoencoder):
    pixels = np.random.default_rng(0).integers(0, 4, size=(50, 16))
    result = IntegerNetwork(autoencoder).run(pixels)
    assert result.classes is None
    np.testing.assert_array_equal(result.labels, np.zeros(50))
    np.testing.assert_array_equal(result.outputs, result.spikes[-1])
    hidden = (pixels @ autoencoder.layers[0].weights.T >= autoencoder.layers[0].thresholds).astype(int)
    out = (hidden @ autoencoder.layers[1].weights.T >= autoencoder.layers[1].thresholds).astype(int)
    np.testing.assert_array_equal(result.outputs, out)


def test_reconstruction_figures_count_wrong_bits():
    targets = pixel_targets(np.array([[0.0, 0.49, 0.5, 1.0], [0.2, 0.7, 0.9, 0.1]]))
    np.testing.assert_array_equal(targets, [[0, 0, 1, 1], [0, 1, 1, 0]])
    figures = reconstruction_figures(np.array([[0, 0, 1, 1], [1, 1, 0, 0]]), targets)
    assert figures == {"images": 2, "pixels": 4, "pixel_accuracy": 0.75, "bits_wrong_per_image": 1.0,
                       "bits_wrong_max": 2, "exact_images": 1}
    with pytest.raises(ValueError, match=r"^2 outputs of 4 units but 2 targets of 3$"):
        reconstruction_figures(np.zeros((2, 4)), np.zeros((2, 3)))


# -- the RTL and a simulated board ----------------------------------------------------------------

def test_rtl_runs_a_spike_output_spike_for_spike_with_label_0(tmp_path, autoencoder):
    from hone.sim.runner import simulate

    pixels = np.random.default_rng(1).integers(0, 4, size=(40, 16))
    report = simulate(autoencoder, pixels, simulator="icarus", lanes=4, build_root=tmp_path, progress=False)
    assert report["equal"], report["mismatches"]
    assert report["labels"] == [0] * 40
    np.testing.assert_array_equal(report["outputs"], IntegerNetwork(autoencoder).run(pixels).outputs)


def test_simulated_board_returns_the_output_spikes_and_no_class(tmp_path, autoencoder):
    from hone.host.board import Board

    path = tmp_path / "ae.hone"
    write_network(path, autoencoder)
    images = np.random.default_rng(2).integers(0, 4, size=(20, 16))
    reference = IntegerNetwork(autoencoder).run(images)
    with Board.open(f"sim:{path}", baud=1_500_000, lanes=4, clock_hz=12_000_000, slots=3,
                    build_root=tmp_path / "builds") as board:
        info = board.check(autoencoder)
        results = list(board.infer(images))
    assert info.classes == 0 and info.outputs == 16
    assert [r.index for r in results] == list(range(20))
    assert [r.label for r in results] == [None] * 20
    np.testing.assert_array_equal(np.array([r.spikes for r in results]), reference.outputs)


# -- hone's autoencoder: train, export, RTL ---------------------------------------------------------

def run_hone(*argv):
    """``hone ARGV``'s exit status (argparse's usage errors exit from inside it)."""
    from hone.cli.main import main

    try:
        return main([str(arg) for arg in argv])
    except SystemExit as exit:
        return exit.code


def last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 64-24-12-24-64 sharpened autoencoder on the digits, exported to a version-2 network file."""
    from hone.cli.main import main

    folder = tmp_path_factory.mktemp("autoencoder")
    assert main(["train", "--dataset", "digits", "--arch", "autoencoder", "--widths", "24,12,24", "--epochs", "30",
                 "--start-epoch", "5", "--finetune-epochs", "8", "--out", str(folder / "train"), "--json"]) == 0
    assert main(["export", str(folder / "train" / "model.keras"), "-o", str(folder / "net.hone"), "--json"]) == 0
    return folder


def test_hone_train_sharpens_an_autoencoder_and_reports_pixel_accuracy(trained):
    history = json.loads((trained / "train" / "history.json").read_text())
    summary = history["summary"]
    assert summary["fully_sharp"] and summary["quantization_aware"] and summary["arch"] == "autoencoder"
    figures = summary["reconstruction"]
    assert figures["images"] == 360 and figures["pixels"] == 64
    assert figures["pixel_accuracy"] == summary["sharpened_accuracy"] > 0.75
    assert summary["config"]["output_ramp"] is True   # the autoencoder's default
    assert figures["bits_wrong_per_image"] == pytest.approx(64 * (1 - figures["pixel_accuracy"]))
    assert len(history["history"]["test_bits_wrong"]) == summary["epochs"]


def test_the_export_has_no_key_and_equals_keras_bit_for_bit(trained):
    import keras

    from hone.training.autoencoder import hard_reconstructions
    from hone.network.datasets import load_dataset

    network, meta = read_network(trained / "net.hone")
    assert network.output == SpikeOutput() and [layer.outputs for layer in network.layers] == [24, 12, 24, 64]
    assert json.loads((trained / "net.hone").read_text())["version"] == 2
    report = json.loads((trained / "net.hone.json").read_text())
    assert report["output"] == "spikes" and report["disagreements"] == 0
    assert report["accuracy"]["integer"] == report["accuracy"]["keras_sharpened"] == meta["accuracy"]["integer"]
    data = load_dataset("digits")
    model = keras.saving.load_model(trained / "train" / "model.keras")
    keras_spikes = hard_reconstructions(model, data.x_test)
    integer = IntegerNetwork(network).run(network.input.quantize(data.x_test.reshape(-1, 8, 8, 1)))
    np.testing.assert_array_equal(keras_spikes, integer.outputs)
    assert reconstruction_figures(integer.outputs, pixel_targets(data.x_test)) == report["reconstruction"]


def test_hone_sim_and_info_report_the_reconstruction(trained, capsys):
    network, _ = read_network(trained / "net.hone")
    assert run_hone("info", trained / "net.hone", "--json") == 0
    info = last_json(capsys)
    assert info["output"] == "spikes" and info["classes"] == 0 and info["nhot"] is None
    assert run_hone("sim", trained / "net.hone", "--images", 12, "--simulator", "icarus", "--lanes", 8,
                    "--build-dir", trained / "sim", "--json") == 0
    report = last_json(capsys)
    assert report["equal"] and report["all_layers_equal"] == 12
    from hone.network.datasets import load_dataset

    images = load_dataset("digits").x_test[:12]
    reference = IntegerNetwork(network).run(network.input.quantize(images.reshape(-1, 8, 8, 1))).outputs
    assert report["reconstruction"] == reconstruction_figures(reference, pixel_targets(images))
    assert report["accuracy"] == report["reconstruction"]["pixel_accuracy"]


# the flow's clock and lanes for an autoencoder (cli/flow.py): tests/cli/test_flow.py


@pytest.mark.parametrize("argv, message", [
    (["train", "--arch", "autoencoder", "--dataset", "digits", "--augment"],
     r"`augment` does not apply to arch='autoencoder' \(its target is its own input\)\. Received: augment=True"),
    (["train", "--arch", "autoencoder", "--dataset", "digits", "--loss", "l1"],
     r"argument --loss: invalid choice: 'l1'"),
    (["flow", "--arch", "autoencoder", "--dataset", "digits", "--widths", "8,4,8", "--lanes", "65"],
     r"argument --lanes: expected 1\.\.64 for this network \(its widest layer has 64 neurons or filters"),
    (["flow", "--arch", "autoencoder", "--dataset", "digits", "--clock", "33"],
     r"argument --clock: no ecp5 PLL setting makes 33\.000 MHz from the 25\.000 MHz oscillator within 1%; "
     r"nearest 33\.333 MHz$"),
])
def test_bad_autoencoder_arguments_are_one_line_and_exit_2(tmp_path, capsys, argv, message):
    assert run_hone(*argv, "--out", tmp_path / "run") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hone: error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize("argv, ramp", [
    (["--arch", "autoencoder"], True), (["--arch", "autoencoder", "--no-output-ramp"], False),
    (["--arch", "dense"], True), (["--arch", "dense", "--no-output-ramp"], False), (["--arch", "conv"], False),
    (["--arch", "conv", "--output-ramp"], True),
])
def test_output_ramp_defaults_per_architecture(argv, ramp):
    import argparse

    from hone.training.activations import spiking_layers
    from hone.cli.train import add_train_arguments, config_from
    from hone.training.config import TrainConfig
    from hone.training.models import build_model

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, TrainConfig())
    config = config_from(parser.parse_args(argv))
    assert config.output_ramp is ramp
    model = build_model(config.arch, (8, 8, 1), 10, widths=(6, 4, 6), filters=(2,), kernel=3,
                        output_ramp=config.output_ramp)
    ramps = [layer.ramp_in_training for layer in spiking_layers(model)]
    assert ramps == [False] * (len(ramps) - 1) + [ramp]   # the output layer only


def test_the_python_api_resolves_the_same_per_architecture_defaults_as_the_cli():
    import argparse

    from hone.cli.train import add_train_arguments, config_from
    from hone.training.config import AUTOENCODER_DEFAULTS, CLASSIFIER_DEFAULTS, CONV_DEFAULTS, TrainConfig

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, TrainConfig())
    for arch, defaults in (("autoencoder", AUTOENCODER_DEFAULTS), ("dense", CLASSIFIER_DEFAULTS),
                           ("conv", CONV_DEFAULTS)):
        for config in (TrainConfig(arch=arch), config_from(parser.parse_args(["--arch", arch]))):
            assert {name: getattr(config, name) for name in defaults} == defaults
    assert TrainConfig(arch="conv").widths is None and TrainConfig(arch="conv").nhot == 8   # models: 512-80
    assert TrainConfig(arch="conv", epochs=5).epochs == 5
    assert TrainConfig(arch="autoencoder", finetune_epochs=2, output_ramp=False).finetune_epochs == 2
    assert TrainConfig(arch="autoencoder", output_ramp=False).output_ramp is False


def test_the_conv_defaults_fine_tune_their_epochs_and_fit_the_conv_epoch_budget():
    # What CONV_DEFAULTS' finetune_epochs and epochs control: a conv run from the command line's
    # defaults sharpens and fine-tunes within its default epochs, and once sharp it trains exactly
    # finetune_epochs straight-through epochs, then stops.
    import argparse
    import warnings

    from hone.cli.train import add_train_arguments, config_from
    from hone.training.activations import spiking_layers
    from hone.training.config import CONV_DEFAULTS, TrainConfig
    from hone.training.models import build_model
    from hone.training.sharpeners import SharpeningWarning

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, TrainConfig())
    config = config_from(parser.parse_args(["--arch", "conv"]))
    model = build_model("conv", (8, 8, 1), 10, widths=(6,), filters=(2,), kernel=3)
    sharpener = config.make_sharpener()
    sharpener.set_model(model)
    sharpener.set_params({"epochs": config.epochs})
    with warnings.catch_warnings():
        warnings.simplefilter("error", SharpeningWarning)  # the schedule fits: no warning that it cannot
        sharpener.on_train_begin()
    assert sharpener.finetune_epochs < sharpener.minimum_epochs() <= config.epochs
    sharpener.set_params({"epochs": sharpener.minimum_epochs() - 1})
    with pytest.warns(SharpeningWarning, match="fine-tuning will be cut short"):
        sharpener.on_train_begin()
    for layer in spiking_layers(model):
        layer.set_sharpness(1.0)
    sharpener.set_params({"epochs": config.epochs})
    sharpener.on_train_begin()
    model.stop_training, epochs = False, 0
    while not model.stop_training and epochs <= config.epochs:
        sharpener.on_epoch_end(epochs, {})
        epochs += 1
    assert epochs == CONV_DEFAULTS["finetune_epochs"] == config.finetune_epochs


@pytest.mark.parametrize("argv, rate", [
    (["--arch", "conv"], 0.25), (["--arch", "conv", "--conv-dropout", "0"], 0.0),
    (["--arch", "dense"], 0.0), (["--arch", "autoencoder"], 0.0),
])
def test_conv_dropout_defaults_to_conv_only(argv, rate):
    import argparse

    import keras

    from hone.cli.train import add_train_arguments, config_from
    from hone.training.config import DEFAULT_CONV_DROPOUT, TrainConfig
    from hone.training.models import build_model

    parser = argparse.ArgumentParser()
    add_train_arguments(parser, TrainConfig())
    config = config_from(parser.parse_args(argv))
    assert config.conv_dropout == rate and TrainConfig(arch="conv").conv_dropout == DEFAULT_CONV_DROPOUT == 0.25
    model = build_model(config.arch, (8, 8, 1), 10, widths=(6,), filters=(2,), kernel=3, dropout=0.0,
                        conv_dropout=config.conv_dropout)
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, keras.layers.Dropout)]
    assert dropouts == ([rate] if rate else [])
