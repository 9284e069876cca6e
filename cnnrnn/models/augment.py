"""SpecAugment masks as a Keras layer, active only in training (Park et al., "SpecAugment: A Simple Data
Augmentation Method for Automatic Speech Recognition", Interspeech 2019).

The layer sits at the front of a spectrogram model, so that augmentation happens on the fly, seeded, with no
change to the input pipeline, and the saved model predicts exactly as one without it (the layer passes its
input through unchanged at inference). Registered (``cnnrnn>SpecAugment``): ``.h5`` files load without
``custom_objects`` once this module is imported (:func:`cnnrnn.models.register_layers`).
"""
from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="cnnrnn")
class SpecAugment(layers.Layer):
    """Frequency and time masks on ``(batch, H, W, C)`` spectrogram images (H = frequency, W = time).

    Each training example gets ``freq_masks`` bands of up to ``freq_width`` rows and ``time_masks`` bands of
    up to ``time_width`` columns (widths drawn uniformly from 0, positions uniformly), set to the example's
    mean value. At inference (``training`` false) the input is returned unchanged.

    Args:
        freq_masks, freq_width: number and largest width (pixels) of the frequency masks.
        time_masks, time_width: number and largest width (pixels) of the time masks.
        seed: seed of the mask draws.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 8, time_masks: int = 2, time_width: int = 16,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.freq_masks, self.freq_width = int(freq_masks), int(freq_width)
        self.time_masks, self.time_width = int(time_masks), int(time_width)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _masks(self, batch, size: int, count: int, width: int):
        """``(batch, size)`` float32: 1 inside any of ``count`` random bands of up to ``width``."""
        positions = ops.cast(ops.arange(size), "float32")[None, :]
        keep = ops.ones((batch, size), "float32")
        for _ in range(count):
            w = ops.floor(keras.random.uniform((batch, 1), 0, width + 1, seed=self.generator))
            start = ops.floor(keras.random.uniform((batch, 1), 0, 1, seed=self.generator) * (size - w + 1))
            inside = ops.logical_and(positions >= start, positions < start + w)
            keep = keep * (1.0 - ops.cast(inside, "float32"))
        return 1.0 - keep

    def call(self, inputs, training=None):
        if not training or (self.freq_masks == 0 and self.time_masks == 0):
            return inputs
        x = ops.cast(inputs, "float32")
        batch, height, width = ops.shape(x)[0], x.shape[1], x.shape[2]
        freq = self._masks(batch, height, self.freq_masks, self.freq_width)       # (batch, H)
        time = self._masks(batch, width, self.time_masks, self.time_width)        # (batch, W)
        masked = ops.maximum(freq[:, :, None], time[:, None, :])[..., None]        # (batch, H, W, 1)
        fill = ops.mean(x, axis=(1, 2, 3), keepdims=True)
        return x * (1.0 - masked) + fill * masked

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "freq_masks": self.freq_masks, "freq_width": self.freq_width,
                "time_masks": self.time_masks, "time_width": self.time_width, "seed": self.seed}
