"""Issue 12, hostile input at the CNNRNN stages (cases 7, 9, 12, 13, 15): nothing usable left, clips shorter than
one STFT frame, absurd or huge wav headers, a worker killed as the out-of-memory killer kills, and the workers of a
killed ``cnnrnn spectrograms``. Every case but 15 goes through ``cnnrnn.cli.main`` in-process, on real audio from
the bundled sample, and checks the exit code, the message and that nothing is written outside ``--out``; case 15
kills a real ``python -m cnnrnn spectrograms`` process."""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.hostile_cases.stages import child_pids, is_alive  # the benchmark's /proc readers
import pytest

from cnnrnn import cli
from cnnrnn.audio import FAULT_KILL_WORKER_ENV, WORKER_DIED, AudioError, ClipTooShortError, load_audio
from conftest import REPO, write_wav

N_REAL = 40  # real clips in a corpus: enough for 3 chunks of 16, so 2 workers really run


@pytest.fixture(scope="module")
def clips(tmp_path_factory, sample_dir):
    """Real EmoDB clips of the sample, and hostile ones: 1 sample, a 1 Hz header of 200,000 frames, silence, 100
    samples, and a real clip named ``killer.wav`` (the fault-injection target)."""
    folder = tmp_path_factory.mktemp("clips")
    real = sorted((sample_dir / "wav").rglob("*.wav"))[:N_REAL]
    rng = np.random.default_rng(0)
    return {
        "real": real,
        "one_sample": write_wav(folder / "one_sample.wav", np.array([0.5], np.float32), 16000),
        "one_hz": write_wav(folder / "one_hz.wav", (0.1 * rng.standard_normal(200_000)).astype(np.float32), 1),
        "silent": [write_wav(folder / f"silent{i}.wav", np.zeros(16000, np.float32), 16000) for i in range(2)],
        "short": [write_wav(folder / f"short{i}.wav", np.full(100, 0.5, np.float32), 16000) for i in range(2)],
        "killer": Path(shutil.copy(real[0], folder / "killer.wav")),
    }


def manifest(path: Path, files) -> Path:
    """A ``--corpus manifest`` CSV of ``files``, labels alternating ``ang``/``neu``, three speakers."""
    rows = ["path,label,speaker"] + [f"{f},{'ang' if i % 2 else 'neu'},s{i % 3}" for i, f in enumerate(files)]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def files_under(folder: Path) -> set[Path]:
    return set(folder.rglob("*"))


def written_outside(tmp_path: Path, before: set[Path], out: Path) -> list[str]:
    return sorted(str(p) for p in files_under(tmp_path) - before if p != out and out not in p.parents)


def run(*argv) -> int:
    return cli.main(["-q", *map(str, argv)])


def split(tmp_path: Path, files, config: str = "tiny") -> Path:
    out = tmp_path / "run"
    assert run("split", "--corpus", "manifest", "--root", manifest(tmp_path / "corpus.csv", files),
               "--out", out, "--config", config) == 0
    return out


def report(out: Path) -> dict:
    return json.loads((out / "spectrogram_report.json").read_text(encoding="utf-8"))


def test_07_nothing_usable_left_exits_non_zero_with_the_skip_counts(tmp_path, clips, caplog):
    """Every file skipped: `spectrograms` exits 2 naming the split and the counts by reason; `pack` refuses the
    empty data pickle instead of writing a (0, H, W, 3) array."""
    out = split(tmp_path, clips["silent"] + clips["short"])
    before = files_under(tmp_path)
    with caplog.at_level(logging.ERROR, logger="cnnrnn"):
        assert run("spectrograms", "--out", out, "--workers", "1") == 2
    message = caplog.records[-1].getMessage()
    assert "no usable audio left in the train split" in message and "test split" in message
    assert "silent" in message and "too_short" in message and "spectrogram_report.json" in message
    rep = report(out)
    assert rep["train"]["n"] == 0 and rep["test"]["n"] == 0 and rep["spectrograms"]["n_failed"] == 4
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="cnnrnn"):
        assert run("pack", "--out", out) == 2
    assert "holds no utterance" in caplog.records[-1].getMessage()
    assert not (out / "train_final.pickle").exists() and not (out / "test_final.pickle").exists()
    assert written_outside(tmp_path, before, out) == []


