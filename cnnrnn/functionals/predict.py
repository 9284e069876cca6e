"""Functionals prediction: ``cnnrnn predict --model RUN --input WAV_OR_FOLDER_OR_CSV [--speaker NAME]``
(:func:`predict_run`), and a trained run scored again (:func:`evaluate`, ``cnnrnn functionals evaluate``).

The fitted scikit-learn pipeline is stored with ``skops`` (:func:`save_model`), never with plain pickle, and
loaded only when every type in the file is one scikit-learn trusts by default or one of
:data:`TRUSTED_TYPES` (:func:`load_model`).

Speaker normalisation at prediction: a file's speaker comes from a CSV given as ``--input`` (columns ``path``
and ``speaker``, optionally ``label``: then the output is scored), or from ``--speaker NAME`` (all inputs, it
replaces a CSV's speaker column). The statistics of a speaker with at least two input files are computed from
those files (no labels); a speaker with one input file uses the run's stored statistics for that name when it
has them; anything else (no speaker, or one file of a speaker the run does not know) is normalised with the
run's global statistics, and ``predictions.csv`` (column ``normalization``) and the result's ``notes`` say so
(:func:`cnnrnn.normalize.with_speakers`, :func:`cnnrnn.normalize.norm_source`).
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import normalize
from ..artifacts import CheckpointError, atomic_write_bytes, is_temporary, load_json, load_labels
from ..audio import AUDIO_EXTENSIONS, Clip, input_id, input_source, list_audio
from ..corpora import load_corpus, match_labels, relabel_by_meaning
from ..reports import REPORT_FILES, write_report
from ..runs import MANIFEST_FILE, RunManifest, find_manifest, read_manifest
from ..corpora.base import Inputs, read_input_csv  # noqa: F401 - read_input_csv: this module's name for it
from ..outputs import claim_predictions
from .config import FAMILY, MODEL_FILE, NORMALIZATION_FILE, FunctionalsConfig, load_functionals_config
from .data import extract_all, normalised

log = logging.getLogger("cnnrnn.functionals")

# What the prediction facade (:func:`cnnrnn.predict.predict`) reads of this family, by the registry
# (:func:`cnnrnn.families.module`):
#: The options of ``cnnrnn predict`` that :func:`predict_run` takes; the facade passes only these and refuses any
#: other that is given (not ``None`` or ``False``) with :class:`cnnrnn.predict.OptionError`.
PREDICT_OPTIONS = frozenset({"labels", "speaker"})
#: Whether an input's speaker may be the name of its folder (``speaker`` =
#: :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`, ``--speaker-from folder``).
FOLDER_SPEAKERS = False
#: Whether the facade's speech check (:mod:`cnnrnn.speech`) applies: the family predicts audio.
SPEECH_CHECK = True
#: Whether the facade may cut long recordings into windows (:mod:`cnnrnn.timeline`) for this family.
WINDOWS = True

#: Types in a functionals ``model.skops`` that skops does not trust by default and this family does: the
#: calibration wrappers of ``CalibratedClassifierCV`` (scikit-learn).
TRUSTED_TYPES = ("sklearn.calibration._CalibratedClassifier", "sklearn.calibration._SigmoidCalibration")


# --------------------------------------------------------------------------- model files
def save_model(model, path: str | Path) -> Path:
    """Write a fitted pipeline with ``skops.io.dumps``, atomically. Returns the path."""
    import skops.io as sio

    return atomic_write_bytes(path, sio.dumps(model))


def load_model(path: str | Path):
    """Read a pipeline written by :func:`save_model`.

    The file's types are checked first (``skops.io.get_untrusted_types``): every type skops does not trust by
    default must be in :data:`TRUSTED_TYPES`, so a file that would build anything else is refused unloaded.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: an untrusted type, a file skops cannot read, or not a fitted pipeline with
            ``predict_proba``.
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"model {path} not found")
    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # not a zip / not a skops file
        raise CheckpointError(f"{path}: not a skops model file ({exc})") from exc
    refused = sorted(set(untrusted) - set(TRUSTED_TYPES))
    if refused:
        raise CheckpointError(f"{path}: refusing to load types that a functionals model does not contain: {refused}")
    model = sio.load(path, trusted=list(untrusted))
    if not hasattr(model, "predict_proba") or not hasattr(model, "classes_"):
        raise CheckpointError(f"{path}: holds a {type(model).__name__}, not a fitted classifier pipeline")
    return model


