"""Figures: confusion matrices, training curves, spectrogram galleries, annotated spectrograms and emotion
timelines, saved as PNG (matplotlib, Agg canvas, written atomically).

Every function takes arrays, labels and probabilities as arguments; none computes features or predicts (this
module is part of the core). Figures are bare :class:`matplotlib.figure.Figure` objects on an Agg canvas, never
pyplot's, so nothing is left open and no GUI backend is touched, in scripts, workers and notebooks alike.
"""
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
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize)
    FigureCanvasAgg(fig)
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


# --------------------------------------------------------------------------- spectrograms for people
def _label_colors(labels: Sequence[str]) -> dict[str, tuple]:
    """One colour per label, in label order (matplotlib's ``tab10``, ``tab20`` beyond ten labels)."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(labels) <= 10 else "tab20"]
    return {lab: cmap(i % cmap.N) for i, lab in enumerate(labels)}


def _specshow(ax, db: np.ndarray, sr: int, hop_length: int, fmin: float, fmax: float | None, cmap: str):
    """``librosa.display.specshow`` of a dB log-mel: time in seconds, frequency in Hz on the mel scale."""
    import librosa.display

    db = np.asarray(db, dtype=np.float32)
    if db.ndim != 2 or db.shape[1] < 1:
        raise ValueError(f"expected a (n_mels, frames) log-mel, got shape {db.shape}")
    if sr <= 0 or hop_length <= 0:
        raise ValueError(f"sr and hop_length must be positive, got {sr} and {hop_length}")
    img = librosa.display.specshow(db, sr=sr, hop_length=hop_length, x_axis="s", y_axis="mel", fmin=fmin,
                                   fmax=fmax if fmax is not None else sr / 2, ax=ax, cmap=cmap)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("frequency (Hz, mel scale)")
    return img


def plot_spectrogram(db: np.ndarray, path: str | Path, *, sr: int, hop_length: int, fmin: float = 0.0,
                     fmax: float | None = None, title: str | None = None, labels: Sequence[str] | None = None,
                     probabilities: Sequence[float] | None = None, cmap: str = "magma") -> Path:
    """Save a spectrogram a person can read: time in seconds, frequency in Hz on the mel scale
    (``librosa.display.specshow(..., x_axis="s", y_axis="mel")``), a dB colour bar and a title; with
    ``probabilities``, a bar chart of the class probabilities beside it, the predicted (most probable) label
    highlighted and named in the panel's title.

    Args:
        db: ``(n_mels, frames)`` log-mel in dB (e.g. :func:`cnnrnn.features.log_mel`: ``[-top_db, 0]`` dB
            below the clip's peak), frames ``hop_length`` samples apart at ``sr`` Hz, low frequencies first.
        path: output PNG (written atomically).
        sr: sample rate in Hz. hop_length: hop between frames in samples.
        fmin, fmax: the mel bands' frequency range in Hz (``fmax`` ``None`` = ``sr / 2``), for the axis.
        title: the figure title (e.g. the file name and its label).
        labels: class names in the model's order (needed with ``probabilities``).
        probabilities: ``(n_classes,)`` probabilities in ``[0, 1]`` of ``labels``.
        cmap: matplotlib colormap (``magma``, librosa's default for dB).

    Returns:
        ``path``.

    Raises:
        ValueError: ``db`` is not 2-D; ``probabilities`` without ``labels`` or of another length.
    """
    probs = None
    if probabilities is not None:
        probs = np.asarray(probabilities, dtype=float).ravel()
        if labels is None or len(labels) != len(probs):
            raise ValueError(f"need one label per probability: {len(probs)} probabilities, "
                             f"{None if labels is None else len(labels)} labels")
    seconds = np.asarray(db).shape[-1] * hop_length / max(sr, 1)
    width = float(np.clip(6.0 + 0.15 * seconds, 8.0, 18.0))
    if probs is None:
        fig, ax = _figure((width, 4.2))
    else:
        fig, (ax, bars) = _figure((width + 3.2, 4.2), ncols=2, gridspec_kw={"width_ratios": [width, 3.2]})
    img = _specshow(ax, db, sr, hop_length, fmin, fmax, cmap)
    fig.colorbar(img, ax=ax, format="%+2.0f dB")
    if title:
        ax.set_title(title)
    if probs is not None:
        best = int(np.argmax(probs))
        rows = np.arange(len(probs))
        colors = ["tab:red" if i == best else "tab:gray" for i in rows]
        bars.barh(rows, probs, color=colors)
        bars.set_yticks(rows, list(labels))
        bars.invert_yaxis()
        bars.set_xlim(0, 1)
        bars.set_xlabel("probability")
        for i, p in enumerate(probs):
            bars.text(min(p + 0.02, 0.80), i, f"{p:.2f}", va="center", fontsize=8)
        bars.set_title(f"predicted: {labels[best]} ({probs[best]:.2f})")
    return _save(fig, path)


def _timeline_rows(timeline, file: str | None):
    """The rows of one file of a timeline table, sorted by ``start_s``."""
    missing = [c for c in ("start_s", "end_s", "label") if c not in timeline.columns]
    if missing:
        raise ValueError(f"the timeline lacks column(s) {missing}; expected file, start_s, end_s, label, "
                         "confidence, p_<label>...")
    rows = timeline
    if "file" in timeline.columns:
        files = list(dict.fromkeys(timeline["file"].astype(str)))
        if file is None and len(files) > 1:
            raise ValueError(f"the timeline holds {len(files)} files; name the one to draw (file=...)")
        if file is not None:
            rows = timeline[timeline["file"].astype(str) == str(file)]
    if not len(rows):
        raise ValueError(f"no timeline rows{f' for {file}' if file is not None else ''}")
    return rows.sort_values("start_s", kind="stable").reset_index(drop=True)


def window_edges(start_s: Sequence[float], end_s: Sequence[float]) -> np.ndarray:
    """Time span each window stands for on a timeline: overlapping windows split the time between them at
    the midpoints of their centres, the first starts at its ``start_s`` and the last ends at its ``end_s``.

    Args:
        start_s, end_s: ``(n,)`` window starts and ends in seconds, sorted by start.

    Returns:
        ``(n + 1,) float`` edges in seconds: window ``i`` covers ``[edges[i], edges[i + 1])``.
    """
    start, end = np.asarray(start_s, dtype=float), np.asarray(end_s, dtype=float)
    centres = (start + end) / 2
    return np.concatenate([[start[0]], (centres[:-1] + centres[1:]) / 2, [end[-1]]])


def plot_timeline(timeline, path: str | Path, *, labels: Sequence[str] | None = None, db: np.ndarray | None = None,
                  sr: int | None = None, hop_length: int | None = None, fmin: float = 0.0,
                  fmax: float | None = None, file: str | None = None, title: str | None = None,
                  cmap: str = "magma") -> Path:
    """Save the emotion timeline of a recording: with ``db``, its spectrogram on top (as
    :func:`plot_spectrogram`), then the predicted label of each window as a coloured strip, then the class
    probabilities as stacked areas, all on one time axis in seconds.

    Each window stands for the time nearest to its centre (:func:`window_edges`), so overlapping windows
    (hop < window) tile the axis without overlap. A window that was not classified (its probabilities are
    missing, or its ``label`` is none of ``labels``, e.g. ``silence``) is drawn grey and hatched, with its
    ``label`` written in the strip when there is room.

    Args:
        timeline: a DataFrame with columns ``file``, ``start_s``, ``end_s`` (seconds), ``label``,
            ``confidence`` and one ``p_<label>`` column per class (probabilities in [0, 1]; NaN, or a ``label``
            outside the classes, for a window that was not classified).
        path: output PNG (written atomically).
        labels: class names in order (default: the ``p_<label>`` columns in table order).
        db: ``(n_mels, frames)`` dB log-mel of the whole recording (optional), with ``sr``, ``hop_length``,
            ``fmin`` and ``fmax`` as for :func:`plot_spectrogram`.
        file: which file to draw when the table holds several.
        title: figure title (default: the file name, "emotion over time").
        cmap: colormap of the spectrogram.

    Returns:
        ``path``.

    Raises:
        ValueError: missing columns, no probability columns, several files and no ``file``, no rows, or
            ``db`` without ``sr`` and ``hop_length``.
    """
    rows = _timeline_rows(timeline, file)
    if labels is None:
        labels = [c[2:] for c in rows.columns if str(c).startswith("p_")]
    labels = list(labels)
    missing = [f"p_{lab}" for lab in labels if f"p_{lab}" not in rows.columns]
    if not labels or missing:
        raise ValueError(f"the timeline needs one p_<label> column per class; missing {missing or 'all'}")
    if db is not None and (sr is None or hop_length is None):
        raise ValueError("a spectrogram (db) needs sr and hop_length")
    proba = rows[[f"p_{lab}" for lab in labels]].to_numpy(dtype=float)
    unclassified = ~np.isfinite(proba).all(axis=1) | ~rows["label"].astype(str).isin(labels).to_numpy()
    proba = np.where(unclassified[:, None], 0.0, proba)
    edges = window_edges(rows["start_s"], rows["end_s"])
    # the axis ends at the timeline's end or the last spectrogram frame's centre (frames are centred: frame k
    # stands for time k * hop_length / sr), whichever is later
    end = float(edges[-1]) if db is None else max(float(edges[-1]), (np.asarray(db).shape[-1] - 1) * hop_length / sr)
    colors = _label_colors(labels)
    name = str(rows["file"].iloc[0]) if "file" in rows.columns else None
    heights = ([3.0] if db is not None else []) + [0.45, 1.8]
    width = float(np.clip(6.0 + 0.15 * end, 9.0, 18.0))
    fig, axes = _figure((width, 1.2 + sum(heights)), nrows=len(heights), ncols=2, squeeze=False,
                        gridspec_kw={"height_ratios": heights, "width_ratios": [60, 1], "hspace": 0.12,
                                     "wspace": 0.02})
    main = [row[0] for row in axes]
    for ax in main[1:]:
        ax.sharex(main[0])
    for ax in [row[1] for row in axes]:
        ax.axis("off")
    if db is not None:
        img = _specshow(main[0], db, sr, hop_length, fmin, fmax, cmap)
        axes[0][1].axis("on")
        fig.colorbar(img, cax=axes[0][1], format="%+2.0f dB")
        main[0].set_xlabel("")
        main[0].tick_params(labelbottom=False)
    strip, areas = main[-2], main[-1]

    # labels over time: one coloured span per window, names written on runs of one label wide enough to read
    spans = list(zip(edges[:-1], np.diff(edges)))
    face = ["lightgray" if u else colors.get(str(lab), "lightgray") for u, lab in zip(unclassified, rows["label"])]
    strip.broken_barh(spans, (0, 1), facecolors=face, edgecolors="none")
    for (x, w), u in zip(spans, unclassified):
        if u:
            strip.broken_barh([(x, w)], (0, 1), facecolors="none", edgecolors="gray", hatch="//", linewidth=0)
    run_start = 0
    names = [str(lab) for lab in rows["label"]]
    for i in range(1, len(names) + 1):
        if i == len(names) or names[i] != names[run_start]:
            x0, x1 = edges[run_start], edges[i]
            if x1 - x0 >= 0.06 * (end - edges[0] or 1):
                strip.text((x0 + x1) / 2, 0.5, names[run_start], ha="center", va="center", fontsize=8, clip_on=True)
            run_start = i
    strip.set_ylim(0, 1)
    strip.set_yticks([])
    strip.set_ylabel("label", rotation=0, ha="right", va="center")
    strip.tick_params(labelbottom=False)

    # probabilities as stacked areas, constant over each window's span
    cum = np.concatenate([np.zeros((len(proba), 1)), np.cumsum(proba, axis=1)], axis=1)
    for k, lab in enumerate(labels):
        lower, upper = np.append(cum[:, k], cum[-1, k]), np.append(cum[:, k + 1], cum[-1, k + 1])
        areas.fill_between(edges, lower, upper, step="post", color=colors[lab], linewidth=0, label=lab)
    for (x, w), u in zip(spans, unclassified):
        if u:
            areas.axvspan(x, x + w, facecolor="lightgray", edgecolor="gray", hatch="//", linewidth=0)
    areas.set_ylim(0, 1)
    areas.set_ylabel("probability")
    areas.set_xlabel("time (s)")
    areas.set_xlim(0.0, end)
    handles, names_ = areas.get_legend_handles_labels()
    axes[-1][1].legend(handles, names_, loc="center left", fontsize=8, frameon=False)
    main[0].set_title(title or f"{Path(name).name + ': ' if name else ''}emotion over time")
    return _save(fig, path)


def plot_saliency(db: np.ndarray, saliency: np.ndarray, path: str | Path, *, sr: int, hop_length: int,
                  fmin: float = 0.0, fmax: float | None = None, title: str | None = None, alpha: float = 0.8,
                  cmap: str = "turbo") -> Path:
    """Save the readable spectrogram (:func:`plot_spectrogram`'s axes: seconds, Hz on the mel scale) in grey with
    a saliency map over it: a heat map of where the evidence lies, its opacity ``alpha · sqrt(saliency)`` (clear where
    there is none), and its colour bar (the map scaled to its maximum: 1 = the most salient cell).

    Args:
        db: ``(n_mels, frames)`` log-mel in dB, low frequencies first, frames ``hop_length`` samples apart.
        saliency: a non-negative map (:func:`cnnrnn.explain.saliency`); resized to ``db``'s grid when its shape
            differs.
        path: output PNG (written atomically). sr, hop_length, fmin, fmax: as :func:`plot_spectrogram`.
        title: the figure title (e.g. the file, the predicted class and its probability, the method).
        alpha: opacity of the heat map's most salient cell. cmap: its matplotlib colormap.

    Returns:
        ``path``.

    Raises:
        ValueError: ``db`` or ``saliency`` is not 2-D, or ``saliency`` has a negative or non-finite value.
    """
    import cv2

    db = np.asarray(db, dtype=np.float32)
    sal = np.asarray(saliency, dtype=np.float32)
    if sal.ndim != 2 or db.ndim != 2:
        raise ValueError(f"expected 2-D (n_mels, frames) maps, got {db.shape} and {sal.shape}")
    if not np.all(np.isfinite(sal)) or sal.min() < 0:
        raise ValueError("a saliency map must be finite and non-negative")
    if sal.shape != db.shape:
        sal = cv2.resize(sal, (db.shape[1], db.shape[0]), interpolation=cv2.INTER_LINEAR)
    sal = sal / sal.max() if sal.max() > 0 else sal
    seconds = db.shape[-1] * hop_length / max(sr, 1)
    fig, ax = _figure((float(np.clip(7.0 + 0.15 * seconds, 9.0, 19.0)), 4.2))
    _specshow(ax, db, sr, hop_length, fmin, fmax, "gray")
    heat = _specshow(ax, sal, sr, hop_length, fmin, fmax, cmap)
    heat.set_alpha(alpha * np.sqrt(sal))  # cells without evidence stay clear, the grey log-mel shows through
    heat.set_clim(0.0, 1.0)
    fig.colorbar(heat, ax=ax, label="saliency (max = 1)")
    if title:
        ax.set_title(title)
    return _save(fig, path)
