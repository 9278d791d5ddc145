"""Gateware blocks under Amaranth's simulator (fast), the plan, the cycle model and ``hone rtl``."""

import json
import re

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import HealthCheck, given, settings, strategies as st

from hone.cli.main import main
from hone.rtl.core import NetworkCore, trace_units
from hone.rtl.cycles import RESULT_GAP, cycle_bound, inference_cycles
from hone.rtl.neuron import NeuronArray
from hone.rtl.plan import CorePlan, PlanError
from hone.network.random import random_conv_architecture, random_conv_network, random_dense_network
from hone.network.integer import IntegerNetwork
from hone.network.netfile import ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, write_network


def run_core(core, pixels, *, result_stall=(), trace_stall=False):
    """Feed images, collect (label, cycles) and every trace beat, per image (Amaranth simulator).
    ``trace_stall``: the trace is ready only one cycle in three."""
    outputs, traces = [], []
    ticks = [0]

    async def bench(ctx):
        ctx.set(core.trace.ready, 1)
        ready = 1
        for index, image in enumerate(pixels):
            ctx.set(core.pixels.valid, 1)
            for value in image:
                ctx.set(core.pixels.payload, int(value))
                await ctx.tick().until(core.pixels.ready)
            ctx.set(core.pixels.valid, 0)
            beats, stall = [], index in result_stall
            ctx.set(core.result.ready, 0 if stall else 1)
            while True:
                *_, trace_valid, trace, result_valid, result = await ctx.tick().sample(
                    core.trace.valid, core.trace.payload, core.result.valid, core.result.payload)
                if trace_valid and ready:
                    beats.extend((trace.layer, unit) for unit in trace_units(trace.neuron, trace.mask))
                if trace_stall:
                    ticks[0] += 1
                    ready = int(ticks[0] % 3 == 0)
                    ctx.set(core.trace.ready, ready)
                if result_valid and stall:           # hold ready low for a few cycles, then take it
                    await ctx.tick().repeat(3)
                    ctx.set(core.result.ready, 1)
                    stall = False
                    continue
                if result_valid:
                    outputs.append((result.label, result.cycles))
                    break
            traces.append(beats)

    simulator = Simulator(core)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    return outputs, traces


def run_core_streaming(core, pixels):
    """Feed images back to back while a monitor collects results: the next image loads while one
    runs. Also returns, per image, the clock its last pixel went in and the clock its result came out."""
    outputs, traces, loaded, finished = [], [], [], []
    clock = [0]

    async def count(ctx):
        async for _ in ctx.tick():
            clock[0] += 1

    async def drive(ctx):
        for image in pixels:
            ctx.set(core.pixels.valid, 1)
            for value in image:
                ctx.set(core.pixels.payload, int(value))
                await ctx.tick().until(core.pixels.ready)
            loaded.append(clock[0])
        ctx.set(core.pixels.valid, 0)

    async def watch(ctx):
        ctx.set(core.trace.ready, 1)
        ctx.set(core.result.ready, 1)
        beats = []
        while len(outputs) < len(pixels):
            *_, trace_valid, trace, result_valid, result = await ctx.tick().sample(
                core.trace.valid, core.trace.payload, core.result.valid, core.result.payload)
            if trace_valid:
                beats.extend((trace.layer, unit) for unit in trace_units(trace.neuron, trace.mask))
            if result_valid:
                outputs.append((result.label, result.cycles))
                finished.append(clock[0])
                traces.append(beats)
                beats = []

    simulator = Simulator(core)
    simulator.add_clock(1e-6)
    simulator.add_process(count)
    simulator.add_testbench(drive)
    simulator.add_testbench(watch)
    simulator.run_until(1e-6 * (len(pixels) + 1) * (core.plan.worst_cycles() + core.plan.input_size + 10))
    return outputs, traces, loaded, finished


