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

import json
import logging
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import artifacts as A
from ..artifacts import load_json, save_json
from ..config import rename_key
from ..evaluation import classification_metrics, summarise_folds
from ..splits import inner_split
from ..training import fit, get_strategy
from .batches import (EAGER_BATCHES, RowStack, batch_predictor, image_dataset, predict_proba,  # noqa: F401
                      segment_starts, take_rows)
from .config import CnnrnnConfig, TrainConfig, load_config

log = logging.getLogger("cnnrnn.cnnrnn.train")


def optimistic(cfg: TrainConfig) -> bool:
    """Whether the CV figures are optimistic: each fold's epoch was chosen on the very fold it is scored on
    (``selection: fold`` with a ``monitor`` other than ``last``: the original CNNRNN setting)."""
    return cfg.selection == "fold" and cfg.monitor != "last"


def fold_splitter(cfg: TrainConfig):
    """The CV splitter of a train config: :class:`cnnrnn.splits.SpeakerFolds` with ``group_by_speaker``, else
    :class:`cnnrnn.splits.StratifiedFolds` (``cfg.folds`` folds, ``cfg.seed``)."""
    from ..splits import SpeakerFolds, StratifiedFolds

    return (SpeakerFolds if cfg.group_by_speaker else StratifiedFolds)(cfg.folds, cfg.seed)


def checkpoint_path(out_dir: str | Path, cfg: TrainConfig, fold: int) -> Path:
    """``<out>/models/CNN_RNN_fold{fold}_epoch{epochs}_e4.h5`` (pattern from ``cfg.checkpoint_name``)."""
    return Path(out_dir) / "models" / cfg.checkpoint_name.format(fold=fold, epochs=cfg.epochs)


def _encoder_part(model):
    """The layers of a Whisper CNNRNN model before its head (image → encoder frames), as a model sharing them."""
    import keras

    from ..models.cnnrnn import WHISPER_ENCODER_LAYER

    x = inputs = keras.Input(model.input_shape[1:])
    for name in ("log_mel", "whisper_log_mel", WHISPER_ENCODER_LAYER):
        x = model.get_layer(name)(x)
    return keras.Model(inputs, x, name="whisper_features")


def _encode_once(model, images, pool, batch_size: int):
    """The frozen Whisper encoder's outputs of every image (and of the pool's speed copies): ``(N, frames / 2,
    width) float32``, computed once so that each epoch fits the head only (``TrainConfig.cached_encoder``)."""
    encoder = _encoder_part(model)
    run = batch_predictor(encoder, 10 ** 6)  # traced once

    def encode(source):
        out = [run(take_rows(source, np.arange(i, min(i + batch_size * 4, len(source)))).astype(np.float32))
               for i in range(0, len(source), batch_size * 4)]
        return np.concatenate(out) if out else np.zeros((0,) + tuple(encoder.output_shape[1:]), np.float32)

    log.info("encoding %d images once with the frozen Whisper encoder", len(pool))
    features = encode(images)
    return features, (features if pool is images else encode(pool))


def _progress_callback(bar, fold: int, n_folds: int):
    import keras

    class Progress(keras.callbacks.Callback):
        """Advances the run's tqdm bar (every fold's epochs) after each epoch, showing the fold and its scores."""

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            shown = {"fold": f"{fold}/{n_folds}", "loss": f"{logs.get('loss', float('nan')):.3f}"}
            if "val_accuracy" in logs:
                shown["val_acc"] = f"{logs['val_accuracy']:.3f}"
            bar.set_postfix(shown, refresh=False)
            bar.update(1)

    return Progress()


