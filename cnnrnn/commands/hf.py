"""``cnnrnn hf train`` / ``cnnrnn hf predict``: Hugging Face TF text, speech and multimodal emotion models.

Options default to ``None`` and only override the loaded config (:func:`cnnrnn.config.override`); every
default is declared once, in :class:`cnnrnn.hf.config.HFConfig` (and restated in the ``default`` preset).
``hf predict`` takes the fold, the fold scheme, the number of folds and the seed from the run's ``run.json``.

The command lines of etri_multimodal's scripts work as they are: ``--dataset 19|20`` (the corpus reader),
``--dataset_dir DIR`` (the corpus folder, ``--root``), ``--num_fold 1..5`` (the fold, counted from 1 as there;
``--fold`` counts from 0), ``--batch_size 32 --lr 1e-5``; the presets ``etri_multimodal`` and
``etri_recognition_multimodal`` hold the two codebases' settings.
"""
from __future__ import annotations

import argparse
import json

_DATA_HELP = ("input: --input new_data.csv (from `cnnrnn kemdy-labels`), or a corpus folder with --corpus/--root. "
              "Models load offline only, from a local folder or the local Hugging Face cache.")

#: ``argparse`` dest → config key (``section.name``) of :class:`cnnrnn.hf.config.HFConfig`.
TRAIN_KEYS = {
    "task": "model.task", "modality": "model.modality", "fusion": "model.fusion", "max_len": "model.max_len",
    "max_seconds": "model.max_seconds", "speech_pooling": "model.speech_pooling", "proj_dim": "model.proj_dim",
    "text_model": "model.text_model", "speech_model": "model.speech_model",
    "speech_backbone": "model.speech_backbone", "whisper_block": "model.whisper_block",
    "whisper_finetune_blocks": "model.whisper_finetune_blocks",
    "loss": "train.loss", "label_mode": "train.label_mode", "hierarchical": "train.hierarchical",
    "learning_rate": "train.learning_rate", "batch_size": "train.batch_size",
    "valid_batch_size": "train.valid_batch_size", "epochs": "train.epochs", "seed": "train.seed",
    "eager": "train.eager",
}
#: Options shared by ``train`` and ``predict`` (data, folds, scoring).
COMMON_KEYS = {"corpus": "data.corpus", "label_column": "data.label_column", "fold": "train.fold",
               "fold_scheme": "train.fold_scheme", "threshold": "train.threshold"}
PREDICT_KEYS = {"seed": "train.seed", "batch_size": "train.valid_batch_size"}
#: etri_multimodal's ``--dataset`` values → the corpus reader (config ``data.corpus``).
DATASETS = {"19": "kemdy19", "20": "kemdy20"}


def _show_defaults(parser: argparse.ArgumentParser, keys: dict[str, str]) -> None:
    """Append each option's config default (from :class:`cnnrnn.hf.config.HFConfig`, read, not restated) to its
    help, so ``--help`` says what an option left out means."""
    from ..config import to_dict
    from ..hf.config import HFConfig

    import re

    values = to_dict(HFConfig())
    for action in parser._actions:
        key = keys.get(action.dest)
        if key and action.help and "default" not in action.help:
            section, name = key.split(".")
            text = re.sub(r"\s*\(?config [\w.]+\)?", "", action.help).strip()
            action.help = f"{text + ' ' if text else ''}[config {key}, default: {values[section][name]}]"


def _folds_value(text: str):
    """``--folds``: the number of folds (an integer), or, as before, a fold scheme name."""
    from ..hf.config import FOLD_SCHEMES

    if text in FOLD_SCHEMES:
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of folds or one of {list(FOLD_SCHEMES)}, "
                                         f"got {text!r}") from None


