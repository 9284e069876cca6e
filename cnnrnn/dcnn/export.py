"""The DCNN-BLSTMwA family's part of ``cnnrnn export`` (:mod:`cnnrnn.export`): the export plan of a step-1 or
step-2 checkpoint, the sidecar's description of its preprocessing, and the model inputs made from audio by that
description.

The exported graph takes an utterance's segments ``(N, count, n_mels, segment_frames, 3) float32`` in [0, 1]
(YAMNet patches: ``(N, count, segment_frames, n_mels, 1)``), resizes them to the backbone's size and applies the
ImageNet normalisation (as :func:`cnnrnn.features.to_backbone_input`), then averages the DCNN's segment
probabilities (step 1) or runs the BiLSTM-attention over the DCNN features (step 2). It needs a fixed clip length
(``data.max_sec``).

Nothing heavy is imported at import time: :func:`model_inputs` runs without TensorFlow (librosa).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import CheckpointError
from ..export_formats import ExportPlan, run_labels, unrolled
from ..export_sidecar import ExportError, ModelInputs, describe_audio, describe_normalization, preprocessing_of
from .config import FAMILY

log = logging.getLogger("cnnrnn.export")

#: Loggers whose warnings the parity check holds back (files without a speaker: utterance normalisation).
LOGGERS = ("cnnrnn.dcnn",)


def plan(paths: list[Path], manifest, config, labels, batch_size: int, trust_code: bool = False) -> ExportPlan:
    """The :class:`cnnrnn.export_formats.ExportPlan` of a DCNN-BLSTMwA checkpoint (step 1, the DCNN; or step 2,
    the BiLSTM-attention head with the step-1 DCNN it names): one graph of input ``segments``.

    Args:
        paths: one checkpoint or run folder. manifest: unused (the checkpoint's own sidecar says how it was
            trained). config: unused (a warning says so).
        labels: class names or a ``labels.json``, or ``None`` (the checkpoint's sidecar's).
        batch_size: batch size of the Keras reference prediction.
        trust_code: load checkpoints with ``Lambda`` layers.

    Raises:
        ExportError: several paths, a Whisper-feature run, a run without a fixed clip length (``data.max_sec``),
            or a clip shorter than one segment.
        cnnrnn.artifacts.CheckpointError: a checkpoint does not load, or its output width differs from the labels.
    """
    from ..artifacts import load_model
    from ..features import IMAGENET_MEAN, IMAGENET_STD, n_segments
    from ..models.dcnn import feature_extractor
    from .config import read_norm_stats, read_sidecar
    from .data import segment_probabilities, utterance_features
    from .predict import STEPS, checkpoint_step

    if len(paths) != 1:
        raise ExportError(f"a DCNN-BLSTMwA export takes one checkpoint or run folder, got {len(paths)}")
    checkpoint, step = checkpoint_step(paths[0])
    recorded, features, meta = read_sidecar(checkpoint, STEPS[step])
    if config is not None:
        log.warning("--config is not used for a DCNN-BLSTMwA run: its %s says how it was trained", STEPS[step])
    labels = list(recorded) if labels is None else run_labels(labels, None, None, str(checkpoint))
    if features.kind == "whisper":
        raise ExportError(f"{checkpoint}: a DCNN-BLSTMwA run on Whisper features (data.kind whisper) encodes each clip "
                          "outside the step-1 model, so no single exported file maps audio features to probabilities; "
                          "export a CNNRNN Whisper run (train.backbone whisper) instead")
    if features.max_sec is None:
        raise ExportError(f"{checkpoint}: this run takes clips of any length (data.max_sec null), so the number of "
                          "segments per utterance is not fixed; export needs a fixed clip length: train with "
                          "data.max_sec set (3 for ESD, 4 for JTES)")
    model = load_model(checkpoint, trust_code=trust_code)
    if int(model.output_shape[-1]) != len(labels):
        raise CheckpointError(f"{checkpoint} predicts {model.output_shape[-1]} classes, the labels are {labels}")
    dcnn_path = checkpoint.parent / meta["dcnn_checkpoint"] if step == "train" else checkpoint
    dcnn = load_model(dcnn_path, trust_code=trust_code) if step == "train" else model
    extractor = feature_extractor(dcnn) if step == "train" else None
    stats = read_norm_stats(checkpoint)
    n_samples = int(round(features.max_sec * features.sr))
    frames = 1 + n_samples // features.hop_length if features.kind != "yamnet" else (
        1 + (n_samples - features.n_fft) // features.hop_length)
    count = n_segments(frames, features.segment_frames, features.segment_hop)
    if count < 1:
        raise ExportError(f"{checkpoint}: max_sec {features.max_sec} gives fewer frames than one segment")
    seg_shape = ((features.segment_frames, features.n_mels, 1) if features.kind == "yamnet"
                 else (features.n_mels, features.segment_frames, 3))

    def build(unroll: bool):
        import keras
        from keras import layers, ops

        inp = keras.Input((count, *seg_shape), name="segments")
        x = ops.reshape(inp, (-1, *seg_shape))
        if features.resize is not None:
            x = layers.Resizing(*features.resize, interpolation="bilinear", name="resize")(x)
            x = layers.Normalization(mean=list(IMAGENET_MEAN), variance=[v * v for v in IMAGENET_STD],
                                     name="imagenet_normalization")(x)  # (x - mean) / std, as to_backbone_input
        if step == "finetune":
            y = (unrolled(model) if unroll else model)(x, training=False)
            out = ops.mean(ops.reshape(y, (-1, count, len(labels))), axis=1)
        else:
            f = extractor(x, training=False)
            head = unrolled(model, (count, int(f.shape[-1]))) if unroll else model
            out = head(ops.reshape(f, (-1, count, int(f.shape[-1]))), training=False)
        return keras.Model(inp, out, name="dcnn_export")

    def reference(x):
        segs = list(x)
        if step == "finetune":
            return segment_probabilities(model, segs, features.resize, batch_size)
        return np.asarray(model.predict(utterance_features(extractor, segs, features.resize, batch_size),
                                        verbose=0), np.float32)

    prep = preprocessing_of(FAMILY, features, stats=stats, segments={"count": count, "step": step})
    return ExportPlan(FAMILY, paths[0], [checkpoint] + ([dcnn_path] if step == "train" else []), labels, build,
                      "segments", reference, prep, {"folder": str(checkpoint.parent), "step": step})



def preprocessing(cfg, settings: dict[str, Any], *, stats=None, image=None,
                  segments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The DCNN-BLSTMwA steps of the sidecar's ``preprocessing`` (:func:`cnnrnn.export_sidecar.preprocessing_of`
    adds ``family`` and ``settings``): ``audio`` (with pre-emphasis), ``features`` (log-mel + deltas, or YAMNet's
    log-mel), ``normalization``, ``segments``, ``image`` (the resize inside the model) and ``input_scaling``.

    Args:
        cfg: the run's :class:`cnnrnn.dcnn.config.FeatureConfig`. settings: its fields as a dict (unused).
        stats: the run's :class:`cnnrnn.normalize.NormStats`, or ``None``. image: unused.
        segments: ``{"count", "step"}``: segments per utterance and the training step (``finetune`` / ``train``).
    """
    out: dict[str, Any] = {}
    out["audio"] = describe_audio(cfg.sr, cfg.max_sec, "zeros appended at the end / cut at the end to n_samples, "
                                                       "after pre-emphasis")
    out["audio"]["preemphasis"] = cfg.preemphasis
    if cfg.kind == "yamnet":
        out["features"] = {"kind": "yamnet_log_mel", "function": "cnnrnn.features.yamnet_log_mel",
                           "win_ms": cfg.win_ms, "hop_ms": cfg.hop_ms, "n_mels": cfg.n_mels, "fmin": cfg.fmin,
                           "fmax": cfg.fmax}
    else:
        out["features"] = {
            "kind": "log_mel_deltas", "n_fft": cfg.n_fft, "hop_length": cfg.hop_length, "n_mels": cfg.n_mels,
            "fmin": cfg.fmin, "fmax": cfg.fmax, "delta_width": cfg.delta_width,
            "channels": "log(mel + 1e-8), delta, delta-delta (librosa.feature.delta, float64), each min-max "
                        "scaled to [0, 1] over the utterance",
            "mel": "librosa.feature.melspectrogram(power=2, htk=True, norm='slaney', win_length=n_fft)"}
    out["normalization"] = describe_normalization(cfg.normalization, cfg.norm_range, stats, "[0, 1]", cfg.kind)
    out["segments"] = {**(segments or {}), "frames": cfg.segment_frames, "hop": cfg.segment_hop,
                       "inside_model": True,
                       "cut": "segment i = frames i*hop .. i*hop+frames; trailing frames that fill no segment "
                              "are dropped"}
    out["image"] = {"size": None if cfg.resize is None else list(cfg.resize),
                    "inside_model": "bilinear resize (tf.image.resize) and ImageNet mean/std per channel"
                    if cfg.resize is not None else "none: YAMNet patches go in as they are"}
    out["input_scaling"] = ("none: float32 segments, shape (N, count, n_mels, segment_frames, 3) in [0, 1]"
                            if cfg.kind != "yamnet" else
                            "none: float32 log-mel patches, shape (N, count, segment_frames, n_mels, 1)")
    return out


