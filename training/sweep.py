"""Sharpener hyperparameter sweeps, run by KerasTuner: the engine behind ``hone sweep``.

Each trial is a whole :func:`~hone.training.train.train` run (sharpened until every layer is a step) with
some :class:`~hone.training.config.TrainConfig` fields set from the trial's hyperparameters. The objective
is the *sharpened* (hard-step) accuracy on a validation split held out of the training set, so the
test set stays untouched by the search; the table reports both.

KerasTuner's own distributed mode is the scale-out path: run the same ``hone sweep`` command once with
``KERASTUNER_TUNER_ID=chief`` and once per worker with ``KERASTUNER_TUNER_ID=tunerN`` (all with
``KERASTUNER_ORACLE_IP`` / ``KERASTUNER_ORACLE_PORT`` naming the chief); the chief hands out trials and
writes the table when they are done.
"""

import csv
import dataclasses
import json
import math
import os
import pathlib

import numpy as np

from .config import TrainConfig
from hone.network.errors import HoneError

__all__ = ["SWEEPABLE", "DEFAULT_SPACE", "SweepError", "parse_space", "grid_size", "run_sweep",
           "format_sweep", "plot_sweep"]

#: Fields a sweep may vary, with the sharpener they apply to (None: any).
SWEEPABLE = {
    "rate": "adaptive", "critical": "adaptive", "cz_rate": "adaptive", "patience": "adaptive",
    "min_init_epochs": "adaptive", "sig_increase": "adaptive", "sig_decrease": "adaptive",
    "start_epoch": "simple", "steps": "simple", "epochs_per_step": "simple",
    "nhot": None, "finetune_epochs": None, "settle_epochs": None, "learning_rate": None,
    "decode_scale": None, "dropout": None, "conv_dropout": None, "ema_momentum": None,
}
#: The default space: the adaptive sharpener's speed and critical zone, its patience, the N-hot
#: width and the straight-through fine-tune.
DEFAULT_SPACE = {"rate": (0.1, 0.25, 0.5), "critical": (0.5, 0.75, 0.9), "patience": (1, 2),
                 "nhot": (2, 4, 8), "finetune_epochs": (0, 5, 20)}
SEARCHES = ("grid", "random", "bayesian")
OBJECTIVE = "val_sharpened_accuracy"


class SweepError(HoneError, ValueError):
    """A sweep specification that cannot run."""


def parse_space(specs, sharpener):
    """``["rate=0.1,0.25", "nhot=2,4"]`` -> ``{"rate": (0.1, 0.25), "nhot": (2, 4)}``, checked."""
    types = {field.name: field.type for field in dataclasses.fields(TrainConfig)}
    space = {}
    for spec in specs:
        name, sep, values = spec.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or not values.strip():
            raise SweepError(f"--vary {spec!r}: expected NAME=V1,V2,... (e.g. rate=0.1,0.25)")
        if name not in SWEEPABLE:
            raise SweepError(f"--vary {spec!r}: {name!r} cannot be swept; choose from {', '.join(SWEEPABLE)}")
        if name in space:
            raise SweepError(f"--vary {name} is given twice")
        kind = types[name]   # int, or int | None for a default that depends on the architecture
        cast = int if kind in (int, "int") or int in getattr(kind, "__args__", ()) else float
        try:
            parsed = tuple(cast(value) for value in values.split(","))
        except ValueError:
            kind = "integers" if cast is int else "numbers"
            raise SweepError(f"--vary {spec!r}: the values of {name} must be {kind}") from None
        if len(set(parsed)) != len(parsed):
            raise SweepError(f"--vary {spec!r}: a value is repeated")
        space[name] = parsed
    space = space or dict(DEFAULT_SPACE)
    for name in space:
        wanted = SWEEPABLE[name]
        if wanted is not None and wanted != sharpener:
            raise SweepError(f"{name} is a setting of the {wanted} sharpener, but the sweep trains with "
                             f"--sharpener {sharpener}")
    for name, values in space.items():  # every value must make a valid configuration
        for value in values:
            try:
                dataclasses.replace(TrainConfig(sharpener=sharpener), **{name: value}).make_sharpener()
            except (TypeError, ValueError) as error:
                raise SweepError(f"--vary {name}={value}: {error}") from None
    return space


def grid_size(space):
    return math.prod(len(values) for values in space.values())


