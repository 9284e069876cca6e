"""Stage 4 of the CNNRNN job: k-fold cross-validation of the ResNet50+LSTM, with checkpoints, logs, a report
and the run manifest.

Per fold ``k`` (1-based) it writes, under the output folder:

* ``models/CNN_RNN_fold{k}_epoch{E}_e4.h5``: the best epoch's model (by
  ``val_accuracy``), saved without optimizer state (load it with
  ``compile=False``);
* ``history/fold{k}.csv``: per-epoch loss and accuracy (``keras.callbacks.CSVLogger``);
* ``logs/fold{k}/``: TensorBoard logs;
* ``folds/fold{k}.json``: the fold's validation metrics. A rerun skips folds
  whose JSON and checkpoint exist (resume).

and ``cv_report.json`` with per-fold and mean UA, WA and F1-macro, and ``run.json`` (the run manifest,
:mod:`cnnrnn.runs`: config, labels in code order, fold scheme and seed, input spec, checkpoints, versions),
which ``cnnrnn predict --model <run>`` reads.

The model is built and traced once; every fold restarts from the same initial
weights and a fresh optimizer state, which saves the ~20 s of graph tracing per
fold that rebuilding would cost on a CPU.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import artifacts as A
from ..artifacts import load_json, save_json, save_model_h5
from ..evaluation import classification_metrics, summarise_folds
from .config import CnnrnnConfig, TrainConfig, load_config

log = logging.getLogger("cnnrnn.cnnrnn.train")


def get_strategy():
    """The ``tf.distribute`` strategy for the visible devices.

    Returns a ``MirroredStrategy`` over all logical GPUs when there are several,
    over all logical CPUs when there is no GPU and several logical CPU devices
    are configured (as the tests do), else the default (single-device) strategy.
    """
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    cpus = tf.config.list_logical_devices("CPU")
    if not gpus and len(cpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in cpus])
    return tf.distribute.get_strategy()


def image_dataset(images: np.ndarray, labels: np.ndarray | None, indices: Sequence[int] | None = None,
                  batch_size: int = 16, shuffle: bool = False, seed: int = 0):
    """A ``tf.data`` pipeline over a uint8 image array, converted to float32 one batch at a time.

    The array stays uint8 in host memory; each batch is gathered by index and
    cast, so no float32 copy of the whole set (4× the size) is ever made.

    Args:
        images: ``(N, H, W, 3) uint8``.
        labels: ``(N,)`` int codes, or ``None`` for prediction.
        indices: the rows to use (default all), in order unless ``shuffle``.
        batch_size: batch size.
        shuffle: reshuffle the rows every epoch (seeded).
        seed: shuffle seed.

    Returns:
        A dataset of ``(batch, H, W, 3) float32`` (with ``(batch,) int32`` labels).
    """
    import tensorflow as tf

    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices(idx)
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    shape = (None,) + tuple(images.shape[1:])
    y_all = None if labels is None else np.asarray(labels, dtype=np.int32)

    def gather(batch_idx):
        x = tf.numpy_function(lambda b: images[b], [batch_idx], tf.uint8)
        x = tf.cast(tf.ensure_shape(x, shape), tf.float32)
        if y_all is None:
            return x
        y = tf.numpy_function(lambda b: y_all[b], [batch_idx], tf.int32)
        return x, tf.ensure_shape(y, (None,))

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def predict_proba(model, images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Class probabilities ``(N, n_classes) float32`` for a uint8 image array ``(N, H, W, 3)``."""
    if len(images) == 0:
        return np.zeros((0, int(model.output_shape[-1])), np.float32)
    return np.asarray(model.predict(image_dataset(images, None, batch_size=batch_size), verbose=0), np.float32)


def optimistic(cfg: TrainConfig) -> bool:
    """Whether the CV figures are optimistic: each fold's epoch was chosen on the very fold it is scored on
    (``selection: fold`` with a ``monitor`` other than ``last``: the original CNNRNN setting)."""
    return cfg.selection == "fold" and cfg.monitor != "last"


