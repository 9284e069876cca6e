"""Training throughput: images/s of ``cnnrnn train`` against a raw ``train_on_batch`` loop on in-memory data, with
the same model, batch size, optimizer and loss (issue 14: the input pipeline must not starve the model, >= 90 %).

For each preset (``--presets``; default ``tiny``, ``compact`` and ``best``), on ``emodb-535`` (split, spectrograms
and pack once, not timed, under ``benchmarks/work/train_throughput/``), in a fresh process per preset:

* ``cnnrnn train``: :func:`cnnrnn.cnnrnn.train.cross_validate` (what ``cnnrnn train`` runs) on the packed train
  images, memory-mapped (:func:`cnnrnn.cnnrnn.data.load_packed`), fold 1 of the preset's folds, ``--epochs`` + 1
  epochs. A Keras callback added to ``fit`` (the only instrumentation) records, per epoch, the time from the epoch's
  start to the end of its last training batch: the input pipeline (``tf.data``: gather from the memory map, cast,
  crops and mixup where the preset has them) and the training steps, without the per-epoch validation, PreciseBN
  and checkpoint work. The first epoch (graph tracing) is left out.
* ``raw loop``: the same model built and compiled the same way, ``model.train_on_batch(x, y)`` over the same fit
  rows, reshuffled every epoch, from a float32 array of the model's input held in memory (a crop model gets the
  first ``crop_width`` columns; mixup presets one-hot labels); the first epoch left out likewise.

The two alternate (raw, train, raw, train, ...) ``--repeats`` times, so that they meet the same load on a shared
machine; the headline is images/s of ``cnnrnn train`` over images/s of the raw loop (best of each, and the median of
the neighbouring pairs), with images/s taken from the mean of the timed epochs and, less sensitive to another job
slowing one epoch, from their median. Also reported: the CPU time per image of both (this process, all threads,
over the same windows: the work each path does, much less sensitive to other load than wall time), and the wall
time of the whole fold (validation, PreciseBN, checkpoint and scoring included) as images/s.

Run from the repository root (about 10 minutes on a loaded 2-core machine)::

    nice python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --presets compact --epochs 3 --repeats 3
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402
from spectrogram_throughput import DEFAULT_DATA, git_commit, loadavg  # noqa: E402

DEFAULT_OUT = REPO / "benchmarks" / "results" / "train_throughput.json"
DEFAULT_WORK = REPO / "benchmarks" / "work" / "train_throughput"


def prepare(preset: str, data: Path, work: Path) -> Path:
    """split → spectrograms → pack of ``data`` (EmoDB layout) with the preset, once; returns the run folder."""
    run = work / preset
    if (run / "packed.json").is_file():
        return run
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    for argv in (["split", "--corpus", "emodb", "--root", str(data)], ["spectrograms"], ["pack", "--no-pickle"]):
        subprocess.run([sys.executable, "-m", "cnnrnn", "-q", *argv, "--out", str(run), "--config", preset],
                       cwd=str(REPO), env=env, check=True, stdout=subprocess.DEVNULL)
    return run


# --------------------------------------------------------------------------- in the child process
def child_main(args) -> None:
    import keras
    import numpy as np

    from cnnrnn.artifacts import load_labels
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.data import load_packed
    from cnnrnn.cnnrnn.train import cross_validate, fold_splitter
    from cnnrnn.models.cnnrnn import build_cnnrnn
    from cnnrnn.splits import inner_split

    run = Path(args.run)
    cfg = load_config(args.preset)
    cfg.train.epochs = args.epochs + 1
    table = load_packed(run, "train", cfg.spectrogram.image_size)
    images, y = table["path"], np.asarray(table["emotion"], np.int32)
    groups = table.get("speaker")
    labels = load_labels(run / "labels.json")
    folds = list(fold_splitter(cfg.train).split(len(y), y, groups if cfg.train.fold_scheme == "speaker" else None))[:1]
    tr_idx, va_idx = folds[0]
    fit_idx = (inner_split(tr_idx, y, groups, cfg.train.seed + 1)[0] if cfg.train.selection == "inner" else tr_idx)
    n_fit, batch = len(fit_idx), cfg.train.batch_size
    shape = tuple(images.shape[1:])
    if cfg.train.crop_width:
        shape = (shape[0], cfg.train.crop_width, shape[2])
    one_hot = cfg.train.mixup > 0

    class Clock(keras.callbacks.Callback):
        """Per epoch: wall and CPU seconds (this process, all its threads) from the epoch's start to the end of
        its last training batch."""

        def __init__(self):
            super().__init__()
            self.epochs: list[float] = []
            self.cpu: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t0 = self.last = time.perf_counter()
            self.c0 = self.c_last = time.process_time()

        def on_train_batch_end(self, batch, logs=None):
            self.last, self.c_last = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append(self.last - self.t0)
            self.cpu.append(self.c_last - self.c0)

    original_fit = keras.Model.fit

    def ours(k: int) -> dict:
        clock = Clock()

        def fit(self, *a, callbacks=None, **kw):
            return original_fit(self, *a, callbacks=[*(callbacks or []), clock], **kw)

        keras.Model.fit = fit
        out = Path(args.work) / f"cv_{args.preset}_{k}"
        shutil.rmtree(out, ignore_errors=True)  # a finished fold would be resumed, not trained
        try:
            t0 = time.perf_counter()
            cross_validate(images, y, labels, out, cfg.train, groups=groups, verbose=0, folds=folds)
            wall = time.perf_counter() - t0
        finally:
            keras.Model.fit = original_fit
        timed = clock.epochs[1:]
        return {"epoch_train_seconds": [round(t, 3) for t in clock.epochs],
                "epoch_train_cpu_seconds": [round(t, 3) for t in clock.cpu],
                "images_per_s": round(n_fit * len(timed) / sum(timed), 2),
                "fold_wall_seconds": round(wall, 2),
                "fold_images_per_s_incl_validation": round(n_fit * cfg.train.epochs / wall, 2)}

    x_mem = np.asarray(images[np.sort(fit_idx)], np.float32)[:, :, :shape[1]]  # in memory, the model's input
    y_mem = y[np.sort(fit_idx)]
    y_mem = np.eye(len(labels), dtype=np.float32)[y_mem] if one_hot else y_mem

    def raw(k: int) -> dict:
        keras.utils.set_random_seed(cfg.train.seed)
        model = build_cnnrnn(shape, len(labels), cfg.train.weights, **cfg.train.model_options())
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.train.learning_rate, beta_1=cfg.train.beta_1,
                                                      beta_2=cfg.train.beta_2),
                      loss="categorical_crossentropy" if one_hot else "sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        rng = np.random.default_rng(k)
        epochs, cpu = [], []
        for _ in range(args.epochs + 1):
            order = rng.permutation(n_fit)
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(0, n_fit, batch):
                rows = order[i:i + batch]
                model.train_on_batch(x_mem[rows], y_mem[rows])
            epochs.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        timed = epochs[1:]
        return {"epoch_train_seconds": [round(t, 3) for t in epochs],
                "epoch_train_cpu_seconds": [round(t, 3) for t in cpu],
                "images_per_s": round(n_fit * len(timed) / sum(timed), 2)}

    runs: dict[str, list[dict]] = {"raw_loop": [], "cnnrnn_train": []}
    for k in range(args.repeats):
        for name, fn in (("raw_loop", raw), ("cnnrnn_train", ours)):
            load = loadavg()
            res = fn(k)
            res["load_before_after"] = [load, loadavg()]
            runs[name].append(res)
            print(f"[{args.preset} repeat {k + 1}] {name}: {res['images_per_s']} images/s", flush=True)
    result = {"preset": args.preset, "n_fit": n_fit, "batch_size": batch, "input_shape": list(shape),
              "model": {"backbone": cfg.train.backbone, "crop_width": cfg.train.crop_width, "mixup": cfg.train.mixup,
                        "precise_bn": cfg.train.precise_bn},
              "runs": runs}
    print("RESULT " + json.dumps(result), flush=True)


def summarise(res: dict) -> dict:
    """Images/s of each path from the mean of its timed epochs (``mean``) and from their median (``median_epoch``:
    one epoch slowed by another job on a shared machine does not count), and the ratios of the two paths."""
    n = res["n_fit"]
    out = {"input_shape": res["input_shape"], "batch_size": res["batch_size"], "n_fit": n, "target_ratio": 0.9}
    for how, rate in (("mean", lambda r: r["images_per_s"]),
                      ("median_epoch", lambda r: n / statistics.median(r["epoch_train_seconds"][1:]))):
        raw = [rate(r) for r in res["runs"]["raw_loop"]]
        ours = [rate(r) for r in res["runs"]["cnnrnn_train"]]
        pairs = [o / r for o, r in zip(ours, raw)]
        out[how] = {"raw_loop_images_per_s_best": round(max(raw), 2),
                    "cnnrnn_train_images_per_s_best": round(max(ours), 2),
                    "ratio_best_over_best": round(max(ours) / max(raw), 3),
                    "ratio_per_repeat": [round(v, 3) for v in pairs],
                    "ratio_median": round(statistics.median(pairs), 3)}
    if all("epoch_train_cpu_seconds" in r for rs in res["runs"].values() for r in rs):
        cpu = {k: min(1000 * statistics.median(r["epoch_train_cpu_seconds"][1:]) / n for r in rs)
               for k, rs in res["runs"].items()}
        out["cpu_ms_per_image_median_epoch_best"] = {k: round(v, 2) for k, v in cpu.items()}
        out["cpu_ratio_raw_over_cnnrnn_train"] = round(cpu["raw_loop"] / cpu["cnnrnn_train"], 3)
    out["cnnrnn_train_fold_images_per_s_incl_validation"] = max(
        r["fold_images_per_s_incl_validation"] for r in res["runs"]["cnnrnn_train"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="EmoDB folder (default: %(default)s)")
    ap.add_argument("--presets", nargs="+", default=["tiny_resnet50", "compact", "best"],
                    help="CNNRNN config presets (tiny_resnet50: the measured tiny, before tiny took the compact backbone)")
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs (one more is run first, untimed)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of each path (default 2)")
    ap.add_argument("--work", default=str(DEFAULT_WORK), help="working folder (default: %(default)s)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default: %(default)s)")
    ap.add_argument("--summarise-only", action="store_true",
                    help="recompute the summary of the results JSON --out from its stored epoch times")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--preset", help=argparse.SUPPRESS)
    ap.add_argument("--run", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(args)
        return 0
    if args.summarise_only:
        result = json.loads(Path(args.out).read_text(encoding="utf-8"))
        result["summary"] = {p: summarise(r) for p, r in result["results"].items()}
        save_result(result, args.out)
        print(json.dumps(result["summary"], indent=2))
        return 0
    started, load_start = time.perf_counter(), loadavg()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results = {}
    for preset in args.presets:
        run = prepare(preset, Path(args.data).resolve(), work)
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--preset", preset, "--run", str(run),
               "--work", str(work), "--epochs", str(args.epochs), "--repeats", str(args.repeats)]
        proc = subprocess.run(cmd, cwd=str(REPO), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        sys.stdout.write("".join(ln + "\n" for ln in proc.stdout.splitlines() if not ln.startswith("RESULT ")))
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-5000:])
            raise SystemExit(f"{preset} failed with exit code {proc.returncode}")
        results[preset] = json.loads([ln for ln in proc.stdout.splitlines()
                                      if ln.startswith("RESULT ")][-1][len("RESULT "):])
    summary = {p: summarise(r) for p, r in results.items()}
    result = {
        "benchmark": "train_throughput",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "load_average_start_end": [load_start, loadavg()],
        "data": {"folder": str(Path(args.data).resolve())},
        "config": {"presets": args.presets, "timed_epochs": args.epochs, "repeats": args.repeats},
        "method": __doc__.split("\n\n", 1)[1].split("Run from")[0].strip(),
        "summary": summary,
        "results": results,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    save_result(result, args.out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
