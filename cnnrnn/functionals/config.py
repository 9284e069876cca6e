"""The functionals config: one flat dataclass, read from the presets in ``cnnrnn/configs/functionals/``.

The classical reference of speech emotion recognition: a fixed-length vector of openSMILE *functionals*
(statistics over the whole utterance of frame-level low-level descriptors) and a support vector machine; and,
beside it, the same recipe on the frozen features of a pretrained Whisper encoder.

* ``eGeMAPSv02``: the extended Geneva Minimalistic Acoustic Parameter Set, 88 functionals (Eyben et al., "The
  Geneva Minimalistic Acoustic Parameter Set (GeMAPS) for Voice Research and Affective Computing", IEEE Trans.
  Affective Computing 7(2), 2016);
* ``ComParE_2016``: the INTERSPEECH 2016 Computational Paralinguistics Challenge set, 6,373 functionals
  (Schuller et al., "The INTERSPEECH 2016 Computational Paralinguistics Challenge", Interspeech 2016).

* ``whisper``: the mean and the standard deviation over frames of one block's output of OpenAI Whisper's audio
  encoder, frozen (Radford et al., "Robust Speech Recognition via Large-Scale Weak Supervision", 2022;
  :mod:`cnnrnn.models.whisper`, :func:`cnnrnn.whisper_features.block_features`): ``2 · width`` values (768 for
  tiny), each clip encoded at its own length (16 kHz, at most 30 s; ``whisper_pad_seconds: 30`` pads as Whisper
  itself does). The weights are a local file converted once with ``cnnrnn whisper-convert`` (nothing is
  downloaded). The middle blocks carry the most emotion (emodb-535: tiny.en's block 2 of 4).

Both openSMILE sets are computed by the ``opensmile`` Python package (audEERING), whose wheel carries the
openSMILE library and configs, so nothing is downloaded. The classifier is a scikit-learn ``Pipeline``:
``StandardScaler`` then either ``SVC`` (linear or RBF kernel), wrapped in ``CalibratedClassifierCV`` (Platt's
sigmoid, ``ensemble=False``) for class probabilities, or a multinomial ``LogisticRegression`` (``classifier:
logistic``, its own probabilities). The features are first normalised per speaker (:mod:`cnnrnn.normalize`,
default ``speaker``), as the INTERSPEECH challenge baselines allow.

``whisper_block`` and ``C`` may be ``"nested"``: chosen for each run by a nested leave-one-speaker-out on its
training speakers only (:mod:`cnnrnn.functionals.select`; candidates: blocks ``0..n_layers``, C in
``nested_C``); the run records the choice and every candidate's inner UA.

Presets (``cnnrnn/configs/functionals/``):

* ``compare_linear`` (the default): ComParE_2016, linear SVM, C 0.001 (chosen on the development speakers);
* ``egemaps_rbf``: eGeMAPSv02, RBF SVM, C 1;
* ``whisper``: Whisper tiny.en (``weights/whisper-tiny.en.weights.h5``), logistic regression, block and C
  ``nested`` (C in 0.01, 0.1, 1), per-speaker normalisation; on emodb-535 leave-one-speaker-out, UA 0.906 over the
  8 headline speakers (every fold chose block 2), 0.888 without speaker normalisation, against ComParE's 0.821;
  clips padded to 30 s gave 0.905 at 4 times the feature cost (``benchmarks/emodb_loso.py``, ``whisper_lr*``);
* ``tiny``: eGeMAPSv02, linear SVM, 2 calibration folds (tests).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import config as C
from ..config import ConfigError
from .whisper import WHISPER_MAX_SECONDS, WHISPER_SR, whisper_identity, whisper_sizes

FAMILY = "functionals"
MODEL_FILE = "model.skops"
NORMALIZATION_FILE = "normalization.json"
#: openSMILE feature sets (``opensmile.FeatureSet`` names) → number of functionals.
OPENSMILE_SETS = {"eGeMAPSv02": 88, "ComParE_2016": 6373}
#: The frozen Whisper encoder's block features (``2 · width`` values: read from the weights' sizes).
WHISPER = "whisper"
#: Every feature set → its number of features (``None``: given by the Whisper weights file).
FEATURE_SETS: dict[str, int | None] = {**OPENSMILE_SETS, WHISPER: None}
KERNELS = ("linear", "rbf")
CLASSIFIERS = ("svm", "logistic")
#: The value of ``whisper_block`` / ``C`` that chooses it by nested leave-one-speaker-out on the training speakers.
NESTED = "nested"
#: Where ``cnnrnn whisper-convert --out`` puts the weights by default (relative to the working folder).
DEFAULT_WHISPER_WEIGHTS = "weights/whisper-tiny.en.weights.h5"
#: Normalisation modes of :mod:`cnnrnn.normalize` that apply to one vector per utterance (``utterance`` needs
#: frames).
NORMALIZATIONS = ("speaker", "global", "none")
#: ``scheme`` values (:data:`cnnrnn.splits.HOLDOUT_SCHEMES` of a corpus without sessions).
SPLITS = ("random", "speaker")


class FunctionalsConfigError(ConfigError):
    """A functionals config is invalid: unknown key, wrong type or value, unknown preset."""


@dataclass
class FunctionalsConfig:
    """Settings of one functionals run.

    Attributes:
        feature_set: ``eGeMAPSv02`` (88), ``ComParE_2016`` (6,373) or ``whisper`` (``2 · width`` of the encoder)
            (:data:`FEATURE_SETS`).
        sr: sample rate (Hz) the audio is resampled to before openSMILE (``whisper``: always 16000, ``null`` or
            16000 only); ``null`` (the default) keeps the
            corpus' own rate: when every training file has one rate, the run records it (``run.json`` input
            ``sr``) and prediction resamples new files to it; a corpus of mixed rates keeps each file's own.
            The presets' ``null`` was chosen on the development speakers of ``emodb-535`` (22.05 kHz files):
            resampling to 16 kHz made eGeMAPSv02's coefficient-of-variation functionals heavy-tailed and cost
            0.16 (RBF) and 0.07 (ComParE, linear) development UA (``benchmarks/emodb_loso.py ablation``).
        normalization: ``speaker`` (per-speaker z-scores, global statistics for speakers with one utterance or
            files without a speaker), ``global`` or ``none`` (:mod:`cnnrnn.normalize`). The pipeline's
            ``StandardScaler`` then standardises with the training statistics in every mode.
        classifier: ``svm`` (``SVC`` with ``kernel``, calibrated) or ``logistic`` (multinomial
            ``LogisticRegression``, L2, lbfgs; ``kernel``, ``gamma`` and ``calibration_folds`` unused).
        kernel: SVM kernel, ``linear`` or ``rbf``.
        C: regularisation of the SVM or the logistic regression (scikit-learn's ``C``: larger = less
            regularisation), or ``"nested"``: chosen among ``nested_C`` by nested leave-one-speaker-out on the
            training speakers (with ``whisper_block`` when that is nested too).
        nested_C: the candidates of a nested ``C``.
        whisper_weights: ``whisper``: the ``.weights.h5`` written by ``cnnrnn whisper-convert`` (its ``.json``
            sizes beside it); a relative path is taken from the working folder, and a run records it resolved.
        whisper_block: ``whisper``: the encoder block whose output is pooled, ``0`` (the convolutional stem with
            the positions) to ``n_layers`` (4 for tiny), or ``"nested"``: chosen among all of them by nested
            leave-one-speaker-out on the training speakers.
        whisper_pad_seconds: ``whisper``: zero-pad each clip to this length (s) before the encoder, as Whisper
            pads to 30 s; ``null`` (the default) encodes each clip at its own length (the encoder has no
            attention mask, so padding changes the features).
        gamma: RBF kernel width; ``null`` = scikit-learn's ``"scale"`` (1 / (D · var(X))).
        class_weight: ``balanced`` (weights inversely proportional to class frequency) or ``null``.
        calibration_folds: folds of ``CalibratedClassifierCV`` that fit Platt's sigmoid for the probabilities
            (capped at the smallest training class size; at least 2).
        scheme: the hold-out scheme (:func:`cnnrnn.splits.holdout_split`): ``speaker`` (no speaker in both parts)
            or ``random`` (stratified); the old name ``split`` is read.
        holdout_speaker: with ``scheme: speaker``, the speaker whose clips are the test set (one fold of
            leave-one-speaker-out); ``""`` makes a speaker-disjoint split of about ``test_size`` instead.
        test_size: test fraction of a ``random`` split or a speaker split without ``holdout_speaker``.
        seed: seed of the split (the calibration folds are scikit-learn's unshuffled stratified folds).
    """

    SECTION_NAME = "functionals"
    ALIASES = {"split": "scheme"}
    RANGES = {"sr": "[1000, 192000]",  # Hz, openSMILE's useful range
              "whisper_block": "[0, 64]", "whisper_pad_seconds": f"(0, {WHISPER_MAX_SECONDS}]"}

    feature_set: str = "ComParE_2016"
    sr: int | None = None
    normalization: str = "speaker"
    classifier: str = "svm"
    kernel: str = "linear"
    C: float | str = 1.0
    nested_C: list[float] = dataclasses.field(default_factory=lambda: [0.01, 0.1, 1.0])
    gamma: float | None = None
    class_weight: str | None = "balanced"
    calibration_folds: int = 5
    scheme: str = "speaker"
    holdout_speaker: str = ""
    test_size: float = 0.2
    seed: int = 42
    whisper_weights: str = DEFAULT_WHISPER_WEIGHTS
    whisper_block: int | str = 2
    whisper_pad_seconds: float | None = None

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
        if self.classifier not in CLASSIFIERS:
            raise FunctionalsConfigError(f"classifier must be one of {CLASSIFIERS}, got {self.classifier!r}")
        if isinstance(self.C, str) and self.C != NESTED:
            raise FunctionalsConfigError(f"C must be a number > 0 or {NESTED!r}, got {self.C!r}")
        if not self.nested_C or any(isinstance(c, bool) or not isinstance(c, (int, float)) or not c > 0
                                    or c == float("inf") for c in self.nested_C):
            raise FunctionalsConfigError(f"nested_C must be a non-empty list of numbers > 0, got {self.nested_C!r}")
        if isinstance(self.whisper_block, str) and self.whisper_block != NESTED:
            raise FunctionalsConfigError(f"whisper_block must be a block number (0 = the convolutional stem, k = "
                                         f"transformer block k) or {NESTED!r}, got {self.whisper_block!r}")
        if self.feature_set == WHISPER and self.sr not in (None, WHISPER_SR):
            raise FunctionalsConfigError(f"sr must be null or {WHISPER_SR} with feature_set whisper (Whisper's "
                                         f"front end takes 16 kHz audio), got {self.sr!r}")
        if not str(self.whisper_weights).strip():
            raise FunctionalsConfigError("whisper_weights must name a .weights.h5 file")
        if self.class_weight not in ("balanced", None):
            raise FunctionalsConfigError(f"class_weight must be 'balanced' or null, got {self.class_weight!r}")
        if self.scheme not in SPLITS:
            raise FunctionalsConfigError(f"scheme must be one of {SPLITS}, got {self.scheme!r}")

    @property
    def split(self) -> str:
        """``scheme`` (read-only)."""
        return self.scheme

    @property
    def is_whisper(self) -> bool:
        """Whether the features are the Whisper encoder's (not openSMILE's)."""
        return self.feature_set == WHISPER

    @property
    def nested(self) -> list[str]:
        """The keys chosen by nested leave-one-speaker-out (``whisper_block``, ``C``), in that order."""
        keys = ["whisper_block"] if self.is_whisper and self.whisper_block == NESTED else []
        return keys + (["C"] if self.C == NESTED else [])

    @property
    def n_features(self) -> int:
        """Length of the feature vector (88, 6,373, or for ``whisper`` ``2 · width`` of the weights' encoder).

        Raises:
            cnnrnn.models.blocks.WeightsError: ``whisper`` with a missing weights file or sizes JSON.
        """
        if self.is_whisper:
            return 2 * whisper_sizes(self).width
        return FEATURE_SETS[self.feature_set]

    def input_spec(self, corpus_sr: int | None = None) -> dict[str, Any]:
        """What the model takes, for the run manifest: ``sr`` is the config's, or with ``sr: null`` the
        training corpus' single rate ``corpus_sr`` (``None``: mixed rates, each file's own). ``whisper``: 16 kHz,
        and ``duration`` 30 s, the longest input: ``cnnrnn predict`` cuts longer files into 30 s windows."""
        if self.is_whisper:
            return {"sr": WHISPER_SR, "sr_source": "whisper", "duration": WHISPER_MAX_SECONDS,
                    "features": f"whisper block {self.whisper_block} mean+std over frames",
                    "feature_set": self.feature_set, "n_features": self.n_features,
                    "normalization": self.normalization, "whisper_block": self.whisper_block,
                    "whisper_pad_seconds": self.whisper_pad_seconds, "whisper_weights": whisper_identity(self)}
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
        source: a preset name (``compare_linear``, ``egemaps_rbf``, ``whisper``, ``tiny``), a JSON file, a dict
            or a config;
            ``None`` takes the ``compare_linear`` preset. Keys a file leaves out keep the dataclass defaults.
        **overrides: values that replace the loaded ones (``kernel="rbf"``); ``None`` is ignored.

    Raises:
        FunctionalsConfigError: unknown preset or file, invalid JSON, unknown key, wrong type or value.
    """
    try:
        return C.load(FunctionalsConfig, source, family=FAMILY, base="compare_linear", overrides=overrides)
    except FunctionalsConfigError:
        raise
    except ConfigError as exc:
        raise FunctionalsConfigError(str(exc)) from exc
