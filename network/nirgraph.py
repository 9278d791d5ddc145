"""hone networks as NIR graphs, and NIR graphs as hone networks (the Neuromorphic Intermediate
Representation, Pedersen et al., Nature Communications 15, 8122, 2024; PyPI ``nir`` 1.0).

A hone network is NIR's simplest case: one time step, Affine/Conv2d followed by a Threshold.
:func:`to_nir` writes the integer network exactly; :func:`from_nir` reads any graph that has a
one-time-step binary reading and quantizes it into a network file. ``docs/nir.md`` maps every node.

Conventions (NIR's, where hone's differ):

- Maps are channel-first, ``(channels, height, width)``; hone's are channel-last. A Conv2d weight is
  ``(filters, channels, kh, kw)``; an Affine after a Flatten takes its input in (C, H, W) order.
- NIR's Threshold fires iff ``v > threshold`` (strictly). hone fires iff ``sum >= threshold``. The
  export adds a bias of 1/2 to every neuron and keeps the integer thresholds: ``sum + 1/2`` never
  equals an integer, so a reader fires the same whichever way it breaks ties. Max-pooling of spikes
  (an OR) is a SumPool2d followed by a Threshold of 1/2.
- The graph's input is the network's integer pixels ``q`` (``0 .. 2**bits - 1``), as the hardware
  takes them; the graph metadata states the quantization ``q = floor(p (2**bits - 1) + 1/2)``.
"""

import dataclasses
import pathlib

import numpy as np

from .netfile import (ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, NetworkFileError, OutputCode,
                      SpikeOutput, network_from_dict, weight_range)
from .nhot import check_key
from .errors import HoneError, ParameterError
from .report import Report

__all__ = ["NIRError", "to_nir", "from_nir", "write_nir", "read_nir", "NEURON_NODES", "ImportReport", "import_graph"]

METADATA = "hone"             # prefix of the graph metadata keys hone writes
NEURON_NODES = ("Threshold", "IF", "LIF")


class NIRError(HoneError, ValueError):
    """A NIR graph hone cannot read, or cannot read as one binary time step; names the node and why."""


# -- export -------------------------------------------------------------------------------------------