def _add_data(p: argparse.ArgumentParser, predicting: bool) -> None:
    from ..hf.config import CORPORA, FOLD_SCHEMES, LABEL_COLUMNS, TrainConfig

    p.add_argument("--input", default=None, help="new_data.csv written by `cnnrnn kemdy-labels`")
    p.add_argument("--corpus", default=None, choices=CORPORA,
                   help="corpus reader when no --input is given" + (" (default: the run's)" if predicting else ""))
    p.add_argument("--dataset", default=None, choices=sorted(DATASETS),
                   help="etri_multimodal's name of the corpus: 19 = --corpus kemdy19, 20 = --corpus kemdy20")
    p.add_argument("--root", "--dataset_dir", "--dataset-dir", dest="root", default=None,
                   help="corpus folder when no --input is given (etri_multimodal's --dataset_dir)")
    p.add_argument("--label-column", default=None, choices=LABEL_COLUMNS,
                   help="label column of --input" + (" (default: the run's)" if predicting else ""))
    given = "the run's run.json, else " if predicting else ""
    p.add_argument("--fold", type=int, default=None,
                   help=f"fold to test on, from 0 (default: {given}{TrainConfig.fold})"
                   + ("; another fold than the run's is allowed, with a warning" if predicting else ""))
    p.add_argument("--num_fold", "--num-fold", dest="num_fold", type=int, default=None, metavar="K",
                   help="fold to test on counted from 1, as etri_multimodal's --num_fold 1..5 (= --fold K-1)")
    p.add_argument("--folds", "--n-folds", dest="folds", type=_folds_value, default=None, metavar="N",
                   help=f"number of folds (default: {given}{TrainConfig.folds}). A scheme name (contiguous, "
                        "stratified) is still read as --fold-scheme, as in earlier versions")
    p.add_argument("--fold-scheme", "--scheme", dest="fold_scheme", default=None, choices=FOLD_SCHEMES,
                   help="contiguous blocks as etri_multimodal, stratified by label, or speaker-disjoint "
                        f"(default: {given}{TrainConfig.fold_scheme})")
    p.add_argument("--threshold", type=float, default=None,
                   help=f"probability threshold of multi-label predictions (default: {given}{TrainConfig.threshold})")
    p.add_argument("--out", "-o", required=True,
                   help="output folder: for train, new, empty or an HF run; for predict, new, empty or a predictions "
                        "folder (a folder of other files is refused)")


