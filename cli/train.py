"""The training side of the ``hone`` command line: ``train``, ``sweep``, ``export``, ``info`` (see
:mod:`hone.cli.main`).

Subcommands import their heavy dependencies (TensorFlow, Keras) only when they run, so ``hone --help``
is instant. User errors (bad arguments, a missing data set, an incomplete sharpening) print one
``hone: error: ...`` line and exit with status 2 (usage) or 1 (run failed), never a traceback.
With ``--json`` the last line on stdout is one JSON object with the figures the command reports.
"""

import argparse
import dataclasses
import json
import os
import pathlib
import sys
import zipfile

import numpy as np

from hone.cli.arguments import UsageError, UserError, integer_in, number_in

__all__ = ["add_commands", "add_train_arguments", "config_from", "run_training",
           "format_summary", "train_figures", "export_model", "format_export"]


def _quiet_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _int_tuple(text):
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def add_backend_argument(parser):
    from hone.training.backend import BACKENDS

    parser.add_argument("--backend", choices=BACKENDS,
                        help="Keras backend (default: $KERAS_BACKEND, else tensorflow); jax needs "
                             "pip install 'hone[jax]'")


def use_backend(name=None, cpu_devices=None):
    """Select the Keras backend before anything imports Keras; its name."""
    from hone.training.backend import BackendError, select_backend

    _quiet_tensorflow()
    try:
        return select_backend(name, cpu_devices=cpu_devices)
    except BackendError as error:
        raise UserError(str(error)) from None


