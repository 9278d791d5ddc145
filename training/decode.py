"""The Keras end of the N-hot code: a softmax over class agreement through a frozen key."""

import keras
from keras import ops

from hone.network.nhot import check_key

__all__ = ["SoftmaxDecode"]


@keras.saving.register_keras_serializable(package="hone")
class SoftmaxDecode(keras.layers.Layer):
    """Softmax over N-hot class agreement, with a frozen key saved in the layer config.

    Logits are ``scale * (2 z - 1) @ (2 key - 1).T`` (``2 * agreement - width``), so the arg-max of
    the softmax is exactly :func:`~hone.network.nhot.decode_spikes` on binary ``z``, tie-break included.

    Args:
        key: ``(classes, width)`` 0/1 array, e.g. from :func:`~hone.network.nhot.nhot_key`.
        scale: Logit scale (a softmax temperature; does not change the decoded class). Defaults to `1.0`.
    """

    def __init__(self, key, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.key = check_key(key)
        self.scale = float(scale)
        if not self.scale > 0:
            raise ValueError(f"`scale` must be > 0. Received: scale={scale}")
        self._signed_key_t = (2.0 * self.key.T - 1.0).astype("float32")

    @property
    def classes(self):
        return self.key.shape[0]

    def call(self, inputs):
        signed_key_t = ops.convert_to_tensor(self._signed_key_t, dtype=inputs.dtype)
        logits = ops.matmul(2.0 * inputs - 1.0, signed_key_t)
        return ops.softmax(self.scale * logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.classes,)

    def get_config(self):
        config = super().get_config()
        config.update({"key": self.key.tolist(), "scale": self.scale})
        return config
