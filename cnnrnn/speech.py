"""Speech detection: is there a voice in this audio, before an emotion is given to it?

The detector is Silero VAD v6 (Silero Team, https://github.com/snakers4/silero-vad, MIT licence), run through
onnxruntime without torch: its ``silero_vad_16k_sequence.onnx`` (from the ``silero-vad`` 6.2.3 wheel, sha256
``9ccdacc4…8a85``, 1.25 MB) ships in ``cnnrnn/pretrained/silero_vad/`` with its ``LICENSE``; nothing is
downloaded. That file is Silero's batched export of its streaming model: the same per-frame speech probabilities,
bit for bit (checked against ``silero_vad.onnx`` on the debate recording, white noise, DC and music), in one
onnxruntime call per 16 s instead of one per frame.

The decision is Silero's, with its own defaults: the audio, at 16 kHz, is cut into frames of
:data:`FRAME_SAMPLES` (32 ms; each sees the :data:`CONTEXT_SAMPLES` before it, the LSTM state carried from frame
to frame from zero, as Silero runs it); a frame is speech when its probability reaches
:data:`SPEECH_THRESHOLD` (0.5, Silero's ``threshold``); audio is speech when it holds at least :data:`MIN_SPEECH_S`
of speech frames (0.25 s, Silero's ``min_speech_duration_ms``), or half of itself when it is shorter than twice
that (:func:`enough_speech`). ``benchmarks/speech_detection.py`` measures it against webrtcvad, which fires on white
noise and harmonic music (``benchmarks/results/speech_detection.json``).

:data:`NO_SPEECH` is the label of a file or window that is not speech, in ``predictions.csv``, ``timeline.csv``
and the summaries of :mod:`cnnrnn.predict`; its probabilities are NaN and its ``predicted_index``
:data:`NO_SPEECH_INDEX`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

#: The label of audio that is not speech (a file's row in ``predictions.csv``, a window's in ``timeline.csv``).
NO_SPEECH = "no_speech"
#: The ``predicted_index`` of a :data:`NO_SPEECH` row, and its code for :func:`cnnrnn.evaluation.classification_metrics`
#: (which counts it as an error).
NO_SPEECH_INDEX = -1
#: Sample rate in Hz the detector runs at (the ONNX file is the 16 kHz export); other rates are resampled (soxr).
VAD_SR = 16000
#: Samples per frame at :data:`VAD_SR` (32 ms), and samples of the previous frame each frame also sees.
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
#: Frames per onnxruntime call (about 16 s at 16 kHz; Silero's ``max_frames`` default).
BLOCK_FRAMES = 512
#: A frame is speech when its probability reaches this (Silero's ``threshold`` default).
SPEECH_THRESHOLD = 0.5
#: Audio is speech when at least this many seconds of it are speech frames (Silero's ``min_speech_duration_ms``
#: default, 250 ms), or half of it when it is shorter than twice this.
MIN_SPEECH_S = 0.25
#: The shipped model file and its folder (with ``LICENSE``).
MODEL_DIR = Path(__file__).resolve().parent / "pretrained" / "silero_vad"
MODEL_FILE = MODEL_DIR / "silero_vad_16k_sequence.onnx"
#: What :func:`detector` says it is, for reports (``metrics.json``, the benchmark).
DETECTOR = "silero-vad 6.2.3 (silero_vad_16k_sequence.onnx, onnxruntime)"


class SpeechCheckError(OSError):
    """The speech check cannot run: onnxruntime is not installed or the model file is missing (an ``OSError``, a
    broken installation, so the CLI prints one line)."""


@lru_cache(maxsize=1)
def _session():
    """The onnxruntime session of :data:`MODEL_FILE` (one thread; loaded once per process).

    onnxruntime is imported with its telemetry off (:func:`cnnrnn.quiet.import_onnxruntime`)."""
    from .quiet import import_onnxruntime

    try:
        ort = import_onnxruntime()
    except ImportError as exc:
        raise SpeechCheckError("the speech check needs onnxruntime (pip install onnxruntime); "
                               "--classify-anyway skips it") from exc
    if not MODEL_FILE.is_file():
        raise SpeechCheckError(f"the speech detector's model {MODEL_FILE} is missing (a broken installation?); "
                               "--classify-anyway skips the check")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # no warnings about unused initialisers
    return ort.InferenceSession(str(MODEL_FILE), sess_options=options, providers=["CPUExecutionProvider"])


def frame_probabilities(y: np.ndarray, sr: int) -> np.ndarray:
    """Silero VAD's speech probability of every 32 ms frame of a waveform.

    Args:
        y: ``(samples,)`` float mono waveform in [-1, 1] at ``sr`` Hz.
        sr: its sample rate in Hz (resampled to :data:`VAD_SR` with soxr when different).

    Returns:
        ``(ceil(samples at 16 kHz / 512),) float32`` in [0, 1]; frame ``i`` covers ``[i, i + 1) * 0.032`` s (the
        last one zero-padded). Empty for an empty ``y``.

    Raises:
        SpeechCheckError: onnxruntime or the model file is missing.
    """
    from .audio import resample

    y = np.asarray(y, np.float32).reshape(-1)
    if sr != VAD_SR:
        y = resample(y, int(sr), VAD_SR)
    n = -(-len(y) // FRAME_SAMPLES)
    if n == 0:
        return np.zeros(0, np.float32)
    padded = np.zeros(CONTEXT_SAMPLES + n * FRAME_SAMPLES, np.float32)  # the first frame's context: zeros
    padded[CONTEXT_SAMPLES: CONTEXT_SAMPLES + len(y)] = np.clip(y, -1.0, 1.0)
    # frame i = the 64 samples before it + its 512 samples (zeros before the first)
    frames = np.lib.stride_tricks.sliding_window_view(padded, CONTEXT_SAMPLES + FRAME_SAMPLES)[::FRAME_SAMPLES][:n]
    session = _session()
    h = np.zeros((1, 1, 128), np.float32)
    c = np.zeros((1, 1, 128), np.float32)
    out = []
    for first in range(0, n, BLOCK_FRAMES):
        p, h, c = session.run(["speech_probs", "hn", "cn"],
                              {"input": np.ascontiguousarray(frames[first: first + BLOCK_FRAMES]), "h": h, "c": c})
        out.append(np.asarray(p, np.float32).reshape(-1))
    return np.concatenate(out)


def enough_speech(speech_s: float | np.ndarray, duration_s: float | np.ndarray) -> bool | np.ndarray:
    """Whether audio of ``duration_s`` seconds holding ``speech_s`` seconds of speech frames is speech: at least
    :data:`MIN_SPEECH_S`, or half its length when that is less (a 0.3 s word). Works elementwise on arrays."""
    need = np.minimum(MIN_SPEECH_S, np.asarray(duration_s, float) / 2)
    result = (np.asarray(speech_s, float) >= need) & (np.asarray(speech_s, float) > 0)
    return bool(result) if result.ndim == 0 else result


def speech_seconds(y: np.ndarray, sr: int) -> float:
    """Seconds of speech in a waveform: 32 ms per frame whose :func:`frame_probabilities` reaches
    :data:`SPEECH_THRESHOLD`, at most the waveform's length (its last frame is padded). ``y``: ``(samples,)``
    float at ``sr`` Hz."""
    p = frame_probabilities(y, sr)
    return float(min(np.count_nonzero(p >= SPEECH_THRESHOLD) * FRAME_SAMPLES / VAD_SR, len(y) / sr))


def speech_fraction(y: np.ndarray, sr: int) -> float:
    """The fraction, in [0, 1], of a waveform's 32 ms frames that are speech (:func:`speech_seconds`); 0.0 for
    an empty one. ``y``: ``(samples,)`` float at ``sr`` Hz."""
    p = frame_probabilities(y, sr)
    return float(np.mean(p >= SPEECH_THRESHOLD)) if len(p) else 0.0


def is_speech(y: np.ndarray, sr: int) -> bool:
    """Whether a waveform is speech (:func:`enough_speech` of its :func:`speech_seconds`): the check that
    ``cnnrnn predict`` runs on every audio file before it gives it an emotion.

    Args:
        y: ``(samples,)`` float mono waveform in [-1, 1]. sr: its rate in Hz.

    Raises:
        SpeechCheckError: onnxruntime or the model file is missing.
    """
    return bool(enough_speech(speech_seconds(y, sr), len(y) / sr))


def window_speech(y: np.ndarray, sr: int, starts_s: Sequence[float], window_s: float) -> np.ndarray:
    """Seconds of speech in each window of a recording (long-recording prediction, beside
    :func:`cnnrnn.audio.voiced_fraction`): the recording's frames are scored once, in order (the detector's state
    runs through the whole recording), and each window counts its frames whose centre lies inside it.

    Args:
        y: ``(samples,)`` float waveform at ``sr`` Hz. starts_s: window starts in seconds
            (:func:`cnnrnn.audio.windows`). window_s: window length in seconds.

    Returns:
        ``(n,) float64`` seconds of speech per window, at most the part of the window inside ``y``; pass them
        with that length to :func:`enough_speech`.
    """
    p = frame_probabilities(y, sr)
    frame_s = FRAME_SAMPLES / VAD_SR
    centres = (np.arange(len(p)) + 0.5) * frame_s
    before = np.concatenate([[0], np.cumsum(p >= SPEECH_THRESHOLD)])  # speech frames before frame i
    begin = np.asarray(starts_s, float)
    end = np.minimum(begin + window_s, len(y) / sr)
    count = before[np.searchsorted(centres, end)] - before[np.searchsorted(centres, begin)]
    return np.minimum(count * frame_s, np.maximum(end - begin, 0.0))


def no_speech_rows(table, mask) -> None:
    """Mark the rows ``mask`` (``(N,) bool``) of a ``predictions.csv`` / ``timeline.csv`` DataFrame as
    ``no_speech`` in place: label :data:`cnnrnn.speech.NO_SPEECH`, NaN probabilities and confidence, and
    ``predicted_index`` :data:`cnnrnn.speech.NO_SPEECH_INDEX` where the table has that column."""
    import numpy as np

    mask = np.asarray(mask, bool)
    pcols = [c for c in table.columns if str(c).startswith("p_")]
    table.loc[mask, pcols + ["confidence"]] = np.nan
    table.loc[mask, "predicted" if "predicted" in table.columns else "label"] = NO_SPEECH
    if "predicted_index" in table.columns:
        table.loc[mask, "predicted_index"] = NO_SPEECH_INDEX
        table["predicted_index"] = table["predicted_index"].astype(int)
