"""Data-parallel training on the engines Keras already drives, never a scheduler of our own.

- JAX: ``keras.distribution.DataParallel`` over every device (``keras.distribution.initialize()``
  first when ``KERAS_DISTRIBUTION_*`` describe several processes).
- TensorFlow: ``tf.distribute.MirroredStrategy`` over the local devices. (Several workers through
  ``MultiWorkerMirroredStrategy`` fail inside Keras 3's ``Model.fit``; a ``TF_CONFIG`` with more than
  one worker is refused with that reason.)

Every replica sees its slice of the same global batch, gradients are all-reduced, and the model's
variables (weights and each spiking layer's sharpness and its plan) are single logical variables: a
sharpener plans each epoch from the cross-replica loss, and every replica's training step follows
the plan once per step, the same on every worker.
"""

import contextlib
import dataclasses
import json
import os

from .config import DISTRIBUTIONS

__all__ = ["DISTRIBUTIONS", "Placement", "placement", "worker_shard", "batch_multiple", "pad_to_multiple"]


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run trains: the engine, its devices, and this process' place among the workers."""

    backend: str
    engine: str
    devices: tuple
    workers: int = 1
    worker: int = 0

    @property
    def replicas(self):
        return len(self.devices)

    @property
    def chief(self):
        return self.worker == 0


def _tf_workers():
    """How many workers ``TF_CONFIG`` lists (1 without one)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 1
    try:
        workers = len(json.loads(raw).get("cluster", {}).get("worker", []))
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"TF_CONFIG is not valid JSON with a cluster.worker list: {error}") from None
    return max(workers, 1)


def _jax_cluster():
    processes = os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES")
    if not processes:
        return 1, 0
    try:
        return int(processes), int(os.environ.get("KERAS_DISTRIBUTION_PROCESS_ID", "0"))
    except ValueError:
        raise ValueError("KERAS_DISTRIBUTION_NUM_PROCESSES and KERAS_DISTRIBUTION_PROCESS_ID must be "
                         "integers") from None


@contextlib.contextmanager
def placement(distribution="none"):
    """Build, compile and fit inside this context; it yields the run's :class:`Placement`."""
    import keras

    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {distribution!r}; expected one of {', '.join(DISTRIBUTIONS)}")
    backend = keras.backend.backend()
    if distribution == "none":
        yield Placement(backend, "single device", ("default",))
        return
    if backend == "jax":
        workers, worker = _jax_cluster()
        if workers > 1:
            keras.distribution.initialize()
        devices = keras.distribution.list_devices()
        previous = keras.distribution.distribution()
        # Several processes: each feeds its own slice (worker_shard), as its part of the global batch.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=workers == 1))
        try:
            yield Placement(backend, "keras.distribution.DataParallel", tuple(devices), workers, worker)
        finally:
            keras.distribution.set_distribution(previous)
    elif backend == "tensorflow":
        import tensorflow as tf

        workers = _tf_workers()
        if workers > 1:
            # Keras 3's TF trainer reduces the first batch with the strategy before building the
            # model, which fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, open).
            raise ValueError(
                f"TF_CONFIG lists {workers} workers, but multi-worker training on the tensorflow backend "
                "fails inside Keras 3's Model.fit (keras-team/keras#20585); train on several machines "
                "with --backend jax and KERAS_DISTRIBUTION_* (see README), or unset TF_CONFIG")
        kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
        devices = [device.name for device in tf.config.list_logical_devices(kind)]
        strategy = tf.distribute.MirroredStrategy(devices)
        with strategy.scope():
            yield Placement(backend, "tf.distribute.MirroredStrategy", tuple(devices))
    else:
        raise ValueError(f"data-parallel training is not wired up for the {backend} backend")


def worker_shard(where, x, y, batch_size):
    """This process' share of the data and its batch size.

    Keras' JAX trainer takes each process' batch as its part of the global batch, so across JAX
    processes every worker trains on its own slice; ``tf.distribute`` shards the data itself.
    """
    if where.backend != "jax" or where.workers == 1:
        return x, y, batch_size
    if batch_size % where.workers:
        raise ValueError(f"batch size {batch_size} does not split evenly over {where.workers} processes")
    # Every process must feed the same number of batches of the same size.
    usable = len(x) - len(x) % where.workers
    if usable < len(x):
        print(f"data-parallel over {where.workers} processes: the last {len(x) - usable} of {len(x)} training "
              f"images are left out so that every process gets {usable // where.workers}", flush=True)
    x, y = x[:usable], y[:usable]
    return x[where.worker::where.workers], y[where.worker::where.workers], batch_size // where.workers


def batch_multiple():
    """Every batch must split evenly over this many devices: JAX shards each batch in equal parts."""
    import keras

    if keras.backend.backend() != "jax" or keras.distribution.distribution() is None:
        return 1
    return int(keras.distribution.distribution().device_mesh.devices.size)


def pad_to_multiple(x, y, multiple):
    """``(x, y, sample_weight)`` padded to a multiple of ``multiple`` rows with weight-0 copies.

    The final short batch then splits evenly too, and the padding changes no metric (weight 0);
    ``sample_weight`` is None when nothing was padded.
    """
    missing = -len(x) % multiple
    if missing == 0:
        return x, y, None
    import numpy as np

    weights = np.concatenate([np.ones(len(x), "float32"), np.zeros(missing, "float32")])
    return (np.concatenate([x, x[:missing]]), np.concatenate([y, y[:missing]]), weights)