def add_train_arguments(parser, defaults):
    from hone.training.config import AUTOENCODER_DEFAULTS, CLASSIFIER_DEFAULTS, CONV_DEFAULTS, DEFAULT_CONV_DROPOUT
    from hone.cli.arguments import dataset_argument

    group = parser.add_argument_group("data and architecture")
    group.add_argument("--dataset", type=dataset_argument, default=defaults.dataset, metavar="NAME|FILE.npz",
                       help="fashion-mnist, digits, mnist, fashion_mnist, cifar10, cifar100 (from the Keras "
                            "cache, never downloaded) or an .npz file with x_train, y_train, x_test, y_test "
                            "(default: %(default)s)")
    group.add_argument("--binarize", action="store_true", default=defaults.binarize,
                       help="binary input: pixel >= 0.5 (the cheapest hardware path)")
    group.add_argument("--arch", choices=("dense", "conv", "autoencoder"), default=defaults.arch,
                       help="dense, conv, or autoencoder: a dense chain whose output spikes reconstruct the "
                            "binarized input (pixel >= 0.5), exported with no key (default: %(default)s)")
    group.add_argument("--widths", type=_int_tuple, default=defaults.widths, metavar="W1,W2,..",
                       help="hidden dense widths (default: 256,64 for dense, 512 for conv, 384,192,384 for "
                            "autoencoder)")
    group.add_argument("--loss", choices=("mse", "bce"), default=defaults.loss,
                       help="autoencoder: reconstruction loss, mean squared error or binary cross-entropy "
                            "(default: %(default)s)")
    group.add_argument("--output-ramp", action=argparse.BooleanOptionalAction, default=None,
                       help="the output layer trains on its unsharpened ramp, which keeps a margin around its "
                            "threshold; inference and the export use its step (default: on for dense and "
                            "autoencoder, off for conv)")
    group.add_argument("--filters", type=_int_tuple, default=defaults.filters, metavar="F1,F2,..",
                       help="conv filters per conv-pool stage (default: 32,64)")
    group.add_argument("--kernel", type=int, default=defaults.kernel, help="conv kernel size (default: 5)")
    group.add_argument("--padding", choices=("valid", "same"), default=defaults.padding,
                       help="conv padding (default: valid)")
    group.add_argument("--nhot", type=int, default=None,
                       help="output units per class (default: 8)")
    group.add_argument("--output-width", type=int, default=defaults.output_width, metavar="W",
                       help="output layer width (default: classes x nhot)")
    group.add_argument("--no-batch-norm", dest="batch_norm", action="store_false", default=defaults.batch_norm)
    group.add_argument("--dropout", type=float, default=None,
                       help=f"dropout after hidden dense spiking layers, training only (default: {defaults.dropout}; "
                            f"{CONV_DEFAULTS['dropout']:g} for conv, {AUTOENCODER_DEFAULTS['dropout']:g} for "
                            f"autoencoder)")
    group.add_argument("--conv-dropout", type=float, default=None, metavar="RATE",
                       help=f"dropout after each conv stage's max-pool, training only (conv only; default: "
                            f"{DEFAULT_CONV_DROPOUT:g})")
    group.add_argument("--augment", action="store_true", default=defaults.augment,
                       help="random horizontal flips and 2-pixel shifts while training (for data such as "
                            "Fashion-MNIST where a mirror image keeps its class; not for digits)")
    group.add_argument("--decode-scale", type=float, default=defaults.decode_scale,
                       help="softmax scale of the N-hot decode (training dynamics only; default: %(default)s)")
    group.add_argument("--gradient", choices=("exact", "straight-through", "surrogate"),
                       default=defaults.gradient,
                       help="backward pass of spiking layers: exact (plain Whetstone), straight-through "
                            "once sharp, or the unsharpened curve's gradient throughout")
    group.add_argument("--activation", choices=("brelu", "sigmoid"), default=defaults.activation)

    group = parser.add_argument_group("backend and devices")
    add_backend_argument(group)
    group.add_argument("--data-parallel", dest="distribution", action="store_const", const="data-parallel",
                       default=defaults.distribution,
                       help="one replica per device, the batch split between them: keras.distribution on "
                            "jax, tf.distribute on tensorflow (multi-worker: see README)")
    group.add_argument("--cpu-devices", type=integer_in(1), metavar="N",
                       help="split the CPU into N virtual devices (data parallelism without accelerators)")

    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=integer_in(1), default=None,
                       help=f"maximum epochs; the sharpener stops training once sharp (default: "
                            f"{CLASSIFIER_DEFAULTS['epochs']}; {CONV_DEFAULTS['epochs']} for conv)")
    group.add_argument("--batch-size", type=integer_in(1), default=defaults.batch_size,
                       help="images per training step (default: %(default)s)")
    group.add_argument("--learning-rate", type=number_in(0, low_open=True), default=defaults.learning_rate,
                       help="the optimizer's rate (default: %(default)s; cosine-decayed over the "
                            "straight-through epochs)")
    group.add_argument("--optimizer", choices=("adam", "sgd"), default=defaults.optimizer,
                       help="adam, or sgd with momentum 0.9 (give it a larger --learning-rate, e.g. 0.01; "
                            "default: %(default)s)")
    group.add_argument("--ema-momentum", type=number_in(0, 1), default=defaults.ema_momentum, metavar="M",
                       help="keep an exponential moving average of the weights (momentum M per batch, in [0, 1); "
                            "0 is off) and end training with it, requantized (default: %(default)s)")
    group.add_argument("--seed", type=integer_in(0, 2**32 - 1), default=defaults.seed,
                       help="seeds weights, dropout and shuffling: the same seed gives the same network file "
                            "on one backend (default: %(default)s)")

    group = parser.add_argument_group("sharpening")
    group.add_argument("--sharpener", choices=("adaptive", "simple", "none"), default=defaults.sharpener,
                       help="'none' holds sharpness at 0 (the unsharpened baseline; default: %(default)s)")
    group.add_argument("--uniform", dest="bottom_up", action="store_false", default=defaults.bottom_up,
                       help="sharpen all layers together instead of bottom-up")
    group.add_argument("--settle-epochs", type=int, default=defaults.settle_epochs,
                       help="epochs without sharpening after each layer becomes sharp (default: %(default)s)")
    group.add_argument("--finetune-epochs", type=int, default=None,
                       help=f"straight-through epochs after every layer is sharp (default: "
                            f"{CLASSIFIER_DEFAULTS['finetune_epochs']}; {CONV_DEFAULTS['finetune_epochs']} for conv, "
                            f"{AUTOENCODER_DEFAULTS['finetune_epochs']} for autoencoder)")
    for name in ("min_init_epochs", "patience"):
        group.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    for name in ("rate", "critical", "cz_rate", "sig_increase", "sig_decrease"):
        group.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(defaults, name))
    group.add_argument("--start-epoch", type=int, default=None,
                       help=f"simple sharpener (default: {defaults.start_epoch}; "
                            f"{AUTOENCODER_DEFAULTS['start_epoch']} for autoencoder)")
    group.add_argument("--steps", type=int, default=defaults.steps,
                       help="simple sharpener: steps from 0 to 1 per layer (default: %(default)s)")
    group.add_argument("--epochs-per-step", type=float, default=defaults.epochs_per_step,
                       help="simple sharpener")


