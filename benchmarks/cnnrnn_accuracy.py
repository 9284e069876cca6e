"""CNNRNN (ResNet50+LSTM) accuracy on EmoDB, speaker-independent 5-fold cross-validation.

Built only from the package's own stages:

1. ``cnnrnn.corpora.read_corpus("emodb", root)``: 535 utterances, 10 speakers,
   7 emotions (label from the 6th character of the file name);
2. ``cnnrnn.cnnrnn.data.extract_spectrograms`` + ``load_images``: log-mel PNGs
   read back into one uint8 array;
3. ``cnnrnn.cnnrnn.train.cross_validate`` with ``fold_scheme="speaker"`` (folds from
   ``StratifiedGroupKFold`` over the speakers, so no speaker is in both the
   training and the scored part of a fold) and ``monitor="last"`` (the final
   epoch is scored: neither the checkpoint nor the epoch is chosen on the
   scored fold).

The speakers of every fold are read back from ``<work>/cv/folds/fold{k}.json``
(``val_ids_index``) and checked. Per-fold and mean UA, WA and F1-macro, the
pooled confusion matrix, wall times and the full config go to
``benchmarks/results/cnnrnn_accuracy.json``.

No ImageNet weights are available offline here, so the backbone starts from
random weights (``weights="none"``) and the run is sized for a 2-core CPU
(about 24 minutes measured): small images and few epochs. It is a check that the
package trains and evaluates correctly on real speech, not a reproduction of
published numbers (the DCNN-BLSTMwA paper reports 87.86 % UAR on EmoDB with
ImageNet-pretrained weights).

Run from the repository root (about 24 min on 2 cores)::

    nohup python benchmarks/cnnrnn_accuracy.py > benchmarks/work/accuracy.log 2>&1 &

Intermediate files (PNGs, checkpoints, TensorBoard logs) go to
``benchmarks/work/accuracy/`` (git-ignored). A rerun with the same config
resumes after the last finished fold; a changed config starts afresh.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402
DEFAULT_DATA = REPO.parent / "shared" / "data" / "emodb-535"
DEFAULT_WORK = REPO / "benchmarks" / "work" / "accuracy"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "cnnrnn_accuracy.json"
EMODB_SPEAKERS = ["03", "08", "09", "10", "11", "12", "13", "14", "15", "16"]
PAPER_NOTE = ("The DCNN-BLSTMwA paper reports 87.86% UAR on EmoDB with ImageNet-pretrained weights (and a different, "
              "attention-based model). This CPU run trains ResNet50+LSTM from random weights (weights='none'; no "
              "ImageNet weights are available offline here), at a small image size and few epochs to fit ~30 min "
              "on 2 cores, so its numbers are not comparable to that figure.")

# Sized for ~30 min on 2 CPU cores: 5 folds x 16 epochs x ~27 steps of batch 16 at 64x128 (~0.6-0.7 s a step).
# Every EmoDB file here is exactly 2.00 s, so duration 2.0 avoids an image that is half zero padding;
# n_fft 1024 / hop 256 gives 126 frames, 64 mel bands give the image height without vertical resizing.
SPECTROGRAM = {"sr": 16000, "n_fft": 1024, "hop_length": 256, "n_mels": 64, "fmin": 0.0, "fmax": None,
               "top_db": 80.0, "duration": 2.0, "image_size": [64, 128], "colormap": "magma", "workers": 0}
TRAIN = {"folds": 5, "epochs": 16, "batch_size": 16, "learning_rate": 1e-4, "beta_1": 0.9, "beta_2": 0.999,
         "lstm_units": 128, "dropout": 0.3, "bn_momentum": 0.9, "weights": "none", "fold_scheme": "speaker",
         "seed": 42,
         "monitor": "last", "checkpoint_name": "CNN_RNN_fold{fold}_epoch{epochs}_e4.h5"}

log = logging.getLogger("benchmarks.accuracy")


def machine_info() -> dict:
    cpu, ram = "unknown", None
    try:
        cpu = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                   if ln.startswith("model name"))
        ram = next(round(int(ln.split()[1]) / 1024 ** 2, 1) for ln in Path("/proc/meminfo").read_text().splitlines()
                   if ln.startswith("MemTotal:"))
    except (OSError, StopIteration):
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu, "ram_gib": ram, "platform": platform.platform()}


def versions() -> dict:
    import cv2
    import keras
    import librosa
    import sklearn
    import tensorflow as tf

    import cnnrnn

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "keras": keras.__version__,
            "numpy": np.__version__, "librosa": librosa.__version__, "opencv": cv2.__version__,
            "scikit-learn": sklearn.__version__, "cnnrnn": cnnrnn.__version__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB wav folder (default: %(default)s)")
    ap.add_argument("--work", default=str(DEFAULT_WORK), help="PNGs, checkpoints, logs (default: %(default)s)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default: %(default)s)")
    ap.add_argument("--epochs", type=int, default=TRAIN["epochs"], help="epochs per fold (default %(default)s)")
    ap.add_argument("--image-size", type=int, nargs=2, default=SPECTROGRAM["image_size"], metavar=("H", "W"))
    ap.add_argument("--n-mels", type=int, default=SPECTROGRAM["n_mels"])
    ap.add_argument("--fresh", action="store_true", help="delete earlier outputs in --work first")
    ap.add_argument("--keep-checkpoints", action="store_true", help="keep the per-fold .h5 files (~100 MB each)")
    args = ap.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.corpora import read_corpus
    from cnnrnn.evaluation import classification_metrics
    from cnnrnn.cnnrnn.data import extract_spectrograms, load_images

    spec = dict(SPECTROGRAM, image_size=list(args.image_size), n_mels=args.n_mels)
    train = dict(TRAIN, epochs=args.epochs)
    cfg = load_config({"spectrogram": spec, "train": train})  # validated dataclasses
    work = Path(args.work)
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    cfg_file = work / "config.json"
    if cfg_file.is_file() and json.loads(cfg_file.read_text()) != cfg.to_dict():
        log.info("config changed since the last run in %s: starting afresh", work)
        shutil.rmtree(work)
        work.mkdir(parents=True)
    cfg.save(cfg_file)
    timings = {}
    t_all = time.perf_counter()

    # 1. corpus
    utts = read_corpus("emodb", args.data)
    labels = sorted({u.emotion for u in utts})
    y = np.array([labels.index(u.emotion) for u in utts], dtype=np.int32)
    speakers = [u.speaker for u in utts]
    log.info("%d utterances, %d speakers, labels %s", len(utts), len(set(speakers)), labels)

    # 2. spectrogram PNGs, then one uint8 array (before TensorFlow is imported, so the pool can fork)
    t0 = time.perf_counter()
    png_dir = work / "spectrograms"
    report = extract_spectrograms([(u.id, u.audio_path) for u in utts], png_dir, cfg.spectrogram,
                                  overwrite=True, progress=False)
    if report.failed:
        raise SystemExit(f"spectrogram extraction failed: {report.to_dict()}")
    images = load_images([png_dir / f"{u.id}.png" for u in utts], size=cfg.spectrogram.image_size, progress=False)
    timings["spectrograms_seconds"] = round(time.perf_counter() - t0, 2)
    log.info("images %s in %.1f s", images.shape, timings["spectrograms_seconds"])

    # 3. speaker-independent CV
    from cnnrnn.cnnrnn.train import cross_validate

    t0 = time.perf_counter()
    cv = cross_validate(images, y, labels, work / "cv", cfg.train, groups=speakers, verbose=2)
    timings["cross_validate_seconds"] = round(time.perf_counter() - t0, 2)

    # 4. read the folds back: speakers per fold, disjointness, metrics
    spk = np.asarray(speakers)
    folds, notes, pooled_cm = [], [], np.zeros((len(labels), len(labels)), dtype=np.int64)
    val_seen = Counter()
    for k in range(1, cfg.train.folds + 1):
        fj = json.loads((work / "cv" / "folds" / f"fold{k}.json").read_text())
        va = np.asarray(fj["val_ids_index"], dtype=np.int64)
        tr = np.setdiff1d(np.arange(len(utts)), va)
        val_spk, train_spk = sorted(set(spk[va])), sorted(set(spk[tr]))
        overlap = sorted(set(val_spk) & set(train_spk))
        val_seen.update(va.tolist())
        if overlap:
            notes.append(f"fold {k}: speaker(s) {overlap} in both train and test")
        if len(val_spk) != 2:
            notes.append(f"fold {k}: StratifiedGroupKFold put {len(val_spk)} speakers in the test part, not 2")
        cm = np.asarray(fj["confusion_matrix"], dtype=np.int64)
        pooled_cm += cm
        history = work / "cv" / "history" / f"fold{k}.csv"
        last_train_acc = None
        if history.is_file():
            import pandas as pd

            h = pd.read_csv(history)
            if len(h) and "accuracy" in h:
                last_train_acc = round(float(h["accuracy"].iloc[-1]), 4)
        folds.append({
            "fold": k, "test_speakers": val_spk, "train_speakers": train_spk, "speaker_overlap": overlap,
            "n_train": fj["n_train"], "n_test": fj["n_val"],
            "test_label_counts": {labels[c]: int(n) for c, n in sorted(Counter(y[va].tolist()).items())},
            "ua": round(fj["ua"], 4), "wa": round(fj["wa"], 4), "f1_macro": round(fj["f1_macro"], 4),
            "scored_epoch": fj["best_epoch"], "final_train_accuracy": last_train_acc,
            "seconds": fj["seconds"], "confusion_matrix": fj["confusion_matrix"],
        })
    if sorted(val_seen) != list(range(len(utts))) or max(val_seen.values()) != 1:
        notes.append("the test parts of the folds do not partition the corpus exactly once")
    all_test_spk = sorted(s for f in folds for s in f["test_speakers"])
    if all_test_spk != sorted(EMODB_SPEAKERS):
        notes.append(f"test speakers over all folds are {all_test_spk}, expected each of {EMODB_SPEAKERS} once")
    if not notes:
        notes.append("every fold tests exactly 2 speakers, none of whom is in its training part; "
                     "each of the 10 speakers is tested exactly once")

    # pooled metrics from the summed confusion matrix (every utterance scored once, by the fold that held it out)
    y_true = np.repeat(np.arange(len(labels)), pooled_cm.sum(axis=1))
    y_pred = np.concatenate([np.repeat(np.arange(len(labels)), row) for row in pooled_cm])
    pooled = classification_metrics(y_true, y_pred, len(labels))
    mean = {m: {"mean": round(float(np.mean([f[m] for f in folds])), 4),
                "std": round(float(np.std([f[m] for f in folds])), 4)} for m in ("ua", "wa", "f1_macro")}
    timings["total_seconds"] = round(time.perf_counter() - t_all, 2)

    result = {
        "benchmark": "cnnrnn_accuracy",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {"folder": str(Path(args.data).resolve()), "n_utterances": len(utts),
                 "speakers": sorted(set(speakers)), "labels": labels,
                 "label_counts": {labels[c]: int(n) for c, n in sorted(Counter(y.tolist()).items())}},
        "protocol": ("speaker-independent 5-fold CV: cnnrnn.cnnrnn.train.cross_validate with fold_scheme="speaker" "
                     "(StratifiedGroupKFold over speakers), monitor='last' (final epoch scored, no epoch or "
                     "checkpoint chosen on the scored fold). Each fold's test part is scored once."),
        "machine": machine_info(),
        "versions": versions(),
        "config": cfg.to_dict(),
        "folds": folds,
        "mean_over_folds": mean,
        "pooled_over_folds": {"ua": round(pooled["ua"], 4), "wa": round(pooled["wa"], 4),
                              "f1_macro": round(pooled["f1_macro"], 4),
                              "confusion_matrix": pooled["confusion_matrix"]},
        "chance": {"ua": round(1 / len(labels), 4),
                   "wa_majority_class": round(max(Counter(y.tolist()).values()) / len(y), 4)},
        "fold_checks": notes,
        "cv_report_mean": cv.get("mean"),
        "timings": timings,
        "note": PAPER_NOTE,
    }
    out = Path(args.out)
    save_result(result, out)
    if not args.keep_checkpoints:
        for ckpt in (work / "cv" / "models").glob("*.h5"):
            ckpt.unlink()
    log.info("UA %.3f±%.3f WA %.3f±%.3f F1-macro %.3f±%.3f; %s", mean["ua"]["mean"], mean["ua"]["std"],
             mean["wa"]["mean"], mean["wa"]["std"], mean["f1_macro"]["mean"], mean["f1_macro"]["std"], notes)
    print(json.dumps({"mean_over_folds": mean, "pooled": result["pooled_over_folds"] | {"confusion_matrix": None},
                      "timings": timings, "fold_checks": notes}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
