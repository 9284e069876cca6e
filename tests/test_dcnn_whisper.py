"""DCNN-BLSTMwA with the Whisper backbone (``model.backbone: whisper``, ``data.kind: whisper``, presets
``whisper_finetune`` / ``whisper_train``): the config rules and the derived ``data.encoder``, the encoder's frames of
a clip (own length, windows past 30 s, too short = a counted skip), and that every option changes what step 1 trains
(block choice, weighted sum of blocks, fine-tuned top blocks); then both steps and ``cnnrnn predict`` on a run.

Everything runs on the small random-weight encoder of the ``whisper_random_weights`` fixture (2 blocks, width 64)
and a few bundled 16 kHz sample clips, 1 epoch per step.
"""
import json

import numpy as np
import pytest

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True

LABELS = ["anger", "happiness", "neutral"]
SPEAKERS = ("User001M", "User002F", "User005M", "User006F")
SMALL = {"fc_units": 8, "lstm_units": 4, "attention_units": 4, "dense1_units": 8, "dense2_units": 4}


def _clips(sample_dir, speaker: str, n: int) -> list:
    return sorted(sample_dir.glob(f"wav/*/*_{speaker}_*.wav"))[:n]


@pytest.fixture(scope="module")
def lists(sample_dir, tmp_path_factory):
    """Filelists of bundled clips: train 3 speakers × 3 clips (labels cycling), test 3 clips of a 4th, plus a
    0.3 s clip in the test list (shorter than one segment: skipped and counted)."""
    from conftest import write_wav

    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist

    folder = tmp_path_factory.mktemp("whisper_lists")
    short = write_wav(folder / "short.wav", 0.1 * np.sin(np.arange(4800) / 5.0).astype(np.float32), 16000)
    for split, speakers in (("train", SPEAKERS[:3]), ("test", SPEAKERS[3:])):
        entries = [FilelistEntry(str(p), s, "", i % 3) for s in speakers
                   for i, p in enumerate(_clips(sample_dir, s, 3))]
        if split == "test":
            entries.append(FilelistEntry(str(short), SPEAKERS[3], "", 0))
        write_filelist(folder / f"{split}.txt", entries)
    (folder / "labels.json").write_text(json.dumps({"labels": LABELS}))
    return folder


def _config(step: str, weights, lists, tmp_path, **model):
    from cnnrnn.config import override
    from cnnrnn.dcnn.config import load_dcnn_config

    values = {"data.filelist_train": str(lists / "train.txt"), "data.filelist_test": str(lists / "test.txt"),
              "model.weights": str(weights), "train.log_root": str(tmp_path / "logs"), "train.epochs": 1,
              "train.batch_size": 8, "train.name": f"w_{step}", "model.whisper_block": 2,
              "model.whisper_mix": "block"}
    values.update({f"model.{k}": v for k, v in {**SMALL, **model}.items()})
    if step == "train":
        values["train.finetune_name"] = "w_finetune"
    return override(load_dcnn_config(f"whisper_{step}"), values)