def _hyperparameters(space):
    import keras_tuner

    hp = keras_tuner.HyperParameters()
    for name, values in space.items():
        hp.Choice(name, list(values), ordered=all(isinstance(v, (int, float)) for v in values))
    return hp


def validation_split(data, fraction=0.1, seed=0):
    """``data`` with a stratified ``fraction`` of its training set moved into ``x_test``/``y_test``."""
    rng = np.random.default_rng(seed)
    held = []
    for label in np.unique(data.y_train):
        members = np.flatnonzero(data.y_train == label)
        held.extend(rng.choice(members, max(1, round(fraction * len(members))), replace=False))
    held = np.sort(np.array(held))
    kept = np.setdiff1d(np.arange(len(data.y_train)), held)
    return dataclasses.replace(data, x_train=data.x_train[kept], y_train=data.y_train[kept],
                               x_test=data.x_train[held], y_test=data.y_train[held])


def _tuner_class():
    import keras
    import keras_tuner

    from .train import TrainingIncomplete, hard_accuracy, train

    class SharpenerTuner(keras_tuner.Tuner):
        """Runs each trial as a whole hone training; reports hard-step accuracies."""

        def __init__(self, oracle, *, base, data, tuning, out, log, **kwargs):
            super().__init__(oracle, **kwargs)
            self.base, self.data, self.tuning, self.out, self.log = base, data, tuning, out, log

        def run_trial(self, trial, *args, **kwargs):
            values = dict(trial.hyperparameters.values)
            config = dataclasses.replace(self.base, **values)
            folder = self.out / f"trial-{trial.trial_id}"
            try:
                model, _, summary = train(config, folder, verbose=0, data=self.tuning)
                test = hard_accuracy(model, self.data.x_test, self.data.y_test)
            except TrainingIncomplete as error:  # still a result: the accuracy with every layer forced sharp
                summary = error.summary
                model = keras.saving.load_model(folder / "model.keras")
                test = hard_accuracy(model, self.data.x_test, self.data.y_test)
            keras.backend.clear_session()
            metrics = {OBJECTIVE: summary["sharpened_accuracy"], "test_sharpened_accuracy": test,
                       "fully_sharp": float(summary["fully_sharp"]), "epochs": float(summary["epochs"]),
                       "seconds": summary["seconds"]}
            self.log(f"trial {trial.trial_id}: "
                     + ", ".join(f"{name}={value}" for name, value in values.items())
                     + f" -> validation {100 * metrics[OBJECTIVE]:.2f}%, test {100 * test:.2f}%, "
                     f"{summary['epochs']} epochs" + ("" if summary["fully_sharp"] else " (NOT fully sharp)"))
            return metrics

    return SharpenerTuner


def _oracle(search, space, trials, seed):
    import keras_tuner

    objective = keras_tuner.Objective(OBJECTIVE, direction="max")
    kinds = {"grid": keras_tuner.oracles.GridSearchOracle, "random": keras_tuner.oracles.RandomSearchOracle,
             "bayesian": keras_tuner.oracles.BayesianOptimizationOracle}
    return kinds[search](objective=objective, max_trials=trials, seed=seed,
                         hyperparameters=_hyperparameters(space), tune_new_entries=False,
                         allow_new_entries=False)


def is_sweep_worker():
    """True in a KerasTuner worker process (``KERASTUNER_TUNER_ID`` set, not ``chief``)."""
    tuner_id = os.environ.get("KERASTUNER_TUNER_ID")
    return bool(tuner_id) and tuner_id != "chief" and "KERASTUNER_ORACLE_IP" in os.environ


