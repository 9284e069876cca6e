"""The baseline config: one flat dataclass, read from the presets in ``cnnrnn/configs/baselines/``.

The settings follow the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을 활용하여 음성 분류 인공지능 제작"
(UrbanSound8K practice problem): the ANN takes the raw waveform at 44.1 kHz, exactly 4 s (176,400 samples),
two hidden ReLU ``Dense`` layers; the CNN a spectrogram at 22,050 Hz, three Conv2D + ReLU + MaxPool blocks
and a ReLU ``Dense``; both Adam (learning rate 1e-3), cross-entropy, batch 32, 5 epochs, a random 8:2 split.
The tutorial's README gives no hidden widths, kernel sizes or STFT settings (its code is only shown as
screenshots): those defaults are ours.

The mel and STFT settings (``sr``, ``n_mels``, ``fmin``, ``fmax``, ``n_fft``, ``hop_length``, ``top_db``,
``duration``) are declared once, in :class:`cnnrnn.features.LogMelConfig`; a preset states the ``sr`` its
model needs (the shared default, 16 kHz, is not the tutorial's).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import config as C
from ..config import ConfigError
from ..features import LogMelConfig, SpectrogramConfig

FAMILY = "baselines"
BASELINE_CONFIG_FILE = "baseline_config.json"
MODEL_FILE = "model.h5"
#: The normalisation statistics of a CNN run with ``normalization`` ``global`` / ``speaker``, in its run folder.
NORM_FILE = "normalization.json"
MODELS = ("ann", "cnn")
#: ``scheme`` values (:data:`cnnrnn.splits.HOLDOUT_SCHEMES` of a corpus without sessions).
SPLITS = ("random", "speaker")
#: The most weights of the ANN's first layer (input samples x ``hidden_units[0]``): 2**28, 1 GiB of float32 (4 GiB
#: with its gradient and Adam's two moments); the tutorial's 176,400 x 256 is 45 million.
MAX_ANN_INPUT_WEIGHTS = 2 ** 28


class BaselineConfigError(ConfigError):
    """A baseline config is invalid: unknown key, wrong type or value, unknown preset, model mismatch."""


@dataclass
class BaselineConfig(LogMelConfig):
    """Hyper-parameters of one baseline run (the feature settings are those of :class:`LogMelConfig`).

    Attributes:
        model: ``ann`` (raw waveform) or ``cnn`` (spectrogram).
        hidden_units: ANN hidden layer widths (tutorial: two hidden layers).
        filters, kernel_size, dense_units: CNN convolution blocks (one per entry, output channels), square
            kernel size, and the width of the ReLU ``Dense`` after flattening.
        epochs, batch_size, learning_rate: Adam training (tutorial: 5, 32, 1e-3). ``lr`` is read as
            ``learning_rate``.
        seed: seed of the split, weight initialisation and shuffling.
        scheme: the hold-out scheme (:func:`cnnrnn.splits.holdout_split`): ``random`` (stratified, the tutorial's
            protocol) or ``speaker`` (no speaker in both parts); the old name ``split`` is read.
        test_size: the held-out (validation) fraction (tutorial: 0.2, a random 8:2 split); the old name
            ``val_size`` is read.
        holdout_speaker: with ``scheme: speaker``, the speaker whose clips are the validation set (one fold of
            leave-one-speaker-out); ``""`` makes a speaker-disjoint split of about ``test_size`` instead.
        normalization: CNN only: normalisation of the log-mel before it becomes the input
            (:mod:`cnnrnn.normalize`, per mel band): ``none`` (the tutorial's: standardised and min-max scaled
            over the whole clip), ``utterance``, ``global`` (statistics of the training clips) or ``speaker``
            (each speaker's own audio, no labels; stored in the run's ``normalization.json``).
        norm_range: with a normalisation, z-scores in ``[-norm_range, norm_range]`` span 0–255 (clipped).
        freq_masks, freq_mask_width, time_masks, time_mask_width: CNN only: SpecAugment (training only, seeded):
            number and largest width in pixels of the frequency and time masks; 0 masks = none (the tutorial).
    """

    SECTION_NAME = "baseline"
    ALIASES = {"lr": "learning_rate", "split": "scheme", "val_size": "test_size"}

    model: str = "ann"
    hidden_units: list[int] = field(default_factory=lambda: [256, 128])
    filters: list[int] = field(default_factory=lambda: [16, 32, 64])
    kernel_size: int = 3
    dense_units: int = 128
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 42
    test_size: float = 0.2
    scheme: str = "random"
    holdout_speaker: str = ""
    normalization: str = SpectrogramConfig.normalization
    norm_range: float = SpectrogramConfig.norm_range
    freq_masks: int = 0
    freq_mask_width: int = 8
    time_masks: int = 0
    time_mask_width: int = 16

    def validate(self) -> None:
        """Raise :class:`BaselineConfigError` on impossible values (the feature settings first; each number's
        range and bound are :data:`cnnrnn.config.RANGES`' and :data:`~cnnrnn.config.LIMITS`', checked by the loader
        before), and on an ann whose first layer would hold more than :data:`MAX_ANN_INPUT_WEIGHTS` weights."""
        try:
            super().validate()
        except ConfigError as exc:
            raise BaselineConfigError(str(exc)) from exc
        if self.model not in MODELS:
            raise BaselineConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.scheme not in SPLITS:
            raise BaselineConfigError(f"scheme must be one of {SPLITS}, got {self.scheme!r}")
        units = list(self.hidden_units) + list(self.filters)
        if not self.hidden_units or not self.filters or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in units):
            raise BaselineConfigError("hidden_units and filters must be non-empty lists of positive ints")
        from ..normalize import MODES

        if self.normalization not in MODES:
            raise BaselineConfigError(f"normalization must be one of {MODES}, got {self.normalization!r}")
        if self.model == "ann" and self.n_samples * self.hidden_units[0] > MAX_ANN_INPUT_WEIGHTS:
            raise BaselineConfigError(
                f"baseline.hidden_units[0] {self.hidden_units[0]} x {self.n_samples} input samples (duration "
                f"{self.duration:g} s x sr {self.sr}) is {self.n_samples * self.hidden_units[0]:,} weights in the "
                f"ann's first layer, above {MAX_ANN_INPUT_WEIGHTS:,} (1 GiB): use fewer hidden units, a lower sr or "
                f"a shorter duration")
        if self.model == "ann" and (self.normalization != "none" or self.freq_masks or self.time_masks):
            raise BaselineConfigError("normalization and SpecAugment masks apply to the cnn's spectrogram, not "
                                      "to the ann's waveform")

    @property
    def split(self) -> str:
        """``scheme`` (read-only)."""
        return self.scheme

    @property
    def val_size(self) -> float:
        """``test_size``, the validation fraction (read-only)."""
        return self.test_size

    def spec_augment(self) -> dict | None:
        """Keyword arguments of :class:`cnnrnn.models.augment.SpecAugment` (seeded with ``seed``), or ``None``
        without masks."""
        if not (self.freq_masks or self.time_masks):
            return None
        return {"freq_masks": self.freq_masks, "freq_width": self.freq_mask_width, "time_masks": self.time_masks,
                "time_width": self.time_mask_width, "seed": self.seed}

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Model input per clip: ``(n_samples,)`` for the ANN, ``(n_mels, 1 + n_samples // hop_length, 1)`` for
        the CNN (tutorial ANN: ``(176400,)``)."""
        if self.model == "ann":
            return (self.n_samples,)
        return (self.n_mels, 1 + self.n_samples // self.hop_length, 1)

    def input_spec(self) -> dict[str, Any]:
        """What the model takes, for the run manifest: ``sr`` (Hz), ``duration`` (s), ``shape`` and the
        feature settings (``waveform``: reflect-padded int16 PCM; ``log_mel``: standardised, min-max × 255)."""
        spec: dict[str, Any] = {"sr": self.sr, "duration": self.duration, "n_samples": self.n_samples,
                                "shape": list(self.input_shape), "padding": "reflect"}
        if self.model == "ann":
            return {**spec, "features": "waveform"}
        scaling = ("standardised, min-max scaled to [0, 1], x 255" if self.normalization == "none" else
                   f"{self.normalization} z-scores per mel band, [-{self.norm_range}, {self.norm_range}] to 0-255")
        return {**spec, "features": "log_mel", "n_fft": self.n_fft, "hop_length": self.hop_length,
                "n_mels": self.n_mels, "fmin": self.fmin, "fmax": self.fmax, "top_db": self.top_db,
                "normalization": self.normalization, "scaling": scaling}

    def to_dict(self) -> dict[str, Any]:
        """Every value, JSON-serialisable (:func:`cnnrnn.config.to_dict`)."""
        return C.to_dict(self)


def load_baseline_config(source: str | Path | dict | BaselineConfig | None = None, model: str | None = None,
                         **overrides: Any) -> BaselineConfig:
    """Load a baseline config (:func:`cnnrnn.config.load`, then :func:`cnnrnn.config.override`).

    Args:
        source: a preset name (``ann``, ``cnn``, ``tiny_ann``, ``tiny_cnn``, ``cnn_recipe``), a JSON file, a dict or a
            config; ``None`` takes the preset named ``model`` (default ``ann``). Keys a file leaves out keep
            the dataclass defaults.
        model: ``ann`` or ``cnn``; must agree with the config's ``model`` when both are given.
        **overrides: values that replace the loaded ones (``epochs=1``, ``lr=1e-4``); ``None`` is ignored.

    Raises:
        BaselineConfigError: unknown preset or file, invalid JSON, unknown key, wrong type or value, or
            ``model`` disagrees with the config.
    """
    try:
        cfg = C.load(BaselineConfig, source, family=FAMILY, base=model or "ann", overrides=overrides)
    except BaselineConfigError:
        raise
    except ConfigError as exc:
        raise BaselineConfigError(str(exc)) from exc
    if model is not None and cfg.model != model:
        raise BaselineConfigError(f"the config is for model {cfg.model!r} but model {model!r} was asked for")
    return cfg


def read_norm_stats(run_dir: str | Path):
    """The :class:`cnnrnn.normalize.NormStats` of a run folder (:data:`NORM_FILE`), or ``None`` when it has none.

    Raises:
        NormalizationError: the file is malformed.
    """
    from ..artifacts import load_json
    from ..normalize import NormStats

    path = Path(run_dir) / NORM_FILE
    return NormStats.from_dict(load_json(path)) if path.is_file() else None
