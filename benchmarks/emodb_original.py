"""The ``best`` CNNRNN recipe trained on 8 EmoDB speakers, predicting the full-length original recordings of the two
others (``../shared/data/emodb-original``: speakers 03 and 09, 92 files of 1.4–5.3 s) as a user would.

Training: the recipe of a benchmark entry (default ``cnnrnn_whisper_ms_l2``, the ``best`` preset) on every
``emodb-535`` utterance of speakers 08 10 11 12 13 14 15 16 (:func:`build_shipped_model.build` on that subset:
the entry's fixed epochs, no choice made on 03 or 09). Prediction: ``cnnrnn predict`` on the original files, in
windows of the model's 2 s clip where longer (the default), once per speaker folder with ``--speaker`` and once on
all files without a speaker (each file then gets the training data's global statistics). Reported: UA, WA, F1-macro
of both, the date, machine, load and CPU seconds, in ``results/emodb_original.json``. Run from the repository root::

    nice -n 10 python benchmarks/emodb_original.py
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402

ORIGINAL = REPO.parent / "shared" / "data" / "emodb-original"
EMODB535 = REPO.parent / "shared" / "data" / "emodb-535"
WORK = REPO / "benchmarks" / "work" / "emodb_original"
HELD_OUT = ("03", "09")


def _cpu() -> float:
    r, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime + c.ru_utime + c.ru_stime


def train_model(entry: str) -> Path:
    """The entry's recipe trained on the 8 other speakers of emodb-535, as a run folder under ``WORK``."""
    import build_shipped_model

    subset = WORK / "emodb535_8speakers"
    shutil.rmtree(subset, ignore_errors=True)
    subset.mkdir(parents=True)
    for wav in EMODB535.glob("*.wav"):
        if wav.name[:2] not in HELD_OUT:
            (subset / wav.name).symlink_to(wav)
    name = "emodb8_benchmark"
    built = build_shipped_model.build(entry, subset, None, name=name)
    target = WORK / "model"
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(built), str(target))
    return target


def predict(model: Path, inputs: Path, out: Path, speaker: str | None) -> None:
    cmd = [sys.executable, "-m", "cnnrnn.cli", "-q", "predict", "--model", str(model), "--input", str(inputs),
           "--out", str(out)] + (["--speaker", speaker] if speaker else [])
    subprocess.run(cmd, check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def main(argv=None) -> int:
    import pandas as pd

    from cnnrnn.corpora import canonical_emotion, label_order, load_corpus
    from cnnrnn.evaluation import classification_metrics

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entry", default="cnnrnn_whisper_ms_l2")
    args = ap.parse_args(argv)
    started, wall, load_before = _cpu(), time.perf_counter(), os.getloadavg()[0]
    model = train_model(args.entry)
    utts, _ = load_corpus("emodb", ORIGINAL)
    labels = label_order("emodb", {u.emotion for u in utts})
    truth = {u.id: canonical_emotion(u.emotion) for u in utts}
    folders = {}
    for u in utts:
        folder = WORK / "input" / u.speaker
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / Path(u.audio_path).name
        if not link.exists():
            link.symlink_to(u.audio_path)
        folders[u.speaker] = folder
    results = {}
    for how in ("with_speaker", "without_speaker"):
        out = WORK / f"pred_{how}"
        shutil.rmtree(out, ignore_errors=True)
        tables = []
        if how == "with_speaker":
            for speaker, folder in sorted(folders.items()):
                predict(model, folder, out / speaker, speaker)
                tables.append(pd.read_csv(out / speaker / "predictions.csv"))
        else:
            predict(model, WORK / "input", out, None)
            tables.append(pd.read_csv(out / "predictions.csv"))
        table = pd.concat(tables)
        ids = [str(i) for i in table["id"]]
        y_true = np.array([labels.index(truth[i]) for i in ids])
        y_pred = np.array([labels.index(canonical_emotion(p)) for p in table["predicted"]])
        metrics = classification_metrics(y_true, y_pred, len(labels))
        results[how] = {k: round(float(metrics[k]), 4) for k in ("ua", "wa", "f1_macro")}
        results[how]["n"] = int(len(table))
        results[how]["normalization"] = sorted(set(table["normalization"]))
    result = {"benchmark": "emodb_original", "entry": args.entry, "trained_on": "emodb-535 speakers "
              "08 10 11 12 13 14 15 16 (all their utterances)", "predicted": "emodb-original speakers 03 and 09, full "
              "length, in windows of the model's 2 s clip (cnnrnn predict's default)", "results": results,
              "targets": {"with_speaker": 0.85, "without_speaker": 0.80},
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "command": " ".join(["python"] + sys.argv), "cpu_seconds": round(_cpu() - started, 1),
              "wall_seconds": round(time.perf_counter() - wall, 1), "load_before": round(load_before, 2),
              "load_after": round(os.getloadavg()[0], 2)}
    save_result(result, REPO / "benchmarks" / "results" / "emodb_original.json")
    for how, r in results.items():
        print(f"{how}: UA {r['ua']:.3f} WA {r['wa']:.3f} F1-macro {r['f1_macro']:.3f} (n {r['n']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