def predict_proba(model, X: np.ndarray, n_labels: int) -> np.ndarray:
    """``(N, n_labels) float32`` class probabilities, one column per run label (code order).

    The classifier only knows the classes it was trained on (``model.classes_``, codes); the columns of other
    labels are 0.

    Raises:
        CheckpointError: the model knows a class code outside ``range(n_labels)``.
    """
    classes = np.asarray(model.classes_, dtype=int)
    if classes.size and (classes.min() < 0 or classes.max() >= n_labels):
        raise CheckpointError(f"the model predicts class codes {classes.tolist()} but the run has {n_labels} labels")
    out = np.zeros((len(X), n_labels), np.float32)
    if len(X):
        out[:, classes] = model.predict_proba(X)
    return out


# --------------------------------------------------------------------------- inputs
def collect_inputs(source: str | Path | Sequence[str | Path], speaker: str | None = None) -> Inputs:
    """The audio files of ``source``: a file, a folder (searched recursively), a CSV (:func:`read_input_csv`),
    or a list of them and of :class:`cnnrnn.audio.Clip` (waveforms in memory). ``speaker`` (when given) becomes
    every file's speaker.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a file given by name is neither audio nor ``.csv``, or no audio file at all.
    """
    sources = [source] if isinstance(source, (str, Path)) else list(source)
    out = Inputs([], [], [])
    for s in sources:
        s = s if isinstance(s, Clip) else Path(s)
        if isinstance(s, Clip):
            part = Inputs([s], [None], [None])
        elif not s.exists():
            raise FileNotFoundError(f"input {s} not found")
        elif s.is_file() and s.suffix.lower() == ".csv":
            part = read_input_csv(s)
        elif s.is_file():
            if s.suffix.lower() not in AUDIO_EXTENSIONS:
                raise ValueError(f"{s}: a functionals run predicts on audio files ({', '.join(AUDIO_EXTENSIONS)}), "
                                 f"folders of them, or a CSV with path[,speaker,label], not {s.suffix!r} files")
            part = Inputs([s], [None], [None])
        else:
            files = list_audio(s)
            part = Inputs(files, [None] * len(files), [None] * len(files))
        out.paths += part.paths
        out.speakers += part.speakers
        out.labels += part.labels
        for reason, items in part.skipped.items():
            out.skipped.setdefault(reason, []).extend(items)
    if speaker:
        out.speakers = [speaker] * len(out.paths)
    if not out.paths:
        raise ValueError(f"no audio files in {', '.join(map(str, sources))} (skipped: {out.skipped or 'none'})")
    return out


