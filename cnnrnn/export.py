"""``cnnrnn export``: a trained run as an ONNX, TFLite (LiteRT) or TensorFlow SavedModel file, with a JSON sidecar
that describes its preprocessing, so that the model can be used without this package.

**What is exported.** The run's Keras model(s) as one graph that maps the model input to class probabilities,
exactly as ``cnnrnn predict --model RUN`` computes them:

* several checkpoints (a CNNRNN run's CV folds) are averaged inside the graph (``keras.layers.Average``);
* a CNNRNN model trained on time crops (``train.crop_width``) takes the whole image; the graph cuts it into the
  segments that :func:`cnnrnn.cnnrnn.train.segment_starts` gives (``train.crop_hop`` apart, the last one at the
  end) and averages their probabilities;
* a DCNN-BLSTMwA run takes an utterance's segments ``(n_segments, n_mels, segment_frames, C)``; the graph resizes
  them to the backbone's size and applies the ImageNet normalisation (as
  :func:`cnnrnn.features.to_backbone_input`), then averages the DCNN's segment probabilities (step 1) or runs the
  BiLSTM-attention over the DCNN features (step 2). It needs a fixed clip length (``data.max_sec``).

A Keras 2 checkpoint (the original CNNRNN code's ``.h5``) that :func:`cnnrnn.artifacts.load_model` loads with
``tf_keras`` is wrapped with ``tf_keras`` (:func:`library_of`) and converted the same way (TFLite through
``tf.lite.TFLiteConverter.from_keras_model``, a SavedModel through ``tf_keras``' own ``Model.export``).

The audio → model-input part (loading, resampling, log-mel, normalisation, image) stays outside the graph: the
sidecar describes it (:func:`preprocessing_of`), and ``sidecar["preprocessing"]["settings"]`` holds the family's
own feature settings, so the package's family code can rebuild the inputs from the sidecar alone.

**Formats** (:data:`FORMATS`), through the converters Keras 3's ``Model.export`` drives:

* ``onnx``: ``tf2onnx.convert.from_function``, as Keras' exporter calls it, with the constants the traced graph
  captures stored as initializers (:func:`_write_onnx`). Needs the ``export`` extra: ``tf2onnx``, ``onnx``,
  ``onnxruntime``; a missing one is a :class:`MissingExtraError` naming the extra. Runs with ``onnxruntime``
  alone, no TensorFlow (:func:`load_exported`).
* ``tflite``: the LiteRT converter (``format="litert"``). The converter cannot lower a Keras 3 LSTM's
  ``TensorListReserve`` and the Flex delegate that ``SELECT_TF_OPS`` would need is not available to the
  interpreter, so every ``LSTM``/``GRU``/``SimpleRNN`` (inside ``Bidirectional``/``TimeDistributed`` too) is rebuilt
  with ``unroll=True`` for the model's fixed number of time steps, with the same weights (:func:`unrolled`).
* ``savedmodel``: ``tf_saved_model`` (a folder; its ``serve`` endpoint and ``serving_default`` signature).

**Parity.** After writing, the file is loaded by its own runtime (onnxruntime, the TFLite interpreter,
``tf.saved_model.load``) and run on model inputs made from real audio (``audio``: default the first
:data:`PARITY_FILES` recordings of the bundled sample) from the sidecar's description (:func:`model_inputs`, which
runs the family's own feature code); its probabilities are compared with the family's Keras prediction on the same
inputs. The maximum absolute difference must be within
:data:`TOLERANCES` (1e-4 for ONNX and SavedModel, 1e-2 for TFLite); it is printed and stored in the sidecar, and
a larger one raises :class:`ParityError` (the files are kept for inspection).

**The sidecar** (:func:`sidecar_path`: ``model.onnx`` → ``model.onnx.json``; a SavedModel folder →
``<folder>/export.json``): ``labels`` (output column order), ``model_input`` / ``model_output`` (names, shapes,
dtypes as the runtime sees them), ``preprocessing`` (sr, clip length, features, normalisation with its
statistics, image size, colormap, input scaling, segments), ``parity`` and provenance (run, checkpoints,
versions). HF and openSMILE-functionals runs are not exportable (:class:`ExportError` says why).

**Where it writes.** The model is written beside ``--out`` under a temporary name of its own and moved into place;
an existing ``--out`` is replaced only when it is a previous export of ours: a file whose sidecar beside it reads
as a ``cnnrnn export`` sidecar of that format and name, or a SavedModel folder whose ``export.json`` does and that
holds nothing a SavedModel export does not write (:func:`check_out`). Anything else (a user's file or folder, a
folder with other files, a JSON of another program at the sidecar's path, a symbolic link) is refused before any
work with one line (:class:`NotOurOutputError`) and left untouched; an empty folder is used. No flag changes that.
The labels must be distinct, one per output column (:func:`check_labels`): export never writes a sidecar whose
labels repeat, and :func:`read_sidecar` refuses one.

**Without this package's TensorFlow side** (what ``cnnrnn predict`` on an exported model needs):
``read_sidecar(path)``, ``model_inputs(sidecar["preprocessing"], audio)`` and ``load_exported(path).predict(x)``
import no TensorFlow for an ONNX file (librosa, OpenCV, onnxruntime).
"""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifacts import CONFIG_FILE, LABELS_FILE, SPECTROGRAM_DIR, CheckpointError, is_temporary, load_json
from .artifacts import _UMASK, load_labels, save_json
from .features import PRETRAINED_KINDS, YAMNET_HOP_SECONDS, YAMNET_WINDOW_SECONDS, image_range, yamnet_frames
from .runs import package_versions

log = logging.getLogger("cnnrnn.export")

FORMATS = ("onnx", "tflite", "savedmodel")
#: Largest max-abs difference of probabilities accepted by the parity check, per format.
TOLERANCES = {"onnx": 1e-4, "savedmodel": 1e-4, "tflite": 1e-2}
#: File suffix of each format (a SavedModel is a folder).
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": ""}
#: The pip extra that brings each format's converter and runtime, and the modules it must provide.
EXTRA = "export"
EXTRA_MODULES = {"onnx": ("tf2onnx", "onnx", "onnxruntime")}
#: Recordings of the parity check by default (the first ones of the bundled sample, sorted).
PARITY_FILES = 8
SAMPLE_AUDIO = Path(__file__).resolve().parent / "sample" / "kemdy20" / "wav"
SIDECAR_KIND = "cnnrnn-export"
SIDECAR_SCHEMA = 1
#: The sidecar inside a SavedModel folder.
SAVEDMODEL_SIDECAR = "export.json"
#: Families that can be exported, and those that cannot (with why).
EXPORTABLE = ("cnnrnn", "baselines", "dcnn")
NOT_EXPORTABLE = {
    "hf": "Hugging Face runs are tf_keras models of transformers that take tokenised text and/or raw audio through "
          "the transformers processors; export them with the Hugging Face tools (transformers.onnx / optimum), "
          "which know those graphs",
    "functionals": "openSMILE-functionals runs are scikit-learn models on openSMILE features, not Keras graphs "
                   "(skl2onnx converts scikit-learn models; openSMILE itself cannot be exported)",
    "exported": "it is already an exported model; export the run it came from (its sidecar's source.model)",
}
_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


class ExportError(ValueError):
    """A run cannot be exported: its family has no export, its preprocessing or labels are unknown, a
    converter failed, or the output path is unusable."""


class MissingExtraError(ExportError):
    """A converter or runtime of the ``export`` extra is not installed (the message names the extra)."""


class ParityError(ExportError):
    """The exported model's probabilities differ from the Keras model's by more than the format's tolerance."""


class NotOurOutputError(ExportError):
    """``--out`` (or its sidecar's path) exists and is not a previous export of ``cnnrnn export``: a user's file or
    folder, which export never replaces or deletes (:func:`check_out`). Nothing was written."""


class LabelsError(ExportError):
    """An export's labels are unusable: a label repeats, or their count differs from the model's output width
    (one probability column per label)."""


