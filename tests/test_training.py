"""The shared training loop (cnnrnn.training): best-epoch selection, PreciseBN, validation scores, the fit and the
strategy, on tiny Keras models and random data."""
import subprocess
import sys

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnnrnn import training as T  # noqa: E402


def _model(seed=0, norm=False):
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((4,))] + ([keras.layers.BatchNormalization(momentum=0.99)] if norm else [])
    model = keras.Sequential(layers + [keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)).astype(np.float32), rng.integers(0, 3, n)


class _Scripted:
    """A validation score per epoch from a list, and the weights each epoch ended with."""

    def __init__(self, values, key="val_accuracy"):
        self.values, self.key, self.weights = list(values), key, []

    def __call__(self, model):
        self.weights.append(model.get_weights())
        return {self.key: self.values[len(self.weights) - 1]}


def _fit(model, script, best, callbacks=()):
    x, y = _data()
    return T.fit(model, x, y=y, epochs=len(script.values), batch_size=8, best=best, callbacks=list(callbacks),
                 validation=T.ValidationScores(script), verbose=0, shuffle=False)


def _same(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a, b))


@pytest.mark.parametrize("mode, values, epoch", [
    ("max", [0.2, 0.5, 0.5, 0.4], 2),   # the first of equals
    ("min", [0.2, 0.5, 0.1, 0.1], 3),
    ("last", [0.9, 0.1, 0.3], 3),
])
def test_best_epoch_keeps_and_restores_the_weights_of_the_best_epoch(mode, values, epoch):
    model, script = _model(), _Scripted(values)
    best = T.BestEpoch("val_accuracy", mode)
    history = _fit(model, script, best)
    assert best.best_epoch == epoch and best.best == values[epoch - 1] and best.stopped_epoch is None
    assert len(history.history["loss"]) == len(values)
    assert history.history["val_accuracy"] == values
    assert _same(best.best_weights, script.weights[epoch - 1]) and _same(model.get_weights(), best.best_weights)
    assert not _same(script.weights[-1], script.weights[0])  # the weights did change: the test can tell epochs


def test_without_restore_the_model_keeps_its_last_weights():
    model, script = _model(), _Scripted([0.9, 0.1, 0.2])
    best = T.BestEpoch("val_accuracy", "max", restore=False)
    _fit(model, script, best)
    assert best.best_epoch == 1 and _same(model.get_weights(), script.weights[-1])


@pytest.mark.parametrize("values, patience, min_delta, mode", [
    ([0.5, 0.4, 0.3, 0.6, 0.2], 2, 0.0, "max"),     # stops after epoch 3
    ([0.5, 0.4, 0.3, 0.6, 0.2], 5, 0.0, "max"),     # patience of every epoch: never stops
    ([0.2, 0.25, 0.5, 0.55, 0.1], 9, 0.1, "max"),    # changes within min_delta are no improvement
    ([0.9, 0.95, 0.7, 0.7, 0.8], 1, 0.0, "min"),
    ([0.3, 0.3, 0.3], 9, 0.0, "max"),               # all equal: the first
])
def test_best_epoch_stops_and_keeps_as_keras_early_stopping(values, patience, min_delta, mode):
    """With a patience, BestEpoch keeps and restores the epoch that EarlyStopping(restore_best_weights) does, and
    stops after the same epoch."""
    ours, script = _model(), _Scripted(values)
    best = T.BestEpoch("val_accuracy", mode, patience=patience, min_delta=min_delta)
    history = _fit(ours, script, best)
    theirs, script2 = _model(), _Scripted(values)
    stop = keras.callbacks.EarlyStopping("val_accuracy", min_delta=min_delta, patience=patience, mode=mode,
                                         restore_best_weights=True)
    history2 = _fit(theirs, script2, None, [stop])
    assert history.history == history2.history
    assert best.best_epoch == stop.best_epoch + 1 and best.best == stop.best
    assert (best.stopped_epoch or 0) == (stop.stopped_epoch + 1 if stop.stopped_epoch else 0)
    assert _same(ours.get_weights(), theirs.get_weights())


def test_an_epoch_without_the_monitored_value_is_skipped():
    model, script = _model(), _Scripted([0.1, 0.2], key="val_other")
    best = T.BestEpoch("val_accuracy", "max", checkpoint=None)
    _fit(model, script, best)
    assert best.best is None and best.best_epoch is None and best.best_weights is None


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        T.BestEpoch("val_accuracy", "highest")
    with pytest.raises(ValueError, match="min_delta"):
        T.BestEpoch("val_accuracy", "max", min_delta=-1)
    with pytest.raises(AttributeError):
        T.NoSuchCallback  # noqa: B018


def test_the_checkpoint_is_written_once_at_the_end_from_the_export_model(tmp_path):
    from cnnrnn.artifacts import load_model

    path = tmp_path / "models" / "best.h5"
    export = _model(seed=7)
    seen = []

    class Watch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(path.exists())

    model, script = _model(), _Scripted([0.2, 0.9, 0.1])
    best = T.BestEpoch("val_accuracy", "max", restore=False, checkpoint=path, export_model=export)
    _fit(model, script, best, [Watch()])
    assert seen == [False, False, False] and path.is_file()
    assert _same(load_model(path).get_weights(), script.weights[1]) and _same(export.get_weights(), script.weights[1])
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.h5"]  # no temporary file left


def test_a_failed_checkpoint_save_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "best.h5"
    path.write_bytes(b"the previous checkpoint")
    export = _model(seed=7)

    def broken_save(target, *args, **kwargs):
        with open(target, "wb") as f:
            f.write(b"half a checkpoint")
        raise OSError("the disk went away")

    export.save = broken_save
    model, script = _model(), _Scripted([0.2, 0.9])
    with pytest.raises(OSError, match="disk went away"):
        _fit(model, script, T.BestEpoch("val_accuracy", "max", checkpoint=path, export_model=export))
    assert path.read_bytes() == b"the previous checkpoint"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.h5"]


