"""Issue 21, items 1-4 for the CNNRNN stages: output folders that are ours, runs that know their inputs, one lock per
writer, interrupts and leftovers. Real speech from the bundled sample, the tiny preset, no training (split,
spectrograms and pack take a few seconds)."""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import artifacts as A
from cnnrnn import cli
from cnnrnn.artifacts import load_json
from cnnrnn.outputs import MARKER, digest, file_digest, holder

N = 12


def run_cli(argv, caplog) -> tuple[int, str]:
    caplog.clear()
    code = cli.main(["-q", *map(str, argv)])
    return code, caplog.text


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def corpora(tmp_path_factory, sample_dir) -> dict[str, Path]:
    """Two manifests whose ids (file stems) are the same but whose audio and labels differ: ``b`` holds ``a``'s
    recordings shifted by one, with their labels."""
    from cnnrnn.corpora import load_corpus

    utterances, _ = load_corpus("kemdy20", sample_dir)
    picked = sorted(utterances, key=lambda u: u.id)[::len(utterances) // N][:N]
    root = tmp_path_factory.mktemp("corpora")
    out = {}
    for name, shift in (("a", 0), ("b", 1)):
        folder = root / name
        folder.mkdir()
        rows = []
        for i, u in enumerate(picked):
            src = picked[(i + shift) % N]
            shutil.copyfile(src.audio_path, folder / f"utt{i:02d}.wav")
            rows.append([f"utt{i:02d}.wav", src.emotion, src.speaker, src.session])
        with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["path", "label", "speaker", "session"])
            w.writerows(rows)
        out[name] = folder / "manifest.csv"
    return out


def stages(out: Path, manifest: Path, caplog, *, workers: int = 1) -> str:
    """split, spectrograms, pack with the tiny preset; returns their logs."""
    logs = ""
    for argv in (["split", "--corpus", "manifest", "--root", manifest], ["spectrograms", "--workers", workers],
                 ["pack"]):
        code, text = run_cli([*argv, "--out", out, "--config", "tiny"], caplog)
        assert code == 0, (argv, text)
        logs += text
    return logs