def check_core(network, pixels, lanes, streaming=False, **kwargs):
    core = NetworkCore(network, lanes=lanes, trace=True)
    reference = IntegerNetwork(network).run(pixels)
    expected_cycles = inference_cycles(core.plan, pixels, reference.spikes)
    if streaming:
        outputs, traces, loaded, finished = run_core_streaming(core, pixels)
        # double buffering: an image waits for the one two ahead of it (whose buffer it takes), never
        # for the one just ahead, which runs while it loads
        n = network.input.size
        for i in range(1, len(pixels)):
            free = max(loaded[i - 1], finished[i - 2] if i >= 2 else 0)
            assert loaded[i] <= free + n + 2, (i, loaded, finished)
        assert any(loaded[i + 1] < finished[i] for i in range(len(pixels) - 1)), (loaded, finished)
        for i in range(1, len(pixels)):     # back to back when the next image is already in
            if loaded[i] < finished[i - 1]:
                assert finished[i] - finished[i - 1] == expected_cycles[i] + RESULT_GAP, (i, finished)
    else:
        outputs, traces = run_core(core, pixels, **kwargs)
    for image, ((label, cycles), beats) in enumerate(zip(outputs, traces)):
        for layer, spikes in enumerate(reference.spikes):
            rtl = sorted(neuron for (l, neuron) in beats if l == layer)
            ref = np.flatnonzero(spikes[image]).tolist()
            assert rtl == ref, f"layer {layer} spikes differ at image {image}: rtl={rtl} ref={ref}"
        assert label == reference.classes[image], f"image {image}: rtl={label} ref={reference.classes[image]}"
        if not kwargs.get("trace_stall"):   # the cycle model assumes a trace that is always ready
            assert cycles == expected_cycles[image], f"image {image}: rtl={cycles} model={expected_cycles[image]}"
    assert len(outputs) == len(pixels)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 16), input_bits=st.integers(1, 4), weight_bits=st.integers(1, 8),
       lanes=st.integers(1, 9), depth=st.integers(0, 3),
       thresholds=st.sampled_from(["random", "low", "high", "mixed"]))
def test_core_equals_reference_on_random_networks(seed, input_bits, weight_bits, lanes, depth, thresholds):
    rng = np.random.default_rng(seed)
    widths = tuple(int(w) for w in rng.integers(1, 14, size=depth))
    network = random_dense_network(rng, input_bits=input_bits, weight_bits=weight_bits, widths=widths,
                                   input_shape=(3, 3, 2), thresholds=thresholds)
    pixels = rng.integers(0, 2 ** input_bits, size=(4, network.input.size))
    pixels[0] = 0                        # all-zero input: no events at all
    pixels[1] = 2 ** input_bits - 1      # every bit-plane of every pixel active
    check_core(network, pixels, lanes, result_stall={2})
    check_core(network, pixels, lanes, streaming=True)


def test_all_silent_output_decodes_to_class_zero_and_ties_go_low():
    rng = np.random.default_rng(3)
    network = random_dense_network(rng, widths=(5,), thresholds="high")   # nothing ever fires
    check_core(network, np.ones((2, network.input.size), dtype=np.int64), lanes=2)
    network = random_dense_network(rng, widths=(5,), thresholds="low")    # everything fires: all tie
    check_core(network, np.ones((2, network.input.size), dtype=np.int64), lanes=3)


def test_neuron_array_integrates_values_clears_and_fires():
    array = NeuronArray(lanes=2, weight_bits=1, accumulator_bits=6, value_bits=3)
    seen = []

    async def bench(ctx):
        ctx.set(array.thresholds, [3, -2])
        ctx.set(array.weights, [0, 1])            # 1-bit weights: sign bits, +1 and -1
        ctx.set(array.value, 4)
        ctx.set(array.add, 1)
        await ctx.tick()                          # +4, -4
        ctx.set(array.add, 0)
        seen.append(ctx.get(array.fire))
        ctx.set(array.clear, 1)
        await ctx.tick()
        ctx.set(array.clear, 0)
        seen.append(ctx.get(array.fire))          # 0 >= 3 no, 0 >= -2 yes

    simulator = Simulator(array)
    simulator.add_clock(1e-6)
    simulator.add_testbench(bench)
    simulator.run()
    assert seen == [0b01, 0b10]


