"""The configuration of the Hugging Face family (``cnnrnn hf``), on the shared mechanism of :mod:`cnnrnn.config`.

Three sections, every default declared here once::

    {"model": {...}, "data": {...}, "train": {...}}

Defaults follow the two KEMDy codebases this family ports: ``etri_multimodal`` (5 contiguous 20 % folds,
``max_len`` 256 tokens, speech cut to 5 s at 16 kHz, concat or element-wise-add fusion) and
``-ETRI-Emotion-Recognition`` (``klue/roberta-base``, wav2vec2-base, Adam, the imbalance-aware losses and the
2-stage neutral/rest classifier). Shipped presets: ``cnnrnn/configs/hf/default.json`` (these values) and
``tiny.json`` (a few seconds per run, for tests and smoke runs). Load with :func:`load_config`; old key
names are read (``lr`` → ``learning_rate``, ``n_folds`` → ``folds``).

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
LOSSES = ("plain", "focal", "class_balanced")
LABEL_MODES = ("auto", "single", "multi")
#: Fold schemes of :mod:`cnnrnn.splits` that cut k folds over the records (``groups`` = speaker for ``speaker``).
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
        max_seconds: speech cut in seconds (at the feature extractor's rate, 16 kHz for wav2vec2).
        speech_pooling: ``last_cnn`` (the last frame of the CNN features, as etri_multimodal) | ``mean``.
        proj_dim: size each modality is projected to. dropout: before the output layers.
        text_model, speech_model: backbone, a local folder or a hub name in the local Hugging Face cache.
    """

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

    @property
    def uses_text(self) -> bool:
        return self.modality in ("text", "multimodal")

    @property
    def uses_speech(self) -> bool:
        return self.modality in ("speech", "multimodal")

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model's output heads: ``emotion`` and/or ``va``."""
        return {"classification": ("emotion",), "regression": ("va",), "total": ("emotion", "va")}[self.task]

    def validate(self) -> None:
        """Raises :class:`~cnnrnn.config.ConfigError` for an unknown choice (numbers: :data:`cnnrnn.config.RANGES`)."""
        for name, allowed in (("task", TASKS), ("modality", MODALITIES), ("fusion", FUSIONS),
                              ("speech_pooling", POOLINGS)):
            _choose("model", name, getattr(self, name), allowed)


@dataclass
class DataConfig:
    """How records are read (section ``data``): ``corpus`` is the reader for a corpus folder (``--root``);
    ``label_column`` the emotion column of a ``new_data.csv`` (``--input``, written by ``cnnrnn kemdy-labels``):
    ``emotion_weighted`` (the rater-weighted vote of -ETRI-Emotion-Recognition) or ``emotion_raw``."""

    corpus: str = "kemdy20"
    label_column: str = "emotion_weighted"

    def validate(self) -> None:
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
