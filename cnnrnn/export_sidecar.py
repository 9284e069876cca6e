"""The sidecar of an exported model (``cnnrnn export``): the format constants, the errors, reading and checking a
sidecar, the output-path rules, and the ``preprocessing`` it describes, from which the model's inputs are made
again from audio.

The sidecar (:func:`sidecar_path`: ``model.onnx`` → ``model.onnx.json``; a SavedModel folder →
``<folder>/export.json``) is a JSON object with ``kind`` :data:`SIDECAR_KIND`, ``schema_version``
:data:`SIDECAR_SCHEMA`, ``format``, ``model``, ``family``, ``labels``, ``model_input``, ``model_output``,
``preprocessing``, ``parity``, ``source``, ``unrolled_rnn``, ``versions`` and ``created`` (written by
:func:`cnnrnn.export.export`).

``preprocessing`` (:func:`preprocessing_of`) holds the steps every family shares (:func:`describe_audio`,
:func:`describe_log_mel`, :func:`describe_normalization`) and the family's own part, which the family's ``export``
module gives (``preprocessing(cfg, settings, ...)``), found through :func:`cnnrnn.families.module` by the family
name the sidecar records; :func:`model_inputs` turns audio into the model's input the same way (the family's
``model_inputs(preprocessing, files, ...)``). Nothing here imports TensorFlow: an ONNX model is predicted with
librosa, OpenCV and onnxruntime alone.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

import numpy as np

from . import families
from .artifacts import load_json
from .features import PRETRAINED_KINDS

FORMATS = ("onnx", "tflite", "savedmodel")
#: Largest max-abs difference of probabilities accepted by the parity check, per format.
TOLERANCES = {"onnx": 1e-4, "savedmodel": 1e-4, "tflite": 1e-2}
#: File suffix of each format (a SavedModel is a folder).
SUFFIXES = {"onnx": ".onnx", "tflite": ".tflite", "savedmodel": ""}
#: The pip extra that brings each format's converter and runtime, and the modules it must provide.
EXTRA = "export"
EXTRA_MODULES = {"onnx": ("tf2onnx", "onnx", "onnxruntime")}
SIDECAR_KIND = "cnnrnn-export"
SIDECAR_SCHEMA = 1
#: The sidecar inside a SavedModel folder.
SAVEDMODEL_SIDECAR = "export.json"


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


# --------------------------------------------------------------------------- the sidecar and the output path
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


# --------------------------------------------------------------------------- the sidecar's preprocessing
def export_part(family: Any) -> ModuleType | None:
    """The ``export`` module of ``family`` (:func:`cnnrnn.families.module`): ``plan(...)``, ``preprocessing(...)``
    and ``model_inputs(...)`` for a family that can be exported, ``NOT_EXPORTABLE`` (the reason) for one that
    cannot; ``None`` when ``family`` is not a family's name."""
    if not isinstance(family, str):
        return None
    try:
        return families.module(family, "export")
    except families.UnknownFamilyError:
        return None


def norm_stats(path: Path | None, uses_stats: bool):
    """The :class:`cnnrnn.normalize.NormStats` stored at ``path`` (a run's ``normalization.json``), or ``None``
    when the run does not use statistics (``uses_stats`` false) or stored none."""
    if path is None or not uses_stats or not path.is_file():
        return None
    from .normalize import NormStats

    return NormStats.from_dict(load_json(path))


def describe_normalization(mode: str, norm_range: float, stats, to: str, kind: str = "log_mel") -> dict[str, Any]:
    """The sidecar's ``normalization``: mode (``none``, ``utterance``, ``speaker``, ``global``), how z-scores map
    to the model's input range ``to`` (text), and the statistics (``stats``, a
    :class:`cnnrnn.normalize.NormStats`, stored whole for ``speaker`` / ``global`` runs and pretrained front ends
    (``kind`` in :data:`cnnrnn.features.PRETRAINED_KINDS`)); ``{"mode": "none"}`` without normalisation."""
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



