"""hone's NIR export against an independent NIR evaluator on the whole test set.

Exports each network file to NIR, runs the graph with ``tests/nir_reference.py`` (numpy, written from
the NIR primitives, no hone code) under NIR's strict threshold rule and compares every layer's spikes
and every class with ``IntegerNetwork``; then imports the graph back and compares the hashes. Shards
the images over ``--jobs`` processes. Prints a table and one JSON line per network.

    python bench/nir_roundtrip.py                                   # the dense and conv defaults, 10,000 images
    python bench/nir_roundtrip.py tests/data/digits-dense-4bit.hone --images 360 --dataset digits
"""

import argparse
import concurrent.futures
import importlib.util
import json
import pathlib
import sys
import tempfile
import time

import numpy as np

import stamp

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEFAULTS = [ROOT / "tests/data/fashion-dense-4bit.hone", ROOT / "tests/data/fashion-conv-4bit.hone"]


def _reference():
    spec = importlib.util.spec_from_file_location("nir_reference", ROOT / "tests" / "nir_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _shard(nir_path, network_path, dataset, start, stop):
    """(images, layers equal per layer, classes equal) for images start..stop-1."""
    from hone.network.datasets import load_dataset
    from hone.network.integer import IntegerNetwork
    from hone.network.netfile import read_network
    from hone.network.nhot import decode_spikes
    from hone.network.nirgraph import read_nir

    network, _ = read_network(network_path)
    graph = read_nir(nir_path)
    data = load_dataset(dataset, binarize=network.input.bits == 1)
    pixels = data.x_test[start:stop].reshape((stop - start,) + tuple(network.input.shape))
    q = network.input.quantize(pixels)
    evaluate = _reference().evaluate
    equal, classes = np.zeros(len(network.layers), np.int64), 0
    for begin in range(0, len(q), 500):
        chunk = q[begin:begin + 500]
        reference = IntegerNetwork(network).run(chunk)
        spikes = evaluate(graph, chunk.transpose(0, 3, 1, 2))
        for index, (ours, theirs) in enumerate(zip(reference.spikes, spikes)):
            theirs = theirs.transpose(0, 2, 3, 1) if theirs.ndim == 4 else theirs
            equal[index] += int((ours.reshape(len(chunk), -1) == theirs.reshape(len(chunk), -1)).all(axis=1).sum())
        got = decode_spikes(spikes[-1].astype(np.uint8), np.asarray(graph.metadata["hone.nhot_key"]))
        classes += int((got == reference.classes).sum())
    return stop - start, equal.tolist(), classes


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("networks", nargs="*", type=pathlib.Path, default=DEFAULTS)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--dataset", default=None, help="default: the one each network file names")
    parser.add_argument("--jobs", type=int, default=2, help="processes (default: 2)")
    args = parser.parse_args(argv)

    from hone.network.netfile import read_network
    from hone.network.nirgraph import from_nir, read_nir, write_nir

    rows = []
    for path in args.networks:
        network, meta = read_network(path)
        dataset = args.dataset or meta.get("dataset")
        with tempfile.TemporaryDirectory() as folder:
            nir_path = pathlib.Path(folder) / "net.nir"
            started = time.perf_counter()
            write_nir(nir_path, network, meta=meta)
            back, _ = from_nir(read_nir(nir_path))
            bounds = np.linspace(0, args.images, args.jobs + 1).astype(int)
            with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
                parts = list(pool.map(_shard, [nir_path] * args.jobs, [path] * args.jobs, [dataset] * args.jobs,
                                      bounds[:-1], bounds[1:]))
            seconds = time.perf_counter() - started
        images = int(sum(part[0] for part in parts))
        layers = np.sum([part[1] for part in parts], axis=0)
        row = {"network": str(path.relative_to(ROOT) if path.is_absolute() and ROOT in path.parents else path),
               "dataset": dataset, "images": images,
               "layers_equal": {layer.name: int(count) for layer, count in zip(network.layers, layers)},
               "classes_equal": int(sum(part[2] for part in parts)), "round_trip_same_hash": back.sha256 == network.sha256,
               "seconds": round(seconds, 1), "jobs": args.jobs}
        rows.append(row)
        print(json.dumps(row), flush=True)
    stamp.write(ROOT / "bench/out/nir/nir.json", rows, bench="nir")
    print(f"\n{'network':<40}{'images':>8}{'every layer equal':>19}{'classes equal':>15}{'same hash':>11}{'s':>7}")
    for row in rows:
        every = min(row["layers_equal"].values())
        print(f"{row['network']:<40}{row['images']:>8}{every:>19}{row['classes_equal']:>15}"
              f"{str(row['round_trip_same_hash']):>11}{row['seconds']:>7}")
    ok = all(min(r["layers_equal"].values()) == r["classes_equal"] == r["images"] and r["round_trip_same_hash"]
             for r in rows)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
