"""Audio loading and fixed-length shaping, on top of soundfile and librosa.

Every function takes and returns mono ``float32`` waveforms in [-1, 1] at a
sample rate ``sr`` in Hz. Bad input raises :class:`AudioError` with the file
and the reason, so batch stages can count and report the file as skipped.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
T = TypeVar("T")


class AudioError(ValueError):
    """An audio file cannot be used: unreadable, empty, silent or not finite.

    Attributes:
        reason: a short machine-readable reason (``unreadable``, ``empty``,
            ``silent``, ``not_finite``) used to count skips.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def load_audio(path: str | Path, sr: int | None = None, *, check: bool = True) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32, resampled to ``sr``.

    Decoding uses soundfile (libsndfile); stereo is averaged to mono with
    ``librosa.to_mono``; resampling uses ``librosa.resample`` (soxr_hq), as
    ``librosa.load`` does, but without librosa's silent audioread fallback so
    that a corrupt file fails clearly.

    Args:
        path: audio file (wav, flac, ogg, ...).
        sr: target sample rate in Hz, or ``None`` to keep the file's rate.
        check: reject empty, all-silent and non-finite audio.

    Returns:
        ``(y, sr)``: ``y`` is ``(samples,) float32``; ``sr`` in Hz.

    Raises:
        AudioError: the file is missing, unreadable, empty, silent or holds NaN/inf.
    """
    import librosa
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found", "missing")
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{path}: cannot decode audio ({exc})", "unreadable") from exc
    y = librosa.to_mono(np.ascontiguousarray(data.T)) if data.shape[1] > 1 else data[:, 0]
    if check:
        check_waveform(y, path)
    if sr is not None and file_sr != sr:
        y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
        file_sr = sr
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def check_waveform(y: np.ndarray, source: str | Path = "<array>", silence_peak: float = 1e-6) -> None:
    """Raise AudioError if ``y`` is empty, contains NaN/inf, or its peak is below ``silence_peak``."""
    if y.size == 0:
        raise AudioError(f"{source}: no samples (zero-length audio)", "empty")
    if not np.all(np.isfinite(y)):
        raise AudioError(f"{source}: audio contains NaN or inf samples", "not_finite")
    if float(np.max(np.abs(y))) < silence_peak:
        raise AudioError(f"{source}: audio is silent (peak below {silence_peak:g})", "silent")


def pad_or_trim(y: np.ndarray, n_samples: int, mode: str = "constant") -> np.ndarray:
    """Cut or pad a waveform to exactly ``n_samples``.

    Args:
        y: ``(samples,)`` waveform.
        n_samples: target length in samples.
        mode: ``constant`` pads zeros at the end (the CNNRNN behaviour);
            ``reflect`` repeats the clip by reflection until long enough
            (the baselines' behaviour).

    Returns:
        ``(n_samples,) float32``.

    Raises:
        AudioError: ``reflect`` padding of an empty clip (reason ``empty``):
            there is nothing to repeat.
    """
    y = np.asarray(y, dtype=np.float32)
    if y.shape[0] >= n_samples:
        return y[:n_samples]
    if mode == "constant":
        return np.pad(y, (0, n_samples - y.shape[0]))
    if mode == "reflect":
        if y.shape[0] == 0:
            raise AudioError("cannot reflect-pad an empty clip (zero samples)", "empty")
        out = y
        while out.shape[0] < n_samples:
            out = np.concatenate([out, out[::-1]])
        return out[:n_samples]
    raise ValueError(f"unknown pad mode {mode!r}; use 'constant' or 'reflect'")


def list_audio(folder: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every file under ``folder`` (recursive, sorted) whose suffix is in ``extensions``; temporary files of an
    interrupted atomic write (:func:`cnnrnn.artifacts.is_temporary`) are left out."""
    from .artifacts import is_temporary

    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in extensions and p.is_file() and not is_temporary(p))


def load_each(paths: Sequence[str | Path], load: Callable[[Path], T], *, desc: str = "files",
              progress: bool = True) -> tuple[list[int], list[T], dict[str, list[str]]]:
    """Apply ``load`` to every file, counting unusable audio as a skip instead of failing.

    The one per-file loop of every family's prediction and feature code: an :class:`AudioError` (missing,
    unreadable, empty, silent, not finite, too short, ...) skips the file, counted under its ``reason`` and
    logged; anything else propagates.

    Args:
        paths: files to process.
        load: ``load(path)`` → the file's features (or image, or segments).
        desc: progress bar label.
        progress: show a tqdm progress bar (only for two files or more).

    Returns:
        ``(kept, results, skipped)``: indices into ``paths`` of the files that loaded, their results in
        the same order, and ``{reason: [path, ...]}``.
    """
    import logging

    from tqdm import tqdm

    log = logging.getLogger("cnnrnn.audio")
    kept: list[int] = []
    results: list[T] = []
    skipped: dict[str, list[str]] = {}
    for i, path in enumerate(tqdm(paths, desc=desc, unit="file", disable=not progress or len(paths) < 2)):
        try:
            results.append(load(Path(path)))
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(path))
            log.warning("skipped %s", exc)
            continue
        kept.append(i)
    return kept, results, skipped