def test_the_checkpoint_of_a_part_sets_that_layer_of_the_export_model(tmp_path):
    from cnnrnn.artifacts import load_model

    keras.utils.set_random_seed(3)
    head = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")], name="head")
    inputs = keras.Input((4,))
    whole = keras.Model(inputs, head(keras.layers.Dense(4, name="front")(inputs)))
    model, script = _model(), _Scripted([0.5, 0.1])
    _fit(model, script, T.BestEpoch("val_accuracy", "max", checkpoint=tmp_path / "w.h5", export_model=whole,
                                    export_part="head"))
    saved = load_model(tmp_path / "w.h5")
    assert _same(saved.get_layer("head").get_weights(), script.weights[0])


def test_precise_bn_recomputes_the_statistics_for_the_current_weights():
    x, y = _data(64)
    x = x * 3.0 + 5.0  # far from the layer's initial statistics (0, 1)
    plain, precise = _model(norm=True), _model(norm=True)
    plain.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    batches = [x[i:i + 16] for i in range(0, len(x), 16)]
    callback = T.PreciseBN(lambda: iter(batches))
    T.fit(precise, x, y=y, epochs=1, batch_size=16, precise_bn=callback, verbose=0, shuffle=False)
    norm = precise.layers[0]
    assert callback.layers == 1
    np.testing.assert_allclose(np.asarray(norm.moving_mean), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(norm.moving_variance), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert np.abs(np.asarray(plain.layers[0].moving_mean) - 5.0).max() > 3.0  # the trailing average is not there
    assert norm.momentum == 0.99  # put back


def test_validation_scores_are_read_after_precise_bn_and_before_the_best_epoch(tmp_path):
    """The fit's order: PreciseBN, then the scores (of the recalibrated model), then BestEpoch and the CSV log."""
    x, y = _data(64)
    model = _model(norm=True)
    means = []

    def score(m):
        means.append(np.asarray(m.layers[0].moving_mean).copy())
        return T.pooled_scores(np.asarray(m(x, training=False)), y)

    best = T.BestEpoch("val_loss", "min")
    history = T.fit(model, x, y=y, epochs=2, batch_size=16, best=best, precise_bn=T.PreciseBN(lambda: [x]),
                    validation=T.ValidationScores(score), verbose=0, shuffle=False,
                    callbacks=[keras.callbacks.CSVLogger(str(tmp_path / "h.csv"))])
    np.testing.assert_allclose(means[0], x.mean(0), rtol=1e-5)
    losses = history.history["val_loss"]
    assert best.best == min(losses) and best.best_epoch == losses.index(min(losses)) + 1
    import pandas as pd

    logged = pd.read_csv(tmp_path / "h.csv")
    np.testing.assert_allclose(logged["val_loss"], losses, rtol=1e-6)


def test_pooled_scores():
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.5, 0.5, 0.0]])
    scores = T.pooled_scores(proba, np.array([0, 1, 2]))
    assert scores["val_accuracy"] == pytest.approx(1 / 3)
    assert scores["val_loss"] == pytest.approx(-(np.log(0.7) + np.log(0.1) + np.log(1e-7)) / 3)
    assert set(T.pooled_scores(proba, [0, 0, 0], prefix="")) == {"accuracy", "loss"}
    assert all(np.isnan(v) for v in T.pooled_scores(np.zeros((0, 3)), []).values())
    # segments pooled per utterance: rows 1-2 average to (0.4, 0.15, 0.45); utterance 2 is the third row alone
    pooled = T.pooled_scores(proba, np.array([2, 0]), counts=[2, 1])
    assert pooled["val_accuracy"] == 1.0
    assert pooled["val_loss"] == pytest.approx(-(np.log(0.45) + np.log(0.5)) / 2)
    assert T.pooled_scores(proba, np.array([0]), counts=[3])["val_loss"] == pytest.approx(-np.log(1.3 / 3))
    with pytest.raises(ValueError, match="sum"):
        T.pooled_scores(proba, np.array([0, 2]), counts=[1, 1])
    with pytest.raises(ValueError, match="labels"):
        T.pooled_scores(proba, np.array([0, 2]))


def test_one_device_gets_the_default_strategy():
    import tensorflow as tf

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("several GPUs: a MirroredStrategy")
    strategy = T.get_strategy()
    assert strategy.num_replicas_in_sync == 1 and strategy is tf.distribute.get_strategy()


def test_strategy_choices_and_their_bad_input(monkeypatch):
    import tensorflow as tf

    if len(tf.config.list_logical_devices("GPU")) > 1:
        pytest.skip("several GPUs: a MirroredStrategy")
    assert T.get_strategy("mirrored") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="distribute must be one of"):
        T.get_strategy("parameter-server")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    from cnnrnn.distribute import ClusterError

    with pytest.raises(ClusterError, match="needs the cluster"):
        T.get_strategy("multi-worker", timeout_s=5)
    with pytest.raises(ValueError, match="> 0 seconds"):
        T.get_strategy("multi-worker", timeout_s=0)


def test_one_machine_data_is_not_resharded():
    import tensorflow as tf

    ds = tf.data.Dataset.range(4)
    assert T.shard_by_data(ds) is ds
    x = np.zeros((4, 2), np.float32)
    assert T.shard_by_data(x) is x


def test_importing_the_module_imports_no_keras():
    code = "import sys, cnnrnn.training; assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
