"""The configuration of the Hugging Face family (``cnnrnn hf``), on the shared mechanism of :mod:`cnnrnn.config`.

Three sections, every default declared here once::

    {"model": {...}, "data": {...}, "train": {...}}

Defaults follow the two KEMDy codebases this family ports: ``etri_multimodal`` (5 contiguous 20 % folds,
``max_len`` 256 tokens, speech cut to 5 s at 16 kHz, concat or element-wise-add fusion) and
``-ETRI-Emotion-Recognition`` (``klue/roberta-base``, wav2vec2-base, Adam, the imbalance-aware losses and the
2-stage neutral/rest classifier). Shipped presets: ``cnnrnn/configs/hf/default.json`` (these values),
``tiny.json`` (a few seconds per run, for tests and smoke runs), ``whisper.json`` and ``multimodal_whisper.json``
(the speech side is the encoder of the local Whisper weights: ``model.speech_backbone`` ``whisper``, see
:class:`ModelConfig`). Load with :func:`load_config`; old key names are read (``lr`` → ``learning_rate``,
``n_folds`` → ``folds``).

This module imports nothing heavy (no TensorFlow), so the command line and tools can read configs cheaply.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, load

TASKS = ("classification", "regression", "total")
MODALITIES = ("text", "speech", "multimodal")
FUSIONS = ("concat", "add")
POOLINGS = ("last_cnn", "mean")
#: Speech backbones: transformers' wav2vec2-style models, or the encoder of a Whisper folder written by
#: ``cnnrnn whisper-convert --hf-out`` (or any HF ``openai/whisper-*`` folder with ``model.safetensors``).
SPEECH_BACKBONES = ("wav2vec2", "whisper")
#: The longest clip a Whisper encoder takes (its 1500 positions × 20 ms).
WHISPER_MAX_SECONDS = 30.0
LOSSES = ("plain", "focal", "class_balanced")
LABEL_MODES = ("auto", "single", "multi")
#: ``train.fold_scheme``: :data:`cnnrnn.splits.FOLD_SCHEMES` (written out here so that this module needs no numpy).
FOLD_SCHEMES = ("contiguous", "stratified", "speaker")
CORPORA = ("kemdy20", "kemdy19")
LABEL_COLUMNS = ("emotion_weighted", "emotion_raw")


def _choose(section: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{section}.{name} {value!r} is not one of {list(allowed)}")


@dataclass
class ModelConfig:
    """The model: what it predicts, from what, and how big its head is (section ``model``).

    Attributes:
        task: ``classification`` (emotion labels) | ``regression`` (valence/arousal, 1–5) | ``total`` (both).
        modality: ``text`` | ``speech`` | ``multimodal``. fusion: ``concat`` | ``add`` (multimodal only).
        max_len: text tokens (static padding; longer transcripts are truncated).
        max_seconds: speech cut in seconds (at the feature extractor's rate, 16 kHz for wav2vec2). With the
            Whisper backbone every clip is also zero-padded to this length (Whisper's own input is 30 s; its
            encoder has no attention mask, so a fixed length keeps a clip's features independent of its batch);
            at most 30 s (the encoder's 1500 positions).
        speech_pooling: wav2vec2 only: ``last_cnn`` (the last frame of the CNN features, as etri_multimodal) |
            ``mean``. The Whisper backbone always averages its hidden states over the clip's own frames.
        proj_dim: size each modality is projected to. dropout: before the output layers.
        text_model, speech_model: backbone, a local folder or a hub name in the local Hugging Face cache. For
            ``speech_backbone`` ``whisper``, ``speech_model`` is a Whisper folder (``config.json`` with
            ``model_type`` ``whisper`` and ``model.safetensors``), such as ``cnnrnn whisper-convert --ct2
            model.bin --hf-out DIR`` writes from the CTranslate2 weights of ``faster-whisper-*``.
        speech_backbone: ``wav2vec2`` (transformers' ``TFWav2Vec2Model``) | ``whisper`` (only the encoder of
            ``speech_model``, transformers' ``TFWhisperEncoder``; input:
            :func:`cnnrnn.whisper_features.whisper_log_mel` of the clip, zero-padded to ``max_seconds``). The
            presets ``whisper`` (speech) and ``multimodal_whisper`` (text + speech) pick it, reading
            ``models/whisper-tiny.en`` unless ``--speech-model`` names another Whisper folder.
        whisper_block: Whisper only: the hidden state used, after this many encoder blocks (``0`` = the conv stem
            plus positions, ``n_layers`` = the last block after the final layer norm, as transformers'
            ``hidden_states[k]``); the blocks above it are not run. At most the encoder's ``encoder_layers``.
        whisper_finetune_blocks: Whisper only: how many of the used blocks are trained, counted down from
            ``whisper_block`` (``0``: the encoder is frozen, the default; ``whisper_block + 1`` also trains the
            conv stem; the final layer norm trains with the last block). The position table stays frozen.
    """

    #: Ranges of this section's own numbers (beside :data:`cnnrnn.config.RANGES`).
    RANGES = {"whisper_block": "[0, inf)", "whisper_finetune_blocks": "[0, inf)"}

    task: str = "classification"
    modality: str = "text"
    fusion: str = "concat"
    max_len: int = 256
    max_seconds: float = 5.0
    speech_pooling: str = "last_cnn"
    proj_dim: int = 256
    dropout: float = 0.1
    text_model: str = "klue/roberta-base"
    speech_model: str = "facebook/wav2vec2-base-960h"
    speech_backbone: str = "wav2vec2"
    whisper_block: int = 2
    whisper_finetune_blocks: int = 0

    @property
    def uses_text(self) -> bool:
        """Whether the model reads the transcript (``text`` or ``multimodal``)."""
        return self.modality in ("text", "multimodal")

    @property
    def uses_speech(self) -> bool:
        """Whether the model reads the audio (``speech`` or ``multimodal``)."""
        return self.modality in ("speech", "multimodal")

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model's output heads: ``emotion`` and/or ``va``."""
        return {"classification": ("emotion",), "regression": ("va",), "total": ("emotion", "va")}[self.task]

    def validate(self) -> None:
        """Raises :class:`~cnnrnn.config.ConfigError` for an unknown choice (numbers: :data:`cnnrnn.config.RANGES`),
        more Whisper blocks to fine-tune than it uses, or Whisper audio longer than 30 s (checks against the
        encoder's own depth are made when it is loaded, :func:`cnnrnn.hf.backbones.load_whisper_encoder`)."""
        for name, allowed in (("task", TASKS), ("modality", MODALITIES), ("fusion", FUSIONS),
                              ("speech_pooling", POOLINGS), ("speech_backbone", SPEECH_BACKBONES)):
            _choose("model", name, getattr(self, name), allowed)
        if self.speech_backbone == "whisper":
            if self.whisper_finetune_blocks > self.whisper_block + 1:
                raise ConfigError(f"model.whisper_finetune_blocks {self.whisper_finetune_blocks} is more than the "
                                  f"{self.whisper_block + 1} parts used up to model.whisper_block "
                                  f"{self.whisper_block} (the conv stem and {self.whisper_block} blocks)")
            if self.max_seconds > WHISPER_MAX_SECONDS:
                raise ConfigError(f"model.max_seconds {self.max_seconds} is beyond the {WHISPER_MAX_SECONDS:g} s "
                                  "that the Whisper encoder's positions cover")


@dataclass
class DataConfig:
    """How records are read (section ``data``): ``corpus`` is the reader for a corpus folder (``--root``);
    ``label_column`` the emotion column of a ``new_data.csv`` (``--input``, written by ``cnnrnn kemdy-labels``):
    ``emotion_weighted`` (the rater-weighted vote of -ETRI-Emotion-Recognition) or ``emotion_raw``."""

    corpus: str = "kemdy20"
    label_column: str = "emotion_weighted"

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` for an unknown corpus or label column."""
        _choose("data", "corpus", self.corpus, CORPORA)
        _choose("data", "label_column", self.label_column, LABEL_COLUMNS)


@dataclass
class TrainConfig:
    """Training, folds and scoring (section ``train``).

    Attributes:
        learning_rate: Adam's (old name ``lr``). batch_size: training batch; valid_batch_size: prediction batch.
        epochs: passes over the training folds.
        loss: ``plain`` | ``focal`` | ``class_balanced`` (classification, on logits).
        label_mode: ``auto`` (multi-label when a training record has tied labels ``a;b``), ``single``
            (first label only) or ``multi``.
        hierarchical: the 2-stage classifier (neutral vs rest, then the other emotions).
        seed: of the weights, the shuffling and the folds.
        eager: train without ``tf.function`` tracing (faster for a few steps: tests and smoke runs).
        threshold: probability above which a label joins a multi-label prediction.
        fold: the fold tested on (0-based). folds: how many (old name ``n_folds``).
        fold_scheme: ``contiguous`` (etri_multimodal's consecutive 20 % blocks), ``stratified`` by the
            primary label, or ``speaker``-disjoint; see :mod:`cnnrnn.splits`.
    """

    ALIASES = {"lr": "learning_rate", "n_folds": "folds"}

    learning_rate: float = 1e-4
    batch_size: int = 64
    valid_batch_size: int = 1
    epochs: int = 30
    loss: str = "plain"
    label_mode: str = "auto"
    hierarchical: bool = False
    seed: int = 42
    eager: bool = False
    threshold: float = 0.5
    fold: int = 0
    folds: int = 5
    fold_scheme: str = "contiguous"

    def validate(self) -> None:
        """Raises :class:`~cnnrnn.config.ConfigError` for an unknown choice or a fold outside ``0..folds-1`` (each
        number's own range is :data:`cnnrnn.config.RANGES`', checked by the loader before)."""
        for name, allowed in (("loss", LOSSES), ("label_mode", LABEL_MODES), ("fold_scheme", FOLD_SCHEMES)):
            _choose("train", name, getattr(self, name), allowed)
        if not 0 <= self.fold < self.folds:
            raise ConfigError(f"train.fold {self.fold} is outside 0..{self.folds - 1} (folds are numbered from 0)")


@dataclass
class HFConfig:
    """The whole HF config: ``model``, ``data`` and ``train`` sections."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def load_config(source: Any = None) -> HFConfig:
    """The HF config from ``source``: ``None`` (the ``default`` preset), a preset name of
    ``cnnrnn/configs/hf/`` (``default``, ``tiny``), a JSON file, a dict, or an :class:`HFConfig`.

    Raises:
        ConfigError: unknown preset or file, invalid JSON, unknown keys, wrong types, values out of range.
    """
    return load(HFConfig, source, family="hf", base="default")