def _standardize_head(full_model, fit_model, source, rows, batch_size: int) -> None:
    """Set the statistics of a Whisper ``mean_std`` head's :class:`~cnnrnn.models.whisper.Standardize` layer from the
    fold's fit rows: pooled cached features (``fit_model`` is the head), or, with a trained encoder, the pooled
    features of the images through the initial encoder. Nothing for other models."""
    import keras

    from ..models.cnnrnn import WHISPER_HEAD_LAYER

    names = {layer.name for layer in full_model.layers}
    if WHISPER_HEAD_LAYER not in names:
        return
    head = full_model.get_layer(WHISPER_HEAD_LAYER)
    if "feature_norm" not in {layer.name for layer in head.layers}:
        return
    pooled = keras.Model(head.input, head.get_layer("feature_norm").input)
    if fit_model is not head:  # images: through the model's layers before the head
        encoder = _encoder_part(full_model)
        pooled = keras.Model(encoder.input, pooled(encoder.output))
    rows = np.asarray(rows, np.int64)
    values = [np.asarray(pooled(take_rows(source, rows[i:i + batch_size]).astype(np.float32), training=False))
              for i in range(0, len(rows), batch_size)]
    head.get_layer("feature_norm").set_statistics(np.concatenate(values))


def _best_epoch(cfg: TrainConfig, export_model, path: Path, part: str | None = None):
    """The fold's best-epoch selection (:class:`cnnrnn.training.BestEpoch`): the epoch of best ``cfg.monitor``
    (highest for an accuracy, lowest otherwise, the first of equals; the last epoch for ``last``), never stopping
    early; its weights are saved once, at the end of the fold, through ``export_model`` to ``path`` (``.h5``
    without optimizer state) and set in the model by :func:`cross_validate`."""
    from ..training import BestEpoch

    monitor = "val_accuracy" if cfg.monitor == "last" else cfg.monitor
    mode = "last" if cfg.monitor == "last" else "max" if cfg.monitor.endswith("accuracy") else "min"
    return BestEpoch(monitor, mode, restore=False, checkpoint=path, export_model=export_model, export_part=part)


def _precise_bn_batches(images: np.ndarray, indices: np.ndarray, crop_width: int | None, batch_size: int = 64):
    """The input batches of :class:`cnnrnn.training.PreciseBN` for a fold: ``() -> iterator`` of ``(b, H, W or
    crop_width, 3) float32``, the fit rows gathered batch by batch (no copy of the training images) and, with
    crops, each of the images' tiling segments (:func:`segment_starts`)."""
    starts = segment_starts(images.shape[2], crop_width, crop_width) if crop_width else [0]
    width = crop_width or images.shape[2]

    def batches():
        for s in starts:
            for i in range(0, len(indices), batch_size):
                yield take_rows(images, indices[i:i + batch_size])[:, :, s:s + width].astype(np.float32)

    return batches


def _pooled_validation(images: np.ndarray, rows: np.ndarray, y: np.ndarray, batch_size: int, hop: int | None):
    """Utterance-level ``val_accuracy`` and ``val_loss`` (crossentropy) on the selection rows, the segments'
    probabilities pooled by :func:`predict_proba` (:class:`cnnrnn.training.ValidationScores`,
    :func:`cnnrnn.training.pooled_scores`)."""
    from ..training import ValidationScores, pooled_scores

    return ValidationScores(lambda model: pooled_scores(predict_proba(model, images, batch_size, hop, indices=rows),
                                                        y))


def _fold_settings(cfg: TrainConfig) -> dict[str, Any]:
    """The training settings a fold's result depends on, as its ``folds/fold{k}.json`` records them."""
    return json.loads(json.dumps(cfg.__dict__, default=list))


def _fold_current(out_dir: Path, cfg: TrainConfig, k: int, settings: dict, scored) -> bool:
    """Whether fold ``k`` of ``out_dir`` is done with these settings: its report and checkpoint exist, it scored
    the same rows, and it was trained with the same ``settings`` (a report from before they were recorded counts
    as current, as it always did). A fold trained with other settings is trained again, never resumed."""
    path = out_dir / "folds" / f"fold{k}.json"
    if not (path.is_file() and checkpoint_path(out_dir, cfg, k).is_file()):
        return False
    done = load_json(path)
    if [int(i) for i in done.get("val_ids_index", [])] != [int(i) for i in scored]:
        return False
    recorded = done.get("train_settings", settings)  # under the key names of the release that trained it
    return dict(rename_key(TrainConfig, k, v, "train") for k, v in recorded.items()) == settings


