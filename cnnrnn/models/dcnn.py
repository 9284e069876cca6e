"""Step 1 of DCNN-BLSTMwA: the deep CNN that classifies log-mel segments.

The backbones:

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
* ``yamnet``: :func:`cnnrnn.models.yamnet.build_yamnet` (MobileNetV1 pretrained on AudioSet; the float model,
  no int8 rounding) up to its 1024-d embedding, then dropout and the FC layer. It takes YAMNet's 1-channel
  log-mel patches ``(frames, 64, 1)`` (time × mel bands), not images. ``weights``: the ``.weights.h5`` of
  ``cnnrnn yamnet-convert`` (:func:`cnnrnn.models.yamnet_convert.convert`; nothing is downloaded) or ``none``
  (random, for tests); ``freeze_blocks`` keeps the first N of its 14 blocks fixed.

* ``whisper``: a head over the frozen Whisper encoder's frames of one segment (:mod:`cnnrnn.models.whisper`; the
  encoder itself runs once per clip, in :func:`cnnrnn.dcnn.data.whisper_features`): the input ``(frames, width,
  n_blocks)`` holds the cached blocks' outputs; optionally the top ``trainable_blocks`` transformer blocks (from
  ``weights``) run on the segment and are fine-tuned, optionally a learned softmax-weighted sum of the blocks
  (:class:`~cnnrnn.models.whisper.WeightedBlockSum`); then mean + std over the frames
  (:class:`~cnnrnn.models.whisper.MeanStdPooling`), batch norm, dropout and the FC layer.

An optional :class:`~cnnrnn.models.augment.SpecAugment` layer in front (``spec_augment``) masks frequency and
time bands of the segments in training only.

Each names its last hidden layer :data:`PENULTIMATE` (ReLU); step 2 takes its output as the segment
feature (:func:`feature_extractor`). Inputs are ImageNet-normalised segments
(:func:`cnnrnn.features.to_backbone_input`, applied by :func:`cnnrnn.dcnn.data.segment_dataset`), or YAMNet
patches as they are.
"""
from __future__ import annotations

from pathlib import Path

from typing import Sequence

import keras

from .blocks import WeightsError, conv_blocks, with_spec_augment
from .cnnrnn import resolve_backbone_weights, set_bn_momentum

PENULTIMATE = "penultimate"
BACKBONES = ("alexnet", "resnet50", "compact", "yamnet", "whisper")


@keras.saving.register_keras_serializable(package="cnnrnn")
class SplitBlocks(keras.layers.Layer):
    """``(batch, frames, width, n)`` → a list of ``n`` tensors ``(batch, frames, width)``: the cached Whisper blocks
    of a segment, one per channel (``n == 1`` gives a list of one)."""

    def call(self, x):
        return [x[..., i] for i in range(x.shape[-1])]

    def compute_output_shape(self, input_shape):
        return [tuple(input_shape[:-1])] * int(input_shape[-1])


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


def _yamnet(x, frames: int, weights: str | None, freeze_blocks: int, fc_units: int, dropout: float):
    from keras import layers

    from .yamnet import pretrained_yamnet

    backbone = pretrained_yamnet(frames=frames, weights=weights, freeze_blocks=freeze_blocks)
    x = layers.Dropout(dropout, name="dropout1")(backbone(x))
    return layers.Dense(fc_units, activation="relu", name=PENULTIMATE)(x)


def _whisper(x, weights: str | None, whisper: dict, fc_units: int, dropout: float, bn_momentum: float | None):
    """The Whisper head of :func:`build_dcnn` over ``(batch, frames, width, n_blocks)`` cached encoder frames."""
    from keras import layers

    from .whisper import KNOWN_SIZES, MeanStdPooling, WeightedBlockSum, pretrained_whisper, read_sizes

    block, mix = whisper.get("block", 2), whisper.get("mix", "block")
    trainable = int(whisper.get("trainable_blocks", 0))
    parts = SplitBlocks(name="cached_blocks")(x)
    top = parts[-1]
    if trainable:
        sizes = read_sizes(weights) if weights else KNOWN_SIZES["tiny"]
        encoder = pretrained_whisper(weights, block=block, trainable_blocks=trainable, sizes=sizes)
        if int(x.shape[2]) != sizes.width:
            raise ValueError(f"the cached Whisper frames are {x.shape[2]} wide, the encoder of {weights} {sizes.width}")
        for k in range(int(block) - trainable + 1, int(block) + 1):
            top = encoder.get_layer(f"block{k}")(top)       # pretrained, trained from here on
            parts.append(top)
    if mix == "weighted":
        top = WeightedBlockSum(name="block_mix")(parts)
    x = MeanStdPooling(name="mean_std")(top)
    x = layers.BatchNormalization(momentum=bn_momentum or 0.99, name="pooled_bn")(x)
    x = layers.Dropout(dropout, name="dropout1")(x)
    return layers.Dense(fc_units, activation="relu", name=PENULTIMATE)(x)


