"""A simulated board in its own process: :func:`start_board` runs :func:`hone.sim.board.run_bridge` as
``python -m hone.sim.launch SETTINGS.json`` and returns once its pseudo-terminal serves.

The host (:meth:`hone.host.board.Board.open` with ``sim:NETWORK.hone``) opens that pty like a serial
port and calls :meth:`BoardProcess.stop` when done. The process stops itself when the process that
started it ends, or when :meth:`BoardProcess.stop` writes its stop file.
"""

import dataclasses
import json
import os
import pathlib
import signal
import subprocess
import sys
import tempfile
import time

from .runner import SimulationError

__all__ = ["BoardProcess", "start_board"]


@dataclasses.dataclass
class BoardProcess:
    """A running simulated board.

    Members
    -------
    process: the simulator's process (its own process group).
    folder: the folder of its settings, ready, stop and results files.
    pty: the path of the pseudo-terminal the board's UART is bridged to.
    log: the simulator's log file (stdout and stderr).
    """

    process: subprocess.Popen
    folder: pathlib.Path
    pty: str
    log: pathlib.Path

    def returncode(self):
        """The process's exit status, or None while it runs."""
        return self.process.poll()

    def stop(self, timeout=10):
        """Ask the board to stop (stop file), wait up to ``timeout`` s, then end its process group.

        Returns the run's figures (a dict: ``sim_ns``, bytes and faults each way), or None when the
        board ended without writing them."""
        (self.folder / "stop").write_text("")
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        _end(self.process)
        results = self.folder / "results.json"
        return json.loads(results.read_text()) if results.exists() else None


def start_board(network_path, *, clock_hz, baud, lanes, simulator="verilator", slots=4, faults=0.0, seed=0,
                build_root="runs/sim-board", log=None, start_timeout=900):
    """Build (or reuse) the simulated board for ``network_path`` and start it; return once it serves.

    Args:
        network_path: A network file.
        clock_hz: The board's clock in Hz (a target's design clock, e.g. 45e6).
        baud: The line rate in baud, each way.
        lanes: Neuron units of the board's core.
        simulator: ``"verilator"`` or ``"icarus"``. Defaults to `"verilator"`.
        slots: Image buffers of the board, 1..255. Defaults to `4`.
        faults: Chance per byte, each way, of a bit flip, a drop or a duplicate, in [0, 1). Defaults to `0`.
        seed: Seed of the fault injection. Defaults to `0`.
        build_root: Folder of the board builds (reused per network and settings). Defaults to `"runs/sim-board"`.
        log: The simulator's log file. Defaults to `sim-board.log` in a new temporary folder.
        start_timeout: Seconds to wait for the board to serve (a first Verilator build takes minutes).

    Returns:
        A :class:`BoardProcess`.

    Raises:
        SimulationError: The network file does not exist, the process exits before serving (the
            message quotes its last ``hone: error:`` line and names the log), or it does not serve
            within ``start_timeout`` seconds.
    """
    if not pathlib.Path(network_path).exists():
        raise SimulationError(f"network file {str(network_path)!r} not found")
    folder = pathlib.Path(tempfile.mkdtemp(prefix="hone-board-"))
    ready = folder / "ready.json"
    log = pathlib.Path(log) if log else folder / "sim-board.log"
    settings = {"network": str(network_path), "simulator": simulator, "lanes": int(lanes),
                "clock_hz": float(clock_hz), "baud": int(baud), "slots": int(slots), "faults": float(faults),
                "seed": int(seed), "build_root": str(build_root), "ready": str(ready),
                "stop": str(folder / "stop"), "results": str(folder / "results.json"), "parent": os.getpid()}
    (folder / "settings.json").write_text(json.dumps(settings))
    with open(log, "w") as output:
        process = subprocess.Popen([sys.executable, "-m", "hone.sim.launch", str(folder / "settings.json")],
                                   stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + start_timeout
    while not ready.exists():
        if process.poll() is not None:
            lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
            said = next((line for line in reversed(lines) if line.startswith("hone: ")), lines[-1] if lines else "")
            raise SimulationError(f"the simulated board exited with status {process.returncode} before it was "
                                  f"ready ({said.strip()[:300]}); its log: {log}")
        if time.monotonic() > deadline:
            _end(process)
            raise SimulationError(f"the simulated board was not ready after {start_timeout} s; see {log}")
        time.sleep(0.2)
    return BoardProcess(process, folder, json.loads(ready.read_text())["pty"], log)


def _end(process):
    """End ``process``'s group: SIGTERM, then SIGKILL after 10 s."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _serve(settings_path):
    """The process :func:`start_board` starts: serve until stopped; 1 with one ``hone: error:`` line
    when the board cannot be built or run."""
    from hone.network.errors import HoneError

    from .board import run_bridge

    settings = json.loads(pathlib.Path(settings_path).read_text())
    print(f"building the board for {settings['network']} ({settings['simulator']}, {settings['lanes']} lanes, "
          f"{settings['clock_hz'] / 1e6:g} MHz, {settings['baud']} baud)...", flush=True)
    try:
        results = run_bridge(settings["network"], simulator=settings["simulator"], lanes=settings["lanes"],
                             clock_hz=settings["clock_hz"], baud=settings["baud"], slots=settings["slots"],
                             build_root=settings["build_root"], seed=settings["seed"],
                             config={key: settings[key] for key in ("ready", "faults", "parent", "stop")})
    except (HoneError, ValueError) as error:
        print(f"hone: error: {error}", file=sys.stderr, flush=True)
        return 1
    pathlib.Path(settings["results"]).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(_serve(sys.argv[1]))
