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
  captures stored as initializers (:func:`write_model`). Needs the ``export`` extra: ``tf2onnx``, ``onnx``,
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
versions). A family whose ``export`` module has no ``plan`` (HF, openSMILE functionals) is not exportable:
its ``NOT_EXPORTABLE`` is the one-line :class:`ExportError`.

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

**Layout.** This module runs an export and predicts with an exported model; the sidecar, its checks and the
preprocessing it describes are in :mod:`cnnrnn.export_sidecar`, the files, their runtimes and the parity check in
:mod:`cnnrnn.export_formats` (their public names are importable from here too). Each family's own part is its
``export`` module (``cnnrnn.<family>.export``: ``plan``, ``preprocessing``, ``model_inputs``, ``LOGGERS``; or
``NOT_EXPORTABLE``), reached through the registry (:func:`cnnrnn.families.module`) by the family name that a run's
manifest or a sidecar records.
"""
from __future__ import annotations

import datetime as _dt
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import families
from .artifacts import load_labels, save_json
from .export_formats import (ONNX_OUTPUT, PARITY_FILES, SAMPLE_AUDIO, ExportedModel, ExportPlan,  # noqa: F401
                             check_parity, guess_format, library_of, load_exported, parity_audio, quiet_loggers,
                             require_extra, unrolled, write_model)
from .export_sidecar import (EXTRA, EXTRA_MODULES, FORMATS, SAVEDMODEL_ENTRIES, SAVEDMODEL_SIDECAR,  # noqa: F401
                             SIDECAR_KIND, SIDECAR_SCHEMA, SUFFIXES, TOLERANCES, ExportError, LabelsError,
                             MissingExtraError, ModelInputs, NotOurOutputError, ParityError, check_labels, check_out,
                             export_part, foreign_entries, is_own_sidecar, model_inputs, preprocessing_of,
                             read_sidecar, sidecar_path)
from .runs import package_versions

log = logging.getLogger("cnnrnn.export")

#: Why an exported model (``.onnx``, ``.tflite``, a SavedModel folder) is not exported again.
ALREADY_EXPORTED = "it is already an exported model; export the run it came from (its sidecar's source.model)"


def exportable() -> tuple[str, ...]:
    """The families that can be exported: those whose ``export`` module has ``plan`` (registry order,
    :data:`cnnrnn.families.FAMILIES`)."""
    return tuple(f for f in families.FAMILIES if hasattr(export_part(f), "plan"))


def not_exportable() -> dict[str, str]:
    """Family → why its runs cannot be exported (its ``export`` module's ``NOT_EXPORTABLE``)."""
    return {f: reason for f in families.FAMILIES if (reason := getattr(export_part(f), "NOT_EXPORTABLE", None))}


def __getattr__(name: str):
    """``EXPORTABLE`` (:func:`exportable`) and ``NOT_EXPORTABLE`` (:func:`not_exportable`), asked of the
    families' ``export`` modules when read."""
    if name == "EXPORTABLE":
        return exportable()
    if name == "NOT_EXPORTABLE":
        return not_exportable()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def plan_export(model: str | Path, *, config=None, labels=None, family: str | None = None,
                batch_size: int = 16, trust_code: bool = False) -> ExportPlan:
    """Resolve a run as ``cnnrnn predict --model`` does (:func:`cnnrnn.predict.resolve_family`) and gather what
    its export needs (:class:`ExportPlan`, made by the ``plan`` of the family's ``export`` module).

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
        ExportError: a family without export (HF, functionals: its ``NOT_EXPORTABLE``), an exported model, or
            unknown preprocessing or labels.
        cnnrnn.artifacts.CheckpointError: a checkpoint does not load or does not fit its config.
    """
    from .predict import resolve_family, resolve_model

    path = resolve_model(model)
    guessed, manifest = resolve_family(path)
    if family is not None and manifest is not None and family != manifest.family:
        raise ExportError(f"{path} is a {manifest.family} run (its run.json says so), not {family}")
    if family is not None:
        guessed = family
    part = export_part(guessed)
    if part is None and family is None and is_exported(path):  # resolve_family's name for an exported model
        raise ExportError(f"cannot export a {guessed} run: {ALREADY_EXPORTED}")
    reason = getattr(part, "NOT_EXPORTABLE", None)
    if reason:
        raise ExportError(f"cannot export a {guessed} run: {reason}")
    if not hasattr(part, "plan"):
        raise ExportError(f"cannot export a {guessed} run (exportable: {', '.join(exportable())})")
    return part.plan([path], manifest, config, labels, batch_size, trust_code)


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
    with quiet_loggers(("tensorflow",)):  # one predict trace per checkpoint is expected, not a retracing bug
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
