"""The CNNRNN family's recipe options on real speech (the bundled sample): speaker-normalised log-mel images,
the compact backbone with SpecAugment, and prediction with and without the speaker of new files."""
import numpy as np
import pandas as pd
import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_json


@pytest.fixture(scope="module")
def recipe_run(tmp_path_factory, sample_dir):
    """The tiny_recipe preset (the compact recipe at the tiny size) through `cnnrnn run` on the bundled sample."""
    out = tmp_path_factory.mktemp("recipe")
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out / "run"),
                     "--config", "tiny_recipe"]) == 0
    return out / "run"


def test_speaker_statistics_are_stored_and_change_the_images(recipe_run, sample_dir, tmp_path):
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.features import audio_to_image, read_png
    from cnnrnn.normalize import NormStats

    stats = NormStats.from_dict(load_json(recipe_run / "spectrograms" / "normalization.json"))
    speakers = {r["speaker"] for part in ("train", "test") for r in load_json(recipe_run / f"{part}_audio.json")}
    assert set(stats.speakers) == speakers and stats.dim == 32
    record = load_json(recipe_run / "test_audio.json")[0]
    png = read_png(recipe_run / "spectrograms" / f"{record['id']}.png")
    cfg = load_config(recipe_run / "config.json").spectrogram
    assert np.array_equal(png, audio_to_image(record["audio_path"], cfg, record["speaker"], stats))
    plain = audio_to_image(record["audio_path"], cfg, mode="none")
    assert not np.array_equal(png, plain)
    summary = load_json(recipe_run / "run_summary.json")
    assert summary["speakers_in_both"] == [] and summary["cv_optimistic"] is False


def test_compact_backbone_with_spec_augment_is_saved_and_reloads(recipe_run):
    from cnnrnn.artifacts import load_model
    from cnnrnn.runs import read_manifest

    manifest = read_manifest(recipe_run)
    model = load_model(manifest.checkpoint_paths()[0])
    assert model.name == "cnnrnn_compact_lstm" and model.get_layer("spec_augment").freq_masks == 1
    assert manifest.config["spectrogram"]["normalization"] == "speaker"


def test_predict_with_and_without_the_speaker(recipe_run, sample_dir, tmp_path):
    wavs = sorted(sample_dir.glob("wav/Session03/*User005M*.wav"))[:4]
    folder = tmp_path / "in"
    folder.mkdir()
    for w in wavs:
        (folder / w.name).write_bytes(w.read_bytes())
    assert cli.main(["-q", "predict", "--model", str(recipe_run), "--input", str(folder), "--out",
                     str(tmp_path / "a"), "--speaker", "User005M"]) == 0
    with_speaker = pd.read_csv(tmp_path / "a" / "predictions.csv")
    assert set(with_speaker["normalization"]) == {"speaker"} and len(with_speaker) == 4
    assert cli.main(["-q", "predict", "--model", str(recipe_run), "--input", str(folder), "--out",
                     str(tmp_path / "b")]) == 0
    without = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert set(without["normalization"]) == {"global"}  # no speaker: the training data's global statistics
    assert not np.allclose(with_speaker["p_angry"], without["p_angry"])


def test_late_fusion_of_a_cnnrnn_run_and_a_functionals_run(recipe_run, sample_dir, tmp_path):
    fx = tmp_path / "fx"
    assert cli.main(["-q", "functionals", "train", "--corpus", "kemdy20", "--root", str(sample_dir), "--out",
                     str(fx), "--config", "tiny"]) == 0
    wavs = sorted(sample_dir.glob("wav/Session01/*.wav"))[:3]
    folder = tmp_path / "in"
    folder.mkdir()
    for w in wavs:
        (folder / w.name).write_bytes(w.read_bytes())
    out = tmp_path / "fused"
    assert cli.main(["-q", "predict", "--model", str(recipe_run), "--model", str(fx), "--input", str(folder),
                     "--out", str(out), "--fuse"]) == 0
    a = pd.read_csv(out / "cnnrnn_1" / "predictions.csv").set_index("id")
    b = pd.read_csv(out / "functionals_2" / "predictions.csv").set_index("id")
    fused = pd.read_csv(out / "predictions.csv").set_index("id")
    assert sorted(fused.index) == sorted(w.stem for w in wavs)
    labels = [c for c in fused if c.startswith("p_")]
    expected = (a.loc[fused.index, labels].to_numpy() + b.loc[fused.index, labels].to_numpy()) / 2
    np.testing.assert_allclose(fused[labels].to_numpy(), expected / expected.sum(axis=1, keepdims=True), atol=1e-5)
    assert cli.main(["-q", "predict", "--model", str(recipe_run), "--model", str(fx), "--input", str(folder),
                     "--out", str(tmp_path / "x")]) == 2  # different families without --fuse: a clear error
