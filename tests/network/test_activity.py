"""The activity report: spikes, synaptic operations, dead/saturated units and Gini per layer.

The counts are checked against independent brute-force counts (conv patches of the active inputs),
against the cycle bound of a one-lane core (which touches each (event, reached output) pair once),
and, through cocotb, the counts taken from the RTL's trace against the integer model's.
"""

import json
import pathlib
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hone.rtl.cycles import cycle_bound
from hone.rtl.plan import CorePlan
from hone.network.random import random_conv_architecture, random_conv_network, random_dense_network
from hone.network.activity import (LORENZ_POINTS, ActivityCounter, ActivityCounts, activity_equal,
                                    activity_report, dense_synapses, format_activity, gini, measure_activity,
                                    plot_activity)
from hone.network.integer import IntegerNetwork, conv_patches
from hone.network.netfile import read_network

DATA = pathlib.Path(__file__).parents[1] / "data"


def random_pixels(rng, network, n):
    return rng.integers(0, 2 ** network.input.bits, size=(n,) + tuple(network.input.shape))


def brute_synops(network, pixels, spikes):
    """``(n, layers)`` synaptic operations counted pair by pair: for every output, its active inputs."""
    n = len(pixels)
    inputs = [np.asarray(pixels).reshape((n,) + tuple(network.input.shape))]
    shapes = network.shapes()
    inputs += [np.asarray(s).reshape((n,) + tuple(shape)) for s, shape in zip(spikes[:-1], shapes[:-1])]
    counts = []
    for layer, x in zip(network.layers, inputs):
        active = (x != 0).astype(np.float64)
        if layer.kind == "dense":
            counts.append(active.reshape(n, -1).sum(axis=1) * layer.outputs)
        elif layer.kind == "conv2d":
            _, kh, kw, _ = layer.weights.shape
            counts.append(conv_patches(active, kh, kw, layer.padding).sum(axis=(1, 2, 3)) * layer.outputs)
        else:
            counts.append(np.zeros(n))
    return np.stack(counts, axis=1).astype(np.int64)


def brute_dense_synapses(network):
    result, shape = [], tuple(network.input.shape)
    for layer in network.layers:
        ones = np.ones((1,) + shape)
        if layer.kind == "dense":
            result.append(int(np.prod(shape)) * layer.outputs)
        elif layer.kind == "conv2d":
            _, kh, kw, _ = layer.weights.shape
            result.append(int(conv_patches(ones, kh, kw, layer.padding).sum()) * layer.outputs)
        else:
            result.append(0)
        shape = layer.output_shape(shape)
    return result


# -- Gini ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("counts, expected", [
    ([3, 3, 3, 3], 0.0),
    ([0, 0, 0, 0], 0.0),            # silent: no inequality to measure
    ([0, 0, 0, 7], 0.75),           # one unit of four does everything: 1 - 1/4
    ([1, 2, 3, 4], 0.25),           # sum (2i - 5) x_i / (4 * 10) = 10 / 40
    ([4, 1, 3, 2], 0.25),           # order does not matter
    ([5], 0.0),
])
def test_gini_of_known_distributions(counts, expected):
    assert gini(counts) == pytest.approx(expected)


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=50))
def test_gini_matches_the_mean_absolute_difference_form(counts):
    """G = sum_ij |x_i - x_j| / (2 m^2 mean): the textbook definition, computed pair by pair."""
    x = np.asarray(counts, dtype=np.float64)
    expected = 0.0 if x.sum() == 0 else np.abs(x[:, None] - x[None, :]).sum() / (2 * len(x) ** 2 * x.mean())
    assert gini(counts) == pytest.approx(expected, abs=1e-12)
    assert 0.0 <= gini(counts) < 1.0


