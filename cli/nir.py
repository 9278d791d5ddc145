"""``hone nir export`` and ``hone nir import``: exchange networks with snnTorch, Norse, Lava, Rockpool,
Sinabs and other NIR tools (docs/nir.md)."""

import json
import pathlib

from hone.cli.arguments import dataset_argument, integer_in, number_in

__all__ = ["add_commands"]


def cmd_export(args):
    from hone.network.nirgraph import to_nir
    from hone.network.netfile import read_network

    network, meta = read_network(args.network)   # a NetworkFileError is one hone: error: line
    graph = to_nir(network, meta=meta)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    import nir

    nir.write(str(args.output), graph)
    kinds = {}
    for node in graph.nodes.values():
        kinds[type(node).__name__] = kinds.get(type(node).__name__, 0) + 1
    figures = {"network": str(args.network), "nir": str(args.output), "sha256": network.sha256,
               "nodes": len(graph.nodes), "node_kinds": kinds, "edges": len(graph.edges),
               "bytes": args.output.stat().st_size}
    print(f"{args.output}: NIR graph of {args.network} ({network.sha256[:16]}...), {len(graph.nodes)} nodes: "
          + ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items())) + f"; {figures['bytes']:,} bytes")
    if args.json:
        print(json.dumps(figures))


def cmd_import(args):
    from hone.network.nirgraph import import_graph

    report = import_graph(args.nir, args.output, weight_bits=args.weight_bits, input_bits=args.input_bits,
                          dt=args.dt, nhot=args.nhot, dataset=args.dataset, images=args.images).to_json()
    how = ("a graph hone wrote: read back exactly" if report["written_by_hone"] else
           f"quantized to {report['weight_bits']}-bit weights, {report['input_bits']}-bit input")
    print(f"{args.output}: network {report['sha256'][:16]}... from {args.nir} ({how}); layers "
          + ", ".join(report["layers"]))
    if "images" in report:
        n = report["images"]
        print(f"on {n} {report['dataset']} test images: float graph {report['float_accuracy']:.2%}, integer "
              f"network {report['integer_accuracy']:.2%}; agreement: classes {report['class_agreement']}/{n}, "
              f"output spikes {report['spike_agreement']}/{n}")
    if args.json:
        print(json.dumps(report))


def add_commands(commands):
    """``hone nir export`` and ``hone nir import``."""
    group = commands.add_parser("nir", help="export to / import from the Neuromorphic Intermediate Representation",
                                description="Exchange networks with snnTorch, Norse, Lava, Rockpool, Sinabs and "
                                            "other NIR tools (docs/nir.md maps every node).")
    verbs = group.add_subparsers(dest="nir_command", required=True, metavar="VERB")
    export = verbs.add_parser("export", help="write a network file as a NIR graph (exactly)")
    export.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    export.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="FILE.nir")
    export.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    export.set_defaults(handler=cmd_export)
    read = verbs.add_parser("import", help="quantize a NIR graph into a network file",
                            description="Read a NIR graph with a one-time-step binary reading (Affine/Linear/"
                                        "Conv2d or Sum/AvgPool2d, each followed by Threshold, IF or LIF) and write "
                                        "a network file; a graph hone wrote comes back exactly.")
    read.add_argument("nir", type=pathlib.Path, metavar="FILE.nir", help="a NIR graph (HDF5)")
    read.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="NET.hone")
    read.add_argument("--weight-bits", type=integer_in(1, 16), metavar="B",
                      help="weight width (default: 4; a graph hone wrote keeps its own)")
    read.add_argument("--input-bits", type=integer_in(1, 16), metavar="K",
                      help="pixel bits for a graph that takes pixels in [0, 1] (default: 8)")
    read.add_argument("--dt", type=number_in(0, low_open=True), metavar="S",
                      help="time step in seconds, for LIF nodes read as one forward-Euler step")
    read.add_argument("--nhot", type=integer_in(1), metavar="N",
                      help="output units per class, in consecutive blocks, for a graph hone did not write "
                           "(default: 1)")
    read.add_argument("--dataset", type=dataset_argument, metavar="NAME|FILE.npz",
                      help="test data: report float-graph vs integer agreement and accuracy")
    read.add_argument("--images", type=integer_in(1), metavar="N", help="first N test images (default: all)")
    read.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    read.set_defaults(handler=cmd_import)
