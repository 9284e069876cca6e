"""``cnnrnn hf train`` / ``cnnrnn hf predict``: Hugging Face TF text, speech and multimodal emotion models."""
from __future__ import annotations

import argparse
import json

_DATA_HELP = ("input: --input new_data.csv (from `cnnrnn kemdy-labels`), or a corpus folder with --corpus/--root. "
              "Models load offline only, from a local folder or the local Hugging Face cache.")


def _add_data(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", default=None, help="new_data.csv written by `cnnrnn kemdy-labels`")
    p.add_argument("--corpus", default="kemdy20", choices=["kemdy20", "kemdy19"],
                   help="corpus reader when no --input is given (default: %(default)s)")
    p.add_argument("--root", default=None, help="corpus folder when no --input is given")
    p.add_argument("--label-column", default="emotion_weighted", choices=["emotion_weighted", "emotion_raw"],
                   help="label column of --input (default: %(default)s)")
    p.add_argument("--fold", type=int, default=0, help="fold to test on, 0-4 (default: %(default)s)")
    p.add_argument("--folds", default="contiguous", choices=["contiguous", "stratified"],
                   help="5 contiguous 20%% blocks as the original, or stratified by label (default: %(default)s)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="probability threshold of multi-label predictions (default: %(default)s)")
    p.add_argument("--out", "-o", required=True, help="output folder")


def add_commands(sub) -> None:
    """Add ``hf train`` and ``hf predict`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    hf = sub.add_parser("hf", help="Hugging Face TF text / speech / multimodal emotion models (KEMDy)",
                        description="Transformer emotion models on tf_keras: RoBERTa/BERT text, wav2vec2 speech, "
                                    "or both fused. " + _DATA_HELP)
    hf_sub = hf.add_subparsers(dest="hf_command", metavar="{train,predict}", required=True)

    p = hf_sub.add_parser("train", help="train one fold, save the checkpoint, evaluate on the fold's test part",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                          description="Train on the other folds, test on --fold. Writes <out>/checkpoint/ "
                                      "(save_pretrained backbones + head.h5 + hf_model.json), history.csv, "
                                      "metrics.json, predictions.csv and confusion_matrix.png. " + _DATA_HELP)
    p.add_argument("--modality", default="text", choices=["text", "speech", "multimodal"])
    p.add_argument("--task", default="classification", choices=["classification", "regression", "total"],
                   help="emotion labels, valence/arousal (1-5), or both heads")
    p.add_argument("--fusion", default="concat", choices=["concat", "add"], help="multimodal fusion")
    p.add_argument("--text-model", "--model", dest="text_model", default="klue/roberta-base",
                   help="text backbone: local folder or cached hub name")
    p.add_argument("--speech-model", default="facebook/wav2vec2-base-960h",
                   help="wav2vec2 backbone: local folder or cached hub name")
    p.add_argument("--speech-pooling", default="last_cnn", choices=["last_cnn", "mean"],
                   help="last frame of the CNN features (the original) or mean of the hidden states")
    p.add_argument("--loss", default="plain", choices=["plain", "focal", "class_balanced"],
                   help="classification loss on logits: cross-entropy, focal, or class-balanced")
    p.add_argument("--label-mode", default="auto", choices=["auto", "single", "multi"],
                   help="multi-label (sigmoid) when ties exist (auto), or force one mode")
    p.add_argument("--hierarchical", action="store_true",
                   help="2-stage classifier: neutral vs rest, then the other emotions")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    p.add_argument("--max_len", "--max-len", dest="max_len", type=int, default=256,
                   help="text tokens (static padding, longer text truncated)")
    p.add_argument("--max-seconds", type=float, default=5.0, help="speech cut, seconds at 16 kHz")
    p.add_argument("--proj-dim", type=int, default=256, help="size each modality is projected to")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=64)
    p.add_argument("--valid_batch_size", "--valid-batch-size", dest="valid_batch_size", type=int, default=1)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--eager", action="store_true",
                   help="train without tf.function tracing (faster for a few steps, slower for real runs)")
    _add_data(p)
    p.set_defaults(handler=_train)

    p = hf_sub.add_parser("predict", help="predict (and score) records with a checkpoint of `cnnrnn hf train`",
                          formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                          description="Load <checkpoint> and predict the test part of --fold (or --all records); "
                                      "writes predictions.csv, metrics.json and confusion_matrix.png. "
                                      "--task/--modality make it refuse a checkpoint trained for something else. "
                                      + _DATA_HELP)
    p.add_argument("--checkpoint", required=True, help="the checkpoint/ folder written by `cnnrnn hf train`")
    p.add_argument("--task", default=None, choices=["classification", "regression", "total"],
                   help="expected task of the checkpoint")
    p.add_argument("--modality", default=None, choices=["text", "speech", "multimodal"],
                   help="expected modality of the checkpoint")
    p.add_argument("--all", action="store_true", help="predict every record instead of the fold's test part")
    p.add_argument("--batch-size", type=int, default=1)
    _add_data(p)
    p.set_defaults(handler=_predict)


def _records(args):
    from ..hf.data import read_records

    return read_records(args.input, args.corpus, args.root, args.label_column)[0]


def _train(args, progress: bool) -> int:
    from ..hf.models import ModelSpec
    from ..hf.training import TrainConfig, train_fold

    records = _records(args)
    spec = ModelSpec(task=args.task, modality=args.modality, fusion=args.fusion, max_len=args.max_len,
                     max_seconds=args.max_seconds, speech_pooling=args.speech_pooling, proj_dim=args.proj_dim)
    cfg = TrainConfig(text_model=args.text_model, speech_model=args.speech_model, lr=args.lr,
                      batch_size=args.batch_size, valid_batch_size=args.valid_batch_size, epochs=args.epochs,
                      loss=args.loss, label_mode=args.label_mode, hierarchical=args.hierarchical, fold=args.fold,
                      fold_scheme=args.folds, threshold=args.threshold, seed=args.seed, eager=args.eager)
    metrics = train_fold(records, spec, cfg, args.out, progress)
    print(json.dumps(_summary(metrics), indent=2))
    return 0


def _predict(args, progress: bool) -> int:
    from ..hf.data import fold_indices
    from ..hf.training import evaluate, load_checkpoint

    model = load_checkpoint(args.checkpoint, args.task, args.modality)
    records = _records(args)
    if not args.all:
        _, test = fold_indices(len(records), args.fold, 5, args.folds, [r.labels[0] for r in records])
        records = [records[i] for i in test]
    metrics = evaluate(model, records, args.out, args.batch_size, args.threshold)
    print(json.dumps(_summary(metrics), indent=2))
    return 0


def _summary(metrics: dict) -> dict:
    """The headline numbers of a metrics dict (no confusion matrix)."""
    out = {k: metrics[k] for k in ("task", "modality", "fusion", "n", "skipped") if k in metrics}
    if "emotion" in metrics:
        out["emotion"] = {k: v for k, v in metrics["emotion"].items() if k != "confusion_matrix"}
    if "regression" in metrics:
        out["regression"] = {k: metrics["regression"][k] for k in ("mse", "pearson_r", "ccc")}
    return out
