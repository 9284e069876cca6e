"""``cnnrnn predict --model X``: prediction with a trained run of any family.

The run's manifest (``run.json``, :mod:`cnnrnn.runs`) found at or above ``X`` names its family; the run is
handed to that family's ``predict.predict_run``, reached through the registry (:func:`cnnrnn.families.module`). A
run written before manifests existed is recognised by its own files (:func:`cnnrnn.runs.legacy_family`). An
exported model (``cnnrnn export``: ``.onnx``, ``.tflite``, a SavedModel folder) is handed to
:func:`cnnrnn.export.predict_run`, which runs it with its own runtime (ONNX: onnxruntime, no TensorFlow). This
module sits above the families and names none: what differs between them (the options a family takes, whether
its inputs' speakers may be their folders, whether the speech check and long-recording windows apply) each
family's ``predict`` module declares (``PREDICT_OPTIONS``, ``FOLDER_SPEAKERS``, ``SPEECH_CHECK``, ``WINDOWS``),
and :func:`family_module` / :func:`capability` read it.

Long recordings (:func:`predict` with ``window``/``hop``) are cut here, once for every family: each audio file
longer than the model's clip becomes windows in memory (:class:`cnnrnn.audio.Clip`, :func:`cnnrnn.audio.windows`),
silent windows are marked and left out (:func:`cnnrnn.audio.silence_mask`), the family predicts the others as it
predicts files, and the window probabilities become ``timeline.csv``, one timeline figure per file and one row per
file in ``predictions.csv``.

Speech check (:mod:`cnnrnn.speech`, Silero VAD): an audio file or window that holds no speech (white noise, a
constant, a tone, music) gets the label ``no_speech`` (:data:`cnnrnn.speech.NO_SPEECH`) and NaN probabilities instead
of an emotion, here, once for every family that declares ``SPEECH_CHECK`` (Hugging Face runs, which predict
transcripts, do not);
``classify_anyway`` (``--classify-anyway``) turns it off. In a labelled evaluation such a file is an error for its
true class (:func:`cnnrnn.evaluation.classification_metrics`), counted in ``metrics.json`` (``no_speech``).
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Sequence

from .outputs import check_not_training, claim_predictions, writing_stage
from .reports import REPORT_FILES
from .audio import SILENCE_TOP_DB
from .speech import no_speech_rows
from .timeline import (CLIP_TOLERANCE_S, SILENCE_LABEL, SKIPPED_LABEL, TIMELINE_FILE, WindowPlan,  # noqa: F401
                       audio_inputs, predict_windows)
from .families import FAMILIES, module as _registry_module
from .runs import find_manifest, legacy_family, read_manifest

log = logging.getLogger("cnnrnn.predict")

#: The "family" of an exported model (``cnnrnn export``: ``.onnx``, ``.tflite``, a SavedModel folder with its
#: sidecar): :func:`cnnrnn.export.predict_run` predicts it with its own runtime, ONNX without TensorFlow.
EXPORTED = "exported"
#: The module that predicts :data:`EXPORTED` models (``is_exported``, ``predict_run``, ``clip_spec``): a facade of
#: its own, imported by name when a model needs it (it imports the runtimes).
EXPORT_MODULE = "cnnrnn.export"
#: The options :data:`EXPORT_MODULE`'s ``predict_run`` takes, unless it declares ``PREDICT_OPTIONS`` itself.
EXPORTED_OPTIONS = frozenset({"labels", "batch_size", "speaker"})
#: What a family's ``predict`` module may declare, and what is assumed when it does not (see the module docstring).
CAPABILITIES = {"PREDICT_OPTIONS": EXPORTED_OPTIONS, "FOLDER_SPEAKERS": False, "SPEECH_CHECK": True, "WINDOWS": True}


class OptionError(TypeError, ValueError):
    """A prediction option that the run's family does not take, a misspelled one included (the message names the
    option and the family). A ``TypeError``, as a misspelled keyword is, and a ``ValueError``, which the command
    line reports in one line."""


def family_module(family: str):
    """The module with ``family``'s ``predict_run(models, source, out_dir, *, manifest, progress, **options)``: the
    family's ``predict`` module (:func:`cnnrnn.families.module`), or :data:`EXPORT_MODULE` for :data:`EXPORTED`.

    Raises:
        cnnrnn.families.UnknownFamilyError: ``family`` is neither a family nor :data:`EXPORTED`.
    """
    return importlib.import_module(EXPORT_MODULE) if family == EXPORTED else _registry_module(family, "predict")


def capability(family: str, name: str) -> Any:
    """What ``family``'s predict module declares as ``name`` (one of :data:`CAPABILITIES`), or the default there.

    Raises:
        KeyError: ``name`` is not one of :data:`CAPABILITIES`.
    """
    return getattr(family_module(family), name, CAPABILITIES[name])


def check_options(families: Sequence[str], options: dict) -> None:
    """Refuse an option that one of ``families`` does not take (a misspelled one included).

    An option whose value is ``None`` or ``False`` is not given (the command line passes every option, unset ones
    as ``None``). Only the modules of ``families`` are read (no other family is imported). ``speaker`` =
    :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER` needs a family that declares ``FOLDER_SPEAKERS``.

    Raises:
        OptionError: the first such option (its name, the family, and the options that family takes).
    """
    from .normalize import SPEAKER_FROM_FOLDER

    for family in sorted(families):
        takes = capability(family, "PREDICT_OPTIONS")
        for name in sorted(options):
            value = options[name]
            if value is not None and value is not False and name not in takes:
                raise OptionError(f"option {name!r} (--{name.replace('_', '-')}) does not apply to {family} runs "
                                  f"(they take: {', '.join(sorted(takes)) or 'none'})")
        if options.get("speaker") == SPEAKER_FROM_FOLDER and not capability(family, "FOLDER_SPEAKERS"):
            raise OptionError(f"--speaker-from folder: {family} runs do not take each file's folder as its speaker; "
                              "give --speaker NAME")


def _options_for(family: str, options: dict) -> dict:
    """The options ``family``'s ``predict_run`` takes, of those given (after :func:`check_options`)."""
    takes = capability(family, "PREDICT_OPTIONS")
    return {k: v for k, v in options.items() if k in takes}


#: Models shipped inside the package, one run folder each (``cnnrnn predict --model emodb``); see each folder's
#: ``MODEL_CARD.md``. Built by ``benchmarks/build_shipped_model.py``.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def shipped_models() -> list[str]:
    """Names of the models shipped in the package (folders of :data:`PRETRAINED_DIR` with a ``run.json``)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "run.json").is_file())


def resolve_model(model: str | Path) -> Path:
    """A path as given when it exists, else the shipped model of that name (:func:`shipped_models`).

    Raises:
        FileNotFoundError: neither a path nor a shipped model's name (the message lists the shipped names).
    """
    path = Path(model)
    if path.exists():
        return path
    if str(model) in shipped_models():
        return PRETRAINED_DIR / str(model)
    names = ", ".join(shipped_models()) or "none"
    raise FileNotFoundError(f"model {model} not found (neither a path nor a shipped model: {names})")


def resolve_family(model: str | Path):
    """``(family, manifest or None)`` of a checkpoint or run folder; ``(EXPORTED, None)`` for an exported model.

    Raises:
        FileNotFoundError: ``model`` does not exist.
        cnnrnn.runs.ManifestError: the manifest is unreadable, newer than this package, or of a family that
            ``cnnrnn predict`` cannot use.
    """
    model = resolve_model(model)
    if family_module(EXPORTED).is_exported(model):
        return EXPORTED, None
    path = find_manifest(model)
    if path is None:
        return legacy_family(model), None
    manifest = read_manifest(path, families=FAMILIES)
    return manifest.family, manifest


def predict(models: str | Path | Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
            progress: bool = True, fuse: bool = False, window: float | None = None, hop: float | None = None,
            silence_db: float | None = SILENCE_TOP_DB, classify_anyway: bool = False, figures: bool = True,
            **options: Any) -> dict:
    """Predict ``source`` with a trained run of any family, or fuse several runs.

    **Long recordings.** A model with a fixed clip length (its run's ``input.duration``: CNNRNN, the baselines,
    DCNN-BLSTMwA with ``max_sec``) would see only the first clip of a longer file. So an audio file longer than
    the clip is predicted in windows of the clip length every half clip (a note says so), and a file that fits
    in one clip is predicted as before. ``window`` cuts every audio file, whatever its length, and works with
    every family but Hugging Face (the functionals family and DCNN without ``max_sec`` take whole files of any
    length, so they are windowed only when asked). See :func:`predict_windows`.

    **Speech check.** Before an audio file gets an emotion, :func:`cnnrnn.speech.is_speech` (Silero VAD) says
    whether it holds speech; one that does not (noise, a constant, a tone, music) gets the label ``no_speech``,
    ``predicted_index`` -1 and NaN probabilities in ``predictions.csv``, is listed in the result's ``no_speech``
    and logged. Of a folder or list of audio files, only the speech is given to the family (so noise never enters
    a speaker's normalisation statistics); the files of a CSV or filelist, or a single file, are
    predicted and then marked. In a labelled evaluation (a CSV with labels, a DCNN filelist) a ``no_speech`` file
    counts as an error for its true class, never dropped; ``metrics.json`` says how many (``no_speech``).
    Windows of long recordings are checked the same way (:func:`predict_windows`). Images and pickles are not
    audio and are not checked; nor are Hugging Face runs (they predict transcripts).

    Args:
        models: a checkpoint, a run folder, a shipped model's name (:func:`shipped_models`: ``emodb``), an
            exported model (:data:`EXPORTED`), or several. Without ``fuse`` all must be of one family (the CNNRNN
            folds average their probabilities). With ``fuse``, each run (family and run folder) predicts on its
            own into ``<out>/<family>_<k>/``, and the runs' class probabilities are averaged (late fusion,
            :func:`fuse_predictions`).
        source: what the families predict on (audio files or folders; CNNRNN also PNGs and
            ``*_final.pickle``; HF a ``new_data.csv``).
        out_dir: output folder (default ``<run>/predictions``; ``./predictions`` for a shipped model).
        fuse: late fusion of the runs given.
        window: window length in seconds for long recordings (default: the model's clip length, for the files
            longer than it); a file shorter than ``window`` is one window, padded as the model's training clips
            were (zeros for CNNRNN and DCNN, reflection for the baselines).
        hop: seconds between window starts (default ``window / 2``).
        silence_db: a window is silence, marked and not classified, when under
            :data:`cnnrnn.audio.SILENCE_MIN_VOICED` of it is within this many dB of the recording's loudest
            frame (:func:`cnnrnn.audio.silence_mask`); ``None``: classify every window.
        classify_anyway: skip the speech check: every audio file and window that is not silence gets an emotion
            (``--classify-anyway``).
        figures: draw a timeline figure per file predicted in windows (``--no-figures``: ``timeline.csv`` only).
        options: passed to the family, which must take each one given (its ``PREDICT_OPTIONS``; an option set
            to ``None`` or ``False`` is not given; with ``fuse``, every run's family): ``labels``, ``config``,
            ``resize``, ``batch_size``, ``speaker`` (a name, or :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER` for
            a family that declares ``FOLDER_SPEAKERS``), ``threshold`` (Hugging Face); ``images`` (a folder of
            audio and images gives its images, not its audio), ``render`` (``fast``/``specshow``),
            ``pixel_range`` (``0-255``/``0-1``), ``trust_code`` (load ``Lambda`` layers): CNNRNN runs and
            checkpoints, Keras 2 ones included (:func:`cnnrnn.cnnrnn.predict.predict`).

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {...}, "skipped": {...}, "family": str}``
        (``family`` is ``fusion`` for a fusion, with ``"runs"``: each run's own result); with windows also
        ``"timeline"`` (the DataFrame of ``timeline.csv``) and ``"windows"`` (the settings used); when the speech
        check ran, ``"no_speech"``: the files labelled ``no_speech`` (sources as in ``predictions.csv``).

    Raises:
        OptionError: an option given that a run's family does not take (a misspelled one; ``images`` for any
            but CNNRNN runs), or ``speaker`` from the folder for a family that does not take it
            (:func:`check_options`); a ``ValueError``.
        ValueError: models of different families without ``fuse``; runs whose classes cannot be matched;
            ``window`` or ``hop`` not > 0, ``window`` with a Hugging Face run, with ``images``, or with inputs
            that are not audio; whatever a family raises for bad input.
        cnnrnn.artifacts.NotWritableError: ``out_dir`` cannot be written (checked before any work; a family
            checks its default output folder the same way).
        cnnrnn.speech.SpeechCheckError: the speech check cannot run (onnxruntime or its model file missing).
    """
    for name, value in (("window", window), ("hop", hop)):
        if value is not None and not value > 0:
            raise ValueError(f"--{name} must be a positive number of seconds, got {value}")
    if silence_db is not None and not silence_db > 0:
        raise ValueError(f"--silence-db must be a positive number of dB (or 0 on the command line: no silence "
                         f"detection), got {silence_db}")
    paths = [resolve_model(models)] if isinstance(models, (str, Path)) else [resolve_model(m) for m in models]
    if not paths:
        raise ValueError("no model given")
    if out_dir is None and any(p.resolve().is_relative_to(PRETRAINED_DIR) for p in paths):
        out_dir = Path("predictions")  # never write into the installed package
    for path in paths:
        check_not_training(path)  # a run another process is training: refused
    if out_dir is None:  # each family claims (and names) its default folder
        return _predict(paths, source, None, progress, fuse, window, hop, silence_db, classify_anyway, figures,
                        options)
    claim_predictions(out_dir)
    with writing_stage(out_dir, "predict", [(out_dir, [*REPORT_FILES.values(), TIMELINE_FILE])]):
        return _predict(paths, source, out_dir, progress, fuse, window, hop, silence_db, classify_anyway, figures,
                        options)


def _predict(paths: list[Path], source, out_dir, progress: bool, fuse: bool, window, hop, silence_db,
             classify_anyway: bool, figures: bool, options: dict) -> dict:
    """:func:`predict` once the models are resolved and the output folder claimed (and locked)."""
    resolved = [resolve_family(p) for p in paths]
    families = {family for family, _ in resolved}
    check_options(families, options)
    if not fuse and len(families) != 1:
        raise ValueError(f"the models are of different families {sorted(families)}; predict with one at a time, "
                         "or average their probabilities with --fuse")
    plan = window_plan(source, paths, resolved, window, hop, images=bool(options.get("images")),
                       config=options.get("config"))
    check = not classify_anyway and all(capability(f, "SPEECH_CHECK") for f in families)
    if plan is not None:
        return predict_windows(plan, paths, resolved, out_dir,
                               lambda src: _dispatch(paths, resolved, src, out_dir, progress, fuse, options),
                               progress=progress, silence_db=silence_db, speech_check=check,
                               figures=figures)
    if not check:
        return _dispatch(paths, resolved, source, out_dir, progress, fuse, options)
    speech = SpeechCheck(progress)
    files = None if options.get("images") else audio_inputs(source)
    left_out: list[str] = []
    if files:
        quiet = [f for f, verdict in zip(files, speech.check(files)) if verdict is False]
        if quiet and len(quiet) < len(files):  # the family never sees them (all of them: predicted, then marked)
            left_out = [str(f) for f in quiet]
            source = [f for f in files if str(f) not in left_out]
    return _dispatch(paths, resolved, source, out_dir, progress, fuse, options, speech, left_out, files)


def _dispatch(paths, resolved, source, out_dir, progress: bool, fuse: bool, options: dict,
              speech: SpeechCheck | None = None, left_out: Sequence[str] = (), order: Sequence | None = None) -> dict:
    """One family's ``predict_run``, or the fusion of several runs; with ``speech``, its rows of audio that is not
    speech marked ``no_speech`` and rows added for the files ``left_out`` (:func:`mark_no_speech`)."""
    if fuse:
        return _fuse(paths, resolved, source, out_dir, progress, options, speech, left_out, order)
    family, manifest = resolved[0]
    result = family_module(family).predict_run(paths, source, out_dir, manifest=manifest, progress=progress,
                                               **_options_for(family, options))
    result = {**result, "family": family}
    return mark_no_speech(result, speech, left_out, order) if speech is not None else result


def _fuse(paths, resolved, source, out_dir, progress: bool, options: dict, speech: SpeechCheck | None = None,
          left_out: Sequence[str] = (), order: Sequence | None = None) -> dict:
    groups: dict[tuple, list[Path]] = {}
    for path, (family, manifest) in zip(paths, resolved):
        key = (family, str(manifest.folder) if manifest is not None else str(path.resolve()))
        groups.setdefault(key, []).append(path)
    if len(groups) < 2:
        raise ValueError("--fuse needs at least two runs (of any families)")
    out = Path(out_dir) if out_dir else paths[0].resolve().parent / "fusion"
    runs = []
    for k, ((family, _), members) in enumerate(groups.items(), start=1):
        manifest = next(m for p, (f, m) in zip(paths, resolved) if p in members)
        result = {**family_module(family).predict_run(members, source, out / f"{family}_{k}", manifest=manifest,
                                                      progress=progress, **_options_for(family, options)),
                  "family": family}
        runs.append(mark_no_speech(result, speech, left_out, order, announce=False) if speech is not None else result)
    fused = {**fuse_predictions([r["predictions"] for r in runs], out), "family": "fusion", "runs": runs,
             "notes": [n for r in runs for n in r.get("notes") or ()],
             "skipped": {f"{r['family']}:{reason}": items for r in runs for reason, items in r["skipped"].items()}}
    return mark_no_speech(fused, speech, (), order) if speech is not None else fused


def fuse_predictions(tables: Sequence, out_dir: str | Path) -> dict:
    """Late fusion: the mean of several runs' class probabilities, item by item.

    The classes are matched by meaning across corpora (:func:`cnnrnn.corpora.match_labels`: ``angry`` =
    ``anger``), in the first run's label order; a class that another run lacks is averaged over the runs that
    have it. Items are matched by ``id``; only the items every run predicted are fused. The true label, when
    the first table has one, is kept and scored.

    Args:
        tables: each run's ``predictions.csv`` as a DataFrame (``id``, ``p_<label>`` columns, optional
            ``true``, ``source``).
        out_dir: where the fused report goes (:func:`cnnrnn.reports.write_report`).

    Returns:
        What :func:`cnnrnn.reports.write_report` returns.

    Raises:
        ValueError: no item common to every run, or a run none of whose classes match the first run's.
    """
    import numpy as np

    from .corpora import match_labels
    from .reports import write_report

    def labels_of(df):
        return [c[2:] for c in df.columns if c.startswith("p_")]

    base = labels_of(tables[0])
    common = set(tables[0]["id"])
    for df in tables[1:]:
        common &= set(df["id"])
    ids = [i for i in tables[0]["id"] if i in common]
    if not ids:
        raise ValueError("the runs predicted no item in common: nothing to fuse")
    total = np.zeros((len(ids), len(base)))
    count = np.zeros(len(base))
    for df in tables:
        match = match_labels(labels_of(df), base)
        if not any(match.values()):
            raise ValueError(f"no class of {labels_of(df)} matches {base}")
        rows = df.drop_duplicates("id").set_index("id").loc[ids]
        for label, target in match.items():
            if target is not None:
                j = base.index(target)
                total[:, j] += rows[f"p_{label}"].to_numpy(float)
                count[j] += 1
    proba = total / np.maximum(count, 1)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
    first = tables[0].drop_duplicates("id").set_index("id").loc[ids]
    y_true = None
    if "true" in first and first["true"].notna().all() and set(first["true"]) <= set(base):
        y_true = [base.index(t) for t in first["true"]]
    sources = first["source"].tolist() if "source" in first else None
    return write_report(out_dir, proba.astype(np.float32), base, ids, y_true, family="fusion", sources=sources,
                        extra={"runs": len(tables)})


# --------------------------------------------------------------------------- speech check
class SpeechCheck:
    """The speech check's verdicts on audio files (:func:`cnnrnn.speech.is_speech`), each file read once at
    :data:`cnnrnn.speech.VAD_SR` and its verdict kept by path (``verdicts``: ``True`` speech, ``False`` not,
    ``None`` not an audio file or one that does not load: its family then says why)."""

    def __init__(self, progress: bool = True):
        self.progress = progress
        self.verdicts: dict[str, bool | None] = {}

    def check(self, paths: Sequence[str | Path]) -> list[bool | None]:
        """The verdict on each of ``paths`` (a progress bar for two new files or more).

        Raises:
            cnnrnn.speech.SpeechCheckError: onnxruntime or the detector's model file is missing.
        """
        new = list(dict.fromkeys(str(p) for p in paths if str(p) not in self.verdicts))
        if new:
            from tqdm import tqdm

            for key in tqdm(new, desc="speech check", unit="file", disable=not self.progress or len(new) < 2):
                self.verdicts[key] = self._verdict(Path(key))
        return [self.verdicts[str(p)] for p in paths]

    def verdict(self, path: str | Path) -> bool | None:
        """The verdict on one file (see the class)."""
        return self.check([path])[0]

    @staticmethod
    def _verdict(path: Path) -> bool | None:
        from .audio import AUDIO_EXTENSIONS, AudioError, load_audio
        from .speech import VAD_SR, is_speech

        if path.suffix.lower() not in AUDIO_EXTENSIONS or not path.is_file():
            return None
        audio_log = logging.getLogger("cnnrnn.audio")  # its warnings (a truncated file) come when the family reads it
        level = audio_log.level
        audio_log.setLevel(logging.ERROR)
        try:
            y, sr = load_audio(path, VAD_SR)
        except AudioError:
            return None
        finally:
            audio_log.setLevel(level)
        return is_speech(y, sr)




def mark_no_speech(result: dict, speech: SpeechCheck, left_out: Sequence[str] = (),
                   order: Sequence | None = None, announce: bool = True) -> dict:
    """A family's prediction result with its audio that is not speech marked ``no_speech`` (the speech check of
    :func:`predict`), its files rewritten.

    The rows of ``predictions.csv`` whose ``source`` is an audio file that :class:`SpeechCheck` finds no speech in
    are marked (:func:`no_speech_rows`), and a row is added for each file of ``left_out`` (files not given to the
    family), in the order of ``order`` (the input files) when given; ``announce`` logs one warning that lists them.
    When the true labels are known, the scores are computed again with every ``no_speech`` row an error for its
    true class (:func:`cnnrnn.evaluation.classification_metrics`, scikit-learn), and ``metrics.json`` (and the
    confusion matrix's title) says how many: ``no_speech``, ``no_speech_by_class``, ``speech_check`` (the
    detector).

    Returns:
        ``result`` with ``predictions`` and ``metrics`` updated and ``"no_speech"``: the sources marked.
    """
    import numpy as np
    import pandas as pd

    from .artifacts import atomic_write_bytes, save_json
    from .audio import input_id
    from .speech import DETECTOR, NO_SPEECH

    table = result["predictions"]
    if "source" not in table.columns:
        return {**result, "no_speech": []}
    speech.check(table["source"].astype(str).tolist())
    present = set(table["source"].astype(str))
    extra = [f for f in left_out if f not in present]
    if extra:
        table = pd.concat([table, pd.DataFrame({"id": [input_id(Path(f)) for f in extra], "source": extra,
                                                "predicted_index": 0})], ignore_index=True)
        if order is not None:
            rank = {str(f): i for i, f in enumerate(order)}
            table = table.iloc[np.argsort([rank.get(s, len(rank)) for s in table["source"].astype(str)],
                                          kind="stable")].reset_index(drop=True)
    quiet = table["source"].astype(str).map(lambda s: speech.verdicts.get(s) is False).to_numpy(bool)
    metrics = result.get("metrics")
    files = dict(result.get("files") or {})
    if not quiet.any() and metrics is None:
        return {**result, "no_speech": []}
    table = table.copy()
    no_speech_rows(table, quiet)
    if quiet.any() and files.get("predictions"):
        atomic_write_bytes(Path(files["predictions"]), table.to_csv(index=False).encode("utf-8"))
    labels = [str(c)[2:] for c in table.columns if str(c).startswith("p_")]
    code = {name: i for i, name in enumerate(labels)}
    if metrics is not None and "true" in table.columns and table["true"].astype(str).isin(code).all():
        from .evaluation import classification_metrics

        scores = classification_metrics(table["true"].astype(str).map(code).to_numpy(int),
                                        table["predicted_index"].to_numpy(int), len(labels))
        metrics = {**metrics, **scores, "no_speech": int(quiet.sum()),
                   "no_speech_by_class": scores.get("no_speech_by_class", [0] * len(labels)), "speech_check": DETECTOR}
        if files.get("metrics"):
            save_json(metrics, files["metrics"])
        if quiet.any() and files.get("confusion_matrix"):
            from .plots import plot_confusion_matrix

            plot_confusion_matrix(metrics["confusion_matrix"], labels, files["confusion_matrix"],
                                  title=f"UA {metrics['ua']:.1%}  WA {metrics['wa']:.1%}  (n={metrics['n']}; "
                                        f"{int(quiet.sum())} {NO_SPEECH}, counted as errors)")
    marked = table.loc[quiet, "source"].astype(str).tolist()
    if marked and announce:
        log.warning("%d of %d file(s) hold no speech (speech check, Silero VAD): labelled %s, no emotion given%s; "
                    "--classify-anyway classifies them: %s", len(marked), len(table), NO_SPEECH,
                    " (errors in the scores)" if metrics is not None else "",
                    ", ".join(Path(m).name for m in marked[:5]) + (", ..." if len(marked) > 5 else ""))
    return {**result, "predictions": table, "metrics": metrics, "no_speech": marked}


# ------------------------------------------------------------ long recordings (the rest in cnnrnn.timeline)
def model_clip(paths: Sequence[Path], resolved: Sequence[tuple], config: Any = None) -> dict:
    """The input settings (``sr`` in Hz, ``duration`` in s, ...) of the first run with a clip length: the
    family's ``clip_spec(models, manifest, config=...)`` when it has one (CNNRNN: checkpoints without a
    ``run.json``), else the ``input`` of the run's manifest; ``{}`` or a spec without ``duration`` when no run
    has a fixed clip length."""
    fallback: dict = {}
    for path, (family, manifest) in zip(paths, resolved):
        spec = dict(manifest.input) if manifest is not None else {}
        hook = getattr(family_module(family), "clip_spec", None)
        if hook is not None:
            spec.update(hook([path], manifest, config=config))
        if spec.get("duration"):
            return spec
        fallback = fallback or spec
    return fallback


def _header_seconds(path: Path) -> float | None:
    import soundfile as sf

    try:
        return float(sf.info(str(path)).duration)
    except Exception:  # unreadable, or a format libsndfile does not know: decided once it is read
        return None


def window_plan(source: Any, paths: Sequence[Path], resolved: Sequence[tuple], window: float | None,
                hop: float | None, *, images: bool = False, config: Any = None) -> WindowPlan | None:
    """Whether, and how, :func:`predict` cuts ``source`` into windows (see there); ``None``: predict as before.

    Without ``window``, only a model with a clip length (:func:`model_clip`) cuts, and only when a file's header
    says it is longer than the clip (or cannot say).

    Raises:
        ValueError: ``window``/``hop`` with a run whose family does not declare ``WINDOWS`` (Hugging Face), with
            ``images``, or with inputs that are not audio files or folders of audio; ``hop`` without ``window``
            for a model without a clip length; ``hop`` under 1 ms.
    """
    asked = window is not None or hop is not None
    whole = sorted({family for family, _ in resolved if not capability(family, "WINDOWS")})
    if whole:
        if asked:
            raise ValueError(f"--window/--hop: {', '.join(whole)} runs are not predicted in audio windows (they do "
                             "not predict audio); long-recording prediction is for the audio families")
        return None
    files = audio_inputs(source)
    if asked and images:
        raise ValueError("--window/--hop cut audio into windows; they do not apply with --images")
    if asked and files is None:
        raise ValueError(f"--window/--hop cut audio files: {source} is not an audio file or a folder of audio "
                         "(images, pickles, CSVs and filelists are predicted as they are)")
    if files is None or images:
        return None
    spec = model_clip(paths, resolved, config)
    clip_s = float(spec["duration"]) if spec.get("duration") else None
    if window is None and clip_s is None:
        if hop is not None:
            raise ValueError("--hop without --window: this model takes inputs of any length (its run records no "
                             "clip length); give --window SECONDS too")
        return None
    window_s = float(window if window is not None else clip_s)
    hop_s = float(hop if hop is not None else window_s / 2)
    if hop_s < 1e-3:
        raise ValueError(f"--hop must be at least 1 ms, got {hop_s} s")
    if window is None:
        lengths = [_header_seconds(f) for f in files]
        if not any(d is None or d > clip_s + CLIP_TOLERANCE_S for d in lengths):
            return None  # every file fits in one clip: predicted as before
    sr = spec.get("sr")
    return WindowPlan(files, window_s, hop_s, window is not None, clip_s, int(sr) if sr else None, spec)
