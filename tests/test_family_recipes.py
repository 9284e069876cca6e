"""Issue 11's recipe options in the DCNN-BLSTMwA family and the spectrogram CNN baseline: speaker normalisation
(statistics stored in the run, applied the same way at prediction), the compact backbone, SpecAugment and
epoch selection on a held-out training speaker. Real speech from the bundled KEMDy20 sample (6 speakers)."""
import json

import numpy as np
import pandas as pd
import pytest

from cnnrnn.config import ConfigError
from cnnrnn.corpora import label_order, load_corpus

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True

TRAIN_SPEAKERS = ("User001M", "User002F", "User005M", "User006F")
TEST_SPEAKERS = ("User033M", "User034F")


@pytest.fixture(scope="module")
def sample_utts(sample_dir):
    utts, _ = load_corpus("kemdy20", sample_dir)
    return utts


# --------------------------------------------------------------------------------------------- DCNN-BLSTMwA
def _filelists(tmp_path, utts):
    """Train / test filelists by speaker (8 clips each), labels.json beside them."""
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    labels = label_order("kemdy20", {u.emotion for u in utts})
    lists = tmp_path / "lists"
    for part, speakers in (("train", TRAIN_SPEAKERS), ("test", TEST_SPEAKERS)):
        chosen = [u for s in speakers for u in [u for u in utts if u.speaker == s][:8]]
        write_filelist(lists / f"{part}.txt", [FilelistEntry(u.audio_path, u.speaker, "", labels.index(u.emotion))
                                               for u in chosen])
    (lists / "labels.json").write_text(json.dumps({"labels": labels}))
    return lists, labels


def test_dcnn_speaker_norm_compact_specaugment_inner_selection_train_and_predict(tmp_path, sample_utts, capsys):
    import keras

    from cnnrnn.artifacts import load_model
    from cnnrnn.cli import main

    lists, labels = _filelists(tmp_path, sample_utts)
    logs = tmp_path / "logs"
    common = ["--filelist-train", str(lists / "train.txt"), "--filelist-test", str(lists / "test.txt"), "--out",
              str(logs)]
    assert main(["-q", "dcnn", "finetune", "--config", "tiny_compact_finetune", *common]) == 0
    assert main(["-q", "dcnn", "train", "--config", "tiny_compact_train", *common]) == 0
    capsys.readouterr()
    run1, run2 = logs / "tiny_compact_finetune", logs / "tiny_compact_train"

    # the statistics: global ones from the 32 training clips, one set per speaker of both filelists
    stats = json.loads((run1 / "normalization.json").read_text())
    assert stats["global"]["n_items"] == 32 and stats["dim"] == 64 * 3
    assert sorted(stats["speakers"]) == sorted(TRAIN_SPEAKERS + TEST_SPEAKERS)
    assert json.loads((run2 / "normalization.json").read_text()) == stats        # step 2 keeps the DCNN's

    for run, step in ((run1, "finetune"), (run2, "train")):
        extra = json.loads((run / "run.json").read_text())["extra"]
        assert extra["normalization"]["test"] == {"speaker": 16}
        sel = extra["selection"]
        assert sel["selection"] == "inner" and sel["n_fit"] == 24 and sel["n_select"] == 8, step
        assert sel["select_speakers"][0] in TRAIN_SPEAKERS and 1 <= sel["best_epoch"] <= 2
    dcnn = load_model(run1 / "dcnn.h5")
    names = [layer.name for layer in dcnn.layers]
    assert "spec_augment" in names and "conv2" in names and "conv3" not in names    # filters [4, 8]
    assert dcnn.get_layer("bn1").momentum == pytest.approx(0.9)
    assert isinstance(dcnn.get_layer("gap"), keras.layers.GlobalAveragePooling2D)

    # prediction normalises as training did: the test filelist's speakers give the same probabilities
    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(run2), "--input", str(lists / "test.txt"), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert len(df) == 16 and set(df["normalization"]) == {"speaker"}
    p = [f"p_{name}" for name in labels]
    np.testing.assert_allclose(df[p], pd.read_csv(run2 / "predictions_train.csv")[p], atol=1e-5)

    # audio files without a speaker fall back to utterance normalisation, and say so; --speaker names one
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for u in [u for u in sample_utts if u.speaker == "User033M"][:3]:
        (wavs / f"{u.id}.wav").write_bytes(open(u.audio_path, "rb").read())
    assert main(["-q", "predict", "--model", str(run2), "--input", str(wavs), "--out", str(tmp_path / "p2")]) == 0
    assert set(pd.read_csv(tmp_path / "p2" / "predictions.csv")["normalization"]) == {"utterance"}
    assert main(["-q", "predict", "--model", str(run1), "--input", str(wavs), "--out", str(tmp_path / "p3"),
                 "--speaker", "User033M"]) == 0
    assert set(pd.read_csv(tmp_path / "p3" / "predictions.csv")["normalization"]) == {"speaker"}


