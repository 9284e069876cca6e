"""Speaker normalisation (cnnrnn.normalize) and the functionals family (openSMILE + SVM) on real speech.

The audio is the bundled sample (real EmoDB speech in the KEMDy20 layout, always present): three of its
speakers, two clips per speaker and class, described by a CSV manifest (path,label,speaker). eGeMAPSv02 keeps it
fast; the features are cached once for the whole module.
"""
import collections
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import normalize
from cnnrnn.artifacts import CheckpointError, load_json
from cnnrnn.cli import main
from conftest import write_wav

pytest.importorskip("opensmile")
pytest.importorskip("skops")

TRAIN_SPEAKERS = ("User006F", "User034F")
TEST_SPEAKER = "User033M"


# --------------------------------------------------------------------------- normalisation maths
def test_speaker_statistics_use_only_that_speakers_rows_and_a_single_utterance_falls_back():
    rng = np.random.default_rng(0)
    a = [rng.normal(5.0, 2.0, 4) for _ in range(3)]
    b = [rng.normal(-1.0, 0.5, 4) for _ in range(2)]
    c = [rng.normal(9.0, 1.0, 4)]
    items, speakers = a + b + c, ["A"] * 3 + ["B"] * 2 + ["C"]
    reference = [True] * 5 + [False]  # C's utterance is a test item: not in the global statistics

    stats = normalize.fit(items, speakers, reference=reference)
    np.testing.assert_allclose(stats.speakers["A"].mean, np.mean(a, axis=0))
    np.testing.assert_allclose(stats.speakers["A"].std, np.std(a, axis=0))
    np.testing.assert_allclose(stats.global_moments.mean, np.mean(a + b, axis=0))
    assert stats.fallback == {"C": 1} and "C" not in stats.speakers

    changed = normalize.fit(a + [x * 100 for x in b] + c, speakers, reference=reference)
    np.testing.assert_allclose(changed.speakers["A"].mean, stats.speakers["A"].mean)  # B's rows do not touch A

    z = normalize.apply(a[0], "A", stats, "speaker")
    np.testing.assert_allclose(z, (a[0] - np.mean(a, axis=0)) / np.std(a, axis=0), rtol=1e-5)
    z_c = normalize.apply(c[0], "C", stats, "speaker")  # one utterance: the global statistics
    np.testing.assert_allclose(z_c, (c[0] - stats.global_moments.mean) / stats.global_moments.std, rtol=1e-5)
    _, sources = normalize.apply_all(np.stack(items), speakers[:5] + [None], stats, "speaker")
    assert sources == ["speaker"] * 5 + ["global_fallback_no_speaker"]
    assert normalize.norm_source("C", stats, "speaker") == "global_fallback_single"
    assert normalize.apply(a[0], None, None, "none").dtype == np.float32

    restored = normalize.NormStats.from_dict(json.loads(json.dumps(stats.to_dict())))
    np.testing.assert_array_equal(restored.speakers["B"].std, stats.speakers["B"].std)
    assert restored.fallback == {"C": 1}


