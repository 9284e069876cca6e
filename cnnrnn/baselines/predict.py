"""Baseline prediction on audio files: ``cnnrnn predict --model RUN --input WAV_OR_FOLDER`` for an ANN/CNN run.

The run's own features are rebuilt for every file (the raw waveform for the ANN, the scaled spectrogram for
the CNN, :func:`cnnrnn.baselines.data.clip_features`) from the run's config: the ``config`` of its
``run.json``, or, for a run written before manifests, its ``baseline_config.json``. Several checkpoints
average their class probabilities. Reports are written by :func:`cnnrnn.reports.write_report`.

A CNN run with a ``normalization`` normalises every file as it was trained: ``global`` with the run's
``normalization.json``; ``speaker`` with the statistics of ``speaker`` (the ``--speaker`` of every file),
computed from all the given audio (no labels), or the run's when it knows the speaker and the files are too
few. Without a speaker a file falls back to ``utterance`` normalisation; the ``normalization`` column of the
predictions says what each file got.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import (LABELS_FILE, CheckpointError, as_probabilities, is_temporary, load_checkpoints, load_json,
                         load_labels, load_model)
from ..audio import AUDIO_EXTENSIONS
from ..corpora import Utterance, load_corpus, match_labels, relabel_by_meaning
from ..reports import REPORT_FILES, write_report
from ..runs import MANIFEST_FILE, RunManifest, find_run, read_manifest
from ..outputs import claim_predictions
from .config import BASELINE_CONFIG_FILE, FAMILY, MODEL_FILE, BaselineConfig, load_baseline_config, read_norm_stats
from .data import (FeatureCache, build_cache, cache_dataset, clip_features, corpus_arrays, normalized_image,
                   normalizer)

log = logging.getLogger("cnnrnn.baselines")

# What the prediction facade (:func:`cnnrnn.predict.predict`) reads of this family, by the registry
# (:func:`cnnrnn.families.module`):
#: The options of ``cnnrnn predict`` that :func:`predict_run` takes; the facade passes only these and refuses any
#: other that is given (not ``None`` or ``False``) with :class:`cnnrnn.predict.OptionError`.
PREDICT_OPTIONS = frozenset({"labels", "config", "batch_size", "speaker"})
#: Whether an input's speaker may be the name of its folder (``speaker`` =
#: :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`, ``--speaker-from folder``).
FOLDER_SPEAKERS = False
#: Whether the facade's speech check (:mod:`cnnrnn.speech`) applies: the family predicts audio.
SPEECH_CHECK = True
#: Whether the facade may cut long recordings into windows (:mod:`cnnrnn.timeline`) for this family.
WINDOWS = True


@dataclass
class AudioInputs:
    """Features of the audio files to predict on: ``features`` is ``(N, *cfg.input_shape) float32``;
    ``skipped`` maps a reason (``empty``, ``unreadable``, ...) to the files skipped for it; ``normalization``
    says what each file got (``None`` for a run without normalisation)."""

    ids: list[str]
    sources: list[str]
    features: np.ndarray
    skipped: dict[str, list[str]] = field(default_factory=dict)
    normalization: list[str] | None = None


def predict_proba(model, x, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, n_classes) float32`` for a feature array or a batched ``tf.data`` dataset."""
    kwargs = {"batch_size": batch_size} if isinstance(x, np.ndarray) else {}
    return np.asarray(model.predict(x, verbose=0, **kwargs), np.float32)


