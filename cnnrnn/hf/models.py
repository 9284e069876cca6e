"""tf_keras models on top of Hugging Face TF backbones: text, speech and text+speech, for emotion
classification, valence/arousal regression, or both ("total").

transformers' TF models are tf_keras (Keras 2) layers, and Keras 3 tensors cannot be fed into them, so this
module uses ``tf_keras`` throughout and never mixes with the Keras 3 models of the rest of the package.

The model is ``backbone(s) → pooled vector(s) → head``. The head is a separate tf_keras functional model
(its weights are saved as ``head.h5``; the fine-tuned backbones with ``save_pretrained``):

* text vector: the backbone's pooled output (the ``<s>``/``[CLS]`` token through its dense+tanh pooler, as in
  ``BertForSequenceClassification``), or the first token's last hidden state for models without a pooler;
* speech vector: ``last_cnn``, the last valid frame of the CNN feature encoder's output (``extract_features``,
  what the original ``etri_multimodal`` code used; here the last *unpadded* frame of each clip; the transformer
  layers are then not run, and stay as loaded), or ``mean``,
  the hidden states averaged over the unpadded frames; with ``speech_backbone`` ``whisper``, the hidden state of
  the Whisper encoder after block ``whisper_block`` averaged over the clip's own frames (the zero padding up to
  ``max_seconds`` left out), frozen unless ``whisper_finetune_blocks`` > 0
  (:func:`~cnnrnn.hf.backbones.whisper_hidden`, :func:`~cnnrnn.hf.backbones.set_whisper_trainable`);
* each modality is projected to ``proj_dim`` (ReLU; a Whisper vector is batch-normalised first); with both,
  fusion is ``concat`` or element-wise ``add``;
* outputs: ``emotion`` logits ``(B, n_labels)`` (no activation: the loss applies the matching sigmoid or
  softmax with ``from_logits=True``; the original applied softmax and then a loss with another sigmoid) and
  ``va`` ``(B, 2)`` valence/arousal, bias initialised to 3, the middle of the 1–5 scale.

:class:`HFModel` wraps the model with its tokenizer and feature extractor (inputs, prediction, saving). A
checkpoint is a folder:

* ``hf_model.json``: :data:`FORMAT`, ``kind`` and the :class:`ModelSpec` (task, modality, fusion, labels, …);
* ``text/``: the fine-tuned text backbone and its tokenizer (``save_pretrained``);
* ``speech/``: the fine-tuned wav2vec2 and its feature extractor (``save_pretrained``), or the Whisper encoder
  as a Whisper folder (``config.json`` + ``model.safetensors``, :func:`~cnnrnn.hf.backbones.save_whisper_encoder`);
* ``head.h5``: the head's weights (tf_keras ``save_weights``).

The 2-stage hierarchical classifier (:class:`HierarchicalModel`, ``-ETRI-Emotion-Recognition``'s "2-fold"
model) is a folder whose ``hf_model.json`` has ``kind: hierarchical`` and two such checkpoints: ``neutral/``
(neutral versus the rest) and ``rest/`` (the other emotions, trained on the non-neutral utterances only).
Its probabilities are ``P(neutral) = p1`` and ``P(k) = (1 − p1) · p2(k)``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from ..artifacts import load_json, save_json
from ..corpora import CorpusReport
from .backbones import (HFModelError, load_speech_backbone, load_text_backbone, load_whisper_encoder,
                        save_whisper_encoder, set_whisper_trainable, whisper_hidden)
from .config import LOSSES, ModelConfig
from .data import (HFRecord, encode_texts, label_targets, load_speech, load_whisper_speech, receptive_field,
                   va_targets)

SPEC_FILE = "hf_model.json"
HEAD_FILE = "head.h5"
FORMAT = "cnnrnn-hf-1"
NEUTRAL = "neutral"
#: The checkpoint folder of a run folder (``<out>/checkpoint``); ``run.json`` lies beside it.
CHECKPOINT_DIR = "checkpoint"


class HFCheckpointError(ValueError):
    """A checkpoint folder is missing, malformed, or was trained for another task or modality."""


@dataclass
class ModelSpec(ModelConfig):
    """Everything needed to rebuild a model and its inputs; saved as ``hf_model.json`` in each checkpoint.

    The fields of the ``model`` config section (:class:`~cnnrnn.hf.config.ModelConfig`: task, modality,
    fusion, max_len, max_seconds, speech_pooling, proj_dim, dropout, and the backbones it was fine-tuned from)
    plus two values that training decides at run time and the config does not hold:

    Attributes:
        labels: class names in output order (the KEMDy order of :data:`cnnrnn.corpora.kemdy.KEMDY_LABELS` by
            default; ``neutral``/``other`` for the first hierarchical stage).
        multilabel: sigmoid outputs and per-label loss (ties ``a;b``) instead of one softmax label, from
            ``train.label_mode`` and the training records.

    Raises:
        ConfigError: an unknown task, modality, fusion or pooling (checked on construction).
    """

    labels: list[str] = field(default_factory=list)
    multilabel: bool = False

    def __post_init__(self):
        self.validate()

    @classmethod
    def from_config(cls, model: ModelConfig, labels, multilabel: bool = False) -> "ModelSpec":
        """The spec of a ``model`` config section with the run-time ``labels`` and ``multilabel``."""
        return cls(**asdict(model), labels=list(labels), multilabel=multilabel)

    def to_dict(self) -> dict:
        """The spec as a JSON-ready dict."""
        return asdict(self)


def build_head(spec: ModelSpec, text_dim: int | None, speech_dim: int | None) -> keras.Model:
    """The trainable head: pooled vectors ``{'text': (B, text_dim), 'speech': (B, speech_dim)}`` → outputs
    ``{'emotion': (B, n_labels) logits, 'va': (B, 2)}`` (only those of ``spec.task``). A Whisper speech vector is
    standardised first (``BatchNormalization``, momentum 0.9: its moving statistics are in ``head.h5``)."""
    inputs, projected = {}, []
    for name, dim in (("text", text_dim), ("speech", speech_dim)):
        if dim is None:
            continue
        inputs[name] = keras.Input((dim,), name=name)
        x = inputs[name]
        if name == "speech" and spec.speech_backbone == "whisper":
            # Whisper's pooled hidden states share a large constant part (per-dimension std across clips ~0.03
            # against values ~0.5 for tiny.en block 2): standardise them, or the head learns only the prior.
            x = keras.layers.BatchNormalization(momentum=0.9, name="speech_norm")(x)
        projected.append(keras.layers.Dense(spec.proj_dim, activation="relu", name=f"{name}_proj")(x))
    if len(projected) == 1:
        x = projected[0]
    elif spec.fusion == "concat":
        x = keras.layers.Concatenate(name="fusion_concat")(projected)
    else:
        x = keras.layers.Add(name="fusion_add")(projected)
    x = keras.layers.Dropout(spec.dropout)(x)
    outputs = {}
    if "emotion" in spec.outputs:
        outputs["emotion"] = keras.layers.Dense(len(spec.labels), name="emotion")(x)
    if "va" in spec.outputs:
        outputs["va"] = keras.layers.Dense(2, bias_initializer=keras.initializers.Constant(3.0), name="va")(x)
    return keras.Model(inputs, outputs, name="head")


class HFEmotionModel(keras.Model):
    """Backbone(s) + head. Inputs: a dict with ``input_ids``/``attention_mask`` ``(B, max_len) int32`` (text)
    and/or ``input_values`` ``(B, samples) float32`` with ``speech_mask`` ``(B, samples) int32`` (wav2vec2), or
    ``input_features`` ``(B, frames, n_mels) float32`` Whisper log-mels with ``speech_mask`` ``(B, frames) int32``
    (1 on the clip's frames, 0 on padding; Whisper); outputs as :func:`build_head`."""

    def __init__(self, spec: ModelSpec, text_backbone=None, speech_backbone=None, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.text_backbone = text_backbone
        self.speech_backbone = speech_backbone
        self.whisper = spec.speech_backbone == "whisper"
        #: Names of the trained Whisper parts (``stem``, ``block1`` …); empty when frozen or not Whisper.
        self.whisper_trained: list[str] = []
        if speech_backbone is not None and self.whisper:
            self.whisper_trained = set_whisper_trainable(speech_backbone, spec.whisper_block,
                                                         spec.whisper_finetune_blocks)
        elif speech_backbone is not None and spec.speech_pooling == "last_cnn":
            main = speech_backbone.wav2vec2  # the transformer part is not used: keep it out of training
            main.encoder.trainable = main.feature_projection.projection.trainable = False
        self.head = build_head(spec, text_backbone.config.hidden_size if text_backbone is not None else None,
                               self._speech_dim() if speech_backbone is not None else None)

    def _speech_dim(self) -> int:
        cfg = self.speech_backbone.config
        if self.whisper:
            return cfg.d_model
        return cfg.conv_dim[-1] if self.spec.speech_pooling == "last_cnn" else cfg.hidden_size

    def _whisper_vector(self, features, mask, training):
        """Mean over the clip's encoder frames (``ceil(mel frames / 2)``) of the hidden state after
        ``whisper_block``: ``(B, d_model)``; no gradient flows into a frozen encoder."""
        hidden = whisper_hidden(self.speech_backbone, features, self.spec.whisper_block, training)
        if not self.whisper_trained:
            hidden = tf.stop_gradient(hidden)
        lengths = (tf.reduce_sum(mask, axis=-1) + 1) // 2
        frames = tf.sequence_mask(lengths, tf.shape(hidden)[1], dtype=hidden.dtype)
        total = tf.reduce_sum(hidden * frames[..., None], axis=1)
        return total / tf.maximum(tf.reduce_sum(frames, axis=1, keepdims=True), 1.0)

    def _speech_vector(self, values, mask, training):
        if self.whisper:
            return self._whisper_vector(values, mask, training)
        main = self.speech_backbone.wav2vec2
        lengths = tf.cast(main._get_feat_extract_output_lengths(tf.reduce_sum(mask, axis=-1)), tf.int32)
        if self.spec.speech_pooling == "last_cnn":
            # Only the CNN encoder and its layer norm (= the model's ``extract_features``): the transformer
            # layers would be computed for nothing and get no gradient.
            features = main.feature_projection.layer_norm(main.feature_extractor(values, training=training))
            return tf.gather(features, tf.maximum(lengths - 1, 0), batch_dims=1)
        hidden = self.speech_backbone(values, attention_mask=mask, training=training).last_hidden_state
        frames = tf.sequence_mask(lengths, tf.shape(hidden)[1], dtype=hidden.dtype)
        total = tf.reduce_sum(hidden * frames[..., None], axis=1)
        return total / tf.maximum(tf.reduce_sum(frames, axis=1, keepdims=True), 1.0)

    def call(self, inputs, training=False):
        """Pool each backbone's output, fuse them (concat or attention) and return the head's outputs."""
        pooled = {}
        if self.text_backbone is not None:
            out = self.text_backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     training=training)
            pooler = getattr(out, "pooler_output", None)
            pooled["text"] = out.last_hidden_state[:, 0] if pooler is None else pooler
        if self.speech_backbone is not None:
            key = "input_features" if self.whisper else "input_values"
            pooled["speech"] = self._speech_vector(inputs[key], inputs["speech_mask"], training)
        return self.head(pooled, training=training)


def class_balanced_weights(targets: np.ndarray, beta: float = 0.999) -> np.ndarray:
    """Per-class weights ``(1 - β) / (1 - β^n_c)`` from the "effective number of samples" (Cui et al., CVPR
    2019), normalised to mean 1; ``targets`` ``(N, C)`` multi-hot. A class without samples gets the largest weight."""
    counts = targets.sum(axis=0)
    weights = (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1)))
    return (weights / weights.mean()).astype(np.float32)