# -- synaptic operations -------------------------------------------------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 16))
def test_conv_synops_equal_a_brute_force_count_and_the_one_lane_cycle_bound(seed):
    """Every padding, kernel, pool and border: each active input times the outputs it reaches."""
    rng = np.random.default_rng(seed)
    network = random_conv_network(rng, **random_conv_architecture(rng, sizes=(5, 12), filters=(1, 6)))
    pixels = random_pixels(rng, network, 6)
    pixels[0] = 0
    spikes = IntegerNetwork(network).run(pixels).spikes
    counter = ActivityCounter(network)
    counter.add(pixels, spikes)
    counts = counter.counts()
    np.testing.assert_array_equal(np.stack(counts.synops, axis=1), brute_synops(network, pixels, spikes))
    # a core with one lane spends one cycle per (event, reached output): its bound is the total
    bound = cycle_bound(CorePlan(network, lanes=1), pixels.reshape(len(pixels), -1), spikes)
    np.testing.assert_array_equal(np.sum(counts.synops, axis=0), bound)
    assert counts.dense_synapses == dense_synapses(network) == brute_dense_synapses(network)


def test_dense_synops_of_the_default_network():
    network, meta = read_network(DATA / "fashion-dense-4bit.hone")
    rng = np.random.default_rng(0)
    pixels = random_pixels(rng, network, 20)
    pixels[:, :100] = 0
    spikes = IntegerNetwork(network).run(pixels).spikes
    counts = _counts(network, pixels, spikes)
    np.testing.assert_array_equal(counts.synops[0], (pixels.reshape(20, -1) != 0).sum(axis=1) * 256)
    np.testing.assert_array_equal(counts.synops[1], spikes[0].sum(axis=1) * 64)
    np.testing.assert_array_equal(counts.synops[2], spikes[1].sum(axis=1) * 40)
    assert counts.dense_synapses == [784 * 256, 256 * 64, 64 * 40]


def test_conv_dense_engine_counts_valid_and_same_padding():
    rng = np.random.default_rng(3)
    valid = random_conv_network(rng, input_shape=(9, 8, 2), stages=(("conv", 3, (3, 2), "valid"), ("pool", 2)))
    same = random_conv_network(rng, input_shape=(9, 8, 2), stages=(("conv", 3, (3, 2), "same"),))
    # valid: every output position sees the whole kernel
    assert dense_synapses(valid)[:2] == [7 * 7 * 3 * 2 * 2 * 3, 0]
    # same: the padded zeros are not synapses, so the borders see fewer
    assert dense_synapses(same)[0] == brute_dense_synapses(same)[0] < 9 * 8 * 3 * 2 * 2 * 3


def _counts(network, pixels, spikes):
    counter = ActivityCounter(network)
    counter.add(pixels, spikes)
    return counter.counts()


# -- the report ----------------------------------------------------------------------------------

def test_report_figures_on_a_random_network():
    rng = np.random.default_rng(5)
    network = random_dense_network(rng, input_shape=(4, 4, 1), input_bits=3, widths=(12, 8))
    pixels = random_pixels(rng, network, 50)
    spikes = IntegerNetwork(network).run(pixels).spikes
    report = measure_activity(network, pixels, spikes)
    assert report["images"] == 50 and report["source"] == "integer model"
    assert report["input_events_mean"] == pytest.approx((pixels != 0).reshape(50, -1).sum(axis=1).mean())
    for index, (layer, s) in enumerate(zip(report["layers"], spikes)):
        per_image, per_unit = s.sum(axis=1), s.sum(axis=0)
        assert layer["name"] == network.layers[index].name and layer["units"] == s.shape[1]
        assert layer["spikes_mean"] == pytest.approx(per_image.mean())
        assert layer["spikes_max"] == per_image.max()
        assert layer["rate"] == pytest.approx(s.mean())
        assert layer["dead"] == (per_unit == 0).sum() and layer["saturated"] == (per_unit == 50).sum()
        assert layer["gini"] == pytest.approx(gini(per_unit))
        assert len(layer["lorenz"]) == LORENZ_POINTS and layer["lorenz"][0] == 0 and layer["lorenz"][-1] == 1
        assert layer["synops_fraction"] == pytest.approx(layer["synops_mean"] / layer["dense_synops"])
    total = report["total"]
    assert total["synops_mean"] == pytest.approx(sum(layer["synops_mean"] for layer in report["layers"]))
    assert total["dense_synops"] == sum(layer["dense_synops"] for layer in report["layers"])
    json.dumps(report)   # JSON-ready


