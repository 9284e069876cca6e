"""Long-recording prediction (``cnnrnn predict --window/--hop``): windows of the model's clip length, silence
marked, ``timeline.csv``, one timeline figure per file and one row per file in ``predictions.csv``.

Real audio: the shipped ``emodb`` model (a 2 s CNNRNN) on the 80 s recording of ../shared/data/long-audio/ (skipped
when absent) and on a 10 s recording made of bundled sample clips with pauses between them; a tiny baseline CNN
(1 s clips) trained once on the bundled sample for a second family.
"""
import time

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from cnnrnn.audio import SILENCE_MIN_VOICED, Clip, load_audio, silence_mask, voiced_fraction, windows
from cnnrnn.cli import main
from cnnrnn.cnnrnn.pipeline import SAMPLE_DIR
from cnnrnn.corpora import LABEL_ORDERS
from cnnrnn.predict import SILENCE_LABEL, TIMELINE_FILE, predict
from cnnrnn.speech import NO_SPEECH
from conftest import SHARED_DATA, write_wav

EMODB_LABELS = LABEL_ORDERS["emodb"]
P_EMODB = [f"p_{lab}" for lab in EMODB_LABELS]


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """``pauses.wav``: three 2 s sample clips with 2 s pauses of faint noise (-80 dBFS) between them (10 s);
    ``clip.wav``: a 2 s sample clip (one model clip); ``second.wav``: the first second of another clip."""
    root = tmp_path_factory.mktemp("recordings")
    wavs = sorted((SAMPLE_DIR / "wav" / "Session01").glob("*.wav"))
    clips = [sf.read(w, dtype="float32")[0] for w in wavs[:4]]
    sr = 16000
    pause = np.random.default_rng(0).normal(0, 1e-4, 2 * sr).astype(np.float32)
    y = np.concatenate([clips[0], pause, clips[1], pause, clips[2]])
    folder = root / "mixed"
    return {"pauses": write_wav(folder / "pauses.wav", y, sr), "clip": write_wav(folder / "clip.wav", clips[3], sr),
            "second": write_wav(root / "second.wav", clips[0][:sr], sr), "folder": folder, "root": root}


# --------------------------------------------------------------------------- the core helpers
def test_windows_cover_the_waveform_to_its_end_and_pad_only_past_it():
    sr = 100
    y = np.arange(1, 451, dtype=np.float32)  # 4.5 s
    starts, frames = windows(y, sr, 2.0, 1.0)
    assert starts.tolist() == [0.0, 1.0, 2.0, 3.0] and frames.shape == (4, 200)
    np.testing.assert_array_equal(frames[1], y[100:300])
    np.testing.assert_array_equal(frames[3][:150], y[300:])  # the last window reaches the end ...
    assert not frames[3][150:].any()  # ... zero-padded past it
    one_start, one = windows(y[:50], sr, 2.0, 1.0)  # shorter than a window: one window, zero-padded
    assert one_start.tolist() == [0.0] and one.shape == (1, 200) and not one[0, 50:].any()
    sparse, _ = windows(y, sr, 1.0, 3.0)  # hop over the window: gaps, and no window starts past the end
    assert sparse.tolist() == [0.0, 3.0]
    for window, hop in ((2.0, 0.0), (2.0, -1.0), (0.0, 1.0)):
        with pytest.raises(ValueError, match="hop|window"):
            windows(y, sr, window, hop)


def test_silence_is_judged_against_the_whole_recording_and_a_clip_reads_like_a_file():
    sr = 16000
    rng = np.random.default_rng(1)
    y = np.concatenate([rng.normal(0, 0.1, sr), rng.normal(0, 1e-4, 2 * sr), rng.normal(0, 0.1, sr)])
    starts = np.array([0.0, 1.0, 2.0, 3.0])
    fraction = voiced_fraction(y, sr, starts, 1.0)
    assert fraction[0] > 0.9 and fraction[3] > 0.9 and fraction[1] < 0.1 and fraction[2] < 0.1
    assert silence_mask(y, sr, starts, 1.0).tolist() == [False, True, True, False]
    assert SILENCE_MIN_VOICED == 0.25
    clip = Clip("x@1.000", "x.wav", y[sr:2 * sr], sr, 1.0)
    z, rate = load_audio(clip, 8000)  # resampled as a file would be
    assert rate == 8000 and z.shape == (8000,) and str(clip) == "x@1.000"


