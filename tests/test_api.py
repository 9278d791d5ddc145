"""The ``hone`` package as a library: its public names, what installs, README's Python example, old
models, and ``hone export`` on models trained outside ``hone train``."""

import json
import pathlib
import re
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import hone

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run(code, cwd, **env):
    import os

    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **env})


def hone_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "hone", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def error_line(result):
    """The one ``hone: error:`` line (TensorFlow may print start-up lines before it)."""
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("hone: error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


# -- the package ----------------------------------------------------------------------------------

def test_import_hone_is_light_and_every_public_name_resolves(tmp_path):
    code = ("import sys, hone; heavy = [m for m in ('keras', 'tensorflow', 'jax', 'amaranth', 'cocotb') "
            "if m in sys.modules]; assert not heavy, heavy; "
            "network = hone.IntegerNetwork; assert 'keras' not in sys.modules; "
            "missing = [n for n in hone.__all__ if getattr(hone, n) is None]; assert not missing; "
            "print(len(hone.__all__))")
    result = run(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.split()[-1]) == len(hone.__all__)
    with pytest.raises(AttributeError, match=r"^module 'hone' has no attribute 'nonexistent'$"):
        hone.nonexistent  # noqa: B018


@pytest.mark.parametrize("name", sorted(set(hone.__all__) - {"__version__"}))
def test_public_names_are_documented(name):
    doc = getattr(hone, name).__doc__
    assert doc and len(doc.strip()) > 20, name


def test_only_hone_is_installed_and_the_old_top_level_names_are_gone(tmp_path):
    wheels = tmp_path / "wheels"
    import importlib.util

    # the virtual environment's setuptools builds it (no download) when it can: it needs `wheel`
    isolation = [] if importlib.util.find_spec("wheel") is None else ["--no-build-isolation"]
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation,
                            "-w", str(wheels), str(ROOT)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = wheels.glob("hone-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        archive.extractall(tmp_path / "site")
    assert {name.split("/")[0] for name in names} == {"hone", wheel.name.split("-py")[0] + ".dist-info"}
    for package in ("network", "training", "rtl", "sim", "boards", "host", "cli"):
        assert f"hone/{package}/__init__.py" in names
    assert not [name for name in names if name.startswith(("hone/tests", "hone/bench"))]
    # the installed copy (first on the path) imports; the old names do not
    site = str(tmp_path / "site")
    result = run("import hone, hone.network.netfile as n; print(hone.__file__, n.__file__)", tmp_path,
                 PYTHONPATH=site)
    assert result.returncode == 0 and result.stdout.split() == [
        f"{site}/hone/__init__.py", f"{site}/hone/network/netfile.py"], result.stderr
    for old in ("training", "rtl", "sim", "host", "boards"):
        result = run(f"import {old}", tmp_path, PYTHONPATH=site)
        assert f"No module named '{old}'" in result.stderr, (old, result.stderr)


def test_python_m_hone_is_the_command(tmp_path):
    result = hone_cli("info", ROOT / "tests/data/digits-dense-4bit.hone", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["input_shape"] == [8, 8, 1]


def test_pixels_outside_0_1_are_refused():
    network, _ = hone.read_network(ROOT / "tests/data/digits-dense-4bit.hone")
    with pytest.raises(ValueError, match=r"^pixels must be floats in \[0, 1\] \(scale 8-bit images by 1/255\), "
                                         r"got values in 0\.\.255$"):
        network.input.quantize(np.array([[0.0, 255.0]]))
    with pytest.raises(ValueError, match=r"got values in 0\.\.1 and NaN$"):
        network.input.quantize(np.array([0.0, np.nan, 1.0]))


def test_simulate_refuses_pixels_that_do_not_fit_the_network(tmp_path):
    network, _ = hone.read_network(ROOT / "tests/data/digits-dense-4bit.hone")
    with pytest.raises(ValueError, match=r"^'pixels' has shape \(2, 63\), but the network takes images of "
                                         r"\(8, 8, 1\) \(64 pixels each\)$"):
        hone.simulate(network, np.zeros((2, 63), np.int64), build_root=tmp_path)
    with pytest.raises(ValueError, match=r"^'pixels' must be integers in 0\.\.15 \(4-bit input; "):
        hone.simulate(network, np.full((1, 64), 16), build_root=tmp_path)
    with pytest.raises(ValueError, match=r"^'pixels' must be integers .* got float64"):
        hone.simulate(network, np.zeros((1, 64)), build_root=tmp_path)


# -- README's example, run exactly as written ---------------------------------------------------

def readme_example():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Use hone from Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "README's 'Use hone from Python' holds one python block"
    return blocks[0]


def test_readme_example_is_about_25_lines():
    lines = [line for line in readme_example().splitlines() if line.strip()]
    assert 20 <= len(lines) <= 32, len(lines)


@pytest.mark.slow
def test_readme_python_example_runs(tmp_path):
    script = tmp_path / "example.py"
    script.write_text(readme_example())
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    import ast

    printed = [line for line in result.stdout.splitlines() if line.startswith("{")][-1]
    accuracy = ast.literal_eval(printed.rsplit("}", 1)[0] + "}")
    assert accuracy["integer"] > 0.8, result.stdout
    network, _ = hone.read_network(tmp_path / "digits.hone")
    assert network.weight_bits == 4 and network.input.shape == (1, 64, 1)


# -- models saved before the rename, and models from outside hone train ------------------------------

def test_a_model_saved_before_the_rename_loads_and_exports(tmp_path):
    legacy = ROOT / "tests/data/legacy-digits.keras"
    with zipfile.ZipFile(legacy) as archive:  # it names the old modules
        assert '"module": "training.activations"' in archive.read("config.json").decode()
    result = run("import keras, hone.training.layers, sys; m = keras.saving.load_model(sys.argv[1]); "
                 "print(*sorted({type(layer).__module__ for layer in m.layers}))".replace("sys.argv[1]", repr(str(legacy))), tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"hone.training.activations", "hone.training.decode"} <= set(result.stdout.split())
    out = tmp_path / "net.hone"
    result = hone_cli("export", legacy, "--weight-bits", 4, "--dataset", "digits", "-o", out, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["accuracy"]["keras_sharpened"] > 0.7
    assert report["class_agreement_keras_integer"] > 0.8  # a small 2-hot net at 4 bits
    assert set(report["disagreement_sources"]) == {"pixel_quantization", "weight_quantization",
                                                    "weight_quantization_near_threshold"}


@pytest.fixture(scope="module")
def flat_model(tmp_path_factory):
    """A sharp model on flat (64,) input, trained on scikit-learn's own layout, saved without a run
    folder (so nothing records its data)."""
    import keras
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    key = hone.nhot_key(10, 2, seed=0)
    model = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32), hone.SpikingBReLU(),
                              keras.layers.Dense(key.shape[1]), hone.SpikingBReLU(),
                              hone.SoftmaxDecode(key, scale=0.25)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=12, batch_size=32, verbose=0,
              callbacks=[hone.SimpleSharpener(start_epoch=4, steps=1, settle_epochs=1, finetune_epochs=4)])
    assert set(hone.sharpness_of(model).values()) == {1.0}
    path = tmp_path_factory.mktemp("flat") / "model.keras"
    model.save(path)
    return model, path, (x, y)


def test_export_without_data_writes_the_file_and_says_it_did_not_evaluate(flat_model, tmp_path):
    _, path, _ = flat_model
    out = tmp_path / "net.hone"
    result = hone_cli("export", path, "--weight-bits", 4, "-o", out, "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert re.search(r"^test images +none: skipped: no test data \(no --dataset, and no history\.json of a "
                     r"hone train run beside the model\); pass --dataset to measure accuracy and agreement$",
                     result.stdout, re.M), result.stdout
    report = json.loads(result.stdout.splitlines()[-1])
    assert "accuracy" not in report and report["dataset"] is None
    network, meta = hone.read_network(out)
    assert network.input.shape == (1, 64, 1) and "accuracy" not in meta and "dataset" not in meta


def test_export_of_a_flat_input_model_evaluates_on_the_data_given(flat_model, tmp_path):
    _, path, _ = flat_model
    result = hone_cli("export", path, "--weight-bits", 4, "-o", tmp_path / "net.hone", "--dataset", "digits",
                      "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    assert report["images"] == 360 and report["accuracy"]["integer"] > 0.7
    assert re.search(r"^  from pixel quantization +\d+ \(keras on raw vs quantized 8-bit pixels\)$",
                     result.stdout, re.M)


def test_disagreements_are_split_into_pixel_and_weight_quantization(flat_model):
    model, _, (x, y) = flat_model
    # near-exact weights, 1-bit pixels: every disagreement comes from the pixels (or is a tie)
    network, floats = hone.export_network(model, weight_bits=16, input_bits=1)
    report = hone.evaluate_export(model, network, floats, x, y)
    sources = report["disagreement_sources"]
    assert sources["pixel_quantization"] > 20
    assert sources["weight_quantization"] == sources["weight_quantization_near_threshold"]
    # near-exact pixels, 1-bit weights: every disagreement comes from the weights
    network, floats = hone.export_network(model, weight_bits=1, input_bits=16)
    report = hone.evaluate_export(model, network, floats, x, y)
    sources = report["disagreement_sources"]
    assert sources["pixel_quantization"] == 0
    assert sources["weight_quantization"] == report["disagreements"] > 20
    assert report["accuracy"]["keras_quantized_pixels"] == report["accuracy"]["keras_sharpened"]


def test_hone_train_warns_at_the_start_when_the_schedule_cannot_finish(tmp_path):
    result = hone_cli("train", "--dataset", "digits", "--epochs", "3", "--widths", "16", "--out", tmp_path / "run")
    assert re.search(r"^hone: warning: SimpleSharpener cannot finish in 3 epochs: sharpening 2 layer\(s\) "
                     r"bottom-up takes at least 100 \(15 before it starts, 4 sharpening, 1 settling, 80 "
                     r"fine-tuning\), so the model will not be fully sharp\.", result.stderr, re.M), result.stderr
    assert result.returncode == 1 and "before every spiking layer was fully sharp" in error_line(result)
