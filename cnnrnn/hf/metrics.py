"""Scores of the HF models beyond the shared report (:func:`cnnrnn.reports.write_report`, which gives the top-1
classification metrics): top-1 truth codes for tied labels, multi-label set scores, and valence/arousal
regression (MSE, Pearson r, Lin's CCC)."""
from __future__ import annotations

from typing import Sequence

import numpy as np


def predicted_sets(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Multi-hot predictions ``(N, C) int``: every label with probability ≥ ``threshold``, and always the top one
    (so no utterance is left without a label)."""
    pred = (probs >= threshold).astype(int)
    pred[np.arange(len(probs)), probs.argmax(axis=1)] = 1
    return pred


def top_label_codes(targets: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The true class code of each record for top-1 scoring ``(N,) int``: the top prediction when it is one of
    the record's (possibly tied) labels, else its first label in code order.

    Args:
        targets: ``(N, C)`` multi-hot truth (:func:`cnnrnn.hf.data.label_targets`).
        probs: ``(N, C)`` predicted probabilities.

    With these codes, :func:`cnnrnn.evaluation.classification_metrics` of ``probs.argmax(1)`` counts a top
    prediction that is one of the tied labels as correct.
    """
    top = probs.argmax(axis=1)
    hit = targets[np.arange(len(top)), top] > 0
    return np.where(hit, top, targets.argmax(axis=1))


def multilabel_metrics(targets: np.ndarray, probs: np.ndarray, threshold: float) -> dict:
    """Scores on label sets, as the original multi-label code (``-ETRI-Emotion-Recognition``) computed them.

    Args:
        targets: ``(N, C)`` multi-hot truth. probs: ``(N, C)`` probabilities; a label is predicted when its
            probability is at least ``threshold``, and the top label always is (:func:`predicted_sets`).

    Returns:
        ``{'f1_micro', 'f1_macro'`` (scikit-learn on the label sets; macro over the labels present),
        ``'subset_accuracy'`` (exact set match), ``'hamming_loss', 'threshold'}``; for a multi-label model
        these replace the top-1 F1 scores of the report.
    """
    from sklearn.metrics import f1_score, hamming_loss

    pred = predicted_sets(probs, threshold)
    present = np.flatnonzero(targets.sum(axis=0) > 0)
    return {
        "f1_micro": float(f1_score(targets, pred, average="micro", zero_division=0)),
        "f1_macro": float(f1_score(targets, pred, average="macro", labels=present, zero_division=0)),
        "subset_accuracy": float(np.mean(np.all(pred == targets, axis=1))),
        "hamming_loss": float(hamming_loss(targets, pred)),
        "threshold": threshold,
    }


def concordance_cc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient (Biometrics 1989): ``2 cov / (var_t + var_p + (μ_t − μ_p)²)``."""
    mt, mp = y_true.mean(), y_pred.mean()
    cov = np.mean((y_true - mt) * (y_pred - mp))
    denom = y_true.var() + y_pred.var() + (mt - mp) ** 2
    return float(2 * cov / denom) if denom > 0 else 0.0


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, names: Sequence[str] = ("valence", "arousal")) -> dict:
    """MSE, Pearson r and CCC per target, and their means.

    Args:
        y_true, y_pred: ``(N, len(names))`` ratings (KEMDy: 1–5).

    Returns:
        ``{name: {'mse', 'pearson_r', 'ccc'}, 'mse', 'pearson_r', 'ccc'}``; Pearson r is ``None`` when either
        side is constant (undefined), and left out of the mean.
    """
    out: dict = {"n": int(len(y_true))}
    for j, name in enumerate(names):
        t, p = y_true[:, j].astype(float), y_pred[:, j].astype(float)
        r = float(np.corrcoef(t, p)[0, 1]) if t.std() > 0 and p.std() > 0 else None
        out[name] = {"mse": float(np.mean((t - p) ** 2)), "pearson_r": r, "ccc": concordance_cc(t, p)}
    for key in ("mse", "pearson_r", "ccc"):
        values = [out[n][key] for n in names if out[n][key] is not None]
        out[key] = float(np.mean(values)) if values else None
    return out