def cross_validate(
    images: np.ndarray,
    y: np.ndarray,
    labels: Sequence[str],
    out_dir: str | Path,
    cfg: TrainConfig,
    groups: Sequence[str] | None = None,
    verbose: int | str = "auto",
    folds: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
    train_copies: np.ndarray | None = None,
    on_start: Callable[[], None] | None = None,
    inputs_sha1: str | None = None,
    distribute: str | None = None,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Train CNNRNN with k-fold cross-validation over a training set.

    With ``cfg.crop_width`` the model takes ``crop_width``-pixel random time crops and every evaluation (the
    epoch choice, the fold's scores) pools segment probabilities per utterance (:func:`predict_proba`); with
    ``cfg.mixup`` the training batches are mixed (:func:`image_dataset`) and the loss is categorical
    crossentropy on soft labels.

    Args:
        images: ``(N, H, W, 3) uint8`` spectrogram images (BGR): an array or a memory map
            (:func:`cnnrnn.cnnrnn.data.load_packed`), read a batch at a time.
        y: ``(N,)`` integer class codes into ``labels``.
        labels: class names.
        out_dir: output folder (see the module docstring for what is written).
        cfg: training parameters (folds, epochs, batch size, Adam, weights, ...).
        groups: speaker per item; used when ``cfg.group_by_speaker`` and by ``selection: inner``.
        verbose: Keras ``fit`` verbosity.
        folds: explicit ``(train_idx, test_idx)`` pairs (e.g. leave-one-speaker-out folds of a benchmark)
            instead of the config's ``cfg.folds`` folds; fold ``k`` is the k-th pair.
        train_copies: ``(n_factors, N, H, W, 3) uint8``, the speed-perturbed copies of ``cfg.speed_perturb``
            aligned with ``images`` (:func:`cnnrnn.cnnrnn.speed.copy_images`): ``train_copies[c, i]`` is a copy
            of ``images[i]`` (an array or a memory map). Each fold fits on its fit rows *and their copies*; the
            rows that choose the epoch and the scored rows are never copied, so a copy stays with its source
            utterance's fold and speaker. Required when ``cfg.speed_perturb`` is set, refused otherwise.
        on_start: called once the inputs are checked and the folds made, before anything is written (``train``
            records the run's ``config.json`` there, so a refused run leaves it as it was).
        inputs_sha1: a content fingerprint of the training data (images and labels, :func:`train` makes it);
            recorded with each fold, and a finished fold of other data is trained again, never resumed.
        distribute: the strategy (:func:`cnnrnn.training.get_strategy`): ``None`` (this machine's devices) or
            ``multi-worker`` (``TF_CONFIG``, :mod:`cnnrnn.distribute`): every worker runs this on the same folder;
            the chief alone writes the checkpoints, histories, logs, fold reports and ``cv_report.json`` (the
            others return the report without writing it).
        timeout_s: multi-worker: seconds to wait for a lost or missing worker before failing.

    Returns:
        The CV report (also written to ``cv_report.json``): per-fold validation
        metrics, mean and std of UA / WA / F1-macro, checkpoints and wall time.

    Raises:
        ValueError: fewer items than folds, labels out of range, speaker
            grouping requested without speakers, images narrower than ``cfg.crop_width``, or ``train_copies``
            missing, unexpected or of the wrong shape for ``cfg.speed_perturb``.
    """
    import shutil
    import tempfile
    import time

    out_dir = Path(out_dir)
    y = np.asarray(y, dtype=np.int32)
    n_classes = len(labels)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"label codes must be in [0, {n_classes}), got [{y.min()}, {y.max()}]")
    if cfg.group_by_speaker and (groups is None or any(g is None for g in groups)):
        raise ValueError("group_by_speaker needs a speaker for every training item")
    pool, y_pool, n_copies = images, y, 0  # the fit draws from the images followed by their copies
    if train_copies is not None and not cfg.speed_perturb:
        raise ValueError("train_copies given but train.speed_perturb is empty: the run would not record them")
    if cfg.speed_perturb:
        want = (len(cfg.speed_perturb), len(y)) + tuple(images.shape[1:])
        if train_copies is None or tuple(train_copies.shape) != want:
            got = None if train_copies is None else tuple(train_copies.shape)
            raise ValueError(f"train.speed_perturb {cfg.speed_perturb} needs train_copies of shape {want} (one copy "
                             f"of every image per factor, cnnrnn.cnnrnn.speed.copy_images), got {got}")
        n_copies = len(train_copies)
        # the copies follow the images as rows of one pool, read in place (a memory map stays on disk)
        pool = RowStack([images, np.asarray(train_copies).reshape((-1,) + tuple(images.shape[1:]))])
        y_pool = np.tile(y, 1 + n_copies)
    if folds is None:
        folds = list(fold_splitter(cfg).split(len(y), y, groups if cfg.group_by_speaker else None))
    folds = list(folds)
    n_folds = len(folds)
    input_shape = tuple(int(v) for v in images.shape[1:])
    if cfg.crop_width:
        if cfg.crop_width > input_shape[1]:
            raise ValueError(f"train.crop_width {cfg.crop_width} is wider than the images ({input_shape[1]} px of "
                             "time axis)")
        input_shape = (input_shape[0], cfg.crop_width, input_shape[2])
    if on_start is not None:
        on_start()
    import keras  # after the checks: a refused run answers at once

    from ..distribute import worker_is_chief
    from ..models.cnnrnn import WHISPER_HEAD_LAYER, build_cnnrnn
    from ..training import PreciseBN

    chief = worker_is_chief(distribute)  # only the chief writes
    for sub in ("models", "history", "logs", "folds") if chief else ():
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
    if chief:
        A.remove_temporary_files(out_dir / "models")  # left by a save that was killed (artifacts.save_model_h5)

    settings = _fold_settings(cfg) | ({"inputs_sha1": inputs_sha1} if inputs_sha1 else {})
    pending = [k for k in range(1, n_folds + 1) if not _fold_current(out_dir, cfg, k, settings, folds[k - 1][1])]
    started = time.perf_counter()
    if pending:
        keras.utils.set_random_seed(cfg.seed)
        strategy = get_strategy(distribute, timeout_s)
        with strategy.scope():
            model = build_cnnrnn(input_shape, n_classes, cfg.weights, **cfg.model_options())
            optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=cfg.beta_1, beta_2=cfg.beta_2)
            loss = "categorical_crossentropy" if cfg.mixup > 0 else "sparse_categorical_crossentropy"
            model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
            optimizer.build(model.trainable_variables)
        # built without the backbone's weights, which the best epoch's overwrite; but a Whisper encoder's sizes come
        # from its weights file, and a frozen one (the head alone is fitted) keeps them
        export_model = build_cnnrnn(input_shape, n_classes, cfg.weights if cfg.backbone == "whisper" else "none",
                                    **cfg.model_options())
        full_model, fit_pool, fit_images = model, pool, images
        if cfg.cached_encoder:  # frozen Whisper: its outputs once for every epoch and fold, the head fitted alone
            fit_images, fit_pool = _encode_once(model, images, pool, cfg.batch_size)
            model = model.get_layer(WHISPER_HEAD_LAYER)
            with strategy.scope():
                optimizer = keras.optimizers.Adam(learning_rate=cfg.learning_rate, beta_1=cfg.beta_1,
                                                  beta_2=cfg.beta_2)
                model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
                optimizer.build(model.trainable_variables)
        initial_weights = model.get_weights()
        initial_optimizer = [v.numpy() for v in optimizer.variables]
        # and the random state of dropout (a layer's seed generator), which the weights leave out: each fold then
        # trains as it would first, so a resumed run's folds equal an uninterrupted run's
        weights = {id(v) for v in model.weights}
        initial_seeds = [(v, v.numpy()) for v in model.variables if id(v) not in weights]

    bar = None
    if verbose == 2 and pending:  # one bar over every fold's epochs, with the time left, instead of Keras' lines
        from tqdm.auto import tqdm

        bar = tqdm(total=len(pending) * cfg.epochs, desc="training", unit="epoch")
        verbose = 0
    trained: dict[int, dict] = {}
    for k in pending:
        tr_idx, va_idx = folds[k - 1]
        fit_idx, sel_idx = (inner_split(tr_idx, y, groups, cfg.seed + k) if cfg.selection == "inner"
                            else (tr_idx, va_idx))
        fit_rows = np.concatenate([np.asarray(fit_idx, np.int64) + c * len(y) for c in range(1 + n_copies)])
        log.info("fold %d/%d: %d train (%d fit + %d speed copies, %d to choose the epoch), %d scored", k, n_folds,
                 len(tr_idx), len(fit_idx), len(fit_rows) - len(fit_idx), len(sel_idx), len(va_idx))
        fold_start = time.perf_counter()
        model.set_weights(initial_weights)
        for var, value in [*zip(optimizer.variables, initial_optimizer), *initial_seeds]:
            var.assign(value)
        _standardize_head(full_model, model, fit_pool, fit_rows, cfg.batch_size)
        ckpt = checkpoint_path(out_dir, cfg, k)
        best = _best_epoch(cfg, export_model, ckpt if chief else None,
                           WHISPER_HEAD_LAYER if model is not full_model else None)
        # every worker runs the same callbacks (what they read may be a collective); the others' go to a scratch folder
        logs_dir = out_dir if chief else Path(tempfile.mkdtemp(prefix="cnnrnn-worker-"))
        callbacks = [
            keras.callbacks.CSVLogger(str(logs_dir / "history" / f"fold{k}.csv")),
            keras.callbacks.TensorBoard(log_dir=str(logs_dir / "logs" / f"fold{k}"), write_graph=False),
        ]
        if not chief:
            (logs_dir / "history").mkdir()
        if bar is not None:
            callbacks.append(_progress_callback(bar, k, n_folds))
        one_hot = n_classes if cfg.mixup > 0 else None
        precise = pooled = validation = None
        if cfg.crop_width or cfg.precise_bn:
            # the epoch is chosen on utterance-level (pooled) scores, not on segments, and after PreciseBN
            pooled = _pooled_validation(fit_images, sel_idx, y[sel_idx], cfg.batch_size, cfg.crop_hop)
            if cfg.precise_bn:
                precise = PreciseBN(_precise_bn_batches(fit_pool, fit_rows, cfg.crop_width))
        else:
            validation = (image_dataset(fit_images, y, sel_idx, cfg.batch_size, n_classes=one_hot, repeat=True)
                          if len(sel_idx) else None)
        try:
            fit(  # repeated datasets and one pass as an epoch: one iterator each for all epochs
                model,
                image_dataset(fit_pool, y_pool, fit_rows, cfg.batch_size, shuffle=True, seed=cfg.seed + k,
                              n_classes=one_hot, crop_width=cfg.crop_width, mixup=cfg.mixup, repeat=True),
                epochs=cfg.epochs, callbacks=callbacks, best=best, precise_bn=precise, validation=pooled,
                verbose=verbose, steps_per_epoch=-(-len(fit_rows) // cfg.batch_size), validation_data=validation,
                validation_steps=-(-len(sel_idx) // cfg.batch_size) if validation is not None else None,
                shuffle=False,  # tf.data shuffles
            )
        finally:  # a non-chief's scratch folder goes, whether the fold ends or fails
            if not chief:
                shutil.rmtree(logs_dir, ignore_errors=True)
        model.set_weights(best.best_weights)
        proba = predict_proba(model, fit_images, cfg.batch_size, cfg.crop_hop, indices=va_idx)
        metrics = classification_metrics(y[va_idx], proba.argmax(axis=1), n_classes)
        fold_report = {
            "fold": k, "train_settings": settings, "n_train": int(len(tr_idx)), "n_val": int(len(va_idx)),
            "selection": cfg.selection,
            "n_fit": int(len(fit_idx)), "n_fit_copies": int(len(fit_rows) - len(fit_idx)),
            "n_select": int(len(sel_idx)),
            "best_epoch": best.best_epoch, f"best_{cfg.monitor}": best.best,
            "checkpoint": str(ckpt), "seconds": round(time.perf_counter() - fold_start, 2),
            "val_ids_index": [int(i) for i in va_idx], "val_predictions": [int(i) for i in proba.argmax(axis=1)],
            **metrics,
        }
        trained[k] = fold_report
        if chief:
            save_json(fold_report, out_dir / "folds" / f"fold{k}.json")
        log.info("fold %d: UA %.3f WA %.3f F1-macro %.3f", k, metrics["ua"], metrics["wa"], metrics["f1_macro"])

    if bar is not None:
        bar.close()
    fold_reports = [trained.get(k) or load_json(out_dir / "folds" / f"fold{k}.json") for k in range(1, n_folds + 1)]
    report = {
        "labels": list(labels),
        "n_train": int(len(y)),
        "input_shape": list(input_shape),
        "folds": [{k: v for k, v in f.items() if k not in ("val_ids_index", "val_predictions", "train_settings")}
                  for f in fold_reports],
        "mean": summarise_folds(fold_reports),
        "checkpoints": [f["checkpoint"] for f in fold_reports],
        "seconds_this_run": round(time.perf_counter() - started, 2),
        "selection": cfg.selection,
        "optimistic": optimistic(cfg),
        "config": cfg.__dict__,
    }
    if chief:
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


def check_backbone_weights(cfg: TrainConfig) -> None:
    """Refuse, before any work, a backbone weights file that is not on this machine (nothing is downloaded):
    ``pipeline.run`` and ``train`` call it first, so a missing file is said at once, not after the spectrograms.

    Raises:
        cnnrnn.models.blocks.WeightsError: ``train.weights`` names no file here (ResNet50's ``imagenet``: not in the
            Keras cache), or weights for the compact backbone, which trains from scratch.
    """
    from ..models.blocks import WeightsError

    if cfg.weights is None or str(cfg.weights).lower() == "none":
        return
    if cfg.backbone == "compact":
        raise WeightsError("the compact backbone trains from scratch: use train.weights none")
    if cfg.backbone == "resnet50":
        from ..models.cnnrnn import resolve_backbone_weights

        resolve_backbone_weights(cfg.weights)
    elif cfg.backbone == "whisper":
        from ..models.whisper import read_sizes

        read_sizes(cfg.weights)  # the file and its sizes JSON, or a WeightsError naming cnnrnn whisper-convert
    elif not Path(cfg.weights).expanduser().is_file():
        raise WeightsError(f"train.weights: YAMNet weights file {cfg.weights} does not exist: convert a local "
                           "yamnet.tflite with `cnnrnn yamnet-convert --tflite yamnet.tflite --out "
                           f"{cfg.weights}` (nothing is downloaded)")


def train(out: str | Path, config=None, verbose: int | str = "auto", distribute: str | None = None,
          timeout_s: float | None = None) -> dict[str, Any]:
    """Stage 4: k-fold CV on the packed train images (:func:`cross_validate`, with the speed-perturbed copies when
    ``train.speed_perturb`` is set), then ``run.json``.

    The images are read memory-mapped from ``train_images.npy`` (:func:`cnnrnn.cnnrnn.data.load_packed`, checked
    against ``packed.json``), a batch at a time: memory does not grow with the corpus. A run packed before the
    arrays existed trains from its ``train_final.pickle``.

    Args:
        out: the run folder (holding the packed arrays or ``train_final.pickle``, and ``labels.json``).
        config: a CNNRNN config (see :func:`cnnrnn.cnnrnn.config.load_config`).
        verbose: Keras ``fit`` verbosity.
        distribute, timeout_s: see :func:`cross_validate`; with ``multi-worker`` every worker runs ``train`` on the
            same shared folder and only the chief (:func:`cnnrnn.distribute.is_chief`) takes the folder's lock and
            writes (``config.json``, the folds, ``cv_report.json``, ``run.json``).

    Returns:
        The CV report (``cv_report.json``).

    Raises:
        StageConfigError: ``config`` changes the split or spectrogram settings recorded in the run's
            ``config.json`` (:func:`cnnrnn.cnnrnn.config.check_earlier_stages`).
        ValueError: what :func:`cross_validate` refuses (e.g. more folds than items); ``config.json`` is then
            left as it was: it is written once the inputs are checked, before the first fold trains.
        cnnrnn.cnnrnn.data.PackedArrayError: a packed array missing, truncated, or of another shape or dtype than
            ``packed.json`` records.
        cnnrnn.models.blocks.WeightsError: see :func:`check_backbone_weights`.
    """
    from ..outputs import writing_stage
    from .data import claim_run

    cfg, out = load_config(config), Path(out)
    check_backbone_weights(cfg.train)
    claim_run(out, create=False)
    from ..distribute import worker_is_chief

    if not worker_is_chief(distribute):  # the chief holds the lock and writes; the others train beside it
        return _train(out, cfg, verbose, distribute, timeout_s, chief=False)
    with writing_stage(out, "train", [(out / "models", None), (out / "folds", None), (out / "history", None),
                                      (out, ["cv_report.json", "run.json", A.CONFIG_FILE])]):
        return _train(out, cfg, verbose, distribute, timeout_s)


def _train(out: Path, cfg: CnnrnnConfig, verbose: int | str, distribute: str | None = None,
           timeout_s: float | None = None, chief: bool = True) -> dict[str, Any]:
    from ..outputs import read_inputs, record_inputs
    from ..runs import write_manifest
    from .config import check_earlier_stages
    from .data import load_packed, record_config
    from .speed import packed_copies

    check_earlier_stages(out, cfg, "train")  # the images must be those of the recorded spectrogram settings
    table = load_packed(out, "train", cfg.spectrogram.image_size)  # memory-mapped: read a batch at a time
    labels = A.load_labels(out / A.LABELS_FILE)
    fingerprint = training_inputs(out, table, labels, cfg)
    report = cross_validate(table["path"], np.asarray(table["emotion"]), labels, out, cfg.train,
                            groups=table.get("speaker"), verbose=verbose, train_copies=packed_copies(table, cfg.train),
                            on_start=(lambda: record_config(out, cfg)) if chief else None,
                            inputs_sha1=fingerprint["sha1"], distribute=distribute, timeout_s=timeout_s)
    if not chief:
        return report
    record_inputs(out, "train", fingerprint)
    write_manifest(out, "cnnrnn", cfg.to_dict(), labels, split={**fold_splitter(cfg.train).spec(), "fold": None,
                                                                 "test_split": _test_split_spec(cfg)},
                   input_spec=input_spec(cfg), checkpoints=report["checkpoints"], inputs=read_inputs(out))
    return report


def training_inputs(out: Path, table: dict, labels: Sequence[str], cfg: CnnrnnConfig) -> dict[str, Any]:
    """The content fingerprint of what ``train`` fits on: each row's id, audio fingerprint
    (``spectrograms/sources.json``), label and speaker, the spectrogram settings the images were made with, and the
    labels' names. ``{"sha1", "n", "sources"}``; ``sources`` is ``False`` for a run made before audio fingerprints
    were recorded (its ids and labels alone then decide)."""
    from ..outputs import digest
    from .data import SOURCES_FILE

    path = out / A.SPECTROGRAM_DIR / SOURCES_FILE
    try:
        sources = A.load_json(path) if path.is_file() else None
    except ValueError:
        sources = None
    ids = [str(i) for i in table["id"]]
    rows = [[uid, (sources or {}).get(uid), int(code), spk] for uid, code, spk in
            zip(ids, table["emotion"], table.get("speaker") or [None] * len(ids))]
    spec = {k: v for k, v in cfg.spectrogram.__dict__.items() if k not in ("workers", "max_audio_seconds")}
    return {"sha1": digest([rows, list(labels), spec, list(cfg.train.speed_perturb)]), "n": len(ids),
            "sources": sources is not None}


def input_spec(cfg: CnnrnnConfig) -> dict[str, Any]:
    """What a CNNRNN model takes: ``sr`` (Hz), ``duration`` (s), ``image_size`` ``[H, W]``, the log-mel and
    colour settings (the ``spectrogram`` section, less ``workers``)."""
    spec = {k: v for k, v in cfg.spectrogram.__dict__.items() if k != "workers"}
    return {"kind": "spectrogram_image", "channels": 3, "channel_order": "BGR", **spec}


def _test_split_spec(cfg: CnnrnnConfig) -> dict[str, Any]:
    return {"scheme": cfg.split.scheme, "test_size": cfg.split.test_size, "seed": cfg.split.seed,
            "files": [A.SPLIT_FILES["train"], A.SPLIT_FILES["test"]]}
