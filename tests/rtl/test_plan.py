"""``rtl/plan.py``'s lanes: the default, the widest layer, and the refusal of lanes that would idle."""

import re

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from hone.network.errors import ParameterError
from hone.network.random import random_conv_architecture, random_conv_network, random_dense_network
from hone.rtl.plan import DEFAULT_LANES, CorePlan, check_lanes, lanes_for, most_lanes, useful_lanes


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), widths=st.lists(st.integers(1, 70), max_size=3),
       classes=st.integers(2, 5), nhot=st.integers(1, 3))
def test_the_widest_dense_layer_sets_the_useful_lanes(seed, widths, classes, nhot):
    network = random_dense_network(np.random.default_rng(seed), widths=widths, classes=classes, nhot=nhot)
    lanes, index, name = useful_lanes(network)
    assert lanes == most_lanes([*widths, classes * nhot])       # from the configured widths, before training
    assert network.layers[index].name == name and network.layers[index].weights.shape[0] == lanes
    assert index == [layer.weights.shape[0] for layer in network.layers].index(lanes)   # the first on a tie
    assert lanes_for(network) == min(DEFAULT_LANES, lanes)
    check_lanes(network, lanes)                                   # every lane of the widest layer is useful
    with pytest.raises(ParameterError):
        check_lanes(network, lanes + 1)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2 ** 16))
def test_conv_layers_count_filters_and_pools_count_nothing(seed):
    rng = np.random.default_rng(seed)
    network = random_conv_network(rng, **random_conv_architecture(rng, sizes=(5, 12), filters=(1, 40)))
    lanes, index, _ = useful_lanes(network)
    widths = [layer.weights.shape[0] for layer in network.layers if layer.kind != "maxpool2d"]
    assert lanes == most_lanes(widths) and network.layers[index].kind != "maxpool2d"


def test_more_lanes_than_the_widest_layer_are_refused_naming_it():
    dense = random_dense_network(np.random.default_rng(0), widths=(9, 4), classes=2, nhot=2)
    with pytest.raises(ParameterError, match=re.escape(
            "lanes: expected 1..9 for this network (its widest layer, layers[0] 'dense_0', has 9 neurons; "
            "more lanes would stay idle), got 10") + "$") as caught:
        lanes_for(dense, 10)
    assert caught.value.parameter == "lanes"
    rng = np.random.default_rng(1)
    conv = random_conv_network(rng, stages=(("conv", 6, 3, "same"),), widths=(4,))
    with pytest.raises(ParameterError, match=r"^lanes: expected 1\.\.6 for this network \(its widest layer, "
                                             r"layers\[0\] 'conv_0', has 6 filters; more lanes would stay idle\), "
                                             r"got 7$"):
        check_lanes(conv, 7)


def test_lanes_asked_for_are_kept_and_the_default_is_capped():
    wide = random_dense_network(np.random.default_rng(2), widths=(DEFAULT_LANES + 8,))
    narrow = random_dense_network(np.random.default_rng(2), widths=(3,), classes=2, nhot=2)
    assert lanes_for(wide) == DEFAULT_LANES == CorePlan(wide, lanes=lanes_for(wide)).lanes
    assert lanes_for(narrow) == 4                       # its output layer: 2 classes x 2-hot
    assert lanes_for(wide, 5) == 5 and lanes_for(narrow, 1) == 1
    assert lanes_for(wide, None, default=8) == 8 and lanes_for(narrow, None, default=8) == 4