def describe_log_mel(cfg) -> dict[str, Any]:
    """The sidecar's ``features`` of a librosa log-mel in dB (``log_mel_db``): STFT (``n_fft``, ``hop_length`` in
    samples), mel filters (``n_mels``, ``fmin`` / ``fmax`` in Hz), ``top_db`` and the frame count of a clip, from
    a config with those fields, ``sr`` and ``n_samples``."""
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



def describe_audio(sr: int, duration: float | None, pad: str) -> dict[str, Any]:
    """The sidecar's ``audio``: sample rate ``sr`` (Hz), mono mix, resampling, clip length (``duration`` in
    seconds and in samples; ``None``: any length) and ``pad`` (how a clip is padded or cut, in words)."""
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

    The family's ``export`` module (:func:`export_part`) describes its own steps (``preprocessing(cfg, settings,
    stats=..., image=..., segments=...)``); ``family`` and ``settings`` (every field of ``cfg``) frame them.

    Args:
        family: the run's family; ``cfg`` is its feature config (a dataclass): a
            :class:`cnnrnn.features.SpectrogramConfig` for ``cnnrnn``, a
            :class:`cnnrnn.baselines.config.BaselineConfig` for ``baselines``, a
            :class:`cnnrnn.dcnn.config.FeatureConfig` for ``dcnn``.
        stats: the run's :class:`cnnrnn.normalize.NormStats` (``global`` / ``speaker`` runs), stored whole.
        image: CNNRNN: ``(H, W)`` of the exported model's input image.
        segments: CNNRNN: ``{"width", "hop", "starts"}`` of a model trained on time crops; DCNN: ``{"count",
            "step"}``.

    Returns:
        A JSON-serialisable dict: ``family``, ``audio`` (sr in Hz, clip length in s and samples, padding),
        ``features`` (n_fft, hop_length, n_mels, fmin, fmax, top_db, ...), ``normalization`` (mode, range, stats),
        ``image`` / ``input`` (size, colormap, channel order, scaling), ``segments``, and ``settings`` (the
        family's own settings, from which its code rebuilds the inputs).

    Raises:
        ExportError: ``family`` is not a family, or one without export.
    """
    settings = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    describe = getattr(export_part(family), "preprocessing", None)
    if describe is None:
        raise ExportError(f"no export preprocessing for a {family!r} run")
    steps = describe(cfg, settings, stats=stats, image=image, segments=segments)
    return {"family": family, **steps, "settings": settings}


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


def audio_files(source) -> list:
    """The audio files of ``source`` (a file, a folder searched recursively, or a list of them); a list of
    :class:`cnnrnn.audio.Clip` waveforms is returned as it is.

    Raises:
        FileNotFoundError: a path does not exist.
    """
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

    The family's own code does the work (the ``model_inputs`` of the family's ``export`` module, found through
    :func:`cnnrnn.families.module` by ``preprocessing["family"]``), with the feature settings, image size and
    normalisation statistics read back from the sidecar (``settings``, ``image.size``, ``normalization.stats``),
    so an exported model gives what ``cnnrnn predict`` gives on the run. No TensorFlow is imported (librosa,
    OpenCV, numpy), so with an ONNX file (:func:`cnnrnn.export_formats.load_exported`, onnxruntime) prediction
    runs without TensorFlow. The export's parity check uses this function too.

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

    family = preprocessing.get("family")
    raw = (preprocessing.get("normalization") or {}).get("stats")
    stats = NormStats.from_dict(raw) if raw else None
    files = audio_files(source)
    make = getattr(export_part(family), "model_inputs", None)
    if make is None:
        raise ExportError(f"unknown family {family!r} in the sidecar's preprocessing")
    return make(preprocessing, files, stats=stats, speaker=speaker, progress=progress, source=source)
