"""Audio loading and fixed-length shaping, on top of soundfile, soxr and librosa.

Every function takes and returns mono ``float32`` waveforms in [-1, 1] at a
sample rate ``sr`` in Hz. Bad input raises :class:`AudioError` with the file
and the reason, so batch stages can count and report the file as skipped.

Per-file work in worker processes goes through :func:`cnnrnn.workers.map_chunks` (re-exported here), the one
process pool of the package. For tests, the environment variable :data:`FAULT_KILL_WORKER_ENV`
(``CNNRNN_FAULT_KILL_WORKER=<file name>``) makes a pool worker kill itself (SIGKILL) when :func:`load_audio` opens a
file of that name; it is read only in pool workers (:func:`cnnrnn.workers.pool_worker_init`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence, TypeVar

import numpy as np

# the worker pool lives in its own module; its names stay importable from here
from .workers import (FAULT_KILL_WORKER_ENV, MAX_DEATHS_IN_A_ROW, WORKER_DIED, WORKER_DIED_MESSAGE,  # noqa: F401
                      die_if_fault_target, map_chunks, pool_context, pool_worker_init)

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3")
T = TypeVar("T")
R = TypeVar("R")

#: Default limit on the length of one decoded file, in seconds (the ``max_audio_seconds`` setting): longer audio,
#: as its header states it, is skipped before it is decoded (reason ``too_long``).
MAX_AUDIO_SECONDS = 3600.0
#: Sample rates (Hz) a file's header may state; outside them the file is skipped (reason ``bad_sample_rate``).
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768_000


class AudioError(ValueError):
    """An audio file cannot be used: unreadable, empty, silent or not finite.

    Attributes:
        reason: a short machine-readable reason (``missing``, ``unreadable``, ``empty``, ``silent``,
            ``channels_cancel``, ``not_finite``, ``too_short``, ``too_long``, ``bad_sample_rate``,
            ``worker_died``, ...) used to count skips.
    """

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


class ClipTooShortError(AudioError):
    """The clip is too short for its features (reason ``too_short``): fewer samples than one STFT frame
    (:func:`load_audio` with ``min_samples``), or fewer frames than one segment (:func:`cnnrnn.features.segment`)."""

    def __init__(self, message: str):
        super().__init__(message, "too_short")


class Clip:
    """A waveform in memory that stands in for an audio file: a window cut from a long recording
    (:func:`windows`; :func:`cnnrnn.predict.predict` with ``window``). Every family's prediction takes a list of
    clips as its input: :func:`load_audio` reads a clip as it reads a file, :func:`input_id` and
    :func:`input_source` name its prediction row.

    Attributes:
        id: the id of its prediction row (``<file stem>@<start in seconds>`` for a window).
        source: the file it was cut from.
        y: ``(samples,) float32`` mono waveform at ``sr`` Hz.
        sr: sample rate in Hz.
        start_s: where it starts in ``source``, in seconds.
    """

    __slots__ = ("id", "source", "y", "sr", "start_s")

    def __init__(self, id: str, source: str | Path, y: np.ndarray, sr: int, start_s: float = 0.0):
        self.id, self.source, self.y, self.sr, self.start_s = str(id), str(source), y, int(sr), float(start_s)

    def __str__(self) -> str:  # how a skipped clip is listed
        return self.id

    def __repr__(self) -> str:
        return f"Clip({self.id!r}, {len(self.y) / self.sr:.3f} s at {self.sr} Hz)"

    def __reduce__(self):  # picklable (a worker process may extract its features)
        return (Clip, (self.id, self.source, np.asarray(self.y), self.sr, self.start_s))


def input_id(item: str | Path | Clip) -> str:
    """The prediction row id of an input: a file's stem, or a :class:`Clip`'s ``id``."""
    return item.id if isinstance(item, Clip) else Path(item).stem


def input_source(item: str | Path | Clip) -> str:
    """The ``source`` column of an input: a file's path, or the file a :class:`Clip` was cut from."""
    return item.source if isinstance(item, Clip) else str(item)


