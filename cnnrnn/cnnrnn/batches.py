"""The CNNRNN family's input pipeline and batch prediction: image batches read a batch at a time from arrays or
memory maps (random time crops, SpecAugment-free mixup, speed-perturbed copies as extra rows), and the fold models'
probabilities pooled over a clip's time segments. The distribution strategy is the shared one
(:func:`cnnrnn.training.get_strategy`, importable from here too)."""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np

from ..training import get_strategy  # noqa: F401  (also importable from here)

log = logging.getLogger("cnnrnn.cnnrnn.train")


class RowStack:
    """Several uint8 image arrays of one row shape read as one ``(sum N_i, H, W, 3)`` array, without copying them:
    the training pool of :func:`cross_validate` (the images, then their speed-perturbed copies), when the arrays are
    memory maps that must not be loaded whole. Rows are read with :func:`take_rows`."""

    def __init__(self, parts: Sequence[np.ndarray]):
        self.parts = list(parts)
        shapes = {tuple(part.shape[1:]) for part in self.parts}
        if len(shapes) != 1:
            raise ValueError(f"RowStack: the arrays' rows differ in shape: {sorted(shapes)}")
        self.starts = np.cumsum([0] + [len(part) for part in self.parts])
        self.shape = (int(self.starts[-1]),) + shapes.pop()
        self.dtype = self.parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        """The rows ``rows`` (an int, a slice or 1-D integer indices) as an in-memory array (:func:`take_rows`)."""
        if isinstance(rows, slice):
            return take_rows(self, np.arange(len(self))[rows])
        if np.ndim(rows) == 0:
            return take_rows(self, [int(rows)])[0]
        return take_rows(self, rows)


def take_rows(images, rows) -> np.ndarray:
    """``images[rows]`` as an in-memory array, for an array, a memory map or a :class:`RowStack`.

    The rows of a memory map (:func:`cnnrnn.cnnrnn.data.open_packed`) are copied out and the map's pages released
    again (:func:`cnnrnn.cnnrnn.data.release_pages`), so that reading a whole memory-mapped array batch by batch
    keeps no more of it in memory than one batch.

    Args:
        images: ``(N, H, W, C)`` array, ``np.memmap`` or :class:`RowStack`.
        rows: 1-D integer row indices.

    Returns:
        ``(len(rows), H, W, C)`` array of ``images``' dtype.
    """
    from .data import release_pages

    rows = np.asarray(rows, dtype=np.int64)
    if isinstance(images, RowStack):
        out = np.empty((len(rows),) + images.shape[1:], images.dtype)
        which = np.searchsorted(images.starts, rows, side="right") - 1
        for k, part in enumerate(images.parts):
            sel = np.flatnonzero(which == k)
            if len(sel):
                out[sel] = take_rows(part, rows[sel] - images.starts[k])
        return out
    out = np.asarray(images[rows])
    release_pages(images)
    return out


