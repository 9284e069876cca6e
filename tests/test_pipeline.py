"""The main job end to end on the bundled sample (real speech), through the CLI: with the tiny preset (the compact
backbone), and once with the original's ResNet50 (preset tiny_resnet50, :func:`test_faithful_resnet50_run_end_to_end`,
the family's one faithful end-to-end run; :func:`test_backbone_weights_offline` is its one ResNet50 build-and-load
test)."""
import json

import numpy as np
import pandas as pd
import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_image_table, load_json, load_pickle

from conftest import write_wav


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("run")
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out),
                     "--config", "tiny"]) == 0
    return out


def test_every_stage_file_is_written(run_dir):
    for name in ("train.json", "test.json", "train_audio.json", "test_audio.json", "labels.json",
                 "split_report.json", "data_train.pickle", "data_test.pickle", "train_final.pickle",
                 "test_final.pickle", "cv_report.json", "config.json", "run_summary.json", "run.json"):
        assert (run_dir / name).is_file(), name
    labels = load_json(run_dir / "labels.json")["labels"]
    # the KEMDy order, declared once in cnnrnn.corpora.kemdy, whatever labels this subset holds
    assert labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    split = load_json(run_dir / "train.json")
    assert set(split) == {"Session01", "Session03", "Session17"}
    flat = load_json(run_dir / "train_audio.json")
    assert {"id", "audio_path", "emotion", "label"} <= set(flat[0])
    data = load_pickle(run_dir / "data_train.pickle")
    assert {"id", "path", "emotion"} <= set(data) and len(data["id"]) == len(flat)
    assert all(isinstance(e, int) and 0 <= e < 7 for e in data["emotion"])
    assert all(p.endswith(f"{i}.png") for i, p in zip(data["id"], data["path"]))
    final = load_image_table(run_dir / "train_final.pickle")
    assert final["path"].shape == (len(flat), 32, 64, 3) and final["path"].dtype == np.uint8
    assert final["id"] == data["id"] and final["emotion"] == data["emotion"]
    assert len(list((run_dir / "spectrograms").glob("*.png"))) == 103


def test_cross_validation_outputs(run_dir):
    report = load_json(run_dir / "cv_report.json")
    assert [f["fold"] for f in report["folds"]] == [1, 2]
    assert sum(f["n_val"] for f in report["folds"]) == report["n_train"]
    for f in report["folds"]:
        assert 0.0 <= f["ua"] <= 1.0 and 0.0 <= f["wa"] <= 1.0 and 0.0 <= f["f1_macro"] <= 1.0
    assert set(report["mean"]) == {"ua", "wa", "f1_macro"}
    # the tiny preset chooses each fold's epoch on held-out training speakers, never on the scored fold
    assert report["selection"] == "inner" and report["optimistic"] is False
    assert all(f["n_fit"] + f["n_select"] == f["n_train"] and f["n_select"] > 0 for f in report["folds"])
    for k in (1, 2):
        assert (run_dir / "models" / f"CNN_RNN_fold{k}_epoch1_e4.h5").is_file()
        history = pd.read_csv(run_dir / "history" / f"fold{k}.csv")
        assert list(history["epoch"]) == [0] and {"loss", "val_accuracy"} <= set(history)
        assert list((run_dir / "logs" / f"fold{k}").rglob("events.out.tfevents.*"))
    assert (run_dir / "history" / "curves.png").stat().st_size > 1000


