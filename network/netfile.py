"""The hone network file: integer weights and thresholds, the only contract between ML and hardware.

A network file is one UTF-8 JSON object (``docs/network-file.md`` is the full specification)::

    {"format": "hone-network", "version": 1, "sha256": "<hex>", "network": {...}, "meta": {...}}

A classifier's file (an N-hot key) is version 1; a network whose output is the last layer's spike
vector itself (``"output": {"kind": "spikes"}``, no key, no vote) is version 2, the only thing version 2
adds: every version-1 file reads, hashes and writes exactly as before.

``network`` holds only integers, strings, booleans, lists and objects; ``sha256`` is the SHA-256 of
its canonical JSON (keys sorted, no whitespace, ASCII). ``meta`` is free-form, informational and not
hashed. Readers validate everything: format name, version, hash, every field's type, shape and range.

This module is numpy only: the hardware side reads networks without Keras.
"""

import dataclasses
import hashlib
import json
import pathlib

import numpy as np

from .nhot import check_key
from .errors import HoneError

__all__ = ["FORMAT", "VERSION", "NetworkFileError", "InputSpec", "DenseLayer", "ConvLayer",
           "MaxPoolLayer", "OutputCode", "SpikeOutput", "Network", "weight_range", "accumulator_bits",
           "read_network", "write_network", "canonical_hash"]

FORMAT = "hone-network"
VERSION = 2                  # the newest format version this module reads
SPIKES_VERSION = 2           # the first version whose output may be the spike vector itself
TIE_BREAKS = ("lowest-index",)
MAX_DIMENSION = 1 << 16      # largest size of one axis (image side, channels, neurons, kernel, pool)
MAX_ELEMENTS = 1 << 28       # largest weight count of one layer, and the largest map


class NetworkFileError(HoneError, ValueError):
    """A network file (or network) is malformed; the message names the file, field and value."""


