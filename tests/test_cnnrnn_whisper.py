"""The CNNRNN family with the Whisper backbone (``train.backbone: whisper``, ``spectrogram.kind: whisper``, preset
``whisper``): the config rules, Whisper's log-mel held in a gray image and decoded by the model, a tiny run through the
CLI with a small random-weight encoder (frozen and cached; one top block fine-tuned; each head; the weighted sum),
and with ``../shared/data`` the real tiny.en encoder seeing the decoded image as its log-mel."""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA

#: Keras steps run eagerly here (conftest.eager_module): tracing costs more than these tiny models' steps.
EAGER_KERAS = True

EMODB = SHARED_DATA / "emodb-535"
LEVEL = 4.0 / 255


def _tiny(weights, **train):
    """The tiny_whisper preset on the encoder ``weights`` with the ``train`` changes."""
    return {"extends": "tiny_whisper", "train": {"weights": str(weights), **train}}


def _config_file(tmp_path, weights, **train):
    path = tmp_path / "whisper_option.json"
    path.write_text(json.dumps(_tiny(weights, **train)))
    return path


def test_the_whisper_preset_ties_the_backbone_to_its_own_features():
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.config import ConfigError, override
    from cnnrnn.features import WHISPER_IMAGE_RANGE

    cfg = load_config("whisper")
    assert (cfg.train.backbone, cfg.spectrogram.kind, cfg.spectrogram.image_size) == ("whisper", "whisper", [80, 200])
    assert cfg.train.whisper_block == 2 and cfg.train.trainable_blocks == 0 and cfg.train.cached_encoder
    assert cfg.train.model_options()["image_range"] == WHISPER_IMAGE_RANGE
    assert not override(cfg, {"train.trainable_blocks": 1}).train.cached_encoder
    with pytest.raises(ConfigError, match="whisper backbone takes spectrogram.kind whisper"):
        override(cfg, {"train.backbone": "compact"})
    with pytest.raises(ConfigError, match=r"image_size must be \[80, 100\] for duration 1.0"):
        override(cfg, {"spectrogram.duration": 1.0})
    with pytest.raises(ConfigError, match="Whisper's front end"):
        override(cfg, {"spectrogram.n_mels": 64})
    with pytest.raises(ConfigError, match="whisper_block"):
        override(cfg, {"train.whisper_block": "last"})
    with pytest.raises(ConfigError, match="train.head"):
        override(cfg, {"train.head": "gru"})


def test_the_image_holds_whisper_log_mel_and_the_model_decodes_it(real_waveform):
    from cnnrnn.audio import pad_or_trim
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.features import WHISPER_IMAGE_RANGE, image_of_log_mel, log_mels
    from cnnrnn.models.yamnet import ImageToLogMel
    from cnnrnn.whisper_features import whisper_log_mel

    y, sr = real_waveform
    spec = load_config("whisper").spectrogram
    clips = np.stack([pad_or_trim(y, spec.n_samples), pad_or_trim(y[8000:], spec.n_samples)])
    mels = log_mels(clips, spec)
    assert mels.shape == (2, 80, 200) and mels.dtype == np.float32
    np.testing.assert_array_equal(mels[0], whisper_log_mel(clips[0]).T)
    images = np.stack([image_of_log_mel(m, spec, mode="none") for m in mels])
    assert images.shape == (2, 80, 200, 3) and (images[..., 0] == images[..., 2]).all()
    decoded = ImageToLogMel(WHISPER_IMAGE_RANGE)(images.astype(np.float32)).numpy()[..., 0]
    np.testing.assert_allclose(decoded, mels.transpose(0, 2, 1), atol=LEVEL / 2 + 1e-5)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, whisper_random_weights):
    """One tiny frozen-encoder run through the CLI on the bundled sample (shared by the tests below)."""
    from cnnrnn import cli

    tmp = tmp_path_factory.mktemp("cnnrnn_whisper")
    cfg = tmp / "tiny_whisper.json"
    cfg.write_text(json.dumps(_tiny(whisper_random_weights, whisper_block=1)))
    out = tmp / "run"
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(SAMPLE), "--out", str(out),
                     "--config", str(cfg)]) == 0
    return out


