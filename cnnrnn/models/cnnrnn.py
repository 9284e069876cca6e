"""The CNNRNN model: a CNN over the spectrogram image, an LSTM over its time axis.

One builder, :func:`build_cnnrnn`, with the backbone plugged in (:data:`BACKBONES`): ``resnet50``, the
original CNNRNN code's (the default); ``compact``, a few convolution blocks with batch norm sized for
corpora of hundreds of utterances (in the spirit of ACRNN, Chen et al. 2018, and ADRNN, Meng et al. 2019); or
``yamnet``, the AudioSet-pretrained MobileNetV1 of :mod:`cnnrnn.models.yamnet` over the whole clip's YAMNet
log-mel (``spectrogram.kind: yamnet`` images, decoded by :class:`~cnnrnn.models.yamnet.ImageToLogMel`), its
``(frames / 32, 2, 1024)`` feature map pooled over frequency into the LSTM; or ``whisper``, the encoder of
:mod:`cnnrnn.models.whisper` cut after ``whisper_block`` over the clip's Whisper log-mel (``spectrogram.kind:
whisper`` images), frozen unless ``trainable_blocks``, its 20 ms frames fed to a head (:func:`whisper_head`: an LSTM,
self-attention pooling or mean + std pooling).
An optional :class:`~cnnrnn.models.augment.SpecAugment` layer in front masks frequency and time bands in
training only.

The ResNet50 variant:

Input: ``(H, W, 3)`` float32 pixel values 0–255 in BGR order (the uint8
spectrogram image, cast per batch). The first layer applies the Caffe/ImageNet
preprocessing that ``keras.applications.resnet50.preprocess_input`` does for
BGR input (subtract the ImageNet channel means), so ImageNet weights see what
they were trained on. ResNet50 (``include_top=False``) gives a
``(H/32, W/32, 2048)`` feature map; the height (frequency) axis is averaged
and the width (time) axis becomes the LSTM's sequence, followed by dropout and
a softmax ``Dense``. The compact variant scales the image to [0, 1] and applies
``len(filters)`` blocks of ``Conv2D(3×3) + BatchNorm + ReLU + MaxPool(2×2)``, then
the same frequency pooling, LSTM, dropout and softmax. Without SpecAugment only
built-in Keras layers are used, so ``.h5`` files load with plain
``keras.models.load_model``.
"""
from __future__ import annotations

import os
from pathlib import Path

from .blocks import WeightsError, conv_blocks, with_spec_augment

#: ImageNet channel means in BGR order (Caffe preprocessing of ResNet50).
IMAGENET_BGR_MEAN = (103.939, 116.779, 123.68)
RESNET50_NOTOP_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"
BACKBONES = ("resnet50", "compact", "yamnet", "whisper")
#: ``head`` values of the ``whisper`` backbone: what turns the encoder's frames into one vector.
WHISPER_HEADS = ("lstm", "attention", "mean_std")
WHISPER_ENCODER_LAYER = "whisper"
WHISPER_HEAD_LAYER = "whisper_head"


def resolve_backbone_weights(weights: str | None) -> str | None:
    """Turn the ``weights`` option into what ``keras.applications.ResNet50`` takes, offline.

    Args:
        weights: ``"none"``/``None`` (random init), ``"imagenet"`` (must already be
            in the Keras cache ``~/.keras/models/``; nothing is downloaded) or a path
            to a no-top ResNet50 ``.h5`` weights file.

    Returns:
        ``None`` or a local file path.

    Raises:
        WeightsError: ImageNet weights are not cached, or the path does not exist.
    """
    if weights is None or str(weights).lower() == "none":
        return None
    if str(weights).lower() == "imagenet":
        cache = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / RESNET50_NOTOP_FILE
        if cache.is_file():
            return str(cache)
        raise WeightsError(
            f"ImageNet weights for ResNet50 are not in the Keras cache ({cache}) and cnnrnn never downloads "
            f"at run time. On a machine with internet run: python -c \"import keras; "
            f"keras.applications.ResNet50(include_top=False, weights='imagenet')\", then copy "
            f"{RESNET50_NOTOP_FILE} to {cache.parent}/ here, or pass weights=/path/to/{RESNET50_NOTOP_FILE}. "
            "Use weights=none to train from scratch."
        )
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"backbone weights file {path} does not exist (use none, imagenet or a .h5 path)")
    return str(path)


def set_bn_momentum(model, momentum: float | None) -> None:
    """Set the momentum of every ``BatchNormalization`` layer of ``model`` (``None``: keep Keras' 0.99).

    A from-scratch backbone trained for few steps needs a lower value such as 0.9: at 0.99 the moving
    statistics that inference uses never catch up with the weights, and the model predicts one class.
    """
    from keras import layers

    if momentum is None:
        return
    for layer in model.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = float(momentum)


