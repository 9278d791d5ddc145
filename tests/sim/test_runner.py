"""The regression of record: cocotb on Icarus and Verilator, every layer's spikes against the reference.

Each test goes through :func:`hone.sim.runner.simulate`, which builds with ``cocotb_tools.runner`` and runs
the testbench in ``sim/testbench.py`` (driver, monitors, ``IntegerNetwork``, in-order checker).
"""

import json
import pathlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hone.cli.main import main
from hone.network.random import random_conv_architecture, random_conv_network, random_dense_network
from hone.sim.runner import SIMULATORS, SimReport, run_sim, simulate
from hone.network.datasets import load_dataset, network_test_images
from hone.network.errors import ParameterError
from hone.network.integer import IntegerNetwork
from hone.network.netfile import read_network, write_network
from hone.rtl.plan import DEFAULT_LANES

FASHION = pathlib.Path(__file__).parents[1] / "data" / "fashion-dense-4bit.hone"
FASHION_CONV = pathlib.Path(__file__).parents[1] / "data" / "fashion-conv-4bit.hone"


def assert_equal(report):
    assert report["equal"], "\n".join(report["mismatches"]) or json.dumps(report)[:2000]
    n = report["images"]
    assert report["images_checked"] == report["all_layers_equal"] == report["class_agreement"] == n
    assert report["cycles_equal_model"] == n
    assert all(count == n for count in report["layer_agreement"].values())


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_random_networks_runner(simulator, tmp_path_factory):
    examples = {"icarus": 5, "verilator": 3}[simulator]   # a Verilator build costs seconds

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2 ** 16), input_bits=st.integers(1, 4), weight_bits=st.integers(1, 8),
           lanes=st.integers(1, 8), depth=st.integers(0, 2),
           thresholds=st.sampled_from(["random", "low", "high", "mixed"]),
           backpressure=st.sampled_from([0.0, 0.5]), gap=st.sampled_from([0, 3]))
    def check(seed, input_bits, weight_bits, lanes, depth, thresholds, backpressure, gap):
        rng = np.random.default_rng(seed)
        widths = tuple(int(w) for w in rng.integers(1, 20, size=depth))
        network = random_dense_network(rng, input_bits=input_bits, weight_bits=weight_bits, widths=widths,
                                       input_shape=(4, 3, 2), thresholds=thresholds)
        folder = tmp_path_factory.mktemp("net")
        write_network(folder / "net.hone", network)
        pixels = rng.integers(0, 2 ** input_bits, size=(12, network.input.size))
        pixels[0] = 0
        pixels[1] = 2 ** input_bits - 1
        report = simulate(folder / "net.hone", pixels, simulator=simulator, lanes=lanes, build_root=folder,
                          backpressure=backpressure, gap=gap, seed=seed, progress=False)
        assert_equal(report)

    check()


@pytest.mark.parametrize("simulator", SIMULATORS)
def test_random_conv_networks_runner(simulator, tmp_path_factory):
    """Conv2d and max-pool through cocotb: every layer (conv, pool, dense), class and cycle count;
    all-zero, all-max and corner-pixel images, back-pressure on the result stream."""
    examples = {"icarus": 4, "verilator": 2}[simulator]

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2 ** 16), lanes=st.integers(1, 8), backpressure=st.sampled_from([0.0, 0.5]))
    def check(seed, lanes, backpressure):
        rng = np.random.default_rng(seed)
        network = random_conv_network(rng, **random_conv_architecture(rng, sizes=(5, 12), filters=(1, 6)))
        folder = tmp_path_factory.mktemp("conv")
        height, width, channels = network.input.shape
        top = 2 ** network.input.bits - 1
        pixels = rng.integers(0, top + 1, size=(10,) + network.input.shape)
        pixels[0], pixels[1] = 0, top
        for index, (y, x) in enumerate(((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1))):
            pixels[2 + index] = 0
            pixels[2 + index, y, x, :] = top
        report = simulate(network, pixels, simulator=simulator, lanes=lanes, build_root=folder,
                          backpressure=backpressure, seed=seed, progress=False)
        assert_equal(report)
        assert list(report["layer_agreement"]) == [layer.name for layer in network.layers]

    check()


