"""Whisper's front end (log-mel) and the features of its encoder's blocks (mean + std over frames).

:func:`whisper_log_mel` (defined in :mod:`cnnrnn.features`, beside the other front ends) is Whisper's
``log_mel_spectrogram`` (``openai/whisper`` ``whisper/audio.py``). Whisper pads every clip to 30 s before it; here
the clip keeps its own length unless ``pad_to_seconds`` is given (the encoder has no attention mask, so padding
changes its features).

:func:`block_features` runs a converted encoder (:func:`cnnrnn.models.whisper.pretrained_whisper`) over clips, each
at its own length, and returns per-block mean + std pooled vectors: the frozen features of the ``functionals``
family's ``whisper`` feature set and of the benchmark's linear heads.
"""
from __future__ import annotations

import numpy as np

from .features import (WHISPER_HOP_LENGTH as HOP_LENGTH, WHISPER_MAX_SECONDS as MAX_SECONDS,  # noqa: F401
                       WHISPER_MIN_SAMPLES as MIN_SAMPLES, WHISPER_N_FFT as N_FFT, WHISPER_N_MELS as N_MELS,
                       WHISPER_SR as SR, whisper_frames, whisper_log_mel)


def mean_std(x: np.ndarray) -> np.ndarray:
    """``(frames, width)`` → ``(2 · width,) float32``: the mean over frames, then the standard deviation."""
    x = np.asarray(x, dtype=np.float64)
    return np.concatenate([x.mean(axis=0), x.std(axis=0)]).astype(np.float32)


def block_features(clips, weights, *, blocks="all", sizes=None, pad_to_seconds: float | None = None,
                   progress: bool = False) -> np.ndarray:
    """Mean + std pooled outputs of a Whisper encoder's blocks, each clip encoded at its own length.

    Args:
        clips: iterable of ``(samples,)`` float waveforms at 16 kHz, each 20 ms to 30 s.
        weights: a ``.weights.h5`` of ``cnnrnn whisper-convert``, or ``none`` (random weights of ``sizes``).
        blocks: ``"all"`` (the stem and every block, ``0..n_layers``) or a list of block numbers.
        sizes: :class:`~cnnrnn.models.whisper.WhisperSizes` for random weights (or a check against the file's).
        pad_to_seconds: pad each clip to this length first (Whisper's own 30 s); ``None`` keeps its length.
        progress: show a tqdm bar.

    Returns:
        ``(clips, n_blocks, 2 · width) float32``: for each clip and block, the mean then the std over encoder frames.

    Raises:
        ValueError: a clip shorter than 20 ms or longer than 30 s (window it first).
        cnnrnn.models.blocks.WeightsError: see :func:`cnnrnn.models.whisper.pretrained_whisper`.
    """
    from tqdm.auto import tqdm

    from .models.whisper import pretrained_whisper

    model = pretrained_whisper(weights, block="all", sizes=sizes)
    n_layers = len(model.outputs) - 1
    chosen = list(range(n_layers + 1)) if blocks == "all" else [int(b) for b in blocks]
    out = []
    for y in tqdm(list(clips), desc="Whisper features", unit="clip", disable=not progress):
        mel = whisper_log_mel(y, pad_to_seconds=pad_to_seconds)
        if len(mel) > int(MAX_SECONDS * SR) // HOP_LENGTH:
            raise ValueError(f"a clip of {len(mel) / 100:.1f} s is longer than Whisper's 30 s position table: "
                             "cut it into windows first")
        outs = model(mel[None], training=False)
        out.append(np.stack([mean_std(np.asarray(outs[b])[0]) for b in chosen]))
    return np.stack(out) if out else np.zeros((0, len(chosen), 0), np.float32)
