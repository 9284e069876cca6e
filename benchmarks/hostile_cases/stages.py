"""Hostile-input cases 7, 9, 12, 13 and 15 of issue 12: the stages' audio and their worker processes.

Audio: the bundled sample's real EmoDB recordings, plus the hostile clips each case writes. Case 15 runs a real
``python -m cnnrnn spectrograms`` process, since killing it is the point. No case trains a model.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._common import case, cli, error_text, files, outside, read_json, sample, sample_wavs, write_json, write_wav

N_REAL = 40  # real clips for the worker cases: 3 chunks of 16, so 2 workers really run


def _manifest(path: Path, files_) -> Path:
    rows = ["path,label,speaker"] + [f"{f},{'ang' if i % 2 else 'neu'},s{i % 3}" for i, f in enumerate(files_)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _report(out: Path) -> dict:
    """The ``spectrograms`` section of the run's spectrogram_report.json."""
    return read_json(out / "spectrogram_report.json", "spectrograms")


def _split(work: Path, files_) -> Path:
    """``split`` (tiny preset) of a manifest of ``files_`` into ``work/out``."""
    out = work / "out"
    cli("split", "--corpus", "manifest", "--root", _manifest(work / "corpus.csv", files_), "--out", out,
        "--config", "tiny")
    return out


@case(7, "A stage that skipped every file",
      "a corpus of only silent and 100-sample clips",
      "`spectrograms` exit 2 with the skip counts; `pack` refuses (no (0, H, W, 3) pickle)")
