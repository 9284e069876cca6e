"""Prediction latency: one 2 s clip end to end, and the marginal cost per clip, for Keras and ONNX models.

Issue 14, item 3 (quick predict). Three CNNRNN models, each a run folder as training writes it (``config.json``,
``labels.json``, ``run.json``, one ``.h5`` checkpoint) with random weights (latency does not depend on them),
and each exported to ONNX with ``cnnrnn export`` (:mod:`cnnrnn.export`):

* ``tiny``: the ``tiny`` preset's model (ResNet50 + LSTM 8, 32x64 images of 2 s);
* ``emodb``: the shipped ``emodb`` model (compact backbone + LSTM 64, 64x128 images of 2 s, cut into 64-pixel
  time crops inside the model, speaker normalisation): the 64x128 model of the target;
* ``default``: the ``default`` preset's model (ResNet50 + LSTM 128, 224x224 images of 4 s).

Measured, in this order, in one run:

1. **one clip, end to end**: the wall time of a fresh ``python -m cnnrnn -q predict --model M --input clip.wav``
   process (the real command line: imports, model load, decoding, features, prediction, ``predictions.csv``),
   against a bare ``python -c "import tensorflow"`` measured in the same rounds (interleaved, ``--repeats``
   rounds, medians; the children's CPU time, user + system, too, which a loaded machine inflates less). Targets:
   Keras ≤ bare TensorFlow + 1.5 s (the ``tiny`` model); ONNX ≤ 1.5 s, without importing TensorFlow (checked: the
   child reports ``sys.modules``).
2. **marginal cost per clip** at batch 1 and 32: in one child process per model and runtime, the model loaded
   once and warmed up, the per-clip work timed over many clips: features (decode + resample + log-mel + image, the
   family's own :func:`cnnrnn.cnnrnn.predict.collect_inputs` / :func:`cnnrnn.export.model_inputs`) and the model
   (:func:`cnnrnn.cnnrnn.train.predict_proba` / ``ExportedModel.predict``), each divided by the clip count.
   Medians of 3 timings. Target: ≤ 25 ms per 2 s clip at 64x128 with one model, batched (the ``emodb`` model at
   batch 32).
3. **the CNNRNN test stage** (:func:`cnnrnn.cnnrnn.predict.evaluate`): 5 fold models of the ``demo`` preset
   (ResNet50 + LSTM 64, 64x128) on 23 clips, each model loaded once and predicted in batches.

The machine is shared: the load average is recorded before and after, and the targets are judged on figures
measured in the same rounds. Results: ``benchmarks/results/predict_latency.json``. Run from the repository root
(about 5 minutes on a 2-core CPU; the ONNX exports, once, about 2 more)::

    python benchmarks/predict_latency.py
    python benchmarks/predict_latency.py --models tiny,emodb --repeats 5
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

DEFAULT_OUT = REPO / "benchmarks" / "results" / "predict_latency.json"
DEFAULT_WORK = REPO / "benchmarks" / "work" / "predict_latency"
SAMPLE_WAV = REPO / "cnnrnn" / "sample" / "kemdy20" / "wav"
LABELS = ["anger", "boredom", "disgust", "fear", "happiness", "sadness", "neutral"]
#: The models: preset (or the shipped model) and what the results call them.
MODELS = {"tiny": "tiny_resnet50", "emodb": "emodb", "default": "default"}  # tiny: the tests' size, ResNet50
#: Clips timed per model for the marginal cost: (batch size, clips); the ResNet50 at 224x224 gets fewer.
MARGINAL_PLAN = {"default": ((1, 6), (32, 32))}
MARGINAL_DEFAULT = ((1, 24), (32, 96))
#: Timings of each batch size in the marginal measurement (the median is kept).
MARGINAL_REPEATS = 3
TARGETS = {"keras_over_tensorflow_s": 1.5, "onnx_one_clip_s": 1.5, "marginal_ms_64x128_batched": 25.0}
TEST_STAGE = {"preset": "demo", "folds": 5, "clips": 23}
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONDONTWRITEBYTECODE": "1"}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# --------------------------------------------------------------------------- the models
def build_run(folder: Path, preset: str, folds: int = 1, seed: int = 0) -> Path:
    """A run folder as ``cnnrnn train`` writes it, with ``folds`` randomly initialised checkpoints."""
    import keras

    from cnnrnn.artifacts import save_json, save_model_h5
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.train import checkpoint_path, input_spec
    from cnnrnn.models.cnnrnn import build_cnnrnn
    from cnnrnn.runs import write_manifest

    if (folder / "run.json").is_file():
        return folder
    cfg = load_config(preset)
    h, w = cfg.spectrogram.image_size
    shape = (h, cfg.train.crop_width or w, 3)
    checkpoints = []
    for k in range(1, folds + 1):
        keras.utils.set_random_seed(seed + k)
        model = build_cnnrnn(shape, len(LABELS), "none", **cfg.train.model_options())
        checkpoints.append(save_model_h5(model, checkpoint_path(folder, cfg.train, k)))
    save_json(cfg.to_dict(), folder / "config.json")
    save_json(LABELS, folder / "labels.json")
    write_manifest(folder, "cnnrnn", cfg.to_dict(), LABELS, split={"scheme": "stratified", "folds": folds},
                   input_spec=input_spec(cfg), checkpoints=checkpoints)
    return folder


def model_paths(work: Path, names: list[str]) -> dict[str, dict[str, Path]]:
    """``{name: {"keras": run folder or checkpoint, "onnx": .onnx}}``, building and exporting what is missing."""
    import cnnrnn.predict

    out = {}
    for name in names:
        if name == "emodb":
            run = cnnrnn.predict.resolve_model("emodb")
        else:
            run = build_run(work / "runs" / name, MODELS[name])
        onnx = work / "onnx" / f"{name}.onnx"
        if not onnx.is_file() or not Path(f"{onnx}.json").is_file():
            print(f"exporting {name} to ONNX ...", flush=True)
            subprocess.run([sys.executable, "-m", "cnnrnn", "-q", "export", "--model", str(run), "--format", "onnx",
                            "--out", str(onnx)], check=True, env=ENV, cwd=work)
        out[name] = {"keras": run, "onnx": onnx}
    return out


def make_clips(work: Path, n: int) -> list[Path]:
    """``n`` 2 s clips of real speech (the bundled sample's recordings, which are 2.0 s at 16 kHz)."""
    files = sorted(SAMPLE_WAV.rglob("*.wav"))
    folder = work / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        dst = folder / f"clip{k:03d}.wav"
        if not dst.is_file():
            shutil.copyfile(files[k % len(files)], dst)
        out.append(dst)
    return out


# --------------------------------------------------------------------------- 1. one clip, end to end
PROBE = ("import runpy, sys, time, json; t = time.perf_counter(); sys.argv = ['cnnrnn'] + sys.argv[1:]\n"
         "try:\n    runpy.run_module('cnnrnn', run_name='__main__')\nexcept SystemExit as e:\n    code = e.code\n"
         "print('@@' + json.dumps({'tensorflow_imported': 'tensorflow' in sys.modules}), file=sys.stderr)")


def child_cpu() -> float:
    """User + system CPU seconds of this process's reaped children so far."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str], cwd: Path, cpu: list[float] | None = None) -> tuple[float, str]:
    """Run ``cmd``; its wall time and stderr (``cpu``: its CPU seconds are appended)."""
    start, cpu0 = time.perf_counter(), child_cpu()
    done = subprocess.run(cmd, cwd=cwd, env=ENV, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if cpu is not None:
        cpu.append(child_cpu() - cpu0)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): {' '.join(cmd)}\n{done.stderr[-2000:]}")
    return wall, done.stderr


def one_clip(paths: dict, clip: Path, work: Path, repeats: int) -> dict:
    """Median wall times of the bare imports and of each model's one-clip ``cnnrnn predict`` process."""
    commands = {"bare_import_tensorflow": [sys.executable, "-c", "import tensorflow"],
                "bare_python": [sys.executable, "-c", "pass"]}
    for name, p in paths.items():
        for runtime, model in p.items():
            commands[f"{name}/{runtime}"] = [sys.executable, "-m", "cnnrnn", "-q", "predict", "--model", str(model),
                                             "--input", str(clip), "--out", str(work / "out" / name / runtime)]
    # the ONNX process once more, through a probe that reports whether TensorFlow was imported
    probes = {}
    for name, p in paths.items():
        _, err = timed([sys.executable, "-c", PROBE, "-q", "predict", "--model", str(p["onnx"]), "--input", str(clip),
                        "--out", str(work / "out" / name / "probe")], work)
        probes[name] = json.loads(err.rsplit("@@", 1)[1])
    for cmd in commands.values():  # warm the file cache once
        timed(cmd, work)
    times: dict[str, list[float]] = {k: [] for k in commands}
    cpu: dict[str, list[float]] = {k: [] for k in commands}
    for r in range(repeats):
        for key, cmd in commands.items():
            times[key].append(timed(cmd, work, cpu[key])[0])
        print(f"  round {r + 1}/{repeats}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()), flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
    tf = med["bare_import_tensorflow"]
    out = {"bare_import_tensorflow_s": round(tf, 3), "bare_python_s": round(med["bare_python"], 3),
           "bare_import_tensorflow_cpu_s": round(med_cpu["bare_import_tensorflow"], 3),
           "runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
           "cpu_s": {k: [round(t, 3) for t in v] for k, v in cpu.items()}, "models": {}}
    for name in paths:
        keras_s, onnx_s = med[f"{name}/keras"], med[f"{name}/onnx"]
        out["models"][name] = {
            "keras_s": round(keras_s, 3), "keras_over_tensorflow_s": round(keras_s - tf, 3),
            "keras_ratio_to_tensorflow": round(keras_s / tf, 3),
            "keras_cpu_s": round(med_cpu[f"{name}/keras"], 3),
            "keras_cpu_over_tensorflow_s": round(med_cpu[f"{name}/keras"] - med_cpu["bare_import_tensorflow"], 3),
            "onnx_s": round(onnx_s, 3), "onnx_ratio_to_tensorflow": round(onnx_s / tf, 3),
            "onnx_cpu_s": round(med_cpu[f"{name}/onnx"], 3),
            "onnx_imports_tensorflow": probes[name]["tensorflow_imported"]}
    return out


# --------------------------------------------------------------------------- 2. marginal cost (child process)
def marginal_worker(name: str, runtime: str, model: str, clips: list[str], plan: list[tuple[int, int]]) -> dict:
    """In a child: load the model once, warm up, then time features and model per clip at each batch size."""
    import numpy as np

    clips = [Path(c) for c in clips]
    result = {}
    if runtime == "onnx":
        from cnnrnn.export import load_exported, model_inputs, read_sidecar

        t = time.perf_counter()
        runner, pre = load_exported(model), read_sidecar(model)["preprocessing"]
        result["import_and_first_load_s"] = round(time.perf_counter() - t, 3)
        t = time.perf_counter()
        load_exported(model)
        result["load_again_s"] = round(time.perf_counter() - t, 3)

        def features(files):
            return model_inputs(pre, files).x

        def predict(x, batch):
            return runner.predict(x, batch)
    else:
        import logging

        from cnnrnn.artifacts import load_checkpoints
        from cnnrnn.cnnrnn.config import load_config
        from cnnrnn.cnnrnn.predict import checkpoints_in, collect_inputs, image_input
        from cnnrnn.cnnrnn.train import EAGER_BATCHES, predict_proba

        logging.getLogger("cnnrnn").setLevel(logging.ERROR)
        run = Path(model)
        cfg = load_config(run / "config.json")
        t = time.perf_counter()
        models, shape, _ = load_checkpoints(checkpoints_in([run / "models"]), LABELS)
        result["import_and_first_load_s"] = round(time.perf_counter() - t, 3)  # TensorFlow's import included
        t = time.perf_counter()
        load_checkpoints(checkpoints_in([run / "models"]), LABELS)
        result["load_again_s"] = round(time.perf_counter() - t, 3)
        net = models[0]
        shape = image_input(shape, run)
        size = (shape[0], cfg.spectrogram.image_size[1]) if cfg.train.crop_width else tuple(shape[:2])

        def features(files):
            return collect_inputs(list(files), size, cfg.spectrogram, progress=False).images

        def predict(x, batch):
            return predict_proba(net, x, batch, cfg.train.crop_hop)

        t = time.perf_counter()
        predict(features(clips[:EAGER_BATCHES + 1]), 1)  # traces the model's graph once (kept on the model)
        result["trace_s"] = round(time.perf_counter() - t, 3)
    features(clips[:2])  # first calls: imports, caches
    for batch, n in plan:
        files = clips[:n]
        feats, mods = [], []
        predict(features(files[:batch]), batch)  # warm this batch size
        for _ in range(MARGINAL_REPEATS):
            t = time.perf_counter()
            x = features(files)
            feats.append(time.perf_counter() - t)
            t = time.perf_counter()
            proba = predict(x, batch)
            mods.append(time.perf_counter() - t)
        t_feat, t_model = statistics.median(feats), statistics.median(mods)
        assert proba.shape == (n, len(LABELS)) and np.isfinite(proba).all()
        result[f"batch_{batch}"] = {"clips": n, "features_ms_per_clip": round(1000 * t_feat / n, 2),
                                    "model_ms_per_clip": round(1000 * t_model / n, 2),
                                    "total_ms_per_clip": round(1000 * (t_feat + t_model) / n, 2)}
    return result


def marginal(paths: dict, clips: list[Path], work: Path) -> dict:
    out = {}
    for name, p in paths.items():
        plan = MARGINAL_PLAN.get(name, MARGINAL_DEFAULT)
        for runtime, model in p.items():
            spec = json.dumps({"name": name, "runtime": runtime, "model": str(model),
                               "clips": [str(c) for c in clips[:max(n for _, n in plan)]], "plan": plan})
            _, err = timed([sys.executable, str(Path(__file__).resolve()), "--worker", spec], work)
            out[f"{name}/{runtime}"] = json.loads(err.rsplit("@@", 1)[1])
            print(f"  {name}/{runtime}: {out[f'{name}/{runtime}']}", flush=True)
    return out


# --------------------------------------------------------------------------- 3. the test stage
def test_stage(work: Path, clips: list[Path]) -> dict:
    """``cnnrnn.cnnrnn.predict.evaluate`` of a ``demo``-preset run with 5 fold models on 23 clips, in a child."""
    code = f"""
import json, sys, time, logging
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from predict_latency import build_run, LABELS
from pathlib import Path
import numpy as np
from cnnrnn.artifacts import save_pickle, FINAL_FILES
from cnnrnn.cnnrnn.config import load_config
from cnnrnn.features import audio_to_image
from cnnrnn import artifacts
logging.getLogger("cnnrnn").setLevel(logging.ERROR)
run = build_run(Path({str(work / 'runs' / 'demo5')!r}), {TEST_STAGE['preset']!r}, folds={TEST_STAGE['folds']})
cfg = load_config(run / "config.json")
clips = [Path(c) for c in {[str(c) for c in clips[:TEST_STAGE['clips']]]!r}]
images = np.stack([audio_to_image(c, cfg.spectrogram) for c in clips])
save_pickle({{"id": [c.stem for c in clips], "path": images, "emotion": [i % len(LABELS) for i in range(len(clips))]}},
            run / FINAL_FILES["test"])
loads = []
real = artifacts.load_model
artifacts.load_model = lambda *a, **k: loads.append(a[0]) or real(*a, **k)
from cnnrnn.cnnrnn.predict import evaluate
t = time.perf_counter()
evaluate(run, run / "config.json", progress=False)
print("@@" + json.dumps({{"seconds": round(time.perf_counter() - t, 2), "models": {TEST_STAGE['folds']},
                         "clips": len(clips), "model_loads": len(loads)}}), file=sys.stderr)
"""
    _, err = timed([sys.executable, "-c", code], work)
    return json.loads(err.rsplit("@@", 1)[1])


# --------------------------------------------------------------------------- main
def summary(result: dict) -> dict:
    one, marg = result["one_clip"], result["marginal"]
    out = {}
    for name, m in one["models"].items():
        out[name] = {
            "keras_one_clip_s": m["keras_s"], "keras_over_tensorflow_s": m["keras_over_tensorflow_s"],
            "keras_cpu_over_tensorflow_s": m["keras_cpu_over_tensorflow_s"],
            "onnx_one_clip_s": m["onnx_s"], "onnx_one_clip_cpu_s": m["onnx_cpu_s"],
            "onnx_imports_tensorflow": m["onnx_imports_tensorflow"],
            **{f"{rt}_marginal_ms_batch_{b}": marg[f"{name}/{rt}"][f"batch_{b}"]["total_ms_per_clip"]
               for rt in ("keras", "onnx") for b in (1, 32) if f"batch_{b}" in marg.get(f"{name}/{rt}", {})}}
    met = {}
    if "tiny" in out:
        met["tiny_keras_within_1.5s_of_tensorflow"] = out["tiny"]["keras_over_tensorflow_s"] <= TARGETS[
            "keras_over_tensorflow_s"]
        met["tiny_onnx_one_clip_within_1.5s"] = out["tiny"]["onnx_one_clip_s"] <= TARGETS["onnx_one_clip_s"]
    if "emodb" in out:
        met["emodb_64x128_marginal_batch32_within_25ms"] = {
            rt: out["emodb"].get(f"{rt}_marginal_ms_batch_32", 1e9) <= TARGETS["marginal_ms_64x128_batched"]
            for rt in ("keras", "onnx")}
    met["onnx_without_tensorflow"] = not any(m["onnx_imports_tensorflow"] for m in one["models"].values())
    return {"per_model": out, "targets": TARGETS, "met": met}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,emodb,default", help="comma-separated: tiny, emodb, default")
    ap.add_argument("--repeats", type=int, default=3, help="rounds of the one-clip processes (medians)")
    ap.add_argument("--work", type=Path, default=DEFAULT_WORK)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--skip-test-stage", action="store_true")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        result = marginal_worker(spec["name"], spec["runtime"], spec["model"], spec["clips"],
                                 [tuple(p) for p in spec["plan"]])
        print("@@" + json.dumps(result), file=sys.stderr)
        return 0
    os.environ.update({k: v for k, v in ENV.items() if k not in os.environ})
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = sorted(set(names) - set(MODELS))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result = {"benchmark": "predict_latency", "date": _dt.datetime.now().isoformat(timespec="seconds"),
              "machine": machine(), "load_average_before": load_average()}
    paths = model_paths(work, names)
    clips = make_clips(work, max(max(n for _, n in MARGINAL_PLAN.get(m, MARGINAL_DEFAULT)) for m in names))
    print("one clip, end to end ...", flush=True)
    result["one_clip"] = one_clip(paths, clips[0], work, args.repeats)
    print("marginal cost per clip ...", flush=True)
    result["marginal"] = marginal(paths, clips, work)
    if not args.skip_test_stage:
        print("test stage ...", flush=True)
        result["test_stage"] = {**TEST_STAGE, **test_stage(work, clips)}
    result["load_average_after"] = load_average()
    result["seconds"] = round(time.perf_counter() - started, 1)
    result["summary"] = summary(result)
    save_result(result, args.out)
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
