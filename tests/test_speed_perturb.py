"""Speed perturbation of the waveform (``train.speed_perturb``): audiomentations copies of the training
utterances, deterministic, used only to fit (never to choose the epoch or to score), in the library path
(:func:`cnnrnn.cnnrnn.train.cross_validate` with ``train_copies``) and the CLI path (spectrograms → pack →
train), on real speech from the bundled sample."""
import json
import random

import numpy as np
import pytest

from cnnrnn import cli
from cnnrnn.artifacts import load_image_table, load_json, load_pickle
from cnnrnn.audio import change_speed, load_audio
from cnnrnn.cnnrnn import speed
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.config import ConfigError, override
from cnnrnn.features import audio_log_mel

SR = 16000


@pytest.fixture(scope="module")
def wavs(sample_dir):
    """Six real clips of two speakers (three each) from the bundled sample."""
    files = sorted((sample_dir / "wav" / "Session01").glob("*.wav"))
    by_speaker = {}
    for f in files:
        by_speaker.setdefault(f.stem.split("_")[2], []).append(f)
    return [f for s in sorted(by_speaker)[:2] for f in by_speaker[s][:3]]


def tiny(**train):
    """The ``tiny_speed`` preset with per-speaker normalisation and ``train`` keys replaced."""
    return override(load_config("tiny_speed"), {"spectrogram.normalization": "speaker",
                                                **{f"train.{k}": v for k, v in train.items()}})


@pytest.mark.parametrize("method", ["speed", "tempo"])
def test_the_duration_scales_by_one_over_the_factor_and_the_copy_is_deterministic(real_wav, method):
    y, _ = load_audio(real_wav, SR)
    for factor in (0.9, 1.1, 1.5):
        random.seed(1)
        a = change_speed(y, SR, factor, method)
        random.seed(2)  # audiomentations draws from Python's random: the copy must not depend on it
        b = change_speed(y, SR, factor, method)
        assert abs(len(a) - len(y) / factor) <= 1.0, (factor, len(a), len(y))
        assert a.dtype == np.float32 and np.array_equal(a, b)
        assert np.isfinite(a).all() and 0.2 < np.abs(a).max() / np.abs(y).max() < 5
    assert np.array_equal(change_speed(y, SR, 1.0, method), y)


def test_speed_moves_the_spectrum_and_tempo_keeps_it(real_wav):
    """``speed`` (resampling) raises every frequency by the factor; ``tempo`` keeps the pitch."""
    y, _ = load_audio(real_wav, SR)

    def centroid(x):
        spec = np.abs(np.fft.rfft(x)) ** 2
        return float((np.fft.rfftfreq(len(x), 1 / SR) * spec).sum() / spec.sum())

    c = centroid(y)
    assert centroid(change_speed(y, SR, 1.2, "speed")) / c == pytest.approx(1.2, rel=0.05)
    assert centroid(change_speed(y, SR, 1.2, "tempo")) / c == pytest.approx(1.0, rel=0.1)


def test_bad_factors_and_methods_are_refused(real_wav):
    y, _ = load_audio(real_wav, SR)
    for factor in (0.5, 2.0, 0.0, -1.0):
        with pytest.raises(ValueError, match=r"\(0.5, 2.0\)"):
            change_speed(y, SR, factor)
    with pytest.raises(ValueError, match="speed perturbation method"):
        change_speed(y, SR, 0.9, "pitch")


def test_log_mel_of_a_copy_is_the_perturbed_clip_cut_to_the_duration(real_wav):
    cfg = tiny().spectrogram
    plain = audio_log_mel(real_wav, cfg)
    slow = audio_log_mel(real_wav, cfg, speed=0.9)
    assert slow.shape == plain.shape and not np.allclose(slow, plain)
    assert np.array_equal(slow, audio_log_mel(real_wav, cfg, speed=0.9))
    y, _ = load_audio(real_wav, SR)
    from cnnrnn.audio import pad_or_trim
    from cnnrnn.features import log_mel

    np.testing.assert_array_equal(slow, log_mel(pad_or_trim(change_speed(y, SR, 0.9), cfg.n_samples), cfg))