def _sample():
    import cnnrnn
    from pathlib import Path

    return Path(cnnrnn.__file__).parent / "sample" / "kemdy20"


SAMPLE = _sample()


def test_tiny_run_trains_the_head_on_cached_features_and_predicts(tiny_run, whisper_random_weights, tmp_path):
    """Frozen encoder: the checkpoint's encoder equals the converted weights (cached features, head fitted alone),
    the head learned, and the saved model predicts wav files from the CLI."""
    from cnnrnn import cli
    from cnnrnn.artifacts import load_json, load_model
    from cnnrnn.models.whisper import pretrained_whisper

    report = load_json(tiny_run / "cv_report.json")
    assert report["input_shape"] == [80, 100, 3] and len(report["folds"]) == 2
    model = load_model(report["checkpoints"][0])
    encoder = model.get_layer("whisper")
    assert [l.name for l in encoder.layers if l.name.startswith("block")] == ["block1"]   # cut after block 1
    reference = pretrained_whisper(whisper_random_weights, block=1)
    for name in ("conv1", "block1"):
        for a, b in zip(encoder.get_layer(name).get_weights(), reference.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)
    head = model.get_layer("whisper_head")
    assert any(not np.allclose(w, 0) for w in head.get_layer("lstm").get_weights())
    metrics = load_json(tiny_run / "test" / "metrics.json")
    assert 0.0 <= metrics["ua"] <= 1.0

    wavs = sorted((SAMPLE / "wav" / "Session01").glob("*.wav"))[:3]
    assert cli.main(["-q", "predict", "--model", str(tiny_run), "--input", str(wavs[0].parent), "--out",
                     str(tmp_path / "pred")]) == 0
    pred = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    p = pred[[c for c in pred if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert set(pred["normalization"]) == {"global"}      # no speaker: the training data's global statistics
    # one speaker per folder: each file's folder names its speaker
    folders = tmp_path / "by_speaker"
    for i, w in enumerate(wavs):
        (folders / f"spk{i % 2}").mkdir(parents=True, exist_ok=True)
        (folders / f"spk{i % 2}" / w.name).write_bytes(w.read_bytes())
    assert cli.main(["-q", "predict", "--model", str(tiny_run), "--input", str(folders), "--out",
                     str(tmp_path / "pred2"), "--speaker-from", "folder"]) == 0
    by_folder = pd.read_csv(tmp_path / "pred2" / "predictions.csv")
    assert len(by_folder) == 3 and "global" not in set(by_folder["normalization"])
    assert cli.main(["-q", "predict", "--model", str(tiny_run), "--input", str(folders), "--out",
                     str(tmp_path / "pred3"), "--speaker-from", "folder", "--speaker", "x"]) == 2


@pytest.mark.parametrize("option", [{"trainable_blocks": 1}, {"head": "mean_std"}, {"head": "attention"},
                                    {"whisper_block": "weighted"}, {"head": "mean_std", "l2": 0.01}])
def test_each_option_changes_what_is_trained(option, whisper_random_weights, tmp_path):
    """Built models (no training): the trainable weights say what each option trains."""
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.models.cnnrnn import build_cnnrnn

    cfg = load_config(_config_file(tmp_path, whisper_random_weights, **option))
    model = build_cnnrnn((80, 100, 3), 7, cfg.train.weights, **cfg.train.model_options())
    names = {w.path.split("/")[0] for w in model.trainable_weights}
    head = {w.path for w in model.get_layer("whisper_head").trainable_weights}
    if "trainable_blocks" in option:
        enc = {w.path.split("/")[0] for w in model.get_layer("whisper").trainable_weights}
        assert enc == {"block2"} and not cfg.train.cached_encoder
    elif "l2" in option:   # the penalty enters the loss: one regularisation term, on the softmax kernel only
        emotion = model.get_layer("whisper_head").get_layer("emotion")
        assert emotion.kernel_regularizer is not None and emotion.kernel_regularizer.l2 == pytest.approx(0.01)
        x = np.zeros((1, 80, 100, 3), np.float32)
        model(x, training=True)
        assert len(model.losses) == 1 and float(model.losses[0]) > 0
    elif option.get("head") == "mean_std":   # fixed statistics (not trained) before a softmax: the linear probe
        layers = {layer.name for layer in model.get_layer("whisper_head").layers}
        assert {"mean_std", "feature_norm", "emotion"} <= layers and "lstm" not in layers
        assert all(p.startswith("emotion") for p in head)
    elif option.get("head") == "attention":
        assert any("attention" in p for p in head)
    else:
        assert any("block_mix" in p for p in head) and len(model.get_layer("whisper").outputs) == 3
    assert not model.get_layer("whisper").trainable_weights or "trainable_blocks" in option
    assert names
    x = np.random.default_rng(0).integers(0, 255, (2, 80, 100, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 7)


def test_fine_tuning_the_top_block_changes_its_weights(tmp_path, whisper_random_weights):
    """``trainable_blocks: 1``: the encoder runs every epoch and its top block moves; the stem stays."""
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.train import cross_validate
    from cnnrnn.models.whisper import pretrained_whisper
    from cnnrnn.artifacts import load_model

    cfg = load_config(_config_file(tmp_path, whisper_random_weights, trainable_blocks=1, epochs=1,
                                   learning_rate=0.01))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (9, 80, 100, 3)).astype(np.uint8)
    y = np.arange(9) % 3
    report = cross_validate(images, y, ["a", "b", "c"], tmp_path, cfg.train, verbose=0,
                            folds=[(np.arange(6), np.arange(6, 9))])
    model = load_model(report["checkpoints"][0])
    reference = pretrained_whisper(whisper_random_weights, block=2)
    enc = model.get_layer("whisper")
    np.testing.assert_array_equal(enc.get_layer("conv1").get_weights()[0], reference.get_layer("conv1").get_weights()[0])
    assert not np.allclose(enc.get_layer("block2").get_weights()[-1], reference.get_layer("block2").get_weights()[-1])


def test_a_missing_whisper_weights_file_is_refused_before_any_work(tmp_path, caplog):
    from cnnrnn import cli

    out, cfg = tmp_path / "run", tmp_path / "absent_weights.json"
    cfg.write_text(json.dumps({"extends": "whisper", "train": {"weights": str(tmp_path / "absent.weights.h5")}}))
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(SAMPLE), "--out", str(out), "--config",
                     str(cfg)]) == 2
    assert "whisper-convert" in caplog.text and "does not exist" in caplog.text
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(not EMODB.is_dir(), reason="../shared/data/emodb-535 is absent")
def test_real_encoder_sees_the_decoded_image_as_its_log_mel(whisper_weights):
    """tiny.en's block-2 features of the decoded image against those of the float log-mel: 10 EmoDB clips."""
    import librosa

    from cnnrnn.audio import pad_or_trim
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.features import WHISPER_IMAGE_RANGE, image_of_log_mel, log_mels
    from cnnrnn.models.whisper import pretrained_whisper
    from cnnrnn.models.yamnet import ImageToLogMel

    spec = load_config("whisper").spectrogram
    files = sorted(EMODB.glob("*.wav"))[::54]
    mels = log_mels(np.stack([pad_or_trim(librosa.load(f, sr=16000)[0], spec.n_samples) for f in files]), spec)
    images = np.stack([image_of_log_mel(m, spec, mode="none") for m in mels]).astype(np.float32)
    net = pretrained_whisper(whisper_weights, block=2)
    a = np.asarray(net(mels.transpose(0, 2, 1))).mean(axis=1)
    b = np.asarray(net(ImageToLogMel(WHISPER_IMAGE_RANGE)(images)[..., 0])).mean(axis=1)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert len(files) == 10 and np.median(cosine) >= 0.999 and cosine.min() >= 0.995


