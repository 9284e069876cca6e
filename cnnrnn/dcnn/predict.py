"""DCNN-BLSTMwA prediction: wav files → emotion probabilities, with either step's checkpoint.

* a step-2 model (``blstm_attention.h5`` + ``blstm_attention.json``, which names the DCNN, the labels and the
  feature settings): segments → the DCNN's penultimate features → BiLSTM-attention, as in the DCNN-BLSTMWA
  code (Zhang et al., Frontiers in Physiology 2021);
* a step-1 model (``dcnn.h5`` + ``dcnn.json``): an utterance's probabilities are the mean of its segments'
  (the paper's utterance-level DCNN score).

:func:`infer` is ``cnnrnn dcnn infer MODEL.h5 WAV...`` (a CSV beside the model); :func:`predict_run` is the
family's part of ``cnnrnn predict --model RUN --input X`` (a report folder, with metrics when ``X`` is a
filelist whose emotion ids give the true labels); :func:`evaluate` scores a step again on its test
filelist. Unusable audio (missing, unreadable, silent, shorter than one segment) is skipped and reported.

A run with ``data.normalization`` normalises every file as it was trained (:func:`normalize_inputs`): with the
run's ``normalization.json`` for ``global``; for ``speaker``, with the statistics of the file's speaker (a
filelist's speaker ids, or ``speaker`` for every file), computed from all the given audio of that speaker
(no labels), or the run's when it knows the speaker and the files are too few. A file without a speaker falls
back to ``utterance`` normalisation; the ``normalization`` column of the predictions says what each file got.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import (CheckpointError, as_probabilities, atomic_write_bytes, ensure_writable_dir, is_temporary,
                         load_labels, load_model)
from ..audio import AUDIO_EXTENSIONS, Clip, input_id, input_source, list_audio
from ..corpora.vocabulary import match_labels
from ..reports import predictions_table, write_report
from ..runs import RunManifest
from ..outputs import claim_predictions
from .config import DCNN_FILE, DCNN_META, MODEL_FILE, MODEL_META, FeatureConfig, read_norm_stats, read_sidecar
from .data import (cut, feature_rows, files_features, labels_beside, normalize_features, segment_probabilities,
                   utterance_features)
from .filelists import read_filelist

log = logging.getLogger("cnnrnn.dcnn")
STEPS = {"train": MODEL_META, "finetune": DCNN_META}

# What the prediction facade (:func:`cnnrnn.predict.predict`) reads of this family, by the registry
# (:func:`cnnrnn.families.module`):
#: The options of ``cnnrnn predict`` that :func:`predict_run` takes; the facade passes only these and refuses any
#: other that is given (not ``None`` or ``False``) with :class:`cnnrnn.predict.OptionError`.
PREDICT_OPTIONS = frozenset({"labels", "batch_size", "speaker"})
#: Whether an input's speaker may be the name of its folder (``speaker`` =
#: :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`, ``--speaker-from folder``).
FOLDER_SPEAKERS = False
#: Whether the facade's speech check (:mod:`cnnrnn.speech`) applies: the family predicts audio.
SPEECH_CHECK = True
#: Whether the facade may cut long recordings into windows (:mod:`cnnrnn.timeline`) for this family.
WINDOWS = True


def checkpoint_step(model: str | Path) -> tuple[Path, str]:
    """The checkpoint to predict with and its step (``train`` or ``finetune``).

    Args:
        model: a checkpoint, or a run folder: a step-2 folder gives its ``blstm_attention.h5``, a step-1
            folder its ``dcnn.h5`` (temporary files of an interrupted save are never taken).

    Raises:
        FileNotFoundError: no checkpoint in the folder, or no sidecar JSON beside the checkpoint.
    """
    path = Path(model)
    if path.is_dir():
        found = [path / name for name in (MODEL_FILE, DCNN_FILE) if (path / name).is_file()]
        if not found:
            raise FileNotFoundError(f"{path}: no {MODEL_FILE} (step 2) or {DCNN_FILE} (step 1) in this folder")
        path = found[0]
    if is_temporary(path):
        raise CheckpointError(f"{path} is the temporary file of an interrupted save, not a checkpoint")
    if path.name != DCNN_FILE and path.with_name(MODEL_META).is_file():
        return path, "train"
    if path.with_name(DCNN_META).is_file():
        return path, "finetune"
    raise FileNotFoundError(f"no {MODEL_META} or {DCNN_META} beside {path}: not a DCNN-BLSTMwA checkpoint "
                            "(written by `cnnrnn dcnn train` / `cnnrnn dcnn finetune`)")


def normalize_inputs(feats: Sequence[np.ndarray], speakers: Sequence[str | None], cfg: FeatureConfig,
                     stats=None) -> tuple[list[np.ndarray], list[str]]:
    """Segments of prediction inputs, normalised as the run was trained (see the module docstring).

    Args:
        feats: per file ``(n_mels, frames_i, C) float32`` (:func:`cnnrnn.dcnn.data.waveform_features`).
        speakers: per file its speaker, or ``None``/``""`` when unknown.
        cfg: the run's feature settings. stats: the run's :class:`cnnrnn.normalize.NormStats`, or ``None``.

    Returns:
        ``(segments, normalization)``: per file its segments (:func:`cnnrnn.dcnn.data.cut`) and what
        it got (``none``, ``utterance``, ``global`` or a :func:`cnnrnn.normalize.norm_source` value).
    """
    from ..normalize import norm_source, with_speakers

    mode, speakers = cfg.normalization, [s or None for s in speakers]
    known = [(f, s) for f, s in zip(feats, speakers) if s]
    if mode == "speaker" and stats is not None and known:
        stats = with_speakers(stats, [feature_rows(f) for f, _ in known], [s for _, s in known])
    segs, normalization = [], []
    for f, s in zip(feats, speakers):
        used = "utterance" if (mode == "speaker" and (not s or stats is None)) or (
            mode == "global" and stats is None) else mode
        segs.append(cut(normalize_features(f, cfg, s, stats, used), cfg))
        normalization.append(norm_source(s, stats, used) if used == "speaker" else used)
    fallback = sum(n == "utterance" for n in normalization) if mode in ("speaker", "global") else 0
    if fallback:
        log.warning("%s normalisation: %d file(s) use utterance normalisation instead (%s)", mode, fallback,
                    "no speaker: give --speaker NAME or a filelist" if mode == "speaker" and stats is not None
                    else "the run has no normalization.json")
    return segs, normalization


def predict_files(checkpoint: str | Path, wavs: Sequence[str | Path], dcnn_h5: str | Path | None = None,
                  progress: bool = True, batch_size: int = 64,
                  speakers: Sequence[str | None] | None = None) -> dict[str, Any]:
    """Class probabilities of audio files with a step-2 or step-1 checkpoint (:func:`checkpoint_step`).

    Args:
        checkpoint: ``blstm_attention.h5`` or ``dcnn.h5`` (or its run folder).
        wavs: audio files.
        dcnn_h5: step 2 only: the fine-tuned DCNN (default: the one ``blstm_attention.json`` names, relative
            to it).
        batch_size: segments per DCNN batch.
        speakers: one speaker per file (``None`` = unknown), for a run with ``speaker`` normalisation.

    Returns:
        ``{"labels", "step", "checkpoint", "proba": (N, n_classes) float32, "kept": indices into wavs,
        "n_segments": (N,) int, "normalization": N values (see :func:`normalize_inputs`),
        "skipped": {reason: [path, ...]}}`` for the N usable files.

    Raises:
        FileNotFoundError: checkpoint, sidecar or DCNN missing. CheckpointError: the model's outputs do not
        match the labels, or are NaN (outputs that are not probabilities get a softmax, with a warning:
        :func:`cnnrnn.artifacts.as_probabilities`). ValueError: no usable audio.
    """
    from ..models.dcnn import feature_extractor

    checkpoint, step = checkpoint_step(checkpoint)
    labels, features, meta = read_sidecar(checkpoint, STEPS[step])
    model = load_model(checkpoint)
    if int(model.output_shape[-1]) != len(labels):
        raise CheckpointError(f"{checkpoint} predicts {model.output_shape[-1]} classes, its {STEPS[step]} lists "
                              f"{labels}")
    kept, feats, skipped = files_features(wavs, features, progress)
    if not feats:
        raise ValueError(f"no usable audio among {len(wavs)} file(s) (skipped: {skipped})")
    speakers = [speakers[i] for i in kept] if speakers is not None else [None] * len(kept)
    segs, normalization = normalize_inputs(feats, speakers, features, read_norm_stats(checkpoint))
    if step == "train":
        dcnn = Path(dcnn_h5) if dcnn_h5 else checkpoint.parent / meta["dcnn_checkpoint"]
        extractor = feature_extractor(load_model(dcnn))
        proba = model.predict(utterance_features(extractor, segs, features.resize, batch_size), verbose=0)
    else:
        proba = segment_probabilities(model, segs, features.resize, batch_size)
    return {"labels": labels, "step": step, "checkpoint": checkpoint, "proba": as_probabilities(proba, checkpoint),
            "kept": kept, "n_segments": np.array([len(s) for s in segs], dtype=int), "normalization": normalization,
            "skipped": skipped}


def infer(model_h5: str | Path, wavs: Sequence[str | Path], dcnn_h5: str | Path | None = None,
          out_csv: str | Path | None = None, progress: bool = True):
    """Predict the emotion of wav files (``cnnrnn dcnn infer``).

    Args:
        model_h5: ``blstm_attention.h5`` (its ``blstm_attention.json`` names the DCNN, labels and features),
            or a step-1 ``dcnn.h5`` (utterance = mean of its segments' probabilities).
        wavs: audio files.
        dcnn_h5: the fine-tuned DCNN (default: the one recorded in the JSON, relative to it).
        out_csv: where to write the predictions (default ``predictions.csv`` beside the model).

    Returns:
        ``(DataFrame, skipped)``: one row per usable file (``path``, ``predicted``, ``confidence``,
        ``n_segments``, ``normalization`` for a normalised run, and ``p_<label>`` per label), as written to the
        CSV; ``skipped`` ``{reason: [path, ...]}``.

    Raises:
        FileNotFoundError: model, its JSON or the DCNN missing. ValueError: no usable wav.
        NotWritableError: the CSV's folder cannot be written (checked before any work).
    """
    out_csv = Path(out_csv) if out_csv else checkpoint_step(model_h5)[0].with_name("predictions.csv")
    ensure_writable_dir(out_csv.parent)  # before any work
    r = predict_files(model_h5, wavs, dcnn_h5, progress)
    paths = [str(wavs[i]) for i in r["kept"]]
    columns: dict[str, Any] = {"n_segments": r["n_segments"]}
    if any(n != "none" for n in r["normalization"]):
        columns["normalization"] = r["normalization"]   # without a speaker, speaker runs fall back to utterance
    df = predictions_table(r["proba"], r["labels"], paths, columns=columns)
    df = df.rename(columns={"id": "path"}).drop(columns="predicted_index")
    atomic_write_bytes(out_csv, df.to_csv(index=False).encode("utf-8"))
    return df, r["skipped"]


def _filelist_truth(path: Path, model_labels: Sequence[str], labels: Any,
                    root: str | Path | None = None) -> tuple[list[str], list[int], list[str], dict]:
    """Wav paths, true codes (in the model's label order) and speaker ids of a filelist, and its skips.

    The filelist's emotion ids index ``labels`` (a list of names or a ``labels.json``), by default the
    ``labels.json`` beside it or above it (``cnnrnn filelists`` writes it there), else the model's labels.
    Names are matched to the model's classes by meaning (:func:`cnnrnn.corpora.vocabulary.match_labels`);
    an utterance whose emotion the model lacks is skipped (``label_not_in_model``). Relative wav paths are
    resolved against ``root`` (default: the filelist's folder).
    """
    if labels is None:
        beside = labels_beside(path)
        names = load_labels(beside) if beside else list(model_labels)
    else:
        names = load_labels(labels) if isinstance(labels, (str, Path)) else list(labels)
    entries, report = read_filelist(path, names, root=root)
    skipped = {reason: list(ids) for reason, ids in report.skipped.items()}
    to_model = match_labels(names, model_labels)
    wavs, codes, speakers = [], [], []
    for e in entries:
        target = to_model[names[e.emotion_id]]
        if target is None:
            skipped.setdefault("label_not_in_model", []).append(e.wavpath)
            continue
        wavs.append(e.wavpath)
        codes.append(list(model_labels).index(target))
        speakers.append(e.speaker_id)
    return wavs, codes, speakers, skipped


def _sources(source: Any) -> list[Path | Clip]:
    items = source if isinstance(source, (list, tuple)) else [source]
    return [s if isinstance(s, Clip) else Path(s) for s in items]


def predict_run(models: list[Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest: RunManifest | None = None, progress: bool = True, filelist_root: str | Path | None = None,
                **options) -> dict:
    """``cnnrnn predict --model RUN --input X`` for a DCNN-BLSTMwA run.

    Args:
        models: one step-2 run folder or ``blstm_attention.h5``, or one step-1 run folder or ``dcnn.h5``
            (see :func:`checkpoint_step`).
        source: a wav (any of :data:`cnnrnn.audio.AUDIO_EXTENSIONS`), a folder of audio (searched
            recursively), or a filelist ``.txt`` (``wavpath|speaker_id|text|emotion_id|lang_id``) whose
            emotion ids give the true labels (see :func:`_filelist_truth`); or a list of these and of
            :class:`cnnrnn.audio.Clip` (waveforms in memory).
        out_dir: report folder (default ``<run folder>/predictions``).
        manifest: the run's ``run.json`` (not needed: the sidecar JSON beside the checkpoint says it all).
        filelist_root: the folder a filelist's relative wav paths are resolved against (default: the filelist's
            folder; :func:`evaluate` gives the run's ``data.root``).
        options: ``labels`` (the filelist's label names or ``labels.json``), ``batch_size``, ``speaker`` (the
            speaker of every input, for a run with ``speaker`` normalisation; default: a filelist's speaker ids,
            none for audio files and folders): :data:`PREDICT_OPTIONS`.

    Returns:
        ``{"predictions": DataFrame (id, source, [true], predicted, predicted_index, confidence, n_segments,
        [normalization], p_<label>...), "metrics": dict | None, "files": {kind: path}, "skipped": {reason:
        [paths]}}``; writes ``predictions.csv``, and ``metrics.json`` + ``confusion_matrix.png`` when true labels
        are known.

    Raises:
        ValueError: not one model, or an input that is none of the above. FileNotFoundError: missing files.
    """
    if len(models) != 1:
        raise ValueError(f"a DCNN-BLSTMwA prediction uses one checkpoint or run folder, got {len(models)}")
    checkpoint, step = checkpoint_step(models[0])
    out_dir = claim_predictions(out_dir or checkpoint.parent / "predictions")
    model_labels, _, _ = read_sidecar(checkpoint, STEPS[step])
    wavs: list[str | Clip] = []
    truth: list[int] | None = []
    speakers: list[str | None] = []
    skipped: dict[str, list[str]] = {}
    for src in _sources(source):
        who: list[str | None] | None = None
        if isinstance(src, Clip):
            more, truth = [src], None
        elif src.is_file() and src.suffix.lower() == ".txt":
            more, codes, who, skips = _filelist_truth(src, model_labels, options.get("labels"), filelist_root)
            truth = truth + codes if truth is not None else None
            for reason, paths in skips.items():
                skipped.setdefault(reason, []).extend(paths)
        elif src.is_dir():
            more, truth = [str(p) for p in list_audio(src)], None
            if not more:
                raise ValueError(f"{src}: no audio file ({', '.join(AUDIO_EXTENSIONS)}) in this folder")
        elif src.is_file() and src.suffix.lower() in AUDIO_EXTENSIONS:
            more, truth = [str(src)], None
        elif not src.exists():
            raise FileNotFoundError(f"--input {src} does not exist")
        else:
            raise ValueError(f"--input {src}: a DCNN-BLSTMwA run predicts audio files "
                             f"({', '.join(AUDIO_EXTENSIONS)}), a folder of them, or a filelist .txt")
        wavs += more
        speakers += [options.get("speaker") or (who[i] if who else None) for i in range(len(more))]
    r = predict_files(checkpoint, wavs, progress=progress, batch_size=options.get("batch_size") or 64,
                      speakers=speakers)
    for reason, paths in r["skipped"].items():
        skipped.setdefault(reason, []).extend(paths)
    kept = r["kept"]
    y_true = [truth[i] for i in kept] if truth is not None else None
    columns: dict[str, Any] = {"n_segments": r["n_segments"]}
    extra: dict[str, Any] = {"step": step, "checkpoint": str(checkpoint)}
    if any(n != "none" for n in r["normalization"]):
        columns["normalization"] = r["normalization"]
        extra["normalization"] = {n: r["normalization"].count(n) for n in sorted(set(r["normalization"]))}
    report = write_report(out_dir, r["proba"], r["labels"], [input_id(wavs[i]) for i in kept], y_true,
                          family="dcnn", sources=[input_source(wavs[i]) for i in kept], columns=columns, extra=extra)
    if skipped:
        log.warning("skipped %s", {k: len(v) for k, v in skipped.items()})
    return {**report, "skipped": skipped}


def evaluate(run: str | Path, filelist: str | Path | None = None, out: str | Path | None = None,
             progress: bool = True) -> dict[str, Any]:
    """Score a trained step again on a labelled filelist: by default the test filelist it was trained with.

    The utterances are predicted as :func:`predict_run` predicts a filelist (their speakers from the filelist,
    for a run with ``speaker`` normalisation) and scored per utterance (UA, WA, macro F1, ...:
    :func:`cnnrnn.reports.write_report`), the scores the training step gives its test filelist
    (``metrics['utterances']``), within the run's precision.

    Args:
        run: a step's run folder (step 2: ``blstm_attention.h5``; step 1: ``dcnn.h5``) or its checkpoint.
        filelist: a filelist ``.txt`` (``wavpath|speaker_id|text|emotion_id|lang_id``) whose emotion ids index
            the ``labels.json`` beside it; default the run's ``data.filelist_test`` (from its ``run.json``), its
            relative wav paths resolved against the run's ``data.root``, and its labels the run's
            ``data.labels_file`` when set.
        out: output folder (default ``<run>/evaluation``): new, empty, or a predictions folder.
        progress: show progress bars.

    Returns:
        The ``metrics.json`` report written to ``out`` (``n``, ``ua``, ``wa``, ``f1_macro``, ``confusion_matrix``,
        ...).

    Raises:
        FileNotFoundError: no checkpoint or sidecar in ``run``, or the filelist or its audio is missing.
        ValueError: no ``filelist`` and the run has no ``run.json`` naming its test filelist; a filelist with no
            utterance of the model's classes.
        cnnrnn.runs.ManifestError: the run's ``run.json`` is unreadable or of another family.
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files or is another command's folder.
        cnnrnn.outputs.FolderInUseError: another process trains the run, or writes ``out``.
    """
    from ..outputs import check_not_training, writing_stage
    from ..reports import REPORT_FILES
    from ..runs import find_manifest, read_manifest
    from .config import FAMILY, load_dcnn_config

    checkpoint, _ = checkpoint_step(run)
    check_not_training(checkpoint)
    root = labels = None
    if filelist is None:
        found = find_manifest(checkpoint)
        if found is None:
            raise ValueError(f"{run}: no run.json names the run's test filelist; give the filelist to score")
        data = load_dcnn_config(read_manifest(found, families=[FAMILY]).config).data
        if not data.filelist_test:
            raise ValueError(f"{found}: the run's config has no data.filelist_test; give the filelist to score")
        filelist, root, labels = data.filelist_test, data.root, data.labels_file
    out = claim_predictions(out or checkpoint.parent / "evaluation")
    with writing_stage(out, "predict", [(out, list(REPORT_FILES.values()))]):
        result = predict_run([checkpoint], filelist, out, progress=progress, filelist_root=root, labels=labels)
    if result["metrics"] is None:
        raise ValueError(f"{filelist}: no utterance of the model's classes to score")
    return result["metrics"]
