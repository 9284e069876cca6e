"""Hostile cases 70-79 of issue 21 for the other families and the tools: the baselines, DCNN-BLSTMwA, functionals and
HF commands, ``filelists``, ``resample`` and ``amp-normalize``: output folders that are theirs or refused, one lock
per writer, leftovers of a killed run, and no features, lists or outputs reused from other audio or labels.

Audio: the bundled sample's real EmoDB recordings. No case trains a model: every refusal comes before training.
Case 76 holds the locks from a real ``python -c`` process (``cnnrnn.outputs.stage_lock``), since another process
is the point.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from ._common import case, cli, error_text, files, lost, outside, sample_wavs, snapshot, write_wav

REFUSED = "is not empty and is not a"


def _user_folder(folder: Path) -> Path:
    """A folder of the user's files: notes, a metrics.json and predictions.csv of their own, a wav, a .tmp file."""
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes", encoding="utf-8")
    (folder / "metrics.json").write_text('{"mine": true}', encoding="utf-8")
    (folder / "predictions.csv").write_text("a,b\n1,2\n", encoding="utf-8")
    (folder / ".draft.tmp").write_text("mine too", encoding="utf-8")
    shutil.copy(sample_wavs(1)[0], folder / "sub" / "voice.wav")
    return folder


def _refusals(tmp: Path, user: Path, commands: dict[str, list], words: str = REFUSED) -> dict:
    """Run each command against ``user``: exit 2, one error line with ``words``, the folder byte-identical and
    nothing added. Returns the case's result."""
    before, names = snapshot(user), set(files(user))
    seen, ok, line = [], True, ""
    for name, argv in commands.items():
        code, _, logs = cli(*argv)
        line = error_text(logs)
        good = code == 2 and words in line and line.count("ERROR") == 1
        ok &= good
        seen.append(f"{name}: exit {code}" + ("" if good else f" ({line})"))
    added = sorted(str(p.relative_to(tmp)) for p in set(files(user)) - names)
    return {"observed": "; ".join(seen) + f"; last: {line}; files added: {added}", "passed": bool(ok and not added),
            "data_loss": lost(before), "outside_writes": outside(set(), tmp, user, tmp / "inputs")}


@case(70, "Baselines: a folder of the user's files as --out or --cache-dir",
      "`baseline train --out DIR`, `baseline train --cache-dir DIR`, `baseline evaluate --out DIR` where DIR holds "
      "notes, metrics.json, predictions.csv, a wav and a .tmp file of the user's",
      "exit 2, one line naming the folder and some of its files; every file byte-identical, nothing added")
def case_70(tmp: Path) -> dict:
    from cnnrnn.artifacts import save_json
    from cnnrnn.baselines.config import load_baseline_config

    user = _user_folder(tmp / "mine")
    run = tmp / "inputs" / "run"  # a baselines run as written before run manifests
    save_json(load_baseline_config("tiny_ann").to_dict(), run / "baseline_config.json")
    save_json({"labels": ["neutral", "angry"]}, run / "labels.json")
    train = ["baselines", "train", "--model", "ann", "--config", "tiny_ann", "--corpus", "fsdd", "--root",
             tmp / "inputs" / "fsdd"]
    return _refusals(tmp, user, {
        "train --out": [*train, "--out", user],
        "train --cache-dir": [*train, "--out", tmp / "inputs" / "new_run", "--cache-dir", user],
        "evaluate --out": ["baselines", "evaluate", "--run", run, "--corpus", "fsdd", "--root", tmp / "inputs" / "fsdd",
                           "--out", user]})


@case(71, "Functionals: a folder of the user's files as --out or --cache-dir",
      "`functionals train --out DIR`, `--cache-dir DIR`, `functionals evaluate --out DIR` (DIR as in case 70)",
      "exit 2, one line naming the folder; every file byte-identical, nothing added; no openSMILE run")