@pytest.mark.parametrize("thresholds, dead, saturated", [("low", 0, 1), ("high", 1, 0)])
def test_always_firing_units_are_saturated_and_silent_ones_dead(thresholds, dead, saturated):
    rng = np.random.default_rng(1)
    network = random_dense_network(rng, input_bits=2, widths=(10,), thresholds=thresholds)
    pixels = random_pixels(rng, network, 7)
    report = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes)
    for layer in report["layers"]:
        assert (layer["dead"], layer["saturated"]) == (dead * layer["units"], saturated * layer["units"])
        assert layer["gini"] == 0.0   # every unit equally (in)active


def test_counts_add_up_batch_by_batch_and_survive_json():
    rng = np.random.default_rng(2)
    network = random_conv_network(rng, input_shape=(6, 6, 1), input_bits=2, widths=(5,))
    pixels = random_pixels(rng, network, 9)
    spikes = IntegerNetwork(network).run(pixels).spikes
    whole = _counts(network, pixels, spikes)
    counter = ActivityCounter(network)
    for index in range(9):   # as the testbench adds them: one image at a time, flat spike vectors
        counter.add(pixels[index:index + 1], [s[index:index + 1].reshape(1, -1) for s in spikes])
    assert activity_equal(counter.counts(), whole)
    parts = [_counts(network, pixels[a:b], [s[a:b] for s in spikes]) for a, b in ((0, 4), (4, 9))]
    merged = ActivityCounts.concatenate(ActivityCounts.from_dict(json.loads(json.dumps(p.to_dict()))) for p in parts)
    assert activity_equal(merged, whole)
    flipped = [s.copy() for s in spikes]
    flipped[1][3, 0] ^= 1   # one spike of one unit on one image
    assert not activity_equal(_counts(network, pixels, flipped), whole)


def test_bad_input_is_refused_with_the_layer_named():
    rng = np.random.default_rng(0)
    network = random_dense_network(rng, widths=(12,))
    pixels = random_pixels(rng, network, 3)
    spikes = IntegerNetwork(network).run(pixels).spikes
    with pytest.raises(ValueError, match=r"^expected spikes of 2 layers, got 1$"):
        ActivityCounter(network).add(pixels, spikes[:1])
    with pytest.raises(ValueError, match=r"^layer 1 \(out\): expected 3 x 6 spikes, got shape \(2, 6\)$"):
        ActivityCounter(network).add(pixels, [spikes[0], spikes[1][:2]])
    with pytest.raises(ValueError, match=r"^no images: activity needs at least one$"):
        activity_report(ActivityCounter(network).counts())


def test_table_and_plot(tmp_path):
    network, _ = read_network(DATA / "fashion-conv-4bit.hone")
    pixels = random_pixels(np.random.default_rng(0), network, 3)
    report = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes, source="RTL trace")
    table = format_activity(report).splitlines()
    assert re.match(r"^activity over 3 images \(RTL trace\); input: [\d.]+ non-zero pixels per image$", table[0])
    assert [line.split()[0] for line in table[2:]] == [layer.name for layer in network.layers] + ["total"]
    assert re.search(r"pool_0 +maxpool2d +4608 .* - +- *$", table[3])
    path = plot_activity(report, tmp_path / "activity.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# -- through the RTL -----------------------------------------------------------------------------

def test_rtl_trace_activity_equals_the_integer_model(tmp_path):
    """Icarus, a dense and a conv network, two simulator processes: the counts from the trace equal
    the integer model's, and so does the report built from them."""
    from hone.sim.runner import simulate

    rng = np.random.default_rng(11)
    dense = random_dense_network(rng, input_shape=(4, 4, 1), input_bits=4, widths=(12,), thresholds="mixed")
    conv = random_conv_network(rng, input_shape=(7, 6, 2), input_bits=3, widths=(6,),
                               stages=(("conv", 3, 2, "same"), ("pool", 2), ("conv", 2, 2, "valid")))
    for network, lanes in ((dense, 4), (conv, 2)):
        pixels = random_pixels(rng, network, 8)
        report = simulate(network, pixels, simulator="icarus", lanes=lanes, build_root=tmp_path, progress=False,
                          jobs=2)
        assert report["equal"] and report["activity_equal"]
        expected = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes,
                                    source="RTL trace")
        assert report["activity"] == expected


