import json

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hone.network.integer import IntegerNetwork
from hone.network.netfile import (ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, NetworkFileError,
                              OutputCode, accumulator_bits, read_network, write_network)
from hone.network.nhot import nhot_key
from conftest import edit, rehash


def random_network(rng, *, input_bits=3, weight_bits=4, conv=True):
    low, high = -(2 ** (weight_bits - 1) - 1), 2 ** (weight_bits - 1) - 1
    if weight_bits == 1:
        low, high = -1, 1
    def weights(shape):
        w = rng.integers(low, high + 1, size=shape)
        return np.where(w == 0, 1, w) if weight_bits == 1 else w
    layers = []
    shape = (6, 6, 2)
    if conv:
        layers.append(ConvLayer("c0", weights((3, 3, 3, 2)), rng.integers(-4, 5, size=3), "same"))
        layers.append(MaxPoolLayer("p0", (2, 2)))
        shape = (3, 3, 3)
    fan_in = int(np.prod(shape))
    layers.append(DenseLayer("d0", weights((7, fan_in)), rng.integers(-3, 6, size=7)))
    key = nhot_key(3, 2, seed=int(rng.integers(100)))
    layers.append(DenseLayer("out", weights((6, 7)), rng.integers(-2, 3, size=6)))
    return Network(InputSpec((6, 6, 2), input_bits), tuple(layers), OutputCode(key), weight_bits)


@pytest.fixture
def network():
    return random_network(np.random.default_rng(0))


def test_round_trip_preserves_everything(tmp_path, network):
    path = tmp_path / "net.hone"
    digest = write_network(path, network, meta={"note": "test"})
    loaded, meta = read_network(path)
    assert meta == {"note": "test"}
    assert loaded.sha256 == digest == network.sha256
    assert loaded.to_dict() == network.to_dict()
    pixels = np.random.default_rng(1).integers(0, 8, size=(20, 6, 6, 2))
    a, b = IntegerNetwork(network).run(pixels), IntegerNetwork(loaded).run(pixels)
    for x, y in zip(a.spikes, b.spikes):
        np.testing.assert_array_equal(x, y)


def test_the_hash_covers_the_network_but_not_meta(tmp_path, network):
    write_network(tmp_path / "a.hone", network, meta={"a": 1})
    write_network(tmp_path / "b.hone", network, meta={"b": 2})
    docs = [json.loads((tmp_path / n).read_text()) for n in ("a.hone", "b.hone")]
    assert docs[0]["sha256"] == docs[1]["sha256"]


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(version=3), r"version: format version 3 is newer than this hone reads \(2\); upgrade hone$"),
    (lambda d: d.update(format="onnx"), r"format: expected 'hone-network', got 'onnx'$"),
    (lambda d: d["network"]["layers"][2]["weights"].__setitem__(0, 99),
     r"sha256: content hash mismatch: the file declares [0-9a-f]{16}\.\.\. but its network hashes to "
     r"[0-9a-f]{16}\.\.\.; the file was modified or corrupted$"),
    (lambda d: (d["network"]["layers"][2]["weights"].__setitem__(5, 9), rehash(d)),
     r"network\.layers\[2\]\.weights\[5\]: 9 is outside -7\.\.7$"),
    (lambda d: (d["network"]["layers"][2]["thresholds"].pop(), rehash(d)),
     r"network\.layers\[2\]\.thresholds: expected 7 integers, got 6$"),
    (lambda d: (d["network"]["layers"][2]["weights"].__setitem__(0, 1.5), rehash(d)),
     r"network\.layers\[2\]\.weights\[0\]: expected an integer, got float 1\.5$"),
    (lambda d: (d["network"]["layers"][0].update(kind="lstm"), rehash(d)),
     r"network\.layers\[0\]\.kind: unknown layer kind 'lstm' \(expected dense, conv2d or maxpool2d\)$"),
    (lambda d: (d["network"]["layers"][2].update(shape=[7, 26]), rehash(d)),
     r"network\.layers\[2\]\.shape: dense layer takes 26 inputs but the previous layer gives 27 \(\(3, 3, 3\)\)$"),
    (lambda d: (d["network"].update(weight_bits=17), rehash(d)), r"network\.weight_bits: 17 is outside 1\.\.16$"),
    (lambda d: (d["network"]["input"].update(bits=True), rehash(d)),
     r"network\.input\.bits: expected int, got bool true$"),
    (lambda d: (d["network"]["layers"][3].update(accumulator_bits=30), rehash(d)),
     r"network\.layers\[3\]\.accumulator_bits: declares 30 but its weights and thresholds need \d+$"),
    (lambda d: (d["network"]["output"]["key"][0].__setitem__(0, 2), rehash(d)),
     r"network\.output\.key\[0\]\[0\]: expected 0 or 1, got 2$"),
    (lambda d: (d["network"]["output"].update(tie_break="random"), rehash(d)),
     r"network\.output\.tie_break: unknown tie-break 'random' \(expected 'lowest-index'\)$"),
    (lambda d: (d["network"].pop("output"), rehash(d)), r"network\.output: missing \(expected dict\)$"),
])
def test_every_validation_error_names_file_field_and_value(tmp_path, network, change, message):
    path = tmp_path / "net.hone"
    write_network(path, network)
    edit(path, change)
    with pytest.raises(NetworkFileError, match=rf"^{path}: {message}"):
        read_network(path)


