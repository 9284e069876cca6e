"""Saliency of a DCNN-BLSTMwA run on one audio file, on the file's log-mel axes (``cnnrnn spectrogram --explain``).

The file is read as prediction reads it (:func:`cnnrnn.dcnn.predict.predict_files`): one utterance, or for a file
longer than ``max_sec`` windows of ``max_sec`` every half of it, as :func:`cnnrnn.predict.predict` cuts them
(:func:`cnnrnn.explain.file_windows`). Each utterance becomes the run's features (:func:`cnnrnn.dcnn.data
.waveform_features`), normalised as prediction normalises them (:func:`cnnrnn.dcnn.predict.normalize_inputs`) and
cut into segments, each resized to the DCNN's input and ImageNet-normalised (:func:`cnnrnn.features
.to_backbone_input`); YAMNet patches go in as they are.

What is explained is the class score of the model that predicted:

* **step 1** (``dcnn.h5``: an utterance's probabilities are the mean of its segments'): each segment's map for
  the class's pre-softmax score of that segment (:func:`cnnrnn.explain.attribution`: Grad-CAM on the DCNN's last
  usable convolution, ``conv5`` of AlexNet, or the method asked);
* **step 2** (``blstm_attention.h5``): the BiLSTM-attention's class score, back through the DCNN into each
  segment. One Keras model is composed per utterance (:func:`_slot_model`): a segment image → the DCNN's
  penultimate features → put in place ``i`` of the utterance's sequence of segment features (the others held at
  their values) → the BiLSTM-attention. Its gradients for segment ``i`` are the whole two-step model's (a
  segment's convolutional map reaches the score only through its own features; ``tests/test_explain_families.py``
  checks them against one tape over all segments), so segments the attention passes over get little evidence.

Each segment's map is resized to its ``(n_mels, segment_frames)`` frames (YAMNet's time-major patches
transposed) and placed on the utterance's frames, averaged where segments overlap
(:func:`cnnrnn.explain.place_segments`); segments keep their relative strength (one utterance is one
prediction). The paper's features (kind ``deltas``) use HTK mel bands, the drawn log-mel Slaney's: the rows are
moved to the drawn bands' centre frequencies (:func:`_to_slaney_rows`). Windows are normalised and placed on the file's frames
(frames past the file's end, the padding of a short utterance, are dropped).

Runs on Whisper encoder frames (``data.kind: whisper``) are refused: their segments are encoder outputs, not a
log-mel, and gradients through the frozen encoder are not composed here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .config import FeatureConfig, read_norm_stats, read_sidecar
from .data import waveform_features
from .predict import STEPS, checkpoint_step, normalize_inputs


def check(models: Sequence[str | Path], manifest=None) -> None:
    """Refuse, before anything is predicted, a run whose input has no log-mel to map the evidence onto.

    Raises:
        ExplainError: a run on Whisper encoder frames (``data.kind: whisper``).
        ValueError: not one checkpoint or run folder. FileNotFoundError: no checkpoint or sidecar.
    """
    _features(models)


def _features(models: Sequence[str | Path]) -> tuple[Path, str, list[str], FeatureConfig, dict]:
    from ..explain import ExplainError

    if len(models) != 1:
        raise ValueError(f"a DCNN-BLSTMwA run is explained with one checkpoint or run folder, got {len(models)}")
    checkpoint, step = checkpoint_step(models[0])
    labels, features, meta = read_sidecar(checkpoint, STEPS[step])
    if features.kind == "whisper":
        raise ExplainError("--explain: this DCNN-BLSTMwA run's segments are Whisper encoder frames (data.kind "
                           "whisper), not a log-mel, so there is no time-frequency map to draw; runs on the paper's "
                           "log-mel (data.kind deltas) or YAMNet patches are drawn")
    return checkpoint, step, labels, features, meta


def spectrogram(features: FeatureConfig):
    """The :class:`cnnrnn.features.SpectrogramConfig` whose log-mel (:func:`cnnrnn.features.log_mel`) has the
    frames the run's features have: the paper's log-mel (``sr``, ``n_fft`` = the 25 ms window, ``hop_length``,
    ``n_mels``, ``fmin``, ``fmax``, dB below the clip's peak), or for ``data.kind: yamnet`` YAMNet's own front end."""
    from ..features import YAMNET_SPECTROGRAM, SpectrogramConfig

    if features.kind == "yamnet":
        return SpectrogramConfig(kind="yamnet", duration=features.max_sec or 4.0, colormap="gray",
                                 **YAMNET_SPECTROGRAM)
    return SpectrogramConfig(sr=features.sr, n_mels=features.n_mels, fmin=features.fmin, fmax=features.fmax,
                             n_fft=features.n_fft, hop_length=features.hop_length,
                             duration=features.max_sec or 4.0)


def _slot_model(extractor, blstm, context: np.ndarray):
    """``(model, place)``: ``model`` maps one segment image ``(H, W, C)`` to the step-2 probabilities of the
    utterance whose other segments' features are ``context`` ``(n_segments, feat_dim)``; ``place(i)`` makes the
    image segment ``i`` (its features replace row ``i``)."""
    import keras

    class Slot(keras.layers.Layer):
        def build(self, input_shape):
            self.context = self.add_weight(shape=context.shape, initializer="zeros", trainable=False, name="context")
            self.mask = self.add_weight(shape=(len(context), 1), initializer="zeros", trainable=False, name="mask")

        def call(self, feature):
            return self.context * (1.0 - self.mask) + feature[:, None, :] * self.mask

        def compute_output_shape(self, input_shape):
            return (input_shape[0], *context.shape)

    inputs = keras.Input(tuple(extractor.input_shape[1:]))
    slot = Slot(name="segment_slot")
    model = keras.Model(inputs, blstm(slot(extractor(inputs))), name="dcnn_step2_per_segment")
    slot.context.assign(context)

    def place(i: int) -> None:
        mask = np.zeros((len(context), 1), np.float32)
        mask[i] = 1.0
        slot.mask.assign(mask)

    return model, place


def _to_slaney_rows(m: np.ndarray, features: FeatureConfig) -> np.ndarray:
    """A map on the run's HTK mel bands ``(n_mels, frames)`` moved to the Slaney bands of the drawn log-mel (the
    same ``n_mels``, ``fmin``, ``fmax``): each drawn band takes the map at its centre frequency, interpolated
    linearly between the HTK bands' centres (up to 3 bands apart for 64 bands from 20 Hz at 16 kHz)."""
    import librosa

    fmax = features.fmax or features.sr / 2
    htk = librosa.mel_frequencies(features.n_mels + 2, fmin=features.fmin, fmax=fmax, htk=True)[1:-1]
    slaney = librosa.mel_frequencies(features.n_mels + 2, fmin=features.fmin, fmax=fmax, htk=False)[1:-1]
    position = np.interp(slaney, htk, np.arange(features.n_mels))
    low = np.clip(np.floor(position).astype(int), 0, features.n_mels - 1)
    high = np.minimum(low + 1, features.n_mels - 1)
    w = (position - low)[:, None]
    return ((1 - w) * m[low] + w * m[high]).astype(np.float32)