def add_commands(sub) -> None:
    """Add ``hf train`` and ``hf predict`` to the ``cnnrnn`` parser's subparsers ``sub``."""
    from ..hf.config import LABEL_MODES, LOSSES, MODALITIES, POOLINGS, SPEECH_BACKBONES, TASKS, FUSIONS

    hf = sub.add_parser("hf", help="Hugging Face TF text / speech / multimodal emotion models (KEMDy)",
                        description="Transformer emotion models on tf_keras: RoBERTa/BERT text, wav2vec2 speech, "
                                    "or both fused. " + _DATA_HELP)
    hf_sub = hf.add_subparsers(dest="hf_command", metavar="{train,predict}", required=True)

    p = hf_sub.add_parser("train", help="train one fold, save the checkpoint, evaluate on the fold's test part",
                          description="Train on the other folds, test on --fold. Writes <out>/checkpoint/ "
                                      "(save_pretrained backbones + head.h5 + hf_model.json), run.json (the run "
                                      "manifest: config, labels, split, input), history.csv, metrics.json, "
                                      "predictions.csv and confusion_matrix.png. Every option overrides the "
                                      "config (--config; default: the hf preset 'default'). " + _DATA_HELP)
    p.add_argument("--config", default=None, metavar="JSON",
                   help="hf preset (default, tiny; etri_multimodal: batch 32, lr 1e-5, klue/bert-base, 256 tokens, "
                        "5 s; etri_recognition_multimodal: RoBERTa + wav2vec2, MAX_LEN 196, 4 s of audio; whisper, "
                        "multimodal_whisper: the local Whisper encoder as the speech side) or JSON "
                        "file with sections model, data, train (see cnnrnn/configs/hf/default.json)")
    p.add_argument("--modality", default=None, choices=MODALITIES, help="config model.modality")
    p.add_argument("--task", default=None, choices=TASKS,
                   help="emotion labels, valence/arousal (1-5), or both heads (config model.task)")
    p.add_argument("--fusion", default=None, choices=FUSIONS, help="multimodal fusion (config model.fusion)")
    p.add_argument("--text-model", "--model", dest="text_model", default=None,
                   help="text backbone: local folder or cached hub name (config model.text_model)")
    p.add_argument("--speech-model", default=None,
                   help="speech backbone: local folder or cached hub name; with --speech-backbone whisper a Whisper "
                        "folder from `cnnrnn whisper-convert --ct2 model.bin --hf-out DIR` (config model.speech_model)")
    p.add_argument("--speech-backbone", default=None, choices=SPEECH_BACKBONES,
                   help="wav2vec2-style model, or only the encoder of a Whisper folder (log-mel input, padded to "
                        "--max-seconds, mean over the clip's frames)")
    p.add_argument("--whisper-block", "--whisper_block", dest="whisper_block", type=int, default=None,
                   help="Whisper: hidden state after this block (0 = conv stem; the blocks above are not run)")
    p.add_argument("--whisper-finetune-blocks", "--whisper_finetune_blocks", dest="whisper_finetune_blocks",
                   type=int, default=None,
                   help="Whisper: train this many blocks, counted down from --whisper-block (0 = frozen encoder)")
    p.add_argument("--speech-pooling", default=None, choices=POOLINGS,
                   help="last frame of the CNN features (the original) or mean of the hidden states")
    p.add_argument("--loss", default=None, choices=LOSSES,
                   help="classification loss on logits: cross-entropy, focal, or class-balanced")
    p.add_argument("--label-mode", default=None, choices=LABEL_MODES,
                   help="multi-label (sigmoid) when ties exist (auto), or force one mode")
    p.add_argument("--hierarchical", action="store_true", default=None,
                   help="2-stage classifier: neutral vs rest, then the other emotions")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float, default=None,
                   help="Adam learning rate (config train.learning_rate)")
    p.add_argument("--max_len", "--max-len", dest="max_len", type=int, default=None,
                   help="text tokens (static padding, longer text truncated)")
    p.add_argument("--max-seconds", "--max_seconds", dest="max_seconds", type=float, default=None,
                   help="speech cut, seconds at 16 kHz")
    p.add_argument("--proj-dim", "--proj_dim", dest="proj_dim", type=int, default=None,
                   help="size each modality is projected to")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=int, default=None)
    p.add_argument("--valid_batch_size", "--valid-batch-size", dest="valid_batch_size", type=int, default=None)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=None, help="seed of the weights, the shuffling and the folds")
    p.add_argument("--eager", action="store_true", default=None,
                   help="train without tf.function tracing (faster for a few steps, slower for real runs)")
    _add_data(p, predicting=False)
    _show_defaults(p, {**TRAIN_KEYS, **COMMON_KEYS})
    p.set_defaults(handler=_train)

    p = hf_sub.add_parser("predict", help="predict (and score) records with a checkpoint of `cnnrnn hf train`",
                          description="Load <checkpoint> and predict the test part of the run's fold (or --all "
                                      "records); writes predictions.csv, metrics.json and confusion_matrix.png. "
                                      "The fold, fold scheme, number of folds and seed come from the run's "
                                      "run.json (beside the checkpoint), so exactly the run's test records are "
                                      "scored; a checkpoint without one uses fold 0 of 5 contiguous folds. "
                                      "--task/--modality make it refuse a checkpoint trained for something else. "
                                      + _DATA_HELP)
    p.add_argument("--checkpoint", required=True, help="the checkpoint/ folder written by `cnnrnn hf train`")
    p.add_argument("--task", default=None, choices=TASKS, help="expected task of the checkpoint")
    p.add_argument("--modality", default=None, choices=MODALITIES, help="expected modality of the checkpoint")
    p.add_argument("--all", action="store_true", help="predict every record instead of the fold's test part")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int, default=None,
                   help="prediction batch (default: the run's train.valid_batch_size)")
    p.add_argument("--seed", type=int, default=None, help="seed of the folds (default: the run's)")
    _add_data(p, predicting=True)
    p.set_defaults(handler=_predict)