def inner_split(train_idx: np.ndarray, y: np.ndarray, groups: Sequence[str] | None,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training part into ``(fit_idx, select_idx)``: the epoch is chosen on ``select_idx``,
    never on the scored fold.

    With a speaker for every item, one training speaker (a seeded choice) is held out; otherwise one fifth
    of the training part, stratified by label (:class:`cnnrnn.splits.StratifiedFolds`, fold 0).

    Args:
        train_idx: the fold's training indices. y: ``(N,)`` label codes of all items.
        groups: ``N`` speakers, or ``None``.
        seed: seed of the choice.
    """
    from ..splits import StratifiedFolds

    train_idx = np.asarray(train_idx)
    speakers = None if groups is None else np.asarray([None if g is None else str(g) for g in groups], object)
    if speakers is not None and all(s is not None for s in speakers[train_idx]):
        names = sorted(set(speakers[train_idx].tolist()))
        if len(names) >= 2:
            held = names[np.random.default_rng(seed).integers(len(names))]
            mask = speakers[train_idx] == held
            return train_idx[~mask], train_idx[mask]
    fit, sel = StratifiedFolds(5, seed).fold(0, len(train_idx), y[train_idx])
    return train_idx[fit], train_idx[sel]


def fold_splitter(cfg: TrainConfig):
    """The CV splitter of a train config: :class:`cnnrnn.splits.SpeakerFolds` with ``group_by_speaker``, else
    :class:`cnnrnn.splits.StratifiedFolds` (``cfg.folds`` folds, ``cfg.seed``)."""
    from ..splits import SpeakerFolds, StratifiedFolds

    return (SpeakerFolds if cfg.group_by_speaker else StratifiedFolds)(cfg.folds, cfg.seed)


def checkpoint_path(out_dir: str | Path, cfg: TrainConfig, fold: int) -> Path:
    """``<out>/models/CNN_RNN_fold{fold}_epoch{epochs}_e4.h5`` (pattern from ``cfg.checkpoint_name``)."""
    return Path(out_dir) / "models" / cfg.checkpoint_name.format(fold=fold, epochs=cfg.epochs)


def _best_checkpoint_callback(export_model, path: Path, monitor: str):
    import keras

    class BestCheckpoint(keras.callbacks.Callback):
        """Keeps the best epoch's weights (the last one for ``monitor="last"``) in memory and
        writes them once, at the end of the fold, to an ``.h5`` without optimizer state."""

        def __init__(self):
            super().__init__()
            self.best = None
            self.best_epoch = None
            self.best_weights = None

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            value = logs.get("val_accuracy" if monitor == "last" else monitor)
            if value is None:
                return
            better = (monitor == "last" or self.best is None
                      or (value > self.best if monitor.endswith("accuracy") else value < self.best))
            if better:
                self.best, self.best_epoch = float(value), epoch + 1
                self.best_weights = self.model.get_weights()

        def on_train_end(self, logs=None):
            # Written once per fold: earlier per-epoch writes were never used (resume needs the fold JSON too).
            if self.best_weights is None:
                return
            export_model.set_weights(self.best_weights)
            save_model_h5(export_model, path)

    return BestCheckpoint()


def cross_validate(
    images: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    out_dir: str | Path,
    cfg: TrainConfig,
    groups: Sequence[str] | None = None,
    verbose: int | str = "auto",
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Train CNNRNN with k-fold cross-validation over a training set.

    Args:
        images: ``(N, H, W, 3) uint8`` spectrogram images (BGR).
        y: ``(N,)`` integer class codes into ``labels``.
        labels: class names.
        out_dir: output folder (see the module docstring for what is written).
        cfg: training parameters (folds, epochs, batch size, Adam, weights, ...).
        groups: speaker per item; used when ``cfg.group_by_speaker`` and by ``selection: inner``.
        verbose: Keras ``fit`` verbosity.
        folds: explicit ``(train_idx, test_idx)`` pairs (e.g. leave-one-speaker-out folds of a benchmark)
            instead of the config's ``cfg.folds`` folds; fold ``k`` is the k-th pair.

    Returns:
        The CV report (also written to ``cv_report.json``): per-fold validation
        metrics, mean and std of UA / WA / F1-macro, checkpoints and wall time.

    Raises:
        ValueError: fewer items than folds, labels out of range, or speaker
            grouping requested without speakers.
    """
    import time

    import keras

    from ..models.cnnrnn import build_cnnrnn

    out_dir = Path(out_dir)
    y = np.asarray(y, dtype=np.int32)
    n_classes = len(labels)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"label codes must be in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    if cfg.group_by_speaker and (groups is None or any(g is None for g in groups)):
        raise ValueError("group_by_speaker needs a speaker for every training item")
    if folds is None:
        folds = list(fold_splitter(cfg).split(len(y), y, groups if cfg.group_by_speaker else None))
    folds = list(folds)
    n_folds = len(folds)
    input_shape = tuple(int(v) for v in images.shape[1:])
    for sub in ("models", "history", "logs", "folds"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    for stale in (out_dir / "models").iterdir():  # left by a save that was killed (artifacts.save_model_h5)
        if A.is_temporary(stale):
            stale.unlink(missing_ok=True)

    pending = [k for k in range(1, n_folds + 1)
               if not ((out_dir / "folds" / f"fold{k}.json").is_file() and checkpoint_path(out_dir, cfg, k).is_file())]
    started = time.perf_counter()
    if pending:
        keras.utils.set_random_seed(cfg.seed)
        strategy = get_strategy()
        with strategy.scope():
            model = build_cnnrnn(input_shape, n_classes, cfg.weights, **cfg.model_options())
            optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=cfg.beta_1, beta_2=cfg.beta_2)
            model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
            optimizer.build(model.trainable_variables)
        export_model = build_cnnrnn(input_shape, n_classes, "none", **cfg.model_options())
        initial_weights = model.get_weights()
        initial_optimizer = [v.numpy() for v in optimizer.variables]

    for k in pending:
        tr_idx, va_idx = folds[k - 1]
        fit_idx, sel_idx = (inner_split(tr_idx, y, groups, cfg.seed + k) if cfg.selection == "inner"
                            else (tr_idx, va_idx))
        log.info("fold %d/%d: %d train (%d fit, %d to choose the epoch), %d scored", k, n_folds, len(tr_idx),
                 len(fit_idx), len(sel_idx), len(va_idx))
        fold_start = time.perf_counter()
        model.set_weights(initial_weights)
        for var, value in zip(optimizer.variables, initial_optimizer):
            var.assign(value)
        ckpt = checkpoint_path(out_dir, cfg, k)
        best = _best_checkpoint_callback(export_model, ckpt, cfg.monitor)
        callbacks = [
            best,
            keras.callbacks.CSVLogger(str(out_dir / "history" / f"fold{k}.csv")),
            keras.callbacks.TensorBoard(log_dir=str(out_dir / "logs" / f"fold{k}"), write_graph=False),
        ]
        model.fit(
            image_dataset(images, y, fit_idx, cfg.batch_size, shuffle=True, seed=cfg.seed + k),
            validation_data=image_dataset(images, y, sel_idx, cfg.batch_size),
            epochs=cfg.epochs, callbacks=callbacks, verbose=verbose, shuffle=False,  # tf.data shuffles
        )
        model.set_weights(best.best_weights)
        proba = predict_proba(model, images[va_idx], cfg.batch_size)
        metrics = classification_metrics(y[va_idx], proba.argmax(axis=1), n_classes)
        fold_report = {
            "fold": k, "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)), "selection": cfg.selection,
            "n_fit": int(len(fit_idx)), "n_select": int(len(sel_idx)),
            "best_epoch": best.best_epoch, f"best_{cfg.monitor}": best.best,
            "checkpoint": str(ckpt), "seconds": round(time.perf_counter() - fold_start, 2),
            "val_ids_index": [int(i) for i in va_idx], "val_predictions": [int(i) for i in proba.argmax(axis=1)],
            **metrics,
        }
        save_json(fold_report, out_dir / "folds" / f"fold{k}.json")
        log.info("fold %d: UA %.3f WA %.3f F1-macro %.3f", k, metrics["ua"], metrics["wa"], metrics["f1_macro"])

    fold_reports = [load_json(out_dir / "folds" / f"fold{k}.json") for k in range(1, n_folds + 1)]
    report = {
        "labels": list(labels),
        "n_train": int(len(y)),
        "input_shape": list(input_shape),
        "folds": [{k: v for k, v in f.items() if k not in ("val_ids_index", "val_predictions")}
                  for f in fold_reports],
        "mean": summarise_folds(fold_reports),
        "checkpoints": [f["checkpoint"] for f in fold_reports],
        "seconds_this_run": round(time.perf_counter() - started, 2),
        "selection": cfg.selection,
        "optimistic": optimistic(cfg),
        "config": cfg.__dict__,
    }
    save_json(report, out_dir / "cv_report.json")
    _plot_curves(out_dir, n_folds)
    return report


def _plot_curves(out_dir: Path, n_folds: int) -> None:
    import pandas as pd

    from ..plots import plot_history

    histories = {}
    for k in range(1, n_folds + 1):
        path = out_dir / "history" / f"fold{k}.csv"
        if path.is_file() and path.stat().st_size:
            histories[f"fold{k}"] = pd.read_csv(path)
    if histories:
        plot_history(histories, out_dir / "history" / "curves.png")


def train(out: str | Path, config=None, verbose: int | str = "auto") -> dict[str, Any]:
    """Stage 4: k-fold CV on ``train_final.pickle`` (:func:`cross_validate`), then ``run.json``.

    Args:
        out: the run folder (holding ``train_final.pickle`` and ``labels.json``).
        config: a CNNRNN config (see :func:`cnnrnn.cnnrnn.config.load_config`).
        verbose: Keras ``fit`` verbosity.

    Returns:
        The CV report (``cv_report.json``).
    """
    from ..runs import write_manifest
    from .data import record_config

    cfg, out = load_config(config), Path(out)
    table = A.load_image_table(out / A.FINAL_FILES["train"])
    labels = A.load_labels(out / A.LABELS_FILE)
    record_config(out, cfg)
    report = cross_validate(table["path"], np.asarray(table["emotion"]), labels, out, cfg.train,
                            groups=table.get("speaker"), verbose=verbose)
    write_manifest(out, "cnnrnn", cfg.to_dict(), labels, split={**fold_splitter(cfg.train).spec(), "fold": None,
                                                                 "test_split": _test_split_spec(cfg)},
                   input_spec=input_spec(cfg), checkpoints=report["checkpoints"])
    return report


def input_spec(cfg: CnnrnnConfig) -> dict[str, Any]:
    """What a CNNRNN model takes: ``sr`` (Hz), ``duration`` (s), ``image_size`` ``[H, W]``, the log-mel and
    colour settings (the ``spectrogram`` section, less ``workers``)."""
    spec = {k: v for k, v in cfg.spectrogram.__dict__.items() if k != "workers"}
    return {"kind": "spectrogram_image", "channels": 3, "channel_order": "BGR", **spec}


def _test_split_spec(cfg: CnnrnnConfig) -> dict[str, Any]:
    return {"scheme": cfg.split.scheme, "test_size": cfg.split.test_size, "seed": cfg.split.seed,
            "files": [A.SPLIT_FILES["train"], A.SPLIT_FILES["test"]]}
