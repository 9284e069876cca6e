"""Spectrogram-stage throughput: cnnrnn's PNG stage against the original matplotlib path.

Three paths over the same folder of wav files, each run in its own fresh
Python subprocess (so that its peak memory, ``ru_maxrss``, is its own):

* ``ours``: ``cnnrnn.cnnrnn.data.extract_spectrograms`` (default
  ``SpectrogramConfig``: sr 16000, n_fft 2048, hop 512, n_mels 128, 4 s,
  224x224, magma) into a fresh temporary folder, then
  ``cnnrnn.cnnrnn.data.load_images`` of every PNG (what the pack stage does).
  Measured with ``workers`` = all cores and with ``workers=1``.
* ``classic``: the original CNNRNN code's path, one process:
  ``librosa.load(sr=16000)`` → fix length to 4 s →
  ``librosa.feature.melspectrogram`` → ``librosa.power_to_db(ref=np.max)`` →
  a 2.24x2.24 in matplotlib figure at dpi 100 (axes fill it, axis off) with
  ``librosa.display.specshow(cmap="magma")`` → ``savefig`` → ``plt.close`` →
  ``cv2.imread``. Agg backend.
* ``floor``: decode + resample + log-mel only (``cnnrnn.audio.load_audio`` +
  ``cnnrnn.features.log_mel``), one process with one BLAS/FFT thread (as in
  the pool's workers); times the number of cores it is the ideal-parallel
  floor of any path that has to compute the same log-mel.

Each path is warmed up on a few files (imports, numba and first-call costs),
then timed over all files ``--repeats`` times; the best and the median are
reported, with the CPU time (user + system, workers included) and the peak
RSS of each path. Timings need a quiet machine: by default the script first
waits (up to 10 min) for the 1-minute load average to fall below 0.5, and it
records the load average before and after each path. Results go to
``benchmarks/results/spectrogram_throughput.json``.

Run from the repository root (about 1 minute on a quiet 2-core machine)::

    python benchmarks/spectrogram_throughput.py                # ../shared/data/emodb-535
    python benchmarks/spectrogram_throughput.py --data DIR --repeats 5 --wait-quiet 0
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402
DEFAULT_DATA = REPO.parent / "shared" / "data" / "emodb-535"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "spectrogram_throughput.json"
N_WARMUP = 4


# --------------------------------------------------------------------------- helpers
def list_wavs(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*.wav") if p.is_file())
    if not files:
        raise SystemExit(f"no .wav files in {folder}")
    return files


def maxrss_mib() -> dict:
    """Peak resident set size of this process and of its (waited-for) children, in MiB (Linux: KiB units)."""
    self_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"self_mib": round(self_kib / 1024, 1), "children_mib": round(child_kib / 1024, 1)}


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its reaped children so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def summarise(times: list[float], n_files: int, cpu: list[float] | None = None) -> dict:
    best = min(times)
    med = statistics.median(times)
    out = {
        "seconds": [round(t, 4) for t in times],
        "best_seconds": round(best, 4),
        "median_seconds": round(med, 4),
        "files_per_s_best": round(n_files / best, 2),
        "files_per_s_median": round(n_files / med, 2),
        "ms_per_file_best": round(1000 * best / n_files, 3),
    }
    if cpu:
        # CPU time is much less sensitive to other load on the machine than wall time.
        out["cpu_seconds"] = [round(c, 4) for c in cpu]
        out["cpu_ms_per_file_best"] = round(1000 * min(cpu) / n_files, 3)
    return out


# --------------------------------------------------------------------------- the paths (run in a child)
def run_ours(files: list[Path], repeats: int, workers: int, tmp_root: Path) -> dict:
    from cnnrnn.features import SpectrogramConfig
    from cnnrnn.cnnrnn.data import extract_spectrograms, load_images
    from cnnrnn.features import render_file

    cfg = SpectrogramConfig()
    warm = Path(tempfile.mkdtemp(prefix="warm_", dir=tmp_root))
    for f in files[:N_WARMUP]:  # in-process warm-up; fork()ed workers inherit it
        render_file(f, warm / f"{f.stem}.png", cfg)
    shutil.rmtree(warm)

    items = [(f.stem, str(f)) for f in files]
    totals, extract_t, pack_t, cpu = [], [], [], []
    shape = None
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="ours_", dir=tmp_root))
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        report = extract_spectrograms(items, out, cfg, workers=workers, progress=False)
        t1 = time.perf_counter()
        images = load_images([out / f"{uid}.png" for uid, _ in items], size=cfg.image_size, progress=False)
        t2 = time.perf_counter()
        cpu.append(cpu_seconds() - c0)
        if report.failed or len(report.written) != len(files):
            raise RuntimeError(f"extract_spectrograms failed on some files: {report.to_dict()}")
        shape = list(images.shape)
        totals.append(t2 - t0)
        extract_t.append(t1 - t0)
        pack_t.append(t2 - t1)
        del images
        shutil.rmtree(out)
    res = summarise(totals, len(files), cpu)
    res["extract_seconds"] = [round(t, 4) for t in extract_t]
    res["pack_seconds"] = [round(t, 4) for t in pack_t]
    res["workers"] = workers
    res["output_shape"] = shape
    return res


def _classic_one(path: Path, png: Path):
    import cv2
    import librosa
    import librosa.display
    import matplotlib.pyplot as plt
    import numpy as np

    sr, duration, n_fft, hop, n_mels = 16000, 4.0, 2048, 512, 128
    y, _ = librosa.load(str(path), sr=sr)
    y = librosa.util.fix_length(y, size=int(duration * sr))
    mel = librosa.feature.melspectrogram(y=y, sr=sr, n_fft=n_fft, hop_length=hop, n_mels=n_mels)
    db = librosa.power_to_db(mel, ref=np.max)
    fig = plt.figure(figsize=(2.24, 2.24), dpi=100)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.axis("off")
    librosa.display.specshow(db, sr=sr, hop_length=hop, cmap="magma", ax=ax)
    fig.savefig(str(png), dpi=100)
    plt.close(fig)
    image = cv2.imread(str(png))
    if image is None:
        raise RuntimeError(f"cv2.imread could not read {png}")
    return image


def run_classic(files: list[Path], repeats: int, tmp_root: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import numpy as np

    warm = Path(tempfile.mkdtemp(prefix="warm_", dir=tmp_root))
    for f in files[:N_WARMUP]:
        _classic_one(f, warm / f"{f.stem}.png")
    shutil.rmtree(warm)
    times, shape, cpu = [], None, []
    for _ in range(repeats):
        out = Path(tempfile.mkdtemp(prefix="classic_", dir=tmp_root))
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        images = [_classic_one(f, out / f"{f.stem}.png") for f in files]
        packed = np.stack(images)
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
        shape = list(packed.shape)
        del images, packed
        shutil.rmtree(out)
    res = summarise(times, len(files), cpu)
    res["output_shape"] = shape
    return res


def run_floor(files: list[Path], repeats: int) -> dict:
    from cnnrnn.audio import load_audio, pad_or_trim
    from cnnrnn.features import SpectrogramConfig
    from cnnrnn.features import log_mel

    from threadpoolctl import threadpool_limits

    # One BLAS/FFT thread, as in extract_spectrograms' workers: the floor of one core.
    threadpool_limits(1)
    cfg = SpectrogramConfig()

    def one(f):
        y, _ = load_audio(f, cfg.sr)
        return log_mel(pad_or_trim(y, cfg.n_samples), cfg)

    for f in files[:N_WARMUP]:
        one(f)
    times, shape, cpu = [], None, []
    for _ in range(repeats):
        c0 = cpu_seconds()
        t0 = time.perf_counter()
        out = [one(f) for f in files]
        times.append(time.perf_counter() - t0)
        cpu.append(cpu_seconds() - c0)
        shape = list(out[0].shape)
        del out
    res = summarise(times, len(files), cpu)
    res["log_mel_shape"] = shape
    return res


def child_main(args) -> None:
    files = list_wavs(Path(args.data))
    tmp_root = Path(args.tmp)
    if args.child == "ours":
        res = run_ours(files, args.repeats, args.workers, tmp_root)
    elif args.child == "classic":
        res = run_classic(files, args.repeats, tmp_root)
    elif args.child == "floor":
        res = run_floor(files, args.repeats)
    else:
        raise SystemExit(f"unknown path {args.child}")
    res["peak_rss"] = maxrss_mib()
    print("RESULT " + json.dumps(res), flush=True)


# --------------------------------------------------------------------------- parent
def spawn(path: str, args, tmp_root: Path, workers: int = 1) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", path, "--data", str(args.data),
           "--repeats", str(args.repeats), "--tmp", str(tmp_root), "--workers", str(workers)]
    label = path if path != "ours" else f"ours (workers={workers})"
    print(f"[{label}] running ...", flush=True)
    load_before = _loadavg()
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=str(REPO))
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        raise SystemExit(f"{label} failed with exit code {proc.returncode}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    res = json.loads(line[len("RESULT "):])
    res["subprocess_wall_seconds"] = round(time.perf_counter() - t0, 2)
    res["load_average_before_after"] = [load_before, _loadavg()]
    print(f"[{label}] best {res['files_per_s_best']:.1f} files/s, median {res['files_per_s_median']:.1f} files/s, "
          f"peak RSS self {res['peak_rss']['self_mib']} MiB, children {res['peak_rss']['children_mib']} MiB",
          flush=True)
    return res


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def wait_quiet(max_load: float, max_wait: float) -> dict:
    """Wait (up to ``max_wait`` s) until the 1-minute load average is below ``max_load``."""
    t0 = time.perf_counter()
    while True:
        load = _loadavg()
        waited = time.perf_counter() - t0
        if load is None or load[0] < max_load or waited >= max_wait:
            quiet = load is None or load[0] < max_load
            if not quiet:
                print(f"warning: load average still {load} after {waited:.0f} s; measuring anyway", flush=True)
            return {"max_load": max_load, "waited_seconds": round(waited, 1), "load": load, "quiet": quiet}
        print(f"waiting for a quiet machine: load average {load}", flush=True)
        time.sleep(15)


def machine_info() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu_model": cpu, "ram_gib": ram_gib, "platform": platform.platform()}


def versions() -> dict:
    import cv2
    import librosa
    import matplotlib
    import numpy
    import scipy
    import soundfile
    import soxr

    import cnnrnn

    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "librosa": librosa.__version__, "opencv": cv2.__version__, "matplotlib": matplotlib.__version__,
            "soundfile": soundfile.__version__, "soxr": soxr.__version__, "cnnrnn": cnnrnn.__version__}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of .wav files (default: %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="timed repeats per path, best and median reported (>= 2)")
    ap.add_argument("--workers", type=int, default=0, help="workers of the parallel 'ours' run (0: all cores)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default: %(default)s)")
    ap.add_argument("--tmp", default=None, help="parent folder of the temporary PNG folders (default: system temp)")
    ap.add_argument("--wait-quiet", type=float, default=600, metavar="SECONDS",
                    help="first wait up to this long for the 1-min load average to fall below --max-load (0: don't)")
    ap.add_argument("--max-load", type=float, default=0.5, help="load average counted as quiet (default %(default)s)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.repeats < 2:
        ap.error("--repeats must be at least 2")
    if args.child:
        child_main(args)
        return 0

    from cnnrnn.features import SpectrogramConfig

    args.data = str(Path(args.data).resolve())
    files = list_wavs(Path(args.data))
    cores = os.cpu_count() or 1
    workers = args.workers or cores
    machine = machine_info()
    machine["load_average_at_start"] = _loadavg()
    quiet = wait_quiet(args.max_load, args.wait_quiet) if args.wait_quiet > 0 else None
    started = time.perf_counter()
    tmp_root = Path(tempfile.mkdtemp(prefix="cnnrnn_bench_", dir=args.tmp))
    try:
        print(f"{len(files)} files from {args.data}; {cores} cores; {args.repeats} repeats per path", flush=True)
        # The floor first and the classic path last; each in its own process.
        floor = spawn("floor", args, tmp_root)
        ours_par = spawn("ours", args, tmp_root, workers=workers)
        ours_one = spawn("ours", args, tmp_root, workers=1)
        classic = spawn("classic", args, tmp_root)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)

    floor_ideal = floor["files_per_s_best"] * cores
    summary = {
        "ours_files_per_s": ours_par["files_per_s_best"],
        "ours_workers1_files_per_s": ours_one["files_per_s_best"],
        "classic_files_per_s": classic["files_per_s_best"],
        "floor_1proc_files_per_s": floor["files_per_s_best"],
        "floor_ideal_parallel_files_per_s": round(floor_ideal, 2),
        "speedup_ours_vs_classic": round(ours_par["files_per_s_best"] / classic["files_per_s_best"], 2),
        "speedup_ours_vs_classic_median": round(ours_par["files_per_s_median"] / classic["files_per_s_median"], 2),
        "speedup_ours_workers1_vs_classic": round(ours_one["files_per_s_best"] / classic["files_per_s_best"], 2),
        "parallel_speedup_ours": round(ours_par["files_per_s_best"] / ours_one["files_per_s_best"], 2),
        "ours_fraction_of_ideal_floor": round(ours_par["files_per_s_best"] / floor_ideal, 3),
        "ours_workers1_fraction_of_1proc_floor": round(ours_one["files_per_s_best"] / floor["files_per_s_best"], 3),
        "target_speedup": 30.0,
        "cpu_ms_per_file": {"ours_parallel": ours_par.get("cpu_ms_per_file_best"),
                            "ours_workers1": ours_one.get("cpu_ms_per_file_best"),
                            "classic": classic.get("cpu_ms_per_file_best"),
                            "floor": floor.get("cpu_ms_per_file_best")},
        "peak_rss_self_mib": {"ours_parallel": ours_par["peak_rss"]["self_mib"],
                              "ours_parallel_largest_worker": ours_par["peak_rss"]["children_mib"],
                              "ours_workers1": ours_one["peak_rss"]["self_mib"],
                              "classic": classic["peak_rss"]["self_mib"], "floor": floor["peak_rss"]["self_mib"]},
    }
    summary["target_met"] = summary["speedup_ours_vs_classic"] >= summary["target_speedup"]
    result = {
        "benchmark": "spectrogram_throughput",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {"folder": str(args.data), "n_files": len(files)},
        "machine": machine,
        "quiet_check": quiet,
        "load_average_at_end": _loadavg(),
        "versions": versions(),
        "config": {"spectrogram": SpectrogramConfig().__dict__, "repeats": args.repeats, "warmup_files": N_WARMUP,
                   "parallel_workers": workers,
                   "classic": {"sr": 16000, "duration_s": 4.0, "n_fft": 2048, "hop_length": 512, "n_mels": 128,
                               "figure_inches": [2.24, 2.24], "dpi": 100, "cmap": "magma", "backend": "Agg"}},
        "method": (
            "Each path runs in a fresh subprocess; warm-up on the first few files, then every file is processed "
            "`repeats` times; best (and median) wall time reported. 'ours' = extract_spectrograms into a fresh temp "
            "folder + load_images of all PNGs (pool start-up included). 'floor' = load_audio + pad_or_trim + log_mel "
            "only, one process, one BLAS/FFT thread; 'ideal parallel floor' = that rate x cores. cpu_seconds = user + "
            "system CPU of the subprocess and its reaped children (less sensitive to other load than wall time). "
            "peak_rss = ru_maxrss of the subprocess (self) and the largest of its reaped children (children). For "
            "'ours' with several workers the children are the forked pool workers (their RSS counts pages shared "
            "with the parent). For 'classic' the children are only the helper processes that importing librosa's "
            "audioread backend runs (ldconfig, gcc/ld via ctypes.util.find_library, ffmpeg -version), forked from "
            "the parent, so their RSS is the parent's size at import time, not extra memory of the path."),
        "results": {"ours_parallel": ours_par, "ours_workers1": ours_one, "classic": classic, "floor": floor},
        "summary": summary,
        "total_seconds": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_result(result, out)
    print(json.dumps(summary, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