# Icarus is ~10x slower than Verilator per image: 40 images keep it about a minute of the suite.
@pytest.mark.parametrize("simulator, images, lanes", [("icarus", 40, 64), ("verilator", 300, 32)])
def test_trained_fashion_network_runner(simulator, images, lanes, tmp_path):
    """The default network (784-256-64-40, 4-bit weights, 8-bit pixels) on real test images."""
    network, _ = read_network(FASHION)
    data = load_dataset("fashion-mnist")
    pixels = network.input.quantize(data.x_test[:images])
    report = simulate(FASHION, pixels, simulator=simulator, lanes=lanes, build_root=tmp_path,
                      backpressure=0.2, progress=False)
    assert_equal(report)
    assert report["cycles_over_bound"] <= 1.2


@pytest.mark.parametrize("simulator, images, jobs", [("icarus", 6, 1), ("verilator", 30, 2)])
def test_trained_conv_network_runner(simulator, images, jobs, tmp_path):
    """The previous conv default (32c5-p2-64c5-p2-256-40, 4-bit weights, 8-bit pixels) on real test images:
    every conv, pool and dense layer spike for spike (bench: all 10,000, see README)."""
    network, _ = read_network(FASHION_CONV)
    data = load_dataset("fashion-mnist")
    pixels = network.input.quantize(data.x_test[:images])
    report = simulate(FASHION_CONV, pixels, simulator=simulator, lanes=32, build_root=tmp_path,
                      backpressure=0.2, progress=False, jobs=jobs)
    assert_equal(report)
    assert list(report["layer_agreement"]) == ["conv_0", "pool_0", "conv_1", "pool_1", "dense_0", "dense_out"]
    assert report["cycles_over_bound"] <= 1.3