def case_71(tmp: Path) -> dict:
    from cnnrnn.functionals.config import load_functionals_config
    from cnnrnn.runs import write_manifest

    user = _user_folder(tmp / "mine")
    run = tmp / "inputs" / "run"
    run.mkdir(parents=True)
    write_manifest(run, "functionals", load_functionals_config("tiny").to_dict(), ["neutral", "angry"],
                   extra={"corpus": "manifest", "root": str(tmp / "inputs" / "c.csv"), "cache": None})
    train = ["functionals", "train", "--config", "tiny", "--corpus", "manifest", "--root", tmp / "inputs" / "c.csv"]
    return _refusals(tmp, user, {
        "train --out": [*train, "--out", user],
        "train --cache-dir": [*train, "--out", tmp / "inputs" / "new_run", "--cache-dir", user],
        "evaluate --out": ["functionals", "evaluate", "--run", run, "--corpus", "manifest", "--root",
                           tmp / "inputs" / "c.csv", "--out", user]})


@case(72, "DCNN: a folder of the user's files as a run folder or a run-folds --out",
      "`dcnn finetune --out ROOT --name DIR` (the run folder ROOT/DIR), `dcnn run-folds --out DIR` (DIR as in 70)",
      "exit 2, one line naming the folder; every file byte-identical, nothing added")
def case_72(tmp: Path) -> dict:
    user = _user_folder(tmp / "mine")
    return _refusals(tmp, user, {
        "finetune": ["dcnn", "finetune", "--config", "tiny_finetune", "--out", tmp, "--name", user.name],
        "run-folds": ["dcnn", "run-folds", "--filelists", tmp / "inputs" / "lists", "--config", "tiny", "--out",
                      user]})


@case(73, "HF: a folder of the user's files as train --out; an HF run as predict --out",
      "`hf train --out DIR` (DIR as in 70); `hf predict --out RUN` where RUN is an HF run written before markers",
      "exit 2, one line naming the folder; the user's files and the run's byte-identical, nothing added")
def case_73(tmp: Path) -> dict:
    user = _user_folder(tmp / "mine")
    result = _refusals(tmp, user, {"train": ["hf", "train", "--input", tmp / "inputs" / "new_data.csv",
                                             "--out", user]})
    run = tmp / "run"  # an HF run's files: its checkpoint and its own report
    (run / "checkpoint").mkdir(parents=True)
    (run / "checkpoint" / "hf_model.json").write_text("{}", encoding="utf-8")
    for name in ("metrics.json", "predictions.csv", "history.csv"):
        (run / name).write_text("run's own\n", encoding="utf-8")
    second = _refusals(tmp, run, {"predict": ["hf", "predict", "--checkpoint", run / "checkpoint", "--input",
                                              tmp / "inputs" / "new_data.csv", "--out", run]})
    return {"observed": f"{result['observed']} | {second['observed']}",
            "passed": result["passed"] and second["passed"], "data_loss": result["data_loss"] + second["data_loss"],
            "outside_writes": outside(set(), tmp, user, run, tmp / "inputs")}


