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

from hone.host.cli import main
from hone.sim.networks import random_dense_network
from hone.sim.runner import SIMULATORS, simulate
from hone.training.datasets import load_dataset
from hone.training.netfile import read_network, write_network

FASHION = pathlib.Path(__file__).parent / "data" / "fashion-dense-4bit.hone"


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


# Icarus is ~10x slower than Verilator per image: 100 images keep it a few minutes of the suite.
@pytest.mark.parametrize("simulator, images, lanes", [("icarus", 100, 64), ("verilator", 300, 32)])
def test_trained_fashion_network_runner(simulator, images, lanes, tmp_path):
    """The default network (784-256-64-40, 4-bit weights, 8-bit pixels) on real test images."""
    network, _ = read_network(FASHION)
    data = load_dataset("fashion-mnist")
    pixels = network.input.quantize(data.x_test[:images])
    report = simulate(FASHION, pixels, simulator=simulator, lanes=lanes, build_root=tmp_path,
                      backpressure=0.2, progress=False)
    assert_equal(report)
    assert report["cycles_over_bound"] <= 1.2


def test_hone_sim_reports_agreement_and_figures(tmp_path, capsys):
    assert main(["sim", str(FASHION), "--images", "20", "--simulator", "icarus", "--lanes", "64",
                 "--build-dir", str(tmp_path), "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    figures = json.loads(out[-1])
    assert figures["images"] == 20 and figures["equal"] is True and figures["dataset"] == "fashion-mnist"
    assert figures["layer_agreement"] == {"dense_0": 20, "dense_1": 20, "dense_out": 20}
    assert 0.5 <= figures["accuracy"] <= 1.0
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


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], r"--images must be 1\.\.10000 for fashion-mnist, got 0"),
    (["--dataset", "digits"], r"dataset 'digits' has \(8, 8, 1\) images but .* takes \(28, 28, 1\)"),
])
def test_hone_sim_errors_are_one_line(argv, message, capsys):
    assert main(["sim", str(FASHION), *argv]) == 1
    assert re.match(f"^hone: error: {message}", capsys.readouterr().err.strip().splitlines()[-1])


def test_a_relative_build_folder_works_from_any_directory(tmp_path, monkeypatch):
    """`hone sim` and `make flow` default to relative folders (runs/...): the simulator runs in the
    test folder, so every path it is given must be absolute."""
    network = random_dense_network(np.random.default_rng(7), input_bits=2, widths=(5,))
    write_network(tmp_path / "net.hone", network)
    monkeypatch.chdir(tmp_path)
    pixels = np.random.default_rng(8).integers(0, 4, size=(3, network.input.size))
    report = simulate("net.hone", pixels, simulator="icarus", lanes=2, build_root="runs/sim", progress=False)
    assert_equal(report)
