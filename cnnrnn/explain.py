"""Where a model's evidence lies in time and frequency: saliency maps over its spectrogram input.

:func:`saliency` takes any Keras 3 classifier and one input as its family builds it (an image ``(H, W, C)`` or a
log-mel ``(n_mels, frames)``) and returns a non-negative ``(rows, columns) float32`` map that **sums to 1** (each
cell's share of the evidence), on the log-mel's axes: mel bands (low frequencies in row 0) by frames. Three
methods, all written here with ``tf.GradientTape`` (``tf-keras-vis`` targets ``tf.keras`` 2 and does not run on
Keras 3; no maintained Keras 3 implementation is installed):

* ``grad-cam`` (:func:`grad_cam`; Selvaraju et al. 2017): the last convolutional feature map, weighted by the
  mean gradient of the class score over each channel, ReLU, upsampled to the input. It needs a usable map
  (:func:`conv_map_layer`): a ``Conv2D`` output that keeps the input's 2-D layout.
* ``gradient`` (:func:`gradient_x_input`): the positive part of gradient × input, for any differentiable model.
* ``integrated-gradients`` (:func:`integrated_gradients`; Sundararajan et al. 2017): the positive part of the
  path integral of the gradients from a zero input, ``steps`` Riemann steps.

The method is chosen from the model's layers, never from its family (:func:`choose_method`): ``grad-cam`` when
there is a usable convolutional map, else ``gradient``. The class score is the pre-softmax one where the output
layer applies a softmax (:func:`_score_layer`), as Grad-CAM prescribes.
"""
from __future__ import annotations

import contextlib
from typing import Any, Sequence

import numpy as np

#: The saliency methods (:func:`choose_method` picks one of the first two; integrated gradients only when asked).
METHODS = ("grad-cam", "gradient", "integrated-gradients")
#: Riemann steps of :func:`integrated_gradients` (the paper finds 20–300 enough).
IG_STEPS = 32
#: How far the downsampling of a convolutional map may differ between its two axes for the map to count as laid
#: out like the input (a map of transposed or reshaped input, e.g. time-major, differs far more).
STRIDE_RATIO = 2.0


class ExplainError(ValueError):
    """A saliency method the model cannot give (the message names the method that would work), or an input of the
    wrong shape."""


def _layers(model) -> list:
    """Every layer of ``model``, nested models' layers included, in the order they were added (depth first)."""
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        out.extend(_layers(layer))
    return out


def conv_map_layer(model) -> Any | None:
    """The layer whose output Grad-CAM weighs: the last ``keras.layers.Conv2D`` (nested models searched; depthwise
    and 1-D convolutions are not ``Conv2D``) whose output is ``(batch, h, w, channels)`` with ``h, w >= 2`` and whose
    downsampling of the model's input is alike on both axes (within :data:`STRIDE_RATIO`). A convolution that
    follows a ``Reshape`` or ``Permute`` of a 2-D input, or whose map is the input transposed (time-major), fails
    that test; ``None`` when no layer passes.
    """
    import keras

    shape = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if not shape or len(shape) < 2 or None in shape[:2]:
        return None
    h_in, w_in = int(shape[0]), int(shape[1])
    found = None
    for layer in _layers(model):
        if isinstance(layer, (keras.layers.Reshape, keras.layers.Permute)) and found is None:
            return None  # the input's layout is rearranged before any convolution
        if not isinstance(layer, keras.layers.Conv2D):
            continue
        try:
            out = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(out) != 4 or out[1] is None or out[2] is None or min(out[1], out[2]) < 2:
            continue
        sh, sw = h_in / out[1], w_in / out[2]
        if max(sh, sw) / min(sh, sw) <= STRIDE_RATIO:
            found = layer
    return found


def choose_method(model) -> str:
    """``grad-cam`` when ``model`` has a usable convolutional map (:func:`conv_map_layer`), else ``gradient``."""
    return "grad-cam" if conv_map_layer(model) is not None else "gradient"


def _score_layer(model):
    """The layer that makes ``model``'s output when it applies a softmax (a ``Dense``/``Activation`` with
    ``activation`` softmax, nested models followed to their last layer), else ``None``."""
    layer = model
    while getattr(layer, "layers", None):
        layer = layer.layers[-1]
    activation = getattr(layer, "activation", None)
    return layer if getattr(activation, "__name__", "") == "softmax" else None


