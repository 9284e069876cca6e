"""DCNN-BLSTMwA with the YAMNet backbone (``model.backbone: yamnet``, ``data.kind: yamnet``, presets
``yamnet_finetune`` / ``yamnet_train``): config rules, YAMNet's log-mel patches and their speaker normalisation,
the weights file, and a tiny two-step run on real EmoDB clips predicted through ``cnnrnn predict``.

The tests that need YAMNet's weights take them from the session fixture ``yamnet_weights`` (conftest: converted
from ``../shared/data/pretrained/yamnet/yamnet.tflite`` once, about 10 s) and skip where it is absent.
"""
import json

import numpy as np
import pytest

from conftest import SHARED_DATA, TFLITE

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True

EMODB = SHARED_DATA / "emodb-535"
needs_tflite = pytest.mark.skipif(not (TFLITE.is_file() and EMODB.is_dir()),
                                  reason="../shared/data (yamnet.tflite, emodb-535) is absent")
LABELS = ["anger", "happiness", "neutral"]
CODES = {"W": 0, "F": 1, "N": 2}      # EmoDB's emotion letter (6th character of the file name)


def _clips(speaker: str, n: int) -> list:
    """``n`` EmoDB clips of ``speaker`` (2 s each), cycling through anger, happiness and neutral."""
    by_code = {c: sorted(EMODB.glob(f"{speaker}???{c}?.wav")) for c in CODES}
    return [by_code[c][i // 3] for i, c in zip(range(n), list(CODES) * n)]


def test_yamnet_configs_tie_the_backbone_to_its_features():
    from cnnrnn.config import ConfigError, override
    from cnnrnn.dcnn.config import load_dcnn_config

    cfg = load_dcnn_config("yamnet_train")           # extends yamnet_finetune
    features = cfg.data.features()
    assert (cfg.model.backbone, features.kind, features.input_shape, features.resize) == ("yamnet", "yamnet",
                                                                                          (96, 64, 1), None)
    assert cfg.model.weights == "weights/yamnet.weights.h5" and cfg.train.selection == "inner"
    assert features.input_spec()["image_size"] == [96, 64] and features.normalization == "speaker"
    assert load_dcnn_config("compact_finetune").data.features().input_shape == (64, 64, 3)
    with pytest.raises(ConfigError, match="model.backbone compact takes data.kind deltas"):
        override(cfg, {"model.backbone": "compact"})
    with pytest.raises(ConfigError, match="model.backbone yamnet takes data.kind yamnet"):
        override(load_dcnn_config("compact_finetune"), {"model.backbone": "yamnet"})
    with pytest.raises(ConfigError, match="YAMNet's front end"):
        override(cfg, {"data.fmin": 20.0})
    with pytest.raises(ConfigError, match="freeze_blocks"):
        override(cfg, {"model.freeze_blocks": -1})


@needs_tflite
def test_yamnet_patches_and_their_speaker_normalisation():
    from cnnrnn.audio import load_audio
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.data import FeatureSet, cut, normalization_stats, normalize_features, waveform_features
    from cnnrnn.features import yamnet_log_mel, yamnet_patches

    cfg = load_dcnn_config("yamnet_finetune").data.features()
    paths = _clips("03", 3) + _clips("08", 3)
    feats = [waveform_features(load_audio(p, 16000)[0], cfg, p) for p in paths]
    y, _ = load_audio(paths[0], 16000)
    assert feats[0].shape == (64, 1 + (32000 - 400) // 160, 1) and feats[0].dtype == np.float32
    patches = cut(feats[0], cfg)
    assert patches.shape == (3, 96, 64, 1)            # 198 frames: patches at 0, 48, 96
    np.testing.assert_array_equal(patches, yamnet_patches(yamnet_log_mel(y)))

    speakers = ["03"] * 3 + ["08"] * 3
    train = FeatureSet([str(p) for p in paths[:3]], np.zeros(3, int), speakers[:3], feats[:3], {})
    other = FeatureSet([str(p) for p in paths[3:]], np.zeros(3, int), speakers[3:], feats[3:], {})
    stats = normalization_stats(train, [other], cfg)
    segs = FeatureSet([str(p) for p in paths], np.zeros(6, int), speakers, feats, {}).segmented(cfg, stats).segments
    assert all(s.shape == (3, 96, 64, 1) for s in segs)
    # each speaker's frames now have, per band, the global (training = speaker 03) mean and spread
    train_frames = np.concatenate([f[:, :, 0] for f in feats[:3]], axis=1)
    for group in (range(3), range(3, 6)):
        x = np.concatenate([normalize_features(feats[i], cfg, speakers[i], stats)[:, :, 0] for i in group], axis=1)
        np.testing.assert_allclose(x.mean(axis=1), train_frames.mean(axis=1), atol=1e-3)
        np.testing.assert_allclose(x.std(axis=1), train_frames.std(axis=1), rtol=1e-3, atol=1e-3)
    raw_08 = np.concatenate([f[:, :, 0] for f in feats[3:]], axis=1)
    assert np.abs(raw_08.mean(axis=1) - train_frames.mean(axis=1)).max() > 0.1   # 08 had levels of its own


@needs_tflite
@pytest.mark.filterwarnings("ignore::UserWarning")      # Keras' own notes on the file it cannot load
def test_a_wrong_or_missing_weights_file_is_a_clear_error(tmp_path, yamnet_weights):
    import keras

    from cnnrnn.models.cnnrnn import WeightsError
    from cnnrnn.models.dcnn import build_dcnn

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="d")])
    other.save_weights(tmp_path / "other.weights.h5")
    (tmp_path / "junk.weights.h5").write_bytes(b"not an HDF5 file")
    for bad, words in ((tmp_path / "other.weights.h5", "is not a YAMNet weights file"),
                       (tmp_path / "junk.weights.h5", "is not a YAMNet weights file"),
                       (tmp_path / "absent.weights.h5", "does not exist")):
        with pytest.raises(WeightsError, match=words):
            build_dcnn((96, 64, 1), 3, "yamnet", str(bad), fc_units=8)
    with pytest.raises(ValueError, match="freeze_blocks"):
        build_dcnn((96, 64, 1), 3, "yamnet", str(yamnet_weights), fc_units=8, freeze_blocks=15)
    with pytest.raises(ValueError, match="64, 1"):
        build_dcnn((64, 64, 3), 3, "yamnet", str(yamnet_weights), fc_units=8)


