"""DCNN-BLSTMwA entries of the ``emodb-535`` leave-one-speaker-out benchmark (imported by ``emodb_loso.py``).

An entry's ``options`` name a preset pair and overrides: ``{"preset": "compact", "overrides": {...}}`` trains
step 1 with ``cnnrnn/configs/dcnn/<preset>_finetune.json`` and step 2 with ``<preset>_train.json``, each with
the same overrides (:func:`cnnrnn.config.override`, e.g. ``{"data.normalization": "none"}``), then the step's own
(``options["steps"]["finetune" | "train"]``, e.g. a learning rate per step).

A preset whose ``model.backbone`` is ``yamnet`` (``{"preset": "yamnet"}``) gets ``model.weights`` =
``benchmarks/work/yamnet.weights.h5`` unless its overrides name weights; that file is converted once from
``<data>/../pretrained/yamnet/yamnet.tflite`` (:func:`cnnrnn.models.yamnet_convert.convert`) when absent. A ``whisper``
preset likewise gets ``benchmarks/work/whisper-tiny.en.weights.h5``, converted once from
``<data>/../pretrained/whisper-tiny.en/model.bin`` (:func:`cnnrnn.models.whisper_convert.convert`).

* :func:`dcnn_prepare` computes the un-normalised features (3-channel log-mel, or YAMNet's log-mel) of every file once
  (:func:`cnnrnn.dcnn.data.files_features`) and keeps it in ``ctx["dcnn"]`` for the folds;
* :func:`dcnn_fold` trains both steps (:func:`cnnrnn.dcnn.train.finetune`, :func:`cnnrnn.dcnn.train.train`) on the
  other nine speakers, each step's epoch chosen on one held-out *training* speaker when the preset says
  ``selection: inner``, and predicts the held-out speaker. Speaker normalisation fits the global statistics on
  the nine training speakers and each speaker's own statistics on that speaker's audio (for the held-out
  speaker: their unlabelled audio, a transductive choice).

Label codes are EmoDB's declared order (:func:`cnnrnn.corpora.label_order`).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

YAMNET_WEIGHTS = Path(__file__).resolve().parent / "work" / "yamnet.weights.h5"
WHISPER_WEIGHTS = Path(__file__).resolve().parent / "work" / "whisper-tiny.en.weights.h5"


def whisper_weights(data: Path) -> Path:
    """:data:`WHISPER_WEIGHTS`, converted from ``<data>/../pretrained/whisper-tiny.en/model.bin`` first if absent."""
    if not WHISPER_WEIGHTS.is_file():
        from cnnrnn.models.whisper_convert import convert

        convert(ct2=Path(data).parent / "pretrained" / "whisper-tiny.en" / "model.bin", out=WHISPER_WEIGHTS)
    return WHISPER_WEIGHTS


def yamnet_weights(data: Path) -> Path:
    """:data:`YAMNET_WEIGHTS`, converted from ``<data>/../pretrained/yamnet/yamnet.tflite`` first if absent."""
    if not YAMNET_WEIGHTS.is_file():
        from cnnrnn.models.yamnet_convert import convert

        convert(Path(data).parent / "pretrained" / "yamnet" / "yamnet.tflite", YAMNET_WEIGHTS)
    return YAMNET_WEIGHTS


def _configs(entry, ctx: dict) -> tuple[Any, Any]:
    """The entry's step-1 and step-2 configs: ``<preset>_finetune`` and ``<preset>_train`` with its overrides
    (and, for a YAMNet or Whisper preset without ``model.weights`` among them, :func:`yamnet_weights` /
    :func:`whisper_weights`)."""
    from cnnrnn.config import override
    from cnnrnn.dcnn.config import load_dcnn_config

    preset, changes = entry.options["preset"], dict(entry.options.get("overrides", {}))
    backbone = load_dcnn_config(f"{preset}_finetune").model.backbone
    if backbone == "yamnet" and "model.weights" not in changes:
        changes["model.weights"] = str(yamnet_weights(ctx["data"]))
    if backbone == "whisper" and "model.weights" not in changes:
        changes["model.weights"] = str(whisper_weights(ctx["data"]))
    steps = entry.options.get("steps", {})
    return tuple(override(load_dcnn_config(f"{preset}_{step}"), {**changes, **steps.get(step, {})})
                 for step in ("finetune", "train"))


def dcnn_prepare(entry, ctx: dict) -> dict:
    """Features of every ``emodb-535`` file once (kept in ``ctx["dcnn"]``, keyed by the feature settings, so the
    variants with and without speaker normalisation share them). Returns the feature cost and both configs."""
    from cnnrnn.corpora import label_order, load_corpus
    from cnnrnn.dcnn.data import FeatureSet, files_features

    finetune_cfg, train_cfg = _configs(entry, ctx)
    features = finetune_cfg.data.features()
    key = json.dumps({k: v for k, v in features.settings().items() if k not in ("normalization", "norm_range")},
                     sort_keys=True)
    cached = ctx.get("dcnn")
    if cached is None or cached["key"] != key:
        started, wall = time.process_time(), time.perf_counter()
        utts, _ = load_corpus("emodb", ctx["data"])
        kept, feats, skipped = files_features([u.audio_path for u in utts], features, progress=False)
        utts = [utts[i] for i in kept]
        labels = label_order("emodb", {u.emotion for u in utts})
        codes = np.array([labels.index(u.emotion) for u in utts], dtype=int)
        cached = ctx["dcnn"] = {
            "key": key, "ids": [u.id for u in utts], "labels": labels,
            "set": FeatureSet([u.audio_path for u in utts], codes, [u.speaker for u in utts], feats, {}),
            "cost": {"n_files": len(utts), "skipped": {k: len(v) for k, v in skipped.items()},
                     "cpu_seconds": round(time.process_time() - started, 2),
                     "wall_seconds": round(time.perf_counter() - wall, 2)}}
    return {"features": cached["cost"], "config": {"finetune": finetune_cfg.to_dict(), "train": train_cfg.to_dict()}}


def dcnn_fold(entry, speaker: str, ctx: dict) -> dict:
    """Train both steps on the nine other speakers and predict ``speaker``.

    Returns:
        ``{"ids", "y_true", "y_pred", "proba" (N × 7, 5 decimals), "labels", "dcnn_ua" (step 1 alone,
        utterance = mean of its segments), "selection" (per step: kept epoch, fit / selecting utterances,
        held-out training speaker), "normalization"}``.
    """
    import pandas as pd

    from cnnrnn.artifacts import save_json
    from cnnrnn.config import override
    from cnnrnn.dcnn.data import normalization_stats
    from cnnrnn.dcnn.train import finetune, train

    if "dcnn" not in ctx:
        dcnn_prepare(entry, ctx)
    finetune_cfg, train_cfg = _configs(entry, ctx)
    d = ctx["dcnn"]
    fs, labels = d["set"], d["labels"]
    speakers = np.asarray(fs.speakers)
    train_idx, test_idx = np.flatnonzero(speakers != speaker), np.flatnonzero(speakers == speaker)
    if not len(test_idx):
        raise ValueError(f"speaker {speaker!r} has no usable utterance in {ctx['data']}")
    features = finetune_cfg.data.features()
    train_f, test_f = fs.subset(train_idx), fs.subset(test_idx)
    stats = normalization_stats(train_f, [test_f], features)
    sets = {"train": train_f.segmented(features, stats), "test": test_f.segmented(features, stats)}

    out = ctx["work"] / entry.name / speaker
    shutil.rmtree(out, ignore_errors=True)  # a fold cut short restarts from scratch
    labels_file = save_json({"labels": labels}, out / "labels.json")
    common = {"train.log_root": str(out), "data.labels_file": str(labels_file)}
    step1 = finetune(override(finetune_cfg, {**common, "train.name": "finetune"}), progress=False, verbose=0,
                     sets=sets, stats=stats)
    step2 = train(override(train_cfg, {**common, "train.name": "train", "train.finetune_name": "finetune"}),
                  progress=False, verbose=0, sets=sets)
    df = pd.read_csv(out / "train" / "predictions_train.csv", dtype={"id": str})
    if df["id"].tolist() != [Path(p).stem for p in test_f.paths]:
        raise RuntimeError(f"{out}: the predictions are not in the held-out speaker's order")
    proba = df[[f"p_{name}" for name in labels]].to_numpy(np.float64)
    if not ctx.get("keep_models"):
        for h5 in out.rglob("*.h5"):
            h5.unlink()
    return {"ids": [d["ids"][i] for i in test_idx], "y_true": fs.labels[test_idx].tolist(),
            "y_pred": proba.argmax(axis=1).tolist(), "proba": np.round(proba, 5).tolist(), "labels": labels,
            "dcnn_ua": round(float(step1["metrics"]["utterances"]["ua"]), 4),
            "selection": {"finetune": step1["selection"], "train": step2["selection"]},
            "normalization": {k: v for k, v in step1["normalization"].items() if k != "file"}}
