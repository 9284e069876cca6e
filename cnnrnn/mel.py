"""The log-mel of every family's spectrograms, in numpy and scipy only (no librosa call): mel filters (Slaney or HTK),
the batched power mel spectrogram (:func:`mel_powers`) and dB below the clip's peak (:func:`power_to_db`), equal to
``librosa.feature.melspectrogram`` + ``librosa.power_to_db`` within 1e-3 dB (tests/test_speed_stage.py).
:mod:`cnnrnn.features` declares the settings and makes the images; this module only computes."""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .artifacts import atomic_write_bytes
from .audio import MAX_AUDIO_SECONDS, ClipTooShortError, change_speed, check_min_samples, load_audio, pad_or_trim
from .config import ConfigError


# The log-mel of every family's spectrogram images, in numpy and scipy only (no librosa call: its first call costs
# 1.4-2.3 s here, numba compilation and scipy imports). Equal to librosa's ``melspectrogram`` + ``power_to_db``
# within 1e-3 dB (tests/test_speed_stage.py), and about 5x faster here (benchmarks/spectrogram_throughput.py, the
# per-step profile): the mel filters and the window are built once per setting, the FFT is scipy's float32 real FFT
# over the frames of a batch of clips (up to 128 frames a call), frames that hold only the zero padding are not
# transformed (their power is exactly 0), and the mel filters are applied as a sparse matrix (each filter covers a
# few FFT bins: at n_fft 2048 and 128 mels, about 2,000 of its 131,000 entries are non-zero).
#: Frames per FFT call of :func:`mel_powers`: the frames of several clips go into one call, up to this many (at
#: n_fft 2048, 1 MiB of windowed float32 frames, which stays in the CPU cache: measured 12 % faster per clip than
#: one call per clip, and 40 % faster than 512 frames a call).
_FFT_BLOCK_FRAMES = 128
#: ``amin`` of :func:`power_to_db`: the smallest power in the logarithm, as ``librosa.power_to_db``'s default.
POWER_AMIN = 1e-10


def _hz_to_mel(f, htk: bool):
    """librosa's ``hz_to_mel``: HTK ``2595 log10(1 + f/700)``, or Slaney's (linear below 1 kHz, log above)."""
    f = np.asarray(f, dtype=np.float64)
    if htk:
        return 2595.0 * np.log10(1.0 + f / 700.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    logstep = np.log(6.4) / 27.0
    return np.where(f >= min_log_hz, min_log_hz / f_sp + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep,
                    f / f_sp)


def _mel_to_hz(m, htk: bool):
    """The inverse of :func:`_hz_to_mel` (librosa's ``mel_to_hz``)."""
    m = np.asarray(m, dtype=np.float64)
    if htk:
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=16)
def mel_filters(*, sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                htk: bool = False) -> np.ndarray:
    """The mel filter bank of ``librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
    htk=htk)`` (``norm="slaney"``: each triangle scaled to unit area), computed in numpy.

    Triangles whose edges are ``n_mels + 2`` frequencies evenly spaced on the mel scale (Slaney's, or HTK's) from
    ``fmin`` to ``fmax``, evaluated at the FFT bin frequencies ``k * sr / n_fft``; equal to librosa's to float32
    round-off (tested). Cached per setting; the returned array is read-only.

    Args:
        sr: sample rate in Hz. n_fft: FFT size in samples. n_mels: bands.
        fmin, fmax: band edges in Hz (``fmax`` ``None`` = ``sr / 2``). htk: HTK mel scale instead of Slaney's.

    Returns:
        ``(n_mels, 1 + n_fft // 2) float32``.
    """
    fmax = float(sr) / 2 if fmax is None else float(fmax)
    freqs = np.fft.rfftfreq(int(n_fft), d=1.0 / sr)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(fmax, htk), int(n_mels) + 2), htk)
    ramps = edges[:, None] - freqs[None, :]
    widths = np.diff(edges)[:, None]
    lower = -ramps[:-2] / widths[:-1]
    upper = ramps[2:] / widths[1:]
    weights = np.maximum(0.0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    out = weights.astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=16)
