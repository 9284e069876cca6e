"""Memory at corpus scale: peak RSS and wall time of ``cnnrnn spectrograms``, ``pack`` and one epoch of ``train`` at
2,140 and 8,560 utterances (``emodb-535`` repeated under new ids: hard links ``r{k}_<name>.wav`` and a manifest CSV).

Every stage runs as its own ``python -m cnnrnn`` process, as a user runs it. While it runs, the script reads
``VmHWM`` (the kernel's peak resident set size) from ``/proc/<pid>/status`` of the stage's main process and of every
process under it (the spectrogram workers) every 50 ms; it reports the main process' peak and the largest worker's.
A forked worker's RSS counts the pages it shares with its parent.

Settings: the default ``SpectrogramConfig`` (16 kHz, n_fft 2048, hop 512, 128 mels, 4 s, 224x224, magma: 147 KiB per
image), the per-session 8:2 split; ``pack`` writes the arrays' ``*_final.pickle`` too (its default); ``train`` is a
2-fold cross-validation, one epoch per fold, of a small compact CNN + LSTM (filters 8-16-32-32, LSTM 16, batch 32,
the last epoch kept: the model is not what is measured, the data path is). ``--contrast`` also trains from
``train_final.pickle`` as before the packed arrays (the same run's files without ``train_images.npy``), so the two
data paths are measured side by side.

The target (issue 14): peak RSS of ``pack`` + ``train`` at 4x the corpus within 1.25x of its value at 1x.

Run from the repository root (about 15 minutes on a loaded 2-core machine; 4 GB of disk under ``--work``)::

    nice python benchmarks/scale_memory.py
    python benchmarks/scale_memory.py --sizes 2140 8560 --no-contrast --keep
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402
from spectrogram_throughput import DEFAULT_DATA, git_commit, list_wavs, loadavg, repeated_corpus  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "scale_memory.json"
DEFAULT_WORK = REPO / "benchmarks" / "work" / "scale_memory"
TRAIN = {"folds": 2, "epochs": 1, "batch_size": 32, "backbone": "compact", "filters": [8, 16, 32, 32],
         "lstm_units": 16, "bn_momentum": 0.9, "selection": "fold", "monitor": "last"}


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            kids = [int(c) for t in Path(f"/proc/{p}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def run_stage(argv: list[str], env: dict) -> dict:
    """Run ``python -m cnnrnn -q *argv``; its wall time and peak RSS (``VmHWM``) of main and workers, in MiB."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "cnnrnn", "-q", *argv], cwd=str(REPO), env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    main_hwm, workers = 0, {}
    while proc.poll() is None:
        main_hwm = max(main_hwm, _status_kib(proc.pid, "VmHWM") or 0)
        for kid in _descendants(proc.pid):
            hwm = _status_kib(kid, "VmHWM")
            if hwm:
                workers[kid] = max(workers.get(kid, 0), hwm)
        time.sleep(0.05)
    seconds = time.perf_counter() - t0
    out, err = proc.communicate()
    if proc.returncode != 0:
        sys.stderr.write(out[-3000:] + err[-3000:])
        raise SystemExit(f"`cnnrnn {' '.join(argv)}` failed with exit code {proc.returncode}")
    return {"seconds": round(seconds, 2), "peak_rss_main_mib": round(main_hwm / 1024, 1),
            "peak_rss_largest_worker_mib": round(max(workers.values(), default=0) / 1024, 1),
            "n_workers_seen": len(workers)}