# --------------------------------------------------------------------------- 1. folders that are ours
def test_a_folder_of_user_files_is_refused_by_every_stage_and_nothing_is_touched(corpora, tmp_path, caplog):
    user = tmp_path / "mine"
    (user / "test").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes", encoding="utf-8")
    (user / "train.json").write_text('{"mine": true}', encoding="utf-8")
    (user / "test" / "predictions.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (user / ".hidden.tmp").write_text("looks like a temporary, is mine", encoding="utf-8")
    before = snapshot(user)
    for argv in (["run", "--corpus", "manifest", "--root", corpora["a"]],
                 ["split", "--corpus", "manifest", "--root", corpora["a"]], ["spectrograms"], ["pack"], ["train"]):
        code, text = run_cli([*argv, "--out", user, "--config", "tiny"], caplog)
        assert code == 2, argv
        errors = [line for line in text.splitlines() if line.startswith("ERROR")]
        assert len(errors) == 1 and "is not empty and is not a cnnrnn run folder" in errors[0], (argv, text)
        assert "notes.txt" in errors[0] and "Traceback" not in text
        assert snapshot(user) == before, argv  # nothing written, nothing deleted (the .tmp file included)


def test_another_kind_of_output_folder_is_refused(corpora, tmp_path, caplog):
    other = tmp_path / "preds"
    (other / ".cnnrnn").mkdir(parents=True)
    (other / MARKER).write_text(json.dumps({"kind": "predictions"}), encoding="utf-8")
    code, text = run_cli(["split", "--corpus", "manifest", "--root", corpora["a"], "--out", other, "--config", "tiny"],
                         caplog)
    assert code == 2 and "is the output folder of predictions, not of a cnnrnn run" in text
    assert sorted(p.name for p in other.rglob("*")) == [".cnnrnn", "folder.json"]


def test_an_empty_folder_and_a_run_without_marker_are_taken(corpora, tmp_path, caplog):
    out = tmp_path / "empty"
    out.mkdir()
    (out / ".DS_Store").write_bytes(b"\0")  # OS litter does not make a folder "not empty"
    stages(out, corpora["a"], caplog)
    assert json.loads((out / MARKER).read_text())["kind"] == "cnnrnn run"
    (out / MARKER).unlink()  # a run written before markers existed: recognised by its files
    code, text = run_cli(["pack", "--out", out, "--config", "tiny"], caplog)
    assert code == 0, text
    assert (out / MARKER).is_file()


# --------------------------------------------------------------------------- 2. a run knows its inputs
def test_a_rerun_with_other_audio_and_labels_under_the_same_ids_reuses_nothing_of_theirs(corpora, tmp_path, caplog):
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.data import load_packed
    from cnnrnn.cnnrnn.train import training_inputs

    cfg = load_config("tiny")
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    stages(out, corpora["a"], caplog)
    pngs_a = {p.name: p.read_bytes() for p in (out / "spectrograms").glob("*.png")}
    labels = A.load_labels(out / A.LABELS_FILE)
    inputs_a = training_inputs(out, load_packed(out, "train"), labels, cfg)

    caplog.set_level("WARNING")
    logs = stages(out, corpora["b"], caplog)  # the same ids, other audio and labels, into the same folder
    assert "were not made from the audio their id names now" in logs
    stages(fresh, corpora["b"], caplog)
    pngs_b = {p.name: p.read_bytes() for p in (out / "spectrograms").glob("*.png")}
    assert pngs_b == {p.name: p.read_bytes() for p in (fresh / "spectrograms").glob("*.png")}
    assert sum(pngs_a[n] != pngs_b[n] for n in pngs_b) >= N - 2  # (two recordings may share a speaker+text)
    for part in ("train", "test"):
        mine, theirs = load_packed(out, part), load_packed(fresh, part)
        assert list(mine["id"]) == list(theirs["id"]) and list(mine["emotion"]) == list(theirs["emotion"])
        assert np.array_equal(np.asarray(mine["path"]), np.asarray(theirs["path"]))
    inputs_b = training_inputs(out, load_packed(out, "train"), labels, cfg)
    assert inputs_b["sha1"] != inputs_a["sha1"] and inputs_b["sources"]  # so no finished fold is resumed
    assert inputs_b["sha1"] == training_inputs(fresh, load_packed(fresh, "train"), labels, cfg)["sha1"]
    recorded = json.loads((out / ".cnnrnn" / "inputs.json").read_text())
    assert recorded["split"]["sha1"] == json.loads((fresh / ".cnnrnn" / "inputs.json").read_text())["split"]["sha1"]


def test_fingerprints_are_of_content_not_paths_or_times(tmp_path, real_wav):
    a, b = tmp_path / "a.wav", tmp_path / "sub" / "b.wav"
    b.parent.mkdir()
    shutil.copyfile(real_wav, a)
    shutil.copyfile(real_wav, b)
    os.utime(b, (1, 1))
    assert file_digest(a) == file_digest(b)
    data = bytearray(a.read_bytes())
    data[-1] ^= 1
    b.write_bytes(bytes(data))
    assert file_digest(a) != file_digest(b)
    assert digest({"x": 1, "y": [1, 2]}) == digest({"y": [1, 2], "x": 1})


# --------------------------------------------------------------------------- 3. one lock per writer
HOLD = """
import sys, time
from cnnrnn.outputs import stage_lock
with stage_lock(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(120)
"""


def hold_lock(folder: Path, stage: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), stage], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_writer_of_a_stage_is_refused_and_a_dead_holders_lock_is_taken_over(corpora, tmp_path, caplog):
    out = tmp_path / "run"
    stages(out, corpora["a"], caplog)
    before = snapshot(out)
    proc = hold_lock(out, "spectrograms")
    try:
        info = holder(out, "spectrograms")
        assert info["pid"] == proc.pid
        for stage in ("spectrograms", "pack"):  # pack writes the packed arrays too
            code, text = run_cli([stage, "--out", out, "--config", "tiny"], caplog)
            assert code == 2, stage
            assert f"is in use by host {info['host']}, PID {proc.pid} (started" in text and "Traceback" not in text
        code, text = run_cli(["split", "--corpus", "manifest", "--root", corpora["a"], "--out", out, "--config",
                              "tiny"], caplog)  # another stage: not blocked
        assert code == 0, text
    finally:
        proc.kill()  # SIGKILL: the lock's JSON stays behind, the OS lock is released
        proc.wait()
    assert holder(out, "spectrograms") is None
    caplog.set_level("INFO")
    code, text = run_cli(["spectrograms", "--out", out, "--config", "tiny"], caplog)
    assert code == 0 and f"took over the spectrograms lock of PID {proc.pid}" in text
    assert {k for k in snapshot(out) if ".cnnrnn" not in k} >= {k for k in before if ".cnnrnn" not in k}
    assert not list((out / ".cnnrnn" / "locks").glob("*.json"))  # released: nobody holds a lock now


