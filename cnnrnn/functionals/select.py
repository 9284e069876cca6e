"""Honest choice of the Whisper block and of C: nested leave-one-speaker-out on the training speakers only.

With ``whisper_block: nested`` and/or ``C: nested`` (:class:`~cnnrnn.functionals.config.FunctionalsConfig`),
:func:`choose` scores every candidate, ``blocks × C`` (blocks ``0..n_layers`` of the encoder, or the one
configured; C in ``nested_C``, or the one configured), by an inner leave-one-speaker-out over the run's *training*
speakers: each inner fold fits the run's pipeline (:func:`cnnrnn.functionals.train.build_pipeline`) on all
training speakers but one and predicts that one. A candidate's score is its mean inner UA (balanced accuracy,
:func:`cnnrnn.evaluation.classification_metrics`) over the inner folds; the best one wins, the first in grid order
(blocks ascending, then C ascending) on a tie. The test speaker(s) of the run are never seen, so the run's test UA
is not tuned on them.

Normalisation inside the selection is the run's: each candidate block is normalised as the run would normalise it
(:mod:`cnnrnn.normalize`, statistics fitted with the run's training clips as reference; in ``speaker`` mode each
speaker's own statistics, so an inner fold's held-out speaker is normalised with its own clips, as the run's test
speaker is), and the pipeline's ``StandardScaler`` is refitted in every inner fold.

Cost: ``len(candidates) × n_training_speakers`` fits of the classifier (5 blocks × 3 C × 9 speakers = 135 for
tiny.en on a LOSO fold of emodb-535: about 0.1 s each with one BLAS thread, which the selection uses); the
features themselves are extracted once (every block of a clip is one cache file).
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from .. import normalize
from ..evaluation import classification_metrics
from .config import NESTED, FunctionalsConfig
from .data import normalised
from .whisper import whisper_sizes

log = logging.getLogger("cnnrnn.functionals")

__all__ = ["block_matrix", "candidates", "choose"]


def candidates(cfg: FunctionalsConfig) -> list[dict[str, Any]]:
    """The grid, in tie-breaking order: ``[{"whisper_block": b, "C": c}, ...]`` (``whisper_block`` ``None`` for
    an openSMILE set). Only the ``nested`` keys vary; the others keep their configured value.

    Raises:
        cnnrnn.models.blocks.WeightsError: Whisper weights missing (their sizes give the blocks).
    """
    if cfg.is_whisper:
        blocks = (list(range(whisper_sizes(cfg).n_layers + 1)) if cfg.whisper_block == NESTED
                  else [int(cfg.whisper_block)])
    else:
        blocks = [None]
    cs = [float(c) for c in cfg.nested_C] if cfg.C == NESTED else [float(cfg.C)]
    return [{"whisper_block": b, "C": c} for b in blocks for c in cs]


def block_matrix(X: np.ndarray, block: int | None) -> np.ndarray:
    """``(N, D)`` features of one block: ``X[:, block]`` of an all-blocks ``(N, n_blocks, D)`` array, or ``X``
    itself (already one block, or openSMILE)."""
    return X[:, int(block)] if X.ndim == 3 else X


def _normalised_block(X: np.ndarray, speakers: Sequence[str | None], train_idx: np.ndarray, mode: str) -> np.ndarray:
    stats = None
    if mode != "none":
        reference = np.zeros(len(X), bool)
        reference[train_idx] = True
        stats = normalize.fit(X, list(speakers), reference=reference)
    return normalised(X, speakers, stats, mode)[0]


def choose(cfg: FunctionalsConfig, X: np.ndarray, y: np.ndarray, speakers: Sequence[str | None],
           train_idx: np.ndarray, build_pipeline: Callable) -> tuple[FunctionalsConfig, dict[str, Any]]:
    """Choose the nested keys of ``cfg`` by leave-one-speaker-out on the training clips ``train_idx``.

    Args:
        cfg: a config with ``cfg.nested`` not empty.
        X: raw (unnormalised) features of every usable clip: ``(N, n_blocks, D) float32`` (Whisper, nested block)
            or ``(N, D)``.
        y: ``(N,) int`` class codes. speakers: the ``N`` speakers.
        train_idx: indices of the run's training clips (the only ones the selection reads).
        build_pipeline: ``build_pipeline(cfg, y_train)`` → an unfitted scikit-learn estimator
            (:func:`cnnrnn.functionals.train.build_pipeline`).

    Returns:
        ``(chosen cfg, selection)``: ``cfg`` with ``whisper_block`` and ``C`` set to the winner, and
        ``{"keys", "chosen", "inner_speakers", "metric", "candidates": [{"whisper_block", "C", "ua",
        "ua_per_speaker"}], "fits", "seconds"}``.

    Raises:
        ValueError: fewer than 2 training speakers (no inner fold), or no inner fold the classifier could fit.
    """
    from threadpoolctl import threadpool_limits

    started = time.perf_counter()
    with threadpool_limits(1):  # many small fits: BLAS threads only contend (25x slower on a loaded 2-core CPU)
        return _choose(cfg, X, y, speakers, train_idx, build_pipeline, started)


def _choose(cfg: FunctionalsConfig, X: np.ndarray, y: np.ndarray, speakers: Sequence[str | None],
            train_idx: np.ndarray, build_pipeline: Callable,
            started: float) -> tuple[FunctionalsConfig, dict[str, Any]]:
    y = np.asarray(y)
    train_idx = np.asarray(train_idx)
    spk = np.asarray([s if s is not None else "" for s in speakers], dtype=object)
    inner = sorted({str(s) for s in spk[train_idx] if s})
    if len(inner) < 2 or any(not s for s in spk[train_idx]):
        raise ValueError(f"choosing {' and '.join(cfg.nested)} by nested leave-one-speaker-out needs a speaker for "
                         f"every training clip and at least 2 training speakers, got {len(inner)}")
    grid = candidates(cfg)
    blocks = list(dict.fromkeys(c["whisper_block"] for c in grid))
    rows: list[dict[str, Any]] = []
    fits = 0
    n_labels = int(y.max()) + 1
    for block in blocks:
        Xn = _normalised_block(block_matrix(X, block), spk, train_idx, cfg.normalization)
        for cand in (c for c in grid if c["whisper_block"] == block):
            trial = dataclasses.replace(cfg, C=cand["C"],
                                        whisper_block=block if block is not None else cfg.whisper_block)
            per: dict[str, float] = {}
            for held in inner:
                fit_idx = train_idx[spk[train_idx] != held]
                val_idx = train_idx[spk[train_idx] == held]
                try:
                    model = build_pipeline(trial, y[fit_idx])
                except ValueError as exc:  # a class with one clip: no calibration possible in this inner fold
                    log.info("inner fold %s skipped (%s)", held, exc)
                    continue
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # lbfgs ConvergenceWarning at large C: scored as it is
                    model.fit(Xn[fit_idx], y[fit_idx])
                fits += 1
                per[held] = round(classification_metrics(y[val_idx], model.predict(Xn[val_idx]), n_labels)["ua"], 4)
            if per:
                rows.append({**cand, "ua": round(float(np.mean(list(per.values()))), 4), "ua_per_speaker": per})
    if not rows:
        raise ValueError("nested leave-one-speaker-out: no inner fold could be fitted (every class needs 2 clips "
                         "in the training part of each inner fold)")
    best = max(rows, key=lambda r: r["ua"])  # max() keeps the first of equal values: grid order
    chosen = {k: best[k] for k in cfg.nested}
    out = dataclasses.replace(cfg, C=best["C"], whisper_block=(best["whisper_block"]
                                                               if best["whisper_block"] is not None
                                                               else cfg.whisper_block))
    selection = {"keys": list(cfg.nested), "chosen": chosen, "inner_speakers": inner,
                 "metric": "mean UA over the inner leave-one-speaker-out folds of the training speakers",
                 "candidates": rows, "fits": fits, "seconds": round(time.perf_counter() - started, 2)}
    log.info("nested leave-one-speaker-out chose %s (inner UA %.3f)", chosen, best["ua"])
    return out, selection