# -- the optimizer that bench/activity.py compares -----------------------------------------------

def test_optimizer_choice():
    from hone.training.config import TrainConfig

    assert type(TrainConfig().make_optimizer()).__name__ == "Adam"
    sgd = TrainConfig(optimizer="sgd", learning_rate=0.01).make_optimizer()
    assert type(sgd).__name__ == "SGD" and sgd.momentum == 0.9
    with pytest.raises(ValueError, match=r"^unknown optimizer 'rmsprop'; expected one of adam, sgd$"):
        TrainConfig(optimizer="rmsprop")


# -- in the commands ------------------------------------------------------------------------------

def _last_json(capsys):
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_hone_export_reports_the_integer_networks_activity(tmp_path, capsys):
    from hone.cli.main import main
    from hone.network.datasets import load_dataset

    output = tmp_path / "net.hone"
    assert main(["export", str(DATA / "legacy-digits.keras"), "--weight-bits", "4", "--dataset", "digits",
                 "-o", str(output), "--json"]) == 0
    report = _last_json(capsys)
    network, _ = read_network(output)
    data = load_dataset("digits")
    pixels = network.input.quantize(data.x_test.reshape((len(data.x_test),) + network.input.shape))
    expected = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes)
    activity = report["activity"]
    assert activity.pop("plot") == str(tmp_path / "net.hone.activity.png")
    assert activity == json.loads(json.dumps(expected))
    assert (tmp_path / "net.hone.activity.png").exists()
    assert json.loads((tmp_path / "net.hone.json").read_text())["activity"]["total"] == expected["total"]


def test_hone_sim_and_infer_report_activity(tmp_path, capsys):
    """``hone sim`` counts it from the RTL's trace (equal to the integer model's); ``hone infer`` gives the
    integer model's on the images it sent; both print the table and plot where asked."""
    from hone.cli.main import main

    digits = DATA / "digits-dense-4bit.hone"
    assert main(["sim", str(digits), "--images", "6", "--simulator", "icarus", "--lanes", "16",
                 "--build-dir", str(tmp_path / "sim"), "--json"]) == 0
    out = capsys.readouterr().out
    assert "activity                from the RTL's trace: every count equal to the integer model's" in out
    assert re.search(r"^activity over 6 images \(RTL trace\)", out, re.M)
    simulated = json.loads(out.strip().splitlines()[-1])
    assert simulated["activity_equal"] and simulated["equal"]
    assert pathlib.Path(simulated["activity"]["plot"]).exists()
    assert main(["infer", str(digits), "--sim", "--simulator", "icarus", "--lanes", "16", "--images", "6",
                 "--build-dir", str(tmp_path / "board"), "--activity-plot", str(tmp_path / "board.png"),
                 "--json"]) == 0
    hosted = _last_json(capsys)
    assert hosted["activity"]["plot"] == str(tmp_path / "board.png") and (tmp_path / "board.png").exists()
    for key in ("layers", "total", "input_events_mean"):   # same images, same counts
        assert hosted["activity"][key] == simulated["activity"][key]