def test_09_clip_shorter_than_one_stft_frame_is_a_counted_skip_in_every_family(tmp_path, clips):
    """A 1-sample clip is skipped (too_short) by the CNNRNN stage, and refused by the DCNN, baseline and array
    paths, all through the core (cnnrnn.features.load_clip / cnnrnn.audio.check_min_samples)."""
    from cnnrnn.baselines.config import BaselineConfig
    from cnnrnn.baselines.data import clip_features
    from cnnrnn.dcnn.config import FeatureConfig
    from cnnrnn.dcnn.data import audio_features, waveform_features
    from cnnrnn.features import SpectrogramConfig, audio_to_image, waveform_to_image
    from cnnrnn.artifacts import load_pickle

    out = split(tmp_path, clips["real"][:11] + [clips["one_sample"]])
    before = files_under(tmp_path)
    assert run("spectrograms", "--out", out, "--workers", "1") == 0
    rep = report(out)
    assert rep["spectrograms"]["failed"] == {"too_short": ["one_sample"]}
    assert "1 sample(s) at 16000 Hz is shorter than one STFT frame (n_fft = 512 samples)" in \
        rep["spectrograms"]["errors"]["one_sample"]
    assert rep["train"]["n"] + rep["test"]["n"] == 11
    ids = [i for part in ("train", "test") for i in load_pickle(out / f"data_{part}.pickle")["id"]]
    assert "one_sample" not in ids and not (out / "spectrograms" / "one_sample.png").exists()
    assert written_outside(tmp_path, before, out) == []

    one = clips["one_sample"]
    for load in (lambda: audio_to_image(one, SpectrogramConfig()),
                 lambda: waveform_to_image(np.array([0.5], np.float32), SpectrogramConfig()),
                 lambda: audio_features(one, FeatureConfig()),
                 lambda: waveform_features(np.full(10, 0.5, np.float32), FeatureConfig()),
                 lambda: clip_features(one, BaselineConfig())):
        with pytest.raises(ClipTooShortError, match="shorter than one STFT frame") as info:
            load()
        assert info.value.reason == "too_short"


def test_12_absurd_or_huge_headers_are_skipped_before_decoding(tmp_path, clips, caplog, monkeypatch):
    """A 1 Hz header is a counted skip (bad_sample_rate); a file over spectrogram.max_audio_seconds is skipped
    (too_long) from its header, before it is decoded; an impossible max_audio_seconds is refused at load time."""
    out = split(tmp_path, clips["real"][:11] + [clips["one_hz"]])
    config = tmp_path / "short.json"
    config.write_text(json.dumps({"extends": "tiny", "spectrogram": {"max_audio_seconds": 1.0}}), encoding="utf-8")
    before = files_under(tmp_path)
    assert run("spectrograms", "--out", out, "--workers", "1") == 0
    rep = report(out)
    assert rep["spectrograms"]["failed"] == {"bad_sample_rate": ["one_hz"]}
    assert "sample rate 1 Hz is outside 1000-768000 Hz" in rep["spectrograms"]["errors"]["one_hz"]

    shutil.rmtree(out / "spectrograms")
    assert run("spectrograms", "--out", out, "--workers", "1", "--config", config) == 2  # every real clip > 1 s
    rep = report(out)
    assert rep["spectrograms"]["failed"]["too_long"] and rep["spectrograms"]["failed"]["bad_sample_rate"]
    assert any("longer than max_audio_seconds = 1 s" in m for m in rep["spectrograms"]["errors"].values())
    assert written_outside(tmp_path, before, out) == []

    import soundfile

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded a file its header should have refused")

    monkeypatch.setattr(soundfile, "read", no_decoding)
    for path, reason in ((clips["one_hz"], "bad_sample_rate"), (clips["real"][0], "too_long")):
        with pytest.raises(AudioError) as info:
            load_audio(path, 16000, max_seconds=1.0)
        assert info.value.reason == reason

    config.write_text(json.dumps({"extends": "tiny", "spectrogram": {"max_audio_seconds": 0}}), encoding="utf-8")
    with caplog.at_level(logging.ERROR, logger="cnnrnn"):
        assert run("spectrograms", "--out", out, "--config", config) == 2
    assert "spectrogram.max_audio_seconds must be in (0, inf), got 0" in caplog.records[-1].getMessage()


