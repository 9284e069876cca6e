"""Hostile-input cases 2, 5 and 6 of issue 12: configs and stage settings.

Audio: the bundled sample's real EmoDB recordings. No case trains a model; case 6 renders 14 small spectrograms.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ._common import case, cli, error_text, files, outside, sample, write_json


@case(2, "Checkpoint name outside `models/`",
      '`train.checkpoint_name` `"../../x{fold}.h5"` and `"x{k}.h5"`',
      "exit 2 at config load naming the key (path separator / unknown field `k`); nothing written")
def case_2(tmp: Path) -> dict:
    """train.checkpoint_name "../../x{fold}.h5" (writes outside models/) and "x{k}.h5" (KeyError traceback):
    both refused when the config is loaded, with the key and the name; nothing written."""
    out = tmp / "run"
    inputs = tmp / "inputs"
    observed, ok = [], True
    before = files(tmp)
    for name, words in (("../../x{fold}.h5", ("train.checkpoint_name", "path separator")),
                        ("x{k}.h5", ("train.checkpoint_name", "unknown field(s) ['k']"))):
        cfg = write_json(inputs / f"c{len(observed)}.json", {"extends": "tiny", "train": {"checkpoint_name": name}})
        code, _, logs = cli("train", "--out", out, "--config", cfg)
        observed.append(f"{name}: exit {code} {error_text(logs)}")
        ok &= code == 2 and all(w in logs for w in words) and "Traceback" not in logs
    written = outside(before, tmp, inputs, out)
    ok &= not written and not list(tmp.rglob("x1.h5"))
    return {"observed": "; ".join(observed), "passed": bool(ok), "outside_writes": written}


BAD_VALUES = [
    ({"train": {"learning_rate": float("nan")}}, "train.learning_rate"),
    ({"train": {"learning_rate": 0}}, "train.learning_rate"),
    ({"spectrogram": {"top_db": 0}}, "spectrogram.top_db"),
    ({"spectrogram": {"top_db": -10}}, "spectrogram.top_db"),
    ({"spectrogram": {"duration": float("nan")}}, "spectrogram.duration"),
    ({"spectrogram": {"duration": float("inf")}}, "spectrogram.duration"),
    ({"spectrogram": {"colormap": "rainbowz"}}, "spectrogram.colormap"),
    ({"spectrogram": {"n_fft": 4}}, "n_fft 4"),
    ({"train": {"bn_momentum": 5}}, "train.bn_momentum"),
    ({"train": {"seed": -1}}, "train.seed"),
]


@case(5, "Config values that cannot work",
      "`learning_rate` NaN / 0, `top_db` 0 / -10, `duration` NaN / inf, `colormap` unknown, `n_fft` 4, "
      "`bn_momentum` 5, `seed` -1",
      "each refused at load (exit 2) with the key and the value; no file written")
def case_5(tmp: Path) -> dict:
    """Config values that cannot work (learning_rate NaN / 0, top_db 0 / negative, duration NaN / inf, unknown
    colormap, n_fft 4, bn_momentum 5, seed -1): each refused at load time (exit 2) with the key and the value,
    before any file is written."""
    out = tmp / "out"
    inputs = tmp / "inputs"
    before = files(tmp)
    refused, missed = 0, []
    for i, (values, key) in enumerate(BAD_VALUES):
        cfg = write_json(inputs / f"bad{i}.json", values)
        code, _, logs = cli("split", "--corpus", "kemdy20", "--root", sample(), "--out", out, "--config", cfg)
        value = next(iter(next(iter(values.values())).values()))
        if code == 2 and key in logs and str(value).lower() in logs.lower() and "Traceback" not in logs:
            refused += 1
        else:
            missed.append(f"{values}: exit {code} {error_text(logs)}")
    written = sorted(str(p) for p in files(out)) if out.exists() else []
    outside_writes = outside(before, tmp, inputs, out)
    ok = refused == len(BAD_VALUES) and not written and not outside_writes
    observed = f"{refused}/{len(BAD_VALUES)} refused at load with key and value; files written: {len(written)}"
    if missed:
        observed += "; missed: " + " | ".join(missed)
    return {"observed": observed, "passed": bool(ok), "outside_writes": outside_writes}


@case(6, "A later stage changes earlier settings",
      "`train --config X` (other `top_db`) on a packed run; a failing `train --folds 20`",
      "refused naming `spectrogram.top_db` and `--force`, config.json untouched; `pack --force` re-renders")
def case_6(tmp: Path) -> dict:
    """On a packed run (split, spectrograms, pack with the tiny preset, 14 utterances): `train --config X` with
    another spectrogram.top_db is refused naming the key (config.json untouched); a failed `train --folds 20`
    leaves "folds": 2 in config.json; `pack --config X --force` re-renders, and config.json, the PNG stamp and
    the images then agree."""
    from cnnrnn.corpora import load_corpus

    inputs, out = tmp / "inputs", tmp / "run"
    utterances, _ = load_corpus("kemdy20", sample())
    picked = sorted(utterances, key=lambda u: u.id)[::len(utterances) // 14][:14]
    inputs.mkdir(parents=True)
    manifest = inputs / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "speaker", "session"])
        w.writerows([u.audio_path, u.emotion, u.speaker, u.session] for u in picked)
    before = files(tmp)
    observed, ok = [], True
    for argv in (["split", "--corpus", "manifest", "--root", manifest], ["spectrograms", "--workers", "1"], ["pack"]):
        code, _, logs = cli(*argv, "--out", out, "--config", "tiny")
        ok &= code == 0
        if code != 0:
            observed.append(f"{argv[0]} exit {code} {error_text(logs)}")
    recorded = (out / "config.json").read_bytes() if (out / "config.json").is_file() else b""
    other = write_json(inputs / "other.json", {"extends": "tiny", "spectrogram": {"top_db": 60, "workers": 1}})

    code, _, logs = cli("train", "--out", out, "--config", other)
    same = (out / "config.json").read_bytes() == recorded
    observed.append(f"train --config (top_db 60): exit {code}, config.json untouched {same}: {error_text(logs)[:160]}")
    ok &= code == 2 and "spectrogram.top_db: 80.0 -> 60" in logs and "--force" in logs and same

    code, _, logs = cli("train", "--out", out, "--folds", "20")
    folds = json.loads((out / "config.json").read_text())["train"]["folds"] if recorded else None
    observed.append(f"train --folds 20: exit {code}, config.json folds {folds}: {error_text(logs)}")
    ok &= code == 2 and folds == 2 and not (out / "models").exists()

    code, _, logs = cli("pack", "--out", out, "--config", other, "--force")
    top_db = json.loads((out / "config.json").read_text())["spectrogram"]["top_db"] if recorded else None
    stamp = out / "spectrograms" / "spectrogram_config.json"
    stamp_db = json.loads(stamp.read_text())["top_db"] if stamp.is_file() else None
    observed.append(f"pack --config --force: exit {code}, config.json top_db {top_db}, PNG stamp top_db {stamp_db}")
    ok &= code == 0 and top_db == 60 and stamp_db == 60
    written = outside(before, tmp, inputs, out)
    return {"observed": "; ".join(observed), "passed": bool(ok and not written), "outside_writes": written}
