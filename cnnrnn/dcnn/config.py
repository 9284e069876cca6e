"""The DCNN-BLSTMwA config: ``{"data": {...}, "model": {...}, "train": {...}}``, read by the core mechanism.

Shipped presets are in ``cnnrnn/configs/dcnn/`` (``emodb_finetune``, ``emodb_train``, ``esd_*``,
``jtes_*``, ``tiny_*``, ``compact_*``, ``yamnet_*``, ``whisper_*``), one pair per corpus or backbone, with the values of Zhang et al., "Pre-trained Deep Convolution
Neural Network Model With Attention for Speech Emotion Recognition" (Frontiers in Physiology 2021) and the
DCNN-BLSTMWA code's ``hparams`` files. Loading, type checks, unknown keys, old names (``lr``) and overrides
are :mod:`cnnrnn.config`'s; relative paths in a config are relative to the working directory, like the
original scripts.

Each default is declared once: ``sr``, ``n_mels``, ``fmin`` and ``fmax`` in :class:`cnnrnn.features.MelBands`
(128 mels from 0 Hz), so the DCNN presets state the paper's 64 mels from 20 Hz themselves.

Three feature kinds (``data.kind``), each tied to its backbones: ``deltas`` (the paper's 3-channel log-mel + Δ + ΔΔ
images, for ``alexnet`` / ``resnet50`` / ``compact``), ``yamnet`` (YAMNet's 1-channel log-mel patches, for
``model.backbone: yamnet``; presets ``yamnet_finetune`` / ``yamnet_train``) and ``whisper`` (the frozen Whisper
encoder's frames, for ``model.backbone: whisper``; presets ``whisper_finetune`` / ``whisper_train``).

**The Whisper presets** (``whisper_finetune`` = step 1, ``whisper_train`` = step 2; chosen on the development
speakers 08 and 10 of the emodb-535 LOSO benchmark only, ``benchmarks/emodb_loso.py``): each clip at its own length
(no padding to 30 s) → Whisper's log-mel → the frozen tiny.en encoder (``model.weights``, converted by ``cnnrnn
whisper-convert``), its outputs after the stem and blocks 1, 2, 3 of 4 kept (``model.whisper_block: 3``,
``model.whisper_mix: weighted``) → speaker normalisation of those outputs (z-scores per dimension and block mapped
back to the training data's global mean and deviation) → segments of 32 encoder frames (0.64 s) every 16 (0.32 s)
→ step 1: a learned softmax-weighted sum of the 4 outputs, mean + std over the segment's frames, batch norm
(momentum 0.9), dropout 0.5, 256 ReLU units (the segment feature) and softmax; Adam 1e-3 × 0.9^epoch, batch 32, 20 epochs → step 2:
the BiLSTM-attention (64 units each way, attention 64, Dense 128/64, dropout 0.3) over the clip's segment features;
Adam 1e-3 × 0.95^epoch, batch 16, 30 epochs; both steps keep the epoch of best accuracy on one held-out training
speaker (``train.selection: inner``). Other options: ``model.whisper_mix: block`` (one block's output alone, the
default ``whisper_block`` 2) and ``model.trainable_blocks: N`` (the top N blocks up to ``whisper_block`` are fine-tuned
in step 1, on each segment).

Development folds (08, 10; UA of step 2, 2026-12-07, 2 shared CPU cores at load 5-14): block 2 alone 0.858 (0.924,
0.793); weighted sum of blocks 0-2 0.922 (0.893, 0.950); **weighted sum of blocks 0-3 0.938 (0.890, 0.986): the
presets**; weighted sum of blocks 0-4 (all) 0.926; the presets with 1 s segments (50 frames, hop 25) 0.834; weighted
0-2 with step-2 lr 3e-4 and head dropout 0.5 0.895; weighted 0-2 with step-1 dropout 0.7 and
64 units 0.843 on 08 (stopped); block 2 without speaker norm 0.728. Step 2 scores below step 1 on the development
folds (step 1 alone, utterance = mean of its segments: 0.952 for the presets): the training speakers' segment
features are fitted ones, so step 2's held-out speaker chooses an early epoch.

All 10 folds (``benchmarks/results/emodb_loso/dcnn_whisper.json``, ``dcnn_whisper_nonorm.json``; 2026-12-07, 2
shared CPU cores at load 4-14, about 45 CPU s a fold plus 70 CPU s of encoder features once): the presets UA 0.858 ±
0.049 over the 8 headline speakers (all 10: 0.874; step 1 alone 0.859), without speaker normalisation 0.814 ± 0.084
(all 10: 0.805).

``model.weights`` (relative to the working directory, like every path of a config) is resolved when the config is
loaded: ``data.encoder`` holds its absolute path, so a run predicts from any folder on the same machine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as _config
from ..config import ConfigError
from ..features import (YAMNET_FMAX, YAMNET_FMIN, YAMNET_HOP_SECONDS, YAMNET_N_MELS, YAMNET_SR,
                        YAMNET_WINDOW_SECONDS, MelBands, SpectrogramConfig)

FAMILY = "dcnn"
#: Step 1's checkpoint and its sidecar (labels + feature settings), in the step's run folder.
DCNN_FILE, DCNN_META = "dcnn.h5", "dcnn.json"
#: Step 2's checkpoint and its sidecar (labels, feature settings, the DCNN it reads, relative to it).
MODEL_FILE, MODEL_META = "blstm_attention.h5", "blstm_attention.json"
#: The normalisation statistics of a run with ``normalization`` ``global`` / ``speaker``, beside its checkpoint.
NORM_FILE = "normalization.json"
#: ``data.kind`` values: the 3-channel log-mel + Δ + ΔΔ images of the paper, YAMNet's log-mel patches, or the frozen
#: Whisper encoder's frames.
FEATURE_KINDS = ("deltas", "yamnet", "whisper")
#: The backbone each feature kind feeds (``deltas``: alexnet, resnet50 or compact).
KIND_BACKBONES = {"yamnet": "yamnet", "whisper": "whisper"}
#: What ``data.kind: whisper`` requires: Whisper's front end (:func:`cnnrnn.whisper_features.whisper_log_mel`: 16 kHz,
#: 25 ms / 10 ms, 80 Slaney mel bands 0-8 kHz).
WHISPER_FRONT_END = {"sr": 16000, "n_mels": 80, "fmin": 0.0, "win_ms": 25.0, "hop_ms": 10.0}
#: ``model.whisper_mix`` values: the output of ``whisper_block`` alone, or a learned weighted sum of blocks 0..it.
WHISPER_MIXES = ("block", "weighted")
#: What ``data.kind: yamnet`` requires: the front end YAMNet's AudioSet weights were trained on.
YAMNET_FRONT_END = {"sr": YAMNET_SR, "n_mels": YAMNET_N_MELS, "fmin": YAMNET_FMIN, "fmax": YAMNET_FMAX,
                    "win_ms": YAMNET_WINDOW_SECONDS * 1000, "hop_ms": YAMNET_HOP_SECONDS * 1000}


@dataclass
class FeatureConfig(MelBands):
    """The feature settings of DCNN-BLSTMwA (the ``data`` section less the inputs).

    ``sr``, ``n_mels``, ``fmin`` and ``fmax`` (``None`` = sr/2) are :class:`~cnnrnn.features.MelBands`'.
    The paper uses 64 mels from 20 Hz at 16 kHz (the shipped presets say so).

    Attributes:
        kind: ``deltas`` (the paper, default: pre-emphasis, log-mel + Δ + ΔΔ min-max scaled per channel, cut into
            ``(n_mels, segment_frames, 3)`` segments, resized to ``image_size`` and ImageNet-normalised) or
            ``yamnet`` (for ``model.backbone: yamnet``: :func:`cnnrnn.features.yamnet_log_mel`, natural-log mel
            magnitudes, cut into ``(segment_frames, n_mels, 1)`` patches by :func:`cnnrnn.features.yamnet_patches`
            and fed as they are; ``sr``, ``n_mels``, ``fmin``, ``fmax``, ``win_ms``, ``hop_ms`` must be YAMNet's
            16000, 64, 125, 7500, 25, 10 (:data:`YAMNET_FRONT_END`); ``delta_width``, ``image_size`` and
            ``norm_range`` are unused; YAMNet's own patches are 96 frames every 48) or ``whisper`` (for
            ``model.backbone: whisper``: Whisper's log-mel (:data:`WHISPER_FRONT_END`) of the clip at its own
            length, run once through the frozen encoder of ``encoder``; the features are the encoder's
            ``(width, frames, n_blocks)`` outputs, 20 ms frames, one channel per cached block, cut into
            ``(segment_frames, width, n_blocks)`` segments; ``segment_frames`` / ``segment_hop`` count 20 ms encoder frames; a clip over
            30 s (Whisper's position table) is encoded in consecutive 30 s windows whose frames are concatenated;
            ``preemphasis`` must be 0; ``max_sec: 30`` pads every clip as Whisper itself does, and trims longer ones).
        max_sec: pad/trim length in seconds (3 for ESD, 4 for JTES); ``None`` keeps each clip's length.
        preemphasis: pre-emphasis coefficient (0 disables it).
        win_ms, hop_ms: STFT window and hop in milliseconds (``n_fft = win_length``).
        delta_width: ``librosa.feature.delta`` window (odd, ≥ 3).
        segment_frames, segment_hop: segment length and hop in frames.
        image_size: ``[H, W]`` the DCNN takes (227×227 for AlexNet).
        normalization: normalisation of the 3-channel log-mel before it is cut into segments
            (:mod:`cnnrnn.normalize`, per mel band and channel): ``none`` (the paper: each channel min-max
            scaled over the utterance), ``utterance``, ``global`` (statistics of the training utterances) or
            ``speaker`` (each speaker's own audio, no labels; stored in the run's ``normalization.json``).
            With kind ``yamnet`` the z-scores are mapped back to the training data's global mean and standard
            deviation per band, so the pretrained network sees log-mels in their usual range
            (:func:`cnnrnn.dcnn.data.normalize_features`; ``global`` then changes nothing). With kind ``whisper`` the
            same is done to the frozen encoder's outputs (per dimension and cached block), not to the log-mel: each
            speaker's offset and spread are removed where the emotion is, the encoder itself sees the clip as
            Whisper would, and its outputs are computed once per clip, not once per fold.
        norm_range: with a normalisation, z-scores in ``[-norm_range, norm_range]`` span [0, 1] (clipped).
        encoder: kind ``whisper`` only, **derived** from the ``model`` section when the config is loaded (a value
            given by hand is replaced): ``{"weights": <absolute path of model.weights, or "none">, "blocks":
            [the encoder blocks cached per clip]}`` (:func:`whisper_encoder_spec`); ``None`` for the other kinds.
            It is part of the feature settings, so ``dcnn.json`` records it and prediction encodes new audio with
            the same frozen encoder.
    """

    kind: str = "deltas"
    max_sec: float | None = 3.0
    preemphasis: float = 0.97
    win_ms: float = 25.0
    hop_ms: float = 10.0
    delta_width: int = 5
    segment_frames: int = 64
    segment_hop: int = 32
    image_size: list[int] = field(default_factory=lambda: [227, 227])
    normalization: str = SpectrogramConfig.normalization
    norm_range: float = SpectrogramConfig.norm_range
    encoder: dict | None = None

    @property
    def n_fft(self) -> int:
        """Window length in samples (25 ms → 400 at 16 kHz)."""
        return int(round(self.sr * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        """Hop in samples (10 ms → 160 at 16 kHz)."""
        return int(round(self.sr * self.hop_ms / 1000))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """The step-1 model's input: ``(H, W, 3)`` = ``image_size`` for kind ``deltas``, ``(segment_frames,
        n_mels, 1)`` (time × mel bands) for ``yamnet``, ``(segment_frames, width, n_blocks)`` (20 ms encoder frames ×
        encoder width × cached blocks) for ``whisper`` (the width is read from the weights' sizes JSON)."""
        if self.kind == "yamnet":
            return (self.segment_frames, self.n_mels, 1)
        if self.kind == "whisper":
            encoder = self.whisper_encoder()
            return (self.segment_frames, whisper_sizes(encoder).width, len(encoder["blocks"]))
        return (*self.image_size, 3)

    @property
    def resize(self) -> list[int] | None:
        """What :func:`cnnrnn.dcnn.data.segment_dataset` resizes segments to (then ImageNet-normalises):
        ``image_size``, or ``None`` for YAMNet patches and Whisper frames (fed as they are)."""
        return None if self.kind in ("yamnet", "whisper") else list(self.image_size)

    def whisper_encoder(self) -> dict:
        """``encoder`` of a ``whisper`` kind (see the attributes).

        Raises:
            ConfigError: not derived (a bare feature dict without it: load the whole DCNN config instead).
        """
        if self.kind != "whisper" or not self.encoder:
            raise ConfigError("data.encoder is not set: it is derived from the model section of a whole DCNN config "
                              "(load_dcnn_config) with model.backbone whisper")
        return self.encoder

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` on impossible values."""
        super().validate()
        if self.kind not in FEATURE_KINDS:
            raise ConfigError(f"data.kind must be one of {FEATURE_KINDS}, got {self.kind!r}")
        if self.kind == "yamnet":
            wrong = {k: getattr(self, k) for k, v in YAMNET_FRONT_END.items() if getattr(self, k) != v}
            if wrong:
                raise ConfigError(f"data.kind yamnet needs YAMNet's front end {YAMNET_FRONT_END}; got {wrong}")
        if self.kind == "whisper":
            wrong = {k: getattr(self, k) for k, v in WHISPER_FRONT_END.items() if getattr(self, k) != v}
            if self.fmax not in (None, 8000, 8000.0):
                wrong["fmax"] = self.fmax
            if self.preemphasis:
                wrong["preemphasis"] = self.preemphasis
            if wrong:
                raise ConfigError(f"data.kind whisper needs Whisper's front end {WHISPER_FRONT_END}, fmax null or 8000 "
                                  f"and preemphasis 0; got {wrong}")
            if self.max_sec is not None and self.max_sec > 30:
                raise ConfigError(f"data.kind whisper: max_sec is at most 30 (Whisper's position table), got "
                                  f"{self.max_sec}; null keeps each clip's length")
            enc = self.encoder
            if enc is not None and not (
                    isinstance(enc, dict) and isinstance(enc.get("weights"), str) and isinstance(enc.get("blocks"), list)
                    and enc["blocks"] and all(isinstance(b, (int, str)) and not isinstance(b, bool)
                                              for b in enc["blocks"])):
                raise ConfigError(f"data.encoder must be {{'weights': path, 'blocks': [int, ...]}} for data.kind "
                                  f"whisper (derived from the model section), got {enc!r}")
        if self.n_fft < 2 or self.hop_length < 1:
            raise ConfigError(f"bad STFT settings: win_ms {self.win_ms}, hop_ms {self.hop_ms} at sr {self.sr}")
        if self.delta_width % 2 == 0:
            raise ConfigError(f"delta_width must be odd and >= 3, got {self.delta_width}")
        if not 1 <= self.segment_hop <= self.segment_frames:
            raise ConfigError(f"need 1 <= segment_hop <= segment_frames, got {self.segment_hop}, "
                              f"{self.segment_frames}")
        if len(self.image_size) != 2 or not 32 <= min(self.image_size) <= max(self.image_size) <= 4096:
            raise ConfigError(f"image_size must be [H, W] with H, W in [32, 4096], got {self.image_size}")
        from ..normalize import MODES

        if self.normalization not in MODES:
            raise ConfigError(f"normalization must be one of {MODES}, got {self.normalization!r}")

    def settings(self) -> dict[str, Any]:
        """The feature settings alone, as a plain dict (what ``dcnn.json`` stores under ``features``)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(FeatureConfig)}

    def input_spec(self) -> dict[str, Any]:
        """What a run manifest records as the model's input: sr in Hz, duration in seconds (``max_sec``),
        image size (the model's input ``[H, W]``: for YAMNet ``[segment_frames, n_mels]``), and every feature
        setting."""
        return {"sr": self.sr, "duration": self.max_sec, "image_size": list(self.input_shape[:2]),
                "n_mels": self.n_mels, "features": self.settings()}


def feature_config(values: dict[str, Any]) -> FeatureConfig:
    """A validated :class:`FeatureConfig` from a dict (e.g. the ``features`` of a ``dcnn.json``).

    Raises:
        ConfigError: unknown keys, wrong types or impossible values.
    """
    cfg = _config.section_from_dict(FeatureConfig, values, "features")
    _config.validate_section(cfg, "features")
    return cfg


@dataclass
class DataSection(FeatureConfig):
    """``data``: the feature settings of :class:`FeatureConfig` plus the inputs.

    Attributes:
        filelist_train, filelist_test: filelists (``wavpath|speaker_id|text|emotion_id|lang_id``).
        labels_file: ``labels.json`` (a list, or ``{"labels": [...]}``); default: a ``labels.json`` in the
            train filelist's folder or the one above it (where ``cnnrnn filelists`` writes it).
        root: folder relative wav paths are resolved against (default: each filelist's folder).
    """

    filelist_train: str = ""
    filelist_test: str = ""
    labels_file: str | None = None
    root: str | None = None

    def features(self) -> FeatureConfig:
        """The feature settings alone."""
        return FeatureConfig(**self.settings())


@dataclass
class ModelSection:
    """``model``: the DCNN (step 1, :func:`cnnrnn.models.dcnn.build_dcnn`) and BiLSTM-attention (step 2,
    :func:`cnnrnn.models.blstm_attention.build_blstm_attention`) settings; paper values by default.

    Attributes:
        backbone: ``alexnet`` (the paper's, default), ``resnet50``, ``compact`` (a few Conv2D + BatchNorm
            blocks, :func:`cnnrnn.models.blocks.conv_blocks`, for corpora of hundreds of utterances) or ``yamnet``
            (the AudioSet-pretrained MobileNetV1 up to its 1024-d embedding; needs ``data.kind: yamnet``).
        weights: ``none``, ``imagenet`` (resnet50, Keras cache only) or a local file; for ``yamnet`` the
            ``.weights.h5`` written by ``cnnrnn yamnet-convert`` (``none``: random weights, for tests only).
        freeze_blocks: ``yamnet`` only: the first N of its 14 blocks keep their pretrained weights (0: all
            fine-tuned; fewer trainable layers train faster on a CPU).
        whisper_block: ``whisper`` only: the encoder's output used, 0 (the convolutional stem) .. ``n_layers`` (the
            output of that transformer block; 2 by default, the middle of tiny's 4) or ``"final"`` (after the last
            block and the final layer norm) (:func:`cnnrnn.models.whisper.check_block`).
        whisper_mix: ``whisper`` only: ``block`` (that block's output) or ``weighted`` (a learned softmax-weighted
            sum of blocks 0..``whisper_block``, :class:`cnnrnn.models.whisper.WeightedBlockSum`, trained in step 1;
            not with ``final``).
        trainable_blocks: ``whisper`` only: the top N transformer blocks up to ``whisper_block`` are fine-tuned in
            step 1 (0, the default: the encoder is frozen and only its outputs are used). The features then cache
            the output of block ``whisper_block - N`` per clip and step 1 runs the N blocks, initialised from
            ``weights``, on each segment: their self-attention spans the segment (``segment_frames``), not the clip.
        bn_momentum: momentum of the ResNet50 / compact backbone's batch norm (``null``: Keras' 0.99; 0.9 for
            a from-scratch ResNet50, which otherwise collapses to one class).
        filters: the compact backbone's convolution widths, one block each.
        freq_masks, freq_mask_width, time_masks, time_mask_width: SpecAugment on the step-1 segment images
            (training only, seeded with ``train.seed``): number and largest width in pixels of the frequency
            and time masks; 0 masks = none (the paper).
        precise_bn: PreciseBN (Wu & Johnson 2021) in step 1: after every epoch the DCNN's batch-norm
            statistics are recomputed from the fit segments with that epoch's weights
            (:func:`cnnrnn.models.blocks.recalibrate_batch_norm`) before the epoch is scored, so the saved DCNN
            (and the step-2 features it extracts) uses the statistics of its own weights. Off by default (paper).
    """

    backbone: str = "alexnet"
    weights: str = "none"
    width: float = 1.0
    fc_units: int = 4096
    dropout: float = 0.5
    lstm_units: int = 128
    lstm_layers: int = 1
    attention_units: int = 256
    dense1_units: int = 512
    dense2_units: int = 256
    head_dropout: float = 0.1
    precise_bn: bool = False
    freeze_blocks: int = 0
    whisper_block: int | str = 2
    whisper_mix: str = "block"
    trainable_blocks: int = 0
    bn_momentum: float | None = None
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    freq_masks: int = 0
    freq_mask_width: int = 8
    time_masks: int = 0
    time_mask_width: int = 16

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` on impossible values."""
        if self.backbone not in ("alexnet", "resnet50", "compact", "yamnet", "whisper"):
            raise ConfigError(f"model.backbone must be alexnet, resnet50, compact, yamnet or whisper, got "
                              f"{self.backbone!r}")
        if self.whisper_mix not in WHISPER_MIXES:
            raise ConfigError(f"model.whisper_mix must be one of {WHISPER_MIXES}, got {self.whisper_mix!r}")
        block = self.whisper_block
        if isinstance(block, bool) or (isinstance(block, str) and block != "final") or (
                isinstance(block, int) and block < 0):
            raise ConfigError(f"model.whisper_block must be 0..n_layers (0 = the convolutional stem, k = transformer "
                              f"block k) or 'final', got {block!r}")
        if block == "final" and (self.whisper_mix != "block" or self.trainable_blocks):
            raise ConfigError("model.whisper_block final takes whisper_mix block and trainable_blocks 0 (the final "
                              "layer norm follows the last block); name the last block's number instead")
        if isinstance(block, int) and self.trainable_blocks > block:
            raise ConfigError(f"model.trainable_blocks must be 0..whisper_block ({block}), got {self.trainable_blocks}")
        if not self.filters or min(self.filters) < 1:
            raise ConfigError(f"model.filters must be positive widths, got {self.filters}")

    def spec_augment(self, seed: int) -> dict | None:
        """Keyword arguments of :class:`cnnrnn.models.augment.SpecAugment`, or ``None`` without masks."""
        if not (self.freq_masks or self.time_masks):
            return None
        return {"freq_masks": self.freq_masks, "freq_width": self.freq_mask_width, "time_masks": self.time_masks,
                "time_width": self.time_mask_width, "seed": seed}


@dataclass
class TrainSection:
    """``train``: one step's optimisation (paper: step 1 Adam 1e-4, batch 128, decay 0.695; step 2 Adam 5e-6,
    batch 16, decay 0.59; 30 epochs each).

    Attributes:
        name: run name; outputs go to ``<log_root>/<name>/``.
        log_root: output root (``logs``).
        learning_rate, lr_decay: Adam learning rate, multiplied by ``lr_decay ** epoch`` each epoch
            (``lr``, the old name, is still read).
        batch_size, epochs, seed: as usual.
        finetune_name: step 2 only: the step-1 run whose ``dcnn.h5`` gives the features.
        selection: which epoch's weights the step keeps: ``last`` (the final epoch, as the DCNN-BLSTMWA code;
            the test filelist's curves are logged only) or ``inner`` (the epoch of best accuracy on one
            training speaker held out of the fit, a seeded choice among the train filelist's speakers, else a
            stratified fifth of it: never chosen on the scored test filelist).
    """

    ALIASES = {"lr": "learning_rate"}

    name: str = "dcnn"
    log_root: str = "logs"
    learning_rate: float = 1e-4
    lr_decay: float = 0.695
    batch_size: int = 128
    epochs: int = 30
    seed: int = 0
    finetune_name: str | None = None
    selection: str = "last"

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` on impossible values."""
        if self.selection not in ("last", "inner"):
            raise ConfigError(f"train.selection must be last or inner, got {self.selection!r}")
        _config.check_file_name(self.name, "train.name")  # the run folder <log_root>/<name>: never outside --out
        if self.finetune_name is not None:
            _config.check_file_name(self.finetune_name, "train.finetune_name")


