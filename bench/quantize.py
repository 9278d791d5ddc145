"""Accuracy against weight bits, per-neuron vs per-layer scaling, on the test set.

Exports a sharpened model at each weight width with one scale per neuron and with one per layer,
runs the integer reference model on every test image, and prints one JSON line per width (and a
table), then writes ``accuracy_vs_bits.png``. The Keras sharpened accuracy is the reference line.

    python bench/quantize.py runs/flow/train/model.keras      # after `make flow`
    python bench/quantize.py RUN/model.keras --bits 8,4,2 --dataset digits
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=pathlib.Path, nargs="?",
                        default=pathlib.Path("runs/flow/train/model.keras"),
                        help="sharpened model (default: runs/flow/train/model.keras from `make flow`)")
    parser.add_argument("--bits", default="8,6,4,3,2,1", help="weight widths (default: 8,6,4,3,2,1)")
    parser.add_argument("--input-bits", type=int, default=None, help="default: from the run folder")
    parser.add_argument("--dataset", default=None, help="default: from the run folder")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/quantize"))
    args = parser.parse_args(argv)
    if not args.model.exists():
        parser.error(f"{args.model} does not exist; train one first (make flow, or hone train --out DIR)")

    import keras
    import numpy as np
    from hone.training import layers  # noqa: F401
    from hone.training.datasets import load_dataset
    from hone.training.export import export_network, run_settings
    from hone.training.integer import IntegerNetwork
    from hone.training.train import hard_accuracy

    dataset, input_bits, binarized = run_settings(args.model, dataset=args.dataset, input_bits=args.input_bits)
    data = load_dataset(dataset, binarize=binarized)
    model = keras.saving.load_model(args.model)
    reference = hard_accuracy(model, data.x_test, data.y_test)
    rows = []
    print(f"{'bits':>4}  {'per-neuron':>10}  {'per-layer':>9}   (keras sharpened {100 * reference:.2f}%)")
    for bits in [int(b) for b in args.bits.split(",")]:
        row = {"dataset": dataset, "weight_bits": bits, "input_bits": input_bits,
               "keras_sharpened": round(reference, 4)}
        for per_neuron, label in ((True, "per_neuron"), (False, "per_layer")):
            network, _ = export_network(model, weight_bits=bits, input_bits=input_bits, per_neuron=per_neuron)
            result = IntegerNetwork(network).run(network.input.quantize(data.x_test))
            row[label] = round(float(np.mean(result.classes == data.y_test)), 4)
        rows.append(row)
        print(f"{bits:>4}  {100 * row['per_neuron']:>9.2f}%  {100 * row['per_layer']:>8.2f}%")
        print(json.dumps(row), flush=True)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    bits = [r["weight_bits"] for r in rows]
    ax.plot(bits, [100 * r["per_neuron"] for r in rows], marker="o", label="one scale per neuron")
    ax.plot(bits, [100 * r["per_layer"] for r in rows], marker="s", label="one scale per layer")
    ax.axhline(100 * reference, color="C3", linestyle="--", label=f"Keras sharpened {100 * reference:.2f}%")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("integer test accuracy (%)")
    ax.set_title(f"{dataset}: {args.model}")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "accuracy_vs_bits.png", dpi=110)
    print(f"plot: {args.out / 'accuracy_vs_bits.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