def test_a_probe_of_the_lock_is_not_taken_for_its_writer(tmp_path):
    """holder() takes a stage's lock for an instant: a writer (or another probe) meeting it waits, instead of
    reporting "in use by host ?, PID ?" (two multi-worker processes probing at once did)."""
    import threading

    from filelock import FileLock

    from cnnrnn.outputs import stage_lock

    with stage_lock(tmp_path, "train"):  # makes the lock file
        pass
    probe = FileLock(str(tmp_path / ".cnnrnn" / "locks" / "train.lock"), thread_local=False)
    probe.acquire()
    threading.Timer(0.3, probe.release).start()  # a probe that says nobody's name, released soon
    assert holder(tmp_path, "train") is None
    probe.acquire()
    threading.Timer(0.3, probe.release).start()
    with stage_lock(tmp_path, "train") as lock_file:  # taken once the probe lets go, not refused
        assert load_json(lock_file.with_suffix(".json"))["pid"] == os.getpid()


def test_predict_on_a_run_being_trained_is_refused(corpora, tmp_path, caplog, real_wav):
    out = tmp_path / "run"
    stages(out, corpora["a"], caplog)
    proc = hold_lock(out, "train")
    try:
        code, text = run_cli(["predict", "--model", out, "--input", real_wav, "--out", tmp_path / "preds"], caplog)
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and f"cannot predict with {out}: {out} is in use by host" in text and f"PID {proc.pid}" in text
    assert not (tmp_path / "preds").exists()


def test_a_second_predict_into_the_same_folder_is_refused(tmp_path, caplog, real_wav):
    preds = tmp_path / "preds"
    code, text = run_cli(["predict", "--model", "emodb", "--input", real_wav, "--out", preds], caplog)
    assert code == 0, text
    before = snapshot(preds)
    proc = hold_lock(preds, "predict")
    try:
        code, text = run_cli(["predict", "--model", "emodb", "--input", real_wav, "--out", preds], caplog)
    finally:
        proc.kill()
        proc.wait()
    assert code == 2 and "is in use by host" in text and f"PID {proc.pid}" in text
    assert {k: v for k, v in snapshot(preds).items() if ".cnnrnn" not in k} == \
        {k: v for k, v in before.items() if ".cnnrnn" not in k}


# --------------------------------------------------------------------------- 4. leftovers and interrupts
def test_leftovers_of_a_killed_pack_and_a_full_disk_are_removed_and_counted(corpora, tmp_path, caplog):
    out = tmp_path / "run"
    stages(out, corpora["a"], caplog)
    (out / ".train_images.npy.deadbeef.tmp").write_bytes(b"\0" * 2 ** 20)  # a SIGKILLed pack's
    (out / ".test_final.pickle.1a2b3c4d.tmp").write_bytes(b"\0" * 1000)
    (out / "spectrograms" / ".utt00.png.k2j3.tmp").write_bytes(b"\0")  # a killed render's
    (out / ".user_notes.tmp").write_text("not the stage's", encoding="utf-8")
    from cnnrnn.cnnrnn.data import pack, spectrograms

    assert pack(out, "tiny", progress=False)["leftovers_removed"] == 2
    assert not (out / ".train_images.npy.deadbeef.tmp").exists() and (out / ".user_notes.tmp").is_file()
    assert spectrograms(out, "tiny", progress=False)["leftovers_removed"] == 1


def test_ctrl_c_during_spectrograms_ends_with_one_line_no_temporaries_and_a_rerun_resumes(sample_dir, tmp_path):
    wavs = sorted(sample_dir.rglob("*.wav"))
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    with (corpus / "manifest.csv").open("w", newline="", encoding="utf-8") as f:  # 400 files: seconds of work
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "session"])
        for i in range(400):
            (corpus / f"u{i:03d}.wav").symlink_to(wavs[i % len(wavs)])
            w.writerow([f"u{i:03d}.wav", ("anger", "happiness", "sadness")[i % 3], f"s{i % 4}", f"s{i % 4}"])
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    base = [sys.executable, "-m", "cnnrnn", "-q"]
    subprocess.run([*base, "split", "--corpus", "manifest", "--root", str(corpus / "manifest.csv"), "--out", str(out)],
                   env=env, check=True, capture_output=True)
    proc = subprocess.Popen([*base, "spectrograms", "--out", str(out), "--workers", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 60
    while not list((out / "spectrograms").glob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does: the whole process group
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, (stdout, stderr)
    assert stderr.strip().splitlines() == [cli.INTERRUPTED], stderr
    assert not [p for p in out.rglob("*") if A.is_temporary(p)]
    assert not (out / ".cnnrnn" / "locks" / "spectrograms.json").exists()
    rerun = subprocess.run([*base, "spectrograms", "--out", str(out), "--workers", "2"], env=env,
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    report = json.loads(rerun.stdout)
    assert report["train"]["n"] + report["test"]["n"] == 400  # none lost
    assert report["spectrograms"]["n_existing"] > 0 and report["spectrograms"]["n_written"] > 0  # resumed
