"""Train the openSMILE functionals + SVM reference (``cnnrnn functionals train``).

Protocol: every usable clip of the corpus is turned into one openSMILE functionals vector, or the Whisper
encoder's pooled block features (cached per file, :mod:`cnnrnn.functionals.data`); the clips are split (default:
speaker-independent, one held-out speaker with ``holdout_speaker``); a ``nested`` Whisper block and/or C is
chosen by leave-one-speaker-out on the training speakers only (:mod:`cnnrnn.functionals.select`); the features
are normalised (:mod:`cnnrnn.normalize`; ``speaker`` mode: each speaker's own
statistics from all of that speaker's clips given here, unlabelled, the global ones from the training clips);
a ``StandardScaler`` + ``SVC`` pipeline, calibrated for probabilities (or ``StandardScaler`` +
``LogisticRegression``), is fitted on the training clips and
scored on the test clips. Label codes follow the corpus' declared order (:func:`cnnrnn.corpora.label_order`).

A run folder (:func:`train`) holds:

* ``run.json`` (:mod:`cnnrnn.runs`: family ``functionals``, config, labels, split, input, ``model.skops``);
* ``model.skops``: the fitted pipeline (``skops``; loaded with its types checked, never plain pickle);
* ``normalization.json``: the statistics of :class:`cnnrnn.normalize.NormStats` (global and per speaker);
* ``labels.json``, ``corpus_report.json``, ``split.json`` (the split and its train / test ids);
* ``metrics.json`` (test ``ua``, ``wa``, ``f1_macro``, ..., ``labels``, ``family``, skips, normalisation),
  ``confusion_matrix.png``, ``predictions.csv`` (:func:`cnnrnn.reports.write_report`);
* ``cache/<feature_set>_<sr>/*.npy``: the features, one file per clip (unless ``cache_dir`` is elsewhere).

With a ``nested`` key, ``run.json``'s config holds the chosen values (what prediction uses), and ``run.json``
(``selection``) and ``metrics.json`` (``selection``) record the choice, the configured values and every
candidate's inner UA. A Whisper run records its weights file resolved, with its sha1 (``input.whisper_weights``).

The run folder is claimed first (:func:`claim_run`: a new or empty folder, or a functionals run, kind
:data:`RUN_KIND`) and trained under its ``train`` lock (:func:`cnnrnn.outputs.writing_stage`): a second train of
the same run is refused while the first runs, and the temporaries a killed write left are removed (and counted)
when the next train starts. A run is scored again by :func:`cnnrnn.functionals.predict.evaluate`.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import normalize
from ..artifacts import LABELS_FILE, save_json
from ..corpora import Utterance, label_order, load_corpus
from ..reports import REPORT_FILES, write_report
from ..runs import MANIFEST_FILE, write_manifest
from .config import FAMILY, MODEL_FILE, NORMALIZATION_FILE, FunctionalsConfig, load_functionals_config
from .data import cache_folder, claim_cache, common_rate, extract_all, is_feature_cache, normalised, split_items
from .whisper import check_whisper_block, whisper_weights_path
from .predict import predict_proba, save_model
from .select import block_matrix, choose

log = logging.getLogger("cnnrnn.functionals")

#: The kind of folder a functionals run is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "functionals run"
#: What a run folder holds besides ``cache/`` (a killed write of one of them leaves ``.name.XXXX.tmp``).
RUN_FILES = (MODEL_FILE, NORMALIZATION_FILE, LABELS_FILE, MANIFEST_FILE, "corpus_report.json", "split.json",
             *REPORT_FILES.values())


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a functionals run written before folder markers existed: its ``model.skops``, or
    the feature cache ``cache/`` of a run that stopped before it."""
    return (folder / MODEL_FILE).is_file() or is_feature_cache(folder / "cache")


