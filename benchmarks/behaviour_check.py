"""Behaviour unchanged? Every command's outputs on the bundled sample, old code against new (issue 22).

Runs the same commands through the CLI of two versions of the package, each in its own child process:

* ``old``: a git worktree of ``--old`` (default: the commit before issue 22's refactoring), imported through
  ``PYTHONPATH``;
* ``new`` and ``new2``: the working tree, twice, to measure the run-to-run variation of the same code with the
  same seed.

It then compares every file the commands wrote, ``old`` against ``new`` and ``new2`` against ``new``, by kind:
JSON (volatile fields such as times, versions, hosts, PIDs and the output folder's own path left out; numbers to
a tolerance), CSV (text columns equal, numbers to a tolerance), PNG (decoded pixels), NumPy ``.npy`` and pickles
(arrays), Keras ``.h5`` (every weight array), text. A file of one side that the other lacks is a difference.
The verdict per file: ``equal`` (within 1e-6), ``within variation`` (the old-new difference is no larger than
the new-new2 one, times ``--slack``, plus 1e-6) or ``differs``. Results: ``benchmarks/results/behaviour.json``.

    python benchmarks/behaviour_check.py [--old REF] [--work DIR] [--only STEP,...]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import pickle
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "behaviour.json"
#: The scratch folder of the three sides and the worktrees (git-ignored, under the default output root).
WORK = ROOT / "artifacts" / "behaviour"
#: The last commit before issue 22's refactoring began (README's layout, before the modules were split).
DEFAULT_OLD = "f4ec8c4"
EXACT = 1e-6
#: A tiny CNNRNN config both versions read alike (the old ``tiny`` preset trained a ResNet50; issue 22 asked for
#: the compact backbone, so the check fixes the backbone itself).
TINY_CNNRNN = {
    "spectrogram": {"duration": 2.0, "n_mels": 32, "n_fft": 512, "hop_length": 256, "image_size": [32, 64]},
    "train": {"folds": 2, "epochs": 2, "batch_size": 16, "backbone": "compact", "weights": "none",
              "filters": [8, 8, 16], "lstm_units": 8, "bn_momentum": 0.9, "selection": "inner"},
}
#: JSON keys whose values differ between any two runs (clocks, versions, machines) or name the side's folders.
VOLATILE = {"created", "date", "versions", "host", "hostname", "pid", "command", "started", "wall_seconds",
            "seconds", "elapsed", "elapsed_s", "duration_s", "time", "time_s", "started_at", "finished_at",
            "python", "platform", "cnnrnn_version", "tensorflow", "keras", "librosa", "cpu_seconds", "took",
            "fit_seconds", "predict_seconds", "train_seconds", "seconds_this_run"}
#: Key endings of clock readings and throughputs (``fit_seconds``, ``train_clips_per_s``).
VOLATILE_SUFFIXES = ("_seconds", "_per_s")
#: Config keys issue 22 renamed (one split vocabulary for every family): the old side's names are read as the new
#: ones, as the package itself reads them (``cnnrnn.config.rename_key``), before the sides are compared.
RENAMED = {"group_by_speaker": ("fold_scheme", lambda v: "speaker" if v else "stratified"),
           "val_size": ("test_size", None), "split": ("scheme", None)}
SKIP_PARTS = {".cnnrnn", "__pycache__"}
SKIP_SUFFIXES = {".lock", ".log", ".out", ".onnx", ".skops"}  # logs carry times; ONNX and skops files (zip times
#                                                              inside) are checked by their predictions
SKIP_PREFIXES = ("events.out.tfevents.",)  # TensorBoard logs: the file name holds the time and the PID


def steps(sample: Path) -> list[tuple[str, list[str]]]:
    """The commands, in order, with ``{out}`` for the side's output folder (old CLI words: both versions take them)."""
    wav = sample / "wav"
    one = sorted(wav.rglob("*.wav"))[0]
    fl = "{out}/filelists"
    return [
        ("cnnrnn_run", ["run", "--corpus", "kemdy20", "--root", str(sample), "--out", "{out}/run",
                        "--config", "{out}/../tiny_cnnrnn.json"]),
        ("predict", ["predict", "--model", "{out}/run", "--input", str(wav), "--out", "{out}/predict"]),
        ("predict_windows", ["predict", "--model", "{out}/run", "--input", str(one), "--window", "1.0",
                             "--hop", "0.5", "--out", "{out}/windows"]),
        ("spectrogram", ["spectrogram", str(one), "-o", "{out}/spectrogram.png", "--raw"]),
        ("export_onnx", ["export", "--model", "{out}/run", "--format", "onnx", "--out", "{out}/export/run.onnx"]),
        ("predict_onnx", ["predict", "--model", "{out}/export/run.onnx", "--input", str(wav),
                          "--out", "{out}/predict_onnx"]),
        ("predict_shipped", ["predict", "--model", "emodb", "--input", str(wav), "--out", "{out}/predict_emodb"]),
        ("baselines_train", ["baseline", "train", "--model", "cnn", "--corpus", "kemdy20", "--root", str(sample),
                             "--out", "{out}/baselines", "--config", "tiny_cnn", "--seed", "7"]),
        ("baselines_evaluate", ["baseline", "evaluate", "--run", "{out}/baselines", "--out", "{out}/baselines_eval"]),
        ("functionals_train", ["functionals", "train", "--corpus", "kemdy20", "--root", str(sample),
                               "--out", "{out}/functionals", "--config", "tiny"]),
        ("functionals_evaluate", ["functionals", "evaluate", "--run", "{out}/functionals",
                                  "--out", "{out}/functionals_eval"]),
        ("filelists", ["filelists", "--corpus", "kemdy20", "--root", str(sample), "--out", fl, "--folds", "2",
                       "--no-loso", "--seed", "3"]),
        ("dcnn_finetune", ["dcnn", "finetune", "--config", "tiny_finetune", "--filelist-train",
                           fl + "/kfold/fold1_train.txt", "--filelist-test", fl + "/kfold/fold1_test.txt",
                           "--labels", fl + "/labels.json", "--out", "{out}/dcnn"]),
        ("dcnn_train", ["dcnn", "train", "--config", "tiny_train", "--filelist-train",
                        fl + "/kfold/fold1_train.txt", "--filelist-test", fl + "/kfold/fold1_test.txt",
                        "--labels", fl + "/labels.json", "--out", "{out}/dcnn",
                        "--dcnn", "{out}/dcnn/tiny_finetune/dcnn.h5"]),
    ]


