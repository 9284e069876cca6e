"""The CNNRNN config: three sections, one per stage, read from JSON presets (``cnnrnn/configs/cnnrnn/``).

::

    {"split": {...}, "spectrogram": {...}, "train": {...}}

Missing keys take the defaults below, which follow the original CNNRNN code (Adam 1e-4, β1 0.9, β2 0.999,
batch 16, 60 epochs, 5 folds, per-session 8:2 split). Unknown keys are an error, so a typo never silently
falls back to a default (:mod:`cnnrnn.config`, the mechanism every family shares). Presets: ``default``,
``demo``, ``tiny``, ``compact``, ``compact_crops``, ``best``, ``yamnet``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as _config
from ..audio import SPEED_METHODS, SPEED_RANGE
from ..config import ConfigError
from ..corpora.kemdy import LABEL_ALIASES
from ..features import WHISPER_IMAGE_RANGE, YAMNET_IMAGE_RANGE, SpectrogramConfig
from ..splits import speaker_folds

FAMILY = "cnnrnn"
#: ``train.backbone`` values (those of :func:`cnnrnn.models.cnnrnn.build_cnnrnn`).
BACKBONES = ("resnet50", "compact", "yamnet", "whisper")
#: ``train.fold_scheme`` values (:data:`cnnrnn.splits.FOLD_SCHEMES` that need no record order).
CV_FOLD_SCHEMES = ("stratified", "speaker")
#: The backbones that take a pretrained network's own log-mel (``spectrogram.kind`` of the same name).
PRETRAINED_BACKBONES = ("yamnet", "whisper")


@dataclass
class SplitConfig:
    """Per-session train/test split (stage 1).

    Attributes:
        test_size: fraction of every session put in the test set (original: 0.2).
        seed: random seed of the split.
        keep_ties: keep tied (multi-label) utterances, labelled with their
            first label. By default they are left out and counted.
        labels: fixed label order for the integer codes; ``None`` uses the
            corpus' declared label order (:data:`cnnrnn.corpora.LABEL_ORDERS`),
            or for a manifest the sorted names of its labels.
        scheme: the hold-out scheme (:func:`cnnrnn.splits.holdout_indices`): ``session`` (the original: 8:2
            inside every session, so the same speakers are in train and test) or ``speaker`` (whole speakers held
            out over the corpus: a speaker-independent test set).
    """

    test_size: float = 0.2
    seed: int = 42
    keep_ties: bool = False
    labels: list[str] | None = None
    scheme: str = "session"

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` for a ``test_size`` outside (0, 1) or an unknown ``scheme``."""
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"split.test_size must be in (0, 1), got {self.test_size}")
        if self.scheme not in ("session", "speaker"):
            raise ConfigError(f"split.scheme must be 'session' or 'speaker', got {self.scheme!r}")
        if self.labels is not None:  # KEMDy's "disqust" is read as "disgust"
            self.labels = [LABEL_ALIASES.get(lab, lab) for lab in self.labels]