def _padding(layer):
    """NIR padding of a hone conv2d: 'valid' -> 0; 'same' pads floor((k-1)/2) before and the rest after,
    which is PyTorch's (and NIR's) 'same', an integer pair where the kernel is odd."""
    _, kh, kw, _ = layer.weights.shape
    if layer.padding == "valid":
        return (0, 0)
    if kh % 2 and kw % 2:
        return ((kh - 1) // 2, (kw - 1) // 2)
    return "same"


def to_nir(network, *, meta=None):
    """The :class:`~hone.network.netfile.Network` ``network`` as a ``nir.NIRGraph``.

    Nodes are named after the layers: ``<layer>`` (Affine, Conv2d or, for a pool, SumPool2d) and
    ``<layer>.spike`` (its Threshold), plus ``input``, ``flatten`` (before the first dense layer) and
    ``output``. Weights and thresholds are the network's integers, as float64; every Affine/Conv2d
    has the bias 1/2 (see the module docstring). The graph metadata holds the input quantization, the
    weight bits, the N-hot key and its decode rule, the layer names and the network's hash.
    """
    import nir

    height, width, channels = network.input.shape
    shape = (channels, height, width)
    nodes = {"input": nir.Input(input_type={"input": np.array(shape)})}
    order = ["input"]
    for layer in network.layers:
        if layer.kind == "dense":
            weights = layer.weights.astype(np.float64)
            if len(shape) == 3:          # the first dense layer flattens a map: NIR in (C, H, W) order
                nodes["flatten"] = nir.Flatten(input_type={"input": np.array(shape)}, start_dim=0, end_dim=-1)
                order.append("flatten")
                weights = _hwc_columns_to_chw(weights, (shape[1], shape[2], shape[0]))
            node = nir.Affine(weight=weights, bias=np.full(layer.outputs, 0.5))
            shape = (layer.outputs,)
            threshold = layer.thresholds.astype(np.float64)
        elif layer.kind == "conv2d":
            node = nir.Conv2d(input_shape=shape[1:], weight=layer.weights.transpose(0, 3, 1, 2).astype(np.float64),
                              stride=1, padding=_padding(layer), dilation=1, groups=1,
                              bias=np.full(layer.outputs, 0.5))
            out_h, out_w, _ = layer.output_shape((shape[1], shape[2], shape[0]))
            shape = (layer.outputs, out_h, out_w)
            # nir 1.0.8 infers a Conv2d's output from the kernel's height alone (wrong for kh != kw)
            node.output_type = {"output": np.array(shape)}
            threshold = np.broadcast_to(layer.thresholds.astype(np.float64)[:, None, None], shape).copy()
        else:
            pool = np.array(layer.pool)
            node = nir.SumPool2d(kernel_size=pool, stride=pool, padding=np.array([0, 0]))
            shape = (shape[0], shape[1] // layer.pool[0], shape[2] // layer.pool[1])
            threshold = np.full(shape, 0.5)
        nodes[layer.name] = node
        nodes[f"{layer.name}.spike"] = nir.Threshold(threshold=threshold)
        order += [layer.name, f"{layer.name}.spike"]
    nodes["output"] = nir.Output(output_type={"output": np.array(shape)})
    order.append("output")
    bits = network.input.bits
    metadata = {
        f"{METADATA}.format": "hone-network", f"{METADATA}.sha256": network.sha256,
        f"{METADATA}.input_bits": bits, f"{METADATA}.input_shape_hwc": np.array(network.input.shape),
        f"{METADATA}.input": (f"integer pixels q = floor(p * {2 ** bits - 1} + 1/2) for p in [0, 1], "
                              f"0..{2 ** bits - 1}; maps channel-first"),
        f"{METADATA}.weight_bits": network.weight_bits,
        f"{METADATA}.layers": ",".join(f"{layer.name}:{layer.kind}" for layer in network.layers),
        f"{METADATA}.ties": "bias 1/2 on integer sums: no neuron input ever equals its threshold",
    }
    if network.output.kind == "spikes":     # no key: the output layer's spikes are the output
        metadata[f"{METADATA}.output"] = "spikes"
        metadata[f"{METADATA}.decode"] = "none: the output layer's spikes are the output (no classes)"
    else:
        metadata.update({
            f"{METADATA}.nhot_key": network.output.key.astype(np.int64),
            f"{METADATA}.decode": ("class = the row of nhot_key with the most output spikes among its units; "
                                   f"ties to the {network.output.tie_break} class"),
            f"{METADATA}.tie_break": network.output.tie_break,
        })
    for key, value in (meta or {}).items():
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            metadata[f"{METADATA}.meta.{key}"] = value
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order, order[1:])), metadata=metadata)


def _hwc_columns_to_chw(weights, shape):
    """Reorder the columns of a dense layer's weights from an (H, W, C) flatten to a (C, H, W) one."""
    height, width, channels = shape
    return weights.reshape(len(weights), height, width, channels).transpose(0, 3, 1, 2).reshape(len(weights), -1)


def _chw_columns_to_hwc(weights, shape):
    height, width, channels = shape
    return weights.reshape(len(weights), channels, height, width).transpose(0, 2, 3, 1).reshape(len(weights), -1)


# -- import -------------------------------------------------------------------------------------------

