"""The one run-report writer of every family: ``predictions.csv``, ``metrics.json``, ``confusion_matrix.png``.

Every family scores through :func:`write_report`, so the files look the same whoever wrote them:

* ``predictions.csv``: ``id``, ``source`` (when known), ``true`` (when known), ``predicted``,
  ``predicted_index``, ``confidence`` (the top probability), then ``p_<label>`` per class in code order;
* ``metrics.json`` (only when the true labels are known): the keys of
  :func:`cnnrnn.evaluation.classification_metrics` (``n``, ``accuracy``, ``wa``, ``ua``,
  ``balanced_accuracy``, ``f1_micro``, ``f1_macro``, ``f1_weighted``, ``confusion_matrix``), plus
  ``labels`` (code order), ``family`` and whatever the caller adds (``extra``);
* ``confusion_matrix.png`` (when the true labels are known): counts, coloured by row recall.

A family may rename the files (``files=``), e.g. DCNN's ``metrics_finetune.json``; a name set to ``None``
is not written.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .artifacts import atomic_write_bytes, save_json

REPORT_FILES = {"predictions": "predictions.csv", "metrics": "metrics.json", "confusion": "confusion_matrix.png"}


def predictions_table(proba: np.ndarray, labels: Sequence[str], ids: Sequence[str],
                      y_true: Sequence[int] | None = None, sources: Sequence[str] | None = None,
                      columns: Mapping[str, Sequence] | None = None):
    """The predictions as a DataFrame (columns as in the module docstring; ``columns`` are added after
    ``confidence``).

    Args:
        proba: ``(N, n_classes) float32`` class probabilities.
        labels: class names in code order.
        ids: ``N`` item ids.
        y_true: ``N`` true codes, or ``None``.
        sources: ``N`` source paths, or ``None``.
    """
    import pandas as pd

    proba = np.asarray(proba, dtype=np.float32)
    pred = proba.argmax(axis=1) if len(proba) else np.zeros(0, int)
    df = pd.DataFrame({"id": list(ids)})
    if sources is not None:
        df["source"] = list(sources)
    if y_true is not None:
        df["true"] = [labels[i] if 0 <= i < len(labels) else str(i) for i in np.asarray(y_true, int)]
    df["predicted"] = [labels[i] for i in pred]
    df["predicted_index"] = pred
    df["confidence"] = proba.max(axis=1) if len(proba) else np.zeros(0, np.float32)
    for name, values in (columns or {}).items():
        df[name] = list(values)
    for i, name in enumerate(labels):
        df[f"p_{name}"] = proba[:, i]
    return df


def write_report(out_dir: str | Path, proba: np.ndarray, labels: Sequence[str], ids: Sequence[str],
                 y_true: Sequence[int] | None = None, *, family: str = "", sources: Sequence[str] | None = None,
                 columns: Mapping[str, Sequence] | None = None, extra: Mapping[str, Any] | None = None,
                 title: str | None = None, files: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """Write the report files of one scored set (see the module docstring). Files are written atomically.

    Args:
        out_dir: output folder (created).
        proba: ``(N, n_classes) float32`` probabilities; ``labels``: class names in code order.
        ids: ``N`` ids; ``y_true``: ``N`` true codes or ``None`` (then only ``predictions.csv``).
        family: written into ``metrics.json``.
        sources, columns: extra ``predictions.csv`` columns.
        extra: more keys for ``metrics.json``.
        title: confusion matrix title; ``{ua}``, ``{wa}`` and ``{n}`` are filled in (default:
            ``"UA {ua:.1%}  WA {wa:.1%}  (n={n})"``).
        files: file names replacing :data:`REPORT_FILES` entries (``None`` = do not write that file).

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {kind: path}}``.

    Raises:
        ValueError: ``proba`` does not have one column per label, or lengths differ.
    """
    from .evaluation import classification_metrics
    from .plots import plot_confusion_matrix

    proba = np.asarray(proba, dtype=np.float32)
    if proba.ndim != 2 or proba.shape[1] != len(labels) or len(proba) != len(ids):
        raise ValueError(f"need ({len(ids)}, {len(labels)}) probabilities for {len(ids)} items and labels "
                         f"{list(labels)}, got {proba.shape}")
    names = {**REPORT_FILES, **(files or {})}
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    df = predictions_table(proba, labels, ids, y_true, sources, columns)
    written: dict[str, str] = {}
    if names["predictions"]:
        written["predictions"] = str(atomic_write_bytes(out_dir / names["predictions"],
                                                        df.to_csv(index=False).encode("utf-8")))
    metrics = None
    if y_true is not None and len(proba):
        metrics = classification_metrics(np.asarray(y_true, int), proba.argmax(axis=1), len(labels))
        metrics.update({"labels": list(labels), "family": family, **(extra or {})})
        if names["metrics"]:
            written["metrics"] = str(save_json(metrics, out_dir / names["metrics"]))
        if names["confusion"]:
            written["confusion_matrix"] = str(plot_confusion_matrix(
                metrics["confusion_matrix"], labels, out_dir / names["confusion"],
                title=(title or "UA {ua:.1%}  WA {wa:.1%}  (n={n})").format(
                    ua=metrics["ua"], wa=metrics["wa"], n=metrics["n"])))
    return {"predictions": df, "metrics": metrics, "files": written}