def _utterance_map(segments: np.ndarray, features: FeatureConfig, model, dcnn, step: str, method: str,
                   target: int | None) -> np.ndarray:
    """The evidence map ``(n_mels, frames)`` of one utterance's normalised segments (see the module docstring)."""
    from ..explain import attribution, place_segments
    from ..features import to_backbone_input
    from ..models.dcnn import feature_extractor

    x = np.asarray(to_backbone_input(segments, features.resize)) if features.resize else segments
    time_major = features.kind == "yamnet"
    seg_size = (features.segment_frames, features.n_mels) if time_major else (features.n_mels,
                                                                               features.segment_frames)
    if step == "train":
        extractor = feature_extractor(dcnn)
        context = np.asarray(extractor(x, training=False))
        scorer, place = _slot_model(extractor, model, context)
        if target is None:
            target = int(np.argmax(np.asarray(model(context[None], training=False))[0]))
    else:
        scorer, place = dcnn, None
        if target is None:
            target = int(np.argmax(np.asarray(dcnn(x, training=False)).mean(axis=0)))
    maps = []
    for i, seg in enumerate(x):
        if place is not None:
            place(i)
        m = attribution(scorer, seg, method, target=target, size=seg_size)
        maps.append(m.T if time_major else m)
    frames = (len(segments) - 1) * features.segment_hop + features.segment_frames
    m = place_segments(maps, [i * features.segment_hop for i in range(len(segments))], frames)
    return m if time_major else _to_slaney_rows(m, features)


