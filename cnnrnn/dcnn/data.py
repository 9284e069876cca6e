"""DCNN-BLSTMwA inputs: log-mel segments of wav files and filelists, and the step-2 features.

The recipe follows Zhang et al., "Pre-trained Deep Convolution Neural Network Model With Attention for
Speech Emotion Recognition" (Frontiers in Physiology 2021) and the public DCNN-BLSTMWA code:

1. pre-emphasis 0.97 (``librosa.effects.preemphasis``), then pad with zeros / trim to ``max_sec``;
2. log-mel: 25 ms window, 10 ms hop, ``n_mels`` 64, ``fmin`` 20 Hz, ``fmax`` sr/2, power 2, Slaney
   filter norm, HTK mel scale, ``log(mel + 1e-8)``; Δ and ΔΔ (width 5); per-channel min-max to [0, 1]
   (:func:`cnnrnn.features.log_mel_deltas`);
   optionally (``normalization``, not in the paper) each mel band and channel is then standardised with
   the statistics of the utterance, of the training utterances or of the utterance's speaker
   (:mod:`cnnrnn.normalize`) and mapped to [0, 1] (:func:`normalize_features`);
3. segments of 64 frames with hop 32: ``n_segments = 1 + (frames - 64) // 32``; trailing frames that do
   not fill a segment are dropped, as in the original (:func:`cnnrnn.features.segment`);
4. for the DCNN, each segment is resized to the backbone input (227×227 for AlexNet) and normalised with
   the ImageNet mean/std (:func:`cnnrnn.features.to_backbone_input`, in :func:`segment_dataset`).

With ``data.kind: yamnet`` (the YAMNet backbone) steps 2–4 are YAMNet's instead: the waveform (pre-emphasis and
pad/trim as configured; the presets use none and keep each clip's length) → :func:`cnnrnn.features.yamnet_log_mel`
(16 kHz, 25 ms / 10 ms, 64 mel bands 125–7500 Hz, ``log(mel + 0.001)``), kept as ``(64, frames, 1)`` like the
3-channel features so normalisation and storage are shared; optionally normalised (z-scores mapped back to the
training data's global mean/std per band, :func:`normalize_features`); cut into ``(segment_frames, 64, 1)``
patches (time × bands; 96 frames every 48 in the presets, :func:`cnnrnn.features.yamnet_patches`) and fed to the
network as they are (no resize, no ImageNet normalisation). :func:`cut` does either cut.

With ``data.kind: whisper`` (the Whisper backbone) the features are the frozen Whisper encoder's outputs: the
waveform at 16 kHz (pad/trim to ``max_sec`` when set; the presets keep each clip's length) →
:func:`cnnrnn.whisper_features.whisper_log_mel` (80 bands, 10 ms frames) → the encoder of ``data.encoder`` (converted
weights, :func:`cnnrnn.models.whisper.pretrained_whisper`), run **once per clip** at the clip's own length (a clip
over 30 s in consecutive 30 s windows, their frames concatenated), keeping the outputs of the cached blocks as
``(width, frames, n_blocks)`` (20 ms frames; the layout of the other kinds, so normalisation, caching over folds
and storage are shared: :func:`whisper_features`); optionally normalised per dimension and block (z-scores mapped
back to the training data's global mean/std, as for YAMNet); cut into ``(segment_frames, width, n_blocks)``
segments of encoder frames (:func:`cut`) and fed to the step-1 head as they are.

A clip shorter than one segment raises :class:`~cnnrnn.features.ClipTooShortError`, an
:class:`~cnnrnn.audio.AudioError` with reason ``too_short``, so batch loops count it as a skip like any
other unusable audio.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifacts import load_labels
from ..audio import check_min_samples, load_each, pad_or_trim
from ..config import ConfigError
from ..features import (ClipTooShortError, load_clip, log_mel_deltas, segment, to_backbone_input, yamnet_log_mel,
                        yamnet_patches)
from .config import DcnnConfig, FeatureConfig
from .filelists import read_filelist

log = logging.getLogger("cnnrnn.dcnn")
#: Feature kinds of a pretrained network: normalised z-scores are mapped back to the global (training) range.
PRETRAINED_KINDS = ("yamnet", "whisper")


def waveform_features(y: np.ndarray, cfg: FeatureConfig, source: str | Path = "<array>") -> np.ndarray:
    """The un-normalised features of a waveform: pre-emphasis, pad/trim to ``max_sec``, then log-mel + Δ +
    ΔΔ, each channel min-max scaled over the utterance (:func:`cnnrnn.features.log_mel_deltas`), or with
    ``cfg.kind`` ``yamnet`` YAMNet's log-mel (:func:`cnnrnn.features.yamnet_log_mel`, frames not centred).

    Args:
        y: ``(samples,) float32`` mono at ``cfg.sr`` Hz.
        cfg: the feature settings.
        source: name used in error messages.

    Returns:
        ``(n_mels, frames, 3) float32`` in [0, 1]; for ``yamnet`` ``(64, frames, 1) float32`` natural-log mel
        magnitudes (``log(0.001)`` ≈ -6.9 and up); for ``whisper`` ``(width, frames, n_blocks) float32`` encoder
        outputs (:func:`whisper_features`).

    Raises:
        ClipTooShortError: the clip is shorter than one STFT frame (``cfg.n_fft`` samples, before any padding) or
            gives fewer frames than one segment.
    """
    import librosa

    check_min_samples(np.asarray(y), cfg.n_fft, source, cfg.sr)
    if cfg.kind == "whisper":
        return whisper_features(y, cfg, source)
    if cfg.preemphasis:
        y = librosa.effects.preemphasis(np.asarray(y, np.float32), coef=cfg.preemphasis)
    if cfg.max_sec is not None:
        y = pad_or_trim(y, int(round(cfg.max_sec * cfg.sr)))
    yamnet = cfg.kind == "yamnet"
    if yamnet:  # tf.signal.frame: no centring, no padding
        frames = 0 if len(y) < cfg.n_fft else 1 + (len(y) - cfg.n_fft) // cfg.hop_length
    else:
        frames = 1 + len(y) // cfg.hop_length  # librosa's centred STFT
    if frames < cfg.segment_frames:
        raise ClipTooShortError(f"{source}: {frames} frames is shorter than one segment ({cfg.segment_frames} "
                                "frames); raise max_sec or lower segment_frames")
    if yamnet:
        return yamnet_log_mel(y, sr=cfg.sr, window_seconds=cfg.win_ms / 1000, hop_seconds=cfg.hop_ms / 1000,
                              n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax).T[..., None]
    return log_mel_deltas(y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                          fmin=cfg.fmin, fmax=cfg.fmax, delta_width=cfg.delta_width)


#: Encoders already built in this process: ``(weights, blocks) -> keras.Model`` (building one takes seconds).
_ENCODERS: dict = {}


def whisper_encoder(encoder: dict):
    """The frozen Whisper encoder of ``data.encoder`` (built once per process and kept): a ``keras.Model``
    ``(1, frames, 80) float32`` log-mel → a list of ``(1, ceil(frames / 2), width)`` outputs, one per cached block.

    Raises:
        WeightsError: the weights file or its sizes JSON is missing, or is not a Whisper encoder.
        ValueError: a block the encoder lacks.
    """
    import keras

    from ..models.whisper import check_block, pretrained_whisper
    from .config import whisper_sizes

    key = (encoder["weights"], tuple(encoder["blocks"]))
    if key not in _ENCODERS:
        weights, blocks = encoder["weights"], list(encoder["blocks"])
        sizes = whisper_sizes(encoder)
        for b in blocks:
            check_block(b, sizes)
        if blocks == ["final"]:
            model = pretrained_whisper(weights, block="final", sizes=sizes)
            model = keras.Model(model.input, [model.output])
        else:
            full = pretrained_whisper(weights, block="all", sizes=sizes)
            model = keras.Model(full.input, [full.outputs[int(b)] for b in blocks])
        _ENCODERS[key] = model
    return _ENCODERS[key]


def whisper_features(y: np.ndarray, cfg: FeatureConfig, source: str | Path = "<array>") -> np.ndarray:
    """The frozen Whisper encoder's outputs for one waveform (``data.kind: whisper``).

    Whisper's log-mel of the clip at its own length (or padded/trimmed to ``max_sec``), through the encoder of
    ``cfg.encoder`` (:func:`whisper_encoder`); a clip over 30 s (3000 log-mel frames, the position table) is
    encoded in consecutive 30 s windows and their frames concatenated (each window sees only itself).

    Args:
        y: ``(samples,) float`` mono at 16 kHz.
        cfg: the feature settings (kind ``whisper``).
        source: name used in error messages.

    Returns:
        ``(width, frames, n_blocks) float32``: frames = ``ceil(samples // 160 / 2)`` (20 ms each), one channel per
        block of ``cfg.encoder["blocks"]``.

    Raises:
        ClipTooShortError: fewer encoder frames than one segment (``segment_frames``).
        WeightsError: see :func:`whisper_encoder`.
    """
    from ..whisper_features import HOP_LENGTH, MAX_SECONDS, SR, whisper_log_mel

    y = np.asarray(y, np.float32).reshape(-1)
    if cfg.max_sec is not None:
        y = pad_or_trim(y, int(round(cfg.max_sec * cfg.sr)))
    frames = -(-(len(y) // HOP_LENGTH) // 2)
    if frames < cfg.segment_frames:
        raise ClipTooShortError(f"{source}: {frames} Whisper encoder frames (20 ms) is shorter than one segment "
                                f"({cfg.segment_frames} frames); lower segment_frames")
    model = whisper_encoder(cfg.whisper_encoder())
    window = int(MAX_SECONDS * SR)
    parts = []
    for start in range(0, len(y), window):
        piece = y[start:start + window]
        if len(piece) < 2 * HOP_LENGTH:       # under one frame pair at the very end of a long clip: dropped
            break
        outs = model(whisper_log_mel(piece)[None], training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]      # Keras gives one output bare
        parts.append(np.stack([np.asarray(o)[0] for o in outs], axis=-1))   # (frames, width, n_blocks)
    return np.ascontiguousarray(np.concatenate(parts).transpose(1, 0, 2), dtype=np.float32)


def audio_features(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """:func:`waveform_features` of an audio file, loaded mono at ``cfg.sr``.

    Raises:
        AudioError: missing/unreadable/silent audio, or (``ClipTooShortError``) too short.
    """
    return waveform_features(load_clip(path, cfg), cfg, path)


def feature_rows(features: np.ndarray) -> np.ndarray:
    """``(n_mels, frames, C)`` features as ``(frames, n_mels * C)`` rows, one per frame: what
    :mod:`cnnrnn.normalize` computes statistics over (one mean and std per mel band and channel)."""
    n_mels, frames, channels = features.shape
    return features.transpose(1, 0, 2).reshape(frames, n_mels * channels)


def normalize_features(features: np.ndarray, cfg: FeatureConfig, speaker: str | None = None, stats=None,
                       mode: str | None = None) -> np.ndarray:
    """Normalise ``(n_mels, frames, C)`` features as ``cfg.normalization`` (or ``mode``) says.

    ``none`` returns them unchanged; otherwise every mel band of every channel is standardised
    (:func:`cnnrnn.normalize.apply`: over this utterance, with the run's global statistics, or with its
    speaker's). Kind ``deltas``: z-scores in ``[-norm_range, norm_range]`` are mapped linearly to [0, 1],
    clipped. Kinds ``yamnet`` and ``whisper`` (for Whisper per encoder dimension and cached block): the z-scores
    are mapped back to the global (training data) mean and standard deviation of each band, ``z * std + mean``,
    so the pretrained network sees values in their usual range with each speaker's (or utterance's) own offset
    and spread removed; ``global`` is then the identity.

    Args:
        features: from :func:`waveform_features`.
        speaker, stats: the utterance's speaker and the run's :class:`cnnrnn.normalize.NormStats` (``global``
            and ``speaker`` modes, and every mode but ``none`` for ``yamnet`` / ``whisper``; a speaker the
            statistics lack uses the global ones).
        mode: overrides ``cfg.normalization`` (e.g. ``utterance`` for a file whose speaker is unknown).

    Returns:
        ``(n_mels, frames, C) float32``: in [0, 1] for ``deltas``; log-mel values for ``yamnet``; encoder outputs
        (``(width, frames, n_blocks)``) for ``whisper``.

    Raises:
        NormalizationError: ``global``/``speaker`` (any mode for ``yamnet`` / ``whisper``) without statistics, or
            statistics of another shape.
    """
    from ..normalize import apply, to_global_range

    mode = mode or cfg.normalization
    if mode == "none":
        return features
    n_mels, frames, channels = features.shape
    z = apply(feature_rows(features), speaker, stats, mode)
    pretrained = cfg.kind in PRETRAINED_KINDS
    if pretrained:
        z = to_global_range(z, stats, f"{'YAMNet' if cfg.kind == 'yamnet' else 'Whisper'} features ({mode})")
    z = z.reshape(frames, n_mels, channels).transpose(1, 0, 2)
    if pretrained:
        return z.astype(np.float32)
    return np.clip(z / (2 * cfg.norm_range) + 0.5, 0.0, 1.0).astype(np.float32)


def cut(features: np.ndarray, cfg: FeatureConfig) -> np.ndarray:
    """Cut ``(n_mels, frames, C)`` features into the step-1 model's inputs, ``segment_frames`` every
    ``segment_hop`` frames (trailing frames that fill no segment are dropped).

    Returns:
        ``(n_segments, n_mels, segment_frames, 3)`` (kind ``deltas``, :func:`cnnrnn.features.segment`) or
        ``(n_segments, segment_frames, n_mels, 1)`` (kind ``yamnet``, :func:`cnnrnn.features.yamnet_patches`),
        or ``(n_segments, segment_frames, width, n_blocks)`` (kind ``whisper``: encoder frames), ``float32``.

    Raises:
        ClipTooShortError: fewer frames than one segment.
    """
    if cfg.kind == "yamnet":
        return yamnet_patches(features[..., 0].T, patch_frames=cfg.segment_frames, patch_hop=cfg.segment_hop)
    if cfg.kind == "whisper":
        return np.ascontiguousarray(segment(features, cfg.segment_frames, cfg.segment_hop).transpose(0, 2, 1, 3))
    return segment(features, cfg.segment_frames, cfg.segment_hop)


def waveform_segments(y: np.ndarray, cfg: FeatureConfig, source: str | Path = "<array>", speaker: str | None = None,
                      stats=None, mode: str | None = None) -> np.ndarray:
    """Segments of a waveform: :func:`waveform_features`, :func:`normalize_features`, then :func:`cut`.

    Args:
        y: ``(samples,) float32`` mono at ``cfg.sr`` Hz.
        cfg: the feature settings.
        source: name used in error messages.
        speaker, stats, mode: see :func:`normalize_features`.

    Returns:
        as :func:`cut`.

    Raises:
        ClipTooShortError: the clip gives fewer frames than one segment.
    """
    return cut(normalize_features(waveform_features(y, cfg, source), cfg, speaker, stats, mode), cfg)


def normalization_stats(train: "FeatureSet", others: Sequence["FeatureSet"], cfg: FeatureConfig):
    """The statistics of ``cfg.normalization`` ``global`` / ``speaker`` (and ``utterance`` for kinds ``yamnet`` and
    ``whisper``, whose z-scores are mapped back to the global ones): global ones from the ``train`` utterances only,
    one set per speaker from all of that speaker's utterances in ``train`` and ``others`` (their unlabelled audio: for a
    test speaker a transductive choice) (:func:`cnnrnn.normalize.fit`).

    Returns:
        :class:`cnnrnn.normalize.NormStats`, or ``None`` for the modes that need none.
    """
    from ..normalize import fit

    if cfg.normalization == "none" or (cfg.normalization == "utterance" and cfg.kind not in PRETRAINED_KINDS):
        return None
    sets = [train, *others]
    return fit([feature_rows(f) for s in sets for f in s.features], [sp or None for s in sets for sp in s.speakers],
               reference=[s is train for s in sets for _ in s.features])


def files_features(paths: Sequence[str | Path], cfg: FeatureConfig, progress: bool = True,
                   desc: str = "features") -> tuple[list[int], list[np.ndarray], dict[str, list[str]]]:
    """:func:`audio_features` of many files; unusable audio is skipped and counted.

    Returns:
        ``(kept, features, skipped)``: indices into ``paths`` of the usable files, their features
        (``(n_mels, frames_i, C) float32`` each, C = 3, 1 for ``yamnet``; ``(width, frames_i, n_blocks)`` for
        ``whisper``) and ``{reason: [path, ...]}``.
    """
    return load_each(paths, lambda p: audio_features(p, cfg), desc=desc, progress=progress)


@dataclass
class SegmentSet:
    """Segments of the usable utterances of a filelist, in filelist order.

    Attributes:
        paths: wav paths ``(N,)``; labels: ``(N,) int``; segments: N arrays of :func:`cut`
            (``(n_segments_i, n_mels, segment_frames, 3)`` or YAMNet's ``(n_segments_i, frames, 64, 1)`` float32);
        skipped: ``{reason: [path, ...]}``;
        speakers: the N speaker ids (``""`` = unknown; empty list when not known at all).
    """

    paths: list[str]
    labels: np.ndarray
    segments: list[np.ndarray]
    skipped: dict[str, list[str]]
    speakers: list[str] = field(default_factory=list)

    @property
    def counts(self) -> np.ndarray:
        """Segments per utterance ``(N,) int``."""
        return np.array([len(s) for s in self.segments], dtype=int)

    def subset(self, indices: Sequence[int]) -> "SegmentSet":
        """The utterances at ``indices`` (e.g. a fold of a whole-corpus set), with no skips."""
        return SegmentSet([self.paths[i] for i in indices], self.labels[np.asarray(indices, dtype=int)],
                          [self.segments[i] for i in indices], {},
                          [self.speakers[i] for i in indices] if self.speakers else [])


@dataclass
class FeatureSet:
    """Un-segmented features of the usable utterances of a filelist, in filelist order.

    Attributes:
        paths: wav paths ``(N,)``; labels: ``(N,) int``; speakers: N speaker ids (``""`` = unknown);
        features: N arrays ``(n_mels, frames_i, C) float32`` (:func:`waveform_features`);
        skipped: ``{reason: [path, ...]}``.
    """

    paths: list[str]
    labels: np.ndarray
    speakers: list[str]
    features: list[np.ndarray]
    skipped: dict[str, list[str]]

    def subset(self, indices: Sequence[int]) -> "FeatureSet":
        """The utterances at ``indices`` (e.g. a fold of a whole-corpus set), with no skips."""
        return FeatureSet([self.paths[i] for i in indices], self.labels[np.asarray(indices, dtype=int)],
                          [self.speakers[i] for i in indices], [self.features[i] for i in indices], {})

    def segmented(self, cfg: FeatureConfig, stats=None) -> SegmentSet:
        """The :class:`SegmentSet`: every utterance normalised (:func:`normalize_features`, with its speaker and
        ``stats``, needed by ``global`` / ``speaker``) and cut into segments (:func:`cut`).

        Raises:
            NormalizationError: ``global``/``speaker`` normalisation without ``stats``.
        """
        segs = [cut(normalize_features(f, cfg, s or None, stats), cfg) for f, s in zip(self.features, self.speakers)]
        return SegmentSet(list(self.paths), self.labels, segs, dict(self.skipped), list(self.speakers))


def resolve_labels(cfg: DcnnConfig) -> list[str]:
    """Label names of ``cfg.data.labels_file`` (or the ``labels.json`` found beside the train filelist, or in
    the folder above it, where ``cnnrnn filelists`` writes it).

    Raises:
        FileNotFoundError: no labels file.
    """
    if cfg.data.labels_file:
        return load_labels(cfg.data.labels_file)
    found = labels_beside(cfg.data.filelist_train)
    if found is None:
        raise FileNotFoundError(f"no labels_file in the config and no labels.json beside {cfg.data.filelist_train}")
    return load_labels(found)


def labels_beside(filelist: str | Path) -> Path | None:
    """The ``labels.json`` in a filelist's folder or the folder above it, or ``None``."""
    folder = Path(filelist).parent
    for candidate in (folder / "labels.json", folder.parent / "labels.json"):
        if candidate.is_file():
            return candidate
    return None


def load_segments(filelist: str | Path, labels: Sequence[str], features: FeatureConfig, root: str | None = None,
                  progress: bool = True, stats=None) -> SegmentSet:
    """Read a filelist and compute every utterance's segments (:func:`load_features`, then
    :meth:`FeatureSet.segmented` with ``stats``).

    Raises:
        as :func:`load_features`; NormalizationError: ``global``/``speaker`` normalisation without ``stats``.
    """
    return load_features(filelist, labels, features, root, progress).segmented(features, stats)


def load_features(filelist: str | Path, labels: Sequence[str], features: FeatureConfig, root: str | None = None,
                  progress: bool = True, cache: dict[str, np.ndarray | str] | None = None) -> FeatureSet:
    """Read a filelist and compute every utterance's features (:func:`audio_features`).

    Missing wavs and unusable audio (unreadable, silent, shorter than one segment) are skipped and counted.
    With ``cache`` (a dict shared between calls with the same ``features``, e.g. over the folds of one corpus:
    :func:`cnnrnn.dcnn.folds.run_folds`), each file's features, or the reason it is unusable, are computed
    once and kept there under the wav path.

    Raises:
        ConfigError: no filelist named.
        FileNotFoundError: no filelist.
        FilelistError: a malformed line or an emotion id outside ``labels``.
        ValueError: no usable utterance.
    """
    if not str(filelist):
        raise ConfigError("no filelist given: set data.filelist_train / data.filelist_test in the config "
                          "or pass --filelist-train / --filelist-test")
    entries, report = read_filelist(filelist, labels, root=root)
    skipped = {reason: list(ids) for reason, ids in report.skipped.items()}
    paths = [e.wavpath for e in entries]
    if cache is None:
        kept, feats, unusable = files_features(paths, features, progress, desc=f"features {Path(filelist).name}")
    else:
        todo = [p for p in dict.fromkeys(paths) if p not in cache]
        done, new, reasons = files_features(todo, features, progress, desc=f"features {Path(filelist).name}")
        cache.update({todo[i]: f for i, f in zip(done, new)})
        cache.update({p: reason for reason, ps in reasons.items() for p in ps})
        kept = [i for i, p in enumerate(paths) if not isinstance(cache[p], str)]
        feats = [cache[paths[i]] for i in kept]
        unusable = {}
        for p in paths:
            if isinstance(cache[p], str):
                unusable.setdefault(cache[p], []).append(p)
    for reason, paths in unusable.items():
        skipped.setdefault(reason, []).extend(paths)
    if skipped:
        log.warning("%s: skipped %s", filelist, {k: len(v) for k, v in skipped.items()})
    if not feats:
        raise ValueError(f"{filelist}: no usable utterance (skipped: {skipped})")
    return FeatureSet([entries[i].wavpath for i in kept], np.array([entries[i].emotion_id for i in kept], dtype=int),
                      [entries[i].speaker_id for i in kept], feats, skipped)


def merged_skips(sets) -> dict[str, list[str]]:
    """The skips of several :class:`SegmentSet` together: ``{reason: [path, ...]}``."""
    out: dict[str, list[str]] = {}
    for s in sets:
        for reason, paths in s.skipped.items():
            out.setdefault(reason, []).extend(paths)
    return out


def segment_dataset(segments: np.ndarray, labels: np.ndarray | None, image_size, batch_size: int,
                    shuffle: bool = False, seed: int = 0):
    """``tf.data`` over ``(N, n_mels, frames, 3) float32`` segments, resized to ``image_size`` and
    ImageNet-normalised per batch (:func:`cnnrnn.features.to_backbone_input`); with ``image_size`` ``None``
    (YAMNet patches, :attr:`cnnrnn.dcnn.config.FeatureConfig.resize`) the segments go in as they are.

    Returns:
        batches of ``(batch, H, W, C) float32`` (with ``(batch,) int32`` labels unless ``labels`` is None).
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(segments)))
    if shuffle:
        ds = ds.shuffle(len(segments), seed=seed, reshuffle_each_iteration=True)
    shape = (None,) + segments.shape[1:]
    y_all = None if labels is None else np.asarray(labels, np.int32)

    def gather(idx):
        x = tf.ensure_shape(tf.numpy_function(lambda i: segments[i], [idx], tf.float32), shape)
        if image_size is not None:
            x = to_backbone_input(x, image_size)
        if y_all is None:
            return x
        return x, tf.ensure_shape(tf.numpy_function(lambda i: y_all[i], [idx], tf.int32), (None,))

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def segment_probabilities(dcnn, segments: Sequence[np.ndarray], image_size, batch_size: int = 64) -> np.ndarray:
    """Utterance probabilities of the step-1 DCNN: the mean of each utterance's segment probabilities.

    Args:
        dcnn: the fine-tuned DCNN (:func:`cnnrnn.models.dcnn.build_dcnn`).
        segments: per utterance ``(n_segments_i, ...) float32`` (:func:`cut`).
        image_size: as :func:`segment_dataset`.

    Returns:
        ``(N, n_classes) float32``.
    """
    counts = np.array([len(s) for s in segments], dtype=int)
    proba = dcnn.predict(segment_dataset(np.concatenate(segments).astype(np.float32), None, image_size,
                                         batch_size), verbose=0)
    return utterance_mean(proba, counts)


def utterance_mean(proba: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Mean of consecutive rows of ``proba`` ``(sum(counts), C)``, ``counts[i]`` rows per utterance:
    ``(len(counts), C) float32``."""
    counts = np.asarray(counts, dtype=int)
    starts = np.cumsum(np.concatenate([[0], counts[:-1]]))
    return (np.add.reduceat(proba, starts, axis=0) / counts[:, None]).astype(np.float32)


def utterance_features(extractor, segments: Sequence[np.ndarray], image_size, batch_size: int = 64) -> np.ndarray:
    """DCNN penultimate features of every utterance, padded to the longest one.

    Args:
        extractor: :func:`cnnrnn.models.dcnn.feature_extractor` of the fine-tuned DCNN.
        segments: per utterance ``(n_segments_i, ...) float32`` (:func:`cut`).
        image_size: as :func:`segment_dataset`.

    Returns:
        ``(N, max_i n_segments_i, feat_dim) float32``, padded with
        :data:`cnnrnn.models.blstm_attention.PAD_VALUE` (-1) after each utterance's last segment.
    """
    from ..models.blstm_attention import PAD_VALUE

    counts = [len(s) for s in segments]
    flat = np.concatenate(segments).astype(np.float32)
    feats = extractor.predict(segment_dataset(flat, None, image_size, batch_size), verbose=0)
    out = np.full((len(segments), max(counts), feats.shape[1]), PAD_VALUE, np.float32)
    for i, (start, n) in enumerate(zip(np.cumsum([0] + counts[:-1]), counts)):
        out[i, :n] = feats[start:start + n]
    return out
