"""hone <-> NIR: exact export, exact round trip, import of graphs hone did not write, refusals.

``nir_reference.evaluate`` is an independent NIR evaluator, written from the NIR primitives; it shares
no code with hone's importer or with ``IntegerNetwork``. All 10,000 test images: ``bench/nir_roundtrip.py``.
"""

import json
import pathlib
import re

import nir
import numpy as np
import pytest

from hone.cli.main import main
from hone.network.datasets import load_dataset
from hone.network.integer import IntegerNetwork
from hone.network.netfile import read_network
from hone.network.nhot import decode_spikes
from hone.network.nirgraph import NIRError, from_nir, read_nir, to_nir
from nir_reference import evaluate

DATA = pathlib.Path(__file__).parents[1] / "data"
NETWORKS = {"dense": DATA / "fashion-dense-4bit.hone", "conv": DATA / "fashion-conv-4bit.hone",
            "digits": DATA / "digits-dense-4bit.hone"}


def _as_hone(spikes):
    """A channel-first spike map as hone's channel-last, flattened per image."""
    return (spikes.transpose(0, 2, 3, 1) if spikes.ndim == 4 else spikes).reshape(len(spikes), -1)


def _test_images(network, count):
    data = load_dataset("fashion-mnist")
    return network.input.quantize(data.x_test[:count].reshape((count,) + tuple(network.input.shape)))


def _check_equal(network, graph, q, fire):
    reference = IntegerNetwork(network).run(q)
    spikes = evaluate(graph, q.transpose(0, 3, 1, 2), fire=fire)
    assert len(spikes) == len(network.layers)
    for layer, ours, theirs in zip(network.layers, reference.spikes, spikes):
        assert np.array_equal(ours.reshape(len(q), -1), _as_hone(theirs)), layer.name
    classes = decode_spikes(spikes[-1].astype(np.uint8), np.asarray(graph.metadata["hone.nhot_key"]))
    assert np.array_equal(classes, reference.classes)


# -- export ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("which", ["dense", "conv"])
def test_the_exported_graph_equals_the_integer_network_spike_for_spike(which, tmp_path):
    network, meta = read_network(NETWORKS[which])
    path = tmp_path / "net.nir"
    assert main(["nir", "export", str(NETWORKS[which]), "-o", str(path)]) == 0
    graph = read_nir(path)
    q = _test_images(network, 300)
    # the export is tie-free: NIR's strict rule and hone's >= give the same spikes
    _check_equal(network, graph, q, np.greater)
    _check_equal(network, graph, q, np.greater_equal)
    assert graph.metadata["hone.sha256"] == network.sha256
    assert graph.metadata["hone.input_bits"] == network.input.bits


def _written(tmp_path, path):
    out = tmp_path / "net.nir"
    assert main(["nir", "export", str(path), "-o", str(out)]) == 0
    return out


