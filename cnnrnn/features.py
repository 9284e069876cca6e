"""Log-mel features of the shared core: the settings and the CNNRNN image.

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

The log-mel computation itself is in :mod:`cnnrnn.mel`; DCNN-BLSTMwA's Δ channels and segments and YAMNet's and
Whisper's own front ends are in :mod:`cnnrnn.front_ends`. Both are re-exported here.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .artifacts import atomic_write_bytes
from .audio import MAX_AUDIO_SECONDS, ClipTooShortError, change_speed, check_min_samples, load_audio, pad_or_trim
from .config import ConfigError
# the other front ends and the log-mel computation live in their own modules; their names stay importable from here
from .front_ends import (IMAGENET_MEAN, IMAGENET_STD, LOG_EPS, MIN_SPAN, WHISPER_HOP_LENGTH, WHISPER_IMAGE_RANGE,
                         WHISPER_MAX_SECONDS, WHISPER_MIN_SAMPLES, WHISPER_N_FFT, WHISPER_N_MELS,
                         WHISPER_SPECTROGRAM, WHISPER_SR, YAMNET_FMAX, YAMNET_FMIN, YAMNET_HOP_SECONDS,
                         YAMNET_IMAGE_RANGE, YAMNET_LOG_OFFSET, YAMNET_N_MELS, YAMNET_PATCH_FRAMES,
                         YAMNET_PATCH_HOP, YAMNET_SPECTROGRAM, YAMNET_SR, YAMNET_WINDOW_SECONDS, int8_round,
                         log_mel_deltas, n_segments, segment, to_backbone_input, whisper_frames, whisper_log_mel,
                         yamnet_frames, yamnet_log_mel, yamnet_mel_matrix, yamnet_pad_waveform, yamnet_patches,
                         _hertz_to_mel_htk, _pretrained_front_end, _round_half_away, _yamnet_int8_dft)  # noqa: F401
from .mel import (POWER_AMIN, check_mel_bands, empty_mel_bands, mel_filters, mel_power, mel_powers, power_to_db,
                  _FFT_BLOCK_FRAMES, _hann, _hz_to_mel, _mel_sparse_t, _mel_to_hz)  # noqa: F401


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
        """Raise :class:`~cnnrnn.config.ConfigError` for an unknown ``kind``, settings a pretrained front end does
        not take, mel bands left empty by ``n_fft``, or an unknown colormap or render."""
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
