"""``hone export``: quantize a sharpened model into a network file (:func:`hone.training.export.export_model`)
and print the accuracy of each stage."""

import json
import pathlib

from hone.cli.arguments import UsageError, dataset_argument, integer_in
from hone.cli.train import add_backend_argument, use_backend
from hone.network.errors import ParameterError
from hone.network.report import Report

__all__ = ["add_commands", "export_figures", "format_export"]


def export_figures(model_path, output, *, backend=None, **options):
    """:func:`hone.training.export.export_model` on ``backend`` (chosen first), as the command line
    reports it: the report's ``to_json()``. ``options``: ``export_model``'s keywords.

    Raises:
        UsageError: ``output`` would overwrite what the export reads (``argument -o/--output``).
        HoneError: what ``export_model`` raises otherwise.
    """
    use_backend(backend)
    from hone.training.export import export_model

    try:
        return export_model(model_path, output, **options).to_json()
    except ParameterError as error:
        if error.parameter != "output":
            raise
        raise UsageError(f"argument -o/--output: {error.message}") from None


def format_export(report, out):
    """``hone export``'s table: ``report`` an :class:`~hone.training.export.ExportReport` or its
    ``to_json()``, ``out`` the network file."""
    if isinstance(report, Report):
        report = report.to_json()
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


def cmd_export(args):
    report = export_figures(args.model, args.output, weight_bits=args.weight_bits, input_bits=args.input_bits,
                            per_layer=args.per_layer, allow_unsharp=args.allow_unsharp, dataset=args.dataset,
                            backend=args.backend)
    print(format_export(report, args.output))
    if args.json:
        print(json.dumps(report))


def add_commands(commands):
    """Register ``export`` on the ``hone`` subparsers."""
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
