"""Train, save, load and evaluate the HF emotion models (one fold at a time, as the original ``train.py``).

A checkpoint is a folder:

* ``hf_model.json``: format, :class:`~cnnrnn.hf.models.ModelSpec` (task, modality, fusion, labels, …);
* ``text/``: the fine-tuned text backbone and its tokenizer (``save_pretrained``);
* ``speech/``: the fine-tuned wav2vec2 and its feature extractor (``save_pretrained``);
* ``head.h5``: the head's weights (tf_keras ``save_weights``).

The 2-stage hierarchical classifier (``-ETRI-Emotion-Recognition``'s "2-fold" model) is a folder whose
``hf_model.json`` has ``kind: hierarchical`` and two such checkpoints: ``neutral/`` (neutral versus the rest)
and ``rest/`` (the other emotions, trained on the non-neutral utterances only). Its probabilities are
``P(neutral) = p1`` and ``P(k) = (1 − p1) · p2(k)``.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifacts import atomic_write_bytes, load_json, save_json
from ..corpora import CorpusReport
from ..kemdy_labels import LABELS
from .backbones import HFModelError, load_speech_backbone, load_text_backbone
from .data import HFRecord, encode_texts, fold_indices, label_targets, load_speech, receptive_field, va_targets
from .metrics import emotion_metrics, predicted_sets, regression_metrics
from .models import ModelSpec

log = logging.getLogger("cnnrnn.hf")
SPEC_FILE = "hf_model.json"
HEAD_FILE = "head.h5"
FORMAT = "cnnrnn-hf-1"
NEUTRAL = "neutral"


class HFCheckpointError(ValueError):
    """A checkpoint folder is missing, malformed, or was trained for another task or modality."""


@dataclass
class TrainConfig:
    """Training options (defaults: the original ``train.py``). ``text_model``/``speech_model``: local folder or
    cached hub name. ``loss``: ``plain`` | ``focal`` | ``class_balanced``. ``label_mode``: ``auto`` (multi-label
    when a training record has tied labels), ``single`` (first label only) or ``multi``. ``eager``: train
    without ``tf.function`` tracing (faster for a handful of steps: tests, smoke runs; slower for real runs)."""

    text_model: str = "klue/roberta-base"
    speech_model: str = "facebook/wav2vec2-base-960h"
    lr: float = 1e-4
    batch_size: int = 64
    valid_batch_size: int = 1
    epochs: int = 30
    loss: str = "plain"
    label_mode: str = "auto"
    hierarchical: bool = False
    fold: int = 0
    n_folds: int = 5
    fold_scheme: str = "contiguous"
    threshold: float = 0.5
    seed: int = 42
    eager: bool = False


@dataclass
class Prepared:
    """Model inputs of the records that survived, aligned with ``records``: ``input_ids``/``attention_mask``
    arrays (text); speech is checked here but loaded again batch by batch, so a corpus of any size fits in memory."""

    records: list[HFRecord]
    features: dict = field(default_factory=dict)


class HFModel:
    """A trained model with its tokenizer / feature extractor: ``predict`` and ``save``."""

    def __init__(self, spec: ModelSpec, text_model: str | Path | None, speech_model: str | Path | None):
        from .models import HFEmotionModel

        text = speech = None
        self.tokenizer = self.extractor = None
        if spec.uses_text:
            text, self.tokenizer = load_text_backbone(text_model, "--text-model")
            # RoBERTa-style models number positions from pad_token_id + 1 (2 slots fewer than the table).
            limit = text.config.max_position_embeddings - (2 if "roberta" in text.config.model_type else 0)
            if spec.max_len > limit:
                raise HFModelError(f"--max_len {spec.max_len} exceeds what {text_model} supports ({limit} tokens)")
        if spec.uses_speech:
            speech, self.extractor = load_speech_backbone(speech_model, "--speech-model")
        self.spec = spec
        self.model = HFEmotionModel(spec, text, speech)

    def prepare(self, records: Sequence[HFRecord], report: CorpusReport) -> Prepared:
        """Tokenise the text and check the audio; records without text (text models), unusable or too short
        audio (speech models) or without valence/arousal (regression) are skipped and counted in ``report``."""
        from ..audio import AudioError

        kept = []
        min_samples = receptive_field(self.model.speech_backbone.config) if self.spec.uses_speech else 0
        for rec in records:
            if self.spec.uses_text and not rec.text:
                report.skip("no_text", rec.id)
                continue
            if "va" in self.spec.outputs and (rec.valence is None or rec.arousal is None):
                report.skip("no_valence_arousal", rec.id)
                continue
            if self.spec.uses_speech:
                try:
                    self.load_speech(rec.audio_path, min_samples)
                except AudioError as exc:
                    report.skip(f"audio_{exc.reason}", rec.id)
                    continue
            kept.append(rec)
        prepared = Prepared(kept)
        if self.spec.uses_text and kept:
            prepared.features.update(encode_texts(self.tokenizer, [r.text for r in kept], self.spec.max_len))
        return prepared

    def load_speech(self, path: str, min_samples: int = 0) -> np.ndarray:
        """One clip as model input ``(samples,) float32`` (see :func:`cnnrnn.hf.data.load_speech`)."""
        return load_speech(path, self.extractor, min_samples, self.spec.max_seconds)

    def dataset(self, prepared: Prepared, targets: dict | None, batch_size: int, shuffle: bool, seed: int = 0):
        """A ``tf.data`` pipeline: text padded statically (already ``max_len``), speech loaded clip by clip and
        padded per batch to its longest clip, with ``speech_mask`` 1 on real samples (dynamic padding)."""
        import tensorflow as tf

        feats, n = prepared.features, len(prepared.records)
        signature = {}
        if self.spec.uses_text:
            spec = tf.TensorSpec((self.spec.max_len,), tf.int32)
            signature.update(input_ids=spec, attention_mask=spec)
        if self.spec.uses_speech:
            signature.update(input_values=tf.TensorSpec((None,), tf.float32),
                             speech_mask=tf.TensorSpec((None,), tf.int32))
        rng = np.random.default_rng(seed)

        def example(i):
            x = {k: feats[k][i] for k in ("input_ids", "attention_mask") if k in feats}
            if self.spec.uses_speech:
                x["input_values"] = self.load_speech(prepared.records[i].audio_path)
                x["speech_mask"] = np.ones(len(x["input_values"]), np.int32)
            return x if targets is None else (x, {k: v[i] for k, v in targets.items()})

        def generate():
            for i in (rng.permutation(n) if shuffle else range(n)):
                yield example(i)

        out_sig = signature if targets is None else (
            signature, {k: tf.TensorSpec(v.shape[1:], tf.float32) for k, v in targets.items()})
        data = tf.data.Dataset.from_generator(generate, output_signature=out_sig)
        return data.padded_batch(batch_size).prefetch(tf.data.AUTOTUNE)

    def targets(self, records: Sequence[HFRecord]) -> dict[str, np.ndarray]:
        """Training targets of ``records``, as the task needs: ``emotion`` ``(N, C) float32`` multi-hot over
        ``spec.labels`` and ``va`` ``(N, 2) float32`` valence and arousal on the 1-5 scale."""
        out = {}
        if "emotion" in self.spec.outputs:
            out["emotion"] = label_targets(records, self.spec.labels)
        if "va" in self.spec.outputs:
            out["va"] = va_targets(records)
        return out

    def fit(self, prepared: Prepared, cfg: TrainConfig, progress: bool = True, callbacks: Sequence = ()):
        """Compile (Adam(``cfg.lr``); emotion loss on logits, MSE on valence/arousal) and fit with tf_keras
        ``callbacks``; returns the History."""
        import tf_keras as keras

        from .models import emotion_loss

        targets = self.targets(prepared.records)
        losses = {"va": keras.losses.MeanSquaredError()}
        if "emotion" in targets:
            losses["emotion"] = emotion_loss(cfg.loss, self.spec.multilabel, targets["emotion"])
        self.model.compile(optimizer=keras.optimizers.Adam(cfg.lr), loss={k: losses[k] for k in targets},
                           run_eagerly=cfg.eager)
        data = self.dataset(prepared, targets, cfg.batch_size, shuffle=True, seed=cfg.seed)
        return self.model.fit(data, epochs=cfg.epochs, verbose=1 if progress else 0, callbacks=list(callbacks))

    def predict(self, prepared: Prepared, batch_size: int = 1) -> dict[str, np.ndarray]:
        """``{'emotion': (N, C) probabilities (sigmoid if multi-label, else softmax), 'va': (N, 2)}``; batches
        are run eagerly, so clips of new lengths cause no retracing."""
        import tensorflow as tf

        if not prepared.records:
            return {}
        batches = [self.model(x, training=False) for x in self.dataset(prepared, None, batch_size, shuffle=False)]
        out = {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}
        if "emotion" in out:
            logits = tf.constant(out["emotion"])
            out["emotion"] = (tf.sigmoid(logits) if self.spec.multilabel else tf.nn.softmax(logits)).numpy()
        return out

    def save(self, folder: Path) -> None:
        """Write the checkpoint folder (see the module docstring)."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.spec.uses_text:
            self.model.text_backbone.save_pretrained(str(folder / "text"))
            self.tokenizer.save_pretrained(str(folder / "text"))
        if self.spec.uses_speech:
            self.model.speech_backbone.save_pretrained(str(folder / "speech"))
            self.extractor.save_pretrained(str(folder / "speech"))
        self.model.head.save_weights(str(folder / HEAD_FILE))
        save_json({"format": FORMAT, "kind": "model", "spec": self.spec.to_dict()}, folder / SPEC_FILE)

    @classmethod
    def load(cls, folder: Path) -> "HFModel":
        """Rebuild a model saved by :meth:`save` (backbones from ``text/`` and ``speech/``, head weights).

        Raises:
            HFCheckpointError: ``folder`` holds no cnnrnn HF checkpoint.
        """
        meta = _read_meta(folder)
        model = cls(ModelSpec(**meta["spec"]), folder / "text", folder / "speech")
        model.model.head.load_weights(str(folder / HEAD_FILE))
        return model


