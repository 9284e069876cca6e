"""ANN / CNN baselines: readers, fixed-length waveforms, spectrogram features, feature cache, splits,
training, evaluation and prediction on real audio (FSDD and an UrbanSound8K-layout folder)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import write_wav

from cnnrnn.artifacts import load_model
from cnnrnn.audio import AudioError, load_audio, pad_or_trim
from cnnrnn.baselines.config import BaselineConfigError, load_baseline_config
from cnnrnn.baselines.data import PCM_SCALE, SplitError, _cache_key, build_cache, clip_features, split_rows, waveform
from cnnrnn.baselines.predict import predict_run
from cnnrnn.baselines.train import evaluate, train
from cnnrnn.corpora import CorpusError, load_corpus
from cnnrnn.runs import read_manifest

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def fsdd_small(shared_data, tmp_path):
    """40 real FSDD clips: 10 digits x 2 takes x 2 speakers (george, jackson)."""
    root = tmp_path / "fsdd"
    root.mkdir()
    for digit in range(10):
        for speaker in ("george", "jackson"):
            for take in (0, 1):
                name = f"{digit}_{speaker}_{take}.wav"
                shutil.copy(shared_data / "fsdd" / name, root / name)
    return root


@pytest.fixture
def urbansound_dir(sample_dir, tmp_path):
    """An UrbanSound8K-layout folder (train.csv ID,Class + Train/<ID>.wav) from the bundled real speech.

    Classes are the sample's emotions. Bad input added on purpose: a row whose wav is missing
    (id 9001), an empty (zero-sample) clip (id 9002) and a clip longer than any fixed length (id 9003).
    """
    utts, _ = load_corpus("kemdy20", sample_dir)
    root = tmp_path / "us8k"
    rows = []
    for i, u in enumerate(utts[:36]):
        (root / "Train").mkdir(parents=True, exist_ok=True)
        shutil.copy(u.audio_path, root / "Train" / f"{i}.wav")
        rows.append((str(i), u.emotion))
    long_y = np.concatenate([load_audio(u.audio_path)[0] for u in utts[:4]])
    write_wav(root / "Train" / "9003.wav", long_y, 16000)
    write_wav(root / "Train" / "9002.wav", np.zeros(0, np.float32), 16000)
    rows += [("9001", utts[0].emotion), ("9002", utts[1].emotion), ("9003", utts[2].emotion)]
    (root / "train.csv").write_text("ID,Class\n" + "".join(f"{a},{b}\n" for a, b in rows), encoding="utf-8")
    return root


# --------------------------------------------------------------------------- audio shaping
def test_reflect_padding_repeats_a_short_clip_to_exactly_n_samples(real_waveform):
    y = real_waveform[0][4000:4400]  # 400 real samples, far shorter than half the target
    out = pad_or_trim(y, 1500, mode="reflect")
    assert out.shape == (1500,) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:400], y)
    np.testing.assert_array_equal(out[400:800], y[::-1])  # reflected
    np.testing.assert_array_equal(out[800:1200], y)  # and repeated
    np.testing.assert_array_equal(out[1200:], y[::-1][:300])
    with pytest.raises(AudioError) as info:
        pad_or_trim(np.zeros(0, np.float32), 10, mode="reflect")
    assert info.value.reason == "empty"


def test_a_long_clip_is_cut_to_the_exact_length(real_wav):
    cfg = load_baseline_config("tiny_ann", duration=0.5, sr=16000)
    full, _ = load_audio(real_wav, sr=16000)
    assert full.size > cfg.n_samples
    y = waveform(real_wav, cfg)
    assert y.shape == (8000,)
    np.testing.assert_array_equal(y, full[:8000])


def test_cnn_features_are_standardised_then_scaled_to_0_255(real_wav):
    cfg = load_baseline_config("tiny_cnn")
    x = clip_features(real_wav, cfg)
    assert x.shape == cfg.input_shape == (32, 63, 1) and x.dtype == np.float32
    assert x.min() == 0.0 and x.max() == pytest.approx(255.0)
    assert 20 < x.mean() < 235  # a real spectrogram, not a constant


# --------------------------------------------------------------------------- readers and config
def test_fsdd_reader_parses_digit_and_speaker(fsdd_small):
    (fsdd_small / "notes_about.wav").write_bytes(b"")
    utts, report = load_corpus("fsdd", fsdd_small)
    assert len(utts) == 40 and report.skipped == {"unparsable_name": ["notes_about.wav"]}
    u = next(u for u in utts if u.id == "7_jackson_1")
    assert (u.emotion, u.speaker) == ("7", "jackson")


@pytest.mark.parametrize("header", ["Class\n", "ID,Label\n", "file,Class\n"])
def test_urbansound_csv_without_id_or_class_is_a_clear_error(tmp_path, header):
    (tmp_path / "train.csv").write_text(header + "1,siren\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="lacks column"):
        load_corpus("urbansound8k", tmp_path)


def test_urbansound_row_without_audio_is_counted(urbansound_dir):
    utts, report = load_corpus("urbansound8k", urbansound_dir)
    assert report.skipped == {"missing_audio": ["Train/9001.wav"]}
    assert report.n_annotated == 39 and len(utts) == 38


def test_config_rejects_unknown_keys_and_a_model_mismatch(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "ann", "hiden_units": [8]}), encoding="utf-8")
    with pytest.raises(BaselineConfigError, match="hiden_units"):
        load_baseline_config(bad)
    with pytest.raises(BaselineConfigError, match="model"):
        load_baseline_config("tiny_cnn", model="ann")
    cfg = load_baseline_config(None, model="ann")
    assert (cfg.sr, cfg.n_samples, cfg.batch_size, cfg.learning_rate, cfg.epochs) == (44100, 176400, 32, 1e-3, 5)


# --------------------------------------------------------------------------- split
def test_a_class_only_in_validation_is_dropped_and_counted():
    y = np.array([0, 1, 0, 1, 0, 1, 2, 2])
    groups = ["a", "a", "b", "b", "c", "c", "c", "c"]  # class 2 only in speaker c
    cfg = load_baseline_config("tiny_ann", split="speaker", holdout_speaker="c")
    split = split_rows(y, groups, np.arange(8), ["x", "y", "z"], cfg)
    assert split["dropped"] == {"z": 2}
    assert split["val"].tolist() == [4, 5] and split["train"].tolist() == [0, 1, 2, 3]
    only_new = load_baseline_config("tiny_ann", split="speaker", holdout_speaker="c")
    with pytest.raises(SplitError, match="0 validation"):
        split_rows(np.array([0, 0, 1, 1]), ["a", "a", "c", "c"], np.arange(4), ["x", "y"], only_new)
    with pytest.raises(SplitError, match="speaker"):
        split_rows(y, [None] * 8, np.arange(8), ["x", "y", "z"], cfg)


# --------------------------------------------------------------------------- train / evaluate / predict
def _check_run(run, report, model, n_classes):
    for name in ("model.h5", "labels.json", "baseline_config.json", "split.json", "metrics.json",
                 "confusion_matrix.png", "curves.png", "history.csv", "predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text(encoding="utf-8"))
    assert metrics["n"] == report["n_val"] > 0 and 0.0 <= metrics["ua"] <= 1.0
    assert np.asarray(metrics["confusion_matrix"]).sum() == metrics["n"]
    net = load_model(run / "model.h5")
    cfg = load_baseline_config(run / "baseline_config.json")
    assert net.input_shape[1:] == cfg.input_shape and net.output_shape[-1] == n_classes
    assert cfg.model == model
    labels = json.loads((run / "labels.json").read_text(encoding="utf-8"))["labels"]
    assert metrics["labels"] == labels and metrics["family"] == "baselines"
    manifest = read_manifest(run, families=["baselines"])
    assert manifest.labels == labels and manifest.checkpoints == ["model.h5"]
    assert load_baseline_config(manifest.config) == cfg and manifest.input["shape"] == list(cfg.input_shape)
    assert manifest.split["seed"] == cfg.seed and manifest.split["fold"] is not None


@pytest.mark.parametrize("model", ["ann", "cnn"])
def test_train_evaluate_predict_on_fsdd(fsdd_small, tmp_path, model):
    run = tmp_path / model
    report = train("fsdd", fsdd_small, run, config=f"tiny_{model}", progress=False, verbose=0)
    assert json.loads((run / "labels.json").read_text())["labels"] == [str(d) for d in range(10)]
    assert report["n_train"] == 32 and report["n_val"] == 8  # stratified 8:2 of 40
    _check_run(run, report, model, 10)

    again = evaluate(run, progress=False)  # the validation split, from the cached features
    assert again["n"] == report["n"] and again["accuracy"] == pytest.approx(report["accuracy"])

    result = predict_run([run / "model.h5"], fsdd_small, tmp_path / "pred", progress=False)  # found by its files
    assert len(result["predictions"]) == 40 and result["metrics"] is None and not result["skipped"]
    assert set(result["predictions"]["predicted"]) <= {str(d) for d in range(10)}
    by_manifest = predict_run([run], fsdd_small, tmp_path / "pred2", manifest=read_manifest(run), progress=False)
    np.testing.assert_allclose(by_manifest["predictions"]["confidence"], result["predictions"]["confidence"])
    assert (tmp_path / "pred2" / "predictions.csv").is_file()

    # speaker-independent: one speaker held out; the rerun reuses the feature cache
    cache_file = report["cache"]["file"]
    held = train("fsdd", fsdd_small, run, config=f"tiny_{model}", progress=False, verbose=0,
                   split="speaker", holdout_speaker="jackson")
    assert held["cache"] == {**report["cache"], "reused": True} and held["cache"]["file"] == cache_file
    assert held["val_speakers"] == ["jackson"] and held["n_val"] == 20


@pytest.mark.parametrize("model", ["ann", "cnn"])
def test_train_and_predict_on_an_urbansound8k_layout_folder(urbansound_dir, tmp_path, model):
    from cnnrnn.cli import main

    run = tmp_path / model
    report = train("urbansound8k", urbansound_dir, run, config=f"tiny_{model}", progress=False, verbose=0)
    labels = json.loads((run / "labels.json").read_text())["labels"]
    assert labels == sorted(labels) and len(labels) >= 4  # pandas cat.codes order
    assert report["skipped_corpus"] == {"missing_audio": ["Train/9001.wav"]}
    assert report["skipped_audio"] == {"empty": ["9002"]}
    assert report["n_train"] + report["n_val"] == 37
    _check_run(run, report, model, len(labels))

    # another corpus, classes matched by meaning: anger = angry, joy = happy, disqust = disgust; boredom is unknown
    names = {"angry": "anger", "happy": "joy", "disgust": "disqust"}
    classes = dict(line.split(",") for line in (urbansound_dir / "train.csv").read_text().splitlines()[1:])
    rows = [(f"Train/{i}.wav", names.get(c, c)) for i, c in classes.items()
            if (urbansound_dir / f"Train/{i}.wav").is_file()]
    rows[0] = (rows[0][0], "boredom")
    (urbansound_dir / "other.csv").write_text("path,label\n" + "".join(f"{p},{c}\n" for p, c in rows),
                                              encoding="utf-8")
    other = evaluate(run, corpus="manifest", root=urbansound_dir / "other.csv", progress=False)
    assert other["skipped_unknown_label"] == {"boredom": [Path(rows[0][0]).stem]}
    assert other["skipped_audio"] == {"empty": ["9002"]} and other["n"] == len(rows) - 2
    assert other["label_map"] == {"anger": "angry", "joy": "happy", "disqust": "disgust"}
    scored = pd.read_csv(run / "evaluation_manifest" / "predictions.csv")
    assert set(scored["true"]) <= set(labels) and len(scored) == other["n"]

    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(run / "model.h5"), "--input", str(urbansound_dir / "Train"),
                 "--out", str(out), "--no-figures"]) == 0
    lines = (out / "predictions.csv").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 + 37  # the empty clip is skipped
    cut = set(pd.read_csv(out / "timeline.csv")["file"])
    assert cut and not list(out.glob("timeline_*.png"))  # long files were cut in windows, no figure drawn
    assert main(["-q", "predict", "--model", str(run), "--input", str(urbansound_dir / "Train" / "9003.wav"),
                 "--out", str(out)]) == 0  # the long clip is cut, not an error
    assert pd.read_csv(out / "predictions.csv")["id"].tolist() == [9003]


def test_feature_cache_is_streamed_from_disk_and_reused(real_wav, tmp_path):
    from cnnrnn.corpora import Utterance

    cfg = load_baseline_config("tiny_ann", sr=16000)
    short = write_wav(tmp_path / "short.wav", sf.read(real_wav, dtype="float32")[0][:3000], 16000)
    empty = write_wav(tmp_path / "empty.wav", np.zeros(0, np.float32), 16000)
    utts = [Utterance(id=p.stem, audio_path=str(p), emotion="x") for p in (real_wav, short, empty)]
    cache, index = build_cache(utts, cfg, tmp_path / "cache", progress=False)
    assert index["ok"] == [True, True, False] and index["skipped"] == {"empty": ["empty"]}
    rows = cache.read([1, 0])
    assert rows.shape == (2, cfg.n_samples) and rows.dtype == np.float32
    np.testing.assert_allclose(rows[1], waveform(real_wav, cfg), atol=1.0 / PCM_SCALE)
    np.testing.assert_allclose(rows[0], waveform(short, cfg), atol=1.0 / PCM_SCALE)
    mtime = (tmp_path / "cache" / f"ann_{_cache_key(utts, cfg)}.npy").stat().st_mtime_ns
    again, index2 = build_cache(utts, cfg, tmp_path / "cache", progress=False)
    assert index2["reused"] and again.path == cache.path and again.path.stat().st_mtime_ns == mtime