def image_dataset(images: np.ndarray, labels: np.ndarray | None, indices: Sequence[int] | None = None,
                  batch_size: int = 16, shuffle: bool = False, seed: int = 0, *, n_classes: int | None = None,
                  crop_width: int | None = None, mixup: float = 0.0, repeat: bool = False):
    """A ``tf.data`` pipeline over a uint8 image array, converted to float32 one batch at a time.

    The array stays uint8 in host memory, or on disk: each batch is gathered by index (:func:`take_rows`) and
    cast, so no float32 copy of the whole set (4× the size) is ever made, and a memory-mapped array
    (:func:`cnnrnn.cnnrnn.data.load_packed`) is read one batch at a time, never whole. The training recipes
    (:class:`~cnnrnn.cnnrnn.config.TrainConfig` ``crop_width`` and ``mixup``) are applied here, not in the
    model, so saved ``.h5`` models stay plain; their randomness comes from one stateless seed per batch,
    drawn from ``seed`` and new every epoch.

    Args:
        images: ``(N, H, W, 3) uint8``: an array, a memory map, or a :class:`RowStack`.
        labels: ``(N,)`` int codes, or ``None`` for prediction.
        indices: the rows to use (default all), in order unless ``shuffle``.
        batch_size: batch size.
        shuffle: reshuffle the rows every epoch (seeded).
        seed: seed of the shuffle, the crops and mixup.
        n_classes: give it for one-hot ``(batch, n_classes) float32`` labels (categorical crossentropy);
            without it labels are ``(batch,) int32`` codes.
        crop_width: a random crop of this many pixels along the time axis (axis 2, W) per sample; ``None``/0
            = whole images.
        mixup: mixup alpha (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization"): each batch is
            mixed with a shuffled copy of itself, ``lambda ~ Beta(alpha, alpha)`` once per batch, images and
            one-hot labels alike (needs ``n_classes``); 0 = off.
        repeat: repeat the passes without end, each reshuffled and re-randomised exactly as a new iterator's
            would be; for ``fit`` with ``steps_per_epoch`` (one pass) and ``validation_steps``, which then keep one
            iterator over all epochs. Measured on a 2-core CPU: a new iterator every epoch left the first batch
            waiting about 2.5 s (idle) in 2-3 epochs of 10; one iterator, in none of 20.

    Returns:
        A dataset of ``(batch, H, W or crop_width, 3) float32`` (with ``(batch,) int32`` or
        ``(batch, n_classes) float32`` labels).

    Raises:
        ValueError: ``crop_width`` wider than the images, or ``mixup`` without labels and ``n_classes``.
    """
    import tensorflow as tf

    if crop_width and crop_width > images.shape[2]:
        raise ValueError(f"crop_width {crop_width} is wider than the images ({images.shape[2]} px of time axis)")
    if mixup > 0 and (labels is None or not n_classes):
        raise ValueError("mixup needs labels and n_classes (it mixes one-hot labels)")
    idx = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    ds = tf.data.Dataset.from_tensor_slices(idx)
    if shuffle:
        ds = ds.shuffle(len(idx), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    random = bool(crop_width) or mixup > 0
    if random:  # one stateless seed per batch, new every epoch
        ds = tf.data.Dataset.zip(ds, tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2))
    if repeat:
        ds = ds.repeat()
    shape = (None,) + tuple(images.shape[1:])
    y_all = None if labels is None else tf.constant(np.asarray(labels, dtype=np.int32))  # gathered in the graph

    def gather(batch_idx, batch_seed=None):
        x = tf.ensure_shape(tf.numpy_function(lambda b: take_rows(images, b), [batch_idx],
                                              tf.as_dtype(images.dtype)), shape)
        if random:
            crop_seed, lambda_seed, perm_seed = tf.unstack(tf.random.split(batch_seed, 3))
        if crop_width:
            start = tf.random.stateless_uniform(tf.shape(x)[:1], crop_seed, 0, shape[2] - crop_width + 1, tf.int32)
            x = tf.gather(x, start[:, None] + tf.range(crop_width)[None, :], axis=2, batch_dims=1)
        x = tf.cast(x, tf.float32)
        if y_all is None:
            return x
        y = tf.gather(y_all, batch_idx)
        if n_classes:
            y = tf.one_hot(y, n_classes, dtype=tf.float32)
        if mixup > 0:
            g = tf.random.stateless_gamma([2], lambda_seed, alpha=mixup)  # Beta(a, a) = G1 / (G1 + G2)
            lam = tf.math.divide_no_nan(g[0], g[0] + g[1])
            perm = tf.argsort(tf.random.stateless_uniform(tf.shape(x)[:1], perm_seed))
            x = lam * x + (1.0 - lam) * tf.gather(x, perm)
            y = lam * y + (1.0 - lam) * tf.gather(y, perm)
        return x, y

    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def segment_starts(width: int, crop_width: int, hop: int | None = None) -> list[int]:
    """Left edges (pixels) of the ``crop_width``-pixel segments that cover an image ``width`` pixels wide:
    every ``hop`` pixels, the last one aligned to the end of the image.

    Args:
        width: the image's time axis in pixels. crop_width: segment width in pixels.
        hop: pixels between segment starts; ``None`` = half of ``crop_width`` (the default of
            ``TrainConfig.crop_hop``).

    Raises:
        ValueError: the image is narrower than ``crop_width``, or ``hop < 1``.
    """
    hop = max(1, crop_width // 2) if hop is None else int(hop)
    if width < crop_width:
        raise ValueError(f"images are {width} px wide (time axis) but the model takes segments of {crop_width} px "
                         "(train.crop_width); use images at least that wide")
    if hop < 1:
        raise ValueError(f"segment hop must be >= 1 pixel, got {hop}")
    starts = list(range(0, width - crop_width + 1, hop))
    return starts if starts[-1] == width - crop_width else starts + [width - crop_width]


#: At most this many model calls run eagerly (:func:`batch_predictor`); more go through one traced graph. Measured
#: on a loaded 2-core CPU: tracing costs about 1.9 s for a ResNet50 (0.2 s for the compact backbone) and an eager
#: call about 0.3 s more than a traced one (0.09 s compact), so up to 4 calls eagerly is the cheaper way.
EAGER_BATCHES = 4
#: The attribute under which :func:`batch_predictor` keeps a model's traced prediction graph.
_TRACED_ATTR = "_cnnrnn_traced_predict"


def batch_predictor(model, n_batches: int) -> Callable[[np.ndarray], np.ndarray]:
    """The function that predicts one batch with ``model``: ``f(x) -> (b, n_outputs) float32`` for a float32 batch
    ``x`` of the model's input shape.

    For at most :data:`EAGER_BATCHES` batches the model is called eagerly (no graph tracing: one 2 s clip is
    predicted in a fraction of the time a trace takes); for more, or when the model was traced before, one
    ``tf.function`` with a free batch axis, traced once per model and kept on it, so that later calls (every
    epoch's validation, every batch size) reuse it. Either way ``model(x, training=False)``: the same numbers as
    ``model.predict`` (no distribution strategy splits the batch).
    """
    traced = getattr(model, _TRACED_ATTR, None)
    if traced is None and n_batches <= EAGER_BATCHES:
        return lambda x: np.asarray(model(x, training=False), np.float32)
    if traced is None:
        import tensorflow as tf

        shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
        spec = tf.TensorSpec((None, *shape[1:]), tf.float32)
        traced = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
        object.__setattr__(model, _TRACED_ATTR, traced)  # not a tracked Keras attribute: never saved
    return lambda x: np.asarray(traced(x), np.float32)


def predict_proba(model, images: np.ndarray, batch_size: int = 16, hop: int | None = None, *,
                  indices: Sequence[int] | None = None) -> np.ndarray:
    """Class probabilities ``(N, n_classes) float32`` for a uint8 image array ``(N, H, W, 3)``.

    The model's input width says how: as wide as the images, each image is predicted whole (as always); a
    narrower model (trained on random time crops, ``TrainConfig.crop_width``) sees every image as the
    segments of :func:`segment_starts` (``hop`` pixels apart, the last aligned to the end), all predicted
    in batches, and the segments' probabilities are averaged per image (utterance-level pooling). The images are
    read ``batch_size`` at a time (:func:`take_rows`): a memory-mapped array is never loaded whole. A few batches
    run eagerly, more through one traced graph per model (:func:`batch_predictor`).

    Args:
        model: a Keras image classifier. images: an array, a memory map or a :class:`RowStack`.
        batch_size: images per batch (a crop model predicts all their segments at once).
        hop: pixels between segments (crop models); ``None`` = half the model's width.
        indices: the rows to predict, in this order (default: all).

    Raises:
        ValueError: the images are narrower than the model input, or ``hop < 1``.
    """
    n_classes = int(model.output_shape[-1])
    rows = np.arange(len(images)) if indices is None else np.asarray(indices, dtype=np.int64)
    if len(rows) == 0:
        return np.zeros((0, n_classes), np.float32)
    batch_size = max(1, int(batch_size))
    width = model.input_shape[2]
    starts = (None if width is None or images.shape[2] == width else
              segment_starts(images.shape[2], int(width), hop))
    run = batch_predictor(model, -(-len(rows) // batch_size))
    out = []
    for i in range(0, len(rows), batch_size):
        x = take_rows(images, rows[i:i + batch_size]).astype(np.float32)
        if starts is None:
            out.append(run(x))
            continue
        # the batch's segments, segment-major: (S * b, H, width, C), their probabilities averaged per image
        segments = np.concatenate([x[:, :, s:s + int(width)] for s in starts])
        out.append(run(segments).reshape(len(starts), len(x), n_classes).mean(axis=0))
    return np.concatenate(out)