def claim_run(out: str | Path) -> Path:
    """Claim ``out`` as a functionals run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already.

    Raises:
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``out`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(out, RUN_KIND, recognise=is_run_folder)


def build_pipeline(cfg: FunctionalsConfig, y_train: Sequence[int]):
    """The unfitted scikit-learn pipeline: ``StandardScaler`` → ``CalibratedClassifierCV(SVC, sigmoid,
    ensemble=False)``, or with ``classifier: logistic`` ``StandardScaler`` → ``LogisticRegression``.

    The SVM (``kernel``, ``C``, ``gamma`` (``None`` = ``"scale"``), ``class_weight``) is fitted once on all
    training clips; Platt's sigmoid maps its decision values to probabilities, fitted on cross-validated
    decision values (``calibration_folds``, capped at the smallest class size). ``SVC(probability=True)`` does
    the same internally but is deprecated in scikit-learn 1.9. The logistic regression (multinomial, L2 with
    ``C``, ``class_weight``, lbfgs up to 5,000 iterations) gives its own probabilities.

    Raises:
        ValueError: ``C`` still ``nested`` (choose it first, :func:`cnnrnn.functionals.select.choose`); with
            the SVM, a training class with a single clip (no cross-validated calibration possible).
    """
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if isinstance(cfg.C, str):
        raise ValueError(f"C is {cfg.C!r}: choose it first (cnnrnn.functionals.select.choose)")
    if cfg.classifier == "logistic":
        return Pipeline([("scaler", StandardScaler()),
                         ("logistic", LogisticRegression(C=cfg.C, class_weight=cfg.class_weight, max_iter=5000))])
    counts = np.bincount(np.asarray(y_train, int))
    smallest = int(counts[counts > 0].min())
    if smallest < 2:
        raise ValueError("a training class has a single clip: the probability calibration needs at least 2 "
                         "clips of every class")
    svm = SVC(kernel=cfg.kernel, C=cfg.C, gamma="scale" if cfg.gamma is None else cfg.gamma,
              class_weight=cfg.class_weight)
    calibrated = CalibratedClassifierCV(svm, method="sigmoid", cv=min(cfg.calibration_folds, smallest),
                                        ensemble=False)
    return Pipeline([("scaler", StandardScaler()), ("svm", calibrated)])


def _corpus_arrays(utterances: Sequence[Utterance], labels: Sequence[str]) -> np.ndarray:
    code = {name: i for i, name in enumerate(labels)}
    return np.asarray([code[u.emotion] for u in utterances], dtype=np.int32)


def train(corpus: str, root: str | Path, out: str | Path, config: Any = None, cache_dir: str | Path | None = None,
          progress: bool = True, **overrides: Any) -> dict[str, Any]:
    """Train one functionals model on a corpus and score it on the test split.

    Args:
        corpus, root: a reader of :data:`cnnrnn.corpora.READERS` (``emodb``, ``manifest``, ``kemdy20``, ...) and
            its folder (for ``manifest``: the CSV).
        out: run folder (see the module docstring).
        config: preset name, JSON path, dict or :class:`FunctionalsConfig` (default ``compare_linear``).
        cache_dir: feature cache root (default ``<out>/cache``); share it between runs (folds) on one corpus.
        progress: show progress bars.
        **overrides: config values to replace (``holdout_speaker="03"``; ``None`` is ignored).

    Returns:
        The ``metrics.json`` report: test ``n``, ``accuracy``, ``wa``, ``ua``, ``f1_macro``, ..., ``labels``,
        ``family``, plus ``corpus``, ``n_train``, ``n_test``, ``test_speakers``, ``skipped_corpus``,
        ``skipped_audio`` (openSMILE failures under ``opensmile_failed``), ``normalization`` (sources of the test
        rows, fallback speakers), ``features``, ``fit_seconds``.

    Raises:
        FunctionalsConfigError, SplitError, CorpusError: bad config, split or corpus.
        cnnrnn.models.blocks.WeightsError: Whisper weights missing or broken (before anything else is done).
        ValueError: no usable audio, a training class of one clip, a Whisper block the encoder lacks, or a
            nested choice without 2 training speakers.
        cnnrnn.outputs.OutputFolderError: ``out`` (or ``cache_dir``) holds other files or is another command's
            folder (nothing was written).
        cnnrnn.outputs.FolderInUseError: another process trains this run.
    """
    from ..outputs import writing_stage

    cfg = load_functionals_config(config, **overrides)
    if cfg.is_whisper:  # fail before reading the corpus; the run records the weights resolved
        cfg = dataclasses.replace(cfg, whisper_weights=str(whisper_weights_path(cfg)))
        check_whisper_block(cfg)
    out = claim_run(out)  # after the config: a refused config leaves the folder untouched
    if cache_dir is not None:  # refused before the corpus is read
        claim_cache(cache_dir)
    # the run's own cache is written by this run only; a shared --cache-dir may be written by another run now
    own_cache = [(cache_folder(out / "cache", cfg), None)] if cache_dir is None else []
    with writing_stage(out, "train", [(out, RUN_FILES), *own_cache]):
        return _train(corpus, root, out, cfg, cache_dir, progress)


def _train(corpus: str, root: str | Path, out: Path, cfg: FunctionalsConfig, cache_dir: str | Path | None,
           progress: bool) -> dict[str, Any]:
    from ..outputs import audio_digests, digest, read_inputs, record_inputs

    configured = {k: getattr(cfg, k) for k in cfg.nested}
    utterances, corpus_report = load_corpus(corpus, root)
    labels = label_order(corpus, {u.emotion for u in utterances})
    kept, X, skipped_audio, feat_info = extract_all([u.audio_path for u in utterances], cfg,
                                                    cache_dir or out / "cache", progress)
    if len(kept) < 2:
        raise ValueError(f"no usable audio to train on in {root} (skipped: {skipped_audio})")
    skipped_audio = {k: [Path(p).stem for p in v] for k, v in skipped_audio.items()}
    utts = [utterances[i] for i in kept]
    y = _corpus_arrays(utts, labels)
    speakers = [u.speaker for u in utts]
    # what the run fits on: each clip's audio fingerprint, label and speaker (the features are keyed by content too)
    sources = audio_digests([u.audio_path for u in utts])
    fingerprint = {"sha1": digest([[u.id, d, u.emotion, u.speaker] for u, d in zip(utts, sources)]),
                   "n": len(utts)}
    split = split_items(y, speakers, cfg)
    tr, te = split["train"], split["test"]
    selection = None
    if cfg.nested:
        cfg, selection = choose(cfg, X, y, speakers, tr, build_pipeline)
        selection["configured"] = configured
    X = block_matrix(X, cfg.whisper_block if cfg.is_whisper else None)

    stats = None
    if cfg.normalization != "none":
        reference = np.zeros(len(utts), bool)
        reference[tr] = True
        stats = normalize.fit(X, speakers, reference=reference)
    Xn, sources = normalised(X, speakers, stats, cfg.normalization)

    started = time.perf_counter()
    from threadpoolctl import threadpool_limits

    # one BLAS thread for the logistic regression's small lbfgs steps (threads only contend: 25x slower on a loaded
    # 2-core CPU); the SVM's libsvm does not use BLAS
    with threadpool_limits(1 if cfg.classifier == "logistic" else None):
        model = build_pipeline(cfg, y[tr]).fit(Xn[tr], y[tr])
    fit_seconds = time.perf_counter() - started
    save_model(model, out / MODEL_FILE)
    if stats is not None:
        save_json(stats.to_dict(), out / NORMALIZATION_FILE)
    ids = [u.id for u in utts]
    save_json({"labels": labels}, out / LABELS_FILE)
    save_json(corpus_report.to_dict(), out / "corpus_report.json")
    save_json({"spec": split["spec"], "test_speakers": split["test_speakers"],
               "train": [ids[i] for i in tr], "test": [ids[i] for i in te]}, out / "split.json")
    corpus_sr = common_rate([u.audio_path for u in utts]) if cfg.sr is None else None
    if cfg.sr is None and corpus_sr is None:
        log.warning("the training files have different sample rates: openSMILE sees each at its own rate, and so "
                    "will new files at prediction (set sr in the config to resample them all)")
    record_inputs(out, "train", fingerprint)
    write_manifest(out, FAMILY, cfg.to_dict(), labels, split=split["spec"], input_spec=cfg.input_spec(corpus_sr),
                   checkpoints=[out / MODEL_FILE], inputs=read_inputs(out),
                   extra={"corpus": corpus, "root": str(Path(root).resolve()), "cache": feat_info["cache"],
                          "normalization_file": NORMALIZATION_FILE if stats is not None else None,
                          "selection": selection})

    test_sources = [sources[i] for i in te]
    extra = {
        "corpus": corpus, "root": str(root), "feature_set": cfg.feature_set, "classifier": cfg.classifier,
        "kernel": cfg.kernel, "C": cfg.C, "whisper_block": cfg.whisper_block if cfg.is_whisper else None,
        "selection": selection,
        "split": cfg.split, "test_speakers": split["test_speakers"], "n_train": int(len(tr)), "n_test": int(len(te)),
        "skipped_corpus": corpus_report.skipped, "skipped_audio": skipped_audio,
        "normalization": {"mode": cfg.normalization, "test_sources": normalize.count_sources(test_sources),
                          "fallback_speakers": stats.fallback if stats is not None else {},
                          "transductive": cfg.normalization == "speaker"},
        "features": feat_info, "fit_seconds": round(fit_seconds, 3), "checkpoint": str(out / MODEL_FILE),
    }
    proba = predict_proba(model, Xn[te], len(labels))
    report = write_report(out, proba, labels, [ids[i] for i in te], y[te], family=FAMILY,
                          sources=[utts[i].audio_path for i in te],
                          columns={"speaker": [speakers[i] or "" for i in te], "normalization": test_sources},
                          extra=extra)
    return report["metrics"]


def evaluate(run: str | Path, corpus: str | None = None, root: str | Path | None = None,
             out: str | Path | None = None, cache_dir: str | Path | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Deprecated place of :func:`cnnrnn.functionals.predict.evaluate` (every family's scoring entry point is
    ``predict.evaluate``): warns with a ``DeprecationWarning`` and calls it with the same arguments."""
    import warnings

    from .predict import evaluate as _evaluate

    warnings.warn("cnnrnn.functionals.train.evaluate is deprecated; use cnnrnn.functionals.predict.evaluate",
                  DeprecationWarning, stacklevel=2)
    return _evaluate(run, corpus, root, out, cache_dir, progress)
