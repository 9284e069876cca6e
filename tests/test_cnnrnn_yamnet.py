"""The CNNRNN family with the YAMNet backbone (``train.backbone: yamnet``, ``spectrogram.kind: yamnet``, preset
``yamnet``): the config rules, YAMNet's log-mel held in a gray image and decoded by the model, its speaker
normalisation mapped back to the global range, a tiny run through the CLI (split, spectrograms, pack, train,
predict, ONNX export), and, with ``../shared/data``, the AudioSet weights seeing the decoded image as their log-mel.

Measured here (2026-12-06, 20 emodb-535 clips of 2 s): decoding the image gives YAMNet's log-mel within 0.0271
(half a level of 13.8 / 255); the AudioSet embeddings of the decoded image against those of the float log-mel:
cosine median 0.9996, min 0.9987.
"""
import json

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, TFLITE

EMODB = SHARED_DATA / "emodb-535"
HALF_LEVEL = 13.815510557964274 / 255 / 2


def _spec(**changes):
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.config import override

    return override(load_config("yamnet"), changes).spectrogram


def test_the_yamnet_preset_ties_the_backbone_to_its_own_features():
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.config import ConfigError, override
    from cnnrnn.features import YAMNET_IMAGE_RANGE

    cfg = load_config("yamnet")
    assert (cfg.train.backbone, cfg.spectrogram.kind, cfg.spectrogram.image_size) == ("yamnet", "yamnet", [64, 198])
    assert cfg.train.weights == "weights/yamnet.weights.h5" and cfg.train.selection == "inner"
    utterance = override(cfg, {"spectrogram.normalization": "utterance"}).spectrogram
    assert cfg.spectrogram.uses_stats and utterance.uses_stats  # YAMNet's z-scores go back to the global range
    assert not override(load_config("compact"), {"spectrogram.normalization": "utterance"}).spectrogram.uses_stats
    assert load_config("compact").spectrogram.uses_stats and not load_config("default").spectrogram.uses_stats
    assert cfg.train.model_options()["image_range"] == YAMNET_IMAGE_RANGE
    with pytest.raises(ConfigError, match="yamnet backbone takes spectrogram.kind yamnet"):
        override(cfg, {"train.backbone": "compact"})
    with pytest.raises(ConfigError, match="yamnet backbone takes spectrogram.kind yamnet"):
        override(load_config("compact"), {"train.backbone": "yamnet"})
    with pytest.raises(ConfigError, match=r"image_size must be \[64, 98\] for duration 1.0"):
        override(cfg, {"spectrogram.duration": 1.0})
    with pytest.raises(ConfigError, match="YAMNet's front end"):
        override(cfg, {"spectrogram.fmin": 0.0})
    with pytest.raises(ConfigError, match="colormap gray"):
        override(cfg, {"spectrogram.colormap": "magma"})
    with pytest.raises(ConfigError, match="spectrogram.kind must be one of"):
        override(cfg, {"spectrogram.kind": "mfcc"})


def test_the_image_holds_yamnet_log_mel_and_the_model_decodes_it(real_waveform):
    """Real speech: the spectrogram stage's batched log-mel is :func:`yamnet_log_mel`; the gray image holds it within
    half a level, low bands at the bottom; :class:`ImageToLogMel` gives it back as YAMNet's ``(frames, 64, 1)``."""
    from cnnrnn.audio import pad_or_trim
    from cnnrnn.features import image_of_log_mel, log_mels, yamnet_frames, yamnet_log_mel
    from cnnrnn.models.yamnet import ImageToLogMel
    from cnnrnn.features import YAMNET_IMAGE_RANGE

    y, sr = real_waveform
    assert sr == 16000
    spec = _spec()
    clips = np.stack([pad_or_trim(y, spec.n_samples), pad_or_trim(y[8000:], spec.n_samples)])
    mels = log_mels(clips, spec)
    assert mels.shape == (2, 64, yamnet_frames(32000)) == (2, 64, 198) and mels.dtype == np.float32
    np.testing.assert_array_equal(mels[0], yamnet_log_mel(clips[0]).T)
    images = np.stack([image_of_log_mel(m, spec, mode="none") for m in mels])
    assert images.shape == (2, 64, 198, 3) and images.dtype == np.uint8
    assert (images[..., 0] == images[..., 2]).all()                       # gray
    assert images[:, -1].mean() > images[:, 0].mean()                     # low bands (louder) at the bottom
    decoded = ImageToLogMel(YAMNET_IMAGE_RANGE)(images.astype(np.float32)).numpy()
    assert decoded.shape == (2, 198, 64, 1)
    np.testing.assert_allclose(decoded[..., 0], np.clip(mels.transpose(0, 2, 1), *YAMNET_IMAGE_RANGE),
                               atol=HALF_LEVEL + 1e-5)


