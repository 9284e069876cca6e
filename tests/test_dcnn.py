"""DCNN-BLSTMwA: segment features, attention masking, save/load, configs, and the CLI steps end to end."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import write_wav

from cnnrnn.dcnn.config import FeatureConfig, load_dcnn_config
from cnnrnn.dcnn.data import waveform_segments
from cnnrnn.features import (IMAGENET_MEAN, IMAGENET_STD, ClipTooShortError, log_mel_deltas, n_segments,
                             to_backbone_input)

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True


def paper(**changes) -> FeatureConfig:
    """The paper's feature settings (a shipped preset: 64 mels from 20 Hz, 16 kHz), with ``changes``."""
    return dataclasses.replace(load_dcnn_config("esd_finetune").data.features(), **changes)


def deltas(y, cfg: FeatureConfig):
    return log_mel_deltas(y, sr=cfg.sr, n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels,
                          fmin=cfg.fmin, fmax=cfg.fmax, delta_width=cfg.delta_width)


# ----------------------------------------------------------------------------------------------- features
def test_segments_of_real_speech(real_waveform):
    y, sr = real_waveform                                   # 2.0 s of EmoDB speech at 16 kHz
    cfg = paper(sr=sr, max_sec=3.0)                         # padded to 3 s: 1 + 48000 // 160 = 301 frames
    seg = waveform_segments(y, cfg)
    assert seg.shape == (n_segments(301), 64, 64, 3) == (8, 64, 64, 3)
    assert seg.dtype == np.float32 and seg.min() >= 0.0 and seg.max() <= 1.0
    np.testing.assert_array_equal(seg[0][:, 32:], seg[1][:, :32])      # hop 32 frames: halves overlap
    assert [seg[..., c].std() > 0.05 for c in range(3)] == [True] * 3   # static, Δ, ΔΔ all carry speech

    feats = deltas(y, paper(sr=sr))
    assert feats.shape == (64, 1 + len(y) // 160, 3)
    for c in range(3):                                       # per-channel min-max over the utterance
        assert feats[..., c].min() == 0.0 and feats[..., c].max() == pytest.approx(1.0)
    no_pad = waveform_segments(y, paper(sr=sr, max_sec=None))
    assert len(no_pad) == n_segments(1 + len(y) // 160) == 5


def test_delta_of_a_constant_is_zero_and_minmax_of_a_constant_is_zero():
    feats = deltas(np.zeros(16000, np.float32), paper())   # log(0 + 1e-8) everywhere
    assert np.isfinite(feats).all() and not feats.any()


def test_backbone_input_resizes_and_normalises():
    x = to_backbone_input(np.zeros((2, 64, 64, 3), np.float32), (40, 48)).numpy()
    assert x.shape == (2, 40, 48, 3)
    np.testing.assert_allclose(x[0, 0, 0], -np.array(IMAGENET_MEAN) / np.array(IMAGENET_STD), rtol=1e-6)


def test_clip_shorter_than_one_segment_is_a_clear_error(real_waveform):
    y, sr = real_waveform
    with pytest.raises(ClipTooShortError, match="shorter than one segment") as info:
        waveform_segments(y[: int(0.5 * sr)], paper(sr=sr, max_sec=None))   # 51 frames < 64
    assert info.value.reason == "too_short"
    assert len(waveform_segments(y[: int(0.5 * sr)], paper(sr=sr, max_sec=1.0))) == 2   # padded


# ------------------------------------------------------------------------------------------------ models
def _tiny_blstm(feat_dim=8):
    from cnnrnn.models import build_blstm_attention

    return build_blstm_attention(feat_dim, 3, lstm_units=4, attention_units=6, dense1_units=8, dense2_units=8)


def test_padding_does_not_change_the_prediction():
    from cnnrnn.models.blstm_attention import PAD_VALUE

    model = _tiny_blstm()
    rng = np.random.default_rng(0)
    short, long_ = rng.random((1, 2, 8), np.float32), rng.random((1, 5, 8), np.float32)
    padded_short = np.concatenate([short, np.full((1, 3, 8), PAD_VALUE, np.float32)], axis=1)
    batch = np.concatenate([padded_short, long_])            # two utterances, 2 and 5 segments
    p_batch = model.predict(batch, verbose=0)
    np.testing.assert_allclose(p_batch[0], model.predict(short, verbose=0)[0], atol=1e-6)
    np.testing.assert_allclose(p_batch[1], model.predict(long_, verbose=0)[0], atol=1e-6)
    assert not np.allclose(model.predict(np.concatenate([short, np.zeros((1, 3, 8), np.float32)], 1), verbose=0),
                           p_batch[:1], atol=1e-6)      # zeros are real input, not padding


@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_models_load_without_custom_objects(tmp_path, suffix):
    import keras

    from cnnrnn.artifacts import load_model
    from cnnrnn.models import build_dcnn

    x = np.random.default_rng(1).random((2, 4, 8), np.float32)
    blstm = _tiny_blstm()
    blstm.save(tmp_path / f"blstm{suffix}")
    restored = keras.models.load_model(tmp_path / f"blstm{suffix}", compile=False)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), blstm.predict(x, verbose=0))
    assert restored.get_layer("attention").get_config()["units"] == 6

    dcnn = build_dcnn((32, 32, 3), 3, width=0.05, fc_units=8)
    dcnn.save(tmp_path / f"dcnn{suffix}")
    img = np.random.default_rng(2).random((2, 32, 32, 3), np.float32)
    np.testing.assert_array_equal(load_model(tmp_path / f"dcnn{suffix}").predict(img, verbose=0),
                                  dcnn.predict(img, verbose=0))