def test_test_set_prediction(run_dir):
    preds = pd.read_csv(run_dir / "test" / "predictions.csv")
    test = load_pickle(run_dir / "data_test.pickle")
    assert list(preds["id"]) == test["id"]
    probs = preds[[c for c in preds if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    metrics = load_json(run_dir / "test" / "metrics.json")
    true = np.array(test["emotion"])
    assert metrics["n"] == len(true)
    assert metrics["wa"] == pytest.approx(np.mean(preds["predicted_index"].to_numpy() == true))
    for key in ("accuracy", "ua", "balanced_accuracy", "f1_micro", "f1_macro", "f1_weighted"):
        assert 0.0 <= metrics[key] <= 1.0
    assert (run_dir / "test" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    # from Python without a config: the run's own config.json (2 tiny folds), not the defaults' 5 folds
    from cnnrnn.cnnrnn.predict import evaluate

    again = evaluate(run_dir, progress=False)
    assert again["metrics"]["ua"] == pytest.approx(metrics["ua"])
    assert cli.main(["-q", "evaluate", "--out", str(run_dir)]) == 0  # the same stage from the command line
    assert load_json(run_dir / "test" / "metrics.json")["ua"] == pytest.approx(metrics["ua"])


def test_run_manifest(run_dir):
    from cnnrnn.runs import SCHEMA_VERSION, read_manifest

    m = read_manifest(run_dir)
    assert (m.family, m.schema_version, m.labels) == ("cnnrnn", SCHEMA_VERSION, load_json(run_dir / "labels.json")["labels"])
    assert m.split["scheme"] == "stratified" and m.split["folds"] == 2 and m.split["seed"] == 42
    assert m.input["sr"] == 16000 and m.input["image_size"] == [32, 64] and m.input["duration"] == 2.0
    assert [p.name for p in m.checkpoint_paths()] == ["CNN_RNN_fold1_epoch1_e4.h5", "CNN_RNN_fold2_epoch1_e4.h5"]
    assert all(p.is_file() for p in m.checkpoint_paths())
    assert set(m.versions) == {"cnnrnn", "tensorflow", "keras", "librosa"} and m.versions["keras"]
    assert m.config["train"]["folds"] == 2


def test_predict_any_family_on_the_run_folder(run_dir, sample_dir, tmp_path):
    wav = next(sample_dir.rglob("*.wav"))
    assert cli.main(["-q", "predict", "--model", str(run_dir), "--input", str(wav), "--out", str(tmp_path)]) == 0
    preds = pd.read_csv(tmp_path / "predictions.csv")
    assert list(preds["id"]) == [wav.stem] and preds["predicted"].iloc[0] in load_json(run_dir / "labels.json")["labels"]
    assert len([c for c in preds if c.startswith("p_")]) == 7


def test_rerun_resumes_finished_folds(run_dir):
    from cnnrnn.cnnrnn.train import train

    ckpt = run_dir / "models" / "CNN_RNN_fold1_epoch1_e4.h5"
    before = ckpt.stat().st_mtime_ns
    report = train(run_dir, "tiny", verbose=0)
    assert ckpt.stat().st_mtime_ns == before
    assert report["seconds_this_run"] < 10


def test_predict_cli_on_wavs_pngs_and_one_file(run_dir, sample_dir, tmp_path, capsys):
    models = sorted(str(p) for p in (run_dir / "models").glob("*.h5"))
    stems = sorted(p.stem for p in (run_dir / "spectrograms").glob("*.png"))[:3]
    wavs = [next(sample_dir.rglob(f"{stem}.wav")) for stem in stems]
    folder = tmp_path / "in"
    for w in wavs:
        (folder / w.name).parent.mkdir(parents=True, exist_ok=True)
        (folder / w.name).write_bytes(w.read_bytes())
    write_wav(folder / "silent.wav", np.zeros(16000, np.float32), 16000)
    code = cli.main(["-q", "predict", "--model", models[0], "--model", models[1], "--input", str(folder),
                     "--out", str(tmp_path / "p")])
    assert code == 0
    preds = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert sorted(preds["id"]) == sorted(w.stem for w in wavs)  # the silent file is skipped, not fatal
    assert not (tmp_path / "p" / "metrics.json").exists()  # no labels known for loose files
    assert '"silent": [' in capsys.readouterr().out  # reported as a counted skip

    png = run_dir / "spectrograms" / f"{wavs[0].stem}.png"
    assert cli.main(["-q", "predict", "--model", str(run_dir / "models"), "--input", str(png),
                     "--out", str(tmp_path / "q")]) == 0
    one = pd.read_csv(tmp_path / "q" / "predictions.csv")
    assert one["predicted"].iloc[0] == preds.set_index("id").loc[wavs[0].stem, "predicted"]


def test_image_size_mismatch_is_a_clear_error(run_dir, tmp_path, caplog):
    import cv2

    big = tmp_path / "big.png"
    image = cv2.imread(str(next((run_dir / "spectrograms").glob("*.png"))))
    cv2.imwrite(str(big), cv2.resize(image, (128, 64)))
    model = str(run_dir / "models" / "CNN_RNN_fold1_epoch1_e4.h5")
    assert cli.main(["-q", "predict", "--model", model, "--input", str(big), "--out", str(tmp_path / "x")]) == 2
    assert "image is 128x64 (WxH) but the model takes 64x32" in caplog.text
    assert cli.main(["-q", "predict", "--model", model, "--input", str(big), "--out", str(tmp_path / "y"),
                     "--resize"]) == 0


def test_label_count_mismatch_is_a_clear_error(run_dir, tmp_path):
    from cnnrnn.cnnrnn.predict import CheckpointError, predict

    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"labels": ["a", "b", "c"]}))
    with pytest.raises(CheckpointError, match="predicts 7 classes but the labels list has 3"):
        predict([run_dir / "models" / "CNN_RNN_fold1_epoch1_e4.h5"], run_dir / "test_final.pickle",
                tmp_path / "o", labels=labels)


