"""Figures: confusion matrices, training curves and spectrogram galleries, saved as PNG (matplotlib)."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .artifacts import atomic_write_bytes


def _save(fig, path: str | Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _figure(figsize, **kwargs):
    # A bare Figure (no pyplot): no GUI backend, nothing left open, safe in workers and notebooks.
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    return fig, fig.subplots(**kwargs)


def plot_confusion_matrix(cm: Sequence[Sequence[int]], labels: Sequence[str], path: str | Path,
                          title: str = "Confusion matrix", normalize: bool = True) -> Path:
    """Save a confusion-matrix PNG: counts in each cell, colour by row-normalised recall.

    Args:
        cm: ``(n_classes, n_classes)`` counts, rows = true class, columns = predicted.
        labels: class names in code order.
        path: output PNG (written atomically).
    """
    cm = np.asarray(cm, dtype=float)
    rates = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1) if normalize else cm
    n = len(labels)
    fig, ax = _figure((1.0 + 0.75 * n, 0.8 + 0.7 * n))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1 if normalize else None)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center",
                    color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046, label="recall" if normalize else "count")
    return _save(fig, path)


def plot_history(histories: Mapping[str, "object"], path: str | Path) -> Path:
    """Save training curves (loss and accuracy, train and validation) of one or more folds.

    Args:
        histories: ``{name: DataFrame}`` with Keras CSVLogger columns
            (``epoch``, ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy``).
    """
    fig, axes = _figure((10, 3.6), ncols=2)
    for name, df in histories.items():
        epochs = np.asarray(df["epoch"]) + 1
        for ax, key in zip(axes, ("loss", "accuracy")):
            line, = ax.plot(epochs, df[key], label=f"{name} train")
            if f"val_{key}" in df:
                ax.plot(epochs, df[f"val_{key}"], "--", color=line.get_color(), label=f"{name} val")
    from matplotlib.ticker import MaxNLocator

    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7, ncol=2)
    return _save(fig, path)


def plot_gallery(images_by_label: Mapping[str, Sequence[np.ndarray]], path: str | Path,
                 per_label: int = 4, title: str | None = None) -> Path:
    """Save a grid of spectrogram images, one row per emotion.

    Args:
        images_by_label: ``{label: [(H, W, 3) uint8 BGR image, ...]}``.
        per_label: images per row (columns).
    """
    labels = [lab for lab, ims in images_by_label.items() if len(ims)]
    if not labels:
        raise ValueError("no images to draw")
    h, w = next(iter(images_by_label[labels[0]])).shape[:2]
    cell_w = 2.4
    fig, axes = _figure((cell_w * per_label, (cell_w * h / w + 0.35) * len(labels) + 0.4), nrows=len(labels),
                        ncols=per_label, squeeze=False)
    for r, lab in enumerate(labels):
        for c in range(per_label):
            ax = axes[r][c]
            ax.axis("off")
            ims = images_by_label[lab]
            if c < len(ims):
                ax.imshow(ims[c][..., ::-1])  # BGR → RGB
            if c == 0:
                ax.set_title(lab, loc="left", fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, path)