def test_backbone_weights_never_download(tmp_path, monkeypatch):
    from cnnrnn.models import build_dcnn
    from cnnrnn.models.cnnrnn import WeightsError

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsError, match="never downloads"):
        build_dcnn((32, 32, 3), 3, backbone="resnet50", weights="imagenet")
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        build_dcnn((32, 32, 3), 3, backbone="alexnet", weights="imagenet")
    with pytest.raises(WeightsError, match="does not exist"):
        build_dcnn((32, 32, 3), 3, weights=str(tmp_path / "missing.weights.h5"))


# ------------------------------------------------------------------------------------------------ configs
def test_shipped_configs_load_and_bad_keys_are_clear_errors(tmp_path):
    from cnnrnn.config import ConfigError, list_presets, nullable_keys
    from cnnrnn.dcnn.config import DcnnConfig

    names = list_presets("dcnn")
    for ds in ("jtes", "esd", "emodb", "tiny"):
        assert {f"{ds}_finetune", f"{ds}_train"} <= set(names)
    cfgs = {n: load_dcnn_config(n) for n in names}
    for cfg in cfgs.values():                               # MelBands' defaults are 128 mels from 0 Hz
        assert (cfg.data.n_mels, cfg.data.fmin, cfg.data.sr) == {"deltas": (64, 20.0, 16000),
                                                                 "yamnet": (64, 125.0, 16000),   # YAMNet's front end
                                                                 "whisper": (80, 0.0, 16000)}[cfg.data.kind]
    assert cfgs["esd_finetune"].data.max_sec == 3.0 and cfgs["jtes_finetune"].data.max_sec == 4.0
    assert (cfgs["emodb_finetune"].train.learning_rate, cfgs["emodb_finetune"].train.batch_size) == (1e-4, 128)
    assert (cfgs["emodb_train"].train.learning_rate, cfgs["emodb_train"].train.lr_decay) == (5e-6, 0.59)
    assert cfgs["emodb_train"].train.finetune_name == "emodb_finetune"
    assert load_dcnn_config({"train": {"lr": 3e-4}}).train.learning_rate == 3e-4     # the old name still loads
    with pytest.raises(ConfigError, match="both 'lr' and 'learning_rate'"):
        load_dcnn_config({"train": {"lr": 3e-4, "learning_rate": 1e-4}})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['n_mel'\]"):
        load_dcnn_config({"data": {"n_mel": 64}})
    with pytest.raises(ConfigError, match="train.epochs should be"):
        load_dcnn_config({"train": {"epochs": "30"}})
    with pytest.raises(ConfigError, match="delta_width must be odd"):
        load_dcnn_config({"data": {"delta_width": 4}})
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"model": {"lstm_layers": 2}}))
    assert load_dcnn_config(path).model.lstm_layers == 2
    with pytest.raises(ConfigError, match="neither a file nor a dcnn preset"):
        load_dcnn_config("no_such_config")
    assert {("data", "max_sec"), ("data", "fmax"), ("train", "finetune_name")} <= nullable_keys(DcnnConfig)
    assert ("train", "epochs") not in nullable_keys(DcnnConfig)


