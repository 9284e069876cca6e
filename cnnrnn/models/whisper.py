"""Whisper's audio encoder in Keras 3 (builder and layers only; no I/O), cut at any block.

The encoder of OpenAI Whisper (Radford et al., "Robust Speech Recognition via Large-Scale Weak Supervision",
arXiv:2212.04356, 2022; ``openai/whisper`` ``whisper/model.py``, ``AudioEncoder``): two 1-D convolutions
(kernel 3, the second with stride 2, each followed by exact GELU) over the 80-band log-mel, a fixed sinusoidal
position table added, then ``n_layers`` pre-layer-norm transformer blocks (self-attention with ``n_heads``
heads, a ``4 · width`` GELU MLP), and a final layer norm. Layer-norm epsilon 1e-5.

Every block's output is an output of the model (:func:`build_whisper_encoder`): the middle blocks carry the
most emotion (measured on emodb-535: after block 2 of tiny.en's 4, 0.901 UA with a linear head; the last layer
0.795). **Block numbering**: 0 is the convolutional stem's output with the positions added (the input of block
1), ``k`` the output of transformer block ``k`` (before the final layer norm), and ``"final"`` the encoder's
own output (after the last block and the layer norm: what ``ctranslate2``'s ``Whisper.encode`` returns).

Whisper's encoder has no attention mask: it was trained on 30 s inputs, and padding changes every frame's
features. This encoder takes any number of frames up to the position table's 3000 (30 s) and slices the table;
callers encode each clip at its own length or pad on purpose.

KerasHub has a Keras 3 ``WhisperBackbone``; this package keeps an encoder of its own so that checkpoints hold
only built-in layers and the four registered layers below (``.h5``, ONNX and TFLite export work as for the
other backbones) and need no further dependency. Weights come from :mod:`cnnrnn.models.whisper_convert`.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from .blocks import WeightsError

N_MELS = 80                 # Whisper's mel bands
SR = 16000                  # Hz
N_FFT = 400                 # 25 ms window
HOP_LENGTH = 160            # 10 ms frames
MAX_FRAMES = 3000           # log-mel frames of 30 s: the position table covers MAX_FRAMES // 2 encoder frames
LN_EPS = 1e-5


@dataclass(frozen=True)
class WhisperSizes:
    """The sizes of a Whisper encoder (tiny: 4 blocks, width 384, 6 heads; base: 6, 512, 8; small: 12, 768, 12).

    Attributes:
        n_layers: transformer blocks.
        width: model width ``d_model``.
        n_heads: attention heads (``width % n_heads == 0``).
        n_mels: input mel bands (80; 128 for large-v3).
        n_ctx: rows of the position table (1500 = 30 s of 20 ms encoder frames).
        name: the model's name, for messages (``tiny.en``, ``base``, ...).
    """

    n_layers: int
    width: int
    n_heads: int
    n_mels: int = N_MELS
    n_ctx: int = MAX_FRAMES // 2
    name: str = "whisper"

    def __post_init__(self):
        if self.n_layers < 1 or self.width < 1 or self.n_heads < 1 or self.width % self.n_heads:
            raise ValueError(f"inconsistent Whisper sizes: {self}")

    def to_json(self) -> dict:
        """The sizes as a JSON-ready dict (the ``--out`` sidecar of ``cnnrnn whisper-convert``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "WhisperSizes":
        """Read :meth:`to_json`'s dict (unknown keys are an error)."""
        return cls(**{k: (str(v) if k == "name" else int(v)) for k, v in data.items()})


#: Known sizes, for messages and the random-weight test models.
KNOWN_SIZES = {
    "tiny": WhisperSizes(4, 384, 6, name="tiny"),
    "base": WhisperSizes(6, 512, 8, name="base"),
    "small": WhisperSizes(12, 768, 12, name="small"),
}


def sinusoids(length: int, channels: int, max_timescale: float = 10000.0) -> np.ndarray:
    """Whisper's position table (``whisper/model.py`` ``sinusoids``): ``(length, channels)`` float32, sin | cos."""
    inc = math.log(max_timescale) / (channels // 2 - 1)
    inv = np.exp(-inc * np.arange(channels // 2))
    t = np.arange(length)[:, None] * inv[None, :]
    return np.concatenate([np.sin(t), np.cos(t)], axis=1).astype("float32")


@keras.saving.register_keras_serializable(package="cnnrnn", name="gelu_exact")
def _gelu(x):
    """Exact (erf) GELU, Whisper's activation: ``x · (1 + erf(x / √2)) / 2``, written with ``erf`` (TensorFlow's own
    gelu uses ``erfc``, which tf2onnx cannot export)."""
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


@keras.saving.register_keras_serializable(package="cnnrnn")
class WhisperPositions(layers.Layer):
    """Add the first ``frames`` rows of the ``(n_ctx, width)`` position table (a weight, filled by the converter).

    Input ``(batch, frames, width)``, frames ≤ ``n_ctx``; output the same shape.
    """

    def __init__(self, n_ctx: int, width: int, **kwargs):
        super().__init__(**kwargs)
        self.n_ctx, self.width = int(n_ctx), int(width)

    def build(self, input_shape):
        self.table = self.add_weight(name="encodings", shape=(self.n_ctx, self.width),
                                     initializer=keras.initializers.Constant(sinusoids(self.n_ctx, self.width)),
                                     trainable=False)

    def call(self, inputs):
        frames = ops.shape(inputs)[1]
        return inputs + ops.cast(ops.expand_dims(self.table[:frames], 0), inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "n_ctx": self.n_ctx, "width": self.width}


@keras.saving.register_keras_serializable(package="cnnrnn")
class WhisperAttention(layers.Layer):
    """Multi-head self-attention with Whisper's fused projection (no mask, no causal masking).

    ``qkv`` is one ``Dense(3 · width)`` (the key part's bias is zero in Whisper), ``out`` a ``Dense(width)``.
    Input and output ``(batch, frames, width)`` float32.
    """

    def __init__(self, width: int, n_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.width, self.n_heads = int(width), int(n_heads)
        self.qkv = layers.Dense(3 * self.width, name="qkv")
        self.out = layers.Dense(self.width, name="out")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.out.build(tuple(input_shape[:-1]) + (self.width,))
        for sub in (self.qkv, self.out):  # a frozen layer built from its config: its sub-layers frozen too
            sub.trainable = self.trainable

    def call(self, x):
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        head = self.width // self.n_heads
        qkv = ops.reshape(self.qkv(x), (b, t, 3, self.n_heads, head))
        qkv = ops.transpose(qkv, (2, 0, 3, 1, 4))                    # (3, batch, heads, frames, head)
        q, k, v = qkv[0], qkv[1], qkv[2]
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) * (1.0 / math.sqrt(head))
        weights = ops.softmax(scores, axis=-1)
        ctx = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))   # (batch, frames, heads, head)
        return self.out(ops.reshape(ctx, (b, t, self.width)))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "n_heads": self.n_heads}


@keras.saving.register_keras_serializable(package="cnnrnn")
class WhisperBlock(layers.Layer):
    """One pre-layer-norm transformer block: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``.

    The MLP is ``Dense(4 · width)``, exact GELU, ``Dense(width)``. Input and output ``(batch, frames, width)``.
    """

    def __init__(self, width: int, n_heads: int, **kwargs):
        super().__init__(**kwargs)
        self.width, self.n_heads = int(width), int(n_heads)
        self.attn_ln = layers.LayerNormalization(epsilon=LN_EPS, name="attn_ln")
        self.attn = WhisperAttention(self.width, self.n_heads, name="attn")
        self.mlp_ln = layers.LayerNormalization(epsilon=LN_EPS, name="mlp_ln")
        self.fc1 = layers.Dense(4 * self.width, name="fc1")
        self.fc2 = layers.Dense(self.width, name="fc2")

    def build(self, input_shape):
        self.attn_ln.build(input_shape)
        self.attn.build(input_shape)
        self.mlp_ln.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (4 * self.width,))
        for sub in (self.attn_ln, self.attn, self.mlp_ln, self.fc1, self.fc2):  # frozen when built from its config
            sub.trainable = self.trainable

    def call(self, x):
        x = x + self.attn(self.attn_ln(x))
        return x + self.fc2(_gelu(self.fc1(self.mlp_ln(x))))

    def get_config(self):
        return {**super().get_config(), "width": self.width, "n_heads": self.n_heads}


