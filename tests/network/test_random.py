"""Random conv networks for verifying the conv gateware, and the conv/pool semantics they rely on.

``random_conv_network`` must give valid network files (the reader validates every field) that
:class:`~hone.network.integer.IntegerNetwork` runs; the hand-computed cases pin down what the reference
computes: 'same' padding puts ``floor((k - 1) / 2)`` zeros on top and left and the rest below and
right, and a pool drops the rows and columns that do not fill a window.
"""

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hone.network.random import random_conv_architecture, random_conv_network, random_conv_stages
from hone.network.integer import IntegerNetwork
from hone.network.netfile import ConvLayer, DenseLayer, InputSpec, MaxPoolLayer, Network, OutputCode, read_network, \
    write_network


def conv_direct(image, weights, padding):
    """``sum_{i, j, c} w[f, i, j, c] * in[y + i - top, x + j - left, c]`` by plain loops (zeros outside)."""
    height, width, channels = image.shape
    filters, kh, kw, _ = weights.shape
    if padding == "same":
        top, left, out_h, out_w = (kh - 1) // 2, (kw - 1) // 2, height, width
    else:
        top, left, out_h, out_w = 0, 0, height - kh + 1, width - kw + 1
    sums = np.zeros((out_h, out_w, filters), dtype=np.int64)
    for y in range(out_h):
        for x in range(out_w):
            for f in range(filters):
                for i in range(kh):
                    for j in range(kw):
                        for c in range(channels):
                            yy, xx = y + i - top, x + j - left
                            if 0 <= yy < height and 0 <= xx < width:
                                sums[y, x, f] += weights[f, i, j, c] * image[yy, xx, c]
    return sums


def ladder(weights, low, high):
    """One filter per threshold ``low .. high``, all with the one filter ``weights``: the count of filters
    that fire at a position is ``sum - low + 1``, so spikes give back the exact sum."""
    count = high - low + 1
    return np.repeat(weights, count, axis=0), np.arange(low, high + 1, dtype=np.int64)


def conv_sums(image, weights, padding, bits):
    """The sums of a one-filter conv as IntegerNetwork computes them, read back through a threshold ladder."""
    bound = int(np.abs(weights).sum()) * (2 ** bits - 1)
    w, theta = ladder(weights, -bound, bound + 1)
    conv = ConvLayer("conv", w, theta, padding)
    shape = conv.output_shape(image.shape)
    out = DenseLayer("out", np.ones((2, int(np.prod(shape))), dtype=np.int64), np.zeros(2, dtype=np.int64))
    network = Network(InputSpec(image.shape, bits), (conv, out), OutputCode(np.eye(2, dtype=np.int8)), 8)
    spikes = IntegerNetwork(network).run(image[None]).spikes[0]
    return spikes[0].sum(axis=-1).astype(np.int64) - bound - 1


def test_same_padding_with_an_even_kernel_is_hand_computed():
    """3x3 image, 2x2 kernel, 'same': floor(1/2) = 0 rows on top / columns on the left, one below / right."""
    image = np.arange(1, 10).reshape(3, 3, 1)           # 1 2 3 / 4 5 6 / 7 8 9
    kernel = np.array([[1, -1], [2, 0]]).reshape(1, 2, 2, 1)
    # out[y][x] = in[y][x] - in[y][x+1] + 2 in[y+1][x], zeros past the bottom and right edges
    expected = np.array([[1 - 2 + 8, 2 - 3 + 10, 3 + 12],
                         [4 - 5 + 14, 5 - 6 + 16, 6 + 18],
                         [7 - 8, 8 - 9, 9]])
    assert expected.tolist() == [[7, 9, 15], [13, 15, 24], [-1, -1, 9]]
    np.testing.assert_array_equal(conv_direct(image, kernel, "same")[..., 0], expected)
    np.testing.assert_array_equal(conv_sums(image, kernel, "same", bits=4), expected)
    # the zeros on the other side (a row on top, a column on the left) would give other sums
    other = conv_direct(np.pad(image, ((1, 0), (1, 0), (0, 0))), kernel, "valid")[..., 0]
    assert other.shape == expected.shape and (other != expected).any()


