"""Scores of the HF models: emotion classification (single- and multi-label) and valence/arousal regression."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..evaluation import classification_metrics


def predicted_sets(probs: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Multi-hot predictions ``(N, C) int``: every label with probability ≥ ``threshold``, and always the top one
    (so no utterance is left without a label)."""
    pred = (probs >= threshold).astype(int)
    pred[np.arange(len(probs)), probs.argmax(axis=1)] = 1
    return pred


def emotion_metrics(targets: np.ndarray, probs: np.ndarray, multilabel: bool, threshold: float = 0.5) -> dict:
    """Accuracy, balanced accuracy (UA), F1-micro/macro and the confusion matrix.

    Args:
        targets: ``(N, C)`` multi-hot truth (the first label of a tie is the record's primary label, but for
            scoring every tied label counts). probs: ``(N, C)`` predicted probabilities.
        multilabel: score F1 on label sets (sklearn, ``predicted_sets`` at ``threshold``) as the original
            multi-label code did, and add ``subset_accuracy`` (exact set match) and ``hamming_loss``.

    Returns:
        :func:`cnnrnn.evaluation.classification_metrics` of the top prediction against the truth (a top
        prediction that is one of the tied labels counts as correct), plus for multi-label the set scores,
        which replace ``f1_micro``/``f1_macro``.
    """
    from sklearn.metrics import f1_score, hamming_loss

    top = probs.argmax(axis=1)
    hit = targets[np.arange(len(top)), top] > 0
    y_true = np.where(hit, top, targets.argmax(axis=1))
    out = classification_metrics(y_true, top, targets.shape[1])
    if multilabel:
        pred = predicted_sets(probs, threshold)
        present = np.flatnonzero(targets.sum(axis=0) > 0)
        out.update({
            "f1_micro": float(f1_score(targets, pred, average="micro", zero_division=0)),
            "f1_macro": float(f1_score(targets, pred, average="macro", labels=present, zero_division=0)),
            "subset_accuracy": float(np.mean(np.all(pred == targets, axis=1))),
            "hamming_loss": float(hamming_loss(targets, pred)),
            "threshold": threshold,
        })
    return out


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
