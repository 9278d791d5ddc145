"""cocotb testbench of ``hone_core``: driver, monitors, the integer reference and an in-order checker.

Loaded by the simulator (through :func:`hone.sim.runner.simulate`), configured by the JSON file named in
``HONE_SIM_CONFIG``: the network file, lanes, the pixels (``.npy``), back-pressure and where to write
``results.json``. Every layer's spikes (from the trace port), the class and the cycle count of every
image are compared with :class:`hone.network.integer.IntegerNetwork` and :func:`hone.rtl.cycles.inference_cycles`.
"""

import json
import os
import pathlib
import random

import cocotb
import numpy as np
from cocotb.triggers import Event, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from hone.rtl.core import trace_units
from hone.rtl.cycles import cycle_bound, inference_cycles
from hone.rtl.plan import CorePlan
from hone.network.activity import ActivityCounter
from hone.network.integer import IntegerNetwork
from hone.network.netfile import read_network

CLOCK_NS = 20   # 50 MHz, generated inside the simulator by hone_tb (sim/runner.py)


def _field(word, field):
    return (word >> field["offset"]) & ((1 << field["width"]) - 1)


class ImageDriver:
    """Feeds images to the core's ``pixels`` stream through the testbench's streamer (``hone_tb``).

    One write hands over a whole image (row-major pixels, pixel ``i`` at bits ``i*K ..``); the
    streamer in the simulator offers it one pixel per cycle and honours the core's ``ready``.
    Signals are driven and sampled at falling clock edges: the design changes only at rising edges,
    so what is seen there is what the next rising edge uses.
    """

    def __init__(self, dut, bits):
        self.clk, self.bits = dut.clk, bits
        self.image, self.valid, self.ready = dut.image, dut.image_valid, dut.image_ready
        self.valid.value = 0

    def _word(self, image):
        word = 0
        for index, value in enumerate(np.asarray(image).reshape(-1).tolist()):
            word |= int(value) << (index * self.bits)
        return word

    async def send(self, image):
        await FallingEdge(self.clk)
        while not self.ready.value:
            await RisingEdge(self.ready)
            await FallingEdge(self.clk)
        self.image.value = self._word(image)
        self.valid.value = 1
        await FallingEdge(self.clk)      # the streamer took it at the rising edge in between
        self.valid.value = 0


class StreamMonitor:
    """Sink of a stream: records each transfer; ``stall`` is the chance that ready is low in a cycle."""

    def __init__(self, dut, name, *, stall=0.0, rng=None, on_beat):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.stall, self.rng, self.on_beat = stall, rng or random.Random(0), on_beat
        self.ready.value = int(self._ready())

    def _ready(self):
        return self.stall == 0 or self.rng.random() >= self.stall

    async def run(self):
        await FallingEdge(self.clk)
        ready = int(self._ready())
        self.ready.value = ready
        while True:
            if not self.valid.value:
                await RisingEdge(self.valid)
                await FallingEdge(self.clk)
                continue
            if ready:       # valid and ready now: the next rising edge transfers it
                self.on_beat(int(self.payload.value))
            await FallingEdge(self.clk)
            ready = int(self._ready())
            self.ready.value = ready