def test_mean_std_head_is_standardised_with_the_fit_rows_statistics(tmp_path, whisper_random_weights):
    """The ``mean_std`` head's Standardize layer holds the mean and std of the fold's pooled fit features (cached
    path): the saved checkpoint carries them."""
    from cnnrnn.artifacts import load_model
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.train import cross_validate

    cfg = load_config(_config_file(tmp_path, whisper_random_weights, head="mean_std", epochs=1, selection="fold"))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (9, 80, 100, 3)).astype(np.uint8)
    report = cross_validate(images, np.arange(9) % 3, ["a", "b", "c"], tmp_path / "run", cfg.train, verbose=0,
                            folds=[(np.arange(6), np.arange(6, 9))])
    head = load_model(report["checkpoints"][0]).get_layer("whisper_head")
    mean, std = head.get_layer("feature_norm").get_weights()
    pooled = __import__("keras").Model(head.input, head.get_layer("feature_norm").input)
    model = load_model(report["checkpoints"][0])
    x = images[:6].astype(np.float32)
    feats = np.asarray(pooled(model.get_layer("whisper")(model.get_layer("whisper_log_mel")(
        model.get_layer("log_mel")(x)))))
    np.testing.assert_allclose(mean, feats.mean(axis=0), rtol=1e-2, atol=1e-2)   # traced vs eager float32
    np.testing.assert_allclose(std, feats.std(axis=0), rtol=1e-2, atol=1e-2)
    assert np.abs(mean).max() > 0.1 and np.abs(std - 1).max() > 0.1          # not the identity defaults


