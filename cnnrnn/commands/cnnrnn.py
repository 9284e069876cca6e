"""``cnnrnn split | spectrograms | pack | train | run | demo | spectrogram``: the CNNRNN family (the main job).

Argument parsing only; the work is in :mod:`cnnrnn.cnnrnn`. Options default to ``None`` and only override the
loaded config (:func:`cnnrnn.config.override`).
"""
from __future__ import annotations

import json
from pathlib import Path


def _add_config(p, default: str | None = None) -> None:
    p.add_argument("--config", default=default, metavar="JSON",
                   help="config preset (default, demo, tiny, compact) or JSON file; "
                        f"default: {default or 'the run folder config.json if present, else built-in defaults'}")


def _add_split(p) -> None:
    p.add_argument("--split", dest="split_scheme", choices=("session", "speaker"), default=None,
                   help="session: 8:2 inside every session, as the original (the same speakers end up in train "
                        "and test); speaker: whole speakers held out, a speaker-independent test set "
                        "(config split.scheme, built-in default session)")


def _add_out(p, default: str | None, help_text: str) -> None:
    p.add_argument("--out", default=default, required=default is None, metavar="DIR", help=help_text)


def add_commands(sub) -> None:
    """Add the CNNRNN stage subcommands to the ``cnnrnn`` parser's subparsers ``sub``."""
    from ..cnnrnn.config import TrainConfig as T
    from ..corpora import READERS

    corpora = sorted(READERS)
    p = sub.add_parser("split", help="stage 1: per-session 8:2 train/test split of a corpus",
                       description="Read a corpus and write train.json, test.json, train_audio.json, "
                                   "test_audio.json, labels.json and split_report.json into DIR. Label codes follow "
                                   "the corpus' declared label order (KEMDy: angry disgust fear happy neutral sad "
                                   "surprise).")
    p.add_argument("--corpus", required=True, choices=corpora, help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder (for --corpus manifest: the CSV file)")
    _add_out(p, None, "output folder")
    p.add_argument("--keep-ties", action="store_true", default=None,
                   help="keep tied (multi-label) utterances with their first label instead of leaving them out")
    _add_split(p)
    _add_config(p)
    p.set_defaults(handler=_split)

    p = sub.add_parser("spectrograms", help="stage 2: mel-spectrogram PNGs and data_*.pickle",
                       description="Render <DIR>/spectrograms/<id>.png for every utterance of the split in DIR, "
                                   "in parallel; a rerun resumes. Writes data_train.pickle and data_test.pickle.")
    _add_out(p, None, "folder holding the split stage's files")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per CPU core)")
    _add_config(p)
    p.set_defaults(handler=_spectrograms)

    p = sub.add_parser("pack", help="stage 3: read the PNGs into train_final.pickle / test_final.pickle")
    _add_out(p, None, "folder holding data_train.pickle and data_test.pickle")
    p.add_argument("--force", action="store_true", help="repack even if the pickles are up to date")
    _add_config(p)
    p.set_defaults(handler=_pack)

    p = sub.add_parser("train", help="stage 4: ResNet50+LSTM with k-fold cross-validation",
                       description="Train on DIR/train_final.pickle with k-fold CV (default 5 folds, Adam 1e-4, "
                                   "batch 16, 60 epochs). Writes models/*.h5, history/, logs/ (TensorBoard), "
                                   "cv_report.json and run.json (the run manifest that `cnnrnn predict` reads). "
                                   "Finished folds are skipped on a rerun.")
    _add_out(p, None, "folder holding train_final.pickle and labels.json")
    p.add_argument("--epochs", type=int, help=f"override train.epochs (built-in default {T.epochs})")
    p.add_argument("--folds", type=int, help=f"override train.folds (built-in default {T.folds})")
    p.add_argument("--learning-rate", "--lr", dest="learning_rate", type=float,
                   help=f"override train.learning_rate (built-in default {T.learning_rate:g})")
    p.add_argument("--batch-size", "--batch_size", dest="batch_size", type=int,
                   help=f"override train.batch_size (built-in default {T.batch_size})")
    p.add_argument("--weights", help="backbone weights: none, imagenet (cached only) or a .h5 path "
                                     f"(built-in default {T.weights})")
    p.add_argument("--by-speaker", action="store_true", default=None, help="speaker-disjoint folds")
    _add_config(p)
    p.set_defaults(handler=_train)

    p = sub.add_parser("run", help="all stages on a corpus, then the test-set prediction")
    p.add_argument("--corpus", required=True, choices=corpora, help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder (for manifest: the CSV file)")
    _add_out(p, None, "output folder")
    _add_split(p)
    _add_config(p)
    p.set_defaults(handler=_run)

    p = sub.add_parser("demo", help="the whole main job on the bundled KEMDy20-layout sample (a few minutes)")
    _add_out(p, "artifacts/demo", "output folder (default: artifacts/demo)")
    _add_config(p, "demo")
    p.set_defaults(handler=_run)

    p = sub.add_parser("spectrogram", help="one spectrogram PNG, or a per-emotion gallery of a run",
                       description="cnnrnn spectrogram IN.wav -o OUT.png renders one file; "
                                   "cnnrnn spectrogram --gallery DIR -o gallery.png draws a grid of a run's PNGs, "
                                   "one row per emotion.")
    p.add_argument("input", nargs="?", help="audio file")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--gallery", metavar="DIR", help="run folder (holding data_train.pickle) to draw a gallery of")
    p.add_argument("--per-label", type=int, default=4, help="gallery images per emotion (default 4)")
    _add_config(p)
    p.set_defaults(handler=_spectrogram)


def _config_for(args, out: Path | None = None, **overrides):
    from ..config import override
    from ..cnnrnn.config import load_config

    source = args.config
    if source is None and out is not None and (out / "config.json").is_file():
        source = out / "config.json"
    cfg = load_config(source)
    return override(cfg, overrides) if any(v is not None for v in overrides.values()) else cfg


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _split(args, progress: bool) -> int:
    from ..cnnrnn.data import split

    out = Path(args.out)
    report = split(args.corpus, args.root, out, _config_for(args, **{"split.keep_ties": args.keep_ties,
                                                                      "split.scheme": args.split_scheme}))
    _print({"labels": report["labels"], "train": report["split"]["n_train"], "test": report["split"]["n_test"],
            "ties": report["split"]["n_ties"], "skipped": report["corpus"]["skipped"], "out": str(out),
            "speakers_in_train_and_test": report["split"]["speakers_in_both"]})
    _split_note(report["split"])
    return 0


def _spectrograms(args, progress: bool) -> int:
    from ..cnnrnn.data import spectrograms

    out = Path(args.out)
    _print(spectrograms(out, _config_for(args, out, **{"spectrogram.workers": args.workers}), progress))
    return 0


def _pack(args, progress: bool) -> int:
    from ..cnnrnn.data import pack

    out = Path(args.out)
    _print(pack(out, _config_for(args, out), progress, force=args.force))
    return 0


def _train(args, progress: bool) -> int:
    from ..cnnrnn.train import train

    out = Path(args.out)
    cfg = _config_for(args, out, **{"train.epochs": args.epochs, "train.folds": args.folds,
                                    "train.learning_rate": args.learning_rate, "train.batch_size": args.batch_size,
                                    "train.weights": args.weights, "train.group_by_speaker": args.by_speaker})
    report = train(out, cfg, verbose=2 if progress else 0)
    _print({"mean": report["mean"], "folds": [{k: f[k] for k in ("fold", "ua", "wa", "f1_macro", "checkpoint")}
                                              for f in report["folds"]], "report": str(out / "cv_report.json")})
    if report["optimistic"]:
        print(OPTIMISTIC)
    return 0


OPTIMISTIC = ("note: each fold's epoch was chosen on the very fold it is scored on (train.selection fold, the "
              "original's setting), so these CV figures are optimistic; train.selection inner chooses it on "
              "held-out training speakers")


def _split_note(split: dict) -> None:
    if split["speakers_in_both"]:
        print(f"note: the test set shares {len(split['speakers_in_both'])} speaker(s) with the training set "
              "(the original per-session 8:2 split); its figures are not speaker-independent. "
              "--split speaker holds out whole speakers.")


def _run(args, progress: bool) -> int:
    from ..cnnrnn import pipeline

    cfg = _config_for(args, **{"split.scheme": getattr(args, "split_scheme", None)})
    verbose = 2 if progress else 0
    if args.command == "run":
        summary = pipeline.run(args.corpus, args.root, Path(args.out), cfg, progress, verbose=verbose)
    else:
        summary = pipeline.demo(Path(args.out), cfg, progress, verbose=verbose)
    _print_summary(summary)
    return 0


def _spectrogram(args, progress: bool) -> int:
    from .. import artifacts as A
    from ..cnnrnn.config import load_config
    from ..features import audio_to_image, read_png, write_png
    from ..plots import plot_gallery

    if args.gallery:
        run = Path(args.gallery)
        table = A.load_pickle(run / A.DATA_FILES["train"])
        labels = A.load_labels(run / A.LABELS_FILE)
        groups: dict[str, list] = {lab: [] for lab in labels}
        for path, code in zip(table["path"], table["emotion"]):
            if len(groups[labels[code]]) < args.per_label:
                groups[labels[code]].append(read_png(path))
        print(plot_gallery(groups, args.output, per_label=args.per_label, title=f"{run.name}: spectrograms by emotion"))
        return 0
    if not args.input:
        raise ValueError("give an audio file (cnnrnn spectrogram IN.wav -o OUT.png) or --gallery DIR")
    print(write_png(audio_to_image(args.input, load_config(args.config).spectrogram), args.output))
    return 0


def _print_summary(summary: dict) -> None:
    print("\n=== CNNRNN: cross-validation (validation folds) ===")
    for f in summary["cv_folds"]:
        print(f"fold {f['fold']}: UA {f['ua']:.3f}  WA {f['wa']:.3f}  F1-macro {f['f1_macro']:.3f}  "
              f"(best epoch {f['best_epoch']}, n_val {f['n_val']})")
    m = summary["cv_mean"]
    print(f"mean  : UA {m['ua']['mean']:.3f}  WA {m['wa']['mean']:.3f}  F1-macro {m['f1_macro']['mean']:.3f}")
    if summary.get("cv_optimistic"):
        print(OPTIMISTIC)
    t = summary["test_metrics"]
    if t:
        print(f"\n=== test set (fold-average ensemble, n={t['n']}) ===\n"
              f"UA {t['ua']:.3f}  WA {t['wa']:.3f}  F1-macro {t['f1_macro']:.3f}")
    if summary.get("speakers_in_both"):
        print(f"note: the test set shares {len(summary['speakers_in_both'])} speaker(s) with the training set "
              "(the original per-session 8:2 split), so its figures are not speaker-independent; "
              "--split speaker holds out whole speakers")
    print(f"\nskipped: {summary['skipped']}")
    print(f"stage seconds: {summary['seconds']}")
    print("\n=== outputs ===")
    for name, path in summary["files"].items():
        print(f"{name:22s} {path}")