@dataclass
class DcnnConfig:
    """A DCNN-BLSTMwA config: ``{"data": {...}, "model": {...}, "train": {...}}``."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)

    @property
    def run_dir(self) -> Path:
        """``<log_root>/<name>``."""
        return Path(self.train.log_root) / self.train.name

    def to_dict(self) -> dict[str, Any]:
        """The config as a dict of its sections (:func:`cnnrnn.config.to_dict`)."""
        return _config.to_dict(self)

    def validate(self) -> None:
        """The backbone decides the feature kind: ``yamnet`` takes ``data.kind: yamnet``, ``whisper`` ``data.kind:
        whisper``, the others ``deltas``; for ``whisper`` it derives ``data.encoder`` (:func:`whisper_encoder_spec`).

        Raises:
            ConfigError: they disagree.
        """
        kind = {v: k for k, v in KIND_BACKBONES.items()}.get(self.model.backbone, "deltas")
        if self.data.kind != kind:
            raise ConfigError(f"model.backbone {self.model.backbone} takes data.kind {kind}, got {self.data.kind!r}")
        self.data.encoder = whisper_encoder_spec(self.model) if kind == "whisper" else None
        _config.validate_section(self.data, "data")   # with the derived encoder


def whisper_cached_blocks(model: ModelSection) -> list:
    """The encoder blocks whose outputs the features hold, per clip, for ``model`` (``backbone: whisper``): the
    frozen part's top, ``whisper_block - trainable_blocks`` (or ``"final"``), and with ``whisper_mix: weighted``
    every block from 0 (the stem) up to it."""
    if model.whisper_block == "final":
        return ["final"]
    top = int(model.whisper_block) - int(model.trainable_blocks)
    return list(range(top + 1)) if model.whisper_mix == "weighted" else [top]


def whisper_encoder_spec(model: ModelSection) -> dict:
    """``data.encoder`` for ``model`` (``backbone: whisper``): ``{"weights": the absolute path of model.weights (or
    "none": random weights of Whisper tiny, for tests), "blocks": whisper_cached_blocks(model)}``."""
    weights = str(model.weights)
    if weights.lower() != "none":
        weights = str(Path(weights).expanduser().resolve())
    return {"weights": weights, "blocks": whisper_cached_blocks(model)}


def whisper_sizes(encoder: dict):
    """The :class:`cnnrnn.models.whisper.WhisperSizes` of ``data.encoder``'s weights (tiny's for ``none``).

    Raises:
        WeightsError: the weights file or its sizes JSON is missing.
    """
    from ..models.whisper import KNOWN_SIZES, read_sizes

    weights = encoder["weights"]
    return KNOWN_SIZES["tiny"] if weights.lower() == "none" else read_sizes(weights)


def load_dcnn_config(source: str | Path | dict | DcnnConfig | None = None) -> DcnnConfig:
    """Load a DCNN config: a preset name of ``cnnrnn/configs/dcnn`` (``emodb_finetune``; see
    ``cnnrnn.config.list_presets("dcnn")``), a JSON path, a dict, or a :class:`DcnnConfig`.

    Raises:
        ConfigError: unknown name/file, invalid JSON, unknown sections or keys, wrong value types,
            impossible feature settings.
    """
    return _config.load(DcnnConfig, source, family=FAMILY)


def read_sidecar(checkpoint: str | Path, meta_name: str) -> tuple[list[str], FeatureConfig, dict[str, Any]]:
    """The labels, feature settings and whole content of a checkpoint's sidecar JSON (``dcnn.json`` beside
    ``dcnn.h5``, ``blstm_attention.json`` beside ``blstm_attention.h5``; runs written before the run manifest
    have the same files). KEMDy's ``disqust`` is read as ``disgust``.

    Raises:
        FileNotFoundError: no sidecar beside the checkpoint.
        ConfigError: its feature settings are invalid.
    """
    from ..artifacts import load_json, load_labels

    path = Path(checkpoint).with_name(meta_name)
    if not path.is_file():
        step = "finetune" if meta_name == DCNN_META else "train"
        raise FileNotFoundError(f"{path} not found: the labels and feature settings of {Path(checkpoint).name} "
                                f"(written beside it by `cnnrnn dcnn {step}`)")
    meta = load_json(path)
    return load_labels(path), feature_config(meta["features"]), meta


def read_norm_stats(checkpoint: str | Path):
    """The :class:`cnnrnn.normalize.NormStats` stored beside a checkpoint (:data:`NORM_FILE`), or ``None`` when
    there is none (a run without ``global`` / ``speaker`` normalisation).

    Raises:
        NormalizationError: the file is malformed.
    """
    from ..artifacts import load_json
    from ..normalize import NormStats

    path = Path(checkpoint).with_name(NORM_FILE)
    return NormStats.from_dict(load_json(path)) if path.is_file() else None
