"""ANN (raw waveform) and CNN (spectrogram) baselines on FSDD: accuracy, and ANN throughput / peak memory.

Two parts, each a subcommand, both built only from :mod:`cnnrnn.baselines.train` (``train``):

``accuracy``
    FSDD (3,000 real clips, 6 speakers, 10 digits, 8 kHz; ``--data``), the models of :data:`MODELS`, each a
    baselines preset plus fixed overrides: ``ann`` / ``cnn`` (the tutorial's settings: ANN 44.1 kHz x 4 s, CNN
    log-mel at 22,050 Hz; Adam 1e-3, batch 32, 5 epochs), ``cnn_recipe`` (the ``cnn_recipe`` preset: ``cnn``
    plus per-speaker log-mel normalisation and SpecAugment) and ``cnn_specaug`` (the same without speaker
    normalisation, the tutorial's scaling: the figure without the transductive statistics). Nothing is chosen on
    the scored speakers: the preset's settings, the last epoch scored. Protocols: the tutorial's random
    stratified 8:2 split, and speaker-independent leave-one-speaker-out (one speaker held out per fold, every
    model per fold, speakers in sorted order; ``--folds`` caps the number of folds and no new fold starts
    after ``--max-minutes``, so the JSON says how many folds ran). The features are decoded
    once per model into a shared cache and reused by every run. Finished runs are skipped on a
    rerun (their ``metrics.json`` is read back). Results: ``benchmarks/results/baselines_accuracy.json``.

``memory``
    ANN training throughput (clips/s) and peak RSS on N-clip sets made of FSDD repeated (a manifest
    CSV cycling through the 3,000 files, so every row is decoded and resampled to 44.1 kHz x 4 s
    = 176,400 samples), one fresh subprocess per size (``--sizes 1000 5000``), one epoch each. The
    peak RSS is the child's ``ru_maxrss``; the JSON also gives what holding the set as float32 would
    cost. Results: ``benchmarks/results/baselines_memory.json``.

Run from the repository root, niced (the CPU is shared)::

    nice -n 10 python benchmarks/baselines.py accuracy
    nice -n 10 python benchmarks/baselines.py accuracy --models cnn_recipe --loso-models cnn_recipe --max-minutes 60
    nice -n 10 python benchmarks/baselines.py memory --sizes 1000 5000

Working files (caches, run folders, manifests) go to ``benchmarks/work/baselines/`` (git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402
DEFAULT_DATA = REPO.parent / "shared" / "data" / "fsdd"
WORK = REPO / "benchmarks" / "work" / "baselines"
RESULTS = REPO / "benchmarks" / "results"
TUTORIAL = {"ann": 0.1886, "cnn": 0.9121, "dataset": "UrbanSound8K practice set (5,435 clips, 10 classes), "
            "random 8:2 split, validation accuracy (README of the Korean PyTorch tutorial "
            "'디지털사운드 ANN과 CNN을 활용하여 음성 분류 인공지능 제작')"}
#: Benchmark model key -> (baselines preset, fixed config overrides). Run folders: ``WORK/accuracy/<key>/``.
MODELS = {
    "ann": ("ann", {}),
    "cnn": ("cnn", {}),
    "cnn_recipe": ("cnn_recipe", {}),
    "cnn_specaug": ("cnn_recipe", {"normalization": "none"}),
}
SHARED_NOTE = ("The 2 CPU cores may be shared with other jobs: load_1min_before / load_1min_after give the load "
               "around the run, and wall times and clips/s are those of that machine.")


def header(command: list[str]) -> dict:
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
            "command": " ".join(command), "load_1min_before": round(os.getloadavg()[0], 2), "note": SHARED_NOTE}


def peak_rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


# --------------------------------------------------------------------------- accuracy
def train_once(model: str, name: str, data: Path, force: bool, **overrides) -> dict:
    """One run of ``cnnrnn.baselines.train.train`` for the benchmark model ``model`` (a key of :data:`MODELS`);
    a finished run's metrics.json is read back instead."""
    from cnnrnn.baselines.train import train

    preset, fixed = MODELS[model]
    out = WORK / "accuracy" / model / name
    if (out / "metrics.json").is_file() and not force:
        report = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    else:
        started = time.perf_counter()
        report = train("fsdd", data, out, config=preset, cache_dir=WORK / "cache", progress=False, verbose=0,
                       **fixed, **overrides)
        report["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"{model} {name}: acc {report['accuracy']:.4f} UA {report['ua']:.4f} F1 {report['f1_macro']:.4f} "
          f"({report['train_seconds']} s training)", flush=True)
    return {k: report.get(k) for k in ("accuracy", "ua", "f1_macro", "n_train", "n_val", "val_speakers",
                                       "train_seconds", "train_clips_per_s", "wall_seconds", "cache",
                                       "confusion_matrix")}