# --------------------------------------------------------------------------- what a run gives
@dataclass
class ExportPlan:
    """What a family gives for export (made by :func:`plan_export`).

    Attributes:
        family: the run's family.
        source: the run folder or checkpoint given.
        checkpoints: the Keras checkpoints, averaged when several.
        labels: class names in output order.
        build: ``build(unroll) -> keras.Model``, the graph to export (RNNs unrolled for TFLite).
        input_name: name of the graph's input.
        reference: ``reference(x) -> (N, n_classes) float32``, the family's own Keras prediction.
        preprocessing: the sidecar's ``preprocessing`` (:func:`preprocessing_of`).
        run: provenance for the sidecar (run folder, manifest fields).
    """

    family: str
    source: Path
    checkpoints: list[Path]
    labels: list[str]
    build: Callable[[bool], Any]
    input_name: str
    reference: Callable[[np.ndarray], np.ndarray]
    preprocessing: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)


def _config_source(config, run_dir: Path | None, manifest, file_name: str | None, what: str):
    """The config to use: the user's, else the manifest's, else the run's own file; none is an error."""
    if config is not None:
        return config
    if manifest is not None:
        return manifest.config
    if run_dir is not None and file_name and (run_dir / file_name).is_file():
        return run_dir / file_name
    raise ExportError(f"{what}: no run.json or {file_name or 'config'} at or above it, so the preprocessing it was "
                      "trained with is unknown; name its config with --config (a preset name or the run's JSON)")


def _labels(labels, manifest, run_dir: Path | None, what: str) -> list[str]:
    if isinstance(labels, (str, Path)):
        return load_labels(labels)
    if labels is not None:
        return list(labels)
    if manifest is not None:
        return list(manifest.labels)
    if run_dir is not None and (run_dir / LABELS_FILE).is_file():
        return load_labels(run_dir / LABELS_FILE)
    raise ExportError(f"{what}: no run.json or {LABELS_FILE} at or above it, so its class names are unknown; give "
                      "them with --labels LABELS_JSON")


def library_of(models: Sequence[Any]):
    """The Keras library of loaded models: ``keras`` (Keras 3), or ``tf_keras`` for a Keras 2 checkpoint that
    :func:`cnnrnn.artifacts.load_model` loaded with it (:mod:`cnnrnn.keras2`); the export graph is built with it.

    Raises:
        ExportError: the checkpoints mix the two.
    """
    names = {type(m).__module__.split(".")[0] for m in models}
    if "tf_keras" in names:
        if len(names) > 1:
            raise ExportError("the checkpoints mix Keras 3 and Keras 2 (tf_keras) models; export them one at a time")
        import tf_keras

        return tf_keras
    import keras

    return keras


def _ops(lib):
    """``concatenate``, ``reshape`` and ``mean`` on the symbolic tensors of ``lib``: ``keras.ops`` for Keras 3,
    TensorFlow ops for ``tf_keras`` (which wraps them in layers)."""
    if lib.__name__ != "tf_keras":
        from keras import ops

        return ops
    import types

    import tensorflow as tf

    return types.SimpleNamespace(concatenate=lambda xs, axis: tf.concat(xs, axis), reshape=tf.reshape,
                                 mean=lambda x, axis: tf.reduce_mean(x, axis=axis))


def _average(outputs: list, lib):
    return outputs[0] if len(outputs) == 1 else lib.layers.Average(name="average_checkpoints")(outputs)


def _segment_mean(models: list, inp, starts: Sequence[int], width: int, n_classes: int, lib):
    """The mean, over the time segments ``inp[:, :, s:s + width]``, of the checkpoints' mean probabilities (the
    segments go through each model as one batch, segment-major, as :func:`cnnrnn.cnnrnn.train.predict_proba`)."""
    if len(starts) == 1 and starts[0] == 0 and inp.shape[2] == width:
        return _average([m(inp, training=False) for m in models], lib)
    ops = _ops(lib)
    x = ops.concatenate([inp[:, :, s:s + width, :] for s in starts], axis=0)
    y = _average([m(x, training=False) for m in models], lib)
    return ops.mean(ops.reshape(y, (len(starts), -1, n_classes)), axis=0)


def _rename(model, name: str) -> None:
    try:
        model.name = name
    except AttributeError:  # tf_keras: a read-only property
        model._name = name


def _loaded(paths: Sequence[Path], labels: list[str] | None, trust_code: bool = False):
    from .artifacts import load_checkpoints

    models, shape, labels = load_checkpoints(list(paths), labels, trust_code=trust_code)
    for k, m in enumerate(models):  # checkpoints of one run share a model name: Keras needs unique ones
        _rename(m, f"checkpoint_{k + 1}")
    return models, shape, labels


def _cnnrnn_plan(paths: list[Path], manifest, config, labels, batch_size: int,
                 trust_code: bool = False) -> ExportPlan:
    from .cnnrnn.config import load_config
    from .cnnrnn.predict import checkpoints_in, find_run_dir
    from .cnnrnn.batches import predict_proba, segment_starts

    what = str(paths[0])
    if manifest is not None and any(p.is_dir() and (p / "run.json").is_file() for p in paths):
        paths = manifest.checkpoint_paths()
    files = checkpoints_in(paths)
    if not files:
        raise ExportError(f"no .h5 checkpoint in {', '.join(map(str, paths))}")
    run_dir = Path(manifest.folder) if manifest is not None and manifest.folder else find_run_dir(files[0])
    cfg = load_config(_config_source(config, run_dir, manifest, CONFIG_FILE, what))
    spec = cfg.spectrogram
    labels = _labels(labels, manifest, run_dir, what)
    models, shape, labels = _loaded(files, labels, trust_code)
    if len(shape) != 3 or None in shape or shape[2] != 3:
        raise ExportError(f"{files[0]}: input shape {shape} is not a fixed (H, W, 3) image")
    height, width = int(shape[0]), int(shape[1])
    full = width
    if cfg.train.crop_width and width == cfg.train.crop_width:  # a model of time crops sees whole images in segments
        full = int(spec.image_size[1])
    starts = segment_starts(full, width, cfg.train.crop_hop) if full != width else [0]
    stats = _norm_stats(run_dir / SPECTROGRAM_DIR / "normalization.json" if run_dir else None, spec.uses_stats)
    n_classes = len(labels)

    def build(unroll: bool):
        lib = library_of(models)
        nets = [unrolled(m) for m in models] if unroll else models
        inp = lib.Input((height, full, 3), name="image")
        return lib.Model(inp, _segment_mean(nets, inp, starts, width, n_classes, lib), name="cnnrnn_export")

    def reference(x):
        return np.mean([predict_proba(m, x.astype(np.uint8), batch_size, cfg.train.crop_hop) for m in models], axis=0)

    prep = preprocessing_of("cnnrnn", spec, stats=stats, image=(height, full),
                            segments={"width": width, "hop": cfg.train.crop_hop, "starts": starts}
                            if len(starts) > 1 or full != width else None)
    return ExportPlan("cnnrnn", paths[0], files, labels, build, "image", reference, prep,
                      {"folder": str(run_dir) if run_dir else None})


def _baselines_plan(paths: list[Path], manifest, config, labels, batch_size: int,
                    trust_code: bool = False) -> ExportPlan:
    from .baselines.config import BASELINE_CONFIG_FILE, MODEL_FILE, load_baseline_config, read_norm_stats
    from .baselines.predict import find_run_dir, predict_proba

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
    cfg = load_baseline_config(_config_source(config, run_dir, manifest, BASELINE_CONFIG_FILE, what))
    labels = _labels(labels, manifest, run_dir, what)
    models, shape, labels = _loaded(files, labels, trust_code)
    if shape != cfg.input_shape:
        raise CheckpointError(f"the model takes {shape} but its run config gives {cfg.input_shape} features")
    stats = read_norm_stats(run_dir) if run_dir is not None and cfg.model == "cnn" else None
    name = "waveform" if cfg.model == "ann" else "log_mel"

    def build(unroll: bool):
        lib = library_of(models)
        nets = [unrolled(m) for m in models] if unroll else models
        inp = lib.Input(cfg.input_shape, name=name)
        return lib.Model(inp, _average([m(inp, training=False) for m in nets], lib), name="baseline_export")

    def reference(x):
        return np.mean([predict_proba(m, x, batch_size) for m in models], axis=0)

    prep = preprocessing_of("baselines", cfg, stats=stats)
    return ExportPlan("baselines", paths[0], files, labels, build, name, reference, prep,
                      {"folder": str(run_dir) if run_dir else None})


