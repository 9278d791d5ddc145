"""``hone train``, and the training arguments ``hone sweep`` and ``hone flow`` share (see
:mod:`hone.cli.main`; ``sweep``, ``export`` and ``info`` are :mod:`hone.cli.sweep`, :mod:`hone.cli.export`
and :mod:`hone.cli.info`).

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
        "sharpened (hard steps)  "
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


def export_model(model_path, output, **options):
    """Kept for :func:`hone.cli.main.cmd_flow`: :func:`hone.cli.export.export_figures`."""
    from hone.cli.export import export_figures

    return export_figures(model_path, output, **options)


def format_export(report, out):
    """Kept for :func:`hone.cli.main.cmd_flow`: :func:`hone.cli.export.format_export`."""
    from hone.cli.export import format_export

    return format_export(report, out)


def add_commands(commands):
    """Register ``train`` on the ``hone`` subparsers."""
    from hone.training.config import TrainConfig

    defaults = TrainConfig()
    train = commands.add_parser("train", help="train and sharpen a network",
                                description="Train a network and sharpen every activation into a binary step.")
    add_train_arguments(train, defaults)
    add_network_arguments(train, defaults)
    train.add_argument("--out", required=True, type=pathlib.Path, metavar="DIR", help="run folder to write")
    train.add_argument("--json", action="store_true", help="last stdout line: the figures as one JSON object")
    train.set_defaults(handler=cmd_train)
