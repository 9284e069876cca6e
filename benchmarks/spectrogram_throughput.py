"""Spectrogram-stage throughput: ``cnnrnn spectrograms`` + ``cnnrnn pack`` against the floor of the same work.

The headline is the **fraction of the floor**: files/s of the two stages together divided by files/s of the floor,
both measured in the same run, on the same files, with the same settings (the default ``SpectrogramConfig``: sr
16 kHz, n_fft 2048, hop 512, 128 mels, 4 s, 224x224, magma), on ``emodb-535`` and on ``emodb-535 x 8`` (4,280
files, hard links under new names).

* ``floor``: librosa's decode + resample + log-mel and nothing else, one process per core: in a warm process pool
  (fork, one BLAS thread per worker, librosa's first calls already made), ``librosa.load(sr=16000)`` (soundfile +
  soxr_hq) → ``librosa.util.fix_length`` (4 s) → ``librosa.feature.melspectrogram`` →
  ``librosa.power_to_db(ref=np.max, top_db=80)``, 16 files per task.
* ``stage``: :func:`cnnrnn.cnnrnn.data.spectrograms` then :func:`cnnrnn.cnnrnn.data.pack` (what ``cnnrnn
  spectrograms`` and ``cnnrnn pack`` run) into a fresh run folder made by ``split`` (not timed): the PNGs, the data
  pickles, the packed arrays (``train_images.npy``, ``test_images.npy``) and the ``*_final.pickle`` files, one
  worker per core. ``stage_no_pickle``: the same with ``pack --no-pickle``.
* ``lean_floor``: this package's own decode + resample + log-mel (``cnnrnn.audio.load_audio`` +
  :func:`cnnrnn.features.log_mels`, batches of 16) alone, one process per core: what the stage costs beyond it is
  the image, the PNG and the packed row.

The paths alternate (floor, stage, stage_no_pickle, lean_floor, then again) ``--repeats`` times, so that each
comparison meets the same load on a shared machine; the best run of each path is reported, and the ratio of every
pair of neighbouring runs. CPU time (user + system of the process and its workers) is reported too: it is much less
sensitive to other load than wall time. The per-step profile (``--profile-files`` files, one process, one thread,
CPU time, best of 3) splits one file's work into decode, resample, log-mel (ours and librosa's), image, PNG encode,
PNG write, packed-row write, and the PNG read-back that ``pack`` no longer does.

Run from the repository root (a few minutes on a 2-core machine)::

    nice python benchmarks/spectrogram_throughput.py                   # ../shared/data/emodb-535, x1 and x8
    python benchmarks/spectrogram_throughput.py --scales 1 --repeats 3 --wait-quiet 600
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
EMODB_LABELS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness", "T": "sadness",
                "N": "neutral"}
PATHS = ("floor", "stage", "stage_no_pickle", "lean_floor")
CHUNK = 16


# --------------------------------------------------------------------------- helpers
def list_wavs(folder: Path) -> list[Path]:
    files = sorted(p for p in Path(folder).glob("*.wav") if p.is_file())
    if not files:
        raise SystemExit(f"no .wav files in {folder}")
    return files


def cpu_seconds() -> float:
    """User + system CPU seconds of this process and of its reaped children (the pools' workers) so far."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def repeated_corpus(data: Path, scale: int, folder: Path) -> Path:
    """``scale`` copies of every wav of ``data`` under new names (``r{k}_<name>``, hard links where possible) and a
    ``corpus.csv`` manifest (path, label from the EmoDB letter, speaker); returns the CSV."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["path,label,speaker"]
    for k in range(scale):
        for wav in list_wavs(data):
            dst = folder / f"r{k}_{wav.name}"
            if not dst.exists():
                try:
                    os.link(wav, dst)
                except OSError:
                    shutil.copy(wav, dst)
            rows.append(f"{dst.name},{EMODB_LABELS.get(wav.stem[5], 'neutral')},{wav.stem[:2]}")
    (folder / "corpus.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder / "corpus.csv"


# --------------------------------------------------------------------------- the floor (in pool workers)
def _worker_init() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _floor_chunk(paths: list[str]) -> float:
    """The floor's work on some files; returns the CPU seconds it took (this worker's)."""
    import librosa
    import numpy as np

    t = time.process_time()
    for p in paths:
        y, _ = librosa.load(p, sr=16000)
        y = librosa.util.fix_length(y, size=64000)
        mel = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=2048, hop_length=512, n_mels=128)
        librosa.power_to_db(mel, ref=np.max, top_db=80.0)
    return time.process_time() - t


def _lean_chunk(paths: list[str]) -> float:
    """This package's decode + resample + log-mel of some files; returns the CPU seconds it took."""
    import numpy as np

    from cnnrnn.audio import load_audio, pad_or_trim
    from cnnrnn.features import SpectrogramConfig, log_mels

    t = time.process_time()
    cfg = SpectrogramConfig()
    ys = np.stack([pad_or_trim(load_audio(p, cfg.sr)[0], cfg.n_samples) for p in paths])
    log_mels(ys, cfg)
    return time.process_time() - t