def _chain(graph):
    """The graph's nodes in order from its one Input to its one Output; :class:`NIRError` otherwise."""
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    for name, kind in kinds.items():
        if kind == "NIRGraph":
            raise NIRError(f"node {name!r}: a nested NIRGraph; flatten it into one graph first")
    inputs = [name for name, kind in kinds.items() if kind == "Input"]
    outputs = [name for name, kind in kinds.items() if kind == "Output"]
    if len(inputs) != 1 or len(outputs) != 1:
        raise NIRError(f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; hone reads exactly one "
                       f"of each")
    successors, predecessors = {}, {}
    for source, target in graph.edges:
        for name in (source, target):
            if name not in graph.nodes:
                raise NIRError(f"edge ({source!r}, {target!r}) names node {name!r}, which the graph does not hold")
        if source == target:
            raise NIRError(f"node {source!r}: a recurrent edge onto itself; hone runs one time step, without state")
        successors.setdefault(source, []).append(target)
        predecessors.setdefault(target, []).append(source)
    for name in graph.nodes:
        if len(successors.get(name, [])) > 1 or len(predecessors.get(name, [])) > 1:
            raise NIRError(f"node {name!r} has {len(predecessors.get(name, []))} inputs and "
                           f"{len(successors.get(name, []))} outputs; hone reads a chain of nodes (no branches, "
                           f"merges or recurrence)")
    chain, name = [inputs[0]], inputs[0]
    while name in successors:
        name = successors[name][0]
        if name in chain:
            raise NIRError(f"node {name!r}: a recurrent edge (a cycle back to it); hone runs one time step, "
                           f"without state")
        chain.append(name)
    if chain[-1] != outputs[0] or len(chain) != len(graph.nodes):
        raise NIRError(f"the nodes do not form one chain from {inputs[0]!r} to {outputs[0]!r}")
    return chain


def _array(node, field):
    return np.asarray(getattr(node, field), dtype=np.float64)


def _neuron(name, node, width_shape, dt):
    """``(scale, threshold)`` of a neuron node's one-step reading: it fires iff ``scale * I > threshold``
    for its input current ``I`` (broadcast to ``width_shape``)."""
    kind = type(node).__name__
    if kind == "Threshold":
        return np.ones(width_shape), np.broadcast_to(_array(node, "threshold"), width_shape)
    if kind == "IF":   # dv/dt = R I over one unit step from rest 0
        return (np.broadcast_to(_array(node, "r"), width_shape),
                np.broadcast_to(_array(node, "v_threshold"), width_shape))
    if kind == "LIF":
        leak = _array(node, "v_leak")
        if np.any(leak != 0):
            raise NIRError(f"node {name!r}: LIF with a leak towards {float(leak.flat[np.argmax(leak != 0)]):g} "
                           f"(v_leak != 0) carries state across time steps; hone reads single-step neurons only")
        if dt is None:
            raise NIRError(f"node {name!r}: a LIF's one-step reading needs the time step: pass --dt S (snnTorch's "
                           f"exporter uses dt = 1e-4 s: tau = dt / (1 - beta), r = tau / dt)")
        # one forward-Euler step from rest: v = dt / tau * R I
        scale = dt / _array(node, "tau") * _array(node, "r")
        return np.broadcast_to(scale, width_shape), np.broadcast_to(_array(node, "v_threshold"), width_shape)
    raise AssertionError(kind)


def _shape_of(node, field):
    types = getattr(node, field)
    values = list(types.values())
    if len(values) != 1 or values[0] is None:
        return None
    return tuple(int(v) for v in np.asarray(values[0]).reshape(-1))


