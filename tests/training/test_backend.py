"""Backend choice and data parallelism: selection errors, the sharpener on every engine, devices."""

import json
import os
import subprocess
import sys

import pytest

from hone.cli.main import main
from hone.training.backend import BackendError, select_backend

HONE = [sys.executable, "-m", "hone"]


def other_backend():
    import keras

    return "jax" if keras.backend.backend() == "tensorflow" else "tensorflow"


def test_unknown_backend_is_named():
    with pytest.raises(BackendError, match=r"unknown backend 'torch' \(from --backend or KERAS_BACKEND\); "
                                           r"expected one of tensorflow, jax"):
        select_backend("torch")


def test_the_backend_cannot_change_once_keras_runs():
    import keras

    wanted = other_backend()
    with pytest.raises(BackendError, match=f"Keras is already running on the {keras.backend.backend()} backend "
                                           f"in this process; select {wanted} before Keras is imported"):
        select_backend(wanted)
    assert select_backend(keras.backend.backend()) == keras.backend.backend()


@pytest.mark.parametrize("count", [0, -2, 1.5, True])
def test_virtual_device_count_must_be_a_positive_integer(count):
    import keras

    with pytest.raises(BackendError, match="the number of virtual CPU devices must be a positive integer"):
        select_backend(keras.backend.backend(), cpu_devices=count)


