"""``cnnrnn functionals train|evaluate``: openSMILE functionals + SVM, the classical reference, and the frozen
Whisper encoder's block features + a linear head (:mod:`cnnrnn.functionals`).

Options default to ``None`` and only override the loaded config (:func:`cnnrnn.config.override`); every default
is declared once, in :class:`cnnrnn.functionals.config.FunctionalsConfig` and its presets.
"""
from __future__ import annotations

import argparse
import json

DESCRIPTION = """\
The classical reference of speech emotion recognition: openSMILE functionals (one vector per utterance) and
a support vector machine.

  eGeMAPSv02    88 functionals (Eyben et al. 2016)            preset egemaps_rbf: RBF SVM
  ComParE_2016  6,373 functionals (INTERSPEECH 2016 ComParE)  preset compare_linear: linear SVM (default)
  whisper       mean + std over frames of one block of the    preset whisper: logistic regression, block
                frozen Whisper encoder (2 x width: 768 for     and C chosen by nested leave-one-speaker-out
                tiny), each clip at its own length             on the training speakers

The whisper set needs a local encoder converted once (nothing is downloaded):
  cnnrnn whisper-convert --ct2 PATH/model.bin --out weights/whisper-tiny.en.weights.h5

Features are computed by the opensmile package (offline), cached per file, normalised per speaker (each
speaker's own mean and std per feature, no labels; a speaker with one clip falls back to the training
statistics), standardised, and classified by scikit-learn's SVC with calibrated probabilities. The fitted
model is stored with skops (model.skops), never pickle. Speaker normalisation of a held-out speaker uses that
speaker's unlabelled clips: a transductive choice (compare --normalization none).
The run predicts with: cnnrnn predict --model RUN --input WAV_FOLDER_OR_CSV [--speaker NAME]
"""