def test_yamnet_normalisation_maps_the_z_scores_back_to_the_global_range(real_waveform):
    from cnnrnn.audio import pad_or_trim
    from cnnrnn.features import image_of_log_mel, log_mels
    from cnnrnn.normalize import NormalizationError, fit

    y, _ = real_waveform
    spec = _spec()
    clips = np.stack([pad_or_trim(y, spec.n_samples), 0.2 * pad_or_trim(y[4000:], spec.n_samples),
                      pad_or_trim(y[12000:], spec.n_samples)])
    mels = log_mels(clips, spec)
    stats = fit([m.T for m in mels], ["a", "b", "b"], reference=[True, True, True])
    plain = [image_of_log_mel(m, spec, mode="none").astype(int) for m in mels]
    # global: z-scores with the global statistics, mapped back with them: the identity (to a level of rounding)
    glob = [image_of_log_mel(m, spec, None, stats, "global").astype(int) for m in mels]
    assert max(np.abs(g - p).max() for g, p in zip(glob, plain)) <= 1
    # speaker: speaker b's quieter clip (0.2 x) comes back to the global level
    spk = image_of_log_mel(mels[1], spec, "b", stats, "speaker").astype(float)
    assert abs(spk.mean() - np.mean(plain)) < abs(plain[1].mean() - np.mean(plain))
    with pytest.raises(NormalizationError, match="global statistics"):
        image_of_log_mel(mels[0], spec, None, None, "utterance")


def test_tiny_yamnet_run_predicts_and_exports(tmp_path, sample_dir, capsys):
    """The whole CLI flow on the bundled sample with random YAMNet weights (1 epoch, 2 blocks trained, random
    64-frame crops; predicted and exported as segments pooled per clip)."""
    from cnnrnn import cli
    from cnnrnn.artifacts import load_image_table, load_json

    out = tmp_path / "run"
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out),
                     "--config", "tiny_yamnet"]) == 0
    table = load_image_table(out / "train_final.pickle")
    assert table["path"].shape[1:] == (64, 98, 3)
    stats = load_json(out / "spectrograms" / "normalization.json")
    assert len(stats["global"]["mean"]) == 64 and stats["speakers"]
    report = load_json(out / "cv_report.json")
    assert report["input_shape"] == [64, 64, 3] and len(report["folds"]) == 2    # random 64-frame crops
    metrics = load_json(out / "test" / "metrics.json")
    assert 0.0 <= metrics["ua"] <= 1.0

    wavs = sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[:3]
    folder = tmp_path / "wavs"
    folder.mkdir()
    for w in wavs:
        (folder / w.name).write_bytes(w.read_bytes())
    capsys.readouterr()
    assert cli.main(["-q", "predict", "--model", str(out), "--input", str(folder), "--out",
                     str(tmp_path / "pred"), "--speaker", "anna"]) == 0
    pred = pd.read_csv(tmp_path / "pred" / "predictions.csv")
    assert len(pred) == 3 and set(pred["normalization"]) == {"speaker"}
    p = pred[[c for c in pred if c.startswith("p_")]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-4)
    assert np.ptp(p, axis=0).max() > 1e-4   # random He-initialised weights: the clips get different outputs

    pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    from cnnrnn import export as E

    result = E.export(out, "onnx", tmp_path / "yamnet.onnx", audio=wavs)
    side = json.loads(result["sidecar"].read_text())
    assert side["parity"]["passed"] and side["parity"]["max_abs_diff"] <= E.TOLERANCES["onnx"]
    pre = side["preprocessing"]
    assert pre["features"]["kind"] == "yamnet_log_mel" and pre["normalization"]["stats"] is not None
    x = E.model_inputs(pre, wavs).x
    assert x.shape == (3, 64, 98, 3)
    proba = E.load_exported(tmp_path / "yamnet.onnx").predict(x)
    assert proba.shape == (3, 7) and np.ptp(proba, axis=0).max() > 1e-4   # the inputs matter


