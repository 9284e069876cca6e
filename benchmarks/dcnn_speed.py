"""DCNN-BLSTMwA speed on this CPU: step-1 training segments/s and end-to-end inference utterances/s per
backbone, and the peak memory (RSS) of step-2 feature extraction over the whole EmoDB corpus.

* training: ``train_on_batch`` on real EmoDB segments through :func:`cnnrnn.dcnn.data.segment_dataset` (resize +
  ImageNet normalisation included), batch 32, after 2 warm-up batches; the benchmark's reduced sizes and the
  paper's full sizes (227×227 AlexNet, 224×224 ResNet50);
* inference: :func:`cnnrnn.dcnn.predict.infer` on 100 wav files (load, resample 22.05 → 16 kHz, features, DCNN,
  BiLSTM-attention, CSV), models from a 1-epoch run on 60 utterances, timed on a second call (the first pays
  for numba and graph tracing); model loading is included;
* memory: a child process runs :func:`cnnrnn.dcnn.data.load_segments` + :func:`cnnrnn.dcnn.data.utterance_features`
  over all 535 utterances and reports its RSS before and its peak (VmHWM) after.

    nice -n 10 python benchmarks/dcnn_speed.py      # writes benchmarks/results/dcnn_speed.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402
sys.path.insert(0, str(HERE))
from dcnn_accuracy import DATA, machine  # noqa: E402

#: (name, backbone, image size, width, fc_units, timed batches)
SETTINGS = [("alexnet_96_w0.5", "alexnet", 96, 0.5, 512, 20), ("alexnet_227_paper", "alexnet", 227, 1.0, 4096, 6),
            ("resnet50_64", "resnet50", 64, 1.0, 512, 8), ("resnet50_224_paper", "resnet50", 224, 1.0, 512, 3)]


def corpus_list(work: Path) -> tuple[Path, Path]:
    """A filelist of the whole corpus and its labels.json (from cnnrnn.dcnn.filelists.prepare_filelists)."""
    from cnnrnn.dcnn.filelists import prepare_filelists

    lists = work / "filelists"
    if not (lists / "labels.json").is_file():
        prepare_filelists("emodb", DATA, lists, folds=5, seed=42, loso=False, folds_by="speaker")
    whole = lists / "all.txt"
    whole.write_text("".join((lists / "kfold" / f"fold1_{s}.txt").read_text() for s in ("train", "test")))
    return whole, lists / "labels.json"


def config(work: Path, labels: Path, backbone: str, size: int, width: float, fc: int, flist: str) -> dict:
    from cnnrnn.dcnn.config import load_dcnn_config

    cfg = load_dcnn_config("emodb_finetune").to_dict()
    cfg["data"].update(sr=16000, max_sec=2.0, image_size=[size, size], labels_file=str(labels),
                       filelist_train=flist, filelist_test=flist)
    cfg["model"].update(backbone=backbone, width=width, fc_units=fc)
    cfg["train"].update(log_root=str(work / "logs"), name=f"{backbone}_finetune", epochs=1, batch_size=32)
    return cfg


def vm_mb(field: str) -> float:
    """``VmRSS`` (now) or ``VmHWM`` (peak) of this process in MB, from /proc/self/status. Not ``ru_maxrss``: on
    Linux that keeps the parent's peak across fork + exec, so a child started from a big process reads high."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_child(args) -> int:
    """Peak RSS of step-2 feature extraction over the whole corpus (run in its own process)."""
    from cnnrnn.artifacts import load_labels, load_model
    from cnnrnn.dcnn.config import DCNN_META, read_sidecar
    from cnnrnn.dcnn.data import load_segments, utterance_features
    from cnnrnn.models.dcnn import feature_extractor

    whole, labels = corpus_list(args.work)
    extractor = feature_extractor(load_model(args.rss_child))
    _, feats, _ = read_sidecar(args.rss_child, DCNN_META)
    before = vm_mb("VmRSS")
    t = time.time()
    s = load_segments(whole, load_labels(labels), feats, progress=False)
    x = utterance_features(extractor, s.segments, feats.image_size)
    print(json.dumps({"utterances": len(s.paths), "features_shape": list(x.shape),
                      "rss_before_mb": before, "peak_rss_mb": vm_mb("VmHWM"), "seconds": round(time.time() - t, 1),
                      "note": "before = TensorFlow imported and the DCNN loaded; peak = process high-water mark"}))
    return 0