def test_cli_reports_a_backend_switch_in_one_line(tmp_path, capsys):
    wanted = other_backend()
    code = main(["train", "--dataset", "digits", "--backend", wanted, "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"hone: error: Keras is already running on the ") and f"select {wanted}" in err


def test_keras_backend_variable_is_checked(tmp_path):
    env = dict(os.environ, KERAS_BACKEND="theano")
    result = subprocess.run(HONE + ["train", "--dataset", "digits", "--out", str(tmp_path / "run")],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "hone: error: unknown backend 'theano' (from --backend or KERAS_BACKEND)" in result.stderr


# The sharpener on each engine: per-step sharpening must reach the model's variables (Keras' JAX
# trainer keeps its state off the model between steps), and every engine must end in the same place.
SHARPEN_SCRIPT = r"""
import json, sys
from hone.training.backend import select_backend
backend, devices = sys.argv[1], int(sys.argv[2])
select_backend(backend, cpu_devices=devices if devices > 1 else None)
import keras
from hone.training.config import TrainConfig
from hone.network.datasets import load_dataset
from hone.training.distribute import placement
from hone.training.sharpeners import SimpleSharpener
from hone.training.train import compiled_model

class Probe(keras.callbacks.Callback):
    # the sharpness the model's variables hold after each epoch (what the next step computes with)
    seen = []
    def on_epoch_end(self, epoch, logs=None):
        self.seen.append([round(layer.get_sharpness(), 6) for layer in self.model.layers
                          if hasattr(layer, "get_sharpness")])

data = load_dataset("digits")
keras.utils.set_random_seed(0)
with placement("data-parallel" if devices > 1 else "none") as where:
    model = compiled_model(TrainConfig(dataset="digits"), data)
    x, y = data.x_train[:1280], data.y_train[:1280]  # 10 batches of 128 per epoch
    sharpener = SimpleSharpener(start_epoch=1, steps=4, epochs_per_step=0.5)  # 0.5 per epoch
    history = model.fit(x, y, batch_size=128, epochs=5, verbose=0, callbacks=[sharpener, Probe()])
print(json.dumps({"replicas": where.replicas, "seen": Probe.seen,
                  "logged": history.history["sharpness/spike_dense_0"]}))
"""


@pytest.mark.parametrize("backend, devices", [("tensorflow", 1), ("jax", 1), ("jax", 2), ("tensorflow", 2)])
def test_sharpening_reaches_the_model_on_every_engine(tmp_path, backend, devices):
    result = subprocess.run([sys.executable, "-c", SHARPEN_SCRIPT, backend, str(devices)], capture_output=True,
                            text=True, timeout=600, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["replicas"] == devices
    # 10 steps per epoch, 0.05 per step from epoch 1: layer 0 sharp after epoch 2, layer 1 after epoch 4
    assert figures["seen"] == [[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.5, 0.0],
                               [1.0, 1.0, 0.0]]
    assert figures["logged"] == pytest.approx([0.0, 0.5, 1.0, 1.0, 1.0])


@pytest.mark.parametrize("specs, sharpener, message", [
    (["rate"], "adaptive", r"--vary 'rate': expected NAME=V1,V2,\.\.\. \(e\.g\. rate=0\.1,0\.25\)"),
    (["widths=1,2"], "adaptive", r"'widths' cannot be swept; choose from rate, critical"),
    (["rate=0.1,fast"], "adaptive", r"--vary 'rate=0\.1,fast': the values of rate must be numbers"),
    (["nhot=2,2.5"], "adaptive", r"the values of nhot must be integers"),
    (["rate=0.1,0.1"], "adaptive", r"a value is repeated"),
    (["rate=0.1", "rate=0.2"], "adaptive", r"--vary rate is given twice"),
    (["critical=0.5"], "simple", r"critical is a setting of the adaptive sharpener, but the sweep trains with "
                                 r"--sharpener simple"),
    (["rate=0.25,-1"], "adaptive", r"--vary rate=-1\.0: `rate` must be finite and > 0"),
    (["patience=0"], "adaptive", r"--vary patience=0: `patience` must be >= 1"),
])
def test_sweep_space_errors_name_the_setting(specs, sharpener, message):
    from hone.training.sweep import SweepError, parse_space

    with pytest.raises(SweepError, match=message):
        parse_space(specs, sharpener)


def test_sweep_space_parses_types_and_defaults():
    from hone.training.sweep import DEFAULT_SPACE, grid_size, parse_space

    space = parse_space(["rate=0.1,0.25", "finetune-epochs=0,5"], "adaptive")
    assert space == {"rate": (0.1, 0.25), "finetune_epochs": (0, 5)}
    assert all(isinstance(v, int) for v in space["finetune_epochs"])
    assert parse_space([], "adaptive") == DEFAULT_SPACE and grid_size(DEFAULT_SPACE) == 162


def test_validation_split_is_stratified_and_disjoint(digits):
    import dataclasses

    import numpy as np
    from hone.training.sweep import validation_split

    # every image made unique (its index), so where each one went can be checked
    ids = np.arange(len(digits.x_train), dtype="float32")
    data = dataclasses.replace(digits, x_train=ids.reshape(-1, 1, 1, 1))
    split = validation_split(data, fraction=0.1)
    held, kept = split.x_test.ravel().astype(int), split.x_train.ravel().astype(int)
    assert not set(held) & set(kept) and len(held) + len(kept) == len(ids)
    assert np.array_equal(digits.y_train[held], split.y_test) and np.array_equal(digits.y_train[kept], split.y_train)
    per_class = np.bincount(split.y_test, minlength=10) / np.bincount(digits.y_train, minlength=10)
    assert np.all(np.abs(per_class - 0.1) < 0.01)  # 10% of every class
    assert np.array_equal(validation_split(data, fraction=0.1).x_test, split.x_test)  # reproducible


def test_a_sweep_folder_resumes_only_the_same_sweep(tmp_path):
    from hone.training.config import TrainConfig
    from hone.training.sweep import SweepError, run_sweep

    base = TrainConfig(dataset="digits", sharpener="adaptive")
    (tmp_path / "space.json").write_text(json.dumps({"search": "grid", "space": {"rate": [0.1, 0.2]},
                                                     "base_config": {}}))
    with pytest.raises(SweepError, match=r"holds a grid sweep over \{'rate': \[0.1, 0.2\]\} with other settings; "
                                         r"resume it with the same options, or pass another --out"):
        run_sweep(base, {"rate": (0.1, 0.5)}, tmp_path)
    (tmp_path / "space.json").unlink()
    (tmp_path / "tuner").mkdir()
    with pytest.raises(SweepError, match="holds a KerasTuner project hone did not record"):
        run_sweep(base, {"rate": (0.1, 0.5)}, tmp_path)