# --------------------------------------------------------------------------- runs
@dataclass
class FunctionalsRun:
    """A trained run: its config, labels, fitted pipeline and normalisation statistics."""

    folder: Path
    config: FunctionalsConfig
    labels: list[str]
    model: Any
    stats: normalize.NormStats | None

    @classmethod
    def load(cls, model_path: str | Path, manifest: RunManifest | None = None) -> "FunctionalsRun":
        """Load the run of a run folder or of a ``model.skops`` inside one.

        Raises:
            FileNotFoundError: no ``run.json`` at or above ``model_path``, or a missing model file.
            ManifestError: a manifest of another family or a newer schema.
            CheckpointError: the model does not load (see :func:`load_model`), or a Whisper run's weights file
                is not the one it was trained with (another sha1).
            cnnrnn.models.blocks.WeightsError: a Whisper run's weights file is missing.
        """
        model_path = Path(model_path)
        if manifest is None or manifest.folder is None or not _inside(model_path, Path(manifest.folder)):
            found = find_manifest(model_path)
            if found is None:
                raise FileNotFoundError(f"{model_path}: no {MANIFEST_FILE} at or above it (a functionals model "
                                        "is used from its run folder)")
            manifest = read_manifest(found, families=[FAMILY])
        folder = Path(manifest.folder)
        cfg = load_functionals_config(manifest.config)
        if cfg.is_whisper:
            _check_whisper_weights(cfg, manifest)
        elif cfg.sr is None and manifest.input.get("sr"):  # new files are resampled to the training corpus' rate
            cfg = dataclasses.replace(cfg, sr=int(manifest.input["sr"]))
        if model_path.is_file():
            checkpoint = model_path
        else:
            paths = [p for p in manifest.checkpoint_paths() if not is_temporary(p)]
            checkpoint = paths[0] if paths else folder / MODEL_FILE
        stats_file = folder / manifest.extra.get("normalization_file", NORMALIZATION_FILE)
        stats = normalize.NormStats.from_dict(load_json(stats_file)) if stats_file.is_file() else None
        if stats is None and cfg.normalization != "none":
            raise FileNotFoundError(f"{stats_file} not found: the run normalises features ({cfg.normalization}) "
                                    "and needs its statistics")
        return cls(folder, cfg, list(manifest.labels), load_model(checkpoint), stats)

    def proba(self, X: np.ndarray,
              speakers: Sequence[str | None]) -> tuple[np.ndarray, list[str], normalize.NormStats | None]:
        """Probabilities of raw features ``X`` ``(N, D)``: normalised with the run's statistics plus those of the
        input speakers (:func:`cnnrnn.normalize.with_speakers`). Returns ``(proba, sources, stats used)``."""
        stats = self.stats
        if self.config.normalization == "speaker" and stats is not None:
            stats = normalize.with_speakers(stats, X, speakers)
        Xn, sources = normalised(X, speakers, stats, self.config.normalization)
        return predict_proba(self.model, Xn, len(self.labels)), sources, stats


def _check_whisper_weights(cfg: FunctionalsConfig, manifest: RunManifest) -> None:
    """Refuse a Whisper run whose weights file (``whisper_weights``, recorded resolved) is missing or holds other
    bytes than at training (sha1 recorded in ``run.json`` ``input.whisper_weights``)."""
    from .whisper import whisper_identity

    now = whisper_identity(cfg)
    then = (manifest.input.get("whisper_weights") or {}).get("sha1")
    if then and now["sha1"] != then:
        raise CheckpointError(f"{now['path']} is not the Whisper weights file this run was trained with (sha1 "
                              f"{now['sha1'][:12]}, the run's {then[:12]}): convert the same model again")


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def normalization_notes(sources: Sequence[str], stats: normalize.NormStats | None) -> list[str]:
    """Plain-language notes on the files that did not get their own speaker's statistics."""
    counts = normalize.count_sources(sources)
    notes = []
    if counts.get("global_fallback_no_speaker"):
        notes.append(f"{counts['global_fallback_no_speaker']} file(s) have no speaker: normalised with the run's "
                     "global statistics instead of per-speaker ones (give --speaker NAME, or a CSV with "
                     "path,speaker, for speaker normalisation)")
    single = counts.get("global_fallback_single", 0) + counts.get("global_fallback_unseen", 0)
    if single:
        few = sorted((stats.fallback if stats is not None else {}).keys())
        notes.append(f"{single} file(s) of speaker(s) with a single file that the run does not know "
                     f"({', '.join(few) or '?'}): normalised with the run's global statistics")
    return notes