def build_cnnrnn(
    input_shape: tuple[int, int, int],
    n_classes: int,
    weights: str | None = "none",
    lstm_units: int = 128,
    dropout: float = 0.3,
    bn_momentum: float | None = None,
    backbone: str = "resnet50",
    filters: tuple[int, ...] = (32, 64, 128, 128),
    spec_augment: dict | None = None,
    freeze_blocks: int = 0,
    image_range: tuple[float, float] | None = None,
    whisper_block=2,
    trainable_blocks: int = 0,
    head: str = "lstm",
    l2: float = 0.0,
):
    """Build the CNN+LSTM classifier (uncompiled).

    Args:
        input_shape: ``(H, W, 3)`` image size; H and W at least 32 (ResNet50) or ``2 ** len(filters)``; for
            ``yamnet`` ``(64, frames >= 32, 3)``, a ``spectrogram.kind: yamnet`` image.
        n_classes: number of emotion classes (softmax width).
        weights: ResNet50 weights: ``none``, ``imagenet`` or a weights path (see
            :func:`resolve_backbone_weights`); the compact backbone takes only ``none``; ``yamnet`` the
            ``.weights.h5`` of ``cnnrnn yamnet-convert`` or ``none`` (random, for tests).
        lstm_units: LSTM width.
        dropout: dropout rate before the classifier.
        bn_momentum: if given, the momentum of every BatchNormalization layer of
            the backbone (Keras default 0.99).
        backbone: ``resnet50`` or ``compact`` (:data:`BACKBONES`).
        filters: the compact backbone's convolution widths, one block each.
        spec_augment: keyword arguments of :class:`~cnnrnn.models.augment.SpecAugment` (training-only
            frequency and time masks), or ``None`` for none.
        freeze_blocks: ``yamnet`` only: the first N of its 14 blocks keep their pretrained weights (0..14).
        image_range: ``yamnet`` and ``whisper``: the log-mel values of pixels 0 and 255
            (:data:`cnnrnn.features.YAMNET_IMAGE_RANGE`, :data:`~cnnrnn.features.WHISPER_IMAGE_RANGE`, which the
            family passes).
        whisper_block: ``whisper`` only: the encoder block whose output the head reads (0 = the convolutional stem,
            k = transformer block k) or ``"weighted"`` (a learned softmax-weighted sum of the stem and every block).
        trainable_blocks: ``whisper`` only: the top N blocks up to ``whisper_block`` are fine-tuned (0: frozen).
        head: ``whisper`` only: :data:`WHISPER_HEADS`.
        l2: ``whisper`` only: L2 penalty on the softmax layer's kernel (``l2 · Σ w²`` added to the mean loss).

    Returns:
        A ``keras.Model`` mapping ``(batch, H, W, 3) float32`` (0–255, BGR) to
        ``(batch, n_classes) float32`` probabilities.

    Raises:
        WeightsError: see :func:`resolve_backbone_weights` and :func:`cnnrnn.models.yamnet.pretrained_yamnet`.
        ValueError: unknown backbone, image too small, fewer than 2 classes, ``yamnet`` without
            ``image_range`` or with an image of other than 64 rows.
    """
    import keras
    from keras import layers

    h, w, c = (int(v) for v in input_shape)
    if backbone not in BACKBONES:
        raise ValueError(f"unknown CNNRNN backbone {backbone!r}; choose one of {BACKBONES}")
    smallest = 2 ** len(filters) if backbone == "compact" else 32
    if min(h, w) < smallest or c != 3:
        raise ValueError(f"CNNRNN ({backbone}) needs (H, W, 3) images with H, W >= {smallest}, got {input_shape}")
    if backbone == "whisper" and (h != 80 or image_range is None):
        raise ValueError(f"CNNRNN (whisper) takes spectrogram.kind whisper images, (80, frames, 3) with their "
                         f"image_range, got {input_shape}, {image_range}")
    if backbone == "yamnet" and (h != 64 or image_range is None):
        raise ValueError(f"CNNRNN (yamnet) takes spectrogram.kind yamnet images, (64, frames, 3) with their "
                         f"image_range, got {input_shape}, {image_range}")
    if n_classes < 2:
        raise ValueError(f"need at least 2 classes, got {n_classes}")
    inputs = keras.Input(shape=(h, w, 3), name="spectrogram")
    x = with_spec_augment(inputs, spec_augment)
    if backbone == "whisper":
        from .whisper import pretrained_whisper
        from .yamnet import ImageToLogMel

        x = ImageToLogMel(image_range, name="log_mel")(x)            # (frames, 80, 1)
        x = layers.Reshape((w, h), name="whisper_log_mel")(x)          # (frames, 80)
        encoder = pretrained_whisper(weights, block="all" if whisper_block == "weighted" else whisper_block,
                                     frames=w, trainable_blocks=trainable_blocks, name=WHISPER_ENCODER_LAYER)
        features = encoder(x)
        shapes = [tuple(t.shape[1:]) for t in (features if isinstance(features, list) else [features])]
        outputs = whisper_head(shapes, n_classes, head=head, units=lstm_units, dropout=dropout, l2=l2)(features)
        return keras.Model(inputs, outputs, name="cnnrnn_whisper")
    if backbone == "resnet50":
        weights_path = resolve_backbone_weights(weights)
        x = layers.Normalization(mean=list(IMAGENET_BGR_MEAN), variance=[1.0, 1.0, 1.0],
                                 name="imagenet_bgr_mean")(x)
        net = keras.applications.ResNet50(include_top=False, weights=weights_path, input_shape=(h, w, 3))
        set_bn_momentum(net, bn_momentum)
        x = net(x)                                                   # (h/32, w/32, 2048)
    elif backbone == "yamnet":
        from .yamnet import ImageToLogMel, pretrained_yamnet

        x = ImageToLogMel(image_range, name="log_mel")(x)           # (frames, 64, 1) log-mel
        x = pretrained_yamnet(frames=w, weights=weights, freeze_blocks=freeze_blocks, output="feature_map")(x)
    else:
        if resolve_backbone_weights(weights) is not None:
            raise WeightsError("the compact backbone trains from scratch: use weights none")
        x = conv_blocks(layers.Rescaling(1 / 255.0, name="scale")(x), filters, bn_momentum)
    if backbone != "yamnet":  # YAMNet's map is time-major already
        x = layers.Permute((2, 1, 3), name="time_major")(x)          # (time, frequency, channels)
    x = layers.TimeDistributed(layers.GlobalAveragePooling1D(), name="pool_frequency")(x)  # (time, channels)
    x = layers.LSTM(lstm_units, name="lstm")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name=f"cnnrnn_{backbone}_lstm")


