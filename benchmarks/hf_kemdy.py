"""Hugging Face TF text / speech / multimodal models (``cnnrnn.hf``) on the KEMDy20-layout corpus.

Built only from the package's own stages:

1. ``cnnrnn.corpora.kemdy_labels.process_labels`` on ``../shared/data/kemdy20-layout`` → ``new_data.csv``
   (rater-weighted labels; real EmoDB speech, 445 readable segments);
2. ``cnnrnn.hf.backbones.build_tiny_backbones``: small random-init RoBERTa (tokenizer trained on the
   transcripts) and wav2vec2 (the wav2vec2-base conv stack with 16 channels), saved and loaded by path;
   no pretrained weights are available offline;
3. ``cnnrnn.hf.train.train_fold`` on each of the 5 contiguous 20 % folds (the original protocol),
   ``task=total`` (emotion + valence/arousal heads trained jointly) for every modality (speech with both
   poolings: hidden-state mean, and the original's last CNN frame), and the single-task text models.
   Each run (all its folds) is one child process, so its peak RSS is its own.

The EmoDB sentences are the same ten German sentences spoken in every emotion, so the text carries no
emotion: the text models must sit at the majority-class rate, which is reported beside them ("chance").
Published KEMDy20 accuracies (large pretrained models and extra data) are listed for context only.

Run from the repository root (15 min measured on 2 shared cores)::

    nohup nice -n 10 python benchmarks/hf_kemdy.py > benchmarks/work/hf_kemdy.log 2>&1 &

Working files go to ``benchmarks/work/hf_kemdy/`` (git-ignored); results to
``benchmarks/results/hf_kemdy.json``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402
DEFAULT_DATA = REPO.parent / "shared" / "data" / "kemdy20-layout"
DEFAULT_WORK = REPO / "benchmarks" / "work" / "hf_kemdy"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "hf_kemdy.json"
N_FOLDS = 5
BACKBONE = {"hidden_size": 64, "layers": 2, "heads": 4, "max_len": 64}
TRAIN = {"epochs": 6, "batch_size": 16, "valid_batch_size": 16, "learning_rate": 5e-4, "loss": "plain"}
SPEC = {"max_len": 64, "max_seconds": 5.0, "proj_dim": 64, "speech_pooling": "mean"}
RUNS = [
    {"name": "text_total", "modality": "text", "task": "total"},
    {"name": "speech_total", "modality": "speech", "task": "total"},
    {"name": "speech_total_last_cnn", "modality": "speech", "task": "total", "speech_pooling": "last_cnn"},
    {"name": "multimodal_concat_total", "modality": "multimodal", "task": "total", "fusion": "concat"},
    {"name": "multimodal_add_total", "modality": "multimodal", "task": "total", "fusion": "add"},
    {"name": "text_classification", "modality": "text", "task": "classification"},
    {"name": "text_regression", "modality": "text", "task": "regression"},
]
PUBLISHED = {
    "note": "KEMDy20 accuracy reported for multimodal text+speech models built on large pretrained backbones "
            "(and extra data); the real KEMDy20 corpus, not this EmoDB stand-in. Not comparable: context only.",
    "vanilla_concat_fusion_accuracy": 0.718,
    "cross_attention_accuracy": 0.777,
    "mlp_mixer_accuracy": 0.789,
}
EMOTION_KEYS = ("accuracy", "balanced_accuracy", "f1_micro", "f1_macro")
REGRESSION_KEYS = ("mse", "pearson_r", "ccc")


def machine() -> dict:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"cpu_model": model, "cores": os.cpu_count(), "platform": platform.platform()}


def run_child(run: dict, data_csv: Path, backbones: Path, work: Path, result: Path) -> None:
    """Train/evaluate one run on every fold in this process; write fold metrics, step times, peak RSS."""
    import tf_keras as keras

    from cnnrnn.hf.config import load_config
    from cnnrnn.hf.data import read_new_data
    from cnnrnn.hf.train import train_fold

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times: list[float] = []

        def on_train_batch_begin(self, batch, logs=None):
            self.start = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    records, _ = read_new_data(data_csv)
    folds, step_times, first_steps = [], [], []
    for fold in range(N_FOLDS):
        model = {**SPEC, "task": run["task"], "modality": run["modality"], "fusion": run.get("fusion", "concat"),
                 "speech_pooling": run.get("speech_pooling", SPEC["speech_pooling"]),
                 "text_model": str(backbones / "text"), "speech_model": str(backbones / "speech")}
        cfg = load_config({"model": model, "train": {**TRAIN, "fold": fold, "folds": N_FOLDS}})
        timer = StepTimer()
        start = time.perf_counter()
        metrics = train_fold(records, cfg, work / run["name"] / f"fold{fold}", progress=False, callbacks=[timer])
        metrics["wall_s"] = round(time.perf_counter() - start, 1)
        metrics.pop("labels", None)
        folds.append(metrics)
        first_steps.append(timer.times[0])
        step_times.extend(timer.times[2:])  # the first steps trace the graph
        print(f"{run['name']} fold {fold}: {metrics['wall_s']} s", flush=True)
    result.write_text(json.dumps({
        "folds": folds, "step_s_median": float(np.median(step_times)),
        "step_s_p90": float(np.percentile(step_times, 90)),
        "first_step_s_mean": float(np.mean(first_steps)), "n_steps_timed": len(step_times),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


def _mean_std(values) -> dict | None:
    values = [v for v in values if v is not None]
    return {"mean": float(np.mean(values)), "std": float(np.std(values))} if values else None


def summarise(child: dict) -> dict:
    folds = child["folds"]
    out = {"n_test": [f["n"] for f in folds], "wall_s": [f["wall_s"] for f in folds]}
    if "emotion" in folds[0]:
        out["emotion"] = {k: _mean_std([f["emotion"][k] for f in folds]) for k in EMOTION_KEYS}
        out["emotion"]["per_fold_accuracy"] = [round(f["emotion"]["accuracy"], 4) for f in folds]
        out["confusion_matrix_pooled"] = np.sum([f["emotion"]["confusion_matrix"] for f in folds], axis=0).tolist()
    if "regression" in folds[0]:
        out["regression"] = {f"{target}_{k}": _mean_std([f["regression"][target][k] for f in folds])
                             for target in ("valence", "arousal") for k in REGRESSION_KEYS}
    out["train_step"] = {"batch_size": TRAIN["batch_size"], "median_s": round(child["step_s_median"], 4),
                         "p90_s": round(child["step_s_p90"], 4), "first_step_s": round(child["first_step_s_mean"], 2),
                         "n_steps": child["n_steps_timed"]}
    out["peak_rss_mib"] = round(child["peak_rss_mib"], 1)
    return out


def chance(records) -> dict:
    """Per fold: the majority-class rate of the test part (label taken from the training part), and the MSE of
    predicting the training mean valence/arousal."""
    from cnnrnn.hf.data import fold_split, va_targets
    from cnnrnn.hf.metrics import regression_metrics

    acc, mse = [], []
    for fold in range(N_FOLDS):
        train, test = fold_split(records, {"scheme": "contiguous", "folds": N_FOLDS, "fold": fold, "seed": None})
        labels = [records[i].labels[0] for i in train]
        majority = max(set(labels), key=labels.count)
        acc.append(float(np.mean([majority in records[i].labels for i in test])))
        truth = va_targets([records[i] for i in test])
        mean = va_targets([records[i] for i in train]).mean(axis=0)
        mse.append(regression_metrics(truth, np.tile(mean, (len(truth), 1)))["mse"])
    return {"majority_class_accuracy": _mean_std(acc), "per_fold_majority_accuracy": [round(a, 4) for a in acc],
            "train_mean_mse": _mean_std(mse)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--runs", nargs="*", default=[r["name"] for r in RUNS], help="run names to do")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data_csv, backbones = args.work / "new_data.csv", args.work / "backbones"
    if args.child:
        run = next(r for r in RUNS if r["name"] == args.child)
        run_child(run, data_csv, backbones, args.work, args.work / f"{run['name']}.json")
        return 0

    from cnnrnn.hf.backbones import build_tiny_backbones
    from cnnrnn.hf.data import read_new_data
    from cnnrnn.corpora.kemdy_labels import process_labels

    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    args.work.mkdir(parents=True, exist_ok=True)
    label_report = process_labels("kemdy20", args.data, data_csv)
    records, _ = read_new_data(data_csv)
    build_tiny_backbones(backbones, [r.text for r in records if r.text], **BACKBONE)
    results = {}
    for run in RUNS:
        if run["name"] not in args.runs:
            continue
        subprocess.run([sys.executable, __file__, "--work", str(args.work), "--child", run["name"]], check=True)
        child = json.loads((args.work / f"{run['name']}.json").read_text())
        results[run["name"]] = {**run, **summarise(child)}
    save_result({
        "benchmark": "hf_kemdy",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "nice -n 10 python benchmarks/hf_kemdy.py " + " ".join(sys.argv[1:]),
        "commit_at_start": commit.stdout.strip(),
        "machine": machine(),
        "load_avg_1min": {"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)},
        "shared_cpu": "other helpers' jobs shared the 2 CPU cores during this run; timings are indicative",
        "data": {"root": str(args.data), "n_records": len(records), "ties_before": label_report["ties_before"],
                 "ties_after": label_report["ties_after"], "label_counts": label_report["label_counts"]},
        "protocol": {"folds": "5 contiguous, non-overlapping 20% blocks in corpus order (the original's)",
                     "labels": "emotion_weighted of new_data.csv", "backbones": BACKBONE, "train": TRAIN,
                     "spec": SPEC, "init": "random (no pretrained weights offline)"},
        "chance": chance(records),
        "runs": results,
        "published_kemdy20": PUBLISHED,
        "wall_s": round(time.perf_counter() - started, 1),
        "note": "EmoDB sentences carry no emotion in their text, so the text models can only learn the label "
                "prior: they should sit at the majority-class rate. Small random-init models on 356 training "
                "utterances per fold; not comparable to the published KEMDy20 figures.",
    }, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