def test_truncated_and_garbage_files(tmp_path, network):
    path = tmp_path / "net.hone"
    write_network(path, network)
    text = path.read_bytes()
    path.write_bytes(text[: len(text) // 2])
    with pytest.raises(NetworkFileError, match=rf"^{path}: not a hone network file \(invalid JSON: .*\); "
                                               r"the file is corrupted or truncated$"):
        read_network(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(NetworkFileError, match="not a hone network file"):
        read_network(path)
    with pytest.raises(NetworkFileError, match=r"no such network file$"):
        read_network(tmp_path / "missing.hone")


def test_one_bit_weights_must_not_be_zero(tmp_path):
    network = random_network(np.random.default_rng(2), weight_bits=1)
    path = tmp_path / "net.hone"
    write_network(path, network)
    read_network(path)
    edit(path, lambda d: (d["network"]["layers"][3]["weights"].__setitem__(0, 0), rehash(d)))
    with pytest.raises(NetworkFileError, match=r"layers\[3\]\.weights: 1-bit weights must be -1 or \+1, found 0$"):
        read_network(path)


def test_accumulator_bits_cover_the_extremes():
    weights = np.array([[3, -2, 5], [-7, -7, 1]])
    # sums range from -14 to 8 (binary inputs): 5 signed bits; thresholds inside
    assert accumulator_bits(weights, [0, 1]) == 5
    assert accumulator_bits(weights, [0, 40]) == 7  # a threshold of 40 needs 7 bits
    assert accumulator_bits(weights, [0, 0], input_max=255) == 13  # -3570..2040


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), input_bits=st.integers(1, 8), weight_bits=st.integers(1, 8),
       conv=st.booleans())
def test_bit_planes_equal_direct_integer_input(seed, input_bits, weight_bits, conv):
    rng = np.random.default_rng(seed)
    network = random_network(rng, input_bits=input_bits, weight_bits=weight_bits, conv=conv)
    pixels = rng.integers(0, 2 ** input_bits, size=(16, 6, 6, 2))
    pixels[0] = 0
    pixels[1] = 2 ** input_bits - 1
    direct = IntegerNetwork(network).run(pixels)
    planes = IntegerNetwork(network).run(pixels, bit_planes=True)
    for a, b in zip(direct.spikes, planes.spikes):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(direct.classes, planes.classes)


def test_reference_model_matches_a_plain_loop(network):
    """The vectorized model against the definition, neuron by neuron, on a few images."""
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 8, size=(3, 6, 6, 2))
    result = IntegerNetwork(network).run(pixels)
    conv, pool, dense, out = network.layers
    for n in range(3):
        x = np.pad(pixels[n], ((1, 1), (1, 1), (0, 0)))
        maps = np.zeros((6, 6, 3), dtype=int)
        for i in range(6):
            for j in range(6):
                for f in range(3):
                    maps[i, j, f] = int((conv.weights[f] * x[i:i + 3, j:j + 3, :]).sum() >= conv.thresholds[f])
        np.testing.assert_array_equal(result.spikes[0][n], maps)
        pooled = maps.reshape(3, 2, 3, 2, 3).max(axis=(1, 3))
        np.testing.assert_array_equal(result.spikes[1][n], pooled)
        hidden = (dense.weights @ pooled.reshape(-1) >= dense.thresholds).astype(int)
        np.testing.assert_array_equal(result.spikes[2][n], hidden)
        spikes = (out.weights @ hidden >= out.thresholds).astype(int)
        votes = network.output.key.astype(int) @ spikes
        assert result.classes[n] == int(np.flatnonzero(votes == votes.max())[0])


def test_pixels_are_checked(network):
    with pytest.raises(ValueError, match=r"^pixels must be in 0\.\.7 for 3-bit input, got 8\.\.8$"):
        IntegerNetwork(network).run(np.full((1, 6, 6, 2), 8))
    with pytest.raises(TypeError, match=r"^pixels must be integers"):
        IntegerNetwork(network).run(np.zeros((1, 6, 6, 2)))


def test_input_quantization_rounds_half_up():
    spec = InputSpec((1, 4, 1), 1)
    assert spec.quantize(np.array([0.0, 0.49, 0.5, 1.0])).tolist() == [0, 0, 1, 1]
    assert InputSpec((1, 1, 1), 8).quantize(np.array([np.arange(256) / 255.0])).tolist()[0] == list(range(256))


def test_hone_info_describes_a_valid_file(tmp_path, network, capsys):
    from hone.cli.main import main
    path = tmp_path / "net.hone"
    write_network(path, network, meta={"dataset": "synthetic"})
    assert main(["info", str(path), "--json"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["sha256"] == network.sha256
    assert [l["kind"] for l in figures["layers"]] == ["conv2d", "maxpool2d", "dense", "dense"]
    assert figures["layers"][1]["output_shape"] == [3, 3, 3]
    assert figures["meta"] == {"dataset": "synthetic"}
    assert f"{path}: valid hone network, sha256 {network.sha256}" in out


def test_hone_info_reports_a_bad_file_in_one_line(tmp_path, network, capsys):
    from hone.cli.main import main
    path = tmp_path / "net.hone"
    write_network(path, network)
    edit(path, lambda d: d.update(version=3))
    assert main(["info", str(path)]) == 1
    err = capsys.readouterr().err
    assert err == (f"hone: error: {path}: version: format version 3 is newer than this hone reads (2); "
                   f"upgrade hone\n")
