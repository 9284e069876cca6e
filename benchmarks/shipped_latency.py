"""``cnnrnn predict --model emodb`` on one 2 s clip: the shipped model of a git revision against today's, in one run.

Issue 20 asks that the Whisper-backed shipped model keep one clip's end-to-end wall time within 1 s of the model it
replaced. Both models are run as a user would (a fresh ``cnnrnn predict`` process each time, so the TensorFlow
import and the model load count), alternating, ``--repeats`` times each; the old model's folder is taken from git
(``--old-rev``, default the commit before the Whisper model) into ``benchmarks/work/``. Reported: each run's wall
seconds, the medians and their difference, the load average before and after. Run from the repository root::

    python benchmarks/shipped_latency.py --repeats 5
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402

WORK = REPO / "benchmarks" / "work" / "shipped_latency"
CLIP = REPO.parent / "shared" / "data" / "emodb-535" / "03a01Fa.wav"
FOLDER = "cnnrnn/pretrained/emodb"


def old_model(rev: str) -> Path:
    """The shipped model folder as it was at ``rev``, written under ``benchmarks/work/``."""
    out = WORK / f"emodb_{rev[:12]}"
    files = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, FOLDER], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split()
    for name in files:
        target = out / Path(name).relative_to(FOLDER)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(subprocess.run(["git", "show", f"{rev}:{name}"], cwd=REPO, check=True,
                                          capture_output=True).stdout)
    return out


def one(model: str | Path, clip: Path, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cnnrnn.cli", "-q", "predict", "--model", str(model), "--input", str(clip),
                    "--out", str(out)], check=True, capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--old-rev", default="348a69a", help="git revision of the model replaced (default: %(default)s)")
    ap.add_argument("--clip", default=str(CLIP), help="a 2 s clip (default: emodb-535's 03a01Fa.wav)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    old = old_model(args.old_rev)
    load_before = os.getloadavg()[0]
    times = {"old": [], "new": []}
    one("emodb", Path(args.clip), WORK / "warm")  # page cache and the Python bytecode, for both
    for _ in range(args.repeats):
        times["old"].append(round(one(old, Path(args.clip), WORK / "out_old"), 3))
        times["new"].append(round(one("emodb", Path(args.clip), WORK / "out_new"), 3))
    medians = {k: statistics.median(v) for k, v in times.items()}
    result = {"benchmark": "shipped_latency", "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "command": " ".join(["python"] + sys.argv), "clip": args.clip,
              "old_model": f"{FOLDER} at {args.old_rev}", "new_model": f"{FOLDER} (working tree)",
              "wall_seconds": times, "median_seconds": medians,
              "difference_seconds": round(medians["new"] - medians["old"], 3),
              "load_before": round(load_before, 2), "load_after": round(os.getloadavg()[0], 2)}
    save_result(result, REPO / "benchmarks" / "results" / "shipped_latency.json")
    print(f"median wall: old {medians['old']:.2f} s, new {medians['new']:.2f} s "
          f"(difference {medians['new'] - medians['old']:+.2f} s; load {load_before:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