def weight_range(bits):
    """Inclusive ``(low, high)`` of a ``bits``-bit weight: ``{-1, +1}`` for 1 bit, symmetric otherwise."""
    if bits == 1:
        return -1, 1
    return -(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1


def _signed_bits(low, high):
    """Bits of the smallest two's-complement register holding every integer in [low, high]."""
    magnitude = max(int(high), -int(low) - 1, 0)
    return magnitude.bit_length() + 1


def accumulator_bits(weights, thresholds, input_max=1):
    """Signed register width for ``sum(w * x)`` with ``0 <= x <= input_max``, and the thresholds.

    ``weights`` is ``(outputs, fan_in)``. Every partial sum of a neuron lies between the sum of its
    negative weights and the sum of its positive weights (times ``input_max``).
    """
    weights = np.asarray(weights, dtype=np.int64)
    high = int(np.clip(weights, 0, None).sum(axis=1).max(initial=0)) * input_max
    low = int(np.clip(weights, None, 0).sum(axis=1).min(initial=0)) * input_max
    thresholds = np.asarray(thresholds, dtype=np.int64)
    return _signed_bits(min(low, int(thresholds.min(initial=0))), max(high, int(thresholds.max(initial=0))))


# -- the network ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class InputSpec:
    """Image shape ``(height, width, channels)`` and pixel bits.

    A pixel ``p`` in [0, 1] is sent as ``q = floor(p * (2**bits - 1) + 1/2)``, an unsigned ``bits``-bit
    integer; the network sees it as ``bits`` binary bit-planes (plane ``k`` carries bit ``k`` of ``q``).
    """

    shape: tuple
    bits: int

    @property
    def size(self):
        return int(np.prod(self.shape))

    def quantize(self, images):
        """Integer pixels ``q`` (int64, ``0 .. 2**bits - 1``) for float images in [0, 1], any shape.

        Raises:
            ValueError: a pixel outside [0, 1] or NaN (scale uint8 images by 1/255 first).
        """
        images = np.asarray(images, dtype=np.float64)
        if images.size and not (np.all(images >= 0.0) and np.all(images <= 1.0)):
            low, high = np.nanmin(images), np.nanmax(images)
            nan = " and NaN" if np.isnan(images).any() else ""
            raise ValueError(f"pixels must be floats in [0, 1] (scale 8-bit images by 1/255), got values "
                             f"in {low:g}..{high:g}{nan}")
        return np.floor(images * (2 ** self.bits - 1) + 0.5).astype(np.int64)


@dataclasses.dataclass(frozen=True)
class DenseLayer:
    """``spike[o] = sum_i weights[o, i] * x[i] >= thresholds[o]`` over the flattened (HWC) input."""

    name: str
    weights: np.ndarray      # (outputs, inputs) int
    thresholds: np.ndarray   # (outputs,) int
    kind = "dense"

    @property
    def outputs(self):
        return self.weights.shape[0]

    def output_shape(self, input_shape):
        return (self.outputs,)


@dataclasses.dataclass(frozen=True)
class ConvLayer:
    """2-D convolution, stride 1: ``weights`` is ``(filters, kh, kw, in_channels)``; channel-last maps."""

    name: str
    weights: np.ndarray      # (filters, kh, kw, channels) int
    thresholds: np.ndarray   # (filters,) int
    padding: str             # "valid" or "same" (zeros)
    kind = "conv2d"

    @property
    def outputs(self):
        return self.weights.shape[0]

    def output_shape(self, input_shape):
        height, width, _ = input_shape
        _, kh, kw, _ = self.weights.shape
        if self.padding == "valid":
            height, width = height - kh + 1, width - kw + 1
        return (height, width, self.outputs)


@dataclasses.dataclass(frozen=True)
class MaxPoolLayer:
    """Max-pooling of binary spikes (an OR) over ``pool`` windows with stride ``pool``, no padding."""

    name: str
    pool: tuple
    kind = "maxpool2d"

    def output_shape(self, input_shape):
        height, width, channels = input_shape
        return (height // self.pool[0], width // self.pool[1], channels)


@dataclasses.dataclass(frozen=True)
class OutputCode:
    """The N-hot key of the last layer and its tie-break (see :mod:`hone.network.nhot`)."""

    key: np.ndarray          # (classes, width) 0/1
    tie_break: str = "lowest-index"
    kind = "classes"

    @property
    def classes(self):
        return int(self.key.shape[0])

    @property
    def nhot(self):
        return int(self.key[0].sum())

    def to_dict(self):
        return {"key": self.key.tolist(), "nhot": self.nhot, "tie_break": self.tie_break}


@dataclasses.dataclass(frozen=True)
class SpikeOutput:
    """The output is the last layer's spike vector itself: no key, no vote, no class (format version 2).

    What an autoencoder's reconstruction, or any multi-label output, is: one bit per output unit.
    """

    kind = "spikes"
    classes = 0

    def to_dict(self):
        return {"kind": self.kind}


@dataclasses.dataclass(frozen=True)
class Network:
    input: InputSpec
    layers: tuple
    output: OutputCode | SpikeOutput
    weight_bits: int

    @property
    def classes(self):
        """Classes the N-hot key decodes, 0 when the output is the spike vector itself."""
        return self.output.classes

    @property
    def format_version(self):
        """The file version that holds this network: 1 for a classifier, 2 for a spike output."""
        return SPIKES_VERSION if self.output.kind == "spikes" else 1

    def shapes(self):
        """Output shape of every layer, in order."""
        shapes, shape = [], tuple(self.input.shape)
        for layer in self.layers:
            shape = layer.output_shape(shape)
            shapes.append(shape)
        return shapes

    def accumulator_bits(self):
        """Signed accumulator width each neuron layer needs (first layer: K-bit inputs)."""
        result = {}
        for index, layer in enumerate(self.layers):
            if layer.kind in ("dense", "conv2d"):
                input_max = 2 ** self.input.bits - 1 if index == 0 else 1
                flat = layer.weights.reshape(layer.outputs, -1)
                result[layer.name] = accumulator_bits(flat, layer.thresholds, input_max)
        return result

    def to_dict(self):
        widths = self.accumulator_bits()
        layers = []
        for layer in self.layers:
            entry = {"kind": layer.kind, "name": layer.name}
            if layer.kind == "maxpool2d":
                entry["pool"] = list(layer.pool)
            else:
                entry["shape"] = list(layer.weights.shape)
                entry["weights"] = layer.weights.reshape(-1).tolist()
                entry["thresholds"] = layer.thresholds.tolist()
                entry["accumulator_bits"] = widths[layer.name]
                if layer.kind == "conv2d":
                    entry["padding"] = layer.padding
            layers.append(entry)
        return {
            "input": {"shape": list(self.input.shape), "bits": self.input.bits},
            "weight_bits": self.weight_bits,
            "layers": layers,
            "output": self.output.to_dict(),
        }

    @property
    def sha256(self):
        return canonical_hash(self.to_dict())


def canonical_hash(network_dict):
    """SHA-256 (hex) of the canonical JSON of a ``network`` object."""
    text = json.dumps(network_dict, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


# -- validation ----------------------------------------------------------------------------------

class _Checker:
    def __init__(self, source):
        self.source = source

    def fail(self, field, message):
        raise NetworkFileError(f"{self.source}: {field}: {message}")

    def get(self, mapping, key, kind, field):
        if not isinstance(mapping, dict):
            self.fail(field.rpartition(".")[0] or field, f"expected an object, got {type(mapping).__name__} "
                                                         f"{_short(mapping)}")
        if key not in mapping:
            self.fail(field, f"missing (expected {kind.__name__ if isinstance(kind, type) else kind})")
        value = mapping[key]
        expected = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in expected or not isinstance(value, expected):
            names = " or ".join(k.__name__ for k in expected)
            self.fail(f"{field}", f"expected {names}, got {type(value).__name__} {_short(value)}")
        return value

    def integer(self, mapping, key, field, low=None, high=None):
        value = self.get(mapping, key, int, field)
        if low is not None and value < low or high is not None and value > high:
            self.fail(field, f"{_short(value)} is outside {low}..{high}")
        return value

    def int_array(self, mapping, key, field, count, low, high):
        """A list of ``count`` integers in ``low..high``; an error names the first bad element."""
        values = self.get(mapping, key, list, field)
        if len(values) != count:
            self.fail(field, f"expected {count} integers, got {len(values)}")
        for index, value in enumerate(values):   # before numpy, which cannot hold every int
            if type(value) is not int:
                self.fail(f"{field}[{index}]", f"expected an integer, got {type(value).__name__} {_short(value)}")
            if not low <= value <= high:
                self.fail(f"{field}[{index}]", f"{_short(value)} is outside {low}..{high}")
        return np.asarray(values, dtype=np.int64)

    def shape(self, mapping, key, field, length):
        values = self.get(mapping, key, list, field)
        if len(values) != length:
            self.fail(field, f"expected {length} positive integers, got {len(values)} values {_short(values)}")
        for index, value in enumerate(values):
            if type(value) is not int:
                self.fail(f"{field}[{index}]", f"expected a positive integer, got {type(value).__name__} "
                                               f"{_short(value)}")
            if not 1 <= value <= MAX_DIMENSION:
                self.fail(f"{field}[{index}]", f"{_short(value)} is outside 1..{MAX_DIMENSION}")
        if int(np.prod(values, dtype=np.int64)) > MAX_ELEMENTS:
            self.fail(field, f"{_short(values)} holds more than {MAX_ELEMENTS} elements")
        return tuple(values)


def _short(value, limit=60):
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"an integer of {len(str(abs(value)))} digits"   # str() of a huge int is slow, and useless
    try:
        text = json.dumps(value) if not isinstance(value, np.ndarray) else repr(value)
    except (ValueError, RecursionError):    # too deep to print
        text = type(value).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def network_from_dict(data, source="<network>", version=VERSION):
    """Build and validate a :class:`Network` from the ``network`` object of a file of ``version``."""
    check = _Checker(source)
    if not isinstance(data, dict):
        check.fail("network", f"expected an object, got {type(data).__name__}")
    spec = check.get(data, "input", dict, "network.input")
    shape = check.shape(spec, "shape", "network.input.shape", 3)
    bits = check.integer(spec, "bits", "network.input.bits", 1, 16)
    weight_bits = check.integer(data, "weight_bits", "network.weight_bits", 1, 16)
    low, high = weight_range(weight_bits)
    raw_layers = check.get(data, "layers", list, "network.layers")
    if not raw_layers:
        check.fail("network.layers", "expected at least one layer")
    layers, current = [], shape
    names = set()
    for index, entry in enumerate(raw_layers):
        field = f"network.layers[{index}]"
        kind = check.get(entry, "kind", str, f"{field}.kind")
        name = check.get(entry, "name", str, f"{field}.name")
        if name in names:
            check.fail(f"{field}.name", f"{name!r} is used twice")
        names.add(name)
        if kind == "maxpool2d":
            if len(current) != 3:
                check.fail(field, f"maxpool2d needs a (height, width, channels) input, got {current}")
            pool = check.shape(entry, "pool", f"{field}.pool", 2)
            layer = MaxPoolLayer(name, pool)
        elif kind in ("dense", "conv2d"):
            if kind == "dense":
                wshape = check.shape(entry, "shape", f"{field}.shape", 2)
                fan_in = int(np.prod(current))
                if wshape[1] != fan_in:
                    check.fail(f"{field}.shape", f"dense layer takes {wshape[1]} inputs but the previous "
                                                 f"layer gives {fan_in} ({current})")
            else:
                wshape = check.shape(entry, "shape", f"{field}.shape", 4)
                if len(current) != 3 or wshape[3] != current[2]:
                    check.fail(f"{field}.shape", f"conv2d expects {wshape[3]} input channels, the previous "
                                                 f"layer gives {current}")
            weights = check.int_array(entry, "weights", f"{field}.weights", int(np.prod(wshape)), low, high)
            if weight_bits == 1 and (weights == 0).any():
                check.fail(f"{field}.weights", "1-bit weights must be -1 or +1, found 0")
            thresholds = check.int_array(entry, "thresholds", f"{field}.thresholds", wshape[0],
                                         -(2 ** 62), 2 ** 62)
            weights = weights.reshape(wshape)
            if kind == "dense":
                layer = DenseLayer(name, weights, thresholds)
            else:
                padding = check.get(entry, "padding", str, f"{field}.padding")
                if padding not in ("valid", "same"):
                    check.fail(f"{field}.padding", f"expected 'valid' or 'same', got {padding!r}")
                layer = ConvLayer(name, weights, thresholds, padding)
        else:
            check.fail(f"{field}.kind", f"unknown layer kind {kind!r} (expected dense, conv2d or maxpool2d)")
        current = layer.output_shape(current)
        if min(current) < 1:
            check.fail(field, f"output shape {current} is empty")
        layers.append(layer)
    if layers[-1].kind != "dense":
        check.fail("network.layers", f"the last layer must be dense (the output), not {layers[-1].kind}")
    output = check.get(data, "output", dict, "network.output")
    if "kind" in output:
        code = _spike_output(check, output, version)
    else:
        code = _output_code(check, output, layers[-1])
    network = Network(InputSpec(shape, bits), tuple(layers), code, weight_bits)
    widths = network.accumulator_bits()
    for index, entry in enumerate(raw_layers):
        if entry["kind"] != "maxpool2d":
            field = f"network.layers[{index}].accumulator_bits"
            declared = check.integer(entry, "accumulator_bits", field, 1, 64)
            needed = widths[entry["name"]]
            if declared != needed:
                check.fail(field, f"declares {declared} but its weights and thresholds need {needed}")
    return network


def _spike_output(check, output, version):
    """``{"kind": "spikes"}``: the last layer's spikes are the output (version 2 and later)."""
    kind = check.get(output, "kind", str, "network.output.kind")
    if kind != SpikeOutput.kind:
        check.fail("network.output.kind", f"unknown output kind {_short(kind)} (expected 'spikes'; a "
                                          f"classifier's output has no kind, only its key)")
    if version < SPIKES_VERSION:
        check.fail("network.output.kind", f"a spike output needs format version {SPIKES_VERSION}, the file "
                                          f"declares version {version}")
    extra = sorted(set(output) - {"kind"})
    if extra:
        check.fail(f"network.output.{extra[0]}", "a spike output has no key, nhot or tie-break (the output "
                                                 "is the last layer's spikes themselves)")
    return SpikeOutput()


def _output_code(check, output, last):
    """The N-hot key of a classifier, checked against the ``last`` layer."""
    key_rows = check.get(output, "key", list, "network.output.key")
    for row_index, row in enumerate(key_rows):
        field = f"network.output.key[{row_index}]"
        if not isinstance(row, list):
            check.fail(field, f"expected a list of 0/1, got {type(row).__name__} {_short(row)}")
        if len(row) != len(key_rows[0]):
            check.fail(field, f"has {len(row)} entries, network.output.key[0] has {len(key_rows[0])}")
        for column, value in enumerate(row):
            if type(value) is not int or value not in (0, 1):
                check.fail(f"{field}[{column}]", f"expected 0 or 1, got {_short(value)}")
    try:
        key = check_key(np.asarray(key_rows))
    except (ValueError, TypeError) as error:
        check.fail("network.output.key", str(error))
    if key.shape[1] != last.outputs:
        check.fail("network.output.key", f"key width {key.shape[1]} != last layer's {last.outputs} outputs")
    nhot = check.integer(output, "nhot", "network.output.nhot", 1)
    if nhot != int(key[0].sum()):
        check.fail("network.output.nhot", f"{nhot} but the key gives {int(key[0].sum())} units per class")
    tie_break = check.get(output, "tie_break", str, "network.output.tie_break")
    if tie_break not in TIE_BREAKS:
        check.fail("network.output.tie_break", f"unknown tie-break {tie_break!r} (expected {TIE_BREAKS[0]!r})")
    return OutputCode(key, tie_break)


# -- files ---------------------------------------------------------------------------------------

def write_network(path, network, meta=None):
    """Write ``network`` (with its hash and optional informational ``meta``) to ``path``.

    A classifier is written as format version 1, a spike output as version 2 (:attr:`Network.format_version`).
    """
    body = network.to_dict()
    document = {"format": FORMAT, "version": network.format_version, "sha256": canonical_hash(body),
                "network": body, "meta": meta or {}}
    pathlib.Path(path).write_text(json.dumps(document, separators=(",", ":")) + "\n", encoding="utf-8")
    return document["sha256"]


def read_network(path):
    """Read and validate a network file; returns ``(network, meta)``.

    Raises :class:`NetworkFileError` naming the file, the field and what was expected.
    """
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise NetworkFileError(f"{path}: no such network file") from None
    except OSError as error:
        raise NetworkFileError(f"{path}: cannot read the network file ({error.strerror or error})") from None
    try:
        document = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise NetworkFileError(f"{path}: not a hone network file (invalid JSON: {error}); the file is "
                               f"corrupted or truncated") from None
    except RecursionError:
        raise NetworkFileError(f"{path}: not a hone network file (JSON nested too deeply to read)") from None
    except ValueError as error:   # e.g. an integer literal longer than Python converts
        raise NetworkFileError(f"{path}: not a hone network file ({error})") from None
    check = _Checker(path)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        check.fail("format", f"expected {FORMAT!r}, got {found[:60]!r}" if isinstance(found, str)
                   else f"expected {FORMAT!r}, got {_short(found)}")
    version = check.get(document, "version", int, "version")
    if version > VERSION:
        check.fail("version", f"format version {_short(version)} is newer than this hone reads ({VERSION}); "
                              f"upgrade hone")
    if version < 1:
        check.fail("version", f"invalid format version {_short(version)}")
    declared = check.get(document, "sha256", str, "sha256")
    body = check.get(document, "network", dict, "network")
    actual = canonical_hash(body)
    if actual != declared:
        check.fail("sha256", f"content hash mismatch: the file declares {declared[:16]}... but its network "
                             f"hashes to {actual[:16]}...; the file was modified or corrupted")
    meta = document.get("meta", {})
    if not isinstance(meta, dict):
        check.fail("meta", f"expected an object, got {type(meta).__name__}")
    return network_from_dict(body, path, version), meta
