"""``cnnrnn split | spectrograms | pack | train | evaluate | run | demo | spectrogram``: the CNNRNN family (the
main job).

Argument parsing only; the work is in :mod:`cnnrnn.cnnrnn`. Options default to ``None`` and only override the
loaded config (:func:`cnnrnn.config.override`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from .. import distribute
from ..artifacts import ensure_writable_dir


def _add_config(p, default: str | None = None) -> None:
    p.add_argument("--config", default=default, metavar="JSON",
                   help="config preset (default, demo, tiny, compact, compact_crops, best, yamnet, whisper) or JSON "
                        "file; "
                        f"default: {default or 'the run folder config.json if present, else built-in defaults'}")


def _add_split(p) -> None:
    p.add_argument("--split", dest="split_scheme", choices=("session", "speaker"), default=None,
                   help="session: 8:2 inside every session, as the original (the same speakers end up in train "
                        "and test); speaker: whole speakers held out, a speaker-independent test set "
                        "(config split.scheme, built-in default session)")


def _add_force(p, first: str = "") -> None:
    p.add_argument("--force", action="store_true",
                   help=first + "re-run the earlier stages whose settings this config changes (split: from the "
                        "corpus named in split_report.json), instead of refusing: a stage never runs with other "
                        "settings for the stages before it than the run's config.json records")


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
    p.add_argument("--shard", metavar="K/N", default=None,
                   help="render only the K-th of N parts of the utterances (by a hash of the id; K from 1), so "
                        "that N processes or machines fill one shared --out; only the PNGs and "
                        "spectrograms/shards/K-of-N.json are written, and `cnnrnn pack` checks every shard and "
                        "merges them")
    p.add_argument("--stats-only", action="store_true",
                   help="only make the normalisation statistics (spectrograms/normalization.json) that the shards "
                        "read; run it once before the shards when spectrogram.normalization is speaker or global")
    _add_force(p)
    _add_config(p)
    p.set_defaults(handler=_spectrograms)

    p = sub.add_parser("pack", help="stage 3: the packed image arrays (train_images.npy, test_images.npy) and "
                                    "train_final.pickle / test_final.pickle",
                       description="Check the packed image arrays that `cnnrnn spectrograms` wrote (train_images.npy, "
                                   "test_images.npy: uint8 (N, H, W, 3), read memory-mapped by `cnnrnn train`; made "
                                   "from the PNGs when missing or stale) and write train_final.pickle and "
                                   "test_final.pickle (the original's layout). --no-pickle skips the pickles for "
                                   "large corpora: `cnnrnn train` needs only the arrays.")
    _add_out(p, None, "folder holding data_train.pickle and data_test.pickle")
    p.add_argument("--no-pickle", dest="pickle", action="store_false", default=None,
                   help="do not write train_final.pickle / test_final.pickle (as large as the arrays again; `cnnrnn "
                        "train` reads the arrays), and remove stale ones; recorded in packed.json for later runs")
    p.add_argument("--pickle", dest="pickle", action="store_true",
                   help="write the final pickles again after an earlier --no-pickle")
    _add_force(p, "repack (the arrays from the PNGs, and the pickles) even if they are up to date, and ")
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
    p.add_argument("--by-speaker", action="store_true", default=None,
                   help="speaker-disjoint folds (sets train.fold_scheme speaker)")
    distribute.add_arguments(p)  # --distribute multi-worker, --workers, --worker-index, --timeout
    _add_force(p)
    _add_config(p)
    p.set_defaults(handler=_train)

    p = sub.add_parser("evaluate", help="stage 5: score the fold models' average on the test set",
                       description="Predict DIR/test_final.pickle with the average of the fold checkpoints of "
                                   "models/ and score it. Writes test/predictions.csv, test/metrics.json and "
                                   "test/confusion_matrix.png (what `cnnrnn run` does after training).")
    _add_out(p, None, "run folder holding models/, test_final.pickle and labels.json")
    _add_config(p)
    p.set_defaults(handler=_evaluate)

    p = sub.add_parser("run", help="all stages on a corpus, then the test-set prediction")
    p.add_argument("--corpus", required=True, choices=corpora, help="corpus layout")
    p.add_argument("--root", required=True, help="corpus folder (for manifest: the CSV file)")
    _add_out(p, None, "output folder")
    _add_split(p)
    _add_config(p)
    p.set_defaults(handler=_run)

    p = sub.add_parser("demo",
                       help="the whole main job on the bundled KEMDy20-layout sample (30 s to 2 min on 2 CPU cores)")
    _add_out(p, "artifacts/demo", "output folder (default: artifacts/demo)")
    _add_config(p, "demo")
    p.set_defaults(handler=_run)

    p = sub.add_parser("spectrogram", help="a readable spectrogram figure of one file (or its model-input image), "
                                           "or a per-emotion gallery of a run",
                       description="cnnrnn spectrogram IN.wav -o OUT.png draws a figure for people: the whole file's "
                                   "log-mel spectrogram with time in seconds, frequency in Hz on the mel scale, a dB "
                                   "colour bar, and the file name and its label (--label, or looked up with --corpus "
                                   "and --root) as title; --model RUN adds the predicted label and the class "
                                   "probabilities beside it. --raw writes the bare model-input image instead (the "
                                   "PNG the CNNRNN models train on). cnnrnn spectrogram --gallery DIR -o gallery.png "
                                   "draws a grid of a run's PNGs, one row per emotion. The log-mel settings (sr, "
                                   "n_mels, n_fft, hop_length, fmin, fmax, top_db) come from --config.")
    p.add_argument("input", nargs="?", help="audio file")
    p.add_argument("-o", "--output", required=True, help="output PNG")
    p.add_argument("--raw", action="store_true",
                   help="write the bare model-input image (image_size pixels, no axes) instead of the figure")
    p.add_argument("--label", help="the file's true label, shown in the title")
    p.add_argument("--corpus", help="look the file's label up in this corpus (a reader name: emodb, kemdy20, "
                                    "manifest, ...) read from --root")
    p.add_argument("--root", help="corpus folder (for --corpus manifest: the CSV file)")
    p.add_argument("--model", help="a trained run, checkpoint or shipped model name: its prediction of the file "
                                   "(label and probabilities, through `cnnrnn predict`) is drawn beside the figure")
    p.add_argument("--explain", action="store_true",
                   help="with --model: overlay where the predicted class's evidence lies (cnnrnn.explain: Grad-CAM on "
                        "the last convolutional map, else gradient x input), on the run's log-mel, with the class "
                        "and its probability in the title")
    p.add_argument("--explain-method", choices=("grad-cam", "gradient", "integrated-gradients"), default=None,
                   help="the saliency method of --explain (default: grad-cam when the model has a usable "
                        "convolutional map, else gradient)")
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


def _earlier_stages(out: Path, cfg, stage: str, args, progress: bool) -> list[str]:
    """Refuse (or with --force re-run) the stages before ``stage`` whose settings ``cfg`` changes
    (:func:`cnnrnn.cnnrnn.pipeline.rerun_earlier_stages`). Returns the stages re-run."""
    from ..cnnrnn.pipeline import rerun_earlier_stages

    return rerun_earlier_stages(out, cfg, stage, force=args.force, progress=progress)


def _print(obj) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _split(args, progress: bool) -> int:
    from ..cnnrnn.data import claim_run, split

    cfg = _config_for(args, **{"split.keep_ties": args.keep_ties, "split.scheme": args.split_scheme})
    out = claim_run(args.out, write=False)  # after the config; split claims it once the corpus is read
    report = split(args.corpus, args.root, out, cfg)
    _print({"labels": report["labels"], "train": report["split"]["n_train"], "test": report["split"]["n_test"],
            "ties": report["split"]["n_ties"], "skipped": report["corpus"]["skipped"], "out": str(out),
            "speakers_in_train_and_test": report["split"]["speakers_in_both"]})
    _split_note(report["split"])
    return 0


def _spectrograms(args, progress: bool) -> int:
    from ..cnnrnn.data import claim_run, spectrograms
    from ..cnnrnn.shards import ShardError, parse_shard, render_shard, spectrogram_stats

    shard = parse_shard(args.shard) if args.shard is not None else None  # a bad K/N is refused before any work
    if shard is not None and args.stats_only:
        raise ShardError("--shard and --stats-only go apart: make the statistics once with --stats-only, then run "
                         "every --shard K/N")
    out = claim_run(args.out, create=False)
    cfg = _config_for(args, out, **{"spectrogram.workers": args.workers})
    _earlier_stages(out, cfg, "spectrograms", args, progress)
    if args.stats_only:
        _print(spectrogram_stats(out, cfg, progress))
    elif shard is not None:
        _print(render_shard(out, *shard, cfg, progress))
    else:
        _print(spectrograms(out, cfg, progress))
    return 0


def _pack(args, progress: bool) -> int:
    from ..cnnrnn.data import claim_run, pack

    from ..cnnrnn.shards import shards_pending

    out = claim_run(args.out, create=False)
    cfg = _config_for(args, out)
    # shards to merge: pack itself checks that they were made with this config's spectrogram settings
    _earlier_stages(out, cfg, "spectrograms" if shards_pending(out) else "pack", args, progress)
    _print(pack(out, cfg, progress, force=args.force, pickle=args.pickle))
    return 0


def _train(args, progress: bool) -> int:
    from ..cnnrnn.data import claim_run
    from ..cnnrnn.train import train

    cluster = distribute.cluster_from_args(args)  # checked, and TF_CONFIG set, before TensorFlow starts
    chief = cluster is None or cluster.is_chief()
    out = claim_run(args.out, create=False)
    cfg = _config_for(args, out, **{"train.epochs": args.epochs, "train.folds": args.folds,
                                    "train.learning_rate": args.learning_rate, "train.batch_size": args.batch_size,
                                    "train.weights": args.weights,
                                    "train.fold_scheme": "speaker" if args.by_speaker else None})
    if chief or not args.force:  # a --force rerun of earlier stages is the chief's
        _earlier_stages(out, cfg, "train", args, progress)
    report = train(out, cfg, verbose=2 if progress else 0, distribute=args.distribute, timeout_s=args.timeout)
    _print({"mean": report["mean"], "folds": [{k: f[k] for k in ("fold", "ua", "wa", "f1_macro", "checkpoint")}
                                              for f in report["folds"]], "report": str(out / "cv_report.json")})
    if report["optimistic"]:
        print(OPTIMISTIC)
    return 0


def _evaluate(args, progress: bool) -> int:
    """``cnnrnn evaluate``: stage 5 (:func:`cnnrnn.cnnrnn.pipeline.test_stage`), refused while the run trains."""
    from ..cnnrnn.pipeline import test_stage

    result = test_stage(args.out, args.config, progress)
    metrics = result["metrics"] or {}
    _print({**{k: metrics[k] for k in ("n", "ua", "wa", "f1_macro", "f1_micro", "f1_weighted") if k in metrics},
            "files": result["files"]})
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
    from ..cnnrnn.data import claim_run

    cfg = _config_for(args, **{"split.scheme": getattr(args, "split_scheme", None)})
    claim_run(args.out, write=False)
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

    ensure_writable_dir(Path(args.output).parent)
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
    cfg = load_config(args.config).spectrogram
    if (args.explain or args.explain_method) and (not args.model or args.raw):
        raise ValueError("--explain draws where a model's evidence lies: give --model RUN (and no --raw)")
    if args.raw:
        if args.model or args.label or args.corpus:
            raise ValueError("--raw writes the bare model-input image; --model, --label and --corpus need the figure")
        print(write_png(audio_to_image(args.input, cfg), args.output))
        return 0
    print(_spectrogram_figure(args, cfg))
    return 0


def _spectrogram_figure(args, cfg) -> Path:
    """The figure of ``cnnrnn spectrogram IN.wav``: the whole file's log-mel (:func:`cnnrnn.features.log_mel`),
    its label, and with ``--model`` the prediction of :func:`cnnrnn.predict.predict`, drawn by
    :func:`cnnrnn.plots.plot_spectrogram`; with ``--explain`` the predicted class's saliency (the family's
    ``explain`` in its ``saliency`` part, :func:`cnnrnn.families.has_part`) over the run's log-mel, drawn by
    :func:`cnnrnn.plots.plot_saliency`."""
    import tempfile

    from ..audio import load_audio
    from ..features import log_mel
    from ..plots import plot_spectrogram

    if (args.corpus is None) != (args.root is None):
        raise ValueError("--corpus and --root go together (the corpus reader and its folder)")
    label = args.label or (_corpus_label(args.corpus, args.root, args.input) if args.corpus else None)
    explainer = _explainer(args.model) if args.explain or args.explain_method else None
    labels = probabilities = None
    if args.model:
        from ..predict import predict

        with tempfile.TemporaryDirectory() as tmp:
            result = predict(args.model, args.input, tmp, progress=False, figures=False)  # its folder is dropped
        df = result["predictions"]
        if not len(df):
            raise ValueError(f"{args.input}: the model could not predict it (skipped: "
                             f"{ {k: len(v) for k, v in result.get('skipped', {}).items()} })")
        labels = [c[2:] for c in df.columns if c.startswith("p_")]
        probabilities = df.iloc[0][[f"p_{lab}" for lab in labels]].to_numpy(float)
        if label is None and "true" in df.columns and isinstance(df["true"].iloc[0], str):
            label = df["true"].iloc[0]
    explained = best = None
    if explainer is not None:  # the predicted class's evidence
        if not all(math.isfinite(p) for p in probabilities):
            raise ValueError(f"--explain: {args.input} got no emotion (no speech found), so there is no predicted "
                             "class whose evidence to draw")
        best = max(range(len(probabilities)), key=lambda i: probabilities[i])
        explained = explainer(args.input, best, args.explain_method)
    cfg = explained["spectrogram"] if explained and args.config is None else cfg  # the log-mel the model saw
    y, _ = load_audio(args.input, cfg.sr)
    title = Path(args.input).name + (f"  (label: {label})" if label else "")
    values = log_mel(y, cfg)
    if cfg.kind == "yamnet":  # YAMNet's natural-log mel magnitudes, drawn as dB below the clip's peak
        values = (20 / math.log(10)) * (values - values.max())
    elif cfg.kind == "whisper":  # Whisper's (log10(power) + 4) / 4, drawn as dB below the clip's peak
        values = 40.0 * (values - values.max())
    if explained:
        from ..plots import plot_saliency

        title += f"\nevidence for {labels[best]} (p = {probabilities[best]:.2f}; {explained['method']})"
        return plot_saliency(values, explained["saliency"], args.output, sr=cfg.sr, hop_length=cfg.hop_length,
                             fmin=cfg.fmin, fmax=cfg.fmax, title=title)
    return plot_spectrogram(values, args.output, sr=cfg.sr, hop_length=cfg.hop_length, fmin=cfg.fmin,
                            fmax=cfg.fmax, title=title, labels=labels, probabilities=probabilities)


def _explainer(model: str):
    """``explain(audio, target, method)`` of ``model``'s family (e.g. :func:`cnnrnn.cnnrnn.saliency.explain`),
    checked before any prediction (and the part's ``check(models, manifest)``, where it has one: a run it cannot
    explain, e.g. the waveform baseline). Raises ValueError: a family without one, or a run refused (one line)."""
    from .. import families
    from ..predict import resolve_family, resolve_model

    family, manifest = resolve_family(model)
    drawn = [f for f in families.FAMILIES if families.has_part(f, "saliency")]
    if family not in drawn:
        raise ValueError(f"--explain draws saliency for {', '.join(drawn)} runs, not {family} runs; from "
                         "Python, cnnrnn.explain.saliency(model, x) takes any Keras model and one input")
    part = families.module(family, "saliency")
    if hasattr(part, "check"):
        part.check([resolve_model(model)], manifest)
    return lambda audio, target, method: part.explain([resolve_model(model)], audio, manifest, method=method,
                                                      target=target)


def _corpus_label(corpus: str, root: str, audio: str) -> str:
    """The label of ``audio`` in a corpus (``a;b`` for a tie). Raises ValueError when the corpus lacks it."""
    from ..corpora import load_corpus

    target = Path(audio).resolve()
    for u in load_corpus(corpus, root)[0]:
        if Path(u.audio_path).resolve() == target:
            return ";".join(u.emotions) if u.is_tied else u.emotion
    raise ValueError(f"{audio} is not an utterance of the {corpus} corpus at {root}")


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
    if t:
        n_classes = len(summary.get("labels") or []) or None
        chance = f"; chance is {1 / n_classes:.3f} for {n_classes} emotions" if n_classes else ""
        print(f"\nIn plain words: on {t['n']} test clips the model scored UA {t['ua']:.3f} and WA {t['wa']:.3f}. UA "
              f"(unweighted accuracy) is the mean of the per-emotion recalls, so every emotion counts equally"
              f"{chance}; WA is the share of clips labelled right. Everything is in {summary['out']}: the "
              "predictions in test/predictions.csv, the scores in test/metrics.json, the confusion matrix in "
              "test/confusion_matrix.png, the fold models in models/.")
