"""The CNNRNN family's part of ``cnnrnn export`` (:mod:`cnnrnn.export`): the export plan of a run, the sidecar's
description of its preprocessing, and the model inputs made from audio by that description.

The exported graph takes the whole image ``(N, H, W, 3) float32`` (the uint8 BGR image cast, 0-255) and averages
the probabilities of the run's checkpoints (its CV folds); a model trained on time crops (``train.crop_width``)
cuts the image into the segments :func:`cnnrnn.cnnrnn.batches.segment_starts` gives and averages their
probabilities inside the graph. Audio → image (log-mel or a pretrained front end's log-mel, normalisation,
quantisation, resize, colormap) stays outside the graph and is described in the sidecar.

Nothing heavy is imported at import time: :func:`model_inputs` runs without TensorFlow (librosa, OpenCV).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import CONFIG_FILE, SPECTROGRAM_DIR
from ..export_formats import (ExportPlan, average_outputs, config_source, library_of, load_named, ops_of, run_labels,
                              unrolled)
from ..export_sidecar import (ExportError, ModelInputs, describe_audio, describe_log_mel, describe_normalization,
                              norm_stats, preprocessing_of)
from ..features import PRETRAINED_KINDS, YAMNET_HOP_SECONDS, YAMNET_WINDOW_SECONDS, image_range, yamnet_frames
from .config import FAMILY

#: Loggers whose warnings the parity check holds back (files without a speaker: utterance normalisation).
LOGGERS = ("cnnrnn.cnnrnn.predict",)


def _segment_mean(models: list, inp, starts: Sequence[int], width: int, n_classes: int, lib):
    """The mean, over the time segments ``inp[:, :, s:s + width]``, of the checkpoints' mean probabilities (the
    segments go through each model as one batch, segment-major, as :func:`cnnrnn.cnnrnn.batches.predict_proba`)."""
    if len(starts) == 1 and starts[0] == 0 and inp.shape[2] == width:
        return average_outputs([m(inp, training=False) for m in models], lib)
    ops = ops_of(lib)
    x = ops.concatenate([inp[:, :, s:s + width, :] for s in starts], axis=0)
    y = average_outputs([m(x, training=False) for m in models], lib)
    return ops.mean(ops.reshape(y, (len(starts), -1, n_classes)), axis=0)


def plan(paths: list[Path], manifest, config, labels, batch_size: int, trust_code: bool = False) -> ExportPlan:
    """The :class:`cnnrnn.export_formats.ExportPlan` of a CNNRNN run: its ``.h5`` checkpoints (every fold of a run
    folder, or the checkpoints given), averaged in one graph of input ``image`` ``(N, H, W, 3) float32``.

    Args:
        paths: the run folder or checkpoint(s). manifest: the run's :class:`cnnrnn.runs.RunManifest` or ``None``.
        config: a config overriding the run's (preset name, JSON file or dict), or ``None``.
        labels: class names or a ``labels.json``, or ``None`` (the run's).
        batch_size: batch size of the Keras reference prediction.
        trust_code: load checkpoints with ``Lambda`` layers.

    Raises:
        ExportError: no checkpoint, unknown config or labels, an input that is not a fixed ``(H, W, 3)`` image.
        cnnrnn.artifacts.CheckpointError: a checkpoint does not load.
    """
    from .batches import predict_proba, segment_starts
    from .config import load_config
    from .predict import checkpoints_in, find_run_dir

    what = str(paths[0])
    if manifest is not None and any(p.is_dir() and (p / "run.json").is_file() for p in paths):
        paths = manifest.checkpoint_paths()
    files = checkpoints_in(paths)
    if not files:
        raise ExportError(f"no .h5 checkpoint in {', '.join(map(str, paths))}")
    run_dir = Path(manifest.folder) if manifest is not None and manifest.folder else find_run_dir(files[0])
    cfg = load_config(config_source(config, run_dir, manifest, CONFIG_FILE, what))
    spec = cfg.spectrogram
    labels = run_labels(labels, manifest, run_dir, what)
    models, shape, labels = load_named(files, labels, trust_code)
    if len(shape) != 3 or None in shape or shape[2] != 3:
        raise ExportError(f"{files[0]}: input shape {shape} is not a fixed (H, W, 3) image")
    height, width = int(shape[0]), int(shape[1])
    full = width
    if cfg.train.crop_width and width == cfg.train.crop_width:  # a model of time crops sees whole images in segments
        full = int(spec.image_size[1])
    starts = segment_starts(full, width, cfg.train.crop_hop) if full != width else [0]
    stats = norm_stats(run_dir / SPECTROGRAM_DIR / "normalization.json" if run_dir else None, spec.uses_stats)
    n_classes = len(labels)

    def build(unroll: bool):
        lib = library_of(models)
        nets = [unrolled(m) for m in models] if unroll else models
        inp = lib.Input((height, full, 3), name="image")
        return lib.Model(inp, _segment_mean(nets, inp, starts, width, n_classes, lib), name="cnnrnn_export")

    def reference(x):
        return np.mean([predict_proba(m, x.astype(np.uint8), batch_size, cfg.train.crop_hop) for m in models], axis=0)

    prep = preprocessing_of(FAMILY, spec, stats=stats, image=(height, full),
                            segments={"width": width, "hop": cfg.train.crop_hop, "starts": starts}
                            if len(starts) > 1 or full != width else None)
    return ExportPlan(FAMILY, paths[0], files, labels, build, "image", reference, prep,
                      {"folder": str(run_dir) if run_dir else None})



def preprocessing(cfg, settings: dict[str, Any], *, stats=None, image: tuple[int, int] | None = None,
                  segments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The CNNRNN steps of the sidecar's ``preprocessing`` (:func:`cnnrnn.export_sidecar.preprocessing_of` adds
    ``family`` and ``settings``): ``audio``, ``features`` (librosa log-mel in dB, or the YAMNet / Whisper front
    end's log-mel), ``normalization``, ``image`` (size, quantisation, resize, colormap, BGR order),
    ``input_scaling`` and ``segments``.

    Args:
        cfg: the run's :class:`cnnrnn.features.SpectrogramConfig`. settings: its fields as a dict.
        stats: the run's :class:`cnnrnn.normalize.NormStats`, or ``None``.
        image: ``(H, W)`` of the exported model's input image.
        segments: ``{"width", "hop", "starts"}`` of a model trained on time crops (pixels), or ``None``.
    """
    out: dict[str, Any] = {}
    h, w = image
    out["audio"] = describe_audio(cfg.sr, cfg.duration, "zeros appended at the end / cut at the end to n_samples")
    if cfg.kind == "yamnet":
        out["features"] = {"kind": "yamnet_log_mel", "function": "cnnrnn.features.yamnet_log_mel",
                           "win_ms": YAMNET_WINDOW_SECONDS * 1000, "hop_ms": YAMNET_HOP_SECONDS * 1000,
                           "n_fft": int(cfg.n_fft), "n_mels": int(cfg.n_mels),
                           "fmin": float(cfg.fmin), "fmax": float(cfg.fmax), "log": "log(mel magnitude + 0.001)",
                           "frames": yamnet_frames(cfg.n_samples)}
    elif cfg.kind == "whisper":
        out["features"] = {"kind": "whisper_log_mel", "function": "cnnrnn.features.whisper_log_mel",
                           "n_fft": int(cfg.n_fft), "hop_length": int(cfg.hop_length), "n_mels": int(cfg.n_mels),
                           "window": "hann (periodic)", "center": True, "pad_mode": "reflect",
                           "mel_filters": "librosa.filters.mel(sr=16000, n_fft=400, n_mels=80): Slaney",
                           "log": "log10(max(mel power, 1e-10)), floored at the clip's max - 8, then (x + 4) / 4",
                           "frames": int(cfg.n_samples) // int(cfg.hop_length),
                           "same_as": "openai/whisper whisper/audio.py log_mel_spectrogram, without its 30 s "
                                      "padding, the last STFT frame dropped"}
    if cfg.kind in PRETRAINED_KINDS:  # a pretrained network's own log-mel: values, not dB, in the image
        lo, hi = image_range(cfg)
        units = "natural-log mel" if cfg.kind == "yamnet" else "Whisper's log-mel units"
        lo_hi = f"[{lo:.6f}, {hi:.6f}] ({units})"
        out["normalization"] = describe_normalization(cfg.normalization, cfg.norm_range, stats, "0-255 (the image)",
                                              cfg.kind)
        if cfg.normalization != "none":
            out["normalization"]["maps"] = ("z * global std + global mean per band (stats.global), then drawn "
                                            "as un-normalised values")
    else:
        out["features"] = describe_log_mel(cfg)
        lo_hi = "[-top_db, 0] dB" if cfg.normalization == "none" else "[-norm_range, norm_range]"
        out["normalization"] = describe_normalization(cfg.normalization, cfg.norm_range, stats,
                                                      "0-255 (the image)")
    out["image"] = {
        "size": [h, w], "height_is": "mel bands, low frequencies in the bottom row (np.flipud)",
        "width_is": "time", "quantize": f"uint8(floor(clip((v - lo) / (hi - lo), 0, 1) * 255 + 0.5)) with "
                                        f"[lo, hi] = {lo_hi}",
        "resize": "cv2.resize(gray, (W, H), interpolation=cv2.INTER_LINEAR) of the (n_mels, frames) uint8",
        "colormap": cfg.colormap,
        "colorize": "cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)" if cfg.colormap.lower() in ("gray", "grey")
        else f"cv2.applyColorMap(gray, cv2.COLORMAP_{cfg.colormap.upper()})",
        "channel_order": "BGR (as cv2.imread returns a PNG)", "render": settings.get("render", "opencv")}
    out["input_scaling"] = ("none: the uint8 BGR image cast to float32 (0-255), shape (N, H, W, 3), as cnnrnn "
                            "predict feeds it (the package's models scale inside)")
    out["segments"] = None if segments is None else {
        **segments, "inside_model": True,
        "pooling": "the model cuts the image into time segments (pixels starts[i]..starts[i]+width) and "
                   "averages their probabilities"}
    return out


def model_inputs(preprocessing: dict[str, Any], files: list, *, stats=None, speaker: str | None = None,
                 progress: bool = False, source=None) -> ModelInputs:
    """The exported CNNRNN model's input for audio ``files`` (paths or :class:`cnnrnn.audio.Clip` waveforms):
    images ``(N, H, W, 3) float32`` (uint8 BGR values, 0-255) rendered by
    :func:`cnnrnn.cnnrnn.predict.collect_inputs` with the sidecar's ``settings`` at its ``image.size``.

    Args:
        preprocessing: the sidecar's ``preprocessing``. stats: its statistics (:class:`cnnrnn.normalize.NormStats`)
            or ``None``. speaker: every file's speaker, for a ``speaker``-normalised run. progress: a progress bar.
        source: what ``files`` came from, for the message.

    Raises:
        ValueError: no audio file, or no usable audio.
    """
    from ..config import from_dict
    from ..features import SpectrogramConfig
    from .predict import collect_inputs

    settings = dict(preprocessing.get("settings") or {})
    spec = from_dict(SpectrogramConfig, settings)
    size = tuple(int(v) for v in preprocessing["image"]["size"])
    if not files:
        raise ValueError(f"no audio file in {source}")
    got = collect_inputs(files, size, spec, progress=progress, speaker=speaker, stats=stats)
    return ModelInputs(got.ids, got.sources, got.images.astype(np.float32), got.skipped, got.normalization)