def emotion_loss(kind: str, multilabel: bool, targets: np.ndarray, gamma: float = 2.0):
    """The classification loss on raw logits (``from_logits=True``).

    ``plain``: sigmoid binary cross-entropy (multi-label) or softmax cross-entropy; ``focal``: their focal
    versions (Lin et al., ICCV 2017, γ=2); ``class_balanced``: cross-entropy weighted per class by
    :func:`class_balanced_weights` of the training ``targets`` ``(N, C)``.

    Raises:
        ValueError: unknown ``kind``.
    """
    if kind not in LOSSES:
        raise ValueError(f"loss {kind!r} is not one of {list(LOSSES)}")
    if kind == "focal":
        cls = keras.losses.BinaryFocalCrossentropy if multilabel else keras.losses.CategoricalFocalCrossentropy
        return cls(gamma=gamma, from_logits=True)
    if kind == "plain":
        cls = keras.losses.BinaryCrossentropy if multilabel else keras.losses.CategoricalCrossentropy
        return cls(from_logits=True)
    weights = tf.constant(class_balanced_weights(targets))

    def class_balanced_loss(y_true, logits):
        if multilabel:
            per_label = tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=logits)
            return tf.reduce_mean(per_label * weights, axis=-1)
        per_sample = tf.nn.softmax_cross_entropy_with_logits(labels=y_true, logits=logits)
        return per_sample * tf.reduce_sum(y_true * weights, axis=-1)

    return class_balanced_loss