@dataclass
class TrainConfig:
    """ResNet50+LSTM cross-validation (stage 4).

    Attributes:
        folds: number of CV folds (original: 5).
        epochs: epochs per fold (original: 60).
        batch_size: global batch size (original: 16).
        learning_rate, beta_1, beta_2: Adam parameters (original: 1e-4, 0.9, 0.999).
        lstm_units: LSTM width over the ResNet50 time axis.
        dropout: dropout rate before the softmax layer.
        bn_momentum: momentum of the backbone's BatchNormalization moving
            statistics; ``null`` keeps Keras' 0.99. From-scratch runs with few
            steps (the demo) need a lower value such as 0.9, or the inference-mode
            statistics never catch up and the model predicts one class.
        weights: backbone weights: ``none``, ``imagenet`` (must already be in the
            Keras cache, nothing is downloaded) or a path to a ``.h5`` file; for ``yamnet`` a
            ``.weights.h5`` of ``cnnrnn yamnet-convert``.
        fold_scheme: how the ``folds`` cross-validation folds are cut (:data:`CV_FOLD_SCHEMES`): ``stratified``
            (by label, the original) or ``speaker`` (speakers disjoint between a fold's train and test parts,
            StratifiedGroupKFold); the old ``group_by_speaker: true`` / ``false`` is read as ``speaker`` /
            ``stratified``.
        seed: seed of the folds, weight init and shuffling.
        monitor: metric that selects each fold's best checkpoint (``val_accuracy``
            or ``val_loss``), or ``last`` to keep the final epoch.
        selection: where ``monitor`` is measured: ``fold``, the fold that is
            then scored (the original CNNRNN code; its CV figures are optimistic),
            or ``inner``, a validation part of the fold's *training* data (one
            training speaker held out, else a fifth of it), so the epoch is never
            chosen on the scored fold.
        backbone: ``resnet50`` (the original's, default), ``compact`` (a few
            conv blocks with batch norm, for corpora of hundreds of utterances) or ``yamnet`` (YAMNet, the
            AudioSet-pretrained MobileNetV1, fine-tuned over the clip's YAMNet log-mel; needs
            ``spectrogram.kind: yamnet`` and ``weights`` naming the ``.weights.h5`` of ``cnnrnn yamnet-convert``).
        freeze_blocks: ``yamnet`` only: the first N of its 14 blocks keep their pretrained weights (0 = all
            trained; fewer trained blocks are faster on a CPU).
        whisper_block: ``whisper`` only: the block of Whisper's encoder the head reads (0 = the convolutional
            stem, k = transformer block k; tiny has 4, base 6) or ``weighted`` (a learned softmax-weighted sum of
            the stem and every block). Block 2 of tiny.en carries the most emotion (benchmarks/emodb_loso.py).
        trainable_blocks: ``whisper`` only: the top N encoder blocks up to ``whisper_block`` are fine-tuned;
            0 (default) keeps the encoder frozen, and then its outputs are computed once per image and cached for
            every epoch and fold (:func:`cnnrnn.cnnrnn.train.cross_validate`).
        head: ``whisper`` only: ``lstm`` (over the encoder's 20 ms frames, ``lstm_units`` wide), ``attention``
            (self-attention pooling, ``lstm_units`` wide) or ``mean_std`` (mean + std over frames, batch norm,
            softmax: the linear probe).
        l2: ``whisper`` only: L2 penalty on the softmax layer's kernel, added to the mean loss (0 = none; 0.01 is
            scikit-learn's ``LogisticRegression(C=0.1)`` on about 500 clips).
        filters: the compact backbone's convolution widths, one block each.
        freq_masks, freq_mask_width, time_masks, time_mask_width: SpecAugment
            (training only, seeded): number and largest width in pixels of the
            frequency and time masks; 0 masks = no augmentation.
        mixup: alpha of mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk
            Minimization"), training batches only: images and one-hot labels are mixed with a shuffled copy
            of the batch, ``lambda ~ Beta(alpha, alpha)`` (seeded); the loss becomes categorical
            crossentropy on the soft labels, the epoch is still chosen by accuracy. 0 = off.
        crop_width: random time crops (segment training with utterance-level pooling, as the segment-level
            training of DCNN-BLSTMwA, Zhang et al. 2021, and ACRNN, Chen et al. 2018): each training sample
            is a random crop of this many pixels of the image's time axis (width), seeded, and the model
            takes inputs this wide. Validation, scoring and prediction cut each image into segments
            ``crop_hop`` pixels apart (the last one aligned to the end) and average the segments'
            probabilities per utterance. ``null``/0 = whole images.
        crop_hop: pixels between the segments at validation and prediction; ``null`` = half of
            ``crop_width``.
        precise_bn: PreciseBN (Wu & Johnson 2021): after every epoch, before the epoch is scored on the
            selection set, the BatchNormalization statistics are recomputed from the training images with the
            epoch's weights (:func:`cnnrnn.models.blocks.recalibrate_batch_norm`), so the saved model
            predicts with the statistics of its own weights. Off in the faithful ``default`` preset.
        speed_perturb: speed factors of the offline training copies (Kaldi-style speed perturbation, Ko et al.,
            Interspeech 2015: ``[0.9, 1.1]``), each in (0.5, 2), 1.0 excluded (it is the original); ``[]`` = off.
            Every *training* utterance of a fold also enters the fit as one copy per factor, computed from its
            waveform played that much faster (:func:`cnnrnn.audio.change_speed`, before the cut to
            ``spectrogram.duration``); the copies stay with their source utterance (never used to choose the
            epoch or scored, never across folds). Under speaker normalisation each (speaker, factor) is
            normalised as a speaker of its own, from its copies (the Kaldi convention, ``sp0.9-<speaker>``); the
            run's statistics for real audio come from the un-perturbed audio only
            (:mod:`cnnrnn.cnnrnn.speed`).
        speed_perturb_method: ``speed`` (resampling: tempo and pitch change together, the Kaldi recipe) or
            ``tempo`` (time stretch, pitch kept).
        checkpoint_name: file name pattern of the best checkpoint; ``{fold}`` and
            ``{epochs}`` are filled in (original: ``CNN_RNN_fold{k}_epoch60_e4.h5``).
    """

    ALIASES = {"lr": "learning_rate", "n_folds": "folds", "group_by_speaker": ("fold_scheme", speaker_folds)}

    folds: int = 5
    epochs: int = 60
    batch_size: int = 16
    learning_rate: float = 1e-4
    beta_1: float = 0.9
    beta_2: float = 0.999
    lstm_units: int = 128
    dropout: float = 0.3
    bn_momentum: float | None = None
    weights: str = "none"
    fold_scheme: str = "stratified"
    seed: int = 42
    monitor: str = "val_accuracy"
    selection: str = "fold"
    backbone: str = "resnet50"
    freeze_blocks: int = 0
    whisper_block: int | str = 2
    trainable_blocks: int = 0
    head: str = "lstm"
    l2: float = 0.0
    filters: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    freq_masks: int = 0
    freq_mask_width: int = 8
    time_masks: int = 0
    time_mask_width: int = 16
    mixup: float = 0.0
    crop_width: int | None = None
    crop_hop: int | None = None
    precise_bn: bool = False
    speed_perturb: list[float] = field(default_factory=list)
    speed_perturb_method: str = "speed"
    checkpoint_name: str = "CNN_RNN_fold{fold}_epoch{epochs}_e4.h5"

    def validate(self) -> None:
        """Raise :class:`ConfigError` on impossible values (each number's own range is
        :data:`cnnrnn.config.RANGES`', checked by the loader first)."""
        # a plain file name in <out>/models/, with {fold} and {epochs} only
        _config.check_name_pattern(self.checkpoint_name, "train.checkpoint_name", ("fold", "epochs"), ".h5")
        if self.monitor not in ("val_accuracy", "val_loss", "last"):
            raise ConfigError(f"train.monitor must be val_accuracy, val_loss or last, got {self.monitor!r}")
        if self.fold_scheme not in CV_FOLD_SCHEMES:
            raise ConfigError(f"train.fold_scheme must be one of {CV_FOLD_SCHEMES}, got {self.fold_scheme!r}")
        if self.selection not in ("fold", "inner"):
            raise ConfigError(f"train.selection must be fold or inner, got {self.selection!r}")
        if self.backbone not in BACKBONES:
            raise ConfigError(f"train.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.whisper_block != "weighted" and (not isinstance(self.whisper_block, int) or self.whisper_block < 0):
            raise ConfigError(f"train.whisper_block must be a block number >= 0 (0 = the stem) or 'weighted', got "
                              f"{self.whisper_block!r}")
        if self.head not in ("lstm", "attention", "mean_std"):
            raise ConfigError(f"train.head must be lstm, attention or mean_std, got {self.head!r}")
        if not self.filters or min(self.filters) < 1:
            raise ConfigError(f"train.filters must be positive widths, got {self.filters}")
        smallest = 2 ** len(self.filters) if self.backbone == "compact" else 32
        if self.crop_width and self.crop_width < smallest:
            raise ConfigError(f"train.crop_width must be null, 0 or >= {smallest} (the {self.backbone} backbone's "
                              f"smallest input), got {self.crop_width}")
        if self.crop_hop is not None and self.crop_hop < 1:
            raise ConfigError(f"train.crop_hop must be null or >= 1 pixel, got {self.crop_hop}")
        lo, hi = SPEED_RANGE
        if any(isinstance(f, bool) or not isinstance(f, (int, float)) or not lo < f < hi or f == 1.0
               for f in self.speed_perturb) or len(set(self.speed_perturb)) != len(self.speed_perturb):
            raise ConfigError(f"train.speed_perturb must be distinct factors in ({lo}, {hi}) other than 1.0 "
                              f"(e.g. [0.9, 1.1]), got {self.speed_perturb}")
        if self.speed_perturb_method not in SPEED_METHODS:
            raise ConfigError(f"train.speed_perturb_method must be one of {SPEED_METHODS}, "
                              f"got {self.speed_perturb_method!r}")

    def model_options(self) -> dict:
        """Keyword arguments of :func:`cnnrnn.models.cnnrnn.build_cnnrnn` from this config."""
        augment = None
        if self.freq_masks or self.time_masks:
            augment = {"freq_masks": self.freq_masks, "freq_width": self.freq_mask_width,
                       "time_masks": self.time_masks, "time_width": self.time_mask_width, "seed": self.seed}
        options = {"lstm_units": self.lstm_units, "dropout": self.dropout, "bn_momentum": self.bn_momentum,
                   "backbone": self.backbone, "filters": tuple(self.filters), "spec_augment": augment}
        if self.backbone == "yamnet":
            options.update(freeze_blocks=self.freeze_blocks, image_range=YAMNET_IMAGE_RANGE)
        if self.backbone == "whisper":
            options.update(image_range=WHISPER_IMAGE_RANGE, whisper_block=self.whisper_block,
                           trainable_blocks=self.trainable_blocks, head=self.head, l2=self.l2)
        return options

    @property
    def group_by_speaker(self) -> bool:
        """Whether the folds keep speakers disjoint (``fold_scheme`` ``speaker``); read-only."""
        return self.fold_scheme == "speaker"

    @property
    def cached_encoder(self) -> bool:
        """Whether training computes the backbone's outputs once and fits only the head: a frozen Whisper encoder
        with nothing trained or random before it (no SpecAugment, crops or speed copies' randomness inside the
        model)."""
        return (self.backbone == "whisper" and self.trainable_blocks == 0 and not self.freq_masks
                and not self.time_masks and not self.crop_width)


@dataclass
class CnnrnnConfig:
    """The whole CNNRNN job: one section per stage (``spectrogram`` is the core
    :class:`cnnrnn.features.SpectrogramConfig`)."""

    split: SplitConfig = field(default_factory=SplitConfig)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> None:
        """Across the sections: ``train.backbone: yamnet`` takes ``spectrogram.kind: yamnet`` images and only it
        does (raises :class:`ConfigError`)."""
        for name in PRETRAINED_BACKBONES:
            if (self.train.backbone == name) != (self.spectrogram.kind == name):
                raise ConfigError(f"train.backbone {self.train.backbone!r} with spectrogram.kind "
                                  f"{self.spectrogram.kind!r}: the {name} backbone takes spectrogram.kind {name} "
                                  "images "
                                  f"({name}'s own log-mel), and they suit no other backbone (see the {name} preset)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every value."""
        return _config.to_dict(self)

    def save(self, path: str | Path) -> Path:
        """Write the config as indented JSON, atomically. Returns the path."""
        return _config.save(self, path)


def load_config(source: str | Path | dict | CnnrnnConfig | None = None) -> CnnrnnConfig:
    """Load a CNNRNN config.

    Args:
        source: ``None`` (defaults), a preset name (``default``, ``demo``, ``tiny``), a JSON file, a dict,
            or a config.

    Raises:
        ConfigError: unknown preset or file, invalid JSON, unknown keys or bad values.
    """
    return _config.load(CnnrnnConfig, source, family=FAMILY)


def list_presets() -> list[str]:
    """Names of the CNNRNN presets shipped in ``cnnrnn/configs/cnnrnn``."""
    return _config.list_presets(FAMILY)


# --------------------------------------------------------------------------- the stages of one run folder
#: The stages in order, each with the config section its files are made with (``pack`` has none of its own).
STAGES: dict[str, str | None] = {"split": "split", "spectrograms": "spectrogram", "pack": None, "train": "train"}
#: Keys that change no stage's files (how many processes render), left out when stages are compared.
NO_OUTPUT_KEYS = ("spectrogram.workers",)


class StageConfigError(ConfigError):
    """A stage was asked to run with settings for an earlier stage that differ from those its files were made
    with (the run's ``config.json``)."""


def earlier_stage_changes(out: str | Path, config: Any, stage: str) -> dict[str, list[str]]:
    """The settings of the stages before ``stage`` that ``config`` changes, compared with the run's ``config.json``
    (the config every stage records when it has run).

    Args:
        out: the run folder. config: anything :func:`load_config` takes. stage: a key of :data:`STAGES`.

    Returns:
        ``{earlier stage: ["section.key: recorded -> new", ...]}`` in stage order; empty when nothing changes or
        the folder has no ``config.json`` yet.

    Raises:
        ConfigError: the run's ``config.json`` is unreadable or invalid.
    """
    from ..artifacts import CONFIG_FILE

    path = Path(out) / CONFIG_FILE
    if not path.is_file():
        return {}
    recorded, new = load_config(path), load_config(config)
    names = list(STAGES)
    changes = {}
    for earlier in names[:names.index(stage)]:
        diff = _config.changed_keys(recorded, new, [STAGES[earlier]], NO_OUTPUT_KEYS) if STAGES[earlier] else []
        if diff:
            changes[earlier] = diff
    return changes


def check_earlier_stages(out: str | Path, config: Any, stage: str) -> None:
    """Refuse to run ``stage`` in ``out`` with settings for its earlier stages other than those their files were
    made with (:func:`earlier_stage_changes`): images rendered one way and predictions another would be a silent
    wrong result.

    Raises:
        StageConfigError: naming every differing key, its recorded and its new value.
    """
    changes = earlier_stage_changes(out, config, stage)
    if changes:
        diffs = "; ".join(d for ds in changes.values() for d in ds)
        raise StageConfigError(
            f"{stage}: this config changes the settings of the earlier stage(s) {', '.join(changes)} that made the "
            f"files in {out} ({diffs}); use a new --out, or --force to re-run the stages from {next(iter(changes))} "
            f"on with the new settings, or start the config from the run's: {{\"extends\": "
            f"\"{Path(out) / 'config.json'}\", ...}}")