def test_keras2_h5_checkpoint_loads_and_predicts(run_dir, tmp_path):
    """The original CNNRNN code saved .h5 files with tf.keras 2.x; they must load for prediction."""
    import tf_keras

    from cnnrnn.cnnrnn.predict import predict

    tf_keras.utils.set_random_seed(0)
    old = tf_keras.Sequential([
        tf_keras.layers.InputLayer(input_shape=(32, 64, 3)),
        tf_keras.layers.Rescaling(1 / 255.0),
        tf_keras.layers.Conv2D(4, 3, activation="relu"),
        tf_keras.layers.GlobalAveragePooling2D(),
        tf_keras.layers.Dense(7, activation="softmax"),
    ])
    old.compile(optimizer=tf_keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    path = tmp_path / "CNN_RNN_fold_epoch60_e4.h5"
    with pytest.warns(UserWarning, match="HDF5"):  # the legacy format is the point of this test
        old.save(path, save_format="h5")
    images = load_image_table(run_dir / "test_final.pickle")["path"]
    expected = old.predict(images.astype(np.float32), verbose=0)
    result = predict([path], run_dir / "test_final.pickle", tmp_path / "out", labels=run_dir / "labels.json")
    got = result["predictions"][[f"p_{lab}" for lab in load_json(run_dir / "labels.json")["labels"]]].to_numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert result["metrics"]["n"] == len(images)


def test_faithful_resnet50_run_end_to_end(sample_dir, tmp_path, eager):  # eager: tracing ResNet50 costs more
    """THE faithful end-to-end run: the original CNNRNN (ResNet50 + LSTM) at the tests' size (preset tiny_resnet50)
    through `cnnrnn run` on the bundled sample (split, spectrograms, pack, 2 folds, the test set predicted with both
    folds' checkpoints). Every other CNNRNN run of the suite uses the compact backbone (`cnnrnn predict` of a wav
    with a run: test_predict_facade.py, test_shipped_model.py)."""
    from cnnrnn.artifacts import load_model
    from cnnrnn.runs import read_manifest

    run = tmp_path / "run"
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(run),
                     "--config", "tiny_resnet50"]) == 0
    manifest = read_manifest(run)
    assert manifest.config["train"]["backbone"] == "resnet50" and manifest.input["image_size"] == [32, 64]
    checkpoints = manifest.checkpoint_paths()
    assert [p.name for p in checkpoints] == ["CNN_RNN_fold1_epoch1_e4.h5", "CNN_RNN_fold2_epoch1_e4.h5"]
    model = load_model(checkpoints[0])
    assert model.name == "cnnrnn_resnet50_lstm" and model.get_layer("resnet50").output.shape[-1] == 2048
    assert model.input_shape == (None, 32, 64, 3) and model.output_shape == (None, 7)
    report = load_json(run / "cv_report.json")
    assert [f["fold"] for f in report["folds"]] == [1, 2] and report["selection"] == "inner"
    preds = pd.read_csv(run / "test" / "predictions.csv")
    assert list(preds["id"]) == load_pickle(run / "data_test.pickle")["id"]
    probs = preds[[c for c in preds if c.startswith("p_")]].to_numpy()
    assert probs.shape[1] == 7 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    metrics = load_json(run / "test" / "metrics.json")
    assert metrics["n"] == len(preds) and all(0.0 <= metrics[k] <= 1.0 for k in ("ua", "wa", "f1_macro"))