def _manifest_corpus(folder: Path, n: int) -> Path:
    """A manifest CSV of ``n`` of the sample's wavs copied into ``folder`` (2 labels, 2 speakers)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,speaker"]
    for i, wav in enumerate(sample_wavs(n)):
        shutil.copy(wav, folder / f"u{i:02d}.wav")
        rows.append(f"u{i:02d}.wav,{'angry' if i % 2 else 'neutral'},s{i // (n // 2)}")
    (folder / "corpus.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "corpus.csv"


@case(74, "filelists: a folder of the user's files; a list of the user's among the folds",
      "`filelists --out DIR` (DIR as in 70); then filelists with 3 folds, a kfold/mine_train.txt of the user's, "
      "and a rerun with 2 folds",
      "the first exit 2, DIR untouched; the rerun removes fold3's lists (its own) and keeps mine_train.txt")
def case_74(tmp: Path) -> dict:
    user = _user_folder(tmp / "mine")
    corpus = _manifest_corpus(tmp / "inputs" / "corpus", 8)
    result = _refusals(tmp, user, {"filelists": ["filelists", "--corpus", "manifest", "--root", corpus, "--out", user]})
    lists = tmp / "lists"
    args = ["filelists", "--corpus", "manifest", "--root", corpus, "--out", lists, "--no-loso", "--folds-by",
            "stratified"]
    code1 = cli(*args, "--folds", "3")[0]
    mine = lists / "kfold" / "mine_train.txt"
    mine.write_text("my own list\n", encoding="utf-8")
    code2 = cli(*args, "--folds", "2")[0]
    kept = sorted(p.name for p in (lists / "kfold").iterdir())
    ok = (result["passed"] and code1 == code2 == 0 and mine.is_file()
          and kept == ["fold1_test.txt", "fold1_train.txt", "fold2_test.txt", "fold2_train.txt", "mine_train.txt"])
    return {"observed": f"{result['observed']}; lists exit {code1}, rerun with 2 folds exit {code2}: kfold/ holds "
                        f"{kept}", "passed": bool(ok),
            "data_loss": result["data_loss"] + ([] if mine.is_file() else [str(mine)]),
            "outside_writes": outside(set(), tmp, user, lists, tmp / "inputs")}


@case(75, "resample / amp-normalize into a folder of someone's audio",
      "`resample SRC DST 8000` and `amp-normalize SRC DST` where DST holds the user's own recordings (other names "
      "than SRC's) and notes",
      "exit 2, one line naming DST; every file byte-identical, nothing added")
def case_75(tmp: Path) -> dict:
    src = tmp / "inputs" / "src"
    src.mkdir(parents=True)
    for wav in sample_wavs(3):
        shutil.copy(wav, src / wav.name)
    dst = tmp / "recordings"
    dst.mkdir()
    for i, wav in enumerate(sample_wavs(6)[3:]):
        shutil.copy(wav, dst / f"take{i}.wav")
    (dst / "notes.txt").write_text("session notes", encoding="utf-8")
    return _refusals(tmp, dst, {"resample": ["resample", src, dst, "8000"],
                                "amp-normalize": ["amp-normalize", src, dst]})


@case(76, "A second writer of the same stage",
      "another process holds the lock of: `baseline train`, `functionals train`, `hf train` (train), `dcnn finetune` "
      "(finetune), `dcnn run-folds`, `filelists`, `resample`; and `baseline evaluate` of a run being trained",
      "each exit 2 with one line `DIR is in use by host H, PID N (started ...)`; nothing written in the folder")
def case_76(tmp: Path) -> dict:
    import numpy as np

    src = tmp / "inputs" / "src"
    write_wav(src / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    brun = tmp / "brun"
    from cnnrnn.artifacts import save_json
    from cnnrnn.baselines.config import load_baseline_config

    save_json(load_baseline_config("tiny_ann").to_dict(), brun / "baseline_config.json")
    save_json({"labels": ["neutral", "angry"]}, brun / "labels.json")
    none = tmp / "inputs" / "none"
    cases = [  # (name, folder locked, stage, argv)
        ("baseline train", tmp / "b", "train", ["baselines", "train", "--model", "ann", "--config", "tiny_ann",
                                               "--corpus", "fsdd", "--root", none, "--out", tmp / "b"]),
        ("functionals train", tmp / "f", "train", ["functionals", "train", "--config", "tiny", "--corpus",
                                                   "manifest", "--root", none, "--out", tmp / "f"]),
        ("hf train", tmp / "h", "train", ["hf", "train", "--input", none, "--out", tmp / "h"]),
        ("dcnn finetune", tmp / "logs" / "ft", "finetune", ["dcnn", "finetune", "--config", "tiny_finetune",
                                                            "--out", tmp / "logs", "--name", "ft"]),
        ("run-folds", tmp / "folds", "run-folds", ["dcnn", "run-folds", "--filelists", none, "--config", "tiny",
                                                   "--out", tmp / "folds"]),
        ("filelists", tmp / "lists", "filelists", ["filelists", "--corpus", "esd", "--root", none, "--out",
                                                   tmp / "lists"]),
        ("resample", tmp / "dst", "resample", ["resample", src, tmp / "dst", "8000"]),
        ("baseline evaluate", brun, "train", ["baselines", "evaluate", "--run", brun, "--corpus", "fsdd", "--root",
                                              none, "--out", tmp / "eval"]),
    ]
    code = ("import sys, time\nfrom cnnrnn.outputs import stage_lock\n"
            "with stage_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    seen, ok, line = [], True, ""
    for name, folder, stage, argv in cases:
        folder.mkdir(parents=True, exist_ok=True)
        names = set(files(folder))
        proc = subprocess.Popen([sys.executable, "-c", code, str(folder), stage], stdout=subprocess.PIPE, text=True,
                                env=dict(os.environ, PYTHONPATH=os.pathsep.join(
                                    [str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")])))
        try:
            if proc.stdout.readline().strip() != "held":
                seen.append(f"{name}: the lock was not taken")
                ok = False
                continue
            exit_code, _, logs = cli(*argv)
            line = error_text(logs)
            # the holder's lock files aside (and the marker of a folder it had not claimed), nothing new
            added = sorted(str(p.relative_to(tmp)) for p in files(folder) - names if ".cnnrnn" not in p.parts)
            good = exit_code == 2 and "is in use by" in line and f"PID {proc.pid}" in line and not added
            ok &= good
            seen.append(f"{name}: exit {exit_code}" + ("" if good else f" ({line}; added {added})"))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    ok &= not (tmp / "eval").exists()
    return {"observed": "; ".join(seen) + f"; last: {line}", "passed": bool(ok),
            "outside_writes": outside(set(), tmp, *[c[1] for c in cases], tmp / "inputs")}


def _other_audio_same_name(path: Path, other: Path) -> None:
    """Rewrite ``path`` with ``other``'s samples cut or padded to its length: same size, its times kept."""
    import numpy as np
    import soundfile as sf

    st = path.stat()
    n = sf.info(str(path)).frames
    y, sr = sf.read(str(other), dtype="float32")
    write_wav(path, np.pad(y, (0, max(0, n - len(y))))[:n], sr)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@case(77, "resample: other audio under the same name with an old time; leftovers of a killed run",
      "`resample SRC DST 8000`; temporaries a killed run leaves in DST (`.a.wav.XXXX.tmp`); then SRC/a.wav replaced "
      "by another recording with a time older than its output (an archive restored)",
      "the rerun removes and counts the 2 temporaries; the replaced file is resampled again (1 written, 2 kept)")
