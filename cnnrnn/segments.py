"""DCNN-BLSTMwA features: 3-channel log-mel (static, Δ, ΔΔ) cut into overlapping segments.

The recipe follows Zhang et al., "Pre-trained Deep Convolution Neural Network Model With Attention for
Speech Emotion Recognition" (Frontiers in Physiology 2021) and the public DCNN-BLSTMWA code:

1. pre-emphasis 0.97 (``librosa.effects.preemphasis``), then pad with zeros / trim to ``max_sec``;
2. log-mel: 25 ms window, 10 ms hop, ``n_mels`` 64, ``fmin`` 20 Hz, ``fmax`` sr/2, power 2, Slaney
   filter norm, HTK mel scale, ``log(mel + 1e-8)``;
3. three channels: static, Δ and ΔΔ (``librosa.feature.delta``, width 5);
4. per-channel min-max to [0, 1] over the whole utterance;
5. segments of 64 frames with hop 32: ``n_segments = 1 + (frames - 64) // 32`` (trailing frames that do
   not fill a segment are dropped, as in the original);
6. for the DCNN, each segment is resized to the backbone input (227×227 for AlexNet) and normalised with
   the ImageNet mean/std (:func:`to_backbone_input`).

A clip shorter than one segment (fewer than ``segment_frames`` frames, possible only when ``max_sec`` is
``None`` or shorter than 64 frames) raises :class:`ClipTooShortError`, an :class:`~cnnrnn.audio.AudioError`
with reason ``too_short``, so batch loops count it as a skip like any other unusable audio.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .audio import AudioError, load_audio, pad_or_trim

#: ImageNet channel mean / std (RGB, for [0, 1] inputs), as torchvision normalises for AlexNet/ResNet.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
LOG_EPS = 1e-8
#: A channel whose range (max - min) is below this is treated as constant and scaled to 0.
MIN_SPAN = 1e-6


class ClipTooShortError(AudioError):
    """The clip gives fewer frames than one segment (reason ``too_short``)."""

    def __init__(self, message: str):
        super().__init__(message, "too_short")


@dataclass
class FeatureConfig:
    """Feature settings (the ``data`` section of a DCNN config, less the filelist keys).

    Attributes:
        sr: sample rate in Hz the audio is resampled to.
        max_sec: pad/trim length in seconds (3 for ESD, 4 for JTES); ``None`` keeps the clip's length.
        preemphasis: pre-emphasis coefficient (0 disables it).
        n_mels, fmin, fmax: mel bands and band edges in Hz (``fmax`` ``None`` = sr/2).
        win_ms, hop_ms: STFT window and hop in milliseconds (``n_fft = win_length``).
        delta_width: ``librosa.feature.delta`` window (odd, ≥ 3).
        segment_frames, segment_hop: segment length and hop in frames.
        image_size: ``[H, W]`` the DCNN takes (227×227 for AlexNet).
    """

    sr: int = 16000
    max_sec: float | None = 3.0
    preemphasis: float = 0.97
    n_mels: int = 64
    fmin: float = 20.0
    fmax: float | None = None
    win_ms: float = 25.0
    hop_ms: float = 10.0
    delta_width: int = 5
    segment_frames: int = 64
    segment_hop: int = 32
    image_size: list = field(default_factory=lambda: [227, 227])

    @property
    def n_fft(self) -> int:
        """Window length in samples (25 ms → 400 at 16 kHz)."""
        return int(round(self.sr * self.win_ms / 1000))

    @property
    def hop_length(self) -> int:
        """Hop in samples (10 ms → 160 at 16 kHz)."""
        return int(round(self.sr * self.hop_ms / 1000))

    def validate(self) -> "FeatureConfig":
        """Raise ValueError on impossible values; returns self."""
        if self.sr <= 0 or self.n_mels < 1 or self.n_fft < 2 or self.hop_length < 1:
            raise ValueError(f"bad feature settings: sr {self.sr}, n_mels {self.n_mels}, "
                             f"win_ms {self.win_ms}, hop_ms {self.hop_ms}")
        if self.max_sec is not None and self.max_sec <= 0:
            raise ValueError(f"max_sec must be positive or null, got {self.max_sec}")
        if self.delta_width < 3 or self.delta_width % 2 == 0:
            raise ValueError(f"delta_width must be odd and >= 3, got {self.delta_width}")
        if not 1 <= self.segment_hop <= self.segment_frames:
            raise ValueError(f"need 1 <= segment_hop <= segment_frames, got {self.segment_hop}, "
                             f"{self.segment_frames}")
        if len(self.image_size) != 2 or min(self.image_size) < 32:
            raise ValueError(f"image_size must be [H, W] with H, W >= 32, got {self.image_size}")
        return self


def n_segments(n_frames: int, segment_frames: int = 64, segment_hop: int = 32) -> int:
    """Segments in ``n_frames`` frames: ``1 + (n_frames - segment_frames) // segment_hop``, 0 if too short."""
    return 0 if n_frames < segment_frames else 1 + (n_frames - segment_frames) // segment_hop