def test_dcnn_config_refuses_bad_recipe_values_and_keeps_the_paper_presets_faithful():
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.models.cnnrnn import WeightsError
    from cnnrnn.models.dcnn import build_dcnn

    for bad, match in (({"model": {"backbone": "vgg"}}, "backbone"), ({"model": {"filters": []}}, "filters"),
                       ({"model": {"time_masks": -1}}, "masks"), ({"model": {"bn_momentum": 1.5}}, "bn_momentum"),
                       ({"train": {"selection": "fold"}}, "selection"),
                       ({"data": {"normalization": "speakers"}}, "normalization"),
                       ({"data": {"norm_range": 0}}, "norm_range")):
        with pytest.raises(ConfigError, match=match):
            load_dcnn_config(bad)
    for ds in ("emodb", "esd", "jtes"):
        for step in ("finetune", "train"):
            cfg = load_dcnn_config(f"{ds}_{step}")
            assert (cfg.data.normalization, cfg.model.backbone, cfg.train.selection) == ("none", "alexnet", "last")
            assert cfg.model.spec_augment(0) is None
    cfg = load_dcnn_config("compact_finetune")
    assert (cfg.data.normalization, cfg.model.backbone, cfg.train.selection) == ("speaker", "compact", "inner")
    with pytest.raises(WeightsError, match="from scratch"):
        build_dcnn((64, 64, 3), 3, "compact", "imagenet")


# --------------------------------------------------------------------------------------------- CNN baseline
def test_baseline_cnn_speaker_norm_and_specaugment_train_and_predict(tmp_path, sample_dir, sample_utts, capsys):
    from cnnrnn.artifacts import load_model
    from cnnrnn.baselines.train import train
    from cnnrnn.cli import main

    run = tmp_path / "run"
    report = train("kemdy20", sample_dir, run, config="tiny_cnn", progress=False, verbose=0,
                   normalization="speaker", freq_masks=1, time_masks=1, split="speaker", holdout_speaker="User033M")
    n_val = sum(u.speaker == "User033M" for u in sample_utts)
    assert report["n_val"] == n_val and report["normalization"]["mode"] == "speaker"
    stats = json.loads((run / "normalization.json").read_text())
    assert stats["global"]["n_items"] == len(sample_utts) - n_val          # training clips only
    assert "User033M" in stats["speakers"] and stats["dim"] == 32           # the held-out speaker's own audio
    assert "spec_augment" in [layer.name for layer in load_model(run / "model.h5").layers]
    manifest = json.loads((run / "run.json").read_text())
    assert manifest["input"]["normalization"] == "speaker"

    # all of User033M's clips with --speaker: the run's statistics again, so the validation probabilities. The
    # clips (2 s) are longer than the model's 1 s: one window per clip, its first second, is what it was trained
    # and validated on (by default `cnnrnn predict` would average 1 s windows every 0.5 s)
    wavs = tmp_path / "wavs"
    wavs.mkdir()
    for u in [u for u in sample_utts if u.speaker == "User033M"]:
        (wavs / f"{u.id}.wav").write_bytes(open(u.audio_path, "rb").read())
    out = tmp_path / "pred"
    capsys.readouterr()
    assert main(["-q", "predict", "--model", str(run), "--input", str(wavs), "--out", str(out), "--speaker",
                 "User033M", "--window", "1", "--hop", "2"]) == 0
    df = pd.read_csv(out / "predictions.csv").sort_values("id").reset_index(drop=True)
    assert len(df) == n_val and set(df["normalization"]) == {"speaker"}
    val = pd.read_csv(run / "predictions.csv").sort_values("id").reset_index(drop=True)
    p = [c for c in val.columns if c.startswith("p_")]
    np.testing.assert_allclose(df[p], val[p], atol=1e-5)
    assert main(["-q", "predict", "--model", str(run), "--input", str(wavs), "--out", str(tmp_path / "p2")]) == 0
    assert set(pd.read_csv(tmp_path / "p2" / "predictions.csv")["normalization"]) == {"utterance"}


def test_baseline_config_refuses_bad_recipe_values_and_defaults_stay_faithful():
    from cnnrnn.baselines.config import BaselineConfigError, load_baseline_config

    cfg = load_baseline_config("cnn")
    assert cfg.normalization == "none" and cfg.spec_augment() is None
    assert load_baseline_config("cnn", normalization="global", time_masks=2).spec_augment()["time_masks"] == 2
    for bad, match in (({"normalization": "speakers"}, "normalization"), ({"norm_range": -1.0}, "norm_range"),
                       ({"freq_masks": -1}, "masks")):
        with pytest.raises(BaselineConfigError, match=match):
            load_baseline_config("cnn", **bad)
    with pytest.raises(BaselineConfigError, match="not to the ann"):
        load_baseline_config("ann", normalization="speaker")
