"""The CNNRNN family's training recipes: mixup and random time crops with utterance-level pooling of the
segments' probabilities (``train.mixup``, ``train.crop_width``, ``train.crop_hop``), on tiny synthetic images."""
import json

import numpy as np
import pandas as pd
import pytest

from cnnrnn.config import ConfigError, override
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.cnnrnn.train import image_dataset, predict_proba, segment_starts

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True

H, W, CROP, HOP = 16, 40, 16, 8
LABELS = ["angry", "happy", "sad"]


def synthetic(n=24, seed=0):
    """``n`` images ``(n, H, W, 3) uint8`` whose brightness follows the class, labels, and four speakers."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(LABELS)
    images = rng.integers(0, 60, (n, H, W, 3)) + (y * 80)[:, None, None, None]
    return images.astype(np.uint8), y.astype(np.int32), [f"spk{i % 4}" for i in range(n)]


def batches(ds):
    return [tuple(t.numpy() for t in batch) for batch in ds]


def test_mixup_mixes_images_and_soft_labels_with_a_shuffled_copy():
    images, y, _ = synthetic(12)
    ds = image_dataset(images, y, batch_size=6, shuffle=True, seed=3, n_classes=3, mixup=1.0)
    first, again = batches(ds), batches(ds)
    assert [x.shape for x, _ in first] == [(6, H, W, 3)] * 2 and [t.shape for _, t in first] == [(6, 3)] * 2
    soft = np.concatenate([t for _, t in first])
    np.testing.assert_allclose(soft.sum(axis=1), 1.0, rtol=1e-6)
    assert (soft.max(axis=1) < 1.0).any()  # mixed, not one-hot
    eye, flat = np.eye(3), images.reshape(len(images), -1).astype(np.float64)
    for x, t in first:  # each row: lambda * (x_i, y_i) + (1 - lambda) * (x_j, y_j), one lambda per batch
        lams = set(np.round(t[t.max(axis=1) < 1].ravel(), 5).tolist()) - {0.0}
        for row_x, row_t in zip(x, t):
            found = [(i, j, c) for c in lams for i in range(len(images)) for j in range(len(images))
                     if np.allclose(row_x.ravel(), c * flat[i] + (1 - c) * flat[j], atol=1e-2)]
            assert any(np.allclose(row_t, c * eye[y[i]] + (1 - c) * eye[y[j]], atol=1e-4) for i, j, c in found)
    assert not np.allclose(first[0][1], again[0][1])  # new lambdas and partners every epoch
    replay = batches(image_dataset(images, y, batch_size=6, shuffle=True, seed=3, n_classes=3, mixup=1.0))
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(first, replay))  # seeded
    plain = np.concatenate([t for _, t in batches(image_dataset(images, y, batch_size=6, n_classes=3))])
    np.testing.assert_array_equal(plain, np.eye(3, dtype=np.float32)[y])
    with pytest.raises(ValueError, match="n_classes"):
        image_dataset(images, y, mixup=0.2)


def test_random_time_crops_are_contiguous_seeded_and_new_every_epoch():
    images, y, _ = synthetic(8)
    ds = image_dataset(images, y, batch_size=4, seed=5, crop_width=CROP)
    first, again = batches(ds), batches(ds)
    assert [x.shape for x, _ in first] == [(4, H, CROP, 3)] * 2
    x = np.concatenate([b[0] for b in first])
    for i in range(len(images)):
        assert any(np.array_equal(x[i], images[i, :, s:s + CROP]) for s in range(W - CROP + 1))
    assert not np.array_equal(x, np.concatenate([b[0] for b in again]))
    replay = batches(image_dataset(images, y, batch_size=4, seed=5, crop_width=CROP))
    assert np.array_equal(x, np.concatenate([b[0] for b in replay]))
    with pytest.raises(ValueError, match="wider than the images"):
        image_dataset(images, y, crop_width=W + 1)


def test_segments_cover_the_image_with_the_last_aligned_to_the_end():
    assert segment_starts(40, 16, 8) == [0, 8, 16, 24]
    assert segment_starts(40, 16, 10) == [0, 10, 20, 24]
    assert segment_starts(40, 16) == [0, 8, 16, 24]  # hop: half of the crop
    assert segment_starts(16, 16, 4) == [0]
    with pytest.raises(ValueError, match="12 px wide"):
        segment_starts(12, 16, 8)


def tiny_model(width, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((H, width, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(x))


def test_predict_proba_averages_the_segments_of_a_narrower_model():
    images, _, _ = synthetic(5)
    model = tiny_model(CROP)
    starts = [0, 8, 16, 24]
    manual = np.mean([model.predict(images[:, :, s:s + CROP].astype(np.float32), verbose=0) for s in starts], 0)
    proba = predict_proba(model, images, batch_size=3, hop=HOP)
    assert proba.shape == (5, 3) and proba.dtype == np.float32
    np.testing.assert_allclose(proba, manual, rtol=1e-5, atol=1e-6)
    assert not np.allclose(proba, model.predict(images[:, :, :CROP].astype(np.float32), verbose=0))
    whole = tiny_model(W)  # as wide as the images: predicted whole, as before
    np.testing.assert_allclose(predict_proba(whole, images), whole.predict(images.astype(np.float32), verbose=0),
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="narrower|px wide"):
        predict_proba(model, images[:, :, :CROP - 2])


def test_config_refuses_bad_recipe_values():
    for key, value, expected in [("train.mixup", -0.1, r"train.mixup must be in \[0, inf\), got -0.1"),
                                 ("train.crop_width", 8, r"train.crop_width must be null, 0 or >= 16.*got 8"),
                                 ("train.crop_hop", 0, r"train.crop_hop must be in \[1, inf\), got 0")]:
        with pytest.raises(ConfigError, match=expected):
            override(load_config("compact"), {key: value})
    with pytest.raises(ConfigError, match=r">= 32 \(the resnet50"):
        load_config({"train": {"backbone": "resnet50", "crop_width": 16}})
    assert load_config({"train": {"backbone": "compact", "filters": [4, 4], "crop_width": 4}}).train.crop_width == 4
    crops, compact = load_config("compact_crops"), load_config("compact")
    assert (crops.train.crop_width, crops.train.crop_hop, crops.train.mixup) == (64, 16, 0.2)
    recipe = {"crop_width", "crop_hop", "mixup"}
    assert {k: v for k, v in crops.to_dict()["train"].items() if k not in recipe} == \
        {k: v for k, v in compact.to_dict()["train"].items() if k not in recipe}


def recipe_config(**train):
    return load_config({
        "spectrogram": {"image_size": [H, W], "colormap": "gray"},
        "train": {"folds": 2, "epochs": 2, "batch_size": 8, "backbone": "compact", "filters": [4, 8],
                  "lstm_units": 4, "bn_momentum": 0.9, "learning_rate": 0.01, "selection": "inner", **train},
    })


@pytest.fixture(scope="module")
def crops_run(tmp_path_factory):
    from cnnrnn.cnnrnn.train import cross_validate

    out = tmp_path_factory.mktemp("crops")
    cfg = recipe_config(crop_width=CROP, crop_hop=HOP, mixup=0.2)
    cfg.save(out / "config.json")
    images, y, speakers = synthetic()
    report = cross_validate(images, y, LABELS, out / "run", cfg.train, groups=speakers, verbose=0)
    return out, cfg, images, y, report


def test_cross_validate_with_mixup_and_crops_scores_whole_utterances(crops_run):
    from cnnrnn.artifacts import load_json, load_model
    from cnnrnn.splits import inner_split

    out, cfg, images, y, report = crops_run
    speakers = synthetic()[2]
    assert report["input_shape"] == [H, CROP, 3] and len(report["checkpoints"]) == 2
    for k in (1, 2):
        fold = load_json(out / "run" / "folds" / f"fold{k}.json")
        va_idx = np.asarray(fold["val_ids_index"])
        assert len(fold["val_predictions"]) == fold["n_val"] == len(va_idx) and fold["best_epoch"] in (1, 2)
        # the epoch was chosen on the pooled (utterance-level) accuracy of the selection set
        fit_idx, sel_idx = inner_split(np.setdiff1d(np.arange(len(y)), va_idx), y, speakers, cfg.train.seed + k)
        model = load_model(fold["checkpoint"])
        pooled = predict_proba(model, images[sel_idx], hop=HOP).argmax(axis=1) == y[sel_idx]
        assert len(sel_idx) == fold["n_select"] and fold["best_val_accuracy"] == pytest.approx(pooled.mean())
        history = pd.read_csv(out / "run" / "history" / f"fold{k}.csv")
        assert {"val_accuracy", "val_loss", "loss"} <= set(history.columns) and len(history) == 2
        assert tuple(model.input_shape[1:]) == (H, CROP, 3)
        proba = predict_proba(model, images[va_idx], hop=HOP)
        assert proba.argmax(axis=1).tolist() == fold["val_predictions"]


def test_predict_cuts_the_runs_images_into_segments(crops_run, tmp_path):
    from cnnrnn.artifacts import load_model
    from cnnrnn.cnnrnn.predict import predict
    from cnnrnn.features import write_png

    out, cfg, images, y, report = crops_run
    folder = tmp_path / "pngs"
    folder.mkdir()
    for i in range(6):
        write_png(images[i], folder / f"utt{i}.png")
    result = predict(report["checkpoints"], folder, tmp_path / "pred", labels=LABELS, config=out / "config.json",
                     progress=False)
    table = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(table) == 6 and set(table["predicted"]) <= set(LABELS)
    expected = np.mean([predict_proba(load_model(c), images[:6], hop=HOP) for c in report["checkpoints"]], axis=0)
    got = result["predictions"].sort_values("id")[[f"p_{lab}" for lab in LABELS]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_mixup_without_crops_keeps_keras_validation_and_narrow_images_are_refused(tmp_path):
    from cnnrnn.artifacts import load_json
    from cnnrnn.cnnrnn.train import cross_validate

    images, y, speakers = synthetic()
    cfg = recipe_config(epochs=1, mixup=0.4)
    cross_validate(images, y, LABELS, tmp_path / "mix", cfg.train, groups=speakers, verbose=0)
    fold = load_json(tmp_path / "mix" / "folds" / "fold1.json")
    assert fold["best_epoch"] == 1 and 0.0 <= fold["best_val_accuracy"] <= 1.0
    assert "val_accuracy" in pd.read_csv(tmp_path / "mix" / "history" / "fold1.csv").columns
    wide = recipe_config(crop_width=W + 8)
    with pytest.raises(ValueError, match="wider than the images"):
        cross_validate(images, y, LABELS, tmp_path / "wide", wide.train, groups=speakers, verbose=0)
    assert json.loads(json.dumps(cfg.to_dict()))["train"]["mixup"] == 0.4


def test_precise_bn_gives_the_statistics_of_the_current_weights():
    import keras

    from cnnrnn.models.augment import SpecAugment
    from cnnrnn.models.blocks import recalibrate_batch_norm
    from cnnrnn.models.cnnrnn import build_cnnrnn

    images, _, _ = synthetic(16)
    x = images.astype(np.float32)
    keras.utils.set_random_seed(0)
    model = build_cnnrnn((H, W, 3), 3, backbone="compact", filters=(4, 8), lstm_units=4, dropout=0.0,
                         bn_momentum=0.9, spec_augment={"freq_masks": 2, "time_masks": 2, "seed": 1})
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    for layer in norms:  # statistics that no weight produces: what stale moving averages look like
        layer.moving_mean.assign(np.full(layer.moving_mean.shape, 50.0, np.float32))
    stale = model(x, training=False).numpy()
    assert recalibrate_batch_norm(model, [x[:8], x[8:]]) == 2
    # the first layer's moving mean is the mean of its two batches' means of the conv output
    conv = keras.Model(model.input, model.get_layer("conv1").output)
    batch_means = [conv(x[:8]).numpy().mean(axis=(0, 1, 2)), conv(x[8:]).numpy().mean(axis=(0, 1, 2))]
    np.testing.assert_allclose(norms[0].moving_mean.numpy(), np.mean(batch_means, axis=0), rtol=1e-4, atol=1e-5)
    assert [layer.momentum for layer in norms] == [0.9, 0.9]  # restored
    augment = next(layer for layer in model.layers if isinstance(layer, SpecAugment))
    assert (augment.freq_masks, augment.time_masks) == (2, 2)
    # one batch of everything: inference now equals the batch-statistics forward pass without augmentation
    recalibrate_batch_norm(model, [x])
    augment.freq_masks = augment.time_masks = 0
    np.testing.assert_allclose(model(x, training=False).numpy(), model(x, training=True).numpy(), atol=1e-4)
    assert not np.allclose(stale, model(x, training=False).numpy(), atol=1e-3)
    assert recalibrate_batch_norm(keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)]), [x]) == 0


def test_cross_validate_with_precise_bn_scores_with_recalibrated_statistics(tmp_path):
    from cnnrnn.artifacts import load_json, load_model
    from cnnrnn.cnnrnn.train import cross_validate

    images, y, speakers = synthetic()
    cfg = recipe_config(epochs=2, precise_bn=True)
    cross_validate(images, y, LABELS, tmp_path / "pbn", cfg.train, groups=speakers, verbose=0)
    fold = load_json(tmp_path / "pbn" / "folds" / "fold1.json")
    history = pd.read_csv(tmp_path / "pbn" / "history" / "fold1.csv")
    assert len(history) == 2 and history["val_accuracy"].between(0, 1).all()
    model = load_model(fold["checkpoint"])
    va_idx = np.asarray(fold["val_ids_index"])
    assert predict_proba(model, images[va_idx]).argmax(axis=1).tolist() == fold["val_predictions"]
    assert load_config({"train": {"precise_bn": True}}).train.precise_bn is True


def test_folds_resume_only_when_trained_with_the_same_settings(crops_run, tmp_path):
    """A rerun keeps a finished fold (same settings, same scored rows) and trains again one made otherwise."""
    import shutil
    from dataclasses import replace

    from cnnrnn.artifacts import load_json
    from cnnrnn.cnnrnn.train import cross_validate

    run, cfg, images, y, _ = crops_run
    _, _, speakers = synthetic()
    out = tmp_path
    shutil.copytree(run / "run", out / "run")
    fold1 = out / "run" / "folds" / "fold1.json"
    stamp = fold1.stat().st_mtime_ns
    assert load_json(fold1)["train_settings"]["mixup"] == 0.2
    again = cross_validate(images, y, LABELS, out / "run", cfg.train, groups=speakers, verbose=0)
    assert fold1.stat().st_mtime_ns == stamp and again["seconds_this_run"] < 2
    changed = replace(cfg.train, learning_rate=0.02)
    cross_validate(images, y, LABELS, out / "run", changed, groups=speakers, verbose=0)
    assert [load_json(out / "run" / "folds" / f"fold{k}.json")["train_settings"]["learning_rate"]
            for k in (1, 2)] == [0.02, 0.02]
