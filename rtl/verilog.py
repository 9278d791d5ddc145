"""Verilog for a network file: the one artefact simulators and synthesis tools take."""

import json
import pathlib

from amaranth.back import verilog

from .core import NetworkCore

__all__ = ["BOARD_TOP", "TOP", "write_board_verilog", "write_verilog"]

TOP = "hone_core"


def _fields(layout):
    return {name: {"offset": field.offset, "width": field.width} for name, field in layout}


def write_verilog(network, path, *, lanes, trace=False, name=TOP):
    """Elaborate :class:`~hone.rtl.core.NetworkCore` for ``network`` and write it to ``path``.

    Beside it goes ``<path>.json``: the plan's figures, the network's hash and the bit fields of the
    stream payloads, so that testbenches and host code decode ports without Amaranth.

    Returns
    -------
    dict
        That description.
    """
    path = pathlib.Path(path)
    core = NetworkCore(network, lanes=lanes, trace=trace)
    text = verilog.convert(core, name=name, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    description = {
        "top": name, "sha256": network.sha256, "trace": bool(trace),
        "plan": core.plan.describe(), "cycle_bits": core.plan.cycle_bits,
        "result": _fields(core.result_layout), "trace_fields": _fields(core.trace_layout),
        "verilog_bytes": len(text.encode()),
    }
    path.with_name(path.name + ".json").write_text(json.dumps(description, indent=1))
    return description


BOARD_TOP = "hone_board"


def write_board_verilog(network, path, *, lanes, clock_hz, baud, slots=4, name=BOARD_TOP):
    """Elaborate :class:`~hone.rtl.board.BoardTop` (ports ``clk``, ``rst``, ``rx``, ``tx``) to ``path``,
    with ``<path>.json`` holding its link figures, plan and the network's hash."""
    from .board import BoardTop

    path = pathlib.Path(path)
    top = BoardTop(network, lanes=lanes, clock_hz=clock_hz, baud=baud, slots=slots)
    text = verilog.convert(top, name=name, emit_src=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    description = {
        "top": name, "sha256": network.sha256, "link": top.figures, "lanes": lanes,
        "plan": top.core.plan.describe(), "outputs": top.core.plan.layers[-1].outputs,
        "verilog_bytes": len(text.encode()),
    }
    path.with_name(path.name + ".json").write_text(json.dumps(description, indent=1))
    return description
