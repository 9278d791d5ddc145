import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import pytest
from hypothesis import settings

# CI runs a fixed set of examples (reproducible, never flaky); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def digits():
    from hone.network.datasets import load_dataset

    return load_dataset("digits")


def gradient(fn, x):
    """d sum(fn(x)) / dx on whichever Keras backend is active."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        x = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(fn(x))
        return tape.gradient(y, x).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(lambda v: fn(v).sum())(x))
    pytest.skip(f"no gradient helper for backend {backend}")


def edit(path, change):
    """Apply ``change`` to the JSON document in the network file ``path`` and write it back."""
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def rehash(document):
    """Make a network file's declared ``sha256`` match its (edited) network again."""
    from hone.network.netfile import canonical_hash

    document["sha256"] = canonical_hash(document["network"])