def run_sweep(base, space, out, *, search="grid", trials=None, seed=0, log=print, data=None):
    """Run the sweep; returns its figures and rows (``None`` on a distributed worker, whose chief reports).

    Writes under ``out``: ``trial-<id>/`` run folders, ``tuner/`` (KerasTuner's state: a rerun with
    the same folder resumes), ``sweep.csv``, ``sweep.md``, ``sweep.json`` and ``sweep.png``.
    """
    import keras

    from hone.network.datasets import load_dataset

    if search not in SEARCHES:
        raise SweepError(f"unknown search {search!r}; expected one of {', '.join(SEARCHES)}")
    if trials is None:
        trials = grid_size(space) if search == "grid" else 10
    if trials < 1:
        raise SweepError(f"--trials must be >= 1, got {trials}")
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    # KerasTuner resumes from out/tuner: only the same search over the same space may resume.
    recorded, setup = out / "space.json", {"search": search, "space": {k: list(v) for k, v in space.items()},
                                           "base_config": json.loads(json.dumps(dataclasses.asdict(base)))}
    if recorded.exists() and json.loads(recorded.read_text()) != setup:
        before = json.loads(recorded.read_text())
        raise SweepError(f"{out} holds a {before['search']} sweep over {before['space']} with other settings; "
                         f"resume it with the same options, or pass another --out")
    if not recorded.exists() and (out / "tuner").exists():
        raise SweepError(f"{out}/tuner holds a KerasTuner project hone did not record; pass another --out")
    recorded.write_text(json.dumps(setup, indent=1))
    data = data or load_dataset(base.dataset, binarize=base.binarize)
    tuning = validation_split(data, seed=base.seed)
    tuner = _tuner_class()(_oracle(search, space, trials, seed), base=base, data=data, tuning=tuning, out=out,
                           log=log, directory=str(out), project_name="tuner")
    tuner.search(verbose=0)
    if is_sweep_worker():
        return None
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: int(t.trial_id)):
        if trial.status != "COMPLETED":
            continue
        metrics = {name: trial.metrics.get_last_value(name) for name in
                   (OBJECTIVE, "test_sharpened_accuracy", "fully_sharp", "epochs", "seconds")}
        rows.append({"trial": trial.trial_id, **{name: trial.hyperparameters.values[name] for name in space},
                     "val_sharpened_accuracy": metrics[OBJECTIVE],
                     "test_sharpened_accuracy": metrics["test_sharpened_accuracy"],
                     "fully_sharp": bool(metrics["fully_sharp"]), "epochs": int(metrics["epochs"]),
                     "seconds": metrics["seconds"]})
    if not rows:
        raise SweepError(f"no trial of the sweep in {out} completed")
    best = max(rows, key=lambda row: row["val_sharpened_accuracy"])
    figures = {"search": search, "space": {k: list(v) for k, v in space.items()}, "trials": len(rows),
               "best": best, "table": str(out / "sweep.md"), "plot": str(out / "sweep.png"),
               "backend": keras.backend.backend(), "base_config": dataclasses.asdict(base), "rows": rows}
    with open(out / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (out / "sweep.md").write_text(format_sweep(rows, space, best) + "\n")
    (out / "sweep.json").write_text(json.dumps(figures, indent=1, default=str))
    plot_sweep(rows, space, out / "sweep.png", title=f"{base.dataset} / {base.arch} / {base.sharpener} sharpener")
    return figures


def format_sweep(rows, space, best):
    """The trials as a Markdown table, best validation accuracy first."""
    head = ["trial", *space, "validation (sharp)", "test (sharp)", "epochs", "sharp", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in sorted(rows, key=lambda r: -r["val_sharpened_accuracy"]):
        mark = " **best**" if row == best else ""
        lines.append("| " + " | ".join([
            row["trial"] + mark, *(f"{row[name]:g}" for name in space),
            f"{100 * row['val_sharpened_accuracy']:.2f}%", f"{100 * row['test_sharpened_accuracy']:.2f}%",
            str(row["epochs"]), "yes" if row["fully_sharp"] else "NO", f"{row['seconds']:.0f}"]) + " |")
    return "\n".join(lines)


def plot_sweep(rows, space, path, title=""):
    """Sharpened accuracy against each hyperparameter: every trial, and the mean per value."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(space)
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names) + 0.6, 3.6), sharey=True, squeeze=False)
    for axis, name in zip(axes[0], names):
        values = sorted(space[name])
        where = {value: index for index, value in enumerate(values)}
        for key, label, style in (("val_sharpened_accuracy", "validation", "o"),
                                  ("test_sharpened_accuracy", "test", "x")):
            xs = [where[row[name]] + (-0.08 if style == "o" else 0.08) for row in rows]
            ys = [100 * row[key] for row in rows]
            axis.scatter(xs, ys, marker=style, alpha=0.6, label=label)
            means = [np.mean([100 * row[key] for row in rows if row[name] == value] or [np.nan]) for value in values]
            axis.plot(range(len(values)), means, alpha=0.8)
        axis.set_xticks(range(len(values)), [f"{value:g}" for value in values])
        axis.set_xlabel(name)
        axis.grid(alpha=0.3)
    axes[0][0].set_ylabel("sharpened accuracy (%)")
    axes[0][0].legend(fontsize=8, loc="lower left")
    fig.suptitle(f"{title}: {len(rows)} trials (lines: mean per value)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