def case_7(tmp: Path) -> dict:
    """Every file unusable (silent, 100 samples): `spectrograms` exits non-zero with the skip counts, `pack`
    refuses the empty data pickle (no (0, H, W, 3) array)."""
    import numpy as np

    work = tmp / "work"
    bad = [write_wav(work / f"silent{i}.wav", np.zeros(16000), 16000) for i in range(2)]
    bad += [write_wav(work / f"short{i}.wav", np.full(100, 0.5), 16000) for i in range(2)]
    out = _split(work, bad)
    before = files(tmp)
    code, _, logs = cli("spectrograms", "--out", out, "--workers", "1")
    observed = [f"spectrograms exit {code}: {error_text(logs)}"]
    ok = code == 2 and "no usable audio left" in logs and "silent" in logs and "too_short" in logs
    code2, _, logs2 = cli("pack", "--out", out)
    final = out / "train_final.pickle"
    observed.append(f"pack exit {code2}: {error_text(logs2)}; train_final.pickle written: {final.exists()}")
    ok &= code2 == 2 and not final.exists()
    return {"observed": "; ".join(observed), "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


@case(9, "A 1-sample clip",
      "a 1-sample wav among 11 real clips",
      "counted skip `too_short` (CNNRNN, DCNN and baseline features); no flat-colour image")
def case_9(tmp: Path) -> dict:
    """A 1-sample clip among real ones: a counted skip (too_short), not a flat-colour image in the training data;
    the DCNN and baseline feature paths refuse it too (through the core)."""
    from cnnrnn.audio import AudioError
    from cnnrnn.baselines.config import BaselineConfig
    from cnnrnn.baselines.data import clip_features
    from cnnrnn.dcnn.config import FeatureConfig
    from cnnrnn.dcnn.data import audio_features

    work = tmp / "work"
    one = write_wav(work / "one_sample.wav", [0.5], 16000)
    out = _split(work, sample_wavs(11) + [one])
    before = files(tmp)
    code, _, _ = cli("spectrograms", "--out", out, "--workers", "1")
    rep = _report(out)
    failed = rep.get("failed", {})
    message = rep.get("errors", {}).get("one_sample", "")
    families = []
    for name, load in (("dcnn", lambda: audio_features(one, FeatureConfig())),
                       ("baseline", lambda: clip_features(one, BaselineConfig()))):
        try:
            load()
            families.append(f"{name}: accepted")
        except AudioError as exc:
            families.append(f"{name}: {exc.reason}")
    ok = (code == 0 and failed == {"too_short": ["one_sample"]}
          and not (out / "spectrograms" / "one_sample.png").exists()
          and families == ["dcnn: too_short", "baseline: too_short"])
    return {"observed": f"spectrograms exit {code}, skipped {failed}: {message!r}; {', '.join(families)}",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


@case(12, "A wav header claiming 1 Hz",
      "200,000 frames at 1 Hz (12.8 GB once resampled); `max_audio_seconds` 1 on real clips",
      "skipped from its header (`bad_sample_rate`) before decoding; clips over the limit skipped `too_long`")
def case_12(tmp: Path) -> dict:
    """A wav header of 200,000 frames at 1 Hz (12.8 GB once resampled to 16 kHz): skipped from its header
    (bad_sample_rate), before anything is decoded or resampled; with spectrogram.max_audio_seconds 1, every clip
    longer than 1 s is skipped (too_long) the same way."""
    import numpy as np

    work = tmp / "work"
    one_hz = write_wav(work / "one_hz.wav", 0.1 * np.random.default_rng(0).standard_normal(200_000), 1)
    out = _split(work, sample_wavs(11) + [one_hz])
    config = write_json(work / "short.json", {"extends": "tiny", "spectrogram": {"max_audio_seconds": 1.0}})
    before = files(tmp)
    started = time.perf_counter()
    code, _, _ = cli("spectrograms", "--out", out, "--workers", "1")
    seconds = time.perf_counter() - started
    rep = _report(out)
    failed = rep.get("failed", {})
    message = rep.get("errors", {}).get("one_hz", "")
    ok = code == 0 and failed == {"bad_sample_rate": ["one_hz"]}
    shutil.rmtree(out / "spectrograms", ignore_errors=True)
    code2, _, _ = cli("spectrograms", "--out", out, "--workers", "1", "--config", config)
    too_long = _report(out).get("failed", {}).get("too_long", [])
    ok &= code2 == 2 and len(too_long) == 11
    return {"observed": f"spectrograms exit {code} in {seconds:.1f} s, skipped {failed}: {message!r}; "
                        f"max_audio_seconds 1: exit {code2}, {len(too_long)} too_long skip(s)",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


@case(13, "A pool worker killed",
      "`CNNRNN_FAULT_KILL_WORKER=killer.wav`: its worker SIGKILLed (as by the OOM killer) in a 2-worker run",
      "broken chunk retried file by file; `killer` a counted skip (`worker_died`); the rerun is not blocked")
def case_13(tmp: Path) -> dict:
    """CNNRNN_FAULT_KILL_WORKER=killer.wav: its worker is SIGKILLed (as the OOM killer does) during a 2-worker
    `spectrograms`; the broken chunk's files are retried one by one, killer.wav is skipped (worker_died), the rest
    are rendered; a rerun that resumes with killer.wav alone is not blocked."""
    from cnnrnn.audio import FAULT_KILL_WORKER_ENV

    work = tmp / "work"
    real = sample_wavs(N_REAL)
    killer = work / "killer.wav"
    killer.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(real[0], killer)
    out = _split(work, real[1:] + [killer])
    before = files(tmp)
    saved = os.environ.get(FAULT_KILL_WORKER_ENV)
    os.environ[FAULT_KILL_WORKER_ENV] = "killer.wav"
    try:
        code, _, _ = cli("spectrograms", "--out", out, "--workers", "2")
        rep = _report(out)
        code2, _, _ = cli("spectrograms", "--out", out, "--workers", "2")
        rep2 = _report(out)
    finally:
        if saved is None:
            os.environ.pop(FAULT_KILL_WORKER_ENV, None)
        else:
            os.environ[FAULT_KILL_WORKER_ENV] = saved
    ok = (code == 0 and rep.get("failed") == {"worker_died": ["killer"]} and rep.get("n_written") == N_REAL - 1
          and code2 == 0 and rep2.get("failed") == {"worker_died": ["killer"]})
    return {"observed": f"spectrograms exit {code}: {rep.get('n_written')} written, skipped {rep.get('failed')} "
                        f"({rep.get('errors', {}).get('killer', '')!r}); rerun exit {code2}, "
                        f"{rep2.get('n_existing')} kept, skipped {rep2.get('failed')}",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


def child_pids(pid: int) -> list[int]:
    """The ids of the live processes whose parent is ``pid`` (Linux: reads /proc)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def is_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (exists and is not a zombie; Linux: reads /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


@case(15, "Workers outliving a killed parent",
      "SIGKILL of a running `python -m cnnrnn spectrograms --workers 2` (the bundled sample)",
      "both pool workers gone within 5 s")
def case_15(tmp: Path) -> dict:
    """SIGKILL of a running `python -m cnnrnn spectrograms --workers 2` (the sample's clips): both pool
    workers must be gone within a few seconds (Linux: reads /proc)."""
    import cnnrnn

    out = tmp / "out"
    code, _, _ = cli("split", "--corpus", "kemdy20", "--root", sample(), "--out", out, "--config", "tiny")
    before = files(tmp)
    repo = str(Path(cnnrnn.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-m", "cnnrnn", "-q", "spectrograms", "--out", str(out),
                             "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and len(workers) < 2:
            workers = child_pids(proc.pid)
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        killed = time.time()
        while time.time() < killed + 10 and any(is_alive(w) for w in workers):
            time.sleep(0.1)
        left = [w for w in workers if is_alive(w)]
        gone_after = time.time() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for w in workers:
            if is_alive(w):
                os.kill(w, signal.SIGKILL)
    ok = code == 0 and len(workers) >= 2 and not left and gone_after < 5
    return {"observed": f"{len(workers)} worker(s) seen; after SIGKILL of the parent, {len(left)} still alive "
                        f"after {gone_after:.1f} s",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out)}
