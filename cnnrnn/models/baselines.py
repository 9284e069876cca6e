"""The two plain baselines of an ANN/CNN audio-classification tutorial, ported from PyTorch to Keras.

The source is the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을 활용하여 음성 분류 인공지능 제작"
("building a sound-classification AI with ANN and CNN on digital sound"), on the UrbanSound8K practice
problem (10 classes):

* :func:`build_ann`: a fully connected net on the raw waveform (the tutorial's ``DNN``:
  176,400 input samples = 4 s at 44.1 kHz, two hidden ``Linear`` + ReLU layers, 10 outputs).
* :func:`build_cnn`: three Conv2D + ReLU + MaxPool blocks on a one-channel spectrogram,
  flatten, a ReLU ``Dense``, then the outputs (the tutorial's ``CNN``).

The tutorial's README gives the input sizes, the layer pattern and the activations, but not the
hidden widths or kernel sizes (its code is only shown as screenshots); the defaults below are
ours and are config values. The outputs are a softmax ``Dense`` (PyTorch's ``CrossEntropyLoss``
on logits is the same objective as Keras' sparse categorical cross-entropy on softmax
probabilities). Besides the optional SpecAugment layer (registered), only built-in layers are used; the
``.h5`` checkpoints load with :func:`cnnrnn.artifacts.load_model`.
"""
from __future__ import annotations

from typing import Sequence

from .blocks import with_spec_augment


def build_ann(n_samples: int, n_classes: int, hidden_units: Sequence[int] = (256, 128)):
    """Raw-waveform ANN: ``Input((n_samples,))`` → ``Dense(h, relu)`` per hidden layer → ``Dense(n_classes, softmax)``.

    Args:
        n_samples: waveform length in samples (tutorial: 176,400 = 4 s × 44,100 Hz).
        n_classes: number of classes (tutorial: 10).
        hidden_units: width of each hidden layer (tutorial: two hidden layers).

    Returns:
        An uncompiled ``keras.Model`` taking ``(batch, n_samples) float32`` waveforms in
        [-1, 1] and giving ``(batch, n_classes)`` class probabilities.
    """
    import keras

    inputs = keras.Input((int(n_samples),), name="waveform")
    x = inputs
    for i, units in enumerate(hidden_units, start=1):
        x = keras.layers.Dense(int(units), activation="relu", name=f"hidden{i}")(x)
    outputs = keras.layers.Dense(int(n_classes), activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="baseline_ann")


def build_cnn(input_shape: Sequence[int], n_classes: int, filters: Sequence[int] = (16, 32, 64),
              kernel_size: int = 3, dense_units: int = 128, spec_augment: dict | None = None):
    """Spectrogram CNN: three ``Conv2D(f, k, same) + ReLU + MaxPool(2)`` blocks, flatten,
    ``Dense(dense_units, relu)``, ``Dense(n_classes, softmax)``.

    Args:
        input_shape: ``(n_mels, frames, 1)``: one spectrogram channel, values 0–255.
        n_classes: number of classes.
        filters: output channels of the convolution blocks (one block per entry).
        kernel_size: square convolution kernel size.
        dense_units: width of the ReLU ``Dense`` after flattening.
        spec_augment: keyword arguments of :class:`~cnnrnn.models.augment.SpecAugment` (training-only
            frequency and time masks in front), or ``None`` for none (the tutorial).

    Returns:
        An uncompiled ``keras.Model`` taking ``(batch, n_mels, frames, 1) float32`` and giving
        ``(batch, n_classes)`` class probabilities.

    Raises:
        ValueError: the input is too small for the pooling blocks (each halves both sides).
    """
    import keras

    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape[:2]) < 2 ** len(filters):
        raise ValueError(f"CNN input {shape} must be (n_mels, frames, 1) with both sides >= {2 ** len(filters)} "
                         f"for {len(filters)} pooling blocks")
    inputs = keras.Input(shape, name="spectrogram")
    x = with_spec_augment(inputs, spec_augment)
    for i, f in enumerate(filters, start=1):
        x = keras.layers.Conv2D(int(f), int(kernel_size), padding="same", activation="relu", name=f"conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(int(dense_units), activation="relu", name="dense")(x)
    outputs = keras.layers.Dense(int(n_classes), activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="baseline_cnn")
