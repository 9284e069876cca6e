"""Hyper-parameters as dataclasses, read from and written to JSON files.

A pipeline config is one JSON object with three sections, each optional::

    {"split": {...}, "spectrogram": {...}, "train": {...}}

Missing keys take the defaults below, which follow the original CNNRNN code
(Adam 1e-4, β1 0.9, β2 0.999, batch 16, 60 epochs, 5 folds, per-session 8:2
split). Unknown keys are an error, so a typo never silently falls back to a
default. Presets ship under ``cnnrnn/configs/`` (``default``, ``demo``,
``tiny``) and can be named instead of a path.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PRESET_DIR = Path(__file__).parent / "configs"


class ConfigError(ValueError):
    """A config file or value is invalid (unknown key, wrong type, bad range)."""


@dataclass
class SplitConfig:
    """Per-session train/test split (stage 1).

    Attributes:
        test_size: fraction of every session put in the test set (original: 0.2).
        seed: random seed of the split and of anything derived from it.
        keep_ties: keep tied (multi-label) utterances, labelled with their
            first label. By default they are left out and counted.
        labels: fixed label order for the integer codes; ``None`` uses the
            sorted set of labels present in the corpus.
    """

    test_size: float = 0.2
    seed: int = 42
    keep_ties: bool = False
    labels: list[str] | None = None

    def validate(self) -> None:
        if not 0.0 < self.test_size < 1.0:
            raise ConfigError(f"split.test_size must be in (0, 1), got {self.test_size}")


@dataclass
class SpectrogramConfig:
    """Audio → log-mel → image parameters (stage 2).

    Attributes:
        sr: target sample rate in Hz; audio is resampled to it (soxr, via librosa).
        n_fft: FFT size in samples.
        hop_length: hop between frames in samples.
        n_mels: number of mel bands (image height before resizing).
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz; ``None`` means ``sr / 2``.
        top_db: dynamic range in dB kept below the clip's peak (as
            ``librosa.power_to_db(ref=np.max, top_db=...)``).
        duration: fixed clip length in seconds; longer clips are cut, shorter
            ones zero-padded at the end.
        image_size: ``[height, width]`` of the PNG in pixels.
        colormap: an OpenCV colormap name (``magma``, ``viridis``, ``inferno``,
            ``jet``, ...), or ``gray``.
        workers: processes for per-file work; 0 means one per CPU core.
    """

    sr: int = 16000
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    top_db: float = 80.0
    duration: float = 4.0
    image_size: list[int] = field(default_factory=lambda: [224, 224])
    colormap: str = "magma"
    workers: int = 0

    def validate(self) -> None:
        for name in ("sr", "n_fft", "hop_length", "n_mels"):
            if int(getattr(self, name)) <= 0:
                raise ConfigError(f"spectrogram.{name} must be positive, got {getattr(self, name)}")
        if self.duration <= 0:
            raise ConfigError(f"spectrogram.duration must be positive seconds, got {self.duration}")
        if len(self.image_size) != 2 or min(self.image_size) < 8:
            raise ConfigError(f"spectrogram.image_size must be [height, width] >= 8, got {self.image_size}")
        fmax = self.fmax if self.fmax is not None else self.sr / 2
        if not 0 <= self.fmin < fmax <= self.sr / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={fmax}, sr={self.sr}")

    @property
    def n_samples(self) -> int:
        """Fixed clip length in samples (``round(duration * sr)``)."""
        return int(round(self.duration * self.sr))


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
            Keras cache, nothing is downloaded) or a path to a ``.h5`` file.
        group_by_speaker: keep speakers disjoint between the folds' train and
            validation parts (StratifiedGroupKFold).
        seed: seed of the folds, weight init and shuffling.
        monitor: metric that selects each fold's best checkpoint (``val_accuracy``
            or ``val_loss``), or ``last`` to keep the final epoch, which avoids
            choosing the epoch on the very fold that is scored.
        checkpoint_name: file name pattern of the best checkpoint; ``{fold}`` and
            ``{epochs}`` are filled in (original: ``CNN_RNN_fold{k}_epoch60_e4.h5``).
    """

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
    group_by_speaker: bool = False
    seed: int = 42
    monitor: str = "val_accuracy"
    checkpoint_name: str = "CNN_RNN_fold{fold}_epoch{epochs}_e4.h5"

    def validate(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"train.folds must be >= 2, got {self.folds}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("train.epochs and train.batch_size must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"train.dropout must be in [0, 1), got {self.dropout}")
        if self.monitor not in ("val_accuracy", "val_loss", "last"):
            raise ConfigError(f"train.monitor must be val_accuracy, val_loss or last, got {self.monitor!r}")


