"""Issue 21, item 6 ("Is it speech?"): the speech check (:mod:`cnnrnn.speech`, Silero VAD through onnxruntime) and
what ``cnnrnn predict`` does with audio that is not speech (``no_speech``), on files, long-recording windows and a
labelled evaluation; and the messages for inputs of a type it cannot read. Generated signals are those of the
hostile cases (:func:`benchmarks.hostile_cases.speech.signal`); speech is the bundled sample's real EmoDB audio."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.hostile_cases.speech import signal
from cnnrnn import speech

SR = 16000


def write(path: Path, y, sr: int = SR) -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(y, np.float32), sr, subtype="PCM_16")
    return path


@pytest.fixture(scope="module")
def utterances(sample_dir):
    from cnnrnn.corpora import load_corpus

    return sorted(load_corpus("kemdy20", sample_dir)[0], key=lambda u: u.id)


# --------------------------------------------------------------------------- the detector
@pytest.mark.parametrize("kind", ["white", "dc", "tone", "music"])
def test_generated_signals_are_not_speech(kind):
    y = signal(kind)
    assert not speech.is_speech(y, SR)
    assert speech.speech_fraction(y, SR) < 0.1


def test_real_speech_is_speech_at_any_rate(sample_dir):
    from cnnrnn.audio import load_audio

    wavs = sorted((sample_dir / "wav").rglob("*.wav"))[::10]  # 11 of the 105, every speaker's session
    for wav in wavs:
        y, sr = load_audio(wav)
        assert speech.is_speech(y, sr), wav.name
    y, sr = load_audio(wavs[0], 44100)  # resampled to 16 kHz inside
    assert speech.is_speech(y, sr)


def test_frames_and_windows(real_waveform):
    y, sr = real_waveform
    p = speech.frame_probabilities(y, sr)
    assert p.dtype == np.float32 and p.shape == (-(-len(y) * speech.VAD_SR // sr // speech.FRAME_SAMPLES),)
    assert ((p >= 0) & (p <= 1)).all()
    assert speech.frame_probabilities(np.zeros(0, np.float32), sr).shape == (0,)
    # speech then 3 s of noise: windows of 1 s every 1 s say where the speech is
    noise = signal("white", 3.0, sr)
    joined = np.concatenate([y, noise])
    starts = np.arange(0, len(joined) / sr - 0.5, 1.0)
    seconds = speech.window_speech(joined, sr, starts, 1.0)
    assert seconds.shape == starts.shape and (seconds <= 1.0).all()
    assert seconds[0] > 0.5 and (seconds[-2:] == 0).all()
    frames = float((p >= speech.SPEECH_THRESHOLD).sum())
    assert speech.speech_seconds(y, sr) == pytest.approx(min(frames * 0.032, len(y) / sr))


def test_enough_speech_rule():
    assert speech.enough_speech(0.256, 2.0) and not speech.enough_speech(0.224, 2.0)
    assert speech.enough_speech(0.16, 0.3)  # a 0.3 s word: half of it is enough
    assert not speech.enough_speech(0.0, 0.01)
    np.testing.assert_array_equal(speech.enough_speech(np.array([0.3, 0.1]), np.array([2.0, 2.0])), [True, False])


def test_model_file_and_licence_ship_in_the_package():
    assert speech.MODEL_FILE.is_file() and (speech.MODEL_DIR / "LICENSE").read_text().startswith("MIT License")


# --------------------------------------------------------------------------- scoring
def test_no_speech_is_an_error_in_the_scores():
    from cnnrnn.evaluation import classification_metrics

    m = classification_metrics([0, 0, 1, 1, 2, 2], [0, -1, 1, 1, -1, -1], 3)
    assert m["n"] == 6 and m["accuracy"] == pytest.approx(0.5)
    assert m["ua"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # never raised by leaving the two out
    assert m["no_speech"] == 3 and m["no_speech_by_class"] == [1, 0, 2]
    assert "no_speech" not in classification_metrics([0, 1], [0, 1], 2)


# --------------------------------------------------------------------------- predict with the shipped model
def test_predict_marks_noise_and_windows_no_speech(tmp_path, utterances):
    """A folder of a noise file, a speech file and a long recording (speech, then noise): the noise file and the
    noise windows are no_speech (NaN probabilities, grey in the figure), the speech is classified."""
    from cnnrnn.audio import load_audio
    from cnnrnn.predict import predict

    folder = tmp_path / "in"
    write(folder / "noise.wav", signal("white"))
    shutil.copy(utterances[0].audio_path, folder / "speech.wav")
    y, _ = load_audio(utterances[1].audio_path, SR)
    write(folder / "long.wav", np.concatenate([y, signal("white", 4.0)]))
    result = predict("emodb", folder, tmp_path / "out", progress=False)
    rows = result["predictions"].set_index("id")
    assert rows.loc["noise", "predicted"] == "no_speech" and rows.loc["noise", "predicted_index"] == -1
    assert rows.loc[["noise"], [c for c in rows if c.startswith("p_")]].isna().all().all()
    assert rows.loc["speech", "predicted"] != "no_speech" and rows.loc["long", "predicted"] != "no_speech"
    assert rows.loc["long", "no_speech_windows"] >= 2 and result["no_speech"] == [str(folder / "noise.wav")]
    timeline = pd.read_csv(tmp_path / "out" / "timeline.csv")
    assert "speech" in timeline.columns
    tail = timeline[timeline["start_s"] >= len(y) / SR]  # windows wholly in the noise
    assert len(tail) and (tail["label"] == "no_speech").all() and tail["p_anger"].isna().all()
    assert (tmp_path / "out" / "timeline_long.png").is_file()
    saved = pd.read_csv(tmp_path / "out" / "predictions.csv").set_index("id")
    assert saved.loc["noise", "predicted"] == "no_speech" and np.isnan(saved.loc["noise", "confidence"])


def test_classify_anyway_gives_an_emotion(tmp_path):
    from cnnrnn.predict import predict

    wav = write(tmp_path / "dc.wav", signal("dc"))
    result = predict("emodb", wav, tmp_path / "out", progress=False, classify_anyway=True)
    assert result["predictions"]["predicted"].iloc[0] != "no_speech" and "no_speech" not in result


def test_labelled_evaluation_counts_no_speech_as_errors(tmp_path, utterances):
    """A CSV of path,label scored with the shipped model: the two generated files are no_speech, errors for
    their true class in every score (n, accuracy, UA), and metrics.json counts them."""
    from cnnrnn.evaluation import classification_metrics
    from cnnrnn.predict import predict

    rows = [(u.audio_path, u.emotion) for u in utterances[:4]]
    rows += [(str(write(tmp_path / "noise.wav", signal("white"))), "angry"),
             (str(write(tmp_path / "music.wav", signal("music"))), "sad")]
    csv = tmp_path / "test.csv"
    csv.write_text("path,label\n" + "".join(f"{p},{label}\n" for p, label in rows), encoding="utf-8")
    result = predict("emodb", csv, tmp_path / "out", progress=False)
    df = result["predictions"]
    assert len(df) == 6 and df["predicted"].tolist()[4:] == ["no_speech", "no_speech"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n"] == 6 and metrics["no_speech"] == 2 and sum(metrics["no_speech_by_class"]) == 2
    labels = metrics["labels"]
    expected = classification_metrics([labels.index(t) for t in df["true"]], df["predicted_index"], len(labels))
    assert metrics["ua"] == pytest.approx(expected["ua"]) and metrics["accuracy"] == pytest.approx(
        (df["true"] == df["predicted"]).sum() / 6)


def test_any_familys_labelled_result_is_marked_and_rescored(tmp_path, real_wav):
    """The dispatcher's marking (:func:`cnnrnn.predict.mark_no_speech`) on a labelled result as any family writes
    it (a functionals CSV, a DCNN filelist): the noise row becomes no_speech, an error, and the files are
    rewritten."""
    from cnnrnn.predict import SpeechCheck, mark_no_speech
    from cnnrnn.reports import write_report

    noise = write(tmp_path / "noise.wav", signal("white"))
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3]], np.float32)
    report = write_report(tmp_path / "out", proba, ["angry", "sad"], ["a", "b", "noise"], [0, 1, 0],
                          family="functionals", sources=[str(real_wav), str(real_wav), str(noise)],
                          extra={"runs": ["r"]})
    assert report["metrics"]["accuracy"] == 1.0  # the noise row was "right" before the check
    marked = mark_no_speech({**report, "skipped": {}}, SpeechCheck(progress=False))
    assert marked["no_speech"] == [str(noise)]
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["accuracy"] == pytest.approx(2 / 3) and saved["ua"] == pytest.approx(0.75)
    assert saved["no_speech"] == 1 and saved["no_speech_by_class"] == [1, 0] and saved["runs"] == ["r"]
    table = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert table["predicted"].tolist() == ["angry", "sad", "no_speech"] and table["predicted_index"].tolist()[2] == -1


# --------------------------------------------------------------------------- inputs it cannot read
def test_m4a_message_lists_the_audio_types_that_load(tmp_path):
    from cnnrnn.audio import AUDIO_EXTENSIONS
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.predict import collect_inputs

    m4a = tmp_path / "speech.m4a"
    m4a.write_bytes(b"\0" * 100)
    with pytest.raises(ValueError) as err:
        collect_inputs(m4a, (80, 200), load_config("best").spectrogram, progress=False)
    assert str(m4a) in str(err.value) and "ffmpeg" in str(err.value)
    assert all(ext in str(err.value) for ext in AUDIO_EXTENSIONS)


def test_folder_of_unusable_files_says_what_it_skipped(tmp_path, caplog):
    from cnnrnn import cli

    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.m4a").write_bytes(b"\0" * 100)
    (folder / "c.m4a").write_bytes(b"\0" * 100)
    os.symlink(tmp_path / "missing.wav", folder / "b.wav")
    caplog.set_level("ERROR")
    code = cli.main(["-q", "predict", "--model", "emodb", "--input", str(folder), "--out", str(tmp_path / "out")])
    lines = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert code == 2 and len(lines) == 1
    assert "2 file(s) of an unsupported type (.m4a 2)" in lines[0]
    assert "1 dangling link" in lines[0] and "b.wav" in lines[0]