# --------------------------------------------------------------------------- the shipped CNNRNN model
def test_the_80_second_recording_gives_a_timeline_to_its_end(tmp_path, capsys):
    long_dir = SHARED_DATA / "long-audio"
    if not long_dir.is_dir():
        pytest.skip("../shared/data/long-audio is not present on this machine")
    wav = sorted(long_dir.glob("*.wav"))[0]
    duration = sf.info(str(wav)).duration
    started = time.perf_counter()
    assert main(["-q", "predict", "--model", "emodb", "--input", str(wav), "--out", str(tmp_path)]) == 0
    seconds = time.perf_counter() - started
    out = capsys.readouterr().out
    assert "longer than the model's 2 s clip" in out and "windows of 2 s every 1 s" in out
    timeline = pd.read_csv(tmp_path / TIMELINE_FILE)
    n = int(np.ceil((duration - 2.0) / 1.0)) + 1
    assert len(timeline) == n and set(timeline["file"]) == {str(wav)}
    np.testing.assert_allclose(timeline["start_s"], np.arange(n) * 1.0)  # windows at the hop
    assert timeline["start_s"].iloc[0] == 0 and timeline["end_s"].iloc[-1] == pytest.approx(duration, abs=1e-4)
    assert (timeline["end_s"].iloc[:-1] - timeline["start_s"].iloc[:-1] == 2.0).all()
    silent = timeline["label"].isin([SILENCE_LABEL, NO_SPEECH])  # not classified: silence, or sound without speech
    assert timeline.loc[silent, P_EMODB].isna().all().all()
    assert set(timeline.loc[~silent, "label"]) <= set(EMODB_LABELS) and (~silent).sum() > n // 2
    np.testing.assert_allclose(timeline.loc[~silent, P_EMODB].sum(axis=1), 1.0, atol=1e-4)
    rows = pd.read_csv(tmp_path / "predictions.csv")
    assert len(rows) == 1 and rows["id"][0] == wav.stem and rows["windows"][0] == (~silent).sum()
    np.testing.assert_allclose(rows[P_EMODB].to_numpy()[0], timeline.loc[~silent, P_EMODB].mean(), atol=1e-6)
    figure = tmp_path / f"timeline_{wav.stem}.png"
    assert figure.is_file() and figure.stat().st_size > 20_000
    print(f"\n{duration:.1f} s recording, {n} windows: {seconds:.1f} s wall (in-process, model load included)")


def test_pauses_are_marked_and_a_one_clip_file_is_predicted_as_before(recordings, tmp_path):
    result = predict("emodb", recordings["folder"], tmp_path / "both", progress=False)
    timeline = result["timeline"].set_index("start_s")
    pauses = str(recordings["pauses"])
    assert set(result["timeline"]["file"]) == {pauses}  # the 2 s file is one clip: no windows
    assert timeline.index.tolist() == [float(s) for s in range(9)] and timeline["end_s"].iloc[-1] == 10.0
    assert timeline.loc[[2.0, 6.0], "label"].tolist() == [SILENCE_LABEL] * 2  # the pauses
    assert timeline.loc[[2.0, 6.0], P_EMODB].isna().all().all()
    spoken = [0.0, 4.0, 8.0]
    assert set(timeline.loc[spoken, "label"]) <= set(EMODB_LABELS)
    rows = result["predictions"].set_index("id")
    classified = timeline["label"] != SILENCE_LABEL
    assert rows.loc["pauses", "windows"] == classified.sum() and rows.loc["pauses", "silent_windows"] >= 2
    np.testing.assert_allclose(rows.loc["pauses", P_EMODB].to_numpy(float),
                               timeline.loc[classified, P_EMODB].mean().to_numpy(), atol=1e-6)
    assert rows.loc["clip", "windows"] == 1
    alone = predict("emodb", recordings["clip"], tmp_path / "alone", progress=False)  # today's path, untouched
    assert "timeline" not in alone and not (tmp_path / "alone" / TIMELINE_FILE).exists()
    np.testing.assert_allclose(rows.loc["clip", P_EMODB].to_numpy(float),
                               alone["predictions"][P_EMODB].to_numpy(float)[0], atol=1e-5)
    assert (tmp_path / "both" / "timeline_pauses.png").is_file()
    assert any("pauses.wav: 10.0 s is longer than the model's 2 s clip" in n for n in result["notes"])