def block_names(sizes: WhisperSizes) -> list[str]:
    """The layer whose output is each block's: index 0 the stem (``positions``), k the k-th transformer block."""
    return ["positions"] + [f"block{k}" for k in range(1, sizes.n_layers + 1)]


def check_block(block, sizes: WhisperSizes) -> int:
    """Check a ``whisper_block`` value: an int in ``0..n_layers``, or ``"final"`` (returned as ``n_layers + 1``).

    Raises:
        ValueError: anything else.
    """
    if block == "final":
        return sizes.n_layers + 1
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 0 <= int(block) <= sizes.n_layers:
        raise ValueError(f"whisper_block must be 0..{sizes.n_layers} (0 = the convolutional stem, k = transformer "
                         f"block k of Whisper {sizes.name}) or 'final', got {block!r}")
    return int(block)


def build_whisper_encoder(sizes: WhisperSizes, *, blocks="all", frames: int | None = None,
                          name: str = "whisper_encoder") -> keras.Model:
    """Whisper's encoder, returning the outputs of the blocks asked for (uncompiled, random weights).

    Args:
        sizes: the encoder's :class:`WhisperSizes`.
        blocks: ``"all"`` (the stem, every block and ``final``: a list of ``n_layers + 2`` outputs), one block
            (an int ``0..n_layers`` or ``"final"``: one output, and only the layers up to it are built), or a
            list of them (outputs in that order; layers up to the deepest).
        frames: log-mel frames of the input, or ``None`` for any length (≤ 3000: 30 s).
        name: model name.

    Returns:
        A ``keras.Model``: ``(batch, frames, n_mels) float32`` log-mel (:func:`cnnrnn.features.whisper_log_mel`)
        → ``(batch, ceil(frames / 2), width) float32`` per block (20 ms encoder frames).

    Raises:
        ValueError: a block outside ``0..n_layers`` / ``final``, or ``frames`` over 3000.
    """
    if frames is not None and not 1 <= int(frames) <= 2 * sizes.n_ctx:
        raise ValueError(f"Whisper's encoder takes 1..{2 * sizes.n_ctx} log-mel frames (30 s), got {frames}")
    wanted = list(range(sizes.n_layers + 2)) if blocks == "all" else (
        [check_block(b, sizes) for b in blocks] if isinstance(blocks, (list, tuple)) else [check_block(blocks, sizes)])
    deepest = max(wanted)
    inputs = keras.Input(shape=(frames, sizes.n_mels), name="log_mel")
    x = layers.ZeroPadding1D(1, name="conv1_pad")(inputs)
    x = layers.Conv1D(sizes.width, 3, name="conv1")(x)
    x = layers.Activation(_gelu, name="conv1_gelu")(x)
    x = layers.ZeroPadding1D(1, name="conv2_pad")(x)
    x = layers.Conv1D(sizes.width, 3, strides=2, name="conv2")(x)
    x = layers.Activation(_gelu, name="conv2_gelu")(x)
    x = WhisperPositions(sizes.n_ctx, sizes.width, name="positions")(x)
    outs = [x]
    for k in range(1, min(deepest, sizes.n_layers) + 1):
        x = WhisperBlock(sizes.width, sizes.n_heads, name=f"block{k}")(x)
        outs.append(x)
    if deepest == sizes.n_layers + 1:
        outs.append(layers.LayerNormalization(epsilon=LN_EPS, name="final_ln")(x))
    selected = [outs[b] for b in wanted]
    return keras.Model(inputs, selected if (blocks == "all" or isinstance(blocks, (list, tuple))) else selected[0],
                       name=name)


