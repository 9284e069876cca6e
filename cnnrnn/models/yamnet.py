"""YAMNet: MobileNetV1 on log-mel patches, pretrained on AudioSet (Keras builder, no weights, no I/O).

The architecture of ``tensorflow/models`` ``research/audioset/yamnet`` (``yamnet.py``): MobileNetV1
(Howard et al., "MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
arXiv:1704.04861, 2017) with a 1-channel input, trained by Google on AudioSet (Gemmeke et al., "Audio Set:
An ontology and human-labeled dataset for audio events", ICASSP 2017; the CNN recipe of Hershey et al.,
"CNN Architectures for Large-Scale Audio Classification", ICASSP 2017). :data:`YAMNET_LAYERS` is that
file's ``_YAMNET_LAYER_DEFS``: one 3×3 convolution, then 13 separable blocks (3×3 depthwise + 1×1
pointwise), strides and filters as listed, ``same`` padding, each followed by ReLU. Batch norm is
folded into the convolutions (as in the TFLite file the weights come from), so every convolution has a
bias and there is no ``BatchNormalization`` layer. Global average pooling gives the 1024-d embedding; the
optional head is ``Dense(521)`` + sigmoid over the AudioSet classes.

The weights are not part of the package: ``cnnrnn yamnet-convert`` (:mod:`cnnrnn.models.yamnet_convert`) turns a
local ``yamnet.tflite`` into a ``.weights.h5`` for this builder.

**Int8 rounding.** The TFLite file uses dynamic-range quantisation: at run time the interpreter rounds the
float input of each hybrid op (here: the 13 pointwise convolutions and the dense head) to int8, one
symmetric scale per example (``max|x| / 127``). ``int8_rounding=True`` inserts :class:`Int8Rounding` at
those places so that the Keras model reproduces the interpreter; it is off by default (fine-tuning uses the
float model). The first convolution and the depthwise kernels run in float in the TFLite file (small or
dequantised kernels), so no rounding goes before them.
"""
from __future__ import annotations

from pathlib import Path

import keras
from keras import layers, ops

from .blocks import WeightsError

#: ``(kind, stride, filters)`` of the 14 blocks (3×3 kernels), as ``_YAMNET_LAYER_DEFS`` in yamnet.py.
YAMNET_LAYERS = (
    ("conv", 2, 32),
    ("separable", 1, 64),
    ("separable", 2, 128),
    ("separable", 1, 128),
    ("separable", 2, 256),
    ("separable", 1, 256),
    ("separable", 2, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 1, 512),
    ("separable", 2, 1024),
    ("separable", 1, 1024),
)
PATCH_FRAMES = 96       # 0.96 s of 10 ms frames
PATCH_BANDS = 64        # mel bands
EMBEDDING_SIZE = 1024
NUM_CLASSES = 521       # AudioSet classes of yamnet_class_map.csv
EMBEDDING_LAYER = "embedding"
SCORES_LAYER = "scores"
#: The last layer before the global pooling: the ``(frames / 32, 2, 1024)`` feature map.
FEATURE_MAP_LAYER = f"layer{len(YAMNET_LAYERS)}_pointwise_relu"


def yamnet_conv_layers() -> list[tuple[str, str]]:
    """Names and kinds (``conv``, ``depthwise``, ``pointwise``, ``dense``) of the weighted layers, in order.

    The order is that of the ops in the TFLite graph: ``layer1_conv``, then ``layerK_depthwise`` and
    ``layerK_pointwise`` for K = 2..14, then ``logits`` (the head).
    """
    out = []
    for k, (kind, _, _) in enumerate(YAMNET_LAYERS, start=1):
        if kind == "conv":
            out.append((f"layer{k}_conv", "conv"))
        else:
            out += [(f"layer{k}_depthwise", "depthwise"), (f"layer{k}_pointwise", "pointwise")]
    out.append(("logits", "dense"))
    return out