def _mel_sparse_t(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None):
    """:func:`mel_filters` (Slaney) transposed, as a ``scipy.sparse`` CSR matrix ``(1 + n_fft // 2, n_mels)``:
    ``power @ it`` is the mel projection of ``(frames, bins)`` power."""
    import scipy.sparse

    return scipy.sparse.csr_matrix(mel_filters(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax).T)


def empty_mel_bands(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool = False) -> int:
    """How many filters of ``librosa.filters.mel`` (Slaney, or ``htk``) hold no FFT bin: each would give a
    constant row of the log-mel (librosa warns "Empty filters detected").

    Args:
        sr: sample rate in Hz; n_fft: FFT size in samples; n_mels: bands; fmin, fmax: band edges in Hz
            (``fmax`` ``None`` = ``sr / 2``).
    """
    basis = mel_filters(sr=int(sr), n_fft=int(n_fft), n_mels=int(n_mels), fmin=float(fmin),
                        fmax=None if fmax is None else float(fmax), htk=bool(htk))
    return int((basis.max(axis=1) <= 0).sum())


def check_mel_bands(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float | None, htk: bool = False,
                    n_fft_key: str = "n_fft") -> None:
    """Refuse settings that leave a mel band empty (:func:`empty_mel_bands`).

    A band ``(f[i], f[i+2])`` is sure to hold a bin when the bin spacing ``sr / n_fft`` is below its width,
    so the message gives the smallest ``n_fft`` that fills every band.

    Raises:
        ConfigError: ``n_fft 4 at sr 16000 leaves 126 of 128 mel bands (0-8000 Hz) empty (no FFT bin): need n_fft
            >= 343, ...``.
    """
    empty = empty_mel_bands(sr, n_fft, n_mels, fmin, fmax, htk)
    if empty:
        top = fmax if fmax is not None else sr / 2
        edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin, htk), _hz_to_mel(top, htk), n_mels + 2), htk)
        need = int(sr / float(np.min(edges[2:] - edges[:-2]))) + 1
        raise ConfigError(f"{n_fft_key} {n_fft} at sr {sr} leaves {empty} of {n_mels} mel bands ({fmin:g}-{top:g} Hz) "
                          f"empty (no FFT bin): need n_fft >= {need}, or fewer n_mels, or a wider fmin-fmax")


@functools.lru_cache(maxsize=8)
def _hann(n_fft: int) -> np.ndarray:
    """The periodic Hann window (``scipy.signal.get_window("hann", n_fft, fftbins=True)``), float32, read-only."""
    out = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(np.float32)
    out.flags.writeable = False
    return out


