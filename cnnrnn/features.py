"""Log-mel features of the shared core: the settings, the CNNRNN image, and DCNN-BLSTMwA's Δ channels and segments.

**Settings.** :class:`MelBands` declares ``sr``, ``n_mels``, ``fmin`` and ``fmax`` once for every family;
:class:`LogMelConfig` adds the STFT (``n_fft``, ``hop_length``), the dB range and the clip length;
:class:`SpectrogramConfig` adds the image (CNNRNN's ``spectrogram`` config section).

**The CNNRNN image** of an utterance is made in four steps:

1. load → mono → resample to ``sr`` (:func:`load_clip`, where every family's features start: a file longer
   than ``max_audio_seconds`` or shorter than one STFT frame is a counted skip) → pad (zeros at the end) or
   cut to ``duration``;
2. power mel spectrogram (:func:`mel_powers`: numpy and scipy, batched, the same numbers as
   ``librosa.feature.melspectrogram`` within float32 round-off), then dB below the clip's peak
   (:func:`power_to_db`, as ``librosa.power_to_db(ref=np.max, top_db=top_db)``): ``(n_mels, frames)`` dB;
3. map ``[-top_db, 0]`` dB linearly to 0–255, low frequencies at the bottom,
   resize to ``image_size`` and colour with an OpenCV colormap: uint8
   ``(H, W, 3)`` in BGR order (as ``cv2.imread`` returns it);
4. encode as PNG (:func:`write_png`).

The original CNNRNN code drew each spectrogram with matplotlib (``specshow`` → ``savefig``) and read it
back with ``cv2.imread``; going straight from the dB array to the image skips the figure machinery. The
``render: specshow`` setting draws the original's way (:func:`specshow_image`) for its checkpoints.

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


# --------------------------------------------------------------------------- settings
#: ``spectrogram.kind`` values: the dB log-mel of every CNNRNN image, or YAMNet's own log-mel (see
#: :class:`SpectrogramConfig`).
SPECTROGRAM_KINDS = ("log_mel", "yamnet", "whisper")
#: Kinds that hold a pretrained network's own log-mel, decoded back to values in the model (one pixel per band and
#: 10 ms frame, gray, normalisation mapped back to the global range).
PRETRAINED_KINDS = ("yamnet", "whisper")


@dataclass
class MelBands:
    """The mel band settings every family shares.

    Attributes:
        sr: sample rate in Hz the audio is resampled to (soxr, via librosa).
        n_mels: number of mel bands.
        fmin: lowest mel frequency in Hz.
        fmax: highest mel frequency in Hz; ``None`` means ``sr / 2``.
        max_audio_seconds: longest audio file used, in seconds, as its header states it (default one hour); a
            longer one is skipped before it is decoded (reason ``too_long``, :func:`cnnrnn.audio.load_audio`). A
            guard on memory, not a feature setting: changing it re-renders nothing.
    """

    sr: int = 16000
    n_mels: int = 128
    fmin: float = 0.0
    fmax: float | None = None
    max_audio_seconds: float = MAX_AUDIO_SECONDS

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` on impossible values (each number's own range is
        :data:`cnnrnn.config.RANGES`', checked by the loader first)."""
        fmax = self.fmax if self.fmax is not None else self.sr / 2
        if not 0 <= self.fmin < fmax <= self.sr / 2:
            raise ConfigError(f"need 0 <= fmin < fmax <= sr/2, got fmin={self.fmin}, fmax={fmax}, sr={self.sr}")


@dataclass
class LogMelConfig(MelBands):
    """A fixed-length log-mel spectrogram in dB.

    Attributes:
        n_fft: FFT size in samples.
        hop_length: hop between frames in samples.
        top_db: dynamic range in dB kept below the clip's peak (as
            ``librosa.power_to_db(ref=np.max, top_db=...)``).
        duration: fixed clip length in seconds; longer clips are cut, shorter
            ones zero-padded at the end.
    """

    n_fft: int = 2048
    hop_length: int = 512
    top_db: float = 80.0
    duration: float = 4.0

    def validate(self) -> None:
        """Raise :class:`~cnnrnn.config.ConfigError` when ``fmin``/``fmax`` do not fit ``sr`` or a mel band
        would be empty (:func:`check_mel_bands`)."""
        super().validate()
        check_mel_bands(self.sr, self.n_fft, self.n_mels, self.fmin, self.fmax)

    @property
    def n_samples(self) -> int:
        """Fixed clip length in samples (``round(duration * sr)``)."""
        return int(round(self.duration * self.sr))