def test_hone_sim_reports_agreement_and_figures(tmp_path, capsys):
    assert main(["sim", str(FASHION), "--images", "20", "--simulator", "icarus", "--lanes", "64",
                 "--build-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["images"] == 20 and figures["equal"] is True and figures["dataset"] == "fashion-mnist"
    assert figures["layer_agreement"] == {"dense_0": 20, "dense_1": 20, "dense_out": 20}
    # the RTL's classes are the reference model's, so its accuracy is the reference's on the same images
    network, pixels, labels, _ = network_test_images(FASHION, 20)
    reference = float((IntegerNetwork(network).run(pixels).classes == labels).mean())
    assert figures["accuracy"] == reference and reference >= 0.5, (figures["accuracy"], reference)
    assert figures["cycles_mean"] >= figures["bound_mean"] > 0
    assert any(line.startswith("  dense_0") and "20/20 spike-for-spike equal" in line for line in out)


def test_hone_sim_dumps_waves_for_one_image(tmp_path, capsys):
    network = random_dense_network(np.random.default_rng(5), input_shape=(8, 8, 1), widths=(6,))
    write_network(tmp_path / "net.hone", network, meta={"dataset": "digits"})
    assert main(["sim", str(tmp_path / "net.hone"), "--images", "3", "--simulator", "verilator",
                 "--lanes", "2", "--vcd", "--build-dir", str(tmp_path / "b"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    waves = pathlib.Path(figures["waves"])
    assert waves.suffix == ".vcd" and "$enddefinitions" in waves.read_text()


@pytest.mark.parametrize("argv, message, status", [
    (["--images", "10001"], r"argument --images: expected 1\.\.10000 \(the fashion-mnist test set\), got 10001", 2),
    (["--dataset", "digits"], r"dataset 'digits' has \(8, 8, 1\) images but .* takes \(28, 28, 1\)", 1),
])
def test_hone_sim_errors_are_one_line(argv, message, status, capsys):
    assert main(["sim", str(FASHION), *argv]) == status
    assert re.match(f"^hone: error: {message}", capsys.readouterr().err.strip().splitlines()[-1])


SIM_JSON_KEYS = ["simulator", "lanes", "images", "images_checked", "layer_agreement", "all_layers_equal",
                 "class_agreement", "cycles_equal_model", "cycles_mean", "cycles_max", "bound_mean", "bound_max",
                 "cycles_over_bound", "clock_hz", "images_per_s_at_clock", "sim_seconds_wall", "build_seconds",
                 "sim_images_per_s_wall", "simulated_ns", "mismatches", "run_dir", "activity", "activity_equal",
                 "equal", "dataset", "jobs", "accuracy"]
TIMED = {"sim_seconds_wall", "build_seconds", "sim_images_per_s_wall", "run_dir"}   # differ run to run


def test_run_sim_returns_the_report_hone_sim_prints(tmp_path, capsys):
    """``hone sim --json`` is ``run_sim(...).to_json()``: the same keys in the same order, the same figures."""
    network = random_dense_network(np.random.default_rng(11), input_shape=(8, 8, 1), widths=(7,), classes=10, nhot=1)
    write_network(tmp_path / "net.hone", network, meta={"dataset": "digits"})
    assert main(["sim", str(tmp_path / "net.hone"), "--images", "4", "--simulator", "icarus",
                 "--build-dir", str(tmp_path / "b"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    report = run_sim(tmp_path / "net.hone", images=4, simulator="icarus", build_root=tmp_path / "b", progress=False)
    assert isinstance(report, SimReport) and report.equal and report.waves is None
    figures = report.to_json()
    assert list(figures) == list(printed) == SIM_JSON_KEYS       # no waves, no reconstruction: left out
    for key in set(SIM_JSON_KEYS) - TIMED - {"activity"}:
        assert figures[key] == printed[key], key
    assert {**figures["activity"], "plot": None} == {**printed["activity"], "plot": None}
    assert pathlib.Path(figures["activity"]["plot"]).parent == pathlib.Path(report.run_dir)
    assert json.loads(json.dumps(figures)) == figures         # JSON's types only


@pytest.mark.parametrize("widths, lanes", [((40,), DEFAULT_LANES), ((5,), 5)])
def test_hone_sim_and_hone_rtl_default_to_the_same_lanes(widths, lanes, tmp_path, capsys):
    """Both build ``DEFAULT_LANES`` lanes, or the widest layer's width when it is narrower (no idle lanes)."""
    from hone.rtl.plan import lanes_for

    network = random_dense_network(np.random.default_rng(3), input_shape=(8, 8, 1), widths=widths, classes=2, nhot=2)
    write_network(tmp_path / "net.hone", network, meta={"dataset": "digits"})
    assert lanes_for(network) == lanes
    assert main(["rtl", str(tmp_path / "net.hone"), "-o", str(tmp_path / "core.v"), "--json"]) == 0
    built = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["plan"]["lanes"]
    assert main(["sim", str(tmp_path / "net.hone"), "--images", "2", "--simulator", "icarus",
                 "--build-dir", str(tmp_path / "b"), "--json"]) == 0
    simulated = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert built == simulated["lanes"] == lanes and simulated["equal"]


def test_a_relative_build_folder_works_from_any_directory(tmp_path, monkeypatch):
    """`hone sim` and `make flow` default to relative folders (runs/...): the simulator runs in the
    test folder, so every path it is given must be absolute."""
    network = random_dense_network(np.random.default_rng(7), input_bits=2, widths=(5,))
    write_network(tmp_path / "net.hone", network)
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(8).integers(0, 4, size=(3, network.input.size))
    report = simulate("net.hone", pixels, simulator="icarus", lanes=2, build_root="runs/sim", progress=False)
    assert_equal(report)


# -- several simulator processes (simulate(jobs=N), hone sim --jobs N) -----------------------------

DIGITS = pathlib.Path(__file__).parents[1] / "data" / "digits-dense-4bit.hone"


def digits_pixels(images):
    network, _ = read_network(DIGITS)
    return network.input.quantize(load_dataset("digits").x_test[:images])


def assert_same_results(sharded, single):
    """Everything the RTL and the models said, image by image, is the same however the images were split."""
    for key in ("images", "images_checked", "labels", "layer_agreement", "all_layers_equal", "class_agreement",
                "cycles_equal_model", "cycles_mean", "cycles_max", "bound_mean", "bound_max", "cycles_over_bound",
                "images_per_s_at_clock", "mismatches", "equal"):
        assert sharded[key] == single[key], key
    assert set(sharded) == set(single)


@pytest.mark.parametrize("simulator, jobs, lanes", [("icarus", 3, 16), ("verilator", 2, 8)])
def test_jobs_split_the_images_and_merge_them_in_order(simulator, jobs, lanes, tmp_path):
    """One build, ``jobs`` simulators on contiguous shards, one report equal to the single process's."""
    pixels = digits_pixels(24)
    single = simulate(DIGITS, pixels, simulator=simulator, lanes=lanes, build_root=tmp_path, backpressure=0.3,
                      progress=False)
    sharded = simulate(DIGITS, pixels, simulator=simulator, lanes=lanes, build_root=tmp_path, backpressure=0.3,
                       progress=False, jobs=jobs)
    assert_equal(single)
    assert_equal(sharded)
    assert_same_results(sharded, single)
    assert sharded["build_seconds"] < single["build_seconds"] or sharded["build_seconds"] < 1.0   # reused
    run_dir = pathlib.Path(sharded["run_dir"])
    assert run_dir.parent == pathlib.Path(single["run_dir"]).parent      # the same build
    shards = sorted(run_dir.glob("shard-*"))
    assert [s.name for s in shards] == [f"shard-{k}" for k in range(jobs)]
    chunks = [np.load(s / "pixels.npy") for s in shards]
    assert [len(c) for c in chunks] == [24 // jobs] * jobs
    np.testing.assert_array_equal(np.concatenate(chunks), pixels.reshape(24, -1))
    assert [json.loads((s / "config.json").read_text())["seed"] for s in shards] == list(range(jobs))
    assert sum(int((s / "progress").read_text()) for s in shards) == 24
    assert not list(pathlib.Path(single["run_dir"]).glob("shard-*"))    # jobs=1: one run folder, as before


def test_more_jobs_than_images_run_one_image_each(tmp_path):
    pixels = digits_pixels(3)
    report = simulate(DIGITS, pixels, simulator="icarus", lanes=16, build_root=tmp_path, progress=False, jobs=5)
    assert_equal(report)
    assert len(list(pathlib.Path(report["run_dir"]).glob("shard-*"))) == 3
    single = simulate(DIGITS, pixels, simulator="icarus", lanes=16, build_root=tmp_path, progress=False)
    assert_same_results(report, single)


@pytest.mark.parametrize("jobs, error, message", [
    (0, ValueError, "'jobs' must be a positive integer, not 0"),
    (-2, ValueError, "'jobs' must be a positive integer, not -2"),
    (1.5, TypeError, "'jobs' must be a positive integer, not 1.5"),
    (True, TypeError, "'jobs' must be a positive integer, not True"),
])
def test_jobs_must_be_a_positive_integer(jobs, error, message, tmp_path):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        simulate(DIGITS, digits_pixels(2), simulator="icarus", build_root=tmp_path, progress=False, jobs=jobs)
    assert not list(tmp_path.iterdir())     # refused before building anything


def test_a_crashed_shard_is_named_with_its_log(tmp_path, monkeypatch):
    """A shard whose simulator ends without results (here: its configuration is unreadable) fails the
    run with its number, its images and the tail of its log; the other shards' results are not enough."""
    from hone.sim import runner

    real = runner._run_shard

    def break_shard_one(runner_, shard, **kwargs):
        if shard.index == 1:
            (shard.test_dir / "config.json").write_text("{not json")
        real(runner_, shard, **kwargs)

    monkeypatch.setattr(runner, "_run_shard", break_shard_one)
    with pytest.raises(runner.SimulationError) as caught:
        simulate(DIGITS, digits_pixels(9), simulator="icarus", lanes=16, build_root=tmp_path, progress=False, jobs=3)
    message = str(caught.value)
    assert re.match(r"^icarus shard 1 of 3 \(images 3\.\.5\) ended without results; see \S+/shard-1/sim\.log:\n",
                    message), message
    assert "JSONDecodeError" in message


def test_mismatches_of_a_shard_get_global_image_indices():
    from hone.sim.runner import _merge

    def image(label):
        return {"label": label, "expected_label": label, "cycles": 9, "expected_cycles": 9, "bound": 5,
                "layers_equal": [True]}

    first = {"images": [image(0), image(1)], "mismatches": [], "sim_ns": 100, "clock_ns": 20}
    second = {"images": [image(2), image(3)], "sim_ns": 120, "clock_ns": 20, "mismatches": [
        "layer 1 spikes differ at image 0: rtl=[3] ref=[4]", "class differs at image 1: rtl=2 ref=3",
        "cycles differ at image 1: rtl=10 model=9"]}
    merged = _merge([(0, first), (2, second)])
    assert [i["label"] for i in merged["images"]] == [0, 1, 2, 3]
    assert merged["mismatches"] == ["layer 1 spikes differ at image 2: rtl=[3] ref=[4]",
                                    "class differs at image 3: rtl=2 ref=3", "cycles differ at image 3: rtl=10 model=9"]
    assert merged["sim_ns"] == 220
    many = {**second, "mismatches": [f"class differs at image {i}: rtl=1 ref=0" for i in range(20)]}
    assert len(_merge([(0, many), (20, many)])["mismatches"]) == 20       # as many as one testbench keeps


def test_hone_sim_jobs_from_the_command_line(tmp_path):
    import subprocess
    import sys

    command = [sys.executable, "-m", "hone", "sim", str(DIGITS), "--images", "12", "--jobs", "2",
               "--simulator", "icarus", "--lanes", "16", "--dataset", "digits", "--build-dir", str(tmp_path), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    figures = json.loads(lines[-1])
    assert figures["images"] == 12 and figures["equal"] is True and figures["jobs"] == 2
    assert figures["dataset"] == "digits"
    assert figures["layer_agreement"] == {"dense_0": 12, "dense_1": 12, "dense_out": 12}
    assert any(line.startswith("wall ") and "2 simulator processes" in line for line in lines)
    assert len(list(pathlib.Path(figures["run_dir"]).glob("shard-*"))) == 2


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_hone_sim_bad_jobs_is_one_error_line(jobs, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "hone", "sim", str(DIGITS), "--images", "12", "--jobs", jobs,
                           "--simulator", "icarus", "--build-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"hone: error: argument --jobs: expected an integer >= 1, got "
                                                f"{jobs} (see: hone sim --help)"]
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("value", ["1.0", "1.5", "-0.1", "nan"])
def test_backpressure_outside_0_1_is_refused_before_anything_runs(value, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit:
        main(["sim", str(FASHION), "--images", "2", "--simulator", "icarus", "--backpressure", value,
              "--build-dir", str(tmp_path)])
    assert exit.value.code == 2
    assert re.fullmatch(r"hone: error: argument --backpressure: expected a number in \[0, 1\), got \S+ \(the "
                        r"chance per cycle that the result stream is not ready; at 1 no result is ever taken\) "
                        r"\(see: hone sim --help\)\n", capsys.readouterr().err)
    with pytest.raises(ParameterError, match=r"^backpressure: expected a number in \[0, 1\), got 1\.0 \(the chance") \
            as caught:
        run_sim(FASHION, images=2, simulator="icarus", lanes=8, build_root=tmp_path, backpressure=1.0)
    assert caught.value.parameter == "backpressure"
    assert not list(tmp_path.iterdir())    # nothing was built
    with pytest.raises(ValueError, match=r"^'backpressure' must be a chance in \[0, 1\), not 1\.0: "):
        simulate(FASHION, np.zeros((1, 784), np.int64), simulator="icarus", build_root=tmp_path,
                 backpressure=1.0)