def add_network_arguments(parser, defaults):
    """``--weight-bits``, ``--input-bits`` and ``--no-qat`` of ``hone train`` (``hone flow`` has its own
    ``--weight-bits``)."""
    group = parser.add_argument_group("network file (quantization-aware training)")
    group.add_argument("--weight-bits", type=integer_in(1, 16), default=defaults.weight_bits, metavar="B",
                       help=f"weight width of the integer network, 1..16: trained for once sharp, recorded in "
                            f"the run folder for hone export (default: {defaults.weight_bits})")
    group.add_argument("--input-bits", type=integer_in(1, 16), default=defaults.input_bits, metavar="K",
                       help="pixel bits of the network file, 1..16 (default: 1 with --binarize, else 8)")
    group.add_argument("--no-qat", dest="qat", action="store_false", default=defaults.qat,
                       help="train in float throughout and only quantize at export (post-training "
                            "quantization); the bits are still recorded as hone export's defaults")


def config_from(args):
    from hone.training.config import TrainConfig

    if getattr(args, "binarize", False) and getattr(args, "input_bits", None) not in (None, 1):
        raise UsageError(f"argument --input-bits: expected 1 with --binarize (the model sees binary pixels), "
                         f"got {args.input_bits}")

    fields = {field.name for field in dataclasses.fields(TrainConfig)}
    try:   # an option left at None takes its architecture's default (TrainConfig.__post_init__)
        return TrainConfig(**{name: value for name, value in vars(args).items() if name in fields})
    except (TypeError, ValueError) as error:
        raise UsageError(str(error)) from None


def run_training(config, out, *, quiet, backend=None, cpu_devices=None):
    use_backend(backend, cpu_devices)
    from hone.network.datasets import DatasetError
    from hone.training.train import TrainingIncomplete, train

    verbose = 0 if quiet else (1 if sys.stdout.isatty() else 2)
    try:
        _, _, summary = train(config, out, verbose=verbose)
    except (DatasetError, TrainingIncomplete) as error:
        raise UserError(str(error)) from None
    except ValueError as error:   # settings that do not fit the data (checked before the first epoch)
        raise UsageError(str(error)) from None
    return summary


def format_summary(summary, out):
    from hone.network.reconstruction import format_reconstruction

    before = summary["best_accuracy_before_sharpening"]
    reconstruction = summary.get("reconstruction")      # an autoencoder's pixel accuracy and bits wrong
    lines = [
        f"run folder              {out}",
        f"data                    {summary['dataset']} ({summary['encoding']} input), {summary['arch']}, "
        + ("binarized input as the target" if reconstruction else f"{summary['nhot']}-hot")
        + f", {summary['sharpener']} sharpener",
        f"best before sharpening  {'-' if before is None else f'{100 * before:.2f}%'}"
        + (" of pixels" if reconstruction and before is not None else ""),
        f"sharpened (hard steps)  "
        + (format_reconstruction(reconstruction) if reconstruction else f"{100 * summary['sharpened_accuracy']:.2f}%")
        + ("" if summary["fully_sharp"] else "  (NOT fully sharp)")
        + (f", as {summary['weight_bits']}-bit integers" if summary.get("quantization_aware") else ""),
        f"network file            {summary.get('weight_bits', 4)}-bit weights, {summary.get('input_bits', 8)}-bit "
        f"input: " + ("trained quantization-aware once sharp" if summary.get("quantization_aware")
                      else "quantized at export"),
        f"epochs                  {summary['epochs']} (fully sharp after epoch {summary['sharp_epoch']})"
        if summary["sharp_epoch"] else f"epochs                  {summary['epochs']}",
        f"seconds                 {summary['seconds']:.1f} ({summary['seconds_per_epoch']:.2f} s/epoch)",
        f"backend                 {summary['backend']}, {summary['engine']}"
        + (f" on {summary['replicas']} devices" if summary["replicas"] > 1 else "")
        + (f", {summary['workers']} workers" if summary["workers"] > 1 else ""),
    ]
    return "\n".join(lines)


