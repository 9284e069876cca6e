"""DCNN-BLSTMwA inputs: 3-channel log-mel segments of wav files and filelists, and the step-2 features.

The recipe follows Zhang et al., "Pre-trained Deep Convolution Neural Network Model With Attention for
Speech Emotion Recognition" (Frontiers in Physiology 2021) and the public DCNN-BLSTMWA code:

1. pre-emphasis 0.97 (``librosa.effects.preemphasis``), then pad with zeros / trim to ``max_sec``;
2. log-mel: 25 ms window, 10 ms hop, ``n_mels`` 64, ``fmin`` 20 Hz, ``fmax`` sr/2, power 2, Slaney
   filter norm, HTK mel scale, ``log(mel + 1e-8)``; Δ and ΔΔ (width 5); per-channel min-max to [0, 1]
   (:func:`cnnrnn.features.log_mel_deltas`);
3. segments of 64 frames with hop 32: ``n_segments = 1 + (frames - 64) // 32``; trailing frames that do
   not fill a segment are dropped, as in the original (:func:`cnnrnn.features.segment`);
4. for the DCNN, each segment is resized to the backbone input (227×227 for AlexNet) and normalised with
   the ImageNet mean/std (:func:`cnnrnn.features.to_backbone_input`, in :func:`segment_dataset`).

A clip shorter than one segment raises :class:`~cnnrnn.features.ClipTooShortError`, an
:class:`~cnnrnn.audio.AudioError` with reason ``too_short``, so batch loops count it as a skip like any
other unusable audio.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifacts import load_labels
from ..audio import load_audio, load_each, pad_or_trim
from ..config import ConfigError
from ..features import ClipTooShortError, log_mel_deltas, segment, to_backbone_input
from .config import DcnnConfig, FeatureConfig
from .filelists import read_filelist

log = logging.getLogger("cnnrnn.dcnn")


def waveform_segments(y: np.ndarray, cfg: FeatureConfig, source: str | Path = "<array>") -> np.ndarray:
    """Segments of a waveform: pre-emphasis, pad/trim to ``max_sec``, log-mel + Δ + ΔΔ, min-max, cut.

    Args:
        y: ``(samples,) float32`` mono at ``cfg.sr`` Hz.
        cfg: the feature settings.
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
    feats = log_mel_deltas(y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                           fmin=cfg.fmin, fmax=cfg.fmax, delta_width=cfg.delta_width)
    return segment(feats, cfg.segment_frames, cfg.segment_hop)


def audio_segments(path: str | Path, cfg: FeatureConfig) -> np.ndarray:
    """:func:`waveform_segments` of an audio file, loaded mono at ``cfg.sr``.

    Raises:
        AudioError: missing/unreadable/silent audio, or (``ClipTooShortError``) too short.
    """
    y, _ = load_audio(path, cfg.sr)
    return waveform_segments(y, cfg, path)


def files_segments(paths: Sequence[str | Path], cfg: FeatureConfig, progress: bool = True,
                   desc: str = "segments") -> tuple[list[int], list[np.ndarray], dict[str, list[str]]]:
    """:func:`audio_segments` of many files; unusable audio is skipped and counted.

    Returns:
        ``(kept, segments, skipped)``: indices into ``paths`` of the usable files, their segments
        (``(n_segments_i, n_mels, segment_frames, 3) float32`` each) and ``{reason: [path, ...]}``.
    """
    kept, segs, skipped = load_each(paths, lambda p: audio_segments(p, cfg), desc=desc, progress=progress)
    return kept, segs, skipped


@dataclass
class SegmentSet:
    """Segments of the usable utterances of a filelist, in filelist order.

    Attributes:
        paths: wav paths ``(N,)``; labels: ``(N,) int``; segments: N arrays
            ``(n_segments_i, n_mels, segment_frames, 3) float32``; skipped: ``{reason: [path, ...]}``.
    """

    paths: list[str]
    labels: np.ndarray
    segments: list[np.ndarray]
    skipped: dict[str, list[str]]

    @property
    def counts(self) -> np.ndarray:
        """Segments per utterance ``(N,) int``."""
        return np.array([len(s) for s in self.segments], dtype=int)

    def subset(self, indices: Sequence[int]) -> "SegmentSet":
        """The utterances at ``indices`` (e.g. a fold of a whole-corpus set), with no skips."""
        return SegmentSet([self.paths[i] for i in indices], self.labels[np.asarray(indices, dtype=int)],
                          [self.segments[i] for i in indices], {})


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
                  progress: bool = True) -> SegmentSet:
    """Read a filelist and compute every utterance's segments (:func:`audio_segments`).

    Missing wavs and unusable audio (unreadable, silent, shorter than one segment) are skipped and counted.

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
    kept, segs, unusable = files_segments([e.wavpath for e in entries], features, progress,
                                          desc=f"segments {Path(filelist).name}")
    for reason, paths in unusable.items():
        skipped.setdefault(reason, []).extend(paths)
    if skipped:
        log.warning("%s: skipped %s", filelist, {k: len(v) for k, v in skipped.items()})
    if not segs:
        raise ValueError(f"{filelist}: no usable utterance (skipped: {skipped})")
    return SegmentSet([entries[i].wavpath for i in kept], np.array([entries[i].emotion_id for i in kept], dtype=int),
                      segs, skipped)


def merged_skips(sets) -> dict[str, list[str]]:
    """The skips of several :class:`SegmentSet` together: ``{reason: [path, ...]}``."""
    out: dict[str, list[str]] = {}
    for s in sets:
        for reason, paths in s.skipped.items():
            out.setdefault(reason, []).extend(paths)
    return out


def segment_dataset(segments: np.ndarray, labels: np.ndarray | None, image_size, batch_size: int,
                    shuffle: bool = False, seed: int = 0):
    """``tf.data`` over ``(N, n_mels, frames, 3) float32`` segments, resized and ImageNet-normalised per batch
    (:func:`cnnrnn.features.to_backbone_input`).

    Returns:
        batches of ``(batch, H, W, 3) float32`` (with ``(batch,) int32`` labels unless ``labels`` is None).
    """
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(segments)))
    if shuffle:
        ds = ds.shuffle(len(segments), seed=seed, reshuffle_each_iteration=True)
    shape = (None,) + segments.shape[1:]
    y_all = None if labels is None else np.asarray(labels, np.int32)

    def gather(idx):
        x = tf.ensure_shape(tf.numpy_function(lambda i: segments[i], [idx], tf.float32), shape)
        x = to_backbone_input(x, image_size)
        if y_all is None:
            return x
        return x, tf.ensure_shape(tf.numpy_function(lambda i: y_all[i], [idx], tf.int32), (None,))

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def segment_probabilities(dcnn, segments: Sequence[np.ndarray], image_size, batch_size: int = 64) -> np.ndarray:
    """Utterance probabilities of the step-1 DCNN: the mean of each utterance's segment probabilities.

    Args:
        dcnn: the fine-tuned DCNN (:func:`cnnrnn.models.dcnn.build_dcnn`).
        segments: per utterance ``(n_segments_i, n_mels, frames, 3) float32``.

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
        segments: per utterance ``(n_segments_i, n_mels, frames, 3) float32``.

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
