"""DCNN-BLSTMwA training in two steps (Zhang et al., Frontiers in Physiology 2021; the DCNN-BLSTMWA code).

* step 1, :func:`finetune`: the DCNN (:mod:`cnnrnn.models.dcnn`) classifies log-mel segments
  (:mod:`cnnrnn.dcnn.data`), each carrying its utterance's label. Paper: Adam 1e-4, batch 128, 30 epochs,
  learning rate ``learning_rate × 0.695^epoch``. Writes ``<log_root>/<name>/``: ``dcnn.h5``, ``dcnn.json``
  (labels + feature settings), ``run.json``, ``log_finetune.out``, ``history_finetune.csv``,
  ``metrics_finetune.json`` (``{"segments": {...}, "utterances": {...}}``), ``predictions_finetune.csv``
  (test utterances) and ``confusion_finetune_segments.png`` / ``confusion_finetune_utterances.png``
  (utterance = mean of its segments' probabilities).
* step 2, :func:`train`: the fine-tuned DCNN's penultimate-layer features of every segment, in utterance
  order and padded to the longest utterance, train the BiLSTM-attention model
  (:mod:`cnnrnn.models.blstm_attention`). Paper: Adam 5e-6, batch 16, 30 epochs, decay 0.59 per epoch.
  Writes ``blstm_attention.h5``, ``blstm_attention.json`` (DCNN path, labels, feature settings), ``run.json``,
  ``log_train.out``, ``history_train.csv``, ``metrics_train.json`` (``{"utterances": {...}}``),
  ``predictions_train.csv`` and ``confusion_train.png``.

Recipe options (not in the paper; see :mod:`cnnrnn.dcnn.config`): ``data.normalization`` (``global`` /
``speaker`` statistics are fitted in step 1, global ones on the train filelist only, per speaker on each
speaker's own audio of both filelists, written to ``normalization.json`` and reused by step 2 and prediction),
``model.backbone: compact``, ``yamnet`` (with ``data.kind: yamnet``: YAMNet's log-mel patches, see
:mod:`cnnrnn.dcnn.data`) or ``whisper`` (with ``data.kind: whisper``: the frozen Whisper encoder's frames, computed
once per clip; step 1 trains a small head on each segment's frames, optionally fine-tuning the encoder's top
blocks), SpecAugment on the step-1 segments, and ``train.selection: inner`` (each step keeps
the epoch of best accuracy on one held-out *training* speaker, :func:`cnnrnn.splits.inner_split`, instead of the
last epoch; the test filelist is then only scored).

Scores go through :func:`cnnrnn.reports.write_report`; each step's ``run.json``
(:func:`cnnrnn.runs.write_manifest`, family ``dcnn``, ``extra.step`` ``finetune`` or ``train``) lets
``cnnrnn predict --model <run folder>`` use it. Unusable audio (missing, unreadable, silent, shorter than
one segment) is skipped, counted and reported; an emotion id outside the label set is an error. A rerun
retrains and overwrites the run's files (logs are appended to).

Each step claims its run folder first (:func:`claim_run`: a new or empty folder, or a DCNN run, kind
:data:`RUN_KIND`) and writes it under the lock of its step (:func:`cnnrnn.outputs.writing_stage`): a second
``finetune`` (or ``train``) of the same run is refused while the first runs, and temporaries a killed save left are
removed (and counted) when the step starts again. Each step records the content fingerprint of its inputs
(:func:`step_inputs`: the filelists' rows, every wav's content, the labels, the feature settings and, for step 2,
the DCNN checkpoint) in ``run.json`` (``inputs``), so that ``run-folds`` never resumes a step made from other audio
or labels; step 2 refuses a DCNN fine-tuned on other label names than its filelists'.

With ``distribute="multi-worker"`` (``--distribute multi-worker``, :mod:`cnnrnn.distribute`) every worker runs the
step on the same filelists and run folder: the chief alone claims the folder, takes the lock and writes; the others
compute the same in a scratch folder they remove and return the same report; no worker returns before the chief has
written (:func:`cnnrnn.training.on_every_worker`), so that step 2 may follow.
"""
from __future__ import annotations

