"""Train the ANN / CNN baselines (``cnnrnn baselines train``; ``cnnrnn baselines evaluate`` is in :mod:`.predict`).

The protocol of the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을 활용하여 음성 분류 인공지능 제작"
(UrbanSound8K practice problem): a seeded random 8:2 split, Adam, cross-entropy, batch 32, 5 epochs, the
validation accuracy reported (tutorial: ANN 18.86 %, CNN 91.21 %). Label codes follow the corpus' declared
order (:func:`cnnrnn.corpora.label_order`: FSDD's digits 0-9, UrbanSound8K's ten classes sorted as the
tutorial's ``cat.codes``); classes outside a declared set fall back to their sorted names.

A run folder (:func:`train`) holds:

* ``run.json`` (:mod:`cnnrnn.runs`: family ``baselines``, config, labels, split, input, ``model.h5``);
* ``baseline_config.json`` (:class:`~cnnrnn.baselines.config.BaselineConfig`), ``labels.json`` (class names
  in code order), ``corpus_report.json``, ``split.json`` (the split and its train / validation ids);
* ``cache/<model>_<key>.npy`` + ``.json``: the features, one row per utterance
  (:func:`cnnrnn.baselines.data.build_cache`);
* ``normalization.json``: with ``normalization`` ``global`` / ``speaker``, the statistics (global ones from the
  training clips, per speaker from each speaker's own clips, validation speakers' included: transductive);
* ``model.h5`` (last epoch, no optimizer state), ``history.csv``, ``curves.png``;
* ``metrics.json`` (validation ``accuracy``, ``ua``, ``f1_macro``, ..., ``labels``, ``family`` and every
  skip or drop), ``confusion_matrix.png``, ``predictions.csv`` (:func:`cnnrnn.reports.write_report`).

The run folder is claimed first (:func:`claim_run`: a new or empty folder, or a baselines run, kind
:data:`RUN_KIND`) and trained under its ``train`` lock (:func:`cnnrnn.outputs.writing_stage`): a second train of
the same run is refused while the first runs, and the temporaries a killed save left are removed (and counted)
when the next train starts. :func:`cnnrnn.baselines.predict.evaluate` scores a run again.

With ``distribute="multi-worker"`` (``--distribute multi-worker``, :mod:`cnnrnn.distribute`) every worker trains on
the same corpus and run folder, each reading its part of every global batch of ``batch_size`` clips: the chief alone
claims the folder, takes the lock and writes it (the feature cache included); the others decode the audio into their
own feature cache in a scratch folder and compute the same there, which they remove
(:func:`cnnrnn.training.on_every_worker`), and return the same report; no worker returns before the chief has written.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..artifacts import LABELS_FILE, save_json, save_model_h5
from ..corpora import label_order, load_corpus
from ..reports import REPORT_FILES
from ..runs import MANIFEST_FILE, write_manifest
from ..training import fit, get_strategy, on_every_worker
from .config import BASELINE_CONFIG_FILE, FAMILY, MODEL_FILE, NORM_FILE, BaselineConfig, load_baseline_config
from .data import (build_cache, cache_dataset, claim_cache, corpus_arrays, is_feature_cache,
                   normalization_stats, normalizer, split_rows)
from .predict import score_rows

log = logging.getLogger("cnnrnn.baselines")

#: The kind of folder a baselines run is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "baselines run"
#: What a run folder holds besides ``cache/`` (a killed write of one of them leaves ``.name.XXXX.tmp``).
RUN_FILES = (MODEL_FILE, BASELINE_CONFIG_FILE, NORM_FILE, LABELS_FILE, MANIFEST_FILE, "corpus_report.json",
             "split.json", "history.csv", "curves.png", *REPORT_FILES.values())


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a baselines run written before folder markers existed: its
    ``baseline_config.json`` (what :func:`cnnrnn.baselines.predict.find_run_dir` looks for), or the feature cache
    ``cache/`` of a run that stopped before it."""
    return (folder / BASELINE_CONFIG_FILE).is_file() or is_feature_cache(folder / "cache")


