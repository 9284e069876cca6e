"""Self-attention pooling over a sequence, the "WA" (with attention) of DCNN-BLSTMwA.

Q, K and V are each a ``Dense(units)`` of the inputs; the weights are ``softmax(Q Kᵀ / √units)`` over the
key positions; the weighted values of every (valid) query position are summed into one utterance vector
(Zhang et al., Frontiers in Physiology 2021; the DCNN-BLSTMWA code). Padded positions, given by the Keras
mask (e.g. from ``Masking`` through a ``Bidirectional(LSTM)``), are neither attended to nor summed, so
padding never changes the output.

:class:`PaddingMask` turns padded steps into that mask as an ordinary layer output, passed explicitly with
``mask=``: Keras 3.15 records the ops of an implicit ``Masking`` mask as graph nodes (``NotEqual``, ``Any``)
that its ``.h5`` loader cannot rebuild ("Unknown layer: 'NotEqual'").

Both layers are registered (``cnnrnn>...``): import this module (:func:`cnnrnn.models.register_layers`) first, and
``.h5`` / ``.keras`` files load without ``custom_objects``.
"""
from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cnnrnn")
class SelfAttentionPooling(layers.Layer):
    """``(batch, steps, features)`` (+ optional ``(batch, steps)`` bool mask) → ``(batch, units)`` float32.

    Args:
        units: width of Q, K and V (256 in the paper).
    """

    def __init__(self, units: int = 256, **kwargs):
        super().__init__(**kwargs)
        self.units = int(units)
        self.query = layers.Dense(self.units, name="query")
        self.key = layers.Dense(self.units, name="key")
        self.value = layers.Dense(self.units, name="value")
        self.supports_masking = True

    def build(self, input_shape):
        for dense in (self.query, self.key, self.value):
            dense.build(input_shape)
        self.built = True

    def call(self, inputs, mask=None):
        q, k, v = self.query(inputs), self.key(inputs), self.value(inputs)
        scores = ops.matmul(q, ops.transpose(k, (0, 2, 1))) / ops.sqrt(ops.cast(self.units, q.dtype))
        if mask is None:
            weights = ops.softmax(scores, axis=-1)
            return ops.sum(ops.matmul(weights, v), axis=1)
        valid = ops.cast(mask, q.dtype)                                   # (batch, steps)
        scores = scores + (1.0 - valid[:, None, :]) * -1e9                # no attention to padding
        weights = ops.softmax(scores, axis=-1)
        context = ops.matmul(weights, v) * valid[:, :, None]              # padded queries add nothing
        return ops.sum(context, axis=1)

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="cnnrnn")
class PaddingMask(layers.Layer):
    """``(batch, steps, features)`` → ``(batch, steps)`` bool: True where a step is not all ``pad_value``."""

    def __init__(self, pad_value: float = -1.0, **kwargs):
        super().__init__(**kwargs)
        self.pad_value = float(pad_value)

    def call(self, inputs):
        return ops.any(ops.not_equal(inputs, self.pad_value), axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1])

    def get_config(self):
        return {**super().get_config(), "pad_value": self.pad_value}