@dataclass
class PipelineConfig:
    """The whole CNNRNN job: one section per stage."""

    split: SplitConfig = field(default_factory=SplitConfig)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def validate(self) -> "PipelineConfig":
        self.split.validate()
        self.spectrogram.validate()
        self.train.validate()
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict of every value."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PipelineConfig":
        """Build from a (partial) dict; raises ConfigError on unknown keys or types."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a JSON object, got {type(data).__name__}")
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; expected {sorted(sections)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            section_cls = f.default_factory  # the section dataclass itself
            kwargs[f.name] = _section_from_dict(section_cls, data.get(f.name, {}), f.name)
        return cls(**kwargs).validate()

    def save(self, path: str | Path) -> Path:
        """Write the config as indented JSON, atomically. Returns the path."""
        from .artifacts import save_json

        return save_json(self.to_dict(), path)


def _section_from_dict(section_cls, values: dict[str, Any], section: str):
    if not isinstance(values, dict):
        raise ConfigError(f"config section {section!r} must be a JSON object")
    fields = {f.name: f for f in dataclasses.fields(section_cls)}
    unknown = set(values) - set(fields)
    if unknown:
        raise ConfigError(f"unknown key(s) {sorted(unknown)} in section {section!r}; known: {sorted(fields)}")
    defaults = section_cls()
    for key, value in values.items():
        default = getattr(defaults, key)
        if not _type_ok(default, value, key):
            raise ConfigError(
                f"{section}.{key} should be like {default!r} ({type(default).__name__}), got {value!r}"
            )
    return section_cls(**values)


_NULLABLE = {"fmax": (int, float), "labels": (list,), "bn_momentum": (int, float)}


def _type_ok(default: Any, value: Any, key: str) -> bool:
    """Whether ``value`` has the JSON type of the default (ints may stand for floats)."""
    if key in _NULLABLE:
        return value is None or (isinstance(value, _NULLABLE[key]) and not isinstance(value, bool))
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def load_config(source: str | Path | dict | PipelineConfig | None = None) -> PipelineConfig:
    """Load a pipeline config.

    Args:
        source: ``None`` (defaults), a preset name (``"demo"``, ``"tiny"``,
            ``"default"``), a path to a JSON file, a dict, or a PipelineConfig.

    Returns:
        A validated PipelineConfig.

    Raises:
        ConfigError: unknown preset or file, invalid JSON, unknown keys or bad values.
    """
    if source is None:
        return PipelineConfig().validate()
    if isinstance(source, PipelineConfig):
        return source.validate()
    if isinstance(source, dict):
        return PipelineConfig.from_dict(source)
    path = Path(source)
    if not path.exists() and (PRESET_DIR / f"{source}.json").exists():
        path = PRESET_DIR / f"{source}.json"
    if not path.is_file():
        presets = ", ".join(list_presets())
        raise ConfigError(f"config {str(source)!r} is neither a file nor a preset (presets: {presets})")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: invalid JSON: {exc}") from exc
    try:
        return PipelineConfig.from_dict(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def list_presets() -> list[str]:
    """Names of the config presets shipped in ``cnnrnn/configs``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))