def load_audio(path: str | Path | Clip, sr: int | None = None, *, check: bool = True,
               max_seconds: float | None = MAX_AUDIO_SECONDS, min_samples: int = 0) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32, resampled to ``sr``.

    Decoding uses soundfile (libsndfile); stereo is averaged to mono (the mean of the channels, as
    ``librosa.to_mono``); resampling uses soxr (:func:`resample`: ``librosa.resample(res_type="soxr_hq")``'s
    numbers, without importing librosa, whose first call costs seconds), as ``librosa.load`` does, but without
    librosa's silent audioread fallback so that a corrupt file fails clearly. The header is read first
    (``soundfile.info``): a sample rate outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] Hz or a length
    over ``max_seconds`` is refused before anything is decoded or resampled (a header claiming 200,000 frames at
    1 Hz would otherwise ask for 12.8 GB at 16 kHz).

    A :class:`Clip` (a waveform in memory, e.g. a window of a long recording) is read as a file would be: the
    same checks, resampled to ``sr`` when its rate differs.

    Args:
        path: audio file (wav, flac, ogg, ...), or a :class:`Clip`.
        sr: target sample rate in Hz, or ``None`` to keep the file's rate.
        check: reject empty, all-silent and non-finite audio.
        max_seconds: longest audio accepted, in seconds (``None``: no limit).
        min_samples: fewest samples accepted after resampling (e.g. ``n_fft``: one STFT frame).

    Returns:
        ``(y, sr)``: ``y`` is ``(samples,) float32``; ``sr`` in Hz.

    A truncated file (its header promises more audio than it holds: :func:`missing_seconds`) is decoded as far as it
    goes, with one warning (logger ``cnnrnn.audio``) naming the file and the seconds missing.

    Raises:
        AudioError: the file is missing (``missing``), unreadable (``unreadable``), empty, silent or holds
            NaN/inf (``empty``, ``silent``, ``not_finite``; with ``check``), has channels that cancel in the mono
            mix (``channels_cancel``, :func:`check_channels`; with ``check``), states an absurd sample rate
            (``bad_sample_rate``) or is longer than ``max_seconds`` (``too_long``);
            :class:`ClipTooShortError` (``too_short``): fewer than ``min_samples`` samples at ``sr``.
    """
    import soundfile as sf

    if isinstance(path, Clip):
        check_header(path, path.sr, len(path.y), max_seconds)
        return _shaped(np.asarray(path.y, np.float32), path.sr, sr, check, min_samples, path)
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: file not found", "missing")
    die_if_fault_target(path.name)  # fault injection for tests (FAULT_KILL_WORKER_ENV), in pool workers only
    try:
        info = sf.info(str(path))
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{path}: cannot decode audio ({exc})", "unreadable") from exc
    check_header(path, int(info.samplerate), int(info.frames), max_seconds)
    try:
        data, file_sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises LibsndfileError/RuntimeError/TypeError
        raise AudioError(f"{path}: cannot decode audio ({exc})", "unreadable") from exc
    check_header(path, int(file_sr), data.shape[0], max_seconds)  # what was decoded, if the header understated it
    missing = missing_seconds(info, data.shape[0])
    if missing is not None:
        import logging

        logging.getLogger("cnnrnn.audio").warning(
            "%s is truncated: its header promises %.2f s of audio but the file holds %.2f s (%.2f s missing: an "
            "interrupted copy, download or recording?); using the %.2f s it holds", path,
            data.shape[0] / file_sr + missing, data.shape[0] / file_sr, missing, data.shape[0] / file_sr)
    y = np.mean(np.ascontiguousarray(data.T), axis=0) if data.shape[1] > 1 else data[:, 0]  # librosa.to_mono
    if check and data.shape[1] > 1:
        check_channels(data, y, path)
    return _shaped(y, int(file_sr), sr, check, min_samples, path)


#: Data sizes that streaming writers put in a WAV header when the length is not known yet (``ffmpeg`` to a pipe,
#: ``arecord``): at or above this many bytes, a data size larger than the file is a placeholder, not truncation.
STREAMING_DATA_SIZE = 0x7F000000
#: Audio missing at the end of a file, in seconds, below which :func:`missing_seconds` says nothing (a codec's
#: rounding of its frame count).
TRUNCATION_TOLERANCE_S = 0.01


def missing_seconds(info, decoded_frames: int) -> float | None:
    """How much audio a file's header promises that the file does not hold (a truncated file: an interrupted copy,
    download or recording), in seconds, or ``None`` when nothing is missing. Costs nothing beyond the
    ``soundfile.info`` already read.

    Two signs, from libsndfile: for WAV (and other chunked formats) the log it keeps of the header
    (``info.extra_info``: ``data : 96000 (should be 32000)``, a data chunk larger than what follows it; libsndfile
    then reads only what is there), sizes at or above :data:`STREAMING_DATA_SIZE` aside; for other formats (MP3,
    ...) fewer frames decoded than the header's ``info.frames``. Less than :data:`TRUNCATION_TOLERANCE_S` is
    ignored.

    Args:
        info: ``soundfile.info(path)``. decoded_frames: the frames ``soundfile.read`` gave.
    """
    import re

    sr = int(info.samplerate)
    missing = max(0, int(info.frames) - int(decoded_frames)) / sr
    match = re.search(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", info.extra_info or "", re.MULTILINE)
    if match:
        claimed, held = int(match.group(1)), int(match.group(2))
        if held < claimed < STREAMING_DATA_SIZE:
            rate = re.search(r"Bytes/sec\s*:\s*(\d+)", info.extra_info)
            align = re.search(r"Block Align\s*:\s*(\d+)", info.extra_info)
            per_second = (int(rate.group(1)) if rate else 0) or (int(align.group(1)) * sr if align else 0)
            if per_second > 0:
                missing = max(missing, (claimed - held) / per_second)
    return missing if missing >= TRUNCATION_TOLERANCE_S else None


#: A multichannel file whose mono mix (the mean of its channels) is this many dB quieter than its channels (RMS)
#: has channels that cancel: one is the other inverted (a miswired microphone or a phase-inverted cable).
CANCEL_DB = 40.0


def check_channels(data: np.ndarray, mix: np.ndarray, source: str | Path = "<array>",
                   silence_peak: float = 1e-6) -> None:
    """Refuse a multichannel recording whose channels cancel in the mono mix (channels in antiphase): the channels
    hold sound but their mean is silent, or :data:`CANCEL_DB` dB quieter than they are.

    Args:
        data: ``(frames, channels)`` float waveform. mix: its mono mix ``(frames,)`` (the mean of the channels).
        source: the file, for the message. silence_peak: the peak below which audio is silent.

    Raises:
        AudioError: reason ``channels_cancel``, with what to do (use one channel).
    """
    if data.size == 0:
        return  # check_waveform says what is wrong (NaN or inf fail every comparison below: the same)
    flat = np.ravel(data)  # no copy: sums of squares and peaks without temporary arrays of the file's size
    peak = float(max(flat.max(), -flat.min()))
    if not peak >= silence_peak:
        return  # silent channels: check_waveform's "audio is silent"
    channel_rms = float(np.sqrt(np.dot(flat, flat) / flat.size))
    mix_rms = float(np.sqrt(np.dot(mix, mix) / max(mix.size, 1)))
    silent_mix = float(max(mix.max(), -mix.min())) < silence_peak
    if silent_mix or mix_rms < channel_rms * 10 ** (-CANCEL_DB / 20):
        drop = "silent" if silent_mix else f"{20 * np.log10(channel_rms / max(mix_rms, 1e-30)):.0f} dB quieter"
        raise AudioError(f"{source}: its {data.shape[1]} channels cancel out in the mono mix (channels in antiphase: "
                         f"one is the other inverted, e.g. a miswired microphone); the channels hold sound (peak "
                         f"{peak:.3g}) but their mean is {drop}. Use one channel: e.g. sox in.wav out.wav remix 1, or "
                         "ffmpeg -i in.wav -af 'pan=mono|c0=c0' out.wav", "channels_cancel")


def _shaped(y: np.ndarray, file_sr: int, sr: int | None, check: bool, min_samples: int,
            source) -> tuple[np.ndarray, int]:
    """The end of :func:`load_audio`: checks, resampling to ``sr`` (soxr_hq), the ``min_samples`` check."""
    if check:
        check_waveform(y, source)
    if sr is not None and file_sr != sr:
        y = resample(y, file_sr, sr)
        file_sr = sr
    check_min_samples(y, min_samples, source, file_sr)
    return np.ascontiguousarray(y, dtype=np.float32), int(file_sr)


def resample(y: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample a mono waveform with soxr (quality ``soxr_hq``): the same samples as
    ``librosa.resample(y, orig_sr=orig_sr, target_sr=target_sr, res_type="soxr_hq")`` (tested), without importing
    librosa (whose resample costs about 2 s of scipy.signal and numba imports in a fresh process).

    Args:
        y: ``(samples,)`` float waveform. orig_sr, target_sr: rates in Hz.

    Returns:
        ``(ceil(samples * target_sr / orig_sr),) float32`` (cut or zero-padded to that length, as librosa's
        ``fix=True``).
    """
    import soxr

    y = np.asarray(y, np.float32)
    if orig_sr == target_sr:
        return y
    out = np.asarray(soxr.resample(y, orig_sr, target_sr, quality="soxr_hq"), np.float32)
    n = int(np.ceil(len(y) * target_sr / orig_sr))
    return out[:n] if len(out) >= n else np.pad(out, (0, n - len(out)))