def train_figures(summary):
    figures = {key: summary[key] for key in (
        "dataset", "arch", "encoding", "nhot", "sharpener", "epochs", "fully_sharp", "sharp_epoch",
        "best_accuracy_before_sharpening", "sharpened_accuracy", "seconds", "seconds_per_epoch",
        "sharpness", "backend", "engine", "replicas", "workers", "weight_bits", "input_bits",
        "quantization_aware") if key in summary}
    if summary.get("reconstruction"):     # an autoencoder: pixel accuracy and bits wrong per image
        figures["reconstruction"] = summary["reconstruction"]
    return figures


def cmd_train(args):
    config = config_from(args)
    if args.out.exists() and not args.out.is_dir():   # refused before training, not after it
        raise UsageError(f"argument --out: {args.out} exists and is not a folder")
    summary = run_training(config, args.out, quiet=args.json, backend=args.backend, cpu_devices=args.cpu_devices)
    print(format_summary(summary, args.out))
    if args.json:
        print(json.dumps(train_figures(summary)))


def cmd_sweep(args):
    from hone.network.datasets import DatasetError
    from hone.training.sweep import SweepError, format_sweep, grid_size, parse_space

    config = config_from(args)
    use_backend(args.backend, args.cpu_devices)  # before parse_space, whose checks build sharpeners
    try:
        space = parse_space(args.vary or [], config.sharpener)
    except SweepError as error:
        raise UserError(str(error)) from None
    from hone.training.sweep import run_sweep

    ranges = "; ".join(f"{name} in {', '.join(f'{value:g}' for value in values)}" for name, values in space.items())
    print(f"sweeping {ranges} ({grid_size(space)} combinations, {args.search} search) on {config.dataset}",
          flush=True)
    try:
        figures = run_sweep(config, space, args.out, search=args.search, trials=args.trials, seed=args.seed,
                            log=lambda line: print(line, flush=True))
    except (SweepError, DatasetError) as error:
        raise UserError(str(error)) from None
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


def _integer_activity(network, images, plot):
    """The activity report (:mod:`hone.network.activity`) of the integer network on float ``images``
    in [0, 1], with its plot written to ``plot``."""
    from hone.network.activity import measure_activity, plot_activity
    from hone.network.integer import IntegerNetwork

    pixels = network.input.quantize(np.asarray(images).reshape((len(images),) + tuple(network.input.shape)))
    report = measure_activity(network, pixels, IntegerNetwork(network).run(pixels).spikes)
    report["plot"] = str(plot_activity(report, plot))
    return report


