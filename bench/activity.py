"""Activity benchmark: Whetstone's sparsity analysis (Severa et al. 2019) reproduced on hone's networks.

For each architecture (``--arch``, default dense and conv) it trains hone's default recipe four
ways: with and without batch normalization, with Adam and with SGD (momentum 0.9, at
``--sgd-learning-rate``), each with ``hone train`` (same seed and data), exports each to a network
file with ``hone export`` and prints side by side: sharpened accuracy (Keras, exact steps), accuracy
as integers (the network file), synaptic operations per inference of the event-driven core against
a dense engine (in all, and past the first layer, whose work the pixels alone set), the Gini coefficient of per-unit activity of every neuron layer, and dead and
saturated units (all from the integer network on the whole test set, :mod:`hone.network.activity`).

Every run lives in its own folder under ``--out`` and is reused when its network file and report
exist, so an interrupted benchmark resumes. The last stdout line is one JSON object with every
figure; ``activity.json`` and ``activity.png`` (Gini per layer, synaptic operations per inference)
land in ``--out``.

    python bench/activity.py --arch dense --backend jax        # 4 dense runs, ~3 min each on 2 cores
    python bench/activity.py --arch conv --backend jax         # 4 conv runs, ~25 min each
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys

import stamp

VARIANTS = (("bn", "adam"), ("no-bn", "adam"), ("bn", "sgd"), ("no-bn", "sgd"))


def hone(*args):
    """Run ``python -m hone ARGS --json``; its JSON figures (the last stdout line)."""
    command = [sys.executable, "-m", "hone", *map(str, args), "--json"]
    print("$ hone " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        sys.exit(f"bench/activity.py: hone {args[0]} failed (status {done.returncode}):\n{done.stdout[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(arch, norm, optimizer, args):
    """Train and export one variant (reused when done); its row."""
    folder = args.out / f"{arch}-{norm}-{optimizer}"
    network, report_path, summary_path = folder / "net.hone", folder / "net.hone.json", folder / "train.json"
    if not summary_path.exists():
        train = ["train", "--arch", arch, "--dataset", args.dataset, "--seed", args.seed, "--out", folder / "train",
                 "--optimizer", optimizer]
        train += ["--no-batch-norm"] if norm == "no-bn" else []
        train += ["--learning-rate", args.sgd_learning_rate] if optimizer == "sgd" else []
        train += ["--backend", args.backend] if args.backend else []
        train += ["--epochs", args.epochs] if args.epochs else []
        train += args.train_arg or []
        folder.mkdir(parents=True, exist_ok=True)
        summary_path.write_text(json.dumps(hone(*train)))
    summary = json.loads(summary_path.read_text())
    if not report_path.exists():
        hone("export", folder / "train" / "model.keras", "--weight-bits", args.weight_bits, "-o", network,
             *(["--backend", args.backend] if args.backend else []))
    report = json.loads(report_path.read_text())
    activity = report["activity"]
    neuron_layers = [layer for layer in activity["layers"] if layer["kind"] != "maxpool2d"]
    return {
        "arch": arch, "batch_norm": norm == "bn", "optimizer": optimizer,
        "learning_rate": args.sgd_learning_rate if optimizer == "sgd" else 1e-3,
        "fully_sharp": summary["fully_sharp"], "epochs": summary["epochs"],
        "sharpened_accuracy": summary["sharpened_accuracy"], "integer_accuracy": report["accuracy"]["integer"],
        "synops_mean": activity["total"]["synops_mean"], "dense_synops": activity["total"]["dense_synops"],
        "synops_fraction": activity["total"]["synops_fraction"],
        # past the first layer (whose work is set by the pixels alone): what training can change
        "synops_hidden": activity["total"]["synops_mean"] - activity["layers"][0]["synops_mean"],
        "spikes_mean": activity["total"]["spikes_mean"],
        "gini": {layer["name"]: layer["gini"] for layer in neuron_layers},
        "rate": {layer["name"]: layer["rate"] for layer in neuron_layers},
        "dead": sum(layer["dead"] for layer in neuron_layers),
        "saturated": sum(layer["saturated"] for layer in neuron_layers),
        "units": sum(layer["units"] for layer in neuron_layers),
        "network": str(network),
    }


def table(rows):
    layers = list(rows[0]["gini"])
    head = (f"{'arch':<6}{'BN':<4}{'optimizer':<10}{'sharpened':>10}{'integer':>9}{'synaptic ops/inf':>18}"
            f"{'dense engine':>14}{'ratio':>7}{'past layer 0':>14}{'spikes/inf':>11}" + "".join(f"{'Gini ' + n:>16}" for n in layers)
            + f"{'dead':>7}{'sat.':>6}")
    lines = [head]
    for row in rows:
        lines.append(
            f"{row['arch']:<6}{'yes' if row['batch_norm'] else 'no':<4}{row['optimizer']:<10}"
            f"{row['sharpened_accuracy']:>10.2%}{row['integer_accuracy']:>9.2%}{row['synops_mean']:>18,.0f}"
            f"{row['dense_synops']:>14,}{row['synops_fraction']:>7.1%}{row['synops_hidden']:>14,.0f}{row['spikes_mean']:>11.1f}"
            + "".join(f"{row['gini'].get(n, float('nan')):>16.3f}" for n in layers)
            + f"{row['dead']:>7}{row['saturated']:>6}" + ("" if row["fully_sharp"] else "  (not fully sharp)"))
    return "\n".join(lines)


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    archs = sorted({row["arch"] for row in rows}, key=["dense", "conv"].index)
    figure, axes = plt.subplots(len(archs), 2, figsize=(12, 4 * len(archs)), squeeze=False)
    for (gini_axis, work_axis), arch in zip(axes, archs):
        subset = [row for row in rows if row["arch"] == arch]
        layers = list(subset[0]["gini"])
        width = 0.8 / len(subset)
        labels = [f"{'BN' if r['batch_norm'] else 'no BN'}, {r['optimizer']}" for r in subset]
        for index, (row, label) in enumerate(zip(subset, labels)):
            gini_axis.bar(np.arange(len(layers)) + (index - (len(subset) - 1) / 2) * width,
                          [row["gini"][n] for n in layers], width, label=f"{label} ({row['integer_accuracy']:.1%})")
        gini_axis.set_xticks(np.arange(len(layers)), layers)
        gini_axis.set_ylabel("Gini of per-unit activity")
        gini_axis.set_title(f"{arch}: sparsity per layer (integer accuracy in the legend)")
        gini_axis.legend(fontsize=8)
        first = [row["synops_mean"] - row["synops_hidden"] for row in subset]
        work_axis.bar(labels, first, label="event-driven, first layer (set by the pixels)")
        work_axis.bar(labels, [row["synops_hidden"] for row in subset], bottom=first,
                      label="event-driven, past the first layer")
        work_axis.axhline(subset[0]["dense_synops"], color="k", linestyle=":", label="dense engine")
        work_axis.set_ylabel("synaptic operations / inference")
        work_axis.set_title(f"{arch}: work per inference")
        work_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="dense,conv", help="comma-separated: dense, conv (default: both)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--backend", choices=("tensorflow", "jax"), help="Keras backend of every run")
    parser.add_argument("--epochs", type=int, help="maximum epochs (default: hone train's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--weight-bits", type=int, default=4)
    parser.add_argument("--sgd-learning-rate", type=float, default=0.01,
                        help="learning rate of the SGD runs (Adam keeps hone's 1e-3; default: 0.01)")
    parser.add_argument("--train-arg", action="append", metavar="ARG",
                        help="one more argument for every hone train (repeatable), e.g. --train-arg=--no-qat")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/activity"))
    args = parser.parse_args(argv)
    archs = [a for a in args.arch.split(",") if a]
    if not archs or any(a not in ("dense", "conv") for a in archs):
        parser.error(f"--arch takes dense and/or conv, got {args.arch!r}")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args.out.mkdir(parents=True, exist_ok=True)
    rows = [run(arch, norm, optimizer, args) for arch in archs for norm, optimizer in VARIANTS]
    for arch in archs:
        print(table([row for row in rows if row["arch"] == arch]))
    stamp.write(args.out / "activity.json", rows, bench="activity")
    plot(rows, args.out / "activity.png")
    print(f"plot {args.out / 'activity.png'}")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