def explain(models: Sequence[str | Path], audio: str | Path, manifest=None, *, method: str | None = None,
            target: int | None = None, speaker: str | None = None) -> dict[str, Any]:
    """The saliency of class ``target`` for ``audio``, over the file's log-mel as ``spectrogram`` computes it.

    Args:
        models: one step-2 or step-1 run folder or checkpoint (:func:`cnnrnn.dcnn.predict.checkpoint_step`).
        audio: one audio file.
        manifest: the run's :class:`cnnrnn.runs.RunManifest` (not needed: the sidecar JSON says it all).
        method: :data:`cnnrnn.explain.METHODS` or ``None`` (:func:`cnnrnn.explain.choose_method` of the DCNN:
            ``grad-cam`` where it has a usable convolutional map, as AlexNet's ``conv5``, else ``gradient``).
        target: class index (default: the predicting model's top class, per utterance).
        speaker: the file's speaker (a run with ``speaker`` normalisation; default none: utterance
            normalisation, as prediction without a speaker).

    Returns:
        ``{"saliency": (n_mels, frames) float32`` non-negative, summing to 1, on the frames (``hop_length``
        samples apart from the file's start) of :func:`cnnrnn.features.log_mel` of the whole file with
        ``"spectrogram"`` (:func:`spectrogram`); ``"method"``: the method used; ``"labels"``: the class names;
        ``"step"``: ``train`` (the step-2 score, through the DCNN) or ``finetune`` (the DCNN's own)``}``.

    Raises:
        ExplainError: a Whisper-feature run (:func:`check`); ``grad-cam`` on a DCNN without a usable
            convolutional map (the message names ``gradient``).
        ValueError: not one model. FileNotFoundError: a checkpoint, sidecar or the step-1 DCNN missing.
        AudioError: unusable audio, or (``too_short``) shorter than one segment.
    """
    from ..artifacts import load_model
    from ..explain import choose_method, file_windows, normalise, place_segments
    from ..features import load_clip, log_mel

    checkpoint, step, labels, features, meta = _features(models)
    model = load_model(checkpoint)
    dcnn = load_model(checkpoint.parent / meta["dcnn_checkpoint"]) if step == "train" else model
    method = method or choose_method(dcnn)
    spec = spectrogram(features)
    y = load_clip(audio, features)
    stats = read_norm_stats(checkpoint)
    maps, offsets = [], []
    for start, piece in file_windows(y, features.sr, features.max_sec):
        feats = waveform_features(piece, features, audio)
        segments = normalize_inputs([feats], [speaker], features, stats)[0][0]
        maps.append(normalise(_utterance_map(segments, features, model, dcnn, step, method, target)))
        offsets.append(int(round(start / features.hop_length)))
    frames = log_mel(y, spec).shape[1]
    whole = place_segments(maps, offsets, max(frames, max(o + m.shape[1] for o, m in zip(offsets, maps))))
    return {"saliency": normalise(whole[:, :frames]), "method": method, "spectrogram": spec, "labels": list(labels),
            "step": step}