@contextlib.contextmanager
def _logits(model):
    """Within it, ``model`` outputs its pre-softmax scores (the last layer's activation set to linear)."""
    import keras

    layer = _score_layer(model)
    if layer is None:
        yield
        return
    original = layer.activation
    layer.activation = keras.activations.linear
    try:
        yield
    finally:
        layer.activation = original


@contextlib.contextmanager
def _tap(layer, tape, store: dict):
    """Within it, each call of ``layer`` records its output in ``store["map"]``, watched by ``tape``."""
    original = layer.call

    def call(*args, **kwargs):
        out = original(*args, **kwargs)
        tape.watch(out)
        store["map"] = out
        return out

    layer.call = call
    try:
        yield
    finally:
        del layer.call


def _batch(x: np.ndarray, model) -> np.ndarray:
    """``x`` as a batch of one float32 input, checked against the model's input shape."""
    x = np.asarray(x, np.float32)
    want = tuple(model.input_shape[1:])
    if x.ndim != len(want) or any(w is not None and w != v for w, v in zip(want, x.shape)):
        raise ExplainError(f"the model takes inputs of shape {want} (batch axis left out), got {x.shape}")
    return x[None]


def _target(model, xb: np.ndarray, target: int | None) -> int:
    if target is not None:
        return int(target)
    return int(np.argmax(np.asarray(model(xb, training=False))[0]))


