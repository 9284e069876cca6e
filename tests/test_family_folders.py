"""Issue 21 for the baselines, DCNN, functionals, HF and tools commands: output folders are theirs or refused, one
writer per stage, leftovers of a killed run removed, and no work reused from other audio or labels.

Every test refuses before training (or trains nothing): a folder of user files through ``cnnrnn.cli.main`` (exit 2,
files byte-identical, nothing new), another kind's folder, a stage whose lock another process holds (a
``python -c`` child in ``cnnrnn.outputs.stage_lock``), and the content-keyed caches and resume records.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import write_wav

from cnnrnn.artifacts import save_json
from cnnrnn.cli import main


# --------------------------------------------------------------------------- helpers
def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) and its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def user_folder(tmp_path) -> Path:
    """A folder of someone's files: notes, a photo, a wav of their own in a subfolder."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("do not delete\n", encoding="utf-8")
    (folder / "photo.jpg").write_bytes(bytes(range(256)) * 4)
    write_wav(folder / "sub" / "voice.wav", 0.1 * np.sin(np.arange(8000) / 5.0), 16000)
    return folder


@pytest.fixture
def wav_tree(tmp_path) -> Path:
    """Six short real-looking clips of two speakers and two labels, and a manifest CSV of them."""
    root = tmp_path / "corpus"
    rng = np.random.default_rng(0)
    rows = ["path,label,speaker"]
    for i in range(6):
        path = write_wav(root / f"s{i % 2}" / f"clip{i}.wav", 0.1 * rng.standard_normal(8000), 16000)
        rows.append(f"{path},{'ang' if i % 2 else 'neu'},s{i // 3}")
    (root / "corpus.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def refused(argv: list[str], folder: Path, caplog, words: str = "is not empty and is not a") -> str:
    """Run ``cnnrnn -q ARGV``: exit 2, one error line containing ``words``, ``folder`` untouched (in a folder the
    test's other process holds, it may have been claimed: its marker aside). Returns the line."""
    before = snapshot(folder)
    if words == "is in use by":
        before.pop(".cnnrnn/folder.json", None)
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="cnnrnn"):
        code = main(["-q", *map(str, argv)])
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert code == 2, (argv, errors)
    assert len(errors) == 1 and "\n" not in errors[0] and words in errors[0], errors
    after = snapshot(folder)
    if words == "is in use by":
        after.pop(".cnnrnn/folder.json", None)
    assert after == before  # byte-identical, nothing new (no marker either)
    return errors[0]