def run_side(name: str, tree: Path, work: Path, only: set[str] | None, timeout: float) -> dict:
    """Run every step with the package of ``tree``; outputs under ``work/name/out``."""
    side = work / name
    shutil.rmtree(side, ignore_errors=True)
    (side / "out").mkdir(parents=True)
    (side / "tiny_cnnrnn.json").write_text(json.dumps(TINY_CNNRNN, indent=2))
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONHASHSEED": "0", "TF_CPP_MIN_LOG_LEVEL": "3",
           "TF_DETERMINISTIC_OPS": "1", "CUDA_VISIBLE_DEVICES": "", "MPLBACKEND": "Agg"}
    which = subprocess.run([sys.executable, "-c", "import cnnrnn; print(cnnrnn.__file__)"], env=env, cwd=side,
                           capture_output=True, text=True).stdout.strip()
    if not which.startswith(str(tree)):
        raise SystemExit(f"{name}: imports cnnrnn from {which}, not from {tree}")
    out = {"tree": str(tree), "steps": {}}
    for step, argv in steps(tree / "cnnrnn" / "sample" / "kemdy20"):
        if only and step not in only:
            continue
        argv = [a.replace("{out}", str(side / "out")) for a in argv]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, "-m", "cnnrnn", "-q", *argv], env=env, cwd=side,
                                  capture_output=True, text=True, timeout=timeout)
            rc, err = proc.returncode, proc.stderr
        except subprocess.TimeoutExpired:
            rc, err = "timeout", ""
        out["steps"][step] = {"rc": rc, "seconds": round(time.perf_counter() - t0, 1),
                              "stderr_tail": err.strip().splitlines()[-3:] if rc else []}
        print(f"  {name} {step}: rc {rc}, {out['steps'][step]['seconds']} s", flush=True)
    return out


# --------------------------------------------------------------------------- comparison
def _files(folder: Path) -> dict[str, Path]:
    out = {}
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if (p.is_file() and not SKIP_PARTS & set(rel.parts) and p.suffix not in SKIP_SUFFIXES
                and not p.name.startswith(SKIP_PREFIXES)):
            out[str(rel)] = p
    return out


def _renamed(key: str, value):
    """``(key, value)`` under the current name of a renamed config key (:data:`RENAMED`); a manifest's ``split``
    section (a dict) is not the old config key ``split`` (a string)."""
    if key not in RENAMED or isinstance(value, (dict, list)):
        return key, value
    new, translate = RENAMED[key]
    return new, translate(value) if translate else value


def _clean(value, roots: list[str]):
    if isinstance(value, dict):
        return dict(_renamed(k, _clean(v, roots)) for k, v in value.items()
                    if k not in VOLATILE and not k.endswith(VOLATILE_SUFFIXES))
    if isinstance(value, list):
        return [_clean(v, roots) for v in value]
    if isinstance(value, str):
        for r in roots:  # longest first, so that a side's folder goes before the scratch folder holding it
            value = value.replace(r, "<root>")
        return value
    return value