def grad_cam(model, x: np.ndarray, target: int | None = None, layer=None) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
    Localization", ICCV): ``ReLU(Σ_k α_k A^k)`` with ``α_k`` the mean over the map of ``∂y^c/∂A^k``, ``A`` the
    convolutional map and ``y^c`` the pre-softmax score of class ``target``.

    Args:
        model: a Keras 3 model. x: one input, ``model.input_shape`` without the batch axis.
        target: the class index (default: the model's top class for ``x``).
        layer: the convolutional layer (default :func:`conv_map_layer`).

    Returns:
        ``(h, w) float32``, non-negative, at the map's resolution (rows and columns as the input's first two axes).

    Raises:
        ExplainError: no usable convolutional map (use ``gradient``), or ``x`` of the wrong shape.
    """
    import tensorflow as tf

    layer = layer or conv_map_layer(model)
    if layer is None:
        raise ExplainError("grad-cam needs a convolutional map laid out like the input (a Conv2D output of 2-D "
                           f"spatial shape) and {model.name} has none; use --explain-method gradient (gradient x "
                           "input) or integrated-gradients")
    xb = _batch(x, model)
    c = _target(model, xb, target)
    store: dict = {}
    with _logits(model), tf.GradientTape(persistent=False) as tape:
        with _tap(layer, tape, store):
            score = model(tf.constant(xb), training=False)[:, c]
        grads = tape.gradient(score, store["map"])
    fmap, grads = np.asarray(store["map"])[0], np.asarray(grads)[0]
    weights = grads.mean(axis=(0, 1))
    return np.maximum((fmap * weights).sum(axis=-1), 0).astype(np.float32)


def _input_gradients(model, xb: np.ndarray, c: int) -> np.ndarray:
    import tensorflow as tf

    xt = tf.constant(xb)
    with _logits(model), tf.GradientTape() as tape:
        tape.watch(xt)
        score = tf.reduce_sum(model(xt, training=False)[:, c])
    return np.asarray(tape.gradient(score, xt))


def _spatial(values: np.ndarray) -> np.ndarray:
    """An attribution the shape of one input → its positive part summed over a trailing channel axis."""
    values = np.maximum(values, 0)
    return (values.sum(axis=-1) if values.ndim == 3 else values).astype(np.float32)


def gradient_x_input(model, x: np.ndarray, target: int | None = None) -> np.ndarray:
    """The positive part of gradient × input of the pre-softmax score of class ``target`` (summed over channels).

    Returns:
        ``(rows, columns) float32`` as the input's first two axes. Raises ExplainError: ``x`` of the wrong shape.
    """
    xb = _batch(x, model)
    return _spatial((_input_gradients(model, xb, _target(model, xb, target)) * xb)[0])


def integrated_gradients(model, x: np.ndarray, target: int | None = None, steps: int = IG_STEPS,
                         baseline: np.ndarray | None = None) -> np.ndarray:
    """Integrated gradients (Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks", ICML):
    ``(x - x') · mean_k ∂y^c/∂x (x' + (k - ½)/steps · (x - x'))``, the midpoint Riemann sum from ``baseline``
    ``x'`` (default zeros: black pixels, the quietest image), its positive part summed over channels.

    Returns:
        ``(rows, columns) float32`` as the input's first two axes. Raises ExplainError: ``x`` of the wrong shape.
    """
    xb = _batch(x, model)
    c = _target(model, xb, target)
    base = np.zeros_like(xb) if baseline is None else np.asarray(baseline, np.float32).reshape(xb.shape)
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    path = base + alphas.reshape((steps,) + (1,) * (xb.ndim - 1)) * (xb - base)
    grads = np.concatenate([_input_gradients(model, path[i:i + 8], c) for i in range(0, steps, 8)])
    return _spatial((grads.mean(axis=0, keepdims=True) * (xb - base))[0])


def _resize(m: np.ndarray, rows: int, columns: int) -> np.ndarray:
    import cv2

    if m.shape == (rows, columns):
        return m.astype(np.float32)
    return cv2.resize(m.astype(np.float32), (int(columns), int(rows)), interpolation=cv2.INTER_LINEAR)


def attribution(model, x: np.ndarray, method: str | None = None, *, target: int | None = None,
                size: tuple[int, int] | None = None, steps: int = IG_STEPS) -> np.ndarray:
    """One input's raw evidence map by ``method``, not normalised: what :func:`saliency` computes per segment
    before it places, flips and normalises. For a family that weighs several inputs' maps against each other
    (DCNN's segments of one utterance keep their relative strength).

    Args:
        model: a Keras 3 classifier. x: one input, ``model.input_shape`` without the batch axis.
        method: one of :data:`METHODS`; ``None``: :func:`choose_method`. target: the class index (default: the
            model's top class for ``x``). size: ``(rows, columns)`` to resize the map to (default: the input's
            first two axes). steps: Riemann steps of ``integrated-gradients``.

    Returns:
        ``(rows, columns) float32``, non-negative, in the units of the class's pre-softmax score (Grad-CAM upsampled
        bilinearly from its map), rows and columns as the input's first two axes.

    Raises:
        ExplainError: an unknown method; ``grad-cam`` without a usable convolutional map (naming ``gradient``);
            ``x`` of the wrong shape.
    """
    if method is not None and method not in METHODS:
        raise ExplainError(f"unknown saliency method {method!r} (methods: {', '.join(METHODS)})")
    method = method or choose_method(model)
    if method == "grad-cam":
        m = grad_cam(model, x, target)
    elif method == "gradient":
        m = gradient_x_input(model, x, target)
    else:
        m = integrated_gradients(model, x, target, steps)
    return _resize(m, *(size or np.shape(x)[:2]))


def file_windows(y: np.ndarray, sr: int, clip_s: float | None) -> list[tuple[int, np.ndarray]]:
    """The pieces a file is predicted in by :func:`cnnrnn.predict.predict` (:mod:`cnnrnn.timeline`): the whole
    file when the model takes inputs of any length (``clip_s`` ``None``) or the file fits in one clip (within
    :data:`cnnrnn.timeline.CLIP_TOLERANCE_S`), else windows of ``clip_s`` seconds every ``clip_s / 2``
    (:func:`cnnrnn.audio.windows`), the last cut at the file's end (the family pads it as it pads a short file).

    Returns:
        ``[(start in samples, (samples,) float32 waveform), ...]``.

    Raises:
        ValueError: an empty ``y``, or ``clip_s`` under one sample (:func:`cnnrnn.audio.windows`).
    """
    from .audio import windows
    from .timeline import CLIP_TOLERANCE_S

    y = np.asarray(y, np.float32)
    if not clip_s or len(y) <= (clip_s + CLIP_TOLERANCE_S) * sr:
        return [(0, y)]
    starts, frames = windows(y, sr, clip_s, clip_s / 2)
    offsets = [int(round(s * sr)) for s in starts]
    return [(o, np.array(f[: len(y) - o])) for o, f in zip(offsets, frames)]


def segment_starts(width: int, crop_width: int, hop: int | None = None) -> list[int]:
    """Left edges of the ``crop_width``-wide segments a time-crop model predicts an input ``width`` wide as: every
    ``hop`` (default half the crop), the last aligned to the end (the rule of the time-crop predictor).

    Raises:
        ExplainError: ``width < crop_width`` or ``hop < 1``.
    """
    hop = max(1, crop_width // 2) if hop is None else int(hop)
    if width < crop_width or hop < 1:
        raise ExplainError(f"cannot cut an input {width} wide into segments of {crop_width} every {hop}")
    starts = list(range(0, width - crop_width + 1, hop))
    return starts if starts[-1] == width - crop_width else starts + [width - crop_width]


def place_segments(maps: Sequence[np.ndarray], starts: Sequence[int], width: int) -> np.ndarray:
    """Put segment maps ``(rows, w_i)`` at columns ``starts`` of a ``(rows, width)`` axis, averaging where they
    overlap (columns no segment covers stay 0).

    Returns:
        ``(rows, width) float32``. Raises ValueError: a segment reaches past ``width``.
    """
    rows = maps[0].shape[0]
    total, count = np.zeros((rows, width), np.float64), np.zeros(width, np.float64)
    for m, s in zip(maps, starts):
        if s < 0 or s + m.shape[1] > width:
            raise ValueError(f"a segment at {s} of {m.shape[1]} columns reaches past {width}")
        total[:, s:s + m.shape[1]] += m
        count[s:s + m.shape[1]] += 1
    return (total / np.maximum(count, 1)).astype(np.float32)


def normalise(m: np.ndarray) -> np.ndarray:
    """``m`` clipped at 0 and scaled to sum 1 (all zeros: uniform), ``float32``."""
    m = np.maximum(np.nan_to_num(np.asarray(m, np.float64)), 0)
    total = m.sum()
    return (m / total if total > 0 else np.full(m.shape, 1.0 / m.size)).astype(np.float32)


def saliency(model, x: np.ndarray, method: str | None = None, *, target: int | None = None,
             hop: int | None = None, size: tuple[int, int] | None = None, flip: bool | None = None,
             time_major: bool = False, steps: int = IG_STEPS) -> np.ndarray:
    """Saliency of class ``target`` for one input, on the log-mel's axes, summing to 1.

    Args:
        model: a Keras 3 classifier (softmax or score outputs). x: one input as the family builds it: a CNNRNN
            image ``(H, W, 3)`` (rows = frequency, low frequencies in the bottom row as
            :func:`cnnrnn.features.to_image` draws them; columns = time), a log-mel ``(n_mels, frames)`` or
            ``(n_mels, frames, 1)`` (row 0 = lowest band, as the baselines' CNN takes it), or with ``time_major``
            a ``(frames, n_mels, C)`` input (DCNN's segments). An input wider than the model's (a time-crop model)
            is cut into segments every ``hop`` columns (:func:`segment_starts`), as its predictor does; each
            segment's map is placed on the whole input's time axis and overlaps are averaged
            (:func:`place_segments`).
        method: one of :data:`METHODS`; ``None``: :func:`choose_method`.
        target: class index; default the model's top class (of the segments' mean probabilities for a crop model).
        hop: segment hop in columns for a time-crop model (default half its width).
        size: ``(n_mels, frames)`` to resize the map to (default: the input's first two axes).
        flip: flip the rows so that row 0 is the lowest band; default ``True`` for a 3-channel image, else
            ``False`` (pass ``True`` for a 1-channel CNNRNN image, ``False`` for a 3-channel log-mel).
        time_major: the input's first axis is time: the map is transposed to ``(n_mels, frames)`` first.
        steps: Riemann steps of ``integrated-gradients``.

    Returns:
        ``(n_mels, frames) float32``, non-negative, summing to 1 (:func:`normalise`).

    Raises:
        ExplainError: an unknown method; ``grad-cam`` on a model without a usable convolutional map (the message
            names ``gradient``); an input whose shape the model does not take.
    """
    if method is not None and method not in METHODS:
        raise ExplainError(f"unknown saliency method {method!r} (methods: {', '.join(METHODS)})")
    method = method or choose_method(model)
    x = np.asarray(x, np.float32)
    want = tuple(model.input_shape[1:])
    width = want[1] if len(want) > 1 else None
    starts = [0] if width is None or x.ndim < 2 or x.shape[1] == width else segment_starts(x.shape[1], width, hop)
    segments = [x if width is None or x.shape[1] == width else x[:, s:s + width] for s in starts]
    if target is None:
        probs = [np.asarray(model(_batch(s, model), training=False))[0] for s in segments]
        target = int(np.argmax(np.mean(probs, axis=0)))
    maps = [attribution(model, seg, method, target=target, steps=steps) for seg in segments]
    m = maps[0] if len(maps) == 1 else place_segments(maps, starts, x.shape[1])
    if time_major:
        m = m.T
    if flip if flip is not None else (x.ndim == 3 and x.shape[-1] == 3):
        m = m[::-1]
    if size is not None:
        m = _resize(np.ascontiguousarray(m), *size)
    return normalise(m)