def case_77(tmp: Path) -> dict:
    import numpy as np
    import soundfile as sf

    src, dst = tmp / "inputs" / "src", tmp / "dst"
    (src / "spk").mkdir(parents=True)
    wavs = sample_wavs(4)
    for name, wav in zip(("spk/a.wav", "b.wav", "c.wav"), wavs):
        shutil.copy(wav, src / name)
    code1, out1, _ = cli("resample", src, dst, "8000")
    before = sf.read(str(dst / "spk" / "a.wav"))[0]
    (dst / "spk" / ".a.wav.k1ll3d.tmp").write_bytes(b"half a file")
    (dst / ".b.wav.d34d.tmp").write_bytes(b"half a file")
    from cnnrnn.audio_tools import resample_tree

    again = resample_tree(src, dst, 8000, progress=False)
    st = (src / "spk" / "a.wav").stat()
    _other_audio_same_name(src / "spk" / "a.wav", wavs[3])
    os.utime(src / "spk" / "a.wav", (st.st_atime - 86400 * 365, st.st_mtime - 86400 * 365))
    code3, out3, _ = cli("resample", src, dst, "8000")
    after = sf.read(str(dst / "spk" / "a.wav"))[0]
    redone = len(after) != len(before) or not np.allclose(after, before)
    temporaries = sorted(str(p.relative_to(dst)) for p in dst.rglob(".*.tmp"))
    ok = (code1 == code3 == 0 and again["leftovers_removed"] == 2 and again["written"] == 0 and not temporaries
          and "1 written, 2 up to date" in out3 and redone)
    return {"observed": f"first exit {code1}; rerun: {again['written']} written, {again['up_to_date']} kept, "
                        f"{again['leftovers_removed']} leftover(s) removed; after the replacement: "
                        f"{out3.splitlines()[0] if out3 else ''} (a.wav redone: {redone}); temporaries left: "
                        f"{temporaries}", "passed": bool(ok),
            "outside_writes": outside(set(), tmp, dst, tmp / "inputs")}


@case(78, "Feature caches: other audio under the same path, size and time",
      "a baselines cache (`build_cache`) and a functionals cache entry of a clip, then the clip rewritten with "
      "another recording of the same length, its modification time restored",
      "both caches miss: the baseline features are computed again (equal to the new clip's), the functionals entry "
      "has another name")
