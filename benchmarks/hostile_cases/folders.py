"""Hostile cases 19-27 of issue 21: output folders that are ours, runs that know their inputs, one lock per writer,
interrupts and leftovers, for the CNNRNN stages.

Audio: the bundled sample's real EmoDB recordings (symbolic links to them where a case needs many files, so that a
stage runs for seconds). Cases 21 and 25 train the smallest model (the tiny preset with the compact backbone); cases
22-26 run real ``python -m cnnrnn`` processes, since signalling or racing them is the point.
"""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ._common import case, cli, error_text, files, lost, outside, read_json, sample, snapshot

#: The smallest model that trains end to end: tiny, with the compact backbone (no ResNet50).
SMALL = {"extends": "tiny", "train": {"backbone": "compact", "filters": [8, 16], "weights": "none"}}
INTERRUPTED = "interrupted; rerun the same command to resume"


def _small_config(tmp: Path) -> Path:
    path = tmp / "small.json"
    path.write_text(json.dumps(SMALL), encoding="utf-8")
    return path


def _corpus(folder: Path, n: int, shift: int = 0) -> Path:
    """A manifest of ``n`` links ``u000.wav``... to the sample's recordings (recording ``i + shift``, with its
    label), in ``folder``."""
    from cnnrnn.corpora import load_corpus

    utts = sorted(load_corpus("kemdy20", sample())[0], key=lambda u: u.id)
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "manifest.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "speaker", "session"])
        for i in range(n):
            u = utts[(i + shift) % len(utts)]
            (folder / f"u{i:03d}.wav").symlink_to(u.audio_path)
            w.writerow([f"u{i:03d}.wav", u.emotion, u.speaker, u.session])
    return folder / "manifest.csv"


def _env() -> dict:
    import cnnrnn

    repo = str(Path(cnnrnn.__file__).resolve().parents[1])
    return dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
                TF_CPP_MIN_LOG_LEVEL="3")


def _start(*argv) -> subprocess.Popen:
    """``python -m cnnrnn -q ARGV`` in a session of its own (so a signal reaches its whole process group)."""
    return subprocess.Popen([sys.executable, "-m", "cnnrnn", "-q", *map(str, argv)], env=_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)


def _wait_for(test, proc: subprocess.Popen, seconds: float = 120) -> bool:
    deadline = time.monotonic() + seconds
    while not test() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    return bool(test())


def _temporaries(root: Path) -> list[str]:
    from cnnrnn.artifacts import is_temporary

    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and is_temporary(p))


@case(19, "A folder of the user's files as --out",
      "`cnnrnn run --out DIR` (and split, spectrograms, pack, train) where DIR holds notes, a train.json, "
      "test/predictions.csv and a .tmp file of the user's",
      "exit 2, one line naming the folder and some of its files; every file byte-identical, nothing added")