def collect_inputs(source: str | Path | Sequence[str | Path], cfg: BaselineConfig,
                   progress: bool = True, speaker: str | None = None, stats=None) -> AudioInputs:
    """Features of audio files: one file, a folder (searched recursively), or a list of them.

    Args:
        source: an audio file (``.wav``, ``.flac``, ... :data:`cnnrnn.audio.AUDIO_EXTENSIONS`), a folder, or
            a list of files, folders and :class:`cnnrnn.audio.Clip` (waveforms in memory).
        cfg: the run's baseline config (feature settings).
        speaker: the speaker of every file (``speaker`` normalisation), or ``None``.
        stats: the run's :class:`cnnrnn.normalize.NormStats` (``global`` / ``speaker``), or ``None``.

    Returns:
        :class:`AudioInputs`; unusable audio (empty, silent, unreadable) is skipped and counted.

    Raises:
        FileNotFoundError: a source does not exist.
        ValueError: a file given by name is not audio, or no usable audio.
    """
    from ..audio import Clip, input_id, input_source, list_audio, load_each

    sources = [source] if isinstance(source, (str, Path)) else list(source)
    files: list[Path | Clip] = []
    for s in sources:
        if isinstance(s, Clip):
            files.append(s)
            continue
        s = Path(s)
        if not s.exists():
            raise FileNotFoundError(f"input {s} not found")
        if s.is_file():
            if s.suffix.lower() not in AUDIO_EXTENSIONS:
                raise ValueError(f"{s}: a baseline run predicts on audio files ({', '.join(AUDIO_EXTENSIONS)}) "
                                 f"or folders of them, not {s.suffix!r} files")
            files.append(s)
        else:
            files += list_audio(s)
    kept, feats, skipped = load_each(files, lambda p: clip_features(p, cfg), desc="inputs", progress=progress)
    if not feats:
        raise ValueError(f"no usable audio in {', '.join(map(str, sources))} "
                         f"(skipped: {skipped or 'no audio files'})")
    ids, paths = [input_id(files[i]) for i in kept], [input_source(files[i]) for i in kept]
    if cfg.model != "cnn" or cfg.normalization == "none":
        return AudioInputs(ids, paths, np.stack(feats), skipped)
    from ..normalize import norm_source, with_speakers

    mode = cfg.normalization
    if mode == "speaker" and speaker and stats is not None:
        stats = with_speakers(stats, [x[..., 0].T for x in feats], [speaker] * len(feats))
    used = "utterance" if (mode == "speaker" and not (speaker and stats is not None)) or (
        mode == "global" and stats is None) else mode
    if used != mode:
        log.warning("%s normalisation: %d file(s) use utterance normalisation instead (%s)", mode, len(feats),
                    "no speaker: give --speaker NAME" if mode == "speaker" and stats is not None
                    else "the run has no normalization.json")
    images = np.stack([normalized_image(x[..., 0], cfg, speaker, stats, used)[..., None] for x in feats])
    source_of = norm_source(speaker, stats, used) if used == "speaker" else used
    return AudioInputs(ids, paths, images, skipped, [source_of] * len(feats))


def find_run_dir(model_path: str | Path) -> Path | None:
    """The nearest folder at or above ``model_path`` that holds ``baseline_config.json``, or ``None``
    (:func:`cnnrnn.runs.find_run`)."""
    return find_run(model_path, (BASELINE_CONFIG_FILE,))


def _checkpoints(models: Sequence[str | Path], manifest: RunManifest | None) -> list[Path]:
    out: list[Path] = []
    for m in map(Path, models):
        if not m.is_dir():
            out.append(m)
            continue
        if manifest is not None and manifest.folder is not None and m.resolve() == Path(manifest.folder).resolve():
            found = [p for p in manifest.checkpoint_paths() if p.is_file()]
        elif (m / MODEL_FILE).is_file():
            found = [m / MODEL_FILE]
        else:
            found = sorted(p for p in m.glob("*.h5") if not is_temporary(p))
        if not found:
            raise FileNotFoundError(f"no {MODEL_FILE} in {m}")
        out += found
    if not out:
        raise ValueError("no checkpoint given")
    return out


def resolve_run(models: Sequence[str | Path], manifest: RunManifest | None = None,
                config: Any = None) -> tuple[list[Path], Path | None, BaselineConfig]:
    """The checkpoints, run folder and config that :func:`predict_run` predicts with.

    Args:
        models, manifest: as :func:`predict_run`. config: a baseline config, used only for a checkpoint outside a
            run.

    Returns:
        ``(checkpoints, run folder or None, config)``: the config of the ``run.json``, else of the run's
        ``baseline_config.json``, else ``config``.

    Raises:
        FileNotFoundError: a run folder without ``model.h5``. ValueError: no checkpoint.
        BaselineConfigError: no usable config (outside a baseline run and no ``config``).
    """
    from .config import BaselineConfigError

    paths = _checkpoints(models, manifest)
    run_dir = Path(manifest.folder) if manifest is not None and manifest.folder is not None else find_run_dir(paths[0])
    if manifest is not None:
        cfg = load_baseline_config(manifest.config)
    elif run_dir is not None:
        cfg = load_baseline_config(run_dir / BASELINE_CONFIG_FILE)
    elif config is not None:
        cfg = load_baseline_config(config)
    else:
        raise BaselineConfigError(f"{paths[0]} is not inside a baseline run (no {BASELINE_CONFIG_FILE} or run.json "
                                  "above it); give the run's config")
    return paths, run_dir, cfg


