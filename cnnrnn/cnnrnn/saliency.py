"""Saliency of a CNNRNN run on one audio file, on the whole file's log-mel axes (``cnnrnn spectrogram --explain``).

The file is cut as prediction cuts it: one clip of ``spectrogram.duration`` seconds (zero-padded), or for a longer
file windows of that length every half clip (:func:`cnnrnn.explain.file_windows`, as :func:`cnnrnn.predict.predict`
does); each clip becomes the model-input image as :func:`cnnrnn.cnnrnn.predict.collect_inputs` renders it (normalisation
and speaker statistics of the run included). :func:`cnnrnn.explain.saliency` maps each image (a time-crop model's
segments placed on the clip's time axis) back to the log-mel's ``(n_mels, frames)`` grid (rows flipped: the image
has low frequencies at the bottom); the clips' maps are placed on the file's frames, averaged where windows overlap,
and averaged over the run's checkpoints (the CV folds, as their probabilities are).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import artifacts as A
from .config import load_config
from .predict import checkpoints_in, collect_inputs, find_run_dir, grayscale, image_input, run_image_input


def explain(models: Sequence[str | Path], audio: str | Path, manifest=None, *, method: str | None = None,
            target: int | None = None, config: str | Path | None = None, speaker: str | None = None,
            trust_code: bool = False) -> dict[str, Any]:
    """The saliency of class ``target`` for ``audio``, over the file's log-mel as the run computes it.

    Args:
        models: checkpoints, a ``models/`` folder or the run folder (as :func:`cnnrnn.cnnrnn.predict.predict_run`).
        audio: one audio file.
        manifest: the run's :class:`cnnrnn.runs.RunManifest`, or ``None``.
        method: :data:`cnnrnn.explain.METHODS` or ``None`` (:func:`cnnrnn.explain.choose_method`).
        target: class index (default: the class of the checkpoints' mean probabilities, per clip).
        config: CNNRNN config (default: the run's ``config.json``). speaker: the file's speaker (speaker
            normalisation). trust_code: load checkpoints with ``Lambda`` layers.

    Returns:
        ``{"saliency": (n_mels, frames) float32`` summing to 1, frames ``hop_length`` samples apart from the file's
        start (the frames of :func:`cnnrnn.features.log_mel` of the whole file); ``"method"``: the method used;
        ``"spectrogram"``: the run's :class:`cnnrnn.features.SpectrogramConfig`; ``"labels"``: the class names}``.

    Raises:
        ValueError: no checkpoint; the model cannot give ``method`` (:class:`cnnrnn.explain.ExplainError`, naming
            the method that would work); unusable audio (:class:`cnnrnn.audio.AudioError`).
        CheckpointError: a checkpoint does not load or does not take images.
    """
    from ..audio import Clip
    from ..explain import choose_method, file_windows, normalise, place_segments, saliency
    from ..features import load_clip, log_mel

    paths = [Path(m) for m in models]
    if manifest is not None and any(p.is_dir() and (p / "run.json").is_file() for p in paths):
        paths = manifest.checkpoint_paths()
    files = checkpoints_in(paths)
    if not files:
        raise ValueError(f"no .h5 checkpoint in {', '.join(map(str, models))}")
    run_dir = find_run_dir(files[0])
    if config is None and run_dir is not None and (run_dir / A.CONFIG_FILE).is_file():
        config = run_dir / A.CONFIG_FILE
    run_cfg = load_config(config)
    spec = run_cfg.spectrogram
    labels = manifest.labels if manifest is not None else (
        A.load_labels(run_dir / A.LABELS_FILE) if run_dir is not None and (run_dir / A.LABELS_FILE).is_file() else None)
    keras_models, shape, labels = A.load_checkpoints(files, labels, trust_code=trust_code)
    shape = image_input(shape, files[0])
    method = method or choose_method(keras_models[0])
    size, stats = run_image_input(run_dir, run_cfg, spec, shape)
    y = load_clip(audio, spec)
    clips = [Clip(f"{Path(audio).stem}@{o / spec.sr:.3f}", audio, c, spec.sr, o / spec.sr)
             for o, c in file_windows(y, spec.sr, spec.duration)]  # the windows prediction cuts
    inputs = collect_inputs(clips, size, spec, progress=False, speaker=speaker, stats=stats)
    images = grayscale(inputs.images) if shape[2] == 1 else inputs.images
    clip_frames = log_mel(np.zeros(spec.n_samples, np.float32) + 1e-3, spec).shape[1]
    frames = log_mel(y, spec).shape[1]
    start_of = {c.id: c.start_s for c in clips}
    offsets = [int(round(start_of[i] * spec.sr / spec.hop_length)) for i in inputs.ids]
    maps = [np.mean([saliency(m, im, method, target=target, hop=run_cfg.train.crop_hop, flip=True,
                              size=(spec.n_mels, clip_frames)) for m in keras_models], axis=0) for im in images]
    whole = place_segments(maps, offsets, max(frames, offsets[-1] + clip_frames))[:, :frames]
    return {"saliency": normalise(whole), "method": method, "spectrogram": spec, "labels": list(labels)}
