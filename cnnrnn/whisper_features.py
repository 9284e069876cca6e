"""Whisper's front end (log-mel) and the features of its encoder's blocks (mean + std over frames).

:func:`whisper_log_mel` is Whisper's ``log_mel_spectrogram`` (``openai/whisper`` ``whisper/audio.py``) computed with
librosa: the STFT of a periodic 400-sample Hann window every 160 samples, centred with reflect padding, the last
frame dropped, power through librosa's Slaney mel filters (80 bands 0–8 kHz: Whisper's own ``mel_filters.npz`` was
made by ``librosa.filters.mel``), ``log10(max(mel, 1e-10))``, floored at the clip's maximum − 8, then
``(x + 4) / 4``. Whisper pads every clip to 30 s before this; here the clip keeps its own length unless
``pad_to_seconds`` is given (the encoder has no attention mask, so padding changes its features).

:func:`block_features` runs a converted encoder (:func:`cnnrnn.models.whisper.pretrained_whisper`) over clips, each
at its own length, and returns per-block mean + std pooled vectors: the frozen features of the ``functionals``
family's ``whisper`` feature set and of the benchmark's linear heads.
"""
from __future__ import annotations

import numpy as np

SR = 16000
N_FFT = 400
HOP_LENGTH = 160
N_MELS = 80
MIN_SAMPLES = 2 * HOP_LENGTH       # one frame pair: the stride-2 stem's smallest input (20 ms)
MAX_SECONDS = 30.0                 # the encoder's position table


def whisper_frames(n_samples: int) -> int:
    """Log-mel frames of a clip of ``n_samples`` at 16 kHz (``n_samples // 160``: 100 per second)."""
    return int(n_samples) // HOP_LENGTH


def whisper_log_mel(y: np.ndarray, *, sr: int = SR, n_mels: int = N_MELS,
                    pad_to_seconds: float | None = None) -> np.ndarray:
    """Whisper's log-mel of one clip.

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
    import librosa

    if int(sr) != SR:
        raise ValueError(f"Whisper's front end takes 16 kHz audio, got sr={sr}")
    y = np.asarray(y, dtype=np.float32).reshape(-1)
    if pad_to_seconds is not None:
        y = np.pad(y, (0, max(0, int(round(pad_to_seconds * SR)) - len(y))))
    if len(y) < MIN_SAMPLES:
        raise ValueError(f"a clip of {len(y)} samples ({len(y) / SR * 1000:.1f} ms) is shorter than one Whisper "
                         f"frame pair ({MIN_SAMPLES} samples, 20 ms)")
    spec = librosa.stft(y, n_fft=N_FFT, hop_length=HOP_LENGTH, window="hann", center=True, pad_mode="reflect")
    power = np.abs(spec[:, :-1]) ** 2
    mel = _mel_basis(n_mels) @ power
    log = np.log10(np.maximum(mel, 1e-10))
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).T.astype(np.float32)


_MEL_BASIS: dict[int, np.ndarray] = {}


def _mel_basis(n_mels: int) -> np.ndarray:
    import librosa

    if n_mels not in _MEL_BASIS:
        _MEL_BASIS[n_mels] = librosa.filters.mel(sr=SR, n_fft=N_FFT, n_mels=n_mels).astype(np.float32)
    return _MEL_BASIS[n_mels]


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