def from_nir(graph, *, weight_bits=None, input_bits=None, dt=None, key=None):
    """A :class:`~hone.network.netfile.Network` for ``graph``, and the float model it quantizes.

    Reads Input, (Flatten), then stages of an Affine/Linear/Conv2d or a SumPool2d/AvgPool2d each
    followed by a neuron node (Threshold; IF or LIF read as one time step from rest), then Output.
    A graph that hone wrote (its metadata names a hone network) comes back exactly: the same
    network, the same hash. Any other graph is quantized with hone's exporter arithmetic
    (:func:`~hone.network.quantize.quantize_neurons`, per-neuron scales) into ``weight_bits``-bit
    weights (default 4) and ``input_bits``-bit pixels (default 8), its input taken as pixels in
    [0, 1]; its output code is ``key`` ((classes, outputs) 0/1; default: one output unit per class).

    Returns:
        ``(network, float_stages)``: ``float_stages`` is the list of ``(kind, weights, bias, scale,
        threshold, extra)`` that :func:`run_float` evaluates, for agreement reports.

    Raises:
        NIRError: A node hone cannot read (naming it and why), or a graph that is not one chain.
    """
    chain = _chain(graph)
    metadata = dict(graph.metadata or {})
    ours = metadata.get(f"{METADATA}.format") == "hone-network"
    input_shape = _shape_of(graph.nodes[chain[0]], "input_type")
    if input_shape is None:
        raise NIRError(f"node {chain[0]!r}: an Input without a shape")
    if len(input_shape) == 1:
        chw = (1, 1, input_shape[0])
    elif len(input_shape) == 2:
        chw = (1, *input_shape)
    elif len(input_shape) == 3:
        chw = input_shape
    else:
        raise NIRError(f"node {chain[0]!r}: input shape {input_shape}; hone reads (features,), (height, width) or "
                       f"(channels, height, width)")
    if ours:
        bits = int(metadata[f"{METADATA}.input_bits"])
        hwc = tuple(int(v) for v in np.asarray(metadata[f"{METADATA}.input_shape_hwc"]).reshape(-1))
        weight_bits = int(metadata[f"{METADATA}.weight_bits"]) if weight_bits is None else weight_bits
    else:
        bits = 8 if input_bits is None else input_bits
        hwc = (chw[1], chw[2], chw[0])
        weight_bits = 4 if weight_bits is None else weight_bits
    shape, stages = chw, []
    position = 1
    while position < len(chain) - 1:
        name = chain[position]
        node = graph.nodes[name]
        kind = type(node).__name__
        if kind == "Flatten":
            shape = (int(np.prod(shape)),)
            position += 1
            continue
        if kind not in ("Affine", "Linear", "Conv2d", "SumPool2d", "AvgPool2d"):
            raise NIRError(_unsupported(name, kind))
        if position + 1 >= len(chain) - 1 or type(graph.nodes[chain[position + 1]]).__name__ not in NEURON_NODES:
            following = chain[position + 1]
            raise NIRError(f"node {name!r} ({kind}) is followed by {following!r} "
                           f"({type(graph.nodes[following]).__name__}); hone needs a Threshold, IF or LIF after it "
                           f"(binary spikes)")
        neuron_name = chain[position + 1]
        stage, shape = _stage(name, node, kind, shape)
        scale, threshold = _neuron(neuron_name, graph.nodes[neuron_name], shape, dt)
        stages.append(dict(stage, neuron_scale=np.array(scale), threshold=np.array(threshold), name=name))
        position += 2
    if not stages or stages[-1]["kind"] != "dense":
        raise NIRError("the last stage must be an Affine or Linear followed by a neuron node (the output layer)")
    network = _quantize(stages, hwc, chw, bits, weight_bits, metadata if ours else None, key, exact=ours)
    return network, stages


def _unsupported(name, kind):
    reasons = {
        "Delay": "delays need more than one time step",
        "LI": "a leaky integrator has no spikes and carries state",
        "I": "an integrator has no spikes and carries state",
        "CubaLIF": "a current-based LIF carries synaptic state across time steps",
        "CubaLI": "a current-based LI carries state across time steps",
        "Scale": "a scale outside a stage (fold it into the Affine before it)",
        "Conv1d": "1-D convolution",
    }
    return (f"node {name!r} ({kind}) is not supported: {reasons.get(kind, 'no one-step binary reading')}; hone "
            f"reads Affine, Linear, Conv2d, SumPool2d and AvgPool2d, each followed by Threshold, IF or LIF, and "
            f"Flatten")


def _pair(value, name, field, kind):
    array = np.asarray(value).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, 2)
    if array.size != 2:
        raise NIRError(f"node {name!r} ({kind}): {field} {value!r}; expected an integer or a pair")
    return tuple(int(v) for v in array)