def case_19(tmp: Path) -> dict:
    user = tmp / "mine"
    (user / "test").mkdir(parents=True)
    (user / "notes.txt").write_text("my notes", encoding="utf-8")
    (user / "train.json").write_text('{"mine": true}', encoding="utf-8")
    (user / "test" / "predictions.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (user / ".draft.tmp").write_text("mine too", encoding="utf-8")
    before, names = snapshot(user), set(files(user))
    corpus = _corpus(tmp / "corpus", 12)
    seen, ok = [], True
    for argv in (["run", "--corpus", "manifest", "--root", corpus], ["split", "--corpus", "manifest", "--root", corpus],
                 ["spectrograms"], ["pack"], ["train"]):
        code, _, logs = cli(*argv, "--out", user, "--config", "tiny")
        line = error_text(logs)
        ok &= code == 2 and "is not empty and is not a cnnrnn run folder" in line and line.count("ERROR") == 1
        seen.append(f"{argv[0]}: exit {code}")
    added = sorted(str(p) for p in set(files(user)) - names)
    return {"observed": "; ".join(seen) + f"; {line}; files added: {added}", "passed": ok and not added,
            "data_loss": lost(before), "outside_writes": outside(set(), tmp, tmp / "corpus", user)}


@case(20, "A rerun with other audio and labels under the same ids",
      "`cnnrnn run` (tiny, compact backbone) into DIR, then again into DIR with a manifest whose ids are the same "
      "but whose audio and labels are shifted by one recording",
      "every image rendered again (equal to a fresh run's), every fold trained again, test scored on the new labels")
def case_20(tmp: Path) -> dict:
    cfg = _small_config(tmp)
    a, b = _corpus(tmp / "a", 24), _corpus(tmp / "b", 24, shift=1)
    out, fresh = tmp / "out", tmp / "fresh"
    codes = [cli("run", "--corpus", "manifest", "--root", a, "--out", out, "--config", cfg)[0]]
    pngs_a = {p.name: p.read_bytes() for p in (out / "spectrograms").glob("*.png")}
    folds_a = {p.name: read_json(p)["train_settings"].get("inputs_sha1") for p in (out / "folds").glob("*.json")}
    started = time.time()
    codes.append(cli("run", "--corpus", "manifest", "--root", b, "--out", out, "--config", cfg)[0])
    codes.append(cli("split", "--corpus", "manifest", "--root", b, "--out", fresh, "--config", cfg)[0])
    codes.append(cli("spectrograms", "--out", fresh, "--config", cfg)[0])
    pngs_b = {p.name: p.read_bytes() for p in (out / "spectrograms").glob("*.png")}
    pngs_fresh = {p.name: p.read_bytes() for p in (fresh / "spectrograms").glob("*.png")}
    folds_b = {p.name: read_json(p)["train_settings"].get("inputs_sha1") for p in (out / "folds").glob("*.json")}
    retrained = all(p.stat().st_mtime >= started for p in (out / "models").glob("*.h5"))
    preds = list(csv.DictReader((out / "test" / "predictions.csv").open(encoding="utf-8")))
    labels_b = {Path(r["path"]).stem: r["label"] for r in csv.DictReader((tmp / "b" / "manifest.csv").open())}
    true_ok = all(labels_b.get(r["id"]) == r["true"] for r in preds) if preds and "true" in preds[0] else False
    changed = sum(pngs_a.get(n) != data for n, data in pngs_b.items())
    ok = (codes == [0, 0, 0, 0] and pngs_b == pngs_fresh and changed >= len(pngs_b) - 2 and retrained
          and folds_a and all(folds_b[k] != folds_a[k] for k in folds_a) and true_ok)
    return {"observed": f"exits {codes}; {changed}/{len(pngs_b)} images changed, equal to a fresh run's: "
                        f"{pngs_b == pngs_fresh}; folds retrained: {retrained} (inputs fingerprint changed: "
                        f"{sorted(folds_a) == sorted(folds_b) and all(folds_b[k] != folds_a[k] for k in folds_a)}); "
                        f"test labels are the new ones: {true_ok}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, tmp / "a", tmp / "b", out, fresh, cfg)}


@case(21, "Two writers of one stage at once",
      "`cnnrnn spectrograms --out SAME` while another process runs it (400 files)",
      "the second: exit 2, 'DIR is in use by host H, PID N (started ...)', nothing touched; the first ends "
      "with all 400 images")
def case_21(tmp: Path) -> dict:
    out = tmp / "out"
    code0, _, _ = cli("split", "--corpus", "manifest", "--root", _corpus(tmp / "corpus", 400), "--out", out)
    first = _start("spectrograms", "--out", out, "--workers", "2")
    try:
        _wait_for(lambda: list((out / "spectrograms").glob("*.png")), first)
        code, _, logs = cli("spectrograms", "--out", out, "--workers", "1")
        pack_code, _, pack_logs = cli("pack", "--out", out)
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    line = error_text(logs)
    n = json.loads(stdout)["train"]["n"] + json.loads(stdout)["test"]["n"] if first.returncode == 0 else 0
    ok = (code0 == 0 and code == 2 and pack_code == 2 and f"PID {first.pid} (started" in line
          and "is in use by host" in error_text(pack_logs) and first.returncode == 0 and n == 400)
    return {"observed": f"second: exit {code}: {line}; pack meanwhile: exit {pack_code}; first: exit "
                        f"{first.returncode}, {n} images; {stderr.strip()[:200]}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, tmp / "corpus", out)}


@case(22, "A stale lock of a killed writer",
      "SIGKILL of a running `cnnrnn spectrograms` (its lock's JSON and temporaries stay), then the same command",
      "the rerun takes the lock over (said in the log), removes and counts the leftovers, ends with all 400 images")
def case_22(tmp: Path) -> dict:
    out = tmp / "out"
    cli("split", "--corpus", "manifest", "--root", _corpus(tmp / "corpus", 400), "--out", out)
    first = _start("spectrograms", "--out", out, "--workers", "2")
    _wait_for(lambda: len(list((out / "spectrograms").glob("*.png"))) > 20, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    (out / "spectrograms" / ".u000.png.abcd1234.tmp").write_bytes(b"\0" * 100)  # as a killed render leaves them
    (out / ".train_images.npy.deadbeef.tmp").write_bytes(b"\0" * 2 ** 20)
    lock_json = (out / ".cnnrnn" / "locks" / "spectrograms.json").is_file()
    code, stdout, logs = cli("spectrograms", "--out", out, "--workers", "2")
    report = json.loads(stdout) if code == 0 else {}
    n = report.get("train", {}).get("n", 0) + report.get("test", {}).get("n", 0)
    took = f"took over the spectrograms lock of PID {first.pid}" in logs
    ok = code == 0 and lock_json and took and report.get("leftovers_removed", 0) >= 2 and n == 400 \
        and not _temporaries(out)
    return {"observed": f"lock JSON left by the killed run: {lock_json}; rerun exit {code}, took over: {took}, "
                        f"leftovers removed: {report.get('leftovers_removed')}, {n} images, temporaries now: "
                        f"{_temporaries(out)}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, tmp / "corpus", out)}


@case(23, "Ctrl-C during spectrograms",
      "SIGINT to the process group of `cnnrnn spectrograms --workers 2` while it renders 400 files",
      "exit 130, one line 'interrupted; rerun the same command to resume' (no worker tracebacks), no temporaries, "
      "lock released; the rerun resumes (keeps what was rendered) and ends with all 400")
def case_23(tmp: Path) -> dict:
    out = tmp / "out"
    cli("split", "--corpus", "manifest", "--root", _corpus(tmp / "corpus", 400), "--out", out)
    proc = _start("spectrograms", "--out", out, "--workers", "2")
    _wait_for(lambda: list((out / "spectrograms").glob("*.png")), proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    left, held = _temporaries(out), (out / ".cnnrnn" / "locks" / "spectrograms.json").exists()
    code, stdout, _ = cli("spectrograms", "--out", out, "--workers", "2")
    report = json.loads(stdout) if code == 0 else {}
    kept = report.get("spectrograms", {}).get("n_existing", 0)
    ok = (proc.returncode == 130 and stderr.strip().splitlines() == [INTERRUPTED] and not left and not held
          and code == 0 and 0 < kept < 400 and report["train"]["n"] + report["test"]["n"] == 400)
    return {"observed": f"exit {proc.returncode}, stderr {stderr.strip()!r}; temporaries {left}; lock held: {held}; "
                        f"rerun exit {code}, {kept} images kept from before",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, tmp / "corpus", out)}


@case(24, "SIGTERM during training",
      "SIGTERM to the process group of `cnnrnn train` (tiny, compact backbone) while TensorFlow fits",
      "exit 143, one line 'interrupted; ...' (no TensorFlow stack), no .tmp.h5, lock released; the rerun trains")
def case_24(tmp: Path) -> dict:
    cfg = _small_config(tmp)
    out = tmp / "out"
    for argv in (["split", "--corpus", "kemdy20", "--root", sample()], ["spectrograms"], ["pack"]):
        cli(*argv, "--out", out, "--config", cfg)
    proc = _start("train", "--out", out, "--config", cfg)
    _wait_for(lambda: (out / "history").is_dir() and list((out / "history").glob("*")), proc)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    left, held = _temporaries(out), (out / ".cnnrnn" / "locks" / "train.json").exists()
    code, _, _ = cli("train", "--out", out, "--config", cfg)
    ok = proc.returncode == 143 and stderr.strip().splitlines() == [INTERRUPTED] and not left and not held \
        and code == 0 and (out / "cv_report.json").is_file()
    return {"observed": f"exit {proc.returncode}, stderr {stderr.strip()[:300]!r}; temporaries {left}; lock held: "
                        f"{held}; rerun exit {code}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, out, cfg)}


@case(25, "A full disk while a fold's model is saved",
      "`cnnrnn train` (tiny, compact backbone) whose model save fails with ENOSPC after writing 2 MB",
      "exit 2 with the disk-full reason; no .tmp.h5 left behind; lock released")
def case_25(tmp: Path) -> dict:
    import errno

    import keras

    cfg = _small_config(tmp)
    out = tmp / "out"
    for argv in (["split", "--corpus", "kemdy20", "--root", sample()], ["spectrograms"], ["pack"]):
        cli(*argv, "--out", out, "--config", cfg)
    real_save = keras.Model.save

    def full_disk(self, filepath, *args, **kwargs):
        Path(filepath).write_bytes(b"\0" * 2 * 2 ** 20)
        raise OSError(errno.ENOSPC, "No space left on device", str(filepath))

    keras.Model.save = full_disk
    try:
        code, _, logs = cli("train", "--out", out, "--config", cfg)
    finally:
        keras.Model.save = real_save
    left, held = _temporaries(out), (out / ".cnnrnn" / "locks" / "train.json").exists()
    line = error_text(logs)
    ok = code == 2 and "no space left on the device to save" in line and not left and not held
    return {"observed": f"exit {code}: {line[:300]}; temporaries {left}; lock held: {held}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, out, cfg)}


@case(26, "SIGKILL during pack",
      "SIGKILL of `cnnrnn pack --force` (400 files) while its `.train_images.npy.*.tmp` is being written",
      "the next `pack` removes and counts the leftovers, and writes complete arrays")
def case_26(tmp: Path) -> dict:
    out = tmp / "out"
    for argv in (["split", "--corpus", "manifest", "--root", _corpus(tmp / "corpus", 400)], ["spectrograms"]):
        cli(*argv, "--out", out)
    proc = _start("pack", "--out", out, "--force")
    _wait_for(lambda: list(out.glob(".train_images.npy.*.tmp")), proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    left_before = _temporaries(out)
    code, stdout, _ = cli("pack", "--out", out)
    report = json.loads(stdout) if code == 0 else {}
    ok = bool(left_before) and code == 0 and report.get("leftovers_removed") == len(left_before) \
        and not _temporaries(out) and report["train"]["n"] + report["test"]["n"] == 400
    return {"observed": f"left by the killed pack: {left_before}; next pack exit {code}, removed "
                        f"{report.get('leftovers_removed')}, temporaries now {_temporaries(out)}",
            "passed": ok, "outside_writes": outside(set(), tmp, tmp / "corpus", out)}


@case(27, "Another kind's output folder",
      "`cnnrnn split --out DIR` where DIR is a predictions folder (its marker), and `cnnrnn run` there",
      "exit 2: 'DIR is the output folder of predictions, not of a cnnrnn run'; nothing touched")
def case_27(tmp: Path) -> dict:
    other = tmp / "preds"
    (other / ".cnnrnn").mkdir(parents=True)
    (other / ".cnnrnn" / "folder.json").write_text(json.dumps({"kind": "predictions"}), encoding="utf-8")
    (other / "predictions.csv").write_text("id,label\n", encoding="utf-8")
    before = snapshot(other)
    corpus = _corpus(tmp / "corpus", 12)
    results = [cli(*argv, "--corpus", "manifest", "--root", corpus, "--out", other, "--config", "tiny")
               for argv in (["split"], ["run"])]
    ok = all(code == 2 and "is the output folder of predictions, not of a cnnrnn run" in error_text(logs)
             for code, _, logs in results) and set(files(other)) == set(before)
    return {"observed": "; ".join(f"exit {c}: {error_text(lg)}" for c, _, lg in results), "passed": ok,
            "data_loss": lost(before), "outside_writes": outside(set(), tmp, tmp / "corpus", other)}
