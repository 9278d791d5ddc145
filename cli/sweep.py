"""``hone sweep``: sweep sharpener hyperparameters with KerasTuner (:mod:`hone.training.sweep`)."""

import dataclasses
import json
import pathlib

from hone.cli.arguments import integer_in
from hone.cli.train import add_network_arguments, add_train_arguments, config_from, use_backend

__all__ = ["add_commands"]


def cmd_sweep(args):
    from hone.training.sweep import format_sweep, grid_size, parse_space

    config = config_from(args)
    use_backend(args.backend, args.cpu_devices)  # before parse_space, whose checks build sharpeners
    space = parse_space(args.vary or [], config.sharpener)   # a SweepError is one hone: error: line
    from hone.training.sweep import run_sweep

    ranges = "; ".join(f"{name} in {', '.join(f'{value:g}' for value in values)}" for name, values in space.items())
    print(f"sweeping {ranges} ({grid_size(space)} combinations, {args.search} search) on {config.dataset}",
          flush=True)
    figures = run_sweep(config, space, args.out, search=args.search, trials=args.trials, seed=args.seed,
                        log=lambda line: print(line, flush=True))
    if figures is None:
        print("worker finished: the chief writes the table")
        return
    best = figures["best"]
    print(format_sweep(figures["rows"], space, best))
    print(f"best trial {best['trial']}: " + ", ".join(f"{name}={best[name]:g}" for name in space)
          + f" -> sharpened {100 * best['val_sharpened_accuracy']:.2f}% validation, "
          f"{100 * best['test_sharpened_accuracy']:.2f}% test")
    print(f"table {figures['table']}, plot {figures['plot']}")
    if args.json:
        print(json.dumps(figures, default=str))


def add_commands(commands):
    """Register ``sweep`` on the ``hone`` subparsers."""
    from hone.training.config import TrainConfig

    defaults = TrainConfig()
    sweep = commands.add_parser(
        "sweep", help="sweep sharpener hyperparameters with KerasTuner",
        description="Train one sharpened network per trial with KerasTuner and tabulate and plot the "
                    "sharpened (hard-step) accuracy against each hyperparameter. The objective is the "
                    "accuracy on a validation split of the training set; the test set is only reported. "
                    "Distributed: run the same command per process with KerasTuner's KERASTUNER_* "
                    "variables (see README).")
    add_train_arguments(sweep, dataclasses.replace(defaults, sharpener="adaptive"))
    add_network_arguments(sweep, defaults)
    sweep.add_argument("--vary", action="append", metavar="NAME=V1,V2,..",
                       help="a hyperparameter and its values (repeatable), e.g. --vary rate=0.1,0.25 "
                            "--vary nhot=2,4 (default: rate, critical, patience, nhot, finetune-epochs)")
    sweep.add_argument("--search", choices=("grid", "random", "bayesian"), default="grid")
    sweep.add_argument("--trials", type=integer_in(1), help="trials to run (default: the whole grid; 10 otherwise)")
    sweep.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR",
                       help="sweep folder (trial run folders, table, plot); rerun to resume")
    sweep.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    sweep.set_defaults(handler=cmd_sweep)
