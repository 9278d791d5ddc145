"""A real, short training on scikit-learn's digits, through the real CLI."""

import json
import subprocess
import sys

import numpy as np
import pytest
import keras

from hone.training.activations import spiking_layers
from hone.network.nhot import decode_spikes
from hone.training.train import output_spikes

pytestmark = pytest.mark.slow


def train_digits(out, *extra):
    result = subprocess.run(
        [sys.executable, "-m", "hone", "train", "--dataset", "digits", "--arch", "dense",
         "--nhot", "4", "--epochs", "80", "--seed", "0", "--out", str(out), "--json", *extra],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    """The same training (seed, data, recipe) on each backend, run once each when first asked for."""
    runs = {}

    def run(backend):
        if backend not in runs:
            runs[backend] = train_digits(tmp_path_factory.mktemp(f"digits-{backend}") / "run", "--backend", backend)
        return runs[backend]
    return run


@pytest.fixture(scope="module", params=["tensorflow", "jax"])
def digits_run(request, digits_runs):
    return digits_runs(request.param)


def test_digits_sharpens_fully_and_scores_at_least_85_percent(digits_run):
    out, stdout = digits_run
    figures = json.loads(stdout.strip().splitlines()[-1])
    assert figures["fully_sharp"] is True
    assert set(figures["sharpness"].values()) == {1.0}
    assert figures["sharpened_accuracy"] >= 0.85, figures
    assert "sharpened (hard steps)" in stdout


def test_run_folder_loads_with_plain_keras_and_reproduces_the_accuracy(digits_run, digits):
    out, stdout = digits_run
    figures = json.loads(stdout.strip().splitlines()[-1])
    model = keras.saving.load_model(out / "model.keras")  # no custom_objects needed
    assert [layer.get_sharpness() for layer in spiking_layers(model)] == [1.0, 1.0, 1.0]
    spikes = output_spikes(model, digits.x_test)
    assert set(np.unique(spikes).tolist()) <= {0.0, 1.0}  # binary messages only
    accuracy = np.mean(decode_spikes(spikes, model.layers[-1].key) == digits.y_test)
    assert accuracy == pytest.approx(figures["sharpened_accuracy"])


def test_history_and_plot(digits_run):
    out, _ = digits_run
    record = json.loads((out / "history.json").read_text())
    history, summary = record["history"], record["summary"]
    epochs = summary["epochs"]
    for key in ("loss", "accuracy", "test_accuracy", "seconds"):
        assert len(history[key]) == epochs, key
    assert set(history["sharpness"]) == {"spike_dense_0", "spike_dense_1", "spike_dense_out"}
    for values in history["sharpness"].values():
        assert len(values) == epochs and values[0] == 0.0 and values[-1] == 1.0
        assert all(a <= b for a, b in zip(values, values[1:]))  # sharpening never goes back
    png = (out / "sharpening.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_model_loads_in_a_fresh_interpreter_with_plain_load_model(digits_run):
    out, _ = digits_run
    code = ("import sys, keras, hone.training.layers; m = keras.saving.load_model(sys.argv[1]); "
            "print(type(m.layers[-1]).__name__, m.count_params())")
    result = subprocess.run([sys.executable, "-c", code, str(out / "model.keras")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[0] == "SoftmaxDecode"


def test_backends_reach_the_same_sharpened_accuracy(digits_runs):
    figures = {backend: json.loads(digits_runs(backend)[1].strip().splitlines()[-1])
               for backend in ("tensorflow", "jax")}
    assert {f["backend"] for f in figures.values()} == {"tensorflow", "jax"}
    assert all(f["fully_sharp"] for f in figures.values())
    # 360 test images: 2 points is 7 images (the 0.5-point bar on Fashion-MNIST is bench/train.py's)
    assert abs(figures["tensorflow"]["sharpened_accuracy"] - figures["jax"]["sharpened_accuracy"]) <= 0.02


def export_with(backend, model, output):
    result = subprocess.run([sys.executable, "-m", "hone", "export", str(model), "--weight-bits", "4",
                             "-o", str(output), "--backend", backend, "--json"],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("trained_on", ["tensorflow", "jax"])
def test_a_model_exports_identically_on_either_backend(digits_runs, tmp_path, trained_on):
    model = digits_runs(trained_on)[0] / "model.keras"
    reports = {backend: export_with(backend, model, tmp_path / f"{backend}.hone") for backend in ("tensorflow", "jax")}
    assert (tmp_path / "tensorflow.hone").read_bytes() == (tmp_path / "jax.hone").read_bytes()
    assert reports["tensorflow"]["sha256"] == reports["jax"]["sha256"]
    assert reports["tensorflow"]["accuracy"] == reports["jax"]["accuracy"]


# TensorFlow's MirroredStrategy on 2 virtual devices is covered (same schedule, 2 replicas) by
# tests/test_backends.py; its whole training here would take 90 s of the suite's budget.
@pytest.mark.parametrize("backend, engine", [("jax", "keras.distribution.DataParallel")])
def test_data_parallel_on_two_virtual_devices_matches_one_device(digits_runs, tmp_path, backend, engine):
    _, stdout = train_digits(tmp_path / "run", "--backend", backend, "--data-parallel", "--cpu-devices", "2")
    split = json.loads(stdout.strip().splitlines()[-1])
    single = json.loads(digits_runs(backend)[1].strip().splitlines()[-1])
    assert (split["engine"], split["replicas"], split["backend"]) == (engine, 2, backend)
    assert split["fully_sharp"] and split["sharp_epoch"] == single["sharp_epoch"]  # the same schedule
    assert abs(split["sharpened_accuracy"] - single["sharpened_accuracy"]) <= 0.02
    assert f"{engine} on 2 devices" in stdout


def test_two_jax_processes_train_one_model(tmp_path):
    """The multi-machine launch of README, on one machine: two processes, one data-parallel model."""
    import os

    out = tmp_path / "run"
    ports = f"localhost:{free_port()},localhost:{free_port()}"
    workers = [subprocess.Popen(
        [sys.executable, "-m", "hone", "train", "--dataset", "digits", "--epochs", "80", "--backend", "jax",
         "--finetune-epochs", "4", "--data-parallel", "--out", str(out), "--json"],
        env=dict(os.environ, KERAS_DISTRIBUTION_JOB_ADDRESSES=ports, KERAS_DISTRIBUTION_NUM_PROCESSES="2",
                 KERAS_DISTRIBUTION_PROCESS_ID=str(index)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for index in range(2)]
    try:
        results = [worker.communicate(timeout=600) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-3000:]
    figures = [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in results]
    assert [(f["workers"], f["replicas"], f["fully_sharp"]) for f in figures] == [(2, 2, True)] * 2
    assert figures[0]["sharpened_accuracy"] == figures[1]["sharpened_accuracy"] >= 0.85  # one model, not two
    chief = keras.saving.load_model(out / "model.keras", compile=False)
    other = keras.saving.load_model(out / "worker-1" / "model.keras", compile=False)
    for mine, theirs in zip(chief.weights, other.weights):
        np.testing.assert_array_equal(np.asarray(mine), np.asarray(theirs), err_msg=mine.path)


def test_tensorflow_multi_worker_is_refused_with_the_reason(tmp_path):
    import os

    config = {"cluster": {"worker": ["localhost:1", "localhost:2"]}, "task": {"type": "worker", "index": 0}}
    result = subprocess.run([sys.executable, "-m", "hone", "train", "--dataset", "digits", "--data-parallel",
                             "--backend", "tensorflow", "--out", str(tmp_path / "run")],
                            env=dict(os.environ, TF_CONFIG=json.dumps(config)), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr   # settings refused before training
    assert "hone: error: TF_CONFIG lists 2 workers, but multi-worker training on the tensorflow backend fails " \
           "inside Keras 3's Model.fit (keras-team/keras#20585)" in result.stderr


def free_port():
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_distributed_sweep_writes_a_table_and_a_plot(tmp_path):
    """KerasTuner's chief/worker mode, as README launches it: the worker trains, the chief reports."""
    import os

    out = tmp_path / "sweep"
    command = [sys.executable, "-m", "hone", "sweep", "--dataset", "digits", "--backend", "jax",
               "--vary", "rate=0.25,0.5", "--min-init-epochs", "3", "--epochs", "40", "--finetune-epochs", "3",
               "--out", str(out), "--json"]
    env = dict(os.environ, KERASTUNER_ORACLE_IP="127.0.0.1", KERASTUNER_ORACLE_PORT=str(free_port()))
    chief = subprocess.Popen(command, env=dict(env, KERASTUNER_TUNER_ID="chief"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        worker = subprocess.run(command, env=dict(env, KERASTUNER_TUNER_ID="tuner1"), capture_output=True,
                                text=True, timeout=900)
        stdout, stderr = chief.communicate(timeout=300)
    finally:
        chief.kill()
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert worker.stdout.count("trial ") == 2 and "worker finished: the chief writes the table" in worker.stdout
    assert chief.returncode == 0, stderr[-3000:]
    figures = json.loads(stdout.strip().splitlines()[-1])
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert figures["trials"] == len(rows) == 2 and sorted(row["rate"] for row in rows) == [0.25, 0.5]
    assert figures["best"] == max(rows, key=lambda row: row["val_sharpened_accuracy"])
    for row in rows:
        assert row["fully_sharp"] and 0.8 <= row["val_sharpened_accuracy"] <= 1.0
        history = json.loads((out / f"trial-{row['trial']}" / "history.json").read_text())
        assert history["summary"]["config"]["rate"] == row["rate"]
        assert history["summary"]["sharpened_accuracy"] == pytest.approx(row["val_sharpened_accuracy"])
    table = (out / "sweep.md").read_text()
    assert table.count("\n") == 2 + len(rows) and "**best**" in table
    assert (out / "sweep.csv").read_text().count("\n") == 1 + len(rows)
    png = (out / "sweep.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_flow_writes_a_report(tmp_path):
    out = tmp_path / "flow"
    result = subprocess.run(
        [sys.executable, "-m", "hone", "flow", "--dataset", "digits", "--epochs", "80",
         "--out", str(out), "--json"], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((out / "report.json").read_text())
    assert report["train"]["fully_sharp"] is True
    markdown = (out / "report.md").read_text()
    assert f"{100 * report['train']['sharpened_accuracy']:.2f}%" in markdown
    assert (out / "train" / "model.keras").exists() and (out / "train" / "sharpening.png").exists()
    # the flow exports the sharpened net to a 4-bit network file and reports every stage
    from hone.network.netfile import read_network
    network, _ = read_network(out / "net.hone")
    assert network.weight_bits == 4 and network.sha256 == report["export"]["sha256"]
    accuracy = report["export"]["accuracy"]
    assert accuracy["keras_sharpened"] == pytest.approx(report["train"]["sharpened_accuracy"])
    assert accuracy["integer"] >= accuracy["keras_sharpened"] - 0.03
    assert "## Network file" in markdown
    # and runs a sample of test images through its RTL, spike for spike
    simulated = report["sim"]
    assert simulated["equal"] is True and simulated["images"] == 200
    assert simulated["all_layers_equal"] == simulated["class_agreement"] == 200
    assert simulated["accuracy"] == pytest.approx(accuracy["integer"], abs=0.1)
    assert "## RTL simulation" in markdown
    # and drives the simulated board over serial with the host code: every image, once, equal
    board = report["board"]
    assert board["equal"] is True and board["results"] == board["images"] == 50
    assert board["lost"] == board["duplicated"] == 0 and board["class_agreement"] == 50
    assert 0.5 < board["line_rate_fraction"] <= 1.0
    assert "## Host over serial to the simulated board" in markdown
    # and ends with a bitstream for the default board, timing met
    built = report["bitstream"]
    assert built["board"] == "ulx3s-85f" and built["timing_met"] is True
    # with the lanes hone build picks: the fewest whose compute keeps 1.5x ahead of the line
    assert built["lanes_policy"].startswith("fewest") and built["lanes"] <= 32
    assert built["inference"]["compute_inferences_per_s"] >= 1.5 * built["inference"]["uart_inferences_per_s"]
    assert (out / "bitstream" / "hone.bit").stat().st_size == built["bitstream_bytes"] > 100_000
    assert built["inference"]["accuracy"] == pytest.approx(accuracy["integer"])
    assert "## Bitstream for ulx3s-85f" in markdown and (out / "bitstream" / "build.png").exists()


@pytest.mark.slow
def test_flow_runs_a_conv_network_end_to_end(tmp_path):
    """``hone flow --arch conv``: a small conv-pool-conv-pool-dense net on digits, through the RTL and
    the simulated board spike for spike (the bitstream of the conv default is bench/boards.py's)."""
    out = tmp_path / "flow"
    result = subprocess.run(
        [sys.executable, "-m", "hone", "flow", "--arch", "conv", "--dataset", "digits", "--filters", "4,8",
         "--kernel", "3", "--padding", "same", "--widths", "16", "--epochs", "80", "--finetune-epochs", "40",
         "--sim-images", "20",
         "--board-images", "8", "--lanes", "4", "--board", "none", "--out", str(out), "--json"],
        capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["train"]["arch"] == "conv" and report["train"]["fully_sharp"] is True
    from hone.network.netfile import read_network
    network, _ = read_network(out / "net.hone")
    assert [layer.kind for layer in network.layers] == ["conv2d", "maxpool2d", "conv2d", "maxpool2d", "dense",
                                                       "dense"]
    simulated = report["sim"]
    assert simulated["equal"] is True and simulated["all_layers_equal"] == 20
    assert list(simulated["layer_agreement"]) == [layer.name for layer in network.layers]
    board = report["board"]
    assert board["equal"] is True and board["results"] == board["images"] == 8
    assert report["bitstream"] is None