@keras.saving.register_keras_serializable(package="cnnrnn")
class Int8Rounding(layers.Layer):
    """Per-example symmetric int8 fake quantisation, as TFLite's dynamic-range (hybrid) kernels do.

    For each example (all axes but the first), ``scale = max|x| / 127``; ``x`` becomes
    ``round(x / scale) * scale`` with rounding half away from zero (``std::round``, as TFLite's
    ``SymmetricQuantizeFloats``); an all-zero example stays zero. Shape and dtype are kept
    (float32 in, float32 out). The gradient passes straight through (``x + stop_gradient(q - x)``).
    Source: TensorFlow Lite ``tensor_utils::SymmetricQuantizeFloats`` and the hybrid ``CONV_2D`` /
    ``FULLY_CONNECTED`` kernels (per-batch input scale).
    """

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        axes = tuple(range(1, len(x.shape)))
        peak = ops.max(ops.abs(x), axis=axes, keepdims=True)
        safe = ops.where(peak > 0, peak, ops.ones_like(peak))
        scaled = x * (127.0 / safe)
        q = ops.sign(scaled) * ops.floor(ops.abs(scaled) + 0.5)
        q = ops.clip(q, -127.0, 127.0) * (safe / 127.0)
        return x + ops.stop_gradient(q - x)

    def compute_output_shape(self, input_shape):
        return input_shape


def build_yamnet(*, frames: int | None = PATCH_FRAMES, include_top: bool = False, int8_rounding: bool = False,
                 name: str = "yamnet") -> keras.Model:
    """The YAMNet network (random weights; load converted ones with ``model.load_weights``).

    Random weights are He-uniform (He et al. 2015), so that 14 ReLU layers without batch norm keep the scale of
    their input (Keras' default Glorot init shrinks it about 2^14-fold: every input gave the same output).

    Args:
        frames: frames per patch (96 = 0.96 s, YAMNet's patch); ``None`` for any length ≥ 1 (the network is
            convolutional and ends in global average pooling).
        include_top: also return the 521 AudioSet class scores (sigmoid).
        int8_rounding: insert :class:`Int8Rounding` before each pointwise convolution and before the head,
            to reproduce the TFLite interpreter's dynamic-range quantisation; off for training.
        name: model name.

    Returns:
        A Keras model: input ``(batch, frames, 64, 1)`` float32 log-mel (natural log of mel magnitude +
        0.001, as :func:`cnnrnn.features.yamnet_log_mel`; frames along height, mel bands along width);
        output ``(batch, 1024)`` float32 embedding, or ``[embedding, scores (batch, 521)]`` with
        ``include_top``. A ``.weights.h5`` written by :func:`cnnrnn.models.yamnet_convert.convert` holds the head
        too: build with ``include_top=True`` to load it, or use :func:`yamnet_backbone` for the embedding
        part.
    """
    inputs = keras.Input((frames, PATCH_BANDS, 1), dtype="float32", name="log_mel")
    x = inputs
    for k, (kind, stride, filters) in enumerate(YAMNET_LAYERS, start=1):
        if kind == "conv":
            x = layers.Conv2D(filters, 3, strides=stride, padding="same", kernel_initializer="he_uniform",
                              name=f"layer{k}_conv")(x)
            x = layers.ReLU(name=f"layer{k}_relu")(x)
            continue
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", name=f"layer{k}_depthwise",
                                   # He for a fan-in of 9 (Keras counts 9 x channels for a depthwise kernel)
                                   depthwise_initializer=keras.initializers.RandomNormal(stddev=(2 / 9) ** 0.5))(x)
        x = layers.ReLU(name=f"layer{k}_depthwise_relu")(x)
        if int8_rounding:
            x = Int8Rounding(name=f"layer{k}_pointwise_int8")(x)
        x = layers.Conv2D(filters, 1, padding="same", kernel_initializer="he_uniform", name=f"layer{k}_pointwise")(x)
        x = layers.ReLU(name=f"layer{k}_pointwise_relu")(x)
    embedding = layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER)(x)
    if not include_top:
        return keras.Model(inputs, embedding, name=name)
    h = Int8Rounding(name="logits_int8")(embedding) if int8_rounding else embedding
    logits = layers.Dense(NUM_CLASSES, name="logits")(h)
    scores = layers.Activation("sigmoid", name=SCORES_LAYER)(logits)
    return keras.Model(inputs, [embedding, scores], name=name)


def yamnet_backbone(model: keras.Model, name: str | None = None) -> keras.Model:
    """The embedding part of a :func:`build_yamnet` model (shares its layers and weights).

    Args:
        model: a model from :func:`build_yamnet` (with or without the head).
        name: name of the new model (default: ``<model.name>_backbone``).

    Returns:
        ``(batch, frames, 64, 1)`` float32 → ``(batch, 1024)`` float32.
    """
    return keras.Model(model.inputs, model.get_layer(EMBEDDING_LAYER).output, name=name or f"{model.name}_backbone")