def _overrides(args, keys: dict[str, str]) -> dict:
    """Config overrides from the options that were given; ``--folds <scheme>`` is the old ``--fold-scheme``;
    ``--dataset 19|20`` is ``--corpus kemdy19|kemdy20`` and ``--num_fold K`` is ``--fold K-1``.

    Raises:
        ValueError: an alias disagrees with the option it stands for, or ``--num_fold`` is below 1.
    """
    values = {key: getattr(args, dest) for dest, key in {**COMMON_KEYS, **keys}.items() if hasattr(args, dest)}
    if args.dataset is not None:
        corpus = DATASETS[args.dataset]
        if args.corpus not in (None, corpus):
            raise ValueError(f"--dataset {args.dataset} ({corpus}) and --corpus {args.corpus} disagree")
        values["data.corpus"] = corpus
    if args.num_fold is not None:
        if args.num_fold < 1:
            raise ValueError(f"--num_fold counts folds from 1 (as etri_multimodal: 1..5), got {args.num_fold}; "
                             "--fold counts from 0")
        if args.fold not in (None, args.num_fold - 1):
            raise ValueError(f"--num_fold {args.num_fold} (counted from 1) and --fold {args.fold} (from 0) disagree")
        values["train.fold"] = args.num_fold - 1
    folds = args.folds
    if isinstance(folds, str):
        if args.fold_scheme not in (None, folds):
            raise ValueError(f"--folds {folds} and --fold-scheme {args.fold_scheme} disagree")
        values["train.fold_scheme"] = folds
    else:
        values["train.folds"] = folds
    return values


def _train(args, progress: bool) -> int:
    from ..config import override
    from ..hf.config import load_config
    from ..hf.data import read_records
    from ..hf.train import claim_run, train_fold
    from ..outputs import check_not_locked

    base, values = load_config(args.config), _overrides(args, TRAIN_KEYS)
    folds = values.get("train.folds") or base.train.folds
    if args.num_fold is not None and args.num_fold > folds:
        raise ValueError(f"--num_fold {args.num_fold} is beyond the {folds} folds (counted from 1: 1..{folds})")
    cfg = override(base, values)
    # before the records are read: a folder of other files is refused (nothing written), a run in training too
    check_not_locked(claim_run(args.out), "train", "train this run")
    records = read_records(args.input, args.root, cfg.data)[0]
    metrics = train_fold(records, cfg, args.out, progress=progress,
                         source={"input": args.input, "root": args.root})
    print(json.dumps(_summary(metrics), indent=2))
    return 0


def _predict(args, progress: bool) -> int:
    """``hf predict``: refused while the run is being trained; ``--out`` is claimed as a predictions folder (a
    folder of other files, a run or another command's folder is refused: exit 2, nothing written) and written
    under its ``predict`` lock."""
    from pathlib import Path

    from ..hf.models import CHECKPOINT_DIR
    from ..hf.predict import predict_fold
    from ..outputs import check_not_locked, claim_predictions, writing_stage
    from ..reports import REPORT_FILES

    checkpoint = Path(args.checkpoint)
    check_not_locked(checkpoint.parent if checkpoint.name == CHECKPOINT_DIR else checkpoint, "train",
                     "predict with this run")
    out = claim_predictions(args.out)
    with writing_stage(out, "predict", [(out, list(REPORT_FILES.values()))]):
        metrics = predict_fold(checkpoint, out, input_csv=args.input, root=args.root, task=args.task,
                               modality=args.modality, all_records=args.all,
                               overrides=_overrides(args, PREDICT_KEYS))
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
