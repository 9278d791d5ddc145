"""``hone rtl``: Verilog for a network file."""

import json
import pathlib

from hone.cli.arguments import UsageError, UserError, integer_in

__all__ = ["add_commands", "check_lanes", "lanes_for", "lanes_argument"]


lanes_argument = integer_in(1)   # ``type=`` of every --lanes; its range against a network: lanes_for


def check_lanes(network, lanes, option="--lanes"):
    """Refuse (:class:`UsageError`) more lanes than ``network``'s widest layer can use, before any work."""
    from hone.rtl.plan import useful_lanes

    most, index, name = useful_lanes(network)
    if lanes > most:
        unit = "filters" if network.layers[index].kind == "conv2d" else "neurons"
        raise UsageError(f"argument {option}: expected 1..{most} for this network (its widest layer, "
                         f"layers[{index}] {name!r}, has {most} {unit}; more lanes would stay idle), got {lanes}")


def lanes_for(network, lanes, default, option="--lanes"):
    """The lanes to build: ``lanes`` as given (refused when more than the widest layer can use), or,
    when None, ``default`` capped at that widest layer (a small network gets no idle lanes)."""
    from hone.rtl.plan import useful_lanes

    if lanes is None:
        return min(default, useful_lanes(network)[0])
    check_lanes(network, lanes, option)
    return lanes


def cmd_rtl(args):
    from hone.network.netfile import NetworkFileError, read_network

    from hone.rtl.plan import PlanError
    from hone.rtl.verilog import write_verilog

    try:
        network, _ = read_network(args.network)
        lanes = lanes_for(network, args.lanes, 8)
        description = write_verilog(network, args.output, lanes=lanes, trace=args.trace)
    except (NetworkFileError, PlanError) as error:
        raise UserError(str(error)) from None
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
                     help="neuron units working in parallel, at most the widest layer's (default: 8, or the "
                          "widest layer's width if smaller)")
    rtl.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="FILE.v")
    rtl.add_argument("--trace", action="store_true", help="add the trace port (every spike, for verification)")
    rtl.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    rtl.set_defaults(handler=cmd_rtl)