def pretrained_yamnet(*, frames: int | None, weights: str | None, freeze_blocks: int = 0,
                      output: str = "embedding", name: str = "yamnet") -> keras.Model:
    """The YAMNet network with converted AudioSet weights, for fine-tuning (the float model, no int8 rounding).

    Args:
        frames: frames of the input (96 for a YAMNet patch, a clip's :func:`cnnrnn.features.yamnet_frames`, or
            ``None`` for any length).
        weights: the ``.weights.h5`` of ``cnnrnn yamnet-convert`` (:func:`cnnrnn.models.yamnet_convert.convert`),
            or ``None``/``"none"`` for random weights (tests). Nothing is downloaded.
        freeze_blocks: the first N of the 14 blocks keep their weights (``trainable = False``), 0..14.
        output: ``embedding`` (``(batch, 1024)``, after global average pooling) or ``feature_map``
            (``(batch, ceil(frames / 32), 2, 1024)``, time × mel × channels, before it: for a recurrent layer
            over time).
        name: model name.

    Returns:
        ``(batch, frames, 64, 1) float32`` log-mel (:func:`cnnrnn.features.yamnet_log_mel`) → ``output``.

    Raises:
        WeightsError: the weights file does not exist or is not YAMNet's.
        ValueError: ``freeze_blocks`` outside 0..14, an unknown ``output``.
    """
    if not 0 <= freeze_blocks <= len(YAMNET_LAYERS):
        raise ValueError(f"freeze_blocks must be in [0, {len(YAMNET_LAYERS)}], got {freeze_blocks}")
    if output not in ("embedding", "feature_map"):
        raise ValueError(f"output must be embedding or feature_map, got {output!r}")
    net = build_yamnet(frames=frames, include_top=True)  # the converted file holds the AudioSet head too
    if weights is not None and str(weights).lower() != "none":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"YAMNet weights file {path} does not exist: convert a local yamnet.tflite with "
                               "`cnnrnn yamnet-convert --tflite yamnet.tflite --out PATH.weights.h5` (nothing is "
                               "downloaded)")
        try:
            net.load_weights(path)
        except (ValueError, OSError) as exc:
            raise WeightsError(f"{path} is not a YAMNet weights file written by `cnnrnn yamnet-convert` "
                               f"({str(exc).splitlines()[0]})") from exc
    last = EMBEDDING_LAYER if output == "embedding" else FEATURE_MAP_LAYER
    model = keras.Model(net.inputs, net.get_layer(last).output, name=name)
    for layer in model.layers:
        block = layer.name.split("_")[0]
        if block.startswith("layer") and int(block[5:]) <= freeze_blocks:
            layer.trainable = False
    return model


@keras.saving.register_keras_serializable(package="cnnrnn")
class ImageToLogMel(layers.Layer):
    """Decode a ``spectrogram.kind: yamnet`` image into YAMNet's input (the CNNRNN YAMNet backbone's first layer).

    The image (:func:`cnnrnn.features.to_image` of a YAMNet log-mel) is gray, low mel bands in the bottom row,
    one pixel per band and 10 ms frame, pixel ``p`` standing for ``lo + p / 255 * (hi - lo)``
    (:data:`cnnrnn.features.YAMNET_IMAGE_RANGE`). This layer takes the first channel, puts band 0 first and
    time along the height, and undoes the scaling. No weights.

    Args:
        value_range: ``(lo, hi)``, the log-mel values of pixels 0 and 255 (given by the family:
            :data:`cnnrnn.features.YAMNET_IMAGE_RANGE`).

    Input ``(batch, 64, frames, C) float32`` pixels 0–255; output ``(batch, frames, 64, 1) float32`` natural-log
    mel magnitudes (equal to :func:`cnnrnn.features.yamnet_log_mel` within half a level, 0.027).
    """

    def __init__(self, value_range, **kwargs):
        super().__init__(**kwargs)
        self.value_range = (float(value_range[0]), float(value_range[1]))

    def call(self, inputs):
        lo, hi = self.value_range
        x = ops.cast(inputs[..., :1], "float32")
        x = ops.flip(x, axis=1)                       # row 0 = mel band 0 (the image has it at the bottom)
        x = ops.transpose(x, (0, 2, 1, 3))            # (batch, frames, bands, 1)
        return x * ((hi - lo) / 255.0) + lo

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], input_shape[1], 1)

    def get_config(self):
        return {**super().get_config(), "value_range": list(self.value_range)}