def log_mel_deltas(y: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Three-channel log-mel of a waveform (already pre-emphasised and padded).

    Args:
        y: ``(samples,) float32`` at ``cfg.sr``, long enough for ``cfg.delta_width`` frames.

    Returns:
        ``(n_mels, frames, 3) float32``: static ``log(mel + 1e-8)``, Δ and ΔΔ, each min-max scaled to
        [0, 1] per channel (a constant channel, range < :data:`MIN_SPAN`, becomes 0).
    """
    import librosa

    mel = librosa.feature.melspectrogram(
        y=y, sr=cfg.sr, n_fft=cfg.n_fft, win_length=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
        fmin=cfg.fmin, fmax=cfg.fmax or cfg.sr / 2, power=2.0, htk=True, norm="slaney")
    static = np.log(mel.astype(np.float64) + LOG_EPS)  # float64: float32 Δ of a constant leaves ~1e-6 noise
    channels = [static, librosa.feature.delta(static, width=cfg.delta_width, order=1),
                librosa.feature.delta(static, width=cfg.delta_width, order=2)]
    out = np.stack(channels, axis=-1).astype(np.float32)
    lo = out.min(axis=(0, 1), keepdims=True)
    span = out.max(axis=(0, 1), keepdims=True) - lo
    flat = span < MIN_SPAN  # e.g. the Δ of a constant: round-off only, which min-max would blow up to [0, 1]
    return np.where(flat, 0, (out - lo) / np.where(flat, 1, span)).astype(np.float32)


def segment(features: np.ndarray, segment_frames: int = 64, segment_hop: int = 32) -> np.ndarray:
    """Cut ``(n_mels, frames, C)`` features into ``(n_segments, n_mels, segment_frames, C)`` (a copy).

    Raises:
        ClipTooShortError: fewer than ``segment_frames`` frames.
    """
    count = n_segments(features.shape[1], segment_frames, segment_hop)
    if count == 0:
        raise ClipTooShortError(f"{features.shape[1]} frames is shorter than one segment ({segment_frames} "
                                "frames); raise max_sec or lower segment_frames")
    starts = np.arange(count) * segment_hop
    return np.stack([features[:, s:s + segment_frames] for s in starts]).astype(np.float32)


def waveform_segments(y: np.ndarray, cfg: FeatureConfig, source: str | Path = "<array>") -> np.ndarray:
    """Segments of a waveform: pre-emphasis, pad/trim to ``max_sec``, log-mel + Δ + ΔΔ, min-max, cut.

    Args:
        y: ``(samples,) float32`` mono at ``cfg.sr``.
        source: name used in error messages.

    Returns:
        ``(n_segments, n_mels, segment_frames, 3) float32`` in [0, 1].

    Raises:
        ClipTooShortError: the clip gives fewer frames than one segment.
    """
    import librosa

    if cfg.preemphasis:
        y = librosa.effects.preemphasis(np.asarray(y, np.float32), coef=cfg.preemphasis)
    if cfg.max_sec is not None:
        y = pad_or_trim(y, int(round(cfg.max_sec * cfg.sr)))
    frames = 1 + len(y) // cfg.hop_length  # librosa's centred STFT
    if frames < cfg.segment_frames:
        raise ClipTooShortError(f"{source}: {frames} frames is shorter than one segment ({cfg.segment_frames} "
                                "frames); raise max_sec or lower segment_frames")
    return segment(log_mel_deltas(y, cfg), cfg.segment_frames, cfg.segment_hop)


def audio_segments(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """:func:`waveform_segments` of an audio file, loaded mono at ``cfg.sr``.

    Raises:
        AudioError: missing/unreadable/silent audio, or (``ClipTooShortError``) too short.
    """
    y, _ = load_audio(path, cfg.sr)
    return waveform_segments(y, cfg, path)


def to_backbone_input(segments, image_size):
    """Resize segments to the DCNN input and apply the ImageNet mean/std normalisation.

    Works on numpy arrays and inside ``tf.data`` maps (TensorFlow ops, bilinear resize).

    Args:
        segments: ``(batch, n_mels, segment_frames, 3)`` float32 in [0, 1].
        image_size: ``(H, W)``.

    Returns:
        ``(batch, H, W, 3) float32`` tensor, ``(x - mean) / std`` per channel.
    """
    import tensorflow as tf

    x = tf.image.resize(tf.convert_to_tensor(segments, tf.float32), [int(v) for v in image_size])
    return (x - tf.constant(IMAGENET_MEAN)) / tf.constant(IMAGENET_STD)
