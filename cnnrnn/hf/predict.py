"""Load an HF checkpoint, predict and score records: ``cnnrnn hf predict`` and ``cnnrnn predict --model RUN``.

* :func:`load_checkpoint`: a checkpoint folder written by :func:`cnnrnn.hf.train.train_fold` (``HFModel`` or
  the 2-stage ``HierarchicalModel``), optionally refusing one trained for another task or modality.
* :func:`evaluate`: predict records and write ``predictions.csv``, ``metrics.json`` and (classification with
  known labels) ``confusion_matrix.png``, through the shared report writer :func:`cnnrnn.reports.write_report`.
* :func:`predict_fold`: ``cnnrnn hf predict``: the test part of the fold a run was trained for. The fold,
  scheme, number of folds and seed come from the run's ``run.json`` (:mod:`cnnrnn.runs`), so the records
  scored are exactly the run's test records; a different ``fold`` is allowed, with a warning.
* :func:`predict_run`: the family predict contract of ``cnnrnn predict --model``: every record of a
  ``new_data.csv`` or a KEMDy corpus folder.

Metrics (``metrics.json``): ``family``, ``task``, ``modality``, ``fusion``, ``speech_pooling`` (``mean`` for
Whisper), ``speech_backbone`` (``wav2vec2`` | ``whisper``; ``None`` for text models), ``labels``,
``multilabel``, ``n``, ``skipped``; for an emotion head with known labels the shared classification keys
(``accuracy``, ``wa``, ``ua``, ``balanced_accuracy``, ``f1_micro``, ``f1_macro``, ``f1_weighted``,
``confusion_matrix``; a tie ``a;b`` counts a top-1 prediction of either label as correct) at the top level and,
as before, under ``emotion``; multi-label models replace the F1 scores by label-set scores and add
``subset_accuracy``, ``hamming_loss`` and ``threshold``; a valence/arousal head adds ``regression``
(MSE, Pearson r and CCC per target and their means).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..artifacts import atomic_write_bytes, is_temporary, save_json
from ..config import override
from ..corpora import CorpusReport
from ..reports import REPORT_FILES, write_report
from ..runs import RunManifest, find_manifest, read_manifest
from ..outputs import claim_predictions
from .config import HFConfig, load_config
from .data import HFRecord, fold_split, label_targets, read_new_data, read_records, split_spec, va_targets
from .metrics import multilabel_metrics, predicted_sets, regression_metrics, top_label_codes

log = logging.getLogger("cnnrnn.hf")
SPLIT_KEYS = ("scheme", "folds", "fold", "seed")

# What the prediction facade (:func:`cnnrnn.predict.predict`) reads of this family, by the registry
# (:func:`cnnrnn.families.module`):
#: The options of ``cnnrnn predict`` that :func:`predict_run` takes; the facade passes only these and refuses any
#: other that is given (not ``None`` or ``False``) with :class:`cnnrnn.predict.OptionError`.
PREDICT_OPTIONS = frozenset({"batch_size", "threshold"})
#: Whether an input's speaker may be the name of its folder (``speaker`` =
#: :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`, ``--speaker-from folder``).
FOLDER_SPEAKERS = False
#: Whether the facade's speech check (:mod:`cnnrnn.speech`) applies: the family predicts audio (not here: a
#: Hugging Face run predicts its records' transcripts).
SPEECH_CHECK = False
#: Whether the facade may cut long recordings into windows (:mod:`cnnrnn.timeline`) for this family (not here:
#: it predicts transcripts, not audio windows).
WINDOWS = False


def load_checkpoint(folder: str | Path, task: str | None = None, modality: str | None = None):
    """Load a checkpoint written by :func:`cnnrnn.hf.train.train_fold` (``HFModel`` or ``HierarchicalModel``).

    Args:
        folder: the ``checkpoint/`` folder (with ``hf_model.json``).
        task, modality: when given, the checkpoint must have been trained for them.

    Raises:
        HFCheckpointError: no checkpoint there, or it was trained for another task/modality.
        HFModelError: a saved backbone cannot be loaded.
    """
    from .models import HFCheckpointError, HFModel, HierarchicalModel, ModelSpec, read_checkpoint_meta

    folder = Path(folder)
    meta = read_checkpoint_meta(folder)
    spec = meta["spec"]
    for name, wanted in (("task", task), ("modality", modality)):
        if wanted is not None and spec[name] != wanted:
            raise HFCheckpointError(f"{folder} is a {spec['modality']} {spec['task']} checkpoint; "
                                    f"it cannot be used for {name} {wanted!r}")
    if meta["kind"] == "hierarchical":
        return HierarchicalModel(ModelSpec(**spec), HFModel.load(folder / "neutral"), HFModel.load(folder / "rest"))
    return HFModel.load(folder)


def _score(model, records: Sequence[HFRecord], out: Path, batch_size: int, threshold: float,
           extra: Mapping[str, Any] | None) -> dict[str, Any]:
    """Predict and write the report; ``{"predictions", "metrics", "files", "skipped"}`` (see :func:`evaluate`)."""
    import pandas as pd

    spec = model.spec
    report = CorpusReport("hf-predict", "")
    prepared = model.prepare(records, report)
    kept = prepared.records
    if report.n_skipped:
        log.warning("records skipped at prediction: %s", report.summary())
    outputs = model.predict(prepared, batch_size)
    metrics: dict[str, Any] = {
        "family": "hf", "task": spec.task, "modality": spec.modality,
        "fusion": spec.fusion if spec.modality == "multimodal" else None,
        "speech_pooling": ("mean" if spec.speech_backbone == "whisper" else spec.speech_pooling)
        if spec.uses_speech else None,
        "speech_backbone": spec.speech_backbone if spec.uses_speech else None,
        "labels": spec.labels, "multilabel": spec.multilabel, "n": len(kept),
        "skipped": report.to_dict()["skipped"], **(extra or {})}
    columns: dict[str, Any] = {"labels": [";".join(r.labels) for r in kept]}
    if kept and "va" in outputs:
        truth = va_targets(kept)
        columns.update(valence=truth[:, 0], arousal=truth[:, 1], valence_pred=outputs["va"][:, 0],
                       arousal_pred=outputs["va"][:, 1])
        metrics["regression"] = regression_metrics(truth, outputs["va"])
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    if kept and "emotion" in outputs:
        probs = outputs["emotion"]
        names = np.asarray(spec.labels)
        columns["predicted_set"] = [";".join(names[row > 0]) for row in predicted_sets(probs, threshold)]
        labelled = all(r.labels and set(r.labels) <= set(spec.labels) for r in kept)
        targets = label_targets(kept, spec.labels) if labelled else None
        written = write_report(out, probs, spec.labels, [r.id for r in kept],
                               top_label_codes(targets, probs) if labelled else None, family="hf",
                               sources=[r.audio_path for r in kept], columns=columns,
                               title=f"{spec.modality} {spec.task} (top-1)", files={"metrics": None})
        table, files = written["predictions"], dict(written["files"])
        if labelled:
            emotion = {k: v for k, v in written["metrics"].items() if k not in ("labels", "family")}
            if spec.multilabel:
                emotion.update(multilabel_metrics(targets, probs, threshold))
            metrics.update({**emotion, "n": len(kept), "emotion": emotion})
    else:
        table = pd.DataFrame({"id": [r.id for r in kept], "source": [r.audio_path for r in kept], **columns})
        atomic_write_bytes(out / REPORT_FILES["predictions"], table.to_csv(index=False).encode("utf-8"))
        files["predictions"] = str(out / REPORT_FILES["predictions"])
    files["metrics"] = str(save_json(metrics, out / REPORT_FILES["metrics"]))
    return {"predictions": table, "metrics": metrics, "files": files, "skipped": report.to_dict()["skipped"]}


def evaluate(model, records: Sequence[HFRecord], out: str | Path, batch_size: int | None = None,
             threshold: float | None = None, extra: Mapping[str, Any] | None = None) -> dict:
    """Predict ``records`` and write the report under ``out``.

    Files: ``predictions.csv`` (``id``, ``source`` (the audio), then for an emotion head ``true``,
    ``predicted``, ``predicted_index``, ``confidence``, ``labels`` (the record's, ``;``-joined), the
    valence/arousal columns of a regression head (``valence``, ``arousal``, ``valence_pred``,
    ``arousal_pred``), ``predicted_set`` (labels at or above ``threshold``, and the top one) and
    ``p_<label>``), ``metrics.json`` (see the module docstring) and, for an emotion head when every record's
    labels are known, ``confusion_matrix.png`` (top-1). Unusable records are skipped and counted
    (``metrics['skipped']``).

    Args:
        model: from :func:`load_checkpoint` or training.
        records: the records to predict; their order is kept.
        batch_size: records per prediction batch (default ``train.valid_batch_size`` of :class:`HFConfig`).
        threshold: probability at which a label joins a multi-label prediction (default ``train.threshold``).
        extra: more keys for ``metrics.json`` (training adds the fold, the loss, ``n_train``, …).

    Returns:
        the metrics dict (as written to ``metrics.json``).
    """
    defaults = HFConfig().train
    return _score(model, records, Path(out), batch_size or defaults.valid_batch_size,
                  defaults.threshold if threshold is None else threshold, extra)["metrics"]


def checkpoint_config(checkpoint: str | Path, overrides: Mapping[str, Any] | None = None
                      ) -> tuple[HFConfig, RunManifest | None]:
    """The config a checkpoint was trained with, from the ``run.json`` beside it, with ``overrides``
    (``{"train.fold": 2, ...}``; ``None`` values are ignored, :func:`cnnrnn.config.override`). A checkpoint
    written before run manifests has none: then the :class:`HFConfig` defaults (5 contiguous folds, fold 0,
    seed 42), as ``cnnrnn hf predict`` always assumed.

    Returns:
        ``(config, manifest or None)``.

    Raises:
        ManifestError: the manifest is of another family or of a newer schema (the message names the field).
        ConfigError: an override is out of range (e.g. a fold outside the folds).
    """
    path = find_manifest(checkpoint)
    manifest = read_manifest(path, families=["hf"]) if path is not None else None
    cfg = load_config(manifest.config if manifest is not None else None)
    return override(cfg, dict(overrides or {})), manifest


def check_split(split: Mapping[str, Any], manifest: RunManifest | None) -> None:
    """Warn (log ``cnnrnn.hf``) when ``split`` is not the split the run was trained and tested with: records of
    the training folds may then be scored."""
    if manifest is None or not manifest.split:
        return
    trained = {k: manifest.split.get(k) for k in SPLIT_KEYS}
    asked = {k: split.get(k) for k in SPLIT_KEYS}
    if trained == asked:
        return
    diff = ", ".join(f"{k} {asked[k]!r} (trained: {trained[k]!r})" for k in SPLIT_KEYS if asked[k] != trained[k])
    log.warning("the split asked for differs from the one this run was trained with in %s: %s; records of the "
                "training folds may be scored, and their metrics would overstate the model",
                manifest.folder / "run.json" if manifest.folder else "run.json", diff)


def predict_fold(checkpoint: str | Path, out: str | Path, *, input_csv: str | Path | None = None,
                 root: str | Path | None = None, task: str | None = None, modality: str | None = None,
                 all_records: bool = False, overrides: Mapping[str, Any] | None = None) -> dict:
    """``cnnrnn hf predict``: predict the test part of a run's fold (or every record) and write the report.

    The split (scheme, folds, fold, seed), the label column, the batch size and the threshold come from the
    run's ``run.json`` (:func:`checkpoint_config`) unless ``overrides`` change them; a split other than the
    trained one is allowed, with a warning (:func:`check_split`).

    Args:
        checkpoint: ``<run>/checkpoint``. out: the report folder.
        input_csv, root: the records, as for training (``new_data.csv`` or a corpus folder).
        task, modality: refuse a checkpoint trained for something else.
        all_records: predict every record instead of the fold's test part.
        overrides: config keys (``train.fold``, ``train.folds``, ``train.fold_scheme``, ``train.seed``,
            ``train.threshold``, ``train.valid_batch_size``, ``data.corpus``, ``data.label_column``).

    Returns:
        the metrics (see :func:`evaluate`).

    Raises:
        HFCheckpointError, ManifestError, ConfigError, SplitError, HFDataError, CorpusError.
    """
    cfg, manifest = checkpoint_config(checkpoint, overrides)
    model = load_checkpoint(checkpoint, task, modality)
    records = read_records(input_csv, root, cfg.data)[0]
    if not all_records:
        split = split_spec(cfg.train)
        check_split(split, manifest)
        records = [records[i] for i in fold_split(records, split)[1]]
    return evaluate(model, records, out, cfg.train.valid_batch_size, cfg.train.threshold)


def _checkpoint_of(models: Sequence[str | Path], manifest: RunManifest | None) -> Path:
    from .models import CHECKPOINT_DIR, SPEC_FILE

    if len(models) != 1:
        raise ValueError(f"an HF run predicts with one checkpoint; got {len(models)} models")
    path = Path(models[0])
    for candidate in (path, path / CHECKPOINT_DIR):
        if (candidate / SPEC_FILE).is_file() and not is_temporary(candidate):
            return candidate
    for candidate in (manifest.checkpoint_paths() if manifest is not None else []):
        if (candidate / SPEC_FILE).is_file():
            return candidate
    raise ValueError(f"{path}: neither an HF checkpoint folder (with {SPEC_FILE}) nor an HF run folder "
                     f"(with {CHECKPOINT_DIR}/{SPEC_FILE})")


def predict_run(models: Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest: RunManifest | None = None, progress: bool = True, **options: Any) -> dict:
    """The family predict contract (``cnnrnn predict --model RUN --input SOURCE``): predict every record.

    Args:
        models: one HF run folder (``run.json`` + ``checkpoint/``) or checkpoint folder.
        source: a ``new_data.csv`` (written by ``cnnrnn kemdy-labels``; rows without a label are predicted
            too) or a KEMDy corpus folder (read with the run's ``data.corpus`` reader).
        out_dir: report folder; default ``<run>/predictions``.
        manifest: the run's ``run.json`` (``None``: looked up beside the checkpoint; old runs have none).
        options: ``batch_size`` and ``threshold`` (default: the run's config), :data:`PREDICT_OPTIONS`;
            ``labels``, ``config``, ``resize`` and the rest do not apply (``cnnrnn predict`` refuses them).

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {kind: path}, "skipped": {reason: [ids]}}``.

    Raises:
        ValueError: ``source`` is neither a ``.csv`` file nor a folder; not one HF checkpoint.
        FileNotFoundError: ``source`` does not exist.
    """
    checkpoint = _checkpoint_of(models, manifest)
    if manifest is None:
        found = find_manifest(checkpoint)
        manifest = read_manifest(found, families=["hf"]) if found is not None else None
    cfg = load_config(manifest.config if manifest is not None else None)
    source = Path(source)
    if source.is_dir():
        records, report = read_records(root=source, data=cfg.data)
    elif source.is_file() and source.suffix.lower() == ".csv":
        records, report = read_new_data(source, cfg.data.label_column, keep_unlabelled=True)
    elif not source.exists():
        raise FileNotFoundError(f"--input {source} not found")
    else:
        raise ValueError(f"--input {source}: an HF run predicts a new_data.csv (from `cnnrnn kemdy-labels`) "
                         "or a KEMDy corpus folder")
    run_dir = manifest.folder if manifest is not None and manifest.folder else checkpoint.parent
    out = claim_predictions(out_dir if out_dir is not None else run_dir / "predictions")
    threshold = options.get("threshold")
    result = _score(load_checkpoint(checkpoint), records, out, options.get("batch_size") or cfg.train.valid_batch_size,
                    cfg.train.threshold if threshold is None else threshold, None)
    result["skipped"] = {**report.to_dict()["skipped"], **result["skipped"]}
    if not {"emotion", "regression"} & set(result["metrics"]):
        result["metrics"] = None  # no true labels: nothing was scored
    return result
