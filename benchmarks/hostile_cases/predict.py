"""Hostile-input cases 8, 10, 11, 16, 17 and 18 of issue 12: models and inputs given to ``predict``.

The models are tiny Keras models (pooling + dense) saved as a CNNRNN run's ``.h5`` checkpoint; the audio is the
bundled sample's real EmoDB recordings.
"""
from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ._common import Outcome, case, cli, errors, files, outside, sample, sample_wavs

LABELS = ["angry", "happy", "neutral", "sad"]
CHECKPOINT = "CNN_RNN_fold1_epoch1_e4.h5"

if TYPE_CHECKING:
    import pandas as pd


def make_run(folder: Path, activation: str = "softmax") -> Path:
    """A CNNRNN run: labels.json, config.json (tiny preset), run.json, models/<checkpoint> of a tiny model."""
    import keras

    from cnnrnn import artifacts as A
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.runs import write_manifest

    cfg = load_config("tiny")
    h, w = cfg.spectrogram.image_size
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((h, w, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(len(LABELS), activation=activation,
                                                 kernel_initializer=keras.initializers.RandomNormal(stddev=3.0),
                                                 bias_initializer=keras.initializers.Constant(5.0))])
    (folder / "models").mkdir(parents=True)
    A.save_json({"labels": LABELS}, folder / A.LABELS_FILE)
    A.save_json(cfg.to_dict(), folder / A.CONFIG_FILE)
    ckpt = A.save_model_h5(model, folder / "models" / CHECKPOINT)
    write_manifest(folder, "cnnrnn", cfg.to_dict(), LABELS, checkpoints=[ckpt])
    return folder


def _audio(folder: Path) -> Path:
    """``folder`` with 4 of the sample's wav files."""
    folder.mkdir(parents=True, exist_ok=True)
    for w in sample_wavs(4):
        shutil.copy(w, folder / w.name)
    return folder


def _pngs(folder: Path) -> Path:
    """``folder`` with the tiny preset's spectrogram PNGs of 4 of the sample's wav files."""
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.features import audio_to_image, write_png

    cfg = load_config("tiny").spectrogram
    for w in sample_wavs(4):
        write_png(audio_to_image(w, cfg), folder / f"{w.stem}.png")
    return folder


def _predict(tmp: Path, model: Path, inputs: Path) -> tuple[Outcome, pd.DataFrame | None, list[str]]:
    """``predict --model MODEL --input INPUTS --out tmp/out``: its :class:`Outcome`, its predictions.csv (a
    DataFrame; None unless it exited 0 and wrote one) and the files it wrote under ``tmp`` outside ``tmp/out``."""
    import pandas as pd

    before, out = files(tmp), tmp / "out"
    outcome = cli("predict", "--model", model, "--input", inputs, "--out", out)
    table = out / "predictions.csv"
    df = pd.read_csv(table) if outcome.code == 0 and table.is_file() else None
    return outcome, df, outside(before, tmp, out)


@case(8, "A single-label model without a softmax",
      "a CNNRNN checkpoint whose last Dense layer is linear",
      "softmax applied with one warning; probabilities in [0, 1] summing to 1")
def case_8(tmp: Path) -> dict:
    """A single-label model without a softmax: its outputs get a softmax, with one warning."""
    run, audio = make_run(tmp / "run", "linear"), _audio(tmp / "audio")
    (code, _, logs), df, written = _predict(tmp, run / "models", audio)
    if df is None:
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    warnings = [line for line in logs.splitlines() if "not class probabilities" in line]
    p = df[[f"p_{x}" for x in LABELS]].to_numpy()
    ok = ((p >= 0).all() and (p <= 1).all() and abs(p.sum(axis=1) - 1).max() < 1e-4
          and df["confidence"].max() <= 1 and len(warnings) == 1)
    return {"observed": f"exit {code}; confidence {df['confidence'].min():.3f}..{df['confidence'].max():.3f}; "
                        f"{len(warnings)} warning: {warnings[0] if warnings else ''}",
            "passed": bool(ok), "outside_writes": written}


@case(10, "Audio and images in one folder",
      "`predict --input` on a folder holding 4 wavs and their `spectrograms/*.png`",
      "each utterance predicted once (its audio), the left-out images noted")
def case_10(tmp: Path) -> dict:
    """A folder holding audio and its spectrogram PNGs: each utterance is predicted once (its audio)."""
    run = make_run(tmp / "run")
    folder = _audio(tmp / "in")
    _pngs(folder / "spectrograms")
    (code, stdout, logs), df, written = _predict(tmp, run, folder)
    if df is None:
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    note = next((line for line in stdout.splitlines() if line.startswith("note: took")), "")
    ok = df["id"].is_unique and len(df) == 4 and df["source"].str.endswith(".wav").all() and "left out" in note
    return {"observed": f"exit 0; {len(df)} rows, {df['id'].nunique()} distinct ids; {note}", "passed": bool(ok),
            "outside_writes": written}


@case(11, "Refused and truncated pickles",
      "`predict --input` a pickle that would run `os.system`; a truncated pickle",
      "exit 2, one error line naming the file; nothing run")