def test_whisper_configs_tie_the_backbone_to_its_features_and_derive_the_encoder(whisper_random_weights):
    from cnnrnn.config import ConfigError, override
    from cnnrnn.dcnn.config import load_dcnn_config

    cfg = load_dcnn_config("whisper_train")           # extends whisper_finetune
    assert (cfg.model.backbone, cfg.data.kind, cfg.model.whisper_block, cfg.model.whisper_mix,
            cfg.model.trainable_blocks, cfg.data.max_sec) == ("whisper", "whisper", 3, "weighted", 0, None)
    assert cfg.data.encoder["blocks"] == [0, 1, 2, 3] and cfg.data.features().resize is None
    w = str(whisper_random_weights)
    one = override(cfg, {"model.weights": w, "model.whisper_block": 2, "model.whisper_mix": "block"})
    assert one.data.encoder == {"weights": str(whisper_random_weights.resolve()), "blocks": [2]}
    assert one.data.features().input_shape == (32, 64, 1)
    assert override(one, {"model.whisper_mix": "weighted"}).data.features().input_shape == (32, 64, 3)
    tuned = override(one, {"model.whisper_mix": "weighted", "model.trainable_blocks": 1})
    assert tuned.data.encoder["blocks"] == [0, 1]
    assert override(one, {"model.trainable_blocks": 2}).data.encoder["blocks"] == [0]
    assert override(one, {"data.encoder": {"weights": "x", "blocks": [9]}}).data.encoder["blocks"] == [2]  # derived
    assert override(one, {"model.whisper_block": "final"}).data.encoder["blocks"] == ["final"]
    for bad, words in (({"model.backbone": "compact"}, "takes data.kind deltas"),
                       ({"model.trainable_blocks": 4}, "trainable_blocks must be 0..whisper_block"),
                       ({"model.whisper_block": "final", "model.whisper_mix": "weighted"}, "final takes"),
                       ({"model.whisper_block": "last"}, "whisper_block must be"),
                       ({"data.n_mels": 64}, "Whisper's front end"), ({"data.preemphasis": 0.97}, "preemphasis 0"),
                       ({"data.max_sec": 31.0}, "at most 30")):
        with pytest.raises(ConfigError, match=words):
            override(cfg, bad)
    with pytest.raises(ConfigError, match="model.backbone whisper takes data.kind whisper"):
        override(load_dcnn_config("compact_finetune"), {"model.backbone": "whisper"})


