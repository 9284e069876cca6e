"""The functionals family's ``whisper`` feature set: frozen Whisper block features + a linear head.

Fast: a small random-weight encoder (``whisper_random_weights``: 2 blocks, width 64) on the bundled sample (real
EmoDB speech in the KEMDy20 layout, 16 kHz): three speakers, two clips per speaker and class, plus a 31 s file
(too long for Whisper) and a 10 ms one (too short), described by a CSV manifest. The features are cached once for
the module (every block of a clip in one file), so the runs after the first only fit logistic regressions.
"""
import collections
import csv
import json
import logging
from pathlib import Path

import numpy as np
import pytest

from cnnrnn.artifacts import load_json
from cnnrnn.cli import main
from conftest import write_ct2_whisper, write_wav

pytest.importorskip("skops")

TRAIN_SPEAKERS = ("User006F", "User034F")
TEST_SPEAKER = "User033M"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    import soundfile as sf

    import cnnrnn
    from cnnrnn.corpora import load_corpus

    utts, _ = load_corpus("kemdy20", Path(cnnrnn.__file__).parent / "sample" / "kemdy20")
    per = collections.Counter()
    rows = []
    for u in sorted(utts, key=lambda u: u.id):
        if u.speaker in TRAIN_SPEAKERS + (TEST_SPEAKER,) and per[u.speaker, u.emotion] < 2:
            per[u.speaker, u.emotion] += 1
            rows.append((u.audio_path, u.emotion, u.speaker))
    root = tmp_path_factory.mktemp("whisper_functionals")
    y, sr = sf.read(rows[0][0], dtype="float32")
    long = write_wav(root / "long.wav", np.tile(y, int(np.ceil(31 * sr / len(y))))[: 31 * sr], sr)
    short = write_wav(root / "short.wav", y[: sr // 100], sr)
    manifest = root / "corpus.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker"])
        w.writerows(rows)
        w.writerow([str(long), rows[0][1], TRAIN_SPEAKERS[0]])
        w.writerow([str(short), rows[0][1], TRAIN_SPEAKERS[0]])
    return {"root": root, "manifest": manifest, "rows": rows, "cache": root / "cache", "long": long}


def _train(corpus, out, weights, *extra) -> int:
    return main(["-q", "functionals", "train", "--corpus", "manifest", "--root", str(corpus["manifest"]),
                 "--out", str(out), "--config", "whisper", "--whisper-weights", str(weights),
                 "--holdout-speaker", TEST_SPEAKER, "--cache-dir", str(corpus["cache"]), *extra])


@pytest.fixture(scope="module")
def run(corpus, whisper_random_weights):
    out = corpus["root"] / "run_b1"
    assert _train(corpus, out, whisper_random_weights, "--whisper-block", "1", "--C", "0.1") == 0
    return out


def test_trains_skips_what_whisper_cannot_take_and_saves_with_skops(run, corpus, whisper_random_weights):
    from cnnrnn.functionals.predict import FunctionalsRun, load_model

    manifest = load_json(run / "run.json")
    assert manifest["family"] == "functionals" and manifest["checkpoints"] == ["model.skops"]
    assert manifest["config"]["feature_set"] == "whisper" and manifest["config"]["classifier"] == "logistic"
    assert manifest["config"]["whisper_block"] == 1 and manifest["config"]["C"] == 0.1
    assert manifest["config"]["whisper_weights"] == str(Path(whisper_random_weights).resolve())
    spec = manifest["input"]
    assert spec["sr"] == 16000 and spec["n_features"] == 128 and spec["duration"] == 30.0  # 2 x width 64
    assert spec["whisper_weights"]["n_layers"] == 2 and len(spec["whisper_weights"]["sha1"]) == 40
    report = load_json(run / "metrics.json")
    assert report["skipped_audio"] == {"too_long": ["long"], "too_short": ["short"]}
    assert report["n_test"] == sum(1 for r in corpus["rows"] if r[2] == TEST_SPEAKER) and 0 <= report["ua"] <= 1
    assert report["selection"] is None and report["whisper_block"] == 1
    # one cache file per clip, holding every block (stem, block 1, block 2) of mean + std
    cached = sorted(Path(report["features"]["cache"]).glob("*.npy"))
    assert len(cached) == len(corpus["rows"]) and np.load(cached[0]).shape == (3, 128)

    model = load_model(run / "model.skops")  # skops, types checked
    assert type(model[-1]).__name__ == "LogisticRegression"
    fitted = FunctionalsRun.load(run)
    assert fitted.config.whisper_block == 1 and fitted.stats.dim == 128
    assert main(["-q", "functionals", "evaluate", "--run", str(run), "--out", str(corpus["root"] / "eval")]) == 0
    again = load_json(corpus["root"] / "eval" / "metrics.json")  # from the same cache, the same statistics
    assert again["features"]["extracted"] == 0 and again["ua"] == pytest.approx(report["ua"])