@dataclass
class SpectrogramConfig(LogMelConfig):
    """Audio → log-mel → image parameters (CNNRNN's ``spectrogram`` section).

    Attributes:
        image_size: ``[height, width]`` of the PNG in pixels.
        colormap: an OpenCV colormap name (``magma``, ``viridis``, ``inferno``,
            ``jet``, ...), or ``gray``.
        workers: processes for per-file work; 0 means one per CPU core.
        normalization: normalisation of the log-mel before it becomes an image
            (:mod:`cnnrnn.normalize`): ``none`` (the original: dB below the clip's
            peak), ``utterance`` (z-scores per mel band over the clip), ``global``
            (over the training data) or ``speaker`` (over each speaker's own audio,
            no labels).
        norm_range: z-scores in ``[-norm_range, norm_range]`` span the image's
            0–255 (when ``normalization`` is not ``none``).
        render: how the values become pixels (:data:`RENDERS`): ``fast`` (OpenCV colormap, :func:`to_image`) or
            ``specshow`` (the original CNNRNN code's matplotlib figure, :func:`specshow_image`; ``colormap`` must
            then be a matplotlib colormap name).
        kind: the values the image holds (:data:`SPECTROGRAM_KINDS`): ``log_mel`` (dB below the clip's peak,
            :func:`log_mels`; the original) or ``yamnet`` (YAMNet's own front end, :func:`yamnet_log_mel`, for
            ``train.backbone: yamnet``): natural-log mel magnitudes, one pixel per 10 ms frame and mel band,
            quantised over :data:`YAMNET_IMAGE_RANGE` (0.054 per level), in a gray image that the model decodes
            back (:class:`cnnrnn.models.yamnet.ImageToLogMel`). It needs YAMNet's settings
            (:data:`YAMNET_SPECTROGRAM`), ``colormap: gray``, ``render: fast`` and ``image_size`` ``[64,
            frames]`` (:func:`yamnet_frames` of the clip); under ``utterance``/``speaker``/``global``
            normalisation the z-scores are mapped back to the training data's global mean and deviation per band
            (:func:`cnnrnn.normalize.to_global_range`), so the pretrained network sees log-mels in their usual
            range; ``top_db`` and ``norm_range`` are unused. ``whisper`` (for ``train.backbone: whisper``) is the
            same for Whisper's front end (:func:`whisper_log_mel`: 80 Slaney bands 0–8 kHz,
            25 ms / 10 ms, ``(log10 + 4) / 4``): :data:`WHISPER_SPECTROGRAM`, ``image_size`` ``[80, 100 ·
            duration]``, pixels over :data:`WHISPER_IMAGE_RANGE` (0.0157 a level).
    """

    image_size: list[int] = field(default_factory=lambda: [224, 224])
    colormap: str = "magma"
    workers: int = 0
    normalization: str = "none"
    norm_range: float = 3.0
    render: str = "fast"
    kind: str = "log_mel"

    def validate(self) -> None:
        if self.kind not in SPECTROGRAM_KINDS:
            raise ConfigError(f"spectrogram.kind must be one of {SPECTROGRAM_KINDS}, got {self.kind!r}")
        if self.kind in PRETRAINED_KINDS:
            if self.kind == "yamnet":  # YAMNet's own mel filters (yamnet_mel_matrix), not check_mel_bands' Slaney ones
                MelBands.validate(self)
            name, settings, windows, bands, frames = _pretrained_front_end(self.kind)
            wrong = {k: getattr(self, k) for k, v in settings.items() if getattr(self, k) != v}
            if wrong:
                raise ConfigError(f"spectrogram.kind {self.kind} needs {name}'s front end {settings} ({windows}); "
                                  f"got {wrong}")
            if self.colormap.lower() not in ("gray", "grey") or self.render != "fast":
                raise ConfigError(f"spectrogram.kind {self.kind} needs colormap gray and render fast (the model "
                                  f"decodes the pixels back to log-mel values), got {self.colormap!r}, {self.render!r}")
            want = [bands, frames(self.n_samples)]
            if list(self.image_size) != want:
                raise ConfigError(f"spectrogram.kind {self.kind} draws one pixel per mel band and 10 ms frame: "
                                  f"image_size must be {want} for duration {self.duration} s, got {self.image_size}")
        else:
            super().validate()
        from .normalize import MODES

        if self.normalization not in MODES:
            raise ConfigError(f"spectrogram.normalization must be one of {MODES}, got {self.normalization!r}")
        check_render(self.render, self.colormap)
        if len(self.image_size) != 2 or not 8 <= min(self.image_size) <= max(self.image_size) <= 4096:
            raise ConfigError(f"spectrogram.image_size must be [height, width], each in [8, 4096], "
                              f"got {self.image_size}")

    @property
    def uses_stats(self) -> bool:
        """Whether the images need the run's statistics (``spectrogram/normalization.json``): ``speaker`` and
        ``global`` normalisation, and for kind ``yamnet`` ``utterance`` too (its z-scores are mapped back to the
        global range)."""
        return self.normalization in ("speaker", "global") or (self.kind in PRETRAINED_KINDS
                                                                and self.normalization != "none")