import json
import logging
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import load_json, save_json, save_model_h5
from ..config import ConfigError
from ..normalize import count_sources, norm_source
from ..reports import write_report
from ..runs import write_manifest
from ..splits import inner_split
from .. import training
from .config import (DCNN_FILE, DCNN_META, FAMILY, MODEL_FILE, MODEL_META, NORM_FILE, DcnnConfig, FeatureConfig,
                     read_norm_stats, read_sidecar)
from .data import (SegmentSet, labels_beside, load_features, merged_skips, normalization_stats, resolve_labels,
                   segment_dataset, utterance_features, utterance_mean)

log = logging.getLogger("cnnrnn.dcnn")

#: The kind of folder a DCNN step's run (``<log_root>/<name>``) is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "dcnn run"
#: The two steps, each the name of its lock; the files that tell a run written before folder markers existed.
STEP_NAMES = ("finetune", "train")
RUN_FILES = (DCNN_FILE, DCNN_META, MODEL_FILE, MODEL_META, "log_finetune.out", "log_train.out",
             "metrics_finetune.json", "metrics_train.json")
#: Every file the two steps write in a run folder (a killed write of one of them leaves ``.name.XXXX.tmp``).
WRITTEN_FILES = (*RUN_FILES, NORM_FILE, "run.json", "history_finetune.csv", "history_train.csv",
                 "predictions_finetune.csv", "predictions_train.csv", "confusion_finetune_segments.png",
                 "confusion_finetune_utterances.png", "confusion_train.png")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a DCNN run written before folder markers existed: a checkpoint, its sidecar, a
    step's log or metrics (:data:`RUN_FILES`; a step that failed has at least its log)."""
    return any((folder / n).is_file() for n in RUN_FILES)


def claim_run(run_dir: str | Path, write: bool = True) -> Path:
    """Claim ``run_dir`` as a DCNN run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already;
    with ``write`` false only check it (nothing is created or written: a worker that is not the chief).

    Raises:
        cnnrnn.outputs.OutputFolderError: ``run_dir`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``run_dir`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(run_dir, RUN_KIND, recognise=is_run_folder, write=write)


def step_inputs(cfg: DcnnConfig, labels: Sequence[str], dcnn_path: str | Path | None = None,
                digests: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The content fingerprint of what a step fits on: each row of both filelists (its wav's stem, speaker, emotion
    id and the wav's content fingerprint, :func:`cnnrnn.outputs.file_digest`), the label names, the feature
    settings and, for step 2, the DCNN checkpoint's fingerprint. Paths and times play no part.

    Args:
        cfg: the step's config (its filelists). labels: the label names the ids index.
        dcnn_path: step 2's DCNN checkpoint.
        digests: ``{wav path: sha1}`` shared between calls (the folds of one corpus hash each wav once).

    Returns:
        ``{"sha1", "n"}`` (and ``"dcnn"``: the checkpoint's fingerprint).

    Raises:
        FileNotFoundError, FilelistError: a filelist is missing or malformed (as
            :func:`cnnrnn.dcnn.data.load_features`).
    """
    from ..outputs import digest, file_digest
    from .filelists import read_filelist

    memo: dict[str, str | None] = {} if digests is None else digests

    def audio(path: str) -> str | None:
        if path not in memo:
            try:
                memo[path] = file_digest(path)
            except OSError:
                memo[path] = None
        return memo[path]

    rows = {}
    for split in ("train", "test"):
        entries, _ = read_filelist(getattr(cfg.data, f"filelist_{split}"), labels, root=cfg.data.root,
                                   check_audio=False)
        rows[split] = [[Path(e.wavpath).stem, e.speaker_id, e.emotion_id, audio(e.wavpath)] for e in entries]
    parts: list[Any] = [rows, list(labels), cfg.data.features().settings()]
    out: dict[str, Any] = {"n": sum(len(r) for r in rows.values())}
    if dcnn_path is not None:
        out["dcnn"] = file_digest(dcnn_path)
        parts.append(out["dcnn"])
    return {"sha1": digest(parts), **out}


def _other_step_not_running(run_dir: Path, step: str) -> None:
    """Refuse to write ``step`` while the other step writes the same folder (both write its ``run.json``)."""
    from ..outputs import check_not_locked

    other = STEP_NAMES[1 - STEP_NAMES.index(step)]
    check_not_locked(run_dir, other, f"run step {step} in {run_dir}")