@pytest.mark.parametrize("shape, kernel, padding", [
    ((3, 3, 1), (2, 2), "valid"), ((5, 4, 2), (4, 4), "same"), ((5, 6, 3), (3, 2), "same"),
    ((4, 5, 1), (1, 5), "same"), ((6, 6, 2), (5, 3), "valid"), ((2, 2, 1), (5, 5), "same"),
])
def test_integer_conv_equals_the_direct_loop(shape, kernel, padding):
    rng = np.random.default_rng(sum(shape) + sum(kernel))
    image = rng.integers(0, 8, size=shape)
    weights = rng.integers(-3, 4, size=(1, *kernel, shape[2]))
    np.testing.assert_array_equal(conv_sums(image, weights, padding, bits=3),
                                  conv_direct(image, weights, padding)[..., 0])


def test_a_pool_drops_trailing_rows_and_columns():
    """A 5x5 map pooled by 2 is 2x2: row 4 and column 4 fall in no window."""
    identity = ConvLayer("conv", np.ones((1, 1, 1, 1), dtype=np.int64), np.ones(1, dtype=np.int64), "valid")
    pool = MaxPoolLayer("pool", (2, 2))
    out = DenseLayer("out", np.ones((2, 4), dtype=np.int64), np.ones(2, dtype=np.int64))
    network = Network(InputSpec((5, 5, 1), 1), (identity, pool, out), OutputCode(np.eye(2, dtype=np.int8)), 2)
    assert network.shapes() == [(5, 5, 1), (2, 2, 1), (2,)]
    images = np.zeros((4, 5, 5, 1), dtype=np.int64)
    images[0, 4, :] = 1                     # the last row only
    images[1, :, 4] = 1                     # the last column only
    images[2, 3, 3] = 1                     # the last pixel of window (1, 1)
    images[3, 0, 2] = images[3, 4, 4] = 1   # window (0, 1), and a dropped corner
    pooled = IntegerNetwork(network).run(images).spikes[1][..., 0]
    assert pooled.tolist() == [[[0, 0], [0, 0]], [[0, 0], [0, 0]], [[0, 0], [0, 1]], [[0, 1], [0, 0]]]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_random_conv_networks_are_valid_files_that_run(seed, tmp_path_factory):
    rng = np.random.default_rng(seed)
    architecture = random_conv_architecture(rng)
    network = random_conv_network(rng, **architecture)
    path = tmp_path_factory.mktemp("conv") / "net.hone"
    assert write_network(path, network) == network.sha256
    back, _ = read_network(path)             # the reader validates shapes, ranges, accumulator widths
    assert back.sha256 == network.sha256 and back.shapes() == network.shapes()
    kinds = [layer.kind for layer in back.layers]
    assert kinds[0] == "conv2d" and kinds[-1] == "dense" and kinds.count("dense") == len(architecture["widths"]) + 1
    assert len(kinds) == len(architecture["stages"]) + len(architecture["widths"]) + 1
    height, width, channels = architecture["input_shape"]
    assert 5 <= height <= 12 and 5 <= width <= 12 and 1 <= channels <= 4
    assert all(min(shape[:2]) >= 1 for shape in back.shapes() if len(shape) == 3)

    pixels = rng.integers(0, 2 ** back.input.bits, size=(5, *back.input.shape))
    pixels[0] = 0
    pixels[1] = 2 ** back.input.bits - 1
    result = IntegerNetwork(back).run(pixels)
    assert [s.shape for s in result.spikes] == [(5, *shape) for shape in back.shapes()]
    assert all(s.dtype == np.uint8 and set(np.unique(s)) <= {0, 1} for s in result.spikes)
    assert result.classes.shape == (5,)
    np.testing.assert_array_equal(result.classes, IntegerNetwork(network).run(pixels).classes)
    planes = IntegerNetwork(back).run(pixels, bit_planes=True)
    assert all(np.array_equal(a, b) for a, b in zip(planes.spikes, result.spikes))


@pytest.mark.parametrize("thresholds, fires", [("low", 1), ("high", 0)])
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1))
def test_low_thresholds_always_fire_and_high_never(thresholds, fires, seed):
    """Whatever the input and wherever 'same' padding adds zeros, 'low' fires every unit, 'high' none."""
    rng = np.random.default_rng(seed)
    architecture = random_conv_architecture(rng, thresholds=(thresholds,))
    network = random_conv_network(rng, **architecture)
    pixels = rng.integers(0, 2 ** network.input.bits, size=(4, *network.input.shape))
    pixels[0] = 0
    pixels[1] = 2 ** network.input.bits - 1
    for spikes in IntegerNetwork(network).run(pixels).spikes:
        assert (spikes == fires).all()