def build_dcnn(input_shape: tuple[int, int, int], n_classes: int, backbone: str = "alexnet",
               weights: str | None = "none", width: float = 1.0, fc_units: int = 4096, dropout: float = 0.5,
               bn_momentum: float | None = None, filters: Sequence[int] = (32, 64, 128, 128),
               spec_augment: dict | None = None, freeze_blocks: int = 0, whisper: dict | None = None):
    """Build the segment classifier (uncompiled).

    Args:
        input_shape: ``(H, W, 3)``; H, W ≥ 32 (227×227 for AlexNet, 224×224 for ResNet50 in the paper); for
            ``yamnet`` ``(frames, 64, 1)``, YAMNet's log-mel patches (96 frames, time along H).
        n_classes: emotion classes.
        backbone: ``alexnet``, ``resnet50``, ``compact`` or ``yamnet`` (:data:`BACKBONES`).
        weights: ``none``, ``imagenet`` (resnet50, cached only) or a local weights file (alexnet, resnet50;
            for yamnet the ``.weights.h5`` of ``cnnrnn yamnet-convert``).
        width: AlexNet filter/unit multiplier (ignored by resnet50).
        fc_units: units of the fully-connected layers; the penultimate one is the step-2 feature size.
        dropout: dropout before the fully-connected layers (0.5).
        bn_momentum: momentum of the ResNet50 or compact backbone's BatchNormalization layers (``None``: Keras'
            0.99; from scratch, 0.9 keeps the inference statistics from collapsing to one class). The
            AlexNet-style DCNN has no batch norm and ignores it.
        filters: the compact backbone's convolution widths, one block each (ignored by the others).
        spec_augment: keyword arguments of :class:`~cnnrnn.models.augment.SpecAugment` (training-only
            masks on the segment images), or ``None`` for none. For ``yamnet`` (time along H, mel bands along
            W) the frequency masks still cover mel bands and the time masks frames.
        freeze_blocks: ``yamnet`` only: the first N of its 14 blocks are not trained (0..14).
        whisper: ``whisper`` only: ``{"block": whisper_block, "mix": "block" | "weighted", "trainable_blocks": N}``
            (:class:`cnnrnn.dcnn.config.ModelSection`); the input's channels are the cached blocks
            (:func:`cnnrnn.dcnn.config.whisper_cached_blocks`): block ``block - N`` alone, or blocks 0..``block - N``
            for ``weighted``. ``weights``: the converted encoder (``cnnrnn whisper-convert``), read only for the
            trainable blocks. ``bn_momentum`` is the pooled vector's batch norm's (``None``: 0.99).

    Returns:
        ``keras.Model`` mapping ``(batch, H, W, C) float32`` to ``(batch, n_classes)`` probabilities.

    Raises:
        ValueError: unknown backbone, image smaller than 32×32 (or ``2 ** len(filters)`` for compact), fewer than
            2 classes, a yamnet input other than ``(frames >= 32, 64, 1)``, freeze_blocks outside 0..14.
        WeightsError: weights not found locally (nothing is downloaded), weights given for compact, or a
            yamnet weights file that is not YAMNet's.
    """
    import keras
    from keras import layers

    h, w, c = (int(v) for v in input_shape)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {BACKBONES}")
    smallest = max(32, 2 ** len(filters)) if backbone == "compact" else 32
    if backbone == "yamnet":
        if h < 32 or (w, c) != (64, 1) or n_classes < 2:
            raise ValueError(f"the yamnet backbone takes (frames >= 32, 64, 1) log-mel patches and >= 2 classes, "
                             f"got {input_shape}, {n_classes}")
    elif backbone == "whisper":
        if h < 2 or n_classes < 2:
            raise ValueError(f"the whisper backbone takes (frames >= 2, width, n_blocks) encoder frames and >= 2 "
                             f"classes, got {input_shape}, {n_classes}")
        if spec_augment:
            raise ValueError("SpecAugment masks log-mel images; the whisper backbone takes encoder frames: use no "
                             "freq_masks / time_masks")
        whisper = dict(whisper or {})
        expected = (int(whisper.get("block", 2)) - int(whisper.get("trainable_blocks", 0)) + 1
                    if whisper.get("mix") == "weighted" else 1)
        if c != expected:
            raise ValueError(f"the whisper head with {whisper} takes {expected} cached block(s) as channels, got "
                             f"{input_shape}")
    elif min(h, w) < smallest or c != 3 or n_classes < 2:
        raise ValueError(f"need (H, W, 3) input with H, W >= {smallest} and >= 2 classes, got {input_shape}, "
                         f"{n_classes}")
    weights = None if weights is None or str(weights).lower() == "none" else str(weights)
    if backbone == "compact" and weights is not None:
        raise WeightsError("the compact backbone trains from scratch: use weights none")
    if backbone == "alexnet" and weights is not None and weights.lower() == "imagenet":
        raise WeightsError("there are no ImageNet weights for the Keras AlexNet; use weights none, a local "
                           "weights file of this model, or backbone resnet50")
    if backbone == "yamnet" and spec_augment:  # SpecAugment masks rows as frequency: here rows are frames
        swap = {"freq_masks": "time_masks", "freq_width": "time_width", "time_masks": "freq_masks",
                "time_width": "freq_width"}
        spec_augment = {swap.get(k, k): v for k, v in spec_augment.items()}
    inputs = keras.Input(shape=(h, w, c), name="segment")
    x = with_spec_augment(inputs, spec_augment)
    if backbone == "yamnet":
        x = _yamnet(x, h, weights, freeze_blocks, fc_units, dropout)
    elif backbone == "whisper":
        x = _whisper(x, weights, whisper, fc_units, dropout, bn_momentum)
    elif backbone == "alexnet":
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