# --------------------------------------------------------------------------- log-mel
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


def mel_powers(ys: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
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


def mel_power(y: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
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


def log_mels(ys: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Log-mel spectrograms of a batch of waveforms of one length, in dB relative to each clip's peak.

    Args:
        ys: ``(batch, samples)`` float waveforms at ``cfg.sr`` Hz (e.g. clips padded or cut to ``cfg.n_samples``
            with :func:`cnnrnn.audio.pad_or_trim`).
        cfg: the log-mel settings; a :class:`SpectrogramConfig` of ``kind`` ``yamnet`` gives YAMNet's log-mel.

    Returns:
        ``(batch, n_mels, 1 + samples // hop_length) float32`` in ``[-cfg.top_db, 0]`` dB: for each clip
        ``librosa.power_to_db(librosa.feature.melspectrogram(...), ref=np.max, top_db=cfg.top_db)`` within 1e-3 dB
        (:func:`mel_powers`, :func:`power_to_db`). Kind ``yamnet``: ``(batch, 64, yamnet_frames(samples))
        float32`` natural-log mel magnitudes (:func:`yamnet_log_mel` of each clip, transposed); kind ``whisper``:
        ``(batch, 80, samples // 160) float32`` (:func:`whisper_log_mel` of each clip, transposed).
    """
    if getattr(cfg, "kind", "log_mel") == "whisper":
        ys = np.atleast_2d(np.asarray(ys, np.float32))
        return np.stack([whisper_log_mel(y).T for y in ys]) if len(ys) else \
            np.zeros((0, WHISPER_N_MELS, whisper_frames(ys.shape[1])), np.float32)
    if getattr(cfg, "kind", "log_mel") == "yamnet":
        ys = np.atleast_2d(np.asarray(ys, np.float32))
        return np.stack([yamnet_log_mel(y).T for y in ys]) if len(ys) else \
            np.zeros((0, YAMNET_N_MELS, yamnet_frames(ys.shape[1])), np.float32)
    return power_to_db(mel_powers(np.atleast_2d(np.asarray(ys, np.float32)), cfg), top_db=cfg.top_db)


def log_mel(y: np.ndarray, cfg: LogMelConfig) -> np.ndarray:
    """Log-mel spectrogram in dB relative to the clip's peak (:func:`log_mels` of one clip).

    Returns:
        ``(n_mels, frames) float32`` in ``[-cfg.top_db, 0]`` dB
        (``librosa.power_to_db(mel, ref=np.max, top_db=cfg.top_db)`` within 1e-3 dB).
    """
    return log_mels(np.asarray(y, np.float32)[None], cfg)[0]


# --------------------------------------------------------------------------- image
def _colormap_code(name: str) -> int | None:
    import cv2

    if name.lower() in ("gray", "grey"):
        return None
    code = getattr(cv2, f"COLORMAP_{name.upper()}", None)
    if code is None:
        names = sorted(k[9:].lower() for k in dir(cv2) if k.startswith("COLORMAP_"))
        raise ConfigError(f"spectrogram.colormap: unknown colormap {name!r}; OpenCV has: gray, {', '.join(names)}")
    return code


def image_range(cfg: SpectrogramConfig) -> tuple[float, float]:
    """The values that an un-normalised spectrogram maps to pixels 0 and 255: ``(-top_db, 0)`` dB, or for kind
    ``yamnet`` :data:`YAMNET_IMAGE_RANGE` (natural-log mel magnitudes)."""
    if getattr(cfg, "kind", "log_mel") == "yamnet":
        return YAMNET_IMAGE_RANGE
    if getattr(cfg, "kind", "log_mel") == "whisper":
        return WHISPER_IMAGE_RANGE
    return (-float(cfg.top_db), 0.0)


def to_image(db: np.ndarray, cfg: SpectrogramConfig, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Turn a dB (or normalised) spectrogram into a coloured image.

    Args:
        db: ``(n_mels, frames)`` values: dB in ``[-top_db, 0]``, or z-scores.
        cfg: gives ``top_db``, ``image_size`` ``[H, W]`` and ``colormap``.
        value_range: the values that map to 0 and 255 (default :func:`image_range`: ``(-top_db, 0)`` dB, or
            :data:`YAMNET_IMAGE_RANGE` for kind ``yamnet``); values outside are clipped.

    Returns:
        ``(H, W, 3) uint8`` in BGR channel order, low frequencies in the bottom row. With ``cfg.render``
        ``specshow`` the image is :func:`specshow_image`'s.
    """
    import cv2

    if cfg.render == "specshow":
        return specshow_image(db, cfg, value_range)
    lo, hi = value_range if value_range is not None else image_range(cfg)
    scaled = np.clip((db - lo) / (hi - lo), 0.0, 1.0)
    gray = np.flipud((scaled * 255.0 + 0.5).astype(np.uint8))
    height, width = cfg.image_size
    gray = cv2.resize(gray, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
    code = _colormap_code(cfg.colormap)
    if code is None:
        return cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    return cv2.applyColorMap(gray, code)



#: The ways a spectrogram becomes an image (``spectrogram.render``): ``fast`` (:func:`to_image`'s OpenCV
#: path, the default) and ``specshow`` (:func:`specshow_image`, the original CNNRNN code's matplotlib figure).
RENDERS = ("fast", "specshow")


def check_render(render: str, colormap: str) -> None:
    """Check ``spectrogram.render`` and its ``colormap``: an OpenCV colormap (or ``gray``) for ``fast``, a
    matplotlib colormap for ``specshow``.

    Raises:
        ConfigError: an unknown render, or a colormap the render does not have.
    """
    if render not in RENDERS:
        raise ConfigError(f"spectrogram.render must be one of {RENDERS}, got {render!r}")
    if render == "fast":
        _colormap_code(colormap)
        return
    import matplotlib

    if colormap not in matplotlib.colormaps:
        raise ConfigError(f"spectrogram.colormap: {colormap!r} is not a matplotlib colormap (render specshow); "
                          "e.g. magma, viridis, inferno, gray")


def specshow_image(values: np.ndarray, cfg: SpectrogramConfig,
                   value_range: tuple[float, float] | None = None) -> np.ndarray:
    """The image the original CNNRNN code made of a spectrogram: ``librosa.display.specshow`` drawn by
    matplotlib, saved as PNG with ``savefig`` and read back with ``cv2.imread``.

    The original code's README gives no figure settings; these are chosen here, and fixed:

    - a :class:`matplotlib.figure.Figure` of exactly ``W × H`` pixels (``figsize = (W / 100, H / 100)``
      inches at ``dpi = 100``), its face white;
    - one axes filling it (``[0, 0, 1, 1]``: no margins), axis off (no ticks, labels or frame);
    - ``specshow(values, ax=ax, cmap=cfg.colormap)`` with specshow's default axes (``x_axis``/``y_axis``
      ``None``: one cell per frame and mel band, low frequencies at the bottom, nearest-cell drawing, no
      interpolation); ``magma``, the default colormap, is what specshow picks itself for dB values
      (all ≤ 0);
    - colour limits: for dB (``value_range`` ``None``) specshow's own, the data's minimum and maximum (for
      speech ``-top_db`` and 0: :func:`log_mel` pins the peak at 0 dB and the floor, padding included, at
      ``-top_db``); for normalised values ``value_range``;
    - ``fig.savefig(buffer, format="png", dpi=100)`` (no ``bbox_inches="tight"`` cropping), then
      ``cv2.imdecode(..., cv2.IMREAD_COLOR)``, i.e. ``cv2.imread``: BGR, alpha dropped.

    Against the ``fast`` path (:func:`to_image`: bilinear resize, OpenCV's magma) at the default settings
    (224×224, magma, 4 s at 16 kHz) the mean absolute difference per pixel and channel, on the 0–255 scale,
    is 2.74 on average (2.06–3.20 per file) over 20 EmoDB recordings and 2.73 (1.90–3.83) over 20 of the
    bundled KEMDy20 sample; 17 % of the pixels differ by more than 10 in some channel (cell edges: nearest
    cells against bilinear interpolation). About 120–140 ms per image here, against ~1 ms for ``fast``.

    Args:
        values: ``(n_mels, frames)`` dB from :func:`log_mel`, or z-scores.
        cfg: gives ``image_size`` ``[H, W]`` and ``colormap`` (a matplotlib colormap name).
        value_range: colour limits (vmin, vmax) for normalised values; ``None`` for dB.

    Returns:
        ``(H, W, 3) uint8`` BGR.
    """
    import io

    import cv2
    import librosa.display
    from matplotlib.figure import Figure

    height, width = (int(v) for v in cfg.image_size)
    fig = Figure(figsize=(width / 100, height / 100), dpi=100, facecolor="white")
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    lo, hi = value_range if value_range is not None else (None, None)
    librosa.display.specshow(np.asarray(values, np.float32), ax=ax, cmap=cfg.colormap, vmin=lo, vmax=hi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, facecolor="white")
    image = cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR)
    if image.shape[:2] != (height, width):  # matplotlib rounds the figure to whole pixels; never seen to differ
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST)
    return image

def image_of_log_mel(db: np.ndarray, cfg: SpectrogramConfig, speaker: str | None = None, stats=None,
                     mode: str | None = None) -> np.ndarray:
    """The image of a log-mel, normalised as ``cfg.normalization`` (or ``mode``) says.

    Args:
        db: ``(n_mels, frames)`` dB from :func:`log_mel` (kind ``yamnet``: natural-log values).
        cfg: spectrogram settings.
        speaker, stats: the item's speaker and the :class:`cnnrnn.normalize.NormStats` of the run (``global``
            and ``speaker`` modes, and every mode but ``none`` for kind ``yamnet``; a speaker the statistics lack
            uses the global ones).
        mode: overrides ``cfg.normalization`` (e.g. ``utterance`` for a file whose speaker is unknown).

    Returns:
        ``(H, W, 3) uint8`` BGR. Kind ``yamnet``: z-scores mapped back to the global range
        (:func:`cnnrnn.normalize.to_global_range`), drawn over :data:`YAMNET_IMAGE_RANGE`.

    Raises:
        NormalizationError: statistics missing for the mode (see :func:`cnnrnn.normalize.apply`).
    """
    from .normalize import apply, to_global_range

    mode = mode or cfg.normalization
    if mode == "none":
        return to_image(db, cfg)
    z = apply(db.T, speaker, stats, mode)
    if cfg.kind in PRETRAINED_KINDS:
        return to_image(to_global_range(z, stats, f"{cfg.kind} log-mels ({mode})").T, cfg)
    return to_image(z.T, cfg, (-cfg.norm_range, cfg.norm_range))


def load_clip(path: str | Path, cfg) -> np.ndarray:
    """Load an audio file for log-mel features: mono at ``cfg.sr``; every family's features start here.

    Args:
        path: audio file.
        cfg: any settings with ``sr`` (Hz), ``n_fft`` (samples) and ``max_audio_seconds`` (a :class:`LogMelConfig`,
            the DCNN ``FeatureConfig``, ...).

    Returns:
        ``(samples,) float32`` at ``cfg.sr`` Hz, at least ``cfg.n_fft`` samples.

    Raises:
        AudioError: as :func:`cnnrnn.audio.load_audio` (``missing``, ``unreadable``, ``empty``, ``silent``,
            ``not_finite``, ``bad_sample_rate``, ``too_long``: over ``cfg.max_audio_seconds``);
            :class:`ClipTooShortError` (``too_short``): shorter than one STFT frame (``cfg.n_fft`` samples),
            which padding would turn into an image of one flat colour.
    """
    y, _ = load_audio(path, cfg.sr, max_seconds=cfg.max_audio_seconds, min_samples=cfg.n_fft)
    return y


def audio_log_mel(path: str | Path, cfg: LogMelConfig, *, speed: float = 1.0,
                  speed_method: str = "speed") -> np.ndarray:
    """Load an audio file at ``cfg.sr``, pad/cut it to ``cfg.duration`` and return its log-mel
    ``(n_mels, frames) float32`` dB (:func:`log_mel`).

    Args:
        path: audio file. cfg: the log-mel settings.
        speed, speed_method: speed perturbation (a training copy): the waveform is played ``speed`` times
            faster (:func:`cnnrnn.audio.change_speed`, ``speed`` or ``tempo``) *before* it is cut/padded to
            ``cfg.duration``; 1.0 = the file as it is.

    Raises:
        AudioError: unreadable, empty, silent, non-finite, too long or too short audio (:func:`load_clip`).
        ValueError: ``speed`` outside (0.5, 2) or an unknown ``speed_method``.
    """
    y = load_clip(path, cfg)
    if speed != 1.0:
        y = change_speed(y, cfg.sr, speed, speed_method)
    return log_mel(pad_or_trim(y, cfg.n_samples), cfg)


def waveform_to_image(y: np.ndarray, cfg: SpectrogramConfig) -> np.ndarray:
    """Fixed-length log-mel image of a waveform at ``cfg.sr``: ``(H, W, 3) uint8`` BGR (un-normalised log-mel,
    or ``utterance`` normalisation; the ``global`` and ``speaker`` modes need :func:`image_of_log_mel`).
    Raises :class:`ClipTooShortError` when ``y`` is shorter than one STFT frame (``cfg.n_fft`` samples)."""
    check_min_samples(y, cfg.n_fft, sr=cfg.sr)
    mode = "utterance" if cfg.normalization in ("global", "speaker") else None
    return image_of_log_mel(log_mel(pad_or_trim(y, cfg.n_samples), cfg), cfg, mode=mode)


def audio_to_image(path: str | Path, cfg: SpectrogramConfig, speaker: str | None = None, stats=None,
                   mode: str | None = None, *, speed: float = 1.0, speed_method: str = "speed") -> np.ndarray:
    """Load an audio file and return its spectrogram image ``(H, W, 3) uint8`` BGR (see
    :func:`image_of_log_mel` for the normalisation arguments, :func:`audio_log_mel` for ``speed``).

    Raises:
        AudioError: unreadable, empty, silent or non-finite audio.
    """
    return image_of_log_mel(audio_log_mel(path, cfg, speed=speed, speed_method=speed_method), cfg, speaker, stats,
                            mode)


#: OpenCV ``imencode`` flags of :func:`write_png`: zlib level 1 (``IMWRITE_PNG_COMPRESSION`` 16 = 1), run-length
#: strategy (``IMWRITE_PNG_STRATEGY`` 17 = ``STRATEGY_RLE`` 3), the "up" row filter (``IMWRITE_PNG_FILTER`` 19 =
#: ``FILTER_UP`` 32). Measured on 48 EmoDB spectrograms at 224x224 (OpenCV 5.0, one thread): 1.07 ms and 43 KiB per
#: image, against 1.10 ms and 52 KiB with OpenCV's defaults and 1.4-1.7 ms with any other filter and strategy at
#: level 1; storing without compression (level 0) takes 0.21 ms but 148 KiB, as much disk as the packed array again.
#: Lossless whatever the flags: the pixels read back are the same.
PNG_PARAMS = (16, 1, 17, 3, 19, 32)


def write_png(image: np.ndarray, path: str | Path) -> Path:
    """Encode ``(H, W, 3) uint8`` BGR (or ``(H, W)``) as PNG (:data:`PNG_PARAMS`) and write it atomically."""
    import cv2

    ok, buf = cv2.imencode(".png", image, PNG_PARAMS)
    if not ok:
        raise ValueError(f"OpenCV could not encode an image of shape {image.shape} as PNG")
    return atomic_write_bytes(path, buf.tobytes(), fsync=False)


def read_png(path: str | Path) -> np.ndarray:
    """Read a PNG as ``(H, W, 3) uint8`` BGR (``cv2.imread``). Raises ValueError if unreadable."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not a readable image")
    return image


def render_file(audio_path: str | Path, png_path: str | Path, cfg: SpectrogramConfig, speaker: str | None = None,
                stats=None, *, speed: float = 1.0, speed_method: str = "speed") -> Path:
    """Audio file → spectrogram PNG at ``png_path`` (written atomically; ``speed``: a speed-perturbed copy, see
    :func:`audio_log_mel`). Raises AudioError."""
    return write_png(audio_to_image(audio_path, cfg, speaker, stats, speed=speed, speed_method=speed_method),
                     png_path)


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
