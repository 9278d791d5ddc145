"""Autoencoder benchmark: the whole test set through Keras, the integer model and the RTL.

Keras (exact steps) against the integer model of the network file, image by image and bit for bit,
with the differing images that have a neuron at its threshold counted as float ties; then the
integer model against the RTL on Verilator (every layer's spikes, the output spikes and the cycle
count), the images sharded over simulator processes. Prints pixel accuracy and bits wrong per image
of each, and one JSON line.

    python bench/autoencoder.py runs/flow-ae/train/model.keras runs/flow-ae/net.hone [--images 10000] [--jobs 2]
"""

import argparse
import json
import pathlib
import time

import numpy as np

import stamp

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=pathlib.Path, help="the run's model.keras (hone train --arch autoencoder)")
    parser.add_argument("network", type=pathlib.Path, help="the network file hone export wrote from it")
    parser.add_argument("--images", type=int, default=10_000, help="first N test images (default: all 10,000)")
    parser.add_argument("--rtl-images", type=int, help="of those, through the RTL (default: all of them)")
    parser.add_argument("--lanes", type=int, default=32, help="neuron lanes of the RTL (default: 32)")
    parser.add_argument("--jobs", type=int, default=2, help="simulator processes (default: 2)")
    parser.add_argument("--simulator", default="verilator", choices=("verilator", "icarus"))
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/out/autoencoder")
    args = parser.parse_args()

    import keras

    from hone.sim.runner import simulate
    from hone.training import layers  # noqa: F401  (registers hone's layers and metrics)
    from hone.network.datasets import network_test_images
    from hone.network.datasets import load_dataset
    from hone.training.export import evaluate_export, export_network
    from hone.network.integer import IntegerNetwork
    from hone.network.reconstruction import format_reconstruction, reconstruction_figures

    network, pixels, targets, dataset = network_test_images(args.network, args.images)
    data = load_dataset(dataset)
    model = keras.saving.load_model(args.model)
    exported, floats = export_network(model, weight_bits=network.weight_bits, input_bits=network.input.bits)
    if exported.sha256 != network.sha256:
        raise SystemExit(f"{args.network} is not the export of {args.model} at {network.weight_bits}-bit weights, "
                         f"{network.input.bits}-bit input (hash {network.sha256[:16]}... vs {exported.sha256[:16]}...)")
    x = data.x_test[:args.images].reshape((args.images,) + tuple(model.input_shape[1:]))
    started = time.perf_counter()
    keras_integer = evaluate_export(model, network, floats, x, targets)
    keras_seconds = time.perf_counter() - started
    integer = IntegerNetwork(network).run(pixels).outputs
    print(f"{args.network.name}: {args.images} {dataset} test images")
    for stage in ("keras_sharpened", "integer"):
        print(f"  {stage:<18}{100 * keras_integer['accuracy'][stage]:.3f}% of pixels, "
              f"{keras_integer['bits_wrong_per_image'][stage]:.2f} bits wrong per image")
    print(f"  keras/integer     {args.images - keras_integer['disagreements']}/{args.images} images equal bit for "
          f"bit; {keras_integer['disagreements']} differ ({keras_integer['bits_differing_keras_integer']} bits), "
          f"{keras_integer['disagreements_near_threshold']} of them float ties", flush=True)

    rtl_images = args.rtl_images or args.images
    report = simulate(args.network, pixels[:rtl_images], simulator=args.simulator, lanes=args.lanes,
                      build_root=args.out / "build", progress=False, jobs=args.jobs)
    rtl_equal = (report["outputs"] == integer[:rtl_images]).all(axis=1)
    rtl = reconstruction_figures(report["outputs"], targets[:rtl_images])
    print(f"  RTL ({args.simulator}, {args.lanes} lanes, {args.jobs} processes)  {format_reconstruction(rtl)}")
    print(f"  integer/RTL       {int(rtl_equal.sum())}/{rtl_images} images equal bit for bit (output); every "
          f"layer equal on {report['all_layers_equal']}, cycles = model on {report['cycles_equal_model']}; "
          f"{report['sim_seconds_wall']:.0f} s simulating")
    row = {
        "network": str(args.network), "sha256": network.sha256, "dataset": dataset, "images": args.images,
        "keras": {"pixel_accuracy": keras_integer["accuracy"]["keras_sharpened"],
                  "bits_wrong_per_image": keras_integer["bits_wrong_per_image"]["keras_sharpened"]},
        "integer": reconstruction_figures(integer, targets),
        "keras_integer_images_equal": args.images - keras_integer["disagreements"],
        "keras_integer_differing_ties": keras_integer["disagreements_near_threshold"],
        "keras_integer_bits_differing": keras_integer["bits_differing_keras_integer"],
        "keras_seconds": keras_seconds,
        "rtl": rtl, "rtl_images": rtl_images, "rtl_simulator": args.simulator, "rtl_lanes": args.lanes,
        "integer_rtl_images_equal": int(rtl_equal.sum()), "rtl_all_layers_equal": report["all_layers_equal"],
        "rtl_cycles_equal_model": report["cycles_equal_model"], "rtl_equal": report["equal"],
        "rtl_cycles_mean": report["cycles_mean"], "rtl_seconds": report["sim_seconds_wall"], "jobs": args.jobs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    stamp.write(args.out / "autoencoder.json", row, bench="autoencoder")
    print(json.dumps(row))


if __name__ == "__main__":
    main()
