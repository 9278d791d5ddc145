"""``hone flow`` (cli/flow.py): one board configuration, decided once, used by every stage."""

import json
import subprocess
import sys

import numpy as np
import pytest

from hone.boards.build import plan_build
from hone.boards.targets import DEFAULT_TARGET
from hone.cli.flow import AUTOENCODER_LANES, FLOW_CLOCK_MHZ, board_configuration, flow_build_lanes, flow_clock
from hone.network.netfile import write_network
from hone.network.random import random_dense_network


@pytest.fixture(scope="module")
def digits_net(tmp_path_factory):
    """A small dense network on digits' 8x8 images, naming the data set (so hone build's lane choice
    runs its test images)."""
    network = random_dense_network(np.random.default_rng(4), input_shape=(8, 8, 1), input_bits=4, widths=(32,),
                                   classes=10, nhot=2)
    path = tmp_path_factory.mktemp("flow") / "net.hone"
    write_network(path, network, meta={"dataset": "digits"})
    return path


def test_the_flow_builds_at_a_clock_its_default_core_meets():
    assert flow_clock("autoencoder", "ulx3s-85f") == FLOW_CLOCK_MHZ["autoencoder"] == 30
    assert flow_clock("conv", "ulx3s-85f") == FLOW_CLOCK_MHZ["conv"] == 30   # fmax 35.1 MHz (32 lanes)
    assert flow_clock("autoencoder", "icebreaker") == 12          # the board's own clock is lower
    assert flow_clock("autoencoder", "ulx3s-85f", 25) == 25       # --clock wins
    assert flow_clock("dense", "ulx3s-85f") is None               # the board's default, 45 MHz
    # --board none: the checks run on the default target's configuration, so its clock
    assert flow_clock("autoencoder", "none") == flow_clock("autoencoder", DEFAULT_TARGET) == 30
    assert flow_clock("dense", "none") is None


def test_the_flow_configures_with_hone_builds_policy(digits_net):
    """Without --lanes the flow's lanes, clock and baud are hone build's; --board none takes the
    default target's."""
    expected = plan_build(digits_net, DEFAULT_TARGET)
    for board in (DEFAULT_TARGET, "none"):
        plan = board_configuration(digits_net, board, arch="dense")
        assert (plan.board, plan.lanes, plan.clock_hz, plan.baud, plan.lanes_policy) == (
            DEFAULT_TARGET, expected.lanes, expected.clock_hz, expected.baud, expected.lanes_policy)
    assert expected.lanes_policy.startswith("fewest")
    plan = board_configuration(digits_net, "icebreaker", arch="dense", clock_mhz=None)
    assert (plan.board, plan.clock_hz, plan.baud) == ("icebreaker", 12e6, 1_500_000)


def test_the_autoencoders_flow_configures_the_lanes_that_route(digits_net):
    """An autoencoder's flow takes AUTOENCODER_LANES for its checks and its bitstream, not hone
    build's choice for the line (which routes for far longer on its congested block RAM); --lanes wins."""
    plan = board_configuration(digits_net, DEFAULT_TARGET, arch="autoencoder", clock_mhz=30)
    assert plan.lanes == flow_build_lanes("autoencoder") == AUTOENCODER_LANES and plan.lanes_policy == "given"
    assert (plan.clock_hz, plan.baud) == (30e6, 3_000_000)
    assert board_configuration(digits_net, DEFAULT_TARGET, arch="autoencoder", lanes=4).lanes == 4
    assert flow_build_lanes("dense") is None                      # hone build's choice for the line


def run_flow(out, *args):
    result = subprocess.run(
        [sys.executable, "-m", "hone", "flow", "--dataset", "digits", "--epochs", "80", "--sim-images", "20",
         "--board-images", "8", "--out", str(out), "--json", *args], capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((out / "report.json").read_text())
    return report


def assert_one_configuration(report, out):
    """The report states one lanes, clock and baud, hone build's for the network, and the RTL check
    and the simulated board (by its own INFO) ran at them."""
    configuration = report["configuration"]
    expected = plan_build(out / "net.hone", DEFAULT_TARGET)
    assert configuration["target"] == DEFAULT_TARGET
    assert (configuration["lanes"], configuration["clock_hz"], configuration["baud"]) == (
        expected.lanes, expected.clock_hz, expected.baud)
    assert report["sim"]["lanes"] == configuration["lanes"] and report["sim"]["equal"] is True
    board = report["board"]
    assert (board["lanes"], board["clock_hz"], board["baud"]) == (
        configuration["lanes"], configuration["clock_hz"], configuration["baud"])
    assert board["equal"] is True and board["results"] == 8
    markdown = (out / "report.md").read_text()
    assert markdown.count(f"{configuration['baud']:,} baud;") == 1 and "## Board configuration" in markdown
    return configuration


def test_the_flow_without_a_board_checks_the_default_targets_configuration(tmp_path):
    """``--board none``: no bitstream, and the RTL check and the simulated board at the default
    target's configuration (about 50 s on 2 cores)."""
    report = run_flow(tmp_path / "flow", "--board", "none")
    configuration = assert_one_configuration(report, tmp_path / "flow")
    assert configuration["bitstream"] is False and report["bitstream"] is None


@pytest.mark.slow
def test_the_flow_builds_the_configuration_it_checked(tmp_path):
    """``hone flow --dataset digits --board ulx3s-85f --json``: the bitstream too has the one lanes,
    clock and baud."""
    report = run_flow(tmp_path / "flow", "--board", DEFAULT_TARGET)
    configuration = assert_one_configuration(report, tmp_path / "flow")
    built = report["bitstream"]
    assert configuration["bitstream"] is True and built["board"] == DEFAULT_TARGET
    assert (built["lanes"], built["clock_hz"], built["baud"]) == (
        configuration["lanes"], configuration["clock_hz"], configuration["baud"])
    assert built["lanes_policy"] == configuration["lanes_policy"]