def _warm(fn, paths: list[str]) -> int:
    import time as _t

    fn(paths)
    _t.sleep(0.3)  # hold this worker so that the next warm-up task goes to another one
    return os.getpid()


def run_pool(fn, files: list[Path], workers: int) -> dict:
    """``fn`` over all files in chunks of 16, one process per core (a warm pool); wall time, and the CPU time the
    workers spent on the files (warm-up left out)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    paths = [str(f) for f in files]
    chunks = [paths[i:i + CHUNK] for i in range(0, len(paths), CHUNK)]
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                             initializer=_worker_init) as pool:
        pids = {f.result() for f in [pool.submit(_warm, fn, paths[:4]) for _ in range(workers)]}
        t0 = time.perf_counter()
        cpu = sum(f.result() for f in [pool.submit(fn, chunk) for chunk in chunks])
        seconds = time.perf_counter() - t0
    return {"seconds": seconds, "cpu_seconds": cpu, "workers": len(pids)}


# --------------------------------------------------------------------------- our stages
def run_stage(split_dir: Path, tmp_root: Path, pickle: bool, workers: int) -> dict:
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.data import pack, spectrograms

    run = Path(tempfile.mkdtemp(prefix="stage_", dir=tmp_root))
    for name in ("train_audio.json", "test_audio.json", "labels.json", "config.json"):
        shutil.copy(split_dir / name, run / name)
    cfg = load_config({"spectrogram": {"workers": workers}})
    c0, t0 = cpu_seconds(), time.perf_counter()
    summary = spectrograms(run, cfg, progress=False)
    t1 = time.perf_counter()
    packed = pack(run, cfg, progress=False, pickle=pickle)
    t2 = time.perf_counter()
    cpu = cpu_seconds() - c0
    n = summary["train"]["n"] + summary["test"]["n"]
    sizes = {p.name: p.stat().st_size for p in run.iterdir() if p.suffix in (".npy", ".pickle")}
    png_bytes = sum(p.stat().st_size for p in (run / "spectrograms").glob("*.png"))
    shutil.rmtree(run)
    return {"seconds": t2 - t0, "spectrograms_seconds": t1 - t0, "pack_seconds": t2 - t1, "cpu_seconds": cpu,
            "n_images": n, "failed": summary["spectrograms"]["n_failed"],
            "pickle": {p: packed[p]["pickle"] for p in packed}, "bytes": {**sizes, "pngs": png_bytes}}


# --------------------------------------------------------------------------- per-step profile
def profile(files: list[Path], tmp_root: Path) -> dict:
    """CPU ms per file of each step, one process, one thread, best of 3 passes over ``files``."""
    import cv2
    import librosa
    import numpy as np
    import soundfile as sf
    from threadpoolctl import threadpool_limits

    from cnnrnn.artifacts import atomic_write_bytes
    from cnnrnn.audio import load_audio, pad_or_trim
    from cnnrnn.cnnrnn.data import create_rows_file, npy_header
    from cnnrnn.features import PNG_PARAMS, SpectrogramConfig, image_of_log_mel, log_mels, read_png

    threadpool_limits(1)
    cv2.setNumThreads(1)
    cfg = SpectrogramConfig()
    folder = Path(tempfile.mkdtemp(prefix="profile_", dir=tmp_root))
    raw = [sf.read(str(f), dtype="float32") for f in files]
    ys = np.stack([pad_or_trim(load_audio(f, cfg.sr)[0], cfg.n_samples) for f in files])
    dbs = log_mels(ys, cfg)
    images = [image_of_log_mel(db, cfg) for db in dbs]
    bufs = [cv2.imencode(".png", im, PNG_PARAMS)[1].tobytes() for im in images]
    rows = create_rows_file(folder / "rows.npy", (len(files),) + images[0].shape)
    for i, b in enumerate(bufs):
        (folder / f"{i}.png").write_bytes(b)

    def librosa_log_mel(y):
        return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000, n_fft=2048, hop_length=512,
                                                                  n_mels=128), ref=np.max, top_db=80.0)

    def write_rows():  # as the spectrogram workers write their rows: os.pwrite at the row's offset
        offset = npy_header(rows)[2]
        fd = os.open(rows, os.O_WRONLY)
        for i, im in enumerate(images):
            os.pwrite(fd, im.tobytes(), offset + i * im.nbytes)
        os.close(fd)

    steps = {
        "decode (soundfile)": lambda: [sf.read(str(f), dtype="float32") for f in files],
        "resample 22.05 -> 16 kHz (soxr_hq)": lambda: [librosa.resample(y, orig_sr=sr, target_sr=16000,
                                                                         res_type="soxr_hq") for y, sr in raw],
        "log-mel, ours (log_mels, batches of 16)": lambda: [log_mels(ys[i:i + CHUNK], cfg)
                                                            for i in range(0, len(ys), CHUNK)],
        "log-mel, librosa (melspectrogram + power_to_db)": lambda: [librosa_log_mel(y) for y in ys],
        "image (scale, resize, colour map)": lambda: [image_of_log_mel(db, cfg) for db in dbs],
        "PNG encode (cv2.imencode, PNG_PARAMS)": lambda: [cv2.imencode(".png", im, PNG_PARAMS) for im in images],
        "PNG encode, OpenCV's default settings": lambda: [cv2.imencode(".png", im) for im in images],
        "PNG write (atomic, no fsync)": lambda: [atomic_write_bytes(folder / f"w{i}.png", b, fsync=False)
                                                 for i, b in enumerate(bufs)],
        "packed-row write (pwrite)": write_rows,
        "PNG read-back (what pack did before)": lambda: [read_png(folder / f"{i}.png") for i in range(len(files))],
    }
    out = {}
    for name, fn in steps.items():
        best = min(_cpu(fn) for _ in range(3))
        out[name] = round(1000 * best / len(files), 3)
    out["png_kib_per_file"] = round(sum(map(len, bufs)) / len(bufs) / 1024, 1)
    out["png_kib_per_file_opencv_default"] = round(
        sum(len(cv2.imencode(".png", im)[1]) for im in images) / len(images) / 1024, 1)
    shutil.rmtree(folder)
    return out


def _cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


# --------------------------------------------------------------------------- one scale, in a child process
def child_main(args) -> None:
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.data import split
    from cnnrnn.features import SpectrogramConfig, log_mel

    tmp_root = Path(args.tmp)
    data = Path(args.data)
    csv = repeated_corpus(data, args.scale, tmp_root / f"corpus_x{args.scale}")
    files = sorted(csv.parent.glob("*.wav"))
    split_dir = tmp_root / f"split_x{args.scale}"
    split("manifest", csv, split_dir, load_config(None))
    workers = args.workers or os.cpu_count() or 1
    # warm this process (the pools fork from it): imports, librosa's and our first calls
    _floor_chunk([str(f) for f in files[:2]])
    _lean_chunk([str(f) for f in files[:2]])
    log_mel(__import__("numpy").zeros(64000, "float32"), SpectrogramConfig())
    runs: dict[str, list[dict]] = {p: [] for p in args.paths}
    for r in range(args.repeats):
        for path in args.paths:
            load = loadavg()
            if path == "floor":
                res = run_pool(_floor_chunk, files, workers)
            elif path == "lean_floor":
                res = run_pool(_lean_chunk, files, workers)
            else:
                res = run_stage(split_dir, tmp_root, pickle=path == "stage", workers=workers)
            res["load_before_after"] = [load, loadavg()]
            res["files_per_s"] = round(len(files) / res["seconds"], 2)
            runs[path].append(res)
            print(f"[x{args.scale} repeat {r + 1}] {path}: {res['files_per_s']} files/s", flush=True)
    result = {"scale": args.scale, "n_files": len(files), "workers": workers, "runs": runs}
    if args.profile_files and args.scale == 1:
        result["profile_cpu_ms_per_file"] = profile(files[:args.profile_files], tmp_root)
    result["peak_rss_mib"] = {"self": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                              "largest_child": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)}
    print("RESULT " + json.dumps(result), flush=True)


def summarise(res: dict, paths: list[str]) -> dict:
    n = res["n_files"]
    out = {"n_files": n}
    for p in paths:
        runs = res["runs"][p]
        best = min(r["seconds"] for r in runs)
        out[p] = {"files_per_s_best": round(n / best, 1),
                  "files_per_s_median": round(n / statistics.median(r["seconds"] for r in runs), 1)}
        out[p]["cpu_ms_per_file_best"] = round(1000 * min(r["cpu_seconds"] for r in runs) / n, 3)
    floor = res["runs"]["floor"]
    for p in ("stage", "stage_no_pickle", "lean_floor"):
        if p in paths:
            pairs = [f["seconds"] / s["seconds"] for f, s in zip(floor, res["runs"][p])]
            out[f"{p}_fraction_of_floor"] = {
                "best_over_best": round(out[p]["files_per_s_best"] / out["floor"]["files_per_s_best"], 3),
                "per_repeat": [round(v, 3) for v in pairs], "median": round(statistics.median(pairs), 3),
                "cpu": round(out["floor"]["cpu_ms_per_file_best"] / out[p]["cpu_ms_per_file_best"], 3)}
    if "stage" in paths:
        stage = res["runs"]["stage"]
        out["stage_split_seconds_best_run"] = min(
            ({"spectrograms": round(r["spectrograms_seconds"], 3), "pack": round(r["pack_seconds"], 3)}
             for r in stage), key=lambda d: d["spectrograms"] + d["pack"])
    return out


# --------------------------------------------------------------------------- parent
def spawn(args, scale: int, tmp_root: Path) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--scale", str(scale), "--data", str(args.data),
           "--repeats", str(args.repeats), "--tmp", str(tmp_root), "--workers", str(args.workers),
           "--profile-files", str(args.profile_files), "--paths", *args.paths]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(REPO))
    sys.stdout.write("".join(ln + "\n" for ln in proc.stdout.splitlines() if not ln.startswith("RESULT ")))
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-5000:])
        raise SystemExit(f"x{scale} failed with exit code {proc.returncode}")
    res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1][len("RESULT "):])
    res["child_wall_seconds"] = round(time.perf_counter() - t0, 1)
    return res


def wait_quiet(max_load: float, max_wait: float) -> dict:
    t0 = time.perf_counter()
    while True:
        load = loadavg()
        waited = time.perf_counter() - t0
        if load is None or load[0] < max_load or waited >= max_wait:
            return {"max_load": max_load, "waited_seconds": round(waited, 1), "load": load,
                    "quiet": load is None or load[0] < max_load}
        print(f"waiting for a quiet machine: load average {load}", flush=True)
        time.sleep(15)


def machine_info() -> dict:
    from _common import machine

    info = machine()
    try:
        info["ram_gib"] = round(int(next(ln.split()[1] for ln in Path("/proc/meminfo").read_text().splitlines()
                                         if ln.startswith("MemTotal:"))) / 1024 ** 2, 1)
    except (OSError, StopIteration):
        pass
    return info


def versions() -> dict:
    import cv2
    import librosa
    import numpy
    import scipy
    import soundfile
    import soxr

    import cnnrnn

    return {"python": platform.python_version(), "numpy": numpy.__version__, "scipy": scipy.__version__,
            "librosa": librosa.__version__, "opencv": cv2.__version__, "soundfile": soundfile.__version__,
            "soxr": soxr.__version__, "cnnrnn": cnnrnn.__version__}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=str(REPO)).stdout.strip() or None
    except OSError:
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="folder of .wav files (default: %(default)s)")
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 8], help="copies of the corpus (default: 1 8)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating runs of every path (default 2)")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS, help="paths to run (floor always)")
    ap.add_argument("--workers", type=int, default=0, help="processes of every parallel path (0: one per core)")
    ap.add_argument("--profile-files", type=int, default=200, help="files of the per-step profile (0: none)")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default: %(default)s)")
    ap.add_argument("--tmp", default=None, help="parent folder of the working files (default: system temp)")
    ap.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                    help="first wait up to this long for the 1-min load average to fall below --max-load")
    ap.add_argument("--max-load", type=float, default=0.5, help="load average counted as quiet (default %(default)s)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--scale", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if "floor" not in args.paths:
        args.paths = ["floor", *args.paths]
    if args.child:
        child_main(args)
        return 0
    args.data = str(Path(args.data).resolve())
    machine = machine_info()
    load_start = loadavg()
    quiet = wait_quiet(args.max_load, args.wait_quiet) if args.wait_quiet > 0 else None
    started = time.perf_counter()
    tmp_root = Path(tempfile.mkdtemp(prefix="cnnrnn_spec_bench_", dir=args.tmp))
    results = {}
    try:
        for scale in args.scales:
            print(f"x{scale}: {scale * len(list_wavs(Path(args.data)))} files", flush=True)
            results[f"x{scale}"] = spawn(args, scale, tmp_root)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
    from cnnrnn.features import SpectrogramConfig

    summary = {k: summarise(v, args.paths) for k, v in results.items()}
    result = {
        "benchmark": "spectrogram_throughput",
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "data": {"folder": args.data, "scales": args.scales},
        "machine": machine,
        "load_average_start_end": [load_start, loadavg()],
        "quiet_check": quiet,
        "versions": versions(),
        "config": {"spectrogram": SpectrogramConfig().__dict__, "repeats": args.repeats, "chunk_files": CHUNK},
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
