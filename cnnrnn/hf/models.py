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
  the hidden states averaged over the unpadded frames;
* each modality is projected to ``proj_dim`` (ReLU); with both, fusion is ``concat`` or element-wise ``add``;
* outputs: ``emotion`` logits ``(B, n_labels)`` (no activation: the loss applies the matching sigmoid or
  softmax with ``from_logits=True``; the original applied softmax and then a loss with another sigmoid) and
  ``va`` ``(B, 2)`` valence/arousal, bias initialised to 3, the middle of the 1–5 scale.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import tensorflow as tf
import tf_keras as keras

TASKS = ("classification", "regression", "total")
MODALITIES = ("text", "speech", "multimodal")
FUSIONS = ("concat", "add")
POOLINGS = ("last_cnn", "mean")
LOSSES = ("plain", "focal", "class_balanced")


@dataclass
class ModelSpec:
    """Everything needed to rebuild a model and its inputs; saved as ``hf_model.json`` in each checkpoint.

    Attributes:
        task: ``classification`` | ``regression`` | ``total``. modality: ``text`` | ``speech`` | ``multimodal``.
        fusion: ``concat`` | ``add`` (multimodal only). labels: class names in output order.
        multilabel: sigmoid outputs and per-label loss (ties ``a;b``) instead of one softmax label.
        max_len: text tokens (static padding). max_seconds: speech cut (s). speech_pooling: ``last_cnn`` | ``mean``.
        proj_dim: size each modality is projected to. dropout: before the output layers.
    """

    task: str = "classification"
    modality: str = "text"
    fusion: str = "concat"
    labels: list[str] = field(default_factory=list)
    multilabel: bool = False
    max_len: int = 256
    max_seconds: float = 5.0
    speech_pooling: str = "last_cnn"
    proj_dim: int = 256
    dropout: float = 0.1

    def __post_init__(self):
        choices = (("task", self.task, TASKS), ("modality", self.modality, MODALITIES),
                   ("fusion", self.fusion, FUSIONS), ("speech_pooling", self.speech_pooling, POOLINGS))
        for name, value, allowed in choices:
            if value not in allowed:
                raise ValueError(f"{name} {value!r} is not one of {list(allowed)}")

    @property
    def uses_text(self) -> bool:
        return self.modality in ("text", "multimodal")

    @property
    def uses_speech(self) -> bool:
        return self.modality in ("speech", "multimodal")

    @property
    def outputs(self) -> tuple[str, ...]:
        return {"classification": ("emotion",), "regression": ("va",), "total": ("emotion", "va")}[self.task]

    def to_dict(self) -> dict:
        return asdict(self)


def build_head(spec: ModelSpec, text_dim: int | None, speech_dim: int | None) -> keras.Model:
    """The trainable head: pooled vectors ``{'text': (B, text_dim), 'speech': (B, speech_dim)}`` → outputs
    ``{'emotion': (B, n_labels) logits, 'va': (B, 2)}`` (only those of ``spec.task``)."""
    inputs, projected = {}, []
    for name, dim in (("text", text_dim), ("speech", speech_dim)):
        if dim is None:
            continue
        inputs[name] = keras.Input((dim,), name=name)
        projected.append(keras.layers.Dense(spec.proj_dim, activation="relu", name=f"{name}_proj")(inputs[name]))
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
    and/or ``input_values`` ``(B, samples) float32`` with ``speech_mask`` ``(B, samples) int32`` (speech);
    outputs as :func:`build_head`."""

    def __init__(self, spec: ModelSpec, text_backbone=None, speech_backbone=None, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec
        self.text_backbone = text_backbone
        self.speech_backbone = speech_backbone
        if speech_backbone is not None and spec.speech_pooling == "last_cnn":
            main = speech_backbone.wav2vec2  # the transformer part is not used: keep it out of training
            main.encoder.trainable = main.feature_projection.projection.trainable = False
        self.head = build_head(spec, text_backbone.config.hidden_size if text_backbone is not None else None,
                               self._speech_dim() if speech_backbone is not None else None)

    def _speech_dim(self) -> int:
        cfg = self.speech_backbone.config
        return cfg.conv_dim[-1] if self.spec.speech_pooling == "last_cnn" else cfg.hidden_size

    def _speech_vector(self, values, mask, training):
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
        pooled = {}
        if self.text_backbone is not None:
            out = self.text_backbone(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                                     training=training)
            pooler = getattr(out, "pooler_output", None)
            pooled["text"] = out.last_hidden_state[:, 0] if pooler is None else pooler
        if self.speech_backbone is not None:
            pooled["speech"] = self._speech_vector(inputs["input_values"], inputs["speech_mask"], training)
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