@pytest.mark.parametrize("which", ["dense", "conv", "digits"])
def test_export_then_import_gives_back_the_same_network_file(which, tmp_path, capsys):
    network, _ = read_network(NETWORKS[which])
    assert main(["nir", "import", str(_written(tmp_path, NETWORKS[which])), "-o", str(tmp_path / "back.hone"),
                 "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["written_by_hone"] and report["sha256"] == network.sha256
    assert read_network(tmp_path / "back.hone")[0].sha256 == network.sha256


def test_random_conv_networks_round_trip(tmp_path):
    from hone.network.random import random_conv_architecture, random_conv_network

    for seed in range(12):
        rng = np.random.default_rng(seed)
        network = random_conv_network(rng, **random_conv_architecture(rng))
        nir.write(str(tmp_path / "r.nir"), to_nir(network))
        graph = read_nir(tmp_path / "r.nir")
        back, _ = from_nir(graph)
        assert back.sha256 == network.sha256, seed
        q = rng.integers(0, 2 ** network.input.bits, size=(40, *network.input.shape))
        reference = IntegerNetwork(network).run(q)
        spikes = evaluate(graph, q.transpose(0, 3, 1, 2))
        for ours, theirs in zip(reference.spikes, spikes):
            assert np.array_equal(ours.reshape(40, -1), _as_hone(theirs)), seed


# -- graphs hone did not write ------------------------------------------------------------------------

def foreign_graph(rng):
    """A float classifier as another tool would write it: (8, 8) digits pixels in [0, 1], IF neurons,
    arbitrary positive per-neuron scales, real thresholds, 4 consecutive output units per class, and
    no hone metadata. Built from the trained digits network so that it classifies well."""
    network, _ = read_network(NETWORKS["digits"])
    key = network.output.key
    order = np.concatenate([np.flatnonzero(row) for row in key])   # class-major output units
    nodes = {"in": nir.Input(input_type={"input": np.array([8, 8])}),
             "flat": nir.Flatten(input_type={"input": np.array([8, 8])}, start_dim=0, end_dim=-1)}
    edges = [("in", "flat")]
    previous = "flat"
    for index, layer in enumerate(network.layers):
        weights = layer.weights.astype(float)
        thresholds = layer.thresholds.astype(float)
        if index == len(network.layers) - 1:
            weights, thresholds = weights[order], thresholds[order]
        if index == 0:
            weights = weights * (2 ** network.input.bits - 1)       # reads p in [0, 1], not q
        scale = rng.uniform(0.01, 3.0, size=len(weights))
        r = rng.uniform(0.5, 2.0, size=len(weights))
        nodes[f"fc{index}"] = nir.Affine(weight=weights * scale[:, None], bias=rng.uniform(-0.1, 0.1, len(weights)) * 0)
        # fire iff r * (scale W x) > r * scale * (theta - 1/2)
        nodes[f"if{index}"] = nir.IF(r=r, v_threshold=r * scale * (thresholds - 0.5), v_reset=np.zeros(len(weights)))
        edges += [(previous, f"fc{index}"), (f"fc{index}", f"if{index}")]
        previous = f"if{index}"
    nodes["out"] = nir.Output(output_type={"output": np.array([len(order)])})
    edges.append((previous, "out"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def test_a_graph_written_elsewhere_imports_quantized_and_agrees(tmp_path, capsys):
    path = tmp_path / "foreign.nir"
    nir.write(str(path), foreign_graph(np.random.default_rng(0)))
    assert main(["nir", "import", str(path), "-o", str(tmp_path / "f.hone"), "--weight-bits", "12", "--input-bits", "8",
                 "--nhot", "4", "--dataset", "digits", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert not report["written_by_hone"] and report["weight_bits"] == 12 and report["images"] == 360
    assert report["class_agreement"] >= 355 and report["integer_accuracy"] > 0.9
    assert "agreement: classes" in out
    network, meta = read_network(tmp_path / "f.hone")
    assert network.output.key.shape == (10, 40) and meta["dataset"] == "digits"


@pytest.mark.slow
def test_a_graph_written_elsewhere_runs_through_the_rtl_spike_for_spike(tmp_path, capsys):
    path = tmp_path / "foreign.nir"
    nir.write(str(path), foreign_graph(np.random.default_rng(1)))
    assert main(["nir", "import", str(path), "-o", str(tmp_path / "f.hone"), "--nhot", "4", "--input-bits", "4",
                 "--dataset", "digits"]) == 0
    capsys.readouterr()
    assert main(["sim", str(tmp_path / "f.hone"), "--images", "12", "--simulator", "icarus", "--lanes", "8",
                 "--build-dir", str(tmp_path / "sim"), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert figures["equal"] and figures["all_layers_equal"] == 12


# -- refusals -----------------------------------------------------------------------------------------------

def _chain_graph(*middle):
    nodes = {"in": nir.Input(input_type={"input": np.array([4])})}
    names = ["in"]
    for index, node in enumerate(middle):
        nodes[f"n{index}"] = node
        names.append(f"n{index}")
    nodes["out"] = nir.Output(output_type={"output": np.array([2])})
    names.append("out")
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=False)


AFFINE = nir.Affine(weight=np.ones((2, 4)), bias=np.zeros(2))


@pytest.mark.parametrize("graph, message", [
    (_chain_graph(AFFINE, nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.full(2, -0.2),
                                  v_threshold=np.ones(2))),
     r"node 'n1': LIF with a leak towards -0\.2 \(v_leak != 0\) carries state across time steps"),
    (_chain_graph(AFFINE, nir.LIF(tau=np.full(2, 0.01), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))),
     r"node 'n1': a LIF's one-step reading needs the time step: pass --dt S"),
    (_chain_graph(nir.Delay(delay=np.ones(4)), AFFINE, nir.Threshold(threshold=np.ones(2))),
     r"node 'n0' \(Delay\) is not supported: delays need more than one time step"),
    (_chain_graph(AFFINE, nir.LI(tau=np.ones(2), r=np.ones(2), v_leak=np.zeros(2))),
     r"node 'n0' \(Affine\) is followed by 'n1' \(LI\); hone needs a Threshold, IF or LIF after it"),
    (_chain_graph(AFFINE, nir.Threshold(threshold=np.ones(2)), nir.Affine(weight=np.ones((2, 2)), bias=np.zeros(2))),
     r"node 'n2' \(Affine\) is followed by 'out' \(Output\)"),
])
def test_unsupported_graphs_name_the_node(tmp_path, capsys, graph, message):
    path = tmp_path / "bad.nir"
    nir.write(str(path), graph)
    assert main(["nir", "import", str(path), "-o", str(tmp_path / "x.hone")]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not (tmp_path / "x.hone").exists()


def test_a_recurrent_edge_is_refused():
    graph = _chain_graph(AFFINE, nir.Threshold(threshold=np.ones(2)))
    graph.edges.append(("n1", "n0"))
    with pytest.raises(NIRError, match=r"node 'n\d' has 2 inputs and 1 outputs|recurrent"):
        from_nir(graph)
    graph = _chain_graph(AFFINE, nir.Threshold(threshold=np.ones(2)))
    graph.edges.append(("n1", "n1"))
    with pytest.raises(NIRError, match=r"node 'n1': a recurrent edge onto itself"):
        from_nir(graph)


def test_lif_with_dt_reads_as_snntorch_exports_it(tmp_path):
    # snnTorch's Leaky(beta) exports tau = dt / (1 - beta), r = tau / dt: one step from rest is v = I
    dt, beta = 1e-4, 0.9
    tau = dt / (1 - beta)
    graph = _chain_graph(nir.Affine(weight=np.array([[1.0, 2, 0, -1], [0.5, 0, 1, 1]]), bias=np.zeros(2)),
                         nir.LIF(tau=np.full(2, tau), r=np.full(2, tau / dt), v_leak=np.zeros(2),
                                 v_threshold=np.array([1.5, 0.7])))
    network, stages = from_nir(graph, dt=dt, weight_bits=8, input_bits=1)
    x = np.array([[1, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [0, 1, 1, 1]])
    expected = (x @ np.array([[1.0, 2, 0, -1], [0.5, 0, 1, 1]]).T > np.array([1.5, 0.7])).astype(np.uint8)
    assert np.array_equal(IntegerNetwork(network).run(x.reshape(4, 1, 4, 1)).spikes[-1], expected)


def test_not_a_nir_file_is_one_line(tmp_path, capsys):
    (tmp_path / "x.nir").write_text("hello")
    assert main(["nir", "import", str(tmp_path / "x.nir"), "-o", str(tmp_path / "x.hone")]) == 1
    err = capsys.readouterr().err
    assert re.fullmatch(r"hone: error: \S+x\.nir: not a readable NIR file \(.*\)\n", err), err

