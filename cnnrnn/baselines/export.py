"""The baselines' part of ``cnnrnn export`` (:mod:`cnnrnn.export`): the export plan of an ANN or CNN baseline run,
the sidecar's description of its preprocessing, and the model inputs made from audio by that description.

The ANN takes the waveform ``(N, n_samples) float32`` in [-1, 1] (input ``waveform``), the CNN the scaled log-mel
``(N, n_mels, frames, 1) float32`` in 0-255 (input ``log_mel``); several checkpoints are averaged in the graph.

Nothing heavy is imported at import time: :func:`model_inputs` runs without TensorFlow (librosa).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import CheckpointError, is_temporary
from ..export_formats import ExportPlan, average_outputs, config_source, library_of, load_named, run_labels, unrolled
from ..export_sidecar import (ExportError, ModelInputs, describe_audio, describe_log_mel, describe_normalization,
                              preprocessing_of)
from .config import FAMILY

#: Loggers whose warnings the parity check holds back (files without a speaker: utterance normalisation).
LOGGERS = ("cnnrnn.baselines",)


def plan(paths: list[Path], manifest, config, labels, batch_size: int, trust_code: bool = False) -> ExportPlan:
    """The :class:`cnnrnn.export_formats.ExportPlan` of a baseline run: its ``model.h5`` (or the checkpoints
    given), averaged in one graph whose input is ``waveform`` (ANN) or ``log_mel`` (CNN).

    Args:
        paths: the run folder or checkpoint(s). manifest: the run's :class:`cnnrnn.runs.RunManifest` or ``None``.
        config: a config overriding the run's (preset name, JSON file or dict), or ``None``.
        labels: class names or a ``labels.json``, or ``None`` (the run's).
        batch_size: batch size of the Keras reference prediction.
        trust_code: load checkpoints with ``Lambda`` layers.

    Raises:
        ExportError: no checkpoint, unknown config or labels.
        cnnrnn.artifacts.CheckpointError: a checkpoint does not load, or its input differs from the config's.
    """
    from .config import BASELINE_CONFIG_FILE, MODEL_FILE, load_baseline_config, read_norm_stats
    from .predict import find_run_dir, predict_proba

    what = str(paths[0])
    files: list[Path] = []
    for p in paths:
        if not p.is_dir():
            files.append(p)
        elif manifest is not None and manifest.folder and p.resolve() == Path(manifest.folder).resolve():
            files += [c for c in manifest.checkpoint_paths() if c.is_file()]
        else:
            files += [p / MODEL_FILE] if (p / MODEL_FILE).is_file() else sorted(
                c for c in p.glob("*.h5") if not is_temporary(c))
    if not files:
        raise ExportError(f"no {MODEL_FILE} in {', '.join(map(str, paths))}")
    run_dir = Path(manifest.folder) if manifest is not None and manifest.folder else find_run_dir(files[0])
    cfg = load_baseline_config(config_source(config, run_dir, manifest, BASELINE_CONFIG_FILE, what))
    labels = run_labels(labels, manifest, run_dir, what)
    models, shape, labels = load_named(files, labels, trust_code)
    if shape != cfg.input_shape:
        raise CheckpointError(f"the model takes {shape} but its run config gives {cfg.input_shape} features")
    stats = read_norm_stats(run_dir) if run_dir is not None and cfg.model == "cnn" else None
    name = "waveform" if cfg.model == "ann" else "log_mel"

    def build(unroll: bool):
        lib = library_of(models)
        nets = [unrolled(m) for m in models] if unroll else models
        inp = lib.Input(cfg.input_shape, name=name)
        return lib.Model(inp, average_outputs([m(inp, training=False) for m in nets], lib), name="baseline_export")

    def reference(x):
        return np.mean([predict_proba(m, x, batch_size) for m in models], axis=0)

    prep = preprocessing_of(FAMILY, cfg, stats=stats)
    return ExportPlan(FAMILY, paths[0], files, labels, build, name, reference, prep,
                      {"folder": str(run_dir) if run_dir else None})


def preprocessing(cfg, settings: dict[str, Any], *, stats=None, image=None, segments=None) -> dict[str, Any]:
    """The baseline steps of the sidecar's ``preprocessing`` (:func:`cnnrnn.export_sidecar.preprocessing_of` adds
    ``family`` and ``settings``): ``audio`` (reflect padding), ``features`` (the waveform, or a librosa log-mel in
    dB), ``normalization`` and ``input_scaling``.

    Args:
        cfg: the run's :class:`cnnrnn.baselines.config.BaselineConfig`. settings: its fields as a dict (unused).
        stats: the run's :class:`cnnrnn.normalize.NormStats` (CNN), or ``None``. image, segments: unused.
    """
    out: dict[str, Any] = {}
    out["audio"] = describe_audio(cfg.sr, cfg.duration, "reflect: the clip, reversed, the clip, ... appended until "
                                                        "n_samples (cnnrnn.audio.pad_or_trim mode reflect); cut at "
                                                        "the end")
    if cfg.model == "ann":
        out["features"] = {"kind": "waveform"}
        out["normalization"] = {"mode": "none"}
        out["input_scaling"] = "none: the float32 waveform in [-1, 1], shape (N, n_samples)"
    else:
        out["features"] = describe_log_mel(cfg)
        out["normalization"] = describe_normalization(cfg.normalization, cfg.norm_range, stats, "[0, 255] (float)")
        if cfg.normalization == "none":
            out["normalization"]["clip"] = ("z = (db - mean(db)) / (std(db) + 1e-6) over the whole clip, then "
                                            "(z - min(z)) / max(max(z) - min(z), 1e-6) * 255")
        out["input_scaling"] = ("none: float32 0-255, shape (N, n_mels, frames, 1), mel band 0 (lowest) first, "
                                "not flipped, not quantised")
    return out


def model_inputs(preprocessing: dict[str, Any], files: list, *, stats=None, speaker: str | None = None,
                 progress: bool = False, source=None) -> ModelInputs:
    """The exported baseline's input for audio ``files`` (paths or :class:`cnnrnn.audio.Clip` waveforms):
    ``(N, n_samples)`` waveforms (ANN) or ``(N, n_mels, frames, 1)`` features (CNN), ``float32``, made by
    :func:`cnnrnn.baselines.predict.collect_inputs` with the sidecar's ``settings``.

    Args:
        preprocessing: the sidecar's ``preprocessing``. stats: its statistics (:class:`cnnrnn.normalize.NormStats`)
            or ``None``. speaker: every file's speaker, for a ``speaker``-normalised run. progress: a progress bar.
        source: unused (what ``files`` came from).

    Raises:
        ValueError: no usable audio.
    """
    from .config import load_baseline_config
    from .predict import collect_inputs

    settings = dict(preprocessing.get("settings") or {})
    got = collect_inputs(files, load_baseline_config(settings), progress=progress, speaker=speaker, stats=stats)
    return ModelInputs(got.ids, got.sources, got.features.astype(np.float32), got.skipped, got.normalization)
