"""The stamp every bench result carries: the commit, the date, the machine and the command.

A bench script hands its figures to :func:`write`, which wraps them as
``{"bench": NAME, "stamp": {...}, "figures": FIGURES}`` and writes them as JSON (normally under
``bench/out/``). ``bench/results.py`` (``make results``) turns those files into the results pages of
the docs and the README's headline table, so no figure is typed by hand.

    import stamp                                          # bench scripts run as ``python bench/NAME.py``
    stamp.write(args.out / "rtl.json", rows, bench="rtl")
"""

import datetime
import json
import os
import pathlib
import platform
import shlex
import subprocess
import sys

__all__ = ["stamp", "write"]

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _git(*args):
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model():
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _command():
    argv = list(sys.argv)
    if argv and argv[0]:
        script = pathlib.Path(argv[0]).resolve()
        argv[0] = str(script.relative_to(ROOT)) if ROOT in script.parents else argv[0]
    return shlex.join(["python", *argv])


def stamp():
    """Where and how figures were measured.

    Returns:
        A dict: ``commit`` (``git rev-parse HEAD``, None outside a clone), ``dirty`` (the work tree
        differed from that commit), ``date`` (UTC, ISO 8601), ``machine`` (``cores``, ``cpu``,
        ``python``) and ``command`` (the command line, as a shell would take it).
    """
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": commit,
        "dirty": bool(status) if status is not None else None,
        "date": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
        "machine": {"cores": os.cpu_count(), "cpu": _cpu_model(), "python": platform.python_version()},
        "command": _command(),
    }


def write(path, figures, *, bench):
    """Write ``figures`` as stamped JSON to ``path`` (its folder is made); the path.

    Args:
        path: the JSON file to write.
        figures: what the bench measured (JSON-serialisable).
        bench: the bench's name (``"rtl"`` for ``bench/rtl.py``); ``bench/results.py`` picks the
            page that renders it by this name.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"bench": bench, "stamp": stamp(), "figures": figures}, indent=1) + "\n")
    return path
