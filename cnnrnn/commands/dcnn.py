"""``cnnrnn dcnn finetune | train | infer``: the DCNN-BLSTMwA model family (see :mod:`cnnrnn.dcnn`).

Options default to ``None`` and only override the loaded config (:func:`cnnrnn.config.override`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import distribute
from ..artifacts import ensure_writable_dir

DESCRIPTION = """\
DCNN-BLSTMwA (Zhang et al., Frontiers in Physiology 2021) in two steps, then inference:
  finetune  step 1: the DCNN (AlexNet-style or ResNet50) classifies 64-frame log-mel segments
            (static, delta, delta-delta); writes <log_root>/<name>/dcnn.h5, run.json, log_finetune.out,
            confusion PNGs (segment and utterance level), metrics_finetune.json
  train     step 2: BiLSTM + self-attention over the fine-tuned DCNN's segment features;
            writes blstm_attention.h5 (+ .json), run.json, log_train.out, confusion_train.png,
            metrics_train.json
  infer     blstm_attention.h5 + wav files -> per-file predictions (printed and written as CSV)
  run-folds both steps and scoring on every fold that `cnnrnn filelists` wrote (k-fold or LOSO),
            then one summary (UA, WA, F1 per fold, mean +- std); a rerun resumes

finetune and train also train on several machines: --distribute multi-worker (docs/distributed.md);
run-folds runs on one machine.

Either step's run folder also works with `cnnrnn predict --model RUN --input WAV|FOLDER|FILELIST.txt`.

--config takes a shipped config (emodb_finetune, emodb_train, esd_*, jtes_*, tiny_*, compact_*, yamnet_*,
whisper_*) or a JSON file with the sections "data", "model", "train". The whisper_* presets need the encoder
converted first: cnnrnn whisper-convert --ct2 whisper-tiny.en/model.bin --out weights/whisper-tiny.en.weights.h5
Filelists (wavpath|speaker_id|text|emotion_id|lang_id) come from
`cnnrnn filelists`; relative paths in a config are relative to the working directory.
"""


RUN_FOLDS_DESCRIPTION = """\
Run step 1 (finetune) and step 2 (train) on every fold that `cnnrnn filelists` wrote, under
FILELISTS/kfold/ (fold<k>_train.txt, fold<k>_test.txt) or FILELISTS/loso/ (<speaker>_train.txt, ...),
with FILELISTS/labels.json, and score each fold's test list. Writes OUT/<fold>/finetune/ and
OUT/<fold>/train/ (as the two steps do), then OUT/summary.json, summary.md and summary.csv: UA, WA and
macro F1 of every fold, their mean +- std over the folds (population std), and the pooled scores.
A rerun resumes: a step already run with the same config is not retrained. Each file's features are
computed once for all folds. run-folds trains on one machine (no --distribute: run the two steps of each fold
with --distribute multi-worker instead).

example: cnnrnn filelists --corpus emodb --root data/emodb --out lists/emodb
         cnnrnn dcnn run-folds --filelists lists/emodb --scheme loso --config emodb --out runs/emodb_loso