def predict_run(models: Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest: RunManifest | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Predict the classes of audio files with one functionals run, or the average of several.

    Args:
        models: run folders and/or ``model.skops`` files inside run folders.
        source: an audio file, a folder of audio (recursive), a CSV with ``path`` and optional ``speaker`` and
            ``label`` columns, or a list of them.
        out_dir: where ``predictions.csv`` goes (default ``<run>/predictions``).
        manifest: the ``run.json`` found at or above the first model.
        progress: show a progress bar.
        **options: ``speaker`` (the speaker of every input), ``labels`` (names or a ``labels.json``: must equal
            the run's): :data:`PREDICT_OPTIONS`.

    Returns:
        ``{"predictions": DataFrame (id, source, [true], predicted, predicted_index, confidence, speaker,
        normalization, p_<label>...), "metrics": dict | None (when the CSV has labels), "files", "skipped":
        {reason: [paths]}, "normalization": {source: n}, "notes": [str]}``.

    Raises:
        FileNotFoundError: a run, model or input is missing.
        CheckpointError: the model does not load, or the runs' labels or feature settings differ.
        ValueError: an input is not audio, or nothing usable to predict on.
    """
    if not models:
        raise ValueError("no model given")
    runs = [FunctionalsRun.load(m, manifest) for m in models]
    first = runs[0]
    out_dir = claim_predictions(out_dir or first.folder / "predictions")
    for run in runs[1:]:
        if run.labels != first.labels:
            raise CheckpointError(f"the runs have different labels: {first.labels} and {run.labels}")
    labels = options.get("labels")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    if labels is not None and list(labels) != first.labels:
        raise CheckpointError(f"--labels {list(labels)} differ from the run's labels {first.labels}")
    inputs = collect_inputs(source, options.get("speaker"))
    skipped = {k: list(v) for k, v in inputs.skipped.items()}
    proba_sum, sources, stats, keep_paths = None, None, None, None
    for run in runs:
        kept, X, skip, _ = extract_all(inputs.paths, run.config, None, progress)
        if not kept:
            raise ValueError(f"no usable audio to predict on (skipped: {skip})")
        speakers = [inputs.speakers[i] for i in kept]
        proba, src, st = run.proba(X, speakers)
        if proba_sum is None:
            proba_sum, sources, stats, keep_paths = proba, src, st, kept
            for reason, items in skip.items():
                skipped.setdefault(reason, []).extend(items)
        elif kept != keep_paths:
            raise CheckpointError("the runs could not use the same input files (different feature settings); "
                                  "predict with one run at a time")
        else:
            proba_sum = proba_sum + proba
    proba = proba_sum / len(runs)
    paths = [inputs.paths[i] for i in keep_paths]
    speakers = [inputs.speakers[i] for i in keep_paths]
    y_true = None
    true_names = [inputs.labels[i] for i in keep_paths]
    if any(t is not None for t in true_names):
        match = match_labels(sorted({t for t in true_names if t is not None}), first.labels)
        rows = [i for i, t in enumerate(true_names) if t is not None and match[t] is not None]
        for i, t in enumerate(true_names):
            if t is None or match[t] is None:
                skipped.setdefault("unknown_label", []).append(str(paths[i]))
        proba, paths, speakers, sources = proba[rows], [paths[i] for i in rows], [speakers[i] for i in rows], \
            [sources[i] for i in rows]
        y_true = [first.labels.index(match[true_names[i]]) for i in rows]
        if not rows:
            raise ValueError(f"no input has one of the run's labels {first.labels}")
    notes = normalization_notes(sources, stats) if first.config.normalization == "speaker" else []
    for note in notes:
        log.info("%s", note)
    counts = normalize.count_sources(sources)
    report = write_report(out_dir, proba, first.labels, [input_id(p) for p in paths], y_true, family=FAMILY,
                          sources=[input_source(p) for p in paths],
                          columns={"speaker": [s or "" for s in speakers], "normalization": sources},
                          extra={"runs": [str(r.folder) for r in runs], "normalization": counts,
                                 "notes": notes, "skipped": skipped})
    return {**report, "skipped": skipped, "normalization": counts, "notes": notes}


def evaluate(run: str | Path, corpus: str | None = None, root: str | Path | None = None,
             out: str | Path | None = None, cache_dir: str | Path | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score a trained run again: on its own test split, or on every clip of another corpus.

    On another corpus with ``speaker`` normalisation, each of its speakers with at least two clips is normalised
    with statistics of their own clips (unlabelled; :func:`cnnrnn.normalize.with_speakers`); others fall back
    to the run's stored or global statistics (counted in ``normalization``).

    Args:
        run: a run folder written by :func:`cnnrnn.functionals.train.train`.
        corpus, root: another corpus to score (both or neither); its classes are matched to the run's labels by
            meaning (:func:`cnnrnn.corpora.match_labels`); clips of other classes are skipped and counted.
        out: output folder (default ``<run>/evaluation`` or ``<run>/evaluation_<corpus>``).
        cache_dir: feature cache root (default: the training run's; ``None`` there: no cache).
        progress: show progress bars.

    Returns:
        The ``metrics.json`` report written to ``out``.

    Raises:
        FileNotFoundError: the run lacks one of its files.
        ManifestError: the run's ``run.json`` is of another family or a newer schema.
        ValueError: only one of ``corpus`` / ``root``, or nothing to score.
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files (a run's, a corpus') or is another command's
            folder (nothing was written).
        cnnrnn.outputs.FolderInUseError: another process trains the run, or writes ``out``.
    """
    from ..outputs import check_not_locked, writing_stage

    if (corpus is None) != (root is None):
        raise ValueError("give both corpus and root to evaluate on another corpus, or neither")
    run = Path(run)
    check_not_locked(run, "train", "evaluate this run")
    manifest = read_manifest(run / MANIFEST_FILE, families=[FAMILY])
    own = corpus is None
    if own:
        out = Path(out) if out else run / "evaluation"
    else:
        out = Path(out) if out else run / f"evaluation_{corpus}"
    out = claim_predictions(out)
    with writing_stage(out, "predict", [(out, list(REPORT_FILES.values()))]):
        return _evaluate(run, manifest, corpus, root, out, cache_dir, progress)


def _evaluate(run: Path, manifest, corpus: str | None, root, out: Path, cache_dir, progress: bool) -> dict[str, Any]:
    fitted = FunctionalsRun.load(run, manifest)
    cfg, labels = fitted.config, fitted.labels
    own = corpus is None
    if own:
        corpus, root = manifest.extra["corpus"], manifest.extra["root"]
        wanted = set(load_json(run / "split.json")["test"])
    else:
        wanted = None
    if cache_dir is None and manifest.extra.get("cache"):  # <cache root>/<feature setting> of the training run
        cache_dir = Path(manifest.extra["cache"]).parent
    utterances, corpus_report = load_corpus(corpus, root)
    match = match_labels(sorted({u.emotion for u in utterances}), labels)
    utterances, skipped_labels = relabel_by_meaning(utterances, labels)
    utterances = [u for u in utterances if wanted is None or u.id in wanted]
    if not utterances:
        raise ValueError(f"nothing to score in {root}: no clip of the run's classes {labels}")
    # the run's own clips as in training (the same cache); another corpus resampled to the training rate
    feature_cfg = load_functionals_config(manifest.config) if own else cfg
    kept, X, skipped_audio, feat_info = extract_all([u.audio_path for u in utterances], feature_cfg, cache_dir,
                                                    progress)
    if not kept:
        raise ValueError(f"no usable audio to score in {root} (skipped: {skipped_audio})")
    utts = [utterances[i] for i in kept]
    code = {name: i for i, name in enumerate(labels)}
    y = np.asarray([code[u.emotion] for u in utts], dtype=np.int32)
    speakers = [u.speaker for u in utts]
    if own and fitted.stats is not None:  # the statistics the run was scored with (its test speakers' included)
        Xn, sources = normalised(X, speakers, fitted.stats, cfg.normalization)
        stats = fitted.stats
        proba = predict_proba(fitted.model, Xn, len(labels))
    else:
        proba, sources, stats = fitted.proba(X, speakers)
    extra = {"run": str(run), "corpus": corpus, "root": str(root), "skipped_corpus": corpus_report.skipped,
             "skipped_audio": {k: [Path(p).stem for p in v] for k, v in skipped_audio.items()},
             "skipped_unknown_label": skipped_labels,
             "label_map": {k: v for k, v in match.items() if v is not None and k != v},
             "normalization": {"mode": cfg.normalization, "test_sources": normalize.count_sources(sources),
                               "fallback_speakers": stats.fallback if stats is not None else {}},
             "features": feat_info}
    report = write_report(out, proba, labels, [u.id for u in utts], y, family=FAMILY,
                          sources=[u.audio_path for u in utts],
                          columns={"speaker": [s or "" for s in speakers], "normalization": sources}, extra=extra)
    return report["metrics"]
