"""Saliency of a baseline run on one audio file, on the file's log-mel axes (``cnnrnn spectrogram --explain``).

Only the ``cnn`` baseline has a time-frequency input: its log-mel (``sr``, ``n_fft``, ``hop_length``, ``n_mels``,
``fmin``, ``fmax`` of the run's config; 22,050 Hz, 2048, 512, 128 in the tutorial's preset), standardised and
scaled to [0, 255] (:func:`cnnrnn.baselines.data.clip_features`), ``(n_mels, frames, 1)`` with row 0 the lowest
band: the map is not flipped. The ``ann`` baseline takes the raw waveform: it is refused (:func:`check`).

The file is read as prediction reads it (:func:`cnnrnn.baselines.predict.collect_inputs`, the run's
normalisation included): one clip of ``duration`` seconds, or for a longer file windows of ``duration`` every half
of it (:func:`cnnrnn.explain.file_windows`, as :func:`cnnrnn.predict.predict` cuts them). Each clip's map
(:func:`cnnrnn.explain.saliency`: Grad-CAM on the last ``Conv2D`` by default) is averaged over the run's
checkpoints and put on the file's frames. A clip shorter than ``duration`` was made longer by repeating it,
reflected (:func:`cnnrnn.audio.pad_or_trim`): the evidence on each repeat is added to the frame of the clip it
repeats (:func:`fold_frames`), so the map covers the file's own frames and nothing else.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import BaselineConfig, read_norm_stats
from .predict import collect_inputs, resolve_run


def check(models: Sequence[str | Path], manifest=None) -> None:
    """Refuse, before anything is predicted, a run without a log-mel input (the ``ann`` baseline).

    Raises:
        ExplainError: an ``ann`` run (the message names the ``cnn`` baseline).
        FileNotFoundError, BaselineConfigError: as :func:`cnnrnn.baselines.predict.resolve_run`.
    """
    _config(models, manifest)


def _config(models: Sequence[str | Path], manifest=None) -> tuple[list[Path], Path | None, BaselineConfig]:
    from ..explain import ExplainError

    paths, run_dir, cfg = resolve_run(models, manifest)
    if cfg.model == "ann":
        raise ExplainError("--explain: the ann baseline takes the raw waveform, which has no log-mel (time-frequency) "
                           "input to map its evidence onto; the cnn baseline takes a log-mel and is drawn (grad-cam)")
    return paths, run_dir, cfg


def spectrogram(cfg: BaselineConfig):
    """The :class:`cnnrnn.features.SpectrogramConfig` of the CNN's log-mel (the run's ``sr``, ``n_fft``,
    ``hop_length``, ``n_mels``, ``fmin``, ``fmax``, ``top_db``, ``duration``): :func:`cnnrnn.features.log_mel` of a
    file with it has the frames the model's input has (``1 + samples // hop_length``)."""
    from ..features import SpectrogramConfig

    return SpectrogramConfig(sr=cfg.sr, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, n_fft=cfg.n_fft,
                             hop_length=cfg.hop_length, top_db=cfg.top_db, duration=cfg.duration)


def fold_frames(m: np.ndarray, n_samples: int, hop_length: int, offset: int, frames: int) -> np.ndarray:
    """Put a map over a clip made ``n_samples`` long by reflect-padding (:func:`cnnrnn.audio.pad_or_trim`) on the
    frames of the file the clip starts in at sample ``offset``.

    Frame ``t`` of the padded clip is centred on its sample ``t * hop_length``, which repeats the clip's sample
    ``p`` (the clip, reversed, the clip, ... with period ``2 * n_samples``); its column is added to the file's
    frame ``floor((offset + p) / hop_length + 1/2)``. Columns that land past ``frames`` are dropped.

    Args:
        m: ``(rows, clip frames)``. n_samples: the clip's own length in samples (before padding; a clip at least
            as long as the model's input is not padded and only shifted). hop_length: samples between frames.
        offset: the clip's first sample in the file. frames: the file's frames.

    Returns:
        ``(rows, frames) float32``.
    """
    centre = np.arange(m.shape[1]) * hop_length
    q = centre % (2 * max(int(n_samples), 1))
    p = np.where(q < n_samples, q, 2 * n_samples - 1 - q)
    target = np.floor((offset + p) / hop_length + 0.5).astype(int)  # halves up: a shifted clip stays one-to-one
    keep = target < frames
    out = np.zeros((m.shape[0], frames), np.float64)
    np.add.at(out.T, target[keep], m[:, keep].T)
    return out.astype(np.float32)


