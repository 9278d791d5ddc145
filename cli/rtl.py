"""``hone rtl``: Verilog for a network file."""

import json
import pathlib

from hone.cli.arguments import UsageError, integer_in
from hone.network.errors import ParameterError
from hone.rtl import plan as rtl_plan
from hone.rtl.plan import DEFAULT_LANES

__all__ = ["add_commands", "check_lanes", "lanes_for", "lanes_argument"]


lanes_argument = integer_in(1)   # ``type=`` of every --lanes; its range against a network: lanes_for


def check_lanes(network, lanes):
    """:func:`hone.rtl.plan.check_lanes` for a command that catches ``ValueError``: its refusal is a
    :class:`UsageError` (``argument --lanes: ...``, exit status 2)."""
    try:
        rtl_plan.check_lanes(network, lanes)
    except ParameterError as error:
        raise UsageError(f"argument --{error.parameter}: {error.message}") from None


def lanes_for(network, lanes, default=DEFAULT_LANES):
    """:func:`hone.rtl.plan.lanes_for`, refusing as :func:`check_lanes` does."""
    try:
        return rtl_plan.lanes_for(network, lanes, default)
    except ParameterError as error:
        raise UsageError(f"argument --{error.parameter}: {error.message}") from None


def cmd_rtl(args):
    from hone.network.netfile import read_network

    from hone.rtl.verilog import write_verilog

    network, _ = read_network(args.network)
    lanes = rtl_plan.lanes_for(network, args.lanes)
    description = write_verilog(network, args.output, lanes=lanes, trace=args.trace)
    plan = description["plan"]
    print(f"{args.output}: module {description['top']}, {plan['lanes']} lanes, network {description['sha256'][:16]}...")
    print(f"input {plan['input_size']} pixels x {plan['input_bits']} bit-planes, {plan['weight_bits']}-bit weights, "
          f"{plan['accumulator_bits']}-bit accumulators, "
          + (f"{plan['classes']} classes x {plan['nhot']}-hot" if plan["classes"] else "output spikes, no classes"))
    print(f"{'layer':<16}{'inputs':>8}{'outputs':>9}{'groups':>8}{'weight ROM bits':>17}")
    for layer in plan["layers"]:
        print(f"{layer['name']:<16}{layer['inputs']:>8}{layer['outputs']:>9}{layer['groups']:>8}"
              f"{layer['weight_rom_bits']:>17}")
    print(f"ROM bits in all {plan['rom_bits']}; Verilog {description['verilog_bytes']} bytes; "
          f"port map in {args.output}.json")
    if args.json:
        print(json.dumps(description))


def add_commands(commands):
    rtl = commands.add_parser(
        "rtl", help="generate Verilog for a network file",
        description="Elaborate the event-driven neuron array for a network file and write Verilog "
                    "(plus FILE.json: plan, hash and stream payload fields).")
    rtl.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    rtl.add_argument("--lanes", type=lanes_argument, metavar="P",
                     help=f"neuron units working in parallel, at most the widest layer's (default: {DEFAULT_LANES}, "
                          f"or the widest layer's width if smaller)")
    rtl.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="FILE.v")
    rtl.add_argument("--trace", action="store_true", help="add the trace port (every spike, for verification)")
    rtl.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    rtl.set_defaults(handler=cmd_rtl)