def case_11(tmp: Path) -> dict:
    """A pickle refused by the safe loader and a truncated pickle: one line naming the file, exit 2."""
    import numpy as np

    run = make_run(tmp / "run")

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp / 'pwned'}",))

    evil = tmp / "evil_final.pickle"
    evil.write_bytes(pickle.dumps({"id": ["a"], "path": [Evil()], "emotion": [0]}))
    data = pickle.dumps({"id": ["a"], "path": np.zeros((1, 32, 64, 3), np.uint8), "emotion": [0]})
    truncated = tmp / "test_final.pickle"
    truncated.write_bytes(data[: len(data) // 2])
    before, out = files(tmp), tmp / "out"
    observed, ok = [], True
    for bad in (evil, truncated):
        code, _, logs = cli("predict", "--model", run, "--input", bad, "--out", out)
        lines = errors(logs)
        observed.append(f"{bad.name}: exit {code}; {lines[0] if lines else 'no error line'}")
        ok &= code == 2 and len(lines) == 1 and str(bad) in lines[0]
    ok &= not (tmp / "pwned").exists()
    return {"observed": " | ".join(observed), "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


@case(16, "A stale temporary checkpoint",
      "a half-written `.CNN_RNN_fold2_epoch1_e4.tmp.h5` in `models/` (a save killed half way)",
      "`predict --model models/` ignores it and deletes nothing; `train` removes it when it starts")
def case_16(tmp: Path) -> dict:
    """A checkpoint save killed half way leaves .<name>.tmp.h5 in models/: predict ignores it (and deletes
    nothing); a training run removes it when it starts."""
    import numpy as np

    import cnnrnn.cnnrnn.train as T
    from cnnrnn import artifacts as A

    run = make_run(tmp / "run")
    stale = run / "models" / ".CNN_RNN_fold2_epoch1_e4.tmp.h5"
    stale.write_bytes((run / "models" / CHECKPOINT).read_bytes()[:3000])
    wav = sample_wavs(1)[0]
    before, out = files(tmp), tmp / "out"
    code, _, logs = cli("predict", "--model", run / "models", "--input", wav, "--out", out)
    kept = stale.is_file()
    # training starts by removing it: stopped right after, before building a model
    A.save_pickle({"id": [f"u{i}" for i in range(8)], "path": np.zeros((8, 32, 64, 3), np.uint8),
                   "emotion": np.array([0, 1] * 4)}, run / A.FINAL_FILES["train"])
    saved = T.get_strategy

    def stop(*_args, **_kwargs):
        raise ValueError("stopped before building the model")

    T.get_strategy = stop
    try:
        _, _, tlogs = cli("train", "--out", run)
    finally:
        T.get_strategy = saved
    removed = not stale.exists()
    ok = code == 0 and (out / "predictions.csv").is_file() and kept and removed and "stopped before" in tlogs
    return {"observed": f"predict --model models/: exit {code} {errors(logs)}; temp file kept by predict: {kept}; "
                        f"removed when train starts: {removed}",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out, run)}


@case(17, "Bad PNGs in a predict folder",
      "a truncated PNG and a 32x128 PNG among 4 good ones",
      "both skipped and counted (`unreadable_image`, `image_size`); the 4 good ones predicted")
def case_17(tmp: Path) -> dict:
    """An unreadable and a wrong-size PNG among good ones: both skipped and counted, the rest predicted."""
    import cv2
    import numpy as np

    run = make_run(tmp / "run")
    folder = _pngs(tmp / "in")
    good = sorted(folder.glob("*.png"))
    (folder / "broken.png").write_bytes(good[0].read_bytes()[:40])
    cv2.imwrite(str(folder / "wide.png"), np.full((32, 128, 3), 80, np.uint8))
    (code, stdout, logs), df, written = _predict(tmp, run, folder)
    if df is None:
        return {"observed": f"exit {code}; {errors(logs)}", "passed": False, "outside_writes": written}
    ok = len(df) == len(good) and '"unreadable_image"' in stdout and '"image_size"' in stdout
    return {"observed": f"exit 0; {len(df)} of {len(good) + 2} predicted; skipped unreadable_image + image_size "
                        f"reported: {ok}", "passed": bool(ok), "outside_writes": written}


@case(18, "A read-only `--out`",
      "`spectrograms` and `predict` into a read-only output folder",
      "exit 2 at once, before any work, naming the folder")
def case_18(tmp: Path) -> dict:
    """A read-only --out: spectrograms and predict fail at once, before any work, naming the folder. As root
    (chmod does not stop root) the folder's file creation is made to fail with EACCES, as a read-only one's."""
    from cnnrnn.artifacts import SPECTROGRAM_DIR

    run = make_run(tmp / "run")
    audio = _audio(tmp / "audio")
    split, preds = tmp / "split", tmp / "preds"  # a run, and an (empty) folder for predictions
    cli("split", "--corpus", "kemdy20", "--root", sample(), "--out", split)
    preds.mkdir()
    before = files(tmp)
    for folder in (split, preds):
        folder.chmod(0o555)
    real = tempfile.mkstemp
    simulated = os.access(split, os.W_OK)
    if simulated:
        def read_only(*args, dir=None, **kwargs):
            if dir is not None and any(Path(dir).resolve().is_relative_to(f.resolve()) for f in (split, preds)):
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)

        tempfile.mkstemp = read_only
    try:
        results = [cli("spectrograms", "--out", split),
                   cli("predict", "--model", run, "--input", audio, "--out", preds)]
    finally:
        tempfile.mkstemp = real
        for folder in (split, preds):
            folder.chmod(0o755)
    observed = [f"exit {c}; {errors(logs)[0] if errors(logs) else 'no error'}" for c, _, logs in results]
    ok = all(c == 2 and len(errors(logs)) == 1 and "cannot write to the output folder" in logs
             for c, _, logs in results)
    ok &= not (split / SPECTROGRAM_DIR).exists()
    return {"observed": " | ".join(observed) + (" (read-only simulated: running as root)" if simulated else ""),
            "passed": bool(ok), "outside_writes": outside(before, tmp)}