def predict_run(models: Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest: RunManifest | None = None, progress: bool = True, **options: Any) -> dict[str, Any]:
    """Predict the classes of audio files with one baseline checkpoint or the average of several.

    Args:
        models: ``model.h5`` files and/or run folders (a folder gives the checkpoints of its ``run.json``, or
            its ``model.h5``).
        source: an audio file, a folder of audio (searched recursively), or a list of them and of
            :class:`cnnrnn.audio.Clip` (waveforms in memory).
        out_dir: where ``predictions.csv`` goes (default ``<run>/predictions``).
        manifest: the ``run.json`` found at or above the first model; ``None`` for a run written before
            manifests (its ``baseline_config.json`` and ``labels.json`` are read instead).
        progress: show a progress bar.
        **options: ``labels`` (names, or a ``labels.json``), ``config`` (a baseline config, used only for a
            checkpoint outside a run), ``batch_size`` (default the config's), ``speaker`` (the speaker of every
            file, for a CNN run with ``speaker`` normalisation); ``None`` values are ignored
            (the options are :data:`PREDICT_OPTIONS`).

    Returns:
        ``{"predictions": DataFrame (id, source, [normalization], predicted, predicted_index, confidence,
        p_<label>...),
        "metrics": None, "files": {"predictions": path}, "skipped": {reason: [paths]}}``.

    Raises:
        FileNotFoundError: a checkpoint, a run folder's ``model.h5`` or an input is missing.
        CheckpointError: a checkpoint does not load, the checkpoints disagree, or they do not take the
            config's features or predict one class per label, or a model outputs NaN (outputs that are not
            probabilities get a softmax, with a warning: :func:`cnnrnn.artifacts.as_probabilities`).
        NotWritableError: the output folder cannot be written (checked before any work).
        BaselineConfigError: no usable config (the checkpoint is outside a baseline run and ``config`` was
            not given).
        ValueError: an input file is not audio, or nothing usable to predict on.
    """
    paths, run_dir, cfg = resolve_run(models, manifest, options.get("config"))
    out_dir = claim_predictions(out_dir or (run_dir or paths[0].parent) / "predictions")
    labels = options.get("labels")
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    elif labels is None and manifest is not None:
        labels = list(manifest.labels)
    elif labels is None and run_dir is not None and (run_dir / LABELS_FILE).is_file():
        labels = load_labels(run_dir / LABELS_FILE)

    nets, shape, labels = load_checkpoints(paths, labels)
    if shape != cfg.input_shape:
        raise CheckpointError(f"the model takes {shape} but its run config gives {cfg.input_shape} features")

    stats = read_norm_stats(run_dir) if run_dir is not None else None
    inputs = collect_inputs(source, cfg, progress=progress, speaker=options.get("speaker"), stats=stats)
    batch_size = int(options.get("batch_size") or cfg.batch_size)
    proba = np.mean([as_probabilities(predict_proba(net, inputs.features, batch_size), path)
                     for net, path in zip(nets, paths)], axis=0)
    columns = {"normalization": inputs.normalization} if inputs.normalization else None
    report = write_report(out_dir, proba, labels, inputs.ids, None, family=FAMILY, sources=inputs.sources,
                          columns=columns)
    return {**report, "skipped": inputs.skipped}


def score_rows(net, cache: FeatureCache, rows: np.ndarray, y: np.ndarray, utterances: Sequence[Utterance],
           labels: Sequence[str], out_dir: Path, batch_size: int, extra: dict[str, Any],
           transform=None, here: bool = False) -> dict[str, Any]:
    """Predict ``rows`` of the feature cache with ``net`` and write the report into ``out_dir``.

    ``rows`` are ``(n,)`` int64 indices into the cache and ``y``; ``transform`` normalises each batch's features
    (:func:`cnnrnn.baselines.data.normalizer`); ``here``: every batch on this process
    (:func:`cnnrnn.training.predict_here`, for a model trained on several workers, whose Keras ``predict`` would
    split the batches between them) instead of Keras ``predict``. Writes ``metrics.json``, ``confusion_matrix.png``
    and ``predictions.csv`` (:func:`cnnrnn.reports.write_report`) and returns the metrics (UA, WA, F1-macro ...).
    """
    from ..training import predict_here

    data = cache_dataset(cache, rows, batch_size=batch_size, transform=transform)
    proba = predict_here(net, data) if here else predict_proba(net, data)
    report = write_report(out_dir, proba, labels, [utterances[r].id for r in rows], np.asarray(y)[rows],
                          family=FAMILY, sources=[utterances[r].audio_path for r in rows], extra=extra)
    return report["metrics"]


