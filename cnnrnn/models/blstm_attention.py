"""Step 2 of DCNN-BLSTMwA: BiLSTM + self-attention over the DCNN's segment features.

Input ``(batch, max_segments, feat_dim) float32``, padded with :data:`PAD_VALUE` (-1) after an utterance's
last segment; the DCNN features are ReLU outputs (≥ 0), so -1 never occurs in real data and
:class:`~cnnrnn.models.attention.PaddingMask` can tell padding apart; the mask goes to the BiLSTM and the
attention, so padding never changes the output. Then ``lstm_layers`` × ``Bidirectional(LSTM(128))`` (the original stacks one LSTM
per segment; one layer is the default here), :class:`SelfAttentionPooling` (Q, K, V ``Dense(256)``),
``Dense(512)`` ReLU + dropout 0.1, ``Dense(256)`` ReLU and a softmax (Zhang et al. 2021).
"""
from __future__ import annotations

from .attention import PaddingMask, SelfAttentionPooling

PAD_VALUE = -1.0


def build_blstm_attention(feat_dim: int, n_classes: int, lstm_units: int = 128, lstm_layers: int = 1,
                          attention_units: int = 256, dense1_units: int = 512, dense2_units: int = 256,
                          head_dropout: float = 0.1):
    """Build the BiLSTM-attention classifier (uncompiled).

    Args:
        feat_dim: DCNN feature width (the penultimate layer's units).
        n_classes: emotion classes.
        lstm_units: LSTM units each way.
        lstm_layers: stacked BiLSTM layers (≥ 1).
        attention_units: Q/K/V width.
        dense1_units, dense2_units, head_dropout: the classifier head.

    Returns:
        ``keras.Model`` mapping ``(batch, None, feat_dim)`` float32 (padded with -1) to ``(batch, n_classes)``
        probabilities; any number of segments per batch.

    Raises:
        ValueError: fewer than 2 classes or 1 layer.
    """
    import keras
    from keras import layers

    if n_classes < 2 or lstm_layers < 1:
        raise ValueError(f"need >= 2 classes and >= 1 LSTM layer, got {n_classes}, {lstm_layers}")
    inputs = keras.Input(shape=(None, int(feat_dim)), name="segment_features")
    mask = PaddingMask(PAD_VALUE, name="padding_mask")(inputs)
    x = inputs
    for i in range(lstm_layers):
        x = layers.Bidirectional(layers.LSTM(lstm_units, return_sequences=True), name=f"blstm{i + 1}")(x, mask=mask)
    x = SelfAttentionPooling(attention_units, name="attention")(x, mask=mask)
    x = layers.Dense(dense1_units, activation="relu", name="fc1")(x)
    x = layers.Dropout(head_dropout, name="dropout")(x)
    x = layers.Dense(dense2_units, activation="relu", name="fc2")(x)
    outputs = layers.Dense(n_classes, activation="softmax", name="emotion")(x)
    return keras.Model(inputs, outputs, name="dcnn_blstm_attention")