def test_predicts_from_the_cli_and_cuts_files_over_30_s_into_windows(run, corpus, tmp_path):
    import pandas as pd

    rows = [r for r in corpus["rows"] if r[2] == TEST_SPEAKER]
    table = tmp_path / "inputs.csv"
    with open(table, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "speaker", "label"])
        w.writerows([(p, s, lab) for p, lab, s in rows])
    assert main(["-q", "predict", "--model", str(run), "--input", str(table), "--out", str(tmp_path / "p")]) == 0
    scored = load_json(tmp_path / "p" / "metrics.json")
    assert scored["n"] == len(rows) and scored["ua"] == pytest.approx(load_json(run / "metrics.json")["ua"])

    folder = tmp_path / "long"
    folder.mkdir()
    (folder / "long.wav").symlink_to(corpus["long"])
    assert main(["-q", "predict", "--model", str(run), "--input", str(folder), "--out", str(tmp_path / "w"),
                 "--speaker", "Someone", "--silence-db", "0"]) == 0
    timeline = pd.read_csv(tmp_path / "w" / "timeline.csv")
    assert timeline["start_s"].tolist() == [0.0, 15.0] and timeline["end_s"].tolist() == [30.0, 31.0]
    assert pd.read_csv(tmp_path / "w" / "predictions.csv")["windows"].tolist() == [2]


def test_the_block_changes_the_features_and_the_model(run, corpus, whisper_random_weights, tmp_path):
    from cnnrnn.functionals.config import load_functionals_config
    from cnnrnn.functionals.data import extract
    from cnnrnn.functionals.predict import load_model

    out = tmp_path / "b2"
    assert _train(corpus, out, whisper_random_weights, "--whisper-block", "2", "--C", "0.1") == 0
    report = load_json(out / "metrics.json")
    assert report["features"]["extracted"] == 0  # every block was cached by the first run
    assert load_json(out / "run.json")["input"]["whisper_block"] == 2
    one, two = (load_model(r / "model.skops")[-1].coef_ for r in (run, out))
    assert one.shape == two.shape and not np.allclose(one, two)
    cfg = load_functionals_config("whisper", whisper_weights=str(whisper_random_weights), whisper_block=1)
    path = corpus["rows"][0][0]
    x1 = extract(path, cfg)
    x2 = extract(path, load_functionals_config(cfg.to_dict(), whisper_block=2))
    x1_padded = extract(path, load_functionals_config(cfg.to_dict(), whisper_pad_seconds=30.0))
    assert x1.shape == x2.shape == (128,) and x1.dtype == np.float32
    assert not np.allclose(x1, x2) and not np.allclose(x1, x1_padded)  # padding changes an unmasked encoder