def explain(models: Sequence[str | Path], audio: str | Path, manifest=None, *, method: str | None = None,
            target: int | None = None, speaker: str | None = None) -> dict[str, Any]:
    """The saliency of class ``target`` for ``audio`` by a ``cnn`` baseline run, over the file's log-mel.

    Args:
        models: ``model.h5`` files and/or run folders (as :func:`cnnrnn.baselines.predict.predict_run`).
        audio: one audio file.
        manifest: the run's :class:`cnnrnn.runs.RunManifest`, or ``None`` (a run before manifests).
        method: :data:`cnnrnn.explain.METHODS` or ``None`` (:func:`cnnrnn.explain.choose_method`: ``grad-cam`` on
            the last ``Conv2D``).
        target: class index (default: the class of the checkpoints' mean probabilities, per clip).
        speaker: the file's speaker (``speaker`` normalisation; default none: utterance normalisation).

    Returns:
        ``{"saliency": (n_mels, frames) float32`` non-negative, summing to 1, on the frames of
        :func:`cnnrnn.features.log_mel` of the whole file with ``"spectrogram"`` (:func:`spectrogram`);
        ``"method"``: the method used; ``"labels"``: the class names``}``.

    Raises:
        ExplainError: an ``ann`` run (:func:`check`); ``grad-cam`` on a model without a usable convolutional map
            (the message names ``gradient``).
        FileNotFoundError, BaselineConfigError: as :func:`cnnrnn.baselines.predict.resolve_run`.
        CheckpointError: a checkpoint does not load. ValueError: no usable audio.
    """
    from ..artifacts import LABELS_FILE, load_checkpoints, load_labels
    from ..audio import Clip
    from ..explain import choose_method, file_windows, normalise, saliency
    from ..features import load_clip, log_mel

    paths, run_dir, cfg = _config(models, manifest)
    labels = list(manifest.labels) if manifest is not None else (
        load_labels(run_dir / LABELS_FILE) if run_dir is not None and (run_dir / LABELS_FILE).is_file() else None)
    nets, _, labels = load_checkpoints(paths, labels)
    method = method or choose_method(nets[0])
    spec = spectrogram(cfg)
    y = load_clip(audio, cfg)
    pieces = file_windows(y, cfg.sr, cfg.duration)
    clips = [Clip(f"{Path(audio).stem}@{o}", audio, piece, cfg.sr, o / cfg.sr) for o, piece in pieces]
    inputs = collect_inputs(clips, cfg, progress=False, speaker=speaker,
                            stats=read_norm_stats(run_dir) if run_dir is not None else None)
    kept = {c.id: (o, len(p)) for c, (o, p) in zip(clips, pieces)}
    frames = log_mel(y, spec).shape[1]
    total, count = np.zeros((cfg.n_mels, frames), np.float32), np.zeros(frames, np.float32)
    for clip_id, x in zip(inputs.ids, inputs.features):  # windows averaged where they overlap
        m = np.mean([saliency(net, x, method, target=target, flip=False) for net in nets], axis=0)
        offset, n_samples = kept[clip_id]
        n_samples = min(n_samples, cfg.n_samples)
        total += fold_frames(m, n_samples, cfg.hop_length, offset, frames)
        count += fold_frames(np.ones((1, m.shape[1])), n_samples, cfg.hop_length, offset, frames)[0] > 0
    return {"saliency": normalise(total / np.maximum(count, 1)), "method": method, "spectrogram": spec,
            "labels": list(labels)}