@contextmanager
def _run_log(path: Path):
    """Yield ``say(msg, *args)``: logs to ``path`` (appended) and to the ``cnnrnn.dcnn`` logger."""
    file_log = logging.getLogger(f"cnnrnn.dcnn.file.{path}")
    file_log.propagate = False
    file_log.setLevel(logging.INFO)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    file_log.addHandler(handler)

    def say(msg: str, *args) -> None:
        file_log.info(msg, *args)
        log.info(msg, *args)

    try:
        yield say
    finally:
        file_log.removeHandler(handler)
        handler.close()


def _callbacks(cfg: DcnnConfig, history_csv: Path, say):
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
            lr_now = float(np.asarray(self.model.optimizer.learning_rate))  # a MirroredVariable on several workers
            say("epoch %d/%d lr %.3g %s", epoch + 1, cfg.train.epochs, lr_now, values)

    lr, decay = cfg.train.learning_rate, cfg.train.lr_decay
    return [keras.callbacks.LearningRateScheduler(lambda epoch: lr * decay ** epoch),
            keras.callbacks.CSVLogger(str(history_csv)), EpochLog()]


def _compile(model, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def _report(run_dir: Path, step: str, labels: Sequence[str], levels: dict[str, tuple], say) -> dict:
    """Score each ``{level: (proba, y_true, ids, sources)}`` with :func:`cnnrnn.reports.write_report`: one
    confusion PNG per level (``confusion_<step>_<level>.png``, or ``confusion_<step>.png`` for a single
    level), ``predictions_<step>.csv`` of the utterances, and ``metrics_<step>.json`` ``{level: metrics}``."""
    out = {}
    for level, (proba, y_true, ids, sources) in levels.items():
        png = f"confusion_{step}_{level}.png" if len(levels) > 1 else f"confusion_{step}.png"
        report = write_report(run_dir, proba, labels, ids, y_true, family=FAMILY, sources=sources,
                              extra={"step": step, "level": level, "confusion_png": str(run_dir / png)},
                              title=f"{run_dir.name} {step} ({level})",
                              files={"metrics": None, "confusion": png,
                                     "predictions": f"predictions_{step}.csv" if level == "utterances" else None})
        m = report["metrics"]
        say("%s %s: UA %.4f WA %.4f F1-macro %.4f (n %d)", step, level, m["ua"], m["wa"], m["f1_macro"], m["n"])
        out[level] = m
    save_json(out, run_dir / f"metrics_{step}.json")
    return out


def split_spec(cfg: DcnnConfig) -> dict[str, Any]:
    """The split a run trained on, for its manifest: the two filelists and, when they are a pair written by
    :func:`cnnrnn.dcnn.filelists.prepare_filelists` (``kfold/fold{k}_test.txt`` or ``loso/{speaker}_test.txt``
    beside its ``prepare_report.json``), the fold scheme, number of folds, 0-based fold and seed."""
    spec: dict[str, Any] = {"scheme": "filelists", "folds": None, "fold": None, "seed": None,
                            "filelist_train": cfg.data.filelist_train, "filelist_test": cfg.data.filelist_test}
    test = Path(cfg.data.filelist_test)
    report_path = test.parent.parent / "prepare_report.json"
    if not report_path.is_file():
        return spec
    try:
        report = load_json(report_path)
        fold = re.fullmatch(r"fold(\d+)_test\.txt", test.name)
        if test.parent.name == "kfold" and fold:
            kfold = report["kfold"]
            spec.update(scheme="speaker" if kfold["by_speaker"] else "stratified", folds=kfold["n_folds"],
                        fold=int(fold.group(1)) - 1, seed=kfold["seed"])
        elif test.parent.name == "loso" and test.name.endswith("_test.txt"):
            speakers = [f["name"] for f in report["loso"]]
            speaker = test.name[:-len("_test.txt")]
            spec.update(scheme="loso", folds=len(speakers), speaker=speaker,
                        fold=speakers.index(speaker) if speaker in speakers else None)
    except (ValueError, KeyError, TypeError) as exc:  # a hand-made report: keep the filelists only
        log.warning("%s: cannot read the fold scheme (%s)", report_path, exc)
    return spec


def _manifest(cfg: DcnnConfig, step: str, labels: Sequence[str], features: FeatureConfig, checkpoint: Path,
              inputs: dict[str, Any], **extra) -> Path:
    from ..outputs import read_inputs, record_inputs

    record_inputs(cfg.run_dir, step, inputs)
    return write_manifest(cfg.run_dir, FAMILY, cfg.to_dict(), labels, split=split_spec(cfg),
                          input_spec=features.input_spec(), checkpoints=[checkpoint], extra={"step": step, **extra},
                          inputs=read_inputs(cfg.run_dir))


def _load_sets(cfg: DcnnConfig, labels: Sequence[str], features: FeatureConfig, progress: bool,
               stats=None, fit: bool = True) -> tuple[dict[str, SegmentSet], Any]:
    """The two filelists' segments, normalised with ``stats`` (or, with ``fit``, with statistics fitted here:
    :func:`cnnrnn.dcnn.data.normalization_stats`), and those statistics."""
    sets = {split: load_features(getattr(cfg.data, f"filelist_{split}"), labels, features, cfg.data.root, progress)
            for split in ("train", "test")}
    if fit:
        stats = normalization_stats(sets["train"], [sets["test"]], features)
    return {split: s.segmented(features, stats) for split, s in sets.items()}, stats


def _normalization(features: FeatureConfig, stats, sets: dict[str, SegmentSet], run_dir: Path, say) -> dict:
    """Write ``normalization.json`` (when there are statistics) and say what each split's utterances got:
    ``{"mode", "file", split: {source: n}}`` (:func:`cnnrnn.normalize.norm_source`)."""
    mode = features.normalization
    if mode in ("speaker", "global") and stats is None:
        raise ConfigError(f"data.normalization {mode} needs the statistics the segments were normalised with")
    out: dict[str, Any] = {"mode": mode, "file": None}
    if stats is not None:
        out["file"] = str(save_json(stats.to_dict(), run_dir / NORM_FILE))
    for split, s in sets.items():
        out[split] = count_sources(norm_source(sp or None, stats, mode) for sp in (s.speakers or [""] * len(s.paths)))
    if mode != "none":
        say("normalization %s: %s%s", mode, {k: v for k, v in out.items() if k not in ("mode", "file")},
            " (the test speakers' statistics come from their own unlabelled audio: transductive)"
            if mode == "speaker" else "")
    return out


def _selection(cfg: DcnnConfig, train_labels: np.ndarray, speakers: Sequence[str], say):
    """``(fit_idx, select_idx, info)``: with ``train.selection: inner`` the utterances of the train filelist
    the step fits on and those (one held-out training speaker) that choose its epoch
    (:func:`cnnrnn.splits.inner_split`); with ``last``, ``(all, None, info)``."""
    every = np.arange(len(train_labels))
    if cfg.train.selection != "inner":
        return every, None, {"selection": "last"}
    fit, select = inner_split(every, train_labels, list(speakers) or None, cfg.train.seed)
    held = sorted({speakers[i] for i in select}) if speakers else []
    info = {"selection": "inner", "n_fit": int(len(fit)), "n_select": int(len(select)),
            "select_speakers": held if len(held) == 1 else None}
    say("selection inner: %d utterances fit, %d choose the epoch (%s)", len(fit), len(select),
        f"held-out training speaker {held[0]}" if len(held) == 1 else "a stratified fifth of the train filelist")
    return fit, select, info


def _best_epoch(cfg: DcnnConfig):
    """With ``selection: inner``, the best-epoch selection (:class:`cnnrnn.training.BestEpoch`) that puts the weights
    of the epoch of best ``val_accuracy`` (the first of equals) back in the model at the end of training, with a
    patience of every epoch (training never stops early); else ``None``."""
    from ..training import BestEpoch

    if cfg.train.selection != "inner":
        return None
    return BestEpoch("val_accuracy", "max", patience=cfg.train.epochs, restore=True)


def _precise_bn(cfg: DcnnConfig, x_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, image_size):
    """With ``model.precise_bn``, the step-1 callbacks ``(PreciseBN, ValidationScores)``
    (:mod:`cnnrnn.training`): the batch-norm statistics recomputed from the fit segments after every epoch, then the
    selection segments scored again (``val_loss``/``val_accuracy`` in the epoch's logs, read by the callbacks after
    them); else ``(None, None)``."""
    from ..training import PreciseBN, ValidationScores

    if not cfg.model.precise_bn:
        return None, None

    def score(model) -> dict[str, float]:
        scores = model.evaluate(segment_dataset(x_val, y_val, image_size, 64), verbose=0, return_dict=True)
        return {"val_loss": float(scores["loss"]), "val_accuracy": float(scores["accuracy"])}

    return PreciseBN(lambda: segment_dataset(x_fit, None, image_size, 64)), ValidationScores(score)


def _ids(paths: Sequence[str]) -> list[str]:
    return [Path(p).stem for p in paths]


def _run_step(cfg: DcnnConfig, step: str, distribute: str | None, timeout_s: float | None, work) -> dict:
    """``work(cfg, run_dir)`` under the lock of ``step`` in the claimed run folder; with ``multi-worker`` on every
    worker, the chief alone writing (:func:`cnnrnn.training.on_every_worker`; another worker's ``cfg`` points to its
    scratch folder)."""
    from ..config import override
    from ..distribute import worker_is_chief
    from ..outputs import writing_stage

    chief = worker_is_chief(distribute)
    run_dir = claim_run(cfg.run_dir, write=chief)
    if chief:  # the chief checks the locks for all
        _other_step_not_running(run_dir, step)
    def step_in(folder: Path) -> dict:  # another worker's scratch folder: cfg's run folder moved there
        return work(cfg if folder == run_dir else override(cfg, {"train.log_root": str(folder.parent)}), folder)

    return training.on_every_worker(
        run_dir, step_in, distribute=distribute, timeout_s=timeout_s, chief=chief,
        lock=lambda: writing_stage(run_dir, step, [(run_dir, WRITTEN_FILES)]))


def _predict(model, data, batch_size: int, distribute: str | None) -> np.ndarray:
    """Keras ``predict`` on one machine; under ``multi-worker`` every batch on this worker
    (:func:`cnnrnn.training.predict_here`: Keras' would split them between the workers)."""
    from ..training import predict_here

    if distribute:
        return predict_here(model, data, batch_size)
    return model.predict(data, verbose=0, **({"batch_size": batch_size} if isinstance(data, np.ndarray) else {}))


def finetune(cfg: DcnnConfig, progress: bool = True, verbose: int = 2,
             sets: dict[str, SegmentSet] | None = None, stats=None, inputs: dict[str, Any] | None = None,
             distribute: str | None = None, timeout_s: float | None = None) -> dict:
    """Step 1: fine-tune the DCNN on segments; see the module docstring for the files written.

    Args:
        cfg: the config (:func:`cnnrnn.dcnn.config.load_dcnn_config`).
        progress: progress bars while computing segments. verbose: Keras ``fit`` verbosity.
        sets: ``{'train': SegmentSet, 'test': SegmentSet}`` already computed (benchmarks reuse one
            corpus-wide set across folds); default: the filelists' segments, normalised with statistics fitted
            here (``data.normalization`` ``global`` / ``speaker``).
        stats: with ``sets`` and ``global`` / ``speaker`` normalisation: the :class:`cnnrnn.normalize.NormStats`
            the sets were normalised with (stored in the run for prediction).
        inputs: the fingerprint of the step's inputs (:func:`step_inputs`), recorded in ``run.json``; default:
            computed here.
        distribute: ``None`` (this machine) or ``multi-worker`` (:func:`cnnrnn.training.get_strategy`; see the
            module docstring). timeout_s: multi-worker: seconds to wait for a missing or lost worker.

    Returns:
        ``{'run_dir', 'checkpoint', 'metrics': {'segments': {...}, 'utterances': {...}}, 'skipped',
        'n_segments', 'normalization', 'selection'}`` (``selection``: ``last`` or ``inner`` with the number of
        utterances fitted / selecting, the held-out speaker and the ``best_epoch``).

    Raises:
        FileNotFoundError, FilelistError, ConfigError, WeightsError: bad inputs (see the helpers).
        cnnrnn.outputs.OutputFolderError: the run folder holds other files or is another command's (nothing was
            written).
        cnnrnn.outputs.FolderInUseError: another process runs a step in this run folder.
        cnnrnn.distribute.ClusterError: ``multi-worker`` without a usable cluster.
    """
    return _run_step(cfg, "finetune", distribute, timeout_s,
                     lambda c, run_dir: _finetune(c, run_dir, progress, verbose, sets, stats, inputs, distribute))


def _finetune(cfg: DcnnConfig, run_dir: Path, progress: bool, verbose: int, sets: dict[str, SegmentSet] | None,
              stats, inputs: dict[str, Any] | None, distribute: str | None = None) -> dict:
    from ..models.dcnn import build_dcnn

    features = cfg.data.features()
    labels = resolve_labels(cfg)
    with _run_log(run_dir / "log_finetune.out") as say:
        say("step 1 (fine-tune DCNN) %s: config %s", cfg.train.name, json.dumps(cfg.to_dict()))
        if sets is None:
            sets, stats = _load_sets(cfg, labels, features, progress)
        normalization = _normalization(features, stats, sets, run_dir, say)
        train, test = sets["train"], sets["test"]
        x_test, y_test = np.concatenate(test.segments), np.repeat(test.labels, test.counts)
        fit_idx, select_idx, selection = _selection(cfg, train.labels, train.speakers, say)
        fit = train.subset(fit_idx) if select_idx is not None else train
        x_train, y_train = np.concatenate(fit.segments), np.repeat(fit.labels, fit.counts)
        if select_idx is None:
            x_val, y_val = x_test, y_test
        else:
            val = train.subset(select_idx)
            x_val, y_val = np.concatenate(val.segments), np.repeat(val.labels, val.counts)
        skipped = merged_skips(sets.values())
        say("fit %d utterances / %d segments, test %d / %d, skipped %s", len(fit.paths), len(x_train),
            len(test.paths), len(x_test), {k: len(v) for k, v in skipped.items()})
        _seed(cfg.train.seed)
        m = cfg.model
        with training.get_strategy(distribute).scope():
            model = build_dcnn(features.input_shape, len(labels), m.backbone, m.weights, m.width, m.fc_units,
                               m.dropout, m.bn_momentum, m.filters, m.spec_augment(cfg.train.seed), m.freeze_blocks,
                               whisper={"block": m.whisper_block, "mix": m.whisper_mix,
                                        "trainable_blocks": m.trainable_blocks} if m.backbone == "whisper" else None)
            _compile(model, cfg.train.learning_rate)
        size, bs = features.resize, cfg.train.batch_size
        best, (precise, rescored) = _best_epoch(cfg), _precise_bn(cfg, x_train, x_val, y_val, size)
        training.fit(model, segment_dataset(x_train, y_train, size, bs, shuffle=True, seed=cfg.train.seed),
                     epochs=cfg.train.epochs, callbacks=_callbacks(cfg, run_dir / "history_finetune.csv", say),
                     best=best, precise_bn=precise, validation=rescored, verbose=verbose, shuffle=False,
                     validation_data=None if precise else segment_dataset(x_val, y_val, size, bs))
        selection["best_epoch"] = best.best_epoch if best else cfg.train.epochs
        if best:
            say("selection inner: kept epoch %d (val_accuracy %.4f)", selection["best_epoch"], best.best)
        checkpoint = save_model_h5(model, run_dir / DCNN_FILE)
        save_json({"labels": labels, "features": features.settings(), "config": cfg.to_dict()}, run_dir / DCNN_META)
        proba = _predict(model, segment_dataset(x_test, None, size, bs), bs, distribute)
        seg_ids = [f"{stem}#{k}" for stem, n in zip(_ids(test.paths), test.counts) for k in range(n)]
        metrics = _report(run_dir, "finetune", labels, {
            "segments": (proba, y_test, seg_ids, None),
            "utterances": (utterance_mean(proba, test.counts), test.labels, _ids(test.paths), test.paths)}, say)
        _manifest(cfg, "finetune", labels, features, checkpoint, inputs or step_inputs(cfg, labels),
                  sidecar=DCNN_META, selection=selection, normalization=normalization)
        say("saved %s", checkpoint)
    return {"run_dir": str(run_dir), "checkpoint": str(checkpoint), "metrics": metrics,
            "skipped": skipped, "n_segments": {"train": len(x_train), "test": len(x_test)},
            "normalization": normalization, "selection": selection}


def dcnn_checkpoint(cfg: DcnnConfig) -> Path:
    """The step-1 checkpoint step 2 uses: ``<log_root>/<finetune_name>/dcnn.h5``.

    Raises:
        ConfigError: ``train.finetune_name`` is not set.
    """
    if not cfg.train.finetune_name:
        raise ConfigError("train.finetune_name is not set: name the step-1 run (or pass --dcnn)")
    return Path(cfg.train.log_root) / cfg.train.finetune_name / DCNN_FILE


def train(cfg: DcnnConfig, dcnn_path: str | Path | None = None, progress: bool = True, verbose: int = 2,
          sets: dict[str, SegmentSet] | None = None, inputs: dict[str, Any] | None = None,
          distribute: str | None = None, timeout_s: float | None = None) -> dict:
    """Step 2: BiLSTM-attention on the fine-tuned DCNN's segment features; see the module docstring.

    Args:
        cfg: the config.
        dcnn_path: the step-1 ``dcnn.h5`` (default :func:`dcnn_checkpoint`); its ``dcnn.json`` gives the
            labels and the feature settings, which must match ``cfg.data``.
        sets: precomputed segments, as for :func:`finetune`, normalised with the DCNN run's statistics
            (its ``normalization.json``, which this step copies into its run for prediction).
        inputs: the fingerprint of the step's inputs (:func:`step_inputs` with the DCNN), recorded in
            ``run.json``; default: computed here.
        distribute, timeout_s: as :func:`finetune` (with ``multi-worker``, a global batch of ``train.batch_size``
            utterances, split between the workers).

    Returns:
        ``{'run_dir', 'checkpoint', 'metrics': {'utterances': {...}}, 'skipped', 'max_segments',
        'normalization', 'selection'}``.

    Raises:
        ConfigError: the feature settings differ from the DCNN's, or the filelists' label names differ from
            those the DCNN was fine-tuned on.
        FileNotFoundError, FilelistError, CheckpointError: bad inputs.
        cnnrnn.outputs.OutputFolderError: the run folder holds other files or is another command's (nothing was
            written).
        cnnrnn.outputs.FolderInUseError: another process runs a step in this run folder, or fine-tunes the DCNN.
        cnnrnn.distribute.ClusterError: ``multi-worker`` without a usable cluster.
    """
    from ..distribute import worker_is_chief
    from ..outputs import check_not_locked

    dcnn_path = Path(dcnn_path) if dcnn_path else dcnn_checkpoint(cfg)
    if worker_is_chief(distribute):
        check_not_locked(dcnn_path.parent, "finetune", f"train on the DCNN {dcnn_path}")
    labels, features, _ = read_sidecar(dcnn_path, DCNN_META)
    mine = cfg.data.features().settings()
    differ = {k: (mine[k], v) for k, v in features.settings().items() if mine[k] != v}
    if differ:
        raise ConfigError(f"feature settings differ from the fine-tuned DCNN {dcnn_path} "
                          f"(key: (this config, DCNN)): {differ}")
    _check_labels(cfg, labels, dcnn_path)
    return _run_step(cfg, "train", distribute, timeout_s, lambda c, run_dir: _train(
        c, run_dir, dcnn_path, labels, features, progress, verbose, sets, inputs, distribute))


def _check_labels(cfg: DcnnConfig, labels: Sequence[str], dcnn_path: Path) -> None:
    """Refuse step 2 when the labels file of its filelists (``data.labels_file``, or the ``labels.json`` beside the
    train filelist) names other labels than the DCNN was fine-tuned on: its emotion ids would mean other classes."""
    source = cfg.data.labels_file or labels_beside(cfg.data.filelist_train)
    if not source:
        return
    mine = resolve_labels(cfg)
    if list(mine) != list(labels):
        raise ConfigError(f"the labels of {source} {list(mine)} differ from those the DCNN {dcnn_path} was fine-tuned "
                          f"on {list(labels)}: fine-tune it again on these filelists")


def _fit_input(x: np.ndarray, y: np.ndarray, val: tuple, batch_size: int, seed: int, distribute: str | None):
    """Step 2's ``(data, fit options)``: on one device the arrays as they always were (Keras batches and shuffles
    them); with several replicas (``multi-worker``, or a mirrored strategy over several devices) ``tf.data``
    pipelines of global batches of ``batch_size`` utterances (the training one reshuffled every epoch from ``seed``,
    the same order on every worker), which :func:`cnnrnn.training.fit` shards by worker: a multi-worker run and a
    mirrored run with as many replicas train on the same batches."""
    import tensorflow as tf

    if not distribute and training.get_strategy().num_replicas_in_sync == 1:
        return x, {"y": y, "batch_size": batch_size, "validation_data": val, "shuffle": True}

    data = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    return data.batch(batch_size), {"validation_data": tf.data.Dataset.from_tensor_slices(val).batch(batch_size),
                                    "shuffle": False}


def _train(cfg: DcnnConfig, run_dir: Path, dcnn_path: Path, labels: list[str], features: FeatureConfig,
           progress: bool, verbose: int, sets: dict[str, SegmentSet] | None, inputs: dict[str, Any] | None,
           distribute: str | None = None) -> dict:
    from ..artifacts import load_model
    from ..models.blstm_attention import build_blstm_attention
    from ..models.dcnn import feature_extractor

    with _run_log(run_dir / "log_train.out") as say:
        say("step 2 (BLSTM + attention) %s on %s: config %s", cfg.train.name, dcnn_path, json.dumps(cfg.to_dict()))
        extractor = feature_extractor(load_model(dcnn_path))
        stats = read_norm_stats(dcnn_path)
        if sets is None:
            sets, _ = _load_sets(cfg, labels, features, progress, stats=stats, fit=False)
        normalization = _normalization(features, stats, sets, run_dir, say)
        x = {split: utterance_features(extractor, s.segments, features.resize) for split, s in sets.items()}
        skipped = merged_skips(sets.values())
        say("features: train %s, test %s (utterances, max segments, dim); skipped %s", x["train"].shape,
            x["test"].shape, {k: len(v) for k, v in skipped.items()})
        _seed(cfg.train.seed)
        m = cfg.model
        with training.get_strategy(distribute).scope():
            model = build_blstm_attention(x["train"].shape[2], len(labels), m.lstm_units, m.lstm_layers,
                                          m.attention_units, m.dense1_units, m.dense2_units, m.head_dropout)
            _compile(model, cfg.train.learning_rate)
        train_set = sets["train"]
        fit_idx, select_idx, selection = _selection(cfg, train_set.labels, train_set.speakers, say)
        val = ((x["test"], sets["test"].labels) if select_idx is None
               else (x["train"][select_idx], train_set.labels[select_idx]))
        best = _best_epoch(cfg)
        data, options = _fit_input(x["train"][fit_idx], train_set.labels[fit_idx], val, cfg.train.batch_size,
                                   cfg.train.seed, distribute)
        training.fit(model, data, epochs=cfg.train.epochs, callbacks=_callbacks(cfg, run_dir / "history_train.csv",
                                                                                  say), best=best, verbose=verbose,
                     **options)
        selection["best_epoch"] = best.best_epoch if best else cfg.train.epochs
        if best:
            say("selection inner: kept epoch %d (val_accuracy %.4f)", selection["best_epoch"], best.best)
        checkpoint = save_model_h5(model, run_dir / MODEL_FILE)
        dcnn_rel = os.path.relpath(dcnn_path.resolve(), run_dir.resolve())
        save_json({"labels": labels, "features": features.settings(), "dcnn_checkpoint": dcnn_rel,
                   "config": cfg.to_dict()}, run_dir / MODEL_META)
        test = sets["test"]
        proba = _predict(model, x["test"], cfg.train.batch_size, distribute)
        metrics = _report(run_dir, "train", labels, {"utterances": (proba, test.labels, _ids(test.paths),
                                                                    test.paths)}, say)
        _manifest(cfg, "train", labels, features, checkpoint, inputs or step_inputs(cfg, labels, dcnn_path),
                  sidecar=MODEL_META, dcnn_checkpoint=dcnn_rel, selection=selection, normalization=normalization)
        say("saved %s", checkpoint)
    return {"run_dir": str(run_dir), "checkpoint": str(checkpoint), "metrics": metrics,
            "skipped": skipped, "max_segments": int(max(v.shape[1] for v in x.values())),
            "normalization": normalization, "selection": selection}
