"""The one Keras training loop every family fits with: the distribution strategy, the fit and its shared callbacks.

* :func:`get_strategy`: the ``tf.distribute`` strategy a model is built and compiled under (one machine, or several
  workers: :mod:`cnnrnn.distribute`), :func:`shard_by_data`, a pipeline sharded by worker, :func:`predict_here`, a
  prediction no strategy splits between workers, :func:`barrier`, where every worker waits for the others, and
  :func:`on_every_worker`, a family's step on every worker with the chief alone writing;
* :func:`fit`: ``model.fit`` with the shared callbacks in their order (PreciseBN, validation scores, best epoch,
  then the family's own), returning the Keras ``History``;
* :class:`BestEpoch`: the best-epoch selection, a callback that keeps the weights of the epoch of best monitored
  value (or the last epoch), optionally stops early, restores them and saves them as an ``.h5`` checkpoint
  atomically (:func:`cnnrnn.artifacts.save_model_h5`);
* :class:`PreciseBN`: batch-norm statistics recomputed for the weights of every epoch before it is scored
  (:func:`cnnrnn.models.blocks.recalibrate_batch_norm`);
* :class:`ValidationScores` and :func:`pooled_scores`: validation scores computed by a function and put in the
  epoch's logs, e.g. utterance-level scores pooled over an utterance's segments.

Keras and TensorFlow are imported when a callback or strategy is first asked for, not when this module is: the
callback classes are made on first use (:func:`__getattr__`), so that importing a family's training module stays
light. Nothing here knows a family: each passes its own data, monitor and checkpoint.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

#: The callback classes this module makes on first use (:func:`__getattr__`).
CALLBACKS = ("BestEpoch", "PreciseBN", "ValidationScores")
#: The modes of :class:`BestEpoch`: the highest value, the lowest, or the last epoch whatever its value.
BEST_MODES = ("max", "min", "last")


#: The values of ``distribute`` that :func:`get_strategy` takes: ``None`` (the devices of this machine, as they are),
#: ``mirrored`` (the same, named) and ``multi-worker`` (several machines, ``TF_CONFIG``).
DISTRIBUTE = (None, "mirrored", "multi-worker")
_MULTI_WORKER: list = []  # the one MultiWorkerMirroredStrategy of this process (TensorFlow allows one)
_MIRRORED: dict = {}  # the MirroredStrategy of this process, by its devices


def get_strategy(distribute: str | None = None, timeout_s: float | None = None):
    """The ``tf.distribute`` strategy to build and compile a model under (``with get_strategy().scope():``).

    ``None`` or ``mirrored``: a ``MirroredStrategy`` over all logical GPUs when there are several; over all logical
    CPUs when there is no GPU and several logical CPU devices are configured
    (``tf.config.set_logical_device_configuration``, as a test does); else the default, single-device strategy (a
    no-op scope: the same numbers as no strategy at all). The mirrored strategy is made once per process and
    returned again (two trainings in one process, e.g. two commands, share it).

    ``multi-worker``: a ``tf.distribute.MultiWorkerMirroredStrategy`` over the processes that ``TF_CONFIG`` names
    (:mod:`cnnrnn.distribute`; set it before TensorFlow starts), made once per process, its collectives (ring
    all-reduce) timing out after ``timeout_s`` seconds (``tf.distribute.experimental.CommunicationOptions``): a
    worker lost during training ends the others with an error. Before it is returned every worker must have joined
    (one all-reduce); a :class:`cnnrnn.distribute.Watchdog` ends the process with a one-line message when they have
    not within ``timeout_s``.

    Args:
        distribute: one of :data:`DISTRIBUTE`.
        timeout_s: multi-worker only: seconds (> 0) to wait for the other workers, at the start and in every
            collective; ``None``: :data:`cnnrnn.distribute.DEFAULT_TIMEOUT_S`.

    Returns:
        A ``tf.distribute.Strategy``.

    Raises:
        ValueError: ``distribute`` is not one of :data:`DISTRIBUTE`, or ``timeout_s <= 0``.
        cnnrnn.distribute.ClusterError: ``multi-worker`` without a usable ``TF_CONFIG``.
    """
    if distribute not in DISTRIBUTE:
        raise ValueError(f"distribute must be one of {DISTRIBUTE}, got {distribute!r}")
    if distribute == "multi-worker":
        return _multi_worker_strategy(timeout_s)
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    cpus = tf.config.list_logical_devices("CPU")
    devices = tuple(d.name for d in gpus) if len(gpus) > 1 else tuple(d.name for d in cpus) if not gpus else ()
    if len(devices) < 2:
        return tf.distribute.get_strategy()
    if devices not in _MIRRORED:  # one per process: a second one over the same devices would reuse the first's
        _MIRRORED[devices] = tf.distribute.MirroredStrategy(list(devices))  # collective keys (a shape mismatch)
    return _MIRRORED[devices]


def _multi_worker_strategy(timeout_s: float | None):
    from . import distribute as D

    if _MULTI_WORKER:
        return _MULTI_WORKER[0]
    timeout_s = D.DEFAULT_TIMEOUT_S if timeout_s is None else float(timeout_s)
    if timeout_s <= 0:
        raise ValueError(f"the multi-worker timeout must be > 0 seconds, got {timeout_s:g}")
    cluster = D.resolve()
    if cluster is None:
        raise D.ClusterError("distribute multi-worker needs the cluster: set TF_CONFIG, or give --workers and "
                             "--worker-index")
    watchdog = D.Watchdog(timeout_s, f"all {cluster.n_workers} workers of the cluster to join").arm()
    import tensorflow as tf

    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING, timeout_seconds=timeout_s)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    joined = strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
    watchdog.disarm()
    if int(joined) != strategy.num_replicas_in_sync:
        raise RuntimeError(f"multi-worker training: {int(joined)} of {strategy.num_replicas_in_sync} replicas joined")
    _MULTI_WORKER.append(strategy)
    return strategy


def shard_by_data(dataset, strategy=None):
    """``dataset`` set to be sharded by element (``tf.data`` auto-shard policy ``DATA``) when ``strategy`` (default:
    the current one) is a ``MultiWorkerMirroredStrategy``: every worker reads the pipeline and keeps its own part of
    every global batch (the file-based default cannot shard an in-memory pipeline). Anything else is returned as it
    is (one machine: nothing changes)."""
    import tensorflow as tf

    strategy = strategy or tf.distribute.get_strategy()
    if not isinstance(dataset, tf.data.Dataset) or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def predict_here(model, data, batch_size: int = 32) -> np.ndarray:
    """``model(x, training=False)`` for every batch of ``data`` on this process alone, stacked: ``(N, ...)
    float32``. Under a ``MultiWorkerMirroredStrategy`` Keras' ``predict`` would split the batches between the
    workers; every worker here predicts them all (each then writes, or returns, the whole report).

    Args:
        model: a Keras model (built under any strategy).
        data: an ``(N, ...)`` array, cut into ``batch_size`` rows, or an iterable of batches (a batched
            ``tf.data.Dataset``); a batch that is a tuple is taken as ``(x, ...)``, its first item predicted.
        batch_size: rows per batch of an array (>= 1).

    Returns:
        The outputs of every batch, in order; ``(0, ...)`` when there is no batch.
    """
    if isinstance(data, np.ndarray):
        step = max(1, int(batch_size))
        batches = (data[i:i + step] for i in range(0, len(data), step))
    else:
        batches = (b[0] if isinstance(b, tuple) else b for b in data)
    out = [np.asarray(model(x, training=False), np.float32) for x in batches]
    if not out:
        return np.zeros((0,) + tuple(model.output_shape[1:]), np.float32)
    return np.concatenate(out)


def barrier(strategy) -> None:
    """Wait until every worker of ``strategy`` (a ``tf.distribute`` strategy) has reached this point: one
    all-reduce, bounded by the strategy's collective timeout (:func:`get_strategy`). Called by every worker at the
    end of a step, after the chief has written (and released its lock), so that no worker starts the next step,
    which may read those files, before they exist.

    Raises:
        cnnrnn.distribute.ClusterError: a worker did not reach it within the timeout, or died (one line).
    """
    import tensorflow as tf

    try:
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
    except Exception as exc:
        lost = _lost_worker(exc, strategy)
        if lost is None:
            raise
        raise lost from None


def on_every_worker(run_dir: str | Path, work: Callable[[Path], Any], *, distribute: str | None = None,
                    timeout_s: float | None = None, lock: Callable[[], Any] | None = None, chief: bool = True) -> Any:
    """A family's training step on one machine, or on every worker of a cluster with the chief alone writing.

    One machine (``distribute`` ``None``): ``work(run_dir)`` inside ``lock()``. ``multi-worker``: every worker joins
    the cluster first (:func:`get_strategy`; a worker that never joins ends at the timeout, before anything is
    written); the chief (``chief``, :func:`cnnrnn.distribute.worker_is_chief`) runs ``work(run_dir)`` inside
    ``lock()``, another worker ``work(folder)`` on a scratch folder it removes after
    (:func:`cnnrnn.distribute.in_scratch`; its result names ``run_dir`` again); then every worker waits for the others
    (:func:`barrier`), so that none returns before the chief has written.

    Args:
        run_dir: the step's run folder (claimed by the family). work: the step, given the folder to write.
        distribute, timeout_s: as :func:`get_strategy`. lock: a context manager factory held around the chief's
            work (e.g. :func:`cnnrnn.outputs.writing_stage`), or ``None``. chief: whether this process writes.

    Returns:
        What ``work`` returned.

    Raises:
        cnnrnn.distribute.ClusterError: the cluster is unusable, or a worker was lost (one line).
    """
    import contextlib

    from .distribute import in_scratch

    if distribute:
        get_strategy(distribute, timeout_s)
    if chief:
        with (lock or contextlib.nullcontext)():
            result = work(Path(run_dir))
    else:
        result = in_scratch(run_dir, work)
    if distribute:
        barrier(get_strategy(distribute, timeout_s))
    return result


def pooled_scores(proba: np.ndarray, y: np.ndarray, counts: Sequence[int] | None = None,
                  prefix: str = "val_") -> dict[str, float]:
    """Accuracy and crossentropy of utterances whose probabilities are the mean of their segments' probabilities.

    Args:
        proba: ``(N, n_classes)`` probabilities (float): one row per utterance, or with ``counts`` one row per
            segment, each utterance's segments in a run of consecutive rows.
        y: ``(U,)`` integer class codes, one per utterance.
        counts: ``(U,)`` segments per utterance (summing to ``N``); ``None``: one row per utterance (already pooled,
            e.g. by :func:`cnnrnn.cnnrnn.batches.predict_proba`).
        prefix: put before the names (``val_accuracy``, ``val_loss``).

    Returns:
        ``{prefix + "accuracy": share of utterances whose pooled argmax is their class, prefix + "loss": mean of
        -log p(class)}``, each pooled probability clipped to ``[1e-7, 1]`` first (as Keras' crossentropy does). No
        utterance gives ``nan`` for both.

    Raises:
        ValueError: ``counts`` do not sum to the rows of ``proba``, or one is below 1; or the utterances and ``y``
            differ in number.
    """
    proba, y = np.asarray(proba), np.asarray(y, dtype=np.int64)
    if counts is not None:
        counts = np.asarray(counts, dtype=np.int64)
        if counts.sum() != len(proba) or (counts < 1).any():
            raise ValueError(f"pooled_scores: counts (sum {counts.sum()}, min {counts.min(initial=1)}) must be >= 1 "
                             f"and sum to the {len(proba)} rows of proba")
        if len(counts):
            proba = np.add.reduceat(proba, np.cumsum(counts) - counts, axis=0) / counts[:, None]
    if len(proba) != len(y):
        raise ValueError(f"pooled_scores: {len(proba)} utterances' probabilities but {len(y)} labels")
    if len(y) == 0:
        return {f"{prefix}accuracy": float("nan"), f"{prefix}loss": float("nan")}
    return {f"{prefix}accuracy": float(np.mean(proba.argmax(axis=1) == y)),
            f"{prefix}loss": float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], 1e-7, 1.0))))}


def fit(model, data, *, epochs: int, callbacks: Sequence = (), best=None, precise_bn=None, validation=None,
        verbose: int | str = "auto", **options: Any):
    """Train ``model`` with Keras ``fit`` and the shared callbacks; every family's training goes through here.

    The callbacks run in this order at the end of each epoch: ``precise_bn`` (the statistics for the epoch's
    weights), ``validation`` (the scores of those weights, put in the logs), ``best`` (reads them), then
    ``callbacks`` (CSV log, TensorBoard, progress: they record the scores the epoch was judged on).

    Args:
        model: a compiled Keras model (built under :func:`get_strategy`'s scope).
        data: the training data: a ``tf.data.Dataset`` or an ``(N, ...)`` array (then give ``y`` in ``options``);
            under a ``MultiWorkerMirroredStrategy`` a dataset (and ``validation_data``) is sharded by element
            (:func:`shard_by_data`).
        epochs: number of epochs.
        callbacks: the family's own callbacks, run after the shared ones.
        best: a :class:`BestEpoch`, or ``None`` (the weights of the last epoch stay).
        precise_bn: a :class:`PreciseBN`, or ``None``.
        validation: a :class:`ValidationScores` (the epoch's validation scores without ``validation_data``), or
            ``None``.
        verbose: Keras ``fit`` verbosity.
        **options: passed to ``model.fit`` as they are (``y``, ``validation_data``, ``batch_size``,
            ``steps_per_epoch``, ``validation_steps``, ``shuffle``, ...).

    Returns:
        The ``keras.callbacks.History`` of the fit (``history.history``: ``{name: [value per epoch]}``).
    """
    shared = [c for c in (precise_bn, validation, best) if c is not None]
    strategy = getattr(model, "_distribute_strategy", None)  # None: no strategy scope (one device)
    if strategy is not None:
        data = shard_by_data(data, strategy)  # several workers: each keeps its part of every batch
        if options.get("validation_data") is not None:
            options["validation_data"] = shard_by_data(options["validation_data"], strategy)
        _keras_distributed_fixes(model, strategy, data)
    try:
        return model.fit(data, epochs=epochs, callbacks=shared + list(callbacks), verbose=verbose, **options)
    except Exception as exc:
        lost = _lost_worker(exc, strategy)
        if lost is None:
            raise
        raise lost from None


def _lost_worker(exc: Exception, strategy):
    """A one-line :class:`cnnrnn.distribute.ClusterError` for ``exc`` when it is a multi-worker collective that
    failed because a worker died, stopped answering or timed out (TensorFlow's ``UnavailableError``,
    ``DeadlineExceededError``, ``CancelledError``, ``AbortedError``), else ``None``."""
    import tensorflow as tf

    from . import distribute as D

    lost = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not isinstance(exc, lost):
        return None
    text = str(getattr(exc, "message", exc))
    reason = text.split("aborted by:", 1)[-1].strip().splitlines()[0].strip() if text.strip() else ""
    if isinstance(exc, tf.errors.DeadlineExceededError):
        reason = "a collective waited longer than the timeout (--timeout): " + reason
    return D.ClusterError(f"multi-worker training: a worker was lost ({reason[:300]}); this worker stopped too. "
                          "Restart every worker with the same command: finished folds are kept")


def _keras_distributed_fixes(model, strategy, data) -> None:
    """Where Keras 3 (3.15, TensorFlow backend) under a distribution strategy differs from one device or fails,
    worked around (a fit without a strategy goes through Keras unchanged):

    * before training, Keras builds the model's metrics from a batch of a throwaway iterator of the training data.
      A pipeline whose shuffle reshuffles every pass draws its seeds from one generator shared by its iterators, and
      the throwaway iterator's prefetch may start the next pass (and draw a seed) before the training iterator
      starts, so the order the model is trained on differed between runs: one multi-worker fold in four, in the
      test against a two-replica mirrored run. For a ``tf.data.Dataset`` the model is built from the pipeline's
      element spec instead (only shapes and dtypes are used; no iterator is made), so the first iterator, as on
      one device, is the training one. Under a ``MultiWorkerMirroredStrategy`` that build also read the batch with
      ``strategy.reduce``, which the strategy refuses (``PerReplica`` ... unsupported type): an array input's batch
      is read from the local part instead;
    * multi-worker only: the step's logs (scalar loss and metrics) are reduced with ``axis=0`` (``Invalid reduction
      dimension 0 for input with 0 dimensions``): a scalar is averaged over the replicas with ``axis=None``.
    """
    import tensorflow as tf
    from keras.src.backend.tensorflow import trainer as keras_trainer

    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if multi_worker and not getattr(keras_trainer.reduce_per_replica, "_cnnrnn_multi_worker", False):
        keras_reduce = keras_trainer.reduce_per_replica

        def reduce_per_replica(values, strategy, reduction):
            if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and reduction in ("auto", "mean"):
                return tf.nest.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0
                                                                       else 0), values)
            return keras_reduce(values, strategy, reduction)

        reduce_per_replica._cnnrnn_multi_worker = True
        keras_trainer.reduce_per_replica = reduce_per_replica
    spec = data.element_spec if isinstance(data, tf.data.Dataset) else None
    if spec is None and not multi_worker:
        vars(model).pop("_maybe_symbolic_build", None)  # an array input: Keras' own build
        return

    def local(value):
        return strategy.experimental_local_results(value)[0] if isinstance(value, tf.distribute.DistributedValues) \
            else value

    def build(iterator=None, data_batch=None):
        if spec is not None:
            data_batch = spec  # TensorSpecs: their shapes and dtypes are all the build reads
        elif iterator is not None:
            for _, _, it in iterator:  # the same batch as Keras' own build takes
                data_batch = tf.nest.map_structure(local, next(it))
                break
        with strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    object.__setattr__(model, "_maybe_symbolic_build", build)


def __getattr__(name: str):
    """The callback classes (:data:`CALLBACKS`), made on first use so that Keras is imported only then.

    Raises:
        AttributeError: ``name`` is not a name of this module.
    """
    if name in CALLBACKS:
        return _callback_classes()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def _callback_classes() -> dict[str, type]:
    import keras

    from .artifacts import save_model_h5
    from .models.blocks import recalibrate_batch_norm

    class BestEpoch(keras.callbacks.Callback):
        """Best-epoch selection: keeps the weights of the epoch with the best ``monitor`` value in memory.

        At the end of training the kept weights are put back in the model (``restore``) and, with ``checkpoint``,
        saved as an ``.h5`` without optimizer state, atomically (:func:`cnnrnn.artifacts.save_model_h5`: a
        temporary file beside it, then a rename; a killed save leaves no half-written checkpoint).

        Args:
            monitor: the log key read at the end of each epoch (``val_accuracy``, ``val_loss``, ...). An epoch
                whose logs lack it is skipped (neither kept nor counted).
            mode: ``max`` (an improvement is higher), ``min`` (lower) or ``last`` (every epoch that has the
                monitored value replaces the kept one: the last epoch's weights, its value recorded).
            min_delta: an improvement must beat the best value by more than this (Keras ``EarlyStopping``'s
                ``min_delta``); ties (and changes within it) keep the earlier epoch.
            patience: stop training once this many epochs in a row did not improve (and the epoch is not the
                first), as Keras ``EarlyStopping``; ``None``: never stop.
            restore: put the kept weights back in the model at the end of training.
            checkpoint: where to save the kept weights at the end of training (``.h5``); ``None``: nowhere.
            export_model: the model the checkpoint is saved from (its weights set to the kept ones first), e.g. the
                same architecture built without the distribution strategy; ``None``: the trained model itself.
            export_part: the layer of ``export_model`` that the trained model is (a head fitted alone); its
                weights are set, the whole ``export_model`` saved.

        Attributes:
            best: the kept epoch's monitored value (float), or ``None`` before any epoch had it.
            best_epoch: the kept epoch, 1-based, or ``None``.
            best_weights: the kept weights (a list of arrays, :meth:`keras.Model.get_weights`), or ``None``.
            stopped_epoch: the 1-based epoch after which training was stopped, or ``None``.

        Raises:
            ValueError: ``mode`` is not one of :data:`BEST_MODES`, or ``min_delta < 0``.
        """

        def __init__(self, monitor: str = "val_accuracy", mode: str = "max", *, min_delta: float = 0.0,
                     patience: int | None = None, restore: bool = True, checkpoint: str | Path | None = None,
                     export_model=None, export_part: str | None = None):
            super().__init__()
            if mode not in BEST_MODES:
                raise ValueError(f"BestEpoch mode must be one of {BEST_MODES}, got {mode!r}")
            if min_delta < 0:
                raise ValueError(f"BestEpoch min_delta must be >= 0, got {min_delta}")
            self.monitor, self.mode, self.min_delta, self.patience = monitor, mode, float(min_delta), patience
            self.restore, self.checkpoint = restore, None if checkpoint is None else Path(checkpoint)
            self.export_model, self.export_part = export_model, export_part
            self._reset()

        def _reset(self) -> None:
            self.best = self.best_epoch = self.best_weights = self.stopped_epoch = None
            self.wait = 0

        def improves(self, value: float) -> bool:
            """Whether ``value`` replaces the kept epoch's value (always in mode ``last`` or when none is kept)."""
            if self.mode == "last" or self.best is None:
                return True
            if self.mode == "max":
                return value - self.min_delta > self.best
            return value + self.min_delta < self.best

        def on_train_begin(self, logs=None):
            self._reset()  # one instance may serve several fits

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            self.wait += 1
            if self.improves(float(value)):
                self.best, self.best_epoch, self.wait = float(value), epoch + 1, 0
                self.best_weights = self.model.get_weights()
            elif self.patience is not None and self.wait >= self.patience and epoch > 0:
                self.stopped_epoch = epoch + 1
                self.model.stop_training = True

        def on_train_end(self, logs=None):
            if self.best_weights is None:
                return
            if self.restore:
                self.model.set_weights(self.best_weights)
            if self.checkpoint is not None:
                target = self.model if self.export_model is None else self.export_model
                if self.export_model is not None:
                    (target.get_layer(self.export_part) if self.export_part else target).set_weights(
                        self.best_weights)
                self.checkpoint.parent.mkdir(parents=True, exist_ok=True)
                save_model_h5(target, self.checkpoint)

    class PreciseBN(keras.callbacks.Callback):
        """PreciseBN (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): at the end of every epoch, before the
        epoch is scored, every BatchNormalization layer's moving mean and variance are set to the average of its
        batch statistics over the training inputs with the epoch's weights
        (:func:`cnnrnn.models.blocks.recalibrate_batch_norm`); no weight is trained.

        Args:
            batches: called once per epoch, returns an iterable of input batches ``(batch, ...) float32`` (the
                training inputs, without augmentation, e.g. 64 at a time; a generator reads them lazily).

        Attributes:
            layers: the number of layers recalibrated at the last epoch (0: the model has none).
        """

        def __init__(self, batches: Callable[[], Iterable[np.ndarray]]):
            super().__init__()
            self.batches, self.layers = batches, 0

        def on_epoch_end(self, epoch, logs=None):
            self.layers = recalibrate_batch_norm(self.model, self.batches())

    class ValidationScores(keras.callbacks.Callback):
        """The epoch's validation scores computed by ``score(model)`` and put in the epoch's logs, before the
        callbacks after it (:class:`BestEpoch`, CSV log) read them: for a validation that Keras' own
        ``validation_data`` cannot do, e.g. utterance-level scores pooled over the segments of each utterance
        (:func:`pooled_scores`) or scores after :class:`PreciseBN`.

        Args:
            score: ``score(model) -> {name: float}`` (e.g. ``{"val_accuracy": ..., "val_loss": ...}``).
        """

        def __init__(self, score: Callable[[Any], dict[str, float]]):
            super().__init__()
            self.score = score

        def on_epoch_end(self, epoch, logs=None):
            if logs is not None:
                logs.update({k: float(v) for k, v in self.score(self.model).items()})

    return {"BestEpoch": BestEpoch, "PreciseBN": PreciseBN, "ValidationScores": ValidationScores}