def test_a_window_longer_than_the_file_is_one_padded_window(recordings, tmp_path):
    second = recordings["second"]  # 1 s: the model pads it to its 2 s clip with zeros, as in training
    windowed = predict("emodb", second, tmp_path / "w", window=3.0, progress=False)
    timeline = windowed["timeline"]
    assert len(timeline) == 1 and timeline["start_s"][0] == 0.0 and timeline["end_s"][0] == 1.0
    plain = predict("emodb", second, tmp_path / "p", progress=False)
    np.testing.assert_allclose(timeline[P_EMODB].to_numpy(float)[0],
                               plain["predictions"][P_EMODB].to_numpy(float)[0], atol=1e-5)


@pytest.mark.parametrize("args, message", [
    (["--hop", "0"], "--hop must be a positive"),
    (["--hop", "-1"], "--hop must be a positive"),
    (["--window", "0"], "--window must be a positive"),
    (["--window", "2", "--input-is-image"], "cut audio files"),
])
def test_bad_window_settings_are_one_line_errors(recordings, tmp_path, caplog, args, message):
    import cv2

    source = recordings["pauses"]
    if "--input-is-image" in args:
        args = args[:-1]
        source = tmp_path / "spectrogram.png"
        cv2.imwrite(str(source), np.zeros((64, 128, 3), np.uint8))
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", "emodb", "--input", str(source), "--out", str(out), *args]) == 2
    assert message in caplog.text
    assert not (out / TIMELINE_FILE).exists()


# --------------------------------------------------------------------------- another family
def test_a_baseline_cnn_predicts_its_1_second_windows(recordings, tmp_path_factory):
    from cnnrnn.baselines.train import train

    run = tmp_path_factory.mktemp("baseline") / "run"
    train("kemdy20", SAMPLE_DIR, run, config="tiny_cnn", progress=False, verbose=0)
    out = run.parent / "out"
    assert main(["-q", "predict", "--model", str(run), "--input", str(recordings["pauses"]), "--out", str(out)]) == 0
    timeline = pd.read_csv(out / TIMELINE_FILE)
    labels = [c[2:] for c in timeline.columns if c.startswith("p_")]
    np.testing.assert_allclose(timeline["start_s"], np.arange(19) * 0.5)  # 1 s windows (its clip) every 0.5 s
    assert timeline["end_s"].iloc[-1] == 10.0
    silent = timeline["label"] == SILENCE_LABEL
    assert timeline.loc[silent, "start_s"].between(2.0, 3.0).any() and timeline.loc[silent, "start_s"].between(
        6.0, 7.0).any()
    assert set(timeline.loc[~silent, "label"]) <= set(labels)
    rows = pd.read_csv(out / "predictions.csv")
    assert len(rows) == 1 and rows["windows"][0] == (~silent).sum()
    p = [f"p_{lab}" for lab in labels]
    np.testing.assert_allclose(rows[p].to_numpy()[0], timeline.loc[~silent, p].mean(), atol=1e-6)
    assert (out / "timeline_pauses.png").is_file()