def mel_powers(ys: np.ndarray, cfg: Any) -> np.ndarray:
    """Power mel spectrograms of a batch of waveforms of one length.

    Numerically equal (to float32 round-off) to ``librosa.feature.melspectrogram(y=y, sr=cfg.sr,
    n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax, power=2.0)``
    for each row ``y``: centred frames with zero padding, periodic Hann window, Slaney mel filters
    (:func:`mel_filters`). The frames of the batch that overlap the signal go through float32 ``scipy.fft.rfft``
    calls of up to :data:`_FFT_BLOCK_FRAMES` frames each; frames that hold only zeros (the padding of a short clip,
    digital silence at the ends) are skipped, their power being exactly 0; the filters are applied as a sparse
    matrix.

    Args:
        ys: ``(batch, samples)`` (or ``(samples,)``) float waveforms at ``cfg.sr`` Hz.
        cfg: the log-mel settings (``sr``, ``n_fft``, ``hop_length``, ``n_mels``, ``fmin``, ``fmax``).

    Returns:
        ``(batch, n_mels, 1 + samples // hop_length) float32`` power (``(n_mels, frames)`` for one waveform).
    """
    import scipy.fft

    ys = np.asarray(ys, dtype=np.float32)
    single = ys.ndim == 1
    ys = np.atleast_2d(ys)
    batch, n = ys.shape
    n_fft, hop = int(cfg.n_fft), int(cfg.hop_length)
    half = n_fft // 2
    n_frames = 1 + n // hop
    padded = np.zeros((batch, n + 2 * half), np.float32)
    padded[:, half:half + n] = ys
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[:, ::hop][:, :n_frames]
    spans = []  # per clip, the frames that overlap a non-zero sample: [t0, t1)
    for y in ys:
        nonzero = y != 0
        if not nonzero.any():
            spans.append((0, 0))
            continue
        first, last = int(np.argmax(nonzero)), n - 1 - int(np.argmax(nonzero[::-1]))
        # frame t covers samples [t * hop - half, t * hop - half + n_fft)
        spans.append((max(0, -(-(first - n_fft + half + 1) // hop)), min(n_frames, (last + half) // hop + 1)))
    out = np.zeros((batch, int(cfg.n_mels), n_frames), np.float32)
    basis_t = _mel_sparse_t(int(cfg.sr), n_fft, int(cfg.n_mels), float(cfg.fmin),
                            None if cfg.fmax is None else float(cfg.fmax))
    block: list[tuple[int, int, int]] = []  # (clip, t0, t1): the clips of one FFT call

    def transform(block):
        live = sum(t1 - t0 for _, t0, t1 in block)
        windowed = np.empty((live, n_fft), np.float32)
        k = 0
        for b, t0, t1 in block:
            np.multiply(frames[b, t0:t1], _hann(n_fft), out=windowed[k:k + t1 - t0])
            k += t1 - t0
        spec = scipy.fft.rfft(windowed, axis=-1, overwrite_x=True)
        parts = spec.view(np.float32).reshape(live, -1, 2)
        power = np.square(parts[..., 0])
        power += np.square(parts[..., 1])
        mel = np.asarray(power @ basis_t, np.float32)  # (live, n_mels)
        k = 0
        for b, t0, t1 in block:
            out[b, :, t0:t1] = mel[k:k + t1 - t0].T
            k += t1 - t0

    size = 0
    for b, (t0, t1) in enumerate(spans):
        for start in range(t0, t1, _FFT_BLOCK_FRAMES):  # a long clip in pieces, short ones together
            stop = min(t1, start + _FFT_BLOCK_FRAMES)
            if block and size + stop - start > _FFT_BLOCK_FRAMES:
                transform(block)
                block, size = [], 0
            block.append((b, start, stop))
            size += stop - start
    if block:
        transform(block)
    return out[0] if single else out


def mel_power(y: np.ndarray, cfg: Any) -> np.ndarray:
    """Power mel spectrogram of one waveform (:func:`mel_powers`; the same numbers as
    ``librosa.feature.melspectrogram`` to float32 round-off).

    Args:
        y: ``(samples,) float32`` at ``cfg.sr`` Hz.
        cfg: spectrogram parameters.

    Returns:
        ``(n_mels, 1 + samples // hop_length) float32`` power.
    """
    return mel_powers(np.asarray(y, np.float32)[None], cfg)[0]


def power_to_db(power: np.ndarray, *, top_db: float | None = 80.0, amin: float = POWER_AMIN) -> np.ndarray:
    """``librosa.power_to_db(S, ref=np.max, amin=amin, top_db=top_db)`` of each spectrogram of a batch, in numpy.

    Args:
        power: ``(..., n_mels, frames)`` power; the leading axes are a batch, each item gets its own reference.
        top_db: dynamic range kept below each item's peak, in dB (``None``: no floor).
        amin: the smallest power in the logarithm.

    Returns:
        float32 of ``power``'s shape, in ``[-top_db, 0]`` dB relative to each item's peak (exactly 0 at the peak).
    """
    power = np.asarray(power, dtype=np.float32)
    db = 10.0 * np.log10(np.maximum(np.float32(amin), power))
    ref = np.max(power, axis=(-2, -1), keepdims=True)
    db -= 10.0 * np.log10(np.maximum(np.float32(amin), ref))
    if top_db is not None:
        np.maximum(db, np.max(db, axis=(-2, -1), keepdims=True) - np.float32(top_db), out=db)
    return db.astype(np.float32, copy=False)