class HierarchicalModel:
    """The 2-stage classifier: ``neutral`` (neutral vs rest) then ``rest`` (the other emotions)."""

    def __init__(self, spec: ModelSpec, neutral: HFModel, rest: HFModel):
        self.spec, self.neutral, self.rest = spec, neutral, rest

    def prepare(self, records, report):
        """Inputs of ``records`` for both stages (they share one backbone set-up); skips go to ``report``."""
        return self.neutral.prepare(records, report)

    def predict(self, prepared: Prepared, batch_size: int = 1) -> dict[str, np.ndarray]:
        """``{'emotion': (N, C) float32}``: P(neutral) from stage 1, and (1 - P(neutral)) × the stage-2 softmax
        for every other emotion, so each row sums to 1."""
        if not prepared.records:
            return {}
        p1 = self.neutral.predict(prepared, batch_size)["emotion"][:, 0]
        p2 = self.rest.predict(prepared, batch_size)["emotion"]
        probs = np.zeros((len(p1), len(self.spec.labels)), np.float32)
        probs[:, self.spec.labels.index(NEUTRAL)] = p1
        for j, lab in enumerate(self.rest.spec.labels):
            probs[:, self.spec.labels.index(lab)] = (1.0 - p1) * p2[:, j]
        return {"emotion": probs}

    def save(self, folder: Path) -> None:
        """Write ``neutral/`` and ``rest/`` checkpoints and the ``hierarchical`` spec file."""
        self.neutral.save(folder / "neutral")
        self.rest.save(folder / "rest")
        save_json({"format": FORMAT, "kind": "hierarchical", "spec": self.spec.to_dict()}, folder / SPEC_FILE)