def test_the_config_option_round_trips_and_validates(tmp_path):
    cfg = override(load_config("best"), {"train.speed_perturb": [0.9, 1.1]})
    assert cfg.train.speed_perturb == [0.9, 1.1] and cfg.train.speed_perturb_method == "speed"
    assert load_config("best").train.speed_perturb == []  # off unless asked for
    cfg.save(tmp_path / "c.json")
    back = load_config(tmp_path / "c.json")
    assert back.to_dict() == cfg.to_dict()
    assert json.loads((tmp_path / "c.json").read_text())["train"]["speed_perturb"] == [0.9, 1.1]
    assert load_config({"train": {"speed_perturb": [0.95], "speed_perturb_method": "tempo"}}).train.speed_perturb \
        == [0.95]
    for bad in ([0.5], [2.0], [1.0], [0.9, 0.9], [0.0]):
        with pytest.raises(ConfigError, match="speed_perturb"):
            load_config({"train": {"speed_perturb": bad}})
    with pytest.raises(ConfigError, match="speed_perturb_method"):
        load_config({"train": {"speed_perturb": [0.9], "speed_perturb_method": "pitch"}})
    with pytest.raises(ConfigError):
        load_config({"train": {"speed_perturb": ["fast"]}})


def test_copies_are_normalised_as_pseudo_speakers_from_their_own_audio(wavs):
    from cnnrnn.features import image_of_log_mel
    from cnnrnn.normalize import fit

    cfg = tiny()
    speakers = [f.stem.split("_")[2] for f in wavs]
    mels = [audio_log_mel(f, cfg.spectrogram) for f in wavs]
    train = np.array([True] * 5 + [False])
    stats = fit([m.T for m in mels], speakers, reference=list(train))
    copies = speed.copy_log_mels(wavs, cfg.spectrogram, cfg.train)
    assert len(copies) == 2 and all(len(c) == len(wavs) for c in copies)
    rows = np.flatnonzero(train)
    images = speed.copy_images(copies, speakers, cfg.spectrogram, cfg.train, stats, rows=rows)
    assert images.shape == (2, 6, 32, 48, 3) and images.dtype == np.uint8
    assert not images[:, 5].any()  # not a training row: no copy made
    again = speed.copy_images(copies, speakers, cfg.spectrogram, cfg.train, stats, rows=rows)
    assert np.array_equal(images, again)  # deterministic
    # each (speaker, factor) is standardised with its own statistics (Kaldi: sp0.9-<speaker> is a speaker)
    from cnnrnn.normalize import with_speakers

    pseudo = speed.copy_speaker(speakers[0], 0.9)
    assert pseudo == f"{speakers[0]}__speed0.9"
    own = with_speakers(stats, [copies[0][i].T for i in range(3)], [pseudo] * 3)
    for i in range(3):
        assert np.array_equal(images[0, i], image_of_log_mel(copies[0][i], cfg.spectrogram, pseudo, own))
        assert not np.array_equal(images[0, i], image_of_log_mel(copies[0][i], cfg.spectrogram, speakers[0], stats))
    # global normalisation uses the statistics of the un-perturbed training audio
    glob = override(cfg, {"spectrogram.normalization": "global"})
    g = speed.copy_images(copies, speakers, glob.spectrogram, glob.train, stats)
    assert np.array_equal(g[1, 2], image_of_log_mel(copies[1][2], glob.spectrogram, None, stats, "global"))
    with pytest.raises(ValueError, match="one per factor"):
        speed.copy_images(copies[:1], speakers, cfg.spectrogram, cfg.train, stats)


def test_cross_validate_fits_on_the_copies_of_the_fit_rows_only(tmp_path, monkeypatch):
    """The copies of the rows that choose the epoch and of the scored rows never reach the model."""
    import cnnrnn.cnnrnn.train as T
    from cnnrnn.splits import inner_split

    rng = np.random.default_rng(0)
    n, labels = 24, ["a", "b", "c"]
    images = rng.integers(0, 120, (n, 32, 48, 3)).astype(np.uint8)
    copies = np.stack([np.full_like(images, 200 + c) for c in range(2)])  # copies are recognisable
    copies[:, :, 0, 0, 0] = np.arange(n, dtype=np.uint8)  # ... and say which row they copy
    y = (np.arange(n) % 3).astype(np.int32)
    groups = [f"s{i % 4}" for i in range(n)]
    seen = []
    real = T.image_dataset

    def spy(pool, labels_, indices=None, *args, **kwargs):
        idx = np.arange(len(pool)) if indices is None else np.asarray(indices)
        seen.append((kwargs.get("shuffle", False), pool[idx]))
        return real(pool, labels_, indices, *args, **kwargs)

    monkeypatch.setattr(T, "image_dataset", spy)
    cfg = tiny(precise_bn=False).train
    folds = [(np.flatnonzero([g != "s3" for g in groups]), np.flatnonzero([g == "s3" for g in groups]))]
    report = T.cross_validate(images, y, labels, tmp_path / "run", cfg, groups=groups, verbose=0, folds=folds,
                              train_copies=copies)
    fit_idx, sel_idx = inner_split(folds[0][0], y, groups, cfg.seed + 1)
    fit_sets = [x for shuffled, x in seen if shuffled]
    assert len(fit_sets) == 1
    fitted = fit_sets[0]
    originals = fitted[fitted.max(axis=(1, 2, 3)) < 200]
    copied = fitted[fitted[:, 1, 1, 0] >= 200]
    assert len(originals) == len(fit_idx) and len(copied) == 2 * len(fit_idx)
    assert sorted(copied[:, 0, 0, 0].tolist()) == sorted(fit_idx.tolist() * 2)  # copies of fit rows only
    assert set(copied[:, 1, 1, 0].tolist()) == {200, 201}
    for shuffled, x in seen:
        if not shuffled:  # validation and scoring: originals only
            assert x.max() < 200
    fold = load_json(tmp_path / "run" / "folds" / "fold1.json")
    assert (fold["n_fit"], fold["n_fit_copies"], fold["n_select"]) == (len(fit_idx), 2 * len(fit_idx), len(sel_idx))
    assert report["config"]["speed_perturb"] == [0.9, 1.1]


