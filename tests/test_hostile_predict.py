"""Issue 12, hostile input to ``cnnrnn predict`` and to the output folders of every command: cases 8 (a model
without a softmax), 10 (audio and images in one folder), 11 (refused and truncated pickles), 16 (temporary files
of a killed checkpoint save), 17 (unreadable or wrong-size PNGs) and 18 (an output folder that cannot be
written). Each case goes through ``cnnrnn.cli.main`` in-process, on real audio of the bundled sample, with
tiny Keras models (a pooling layer and a dense layer) saved as a CNNRNN run's ``.h5`` checkpoints."""
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import artifacts as A
from cnnrnn import cli

from benchmarks.hostile_cases.predict import CHECKPOINT, LABELS, make_run  # the benchmark's tiny run

SIZE = (32, 64)  # the tiny preset's image_size


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def outside(before: set[Path], root: Path, *allowed: Path) -> list[str]:
    """Files under ``root`` that are new since ``before`` and not inside one of ``allowed``."""
    return sorted(str(p) for p in files_under(root) - before
                  if not any(p.is_relative_to(a) for a in allowed))


@pytest.fixture(scope="module")
def world(tmp_path_factory, sample_dir):
    """Runs (softmax and logits), 4 real wavs, and their spectrogram PNGs at the model's size."""
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.features import audio_to_image, write_png

    root = tmp_path_factory.mktemp("hostile_predict")
    cfg = load_config("tiny")
    wavs = sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[:4]
    audio = root / "audio"
    audio.mkdir()
    for w in wavs:
        shutil.copy(w, audio / w.name)
    pngs = root / "pngs"
    for w in wavs:
        write_png(audio_to_image(w, cfg.spectrogram), pngs / f"{w.stem}.png")
    return {"root": root, "run": make_run(root / "run", "softmax"),
            "logits": make_run(root / "logits", "linear"), "audio": audio, "pngs": pngs,
            "ids": sorted(w.stem for w in wavs)}


def predict(capsys, *args) -> tuple[int, str]:
    code = cli.main(["-q", "predict", *map(str, args)])
    return code, capsys.readouterr().out


def summary_of(out: str) -> dict:
    """The JSON block (family, files, skipped) that ``cnnrnn predict`` prints last."""
    return json.loads(out[out.rindex('{\n  "family"'):].split("\nnote:")[0])


def test_case08_outputs_that_are_not_probabilities_get_a_softmax_with_one_warning(world, tmp_path, capsys, caplog):
    import pandas as pd

    before = files_under(world["root"])
    code, out = predict(capsys, "--model", world["logits"] / "models", "--input", world["audio"], "--out", tmp_path)
    assert code == 0
    warned = [r for r in caplog.records if "not class probabilities" in r.getMessage()]
    assert len(warned) == 1 and "applied a softmax" in warned[0].getMessage() and CHECKPOINT in warned[0].getMessage()
    df = pd.read_csv(tmp_path / "predictions.csv")
    p = df[[f"p_{x}" for x in LABELS]].to_numpy()
    assert len(df) == 4 and (p >= 0).all() and (p <= 1).all() and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert (df["confidence"] <= 1).all() and df["confidence"].nunique() > 1  # really a softmax of distinct logits
    # a softmax model is left alone: no warning
    caplog.clear()
    assert predict(capsys, "--model", world["run"], "--input", world["audio"], "--out", tmp_path / "soft")[0] == 0
    assert not [r for r in caplog.records if "not class probabilities" in r.getMessage()]
    # independent sigmoids are normalised, NaN outputs refused (the helper every Keras family calls)
    sig = A.as_probabilities(np.array([[0.9, 0.8, 0.1, 0.0], [0.0, 0.0, 0.0, 0.0]]), "m.h5")
    assert np.allclose(sig.sum(axis=1), 1) and np.allclose(sig[1], 0.25)
    with pytest.raises(A.CheckpointError, match="m.h5: the model gives non-finite outputs"):
        A.as_probabilities(np.array([[np.nan, 0.5, 0.5, 0.0]]), "m.h5")
    assert outside(before, world["root"]) == []