#: Whisper weights that ship inside the package, by name (a ``train.weights`` value): tiny.en's encoder up to block
#: 2 in float16 (OpenAI, MIT: the notice is in the folder), what the demo and the shipped ``emodb`` model use.
PACKAGED_WEIGHTS = {"whisper-tiny.en": Path(__file__).resolve().parents[1] / "pretrained" / "whisper-tiny.en"
                    / "whisper-tiny.en-b2.weights.h5"}


def resolve_weights(weights: str | Path) -> Path:
    """A weights value as a path: a name of :data:`PACKAGED_WEIGHTS` (unless a local file has that name), else the
    path itself (``~`` expanded)."""
    if str(weights) in PACKAGED_WEIGHTS and not Path(weights).expanduser().exists():
        return PACKAGED_WEIGHTS[str(weights)]
    return Path(weights).expanduser()


def read_meta(weights: str | Path) -> dict:
    """The JSON beside a converted weights file: ``{"sizes": {...}, "blocks": transformer blocks present,
    "final_ln": bool, "dtype": ..., "source": {...}}`` (``blocks``/``final_ln`` default to a whole encoder).

    Raises:
        WeightsError: the file or its JSON is missing or unreadable.
    """
    path = resolve_weights(weights)
    if not path.is_file():
        raise WeightsError(f"Whisper weights file {path} does not exist: convert a local Whisper model with "
                           "`cnnrnn whisper-convert --ct2 model.bin --out PATH.weights.h5` (or --hf DIR); "
                           "nothing is downloaded")
    sidecar = sizes_path(path)
    try:
        meta = json.loads(sidecar.read_text())
        sizes = WhisperSizes.from_json(meta["sizes"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise WeightsError(f"{sidecar} (the sizes of {path.name}, written by `cnnrnn whisper-convert`) is missing "
                           f"or unreadable ({exc}); convert the model again") from exc
    meta.setdefault("blocks", sizes.n_layers)
    meta.setdefault("final_ln", meta["blocks"] == sizes.n_layers)
    return meta


def read_sizes(weights: str | Path) -> WhisperSizes:
    """The :class:`WhisperSizes` stored beside a converted weights file (``<weights>.json``, :func:`read_meta`).

    Raises:
        WeightsError: the file or its sizes JSON is missing or unreadable.
    """
    return WhisperSizes.from_json(read_meta(weights)["sizes"])


def sizes_path(weights: str | Path) -> Path:
    """``W.weights.h5`` → ``W.json``: the sizes sidecar that ``cnnrnn whisper-convert`` writes beside the weights."""
    p = Path(weights)
    stem = p.name[: -len(".weights.h5")] if p.name.endswith(".weights.h5") else p.stem
    return p.with_name(stem + ".json")


def pretrained_whisper(weights: str | Path | None, *, block=2, frames: int | None = None,
                       trainable_blocks: int = 0, sizes: WhisperSizes | None = None,
                       name: str = "whisper") -> keras.Model:
    """Whisper's encoder with converted weights, cut after ``block``, frozen except its top ``trainable_blocks``.

    Args:
        weights: the ``.weights.h5`` written by ``cnnrnn whisper-convert`` (its ``.json`` sizes beside it), or
            ``None``/``"none"`` for random weights of ``sizes`` (tests).
        block: the block whose output is returned (see the module docstring), or ``"all"`` for a list of the stem
            and every block (``0..n_layers``, no final layer norm): the input of a learned weighted sum.
        frames: log-mel frames of the input, or ``None`` for any length.
        trainable_blocks: the last N transformer blocks up to ``block`` are trained; the rest (and the stem)
            keep their weights. 0 (the default) freezes the whole encoder.
        sizes: the sizes when ``weights`` is none (default tiny), or a check: they must equal the file's.
        name: model name.

    Returns:
        ``(batch, frames, n_mels) float32`` → ``(batch, ceil(frames / 2), width) float32`` (a list for ``all``).

    Raises:
        WeightsError: the file is missing, its sizes differ from ``sizes``, or the weights do not load.
        ValueError: a bad ``block`` or ``trainable_blocks``.
    """
    real = weights is not None and str(weights).lower() != "none"
    meta = read_meta(weights) if real else None
    file_sizes = WhisperSizes.from_json(meta["sizes"]) if real else None
    if real and sizes is not None and sizes != file_sizes:
        raise WeightsError(f"{weights} holds Whisper {file_sizes.name} ({file_sizes.n_layers} blocks, width "
                           f"{file_sizes.width}), but the config names {sizes.name} ({sizes.n_layers} blocks, "
                           f"width {sizes.width})")
    sizes = file_sizes or sizes or KNOWN_SIZES["tiny"]
    present = sizes.n_layers if meta is None else int(meta["blocks"])
    b = None if block == "all" else check_block(block, sizes)        # "final" is n_layers + 1
    top = present if b is None else min(b, sizes.n_layers)           # the deepest transformer block used
    if not 0 <= int(trainable_blocks) <= top:
        raise ValueError(f"trainable_blocks must be 0..{top} (the blocks up to whisper_block), got {trainable_blocks}")
    if top > present or (block == "final" and meta is not None and not meta["final_ln"]):
        raise WeightsError(f"{weights} holds Whisper {sizes.name}'s encoder up to block {present} only; "
                           f"whisper_block {block} needs a file converted with more blocks (cnnrnn whisper-convert)")
    complete = meta is None or (present == sizes.n_layers and meta["final_ln"])
    full = build_whisper_encoder(sizes, blocks="all" if complete else list(range(present + 1)), frames=frames,
                                 name=name)
    if real:
        try:
            full.load_weights(resolve_weights(weights))
        except (ValueError, OSError, KeyError) as exc:
            raise WeightsError(f"{weights} is not a Whisper {sizes.name} weights file written by "
                               f"`cnnrnn whisper-convert` ({str(exc).splitlines()[0]})") from exc
    names = block_names(sizes)[: present + 1]
    if b is None:
        out = [full.get_layer(n).output for n in names]
    else:
        out = full.get_layer("final_ln" if b == sizes.n_layers + 1 else names[b]).output
    model = keras.Model(full.input, out, name=name)
    first_trained = top - int(trainable_blocks) + 1
    for layer in model.layers:
        if layer.name.startswith("block") and layer.name[5:].isdigit():
            layer.trainable = int(layer.name[5:]) >= first_trained
        elif layer.weights:
            layer.trainable = False
    return model


@keras.saving.register_keras_serializable(package="cnnrnn")
class WeightedBlockSum(layers.Layer):
    """A learned softmax-weighted sum of block outputs (the SUPERB recipe, Yang et al. 2021).

    Input: a list of ``n`` tensors ``(batch, frames, width)``; output ``(batch, frames, width)``. The ``n``
    weights start equal.
    """

    def build(self, input_shape):
        self.mix = self.add_weight(name="mix", shape=(len(input_shape),), initializer="zeros")

    def call(self, inputs):
        w = ops.softmax(self.mix)
        return sum(w[i] * x for i, x in enumerate(inputs))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package="cnnrnn")
class MeanStdPooling(layers.Layer):
    """Mean and standard deviation over frames: ``(batch, frames, width)`` → ``(batch, 2 · width)`` float32 (the
    statistics pooling of x-vectors, Snyder et al. 2018; the frozen-feature recipe's vector)."""

    def call(self, x):
        mean = ops.mean(x, axis=1)
        std = ops.sqrt(ops.maximum(ops.mean(ops.square(x - mean[:, None, :]), axis=1), 1e-10))
        return ops.concatenate([mean, std], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])


@keras.saving.register_keras_serializable(package="cnnrnn")
class Standardize(layers.Layer):
    """``(x - mean) / std`` per feature with fixed statistics (non-trainable weights, set from the training data by
    :meth:`set_statistics`; identity until then): the standardisation a linear probe gets from scikit-learn's
    ``StandardScaler``. Input and output ``(batch, features)`` float32."""

    def build(self, input_shape):
        dim = int(input_shape[-1])
        self.mean = self.add_weight(name="mean", shape=(dim,), initializer="zeros", trainable=False)
        self.std = self.add_weight(name="std", shape=(dim,), initializer="ones", trainable=False)

    def set_statistics(self, features) -> None:
        """Set the mean and standard deviation (floored at 1e-6) of ``features`` ``(n, features)``."""
        f = np.asarray(features, np.float64)
        self.mean.assign(f.mean(axis=0).astype("float32"))
        self.std.assign(np.maximum(f.std(axis=0), 1e-6).astype("float32"))

    def call(self, x):
        return (x - self.mean) / self.std