def add_commands(sub) -> None:
    """Add ``cnnrnn functionals train`` and ``cnnrnn functionals evaluate`` to the subparsers ``sub``."""
    from ..corpora import READERS

    parser = sub.add_parser("functionals", help="openSMILE functionals + SVM (the classical reference), or frozen "
                                                "Whisper block features + a linear head",
                            description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    family = parser.add_subparsers(dest="functionals_command", metavar="ACTION", required=True)

    p = family.add_parser(
        "train", help="extract functionals, fit the SVM, score it on a held-out split",
        description="Extract openSMILE functionals (or Whisper block features) of every clip (cached per file under "
                    "DIR/cache or --cache-dir; a rerun reuses them), split (default: speaker-independent; "
                    "--holdout-speaker for one LOSO fold), choose a nested block / C on the training speakers, "
                    "normalise, fit the SVM (or logistic regression) and score the test split. Writes into DIR: "
                    "run.json, model.skops, normalization.json, labels.json, split.json, corpus_report.json, "
                    "metrics.json (UA, WA, F1, skips, normalisation sources, nested choices), "
                    "confusion_matrix.png, predictions.csv.")
    p.add_argument("--corpus", required=True, choices=sorted(READERS),
                   help="corpus layout (manifest: a CSV with path,label[,speaker])")
    p.add_argument("--root", required=True, help="corpus folder (for manifest: the CSV file)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: new, empty, or a functionals run (a folder of other files is refused)")
    p.add_argument("--config", metavar="JSON",
                   help="preset (compare_linear, egemaps_rbf, whisper, tiny) or JSON file (keys: see "
                        "cnnrnn/configs/functionals/compare_linear.json); default compare_linear")
    p.add_argument("--feature-set", choices=("eGeMAPSv02", "ComParE_2016", "whisper"),
                   help="override the config's feature_set")
    p.add_argument("--classifier", choices=("svm", "logistic"),
                   help="override the config's classifier (svm: calibrated SVC; logistic: logistic regression)")
    p.add_argument("--kernel", choices=("linear", "rbf"), help="override the config's SVM kernel")
    p.add_argument("--C", "--svm-c", dest="C", type=_c_value, metavar="C|nested",
                   help="override the config's C (SVM or logistic regression), or 'nested': chosen among the "
                        "config's nested_C by leave-one-speaker-out on the training speakers")
    p.add_argument("--whisper-weights", metavar="FILE",
                   help="whisper: the .weights.h5 of cnnrnn whisper-convert (default "
                        "weights/whisper-tiny.en.weights.h5)")
    p.add_argument("--whisper-block", type=_block_value, metavar="K|nested",
                   help="whisper: the encoder block pooled (0 = the convolutional stem, k = transformer block k), "
                        "or 'nested': chosen by leave-one-speaker-out on the training speakers")
    p.add_argument("--whisper-pad-seconds", type=float, metavar="SECONDS",
                   help="whisper: zero-pad every clip to SECONDS before the encoder (Whisper's own: 30); default: "
                        "each clip at its own length")
    p.add_argument("--normalization", choices=("speaker", "global", "none"),
                   help="override the config's normalization (speaker: per-speaker z-scores)")
    p.add_argument("--split", choices=("speaker", "random"), help="override the config's scheme (the hold-out split)")
    p.add_argument("--holdout-speaker", metavar="NAME",
                   help="with --split speaker: this speaker's clips are the test set (one LOSO fold)")
    p.add_argument("--sr", type=_sample_rate, metavar="HZ|native",
                   help="override the config's sample rate for openSMILE: Hz, or 'native' (each file's own rate)")
    p.add_argument("--seed", type=int, help="override the config's seed")
    p.add_argument("--cache-dir", metavar="DIR", help="feature cache root (default DIR/cache); share it between "
                                                       "runs on the same corpus")
    p.set_defaults(handler=_train)

    p = family.add_parser(
        "evaluate", help="score a trained run on its test split or on another corpus",
        description="Load RUN/model.skops and score it again: on the run's own test split (default), or on every "
                    "clip of another corpus (--corpus and --root; classes matched by meaning, unknown classes "
                    "skipped and counted; its speakers normalised with their own clips' statistics). Writes "
                    "metrics.json, confusion_matrix.png and predictions.csv into --out (default RUN/evaluation or "
                    "RUN/evaluation_<corpus>).")
    p.add_argument("--run", required=True, metavar="RUN", help="run folder written by 'cnnrnn functionals train'")
    p.add_argument("--corpus", choices=sorted(READERS), help="another corpus layout to score")
    p.add_argument("--root", help="that corpus's folder")
    p.add_argument("--out", metavar="DIR",
                   help="output folder: new, empty, or a predictions folder (a folder of other files is refused)")
    p.add_argument("--cache-dir", metavar="DIR", help="feature cache root (default: the run's)")
    p.set_defaults(handler=_evaluate)


def _sample_rate(value: str):
    """``--sr``: an int (Hz) or ``native``."""
    if value == "native":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a sample rate in Hz or 'native', got {value!r}") from None


def _c_value(value: str):
    """``--C``: a number > 0 or ``nested``."""
    if value == "nested":
        return value
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'nested', got {value!r}") from None


def _block_value(value: str):
    """``--whisper-block``: an int or ``nested``."""
    if value == "nested":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a block number or 'nested', got {value!r}") from None


def _summary(report: dict) -> dict:
    keys = ("corpus", "feature_set", "classifier", "kernel", "C", "whisper_block", "n", "n_train", "n_test",
            "test_speakers", "ua", "wa", "f1_macro", "normalization", "skipped_audio", "skipped_corpus",
            "skipped_unknown_label")
    out = {k: report[k] for k in keys if k in report and report[k] is not None}
    if report.get("selection"):
        out["selection"] = {k: report["selection"][k] for k in ("chosen", "configured", "inner_speakers")
                            if k in report["selection"]}
    return out


def _train(args, progress: bool) -> int:
    """``functionals train``: the run folder is claimed by :func:`cnnrnn.functionals.train.train` once the config is
    read (a folder of other files, or another command's, is refused: exit 2, nothing written)."""
    from ..config import NULL
    from ..functionals.train import train

    sr = NULL if args.sr == "native" else args.sr  # NULL sets null (None means "not given")
    report = train(args.corpus, args.root, args.out, config=args.config, cache_dir=args.cache_dir, progress=progress,
                   feature_set=args.feature_set, classifier=args.classifier, kernel=args.kernel, C=args.C,
                   normalization=args.normalization, scheme=args.split, holdout_speaker=args.holdout_speaker, sr=sr,
                   seed=args.seed, whisper_weights=args.whisper_weights, whisper_block=args.whisper_block,
                   whisper_pad_seconds=args.whisper_pad_seconds)
    print(json.dumps({**_summary(report), "out": args.out}, indent=2, default=str))
    return 0


def _evaluate(args, progress: bool) -> int:
    """``functionals evaluate``: ``--out`` is claimed as a predictions folder by
    :func:`cnnrnn.functionals.predict.evaluate` (refused: a folder of other files, a run, another command's)."""
    from ..functionals.predict import evaluate

    report = evaluate(args.run, corpus=args.corpus, root=args.root, out=args.out, cache_dir=args.cache_dir,
                      progress=progress)
    print(json.dumps(_summary(report), indent=2, default=str))
    return 0