def test_a_missing_weights_file_is_refused_before_any_work(tmp_path, sample_dir, caplog):
    from cnnrnn import cli

    out, cfg = tmp_path / "run", tmp_path / "absent_weights.json"
    cfg.write_text(json.dumps({"extends": "yamnet", "train": {"weights": str(tmp_path / "absent.weights.h5")}}))
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out), "--config",
                     str(cfg)]) == 2
    assert "yamnet-convert" in caplog.text and "does not exist" in caplog.text
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.skipif(not (TFLITE.is_file() and EMODB.is_dir()),
                    reason="../shared/data (yamnet.tflite, emodb-535) is absent")
def test_pretrained_yamnet_sees_the_decoded_image_as_its_log_mel(yamnet_weights, tmp_path):
    """AudioSet weights in the CNNRNN backbone: 20 EmoDB clips, embeddings of the decoded image against those of
    the float log-mel (cosine), the weights really loaded, frozen blocks frozen, a missing file a clear error."""
    import librosa

    from cnnrnn.audio import pad_or_trim
    from cnnrnn.features import YAMNET_IMAGE_RANGE, image_of_log_mel, log_mels
    from cnnrnn.models.blocks import WeightsError
    from cnnrnn.models.cnnrnn import build_cnnrnn
    from cnnrnn.models.yamnet import ImageToLogMel, build_yamnet, pretrained_yamnet

    spec = _spec()
    files = sorted(EMODB.glob("*.wav"))[::27]
    mels = log_mels(np.stack([pad_or_trim(librosa.load(f, sr=16000)[0], spec.n_samples) for f in files]), spec)
    images = np.stack([image_of_log_mel(m, spec, mode="none") for m in mels]).astype(np.float32)
    net = pretrained_yamnet(frames=198, weights=str(yamnet_weights))
    a = net.predict(mels.transpose(0, 2, 1)[..., None], verbose=0)
    b = net.predict(ImageToLogMel(YAMNET_IMAGE_RANGE)(images), verbose=0)
    cosine = (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert len(files) == 20 and np.median(cosine) >= 0.999 and cosine.min() >= 0.995

    model = build_cnnrnn((64, 198, 3), 7, str(yamnet_weights), backbone="yamnet", freeze_blocks=6,
                         image_range=YAMNET_IMAGE_RANGE)
    reference = build_yamnet(frames=198, include_top=True)
    reference.load_weights(yamnet_weights)
    inner = model.get_layer("yamnet")
    np.testing.assert_array_equal(inner.get_layer("layer14_pointwise").get_weights()[0],
                                  reference.get_layer("layer14_pointwise").get_weights()[0])
    assert not inner.get_layer("layer6_pointwise").trainable and inner.get_layer("layer7_pointwise").trainable
    assert model.predict(images[:2], verbose=0).shape == (2, 7)
    with pytest.raises(WeightsError, match="yamnet-convert"):
        build_cnnrnn((64, 198, 3), 7, str(tmp_path / "absent.weights.h5"), backbone="yamnet",
                     image_range=YAMNET_IMAGE_RANGE)
