"""Step 1 of DCNN-BLSTMwA: the deep CNN that classifies log-mel segments.

Three backbones:

* ``alexnet``: AlexNet (Krizhevsky et al. 2012) written in Keras, 5 convolutions (96 11×11/4, 256 5×5,
  384 3×3, 384 3×3, 256 3×3; max-pool 3×3/2 after the 1st, 2nd and 5th) and 3 fully-connected layers
  (4096, 4096, classes) with dropout 0.5 before each of the first two. Keras ships no AlexNet weights, so
  ``weights`` is ``none`` or a local ``.h5``/``.weights.h5`` file of this very model. ``width`` scales every
  filter and unit count (1.0 = AlexNet) so tests and CPU benchmarks can use a small net.
* ``resnet50``: ``keras.applications.ResNet50`` (no top, global average pooling) + dropout + FC + softmax;
  ``weights`` ``none``, ``imagenet`` (from the Keras cache only, never downloaded) or a no-top ``.h5``
  (see :func:`cnnrnn.models.cnnrnn.resolve_backbone_weights`).
* ``compact``: :func:`cnnrnn.models.blocks.conv_blocks` (``len(filters)`` blocks of Conv2D + BatchNorm + ReLU +
  MaxPool, from scratch, sized for a corpus of a few hundred utterances), global average pooling, dropout and
  the FC layer; ``weights`` must be ``none``.

An optional :class:`~cnnrnn.models.augment.SpecAugment` layer in front (``spec_augment``) masks frequency and
time bands of the segments in training only.

Each names its last hidden layer :data:`PENULTIMATE` (ReLU); step 2 takes its output as the segment
feature (:func:`feature_extractor`). Inputs are ImageNet-normalised segments
(:func:`cnnrnn.features.to_backbone_input`, applied by :func:`cnnrnn.dcnn.data.segment_dataset`).
"""
from __future__ import annotations

from pathlib import Path

from typing import Sequence

from .blocks import conv_blocks, with_spec_augment
from .cnnrnn import WeightsError, resolve_backbone_weights, set_bn_momentum

PENULTIMATE = "penultimate"
BACKBONES = ("alexnet", "resnet50", "compact")


def _alexnet(x, width: float, fc_units: int, dropout: float):
    from keras import layers

    def f(n):
        return max(4, int(round(n * width)))

    for i, (filters, kernel, stride, pool) in enumerate(
            [(96, 11, 4, True), (256, 5, 1, True), (384, 3, 1, False), (384, 3, 1, False), (256, 3, 1, True)], 1):
        x = layers.Conv2D(f(filters), kernel, strides=stride, padding="same", activation="relu", name=f"conv{i}")(x)
        if pool:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{i}")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    x = layers.Dense(fc_units, activation="relu", name="fc6")(x)
    x = layers.Dropout(dropout, name="dropout2")(x)
    return layers.Dense(fc_units, activation="relu", name=PENULTIMATE)(x)


def _resnet50(x, input_shape, weights, fc_units: int, dropout: float, bn_momentum: float | None = None):
    import keras
    from keras import layers

    backbone = keras.applications.ResNet50(include_top=False, weights=resolve_backbone_weights(weights),
                                           input_shape=input_shape, pooling="avg")
    set_bn_momentum(backbone, bn_momentum)
    x = layers.Dropout(dropout, name="dropout1")(backbone(x))
    return layers.Dense(fc_units, activation="relu", name=PENULTIMATE)(x)


def _compact(x, filters: Sequence[int], fc_units: int, dropout: float, bn_momentum: float | None):
    from keras import layers

    x = layers.GlobalAveragePooling2D(name="gap")(conv_blocks(x, filters, bn_momentum))
    x = layers.Dropout(dropout, name="dropout1")(x)
    return layers.Dense(fc_units, activation="relu", name=PENULTIMATE)(x)


def build_dcnn(input_shape: tuple[int, int, int], n_classes: int, backbone: str = "alexnet",
               weights: str | None = "none", width: float = 1.0, fc_units: int = 4096, dropout: float = 0.5,
               bn_momentum: float | None = None, filters: Sequence[int] = (32, 64, 128, 128),
               spec_augment: dict | None = None):
    """Build the segment classifier (uncompiled).

    Args:
        input_shape: ``(H, W, 3)``; H, W ≥ 32 (227×227 for AlexNet, 224×224 for ResNet50 in the paper).
        n_classes: emotion classes.
        backbone: ``alexnet``, ``resnet50`` or ``compact`` (:data:`BACKBONES`).
        weights: ``none``, ``imagenet`` (resnet50, cached only) or a local weights file (alexnet, resnet50).
        width: AlexNet filter/unit multiplier (ignored by resnet50).
        fc_units: units of the fully-connected layers; the penultimate one is the step-2 feature size.
        dropout: dropout before the fully-connected layers (0.5).
        bn_momentum: momentum of the ResNet50 or compact backbone's BatchNormalization layers (``None``: Keras'
            0.99; from scratch, 0.9 keeps the inference statistics from collapsing to one class). The
            AlexNet-style DCNN has no batch norm and ignores it.
        filters: the compact backbone's convolution widths, one block each (ignored by the others).
        spec_augment: keyword arguments of :class:`~cnnrnn.models.augment.SpecAugment` (training-only
            masks on the segment images), or ``None`` for none.

    Returns:
        ``keras.Model`` mapping ``(batch, H, W, 3) float32`` to ``(batch, n_classes)`` probabilities.

    Raises:
        ValueError: unknown backbone, image smaller than 32×32 (or ``2 ** len(filters)`` for compact), fewer than
            2 classes.
        WeightsError: weights not found locally (nothing is downloaded), or weights given for compact.
    """
    import keras
    from keras import layers

    h, w, c = (int(v) for v in input_shape)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    smallest = max(32, 2 ** len(filters)) if backbone == "compact" else 32
    if min(h, w) < smallest or c != 3 or n_classes < 2:
        raise ValueError(f"need (H, W, 3) input with H, W >= {smallest} and >= 2 classes, got {input_shape}, "
                         f"{n_classes}")
    weights = None if weights is None or str(weights).lower() == "none" else str(weights)
    if backbone == "compact" and weights is not None:
        raise WeightsError("the compact backbone trains from scratch: use weights none")
    if backbone == "alexnet" and weights is not None and weights.lower() == "imagenet":
        raise WeightsError("there are no ImageNet weights for the Keras AlexNet; use weights none, a local "
                           "weights file of this model, or backbone resnet50")
    inputs = keras.Input(shape=(h, w, 3), name="segment")
    x = with_spec_augment(inputs, spec_augment)
    if backbone == "alexnet":
        x = _alexnet(x, width, fc_units, dropout)
    elif backbone == "compact":
        x = _compact(x, filters, fc_units, dropout, bn_momentum)
    else:
        x = _resnet50(x, (h, w, 3), weights, fc_units, dropout, bn_momentum)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    model = keras.Model(inputs, outputs, name=f"dcnn_{backbone}")
    if backbone == "alexnet" and weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"DCNN weights file {path} does not exist (use none or a local file)")
        model.load_weights(path)
    return model


def feature_extractor(dcnn):
    """The sub-model from the DCNN's input to its :data:`PENULTIMATE` layer: ``(batch, fc_units) float32``."""
    import keras

    return keras.Model(dcnn.input, dcnn.get_layer(PENULTIMATE).output, name="dcnn_features")