# --------------------------------------------------------------------------------------------- end to end
def _corpus(tmp_path, sample_dir):
    """Filelists of real speech: 2 s clips, plus a 3.5 s and a 1 s clip (different segment counts), a 0.5 s
    clip (shorter than one segment) and a missing wav."""
    import soundfile as sf

    from cnnrnn.config import preset_path
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    wavs = sorted((sample_dir / "wav").rglob("*.wav"))[:16]
    y, sr = sf.read(wavs[0], dtype="float32")
    y2, _ = sf.read(wavs[1], dtype="float32")
    extra = {"long.wav": np.concatenate([y, y2[: int(1.5 * sr)]]), "short.wav": y[:sr],
             "too_short.wav": y[: sr // 2]}
    for name, wave in extra.items():
        write_wav(tmp_path / "audio" / name, wave, sr)
    entries = [FilelistEntry(str(w), w.stem.split("_")[2], "", i % 3) for i, w in enumerate(wavs)]
    train = entries[:10] + [FilelistEntry(str(tmp_path / "audio" / "long.wav"), "x", "", 0),
                            FilelistEntry(str(tmp_path / "audio" / "missing.wav"), "x", "", 1)]
    test = entries[10:] + [FilelistEntry(str(tmp_path / "audio" / n), "x", "", 2) for n in ("short.wav",
                                                                                         "too_short.wav")]
    write_filelist(tmp_path / "lists" / "train.txt", train)
    write_filelist(tmp_path / "lists" / "test.txt", test)
    (tmp_path / "lists" / "labels.json").write_text(json.dumps({"labels": ["a", "b", "c"]}))
    cfg = json.loads(preset_path("dcnn", "tiny_finetune").read_text())
    cfg["data"]["max_sec"] = None                           # keep each clip's own length
    for step in ("finetune", "train"):
        cfg["train"]["name"] = f"t_{step}"
        if step == "train":
            cfg["train"].update(finetune_name="t_finetune", batch_size=4)
        (tmp_path / f"{step}.json").write_text(json.dumps(cfg))
    return tmp_path / "audio"


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory, sample_dir):
    """One tiny two-step run through the CLI (``dcnn finetune`` then ``dcnn train``, with ``--lr 0.002``: the old
    option name of --learning-rate) on :func:`_corpus`, shared by the tests below, which copy what they change.
    Returns the corpus folder, the filelists, the runs' folder and what each step printed."""
    import contextlib
    import io

    from cnnrnn.cli import main

    root = tmp_path_factory.mktemp("dcnn_two_steps")
    audio = _corpus(root, sample_dir)
    logs, lists = root / "logs", root / "lists"
    common = ["--filelist-train", str(lists / "train.txt"), "--filelist-test", str(lists / "test.txt"),
              "--out", str(logs), "--lr", "0.002"]
    printed = {}
    for step in ("finetune", "train"):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["-q", "dcnn", step, "--config", str(root / f"{step}.json"), *common]) == 0
        printed[step] = out.getvalue()
    return {"audio": audio, "lists": lists, "logs": logs, "printed": printed}


def _copy_runs(two_steps, tmp_path):
    """This test's own copy of the shared runs' folder (so that what it writes or deletes stays its own)."""
    import shutil

    return shutil.copytree(two_steps["logs"], tmp_path / "logs")


def test_finetune_train_infer_through_the_cli(two_steps, tmp_path, capsys):
    from cnnrnn.cli import main

    audio = two_steps["audio"]
    logs = _copy_runs(two_steps, tmp_path)
    step1 = json.loads(two_steps["printed"]["finetune"])
    assert step1["skipped"] == {"missing_audio": 1, "too_short": 1}
    run1 = logs / "t_finetune"
    for name in ("dcnn.h5", "dcnn.json", "run.json", "log_finetune.out", "history_finetune.csv",
                 "metrics_finetune.json", "predictions_finetune.csv", "confusion_finetune_segments.png",
                 "confusion_finetune_utterances.png"):
        assert (run1 / name).is_file(), name
    log_text = (run1 / "log_finetune.out").read_text()
    assert "epoch 1/1" in log_text and "too_short" in log_text
    metrics = json.loads((run1 / "metrics_finetune.json").read_text())
    # segments: 6 clips of 2 s (5 each) + the 1 s clip (2) in the test set; utterances: 7
    assert (metrics["segments"]["n"], metrics["utterances"]["n"]) == (6 * 5 + 2, 7)

    step2 = json.loads(two_steps["printed"]["train"])
    assert step2["metrics"]["utterances"]["n"] == 7
    run2 = logs / "t_train"
    for name in ("blstm_attention.h5", "blstm_attention.json", "run.json", "log_train.out", "confusion_train.png",
                 "metrics_train.json", "predictions_train.csv"):
        assert (run2 / name).is_file(), name
    assert "(11, 9, 64)" in (run2 / "log_train.out").read_text()   # 11 utterances, up to 9 segments, 64 features

    wavs = [str(audio / n) for n in ("long.wav", "short.wav", "too_short.wav")]
    assert main(["-q", "dcnn", "infer", str(run2 / "blstm_attention.h5"), *wavs]) == 0
    out = capsys.readouterr().out
    assert "too_short" in out
    import pandas as pd

    df = pd.read_csv(run2 / "predictions.csv")
    assert df["n_segments"].tolist() == [9, 2]                  # 3.5 s: 351 frames, 1 s: 101 frames
    assert set(df["predicted"]) <= {"a", "b", "c"}
    np.testing.assert_allclose(df[["p_a", "p_b", "p_c"]].sum(axis=1), 1.0, atol=1e-5)