@dataclass
class Prepared:
    """Model inputs of the records that survived, aligned with ``records``: ``input_ids``/``attention_mask``
    arrays (text); speech is checked here but loaded again batch by batch, so a corpus of any size fits in memory."""

    records: list[HFRecord]
    features: dict = field(default_factory=dict)


class HFModel:
    """A model with its tokenizer / feature extractor: its inputs (``prepare``, ``dataset``, ``targets``),
    ``predict``, ``save`` and ``load``. Fitting is :func:`cnnrnn.hf.train.fit`.

    With the Whisper speech backbone there is no feature extractor (``extractor`` is ``None``): the input is
    :func:`~cnnrnn.hf.data.load_whisper_speech`'s log-mel.

    Raises (on construction):
        HFModelError: a backbone cannot be loaded offline, or ``spec.max_len`` exceeds the text model's positions;
            Whisper: not a Whisper folder, ``whisper_block`` beyond its blocks, ``max_seconds`` beyond its positions.
    """

    def __init__(self, spec: ModelSpec, text_model: str | Path | None, speech_model: str | Path | None):
        text = speech = None
        self.tokenizer = self.extractor = None
        if spec.uses_text:
            text, self.tokenizer = load_text_backbone(text_model, "--text-model")
            # RoBERTa-style models number positions from pad_token_id + 1 (2 slots fewer than the table).
            limit = text.config.max_position_embeddings - (2 if "roberta" in text.config.model_type else 0)
            if spec.max_len > limit:
                raise HFModelError(f"--max_len {spec.max_len} exceeds what {text_model} supports ({limit} tokens)")
        if spec.uses_speech and spec.speech_backbone == "whisper":
            speech = load_whisper_encoder(speech_model, "--speech-model")
            cfg = speech.config
            if spec.whisper_block > cfg.encoder_layers:
                raise HFModelError(f"--whisper-block {spec.whisper_block}: {speech_model} has {cfg.encoder_layers} "
                                   f"blocks (0 = the conv stem … {cfg.encoder_layers} = the last)")
            if int(round(spec.max_seconds * 16000)) // 160 > 2 * cfg.max_source_positions:
                raise HFModelError(f"--max-seconds {spec.max_seconds}: {speech_model} has positions for "
                                   f"{cfg.max_source_positions * 0.02:g} s")
        elif spec.uses_speech:
            speech, self.extractor = load_speech_backbone(speech_model, "--speech-model")
        self.spec = spec
        self.model = HFEmotionModel(spec, text, speech)

    def prepare(self, records: Sequence[HFRecord], report: CorpusReport) -> Prepared:
        """Tokenise the text and check the audio; records without text (text models), unusable or too short
        audio (speech models) or without valence/arousal (regression) are skipped and counted in ``report``."""
        from ..audio import AudioError

        kept = []
        whisper = self.spec.uses_speech and self.model.whisper
        min_samples = receptive_field(self.model.speech_backbone.config) if self.spec.uses_speech and not whisper else 0
        for rec in records:
            if self.spec.uses_text and not rec.text:
                report.skip("no_text", rec.id)
                continue
            if "va" in self.spec.outputs and (rec.valence is None or rec.arousal is None):
                report.skip("no_valence_arousal", rec.id)
                continue
            if self.spec.uses_speech:
                try:
                    if whisper:
                        self.speech_inputs(rec.audio_path)
                    else:
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

    def speech_inputs(self, path: str) -> dict[str, np.ndarray]:
        """One clip's speech inputs: ``input_values`` ``(samples,) float32`` and ``speech_mask`` ``(samples,) int32``
        (wav2vec2), or ``input_features`` ``(frames, n_mels) float32`` (log-mel padded to ``max_seconds``) and
        ``speech_mask`` ``(frames,) int32``, 1 on the clip's frames (Whisper).

        Raises:
            AudioError: see :func:`~cnnrnn.hf.data.load_speech` / :func:`~cnnrnn.hf.data.load_whisper_speech`.
        """
        if self.model.whisper:
            features, n = load_whisper_speech(path, self.spec.max_seconds,
                                              self.model.speech_backbone.config.num_mel_bins)
            mask = np.zeros(len(features), np.int32)
            mask[:n] = 1
            return {"input_features": features, "speech_mask": mask}
        values = self.load_speech(path)
        return {"input_values": values, "speech_mask": np.ones(len(values), np.int32)}

    def dataset(self, prepared: Prepared, targets: dict | None, batch_size: int, shuffle: bool, seed: int = 0):
        """A ``tf.data`` pipeline: text padded statically (already ``max_len``), speech loaded clip by clip and
        padded per batch to its longest clip, with ``speech_mask`` 1 on real samples (dynamic padding); Whisper
        log-mels all have the length of ``max_seconds`` already (:meth:`speech_inputs`)."""
        feats, n = prepared.features, len(prepared.records)
        signature = {}
        if self.spec.uses_text:
            spec = tf.TensorSpec((self.spec.max_len,), tf.int32)
            signature.update(input_ids=spec, attention_mask=spec)
        if self.spec.uses_speech and self.model.whisper:
            signature.update(input_features=tf.TensorSpec(
                (None, self.model.speech_backbone.config.num_mel_bins), tf.float32),
                speech_mask=tf.TensorSpec((None,), tf.int32))
        elif self.spec.uses_speech:
            signature.update(input_values=tf.TensorSpec((None,), tf.float32),
                             speech_mask=tf.TensorSpec((None,), tf.int32))
        rng = np.random.default_rng(seed)

        def example(i):
            x = {k: feats[k][i] for k in ("input_ids", "attention_mask") if k in feats}
            if self.spec.uses_speech:
                x.update(self.speech_inputs(prepared.records[i].audio_path))
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

    def predict(self, prepared: Prepared, batch_size: int = 1) -> dict[str, np.ndarray]:
        """``{'emotion': (N, C) probabilities (sigmoid if multi-label, else softmax), 'va': (N, 2)}``; batches
        are run eagerly, so clips of new lengths cause no retracing."""
        if not prepared.records:
            return {}
        batches = [self.model(x, training=False) for x in self.dataset(prepared, None, batch_size, shuffle=False)]
        out = {k: np.concatenate([b[k].numpy() for b in batches]) for k in batches[0]}
        if "emotion" in out:
            logits = tf.constant(out["emotion"])
            out["emotion"] = (tf.sigmoid(logits) if self.spec.multilabel else tf.nn.softmax(logits)).numpy()
        return out

    def save(self, folder: Path) -> None:
        """Write the checkpoint folder (see the module docstring); a frozen Whisper encoder is written too, so the
        checkpoint stands alone."""
        folder.mkdir(parents=True, exist_ok=True)
        if self.spec.uses_text:
            self.model.text_backbone.save_pretrained(str(folder / "text"))
            self.tokenizer.save_pretrained(str(folder / "text"))
        if self.spec.uses_speech and self.model.whisper:
            save_whisper_encoder(self.model.speech_backbone, folder / "speech")
        elif self.spec.uses_speech:
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
        meta = read_checkpoint_meta(folder)
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


def read_checkpoint_meta(folder: str | Path) -> dict:
    """The ``hf_model.json`` of a checkpoint folder: ``{"format", "kind": "model" | "hierarchical", "spec"}``.

    Raises:
        HFCheckpointError: no ``hf_model.json`` there, or another format than :data:`FORMAT`.
    """
    path = Path(folder) / SPEC_FILE
    if not path.is_file():
        raise HFCheckpointError(f"{folder}: not a cnnrnn HF checkpoint (no {SPEC_FILE})")
    meta = load_json(path)
    if meta.get("format") != FORMAT:
        raise HFCheckpointError(f"{path}: unknown checkpoint format {meta.get('format')!r} (expected {FORMAT})")
    return meta