def _diff(a, b, where: str = "") -> tuple[float, list[str]]:
    """(largest numeric difference, structural differences) between two cleaned JSON-like values."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return (0.0, []) if a == b else (0.0, [f"{where}: {a!r} != {b!r}"])
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) and math.isnan(b):
            return 0.0, []
        return abs(float(a) - float(b)), []
    if isinstance(a, dict) and isinstance(b, dict):
        keys = set(a) ^ set(b)
        worst, notes = 0.0, [f"{where}.{k}: only in one" for k in sorted(keys)]
        for k in sorted(set(a) & set(b)):
            d, n = _diff(a[k], b[k], f"{where}.{k}")
            worst, notes = max(worst, d), notes + n
        return worst, notes
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return 0.0, [f"{where}: length {len(a)} != {len(b)}"]
        worst, notes = 0.0, []
        for i, (x, y) in enumerate(zip(a, b)):
            d, n = _diff(x, y, f"{where}[{i}]")
            worst, notes = max(worst, d), notes + n
        return worst, notes
    return (0.0, []) if a == b else (0.0, [f"{where}: {str(a)[:80]!r} != {str(b)[:80]!r}"])


def _arrays(a, b) -> tuple[float, list[str]]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return 0.0, [f"shape {a.shape} != {b.shape}"]
    if a.dtype.kind in "fc" or b.dtype.kind in "fc":
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        both_nan = np.isnan(a64) & np.isnan(b64)
        d = np.abs(np.where(both_nan, 0.0, a64 - b64))
        return (float(np.nanmax(d)) if d.size else 0.0), []
    if a.dtype.kind in "iub":
        return (float(np.abs(a.astype(np.int64) - b.astype(np.int64)).max()) if a.size else 0.0), []
    return (0.0, []) if np.array_equal(a, b) else (0.0, ["values differ"])


def _h5_weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def _pickled(value):
    if isinstance(value, dict):
        return {str(k): _pickled(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, np.ndarray) for v in value):
        return [v.tolist() for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return value


def compare_file(a: Path, b: Path, roots: list[str]) -> tuple[float, list[str]]:
    """(largest numeric difference, other differences) between two files of one kind."""
    suffix = a.suffix.lower()
    if suffix == ".json":
        return _diff(_clean(json.loads(a.read_text()), roots), _clean(json.loads(b.read_text()), roots))
    if suffix == ".csv":
        import pandas as pd

        x, y = pd.read_csv(a), pd.read_csv(b)
        if list(x.columns) != list(y.columns) or len(x) != len(y):
            return 0.0, [f"columns/rows {list(x.columns)}x{len(x)} != {list(y.columns)}x{len(y)}"]
        worst, notes = 0.0, []
        for col in x.columns:
            if x[col].dtype.kind in "fi" and y[col].dtype.kind in "fi":
                d, n = _arrays(x[col].to_numpy(float), y[col].to_numpy(float))
            else:
                d, n = _diff(_clean(x[col].astype(str).tolist(), roots), _clean(y[col].astype(str).tolist(), roots),
                             col)
            worst, notes = max(worst, d), notes + n[:3]
        return worst, notes
    if suffix == ".png":
        from PIL import Image

        return _arrays(np.asarray(Image.open(a)), np.asarray(Image.open(b)))
    if suffix == ".npy":
        return _arrays(np.load(a, allow_pickle=False), np.load(b, allow_pickle=False))
    if suffix in (".pickle", ".pkl"):
        with open(a, "rb") as fa, open(b, "rb") as fb:
            return _diff(_clean(_pickled(pickle.load(fa)), roots), _clean(_pickled(pickle.load(fb)), roots))
    if suffix in (".h5", ".keras", ".weights.h5"):
        wa, wb = _h5_weights(a), _h5_weights(b)
        if set(wa) != set(wb):
            return 0.0, [f"weights {sorted(set(wa) ^ set(wb))[:4]} in one only"]
        worst, notes = 0.0, []
        for k in wa:
            d, n = _arrays(wa[k], wb[k])
            worst, notes = max(worst, d), notes + [f"{k}: {m}" for m in n]
        return worst, notes
    if suffix in (".txt", ".md", ".tsv"):
        ta, tb = (_clean(p.read_text(errors="replace"), roots) for p in (a, b))
        return (0.0, []) if ta == tb else (0.0, ["text differs"])
    return (0.0, []) if a.read_bytes() == b.read_bytes() else (0.0, ["bytes differ"])


def compare_sides(work: Path, a: str, b: str, roots: list[str]) -> dict[str, dict]:
    """Per file of either side: ``{"max_diff": float, "notes": [...]}`` (``notes`` non-empty = structural)."""
    fa, fb = _files(work / a / "out"), _files(work / b / "out")
    out = {}
    for rel in sorted(set(fa) | set(fb)):
        if rel not in fa or rel not in fb:
            out[rel] = {"max_diff": None, "notes": [f"only in {a if rel in fa else b}"]}
            continue
        try:
            d, notes = compare_file(fa[rel], fb[rel], roots)
        except Exception as exc:  # an unreadable file is a difference, named
            d, notes = 0.0, [f"unreadable: {type(exc).__name__}: {exc}"[:200]]
        out[rel] = {"max_diff": d, "notes": notes[:5]}
    return out


def main(argv: list[str] | None = None) -> int:
    """Run both versions, compare, write :data:`RESULTS`; exit 1 when a file differs beyond the variation."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old", default=DEFAULT_OLD, help="git commit of the old code (default: %(default)s)")
    ap.add_argument("--new", default=None,
                    help="git commit of the new code (default: the working tree as it is; a commit is checked out in "
                         "a worktree, so that edits in progress play no part)")
    ap.add_argument("--work", default=str(WORK.relative_to(ROOT)),
                    help="scratch folder, relative to the repository unless absolute (default: %(default)s)")
    ap.add_argument("--only", default="", help="comma-separated step names (default: every step)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per command")
    ap.add_argument("--slack", type=float, default=3.0,
                    help="an old-new difference within slack x the new-new2 difference counts as run-to-run variation")
    ap.add_argument("--sides", default="old,new,new2",
                    help="which sides to run before comparing (the others are read from --work as they are)")
    args = ap.parse_args(argv)
    work = ROOT / args.work  # an absolute --work stays as it is
    work.mkdir(parents=True, exist_ok=True)
    old_tree = work / "old_tree"
    new_tree = ROOT if args.new is None else work / "new_tree"
    only = {s for s in args.only.split(",") if s} or None
    sides = {}
    started = time.time()
    wanted = {s for s in args.sides.split(",") if s}
    for tree, ref, side in ((old_tree, args.old, "old"), (new_tree, args.new, "new")):
        if ref is not None and wanted & {side, side + "2"}:
            if tree.exists():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True,
                               capture_output=True)
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                           check=True, capture_output=True)
    for name, tree in (("old", old_tree), ("new", new_tree), ("new2", new_tree)):
        steps_file = work / name / "steps.json"
        if name in wanted:
            sides[name] = run_side(name, tree, work, only, args.timeout)
            steps_file.write_text(json.dumps(sides[name], indent=1))
        elif steps_file.is_file():
            sides[name] = json.loads(steps_file.read_text())
    if not all((work / n / "out").is_dir() for n in ("old", "new", "new2")):
        print("ran", sorted(wanted), "- the comparison needs all three sides in", work)
        return 0
    roots = sorted([str(work / n / "out") for n in ("old", "new", "new2")] + [str(work / n) for n in
                   ("old", "new", "new2")] + [str(old_tree), str(work / "new_tree"), str(ROOT), str(work)], key=len,
                   reverse=True)
    old_new = compare_sides(work, "old", "new", roots)
    variation = compare_sides(work, "new2", "new", roots)
    files, counts = {}, {"equal": 0, "within variation": 0, "differs": 0}
    for rel, d in old_new.items():
        var = variation.get(rel, {"max_diff": None, "notes": ["missing"]})
        if d["notes"] or d["max_diff"] is None:
            verdict = "differs"
        elif d["max_diff"] <= EXACT:
            verdict = "equal"
        elif var["max_diff"] is not None and d["max_diff"] <= args.slack * var["max_diff"] + EXACT:
            verdict = "within variation"
        else:
            verdict = "differs"
        counts[verdict] += 1
        files[rel] = {"verdict": verdict, "old_vs_new": d["max_diff"], "new_vs_new2": var["max_diff"],
                      "notes": d["notes"] + [f"new2: {n}" for n in var["notes"]]}
    result = {
        "benchmark": "behaviour_check", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/behaviour_check.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "old": args.old, "new": args.new or "working tree", "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "load_at_end": round(os.getloadavg()[0], 2), "wall_seconds": round(time.time() - started, 1),
        "slack": args.slack, "counts": counts,
        "steps": {n: s["steps"] for n, s in sides.items()},
        "files": files,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    for rel, f in files.items():
        if f["verdict"] == "differs":
            print(f"DIFFERS {rel}: old-new {f['old_vs_new']}, new-new2 {f['new_vs_new2']}; {f['notes'][:3]}")
    print(json.dumps(counts), "->", RESULTS.relative_to(ROOT))
    return 1 if counts["differs"] else 0


if __name__ == "__main__":
    sys.exit(main())
