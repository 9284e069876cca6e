"""Train the HF emotion models, one fold at a time, as etri_multimodal's ``train.py`` (``--num_fold``).

:func:`train` (the family's entry point; :func:`train_fold`, the same call) cuts the fold with the splitters of
:mod:`cnnrnn.splits`, fits the model (or the 2-stage hierarchical classifier of ``-ETRI-Emotion-Recognition``:
neutral versus the rest, then the other emotions), saves the checkpoint (see :mod:`cnnrnn.hf.models`), writes the
run manifest ``run.json`` (family ``hf``, config, labels, split, input spec) and scores the fold's test part with
:func:`cnnrnn.hf.predict.evaluate`.

The run folder is claimed first (:func:`claim_run`: a new or empty folder, or an HF run, kind :data:`RUN_KIND`)
and written under its ``train`` lock (:func:`cnnrnn.outputs.writing_stage`): a second train of the same run is
refused while the first runs; the temporaries and the ``checkpoint.partial/`` folder a killed run left are
removed (and counted) when the next train starts. ``run.json`` records the content fingerprint of the records the
run was trained and scored on (``inputs``: ids, texts, labels, ratings, speakers and each wav's content).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any, Sequence

from ..artifacts import atomic_write_bytes
from ..config import to_dict
from ..corpora import CorpusReport
from ..corpora.kemdy import KEMDY_LABELS
from ..reports import REPORT_FILES
from ..runs import write_manifest
from .config import HFConfig, TrainConfig
from .data import HFRecord, fold_split, split_spec
from .models import CHECKPOINT_DIR, NEUTRAL, HFModel, HierarchicalModel, ModelSpec, Prepared
from .predict import evaluate

log = logging.getLogger("cnnrnn.hf")
#: The kind of folder an HF run is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "hf run"
#: The kind of folder ``cnnrnn hf predict --out`` writes (``metrics.json``, ``predictions.csv``, ...).
PARTIAL_DIR = f"{CHECKPOINT_DIR}.partial"
#: What a run folder holds besides ``checkpoint/`` (a killed write of one of them leaves ``.name.XXXX.tmp``).
RUN_FILES = ("run.json", "history.csv", *REPORT_FILES.values())


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds an HF run written before folder markers existed: its ``checkpoint/`` (or the
    ``checkpoint.partial/`` of a save that was killed)."""
    return (folder / CHECKPOINT_DIR).is_dir() or (folder / PARTIAL_DIR).is_dir()


