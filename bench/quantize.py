"""Accuracy against weight bits: post-training quantization, quantization-aware training, and Keras.

For each weight width (default 1, 2, 3, 4 and 8 bits) on the test set:

- ``keras``: the model trained in float (``hone train --no-qat``), every layer an exact step: the
  float-step model;
- ``ptq``: that model exported at the width (per-neuron scales), run by the integer reference model;
  ``ptq_per_layer`` with one scale per layer;
- ``qat``: a model trained quantization-aware at the width (the default ``hone train``), exported at
  it and run by the integer reference model, with its Keras/integer class agreement.

Every model is trained with hone's default recipe and the same seed, one after another in this process;
``--float-model`` reuses a model trained with ``--no-qat`` instead of training one. Prints a table and
one JSON line per width, writes ``accuracy_vs_bits.png`` and ``quantize.json``; the last stdout line
is one JSON object with every figure.

    python bench/quantize.py                                  # dense, Fashion-MNIST, about 6 trainings
    python bench/quantize.py --arch conv --bits 4             # the conv default at 4 bits
    python bench/quantize.py --dataset digits --bits 2,4      # seconds
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import stamp  # noqa: E402
from hone.cli.arguments import integer_in  # noqa: E402  (no Keras: the backend is chosen below)


def _bits(text):
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1 or max(values) > 16:
        raise argparse.ArgumentTypeError(f"expected comma-separated widths in 1..16, got {text!r}")
    return values


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", choices=("dense", "conv"), default="dense")
    parser.add_argument("--bits", type=_bits, default=[1, 2, 3, 4, 8], help="weight widths (default: 1,2,3,4,8)")
    parser.add_argument("--input-bits", type=integer_in(1, 16), default=8, help="pixel bits, 1..16 (default: 8)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", choices=("tensorflow", "jax"), default="jax")
    parser.add_argument("--float-model", type=pathlib.Path, metavar="MODEL.keras",
                        help="a model trained with hone train --no-qat on the same data (default: train one)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/quantize"))
    args = parser.parse_args(argv)
    if args.float_model is not None and not args.float_model.exists():
        parser.error(f"{args.float_model} does not exist")

    from hone.training.backend import select_backend

    select_backend(args.backend)
    import keras
    import numpy as np
    from hone.training import layers  # noqa: F401
    from hone.training.config import TrainConfig
    from hone.network.datasets import DatasetError, load_dataset
    from hone.training.export import evaluate_export, export_network
    from hone.training.qat import quantized_layers
    from hone.training.train import hard_accuracy, train

    try:
        data = load_dataset(args.dataset)
    except DatasetError as error:
        parser.error(f"argument --dataset: {error}")
    x_test = data.x_test

    def trained(name, **settings):
        config = TrainConfig(dataset=args.dataset, arch=args.arch, seed=args.seed, input_bits=args.input_bits,
                             **settings)
        keras.backend.clear_session()
        model, _, summary = train(config, args.out / name, verbose=0)
        print(f"[{name}: {summary['epochs']} epochs, {summary['seconds_per_epoch']:.2f} s/epoch, "
              f"sharpened {100 * summary['sharpened_accuracy']:.2f}%]", flush=True)
        return model

    if args.float_model is not None:
        float_model = keras.saving.load_model(args.float_model)
        if quantized_layers(float_model):   # its "post-training" column would be its trained integers
            parser.error(f"argument --float-model: {args.float_model} was trained quantization-aware; "
                         f"expected a model of hone train --no-qat")
    else:
        float_model = trained("float", qat=False)
    reference = hard_accuracy(float_model, x_test, data.y_test)
    rows = []
    header = (f"{'bits':>4}  {'keras float-step':>16}  {'ptq':>7}  {'ptq per-layer':>13}  {'qat':>7}  "
              f"{'qat keras/integer differ':>24}")
    lines = [header]
    for bits in args.bits:
        row = {"dataset": args.dataset, "arch": args.arch, "weight_bits": bits, "input_bits": args.input_bits,
               "keras": round(reference, 4)}
        for per_neuron, label in ((True, "ptq"), (False, "ptq_per_layer")):
            network, floats = export_network(float_model, weight_bits=bits, input_bits=args.input_bits,
                                             per_neuron=per_neuron)
            row[label] = round(evaluate_export(float_model, network, floats, x_test, data.y_test)
                               ["accuracy"]["integer"], 4)
        model = trained(f"qat-{bits}", weight_bits=bits)
        network, floats = export_network(model, weight_bits=bits, input_bits=args.input_bits)
        report = evaluate_export(model, network, floats, x_test, data.y_test)
        row.update(qat=round(report["accuracy"]["integer"], 4),
                   qat_keras=round(report["accuracy"]["keras_sharpened"], 4),
                   qat_disagreements=report["disagreements"],
                   qat_disagreements_near_threshold=report["disagreements_near_threshold"])
        rows.append(row)
        lines.append(f"{bits:>4}  {100 * reference:>15.2f}%  {100 * row['ptq']:>6.2f}%  "
                     f"{100 * row['ptq_per_layer']:>12.2f}%  {100 * row['qat']:>6.2f}%  "
                     f"{row['qat_disagreements']:>10} ({row['qat_disagreements_near_threshold']} at a threshold)")
        print(lines[-1])
        print(json.dumps(row), flush=True)
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    widths = [r["weight_bits"] for r in rows]
    ax.plot(widths, [100 * r["qat"] for r in rows], marker="o", label="quantization-aware (trained at the width)")
    ax.plot(widths, [100 * r["ptq"] for r in rows], marker="s", label="post-training, one scale per neuron")
    ax.plot(widths, [100 * r["ptq_per_layer"] for r in rows], marker="^", alpha=0.6,
            label="post-training, one scale per layer")
    ax.axhline(100 * reference, color="C3", linestyle="--", label=f"Keras float-step {100 * reference:.2f}%")
    ax.set_xlabel("weight bits")
    ax.set_ylabel("integer test accuracy (%)")
    ax.set_title(f"{args.dataset}, {args.arch}: integer network accuracy against weight bits")
    ax.invert_xaxis()
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "accuracy_vs_bits.png", dpi=110)
    stamp.write(args.out / "quantize.json", rows, bench="quantize")
    print(f"plot: {args.out / 'accuracy_vs_bits.png'}")
    print(json.dumps({"rows": rows, "backend": args.backend}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