def check_min_samples(y: np.ndarray, min_samples: int, source: str | Path = "<array>", sr: int | None = None) -> None:
    """Raise :class:`ClipTooShortError` (reason ``too_short``) when ``y`` has fewer than ``min_samples`` samples
    (``n_fft``: one STFT frame; ``sr`` in Hz, for the message only)."""
    if y.shape[0] < min_samples:
        rate = f" at {sr} Hz" if sr else ""
        raise ClipTooShortError(f"{source}: {y.shape[0]} sample(s){rate} is shorter than one STFT frame "
                                f"(n_fft = {min_samples} samples)")


def check_header(path: str | Path, sample_rate: int, frames: int,
                 max_seconds: float | None = MAX_AUDIO_SECONDS) -> None:
    """Refuse a file whose sample rate is absurd or whose length is over ``max_seconds``, before decoding it.

    Args:
        path: the file, for the message.
        sample_rate: its rate in Hz; frames: its length in samples (per channel), as its header states them.
        max_seconds: longest audio accepted, in seconds (``None``: no limit).

    Raises:
        AudioError: reason ``bad_sample_rate`` (outside [:data:`MIN_SAMPLE_RATE`, :data:`MAX_SAMPLE_RATE`] Hz)
            or ``too_long``.
    """
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{path}: sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz "
                         "(a broken or hostile header?)", "bad_sample_rate")
    if max_seconds is not None and frames > max_seconds * sample_rate:
        raise AudioError(f"{path}: {frames / sample_rate:.1f} s of audio ({frames} frames at {sample_rate} Hz) is "
                         f"longer than max_audio_seconds = {max_seconds:g} s; raise max_audio_seconds to use it",
                         "too_long")


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