def test_drawn_architectures_cover_the_corners():
    """Over a few hundred draws: every kernel size 1..5 (even ones included) in both directions, both
    paddings, 1..4 input channels, pools 2 and 3 that drop an edge, sides 5..12, weights of 1..8 bits,
    every threshold mode, rectangular kernels and pools; and every one of them valid."""
    rng = np.random.default_rng(2024)
    kernels, paddings, channels, sides, weight_bits, modes = set(), set(), set(), set(), set(), set()
    dropping_pools, rectangular = set(), set()
    for _ in range(400):
        architecture = random_conv_architecture(rng)
        network = random_conv_network(rng, **architecture)
        shape = network.input.shape
        channels.add(shape[2])
        sides.update(shape[:2])
        weight_bits.add(network.weight_bits)
        modes.add(architecture["thresholds"])
        for layer in network.layers:
            if layer.kind == "conv2d":
                kernels.update(layer.weights.shape[1:3])
                paddings.add(layer.padding)
                if layer.weights.shape[1] != layer.weights.shape[2]:
                    rectangular.add("kernel")
            elif layer.kind == "maxpool2d":
                if shape[0] % layer.pool[0] or shape[1] % layer.pool[1]:
                    dropping_pools.update(layer.pool)
                if layer.pool[0] != layer.pool[1]:
                    rectangular.add("pool")
            shape = layer.output_shape(shape)
    assert kernels == {1, 2, 3, 4, 5} and paddings == {"same", "valid"}
    assert channels == {1, 2, 3, 4} and sides == set(range(5, 13)) and weight_bits == set(range(1, 9))
    assert dropping_pools == {2, 3} and rectangular == {"kernel", "pool"}
    assert modes == {"random", "low", "high", "mixed"}


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2 ** 32 - 1), height=st.integers(1, 12), width=st.integers(1, 12))
def test_drawn_stages_never_empty_a_map(seed, height, width):
    stages = random_conv_stages(np.random.default_rng(seed), (height, width, 1), blocks=(1, 4))
    network = random_conv_network(np.random.default_rng(seed), input_shape=(height, width, 1), stages=stages)
    assert all(min(shape) >= 1 for shape in network.shapes())


@pytest.mark.parametrize("kwargs, error, message", [
    ({"stages": (("conv", 2, 5, "valid"),)}, ValueError,
     r"stage 0 \('conv', 2, 5, 'valid'\) leaves a 0x0 map from a 4x4 input"),
    ({"stages": (("conv", 2, 3, "same"), ("pool", (3, 5)))}, ValueError,
     r"stage 1 \('pool', \(3, 5\)\) leaves a 1x0 map from a 4x4 input"),
    ({"stages": (("conv", 2, 3, "full"),)}, ValueError, r"stage 0: padding must be 'valid' or 'same', not 'full'"),
    ({"stages": (("conv", 0, 3, "same"),)}, ValueError, r"stage 0: filters must be a positive integer, not 0"),
    ({"stages": (("conv", 2, 2.5, "same"),)}, TypeError, r"stage 0: the kernel must be a positive integer, not 2\.5"),
    ({"stages": (("dense", 3),)}, ValueError,
     r"stage 0: expected \('conv', filters, kernel, padding\) or \('pool', size\), not \('dense', 3\)"),
    ({"thresholds": "often"}, ValueError, r"'thresholds' must be one of random, low, high, mixed, not 'often'"),
])
def test_bad_stages_are_refused_by_name(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        random_conv_network(np.random.default_rng(0), input_shape=(4, 4, 1), **kwargs)


def test_the_same_generator_state_gives_the_same_network():
    first = random_conv_network(np.random.default_rng(11), **random_conv_architecture(np.random.default_rng(12)))
    again = random_conv_network(np.random.default_rng(11), **random_conv_architecture(np.random.default_rng(12)))
    assert first.sha256 == again.sha256 and re.fullmatch(r"[0-9a-f]{64}", first.sha256)