def _dcnn_plan(paths: list[Path], manifest, config, labels, batch_size: int,
               trust_code: bool = False) -> ExportPlan:
    from .artifacts import load_model
    from .dcnn.config import read_norm_stats, read_sidecar
    from .dcnn.data import segment_probabilities, utterance_features
    from .dcnn.predict import STEPS, checkpoint_step
    from .features import IMAGENET_MEAN, IMAGENET_STD, n_segments
    from .models.dcnn import feature_extractor

    if len(paths) != 1:
        raise ExportError(f"a DCNN-BLSTMwA export takes one checkpoint or run folder, got {len(paths)}")
    checkpoint, step = checkpoint_step(paths[0])
    run_labels, features, meta = read_sidecar(checkpoint, STEPS[step])
    if config is not None:
        log.warning("--config is not used for a DCNN-BLSTMwA run: its %s says how it was trained", STEPS[step])
    labels = list(run_labels) if labels is None else _labels(labels, None, None, str(checkpoint))
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

    prep = preprocessing_of("dcnn", features, stats=stats, segments={"count": count, "step": step})
    return ExportPlan("dcnn", paths[0], [checkpoint] + ([dcnn_path] if step == "train" else []), labels, build,
                      "segments", reference, prep, {"folder": str(checkpoint.parent), "step": step})


_PLANS = {"cnnrnn": _cnnrnn_plan, "baselines": _baselines_plan, "dcnn": _dcnn_plan}


def plan_export(model: str | Path, *, config=None, labels=None, family: str | None = None,
                batch_size: int = 16, trust_code: bool = False) -> ExportPlan:
    """Resolve a run as ``cnnrnn predict --model`` does (:func:`cnnrnn.predict.resolve_family`) and gather what
    its export needs (:class:`ExportPlan`).

    Args:
        model: a run folder, a checkpoint, or a shipped model's name (``emodb``).
        config: the run's config (preset name, JSON file or dict) when it has no ``run.json`` or config file;
            it overrides the run's own for CNNRNN and baseline runs.
        labels: class names or a ``labels.json``, when the run does not record them.
        family: the family of a bare checkpoint outside any run (default: as ``cnnrnn predict`` guesses).
        batch_size: batch size of the Keras reference prediction.
        trust_code: load checkpoints with ``Lambda`` layers (their Python code runs; see
            :func:`cnnrnn.artifacts.load_model`).

    Raises:
        FileNotFoundError: ``model`` does not exist.
        ExportError: a family without export (HF, functionals), or unknown preprocessing or labels.
        cnnrnn.artifacts.CheckpointError: a checkpoint does not load or does not fit its config.
    """
    from .predict import resolve_family, resolve_model

    path = resolve_model(model)
    guessed, manifest = resolve_family(path)
    if family is not None and manifest is not None and family != manifest.family:
        raise ExportError(f"{path} is a {manifest.family} run (its run.json says so), not {family}")
    if family is not None:
        guessed = family
    if guessed in NOT_EXPORTABLE:
        raise ExportError(f"cannot export a {guessed} run: {NOT_EXPORTABLE[guessed]}")
    if guessed not in _PLANS:
        raise ExportError(f"cannot export a {guessed} run (exportable: {', '.join(EXPORTABLE)})")
    return _PLANS[guessed]([path], manifest, config, labels, batch_size, trust_code)


# --------------------------------------------------------------------------- the sidecar's preprocessing
def _norm_stats(path: Path | None, uses_stats: bool):
    if path is None or not uses_stats or not path.is_file():
        return None
    from .normalize import NormStats

    return NormStats.from_dict(load_json(path))


def _normalization(mode: str, norm_range: float, stats, to: str, kind: str = "log_mel") -> dict[str, Any]:
    """The sidecar's ``normalization``: mode, how z-scores map to the input range, and the statistics."""
    if mode == "none":
        return {"mode": "none"}
    out: dict[str, Any] = {
        "mode": mode, "per": "mel band (and channel), over frames" if kind == "deltas" else "mel band, over frames",
        "z_score": "(value - mean) / std, in float64; utterance: the clip's own mean and std per band (a std below "
                   "1e-8 counts as 1)",
        "norm_range": norm_range, "maps": f"[-norm_range, norm_range] linearly to {to}, clipped",
    }
    if mode == "speaker":
        out["speaker"] = ("the mean and std of the speaker's own audio (several clips, no labels); a speaker in "
                          "stats.speakers may use those; unknown speaker: CNNRNN runs use the global statistics "
                          "(stats.global), the other families utterance normalisation (what cnnrnn predict does "
                          "without --speaker)")
    if mode in ("speaker", "global") or kind in PRETRAINED_KINDS:
        out["stats"] = stats.to_dict() if stats is not None else None
        if stats is None:
            out["note"] = "the run stored no statistics: files fall back to utterance normalisation"
    return out


def _log_mel(cfg) -> dict[str, Any]:
    return {"kind": "log_mel_db", "n_fft": int(cfg.n_fft), "hop_length": int(cfg.hop_length),
            "win_length": int(cfg.n_fft), "window": "hann (periodic)", "center": True,
            "pad_mode": "constant (zeros)", "power": 2.0,
            "n_mels": int(cfg.n_mels), "fmin": float(cfg.fmin), "fmax": cfg.fmax,
            "fmax_hz": float(cfg.fmax if cfg.fmax is not None else cfg.sr / 2),
            "mel_filters": "librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax): Slaney scale, Slaney norm",
            "to_db": "librosa.power_to_db(mel, ref=np.max, amin=1e-10, top_db=top_db): dB below the clip's peak",
            "top_db": float(cfg.top_db), "frames": 1 + int(cfg.n_samples) // int(cfg.hop_length),
            "same_as": "librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop_length, "
                       "n_mels=n_mels, fmin=fmin, fmax=fmax, power=2.0)"}


def _audio(sr: int, duration: float | None, pad: str) -> dict[str, Any]:
    return {"sr": int(sr), "mono": "mean of the channels (librosa.to_mono)",
            "resample": "librosa.resample(res_type='soxr_hq') from the file's rate",
            "duration": duration, "n_samples": None if duration is None else int(round(duration * sr)),
            "pad_or_trim": pad,
            "longer_files": "the model takes one clip of duration seconds; cnnrnn predict cuts a longer file into "
                            "windows of that length (every half clip by default, --window/--hop), predicts each "
                            "and averages their probabilities per file"}


