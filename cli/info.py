"""``hone info``: validate a network file and describe it (no Keras involved)."""

import json
import pathlib

import numpy as np

__all__ = ["add_commands"]


def cmd_info(args):
    """Validate a network file and describe it (no Keras involved)."""
    from hone.network.netfile import read_network

    network, meta = read_network(args.network)   # a NetworkFileError is one hone: error: line
    shapes = network.shapes()
    widths = network.accumulator_bits()
    layers = []
    for layer, shape in zip(network.layers, shapes):
        entry = {"name": layer.name, "kind": layer.kind, "output_shape": list(shape)}
        if layer.kind != "maxpool2d":
            entry["fan_in"] = int(np.prod(layer.weights.shape[1:]))
            entry["accumulator_bits"] = widths[layer.name]
        layers.append(entry)
    figures = {
        "file": str(args.network), "sha256": network.sha256, "input_shape": list(network.input.shape),
        "input_bits": network.input.bits, "weight_bits": network.weight_bits,
        "output": network.output.kind, "classes": network.classes,
        "nhot": network.output.nhot if network.classes else None,
        "tie_break": network.output.tie_break if network.classes else None, "layers": layers,
        "weights": int(sum(l.weights.size for l in network.layers if l.kind != "maxpool2d")),
        "meta": meta,
    }
    print(f"{args.network}: valid hone network, sha256 {network.sha256}")
    print(f"input {'x'.join(map(str, network.input.shape))} x {network.input.bits}-bit, "
          f"{network.weight_bits}-bit weights ({figures['weights']} in all), "
          + (f"{figures['classes']} classes x {network.output.nhot}-hot, tie-break {network.output.tie_break}"
             if network.classes else f"output: the last layer's {network.layers[-1].outputs} spikes (no classes)"))
    for entry in layers:
        extra = (f"fan-in {entry['fan_in']}, accumulator {entry['accumulator_bits']} bits"
                 if "fan_in" in entry else "OR of spikes")
        print(f"  {entry['name']:<16}{entry['kind']:<11}-> {'x'.join(map(str, entry['output_shape'])):<10}{extra}")
    if args.json:
        print(json.dumps(figures))


def add_commands(commands):
    """Register ``info`` on the ``hone`` subparsers."""
    info = commands.add_parser("info", help="validate a network file and describe it",
                               description="Read a network file, validate every field and the hash, "
                                           "and print its layers.")
    info.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    info.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    info.set_defaults(handler=cmd_info)