@pytest.mark.parametrize("kwargs, error, message", [
    ({"lanes": 0}, ValueError, "'lanes' must be at least 1, not 0"),
    ({"lanes": "4"}, TypeError, "'lanes' must be an integer, not '4'"),
    ({"accumulator_bits": 1}, ValueError, "'accumulator_bits' must be at least 2, not 1"),
    ({"value_bits": 0}, ValueError, "'value_bits' must be at least 1, not 0"),
])
def test_neuron_array_parameters_are_checked(kwargs, error, message):
    arguments = {"lanes": 2, "weight_bits": 4, "accumulator_bits": 8, **kwargs}
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        NeuronArray(**arguments)


def test_plan_refuses_bad_lanes_and_layers_it_cannot_run():
    network = random_dense_network(np.random.default_rng(0))
    with pytest.raises(PlanError, match=r"^'lanes' must be a positive integer, not 0$"):
        CorePlan(network, lanes=0)
    with pytest.raises(TypeError, match=r"^'lanes' must be a positive integer, not 2\.5$"):
        CorePlan(network, lanes=2.5)
    spec = InputSpec((4, 4, 1), 1)
    conv = ConvLayer("c0", np.ones((2, 3, 3, 1), dtype=np.int64), np.zeros(2, dtype=np.int64), "same")
    dense = DenseLayer("out", np.ones((6, 2), dtype=np.int64), np.zeros(6, dtype=np.int64))
    for layers, message in [
        ((MaxPoolLayer("p0", (2, 2)), conv, MaxPoolLayer("p1", (2, 2)), dense), "after the input"),
        ((conv, MaxPoolLayer("p0", (2, 2)), MaxPoolLayer("p1", (2, 2)), dense), "after maxpool2d 'p0'"),
    ]:
        pooled = Network(spec, layers, network.output, network.weight_bits)
        with pytest.raises(PlanError, match=rf"^layer '\w+' is maxpool2d {message}: the core pools the spikes "
                                            r"of a conv2d layer only \(an OR folded into its output\)$"):
            CorePlan(pooled, lanes=4)


def test_weight_rom_words_hold_one_group_per_input():
    network = random_dense_network(np.random.default_rng(1), widths=(5,), weight_bits=3)
    plan = CorePlan(network, lanes=2)
    layer = plan.layers[0]
    assert layer.groups == 3 and len(layer.weight_words) == 3 * layer.inputs
    weights = network.layers[0].weights
    for group in range(layer.groups):
        for source in range(layer.inputs):
            word = layer.weight_words[group * layer.inputs + source]
            for lane in range(2):
                neuron = group * 2 + lane
                field = (word >> (3 * lane)) & 0b111
                value = field - 8 if field & 0b100 else field
                assert value == (weights[neuron, source] if neuron < 5 else 0)
    # the padded lane can never fire: its threshold is the largest accumulator value
    assert layer.thresholds[5] == 2 ** (plan.accumulator_bits - 1) - 1


def test_cycle_model_matches_the_formula_and_respects_the_bound():
    network = random_dense_network(np.random.default_rng(2), input_bits=3, widths=(6,))
    plan = CorePlan(network, lanes=4)
    pixels = np.array([[0] * network.input.size, [7] + [0] * (network.input.size - 1)])
    reference = IntegerNetwork(network).run(pixels)
    cycles, bound = inference_cycles(plan, pixels, reference.spikes), cycle_bound(plan, pixels, reference.spikes)
    spikes = [s.sum(axis=1) for s in reference.spikes]
    groups = [layer.groups for layer in plan.layers]             # [2, 2]
    # image 0: no input events; image 1: one non-zero pixel (7: its 3 bit-planes add in one event)
    hidden = spikes[0]
    assert bound[0] == groups[1] * hidden[0]
    assert bound[1] == groups[0] * 1 + groups[1] * hidden[1]
    first = [1 + groups[0], 1 + groups[0] * (1 + 4)]
    for image in range(2):
        second = 1 + (groups[1] * (hidden[image] + 4) if hidden[image] else groups[1])
        assert cycles[image] == first[image] + spikes[0][image] + second + spikes[1][image]
    assert (cycles >= bound).all()


