"""Feature front ends other than the CNNRNN log-mel image: DCNN-BLSTMwA's Δ channels and segments, YAMNet's and
Whisper's own log-mel (numpy reimplementations of their front ends). Re-exported by :mod:`cnnrnn.features`.

**DCNN-BLSTMwA features** (Zhang et al., "Pre-trained Deep Convolution Neural Network Model With
Attention for Speech Emotion Recognition", Frontiers in Physiology 2021; the DCNN-BLSTMWA code):
:func:`log_mel_deltas` (static log-mel, Δ, ΔΔ, each min-max scaled), :func:`segment` (64-frame segments,
hop 32) and :func:`to_backbone_input` (resize + ImageNet normalisation), called with plain keyword
arguments.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifacts import atomic_write_bytes
from .audio import MAX_AUDIO_SECONDS, ClipTooShortError, change_speed, check_min_samples, load_audio, pad_or_trim
from .config import ConfigError
from .mel import _hann, mel_filters


# --------------------------------------------------------------------------- DCNN-BLSTMwA: Δ channels, segments
#: ImageNet channel mean / std (RGB, for [0, 1] inputs), as torchvision normalises for AlexNet/ResNet.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOG_EPS = 1e-8
#: A channel whose range (max - min) is below this is treated as constant and scaled to 0.
MIN_SPAN = 1e-6


def n_segments(n_frames: int, segment_frames: int = 64, segment_hop: int = 32) -> int:
    """Segments in ``n_frames`` frames: ``1 + (n_frames - segment_frames) // segment_hop``, 0 if too short."""
    return 0 if n_frames < segment_frames else 1 + (n_frames - segment_frames) // segment_hop