def measure_memory(work: Path, checkpoint) -> dict:
    """Run :func:`rss_child` in a fresh process; its JSON line."""
    child = subprocess.run([sys.executable, __file__, "--work", str(work), "--rss-child", str(checkpoint)],
                           capture_output=True, text=True, check=True)
    return json.loads(child.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=HERE / "work" / "dcnn_speed")
    p.add_argument("--out", type=Path, default=HERE / "results" / "dcnn_speed.json")
    p.add_argument("--rss-child", help=argparse.SUPPRESS)
    p.add_argument("--memory-only", action="store_true",
                   help="only re-measure the memory, with the checkpoints of an earlier run, into the existing JSON")
    args = p.parse_args()
    if args.rss_child:
        return rss_child(args)

    if args.memory_only:
        result = json.loads(args.out.read_text())
        result["memory"] = {name: measure_memory(args.work, args.work / "logs" / f"{backbone}_finetune" / "dcnn.h5")
                            for name, backbone, *_ in SETTINGS[0::2]}
        result["commands"].append("nice -n 10 python " + " ".join(sys.argv))
        save_result(result, args.out)
        return 0

    import keras
    import numpy as np

    from cnnrnn.artifacts import load_labels
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.data import load_segments, segment_dataset
    from cnnrnn.dcnn.filelists import read_filelist
    from cnnrnn.dcnn.predict import infer
    from cnnrnn.dcnn.train import finetune, train
    from cnnrnn.models.dcnn import build_dcnn

    result = {"benchmark": "dcnn_speed", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(
        timespec="seconds"), "machine": machine(), "commands": ["nice -n 10 python " + " ".join(sys.argv)],
        "load_before": list(os.getloadavg()), "training": {}, "inference": {}, "memory": {}}
    whole, labels_path = corpus_list(args.work)
    labels = load_labels(labels_path)
    subset = args.work / "subset60.txt"
    subset.write_text("".join(whole.read_text().splitlines(keepends=True)[::9][:60]))
    wavs = [e.wavpath for e in read_filelist(whole, labels)[0][:100]]
    cfg0 = load_dcnn_config(config(args.work, labels_path, "alexnet", 96, 0.5, 512, str(subset)))
    segs = load_segments(subset, labels, cfg0.data.features(), progress=False)
    x = np.concatenate(segs.segments)
    y = np.repeat(segs.labels, segs.counts)

    for name, backbone, size, width, fc, n_batches in SETTINGS:
        model = build_dcnn((size, size, 3), len(labels), backbone, "none", width, fc, 0.5)
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
        batches = iter(segment_dataset(x, y, (size, size), 32, shuffle=True).repeat())
        for _ in range(2):
            model.train_on_batch(*next(batches))
        t = time.time()
        for _ in range(n_batches):
            model.train_on_batch(*next(batches))
        seconds = time.time() - t
        result["training"][name] = {"segments_per_s": round(32 * n_batches / seconds, 1), "batch": 32,
                                    "timed_batches": n_batches, "params": model.count_params()}
        print(name, result["training"][name], flush=True)

    for name, backbone, size, width, fc, _ in SETTINGS[0::2]:  # the benchmark's reduced sizes
        cfg = config(args.work, labels_path, backbone, size, width, fc, str(subset))
        run1 = finetune(load_dcnn_config(cfg), progress=False, verbose=0)
        cfg["train"].update(name=f"{backbone}_train", finetune_name=f"{backbone}_finetune", batch_size=16)
        run2 = train(load_dcnn_config(cfg), progress=False, verbose=0)
        infer(run2["checkpoint"], wavs[:4], progress=False)      # warm-up: numba, tracing
        t = time.time()
        df, _ = infer(run2["checkpoint"], wavs, progress=False)
        seconds = time.time() - t
        result["inference"][name] = {"utterances_per_s": round(len(df) / seconds, 2), "utterances": len(df),
                                     "seconds": round(seconds, 1), "includes": "model loading, audio, features, "
                                                                               "DCNN, BiLSTM-attention, CSV"}
        print(name, result["inference"][name], flush=True)
        result["memory"][name] = measure_memory(args.work, run1["checkpoint"])
        print(name, result["memory"][name], flush=True)
    result["load_after"] = list(os.getloadavg())
    save_result(result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
