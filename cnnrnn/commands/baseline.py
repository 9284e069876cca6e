"""``cnnrnn baselines train|evaluate``: the raw-waveform ANN and spectrogram CNN baselines (:mod:`cnnrnn.baselines`).

Options default to ``None`` and only override the loaded config (:func:`cnnrnn.config.override`); every
default is declared once, in :class:`cnnrnn.baselines.config.BaselineConfig` and its presets.
"""
from __future__ import annotations

import argparse
import json

from .. import distribute

DESCRIPTION = """\
Plain ANN and CNN baselines, ported to Keras from the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을
활용하여 음성 분류 인공지능 제작" (UrbanSound8K practice problem, 10 classes: ANN 18.86%, CNN 91.21%
validation accuracy).

  ann  raw waveform, 44.1 kHz, exactly 4 s (176,400 samples; short clips reflect-padded, long ones cut),
       two hidden ReLU Dense layers, softmax outputs; Adam 1e-3, batch 32, 5 epochs
  cnn  log-mel spectrogram at 22,050 Hz (n_fft 2048, hop 512, 128 mels), standardised, min-max scaled x255;
       three Conv2D+ReLU+MaxPool blocks, a ReLU Dense, softmax outputs; Adam 1e-3, batch 32, 5 epochs

Audio is decoded once into a feature cache in the run folder and streamed to training with tf.data.
The run (run.json, model.h5) predicts with: cnnrnn predict --model RUN --input WAV_OR_FOLDER
"""


def add_commands(sub) -> None:
    """Add ``cnnrnn baselines train`` and ``cnnrnn baselines evaluate`` to the subparsers ``sub`` (``baseline``:
    a deprecated alias, :data:`cnnrnn.cli.DEPRECATED_COMMANDS`)."""
    from ..corpora import READERS

    parser = sub.add_parser("baselines", aliases=["baseline"],
                            help="ANN (raw waveform) and CNN (spectrogram) baselines", description=DESCRIPTION,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    family = parser.add_subparsers(dest="baseline_command", metavar="ACTION", required=True)

    p = family.add_parser(
        "train", help="train one baseline and score it on a seeded 8:2 validation split",
        description="Train the ANN or CNN on a corpus and score it on its validation split. Writes into DIR: "
                    "run.json (the run manifest), baseline_config.json, labels.json (class names in the corpus' "
                    "declared order), split.json, cache/ (features), model.h5, history.csv, curves.png, "
                    "metrics.json (accuracy, UA, F1-macro, skips), "
                    "confusion_matrix.png, predictions.csv. A rerun reuses the feature cache.")
    p.add_argument("--model", required=True, choices=("ann", "cnn"), help="which baseline")
    p.add_argument("--corpus", required=True, choices=sorted(READERS),
                   help="corpus layout (fsdd: {digit}_{speaker}_{take}.wav; urbansound8k: train.csv ID,Class "
                        "+ Train/<ID>.wav)")
    p.add_argument("--root", required=True, help="corpus folder (for manifest: the CSV file)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: new, empty, or a baselines run (a folder of other files is refused)")
    p.add_argument("--config", metavar="JSON",
                   help="baseline preset (ann, cnn, cnn_recipe, tiny_ann, tiny_cnn) or JSON file (keys: see "
                        "cnnrnn/configs/baselines/cnn.json); default: the preset named by --model")
    p.add_argument("--epochs", type=int, help="override the config's epochs")
    p.add_argument("--batch-size", type=int, help="override the config's batch_size")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float,
                   help="override the config's learning_rate (Adam)")
    p.add_argument("--split", choices=("random", "speaker"),
                   help="random: stratified 8:2 (the tutorial's protocol, the presets' split); "
                        "speaker: speaker-independent")
    p.add_argument("--holdout-speaker", metavar="NAME",
                   help="with --split speaker: this speaker's clips are the validation set (one LOSO fold)")
    p.add_argument("--cache-dir", metavar="DIR", help="feature cache folder (default DIR/cache; new, empty or a "
                                                       "baselines feature cache); share it between runs on the same "
                                                       "corpus")
    p.add_argument("--seed", type=int, help="override the config's seed")
    distribute.add_arguments(p)  # --distribute multi-worker, --workers, --worker-index, --timeout
    p.set_defaults(handler=_train)

    p = family.add_parser(
        "evaluate", help="score a trained run on its validation split or on another corpus",
        description="Load RUN/model.h5 and score it again: on the run's own validation split (default), or on "
                    "every clip of another corpus (--corpus and --root; classes matched by meaning, e.g. angry = "
                    "anger, unknown classes skipped and counted). Writes metrics.json, confusion_matrix.png and "
                    "predictions.csv into --out (default RUN/evaluation or RUN/evaluation_<corpus>).")
    p.add_argument("--run", required=True, metavar="RUN", help="run folder written by 'cnnrnn baselines train'")
    p.add_argument("--corpus", choices=sorted(READERS), help="another corpus layout to score")
    p.add_argument("--root", help="that corpus's folder")
    p.add_argument("--out", metavar="DIR",
                   help="output folder: new, empty, or a predictions folder (a folder of other files is refused)")
    p.set_defaults(handler=_evaluate)


def _summary(report: dict) -> dict:
    keys = ("model", "corpus", "n", "n_train", "n_val", "accuracy", "ua", "f1_macro", "train_clips_per_s",
            "dropped_from_val", "skipped_audio", "skipped_corpus", "skipped_unknown_label")
    return {k: report[k] for k in keys if k in report}


def _train(args, progress: bool) -> int:
    """``baselines train``: the cluster flags are checked first (:func:`cnnrnn.distribute.cluster_from_args`), then
    the run folder is claimed by :func:`cnnrnn.baselines.train.train` once the config is read (a folder of other
    files, or another command's, is refused: exit 2, nothing written)."""
    from ..baselines.train import train

    distribute.cluster_from_args(args)  # checked, and TF_CONFIG set, before TensorFlow starts
    report = train(args.corpus, args.root, args.out, config=args.config, model=args.model, cache_dir=args.cache_dir,
                   progress=progress, verbose=2 if progress else 0, epochs=args.epochs, batch_size=args.batch_size,
                   learning_rate=args.learning_rate, scheme=args.split, holdout_speaker=args.holdout_speaker,
                   seed=args.seed, distribute=args.distribute, timeout_s=args.timeout)
    print(json.dumps({**_summary(report), "out": args.out}, indent=2, default=str))
    return 0


def _evaluate(args, progress: bool) -> int:
    """``baselines evaluate``: ``--out`` is claimed as a predictions folder by
    :func:`cnnrnn.baselines.predict.evaluate` (refused: a folder of other files, a run, another command's)."""
    from ..baselines.predict import evaluate

    report = evaluate(args.run, corpus=args.corpus, root=args.root, out=args.out, progress=progress)
    print(json.dumps(_summary(report), indent=2, default=str))
    return 0