def _read_meta(folder: Path) -> dict:
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise HFCheckpointError(f"{folder}: not a cnnrnn HF checkpoint (no {SPEC_FILE})")
    meta = load_json(path)
    if meta.get("format") != FORMAT:
        raise HFCheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    return meta


def load_checkpoint(folder: str | Path, task: str | None = None, modality: str | None = None):
    """Load a checkpoint written by :func:`train_fold` (``HFModel`` or ``HierarchicalModel``).

    Args:
        task, modality: when given, the checkpoint must have been trained for them.

    Raises:
        HFCheckpointError: no checkpoint there, or it was trained for another task/modality.
    """
    folder = Path(folder)
    meta = _read_meta(folder)
    spec = meta["spec"]
    for name, wanted in (("task", task), ("modality", modality)):
        if wanted is not None and spec[name] != wanted:
            raise HFCheckpointError(f"{folder} is a {spec['modality']} {spec['task']} checkpoint; "
                                    f"it cannot be used for {name} {wanted!r}")
    if meta["kind"] == "hierarchical":
        return HierarchicalModel(ModelSpec(**spec), HFModel.load(folder / "neutral"), HFModel.load(folder / "rest"))
    return HFModel.load(folder)


def _stage_records(records: Sequence[HFRecord], stage: str) -> list[HFRecord]:
    """Relabel for a hierarchical stage: ``neutral`` → ``neutral``/``other``; ``rest`` → the non-neutral labels
    of the records that have any (a ``fear;neutral`` tie counts as fear)."""
    out = []
    for rec in records:
        rest = [lab for lab in rec.labels if lab != NEUTRAL]
        if stage == "neutral":
            out.append(HFRecord(**{**rec.__dict__, "labels": ["other" if rest else NEUTRAL]}))
        elif rest:
            out.append(HFRecord(**{**rec.__dict__, "labels": rest}))
    return out