def test_nested_selection_chooses_on_the_training_speakers_and_records_it(corpus, whisper_random_weights,
                                                                           tmp_path):
    config = tmp_path / "nested.json"
    config.write_text(json.dumps({"extends": "whisper", "nested_C": [0.1, 1.0]}))
    out = tmp_path / "nested"
    assert main(["-q", "functionals", "train", "--corpus", "manifest", "--root", str(corpus["manifest"]),
                 "--out", str(out), "--config", str(config), "--whisper-weights", str(whisper_random_weights),
                 "--holdout-speaker", TEST_SPEAKER, "--cache-dir", str(corpus["cache"])]) == 0
    selection = load_json(out / "metrics.json")["selection"]
    assert selection["configured"] == {"whisper_block": "nested", "C": "nested"}
    assert selection["inner_speakers"] == sorted(TRAIN_SPEAKERS)  # never the test speaker
    grid = [(c["whisper_block"], c["C"]) for c in selection["candidates"]]
    assert grid == [(b, c) for b in (0, 1, 2) for c in (0.1, 1.0)] and selection["fits"] == 12
    assert all(set(c["ua_per_speaker"]) == set(TRAIN_SPEAKERS) for c in selection["candidates"])
    best = max(selection["candidates"], key=lambda c: c["ua"])
    assert selection["chosen"] == {"whisper_block": best["whisper_block"], "C": best["C"]}
    manifest = load_json(out / "run.json")  # prediction uses the chosen values
    assert manifest["config"]["whisper_block"] == best["whisper_block"] and manifest["config"]["C"] == best["C"]
    assert manifest["extra"]["selection"]["chosen"] == selection["chosen"]


def test_missing_or_changed_weights_are_one_clear_error(run, corpus, whisper_random_weights, tmp_path, caplog):
    import shutil

    from cnnrnn.models.whisper_convert import convert

    caplog.set_level(logging.ERROR, logger="cnnrnn")
    missing = tmp_path / "nowhere" / "whisper-tiny.en.weights.h5"
    assert _train(corpus, tmp_path / "r", missing) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert "cnnrnn whisper-convert" in errors[0] and str(missing) in errors[0]
    assert not (tmp_path / "r" / "run.json").exists()

    caplog.clear()
    assert _train(corpus, tmp_path / "r", whisper_random_weights, "--whisper-block", "3") == 2
    assert "whisper_block must be 0..2" in caplog.records[-1].getMessage()

    # a run whose weights file now holds other weights is refused at prediction
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    other = convert(ct2=write_ct2_whisper(tmp_path / "ct2" / "model.bin", seed=1),
                    out=tmp_path / "other.weights.h5")["out"]
    manifest = load_json(moved / "run.json")
    manifest["config"]["whisper_weights"] = str(other)
    (moved / "run.json").write_text(json.dumps(manifest))
    caplog.clear()
    assert main(["-q", "predict", "--model", str(moved), "--input", corpus["rows"][0][0],
                 "--out", str(tmp_path / "p")]) == 2
    assert "not the Whisper weights file this run was trained with" in caplog.records[-1].getMessage()


def test_config_refusals_and_cache_keys(whisper_random_weights, tmp_path):
    from cnnrnn.config import list_presets
    from cnnrnn.functionals.config import FunctionalsConfigError, load_functionals_config
    from cnnrnn.functionals.data import cache_folder

    assert "whisper" in list_presets("functionals")
    preset = load_functionals_config("whisper")
    assert (preset.whisper_weights, preset.whisper_block, preset.C) == (
        "weights/whisper-tiny.en.weights.h5", "nested", "nested")
    assert preset.nested == ["whisper_block", "C"] and load_functionals_config().nested == []
    for bad, match in (({"whisper_block": "middle"}, "whisper_block"), ({"C": "auto"}, "C must be"),
                       ({"sr": 22050}, "16000"), ({"classifier": "mlp"}, "classifier"),
                       ({"whisper_pad_seconds": 31}, "whisper_pad_seconds"), ({"nested_C": []}, "nested_C")):
        with pytest.raises(FunctionalsConfigError, match=match):
            load_functionals_config({**preset.to_dict(), **bad})
    cfg = load_functionals_config("whisper", whisper_weights=str(whisper_random_weights))
    padded = load_functionals_config(cfg.to_dict(), whisper_pad_seconds=30.0)
    copy = tmp_path / "copy.weights.h5"
    copy.write_bytes(Path(whisper_random_weights).read_bytes())
    (tmp_path / "copy.json").write_text(Path(whisper_random_weights).with_name("whisper-test.json").read_text())
    same = load_functionals_config(cfg.to_dict(), whisper_weights=str(copy))
    assert cache_folder("c", cfg) != cache_folder("c", padded)
    assert cache_folder("c", cfg) == cache_folder("c", same)  # the weights' content, not their path
    assert cache_folder("c", cfg).name.startswith("whisper_") and cache_folder("c", padded).name.endswith("pad30")