def test_log_mel_frames_are_rows_per_band_and_utterance_mode_needs_frames():
    rng = np.random.default_rng(1)
    mels = [rng.normal(-40, 10, (8, n)) for n in (30, 50)]  # (n_mels, frames) spectrograms of one speaker
    stats = normalize.fit([m.T for m in mels], ["s", "s"])
    frames = np.concatenate([m.T for m in mels])
    np.testing.assert_allclose(stats.speakers["s"].mean, frames.mean(axis=0))
    assert stats.dim == 8 and stats.speakers["s"].n_rows == 80 and stats.speakers["s"].n_items == 2
    z = normalize.apply(mels[0].T, None, None, "utterance")
    np.testing.assert_allclose(z.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(z.std(axis=0), 1, atol=1e-4)
    with pytest.raises(normalize.NormalizationError, match="several rows"):
        normalize.apply(mels[0][:, 0], None, None, "utterance")
    with pytest.raises(normalize.NormalizationError, match="unknown normalisation mode"):
        normalize.apply(mels[0].T, "s", stats, "per_speaker")
    constant = normalize.fit([np.ones((5, 3)), np.ones((5, 3))], ["k", "k"])
    assert constant.speakers["k"].std.tolist() == [1.0, 1.0, 1.0]  # a constant band is only centred


# --------------------------------------------------------------------------- family on real audio
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A manifest of the bundled sample: 2 clips per class of three speakers, plus a broken wav, a 10 ms clip
    (too short for openSMILE) and a speaker with a single clip."""
    import cnnrnn
    import soundfile as sf
    from cnnrnn.corpora import load_corpus

    sample = Path(cnnrnn.__file__).parent / "sample" / "kemdy20"
    utts, _ = load_corpus("kemdy20", sample)
    per = collections.Counter()
    rows = []
    for u in sorted(utts, key=lambda u: u.id):
        if u.speaker in TRAIN_SPEAKERS + (TEST_SPEAKER,) and per[u.speaker, u.emotion] < 2:
            per[u.speaker, u.emotion] += 1
            rows.append((u.audio_path, u.emotion, u.speaker))
    single = next(u for u in sorted(utts, key=lambda u: u.id) if u.speaker == "User001M")
    root = tmp_path_factory.mktemp("functionals")
    broken = root / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt not really a wav file")
    y, sr = sf.read(rows[0][0], dtype="float32")
    short = write_wav(root / "short.wav", y[: sr // 100], sr)
    manifest = root / "corpus.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker"])
        w.writerows(rows)
        w.writerow([single.audio_path, single.emotion, "User001M"])
        w.writerow([str(broken), "angry", TRAIN_SPEAKERS[0]])
        w.writerow([str(short), rows[0][1], TRAIN_SPEAKERS[0]])
    return {"root": root, "manifest": manifest, "rows": rows, "single": single, "cache": root / "cache"}


@pytest.fixture(scope="module")
def run(corpus):
    out = corpus["root"] / "run"
    assert main(["-q", "functionals", "train", "--corpus", "manifest", "--root", str(corpus["manifest"]),
                 "--out", str(out), "--config", "tiny", "--holdout-speaker", TEST_SPEAKER,
                 "--cache-dir", str(corpus["cache"])]) == 0
    return out


def test_train_writes_a_run_and_counts_broken_short_and_single_speaker_files(run, corpus):
    manifest = load_json(run / "run.json")
    assert manifest["family"] == "functionals" and manifest["checkpoints"] == ["model.skops"]
    assert manifest["labels"] == ["angry", "disgust", "fear", "happy", "neutral", "sad"]  # sorted: a manifest
    assert manifest["split"]["scheme"] == "loso" and manifest["split"]["holdout_speaker"] == TEST_SPEAKER
    assert manifest["input"]["feature_set"] == "eGeMAPSv02" and manifest["input"]["n_features"] == 88
    assert manifest["config"]["normalization"] == "speaker" and manifest["config"]["sr"] is None
    assert manifest["input"]["sr"] == 16000 and manifest["input"]["sr_source"] == "corpus"  # the sample's rate
    from cnnrnn.functionals.predict import FunctionalsRun

    assert FunctionalsRun.load(run).config.sr == 16000  # new files are resampled to the training rate

    report = load_json(run / "metrics.json")
    n_test = sum(1 for r in corpus["rows"] if r[2] == TEST_SPEAKER)
    assert report["family"] == "functionals" and report["n"] == report["n_test"] == n_test
    assert report["test_speakers"] == [TEST_SPEAKER] and 0.0 <= report["ua"] <= 1.0
    assert report["skipped_audio"] == {"unreadable": ["broken"], "opensmile_failed": ["short"]}
    assert report["normalization"]["fallback_speakers"] == {"User001M": 1}
    assert report["normalization"]["test_sources"] == {"speaker": n_test}
    assert report["features"]["extracted"] + report["features"]["reused"] == len(corpus["rows"]) + 1

    stats = normalize.NormStats.from_dict(load_json(run / "normalization.json"))
    assert set(stats.speakers) == set(TRAIN_SPEAKERS) | {TEST_SPEAKER} and stats.fallback == {"User001M": 1}
    assert stats.global_moments.n_items == report["n_train"]  # training clips only
    split = load_json(run / "split.json")
    assert not {i for i in split["test"]} & set(split["train"])
    import pandas as pd

    df = pd.read_csv(run / "predictions.csv")
    assert {"speaker", "normalization", "p_angry", "true"} <= set(df.columns) and len(df) == n_test
    assert (run / "confusion_matrix.png").is_file()


def test_a_rerun_reuses_the_cached_features_and_evaluate_scores_the_same(run, corpus, tmp_path):
    from cnnrnn.functionals.train import train

    report = train("manifest", corpus["manifest"], tmp_path / "again", config="tiny", cache_dir=corpus["cache"],
                   progress=False, holdout_speaker=TEST_SPEAKER)
    assert report["features"]["extracted"] == 0 and report["features"]["reused"] == len(corpus["rows"]) + 1
    first = load_json(run / "metrics.json")
    assert report["ua"] == pytest.approx(first["ua"])
    assert main(["-q", "functionals", "evaluate", "--run", str(run), "--out", str(tmp_path / "eval")]) == 0
    again = load_json(tmp_path / "eval" / "metrics.json")
    assert again["n"] == first["n"] and again["ua"] == pytest.approx(first["ua"])
    assert again["confusion_matrix"] == first["confusion_matrix"]


def test_without_speaker_normalisation_no_statistics_are_stored(corpus, tmp_path):
    from cnnrnn.functionals.train import train

    report = train("manifest", corpus["manifest"], tmp_path / "none", config="tiny", cache_dir=corpus["cache"],
                   progress=False, holdout_speaker=TEST_SPEAKER, normalization="none")
    assert report["normalization"]["test_sources"] == {"none": report["n"]}
    assert not (tmp_path / "none" / "normalization.json").exists()


def test_skops_round_trip_and_untrusted_types_are_refused(run, tmp_path):
    from cnnrnn.functionals.predict import load_model, save_model
    from sklearn.preprocessing import StandardScaler

    model = load_model(run / "model.skops")
    X = np.random.default_rng(0).normal(size=(5, 88)).astype(np.float32)
    save_model(model, tmp_path / "copy.skops")
    np.testing.assert_array_equal(load_model(tmp_path / "copy.skops").predict_proba(X), model.predict_proba(X))

    save_model(collections.Counter(a=1), tmp_path / "counter.skops")
    with pytest.raises(CheckpointError, match="collections.Counter"):
        load_model(tmp_path / "counter.skops")
    save_model(StandardScaler(), tmp_path / "scaler.skops")
    with pytest.raises(CheckpointError, match="not a fitted classifier"):
        load_model(tmp_path / "scaler.skops")
    (tmp_path / "junk.skops").write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match="not a skops model"):
        load_model(tmp_path / "junk.skops")


def test_predict_command_with_and_without_speaker(run, corpus, tmp_path, capsys):
    import pandas as pd

    test_files = [r[0] for r in corpus["rows"] if r[2] == TEST_SPEAKER][:4]
    folder = tmp_path / "inputs"
    folder.mkdir()
    for f in test_files:
        (folder / Path(f).name).symlink_to(f)

    assert main(["-q", "predict", "--model", str(run), "--input", str(folder), "--out", str(tmp_path / "p1")]) == 0
    df = pd.read_csv(tmp_path / "p1" / "predictions.csv")
    assert len(df) == 4 and set(df["normalization"]) == {"global_fallback_no_speaker"}
    assert "4 file(s) have no speaker" in capsys.readouterr().out

    assert main(["-q", "predict", "--model", str(run), "--input", str(folder), "--out", str(tmp_path / "p2"),
                 "--speaker", "Someone"]) == 0
    df = pd.read_csv(tmp_path / "p2" / "predictions.csv")
    assert set(df["normalization"]) == {"speaker"} and set(df["speaker"]) == {"Someone"}
    assert "note:" not in capsys.readouterr().out

    one = tmp_path / "one"
    one.mkdir()
    (one / Path(test_files[0]).name).symlink_to(test_files[0])
    assert main(["-q", "predict", "--model", str(run), "--input", str(one), "--out", str(tmp_path / "p3"),
                 "--speaker", "Newcomer"]) == 0
    assert pd.read_csv(tmp_path / "p3" / "predictions.csv")["normalization"].tolist() == ["global_fallback_single"]
    assert main(["-q", "predict", "--model", str(run / "model.skops"), "--input", str(one),
                 "--out", str(tmp_path / "p4"), "--speaker", TEST_SPEAKER]) == 0  # the run's stored statistics
    assert pd.read_csv(tmp_path / "p4" / "predictions.csv")["normalization"].tolist() == ["speaker"]


def test_predict_on_a_csv_with_speakers_and_labels_is_scored(run, corpus, tmp_path):
    from cnnrnn.predict import predict

    table = tmp_path / "inputs.csv"
    rows = [r for r in corpus["rows"] if r[2] == TEST_SPEAKER]
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "label"])
        w.writerows([(p, s, lab) for p, lab, s in rows])
        w.writerow([corpus["single"].audio_path, "", ""])
        w.writerow(["missing.wav", "x", "angry"])
    result = predict(run, table, tmp_path / "out", progress=False)
    assert result["family"] == "functionals" and result["metrics"]["n"] == len(rows)
    assert result["skipped"]["missing_audio"] == [str(tmp_path / "missing.wav")]
    assert result["skipped"]["unknown_label"] == [corpus["single"].audio_path]
    assert result["normalization"] == {"speaker": len(rows)}
    stored = load_json(run / "metrics.json")
    assert result["metrics"]["ua"] == pytest.approx(stored["ua"])  # the same speaker statistics as in training
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_config_presets_and_refusals(tmp_path):
    from cnnrnn.config import list_presets
    from cnnrnn.functionals.config import FunctionalsConfigError, load_functionals_config

    assert {"compare_linear", "egemaps_rbf", "tiny"} <= set(list_presets("functionals"))
    assert load_functionals_config().feature_set == "ComParE_2016"
    assert load_functionals_config("egemaps_rbf").kernel == "rbf"
    with pytest.raises(FunctionalsConfigError, match="unknown key"):
        load_functionals_config({"kernal": "rbf"})
    with pytest.raises(FunctionalsConfigError, match="frames"):
        load_functionals_config("tiny", normalization="utterance")
    with pytest.raises(FunctionalsConfigError, match="feature_set"):
        load_functionals_config({"feature_set": "emobase"})
    from cnnrnn.cli import build_parser

    args = build_parser().parse_args(["functionals", "train", "--corpus", "emodb", "--root", "r", "--out", "o",
                                      "--sr", "native"])
    assert args.sr == "native" and args.C is None and args.kernel is None  # options only override the config
