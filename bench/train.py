"""Sharpening benchmark: does sharpening keep accuracy, and what does it cost per epoch?

For each configuration it trains hone's default recipe (sharpened until every layer is a step), then
the same architecture for the same number of epochs with sharpness held at 0, and prints one JSON
line: dataset, arch, input encoding, unsharpened and sharpened test accuracy, epochs, seconds per
epoch with and without the sharpener and their ratio. Run folders (model, history, plot) go to
``--out``.

Seconds per epoch on a shared 2-core machine drift by +-30% from one minute to the next, so the
overhead ratio is not taken from the two long runs (their medians are printed for reference) but
measured in one model, alternating one-epoch fits with and without an active sharpener
(``--repeats`` of each, same data, same validation pass); the ratio compares the fastest of each.

    python bench/train.py                      # dense and conv on Fashion-MNIST (about 60 min on 2 cores)
    python bench/train.py --configs dense      # dense only (about 6 min)
    python bench/train.py --overhead-only      # only the interleaved overhead measurement
    python bench/train.py --configs dense-binary --dataset digits
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CONFIGS = {
    "dense": dict(arch="dense"),
    "dense-binary": dict(arch="dense", binarize=True),
    "conv": dict(arch="conv"),
}


def overhead(overrides, dataset, repeats):
    """Interleaved one-epoch fits with and without a sharpener that moves every batch."""
    import keras
    from training.config import TrainConfig
    from training.datasets import load_dataset
    from training.sharpeners import SimpleSharpener
    from training.train import compiled_model

    config = TrainConfig(dataset=dataset, **overrides)
    data = load_dataset(config.dataset, binarize=config.binarize)
    keras.utils.set_random_seed(config.seed)
    model = compiled_model(config, data)
    sharpener = SimpleSharpener(start_epoch=0, steps=1000)  # active on every batch, never finishes

    def epoch(callbacks):
        start = time.perf_counter()
        model.fit(data.x_train, data.y_train, batch_size=config.batch_size, epochs=1, verbose=0,
                  validation_data=(data.x_test, data.y_test), callbacks=callbacks)
        return time.perf_counter() - start

    epoch([])  # warm-up: tracing and first-touch costs
    plain, sharp = [], []
    for index in range(repeats):
        if index % 2:
            plain.append(epoch([]))
            sharp.append(epoch([sharpener]))
        else:
            sharp.append(epoch([sharpener]))
            plain.append(epoch([]))
    keras.backend.clear_session()
    return {
        "s_per_epoch_sharpener": round(min(sharp), 3),
        "s_per_epoch_plain": round(min(plain), 3),
        "sharpener_overhead": round(min(sharp) / min(plain), 3),
        "overhead_repeats": repeats,
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
        "median_s_per_epoch_runs": [round(sharp["seconds_per_epoch"], 3),
                                    round(plain["seconds_per_epoch"], 3)],
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="dense,conv",
                        help=f"comma-separated, from {', '.join(CONFIGS)} (default: dense,conv)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/train"))
    parser.add_argument("--verbose", type=int, default=2, help="Keras verbosity (default: 2, a line per epoch)")
    parser.add_argument("--repeats", type=int, default=4,
                        help="one-epoch fits of each kind for the overhead ratio (default: 4)")
    parser.add_argument("--overhead-only", action="store_true",
                        help="skip the accuracy runs; only measure the sharpener's overhead")
    args = parser.parse_args(argv)
    names = [name.strip() for name in args.configs.split(",") if name.strip()]
    unknown = [name for name in names if name not in CONFIGS]
    if unknown:
        parser.error(f"unknown config(s) {', '.join(unknown)}; expected some of {', '.join(CONFIGS)}")
    for name in names:
        figures = {"config": name} if args.overhead_only else run(
            name, CONFIGS[name], args.dataset, args.out, args.verbose)
        figures.update(overhead(CONFIGS[name], args.dataset, args.repeats))
        print(json.dumps(figures), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
