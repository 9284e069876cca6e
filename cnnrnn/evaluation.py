"""Classification metrics with the field's names (scikit-learn underneath).

* WA, weighted accuracy = plain accuracy (each utterance counts once);
* UA, unweighted accuracy = balanced accuracy = mean per-class recall;
* F1 micro / macro / weighted.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> dict:
    """Accuracy, WA, UA and F1 scores.

    Args:
        y_true, y_pred: integer class codes ``(N,)``.
        n_classes: number of classes (for the confusion matrix); default from the data.

    Returns:
        ``{'n', 'accuracy', 'wa', 'ua', 'balanced_accuracy', 'f1_micro', 'f1_macro',
        'f1_weighted', 'confusion_matrix'}``; scores are floats in [0, 1], the
        confusion matrix a list of rows (true class) of counts (predicted class).
        UA and F1-macro average over the classes present in ``y_true``.

    Raises:
        ValueError: empty input or different lengths.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.size == 0 or y_true.shape != y_pred.shape:
        raise ValueError(f"need equal, non-empty label arrays, got {y_true.shape} and {y_pred.shape}")
    n_classes = n_classes or int(max(y_true.max(), y_pred.max()) + 1)
    present = np.unique(y_true)
    acc = float(accuracy_score(y_true, y_pred))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes predicted but absent from y_true
        ua = float(balanced_accuracy_score(y_true, y_pred))
    return {
        "n": int(y_true.size),
        "accuracy": acc,
        "wa": acc,
        "ua": ua,
        "balanced_accuracy": ua,
        "f1_micro": float(f1_score(y_true, y_pred, average="micro")),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", labels=present, zero_division=0)),
        "f1_weighted": float(f1_score(y_true, y_pred, average="weighted", zero_division=0)),
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=list(range(n_classes))).tolist(),
    }


def summarise_folds(fold_metrics: Sequence[dict], keys: Sequence[str] = ("ua", "wa", "f1_macro")) -> dict:
    """Mean and standard deviation of ``keys`` over folds: ``{key: {'mean', 'std'}}``."""
    out = {}
    for key in keys:
        values = np.array([m[key] for m in fold_metrics], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