def evaluate(run: str | Path, corpus: str | None = None, root: str | Path | None = None,
             out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score a trained run again: on its own validation split, or on every clip of another corpus folder.

    Args:
        run: a run folder written by :func:`cnnrnn.baselines.train.train` (``model.h5``, ``run.json`` or ``baseline_config.json`` +
            ``labels.json``, ``metrics.json``, ``split.json``).
        corpus, root: another corpus to score (both or neither). Its classes are matched to the run's labels
            by meaning (:func:`cnnrnn.corpora.match_labels`: ``angry`` scores as ``anger``, ``disqust`` as
            ``disgust``, other names case-insensitively); clips of unknown classes are skipped and counted.
        out: output folder (default ``<run>/evaluation`` or ``<run>/evaluation_<corpus>``).
        progress: show progress bars.

    Returns:
        The ``metrics.json`` report written to ``out`` (``skipped_unknown_label``: ``{class: [ids]}``,
        ``label_map``: the corpus classes scored under another of the run's names).

    Raises:
        FileNotFoundError: the run lacks one of its files.
        ManifestError: the run's ``run.json`` is of another family or a newer schema.
        ValueError: only one of ``corpus`` / ``root``, two run labels of one meaning, or nothing to score.
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files (a run's, a corpus') or is another command's
            folder (nothing was written).
        cnnrnn.outputs.FolderInUseError: another process trains the run, or writes ``out``.
    """
    from ..outputs import check_not_locked, claim_predictions, writing_stage

    if (corpus is None) != (root is None):
        raise ValueError("give both corpus and root to evaluate on another corpus, or neither")
    run = Path(run)
    check_not_locked(run, "train", "evaluate this run")
    if (run / MANIFEST_FILE).is_file():
        manifest = read_manifest(run, families=[FAMILY])
        cfg, labels = load_baseline_config(manifest.config), list(manifest.labels)
    else:  # a run written before run manifests
        cfg, labels = load_baseline_config(run / BASELINE_CONFIG_FILE), load_labels(run / LABELS_FILE)
    if corpus is None:
        run_report = load_json(run / "metrics.json")
        corpus, root = run_report["corpus"], run_report["root"]
        wanted = set(load_json(run / "split.json")["val"])
        cache_dir = Path(run_report["cache"]["file"]).parent  # the training cache, reused
        out = Path(out) if out else run / "evaluation"
    else:
        wanted = None
        out = Path(out) if out else run / f"evaluation_{corpus}"
        cache_dir = out / "cache"
    out = claim_predictions(out)
    own_cache = [(cache_dir, None)] if cache_dir == out / "cache" else []
    with writing_stage(out, "predict", [(out, list(REPORT_FILES.values())), *own_cache]):
        net = load_model(run / MODEL_FILE)
        return _evaluate(run, net, cfg, labels, corpus, root, wanted, out, cache_dir, progress)


def _evaluate(run: Path, net, cfg: BaselineConfig, labels: list[str], corpus: str, root, wanted: set | None,
              out: Path, cache_dir: Path, progress: bool) -> dict[str, Any]:
    utterances, corpus_report = load_corpus(corpus, root)
    match = match_labels(sorted({u.emotion for u in utterances}), labels)
    utterances, skipped_labels = relabel_by_meaning(utterances, labels)
    if not utterances:
        raise ValueError(f"nothing to score in {root}: no clip of the run's classes {labels}")
    y, groups, ids = corpus_arrays(utterances, labels)
    cache, index = build_cache(utterances, cfg, cache_dir, progress)
    rows = np.asarray([r for r in np.flatnonzero(index["ok"]) if wanted is None or ids[r] in wanted], np.int64)
    if not len(rows):
        raise ValueError(f"no usable audio to score in {root} (skipped: {index['skipped']})")
    stats = read_norm_stats(run)
    new = [r for r in rows if groups[r] and stats is not None and str(groups[r]) not in stats.speakers]
    if cfg.normalization == "speaker" and new:  # speakers the run has not seen: their own clips' statistics
        from ..normalize import with_speakers

        stats = with_speakers(stats, [cache.read([r])[0, ..., 0].T for r in new], [groups[r] for r in new])
    extra = {"model": cfg.model, "run": str(run), "corpus": corpus, "root": str(root),
             "skipped_corpus": corpus_report.skipped, "skipped_audio": index["skipped"],
             "skipped_unknown_label": skipped_labels,
             "label_map": {k: v for k, v in match.items() if v is not None and k != v}}
    report = score_rows(net, cache, rows, y, utterances, labels, out, cfg.batch_size, extra,
                    normalizer(cfg, stats, groups))
    cache.close()
    return report
