"""The ``cnnrnn`` command line: argument parsing only; the work is in :mod:`cnnrnn.pipeline` and friends."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from pathlib import Path

DESCRIPTION = """\
Speech emotion recognition from spectrogram images (ResNet50+LSTM, "CNNRNN").

The main job runs in stages that talk through files in one output folder:
  split         corpus -> train.json, test.json, train_audio.json, test_audio.json, labels.json
  spectrograms  *_audio.json -> spectrograms/<id>.png, data_train.pickle, data_test.pickle
  pack          data_*.pickle -> train_final.pickle, test_final.pickle (uint8 image arrays)
  train         train_final.pickle -> 5-fold CV, models/CNN_RNN_fold{k}_epoch{E}_e4.h5, cv_report.json
  predict       .h5 model(s) + pickle / wav / png / folder -> predictions.csv, metrics.json
  run           all stages, then predicts the test set;  demo: the same on the bundled sample

Every subcommand takes --config: a preset (default, demo, tiny) or a JSON file with the sections
"split", "spectrogram" and "train" (see cnnrnn/configs/default.json for every key).
"""


# The other model families and tools register their subcommands from cnnrnn/commands/<name>.py:
# each module has add_commands(sub), whose parsers set_defaults(handler=fn) with fn(args, progress) -> int.
COMMAND_MODULES = ("tools", "dcnn", "baseline", "kemdy", "hf")


def _add_config(p: argparse.ArgumentParser, default: str | None = None) -> None:
    p.add_argument("--config", default=default, metavar="JSON",
                   help="config preset (default, demo, tiny) or JSON file; "
                        f"default: {default or 'the run folder config.json if present, else built-in defaults'}")


def _add_out(p: argparse.ArgumentParser, default: str | None, help_text: str) -> None:
    p.add_argument("--out", default=default, required=default is None, metavar="DIR", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    from . import __version__
    from .corpora import READERS

    parser = argparse.ArgumentParser(prog="cnnrnn", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnrnn {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="less logging and no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    corpora = sorted(READERS)

    p = sub.add_parser("split", help="stage 1: per-session 8:2 train/test split of a corpus",
                       description="Read a corpus and write train.json, test.json, train_audio.json, "
                                   "test_audio.json, labels.json and split_report.json into DIR.")
    p.add_argument("--corpus", required=True, choices=corpora, help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder (for --corpus manifest: the CSV file)")
    _add_out(p, None, "output folder")
    p.add_argument("--keep-ties", action="store_true",
                   help="keep tied (multi-label) utterances with their first label instead of leaving them out")
    _add_config(p)

    p = sub.add_parser("spectrograms", help="stage 2: mel-spectrogram PNGs and data_*.pickle",
                       description="Render <DIR>/spectrograms/<id>.png for every utterance of the split in DIR, "
                                   "in parallel; a rerun resumes. Writes data_train.pickle and data_test.pickle.")
    _add_out(p, None, "folder holding the split stage's files")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU core)")
    _add_config(p)

    p = sub.add_parser("pack", help="stage 3: read the PNGs into train_final.pickle / test_final.pickle")
    _add_out(p, None, "folder holding data_train.pickle and data_test.pickle")
    p.add_argument("--force", action="store_true", help="repack even if the pickles are up to date")
    _add_config(p)

    p = sub.add_parser("train", help="stage 4: ResNet50+LSTM with k-fold cross-validation",
                       description="Train on DIR/train_final.pickle with k-fold CV (default 5 folds, Adam 1e-4, "
                                   "batch 16, 60 epochs). Writes models/*.h5, history/, logs/ (TensorBoard), "
                                   "cv_report.json. Finished folds are skipped on a rerun.")
    _add_out(p, None, "folder holding train_final.pickle and labels.json")
    p.add_argument("--epochs", type=int, help="override train.epochs")
    p.add_argument("--folds", type=int, help="override train.folds")
    p.add_argument("--weights", help="backbone weights: none, imagenet (cached only) or a .h5 path")
    p.add_argument("--by-speaker", action="store_true", help="speaker-disjoint folds")
    _add_config(p)

    p = sub.add_parser("predict", help="predict with one or more .h5 checkpoints",
                       description="Predict emotions for a *_final.pickle, one wav/png, or a folder of them. "
                                   "Several --model options average the models' probabilities (fold ensemble). "
                                   "Writes predictions.csv, and metrics.json + confusion_matrix.png when the "
                                   "true labels are known.")
    p.add_argument("--model", required=True, action="append", metavar="M.h5",
                   help="checkpoint; repeat it, or give a folder, to average several")
    p.add_argument("--input", required=True, help="test_final.pickle, a .wav/.png file, or a folder")
    p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: <run>/predictions)")
    p.add_argument("--labels", help="labels.json (default: the one in the checkpoint's run folder)")
    p.add_argument("--resize", action="store_true", help="resize images whose size differs from the model input")
    _add_config(p)

    p = sub.add_parser("run", help="all stages on a corpus, then the test-set prediction")
    p.add_argument("--corpus", required=True, choices=corpora, help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder (for manifest: the CSV file)")
    _add_out(p, None, "output folder")
    _add_config(p)

    p = sub.add_parser("demo", help="the whole main job on the bundled KEMDy20-layout sample (a few minutes)")
    _add_out(p, "artifacts/demo", "output folder (default: artifacts/demo)")
    _add_config(p, "demo")

    p = sub.add_parser("spectrogram", help="one spectrogram PNG, or a per-emotion gallery of a run",
                       description="cnnrnn spectrogram IN.wav -o OUT.png renders one file; "
                                   "cnnrnn spectrogram --gallery DIR -o gallery.png draws a grid of a run's PNGs, "
                                   "one row per emotion.")
    p.add_argument("input", nargs="?", help="audio file")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--gallery", metavar="DIR", help="run folder (holding data_train.pickle) to draw a gallery of")
    p.add_argument("--per-label", type=int, default=4, help="gallery images per emotion (default 4)")
    _add_config(p)

    for name in COMMAND_MODULES:
        importlib.import_module(f"cnnrnn.commands.{name}").add_commands(sub)
    return parser


def _config_for(args, out: Path | None = None):
    from .config import load_config

    source = args.config
    if source is None and out is not None and (out / "config.json").is_file():
        source = out / "config.json"
    return load_config(source)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``cnnrnn`` console script. Returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    progress = not args.quiet
    try:
        if getattr(args, "handler", None) is not None:
            return int(args.handler(args, progress) or 0)
        return _dispatch(args, progress)
    except (ValueError, FileNotFoundError, OSError) as exc:
        logging.getLogger("cnnrnn").error("%s", exc)
        return 2


def _dispatch(args, progress: bool) -> int:
    from . import pipeline

    cmd = args.command
    out = Path(args.out) if getattr(args, "out", None) else None
    if cmd == "split":
        cfg = _config_for(args)
        if args.keep_ties:
            cfg.split.keep_ties = True
        report = pipeline.split(args.corpus, args.root, out, cfg)
        _print({"labels": report["labels"], "train": report["split"]["n_train"], "test": report["split"]["n_test"],
                "ties": report["split"]["n_ties"], "skipped": report["corpus"]["skipped"], "out": str(out)})
    elif cmd == "spectrograms":
        cfg = _config_for(args, out)
        if args.workers:
            cfg.spectrogram.workers = args.workers
        _print(pipeline.spectrograms(out, cfg, progress))
    elif cmd == "pack":
        _print(pipeline.pack(out, _config_for(args, out), progress, force=args.force))
    elif cmd == "train":
        cfg = _config_for(args, out)
        for key, value in (("epochs", args.epochs), ("folds", args.folds), ("weights", args.weights)):
            if value is not None:
                setattr(cfg.train, key, value)
        if args.by_speaker:
            cfg.train.group_by_speaker = True
        cfg.validate()
        report = pipeline.train(out, cfg, verbose=2 if progress else 0)
        _print({"mean": report["mean"], "folds": [{k: f[k] for k in ("fold", "ua", "wa", "f1_macro", "checkpoint")}
                                                  for f in report["folds"]], "report": str(out / "cv_report.json")})
    elif cmd == "predict":
        from .inference import predict

        models = []
        for m in args.model:
            models += sorted(Path(m).glob("*.h5")) if Path(m).is_dir() else [Path(m)]
        result = predict(models, args.input, args.out, labels=args.labels, config=args.config,
                         resize=args.resize, progress=progress)
        df = result["predictions"]
        print(df[[c for c in ("id", "true", "predicted", "confidence") if c in df]].to_string(index=False,
                                                                                             max_rows=30))
        metrics = result["metrics"]
        if metrics:
            _print({k: metrics[k] for k in ("n", "accuracy", "ua", "wa", "f1_micro", "f1_macro", "f1_weighted")})
        _print({"files": result["files"], "skipped": result["skipped"]})
    elif cmd in ("run", "demo"):
        cfg = _config_for(args)
        if cmd == "run":
            summary = pipeline.run(args.corpus, args.root, out, cfg, progress, verbose=2 if progress else 0)
        else:
            summary = pipeline.demo(out, cfg, progress, verbose=2 if progress else 0)
        _print_summary(summary)
    elif cmd == "spectrogram":
        return _spectrogram(args)
    return 0


def _spectrogram(args) -> int:
    from .config import load_config

    if args.gallery:
        from . import artifacts as A
        from .features import read_png
        from .inference import load_labels
        from .plots import plot_gallery

        run = Path(args.gallery)
        table = A.load_pickle(run / A.DATA_FILES["train"])
        labels = load_labels(run / A.LABELS_FILE)
        groups: dict[str, list] = {lab: [] for lab in labels}
        for path, code in zip(table["path"], table["emotion"]):
            if len(groups[labels[code]]) < args.per_label:
                groups[labels[code]].append(read_png(path))
        print(plot_gallery(groups, args.output, per_label=args.per_label, title=f"{run.name}: spectrograms by emotion"))
        return 0
    if not args.input:
        raise ValueError("give an audio file (cnnrnn spectrogram IN.wav -o OUT.png) or --gallery DIR")
    from .features import audio_to_image, write_png

    cfg = load_config(args.config).spectrogram
    print(write_png(audio_to_image(args.input, cfg), args.output))
    return 0


def _print_summary(summary: dict) -> None:
    print("\n=== CNNRNN: cross-validation (validation folds) ===")
    for f in summary["cv_folds"]:
        print(f"fold {f['fold']}: UA {f['ua']:.3f}  WA {f['wa']:.3f}  F1-macro {f['f1_macro']:.3f}  "
              f"(best epoch {f['best_epoch']}, n_val {f['n_val']})")
    m = summary["cv_mean"]
    print(f"mean  : UA {m['ua']['mean']:.3f}  WA {m['wa']['mean']:.3f}  F1-macro {m['f1_macro']['mean']:.3f}")
    t = summary["test_metrics"]
    if t:
        print(f"\n=== test set (fold-average ensemble, n={t['n']}) ===\n"
              f"UA {t['ua']:.3f}  WA {t['wa']:.3f}  F1-macro {t['f1_macro']:.3f}")
    print(f"\nskipped: {summary['skipped']}")
    print(f"stage seconds: {summary['seconds']}")
    print("\n=== outputs ===")
    for name, path in summary["files"].items():
        print(f"{name:22s} {path}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