def test_demo_preset_uses_the_shipped_whisper_weights(capsys):
    """``cnnrnn demo``'s preset: the Whisper recipe on the weights inside the package (MIT notice beside them,
    under 20 MB), and a plain-words ending that says what UA means and where the files are."""
    from pathlib import Path

    import cnnrnn
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.commands.cnnrnn import _print_summary
    from cnnrnn.models.whisper import read_meta, resolve_weights

    cfg = load_config("demo")
    assert (cfg.train.backbone, cfg.train.head, cfg.train.weights) == ("whisper", "mean_std", "whisper-tiny.en")
    path = resolve_weights(cfg.train.weights)
    assert path.is_file() and Path(cnnrnn.__file__).parent in path.parents
    assert path.stat().st_size < 20e6 and "OpenAI" in (path.parent / "LICENSE").read_text()
    meta = read_meta(cfg.train.weights)
    assert meta["blocks"] == 2 and meta["dtype"] == "float16" and cfg.train.whisper_block <= meta["blocks"]
    _print_summary({"cv_folds": [], "cv_mean": {k: {"mean": 0.5} for k in ("ua", "wa", "f1_macro")},
                    "test_metrics": {"n": 23, "ua": 0.7, "wa": 0.65, "f1_macro": 0.6}, "skipped": {},
                    "seconds": {}, "files": {}, "labels": list("abcdefg"), "out": "/x/demo"})
    text = capsys.readouterr().out
    assert "In plain words: on 23 test clips" in text and "chance is 0.143 for 7 emotions" in text
    assert "/x/demo" in text


def test_a_whisper_run_exports_to_onnx_with_parity(tiny_run, tmp_path):
    """The encoder's exact GELU is written with erf (tf2onnx has no Erfc): ONNX export passes its parity check."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from cnnrnn import export as E

    wavs = sorted((SAMPLE / "wav" / "Session01").glob("*.wav"))[:2]
    result = E.export(tiny_run, "onnx", tmp_path / "w.onnx", audio=wavs)
    side = json.loads(result["sidecar"].read_text())
    assert side["parity"]["passed"] and side["parity"]["max_abs_diff"] <= E.TOLERANCES["onnx"]
    assert side["preprocessing"]["features"]["kind"] == "whisper_log_mel"
