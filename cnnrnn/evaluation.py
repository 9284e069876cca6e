"""Classification metrics with the field's names (scikit-learn underneath).

* WA, weighted accuracy = plain accuracy (each utterance counts once);
* UA, unweighted accuracy = balanced accuracy = mean per-class recall;
* F1 micro / macro / weighted.

A prediction may be "no emotion": code :data:`cnnrnn.speech.NO_SPEECH_INDEX` (-1), a file the speech check found
no speech in (``no_speech``). It counts as an error for its true class in every score, never dropped, so a
speech check cannot raise UA or WA by leaving hard files out.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def classification_metrics(y_true: Sequence[int], y_pred: Sequence[int], n_classes: int | None = None) -> dict:
    """Accuracy, WA, UA and F1 scores.

    Args:
        y_true: integer class codes ``(N,)`` (>= 0).
        y_pred: integer class codes ``(N,)``; a negative code (:data:`cnnrnn.speech.NO_SPEECH_INDEX`) is no class:
            a ``no_speech`` file, an error for its true class (scikit-learn scores it as a class of its own that
            no item has).
        n_classes: number of classes (for the confusion matrix); default from the data.

    Returns:
        ``{'n', 'accuracy', 'wa', 'ua', 'balanced_accuracy', 'f1_micro', 'f1_macro',
        'f1_weighted', 'confusion_matrix'}``; scores are floats in [0, 1], the
        confusion matrix a list of rows (true class) of counts (predicted class).
        UA and F1-macro average over the classes present in ``y_true``. With negative codes in ``y_pred`` also
        ``'no_speech'`` (their count) and ``'no_speech_by_class'`` (their count per true class, ``n_classes``
        ints): the confusion matrix leaves them out, so its rows then sum to less than each class's items.

    Raises:
        ValueError: empty input or different lengths.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score

    y_true = np.asarray(y_true, dtype=int)
    y_pred = np.asarray(y_pred, dtype=int)
    if y_true.size == 0 or y_true.shape != y_pred.shape:
        raise ValueError(f"need equal, non-empty label arrays, got {y_true.shape} and {y_pred.shape}")
    n_classes = n_classes or int(max(y_true.max(), y_pred.max()) + 1)
    unpredicted = y_pred < 0
    present = np.unique(y_true)
    acc = float(accuracy_score(y_true, y_pred))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes predicted but absent from y_true
        ua = float(balanced_accuracy_score(y_true, y_pred))
    out = {
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
    if unpredicted.any():
        out["no_speech"] = int(unpredicted.sum())
        out["no_speech_by_class"] = np.bincount(y_true[unpredicted], minlength=n_classes).tolist()
    return out


def summarise_folds(fold_metrics: Sequence[dict], keys: Sequence[str] = ("ua", "wa", "f1_macro")) -> dict:
    """Mean and standard deviation of ``keys`` over folds: ``{key: {'mean', 'std'}}``."""
    out = {}
    for key in keys:
        values = np.array([m[key] for m in fold_metrics], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std())}
    return out