def claim_run(out: str | Path, write: bool = True) -> Path:
    """Claim ``out`` as a baselines run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already;
    with ``write`` false only check it (nothing is created or written: a worker that is not the chief).

    Raises:
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``out`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(out, RUN_KIND, recognise=is_run_folder, write=write)


def build_model(cfg: BaselineConfig, n_classes: int):
    """The uncompiled ANN or CNN for ``cfg`` (:func:`cnnrnn.models.baselines.build_ann` / ``build_cnn``)."""
    from ..models.baselines import build_ann, build_cnn

    if cfg.model == "ann":
        return build_ann(cfg.n_samples, n_classes, cfg.hidden_units)
    return build_cnn(cfg.input_shape, n_classes, cfg.filters, cfg.kernel_size, cfg.dense_units, cfg.spec_augment())


def train(corpus: str, root: str | Path, out: str | Path, config: Any = None, model: str | None = None,
          cache_dir: str | Path | None = None, progress: bool = True, verbose: int | str = "auto",
          distribute: str | None = None, timeout_s: float | None = None, **overrides: Any) -> dict[str, Any]:
    """Train one baseline on a corpus and score it on the validation split.

    Args:
        corpus, root: a reader of :data:`cnnrnn.corpora.READERS` (``fsdd``, ``urbansound8k``, ...) and its
            folder.
        out: run folder (see the module docstring for what is written).
        config: baseline config (preset name, JSON path, dict, config); default: the ``model`` preset.
        model: ``ann`` or ``cnn``.
        cache_dir: feature cache folder (default ``<out>/cache``); share it between runs (folds) on the same
            corpus to decode the audio once.
        progress: show progress bars.
        verbose: Keras ``fit`` verbosity.
        distribute: ``None`` (this machine) or ``multi-worker`` (:func:`cnnrnn.training.get_strategy`; see the
            module docstring). timeout_s: multi-worker: seconds to wait for a missing or lost worker.
        **overrides: config values to replace (``epochs=1``, ``split="speaker"``, ...; ``None`` is ignored).

    Returns:
        The ``metrics.json`` report: validation ``n``, ``accuracy``, ``ua``, ``f1_macro``, ..., ``labels``,
        ``family``, plus ``model``, ``corpus``, ``n_train``, ``n_val``, the skips and drops, ``cache``,
        ``train_seconds`` and ``train_clips_per_s``.

    Raises:
        BaselineConfigError, SplitError, CorpusError: bad config, split or corpus.
        cnnrnn.outputs.OutputFolderError: ``out`` (or ``cache_dir``) holds other files or is another command's
            folder (nothing was written).
        cnnrnn.outputs.FolderInUseError: another process trains this run.
        cnnrnn.distribute.ClusterError: ``multi-worker`` without a usable cluster.
    """
    from ..distribute import worker_is_chief
    from ..outputs import writing_stage

    cfg = load_baseline_config(config, model, **overrides)
    chief = worker_is_chief(distribute)
    out = claim_run(out, write=chief)  # after the config: a refused config leaves the folder untouched
    if cache_dir is not None:  # refused before the corpus is read
        claim_cache(cache_dir, write=chief)
    own_cache = [(out / "cache", None)] if cache_dir is None else []  # a shared cache may be written by others
    # another worker decodes the audio into its own cache, in its scratch folder: the chief alone writes
    return on_every_worker(out, lambda folder: _train(corpus, root, folder, cfg, cache_dir if folder == out else None,
                                                      progress, verbose, distribute, timeout_s),
                           distribute=distribute, timeout_s=timeout_s, chief=chief,
                           lock=lambda: writing_stage(out, "train", [(out, RUN_FILES), *own_cache]))


def _train(corpus: str, root: str | Path, out: Path, cfg: BaselineConfig, cache_dir: str | Path | None,
           progress: bool, verbose: int | str, distribute: str | None = None,
           timeout_s: float | None = None) -> dict[str, Any]:
    import keras
    import pandas as pd

    from ..outputs import digest, read_inputs, record_inputs
    from ..plots import plot_history

    utterances, corpus_report = load_corpus(corpus, root)
    labels = label_order(corpus, {u.emotion for u in utterances})
    y, groups, ids = corpus_arrays(utterances, labels)
    cache, index = build_cache(utterances, cfg, cache_dir or out / "cache", progress)
    # what the run fits on: the cache's content key (every clip's audio fingerprint) and each clip's label
    fingerprint = {"sha1": digest([Path(index["file"]).name, [[u.id, u.emotion, u.speaker] for u in utterances]]),
                   "n": len(utterances)}
    split = split_rows(y, groups, np.flatnonzero(index["ok"]), labels, cfg)
    usable = np.flatnonzero(index["ok"])
    stats = normalization_stats(cache, usable, [groups[r] for r in usable], np.isin(usable, split["train"]), cfg)
    if stats is not None:
        save_json(stats.to_dict(), out / NORM_FILE)
    transform = normalizer(cfg, stats, groups)
    save_json(cfg.to_dict(), out / BASELINE_CONFIG_FILE)
    save_json({"labels": labels}, out / LABELS_FILE)
    save_json(corpus_report.to_dict(), out / "corpus_report.json")
    save_json({"method": cfg.split, "seed": cfg.seed, "val_size": cfg.val_size, "stratified": split["stratified"],
               "spec": split["spec"], "val_speakers": split["val_speakers"], "dropped_from_val": split["dropped"],
               "train": [ids[r] for r in split["train"]], "val": [ids[r] for r in split["val"]]},
              out / "split.json")

    keras.utils.set_random_seed(cfg.seed)
    with get_strategy(distribute, timeout_s).scope():
        net = build_model(cfg, len(labels))
        net.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                    loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    fit(net, cache_dataset(cache, split["train"], y[split["train"]], cfg.batch_size, shuffle=True, seed=cfg.seed,
                           transform=transform),
        epochs=cfg.epochs, callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv"))], verbose=verbose,
        validation_data=cache_dataset(cache, split["val"], y[split["val"]], cfg.batch_size, transform=transform),
        shuffle=False)  # tf.data shuffles
    train_seconds = time.perf_counter() - started
    save_model_h5(net, out / MODEL_FILE)
    plot_history({cfg.model: pd.read_csv(out / "history.csv")}, out / "curves.png")
    record_inputs(out, "train", fingerprint)
    write_manifest(out, FAMILY, cfg.to_dict(), labels, split=split["spec"], input_spec=cfg.input_spec(),
                   checkpoints=[out / MODEL_FILE], inputs=read_inputs(out),
                   extra={"model": cfg.model, "corpus": corpus, "root": str(root), "cache": index["file"]})

    extra = {
        "model": cfg.model, "corpus": corpus, "root": str(root), "split": cfg.split,
        "val_speakers": split["val_speakers"], "n_train": int(len(split["train"])), "n_val": int(len(split["val"])),
        "dropped_from_val": split["dropped"], "skipped_corpus": corpus_report.skipped,
        "skipped_audio": index["skipped"], "cache": {k: index[k] for k in ("file", "reused", "seconds")},
        "epochs": cfg.epochs, "train_seconds": round(train_seconds, 2),
        "train_clips_per_s": round(len(split["train"]) * cfg.epochs / train_seconds, 2),
        "checkpoint": str(out / MODEL_FILE),
        "normalization": {"mode": cfg.normalization, "transductive": cfg.normalization == "speaker",
                          "fallback_to_global": stats.fallback if stats is not None else {}},
    }
    report = score_rows(net, cache, split["val"], y, utterances, labels, out, cfg.batch_size, extra, transform,
                        here=bool(distribute))
    cache.close()
    return report


def evaluate(run: str | Path, corpus: str | None = None, root: str | Path | None = None,
             out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Deprecated place of :func:`cnnrnn.baselines.predict.evaluate` (every family's scoring entry point is
    ``predict.evaluate``): warns with a ``DeprecationWarning`` and calls it with the same arguments."""
    import warnings

    from .predict import evaluate as _evaluate_run

    warnings.warn("cnnrnn.baselines.train.evaluate is deprecated; use cnnrnn.baselines.predict.evaluate",
                  DeprecationWarning, stacklevel=2)
    return _evaluate_run(run, corpus, root, out, progress)