def preprocessing_of(family: str, cfg, *, stats=None, image: tuple[int, int] | None = None,
                     segments: dict[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar's ``preprocessing``: every step from an audio file to the exported model's input.

    Args:
        family: ``cnnrnn`` (``cfg`` a :class:`cnnrnn.features.SpectrogramConfig`), ``baselines`` (a
            :class:`cnnrnn.baselines.config.BaselineConfig`) or ``dcnn`` (a
            :class:`cnnrnn.dcnn.config.FeatureConfig`).
        stats: the run's :class:`cnnrnn.normalize.NormStats` (``global`` / ``speaker`` runs), stored whole.
        image: CNNRNN: ``(H, W)`` of the exported model's input image.
        segments: CNNRNN: ``{"width", "hop", "starts"}`` of a model trained on time crops; DCNN: ``{"count",
            "step"}``.

    Returns:
        A JSON-serialisable dict: ``family``, ``audio`` (sr in Hz, clip length in s and samples, padding),
        ``features`` (n_fft, hop_length, n_mels, fmin, fmax, top_db, ...), ``normalization`` (mode, range, stats),
        ``image`` / ``input`` (size, colormap, channel order, scaling), ``segments``, and ``settings`` (the
        family's own settings, from which its code rebuilds the inputs).
    """
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    out: dict[str, Any] = {"family": family}
    if family == "cnnrnn":
        h, w = image
        out["audio"] = _audio(cfg.sr, cfg.duration, "zeros appended at the end / cut at the end to n_samples")
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
            out["normalization"] = _normalization(cfg.normalization, cfg.norm_range, stats, "0-255 (the image)",
                                                  cfg.kind)
            if cfg.normalization != "none":
                out["normalization"]["maps"] = ("z * global std + global mean per band (stats.global), then drawn "
                                                "as un-normalised values")
        else:
            out["features"] = _log_mel(cfg)
            lo_hi = "[-top_db, 0] dB" if cfg.normalization == "none" else "[-norm_range, norm_range]"
            out["normalization"] = _normalization(cfg.normalization, cfg.norm_range, stats, "0-255 (the image)")
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
    elif family == "baselines":
        out["audio"] = _audio(cfg.sr, cfg.duration, "reflect: the clip, reversed, the clip, ... appended until "
                                                    "n_samples (cnnrnn.audio.pad_or_trim mode reflect); cut at the end")
        if cfg.model == "ann":
            out["features"] = {"kind": "waveform"}
            out["normalization"] = {"mode": "none"}
            out["input_scaling"] = "none: the float32 waveform in [-1, 1], shape (N, n_samples)"
        else:
            out["features"] = _log_mel(cfg)
            out["normalization"] = _normalization(cfg.normalization, cfg.norm_range, stats, "[0, 255] (float)")
            if cfg.normalization == "none":
                out["normalization"]["clip"] = ("z = (db - mean(db)) / (std(db) + 1e-6) over the whole clip, then "
                                                "(z - min(z)) / max(max(z) - min(z), 1e-6) * 255")
            out["input_scaling"] = ("none: float32 0-255, shape (N, n_mels, frames, 1), mel band 0 (lowest) first, "
                                    "not flipped, not quantised")
    elif family == "dcnn":
        out["audio"] = _audio(cfg.sr, cfg.max_sec, "zeros appended at the end / cut at the end to n_samples, after "
                                                   "pre-emphasis")
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
        out["normalization"] = _normalization(cfg.normalization, cfg.norm_range, stats, "[0, 1]", cfg.kind)
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
    out["settings"] = settings
    return out


@dataclass
class ModelInputs:
    """Inputs of an exported model made from audio (:func:`model_inputs`): ``ids`` (file stems), ``sources``,
    ``x`` ``(N, ...) float32`` (the ``model_input`` of the sidecar), ``skipped`` ``{reason: [paths]}`` and
    ``normalization`` (what each file got, or ``None`` for a run without normalisation)."""

    ids: list[str]
    sources: list[str]
    x: np.ndarray
    skipped: dict[str, list[str]] = field(default_factory=dict)
    normalization: list[str] | None = None


def _audio_files(source) -> list:
    """The audio files of ``source`` (a file, a folder searched recursively, or a list of them); a list of
    :class:`cnnrnn.audio.Clip` waveforms is returned as it is."""
    from .audio import Clip, list_audio

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    if sources and all(isinstance(s, Clip) for s in sources):
        return sources
    files: list[Path] = []
    for s in map(Path, sources):
        if not s.exists():
            raise FileNotFoundError(f"input {s} not found")
        files += list_audio(s) if s.is_dir() else [s]
    return files


def model_inputs(preprocessing: dict[str, Any], source, *, speaker: str | None = None,
                 progress: bool = False) -> ModelInputs:
    """The exported model's inputs for audio files, made from the sidecar's ``preprocessing`` alone.

    The family's own code does the work, with the feature settings, image size and normalisation statistics
    read back from the sidecar (``settings``, ``image.size``, ``normalization.stats``), so an exported model gives
    what ``cnnrnn predict`` gives on the run. No TensorFlow is imported (librosa, OpenCV, numpy), so with an ONNX
    file (:func:`load_exported`, onnxruntime) prediction runs without TensorFlow. The export's parity check uses
    this function too.

    Args:
        preprocessing: ``read_sidecar(path)["preprocessing"]``.
        source: an audio file, a folder (searched recursively) or a list of them, or a list of
            :class:`cnnrnn.audio.Clip` waveforms (the windows of a long recording).
        speaker: the speaker of every file, for a ``speaker``-normalised run (without one, files fall back to
            ``utterance`` normalisation, as in ``cnnrnn predict``).
        progress: show a progress bar.

    Returns:
        :class:`ModelInputs`; unusable audio is skipped and counted.

    Raises:
        FileNotFoundError: a source does not exist. ValueError: no usable audio. ExportError: an unknown family.
    """
    from .normalize import NormStats

    family, settings = preprocessing.get("family"), dict(preprocessing.get("settings") or {})
    raw = (preprocessing.get("normalization") or {}).get("stats")
    stats = NormStats.from_dict(raw) if raw else None
    files = _audio_files(source)
    if family == "cnnrnn":
        from .cnnrnn.predict import collect_inputs
        from .config import from_dict
        from .features import SpectrogramConfig

        spec = from_dict(SpectrogramConfig, settings)
        size = tuple(int(v) for v in preprocessing["image"]["size"])
        if not files:
            raise ValueError(f"no audio file in {source}")
        got = collect_inputs(files, size, spec, progress=progress, speaker=speaker, stats=stats)
        return ModelInputs(got.ids, got.sources, got.images.astype(np.float32), got.skipped, got.normalization)
    if family == "baselines":
        from .baselines.config import load_baseline_config
        from .baselines.predict import collect_inputs

        got = collect_inputs(files, load_baseline_config(settings), progress=progress, speaker=speaker, stats=stats)
        return ModelInputs(got.ids, got.sources, got.features.astype(np.float32), got.skipped, got.normalization)
    if family == "dcnn":
        from .audio import input_id, input_source
        from .dcnn.config import feature_config
        from .dcnn.data import files_features
        from .dcnn.predict import normalize_inputs

        cfg = feature_config(settings)
        kept, feats, skipped = files_features(files, cfg, progress)
        if not feats:
            raise ValueError(f"no usable audio among {len(files)} file(s) (skipped: {skipped})")
        segs, normalization = normalize_inputs(feats, [speaker] * len(feats), cfg, stats)
        return ModelInputs([input_id(files[i]) for i in kept], [input_source(files[i]) for i in kept],
                           np.stack(segs).astype(np.float32), skipped,
                           normalization if cfg.normalization != "none" else None)
    raise ExportError(f"unknown family {family!r} in the sidecar's preprocessing")


# --------------------------------------------------------------------------- converting
def _set_unroll(obj: Any) -> Any:
    """Walk a serialised Keras config, setting ``unroll: True`` on every recurrent layer; returns the count."""
    count = 0
    if isinstance(obj, dict):
        if obj.get("class_name") in _RNN_CLASSES and isinstance(obj.get("config"), dict):
            obj["config"]["unroll"] = True
            count += 1
        for value in obj.values():
            count += _set_unroll(value)
    elif isinstance(obj, list):
        for value in obj:
            count += _set_unroll(value)
    return count


def unrolled(model, input_shape: Sequence[int] | None = None):
    """``model`` with every ``LSTM``, ``GRU`` and ``SimpleRNN`` (also inside ``Bidirectional``,
    ``TimeDistributed`` and nested models) rebuilt with ``unroll=True`` and the same weights.

    The TFLite converter cannot lower the ``TensorListReserve`` of a Keras 3 recurrent loop; an unrolled one is
    plain ops for the model's fixed number of time steps (measured: same probabilities within 1.5e-8).

    Args:
        model: a functional Keras model.
        input_shape: the input shape without the batch axis, for a model whose input has a free time axis (the
            DCNN-BLSTMwA head takes any number of segments): the clone's input is fixed to it.

    Returns:
        The model itself when it has no recurrent layer, else a new model.

    Raises:
        ExportError: the model cannot be rebuilt from its config.
    """
    import json

    lib = library_of([model])
    config = json.loads(model.to_json())
    if not _set_unroll(config):
        return model
    if input_shape is not None:
        for layer in config.get("config", {}).get("layers", []):
            if layer.get("class_name") == "InputLayer":
                layer["config"]["batch_shape"] = [None, *[int(v) for v in input_shape]]
    try:
        clone = lib.models.model_from_json(json.dumps(config))
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise ExportError(f"cannot rebuild {model.name} with unrolled recurrent layers for TFLite "
                          f"({type(exc).__name__}: {exc})") from exc
    _rename(clone, model.name)
    return clone


def require_extra(fmt: str) -> None:
    """Check that the converter and runtime of ``fmt`` are installed.

    Raises:
        MissingExtraError: a module of :data:`EXTRA_MODULES` is missing; the message names the ``export`` extra
            and the modules.
    """
    import importlib.util

    missing = [m for m in EXTRA_MODULES.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{fmt} export needs {', '.join(EXTRA_MODULES[fmt])} (missing: {', '.join(missing)}): "
                                f"pip install 'cnnrnn[{EXTRA}]'")


def sidecar_path(out: str | Path, fmt: str | None = None) -> Path:
    """The sidecar of an exported model: ``model.onnx`` → ``model.onnx.json``, ``model.tflite`` →
    ``model.tflite.json``, a SavedModel folder → ``<folder>/export.json``."""
    out = Path(out)
    if fmt == "savedmodel" or (fmt is None and out.is_dir()):
        return out / SAVEDMODEL_SIDECAR
    return out.with_name(out.name + ".json")


def check_labels(labels: Sequence[Any], where: str | Path, width: int | None = None,
                 fix: str = "fix the run's labels (labels.json, run.json) and export it again") -> list[str]:
    """Check an export's labels: one distinct name per output column.

    Args:
        labels: the class names, in output column order.
        where: what they come from (a sidecar, a run), for the message.
        width: the model's output width (classes), when known.
        fix: what to do, for the message.

    Returns:
        ``labels`` as a list of strings.

    Raises:
        LabelsError: not a non-empty list of strings, a name that repeats (the message names each repeated name
            and its columns), or a count other than ``width``.
    """
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Sequence) or not labels \
            or not all(isinstance(x, str) for x in labels):
        raise LabelsError(f"{where}: labels must be a non-empty list of class names, got {labels!r}")
    labels = list(labels)
    columns: dict[str, list[int]] = {}
    for i, name in enumerate(labels):
        columns.setdefault(name, []).append(i)
    repeated = {name: cols for name, cols in columns.items() if len(cols) > 1}
    if repeated:
        said = "; ".join(f"{name!r} at columns {', '.join(map(str, cols))}" for name, cols in repeated.items())
        raise LabelsError(f"{where}: the labels repeat ({said}); each output column needs its own class name, so "
                          f"the {len(labels)} columns of probabilities cannot be told apart: {fix}")
    if width is not None and len(labels) != int(width):
        raise LabelsError(f"{where}: {len(labels)} label(s) ({', '.join(labels)}) for a model with {int(width)} "
                          f"output column(s); each column needs one class name: {fix}")
    return labels


def read_sidecar(path: str | Path, *, labels: bool = True) -> dict[str, Any]:
    """The sidecar of an exported model (give the model or the sidecar), its labels checked
    (:func:`check_labels` against ``model_output.shape``) unless ``labels`` is false (the caller brings its own).

    Raises:
        FileNotFoundError: no sidecar. ExportError: not a cnnrnn export sidecar, or a newer schema.
        LabelsError: its labels repeat or do not match its output width (with ``labels``).
    """
    path = Path(path)
    if path.suffix != ".json" or path.is_dir():
        path = sidecar_path(path)
    data = load_json(path)
    if not isinstance(data, dict) or data.get("kind") != SIDECAR_KIND:
        raise ExportError(f"{path} is not the sidecar of a cnnrnn export (no \"kind\": \"{SIDECAR_KIND}\")")
    if int(data.get("schema_version", 0)) > SIDECAR_SCHEMA:
        raise ExportError(f"{path}: schema_version {data['schema_version']} is newer than this cnnrnn reads "
                          f"({SIDECAR_SCHEMA}); upgrade cnnrnn")
    shape = (data.get("model_output") or {}).get("shape")
    width = shape[-1] if isinstance(shape, list) and shape and isinstance(shape[-1], int) else None
    if labels:
        data["labels"] = check_labels(data.get("labels"), path, width, fix="export the model again from its run, "
                                      "with one distinct label per class, or give the labels with --labels")
    return data


#: What a SavedModel folder written by export holds at its top level (Keras 3's and ``tf_keras``' exporters, and
#: the sidecar); its ``variables/`` holds ``variables.*`` files only. :func:`check_out` replaces a SavedModel
#: folder only when it holds nothing else.
SAVEDMODEL_ENTRIES = frozenset({"saved_model.pb", "saved_model.pbtxt", "fingerprint.pb", "keras_metadata.pb",
                                "variables", "assets", SAVEDMODEL_SIDECAR})
_CHOOSE = "cnnrnn export replaces only its own exports: choose another --out, or remove it yourself"


def is_own_sidecar(path: str | Path, fmt: str, model_name: str | None = None) -> bool:
    """Whether ``path`` is a sidecar that ``cnnrnn export`` wrote for a ``fmt`` model (named ``model_name``:
    ``model.onnx``, or ``.`` for a SavedModel folder): a JSON object with our ``kind`` and that ``format`` (and
    ``model``, when it records one). Any other file, an unreadable one or a folder is not."""
    import json

    path = Path(path)
    if path.is_symlink() or not path.is_file():
        return False
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # UnicodeDecodeError is a ValueError
        return False
    return (isinstance(data, dict) and data.get("kind") == SIDECAR_KIND and data.get("format") == fmt
            and (model_name is None or data.get("model", model_name) == model_name))


def foreign_entries(folder: str | Path) -> list[str]:
    """What ``folder`` holds that a SavedModel export does not write (:data:`SAVEDMODEL_ENTRIES`): names relative
    to ``folder``, sorted; a symbolic link is always foreign."""
    foreign = []
    for entry in sorted(Path(folder).iterdir()):
        name = entry.name
        if entry.is_symlink() or name not in SAVEDMODEL_ENTRIES:
            foreign.append(name + ("/" if entry.is_dir() and not entry.is_symlink() else ""))
        elif name in ("variables", "assets"):
            if not entry.is_dir():
                foreign.append(name)
            elif name == "variables":
                foreign += [f"variables/{e.name}" for e in sorted(entry.iterdir())
                            if e.is_symlink() or not e.is_file() or not e.name.startswith("variables.")]
        elif not entry.is_file():
            foreign.append(name + "/")
    return foreign


def _listing(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_out(out: str | Path, fmt: str) -> None:
    """Check, before any work, that export may write ``out`` and its sidecar: it never replaces or deletes what it
    did not write, whatever the flags.

    Allowed: a path that does not exist; an empty folder (a SavedModel); a previous export of ours in ``fmt``,
    which is replaced (a file whose sidecar beside it is ours, :func:`is_own_sidecar`; a SavedModel folder whose
    ``export.json`` is ours and that holds only what a SavedModel export writes, :func:`foreign_entries`). A
    sidecar path (``model.onnx.json``) that exists must be ours too.

    Raises:
        NotOurOutputError: anything else (a user's file or folder, a folder with other files, a symbolic link);
            one line naming the path and saying to choose another ``--out`` or remove it. Nothing is touched.
        ExportError: a folder given for a one-file format, or a file for a SavedModel.
    """
    out = Path(out)
    side = sidecar_path(out, fmt)
    if out.is_symlink():
        raise NotOurOutputError(f"--out {out} is a symbolic link; export does not write through links, nor "
                                f"replace them. {_CHOOSE}")
    if fmt == "savedmodel":
        if not out.exists():
            return
        if not out.is_dir():
            raise ExportError(f"--out {out} is a file; a SavedModel is a folder")
        entries = sorted(e.name for e in out.iterdir())
        if not entries:
            return
        if not is_own_sidecar(side, fmt, "."):
            raise NotOurOutputError(f"--out {out} is a folder that is not a SavedModel export of cnnrnn (no "
                                    f"{SAVEDMODEL_SIDECAR} of one in it); it holds {_listing(entries)}. {_CHOOSE}")
        foreign = foreign_entries(out)
        if foreign:
            raise NotOurOutputError(f"--out {out} is a SavedModel export of cnnrnn but also holds what export did "
                                    f"not write ({_listing(foreign)}), which replacing it would delete. {_CHOOSE}")
        return
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; {fmt} export writes one file, e.g. "
                          f"{out / ('model' + SUFFIXES[fmt])}")
    if out.exists() and not is_own_sidecar(side, fmt, out.name):
        raise NotOurOutputError(f"--out {out} exists and is not a previous cnnrnn export (no {fmt} export sidecar "
                                f"{side.name} beside it). {_CHOOSE}")
    if (side.exists() or side.is_symlink()) and not is_own_sidecar(side, fmt, out.name):
        raise NotOurOutputError(f"{side} exists and is not the sidecar of a cnnrnn {fmt} export of {out.name}; "
                                f"export writes its sidecar there and overwrites only its own. {_CHOOSE}")


def _temporary(out: Path, fmt: str) -> Path:
    """A new temporary path beside ``out`` that :func:`cnnrnn.artifacts.is_temporary` recognises
    (``.<stem>.XXXX.tmp.onnx``; a folder ``.<name>.XXXX.tmp`` for a SavedModel), created empty: a name of its own,
    so that no file already there is overwritten or removed."""
    import tempfile

    suffix = SUFFIXES[fmt]
    stem = out.name[:-len(suffix)] if suffix and out.name.lower().endswith(suffix) else out.name
    if fmt == "savedmodel":
        path = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=out.parent))
        os.chmod(path, 0o777 & ~_UMASK)  # mkdtemp makes 0700: the usual permissions once it is moved into place
        return path
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=out.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600
    return Path(name)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished export into place; a SavedModel folder replaces a previous export of ours (checked by
    :func:`check_out` just before), moved aside first under a temporary name of its own, then removed."""
    if tmp.is_dir():
        old = None
        if out.exists():
            import tempfile

            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=out.parent))
            os.replace(out, old)  # onto the empty folder just made
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def _quiet_loggers(names: Sequence[str] = ("tf2onnx", "absl", "tensorflow")):
    """The Python loggers ``names`` at ERROR for the block (tf2onnx's INFO lines, Keras' retracing notes)."""
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def _quiet_converters():
    """The converters' chatter off the terminal: Python loggers at ERROR, their stdout prints dropped, and the
    native lines the TFLite converter writes to descriptor 2 (``Reading SavedModel``, ``Ignored output_format``)
    held back, and replayed only when the conversion fails (:func:`cnnrnn.quiet.stderr_redirected`)."""
    import io

    from .quiet import stderr_redirected

    with _quiet_loggers(), contextlib.redirect_stdout(io.StringIO()), stderr_redirected():
        yield


#: The output name of an exported ONNX graph.
ONNX_OUTPUT = "probabilities"


def _write_onnx(graph, path: Path) -> None:
    """``graph`` → ONNX with ``tf2onnx.convert.from_function``, as Keras' ``export(format="onnx")`` does, plus two
    fixes: tensors a layer made eagerly and the traced function captures (e.g. ``Normalization(mean=...)``: the
    ImageNet means of a ResNet50 or DCNN input) would become extra graph inputs; they are stored as initializers.
    The output is named :data:`ONNX_OUTPUT`."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnx import numpy_helper

    import warnings

    try:  # tf2onnx 1.17 still uses names numpy 2 removed; Keras' exporter patches them the same way
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the patch's own probe of np.object
            patch_tf2onnx()
    except ImportError:  # pragma: no cover  (a Keras without the patch)
        pass
    name = graph.inputs[0].name.split(":")[0]
    spec = [tf.TensorSpec((None, *graph.input_shape[1:]), tf.float32, name=name)]
    fn = tf.function(lambda x: graph(x, training=False), input_signature=spec)
    captured = {}
    for outer, inner in fn.get_concrete_function(*spec).graph.captures:
        if outer.dtype != tf.resource and hasattr(outer, "numpy"):
            captured[inner.name] = outer.numpy()
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec)
    used = {i for node in proto.graph.node for i in node.input}
    inputs = [i for i in proto.graph.input if i.name not in captured]
    for key, value in captured.items():
        if key in used:
            proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value), key))
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [ONNX_OUTPUT if o == old else o for o in node.output]
        node.input[:] = [ONNX_OUTPUT if i == old else i for i in node.input]
    proto.graph.output[0].name = ONNX_OUTPUT
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def write_model(graph, out: str | Path, fmt: str) -> Path:
    """Export a Keras graph to ``out`` in ``fmt`` (written beside it under a temporary name of its own, then
    moved into place). An existing ``out`` is replaced only when it is a previous export of ours
    (:func:`check_out`, checked before converting and again before the move).

    Raises:
        MissingExtraError: ``onnx`` without the ``export`` extra. ExportError: the converter failed.
        NotOurOutputError: ``out`` (or its sidecar path) is not ours; nothing was written.
    """
    out = Path(out)
    require_extra(fmt)
    check_out(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(out, fmt)
    keras_format = {"onnx": "onnx", "tflite": "litert", "savedmodel": "tf_saved_model"}[fmt]
    try:
        with _quiet_converters():
            if fmt == "onnx":
                _write_onnx(graph, tmp)
            elif library_of([graph]).__name__ != "tf_keras":
                graph.export(str(tmp), format=keras_format, verbose=False)
            elif fmt == "savedmodel":  # a Keras 2 checkpoint loaded by tf_keras: its own exporter
                graph.export(str(tmp))
            else:
                import tensorflow as tf

                tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(graph).convert())
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} converter failed on {graph.name} ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r})") from exc
    try:
        check_out(out, fmt)  # again: the conversion took a while
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, out)
    return out


# --------------------------------------------------------------------------- running an exported model
class ExportedModel:
    """An exported model loaded by its own runtime: ``predict(x) -> (N, n_classes) float32``.

    ONNX runs with ``onnxruntime`` alone (no TensorFlow is imported); TFLite with ``ai_edge_litert`` when it is
    installed, else ``tf.lite.Interpreter``; a SavedModel with ``tf.saved_model.load`` (its ``serving_default``
    signature).

    Attributes:
        format: one of :data:`FORMATS`. path: the file or folder. runtime: the runtime and its version.
        input_name, input_shape, output_name: as the runtime reports them (``None`` for a free axis).
        output_width: the number of output columns (classes) the runtime reports, ``None`` when it does not say.
    """

    def __init__(self, path: str | Path, fmt: str | None = None):
        self.path = Path(path)
        self.format = fmt or guess_format(self.path)
        if self.format == "onnx":
            from .quiet import import_onnxruntime

            require_extra("onnx")
            ort = import_onnxruntime()

            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            i, o = self._session.get_inputs()[0], self._session.get_outputs()[0]
            self.input_name, self.output_name = i.name, o.name
            self.input_shape = [d if isinstance(d, int) else None for d in i.shape]
            self.output_width = o.shape[-1] if o.shape and isinstance(o.shape[-1], int) else None
            self.runtime = f"onnxruntime {ort.__version__}"
        elif self.format == "tflite":
            self._interpreter, self.runtime = _tflite_interpreter(self.path)
            detail = self._interpreter.get_input_details()[0]
            self.input_name = detail["name"]
            output = self._interpreter.get_output_details()[0]
            self.output_name = output["name"]
            self.input_shape = [None if int(d) < 0 else int(d) for d in detail["shape_signature"]]
            width = int(output["shape_signature"][-1]) if len(output["shape_signature"]) else -1
            self.output_width = width if width > 0 else None
        elif self.format == "savedmodel":
            import tensorflow as tf

            self._loaded = tf.saved_model.load(str(self.path))
            self._fn = self._loaded.signatures["serving_default"]
            spec = list(self._fn.structured_input_signature[1].values())[0]
            self.input_name = spec.name
            self.input_shape = [None if d is None else int(d) for d in spec.shape]
            self.output_name = list(self._fn.structured_outputs)[0]
            width = self._fn.structured_outputs[self.output_name].shape[-1]
            self.output_width = None if width is None else int(width)
            self.runtime = f"tensorflow {tf.__version__} (saved_model.load)"
        else:
            raise ExportError(f"unknown export format {self.format!r}; choose one of {FORMATS}")

    def predict(self, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Class probabilities ``(N, n_classes) float32`` of model inputs ``x`` ``(N, ...) float32``."""
        x = np.asarray(x, np.float32)
        out = [self._run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.format == "onnx":
            return self._session.run(None, {self.input_name: x})[0]
        if self.format == "tflite":
            from .quiet import stderr_redirected

            it = self._interpreter
            index = it.get_input_details()[0]["index"]
            with stderr_redirected():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                it.resize_tensor_input(index, list(x.shape))
                it.allocate_tensors()
                it.set_tensor(index, x)
                it.invoke()
            return it.get_tensor(it.get_output_details()[0]["index"]).copy()
        import tensorflow as tf

        return self._fn(tf.constant(x))[self.output_name].numpy()


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # the successor of tf.lite.Interpreter
        from importlib.metadata import version

        return Interpreter(model_path=str(path)), f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated": ai-edge-litert is its successor
            return tf.lite.Interpreter(model_path=str(path)), f"tensorflow {tf.__version__} (tf.lite.Interpreter)"


def guess_format(path: str | Path) -> str:
    """The format of an exported model from its path: ``.onnx``, ``.tflite``, or a folder (SavedModel).

    Raises:
        ExportError: none of these.
    """
    path = Path(path)
    if path.is_dir():
        return "savedmodel"
    for fmt, suffix in SUFFIXES.items():
        if suffix and path.suffix.lower() == suffix:
            return fmt
    raise ExportError(f"{path}: not an exported model (.onnx, .tflite or a SavedModel folder)")


def load_exported(path: str | Path, fmt: str | None = None) -> ExportedModel:
    """Load an exported model with its runtime (:class:`ExportedModel`); ``fmt`` default: from the path."""
    return ExportedModel(path, fmt)


# --------------------------------------------------------------------------- parity and the whole export
def parity_audio(audio: str | Path | Sequence[str | Path] | None = None, limit: int = PARITY_FILES) -> list[Path]:
    """The recordings of the parity check: audio files, or the first ``limit`` (sorted) under a folder; default
    the bundled sample's.

    Raises:
        FileNotFoundError: a path does not exist. ExportError: no audio file found.
    """
    from .audio import AUDIO_EXTENSIONS, list_audio

    sources = [SAMPLE_AUDIO] if audio is None else [audio] if isinstance(audio, (str, Path)) else list(audio)
    files: list[Path] = []
    for s in map(Path, sources):
        if not s.exists():
            raise FileNotFoundError(f"parity audio {s} not found")
        files += list_audio(s)[:limit] if s.is_dir() else [s] if s.suffix.lower() in AUDIO_EXTENSIONS else []
    if not files:
        raise ExportError(f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, sources))} for the "
                          "parity check")
    return files