def run_accuracy(args) -> dict:
    """Random 8:2 for every model, then LOSO folds (every model per held-out speaker) until the time budget ends."""
    from cnnrnn.baselines.config import load_baseline_config
    from cnnrnn.corpora import load_corpus
    from cnnrnn.evaluation import summarise_folds

    started = time.perf_counter()
    result = header(sys.argv)
    speakers = sorted({u.speaker for u in load_corpus("fsdd", args.data)[0]})[: args.folds]
    result.update({"data": str(args.data), "tutorial": TUTORIAL, "budget_minutes": args.max_minutes})
    runs = {m: {"random": train_once(m, "random", args.data, args.force, split="random")} for m in args.models}
    for speaker in speakers:  # finished folds are read back; new ones start only within the budget
        for m in args.models:
            name = f"loso_{speaker}"
            finished = (WORK / "accuracy" / m / name / "metrics.json").is_file() and not args.force
            in_budget = (time.perf_counter() - started) / 60 <= args.max_minutes
            if finished or (m in args.loso_models and in_budget):
                runs[m][name] = train_once(m, name, args.data, args.force, split="speaker", holdout_speaker=speaker)
    done = {m: [k[5:] for k in runs[m] if k.startswith("loso_")] for m in args.models}
    result["speakers_held_out"] = done
    result["loso_models_trained_this_run"] = args.loso_models
    result["models"] = {}
    for m in args.models:
        folds = {k: v for k, v in runs[m].items() if k.startswith("loso_")}
        preset, fixed = MODELS[m]
        cfg = load_baseline_config(preset, **fixed)
        result["models"][m] = {
            "preset": preset, "overrides": fixed,
            "recipe": {k: getattr(cfg, k) for k in ("normalization", "freq_masks", "freq_mask_width", "time_masks",
                                                    "time_mask_width", "epochs")},
            "random_8_2": runs[m]["random"],
            "speaker_independent": {"n_folds": len(folds), "folds": folds,
                                    "mean": summarise_folds(list(folds.values()), ("accuracy", "ua", "f1_macro"))}
            if folds else None,
        }
    result["wall_minutes"] = round((time.perf_counter() - started) / 60, 1)
    result["peak_rss_mib"] = peak_rss_mib()
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    if args.out.is_file():  # runs read back were trained by earlier invocations: keep their headers
        earlier = json.loads(args.out.read_text(encoding="utf-8"))
        for m in sorted(set(earlier.get("models", {})) - set(args.models)):  # models not run now keep theirs
            result["models"][m] = earlier["models"][m]
            if m in MODELS:
                result["models"][m].setdefault("preset", MODELS[m][0])
            result["models"][m].setdefault("measured", {k: earlier.get(k) for k in ("date", "machine", "command")})
            result["speakers_held_out"][m] = earlier["speakers_held_out"].get(m, [])
        keys = ("date", "command", "load_1min_before", "load_1min_after", "wall_minutes", "speakers_held_out")
        result["earlier_invocations"] = earlier.get("earlier_invocations", []) + [
            {k: earlier.get(k) for k in keys}]
    order = [m for m in MODELS if m in result["models"]] + sorted(set(result["models"]) - set(MODELS))
    result["models"] = {m: result["models"][m] for m in order}
    result["speakers_held_out"] = {m: result["speakers_held_out"][m] for m in order if m in result["speakers_held_out"]}
    return result


# --------------------------------------------------------------------------- memory
def run_memory_child(args) -> dict:
    """One size, in its own process: build the manifest, train the ANN for one epoch, report RSS."""
    from cnnrnn.baselines.train import train
    from cnnrnn.corpora import load_corpus

    files, _ = load_corpus("fsdd", args.data)
    manifest = WORK / "memory" / f"fsdd_x{args.n}.csv"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,speaker"] + [f"{u.audio_path},{u.emotion},{u.speaker}"
                                     for u in (files[i % len(files)] for i in range(args.n))]
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    rss_before = peak_rss_mib()
    started = time.perf_counter()
    report = train("manifest", manifest, WORK / "memory" / f"run_{args.n}", config="ann", epochs=1,
                   progress=False, verbose=0)
    return {"n_clips": args.n, "n_train": report["n_train"], "n_val": report["n_val"],
            "cache_seconds": report["cache"]["seconds"], "cache_reused": report["cache"]["reused"],
            "cache_file_mib": round(Path(report["cache"]["file"]).stat().st_size / 2 ** 20, 1),
            "train_seconds_1_epoch": report["train_seconds"], "train_clips_per_s": report["train_clips_per_s"],
            "wall_seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mib_before_training": rss_before, "peak_rss_mib": peak_rss_mib(),
            "float32_in_memory_mib": round(args.n * 176400 * 4 / 2 ** 20, 1)}


def run_memory(args) -> dict:
    result = header(sys.argv)
    result.update({"data": str(args.data), "model": "ann preset (44.1 kHz x 4 s = 176,400 samples, hidden 256/128, "
                   "batch 32), 1 epoch, random 8:2 split", "sizes": []})
    for n in args.sizes:
        cmd = [sys.executable, __file__, "memory-child", "--n", str(n), "--data", str(args.data)]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        size = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps(size), flush=True)
        result["sizes"].append(size)
    result["load_1min_after"] = round(os.getloadavg()[0], 2)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="part", required=True)
    p = sub.add_parser("accuracy", help="FSDD accuracy: random 8:2 and leave-one-speaker-out")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--models", nargs="+", default=["ann", "cnn"], choices=list(MODELS),
                   help="models to run (keys of MODELS: a preset plus fixed overrides); the results of the others are kept from the existing --out JSON")
    p.add_argument("--folds", type=int, default=6, help="speakers held out, one per fold (FSDD has 6)")
    p.add_argument("--loso-models", nargs="+", default=["ann", "cnn"], choices=list(MODELS),
                   help="models that may train new LOSO folds (finished folds of every model are reported)")
    p.add_argument("--max-minutes", type=float, default=15.0,
                   help="start no new LOSO fold after this many minutes (finished runs are kept and reused)")
    p.add_argument("--force", action="store_true", help="retrain runs that already finished")
    p.add_argument("--out", type=Path, default=RESULTS / "baselines_accuracy.json")
    p = sub.add_parser("memory", help="ANN clips/s and peak RSS at several set sizes")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--out", type=Path, default=RESULTS / "baselines_memory.json")
    p = sub.add_parser("memory-child", help=argparse.SUPPRESS)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--n", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if args.part == "memory-child":
        print(json.dumps(run_memory_child(args)))
        return 0

    result = run_accuracy(args) if args.part == "accuracy" else run_memory(args)
    print(save_result(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