def model_inputs(preprocessing: dict[str, Any], files: list, *, stats=None, speaker: str | None = None,
                 progress: bool = False, source=None) -> ModelInputs:
    """The exported DCNN-BLSTMwA model's input for audio ``files`` (paths or :class:`cnnrnn.audio.Clip`
    waveforms): segments ``(N, count, ...) float32`` made by :func:`cnnrnn.dcnn.data.files_features` and
    normalised by :func:`cnnrnn.dcnn.predict.normalize_inputs` with the sidecar's ``settings``.

    Args:
        preprocessing: the sidecar's ``preprocessing``. stats: its statistics (:class:`cnnrnn.normalize.NormStats`)
            or ``None``. speaker: every file's speaker, for a ``speaker``-normalised run. progress: a progress bar.
        source: unused (what ``files`` came from).

    Raises:
        ValueError: no usable audio.
    """
    from ..audio import input_id, input_source
    from .config import feature_config
    from .data import files_features
    from .predict import normalize_inputs

    cfg = feature_config(dict(preprocessing.get("settings") or {}))
    kept, feats, skipped = files_features(files, cfg, progress)
    if not feats:
        raise ValueError(f"no usable audio among {len(files)} file(s) (skipped: {skipped})")
    segs, normalization = normalize_inputs(feats, [speaker] * len(feats), cfg, stats)
    return ModelInputs([input_id(files[i]) for i in kept], [input_source(files[i]) for i in kept],
                       np.stack(segs).astype(np.float32), skipped,
                       normalization if cfg.normalization != "none" else None)