def test_13_a_file_that_kills_its_worker_is_skipped_and_the_rest_go_on(tmp_path, clips, monkeypatch):
    """CNNRNN_FAULT_KILL_WORKER=killer.wav: the worker rendering it dies (SIGKILL, as the OOM killer kills); the
    files of the broken chunk are retried one by one, killer.wav is skipped (worker_died), every other file is
    rendered, and a rerun that resumes with killer.wav alone is not blocked by it."""
    out = split(tmp_path, clips["real"][1:N_REAL] + [clips["killer"]])
    before = files_under(tmp_path)
    monkeypatch.setenv(FAULT_KILL_WORKER_ENV, "killer.wav")
    assert run("spectrograms", "--out", out, "--workers", "2") == 0
    rep = report(out)
    assert rep["spectrograms"]["failed"] == {WORKER_DIED: ["killer"]}
    assert "killer.wav: the worker process died while processing it alone" in rep["spectrograms"]["errors"]["killer"]
    assert rep["spectrograms"]["n_written"] == N_REAL - 1
    assert rep["train"]["n"] + rep["test"]["n"] == N_REAL - 1

    assert run("spectrograms", "--out", out, "--workers", "2") == 0  # the rerun: killer.wav is the only file left
    rep = report(out)
    assert rep["spectrograms"]["n_existing"] == N_REAL - 1
    assert rep["spectrograms"]["failed"] == {WORKER_DIED: ["killer"]}
    assert written_outside(tmp_path, before, out) == []


def test_13_functionals_child_survives_a_killed_worker(clips, monkeypatch):
    """The functionals' openSMILE child (used once TensorFlow is loaded) goes through the same pool helper: a file
    that kills its worker is skipped (worker_died) and the others keep their features."""
    from cnnrnn.functionals.config import FunctionalsConfig
    from cnnrnn.functionals.data import _extract_in_child

    monkeypatch.setenv(FAULT_KILL_WORKER_ENV, "killer.wav")
    paths = [clips["real"][1], clips["real"][2], clips["killer"]]  # killer.wav last: no fresh child after it
    kept, X, skipped, _ = _extract_in_child(paths, FunctionalsConfig(feature_set="eGeMAPSv02"), None)
    assert kept == [0, 1] and X.shape[0] == 2 and np.isfinite(X).all()
    assert skipped == {WORKER_DIED: [str(clips["killer"])]}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_15_workers_exit_when_the_main_process_is_killed(tmp_path, sample_dir):
    """SIGKILL of a running `python -m cnnrnn spectrograms --workers 2`: both pool workers are gone within 5 s."""
    out = tmp_path / "run"
    assert run("split", "--corpus", "kemdy20", "--root", sample_dir, "--out", out, "--config", "tiny") == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "cnnrnn", "-q", "spectrograms", "--out", str(out),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            workers = child_pids(proc.pid)
            if len(workers) >= 2:
                break
            time.sleep(0.1)
        assert len(workers) >= 2, "the pool workers never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(is_alive(w) for w in workers):
            time.sleep(0.1)
        assert not [w for w in workers if is_alive(w)], "pool workers outlived their killed parent"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if is_alive(w):
                os.kill(w, signal.SIGKILL)
