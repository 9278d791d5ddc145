"""Sharpening benchmark: does sharpening keep accuracy, and what does it cost per epoch?

For each configuration it trains hone's default recipe (sharpened until every layer is a step), then
the same architecture for the same number of epochs with sharpness held at 0, and prints one JSON
line: dataset, arch, input encoding, unsharpened and sharpened test accuracy, epochs, seconds per
epoch with and without the sharpener and their ratio. Run folders (model, history, plot) go to
``--out``.

    python bench/train.py                      # dense and conv on Fashion-MNIST (about 40 min on 2 cores)
    python bench/train.py --configs dense      # dense only (about 5 min)
    python bench/train.py --configs dense-binary --dataset digits
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "dense": dict(arch="dense"),
    "dense-binary": dict(arch="dense", binarize=True),
    "conv": dict(arch="conv"),
}


def run(name, overrides, dataset, out, verbose):
    import keras
    from training.config import TrainConfig
    from training.train import train

    sharp_config = TrainConfig(dataset=dataset, **overrides)
    _, _, sharp = train(sharp_config, out / name, verbose=verbose)
    keras.backend.clear_session()
    plain_config = dataclasses.replace(sharp_config, sharpener="none", epochs=sharp["epochs"])
    _, _, plain = train(plain_config, out / f"{name}-unsharpened", verbose=verbose)
    keras.backend.clear_session()
    return {
        "config": name,
        "dataset": dataset,
        "arch": sharp["arch"],
        "encoding": sharp["encoding"],
        "nhot": sharp["nhot"],
        "unsharpened_accuracy": round(plain["final_test_accuracy"], 4),
        "sharpened_accuracy": round(sharp["sharpened_accuracy"], 4),
        "accuracy_gap_points": round(100 * (plain["final_test_accuracy"] - sharp["sharpened_accuracy"]), 2),
        "best_accuracy_before_sharpening": round(sharp["best_accuracy_before_sharpening"] or 0, 4),
        "epochs": sharp["epochs"],
        "sharp_epoch": sharp["sharp_epoch"],
        "s_per_epoch_sharpener": round(sharp["seconds_per_epoch"], 3),
        "s_per_epoch_plain": round(plain["seconds_per_epoch"], 3),
        "sharpener_overhead": round(sharp["seconds_per_epoch"] / plain["seconds_per_epoch"], 3),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="dense,conv",
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default: dense,conv)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/train"))
    parser.add_argument("--verbose", type=int, default=2, help="Keras verbosity (default: 2, a line per epoch)")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; expected some of {', '.join(CONFIGS)}")
    for name in names:
        print(json.dumps(run(name, CONFIGS[name], args.dataset, args.out, args.verbose)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