def test_the_encoder_frames_of_a_clip_its_windows_and_too_short_clips(whisper_random_weights, real_waveform):
    from cnnrnn.config import override
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.data import cut, waveform_features
    from cnnrnn.features import ClipTooShortError
    from cnnrnn.models.whisper import pretrained_whisper
    from cnnrnn.whisper_features import whisper_log_mel

    cfg = override(load_dcnn_config("whisper_finetune"), {"model.weights": str(whisper_random_weights),
                                                          "model.whisper_block": 2}).data.features()
    y, sr = real_waveform
    assert sr == 16000
    feats = waveform_features(y, cfg)
    assert feats.shape == (64, len(y) // 160 // 2, 3) and feats.dtype == np.float32   # blocks 0, 1, 2 as channels
    reference = pretrained_whisper(str(whisper_random_weights), block=1)(whisper_log_mel(y)[None])
    np.testing.assert_allclose(feats[:, :, 1], np.asarray(reference)[0].T, atol=1e-5)  # the clip at its own length
    segments = cut(feats, cfg)
    assert segments.shape == (1 + (feats.shape[1] - 32) // 16, 32, 64, 3)
    np.testing.assert_array_equal(segments[1, :, :, 2], feats[:, 16:48, 2].T)

    long = np.tile(y, 16)[: 31 * 16000]                    # 31 s: a 30 s window, then 1 s
    frames = waveform_features(long, cfg)
    assert frames.shape == (64, 1500 + 50, 3)
    tail = pretrained_whisper(str(whisper_random_weights), block=2)(whisper_log_mel(long[30 * 16000:])[None])
    np.testing.assert_allclose(frames[:, 1500:, 2], np.asarray(tail)[0].T, atol=1e-5)
    with pytest.raises(ClipTooShortError, match="shorter than one segment"):
        waveform_features(y[:16000 // 2], cfg)              # 0.5 s = 25 encoder frames < 32


def _finetune(weights, lists, tmp_path, **model):
    from cnnrnn.artifacts import load_model
    from cnnrnn.dcnn.train import finetune

    cfg = _config("finetune", weights, lists, tmp_path, **model)
    result = finetune(cfg, progress=False, verbose=0)
    return cfg, result, load_model(cfg.run_dir / "dcnn.h5")


def test_each_option_changes_what_step_1_trains(whisper_random_weights, lists, tmp_path):
    from cnnrnn.dcnn.data import load_features
    from cnnrnn.models.dcnn import build_dcnn
    from cnnrnn.models.whisper import pretrained_whisper

    w = whisper_random_weights
    # block choice: the cached frames step 1 trains on are that block's output
    cfgs = {b: _config("finetune", w, lists, tmp_path, whisper_block=b) for b in (1, 2)}
    assert [cfgs[b].data.encoder["blocks"] for b in (1, 2)] == [[1], [2]]
    feats = {b: load_features(lists / "train.txt", LABELS, cfgs[b].data.features(), progress=False).features[0]
             for b in (1, 2)}
    assert feats[1].shape == feats[2].shape == (64, 100, 1) and not np.allclose(feats[1], feats[2])

    # weighted sum + a trainable top block (one run for both, to keep this file fast): block 2 is fine-tuned on the
    # segments from its pretrained weights, blocks 0..1 come in cached as channels, and the mix of blocks 0..2 is
    # trained (the plain run of test_both_steps_then_predict_a_run has neither layer)
    cfg, _, model = _finetune(w, lists, tmp_path / "tuned", whisper_mix="weighted", trainable_blocks=1)
    assert cfg.data.encoder["blocks"] == [0, 1] and model.input_shape == (None, 32, 64, 2)
    mix = model.get_layer("block_mix").get_weights()[0]
    assert mix.shape == (3,) and np.abs(mix).max() > 0                              # moved from its zero start
    pretrained = pretrained_whisper(str(w), block=2).get_layer("block2").get_weights()
    tuned = model.get_layer("block2").get_weights()
    assert [a.shape for a in tuned] == [a.shape for a in pretrained]
    assert any(not np.allclose(a, b) for a, b in zip(tuned, pretrained))
    with pytest.raises(ValueError, match="SpecAugment"):
        build_dcnn((32, 64, 1), 3, "whisper", "none", fc_units=8, spec_augment={"freq_masks": 1})


def test_both_steps_then_predict_a_run(whisper_random_weights, lists, tmp_path, capsys):
    """``cnnrnn dcnn finetune`` + ``train`` (speaker normalisation of the encoder's outputs), then ``cnnrnn predict
    --model`` on the step-2 run folder gives the step's own test predictions."""
    import pandas as pd

    from cnnrnn.artifacts import load_model
    from cnnrnn.cli import main

    for step in ("finetune", "train"):
        cfg = _config(step, whisper_random_weights, lists, tmp_path)
        (tmp_path / f"{step}.json").write_text(json.dumps(cfg.to_dict()))
        assert main(["-q", "dcnn", step, "--config", str(tmp_path / f"{step}.json")]) == 0
    capsys.readouterr()
    run1, run2 = tmp_path / "logs" / "w_finetune", tmp_path / "logs" / "w_train"
    metrics = json.loads((run1 / "metrics_finetune.json").read_text())
    assert metrics["utterances"]["n"] == 3 and metrics["segments"]["n"] == 3 * 5    # 2 s: 100 frames, 5 segments
    assert "'too_short': 1" in (run1 / "log_finetune.out").read_text()              # the 0.3 s clip: counted
    model = load_model(run1 / "dcnn.h5")
    assert model.input_shape == (None, 32, 64, 1)
    assert not any(layer.name.startswith("block") for layer in model.layers)       # the encoder stays frozen, outside
    manifest = json.loads((run2 / "run.json").read_text())
    assert manifest["input"]["features"]["kind"] == "whisper"
    assert manifest["extra"]["normalization"]["train"] == {"speaker": 9}
    assert "(9, 5, 8)" in (run2 / "log_train.out").read_text()    # 9 utterances, 5 segments, 8 features

    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(run2), "--input", str(lists / "test.txt"), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert len(df) == 3 and set(df["normalization"]) == {"speaker"}
    cols = [f"p_{lab}" for lab in LABELS]
    np.testing.assert_allclose(df[cols], pd.read_csv(run2 / "predictions_train.csv")[cols], atol=1e-5)