def format_export(report, out):
    lines = [
        f"network file            {out} (sha256 {report['sha256'][:16]}...)",
        f"weights                 {report['weight_bits']}-bit, {report['scaling']} scale; "
        f"input {report['input_bits']}-bit",
        f"integers                {report['integers']}",
    ]
    if "accuracy" not in report:
        lines.append(f"test images             none: {report['evaluation']}")
    elif report.get("output") == "spikes":    # an autoencoder: pixel accuracy, bits wrong, bit for bit
        acc, wrong, sources = report["accuracy"], report["bits_wrong_per_image"], report["disagreement_sources"]
        lines += [
            f"test images             {report['images']} ({report['dataset']}), the target: each binarized "
            f"(pixel >= 0.5)",
            "",
            f"{'stage':<34}{'pixel accuracy':<16}bits wrong per image",
        ] + [f"{label:<34}{100 * acc[name]:.2f}%{'':<10}{wrong[name]:.2f}" for name, label in (
            ("keras_sharpened", "keras sharpened (steps)"), ("keras_quantized_pixels", "keras on the quantized pixels"),
            ("float_folded", "float folded"), ("integer", "integer"))] + [
            "",
            f"image agreement keras/integer  {100 * report['image_agreement_keras_integer']:.2f}% bit for bit "
            f"({report['disagreements']} differ in {report['bits_differing_keras_integer']} bits, "
            f"{report['disagreements_near_threshold']} of them with a neuron at its threshold)",
            f"  from pixel quantization      {sources['pixel_quantization']} (keras on raw vs quantized "
            f"{report['input_bits']}-bit pixels)",
            f"  from weight quantization     {sources['weight_quantization']} (keras on quantized pixels vs "
            f"integer; {sources['weight_quantization_near_threshold']} at a threshold)",
        ]
    else:
        acc, sources = report["accuracy"], report["disagreement_sources"]
        lines += [
            f"test images             {report['images']} ({report['dataset']})",
            "",
            f"{'stage':<34}accuracy",
            f"{'keras sharpened (steps)':<34}{100 * acc['keras_sharpened']:.2f}%",
            f"{'keras on the quantized pixels':<34}{100 * acc['keras_quantized_pixels']:.2f}%",
            f"{'float folded':<34}{100 * acc['float_folded']:.2f}%",
            f"{'integer':<34}{100 * acc['integer']:.2f}%",
            "",
            f"class agreement keras/integer  {100 * report['class_agreement_keras_integer']:.2f}% "
            f"({report['disagreements']} differ, {report['disagreements_near_threshold']} of them with a "
            f"neuron at its threshold)",
            f"  from pixel quantization      {sources['pixel_quantization']} (keras on raw vs quantized "
            f"{report['input_bits']}-bit pixels)",
            f"  from weight quantization     {sources['weight_quantization']} (keras on quantized pixels vs "
            f"integer; {sources['weight_quantization_near_threshold']} at a threshold)",
        ]
    lines += ["", f"{'layer':<20}{'spike rate':>12}{'accumulator bits':>18}"]
    for name, kind in report["layers"].items():
        rate = report.get("spike_rate", {}).get(name)
        rate = "-" if rate is None else f"{rate:.3f}"
        lines.append(f"{name:<20}{rate:>12}{report['accumulator_bits'].get(name, '-'):>18}")
    if report.get("activity"):
        from hone.network.activity import format_activity

        lines += ["", format_activity(report["activity"]), f"activity plot           {report['activity']['plot']}"]
    return "\n".join(lines)