def check_parity(plan: ExportPlan, runner: ExportedModel, files: Sequence[Path], tolerance: float,
                 batch_size: int = 16) -> dict[str, Any]:
    """Compare the exported model with the family's Keras prediction on model inputs made from ``files``.

    The inputs come from the sidecar's description (:func:`model_inputs` of ``plan.preprocessing``), so the check
    covers the sidecar too; files without a speaker use utterance normalisation in a ``speaker`` run.

    Returns:
        ``{"files": n, "audio": [paths used], "skipped": {...}, "normalization": [...], "max_abs_diff": float,
        "mean_abs_diff": float, "tolerance": float, "passed": bool, "same_predictions": bool (same top class),
        "runtime": str, "reference": str}``.

    Raises:
        ValueError: no usable audio among ``files``.
    """
    families = ("cnnrnn.cnnrnn.predict", "cnnrnn.baselines", "cnnrnn.dcnn")
    levels = {n: logging.getLogger(n).level for n in families}
    for n in families:  # "no speaker: utterance normalisation" is what the parity check means to use
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        inputs = model_inputs(plan.preprocessing, files)
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)
    x = inputs.x
    expected = np.asarray(plan.reference(x), np.float32)
    got = runner.predict(x, batch_size)
    if got.shape != expected.shape:
        raise ExportError(f"the exported model gives outputs of shape {got.shape}, the Keras model {expected.shape}")
    diff = np.abs(got.astype(np.float64) - expected)
    worst = float(diff.max())
    return {"files": len(inputs.ids), "audio": inputs.sources, "skipped": inputs.skipped,
            "normalization": sorted(set(inputs.normalization)) if inputs.normalization else None,
            "max_abs_diff": worst,
            "mean_abs_diff": float(diff.mean()), "tolerance": tolerance, "passed": bool(worst <= tolerance),
            "same_predictions": bool((got.argmax(1) == expected.argmax(1)).all()), "runtime": runner.runtime,
            "reference": f"cnnrnn.{plan.family} Keras prediction (as cnnrnn predict)"}