def _train_one(spec: ModelSpec, records, cfg: TrainConfig, report: CorpusReport, progress: bool, callbacks):
    """Build, prepare and fit one model; returns ``(model, history DataFrame)``; skips go to ``report``."""
    import pandas as pd

    model = HFModel(spec, cfg.text_model, cfg.speech_model)
    prepared = model.prepare(records, report)
    if not prepared.records:
        raise ValueError(f"no usable training record ({report.summary()})")
    if report.n_skipped:
        log.warning("training records skipped: %s", report.summary())
    report.n_kept += len(prepared.records)
    return model, pd.DataFrame(model.fit(prepared, cfg, progress, callbacks).history)


def train_fold(records: Sequence[HFRecord], spec: ModelSpec, cfg: TrainConfig, out: str | Path,
               progress: bool = True, callbacks: Sequence = ()) -> dict:
    """Train on fold ``cfg.fold``'s training part, save the checkpoint, evaluate on its test part.

    Writes under ``out``: ``checkpoint/`` (replaced atomically when complete), ``history.csv``, and what
    :func:`evaluate` writes (``metrics.json``, ``predictions.csv``, ``confusion_matrix.png``).

    Args:
        records: every record in corpus order (the folds are cut from this order).
        spec: the model; ``spec.labels`` defaults to the 7 KEMDy emotions (:data:`cnnrnn.kemdy_labels.LABELS`)
            and ``spec.multilabel`` is set from ``cfg.label_mode``.
        callbacks: tf_keras callbacks passed to ``fit`` (e.g. a step timer or TensorBoard).

    Returns:
        the metrics dict (also in ``metrics.json``).

    Raises:
        ValueError: hierarchical with a task other than classification; no usable record; bad fold.
        HFModelError: a backbone cannot be loaded offline.
    """
    import pandas as pd
    import tf_keras as keras

    out = Path(out)
    report = CorpusReport("hf-train", "")
    keras.utils.set_random_seed(cfg.seed)
    train_idx, test_idx = fold_indices(len(records), cfg.fold, cfg.n_folds, cfg.fold_scheme,
                                       [r.labels[0] for r in records], cfg.seed)
    train = [records[i] for i in train_idx]
    test = [records[i] for i in test_idx]
    spec.labels = list(spec.labels or LABELS)
    if cfg.label_mode == "single":
        train = [HFRecord(**{**r.__dict__, "labels": r.labels[:1]}) for r in train]
    spec.multilabel = cfg.label_mode == "multi" or (cfg.label_mode == "auto" and any(len(r.labels) > 1 for r in train))
    if cfg.hierarchical:
        if spec.task != "classification":
            raise ValueError("the hierarchical (2-stage) model is for --task classification only")
        stage1 = ModelSpec(**{**spec.to_dict(), "labels": [NEUTRAL, "other"], "multilabel": False})
        stage2 = ModelSpec(**{**spec.to_dict(), "labels": [lab for lab in spec.labels if lab != NEUTRAL]})
        neutral, hist1 = _train_one(stage1, _stage_records(train, "neutral"), cfg, report, progress,
                                    callbacks)
        rest, hist2 = _train_one(stage2, _stage_records(train, "rest"), cfg, CorpusReport("hf-rest", ""),
                                 progress, callbacks)
        model = HierarchicalModel(spec, neutral, rest)
        history = pd.concat([hist1.assign(stage="neutral"), hist2.assign(stage="rest")])
    else:
        model, history = _train_one(spec, train, cfg, report, progress, callbacks)
    partial = out / "checkpoint.partial"
    shutil.rmtree(partial, ignore_errors=True)
    model.save(partial)
    shutil.rmtree(out / "checkpoint", ignore_errors=True)
    partial.rename(out / "checkpoint")
    history.index.name = "epoch"
    atomic_write_bytes(out / "history.csv", history.to_csv().encode("utf-8"))
    extra = {"fold": cfg.fold, "n_folds": cfg.n_folds, "fold_scheme": cfg.fold_scheme, "n_train": report.n_kept,
             "loss": cfg.loss, "hierarchical": cfg.hierarchical, "epochs": cfg.epochs, "lr": cfg.lr,
             "train_skipped": report.to_dict()["skipped"]}
    return evaluate(model, test, out, cfg.valid_batch_size, cfg.threshold, extra)