def export_model(model_path, output, *, weight_bits=None, input_bits=None, per_layer=False, allow_unsharp=False,
                 dataset=None, backend=None):
    """Export a run's model to a network file and its report (``output`` + ``.json``); the report.

    The accuracy table is measured on ``dataset`` (default: the one the run folder records); with
    neither, the export is written unevaluated and the report says so. Unset bits are the ones the run
    folder records (``hone train --weight-bits/--input-bits``), else 4-bit weights and 8-bit pixels (1
    for a model trained on binarized input).
    """
    use_backend(backend)
    import keras
    from hone.training import layers  # noqa: F401  (registers hone's layers)
    from hone.network.datasets import DatasetError, load_dataset
    from hone.training.export import ExportError, evaluate_export, export_network, integers_source, run_settings
    from hone.network.netfile import write_network

    model_path, output = pathlib.Path(model_path), pathlib.Path(output)
    if model_path.is_dir():   # a run folder of hone train
        if not (model_path / "model.keras").is_file():
            raise UserError(f"{model_path}: a folder without model.keras; expected a hone train run folder "
                            f"or its model.keras")
        model_path = model_path / "model.keras"
    if not model_path.exists():
        raise UserError(f"{model_path}: no such model file")
    written = {output.resolve(), output.with_name(output.name + ".json").resolve()}
    for own in (model_path, model_path.with_name("history.json")):
        if own.resolve() in written:
            raise UsageError(f"argument -o/--output: {output} would overwrite {own}, which the export reads; "
                             f"expected another path")
    if model_path.suffix not in (".keras", ".h5"):
        raise UserError(f"{model_path}: expected a hone train run folder or its model.keras")
    if model_path.suffix == ".keras" and not zipfile.is_zipfile(model_path):
        raise UserError(f"{model_path}: not a .keras file (a zip archive): truncated or corrupted?")
    try:
        model = keras.saving.load_model(model_path)
    except Exception as error:  # Keras raises many types for a bad file; its last line says why
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1][:300]
        raise UserError(f"{model_path}: cannot load the Keras model: {reason}") from None
    try:
        dataset, input_bits, binarized, weight_bits = run_settings(model_path, dataset=dataset, input_bits=input_bits,
                                                                   weight_bits=weight_bits, model=model)
        network, floats = export_network(model, weight_bits=weight_bits, input_bits=input_bits,
                                         per_neuron=not per_layer, allow_unsharp=allow_unsharp)
        data = None if dataset is None else load_dataset(dataset, binarize=binarized)
    except (ExportError, DatasetError) as error:
        raise UserError(str(error)) from None
    report = {"dataset": dataset, "scaling": "per-layer" if per_layer else "per-neuron",
              "model": str(model_path), "weight_bits": network.weight_bits, "input_bits": network.input.bits,
              "integers": integers_source(floats, weight_bits=weight_bits, input_bits=input_bits,
                                          per_neuron=not per_layer)}
    if data is None:
        report["evaluation"] = ("skipped: no test data (no --dataset, and no history.json of a hone train "
                                "run beside the model); pass --dataset to measure accuracy and agreement")
    else:
        model_shape = tuple(int(d) for d in model.input_shape[1:])
        if int(np.prod(data.input_shape)) != network.input.size:
            raise UserError(f"dataset {dataset!r} has {tuple(data.input_shape)} images but the model takes "
                            f"{model_shape}; pass the data set it was trained on with --dataset")
        x_test = data.x_test.reshape((len(data.x_test),) + model_shape)
        targets = data.y_test
        if network.output.kind == "spikes":     # an autoencoder: its binarized input is the target
            from hone.network.reconstruction import pixel_targets

            targets = pixel_targets(data.x_test)
        try:
            report.update(evaluate_export(model, network, floats, x_test, targets))
        except ValueError as error:
            raise UserError(f"dataset {dataset!r}: {error}") from None
    report["layers"] = {layer.name: layer.kind for layer in network.layers}
    report["accumulator_bits"] = network.accumulator_bits()
    output.parent.mkdir(parents=True, exist_ok=True)
    if data is not None:   # spikes, synaptic operations and sparsity of the integer network, test set
        report["activity"] = _integer_activity(network, x_test, output.with_name(output.name + ".activity.png"))
    meta = {"source": str(model_path), "scaling": report["scaling"]}
    if data is not None:
        meta.update(dataset=dataset, accuracy=report["accuracy"])
    report["sha256"] = write_network(output, network, meta=meta)
    output.with_name(output.name + ".json").write_text(json.dumps(report, indent=1))
    return report


def cmd_export(args):
    report = export_model(args.model, args.output, weight_bits=args.weight_bits, input_bits=args.input_bits,
                          per_layer=args.per_layer, allow_unsharp=args.allow_unsharp, dataset=args.dataset,
                          backend=args.backend)
    print(format_export(report, args.output))
    if args.json:
        print(json.dumps(report))