def one_size(n: int, args, env: dict) -> dict:
    base = len(list_wavs(Path(args.data)))
    if n % base:
        raise SystemExit(f"--sizes must be multiples of {base} (the files in {args.data})")
    scale = n // base
    work = Path(args.work)
    csv = repeated_corpus(Path(args.data), scale, work / f"corpus_x{scale}")
    run = work / f"run_{n}"
    shutil.rmtree(run, ignore_errors=True)
    config = work / "config.json"
    config.write_text(json.dumps({"train": TRAIN}), encoding="utf-8")
    out = {"n_utterances": n, "load_average_before": loadavg()}
    subprocess.run([sys.executable, "-m", "cnnrnn", "-q", "split", "--corpus", "manifest", "--root", str(csv),
                    "--out", str(run), "--config", str(config)], cwd=str(REPO), env=env, check=True,
                   stdout=subprocess.DEVNULL)
    for name, argv in (("spectrograms", ["spectrograms", "--out", str(run)]),
                       ("pack", ["pack", "--out", str(run)]),
                       ("train", ["train", "--out", str(run)])):
        out[name] = run_stage(argv, env)
        print(f"[{n}] {name}: {out[name]}", flush=True)
    packed = json.loads((run / "packed.json").read_text(encoding="utf-8"))
    out["n_train_images"] = packed["train"]["n"]
    out["bytes"] = {p.name: p.stat().st_size for p in run.iterdir() if p.suffix in (".npy", ".pickle")}
    if args.contrast:  # the same files, but no packed arrays: train reads train_final.pickle, as before
        legacy = work / f"legacy_{n}"
        shutil.rmtree(legacy, ignore_errors=True)
        legacy.mkdir(parents=True)
        for p in run.iterdir():
            if p.is_file() and p.suffix != ".npy" and p.name != "packed.json":
                os.link(p, legacy / p.name)
        shutil.rmtree(legacy / "folds", ignore_errors=True)
        out["train_from_pickle"] = run_stage(["train", "--out", str(legacy)], env)
        print(f"[{n}] train from train_final.pickle: {out['train_from_pickle']}", flush=True)
        shutil.rmtree(legacy, ignore_errors=True)
    out["load_average_after"] = loadavg()
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of .wav files (default: %(default)s)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[2140, 8560], help="utterances (multiples of the folder)")
    ap.add_argument("--work", default=str(DEFAULT_WORK), help="working folder (default: %(default)s)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default: %(default)s)")
    ap.add_argument("--contrast", action=argparse.BooleanOptionalAction, default=True,
                    help="also train from train_final.pickle (the path before the packed arrays)")
    ap.add_argument("--keep", action="store_true", help="keep the run folders under --work")
    args = ap.parse_args(argv)
    args.data = str(Path(args.data).resolve())
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    started = time.perf_counter()
    load_start = loadavg()
    sizes = {str(n): one_size(n, args, env) for n in args.sizes}
    small, large = (sizes[str(n)] for n in (min(args.sizes), max(args.sizes)))
    factor = max(args.sizes) / min(args.sizes)

    def peak(s, stages):
        return max(s[k]["peak_rss_main_mib"] for k in stages)

    summary = {
        "sizes": args.sizes,
        "peak_rss_mib": {n: {k: s[k]["peak_rss_main_mib"] for k in ("spectrograms", "pack", "train",
                                                                     "train_from_pickle") if k in s}
                         | {"spectrograms_largest_worker": s["spectrograms"]["peak_rss_largest_worker_mib"]}
                         for n, s in sizes.items()},
        "seconds": {n: {k: s[k]["seconds"] for k in ("spectrograms", "pack", "train", "train_from_pickle") if k in s}
                    for n, s in sizes.items()},
        "corpus_factor": factor,
        "pack_plus_train_peak_ratio": round(peak(large, ("pack", "train")) / peak(small, ("pack", "train")), 3),
        "ratio_per_stage": {k: round(large[k]["peak_rss_main_mib"] / small[k]["peak_rss_main_mib"], 3)
                            for k in ("spectrograms", "pack", "train", "train_from_pickle") if k in large},
        "spectrograms_worker_ratio": round(large["spectrograms"]["peak_rss_largest_worker_mib"]
                                           / max(small["spectrograms"]["peak_rss_largest_worker_mib"], 1e-9), 3),
        "target_ratio": 1.25,
    }
    summary["target_met"] = summary["pack_plus_train_peak_ratio"] <= summary["target_ratio"]
    result = {
        "benchmark": "scale_memory",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_start_end": [load_start, loadavg()],
        "data": {"folder": args.data, "sizes": args.sizes},
        "config": {"spectrogram": "defaults (16 kHz, n_fft 2048, hop 512, 128 mels, 4 s, 224x224, magma)",
                   "train": TRAIN, "workers": "one per core"},
        "method": __doc__.split("\n\n", 1)[1].split("Run from")[0].strip(),
        "summary": summary,
        "results": sizes,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save_result(result, args.out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