def log_mel_deltas(y: np.ndarray, *, sr: int, n_fft: int, hop_length: int, n_mels: int, fmin: float,
                   fmax: float | None, delta_width: int = 5) -> np.ndarray:
    """Three-channel log-mel of a waveform (DCNN-BLSTMwA): static ``log(mel + 1e-8)``, Δ and ΔΔ.

    The mel spectrogram is ``librosa.feature.melspectrogram(power=2, htk=True, norm="slaney")`` with
    ``win_length = n_fft``; Δ and ΔΔ are ``librosa.feature.delta(width=delta_width)`` of the static
    channel, computed in float64 (a float32 Δ of a constant leaves ~1e-6 noise).

    Args:
        y: ``(samples,) float32`` at ``sr`` Hz, long enough for ``delta_width`` frames.
        sr, n_fft, hop_length: sample rate in Hz, window and hop in samples.
        n_mels, fmin, fmax: mel bands and band edges in Hz (``fmax`` ``None`` = ``sr / 2``).
        delta_width: odd ``librosa.feature.delta`` window, ≥ 3.

    Returns:
        ``(n_mels, frames, 3) float32``, each channel min-max scaled to [0, 1] over the utterance (a
        constant channel, range < :data:`MIN_SPAN`, becomes 0).
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=sr, n_fft=n_fft, win_length=n_fft, hop_length=hop_length, n_mels=n_mels,
        fmin=fmin, fmax=fmax or sr / 2, power=2.0, htk=True, norm="slaney")
    static = np.log(mel.astype(np.float64) + LOG_EPS)
    channels = [static, librosa.feature.delta(static, width=delta_width, order=1),
                librosa.feature.delta(static, width=delta_width, order=2)]
    out = np.stack(channels, axis=-1).astype(np.float32)
    lo = out.min(axis=(0, 1), keepdims=True)
    span = out.max(axis=(0, 1), keepdims=True) - lo
    flat = span < MIN_SPAN  # e.g. the Δ of a constant: round-off only, which min-max would blow up to [0, 1]
    return np.where(flat, 0, (out - lo) / np.where(flat, 1, span)).astype(np.float32)


def segment(features: np.ndarray, segment_frames: int = 64, segment_hop: int = 32) -> np.ndarray:
    """Cut ``(n_mels, frames, C)`` features into ``(n_segments, n_mels, segment_frames, C)`` (a copy).

    Frames after the last full segment are dropped, as in the DCNN-BLSTMWA code.

    Raises:
        ClipTooShortError: fewer than ``segment_frames`` frames.
    """
    count = n_segments(features.shape[1], segment_frames, segment_hop)
    if count == 0:
        raise ClipTooShortError(f"{features.shape[1]} frames is shorter than one segment ({segment_frames} "
                                "frames); raise max_sec or lower segment_frames")
    starts = np.arange(count) * segment_hop
    return np.stack([features[:, s:s + segment_frames] for s in starts]).astype(np.float32)


def to_backbone_input(segments, image_size):
    """Resize segments to the DCNN input and apply the ImageNet mean/std normalisation.

    Works on numpy arrays and inside ``tf.data`` maps (TensorFlow ops, bilinear resize).

    Args:
        segments: ``(batch, n_mels, segment_frames, 3)`` float32 in [0, 1].
        image_size: ``(H, W)`` in pixels.

    Returns:
        ``(batch, H, W, 3) float32`` tensor, ``(x - mean) / std`` per channel.
    """
    import tensorflow as tf

    x = tf.image.resize(tf.convert_to_tensor(segments, tf.float32), [int(v) for v in image_size])
    return (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)


# --------------------------------------------------------------------------- YAMNet front end
# The log-mel of YAMNet (tensorflow/models research/audioset/yamnet: params.py and features.py, the
# TFLite-compatible path): 16 kHz, periodic Hann window of 0.025 s, hop 0.010 s, FFT length the next power
# of 2 (512), magnitude spectrum, 64 HTK mel bands 125-7500 Hz (tf.signal.linear_to_mel_weight_matrix),
# log(mel + 0.001); patches of 96 frames (0.96 s) every 48 frames (0.48 s). YAMNet was trained on AudioSet
# (Gemmeke et al., ICASSP 2017) with the CNN recipe of Hershey et al. (ICASSP 2017).
YAMNET_SR = 16000
YAMNET_WINDOW_SECONDS = 0.025
YAMNET_HOP_SECONDS = 0.010
YAMNET_N_MELS = 64
YAMNET_FMIN = 125.0
YAMNET_FMAX = 7500.0
YAMNET_LOG_OFFSET = 0.001
YAMNET_PATCH_FRAMES = 96
YAMNET_PATCH_HOP = 48
#: The spectrogram settings of ``spectrogram.kind: yamnet`` (CNNRNN): YAMNet's front end. Its 25 ms (400-sample)
#: window is zero-padded to an FFT of 512; ``n_fft`` is also the shortest clip loaded (:func:`load_clip`).
YAMNET_SPECTROGRAM = {"sr": YAMNET_SR, "n_mels": YAMNET_N_MELS, "fmin": YAMNET_FMIN, "fmax": YAMNET_FMAX,
                      "n_fft": 512, "hop_length": 160}
#: The natural-log mel values that pixels 0 and 255 of a kind ``yamnet`` image stand for: ``log(0.001)`` (the
#: floor of ``log(mel + 0.001)``, digital silence) to ``log(1000)``; one level is 0.054. Measured on 107
#: peak-normalised EmoDB clips at 16 kHz: values from -6.91 to 5.14 (99th percentile of the clips' maxima 4.79).
YAMNET_IMAGE_RANGE = (float(np.log(YAMNET_LOG_OFFSET)), float(-np.log(YAMNET_LOG_OFFSET)))


def yamnet_frames(n_samples: int, *, sr: int = YAMNET_SR, window_seconds: float = YAMNET_WINDOW_SECONDS,
                  hop_seconds: float = YAMNET_HOP_SECONDS) -> int:
    """Frames of :func:`yamnet_log_mel` for a clip of ``n_samples`` samples: ``1 + (n - 400) // 160`` at 16 kHz
    (no centring; 0 when shorter than one window). 2 s: 198 frames."""
    window, hop = int(round(sr * window_seconds)), int(round(sr * hop_seconds))
    return 0 if n_samples < window else 1 + (int(n_samples) - window) // hop


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def int8_round(x: np.ndarray, *, axis: int | tuple[int, ...] | None = -1) -> np.ndarray:
    """Symmetric int8 fake quantisation, one scale per slice: ``round(x · 127 / max|x|) · max|x| / 127``.

    What TensorFlow Lite's dynamic-range ("hybrid") kernels do to a float input before an int8-weight
    op (``tensor_utils::SymmetricQuantizeFloats``: rounding half away from zero; an all-zero slice stays 0).

    Args:
        x: float array.
        axis: the axes one scale covers (``-1``: one scale per row, as ``FULLY_CONNECTED`` quantises each
            input row; ``None``: one scale for the whole array).

    Returns:
        float32 array of ``x``'s shape, every slice on a grid of 255 levels.
    """
    x = np.asarray(x, dtype=np.float32)
    peak = np.max(np.abs(x), axis=axis, keepdims=True)
    safe = np.where(peak > 0, peak, np.float32(1))
    q = np.clip(_round_half_away(x * (np.float32(127) / safe)), -127, 127)
    return (q * (safe / np.float32(127))).astype(np.float32)


def _hertz_to_mel_htk(f):
    return 1127.0 * np.log1p(np.asarray(f, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=8)
def yamnet_mel_matrix(*, sr: int = YAMNET_SR, n_fft: int = 512, n_mels: int = YAMNET_N_MELS,
                      fmin: float = YAMNET_FMIN, fmax: float = YAMNET_FMAX) -> np.ndarray:
    """Linear-to-mel matrix of YAMNet: ``tf.signal.linear_to_mel_weight_matrix`` in numpy.

    HTK mel scale (``1127 ln(1 + f/700)``), ``n_mels`` triangles with edges evenly spaced in mel from
    ``fmin`` to ``fmax``, evaluated at the FFT bin frequencies (unnormalised, peak 1); the DC bin gets no
    weight. The cached array is read-only.

    Args:
        sr: sample rate in Hz; n_fft: FFT length in samples; n_mels: bands; fmin, fmax: band edges in Hz.

    Returns:
        ``(n_fft // 2 + 1, n_mels) float32``.
    """
    bins = n_fft // 2 + 1
    mel_bins = _hertz_to_mel_htk(np.linspace(0.0, sr / 2.0, bins)[1:])[:, None]
    edges = np.linspace(_hertz_to_mel_htk(fmin), _hertz_to_mel_htk(fmax), n_mels + 2)
    lower, center, upper = edges[:-2][None, :], edges[1:-1][None, :], edges[2:][None, :]
    weights = np.maximum(0.0, np.minimum((mel_bins - lower) / (center - lower), (upper - mel_bins) / (upper - center)))
    out = np.vstack([np.zeros((1, n_mels)), weights]).astype(np.float32)
    out.flags.writeable = False
    return out


@functools.lru_cache(maxsize=4)
def _yamnet_int8_dft(n_fft: int) -> tuple[np.ndarray, np.ndarray]:
    """The real and imaginary DFT matrices ``(n_fft, n_fft//2+1)`` rounded to int8 (scale 1/127)."""
    angle = 2 * np.pi * np.outer(np.arange(n_fft), np.arange(n_fft // 2 + 1)) / n_fft
    real, imag = (np.round(f(angle) * 127) / 127 for f in (np.cos, np.sin))
    return real.astype(np.float32), imag.astype(np.float32)


def yamnet_log_mel(y: np.ndarray, *, sr: int = YAMNET_SR, window_seconds: float = YAMNET_WINDOW_SECONDS,
                   hop_seconds: float = YAMNET_HOP_SECONDS, n_mels: int = YAMNET_N_MELS, fmin: float = YAMNET_FMIN,
                   fmax: float = YAMNET_FMAX, log_offset: float = YAMNET_LOG_OFFSET,
                   int8_rounding: bool = False) -> np.ndarray:
    """YAMNet's log-mel spectrogram of a waveform (``features.py`` of research/audioset/yamnet).

    Frames of ``window_seconds`` (400 samples) every ``hop_seconds`` (160), no centring or padding
    (``tf.signal.frame``: ``1 + (len - 400) // 160`` frames); periodic Hann window; magnitude of the real
    DFT of length the next power of 2 (512); times :func:`yamnet_mel_matrix`; ``log(mel + log_offset)``.

    Args:
        y: ``(samples,)`` float waveform at ``sr`` Hz (16 kHz for YAMNet), in [-1, 1].
        sr, window_seconds, hop_seconds, n_mels, fmin, fmax, log_offset: YAMNet's ``params.py`` values by
            default.
        int8_rounding: reproduce the TFLite file's quantised front end: each windowed frame and each
            magnitude frame rounded to int8 (:func:`int8_round`, one scale per frame) before the DFT and
            mel matrix products, both matrices themselves rounded to int8 (one scale per matrix). Off:
            the float computation (``numpy.fft.rfft``).

    Returns:
        ``(frames, n_mels) float32`` natural-log mel magnitudes (frames along axis 0; empty when
        ``len(y)`` < one window).
    """
    window = int(round(sr * window_seconds))
    hop = int(round(sr * hop_seconds))
    n_fft = 2 ** int(np.ceil(np.log2(window)))
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    count = 0 if len(y) < window else 1 + (len(y) - window) // hop
    mel = yamnet_mel_matrix(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=float(fmin), fmax=float(fmax))
    if count == 0:
        return np.zeros((0, n_mels), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(y, window)[::hop][:count]
    hann = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)).astype(np.float32)
    frames = frames * hann
    if int8_rounding:
        padded = np.zeros((count, n_fft), np.float32)
        start = (n_fft - window) // 2  # centred in the FFT frame, as _tflite_stft_magnitude pads
        padded[:, start:start + window] = int8_round(frames)
        real_m, imag_m = _yamnet_int8_dft(n_fft)
        real, imag = padded @ real_m, padded @ imag_m
        magnitude = np.sqrt(real * real + imag * imag)
        mel_scale = float(np.max(np.abs(mel))) / 127
        mel_q = (_round_half_away(mel / mel_scale) * mel_scale).astype(np.float32)
        mel_magnitude = int8_round(magnitude) @ mel_q
    else:
        magnitude = np.abs(np.fft.rfft(frames.astype(np.float64), n=n_fft, axis=1)).astype(np.float32)
        mel_magnitude = magnitude @ mel
    return np.log(mel_magnitude + np.float32(log_offset)).astype(np.float32)


def yamnet_pad_waveform(y: np.ndarray, *, sr: int = YAMNET_SR, patch_frames: int = YAMNET_PATCH_FRAMES,
                        patch_hop: int = YAMNET_PATCH_HOP, window_seconds: float = YAMNET_WINDOW_SECONDS,
                        hop_seconds: float = YAMNET_HOP_SECONDS) -> np.ndarray:
    """Zero-pad a waveform at the end to a whole number of YAMNet patches (``pad_waveform`` of features.py).

    At least one patch (0.96 s + 0.015 s = 15,600 samples at 16 kHz), then whole patch hops (7,680 samples).

    Returns:
        ``(samples',) float32``, ``samples' >= samples``.
    """
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    hop = int(round(sr * hop_seconds))
    minimum = patch_frames * hop + int(round(sr * window_seconds)) - hop
    step = patch_hop * hop
    n = max(len(y), minimum)
    n = minimum + int(np.ceil((n - minimum) / step)) * step
    return np.pad(y, (0, n - len(y)))


def yamnet_patches(log_mel: np.ndarray, *, patch_frames: int = YAMNET_PATCH_FRAMES,
                   patch_hop: int = YAMNET_PATCH_HOP) -> np.ndarray:
    """Cut a ``(frames, n_mels)`` log-mel into YAMNet patches (``tf.signal.frame`` along time; a copy).

    Returns:
        ``(n_patches, patch_frames, n_mels, 1) float32``, the YAMNet model's input (frames left over after
        the last whole patch are dropped; pad the waveform with :func:`yamnet_pad_waveform` to keep them).

    Raises:
        ClipTooShortError: fewer than ``patch_frames`` frames.
    """
    if n_segments(log_mel.shape[0], patch_frames, patch_hop) == 0:
        raise ClipTooShortError(f"{log_mel.shape[0]} frames is shorter than one YAMNet patch ({patch_frames} "
                                "frames); pad the waveform with yamnet_pad_waveform")
    return segment(np.asarray(log_mel).T[..., None], patch_frames, patch_hop).transpose(0, 2, 1, 3)


def _pretrained_front_end(kind: str):
    """``(name, settings, windows, n_mels, frames(n_samples))`` of a :data:`PRETRAINED_KINDS` kind's front end."""
    if kind == "yamnet":
        return "YAMNet", YAMNET_SPECTROGRAM, "25 ms windows zero-padded to n_fft 512, hop 10 ms", YAMNET_N_MELS, \
            yamnet_frames
    return "Whisper", WHISPER_SPECTROGRAM, "25 ms windows, hop 10 ms, 80 Slaney mel bands", WHISPER_N_MELS, \
        whisper_frames


# --------------------------------------------------------------------------- Whisper's front end
WHISPER_SR = 16000
WHISPER_N_FFT = 400
WHISPER_N_MELS = 80
WHISPER_HOP_LENGTH = 160
WHISPER_MIN_SAMPLES = 2 * WHISPER_HOP_LENGTH   # one frame pair: the stride-2 stem's smallest input (20 ms)
WHISPER_MAX_SECONDS = 30.0                      # the encoder's position table
#: The spectrogram settings of ``spectrogram.kind: whisper`` (CNNRNN): Whisper's front end (16 kHz, 400-sample Hann
#: window, hop 160, 80 Slaney bands from 0 Hz to sr/2).
WHISPER_SPECTROGRAM = {"sr": WHISPER_SR, "n_mels": WHISPER_N_MELS, "fmin": 0.0, "fmax": None, "n_fft": WHISPER_N_FFT,
                       "hop_length": WHISPER_HOP_LENGTH}
#: The values (Whisper's ``(log10(mel) + 4) / 4``) of pixels 0 and 255 of a kind ``whisper`` image: -1.5 is 10⁻¹⁰
#: power, 2.5 is 10⁶ (above any 16-bit clip's mel power: 20 EmoDB clips peak at 1.0–1.7); 0.0157 a level.
WHISPER_IMAGE_RANGE = (-1.5, 2.5)


def whisper_frames(n_samples: int) -> int:
    """Log-mel frames of a clip of ``n_samples`` at 16 kHz (``n_samples // 160``: 100 per second)."""
    return int(n_samples) // WHISPER_HOP_LENGTH


def whisper_log_mel(y: np.ndarray, *, sr: int = WHISPER_SR, n_mels: int = WHISPER_N_MELS,
                    pad_to_seconds: float | None = None) -> np.ndarray:
    """Whisper's log-mel of one clip (``openai/whisper`` ``whisper/audio.py`` ``log_mel_spectrogram``), in numpy.

    The STFT of a periodic 400-sample Hann window every 160 samples, centred with reflect padding (``torch.stft``'s
    and ``librosa.stft(pad_mode="reflect")``'s), the last frame dropped, power through the Slaney mel filters of
    :func:`mel_filters` (80 bands 0–8 kHz: Whisper's own ``mel_filters.npz`` was made by ``librosa.filters.mel``),
    ``log10(max(mel, 1e-10))``, floored at the clip's maximum − 8, then ``(x + 4) / 4``. Equal to the same steps
    through ``librosa.stft`` and ``librosa.filters.mel`` within float32 round-off (tested); without librosa, whose
    import costs a second or two of a one-clip prediction.

    Args:
        y: ``(samples,)`` mono waveform at 16 kHz, float.
        sr: must be 16000 (Hz).
        n_mels: 80 (128 for large-v3).
        pad_to_seconds: zero-pad the waveform to this length first (Whisper pads to 30 s); ``None`` keeps the
            clip's length.

    Returns:
        ``(frames, n_mels) float32``, frames = ``samples // 160`` (10 ms each); values ``(log10 + 4) / 4``, within
        2 of the clip's maximum.

    Raises:
        ValueError: ``sr`` is not 16000, or the clip is shorter than one frame pair (320 samples, 20 ms).
    """
    if int(sr) != WHISPER_SR:
        raise ValueError(f"Whisper's front end takes 16 kHz audio, got sr={sr}")
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if pad_to_seconds is not None:
        y = np.pad(y, (0, max(0, int(round(pad_to_seconds * WHISPER_SR)) - len(y))))
    if len(y) < WHISPER_MIN_SAMPLES:
        raise ValueError(f"a clip of {len(y)} samples ({len(y) / WHISPER_SR * 1000:.1f} ms) is shorter than one "
                         f"Whisper frame pair ({WHISPER_MIN_SAMPLES} samples, 20 ms)")
    half = WHISPER_N_FFT // 2
    padded = np.pad(y, half, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, WHISPER_N_FFT)[::WHISPER_HOP_LENGTH]
    frames = frames[: len(y) // WHISPER_HOP_LENGTH]                 # the STFT's last frame dropped
    power = np.abs(np.fft.rfft(frames * _hann(WHISPER_N_FFT), axis=1)) ** 2
    mel = power.astype(np.float32) @ mel_filters(sr=WHISPER_SR, n_fft=WHISPER_N_FFT, n_mels=n_mels).T
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)