def _extra_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("tf2onnx", "onnx", "onnxruntime", "ai-edge-litert"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def default_out(model: str | Path, fmt: str) -> Path:
    """``./<run name>.onnx``, ``./<run name>.tflite`` or ``./<run name>_savedmodel`` (run name: the run folder's
    name, or the checkpoint's stem)."""
    p = Path(model)
    name = (p.name if p.is_dir() or not p.suffix else p.stem) or "model"
    return Path(f"{name}{SUFFIXES[fmt]}" if SUFFIXES[fmt] else f"{name}_savedmodel")


def export(model: str | Path, fmt: str | None = None, out: str | Path | None = None, *, config=None, labels=None,
           family: str | None = None, audio=None, batch_size: int = 16,
           trust_code: bool = False) -> dict[str, Any]:
    """Export a trained run (see the module docstring) and check the result on real audio.

    Args:
        model: run folder, checkpoint or shipped model name (as ``cnnrnn predict --model``).
        fmt: ``onnx``, ``tflite`` or ``savedmodel``; ``None``: from ``out``'s suffix (``.onnx``, ``.tflite``), else
            ``onnx``.
        out: the file (``.onnx``, ``.tflite``) or folder (SavedModel) to write; default :func:`default_out`. An
            existing one is replaced only when it is a previous export of ours (:func:`check_out`).
        config, labels, family: for a run that does not record them (:func:`plan_export`).
        audio: audio file(s) or a folder for the parity check (default: the bundled sample, :func:`parity_audio`).
        batch_size: batch size of both predictions of the parity check.
        trust_code: load checkpoints with ``Lambda`` layers (their code runs, and is exported).

    Returns:
        ``{"out": Path, "sidecar": Path, "format": str, "family": str, "parity": dict, "labels": [...],
        "model_input": {...}, "model_output": {...}}``.

    Raises:
        ExportError: see :func:`plan_export`; an unknown format or an ``out`` whose suffix names another format.
        NotOurOutputError: ``out`` exists and is not a previous export of ours, or its sidecar path holds a file
            that is not our sidecar (:func:`check_out`; checked before any work, nothing is touched).
        LabelsError: the run's labels repeat (:func:`check_labels`); no sidecar with such labels is written.
        MissingExtraError: ``onnx`` without the ``export`` extra (checked before any work).
        ParityError: the exported model's probabilities differ by more than :data:`TOLERANCES` (the model and its
            sidecar, with ``parity.passed`` false, are kept).
    """
    if fmt is None:
        suffix = Path(out).suffix.lower() if out is not None else ""
        fmt = next((f for f, s in SUFFIXES.items() if s and s == suffix), "onnx")
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    require_extra(fmt)
    out = Path(out) if out is not None else default_out(model, fmt)
    suffix = out.suffix.lower()
    named = next((f for f, s in SUFFIXES.items() if s and suffix == s), None)
    if named is not None and named != fmt:
        raise ExportError(f"--out {out} ends in {suffix}, which is the {named} format, not {fmt}")
    check_out(out, fmt)
    files = parity_audio(audio)
    plan = plan_export(model, config=config, labels=labels, family=family, batch_size=batch_size,
                       trust_code=trust_code)
    check_labels(plan.labels, plan.run.get("folder") or model,
                 fix="fix the run's labels (labels.json, run.json) or give --labels")
    graph = plan.build(fmt == "tflite")
    write_model(graph, out, fmt)
    runner = load_exported(out, fmt)
    with _quiet_loggers(("tensorflow",)):  # one predict trace per checkpoint is expected, not a retracing bug
        parity = check_parity(plan, runner, files, TOLERANCES[fmt], batch_size)
    n_classes = len(plan.labels)
    sidecar = {
        "kind": SIDECAR_KIND, "schema_version": SIDECAR_SCHEMA, "format": fmt,
        "model": out.name if fmt != "savedmodel" else ".", "family": plan.family, "labels": plan.labels,
        "model_input": {"name": runner.input_name, "shape": runner.input_shape, "dtype": "float32",
                        "keras_shape": [None, *[int(d) for d in graph.input_shape[1:]]]},
        "model_output": {"name": runner.output_name, "shape": [None, n_classes], "dtype": "float32",
                         "is": "class probabilities (softmax; averaged over checkpoints and segments), one column "
                               "per label in labels order"},
        "preprocessing": plan.preprocessing,
        "parity": parity,
        "source": {"model": str(model), **plan.run, "checkpoints": [str(c) for c in plan.checkpoints]},
        "unrolled_rnn": fmt == "tflite",
        "versions": {**package_versions(), **_extra_versions()},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    side = save_json(sidecar, sidecar_path(out, fmt))
    result = {"out": out, "sidecar": side, "format": fmt, "family": plan.family, "parity": parity,
              "labels": plan.labels, "model_input": sidecar["model_input"], "model_output": sidecar["model_output"]}
    if not parity["passed"]:
        raise ParityError(f"{out}: the exported model's probabilities differ from the Keras model's by up to "
                          f"{parity['max_abs_diff']:.3g} on {parity['files']} file(s), over the {fmt} tolerance "
                          f"{TOLERANCES[fmt]:g}; the files are kept for inspection ({side})")
    return result


# --------------------------------------------------------------------------- predicting with an exported model
def is_exported(path: str | Path) -> bool:
    """Whether ``path`` is an exported model: an ``.onnx`` or ``.tflite`` file, or a folder holding a SavedModel
    sidecar (:data:`SAVEDMODEL_SIDECAR`). ``cnnrnn predict --model`` hands such a path to :func:`predict_run`."""
    path = Path(path)
    if path.is_dir():
        return (path / SAVEDMODEL_SIDECAR).is_file()
    return path.is_file() and path.suffix.lower() in {s for s in SUFFIXES.values() if s}


def clip_spec(models: Sequence[str | Path], manifest=None, **_: Any) -> dict[str, Any]:
    """``{"sr": Hz, "duration": seconds or None, ...}``: the clips an exported model takes, read from its sidecar
    (``preprocessing.audio``), with the feature settings (``n_mels``, ``n_fft``, ``hop_length``, ...) for
    long-recording prediction (:func:`cnnrnn.predict.predict`). Raises what :func:`read_sidecar` raises."""
    pre = read_sidecar(Path(models[0]), labels=False)["preprocessing"]
    audio = pre.get("audio") or {}
    return {**(pre.get("settings") or {}), "sr": audio.get("sr"), "duration": audio.get("duration")}


def _check_audio_source(source) -> None:
    """Check that ``source`` is audio (files, folders of audio, or clips): an exported model takes audio only.

    Raises:
        FileNotFoundError: a path does not exist. ValueError: an image, a pickle or another kind of file.
    """
    from .audio import AUDIO_EXTENSIONS, Clip

    for item in [source] if isinstance(source, (str, Path)) else list(source):
        if isinstance(item, Clip):
            continue
        path = Path(item)
        if not path.exists():
            raise FileNotFoundError(f"input {path} not found")
        if path.is_file() and path.suffix.lower() not in AUDIO_EXTENSIONS:
            raise ValueError(f"{path}: an exported model predicts audio files ({', '.join(AUDIO_EXTENSIONS)}) or "
                             "folders of them; predict images and pickles with the run itself (--model RUN)")


def predict_run(models: Sequence[str | Path], source, out_dir: str | Path | None = None, *, manifest=None,
                progress: bool = True, **options: Any) -> dict[str, Any]:
    """``cnnrnn predict --model model.onnx`` (or ``.tflite``, or a SavedModel folder): predict audio with an
    exported model through its own runtime (:func:`load_exported`; ONNX: onnxruntime, no TensorFlow imported).

    The model inputs are made from the sidecar's description (:func:`model_inputs`: the family's own feature
    code, so the probabilities are the run's, within the export's parity tolerance), every file once, and go
    through the model in batches of ``batch_size``; the model is loaded once. Several exported models with the same
    preprocessing and labels average their probabilities. The report is :func:`cnnrnn.reports.write_report`'s
    (``predictions.csv``; the true labels of audio are not known).

    Args:
        models: exported model paths (:func:`is_exported`).
        source: an audio file, a folder of audio, a list of them, or :class:`cnnrnn.audio.Clip` waveforms.
        out_dir: output folder (default ``<model's folder>/predictions``).
        manifest: unused (an exported model carries its sidecar instead of a run manifest).
        options: ``batch_size`` (default 16, as for the run's checkpoints), ``speaker`` (speaker-normalised
            runs), ``labels`` (names or a ``labels.json``, default the sidecar's); the options of Keras checkpoints
            (``render``, ``resize``, ``config``, ...) do not apply and are ignored.

    Returns:
        ``{"predictions": DataFrame, "metrics": None, "files": {...}, "skipped": {...}, "notes": [...]}``.

    Raises:
        FileNotFoundError: no sidecar beside a model, or a missing input. ValueError: inputs that are not audio,
            no usable audio, models whose preprocessing or labels differ. ExportError: an unreadable sidecar.
        LabelsError: labels (the sidecar's or ``labels``) that repeat or whose count differs from the model's
            output width (checked before any audio is read).
        MissingExtraError: an ONNX model without onnxruntime.
        cnnrnn.artifacts.NotWritableError: ``out_dir`` cannot be written (checked before any work).
    """
    from .artifacts import as_probabilities
    from .outputs import claim_predictions
    from .reports import write_report

    paths = [Path(m) for m in models]
    if not paths:
        raise ValueError("no exported model given")
    sidecars = []
    for path in paths:
        try:
            sidecars.append(read_sidecar(path, labels=not options.get("labels")))
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path}: no sidecar {sidecar_path(path).name} beside it; cnnrnn predict takes "
                                    "models written by cnnrnn export (the sidecar describes their "
                                    "preprocessing)") from exc
    pre, labels = sidecars[0]["preprocessing"], options.get("labels") or sidecars[0]["labels"]
    for path, side in zip(paths[1:], sidecars[1:]):
        if side["preprocessing"] != pre or side["labels"] != sidecars[0]["labels"]:
            raise ValueError(f"{path} and {paths[0]} differ in preprocessing or labels: predict them one at a time, "
                             "or average their probabilities with --fuse")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    _check_audio_source(source)
    out = claim_predictions(out_dir or paths[0].resolve().parent / "predictions")
    runners = [load_exported(path, side.get("format")) for path, side in zip(paths, sidecars)]
    given = options.get("labels")
    for path, runner in zip(paths, runners):  # one column per distinct label, before any audio is read
        where = sidecar_path(path) if not given else given if isinstance(given, (str, Path)) else "labels given"
        check_labels(labels, where, runner.output_width,
                     fix="give one distinct label per class, in the model's output order" if given else
                     "export the model again from its run, with one distinct label per class, or give the labels "
                     "with --labels")
    inputs = model_inputs(pre, source, speaker=options.get("speaker"), progress=progress)
    batch_size = int(options.get("batch_size") or 16)
    proba = np.mean([as_probabilities(r.predict(inputs.x, batch_size), path) for r, path in zip(runners, paths)],
                    axis=0)
    if proba.shape[1] != len(labels):
        raise ExportError(f"{paths[0]} predicts {proba.shape[1]} classes but there are {len(labels)} labels")
    columns = {"normalization": inputs.normalization} if inputs.normalization else None
    result = write_report(out, proba, list(labels), inputs.ids, None, family=str(pre.get("family", "")),
                          sources=inputs.sources, columns=columns,
                          extra={"models": [str(p) for p in paths], "runtime": runners[0].runtime})
    return {**result, "skipped": inputs.skipped, "notes": []}