def whisper_head(shapes, n_classes: int, *, head: str = "lstm", units: int = 128, dropout: float = 0.3,
                 l2: float = 0.0):
    """The classifier over a Whisper encoder's frames (the ``whisper`` backbone's head, a model of its own, so that
    training on cached encoder outputs fits it alone). For the ``lstm`` and ``attention`` heads each frame is first
    layer-normalised (a middle block's outputs are not, and reach hundreds: an LSTM saturates on them).

    Args:
        shapes: ``[(frames, width)]`` of the encoder output, or one per block for a learned weighted sum
            (:class:`~cnnrnn.models.whisper.WeightedBlockSum`).
        n_classes: softmax width.
        head: ``lstm`` (an LSTM of ``units`` over the frames), ``attention`` (self-attention pooling with Q, K, V of
            ``units``, :class:`~cnnrnn.models.attention.SelfAttentionPooling`) or ``mean_std`` (mean and standard
            deviation over frames, :class:`~cnnrnn.models.whisper.MeanStdPooling`, standardised with the training
            data's statistics, :class:`~cnnrnn.models.whisper.Standardize`, set by the training loop: the linear
            probe of the frozen-feature benchmark).
        units, dropout: the head's width and the dropout rate before the softmax.
        l2: L2 penalty on the softmax layer's kernel (0: none). A linear probe needs it: scikit-learn's
            ``LogisticRegression(C)`` on N examples is ``l2 = 1 / (2 · C · N)`` here (C 0.1 on 480 clips: 0.01).

    Returns:
        ``keras.Model`` named ``whisper_head``: ``(batch, frames, width) float32`` (or a list of them) →
        ``(batch, n_classes) float32`` probabilities.

    Raises:
        ValueError: an unknown ``head``.
    """
    import keras
    from keras import layers

    from .attention import SelfAttentionPooling
    from .whisper import MeanStdPooling, Standardize, WeightedBlockSum

    if head not in WHISPER_HEADS:
        raise ValueError(f"unknown whisper head {head!r}; choose one of {WHISPER_HEADS}")
    ins = [keras.Input(shape=s, name=f"block_{i}") for i, s in enumerate(shapes)]
    x = WeightedBlockSum(name="block_mix")(ins) if len(ins) > 1 else ins[0]
    if head != "mean_std":  # a middle block's frames are not layer-normalised (values in the hundreds)
        x = layers.LayerNormalization(name="frame_norm")(x)
    if head == "lstm":
        x = layers.LSTM(units, name="lstm")(x)
    elif head == "attention":
        x = SelfAttentionPooling(units, name="attention")(x)
    else:
        x = Standardize(name="feature_norm")(MeanStdPooling(name="mean_std")(x))
    x = layers.Dropout(dropout, name="dropout")(x)
    regularizer = keras.regularizers.L2(float(l2)) if l2 else None
    out = layers.Dense(n_classes, activation="softmax", kernel_regularizer=regularizer, name="emotion")(x)
    return keras.Model(ins if len(ins) > 1 else ins[0], out, name=WHISPER_HEAD_LAYER)