def evaluate(model, records: Sequence[HFRecord], out: str | Path, batch_size: int = 1, threshold: float = 0.5,
             extra: dict | None = None) -> dict:
    """Predict ``records`` and write ``predictions.csv``, ``metrics.json`` and (classification, when the
    records carry labels) ``confusion_matrix.png`` under ``out``. Unusable records are skipped and counted
    (``metrics['skipped']``). Returns the metrics."""
    import pandas as pd

    from ..plots import plot_confusion_matrix

    out = Path(out)
    spec = model.spec
    report = CorpusReport("hf-predict", "")
    prepared = model.prepare(records, report)
    kept = prepared.records
    if report.n_skipped:
        log.warning("records skipped at prediction: %s", report.summary())
    outputs = model.predict(prepared, batch_size)
    table = pd.DataFrame({"id": [r.id for r in kept], "labels": [";".join(r.labels) for r in kept]})
    metrics = {"task": spec.task, "modality": spec.modality, "fusion": spec.fusion if spec.modality == "multimodal"
               else None, "speech_pooling": spec.speech_pooling if spec.uses_speech else None,
               "labels": spec.labels, "multilabel": spec.multilabel, "n": len(kept),
               "skipped": report.to_dict()["skipped"], **(extra or {})}
    if kept and "emotion" in outputs:
        probs = outputs["emotion"]
        table["predicted"] = [spec.labels[i] for i in probs.argmax(axis=1)]
        names = np.asarray(spec.labels)
        table["predicted_set"] = [";".join(names[row > 0]) for row in predicted_sets(probs, threshold)]
        for j, lab in enumerate(spec.labels):
            table[f"p_{lab}"] = probs[:, j]
        labelled = all(set(r.labels) <= set(spec.labels) for r in kept)
        if labelled:
            metrics["emotion"] = emotion_metrics(label_targets(kept, spec.labels), probs, spec.multilabel, threshold)
            plot_confusion_matrix(metrics["emotion"]["confusion_matrix"], spec.labels, out / "confusion_matrix.png",
                                  title=f"{spec.modality} {spec.task} (top-1)")
    if kept and "va" in outputs:
        truth = va_targets(kept)
        table["valence"], table["arousal"] = truth[:, 0], truth[:, 1]
        table["valence_pred"], table["arousal_pred"] = outputs["va"][:, 0], outputs["va"][:, 1]
        metrics["regression"] = regression_metrics(truth, outputs["va"])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "predictions.csv", table.to_csv(index=False).encode("utf-8"))
    save_json(metrics, out / "metrics.json")
    return metrics
