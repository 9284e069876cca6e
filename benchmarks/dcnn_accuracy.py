"""DCNN-BLSTMwA accuracy on EmoDB (emodb-535), speaker-independent 5 folds of 2 speakers, reduced protocol.

For each backbone (AlexNet-style DCNN, ResNet50) and fold: step 1 (:func:`cnnrnn.dcnn.train.finetune`) gives the
DCNN alone ("without step 2": segment probabilities averaged per utterance), step 2
(:func:`cnnrnn.dcnn.train.train`) the full DCNN-BLSTMwA. UA, WA and F1-macro per fold and mean on the test
speakers. The paper's full settings (227×227, 30 epochs, ImageNet-pretrained AlexNet) do not fit a shared
2-core CPU, so the protocol is reduced; every reduction is written into the result JSON. ``--protocol loso``
runs leave-one-speaker-out instead (10 folds of one test speaker; results under ``loso_runs``).

Segments are computed once for the whole corpus and sliced per fold. Results are written after every fold,
each with the date, CPU and load it was measured with; a rerun skips the folds already in the JSON.

    nice -n 10 python benchmarks/dcnn_accuracy.py            # writes benchmarks/results/dcnn_accuracy.json
    python benchmarks/dcnn_accuracy.py --protocol loso --backbones alexnet
"""
from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import save_result  # noqa: E402
DATA = HERE.parent.parent / "shared" / "data" / "emodb-535"
PAPER_UAR_EMODB = 0.8786  # Zhang et al. 2021, EMO-DB


def machine() -> dict:
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True, text=True).stdout.strip()
    return {"cpu": cpu.split(":", 1)[-1].strip(), "cores": os.cpu_count(), "python": platform.python_version()}


def base_config(args, backbone: str) -> dict:
    from cnnrnn.dcnn.config import load_dcnn_config

    cfg = load_dcnn_config("emodb_finetune").to_dict()
    size = args.alexnet_size if backbone == "alexnet" else args.resnet_size
    cfg["data"].update(sr=16000, max_sec=2.0, image_size=[size, size],
                       labels_file=str(args.work / "filelists" / "labels.json"))
    cfg["model"].update(backbone=backbone, width=args.width, fc_units=args.fc_units)
    cfg["train"].update(log_root=str(args.work / "logs"), learning_rate=args.lr1, lr_decay=args.decay1,
                        batch_size=args.batch1, epochs=args.epochs1 if backbone == "alexnet" else args.resnet_epochs)
    return cfg