def test_cnnrnn_predict_with_either_step_of_a_dcnn_run(two_steps, tmp_path, capsys):
    """`cnnrnn predict --model RUN` (the facade over every family) with a tiny DCNN-BLSTMwA run: run.json of each
    step, a step-2 run folder on a filelist (true labels → metrics), a step-1 dcnn.h5 on a folder of audio
    (utterance = mean of its segments' probabilities), and an old run without run.json."""
    import pandas as pd

    from cnnrnn.cli import main

    audio, lists = two_steps["audio"], two_steps["lists"]
    logs = _copy_runs(two_steps, tmp_path)  # trained with --lr 0.002, the old option name of --learning-rate
    run1, run2 = logs / "t_finetune", logs / "t_train"
    for run, step, checkpoint in ((run1, "finetune", "dcnn.h5"), (run2, "train", "blstm_attention.h5")):
        manifest = json.loads((run / "run.json").read_text())
        assert (manifest["family"], manifest["extra"]["step"], manifest["labels"]) == ("dcnn", step, ["a", "b", "c"])
        assert manifest["checkpoints"] == [checkpoint] and manifest["config"]["train"]["learning_rate"] == 0.002
        assert manifest["input"]["features"]["n_mels"] == 64 and manifest["input"]["sr"] == 16000
        assert manifest["split"]["scheme"] == "filelists" and manifest["split"]["fold"] is None

    out = tmp_path / "pred_step2"
    assert main(["-q", "predict", "--model", str(run2), "--input", str(lists / "test.txt"), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert len(df) == 7 and set(df["true"]) == {"a", "b", "c"} and set(df["predicted"]) <= {"a", "b", "c"}
    np.testing.assert_allclose(df[["p_a", "p_b", "p_c"]].sum(axis=1), 1.0, atol=1e-5)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 7 and metrics["family"] == "dcnn" and metrics["step"] == "train"
    assert (out / "confusion_matrix.png").is_file()
    step2_test = pd.read_csv(run2 / "predictions_train.csv")   # the same model on the same test utterances
    np.testing.assert_allclose(df[["p_a", "p_b", "p_c"]], step2_test[["p_a", "p_b", "p_c"]], atol=1e-5)

    out = tmp_path / "pred_step1"
    assert main(["-q", "predict", "--model", str(run1 / "dcnn.h5"), "--input", str(audio), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert '"family": "dcnn"' in printed and "too_short" in printed
    df = pd.read_csv(out / "predictions.csv")
    assert df["id"].tolist() == ["long", "short"] and df["n_segments"].tolist() == [9, 2]
    assert "true" not in df and not (out / "metrics.json").exists()

    (run2 / "run.json").unlink()                               # a run from before manifests: found by its files
    out = tmp_path / "pred_old"
    assert main(["-q", "predict", "--model", str(run2 / "blstm_attention.h5"), "--input",
                 str(audio / "long.wav"), "--out", str(out)]) == 0
    assert pd.read_csv(out / "predictions.csv")["n_segments"].tolist() == [9]
    assert main(["-q", "predict", "--model", str(run2), "--input", str(lists / "labels.json"), "--out",
                 str(out)]) == 2                               # neither audio, a folder nor a filelist


def test_evaluate_scores_a_step_on_the_test_filelist_it_was_trained_with(two_steps, tmp_path):
    """``cnnrnn.dcnn.predict.evaluate``, the family's scoring entry point: the step's own test filelist (from its
    run.json) gives the utterance scores that training gave it."""
    from cnnrnn.dcnn.predict import evaluate

    logs = _copy_runs(two_steps, tmp_path)
    run2 = logs / "t_train"
    metrics = evaluate(run2, progress=False)
    trained = json.loads((run2 / "metrics_train.json").read_text())["utterances"]
    assert metrics["n"] == trained["n"] == 7 and metrics["ua"] == pytest.approx(trained["ua"], abs=1e-6)
    assert (run2 / "evaluation" / "metrics.json").is_file() and (run2 / "evaluation" / "predictions.csv").is_file()
    (run2 / "run.json").unlink()                               # a run without run.json: the filelist is given
    with pytest.raises(ValueError, match="give the filelist"):
        evaluate(run2, progress=False)
    again = evaluate(run2, two_steps["lists"] / "test.txt", tmp_path / "again", progress=False)
    assert again["ua"] == pytest.approx(metrics["ua"], abs=1e-6)


def test_emotion_id_outside_the_label_set_is_a_clear_error(tmp_path, sample_dir, caplog):
    from cnnrnn.cli import main
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    _corpus(tmp_path, sample_dir)
    wav = sorted((sample_dir / "wav").rglob("*.wav"))[0]
    write_filelist(tmp_path / "lists" / "bad.txt", [FilelistEntry(str(wav), "s", "", 7)])
    code = main(["-q", "dcnn", "finetune", "--config", str(tmp_path / "finetune.json"), "--filelist-train",
                 str(tmp_path / "lists" / "bad.txt"), "--filelist-test", str(tmp_path / "lists" / "test.txt"),
                 "--out", str(tmp_path / "logs")])
    assert code == 2
    assert "bad.txt:1" in caplog.text and "emotion" in caplog.text
    assert not (tmp_path / "logs" / "t_finetune" / "dcnn.h5").exists()


@pytest.mark.parametrize("step, words", [("finetune", ["--config", "dcnn.h5", "log_finetune.out"]),
                                         ("train", ["--dcnn", "blstm_attention.h5", "log_train.out"]),
                                         ("infer", ["MODEL.h5", "WAV", "CSV"])])
def test_dcnn_subcommands_have_help(step, words, capsys):
    from cnnrnn.cli import main

    with pytest.raises(SystemExit) as info:
        main(["dcnn", step, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and f"usage: cnnrnn dcnn {step}" in out
    assert all(w in out for w in words)


def test_cli_steps_on_shared_emodb(tmp_path, shared_data, capsys):
    """finetune → train → infer through the CLI on real EmoDB speech from ../shared/data (22.05 kHz, resampled)."""
    from cnnrnn.cli import main
    from cnnrnn.corpora import load_corpus
    from cnnrnn.corpora.emodb import EMODB_LABELS
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    wavs = sorted((shared_data / "emodb-535").glob("*.wav"))[::20][:24]      # spread over the speakers
    corpus = tmp_path / "emodb"
    corpus.mkdir()
    for w in wavs:
        (corpus / w.name).symlink_to(w)
    utts, _ = load_corpus("emodb", corpus)
    labels = list(EMODB_LABELS.values())
    entries = [FilelistEntry(u.audio_path, u.speaker, u.text, labels.index(u.emotion)) for u in utts]
    write_filelist(tmp_path / "train.txt", entries[:16])
    write_filelist(tmp_path / "test.txt", entries[16:])
    (tmp_path / "labels.json").write_text(json.dumps({"labels": labels}))
    common = ["--filelist-train", str(tmp_path / "train.txt"), "--filelist-test", str(tmp_path / "test.txt"),
              "--out", str(tmp_path / "logs")]
    assert main(["-q", "dcnn", "finetune", "--config", "tiny_finetune", *common]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["utterances"]["n"] == 8
    assert main(["-q", "dcnn", "train", "--config", "tiny_train", *common]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"]["utterances"]["n"] == 8
    model = tmp_path / "logs" / "tiny_train" / "blstm_attention.h5"
    assert main(["-q", "dcnn", "infer", str(model), *map(str, wavs[:3])]) == 0
    printed = capsys.readouterr().out
    assert all(w.name in printed for w in wavs[:3])
    import pandas as pd

    df = pd.read_csv(model.with_name("predictions.csv"))
    assert len(df) == 3 and set(df["predicted"]) <= set(labels) and (df["n_segments"] == 5).all()  # 2 s at max_sec 2


def test_resnet50_dcnn_takes_bn_momentum():
    import keras

    from cnnrnn.models.dcnn import build_dcnn

    model = build_dcnn((32, 32, 3), 3, backbone="resnet50", fc_units=8, bn_momentum=0.9)
    bns = [layer for layer in model.get_layer("resnet50").layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert bns and all(layer.momentum == 0.9 for layer in bns)
    default = build_dcnn((32, 32, 3), 3, backbone="resnet50", fc_units=8)
    assert {layer.momentum for layer in default.get_layer("resnet50").layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {0.99}