def claim_run(out: str | Path) -> Path:
    """Claim ``out`` as an HF run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already.

    Raises:
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``out`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(out, RUN_KIND, recognise=is_run_folder)


def records_inputs(records: Sequence[HFRecord]) -> dict[str, Any]:
    """The content fingerprint of ``records``: every field (id, text, labels, ratings, speaker, session) but the
    audio path, and the content of each wav (:func:`cnnrnn.outputs.file_digest`, ``None`` when unreadable).
    ``{"sha1", "n"}``."""
    from ..outputs import audio_digests, digest

    audio = audio_digests([r.audio_path for r in records])
    rows = [[{k: v for k, v in r.__dict__.items() if k != "audio_path"}, d] for r, d in zip(records, audio)]
    return {"sha1": digest(rows), "n": len(records)}
#: Sample rate of the wav2vec2 feature extractors (16 kHz), recorded in ``run.json`` for text-only runs too.
SPEECH_SR = 16000


def fit(model: HFModel, prepared: Prepared, train: TrainConfig, progress: bool = True, callbacks: Sequence = ()):
    """Compile (Adam(``train.learning_rate``); the emotion loss of ``train.loss`` on logits, MSE on
    valence/arousal) and fit on ``prepared`` for ``train.epochs`` epochs of ``train.batch_size``, shuffled with
    ``train.seed``; ``callbacks`` are tf_keras callbacks. Returns the tf_keras History."""
    import tf_keras as keras

    from .models import emotion_loss

    targets = model.targets(prepared.records)
    losses = {"va": keras.losses.MeanSquaredError()}
    if "emotion" in targets:
        losses["emotion"] = emotion_loss(train.loss, model.spec.multilabel, targets["emotion"])
    model.model.compile(optimizer=keras.optimizers.Adam(train.learning_rate), loss={k: losses[k] for k in targets},
                        run_eagerly=train.eager)
    data = model.dataset(prepared, targets, train.batch_size, shuffle=True, seed=train.seed)
    return model.model.fit(data, epochs=train.epochs, verbose=1 if progress else 0, callbacks=list(callbacks))


def _stage_records(records: Sequence[HFRecord], stage: str) -> list[HFRecord]:
    """Relabel for a hierarchical stage: ``neutral`` → ``neutral``/``other``; ``rest`` → the non-neutral labels
    of the records that have any (a ``fear;neutral`` tie counts as fear)."""
    out = []
    for rec in records:
        rest = [lab for lab in rec.labels if lab != NEUTRAL]
        if stage == "neutral":
            out.append(HFRecord(**{**rec.__dict__, "labels": ["other" if rest else NEUTRAL]}))
        elif rest:
            out.append(HFRecord(**{**rec.__dict__, "labels": rest}))
    return out


def _train_one(spec: ModelSpec, records, train: TrainConfig, report: CorpusReport, progress: bool, callbacks):
    """Build, prepare and fit one model; returns ``(model, history DataFrame)``; skips go to ``report``."""
    import pandas as pd

    model = HFModel(spec, spec.text_model, spec.speech_model)
    prepared = model.prepare(records, report)
    if not prepared.records:
        raise ValueError(f"no usable training record ({report.summary()})")
    if report.n_skipped:
        log.warning("training records skipped: %s", report.summary())
    report.n_kept += len(prepared.records)
    return model, pd.DataFrame(fit(model, prepared, train, progress, callbacks).history)


def train_fold(records: Sequence[HFRecord], cfg: HFConfig, out: str | Path, *, labels: Sequence[str] | None = None,
               progress: bool = True, callbacks: Sequence = (), source: dict[str, Any] | None = None) -> dict:
    """Train on fold ``cfg.train.fold``'s training part, save the checkpoint, evaluate on its test part.

    Writes under ``out``: ``checkpoint/`` (replaced atomically when complete), ``run.json`` (the run manifest:
    family ``hf``, the config, the labels, the split ``{"scheme", "folds", "fold", "seed"}``, the input spec
    ``{"sr", "max_len", "max_seconds", "modality"}``, ``checkpoints: ["checkpoint"]``), ``history.csv``, and
    what :func:`cnnrnn.hf.predict.evaluate` writes (``metrics.json``, ``predictions.csv``,
    ``confusion_matrix.png``).

    Args:
        records: every record in input order (the folds are cut from this order, :func:`~cnnrnn.hf.data.fold_split`).
        cfg: the config (:func:`cnnrnn.hf.config.load_config`).
        labels: class names in output order; default the 7 KEMDy emotions in their declared order
            (:data:`cnnrnn.corpora.kemdy.KEMDY_LABELS`). Whether the model is multi-label follows
            ``cfg.train.label_mode`` and the training records.
        callbacks: tf_keras callbacks passed to ``fit`` (e.g. a step timer or TensorBoard).
        source: where the records came from (``{"input": ..., "root": ...}``), kept in ``run.json`` ``extra``.

    Returns:
        the metrics dict (also in ``metrics.json``).

    Raises:
        ValueError: hierarchical with a task other than classification; no usable record.
        SplitError: the fold does not exist, too few records.
        HFModelError: a backbone cannot be loaded offline.
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files or is another command's folder (nothing was
            written).
        cnnrnn.outputs.FolderInUseError: another process trains this run.
    """
    from ..outputs import writing_stage

    out = claim_run(out)
    with writing_stage(out, "train", [(out, RUN_FILES)]):
        partial = out / PARTIAL_DIR
        if partial.is_dir():  # a save that was killed
            n_files = sum(1 for p in partial.rglob("*") if p.is_file())
            shutil.rmtree(partial)
            log.info("train: removed %s (%d file(s)) left by an interrupted save", partial, n_files)
        return _train_fold(records, cfg, out, labels, progress, callbacks, source)


def train(records: Sequence[HFRecord], cfg: HFConfig, out: str | Path, *, labels: Sequence[str] | None = None,
          progress: bool = True, callbacks: Sequence = (), source: dict[str, Any] | None = None) -> dict:
    """The family's training entry point (every family has ``train.train``): :func:`train_fold`, with the same
    arguments, return value and errors.

    Trains on fold ``cfg.train.fold``'s training part of ``records`` (:class:`cnnrnn.hf.data.HFRecord`, in input
    order), saves ``out/checkpoint/``, writes ``run.json`` and ``history.csv``, and scores the fold's test part
    with :func:`cnnrnn.hf.predict.evaluate` (``metrics.json``, ``predictions.csv``, ``confusion_matrix.png``).

    Args:
        records: every record in input order. cfg: the config (:func:`cnnrnn.hf.config.load_config`).
        out: the run folder. labels: class names in output order (default the 7 KEMDy emotions).
        progress: show progress. callbacks: tf_keras callbacks passed to ``fit``.
        source: where the records came from, kept in ``run.json`` ``extra``.

    Returns:
        the metrics dict (also in ``metrics.json``).

    Raises:
        ValueError, SplitError, HFModelError, cnnrnn.outputs.OutputFolderError, cnnrnn.outputs.FolderInUseError:
            as :func:`train_fold`.
    """
    return train_fold(records, cfg, out, labels=labels, progress=progress, callbacks=callbacks, source=source)


def _train_fold(records: Sequence[HFRecord], cfg: HFConfig, out: Path, labels: Sequence[str] | None, progress: bool,
                callbacks: Sequence, source: dict[str, Any] | None) -> dict:
    import pandas as pd
    import tf_keras as keras

    from ..outputs import read_inputs, record_inputs

    train_cfg = cfg.train
    report = CorpusReport("hf-train", "")
    keras.utils.set_random_seed(train_cfg.seed)
    split = split_spec(train_cfg)
    train_idx, test_idx = fold_split(records, split)
    train = [records[i] for i in train_idx]
    test = [records[i] for i in test_idx]
    if train_cfg.label_mode == "single":
        train = [HFRecord(**{**r.__dict__, "labels": r.labels[:1]}) for r in train]
    multilabel = train_cfg.label_mode == "multi" or (
        train_cfg.label_mode == "auto" and any(len(r.labels) > 1 for r in train))
    spec = ModelSpec.from_config(cfg.model, labels or KEMDY_LABELS, multilabel)
    if train_cfg.hierarchical:
        if spec.task != "classification":
            raise ValueError("the hierarchical (2-stage) model is for --task classification only")
        stage1 = ModelSpec(**{**spec.to_dict(), "labels": [NEUTRAL, "other"], "multilabel": False})
        stage2 = ModelSpec(**{**spec.to_dict(), "labels": [lab for lab in spec.labels if lab != NEUTRAL]})
        neutral, hist1 = _train_one(stage1, _stage_records(train, "neutral"), train_cfg, report, progress,
                                    callbacks)
        rest, hist2 = _train_one(stage2, _stage_records(train, "rest"), train_cfg, CorpusReport("hf-rest", ""),
                                 progress, callbacks)
        model = HierarchicalModel(spec, neutral, rest)
        history = pd.concat([hist1.assign(stage="neutral"), hist2.assign(stage="rest")])
    else:
        model, history = _train_one(spec, train, train_cfg, report, progress, callbacks)
    partial = out / PARTIAL_DIR
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)
    shutil.rmtree(out / CHECKPOINT_DIR, ignore_errors=True)
    partial.rename(out / CHECKPOINT_DIR)
    io = model.neutral if isinstance(model, HierarchicalModel) else model
    sr = int(io.extractor.sampling_rate) if io.extractor is not None else SPEECH_SR
    record_inputs(out, "train", records_inputs(records))
    write_manifest(out, "hf", to_dict(cfg), spec.labels, split=split,
                   input_spec={"sr": sr, "max_len": spec.max_len, "max_seconds": spec.max_seconds,
                               "modality": spec.modality},
                   checkpoints=[out / CHECKPOINT_DIR], inputs=read_inputs(out),
                   extra={"source": dict(source or {}), "multilabel": spec.multilabel})
    history.index.name = "epoch"
    atomic_write_bytes(out / "history.csv", history.to_csv().encode("utf-8"))
    extra = {"fold": train_cfg.fold, "folds": train_cfg.folds, "fold_scheme": train_cfg.fold_scheme,
             "seed": train_cfg.seed, "n_train": report.n_kept, "loss": train_cfg.loss,
             "hierarchical": train_cfg.hierarchical, "epochs": train_cfg.epochs,
             "learning_rate": train_cfg.learning_rate, "train_skipped": report.to_dict()["skipped"]}
    return evaluate(model, test, out, train_cfg.valid_batch_size, train_cfg.threshold, extra)