def test_hone_rtl_writes_verilog_and_its_port_map(tmp_path, capsys):
    network = random_dense_network(np.random.default_rng(4), input_bits=2, widths=(9,))
    write_network(tmp_path / "net.hone", network)
    assert main(["rtl", str(tmp_path / "net.hone"), "--lanes", "4", "-o", str(tmp_path / "core.v"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    text = (tmp_path / "core.v").read_text()
    assert re.search(r"^module hone_core\(", text, re.M)
    assert "pixels__payload" in text and "result__payload" in text and "trace__" not in text
    assert figures["plan"]["lanes"] == 4 and figures["sha256"] == network.sha256
    assert [layer["groups"] for layer in figures["plan"]["layers"]] == [3, 2]
    assert json.loads((tmp_path / "core.v.json").read_text()) == figures


def test_hone_rtl_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.hone").write_text("{}")
    assert main(["rtl", str(tmp_path / "bad.hone"), "-o", str(tmp_path / "x.v")]) == 1
    assert re.match(r"^hone: error: .*bad\.hone", capsys.readouterr().err.strip().splitlines()[-1])
    with pytest.raises(SystemExit):
        main(["rtl", str(tmp_path / "bad.hone"), "--lanes", "0", "-o", str(tmp_path / "x.v")])
    assert "argument --lanes: expected an integer >= 1, got 0" in capsys.readouterr().err


# -- conv2d and maxpool2d ------------------------------------------------------------------------

def conv_images(rng, network, count):
    """Random images, plus the all-zero and all-max ones and single pixels at the four corners (which
    catch a flatten-order or padding-offset error)."""
    height, width, channels = network.input.shape
    top = 2 ** network.input.bits - 1
    images = [np.zeros(network.input.shape, np.int64), np.full(network.input.shape, top, np.int64)]
    for y, x in ((0, 0), (0, width - 1), (height - 1, 0), (height - 1, width - 1)):
        image = np.zeros(network.input.shape, np.int64)
        image[y, x, int(rng.integers(channels))] = top
        images.append(image)
    images += list(rng.integers(0, top + 1, size=(count,) + network.input.shape))
    return np.stack(images).reshape(len(images), -1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 16), lanes=st.integers(1, 6))
def test_random_conv_networks_match_the_reference_spike_for_spike(seed, lanes):
    """Kernels 1..5 (even too), both paddings, 1..4 channels, pools 2 and 3 dropping edges, images of
    5..12 pixels a side, weights of 1..8 bits, thresholds at the extremes (Amaranth's simulator:
    every layer's spikes, the class and the cycle count)."""
    rng = np.random.default_rng(seed)
    network = random_conv_network(rng, **random_conv_architecture(rng, sizes=(5, 9), filters=(1, 5)))
    check_core(network, conv_images(rng, network, 2), lanes)


def test_a_conv_layer_issues_only_the_positions_each_event_reaches():
    """One pixel at a corner of a 'valid' 5x5 conv on 6x6 reaches one of its 2x2 outputs; in the middle
    of a 'same' one, 25: the cycle model counts exactly those, and the RTL agrees (check_core)."""
    rng = np.random.default_rng(1)
    for padding, (y, x), reached in (("valid", (0, 0), 1), ("valid", (2, 3), 4), ("same", (3, 3), 25),
                                     ("same", (0, 5), 9)):
        network = random_conv_network(rng, input_shape=(6, 6, 1), stages=(("conv", 2, 5, padding),),
                                      thresholds="high")
        plan = CorePlan(network, lanes=2)
        image = np.zeros((1, 36), np.int64)
        image[0, y * 6 + x] = 1
        assert plan.layers[0].reach()[y, x] == reached
        reference = IntegerNetwork(network).run(image)
        assert cycle_bound(plan, image, reference.spikes)[0] == reached   # nothing fires after it
        check_core(network, image, lanes=2)


def test_a_stalling_trace_loses_no_conv_spike():
    rng = np.random.default_rng(5)
    network = random_conv_network(rng, input_shape=(7, 6, 2), input_bits=2, widths=(5,), thresholds="mixed",
                                  stages=(("conv", 3, 3, "same"), ("pool", 2), ("conv", 4, (2, 3), "valid")))
    check_core(network, conv_images(rng, network, 3), 2, trace_stall=True)
