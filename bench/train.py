"""Training benchmark: speed per backend side by side, sharpening cost, and accuracy across backends
and devices, all measured in one run.

Parts (``--parts``, default all):

- ``speed``: per backend, seconds per training epoch (Fashion-MNIST, 469 batches of 128, no
  validation pass) of hone's dense recipe (784-256-64-80, BN, dropout, straight-through) with and
  without an active sharpener, fits interleaved in one model so the machine's drift (+-30% from one
  minute to the next on a shared 2-core box) hits both alike; their ratio is the sharpening
  overhead; the previous dense default (784-256-64-40) interleaved with it gives the cost of
  today's default. Then the straight-through phase (every layer sharp) trained in float (``--no-qat``) and
  as the network file's integers (quantization-aware, the default): their ratio is the QAT overhead,
  and the integer epoch over the old default's is bounded at 1.2x on most of the default's epochs.
  Every kind of epoch is alternated with the others in one process.
  Also the plain reference net, as first measured (no BN, no dropout, exact gradient),
  whose TensorFlow time calibrates this machine against the day the reference was measured.
- ``accuracy``: hone's default training (sharpened until every layer is a step), same seed and
  data, on each backend: sharpened test accuracy side by side; then the previous defaults
  (784-256-64-40 trained in float, 20 straight-through epochs), whose whole run's seconds per epoch,
  validation included, against the default's is bounded at 1.2x on epoch time.
- ``widths``: what the dense default's width costs: per backend, float epochs (no validation pass) of
  784-256-64-40 (the previous default) and of today's 784-256-64-80 and wider networks,
  fresh models alternated ``--repeats`` times in one process; each network's median epoch time over
  that of 784-256-64-40 in the same round is its cost against the bound of 1.2x.
- ``data-parallel``: the same training split over 2 virtual CPU devices (``--data-parallel
  --cpu-devices 2``, JAX by default) against one device.

Every backend runs in its own process (Keras picks its backend once, at import). The last stdout
line is one JSON object with every figure.

    python bench/train.py                         # everything (about 12 min on 2 cores)
    python bench/train.py --parts speed           # about 4 min
    python bench/train.py --parts widths --backends jax --repeats 6   # about 2 min
    python bench/train.py --parts accuracy --dataset digits
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import stamp
from hone.cli.arguments import integer_in   # no Keras: each worker chooses its backend

REFERENCE = {"jax": 0.54, "tensorflow": 1.76}   # s/epoch of the plain reference net, first measured
# the previous dense default: its network and recipe (784-256-64-40, trained in float)
PREVIOUS_DEFAULT = {"widths": (256, 64), "nhot": 4, "dropout": 0.2, "start_epoch": 6, "finetune_epochs": 20,
                    "epochs": 60, "qat": False, "output_ramp": False}
BACKENDS = ("tensorflow", "jax")
PARTS = ("speed", "accuracy", "widths", "data-parallel")
# --parts widths: hidden widths of the dense networks costed against the previous default
WIDTHS = ((256, 64), (320, 96), (384, 96), (384, 128), (448, 128), (512, 128))


# -- workers: one backend per process --------------------------------------------------------------

def epoch_seconds(model, data, callbacks=()):
    """Wall seconds of one training epoch of ``model`` on ``data`` (batch 128, no validation pass)."""
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, batch_size=128, epochs=1, verbose=0, callbacks=list(callbacks))
    return time.perf_counter() - start


def speed(dataset, repeats):
    import keras
    from hone.training.config import TrainConfig
    from hone.network.datasets import load_dataset
    from hone.training.sharpeners import SimpleSharpener
    from hone.training.activations import spiking_layers
    from hone.training.qat import start_quantizing
    from hone.training.train import compiled_model

    data = load_dataset(dataset)

    keras.utils.set_random_seed(0)
    model = compiled_model(TrainConfig(dataset=dataset), data)
    sharpener = SimpleSharpener(start_epoch=0, steps=100_000)  # moves every batch, never finishes
    # The previous dense default (784-256-64-40), for the ratio of today's to it.
    previous = compiled_model(TrainConfig(dataset=dataset, **PREVIOUS_DEFAULT), data)
    # The straight-through phase: sharp, and (the default) trained as the network file's integers,
    # against the same sharp model trained in float (post-training quantization, --no-qat).
    phases = {}
    for qat in (False, True):
        keras.utils.set_random_seed(0)
        phases[qat] = compiled_model(TrainConfig(dataset=dataset, qat=qat), data)
        for layer in spiking_layers(phases[qat]):
            layer.set_sharpness(1.0)
        if qat:
            start_quantizing(phases[qat])
    keras.utils.set_random_seed(0)
    reference = compiled_model(TrainConfig(dataset=dataset, batch_norm=False, dropout=0.0, gradient="exact"), data)
    for warm in (model, previous, phases[False], phases[True], reference):
        epoch_seconds(warm, data)  # warm-up: tracing and first-touch costs
    # Every kind of epoch alternated in one process, in turned-around order each round: the machine's
    # speed drifts (and on this one jumps between two regimes about 1.45x apart).
    plain, sharp, before, sharp_float, sharp_qat, reference_times = [], [], [], [], [], []
    for index in range(repeats):
        runs = [(plain, model, []), (sharp, model, [sharpener]), (before, previous, []),
                (sharp_float, phases[False], []), (sharp_qat, phases[True], []), (reference_times, reference, [])]
        for times, fitted, callbacks in (runs if index % 2 else runs[::-1]):
            times.append(epoch_seconds(fitted, data, callbacks))
    phases = {False: sharp_float, True: sharp_qat}
    return {"s_per_epoch": round(min(plain), 3), "s_per_epoch_sharpening": round(min(sharp), 3),
            "sharpening_overhead": round(min(sharp) / min(plain), 3),
            "s_per_epoch_previous_default": round(min(before), 3),
            "default_over_previous_default": round(min(plain) / min(before), 3),
            "s_per_epoch_sharp_float": round(min(phases[False]), 3),
            "s_per_epoch_sharp_quantization_aware": round(min(phases[True]), 3),
            "quantization_aware_overhead": round(min(phases[True]) / min(phases[False]), 3),
            # the default's integer epochs (most of its run) against the old default's epochs
            "quantization_aware_over_previous_default": round(min(phases[True]) / min(before), 3),
            "reference_net_s_per_epoch": round(min(reference_times), 3), "repeats": repeats}


def accuracy(dataset, out, data_parallel):
    import keras
    from hone.training.config import TrainConfig
    from hone.training.train import train

    def trained(config, folder):
        _, _, summary = train(config, folder, verbose=2)
        keras.backend.clear_session()
        return {key: summary[key] for key in ("sharpened_accuracy", "best_accuracy_before_sharpening", "epochs",
                                              "sharp_epoch", "seconds_per_epoch", "engine", "replicas")}

    figures = trained(TrainConfig(dataset=dataset, distribution="data-parallel" if data_parallel else "none"), out)
    if not data_parallel:
        # Whole runs, validation included: the default's seconds per epoch against the previous
        # default's, back to back in one process.
        previous = trained(TrainConfig(dataset=dataset, **PREVIOUS_DEFAULT), out.with_name(out.name + "-previous"))
        figures["previous_default"] = previous
        figures["default_over_previous_default"] = round(figures["seconds_per_epoch"] / previous["seconds_per_epoch"], 3)
    return figures


def widths(dataset, repeats):
    import keras
    import numpy as np
    from hone.training.config import TrainConfig
    from hone.network.datasets import load_dataset
    from hone.training.train import compiled_model

    data = load_dataset(dataset)

    def label(config):
        layers = (int(np.prod(data.input_shape)), *config.widths, data.classes * config.nhot)
        return "-".join(map(str, layers))

    before = TrainConfig(dataset=dataset, **PREVIOUS_DEFAULT)
    configs = {f"{label(before)} (previous default)": before}
    configs |= {label(config): config for config in (TrainConfig(dataset=dataset, widths=hidden) for hidden in WIDTHS)}
    models = {}
    for name, config in configs.items():
        keras.utils.set_random_seed(0)
        models[name] = compiled_model(config, data)

    for model in models.values():
        epoch_seconds(model, data)   # warm-up: tracing and first-touch costs
    names = list(models)
    times = {name: [] for name in names}
    for index in range(repeats):   # alternate the order, so drift hits every network alike
        for name in (names if index % 2 else names[::-1]):
            times[name].append(epoch_seconds(models[name], data))
    base = times[names[0]]
    return {"networks": {name: {
        "weights": sum(int(np.prod(w.shape)) for w in models[name].trainable_weights if len(w.shape) == 2),
        "s_per_epoch_fastest": round(min(t), 3), "s_per_epoch_median": round(float(np.median(t)), 3),
        "over_before": round(float(np.median([a / b for a, b in zip(t, base)])), 3)}
        for name, t in times.items()}, "repeats": repeats}


def worker(args):
    from hone.training.backend import select_backend

    from hone.network.datasets import DatasetError

    select_backend(args.backend, cpu_devices=args.cpu_devices)
    try:
        if args.worker == "speed":
            figures = speed(args.dataset, args.repeats)
        elif args.worker == "widths":
            figures = widths(args.dataset, args.repeats)
        else:
            figures = accuracy(args.dataset, args.out / f"{args.worker}-{args.backend}",
                               args.worker == "data-parallel")
    except DatasetError as error:
        print(f"train.py: error: argument --dataset: {error}", file=sys.stderr)
        return 2
    figures["backend"] = args.backend
    print(json.dumps(figures), flush=True)


# -- driver ----------------------------------------------------------------------------------------

def run_worker(part, backend, args, cpu_devices=None):
    command = [sys.executable, __file__, "--worker", part, "--backend", backend, "--dataset", args.dataset,
               "--repeats", str(args.repeats), "--out", str(args.out)]
    if cpu_devices:
        command += ["--cpu-devices", str(cpu_devices)]
    print(f"[{part} on {backend}{f', {cpu_devices} virtual CPU devices' if cpu_devices else ''}]", flush=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(command, stdout=subprocess.PIPE, text=True, env=env)
    lines = result.stdout.strip().splitlines()
    print("\n".join(lines[-6:-1]), flush=True)  # the last epochs' lines, for the record
    if result.returncode != 0 or not lines:
        raise SystemExit(f"the {part} run on {backend} failed (exit {result.returncode})")
    return json.loads(lines[-1])


def table(rows, columns):
    width = max(len(name) for name, _ in rows) + 2
    lines = [" " * width + "".join(f"{column:>14}" for column in columns)]
    lines += [f"{name:<{width}}" + "".join(f"{value:>14}" for value in values) for name, values in rows]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {', '.join(PARTS)}")
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--data-parallel-backends", default="jax",
                        help="backends for the data-parallel part (default: jax; tensorflow's "
                             "MirroredStrategy on virtual CPUs takes about 10x longer per epoch)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--repeats", type=integer_in(1), default=4, help="timed epochs of each kind (default: 4)")
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("bench/out/train"))
    parser.add_argument("--worker", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--backend", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--cpu-devices", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    for name, allowed in (("part", PARTS), ("backend", BACKENDS)):
        for value in parts if name == "part" else backends:
            if value not in allowed:
                parser.error(f"unknown {name} {value!r}; expected some of {', '.join(allowed)}")

    figures = {"dataset": args.dataset}
    if "speed" in parts:
        measured = {backend: run_worker("speed", backend, args) for backend in backends}
        figures["speed"] = measured
        rows = [("s/epoch, hone recipe", [measured[b]["s_per_epoch"] for b in backends]),
                ("  with the sharpener", [measured[b]["s_per_epoch_sharpening"] for b in backends]),
                ("  sharpening overhead", [f"{measured[b]['sharpening_overhead']:.3f}x" for b in backends]),
                ("s/epoch, 784-256-64-40", [measured[b]["s_per_epoch_previous_default"] for b in backends]),
                ("  default / that", [f"{measured[b]['default_over_previous_default']:.3f}x" for b in backends]),
                ("s/epoch sharp, float", [measured[b]["s_per_epoch_sharp_float"] for b in backends]),
                ("  as integers (QAT)", [measured[b]["s_per_epoch_sharp_quantization_aware"] for b in backends]),
                ("  QAT overhead", [f"{measured[b]['quantization_aware_overhead']:.3f}x" for b in backends]),
                ("  QAT / 784-256-64-40", [f"{measured[b]['quantization_aware_over_previous_default']:.3f}x"
                                           for b in backends]),
                ("s/epoch, reference net", [measured[b]["reference_net_s_per_epoch"] for b in backends])]
        print(table(rows, backends))
        if {"jax", "tensorflow"} <= set(backends):
            fastest = min(backends, key=lambda b: measured[b]["s_per_epoch"])
            # This machine against the day the reference net was first measured (its TensorFlow time).
            slowdown = measured["tensorflow"]["reference_net_s_per_epoch"] / REFERENCE["tensorflow"]
            figures["speed"]["summary"] = {
                "fastest_backend": fastest,
                "speedup_fastest_over_tensorflow": round(
                    measured["tensorflow"]["s_per_epoch"] / measured[fastest]["s_per_epoch"], 2),
                "machine_slowdown_vs_reference_day": round(slowdown, 3),
                "fastest_reference_net_vs_0.54": round(
                    measured[fastest]["reference_net_s_per_epoch"] / REFERENCE["jax"], 3),
                "fastest_reference_net_vs_0.54_machine_adjusted": round(
                    measured[fastest]["reference_net_s_per_epoch"] / slowdown / REFERENCE["jax"], 3),
            }
            print(json.dumps(figures["speed"]["summary"]))
    if "accuracy" in parts:
        measured = {backend: run_worker("accuracy", backend, args) for backend in backends}
        figures["accuracy"] = measured
        print(table([("sharpened accuracy", [f"{100 * measured[b]['sharpened_accuracy']:.2f}%" for b in backends]),
                     ("epochs", [measured[b]["epochs"] for b in backends]),
                     ("s/epoch (with validation)", [round(measured[b]["seconds_per_epoch"], 3) for b in backends]),
                     ("previous defaults", [f"{100 * measured[b]['previous_default']['sharpened_accuracy']:.2f}%"
                                                   for b in backends]),
                     ("  epochs", [measured[b]["previous_default"]["epochs"] for b in backends]),
                     ("  s/epoch (with validation)",
                      [round(measured[b]["previous_default"]["seconds_per_epoch"], 3) for b in backends]),
                     ("default / that, s/epoch", [f"{measured[b]['default_over_previous_default']:.3f}x"
                                                  for b in backends])],
                    backends))
        if len(backends) == 2:
            gap = abs(measured[backends[0]]["sharpened_accuracy"] - measured[backends[1]]["sharpened_accuracy"])
            figures["accuracy"]["gap_points"] = round(100 * gap, 2)
            print(f"sharpened accuracy gap between backends: {100 * gap:.2f} points")
    if "widths" in parts:
        measured = {backend: run_worker("widths", backend, args) for backend in backends}
        figures["widths"] = measured
        for backend in backends:
            networks = measured[backend]["networks"]
            print(table([(name, [f"{n['weights']:,}", n["s_per_epoch_fastest"], f"{n['over_before']:.2f}x"])
                         for name, n in networks.items()], [f"{backend}: weights", "s/epoch", "/ before"]))
    if "data-parallel" in parts:
        figures["data_parallel"] = {}
        for backend in [b.strip() for b in args.data_parallel_backends.split(",") if b.strip()]:
            single = figures.get("accuracy", {}).get(backend) or run_worker("accuracy", backend, args)
            split = run_worker("data-parallel", backend, args, cpu_devices=2)
            gap = 100 * abs(split["sharpened_accuracy"] - single["sharpened_accuracy"])
            figures["data_parallel"][backend] = {"one_device": single, "two_devices": split,
                                                 "gap_points": round(gap, 2)}
            print(table([("sharpened accuracy", [f"{100 * single['sharpened_accuracy']:.2f}%",
                                                 f"{100 * split['sharpened_accuracy']:.2f}%"]),
                         ("epochs", [single["epochs"], split["epochs"]]),
                         ("s/epoch", [round(single["seconds_per_epoch"], 3), round(split["seconds_per_epoch"], 3)])],
                        [f"{backend} x1", f"{backend} x2"]))
            print(f"{backend}: 2 virtual devices vs 1: {gap:.2f} points apart")
    stamp.write(args.out / "train.json", figures, bench="train")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