def _stage(name, node, kind, shape):
    """One stage's float parameters (channel-first) and its output shape."""
    if kind in ("Affine", "Linear"):
        weights = _array(node, "weight")
        if len(shape) != 1:
            shape = (int(np.prod(shape)),)     # an Affine on a map reads it flattened, as torch's Linear does
        if weights.ndim != 2 or weights.shape[1] != shape[0]:
            raise NIRError(f"node {name!r} ({kind}): weight {weights.shape} does not take the {shape[0]} inputs "
                           f"before it")
        bias = _array(node, "bias") if kind == "Affine" else np.zeros(len(weights))
        return {"kind": "dense", "weights": weights, "bias": np.broadcast_to(bias, (len(weights),))}, (len(weights),)
    if len(shape) != 3:
        raise NIRError(f"node {name!r} ({kind}) needs a (channels, height, width) map, gets {shape}")
    channels, height, width = shape
    if kind == "Conv2d":
        weights = _array(node, "weight")
        if weights.ndim != 4 or weights.shape[1] != channels:
            raise NIRError(f"node {name!r} (Conv2d): weight {weights.shape} does not take {channels} channels")
        if _pair(node.stride, name, "stride", kind) != (1, 1):
            raise NIRError(f"node {name!r} (Conv2d): stride {node.stride}; hone's core runs stride 1")
        if _pair(node.dilation, name, "dilation", kind) != (1, 1):
            raise NIRError(f"node {name!r} (Conv2d): dilation {node.dilation}; hone runs dilation 1")
        if int(node.groups) != 1:
            raise NIRError(f"node {name!r} (Conv2d): {node.groups} groups; hone runs groups=1")
        filters, _, kh, kw = weights.shape
        padding = node.padding
        if isinstance(padding, str):
            mode = padding
        else:
            pads = _pair(padding, name, "padding", kind)
            if pads == (0, 0):
                mode = "valid"
            elif kh % 2 and kw % 2 and pads == ((kh - 1) // 2, (kw - 1) // 2):
                mode = "same"
            else:
                raise NIRError(f"node {name!r} (Conv2d): padding {pads} with a {kh}x{kw} kernel; the network file "
                               f"holds 'valid' (0) and 'same' ({(kh - 1) // 2}, {(kw - 1) // 2})")
        out_h, out_w = (height, width) if mode == "same" else (height - kh + 1, width - kw + 1)
        if out_h < 1 or out_w < 1:
            raise NIRError(f"node {name!r} (Conv2d): a {kh}x{kw} kernel on a {height}x{width} map leaves nothing")
        bias = _array(node, "bias") if getattr(node, "bias", None) is not None else np.zeros(filters)
        return ({"kind": "conv2d", "weights": weights, "bias": np.broadcast_to(bias, (filters,)), "padding": mode},
                (filters, out_h, out_w))
    kernel = _pair(node.kernel_size, name, "kernel_size", kind)
    stride = _pair(node.stride, name, "stride", kind)
    pads = _pair(node.padding, name, "padding", kind)
    if stride != kernel or pads != (0, 0):
        raise NIRError(f"node {name!r} ({kind}): kernel {kernel}, stride {stride}, padding {pads}; hone pools "
                       f"with stride equal to the kernel and no padding")
    scale = 1.0 / (kernel[0] * kernel[1]) if kind == "AvgPool2d" else 1.0
    return ({"kind": "maxpool2d", "pool": kernel, "window": scale},
            (channels, height // kernel[0], width // kernel[1]))


def _quantize(stages, hwc, chw, bits, weight_bits, metadata, key, *, exact):
    """The network file of ``stages``: exact integers for a graph hone wrote, quantized otherwise."""
    from .quantize import quantize_neurons

    low, high = weight_range(weight_bits)
    layers, names = [], _layer_names(stages, metadata)
    shape = hwc                       # hone's (H, W, C) of the current map
    first = True
    for stage, name in zip(stages, names):
        if stage["kind"] == "maxpool2d":
            _check_or(stage, name)
            layer = MaxPoolLayer(name, tuple(stage["pool"]))
        else:
            weights, bias = stage["weights"], stage["bias"]
            neuron_scale = stage["neuron_scale"]
            if stage["kind"] == "dense":
                if len(shape) == 3:     # NIR flattens (C, H, W), hone (H, W, C)
                    weights = _chw_columns_to_hwc(weights, shape)
                outputs = len(weights)
                per_unit_scale = neuron_scale.reshape(outputs)
                per_unit_threshold = stage["threshold"].reshape(outputs)
                flat = weights
            else:
                filters = len(weights)
                per_unit_scale, per_unit_threshold = _per_filter(stage, name)
                flat = weights.transpose(0, 2, 3, 1).reshape(filters, -1)     # -> hone (F, kh, kw, C)
            if np.any(per_unit_scale <= 0):
                raise NIRError(f"node {name!r}: a neuron with a non-positive input scale (r or r dt / tau <= 0) "
                               f"never reads as a threshold")
            # fire iff scale (W x + b) > theta  <=>  W x > theta / scale - b
            real_threshold = per_unit_threshold / per_unit_scale - np.asarray(bias).reshape(-1)
            input_max = 2 ** bits - 1 if first else 1
            if exact:
                weights_int = np.rint(flat)
                if not np.array_equal(weights_int, flat) or weights_int.min(initial=0) < low or weights_int.max(initial=0) > high:
                    raise NIRError(f"node {name!r}: the graph names a hone network but its weights are not "
                                   f"{weight_bits}-bit integers")
                thresholds = np.floor(real_threshold) + 1        # integer sums: s > t <=> s >= floor(t) + 1
                w, theta = weights_int.astype(np.int64), thresholds.astype(np.int64)
            else:
                scaled = flat / input_max if first else flat      # the float graph reads p = q / (2**bits - 1)
                w, theta = quantize_neurons(scaled, real_threshold, weight_bits, input_max=input_max)
            if stage["kind"] == "dense":
                layer = DenseLayer(name, w, theta)
            else:
                _, kh, kw = weights.shape[1:]
                layer = ConvLayer(name, w.reshape(len(w), kh, kw, -1), theta, stage["padding"])
            first = False
        layers.append(layer)
        shape = layer.output_shape(shape)
    outputs = layers[-1].outputs
    if metadata is not None and f"{METADATA}.nhot_key" in metadata:
        key_array = np.asarray(metadata[f"{METADATA}.nhot_key"])
        tie_break = str(metadata.get(f"{METADATA}.tie_break", "lowest-index"))
    else:
        key_array = np.eye(outputs, dtype=np.int64) if key is None else np.asarray(key)
        tie_break = "lowest-index"
    try:
        key_array = check_key(key_array)
    except (ValueError, TypeError) as error:
        raise NIRError(f"output key: {error}") from None
    if key_array.shape[1] != outputs:
        raise NIRError(f"the output key is {key_array.shape[1]} units wide, the last layer has {outputs}")
    code = OutputCode(key_array, tie_break)
    if metadata is not None and str(metadata.get(f"{METADATA}.output", "")) == "spikes":
        code = SpikeOutput()    # hone wrote it from a network whose output is its spike vector
    network = Network(InputSpec(tuple(hwc), bits), tuple(layers), code, weight_bits)
    try:   # the network file's own validation: accumulators, shapes, ranges
        return network_from_dict(network.to_dict(), source="<NIR graph>", version=network.format_version)
    except NetworkFileError as error:
        raise NIRError(str(error)) from None


def _per_filter(stage, name):
    """A conv neuron node's scale and threshold per filter (NIR allows per-position; hone per filter)."""
    scale, threshold = np.asarray(stage["neuron_scale"]), np.asarray(stage["threshold"])
    filters = scale.shape[0]
    flat_scale, flat_threshold = scale.reshape(filters, -1), threshold.reshape(filters, -1)
    if np.any(flat_scale != flat_scale[:, :1]) or np.any(flat_threshold != flat_threshold[:, :1]):
        raise NIRError(f"node {name!r}: the neurons after it have thresholds that vary over the map; hone holds "
                       f"one threshold per filter")
    return flat_scale[:, 0], flat_threshold[:, 0]


def _check_or(stage, name):
    """A pool followed by a neuron is hone's OR of spikes iff one spike in the window fires it and none
    does not: ``0 <= threshold / (neuron scale * window scale) < 1`` for every unit (NIR fires iff
    above the threshold)."""
    effective = np.asarray(stage["threshold"]) / (np.asarray(stage["neuron_scale"]) * stage["window"])
    if np.any(effective < 0) or np.any(effective >= 1):
        bad = float(effective.flat[np.argmax((effective < 0) | (effective >= 1))])
        raise NIRError(f"node {name!r}: the threshold after the pool is {bad:g} spikes; hone's max-pool of spikes "
                       f"(an OR) needs a threshold in [0, 1) spikes")


def _layer_names(stages, metadata):
    if metadata is not None and f"{METADATA}.layers" in metadata:
        names = [entry.split(":")[0] for entry in str(metadata[f"{METADATA}.layers"]).split(",")]
        if len(names) == len(stages):
            return names
    return [stage["name"].replace(".", "_") or f"layer_{index}" for index, stage in enumerate(stages)]


# -- files ----------------------------------------------------------------------------------------------

def write_nir(path, network, *, meta=None):
    """Write ``network`` to ``path`` as a NIR (HDF5) file."""
    import nir

    nir.write(str(path), to_nir(network, meta=meta))


def read_nir(path):
    """Read a NIR file; :class:`NIRError` names the file when it is not one."""
    import nir

    try:   # hone checks every shape itself; nir 1.0.8's check is wrong for rectangular kernels
        return nir.read(str(path), type_check=False)
    except FileNotFoundError:
        raise NIRError(f"{path}: no such NIR file") from None
    except (OSError, KeyError, ValueError, TypeError, AttributeError) as error:
        raise NIRError(f"{path}: not a readable NIR file ({type(error).__name__}: {error})") from None


# -- the float model of an imported graph -----------------------------------------------------------

def run_float(stages, inputs, *, chunk=500):
    """Output spikes ``(n, outputs)`` uint8 of the float stages :func:`from_nir` read, for ``inputs``
    as the graph takes them (``(n, channels, height, width)`` or ``(n, features)``), NIR's rule: a
    neuron fires iff ``scale * (W x + b) > threshold``."""
    from .integer import conv_patches

    inputs = np.asarray(inputs, dtype=np.float64)
    outputs = []
    for start in range(0, len(inputs), chunk):
        x = inputs[start:start + chunk]
        for stage in stages:
            if stage["kind"] == "dense":
                current = x.reshape(len(x), -1) @ stage["weights"].T + stage["bias"]
            elif stage["kind"] == "conv2d":
                filters, _, kh, kw = stage["weights"].shape
                patches = conv_patches(x.transpose(0, 2, 3, 1), kh, kw, stage["padding"])   # n, H', W', kh kw C
                weights = stage["weights"].transpose(0, 2, 3, 1).reshape(filters, -1)
                current = (patches @ weights.T + stage["bias"]).transpose(0, 3, 1, 2)
            else:
                ph, pw = stage["pool"]
                n, channels, height, width = x.shape
                h, w = height // ph, width // pw
                current = x[:, :, :h * ph, :w * pw].reshape(n, channels, h, ph, w, pw).sum(axis=(3, 5)) * stage["window"]
            x = (stage["neuron_scale"] * current > stage["threshold"]).astype(np.float64)
        outputs.append(x.reshape(len(x), -1).astype(np.uint8))
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), np.uint8)


@dataclasses.dataclass
class ImportReport(Report):
    """What :func:`import_graph` read and wrote; ``to_json()`` is ``hone nir import --json``'s object.
    The evaluation's figures are None (left out) without a data set."""

    _OPTIONAL = frozenset({"dataset", "images", "float_accuracy", "integer_accuracy", "class_agreement",
                           "spike_agreement"})

    nir: str                      # the graph read
    network: str                  # the network file written
    written_by_hone: bool         # a graph hone wrote: read back exactly
    weight_bits: int              # 1..16
    input_bits: int               # 1..16
    layers: list                  # "name:kind" per layer
    sha256: str                   # the network file's hash
    dataset: str | None = None    # the test data's name or .npz path
    images: int | None = None     # test images run
    float_accuracy: float | None = None     # the float graph's, in [0, 1]
    integer_accuracy: float | None = None   # the integer network's, in [0, 1]
    class_agreement: int | None = None      # images where both give the same class
    spike_agreement: int | None = None      # images where both give the same output spikes


def import_graph(path, output, *, weight_bits=None, input_bits=None, dt=None, nhot=None, dataset=None, images=None):
    """``hone nir import``: read ``path``, write the network file ``output``; the :class:`ImportReport`.

    With ``dataset``, the float graph and the integer network run on its first ``images`` test images
    (default: all) and the report holds both accuracies and their class and output-spike agreement.
    ``nhot``: output units per class of a graph hone did not write, in consecutive blocks (default 1).

    Raises:
        NIRError: the graph cannot be read or has no network file equivalent (the message names ``path``).
        ParameterError: ``nhot`` does not divide the output units, the data set's images do not fit the
            graph, or ``images`` is outside 1..(test images).
        DatasetError: the data set is missing.
    """
    from .netfile import write_network

    graph = read_nir(path)
    try:
        key = None
        if nhot is not None:
            outputs = _output_width(graph)
            if outputs % nhot:
                raise ParameterError("nhot", f"the graph has {outputs} output units, not a multiple of {nhot}")
            key = np.kron(np.eye(outputs // nhot, dtype=np.int64), np.ones((1, nhot), dtype=np.int64))
        network, stages = from_nir(graph, weight_bits=weight_bits, input_bits=input_bits, dt=dt, key=key)
    except NIRError as error:
        raise NIRError(f"{path}: {error}") from None
    ours = (graph.metadata or {}).get(f"{METADATA}.format") == "hone-network"
    report = ImportReport(nir=str(path), network=str(output), written_by_hone=bool(ours),
                          weight_bits=network.weight_bits, input_bits=network.input.bits,
                          layers=[f"{layer.name}:{layer.kind}" for layer in network.layers], sha256=network.sha256)
    meta = {"source": str(path)}
    if ours and f"{METADATA}.meta.dataset" in (graph.metadata or {}):
        meta["dataset"] = str(graph.metadata[f"{METADATA}.meta.dataset"])
    if dataset is not None:
        from .datasets import load_dataset
        from .integer import IntegerNetwork

        data = load_dataset(dataset, binarize=network.input.bits == 1)
        if int(np.prod(data.input_shape)) != network.input.size:
            raise ParameterError("dataset", f"{dataset!r} has {tuple(data.input_shape)} images, the graph "
                             f"takes {network.input.size} inputs")
        count = len(data.x_test) if images is None else images
        if not 1 <= count <= len(data.x_test):
            raise ParameterError("images", f"expected 1..{len(data.x_test)}, got {count}")
        pixels = data.x_test[:count].reshape((count,) + tuple(network.input.shape))
        q = network.input.quantize(pixels)
        integer = IntegerNetwork(network).run(q)
        graph_input = (q if ours else pixels).astype(np.float64).transpose(0, 3, 1, 2)
        floats = run_float(stages, graph_input)
        from .nhot import decode_spikes

        float_classes = decode_spikes(floats, network.output.key)
        labels = data.y_test[:count]
        report = dataclasses.replace(
            report, dataset=dataset, images=count, float_accuracy=float((float_classes == labels).mean()),
            integer_accuracy=float((integer.classes == labels).mean()),
            class_agreement=int((float_classes == integer.classes).sum()),
            spike_agreement=int((floats == integer.spikes[-1]).all(axis=1).sum()))
        meta.update(dataset=dataset, accuracy=report.integer_accuracy)
    output = pathlib.Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_network(output, network, meta=meta)
    return report


def _output_width(graph):
    chain = _chain(graph)
    shape = _shape_of(graph.nodes[chain[-1]], "output_type")
    if shape is None:
        last = next(graph.nodes[name] for name in reversed(chain)
                    if type(graph.nodes[name]).__name__ in ("Affine", "Linear"))
        return int(np.asarray(last.weight).shape[0])
    return int(np.prod(shape))
