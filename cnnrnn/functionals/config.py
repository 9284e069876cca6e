"""The functionals config: one flat dataclass, read from the presets in ``cnnrnn/configs/functionals/``.

The classical reference of speech emotion recognition: a fixed-length vector of openSMILE *functionals*
(statistics over the whole utterance of frame-level low-level descriptors) and a support vector machine.

* ``eGeMAPSv02``: the extended Geneva Minimalistic Acoustic Parameter Set, 88 functionals (Eyben et al., "The
  Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and Affective Computing", IEEE Trans.
  Affective Computing 7(2), 2016);
* ``ComParE_2016``: the INTERSPEECH 2016 Computational Paralinguistics Challenge set, 6,373 functionals
  (Schuller et al., "The INTERSPEECH 2016 Computational Paralinguistics Challenge", Interspeech 2016).

Both are computed by the ``opensmile`` Python package (audEERING), whose wheel carries the openSMILE library and
configs, so nothing is downloaded. The classifier is a scikit-learn ``Pipeline``: ``StandardScaler`` then
``SVC`` (linear or RBF kernel), wrapped in ``CalibratedClassifierCV`` (Platt's sigmoid, ``ensemble=False``) for
class probabilities. The features are first normalised per speaker (:mod:`cnnrnn.normalize`, default
``speaker``), as the INTERSPEECH challenge baselines allow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as C
from ..config import ConfigError

FAMILY = "functionals"
MODEL_FILE = "model.skops"
NORMALIZATION_FILE = "normalization.json"
#: openSMILE feature sets (``opensmile.FeatureSet`` names) → number of functionals.
FEATURE_SETS = {"eGeMAPSv02": 88, "ComParE_2016": 6373}
KERNELS = ("linear", "rbf")
#: Normalisation modes of :mod:`cnnrnn.normalize` that apply to one vector per utterance (``utterance`` needs
#: frames).
NORMALIZATIONS = ("speaker", "global", "none")
SPLITS = ("random", "speaker")


class FunctionalsConfigError(ConfigError):
    """A functionals config is invalid: unknown key, wrong type or value, unknown preset."""


@dataclass
class FunctionalsConfig:
    """Settings of one functionals run.

    Attributes:
        feature_set: ``eGeMAPSv02`` (88) or ``ComParE_2016`` (6,373) (:data:`FEATURE_SETS`).
        sr: sample rate (Hz) the audio is resampled to before openSMILE; ``null`` (the default) keeps the
            corpus' own rate: when every training file has one rate, the run records it (``run.json`` input
            ``sr``) and prediction resamples new files to it; a corpus of mixed rates keeps each file's own.
            The presets' ``null`` was chosen on the development speakers of ``emodb-535`` (22.05 kHz files):
            resampling to 16 kHz made eGeMAPSv02's coefficient-of-variation functionals heavy-tailed and cost
            0.16 (RBF) and 0.07 (ComParE, linear) development UA (``benchmarks/emodb_loso.py ablation``).
        normalization: ``speaker`` (per-speaker z-scores, global statistics for speakers with one utterance or
            files without a speaker), ``global`` or ``none`` (:mod:`cnnrnn.normalize`). The pipeline's
            ``StandardScaler`` then standardises with the training statistics in every mode.
        kernel: SVM kernel, ``linear`` or ``rbf``.
        C: SVM regularisation (scikit-learn's ``C``: larger = less regularisation).
        gamma: RBF kernel width; ``null`` = scikit-learn's ``"scale"`` (1 / (D · var(X))).
        class_weight: ``balanced`` (weights inversely proportional to class frequency) or ``null``.
        calibration_folds: folds of ``CalibratedClassifierCV`` that fit Platt's sigmoid for the probabilities
            (capped at the smallest training class size; at least 2).
        split: ``speaker`` (no speaker in both parts) or ``random`` (stratified).
        holdout_speaker: with ``split: speaker``, the speaker whose clips are the test set (one fold of
            leave-one-speaker-out); ``""`` makes a speaker-disjoint split of about ``test_size`` instead.
        test_size: test fraction of a ``random`` split or a speaker split without ``holdout_speaker``.
        seed: seed of the split (the calibration folds are scikit-learn's unshuffled stratified folds).
    """

    SECTION_NAME = "functionals"
    RANGES = {"sr": "[1000, 192000]"}  # Hz, openSMILE's useful range

    feature_set: str = "ComParE_2016"
    sr: int | None = None
    normalization: str = "speaker"
    kernel: str = "linear"
    C: float = 1.0
    gamma: float | None = None
    class_weight: str | None = "balanced"
    calibration_folds: int = 5
    split: str = "speaker"
    holdout_speaker: str = ""
    test_size: float = 0.2
    seed: int = 42

    def validate(self) -> None:
        """Raise :class:`FunctionalsConfigError` on impossible values (each number's range, :data:`RANGES` here
        or :data:`cnnrnn.config.RANGES`, is checked by the loader before)."""
        if self.feature_set not in FEATURE_SETS:
            raise FunctionalsConfigError(f"feature_set must be one of {list(FEATURE_SETS)}, got {self.feature_set!r}")
        if self.normalization not in NORMALIZATIONS:
            raise FunctionalsConfigError(f"normalization must be one of {NORMALIZATIONS} (one vector per utterance "
                                         f"has no frames for 'utterance'), got {self.normalization!r}")
        if self.kernel not in KERNELS:
            raise FunctionalsConfigError(f"kernel must be one of {KERNELS}, got {self.kernel!r}")
        if self.class_weight not in ("balanced", None):
            raise FunctionalsConfigError(f"class_weight must be 'balanced' or null, got {self.class_weight!r}")
        if self.split not in SPLITS:
            raise FunctionalsConfigError(f"split must be one of {SPLITS}, got {self.split!r}")

    @property
    def n_features(self) -> int:
        """Length of the feature vector (88 or 6,373)."""
        return FEATURE_SETS[self.feature_set]

    def input_spec(self, corpus_sr: int | None = None) -> dict[str, Any]:
        """What the model takes, for the run manifest: ``sr`` is the config's, or with ``sr: null`` the
        training corpus' single rate ``corpus_sr`` (``None``: mixed rates, each file's own)."""
        return {"sr": self.sr if self.sr is not None else corpus_sr, "sr_source": "config" if self.sr else "corpus",
                "duration": None, "features": f"opensmile {self.feature_set} functionals",
                "feature_set": self.feature_set, "n_features": self.n_features, "normalization": self.normalization}

    def to_dict(self) -> dict[str, Any]:
        """Every value, JSON-serialisable (:func:`cnnrnn.config.to_dict`)."""
        return C.to_dict(self)


def load_functionals_config(source: str | Path | dict | FunctionalsConfig | None = None,
                            **overrides: Any) -> FunctionalsConfig:
    """Load a functionals config (:func:`cnnrnn.config.load`, then :func:`cnnrnn.config.override`).

    Args:
        source: a preset name (``compare_linear``, ``egemaps_rbf``, ``tiny``), a JSON file, a dict or a config;
            ``None`` takes the ``compare_linear`` preset. Keys a file leaves out keep the dataclass defaults.
        **overrides: values that replace the loaded ones (``kernel="rbf"``); ``None`` is ignored.

    Raises:
        FunctionalsConfigError: unknown preset or file, invalid JSON, unknown key, wrong type or value.
    """
    try:
        cfg = C.load(FunctionalsConfig, source, family=FAMILY, base="compare_linear")
        return C.override(cfg, overrides)
    except FunctionalsConfigError:
        raise
    except ConfigError as exc:
        raise FunctionalsConfigError(str(exc)) from exc