def test_case10_folder_with_audio_and_images_predicts_each_utterance_once(world, tmp_path, capsys):
    import pandas as pd

    folder = tmp_path / "in"
    shutil.copytree(world["audio"], folder)
    shutil.copytree(world["pngs"], folder / "spectrograms")
    before = files_under(tmp_path)
    code, out = predict(capsys, "--model", world["run"], "--input", folder, "--out", tmp_path / "out")
    assert code == 0
    df = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(df["id"]) == world["ids"] and df["source"].str.endswith(".wav").all()
    assert f"note: took the 4 audio file(s) under {folder} and left out its 4 image(s)" in out
    assert "pass --images" in out
    code, out = predict(capsys, "--model", world["run"], "--input", folder, "--out", tmp_path / "img", "--images")
    assert code == 0
    df = pd.read_csv(tmp_path / "img" / "predictions.csv")
    assert sorted(df["id"]) == world["ids"] and df["source"].str.endswith(".png").all()
    assert "left out its 4 audio file(s) (--images)" in out
    assert outside(before, tmp_path, tmp_path / "out", tmp_path / "img") == []


def test_case11_refused_and_truncated_pickles_are_one_line_errors(world, tmp_path, capsys, caplog):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch pwned",))

    evil = tmp_path / "evil_final.pickle"
    evil.write_bytes(pickle.dumps({"id": ["a"], "path": [Evil()], "emotion": [0]}))
    data = pickle.dumps({"id": ["a"], "path": np.zeros((1, *SIZE, 3), np.uint8), "emotion": [0]})
    truncated = tmp_path / "test_final.pickle"
    truncated.write_bytes(data[: len(data) // 2])
    before = files_under(tmp_path)
    for bad, message in ((evil, "refusing to unpickle posix.system"), (truncated, "not a valid pickle")):
        caplog.clear()
        code, _ = predict(capsys, "--model", world["run"], "--input", bad, "--out", tmp_path / "out")
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert code == 2 and len(errors) == 1 and errors[0].startswith(f"{bad}: ") and message in errors[0]
        assert "\n" not in errors[0]
    # the same through a stage: pack reads data_*.pickle
    stage = tmp_path / "stage"
    stage.mkdir()
    shutil.copy(truncated, stage / A.DATA_FILES["train"])
    shutil.copy(truncated, stage / A.DATA_FILES["test"])
    caplog.clear()
    assert cli.main(["-q", "pack", "--out", str(stage)]) == 2
    assert "data_train.pickle: not a valid pickle" in caplog.text or "data_test.pickle: not a valid pickle" in caplog.text
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
    assert outside(before, tmp_path, tmp_path / "out", stage) == []


def test_case16_temporary_checkpoint_is_ignored_by_readers_and_removed_by_training(world, tmp_path, capsys,
                                                                                   caplog, monkeypatch):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    stale = run / "models" / ".CNN_RNN_fold2_epoch1_e4.tmp.h5"
    stale.write_bytes((run / "models" / CHECKPOINT).read_bytes()[:3000])  # a save killed half way
    wav = next(world["audio"].iterdir())
    for model in (run / "models", run):
        code, out = predict(capsys, "--model", model, "--input", wav, "--out", tmp_path / "out")
        assert code == 0 and summary_of(out)["skipped"] == {}
    assert stale.is_file()  # a command that only reads deletes nothing
    caplog.clear()
    assert predict(capsys, "--model", stale, "--input", wav, "--out", tmp_path / "out")[0] == 2
    assert "is the temporary file of an interrupted save, not a checkpoint" in caplog.text
    (run / "models" / CHECKPOINT).unlink()
    caplog.clear()
    assert predict(capsys, "--model", run / "models", "--input", wav, "--out", tmp_path / "out")[0] == 2
    assert "only the temporary file(s) of an interrupted save: .CNN_RNN_fold2_epoch1_e4.tmp.h5" in caplog.text
    assert stale.is_file()

    # training removes the stale file in its own models/ when it starts (stopped here before building a model)
    import cnnrnn.cnnrnn.train as T

    y = np.array([0, 1] * 4)
    A.save_pickle({"id": [f"u{i}" for i in range(8)], "path": np.zeros((8, *SIZE, 3), np.uint8), "emotion": y},
                  run / A.FINAL_FILES["train"])

    def stop(*args, **kwargs):
        raise ValueError("stopped before building the model")

    monkeypatch.setattr(T, "get_strategy", stop)
    caplog.clear()
    assert cli.main(["-q", "train", "--out", str(run)]) == 2 and "stopped before building" in caplog.text
    assert not stale.exists()


def test_case17_unreadable_and_wrong_size_pngs_are_counted_skips(world, tmp_path, capsys):
    import cv2
    import pandas as pd

    folder = tmp_path / "in"
    shutil.copytree(world["pngs"], folder)
    good = sorted(folder.glob("*.png"))
    (folder / "broken.png").write_bytes(good[0].read_bytes()[:40])  # a truncated PNG
    (folder / "empty.png").write_bytes(b"")
    cv2.imwrite(str(folder / "wide.png"), np.full((SIZE[0], SIZE[1] * 2, 3), 80, np.uint8))
    before = files_under(tmp_path)
    code, out = predict(capsys, "--model", world["run"], "--input", folder, "--out", tmp_path / "out")
    assert code == 0
    df = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert sorted(df["id"]) == world["ids"]
    skipped = summary_of(out)["skipped"]
    assert sorted(Path(p).name for p in skipped["unreadable_image"]) == ["broken.png", "empty.png"]
    assert [Path(p).name for p in skipped["image_size"]] == ["wide.png"]
    # with --resize the wrong-size image is resized and predicted
    code, out = predict(capsys, "--model", world["run"], "--input", folder, "--out", tmp_path / "resized", "--resize")
    assert code == 0 and "wide" in set(pd.read_csv(tmp_path / "resized" / "predictions.csv")["id"])
    assert "image_size" not in summary_of(out)["skipped"]
    assert outside(before, tmp_path, tmp_path / "out", tmp_path / "resized") == []


def test_case18_an_output_folder_that_cannot_be_written_fails_before_any_work(world, tmp_path, capsys, caplog,
                                                                              monkeypatch, sample_dir):
    import tempfile

    import cnnrnn.cnnrnn.predict as P

    def no_work(*args, **kwargs):
        raise AssertionError("the inputs were read before the output folder was checked")

    monkeypatch.setattr(P, "collect_inputs", no_work)

    def only_error(argv, *expected):
        caplog.clear()
        assert cli.main(["-q", *map(str, argv)]) == 2, argv
        errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
        assert len(errors) == 1 and any(e in errors[0] for e in expected), errors

    # 1. a path under a regular file, and a regular file as --out
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    before = files_under(tmp_path)
    for argv in (["predict", "--model", world["run"], "--input", world["audio"], "--out", blocker / "out"],
                 ["split", "--corpus", "kemdy20", "--root", sample_dir, "--out", blocker / "out"],
                 ["filelists", "--corpus", "kemdy20", "--root", sample_dir, "--out", blocker / "out"]):
        only_error(argv, f"cannot write to the output folder {blocker / 'out'}: Not a directory")
    only_error(["predict", "--model", world["run"], "--input", world["audio"], "--out", blocker],
               f"output folder {blocker} is a file, not a folder")
    assert files_under(tmp_path) == before

    # 2. a read-only folder. Tests may run as root, whom chmod does not stop: then the folder's writes are made
    # to fail as a read-only folder's do (EACCES from the file system), which is what the check meets.
    run = tmp_path / "split"
    assert cli.main(["-q", "split", "--corpus", "kemdy20", "--root", str(sample_dir), "--out", str(run)]) == 0
    before = files_under(tmp_path)
    run.chmod(0o555)
    try:
        if os.access(run, os.W_OK):
            real = tempfile.mkstemp

            def read_only(*args, dir=None, **kwargs):
                if dir is not None and Path(dir).resolve().is_relative_to(run.resolve()):
                    raise PermissionError(13, "Permission denied", str(dir))
                return real(*args, dir=dir, **kwargs)

            monkeypatch.setattr(tempfile, "mkstemp", read_only)
        only_error(["spectrograms", "--out", run], f"cannot write to the output folder {run}: Permission denied")
        only_error(["predict", "--model", world["run"], "--input", world["audio"], "--out", run],
                   f"{run} is the output folder of a cnnrnn run, not of predictions",  # refused first
                   f"cannot write to the output folder {run}: Permission denied")
    finally:
        run.chmod(0o755)
    assert files_under(tmp_path) == before and not (run / A.SPECTROGRAM_DIR).exists()