@contextlib.contextmanager
def held(folder: Path, stage: str):
    """Another process holding the lock of ``stage`` of ``folder`` (``cnnrnn.outputs.stage_lock``) for the block."""
    code = ("import sys, time\nfrom cnnrnn.outputs import stage_lock\n"
            "with stage_lock(sys.argv[1], sys.argv[2]):\n    print('held', flush=True)\n    time.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder), stage], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _baseline_run(folder: Path) -> Path:
    """A baselines run as written before run manifests (config + labels), enough for ``evaluate`` to start."""
    from cnnrnn.baselines.config import load_baseline_config

    save_json(load_baseline_config("tiny_ann").to_dict(), folder / "baseline_config.json")
    save_json({"labels": ["neu", "ang"]}, folder / "labels.json")
    return folder


def _functionals_run(folder: Path) -> Path:
    """A functionals run's manifest, enough for ``evaluate`` to start."""
    from cnnrnn.functionals.config import load_functionals_config
    from cnnrnn.runs import write_manifest

    folder.mkdir(parents=True, exist_ok=True)
    write_manifest(folder, "functionals", load_functionals_config("tiny").to_dict(), ["neu", "ang"],
                   extra={"corpus": "manifest", "root": "corpus.csv", "cache": None})
    return folder


def commands(tmp_path: Path, out: Path) -> dict[str, list]:
    """Every command of these families that writes a folder, with ``out`` as that folder."""
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    run = _baseline_run(tmp_path / "brun")
    frun = _functionals_run(tmp_path / "frun")
    return {
        "baselines train": ["baselines", "train", "--model", "ann", "--config", "tiny_ann", "--corpus", "fsdd",
                           "--root", tmp_path / "none", "--out", out],
        "baselines cache": ["baselines", "train", "--model", "ann", "--config", "tiny_ann", "--corpus", "fsdd",
                           "--root", tmp_path / "none", "--out", tmp_path / "newrun", "--cache-dir", out],
        "baselines evaluate": ["baselines", "evaluate", "--run", run, "--corpus", "fsdd", "--root", tmp_path / "none",
                              "--out", out],
        "functionals train": ["functionals", "train", "--config", "tiny", "--corpus", "manifest", "--root",
                              tmp_path / "none.csv", "--out", out],
        "functionals evaluate": ["functionals", "evaluate", "--run", frun, "--corpus", "manifest", "--root",
                                 tmp_path / "none.csv", "--out", out],
        "dcnn finetune": ["dcnn", "finetune", "--config", "tiny_finetune", "--out", out.parent, "--name", out.name],
        "dcnn run-folds": ["dcnn", "run-folds", "--filelists", tmp_path / "lists", "--config", "tiny", "--out", out],
        "hf train": ["hf", "train", "--input", tmp_path / "none.csv", "--out", out],
        "hf predict": ["hf", "predict", "--checkpoint", tmp_path / "hfrun" / "checkpoint", "--input",
                       tmp_path / "none.csv", "--out", out],
        "filelists": ["filelists", "--corpus", "esd", "--root", tmp_path / "none", "--out", out],
        "resample": ["resample", src, out, "8000"],
        "amp-normalize": ["amp-normalize", src, out],
        "whisper-convert --hf-out": ["whisper-convert", "--ct2", tmp_path / "none.bin", "--hf-out", out],
    }


COMMANDS = ["baselines train", "baselines cache", "baselines evaluate", "functionals train", "functionals evaluate",
            "dcnn finetune", "dcnn run-folds", "hf train", "hf predict", "filelists", "resample", "amp-normalize",
            "whisper-convert --hf-out"]


# --------------------------------------------------------------------------- item 1: ours or refused
@pytest.mark.parametrize("name", COMMANDS)
def test_a_folder_of_user_files_is_refused_untouched(name, tmp_path, user_folder, caplog):
    line = refused(commands(tmp_path, user_folder)[name], user_folder, caplog)
    assert str(user_folder) in line and "notes.txt" in line


@pytest.mark.parametrize("name", ["baselines train", "functionals train", "dcnn finetune", "hf train", "filelists",
                                  "resample", "baselines evaluate", "hf predict"])
def test_another_commands_folder_is_refused(name, tmp_path, caplog):
    """A folder marked as a CNNRNN run (its marker alone) is no other command's output folder."""
    from cnnrnn.outputs import claim_folder

    out = claim_folder(tmp_path / "cnnrnn_run", "cnnrnn run")
    (out / "labels.json").write_text('{"labels": ["a"]}', encoding="utf-8")
    line = refused(commands(tmp_path, out)[name], out, caplog, words="is the output folder of a cnnrnn run")
    assert "choose another folder" in line


def test_predictions_are_not_written_into_a_run(tmp_path, caplog):
    """``evaluate --out RUN`` of a run written before markers: a run is no predictions folder."""
    run = _baseline_run(tmp_path / "brun")
    (run / "metrics.json").write_text("{}", encoding="utf-8")
    refused(["baselines", "evaluate", "--run", run, "--corpus", "fsdd", "--root", tmp_path / "none", "--out", run],
            run, caplog)


def test_runs_written_before_markers_are_recognised(tmp_path):
    """Each family's pre-marker runs and outputs are recognised by their files, and claimed (marker written)."""
    from cnnrnn.baselines.train import RUN_KIND as BASELINES, claim_run as claim_baselines
    from cnnrnn.dcnn.filelists import FILELISTS_KIND, is_filelists_folder
    from cnnrnn.dcnn.folds import is_folds_folder
    from cnnrnn.dcnn.train import RUN_KIND as DCNN, claim_run as claim_dcnn
    from cnnrnn.functionals.train import RUN_KIND as FUNCTIONALS, claim_run as claim_functionals
    from cnnrnn.hf.train import RUN_KIND as HF, claim_run as claim_hf
    from cnnrnn.outputs import folder_kind

    cases = {"b": (claim_baselines, "baseline_config.json", BASELINES),
             "d": (claim_dcnn, "log_finetune.out", DCNN),
             "f": (claim_functionals, "model.skops", FUNCTIONALS),
             "h": (claim_hf, "checkpoint/head.h5", HF)}
    for name, (claim, file, kind) in cases.items():
        folder = tmp_path / name
        (folder / file).parent.mkdir(parents=True, exist_ok=True)
        (folder / file).write_text("x", encoding="utf-8")
        assert folder_kind(claim(folder)) == kind
    (tmp_path / "lists" / "kfold").mkdir(parents=True)
    (tmp_path / "lists" / "labels.json").write_text('{"labels": ["a"]}', encoding="utf-8")
    assert is_filelists_folder(tmp_path / "lists") and FILELISTS_KIND == "filelists"
    (tmp_path / "folds" / "fold1" / "finetune").mkdir(parents=True)
    (tmp_path / "folds" / "fold1" / "finetune" / "dcnn.json").write_text("{}", encoding="utf-8")
    assert is_folds_folder(tmp_path / "folds") and not is_folds_folder(tmp_path / "lists")


# --------------------------------------------------------------------------- item 3: one writer per stage
def test_a_stage_another_process_writes_is_refused(tmp_path, caplog):
    """One lock per writer: train, finetune, run-folds, filelists, resample and amp-normalize refuse a folder whose
    stage another process holds (one line naming the PID); evaluate and predict refuse a run being trained."""
    src = tmp_path / "src"
    write_wav(src / "a.wav", 0.1 * np.ones(800), 16000)
    cases = [
        ("baselines train", "train", ["baselines", "train", "--model", "ann", "--config", "tiny_ann", "--corpus",
                                     "fsdd", "--root", tmp_path / "none", "--out"]),
        ("functionals train", "train", ["functionals", "train", "--config", "tiny", "--corpus", "manifest",
                                        "--root", tmp_path / "none.csv", "--out"]),
        ("hf train", "train", ["hf", "train", "--input", tmp_path / "none.csv", "--out"]),
        ("run-folds", "run-folds", ["dcnn", "run-folds", "--filelists", tmp_path / "lists", "--config", "tiny",
                                    "--out"]),
        ("filelists", "filelists", ["filelists", "--corpus", "esd", "--root", tmp_path / "none", "--out"]),
        ("resample", "resample", ["resample", src, "8000"]),
        ("amp-normalize", "amp-normalize", ["amp-normalize", src]),
    ]
    for name, stage, argv in cases:
        out = tmp_path / name.replace(" ", "_")
        out.mkdir()
        argv = [*argv[:-1], out, argv[-1]] if name == "resample" else [*argv, out]
        with held(out, stage) as pid:
            line = refused(argv, out, caplog, words="is in use by")
        assert f"PID {pid}" in line, (name, line)
    # finetune: its run folder <log_root>/<name>
    with held(tmp_path / "logs" / "ft", "finetune") as pid:
        line = refused(["dcnn", "finetune", "--config", "tiny_finetune", "--out", tmp_path / "logs", "--name", "ft"],
                       tmp_path / "logs" / "ft", caplog, words="is in use by")
    # step 2 on a DCNN being fine-tuned; evaluate and predict on runs being trained
    with held(tmp_path / "logs" / "ft", "finetune"):
        refused(["dcnn", "train", "--config", "tiny_train", "--dcnn", tmp_path / "logs" / "ft" / "dcnn.h5",
                 "--out", tmp_path / "logs"], tmp_path / "logs", caplog, words="cannot train on the DCNN")
    run = _baseline_run(tmp_path / "brun")
    with held(run, "train"):
        refused(["baselines", "evaluate", "--run", run, "--corpus", "fsdd", "--root", tmp_path / "none", "--out",
                 tmp_path / "eval"], run, caplog, words="cannot evaluate this run")
    assert not (tmp_path / "eval").exists()
    with held(tmp_path / "hfrun", "train"):
        refused(["hf", "predict", "--checkpoint", tmp_path / "hfrun" / "checkpoint", "--input", tmp_path / "x.csv",
                 "--out", tmp_path / "pred"], tmp_path / "hfrun", caplog, words="cannot predict with this run")
    assert not (tmp_path / "pred").exists()


# --------------------------------------------------------------------------- items 2 and 4: tools
def test_resample_redoes_other_audio_under_the_same_name_and_removes_leftovers(tmp_path):
    """A source replaced by other audio with an older time (an archive restored) is converted again; temporaries a
    killed run left are removed and counted; a rerun into its own destination resumes."""
    import soundfile as sf

    from cnnrnn.audio_tools import resample_tree
    from cnnrnn.outputs import folder_kind

    src, dst = tmp_path / "src", tmp_path / "dst"
    a = write_wav(src / "spk" / "a.wav", 0.2 * np.sin(np.arange(16000) / 7.0), 16000)
    write_wav(src / "b.wav", 0.2 * np.sin(np.arange(16000) / 3.0), 16000)
    first = resample_tree(src, dst, 8000, progress=False)
    assert first["written"] == 2 and folder_kind(dst) == "resampled audio"
    old = sf.read(str(dst / "spk" / "a.wav"))[0]

    (dst / "spk" / ".a.wav.k1ll3d.tmp").write_bytes(b"half a file")
    again = resample_tree(src, dst, 8000, progress=False)
    assert (again["written"], again["up_to_date"], again["leftovers_removed"]) == (0, 2, 1)
    assert not (dst / "spk" / ".a.wav.k1ll3d.tmp").exists()

    write_wav(a, 0.2 * np.sin(np.arange(16000) / 11.0), 16000)  # other audio, under the same name...
    os.utime(a, (1_000_000_000, 1_000_000_000))  # ...and older than its output
    third = resample_tree(src, dst, 8000, progress=False)
    assert (third["written"], third["up_to_date"]) == (1, 1)
    assert not np.allclose(sf.read(str(dst / "spk" / "a.wav"))[0], old)


def test_resample_recognises_its_output_written_before_markers(tmp_path, caplog):
    """A destination of mono 16-bit wavs named after the sources (an earlier run's) resumes; one holding another
    file is refused."""
    from cnnrnn.audio_tools import resample_tree

    src, dst = tmp_path / "src", tmp_path / "dst"
    write_wav(src / "a.wav", 0.2 * np.sin(np.arange(16000) / 7.0), 16000)
    write_wav(dst / "a.wav", 0.2 * np.sin(np.arange(8000) / 3.5), 8000)
    assert resample_tree(src, dst, 8000, progress=False)["up_to_date"] == 1  # newer than its source
    other = tmp_path / "other"
    write_wav(other / "a.wav", 0.2 * np.sin(np.arange(8000) / 3.5), 8000)
    write_wav(other / "unrelated.wav", 0.2 * np.sin(np.arange(8000) / 3.5), 8000)
    refused(["resample", src, other, "8000"], other, caplog)


def test_filelists_remove_only_the_lists_they_wrote(tmp_path, wav_tree):
    """A rerun with fewer folds removes the earlier run's extra lists, never a list someone put there."""
    from cnnrnn.dcnn.filelists import prepare_filelists

    out = tmp_path / "lists"
    prepare_filelists("manifest", wav_tree / "corpus.csv", out, folds=3, folds_by="stratified", loso=False)
    mine = out / "kfold" / "mine_train.txt"
    mine.write_text("kept\n", encoding="utf-8")
    rerun = prepare_filelists("manifest", wav_tree / "corpus.csv", out, folds=2, folds_by="stratified", loso=False)
    assert sorted(Path(p).name for p in rerun["removed_stale"]) == ["fold3_test.txt", "fold3_train.txt"]
    assert mine.read_text(encoding="utf-8") == "kept\n"


# --------------------------------------------------------------------------- item 2: content keys
def _same_size_other_audio(path: Path) -> None:
    """Rewrite ``path`` with other samples of the same length, keeping its modification time."""
    st = path.stat()
    write_wav(path, 0.3 * np.cos(np.arange(8000) / 2.0), 16000)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size


def test_feature_caches_are_keyed_by_content_not_path_or_time(wav_tree):
    """Baselines and functionals feature caches: other audio under the same path, size and time gets a new key."""
    from cnnrnn.baselines.config import load_baseline_config
    from cnnrnn.baselines.data import _cache_key
    from cnnrnn.corpora import Utterance
    from cnnrnn.functionals.data import _cache_path

    clip = sorted(wav_tree.rglob("*.wav"))[0]
    utts = [Utterance(id="c", audio_path=str(clip), emotion="neu")]
    cfg = load_baseline_config("tiny_ann")
    key, path = _cache_key(utts, cfg), _cache_path(clip, wav_tree / "cache")
    _same_size_other_audio(clip)
    assert _cache_key(utts, cfg) != key and _cache_path(clip, wav_tree / "cache") != path


def test_dcnn_step_inputs_follow_audio_and_labels(tmp_path, wav_tree, caplog):
    """A DCNN step's fingerprint changes with a wav's content (same path, size and time) and the labels; step 2
    refuses a DCNN fine-tuned on other label names than its filelists'."""
    from cnnrnn.config import override
    from cnnrnn.dcnn.config import DCNN_META, load_dcnn_config
    from cnnrnn.dcnn.filelists import prepare_filelists
    from cnnrnn.dcnn.train import step_inputs

    lists = tmp_path / "lists"
    prepare_filelists("manifest", wav_tree / "corpus.csv", lists, folds=2, folds_by="stratified", loso=False)
    cfg = override(load_dcnn_config("tiny_finetune"), {"data.filelist_train": str(lists / "kfold/fold1_train.txt"),
                                                       "data.filelist_test": str(lists / "kfold/fold1_test.txt")})
    labels = json.loads((lists / "labels.json").read_text())["labels"]
    first = step_inputs(cfg, labels)
    assert first == step_inputs(cfg, labels) and first["n"] == 6
    assert step_inputs(cfg, labels[::-1])["sha1"] != first["sha1"]
    _same_size_other_audio(sorted(wav_tree.rglob("*.wav"))[0])
    assert step_inputs(cfg, labels)["sha1"] != first["sha1"]

    dcnn = tmp_path / "logs" / "ft" / "dcnn.h5"
    save_json({"labels": labels[::-1], "features": cfg.data.features().settings()}, dcnn.with_name(DCNN_META))
    refused(["dcnn", "train", "--config", "tiny_train", "--dcnn", dcnn, "--filelist-train",
             lists / "kfold/fold1_train.txt", "--filelist-test", lists / "kfold/fold1_test.txt",
             "--out", tmp_path / "logs"], tmp_path / "logs", caplog, words="differ from those the DCNN")
