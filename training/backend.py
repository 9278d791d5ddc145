"""Choose the Keras backend and the devices of this process, which must happen before Keras starts.

Keras reads ``KERAS_BACKEND`` once, when it is first imported, and each engine fixes its device list
when it first runs: so ``hone`` calls :func:`select_backend` before anything imports Keras. Nothing
here imports Keras, TensorFlow or JAX unless they are already loaded (or asked for devices).

``cpu_devices`` splits the host CPU into that many virtual devices, so data-parallel training can be
tried, and tested, on a laptop: JAX through XLA's host platform device count, TensorFlow through
logical devices.
"""

import importlib.util
import os
import re
import sys
from hone.network.errors import HoneError

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "BackendError", "select_backend"]

BACKENDS = ("tensorflow", "jax")
DEFAULT_BACKEND = "tensorflow"
_INSTALL = {"jax": "pip install 'hone[jax]'", "tensorflow": "pip install tensorflow-cpu"}


class BackendError(HoneError, RuntimeError):
    """The backend or device set-up asked for cannot be had in this process."""


def select_backend(name=None, *, cpu_devices=None):
    """Make ``name`` (default: ``KERAS_BACKEND``, else TensorFlow) this process' Keras backend.

    Returns the backend's name. Raises :class:`BackendError` when the backend is unknown or not
    installed, when Keras was already imported with another backend, or when ``cpu_devices`` can no
    longer be set up.
    """
    name = name or os.environ.get("KERAS_BACKEND") or DEFAULT_BACKEND
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r} (from --backend or KERAS_BACKEND); "
                           f"expected one of {', '.join(BACKENDS)}")
    if importlib.util.find_spec(name) is None:
        raise BackendError(f"the {name} backend is not installed; install it with: {_INSTALL[name]}")
    if "keras" in sys.modules:
        active = sys.modules["keras"].backend.backend()
        if active != name:
            raise BackendError(f"Keras is already running on the {active} backend in this process; "
                               f"select {name} before Keras is imported (KERAS_BACKEND={name})")
    os.environ["KERAS_BACKEND"] = name
    if cpu_devices is not None:
        _split_cpu(name, cpu_devices)
    return name


def _split_cpu(backend, count):
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise BackendError(f"the number of virtual CPU devices must be a positive integer, got {count!r}")
    if backend == "jax":
        if "jax" in sys.modules:
            import jax

            have = len(jax.devices("cpu"))
            if have != count:
                raise BackendError(f"JAX already started with {have} CPU device(s); {count} virtual "
                                   "devices must be asked for before JAX is imported")
            return
        flags = re.sub(r"--xla_force_host_platform_device_count=\S+", "", os.environ.get("XLA_FLAGS", ""))
        os.environ["XLA_FLAGS"] = f"{flags.strip()} --xla_force_host_platform_device_count={count}".strip()
        # XLA sizes its CPU thread pool from NPROC, else the core count. With more devices than
        # spare threads, one device's program can wait in a collective while the thread the other
        # device needs is blocked on its in-flight limit: a deadlock (seen with 2 devices on 2 cores).
        os.environ.setdefault("NPROC", str(max(os.cpu_count() or 1, 4 * count)))
    else:
        import tensorflow as tf

        cpus = tf.config.list_physical_devices("CPU")
        wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        try:
            tf.config.set_logical_device_configuration(cpus[0], wanted)
        except RuntimeError:
            have = len(tf.config.list_logical_devices("CPU"))
            if have != count:
                raise BackendError(f"TensorFlow already started with {have} CPU device(s); {count} "
                                   "virtual devices must be asked for before it runs anything") from None