"""

def _add_step(sub, name: str, help_text: str, description: str, handler) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text, description=description)
    p.add_argument("--config", required=True,
                   help="shipped config name (emodb_*, esd_*, jtes_*, tiny_*, compact_*, yamnet_*, whisper_*: "
                        "_finetune or _train) or a JSON path")
    p.add_argument("--filelist-train", help="override data.filelist_train")
    p.add_argument("--filelist-test", help="override data.filelist_test")
    p.add_argument("--labels", help="override data.labels_file (labels.json)")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, metavar="LR",
                   help="override train.learning_rate (Adam; decayed by train.lr_decay each epoch)")
    p.add_argument("--batch-size", type=int, help="override train.batch_size")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.add_argument("--name", help="override train.name (the run folder <out>/<name>)")
    p.add_argument("--out", metavar="DIR",
                   help="override train.log_root (default in the configs: logs); the run folder <out>/<name> must be "
                        "new, empty or a DCNN run (a folder of other files is refused)")
    distribute.add_arguments(p)  # --distribute multi-worker, --workers, --worker-index, --timeout
    p.set_defaults(handler=handler)
    return p


def add_commands(sub) -> None:
    """Add ``cnnrnn dcnn {finetune,train,infer}`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    p = sub.add_parser("dcnn", help="DCNN-BLSTMwA: fine-tune the DCNN, train the BiLSTM-attention, infer",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = p.add_subparsers(dest="dcnn_command", metavar="STEP", required=True)
    _add_step(steps, "finetune", "step 1: fine-tune the DCNN on log-mel segments",
              "Step 1: train the DCNN to classify 64-frame log-mel segments (each with its utterance's label) "
              "of the train filelist, evaluate on the test filelist. Paper settings in the shipped configs: Adam "
              "1e-4, batch 128, 30 epochs, lr x 0.695^epoch, dropout 0.5. Writes <out>/<name>/dcnn.h5, dcnn.json, "
              "run.json, log_finetune.out, history_finetune.csv, metrics_finetune.json and confusion PNGs (segment and "
              "utterance level). Example: cnnrnn dcnn finetune --config emodb_finetune", _finetune)
    t = _add_step(steps, "train", "step 2: train the BiLSTM-attention model on the DCNN's segment features",
                  "Step 2: extract the fine-tuned DCNN's penultimate-layer features of every segment, in "
                  "utterance order and padded to the longest utterance, and train BiLSTM (128 each way) + "
                  "self-attention (Q, K, V Dense 256) + Dense 512/256. Paper settings: Adam 5e-6, batch 16, "
                  "30 epochs, decay 0.59. Writes <out>/<name>/blstm_attention.h5, blstm_attention.json, "
                  "run.json, log_train.out, history_train.csv, metrics_train.json, confusion_train.png. "
                  "Example: cnnrnn dcnn train --config emodb_train", _train)
    t.add_argument("--dcnn", metavar="DCNN.h5",
                   help="fine-tuned DCNN (default: <out>/<train.finetune_name>/dcnn.h5)")
    i = steps.add_parser("infer", help="predict emotions of wav files with a step-2 model",
                         description="Predict the emotion of each WAV with MODEL.h5 (blstm_attention.h5); the "
                                     "DCNN, labels and feature settings are read from the blstm_attention.json "
                                     "beside it. Prints the predictions and writes them as CSV (path, predicted, "
                                     "confidence, n_segments, one probability column per label). Unusable files "
                                     "(missing, unreadable, silent, shorter than one segment) are skipped and "
                                     "listed.")
    i.add_argument("model", metavar="MODEL.h5", help="step-2 model (blstm_attention.h5)")
    i.add_argument("wavs", nargs="+", metavar="WAV", help="audio files")
    i.add_argument("--dcnn", metavar="DCNN.h5", help="fine-tuned DCNN (default: the one named in the model JSON)")
    i.add_argument("-o", "--output", metavar="CSV", help="predictions CSV (default: predictions.csv beside MODEL)")
    i.set_defaults(handler=_infer)
    r = steps.add_parser("run-folds", help="fine-tune, train and score every fold of a filelist folder; one summary",
                         description=RUN_FOLDS_DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--filelists", required=True, metavar="DIR", help="folder written by `cnnrnn filelists`")
    r.add_argument("--scheme", choices=("kfold", "loso"), default="kfold",
                   help="which folds: kfold/ or loso/ (default: kfold)")
    r.add_argument("--config", required=True, metavar="NAME",
                   help="a preset pair: NAME_finetune and NAME_train (emodb, esd, jtes, compact, best, tiny, "
                        "tiny_compact, yamnet, ...), or a step-1 JSON file (then give --config-train too)")
    r.add_argument("--config-train", metavar="JSON", help="step-2 config (default: NAME_train)")
    r.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: new, empty, or a run-folds output, where a rerun resumes (a folder of other "
                        "files is refused)")
    r.add_argument("--fold", dest="folds", action="append", metavar="NAME",
                   help="run only this fold (fold1, ..., or a LOSO speaker); repeatable")
    r.add_argument("--epochs", type=int, help="override train.epochs of both steps")
    r.add_argument("--seed", type=int, help="override train.seed of both steps")
    r.set_defaults(handler=_run_folds)


def _config(args):
    """The step's config from ``--config`` and the flags, once the cluster flags are checked (and ``TF_CONFIG`` set:
    :func:`cnnrnn.distribute.cluster_from_args`); ``--out`` is checked writable, but not by a worker other than the
    chief, which writes nothing there."""
    from ..config import override
    from ..dcnn.config import load_dcnn_config

    cluster = distribute.cluster_from_args(args)
    cfg = override(load_dcnn_config(args.config), {
        "data.filelist_train": args.filelist_train, "data.filelist_test": args.filelist_test,
        "data.labels_file": args.labels, "train.epochs": args.epochs, "train.learning_rate": args.learning_rate,
        "train.batch_size": args.batch_size, "train.seed": args.seed, "train.name": args.name,
        "train.log_root": args.out})
    if cluster is None or cluster.is_chief():
        ensure_writable_dir(cfg.train.log_root)
    return cfg


def _summary(result: dict) -> None:
    print(json.dumps({"run_dir": result["run_dir"], "checkpoint": result["checkpoint"],
                      "metrics": {level: {k: round(m[k], 4) for k in ("ua", "wa", "f1_macro")} | {"n": m["n"]}
                                  for level, m in result["metrics"].items()},
                      "skipped": {k: len(v) for k, v in result["skipped"].items()}}, indent=2))


def _finetune(args, progress: bool) -> int:
    from ..dcnn.train import finetune

    cfg = _config(args)
    _summary(finetune(cfg, progress=progress, verbose=2 if progress else 0, distribute=args.distribute,
                      timeout_s=args.timeout))
    return 0


def _train(args, progress: bool) -> int:
    from ..dcnn.train import train

    cfg = _config(args)
    _summary(train(cfg, dcnn_path=args.dcnn, progress=progress, verbose=2 if progress else 0,
                   distribute=args.distribute, timeout_s=args.timeout))
    return 0


def _run_folds(args, progress: bool) -> int:
    from ..config import list_presets, override
    from ..dcnn.config import load_dcnn_config
    from ..dcnn.folds import run_folds

    presets = list_presets("dcnn")
    if args.config.endswith("_finetune") and args.config[: -len("_finetune")] + "_train" in presets:
        args.config = args.config[: -len("_finetune")]  # the step-1 preset's name: its pair
    pair = f"{args.config}_finetune" in presets and f"{args.config}_train" in presets
    step1 = f"{args.config}_finetune" if pair else args.config
    step2 = args.config_train or (f"{args.config}_train" if pair else None)
    if step2 is None:
        raise ValueError(f"--config {args.config} is not a preset pair (NAME_finetune + NAME_train): give the step-2 "
                         "config with --config-train")
    changes = {"train.epochs": args.epochs, "train.seed": args.seed}
    cfg1, cfg2 = (override(load_dcnn_config(c), changes) for c in (step1, step2))
    # run_folds claims --out: new, empty or a run-folds output (anything else: exit 2, nothing written)
    result = run_folds(args.filelists, args.out, cfg1, cfg2, scheme=args.scheme, folds=args.folds,
                       progress=progress, verbose=2 if progress else 0)
    print(Path(result["files"]["summary.md"]).read_text(encoding="utf-8"), end="")
    print(json.dumps(result["files"], indent=2))
    return 0


def _infer(args, progress: bool) -> int:
    from ..dcnn.predict import infer

    df, skipped = infer(args.model, args.wavs, dcnn_h5=args.dcnn, out_csv=args.output, progress=progress)
    print(df[["path", "predicted", "confidence", "n_segments"]].to_string(index=False))
    if skipped:
        print(f"skipped: {json.dumps(skipped)}")
    return 0