def test_cross_validate_refuses_missing_or_misshapen_copies(tmp_path):
    from cnnrnn.cnnrnn.train import cross_validate

    images = np.zeros((8, 32, 48, 3), np.uint8)
    y = (np.arange(8) % 2).astype(np.int32)
    cfg = tiny(group_by_speaker=False).train
    with pytest.raises(ValueError, match="needs train_copies"):
        cross_validate(images, y, ["a", "b"], tmp_path, cfg)
    with pytest.raises(ValueError, match=r"shape \(2, 8, 32, 48, 3\)"):
        cross_validate(images, y, ["a", "b"], tmp_path, cfg, train_copies=np.zeros((1, 8, 32, 48, 3), np.uint8))
    with pytest.raises(ValueError, match="speed_perturb is empty"):  # copies the config does not record
        cross_validate(images, y, ["a", "b"], tmp_path, tiny(speed_perturb=[], group_by_speaker=False).train,
                       train_copies=np.zeros((2, 8, 32, 48, 3), np.uint8))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory, sample_dir):
    out = tmp_path_factory.mktemp("speed")
    cfg = tiny()
    cfg.save(out / "recipe.json")
    assert cli.main(["-q", "run", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(out / "run"),
                     "--config", str(out / "recipe.json")]) == 0
    return out / "run"


def test_cli_renders_copies_of_the_train_split_only_and_trains_on_them(cli_run):
    train = load_json(cli_run / "train_audio.json")
    test = load_json(cli_run / "test_audio.json")
    pngs = {p.stem for p in (cli_run / "spectrograms").glob("*.png")}
    for r in train:
        assert {r["id"], f"{r['id']}__speed0.9", f"{r['id']}__speed1.1"} <= pngs
    assert not any(p.startswith(r["id"] + "__") for r in test for p in pngs)  # the test split gets no copy
    assert len(pngs) == 3 * len(train) + len(test)
    data = load_pickle(cli_run / "data_train.pickle")
    assert data["speed_factors"] == [0.9, 1.1] and data["speed_method"] == "speed"
    assert [p.rsplit("/", 1)[1] for p in data["speed_copies"][0]] == [f"{i}__speed0.9.png" for i in data["id"]]
    final = load_image_table(cli_run / "train_final.pickle")
    assert final["speed_copies"].shape == (2,) + final["path"].shape and final["speed_copies"].dtype == np.uint8
    assert not np.array_equal(final["speed_copies"][0], final["path"])
    assert "speed_copies" not in load_pickle(cli_run / "test_final.pickle")
    # the copies' speakers are pseudo-speakers with their own statistics; the real speakers' are unchanged
    norm = load_json(cli_run / "spectrograms" / "normalization.json")
    speakers = {r["speaker"] for r in train}
    assert {f"{s}__speed0.9" for s in speakers} | {f"{s}__speed1.1" for s in speakers} <= set(norm["speakers"])
    report = load_json(cli_run / "cv_report.json")
    for f in report["folds"]:
        assert f["n_fit_copies"] == 2 * f["n_fit"] and f["n_fit"] + f["n_select"] == f["n_train"]
    assert load_json(cli_run / "run.json")["config"]["train"]["speed_perturb"] == [0.9, 1.1]


def test_training_with_other_factors_than_the_packed_copies_is_refused(cli_run):
    from cnnrnn.cnnrnn.train import train

    with pytest.raises(ValueError, match="run the spectrograms and pack stages again"):
        train(cli_run, tiny(speed_perturb=[0.8, 1.2]), verbose=0)