def test_backbone_weights_offline(tmp_path, monkeypatch):
    """The one test that builds the CNNRNN's ResNet50 and loads weights into it (a local file, never a download)."""
    import keras

    from cnnrnn.models import build_cnnrnn
    from cnnrnn.models.cnnrnn import WeightsError, resolve_backbone_weights

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    with pytest.raises(WeightsError, match="never downloads"):
        resolve_backbone_weights("imagenet")
    with pytest.raises(WeightsError, match="does not exist"):
        resolve_backbone_weights(str(tmp_path / "nope.h5"))
    assert resolve_backbone_weights("none") is None
    # a local weights file loads through the same path as a real ImageNet file would
    keras.utils.set_random_seed(1)
    donor = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    path = tmp_path / "resnet50_notop.weights.h5"
    donor.save_weights(path)
    model = build_cnnrnn((32, 32, 3), 4, weights=str(path), lstm_units=4)
    backbone = model.get_layer("resnet50")
    for a, b in zip(backbone.get_weights()[:5], donor.get_weights()[:5]):
        np.testing.assert_array_equal(a, b)


def test_gallery_png_per_emotion(run_dir, tmp_path):
    out = tmp_path / "gallery.png"
    assert cli.main(["-q", "spectrogram", "--gallery", str(run_dir), "-o", str(out), "--per-label", "3"]) == 0
    from cnnrnn.features import read_png

    image = read_png(out)
    assert image.shape[0] > 6 * 100 and image.shape[1] > 3 * 100  # six emotion rows of three images


def test_kemdy20_layout_labels_disgust_in_the_fixed_order(shared_data, tmp_path):
    """A CNNRNN split of the KEMDy20 layout writes the canonical "disgust" in the fixed KEMDy order, and an
    annotation cell spelled "disgust" (not the corpus' "disqust") is read."""
    import shutil

    root = shared_data / "kemdy20-layout"
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(root), "--out", str(tmp_path / "a")]) == 0
    labels = load_json(tmp_path / "a" / "labels.json")["labels"]
    assert labels == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    emotions = {r["emotion"] for r in load_json(tmp_path / "a" / "train_audio.json")}
    assert "disqust" not in emotions

    copy = tmp_path / "kemdy20"
    shutil.copytree(root / "annotation", copy / "annotation")
    (copy / "wav").symlink_to((root / "wav").resolve())
    first = sorted((copy / "annotation").glob("*.csv"))[0]
    lines = first.read_text(encoding="utf-8-sig").splitlines(keepends=True)
    row = lines[2].split(",")
    row[4] = "disgust"
    lines[2] = ",".join(row)
    first.write_text("".join(lines), encoding="utf-8")
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(copy), "--out", str(tmp_path / "b")]) == 0
    records = load_json(tmp_path / "b" / "train_audio.json") + load_json(tmp_path / "b" / "test_audio.json")
    seg = row[3].strip()
    found = [r for r in records if r["id"] == seg]
    assert found and found[0]["emotion"] == "disgust" and found[0]["label"] == 1