def cmd_info(args):
    """Validate a network file and describe it (no Keras involved)."""
    from hone.network.netfile import NetworkFileError, read_network

    try:
        network, meta = read_network(args.network)
    except NetworkFileError as error:
        raise UserError(str(error)) from None
    shapes = network.shapes()
    widths = network.accumulator_bits()
    layers = []
    for layer, shape in zip(network.layers, shapes):
        entry = {"name": layer.name, "kind": layer.kind, "output_shape": list(shape)}
        if layer.kind != "maxpool2d":
            entry["fan_in"] = int(np.prod(layer.weights.shape[1:]))
            entry["accumulator_bits"] = widths[layer.name]
        layers.append(entry)
    figures = {
        "file": str(args.network), "sha256": network.sha256, "input_shape": list(network.input.shape),
        "input_bits": network.input.bits, "weight_bits": network.weight_bits,
        "output": network.output.kind, "classes": network.classes,
        "nhot": network.output.nhot if network.classes else None,
        "tie_break": network.output.tie_break if network.classes else None, "layers": layers,
        "weights": int(sum(l.weights.size for l in network.layers if l.kind != "maxpool2d")),
        "meta": meta,
    }
    print(f"{args.network}: valid hone network, sha256 {network.sha256}")
    print(f"input {'x'.join(map(str, network.input.shape))} x {network.input.bits}-bit, "
          f"{network.weight_bits}-bit weights ({figures['weights']} in all), "
          + (f"{figures['classes']} classes x {network.output.nhot}-hot, tie-break {network.output.tie_break}"
             if network.classes else f"output: the last layer's {network.layers[-1].outputs} spikes (no classes)"))
    for entry in layers:
        extra = (f"fan-in {entry['fan_in']}, accumulator {entry['accumulator_bits']} bits"
                 if "fan_in" in entry else "OR of spikes")
        print(f"  {entry['name']:<16}{entry['kind']:<11}-> {'x'.join(map(str, entry['output_shape'])):<10}{extra}")
    if args.json:
        print(json.dumps(figures))


def add_commands(commands):
    """Register ``train``, ``sweep``, ``export`` and ``info`` on the ``hone`` subparsers."""
    from hone.training.config import TrainConfig
    from hone.cli.arguments import dataset_argument

    defaults = TrainConfig()
    train = commands.add_parser("train", help="train and sharpen a network",
                                description="Train a network and sharpen every activation into a binary step.")
    add_train_arguments(train, defaults)
    add_network_arguments(train, defaults)
    train.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR", help="run folder to write")
    train.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    train.set_defaults(handler=cmd_train)

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

    export = commands.add_parser(
        "export", help="quantize a sharpened model into a network file",
        description="Fold BN, quantize every neuron to integer weights and a threshold, write a "
                    "versioned network file and print the accuracy of each stage on the test set.")
    export.add_argument("model", type=pathlib.Path, help="a hone train run folder, or its model.keras")
    export.add_argument("--weight-bits", type=integer_in(1, 16), metavar="B",
                        help="weight width, 1..16 (default: the run folder's, from hone train --weight-bits; "
                             "else 4)")
    export.add_argument("--input-bits", type=integer_in(1, 16), metavar="K",
                        help="pixel bits, 1..16, fed as K binary bit-planes (default: the run folder's; else "
                             "1 for a model trained on binarized input, else 8)")
    export.add_argument("-o", "--output", type=pathlib.Path, required=True, metavar="FILE",
                        help="network file to write (e.g. net.hone); the report goes to FILE.json")
    export.add_argument("--per-layer", action="store_true", help="one weight scale per layer, not per neuron")
    export.add_argument("--allow-unsharp", action="store_true",
                        help="export a model whose spiking layers are not all fully sharp")
    export.add_argument("--dataset", type=dataset_argument, metavar="NAME|FILE.npz",
                        help="test data for the accuracy table (default: from the run folder)")
    add_backend_argument(export)
    export.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    export.set_defaults(handler=cmd_export)

    info = commands.add_parser("info", help="validate a network file and describe it",
                               description="Read a network file, validate every field and the hash, "
                                           "and print its layers.")
    info.add_argument("network", type=pathlib.Path, help="a network file from hone export")
    info.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    info.set_defaults(handler=cmd_info)