class Checker:
    """Puts the trace beats of each image together and compares, image by image, in order."""

    def __init__(self, network, plan, pixels, description):
        self.reference = IntegerNetwork(network).run(pixels)
        self.pixels = pixels
        self.activity = ActivityCounter(network)     # counted from the trace, image by image
        reference = ActivityCounter(network)
        reference.add(pixels, self.reference.spikes)
        self.reference_activity = reference.counts()
        self.expected_cycles = inference_cycles(plan, pixels, self.reference.spikes)
        self.bound = cycle_bound(plan, pixels, self.reference.spikes)
        self.widths = plan.trace_widths()
        self.result_fields = description["result"]
        self.trace_fields = description["trace_fields"]
        self.beats = []
        self.images = []      # per image: labels, cycles, per-layer equality
        self.mismatches = []
        self.done = Event()

    def on_trace(self, word):
        layer = _field(word, self.trace_fields["layer"])
        for neuron in trace_units(_field(word, self.trace_fields["neuron"]), _field(word, self.trace_fields["mask"])):
            self.beats.append((layer, neuron))

    def on_result(self, word):
        index = len(self.images)
        label, cycles = _field(word, self.result_fields["label"]), _field(word, self.result_fields["cycles"])
        spikes = [np.zeros(width, dtype=np.uint8) for width in self.widths]
        order_ok = True
        for layer, neuron in self.beats:
            if layer >= len(spikes) or neuron >= self.widths[layer] or spikes[layer][neuron]:
                order_ok = False       # out of range or a neuron reported twice
                continue
            spikes[layer][neuron] = 1
        self.beats = []
        self.activity.add(self.pixels[index:index + 1], [s[None] for s in spikes])
        equal = [bool(order_ok and np.array_equal(rtl, ref[index].reshape(-1)))
                 for rtl, ref in zip(spikes, self.reference.spikes)]
        expected_label = int(self.reference.labels[index])     # 0 for a spike output (no classes)
        expected_cycles = int(self.expected_cycles[index])
        for layer, (same, rtl, ref) in enumerate(zip(equal, spikes, self.reference.spikes)):
            if not same and len(self.mismatches) < 20:
                self.mismatches.append(
                    f"layer {layer} spikes differ at image {index}: rtl={np.flatnonzero(rtl).tolist()} "
                    f"ref={np.flatnonzero(ref[index].reshape(-1)).tolist()}")
        if label != expected_label and len(self.mismatches) < 20:
            self.mismatches.append(f"class differs at image {index}: rtl={label} ref={expected_label}")
        if cycles != expected_cycles and len(self.mismatches) < 20:
            self.mismatches.append(f"cycles differ at image {index}: rtl={cycles} model={expected_cycles}")
        image = {"label": label, "expected_label": expected_label, "cycles": cycles,
                 "expected_cycles": expected_cycles, "bound": int(self.bound[index]), "layers_equal": equal}
        if self.reference.classes is None:    # a spike output: the RTL's own output spikes are the result
            image["output"] = np.packbits(spikes[-1]).tobytes().hex()
        self.images.append(image)
        if len(self.images) == len(self.expected_cycles):
            self.done.set()


@cocotb.test()
async def images_match_the_reference(dut):
    """Stream every image through the core; every layer, class and cycle count must match."""
    config = json.loads(pathlib.Path(os.environ["HONE_SIM_CONFIG"]).read_text())
    network, _ = read_network(config["network"])
    plan = CorePlan(network, lanes=config["lanes"])
    description = json.loads(pathlib.Path(config["description"]).read_text())
    pixels = np.load(config["pixels"])
    checker = Checker(network, plan, pixels, description)
    progress = pathlib.Path(config["progress"])

    rng = random.Random(config.get("seed", 0))
    dut.rst.value = 1
    driver = ImageDriver(dut, network.input.bits)
    trace = StreamMonitor(dut, "trace", on_beat=checker.on_trace)
    result = StreamMonitor(dut, "result", stall=config.get("backpressure", 0.0), rng=rng,
                           on_beat=checker.on_result)
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    cocotb.start_soon(trace.run())
    cocotb.start_soon(result.run())

    start = get_sim_time(unit="ns")
    for index, image in enumerate(pixels):
        await driver.send(image)
        if index % 16 == 15:
            progress.write_text(str(len(checker.images)))
        gap = config.get("gap", 0)   # idle cycles between images, to vary the back-to-back timing
        for _ in range(rng.randint(0, gap) if gap else 0):
            await RisingEdge(dut.clk)
    await checker.done.wait()
    sim_ns = get_sim_time(unit="ns") - start
    progress.write_text(str(len(checker.images)))

    pathlib.Path(config["results"]).write_text(json.dumps({
        "images": checker.images, "mismatches": checker.mismatches, "sim_ns": sim_ns,
        "clock_ns": CLOCK_NS, "activity": {"rtl": checker.activity.counts().to_dict(),
                                           "reference": checker.reference_activity.to_dict()}}))
    assert not checker.mismatches, "\n".join(checker.mismatches)