def case_78(tmp: Path) -> dict:
    import numpy as np

    from cnnrnn.baselines.config import load_baseline_config
    from cnnrnn.baselines.data import build_cache, clip_features
    from cnnrnn.corpora import Utterance
    from cnnrnn.functionals.data import _cache_path

    clips = tmp / "inputs"
    clips.mkdir()
    wavs = sample_wavs(3)
    paths = [Path(shutil.copy(w, clips / f"c{i}.wav")) for i, w in enumerate(wavs[:2])]
    utts = [Utterance(id=p.stem, audio_path=str(p), emotion="x") for p in paths]
    cfg = load_baseline_config("tiny_ann", sr=16000)
    cache_dir = tmp / "cache"
    first, index1 = build_cache(utts, cfg, cache_dir, progress=False)
    entry = _cache_path(paths[0], tmp / "fcache")
    _other_audio_same_name(paths[0], wavs[2])
    second, index2 = build_cache(utts, cfg, cache_dir, progress=False)
    fresh = np.allclose(second.read([0])[0], clip_features(paths[0], cfg), atol=1.0 / 32767)
    stale = np.allclose(second.read([0])[0], first.read([0])[0])
    moved = _cache_path(paths[0], tmp / "fcache") != entry
    first.close(), second.close()
    ok = not index2["reused"] and index2["file"] != index1["file"] and fresh and not stale and moved
    return {"observed": f"baselines cache reused: {index2['reused']}, features of the new clip: {fresh}, equal to "
                        f"the old clip's: {stale}; functionals entry renamed: {moved}",
            "passed": bool(ok), "outside_writes": outside(set(), tmp, cache_dir, clips)}


@case(79, "DCNN: filelists relabelled or re-recorded under the same paths",
      "step 2 (`dcnn train`) on a DCNN fine-tuned with labels [neutral, angry] while the filelists' labels.json now "
      "says [angry, neutral]; the fingerprint `run-folds` resumes by, after a wav is re-recorded (same size and time)",
      "step 2 exit 2, one line naming both label lists, nothing written; the fingerprint changes (the fold retrains)")
def case_79(tmp: Path) -> dict:
    from cnnrnn.artifacts import save_json
    from cnnrnn.config import override
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.filelists import prepare_filelists
    from cnnrnn.dcnn.train import step_inputs

    corpus = _manifest_corpus(tmp / "inputs" / "corpus", 8)
    lists = tmp / "inputs" / "lists"
    prepare_filelists("manifest", corpus, lists, folds=2, folds_by="stratified", loso=False,
                      labels=["neutral", "angry"])
    cfg = override(load_dcnn_config("tiny_finetune"), {"data.filelist_train": str(lists / "kfold" / "fold1_train.txt"),
                                                       "data.filelist_test": str(lists / "kfold" / "fold1_test.txt")})
    dcnn = tmp / "inputs" / "ft" / "dcnn.h5"
    save_json({"labels": ["neutral", "angry"], "features": cfg.data.features().settings()}, dcnn.with_name("dcnn.json"))
    save_json({"labels": ["angry", "neutral"]}, lists / "labels.json")
    logs = tmp / "logs"
    code, _, log_text = cli("dcnn", "train", "--config", "tiny_train", "--dcnn", dcnn, "--filelist-train",
                            lists / "kfold" / "fold1_train.txt", "--filelist-test", lists / "kfold" / "fold1_test.txt",
                            "--out", logs)
    line = error_text(log_text)
    written = sorted(str(p.relative_to(tmp)) for p in files(logs)) if logs.exists() else []
    labels = ["neutral", "angry"]
    before = step_inputs(cfg, labels)
    wav = sorted((tmp / "inputs" / "corpus").glob("*.wav"))[0]
    _other_audio_same_name(wav, sample_wavs(9)[8])
    after = step_inputs(cfg, labels)
    ok = code == 2 and "differ from those the DCNN" in line and not written and before["sha1"] != after["sha1"]
    return {"observed": f"step 2 exit {code}: {line}; written: {written}; fingerprint before {before['sha1'][:10]}, "
                        f"after re-recording {after['sha1'][:10]}", "passed": bool(ok),
            "outside_writes": outside(set(), tmp, tmp / "inputs", logs)}