#: Silence detection of :func:`silence_mask`: a frame is silent when its RMS is more than this many dB below the
#: recording's loudest frame (``librosa.effects.split(top_db=...)``; librosa's default is 60 dB, which keeps
#: breaths and room noise as sound; 40 dB separates speech from pauses in a quiet room).
SILENCE_TOP_DB = 40.0
#: A window is silence when less than this fraction of its samples (of the recording, padding not counted) lies
#: in the non-silent intervals.
SILENCE_MIN_VOICED = 0.25


def windows(y: np.ndarray, sr: int, window_s: float, hop_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Cut a waveform into windows of ``window_s`` seconds every ``hop_s`` seconds, covering it to its end.

    Windows start at 0, ``hop_s``, ``2 * hop_s``, ... until one reaches the last sample (with ``hop_s`` over
    ``window_s``, the windows skip the samples between them and none starts past the end); the last window is
    zero-padded past the end (as a short training clip is, :func:`pad_or_trim`), and so is the only window of a
    waveform shorter than ``window_s``. Lengths are rounded to whole samples.

    Args:
        y: ``(samples,)`` waveform at ``sr`` Hz (at least one sample).
        sr: sample rate in Hz.
        window_s: window length in seconds (> 0). hop_s: hop between window starts in seconds (> 0).

    Returns:
        ``(starts_s, frames)``: ``(n,) float64`` start times in seconds, and ``(n, round(window_s * sr))
        float32`` windows, a read-only strided view of one zero-padded copy of ``y`` (no copy per window).

    Raises:
        ValueError: ``window_s`` or ``hop_s`` not > 0 (or under one sample), or an empty ``y``.
    """
    width, hop = int(round(window_s * sr)), int(round(hop_s * sr))
    if not window_s > 0 or width < 1:
        raise ValueError(f"the window must be longer than one sample (> 0 s), got {window_s} s")
    if not hop_s > 0 or hop < 1:
        raise ValueError(f"the hop must be longer than one sample (> 0 s), got {hop_s} s")
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"need a non-empty (samples,) waveform, got shape {y.shape}")
    # until a window reaches the last sample, and never a window that starts past it (hop > window)
    n = max(1, min(1 + -(-(len(y) - width) // hop), -(-len(y) // hop)))
    padded = np.zeros(max(len(y), (n - 1) * hop + width), np.float32)
    padded[: len(y)] = y
    frames = np.lib.stride_tricks.sliding_window_view(padded, width)[::hop][:n]
    return np.arange(n) * hop / sr, frames


def voiced_fraction(y: np.ndarray, sr: int, starts_s: Sequence[float], window_s: float,
                    top_db: float = SILENCE_TOP_DB) -> np.ndarray:
    """The fraction of each window's samples that lie in the non-silent intervals of the whole recording
    (``librosa.effects.split(y, top_db=top_db)``: frames of 2048 samples every 512, RMS in dB relative to the
    recording's loudest frame, not the window's, so a quiet window of a loud recording is silence).

    Args:
        y: ``(samples,)`` waveform at ``sr`` Hz. starts_s: window starts in seconds (:func:`windows`).
        window_s: window length in seconds. top_db: the threshold in dB below the loudest frame.

    Returns:
        ``(n,) float64`` in [0, 1], over the part of each window inside ``y`` (its padding is not counted).
    """
    import librosa

    intervals = librosa.effects.split(np.asarray(y, np.float32), top_db=top_db)  # sorted, disjoint
    width = int(round(window_s * sr))
    begin = np.round(np.asarray(starts_s, dtype=float) * sr).astype(np.int64)
    end = np.minimum(begin + width, len(y))
    if not len(intervals):
        return np.zeros(len(begin))
    first, length = intervals[:, 0], intervals[:, 1] - intervals[:, 0]
    before = np.concatenate([[0], np.cumsum(length)])  # voiced samples before each interval starts

    def voiced_until(t: np.ndarray) -> np.ndarray:  # voiced samples in [0, t)
        j = np.maximum(np.searchsorted(first, t, side="right") - 1, 0)  # the last interval starting at or before t
        return before[j] + np.clip(t - first[j], 0, length[j])

    return (voiced_until(end) - voiced_until(begin)) / np.maximum(end - begin, 1)


def silence_mask(y: np.ndarray, sr: int, starts_s: Sequence[float], window_s: float,
                 top_db: float = SILENCE_TOP_DB, min_voiced: float = SILENCE_MIN_VOICED) -> np.ndarray:
    """``(n,) bool``: True for the windows that are silence, whose :func:`voiced_fraction` is below
    ``min_voiced`` (:data:`SILENCE_TOP_DB`, :data:`SILENCE_MIN_VOICED`)."""
    return voiced_fraction(y, sr, starts_s, window_s, top_db) < min_voiced


#: How :func:`change_speed` changes the speed: ``speed`` (resampling: tempo and pitch together, Kaldi-style) or
#: ``tempo`` (time stretch: pitch kept).
SPEED_METHODS = ("speed", "tempo")
#: Speed factors must lie strictly inside this range.
SPEED_RANGE = (0.5, 2.0)


def change_speed(y: np.ndarray, sr: int, factor: float, method: str = "speed") -> np.ndarray:
    """Play a waveform ``factor`` times faster (speed perturbation), with audiomentations.

    * ``speed``: Kaldi-style speed perturbation (Ko, Peddinti, Povey & Khudanpur, "Audio augmentation for
      speech recognition", Interspeech 2015; sox ``speed``): the clip is resampled from ``sr`` to
      ``round(sr / factor)`` Hz (``audiomentations.Resample``, librosa/soxr) and read back at ``sr``, so
      tempo and pitch both change by ``factor`` (formants move, as for another vocal tract).
    * ``tempo``: ``audiomentations.TimeStretch`` (Signalsmith Stretch), length changed, pitch kept.

    Deterministic: the transforms are built with ``p=1`` and ``min == max``, so Python's global ``random``
    state (which audiomentations draws from) does not change the result.

    Args:
        y: ``(samples,)`` float32 waveform at ``sr`` Hz.
        sr: sample rate in Hz.
        factor: speed factor in (0.5, 2) (:data:`SPEED_RANGE`); > 1 is faster (shorter), 1 returns ``y``.
        method: one of :data:`SPEED_METHODS`.

    Returns:
        ``(round(samples / factor),) float32`` (to within one sample), still at ``sr`` Hz.

    Raises:
        ValueError: ``factor`` outside (0.5, 2) or an unknown ``method``.
    """
    if method not in SPEED_METHODS:
        raise ValueError(f"unknown speed perturbation method {method!r}; use one of {SPEED_METHODS}")
    if not SPEED_RANGE[0] < factor < SPEED_RANGE[1]:
        raise ValueError(f"speed factor must be in ({SPEED_RANGE[0]}, {SPEED_RANGE[1]}), got {factor}")
    y = np.asarray(y, dtype=np.float32)
    if factor == 1.0:
        return y
    if method == "speed":
        from audiomentations import Resample

        rate = int(round(sr / factor))
        transform = Resample(min_sample_rate=rate, max_sample_rate=rate, p=1.0)
    else:
        from audiomentations import TimeStretch

        transform = TimeStretch(min_rate=factor, max_rate=factor, leave_length_unchanged=False, p=1.0)
    return np.ascontiguousarray(transform(samples=y, sample_rate=int(sr)), dtype=np.float32)


def list_audio(folder: str | Path, extensions: tuple[str, ...] = AUDIO_EXTENSIONS) -> list[Path]:
    """Every file under ``folder`` (recursive, sorted) whose suffix is in ``extensions``; temporary files of an
    interrupted atomic write (:func:`cnnrnn.artifacts.is_temporary`) are left out."""
    from .artifacts import is_temporary

    return sorted(p for p in Path(folder).rglob("*")
                  if p.suffix.lower() in extensions and p.is_file() and not is_temporary(p))


def load_each(paths: Sequence[str | Path | Clip], load: Callable[[Path], T], *, desc: str = "files",
              progress: bool = True) -> tuple[list[int], list[T], dict[str, list[str]]]:
    """Apply ``load`` to every file, counting unusable audio as a skip instead of failing.

    The one per-file loop of every family's prediction and feature code: an :class:`AudioError` (missing,
    unreadable, empty, silent, not finite, too short, ...) skips the file, counted under its ``reason`` and
    logged; anything else propagates.

    Args:
        paths: files to process (or :class:`Clip` s, handed to ``load`` as they are).
        load: ``load(path)`` → the file's features (or image, or segments).
        desc: progress bar label.
        progress: show a tqdm progress bar (only for two files or more).

    Returns:
        ``(kept, results, skipped)``: indices into ``paths`` of the files that loaded, their results in
        the same order, and ``{reason: [path, ...]}``.
    """
    import logging

    log = logging.getLogger("cnnrnn.audio")
    kept: list[int] = []
    results: list[T] = []
    skipped: dict[str, list[str]] = {}
    items = paths
    if progress and len(paths) >= 2:  # tqdm only when its bar is shown (its import is not free)
        from tqdm import tqdm

        items = tqdm(paths, desc=desc, unit="file")
    for i, path in enumerate(items):
        try:
            results.append(load(path if isinstance(path, Clip) else Path(path)))
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(path))
            log.warning("skipped %s", exc)
            continue
        kept.append(i)
    return kept, results, skipped
