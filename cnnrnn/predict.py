"""``cnnrnn predict --model X``: prediction with a trained run of any family.

The run's manifest (``run.json``, :mod:`cnnrnn.runs`) found at or above ``X`` names its family; the run is
handed to that family's ``predict.predict_run`` (:data:`FAMILY_MODULES`). A run written before manifests
existed is recognised by its own files, as before: ``baseline_config.json`` → baselines,
``blstm_attention.json`` or ``dcnn.json`` → DCNN-BLSTMwA, ``hf_model.json`` → Hugging Face, otherwise
CNNRNN. An exported model (``cnnrnn export``: ``.onnx``, ``.tflite``, a SavedModel folder) is handed to
:func:`cnnrnn.export.predict_run`, which runs it with its own runtime (ONNX: onnxruntime, no TensorFlow). This
module sits above the families: it imports them only by name, when a run needs one.

Long recordings (:func:`predict` with ``window``/``hop``) are cut here, once for every family: each audio file
longer than the model's clip becomes windows in memory (:class:`cnnrnn.audio.Clip`, :func:`cnnrnn.audio.windows`),
silent windows are marked and left out (:func:`cnnrnn.audio.silence_mask`), the family predicts the others as it
predicts files, and the window probabilities become ``timeline.csv``, one timeline figure per file and one row per
file in ``predictions.csv``.

Speech check (:mod:`cnnrnn.speech`, Silero VAD): an audio file or window that holds no speech (white noise, a
constant, a tone, music) gets the label ``no_speech`` (:data:`cnnrnn.speech.NO_SPEECH`) and NaN probabilities instead
of an emotion, here, once for every audio family (Hugging Face runs, which predict transcripts, aside);
``classify_anyway`` (``--classify-anyway``) turns it off. In a labelled evaluation such a file is an error for its
true class (:func:`cnnrnn.evaluation.classification_metrics`), counted in ``metrics.json`` (``no_speech``).
"""
from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .outputs import check_not_training, claim_predictions, writing_stage
from .reports import REPORT_FILES
from .audio import SILENCE_TOP_DB
from .runs import FAMILIES, find_manifest, read_manifest

log = logging.getLogger("cnnrnn.predict")

#: The "family" of an exported model (``cnnrnn export``: ``.onnx``, ``.tflite``, a SavedModel folder with its
#: sidecar): :func:`cnnrnn.export.predict_run` predicts it with its own runtime, ONNX without TensorFlow.
EXPORTED = "exported"
#: Family → the module with its ``predict_run(models, source, out_dir, *, manifest, progress, **options)``.
FAMILY_MODULES = {
    "cnnrnn": "cnnrnn.cnnrnn.predict",
    "dcnn": "cnnrnn.dcnn.predict",
    "baselines": "cnnrnn.baselines.predict",
    "hf": "cnnrnn.hf.predict",
    "functionals": "cnnrnn.functionals.predict",
    EXPORTED: "cnnrnn.export",
}

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


#: Files that identify a run from before manifests, per family (checked in this order).
_LEGACY_MARKERS = (("baselines", ("baseline_config.json",)), ("dcnn", ("blstm_attention.json", "dcnn.json")),
                   ("hf", ("hf_model.json",)))


def _legacy_family(model: Path) -> str:
    p = model.resolve()
    for folder in ([p] if p.is_dir() else []) + list(p.parents)[:3]:
        for family, markers in _LEGACY_MARKERS:
            if any((folder / m).is_file() for m in markers):
                return family
    return "cnnrnn"


def resolve_family(model: str | Path):
    """``(family, manifest or None)`` of a checkpoint or run folder; ``(EXPORTED, None)`` for an exported model.

    Raises:
        FileNotFoundError: ``model`` does not exist.
        cnnrnn.runs.ManifestError: the manifest is unreadable, newer than this package, or of a family that
            ``cnnrnn predict`` cannot use.
    """
    model = resolve_model(model)
    if importlib.import_module(FAMILY_MODULES[EXPORTED]).is_exported(model):
        return EXPORTED, None
    path = find_manifest(model)
    if path is None:
        return _legacy_family(model), None
    manifest = read_manifest(path, families=[f for f in FAMILIES if f in FAMILY_MODULES])
    return manifest.family, manifest