def step2_config(cfg1: dict, args) -> dict:
    cfg = copy.deepcopy(cfg1)
    cfg["train"].update(learning_rate=args.lr2, lr_decay=args.decay2, batch_size=16, epochs=args.epochs2,
                        finetune_name=cfg1["train"]["name"], name=cfg1["train"]["name"].replace("finetune", "train"))
    return cfg


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--work", type=Path, default=HERE / "work" / "dcnn_accuracy")
    p.add_argument("--out", type=Path, default=HERE / "results" / "dcnn_accuracy.json")
    p.add_argument("--protocol", choices=("kfold", "loso"), default="kfold",
                   help="kfold: 5 folds of 2 test speakers (--alexnet-folds / --resnet-folds); loso: one test "
                        "speaker per fold (--loso-speakers)")
    p.add_argument("--loso-speakers", default="", help="comma-separated EmoDB speakers (default: all 10)")
    p.add_argument("--backbones", default="alexnet,resnet50")
    p.add_argument("--alexnet-folds", default="1,2,3,4,5")
    p.add_argument("--resnet-folds", default="1,2")
    p.add_argument("--alexnet-size", type=int, default=96)
    p.add_argument("--resnet-size", type=int, default=64)
    p.add_argument("--width", type=float, default=0.5, help="AlexNet filter multiplier")
    p.add_argument("--fc-units", type=int, default=512)
    p.add_argument("--epochs1", type=int, default=25)
    p.add_argument("--resnet-epochs", type=int, default=8)
    p.add_argument("--lr1", type=float, default=3e-4)
    p.add_argument("--decay1", type=float, default=0.93)
    p.add_argument("--batch1", type=int, default=64)
    p.add_argument("--epochs2", type=int, default=30)
    p.add_argument("--lr2", type=float, default=1e-3)
    p.add_argument("--decay2", type=float, default=0.9)
    args = p.parse_args()

    from cnnrnn.artifacts import load_labels
    from cnnrnn.dcnn.config import load_dcnn_config
    from cnnrnn.dcnn.data import SegmentSet, load_segments, merged_skips
    from cnnrnn.dcnn.filelists import prepare_filelists, read_filelist
    from cnnrnn.dcnn.train import finetune, train
    from cnnrnn.evaluation import summarise_folds

    lists = args.work / "filelists"
    if not (lists / "loso").is_dir():
        prepare_filelists("emodb", args.data, lists, folds=5, seed=42, loso=True, folds_by="speaker")
    labels = load_labels(lists / "labels.json")
    result = json.loads(args.out.read_text()) if args.out.is_file() else {}
    result.update({
        "benchmark": "dcnn_accuracy", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "corpus": f"{args.data} (535 utterances, 10 speakers, 7 emotions; 22.05 kHz copy, every file 2.00 s, "
                  "peak-normalised)",
        "protocol": "speaker-independent 5 folds of 2 test speakers (cnnrnn.dcnn.filelists.prepare_filelists "
                    "folds_by=speaker, seed 42) under runs, leave-one-speaker-out under loso_runs; test-fold "
                    "metrics, no validation-based model selection",
        "labels": labels, "paper_uar_emodb": PAPER_UAR_EMODB,
    })
    reduced = {
        "features": "sr 16 kHz, max_sec 2.0 (the clips are 2 s): 201 frames, 5 segments of 64 frames per "
                    "utterance; other feature settings as the paper",
        "alexnet": f"{args.alexnet_size}x{args.alexnet_size} input (paper 227), filters x{args.width}, FC "
                   f"{args.fc_units} units (paper 4096), random init (no ImageNet AlexNet offline), "
                   f"{args.epochs1} epochs (paper 30), Adam {args.lr1} decay {args.decay1}/epoch (paper 1e-4, "
                   f"0.695: tuned for a pretrained net), batch {args.batch1} (paper 128)",
        "resnet50": f"{args.resnet_size}x{args.resnet_size} input, random init (ImageNet weights not cached "
                    f"offline), {args.resnet_epochs} epochs, FC {args.fc_units}, "
                    f"same optimiser as alexnet",
        "step2": f"BiLSTM 128 each way, attention 256, Dense 512/256 (paper sizes); Adam {args.lr2} decay "
                 f"{args.decay2}/epoch for {args.epochs2} epochs, batch 16 (paper 5e-6, 0.59, 30 epochs: with a "
                 "from-scratch DCNN the paper's rate leaves the model at its initialisation)",
    }
    backbones = args.backbones.split(",")  # settings of a backbone not run now stay as its folds were run
    result.setdefault("reduced", {}).update({k: v for k, v in reduced.items() if k not in ("alexnet", "resnet50")
                                             or k in backbones})
    result.setdefault("runs", {})
    result.setdefault("commands", []).append("python " + " ".join(sys.argv))  # a rerun resumes
    result["load_before"] = list(os.getloadavg())

    cfg0 = load_dcnn_config(base_config(args, "alexnet"))
    t0 = time.time()
    a, b = (load_segments(lists / "kfold" / f"fold1_{s}.txt", labels, cfg0.data.features(), progress=False)
            for s in ("train", "test"))  # fold 1's train + test = the whole corpus
    corpus = SegmentSet(a.paths + b.paths, np.concatenate([a.labels, b.labels]), a.segments + b.segments,
                        merged_skips([a, b]))
    index = {p: i for i, p in enumerate(corpus.paths)}
    result["feature_seconds"] = round(time.time() - t0, 1)
    result["skipped"] = {k: len(v) for k, v in corpus.skipped.items()}
    print(f"segments of {len(index)} utterances in {result['feature_seconds']} s", flush=True)

    def fold_set(path: Path) -> SegmentSet:
        entries, _ = read_filelist(path, labels)
        return corpus.subset([index[e.wavpath] for e in entries if e.wavpath in index])

    if args.protocol == "loso":
        speakers = args.loso_speakers.split(",") if args.loso_speakers else sorted(
            p.name[:-len("_test.txt")] for p in (lists / "loso").glob("*_test.txt"))
        fold_lists = {sp: (lists / "loso" / f"{sp}_train.txt", lists / "loso" / f"{sp}_test.txt") for sp in speakers}
    runs = result.setdefault("loso_runs" if args.protocol == "loso" else "runs", {})
    for backbone in backbones:
        if args.protocol == "kfold":
            fold_lists = {f: (lists / "kfold" / f"fold{f}_train.txt", lists / "kfold" / f"fold{f}_test.txt")
                          for f in (args.alexnet_folds if backbone == "alexnet" else args.resnet_folds).split(",")}
        run = runs.setdefault(backbone, {"folds": {}})
        for fold, (train_list, test_list) in fold_lists.items():
            if str(fold) in run["folds"]:
                continue
            sets = {"train": fold_set(train_list), "test": fold_set(test_list)}
            measured = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                        "cpu": machine()["cpu"], "load_1min_before": round(os.getloadavg()[0], 2)}
            cfg1 = base_config(args, backbone)
            cfg1["train"]["name"] = f"{backbone}_{args.protocol}{fold}_finetune"
            t = time.time()
            r1 = finetune(load_dcnn_config(cfg1), progress=False, verbose=0, sets=sets)
            t1 = time.time() - t
            r2 = train(load_dcnn_config(step2_config(cfg1, args)), progress=False, verbose=0, sets=sets)
            keep = ("ua", "wa", "f1_macro", "n")
            run["folds"][str(fold)] = {
                "test_speakers": sorted({Path(p).name[:2] for p in sets["test"].paths}),
                "dcnn_segments": {k: r1["metrics"]["segments"][k] for k in keep},
                "dcnn_utterances": {k: r1["metrics"]["utterances"][k] for k in keep},
                "dcnn_blstm_attention": {k: r2["metrics"]["utterances"][k] for k in keep},
                "seconds": {"step1": round(t1, 1), "step2": round(time.time() - t - t1, 1)},
                "measured": measured,
            }
            for level in ("dcnn_segments", "dcnn_utterances", "dcnn_blstm_attention"):
                run[level + "_mean"] = summarise_folds([f[level] for f in run["folds"].values()])
            result["load_after"] = list(os.getloadavg())
            save_result(result, args.out)
            print(backbone, fold, json.dumps(run["folds"][str(fold)]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