@needs_tflite
def test_tiny_yamnet_run_both_steps_and_predict(tmp_path, yamnet_weights, capsys):
    """Step 1 (2 of YAMNet's 14 blocks fine-tuned, the rest frozen) + step 2, 1 epoch each, on 12 EmoDB clips of
    3 speakers (test: 4 clips of a 4th), then ``cnnrnn predict`` on the step-2 run folder."""
    import pandas as pd

    from cnnrnn.artifacts import load_model
    from cnnrnn.cli import main
    from cnnrnn.dcnn.filelists import FilelistEntry, write_filelist
    from cnnrnn.models.yamnet import build_yamnet

    lists = tmp_path / "lists"
    for split, speakers, n in (("train", ("03", "08", "09"), 4), ("test", ("10",), 4)):
        write_filelist(lists / f"{split}.txt", [FilelistEntry(str(p), s, "", CODES[p.stem[5]])
                                                for s in speakers for p in _clips(s, n)])
    (lists / "labels.json").write_text(json.dumps({"labels": LABELS}))
    small = {"weights": str(yamnet_weights), "freeze_blocks": 12, "fc_units": 16, "lstm_units": 8,
             "attention_units": 8, "dense1_units": 16, "dense2_units": 8}
    for step, train in (("finetune", {"name": "y_finetune"}), ("train", {"name": "y_train",
                                                                          "finetune_name": "y_finetune"})):
        (tmp_path / f"{step}.json").write_text(json.dumps(
            {"extends": f"yamnet_{step}", "model": small, "train": {**train, "epochs": 1, "batch_size": 8}}))
    logs = tmp_path / "logs"
    common = ["--filelist-train", str(lists / "train.txt"), "--filelist-test", str(lists / "test.txt"),
              "--out", str(logs)]
    for step in ("finetune", "train"):
        assert main(["-q", "dcnn", step, "--config", str(tmp_path / f"{step}.json"), *common]) == 0
    capsys.readouterr()
    run1, run2 = logs / "y_finetune", logs / "y_train"
    metrics = json.loads((run1 / "metrics_finetune.json").read_text())
    assert (metrics["segments"]["n"], metrics["utterances"]["n"]) == (4 * 3, 4)   # 2 s clips: 3 patches each
    manifest = json.loads((run2 / "run.json").read_text())
    assert manifest["input"]["image_size"] == [96, 64] and manifest["input"]["features"]["kind"] == "yamnet"
    assert manifest["extra"]["normalization"]["train"] == {"speaker": 12}
    assert (run1 / "normalization.json").is_file() and (run2 / "normalization.json").is_file()
    assert "(12, 3, 16)" in (run2 / "log_train.out").read_text()      # 12 utterances, 3 patches, 16 features

    # the frozen blocks kept YAMNet's weights, the fine-tuned ones moved
    pretrained = build_yamnet(include_top=True)
    pretrained.load_weights(yamnet_weights)
    tuned = load_model(run1 / "dcnn.h5").get_layer("yamnet")
    np.testing.assert_array_equal(tuned.get_layer("layer12_pointwise").get_weights()[0],
                                  pretrained.get_layer("layer12_pointwise").get_weights()[0])
    assert not np.allclose(tuned.get_layer("layer14_pointwise").get_weights()[0],
                           pretrained.get_layer("layer14_pointwise").get_weights()[0])

    out = tmp_path / "pred"
    assert main(["-q", "predict", "--model", str(run2), "--input", str(lists / "test.txt"), "--out", str(out)]) == 0
    df = pd.read_csv(out / "predictions.csv")
    assert len(df) == 4 and set(df["predicted"]) <= set(LABELS) and set(df["normalization"]) == {"speaker"}
    np.testing.assert_allclose(df[[f"p_{lab}" for lab in LABELS]].sum(axis=1), 1.0, atol=1e-5)
    step2_test = pd.read_csv(run2 / "predictions_train.csv")   # the same model on the same test utterances
    np.testing.assert_allclose(df[[f"p_{lab}" for lab in LABELS]], step2_test[[f"p_{lab}" for lab in LABELS]],
                               atol=1e-5)
    assert json.loads((out / "metrics.json").read_text())["n"] == 4