def predict(models: str | Path | Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
            progress: bool = True, fuse: bool = False, window: float | None = None, hop: float | None = None,
            silence_db: float | None = SILENCE_TOP_DB, classify_anyway: bool = False, **options: Any) -> dict:
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
        options: ``labels``, ``config``, ``resize``, ``batch_size``, ``speaker``: passed to the families, which
            ignore what does not apply; ``images`` (a folder of audio and images gives its images, not its
            audio): CNNRNN runs only; ``render`` (``fast``/``specshow``), ``pixel_range`` (``0-255``/``0-1``),
            ``trust_code`` (load ``Lambda`` layers): CNNRNN runs and checkpoints, Keras 2 ones included
            (:func:`cnnrnn.cnnrnn.predict.predict`).

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {...}, "skipped": {...}, "family": str}``
        (``family`` is ``fusion`` for a fusion, with ``"runs"``: each run's own result); with windows also
        ``"timeline"`` (the DataFrame of ``timeline.csv``) and ``"windows"`` (the settings used); when the speech
        check ran, ``"no_speech"``: the files labelled ``no_speech`` (sources as in ``predictions.csv``).

    Raises:
        ValueError: models of different families without ``fuse``; runs whose classes cannot be matched;
            ``images`` for a family that does not predict images; ``window`` or ``hop`` not > 0, ``window``
            with a Hugging Face run, with ``images``, or with inputs that are not audio; whatever a family
            raises for bad input.
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
        return _predict(paths, source, None, progress, fuse, window, hop, silence_db, classify_anyway, options)
    claim_predictions(out_dir)
    with writing_stage(out_dir, "predict", [(out_dir, [*REPORT_FILES.values(), TIMELINE_FILE])]):
        return _predict(paths, source, out_dir, progress, fuse, window, hop, silence_db, classify_anyway, options)


def _predict(paths: list[Path], source, out_dir, progress: bool, fuse: bool, window, hop, silence_db,
             classify_anyway: bool, options: dict) -> dict:
    """:func:`predict` once the models are resolved and the output folder claimed (and locked)."""
    resolved = [resolve_family(p) for p in paths]
    families = {family for family, _ in resolved}
    if options.get("images") and families != {"cnnrnn"}:
        raise ValueError(f"--images: only CNNRNN runs predict on spectrogram images, not "
                         f"{', '.join(sorted(families - {'cnnrnn'}))} runs")
    from .normalize import SPEAKER_FROM_FOLDER

    if options.get("speaker") == SPEAKER_FROM_FOLDER and families != {"cnnrnn"}:
        raise ValueError(f"--speaker-from folder: only CNNRNN runs take each file's folder as its speaker, not "
                         f"{', '.join(sorted(families - {'cnnrnn'}))} runs; give --speaker NAME")
    if not fuse and len(families) != 1:
        raise ValueError(f"the models are of different families {sorted(families)}; predict with one at a time, "
                         "or average their probabilities with --fuse")
    plan = window_plan(source, paths, resolved, window, hop, images=bool(options.get("images")),
                       config=options.get("config"))
    check = not classify_anyway and "hf" not in families  # Hugging Face runs predict transcripts
    if plan is not None:
        return predict_windows(plan, paths, resolved, out_dir, progress=progress, fuse=fuse, silence_db=silence_db,
                               speech_check=check, options=options)
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
    module = importlib.import_module(FAMILY_MODULES[family])
    result = module.predict_run(paths, source, out_dir, manifest=manifest, progress=progress, **options)
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
        module = importlib.import_module(FAMILY_MODULES[family])
        result = {**module.predict_run(members, source, out / f"{family}_{k}", manifest=manifest, progress=progress,
                                       **options), "family": family}
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


def no_speech_rows(table, mask) -> None:
    """Mark the rows ``mask`` (``(N,) bool``) of a ``predictions.csv`` / ``timeline.csv`` DataFrame as
    ``no_speech`` in place: label :data:`cnnrnn.speech.NO_SPEECH`, NaN probabilities and confidence, and
    ``predicted_index`` :data:`cnnrnn.speech.NO_SPEECH_INDEX` where the table has that column."""
    import numpy as np

    from .speech import NO_SPEECH, NO_SPEECH_INDEX

    mask = np.asarray(mask, bool)
    pcols = [c for c in table.columns if str(c).startswith("p_")]
    table.loc[mask, pcols + ["confidence"]] = np.nan
    table.loc[mask, "predicted" if "predicted" in table.columns else "label"] = NO_SPEECH
    if "predicted_index" in table.columns:
        table.loc[mask, "predicted_index"] = NO_SPEECH_INDEX
        table["predicted_index"] = table["predicted_index"].astype(int)


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


# --------------------------------------------------------------------------- long recordings
#: The window predictions of long-recording prediction, written beside ``predictions.csv``: one row per window,
#: columns ``file``, ``start_s``, ``end_s`` (seconds), ``label``, ``confidence``, ``p_<label>`` per class,
#: ``voiced`` (the fraction of the window that is not silence).
TIMELINE_FILE = "timeline.csv"
#: The ``label`` of a window that is silence (not classified: NaN probabilities), and of one the family skipped.
SILENCE_LABEL = "silence"
SKIPPED_LABEL = "skipped"
#: A file at most this much longer than the model's clip (seconds) still counts as one clip.
CLIP_TOLERANCE_S = 1e-3


@dataclass
class WindowPlan:
    """What :func:`predict_windows` cuts.

    Attributes:
        files: the audio files. window_s, hop_s: window length and hop in seconds.
        explicit: the user gave ``window`` (every file is cut); else only files longer than ``clip_s`` are.
        clip_s: the model's clip length in seconds (``None``: it takes inputs of any length).
        sr: the rate in Hz the files are read at (the model's; ``None``: each file's own).
        spec: the run's input settings (for the spectrogram of the figure: ``n_mels``, ``n_fft``, ...).
    """

    files: list[Path]
    window_s: float
    hop_s: float
    explicit: bool
    clip_s: float | None
    sr: int | None
    spec: dict = field(default_factory=dict)


def audio_inputs(source: Any) -> list[Path] | None:
    """The audio files of ``source`` (a file, a folder searched recursively, or a list of them), or ``None``
    when any part of it is something else: an image, a pickle, a CSV, a filelist, a folder without audio, a
    missing path (the family then handles the input as it is)."""
    from .audio import AUDIO_EXTENSIONS, list_audio

    files: list[Path] = []
    for item in [source] if isinstance(source, (str, Path)) else list(source):
        if not isinstance(item, (str, Path)):
            return None
        path = Path(item)
        if path.is_dir() and list_audio(path):
            files += list_audio(path)
        elif path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS:
            files.append(path)
        else:
            return None
    return files or None


def model_clip(paths: Sequence[Path], resolved: Sequence[tuple], config: Any = None) -> dict:
    """The input settings (``sr`` in Hz, ``duration`` in s, ...) of the first run with a clip length: the
    family's ``clip_spec(models, manifest, config=...)`` when it has one (CNNRNN: checkpoints without a
    ``run.json``), else the ``input`` of the run's manifest; ``{}`` or a spec without ``duration`` when no run
    has a fixed clip length."""
    fallback: dict = {}
    for path, (family, manifest) in zip(paths, resolved):
        spec = dict(manifest.input) if manifest is not None else {}
        hook = getattr(importlib.import_module(FAMILY_MODULES[family]), "clip_spec", None)
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
        ValueError: ``window``/``hop`` with a Hugging Face run, with ``images``, or with inputs that are not
            audio files or folders of audio; ``hop`` without ``window`` for a model without a clip length;
            ``hop`` under 1 ms.
    """
    asked = window is not None or hop is not None
    if any(family == "hf" for family, _ in resolved):
        if asked:
            raise ValueError("--window/--hop: a Hugging Face run predicts text (its transcripts), not audio "
                             "windows; long-recording prediction is for the audio families")
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


#: The timeline figure's spectrogram keeps at most this many frames (columns): a longer recording's frames are
#: pooled (the maximum of each group of neighbours), which a figure about 1,700 pixels wide cannot tell apart.
FIGURE_FRAMES = 4000


def _display_mel(y, sr: int, spec: dict):
    """``(db, hop_length, fmin, fmax)``: the log-mel of a whole recording for its timeline figure, with the run's
    mel settings where it records them (:class:`cnnrnn.features.LogMelConfig` defaults otherwise), its frames
    pooled to at most :data:`FIGURE_FRAMES` (``hop_length`` is then the pooled hop)."""
    import numpy as np

    from .features import LogMelConfig, log_mel

    keys = ("n_mels", "n_fft", "hop_length", "fmin", "top_db")
    values = {k: spec[k] for k in keys if isinstance(spec.get(k), (int, float)) and spec[k] is not None}
    fmax = spec.get("fmax") if isinstance(spec.get("fmax"), (int, float)) and spec["fmax"] <= sr / 2 else None
    cfg = LogMelConfig(sr=sr, fmax=fmax, **values)
    if cfg.fmin >= (fmax or sr / 2):
        cfg.fmin = 0.0
    db = log_mel(y, cfg)
    group = -(-db.shape[1] // FIGURE_FRAMES)
    if group > 1:
        pad = -db.shape[1] % group
        db = np.pad(db, ((0, 0), (0, pad)), mode="edge").reshape(db.shape[0], -1, group).max(axis=2)
    return db, cfg.hop_length * group, cfg.fmin, cfg.fmax


def _merged(values: Sequence) -> Any:
    """One value for a file from its windows' values of a column: the value when they agree, else the distinct
    values joined with ``+``."""
    distinct = list(dict.fromkeys(str(v) for v in values))
    return values[0] if len(distinct) == 1 else "+".join(sorted(distinct))


def predict_windows(plan: WindowPlan, paths: Sequence[Path], resolved: Sequence[tuple],
                    out_dir: str | Path | None, *, progress: bool = True, fuse: bool = False,
                    silence_db: float | None = SILENCE_TOP_DB, speech_check: bool = True,
                    options: dict | None = None) -> dict:
    """Predict audio files window by window (long-recording prediction, the work of :func:`predict`).

    Each file is read once at the model's rate (:func:`cnnrnn.audio.load_audio`) and, when ``plan.explicit`` or
    it is longer than the model's clip, cut into windows of ``plan.window_s`` every ``plan.hop_s`` seconds
    (:func:`cnnrnn.audio.windows`; the last window reaches the file's end). Windows that are silence
    (:func:`cnnrnn.audio.voiced_fraction` below :data:`cnnrnn.audio.SILENCE_MIN_VOICED`, at ``silence_db``) are
    marked and not classified; so are, with ``speech_check``, the others that hold no speech
    (:func:`cnnrnn.speech.window_speech` and :func:`cnnrnn.speech.enough_speech`: label ``no_speech``). The rest
    go to the family's ``predict_run`` as :class:`cnnrnn.audio.Clip` waveforms in memory (ids
    ``<stem>@<start s>``), which reads each as it reads a file (padding a short last window as the model's
    training did). A file that fits in one clip is one clip, predicted as before (``no_speech`` when
    :func:`cnnrnn.speech.is_speech` says so).

    Writes, in the family's output folder:

    * ``timeline.csv`` (:data:`TIMELINE_FILE`): one row per window (label ``silence``, or ``no_speech``, and NaN
      probabilities for a window not classified, ``skipped`` for a window the family could not use; ``voiced``
      and ``speech``: the fractions of the window that are not silence and that are speech, NaN without the
      speech check);
    * ``timeline_<stem>.png`` per cut file (:func:`cnnrnn.plots.plot_timeline`: its log-mel spectrogram above
      the label of each window, ``silence`` and ``no_speech`` grey, and the probabilities as stacked areas, on one
      time axis);
    * ``predictions.csv``: one row per file: for a cut file the mean of its classified windows' probabilities
      (``windows``: how many; ``silent_windows``, ``no_speech_windows``), the family's other columns merged (one
      value when the windows agree); a file none of whose windows holds speech (but not all silence): label
      ``no_speech``, NaN probabilities.

    Returns:
        as :func:`predict`, with ``"timeline"`` (the ``timeline.csv`` DataFrame), ``"windows"`` (the settings:
        ``window_s``, ``hop_s``, ``clip_s``, ``silence_db``, ``min_voiced``, ``speech_check``, ``min_speech_s``)
        and, with ``speech_check``, ``"no_speech"`` (the files labelled ``no_speech``).

    Raises:
        ValueError: nothing to classify (every file unusable, or every window silence).
        cnnrnn.speech.SpeechCheckError: the speech check cannot run (onnxruntime or its model file missing).
    """
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from .artifacts import atomic_write_bytes
    from .audio import SILENCE_MIN_VOICED, AudioError, Clip, load_audio, voiced_fraction, windows
    from .plots import plot_timeline
    from .reports import write_report
    from .speech import MIN_SPEECH_S, NO_SPEECH, enough_speech, is_speech, window_speech

    options = dict(options or {})
    records: list[dict] = []
    clips: list[Clip] = []
    spare: list[Clip] = []  # what holds no speech: classified only when nothing else is (to learn the table)
    skipped: dict[str, list[str]] = {}
    keys: set[str] = set()
    for path in tqdm(plan.files, desc="windows", unit="file", disable=not progress or len(plan.files) < 2):
        try:
            y, sr = load_audio(path, plan.sr)
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(path))
            log.warning("skipped %s", exc)
            continue
        key, k = path.stem, 1
        while key in keys:  # two files of one name in different folders
            k += 1
            key = f"{path.stem}~{k}"
        keys.add(key)
        duration = len(y) / sr
        if not plan.explicit and duration <= plan.clip_s + CLIP_TOLERANCE_S:
            quiet = speech_check and not is_speech(y, sr)
            (spare if quiet else clips).append(Clip(key, path, y, sr))
            records.append({"path": path, "key": key, "cut": False, "no_speech": quiet})
            continue
        starts, frames = windows(y, sr, plan.window_s, plan.hop_s)
        voiced = (voiced_fraction(y, sr, starts, plan.window_s, silence_db) if silence_db is not None
                  else np.ones(len(starts)))
        silent = voiced < SILENCE_MIN_VOICED
        ends = np.minimum(starts + plan.window_s, duration)
        speech_s = window_speech(y, sr, starts, plan.window_s) if speech_check else np.full(len(starts), np.nan)
        quiet = ~silent & ~enough_speech(speech_s, ends - starts) if speech_check else np.zeros(len(starts), bool)
        ids = [f"{key}@{s:.3f}" for s in starts]
        for i in np.flatnonzero(~silent):
            clip = Clip(ids[i], path, frames[i][: len(y) - int(round(starts[i] * sr))], sr, starts[i])
            (spare if quiet[i] else clips).append(clip)
        records.append({"path": path, "key": key, "cut": True, "ids": ids, "starts": starts, "silent": silent,
                        "quiet": quiet, "ends": ends, "voiced": voiced,
                        "speech": np.minimum(speech_s / np.maximum(ends - starts, 1e-9), 1.0),
                        "duration": duration, "mel": _display_mel(y, sr, plan.spec), "sr": sr})
    if not clips and not spare:
        raise ValueError(f"nothing to classify in {len(plan.files)} file(s): "
                         + (f"skipped: {skipped}" if skipped else "") + (
                             ("; " if skipped else "") + "every window is silence" if records else ""))

    result = _dispatch(paths, resolved, clips or spare, out_dir, progress, fuse, options)
    table = result["predictions"].drop_duplicates("id").set_index("id")
    labels = [str(c)[2:] for c in table.columns if str(c).startswith("p_")]
    pcols = [f"p_{lab}" for lab in labels]
    carried = [c for c in table.columns if c not in ("source", "true", "predicted", "predicted_index", "confidence")
               and not str(c).startswith("p_")]
    single = {r["key"]: str(r["path"]) for r in records if not r["cut"]}
    unheard = {c.id for c in spare}
    for reason, items in result["skipped"].items():
        skipped.setdefault(reason, []).extend(single.get(str(item), str(item)) for item in items
                                              if str(item) not in unheard)

    timeline, ids, sources, proba, no_speech = [], [], [], [], []
    columns: dict[str, list] = {c: [] for c in carried + ["windows", "silent_windows", "no_speech_windows"]}

    def add_row(rec: dict, p, rows: list, classified: int, silent: int, quiet: int) -> None:
        ids.append(rec["key"])
        sources.append(str(rec["path"]))
        proba.append(p)
        for c in carried:
            columns[c].append(_merged([r[c] for r in rows]) if rows else np.nan)
        columns["windows"].append(classified)
        columns["silent_windows"].append(silent)
        columns["no_speech_windows"].append(quiet)

    for rec in records:
        if not rec["cut"]:
            if rec["no_speech"]:
                no_speech.append(rec["key"])
                add_row(rec, np.full(len(labels), np.nan), [], 0, 0, 1)
            elif rec["key"] in table.index:
                row = table.loc[rec["key"]]
                add_row(rec, row[pcols].to_numpy(float), [row], 1, 0, 0)
            continue
        used, rows = [], []
        for i, window_id in enumerate(rec["ids"]):
            entry = {"file": str(rec["path"]), "start_s": round(float(rec["starts"][i]), 6),
                     "end_s": round(float(rec["ends"][i]), 6)}
            if not rec["silent"][i] and not rec["quiet"][i] and window_id in table.index:
                row = table.loc[window_id]
                p = row[pcols].to_numpy(float)
                entry.update(label=row["predicted"], confidence=float(row["confidence"]))
                used.append(p)
                rows.append(row)
            else:
                p = np.full(len(labels), np.nan)
                entry.update(label=SILENCE_LABEL if rec["silent"][i] else NO_SPEECH if rec["quiet"][i]
                             else SKIPPED_LABEL, confidence=np.nan)
            entry.update({c: v for c, v in zip(pcols, p)}, voiced=round(float(rec["voiced"][i]), 4),
                         speech=round(float(rec["speech"][i]), 4))
            timeline.append(entry)
        rec["classified"] = len(used)
        n_silent, n_quiet = int(rec["silent"].sum()), int(rec["quiet"].sum())
        if not used and n_quiet:  # no window holds speech: the file is no_speech
            no_speech.append(rec["key"])
            add_row(rec, np.full(len(labels), np.nan), [], 0, n_silent, n_quiet)
            continue
        if not used:  # the file is skipped, under its windows' reason(s) (which then list the file, not them)
            mine = set(rec["ids"])
            why = sorted({reason for reason, items in skipped.items() if mine & set(items)}) or [SILENCE_LABEL]
            skipped = {reason: [item for item in items if item not in mine] for reason, items in skipped.items()}
            skipped.setdefault("+".join(why), []).append(str(rec["path"]))
            continue
        add_row(rec, np.mean(used, axis=0), rows, len(used), n_silent, n_quiet)
    first = result["files"].get("predictions")
    out = Path(first).parent if first else Path(out_dir or "predictions")
    report = write_report(out, np.asarray(proba, np.float32).reshape(len(ids), len(labels)), labels, ids, None,
                          family=result["family"], sources=sources, columns=columns)
    predictions = report["predictions"]
    if no_speech:
        no_speech_rows(predictions, predictions["id"].isin(no_speech).to_numpy())
        atomic_write_bytes(Path(report["files"]["predictions"]), predictions.to_csv(index=False).encode("utf-8"))
    frame = pd.DataFrame(timeline, columns=["file", "start_s", "end_s", "label", "confidence", *pcols, "voiced",
                                            "speech"])
    frame[["confidence", *pcols]] = frame[["confidence", *pcols]].astype(np.float32)
    files = {**result["files"], **report["files"],
             "timeline": str(atomic_write_bytes(out / TIMELINE_FILE, frame.to_csv(index=False).encode("utf-8")))}
    cut = [r for r in records if r["cut"]]
    plots = []
    for rec in tqdm(cut, desc="timeline figures", unit="file", disable=not progress or len(cut) < 2):
        db, hop_length, fmin, fmax = rec["mel"]
        plots.append(str(plot_timeline(frame, out / f"timeline_{rec['key']}.png", labels=labels, db=db,
                                       sr=rec["sr"], hop_length=hop_length, fmin=fmin, fmax=fmax,
                                       file=str(rec["path"]))))
    files["timeline_plots"] = plots
    notes = list(result.get("notes") or ())
    how = (f"of {plan.window_s:g} s every {plan.hop_s:g} s" +
           ("" if plan.explicit else " (--window, --hop change them)"))
    for rec in cut[:5]:
        why = ("" if plan.explicit or plan.clip_s is None else
               f"{rec['duration']:.1f} s is longer than the model's {plan.clip_s:g} s clip: ")
        n, k, q = len(rec["ids"]), rec.get("classified", 0), int(rec["quiet"].sum())
        row = (f"its row in predictions.csv is the mean of {k} window{'s' * (k != 1)}" if k else
               f"no window holds speech: its row in predictions.csv is {NO_SPEECH}" if q else
               "none of its windows was classified: no row in predictions.csv")
        quiet_note = f" and {q} without speech ({NO_SPEECH})" if q else ""
        notes.append(f"{rec['path'].name}: {why}predicted in {n} window{'s' * (n != 1)} {how}, "
                     f"{int(rec['silent'].sum())} of them silence{quiet_note}, marked and not classified; {row}; "
                     f"the windows are in {TIMELINE_FILE}")
    if len(cut) > 5:
        notes.append(f"... and {len(cut) - 5} more file(s) predicted in windows {how}")
    settings = {"window_s": plan.window_s, "hop_s": plan.hop_s, "clip_s": plan.clip_s, "silence_db": silence_db,
                "min_voiced": SILENCE_MIN_VOICED, "speech_check": speech_check,
                "min_speech_s": MIN_SPEECH_S if speech_check else None}
    skipped = {reason: items for reason, items in skipped.items() if items}
    out_result = {**result, "predictions": predictions, "metrics": None, "files": files, "skipped": skipped,
                  "notes": notes, "timeline": frame, "windows": settings}
    if speech_check:
        out_result["no_speech"] = [src for i, src in zip(ids, sources) if i in set(no_speech)]
        windows_quiet = int(sum(r["quiet"].sum() for r in cut))
        if out_result["no_speech"] or windows_quiet:
            log.warning("speech check: %d window(s) and %d file(s) hold no speech: labelled %s, no emotion given; "
                        "--classify-anyway classifies them", windows_quiet, len(out_result["no_speech"]), NO_SPEECH)
    return out_result
