"""Load ``.h5`` checkpoints and predict on pickles, PNGs or audio.

Checkpoints saved by this package and by the original CNNRNN code (Keras 2 /
``tf.keras`` 2.x ``.h5``) both load through :func:`load_model`. The input size
is read from the model; audio is rendered to that size with the run's
spectrogram config (or, for an ANN/CNN baseline run, turned into the run's
waveform or spectrogram features by :mod:`cnnrnn.baselines`). Several
checkpoints (the CV folds) average their class probabilities.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np

from .artifacts import CONFIG_FILE, LABELS_FILE, atomic_write_bytes, load_image_table, load_json, save_json
from .audio import AUDIO_EXTENSIONS, AudioError
from .config import SpectrogramConfig, load_config

log = logging.getLogger("cnnrnn.inference")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or incompatible with the labels or inputs."""


def load_model(path: str | Path):
    """Load an ``.h5`` (or ``.keras``) model for prediction, without its optimizer.

    Works for files written by Keras 3 (this package) and by Keras 2 /
    ``tf.keras`` 2.x (the original CNNRNN code). Loading uses ``compile=False``
    (Keras 3 cannot restore a Keras 2 optimizer; prediction does not need one).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a loadable Keras model.
    """
    import keras

    from . import models  # noqa: F401  (registers any custom layers)

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load as a Keras model ({type(exc).__name__}: {exc})") from exc


def find_run_dir(model_path: str | Path) -> Path | None:
    """The nearest folder at or above the checkpoint that holds ``labels.json``, or None."""
    for folder in Path(model_path).resolve().parents:
        if (folder / LABELS_FILE).is_file():
            return folder
    return None


def load_labels(path: str | Path) -> list[str]:
    """Label names from a ``labels.json`` (``{"labels": [...]}`` or a plain list)."""
    data = load_json(path)
    labels = data["labels"] if isinstance(data, dict) else data
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: expected a list of label names")
    return labels


def input_size(model) -> tuple[int, int, int]:
    """``(H, W, C)`` image size the model takes, read from ``model.input_shape``."""
    shape = model.input_shape
    shape = shape[0] if isinstance(shape, list) else shape
    if len(shape) != 4 or any(v is None for v in shape[1:]):
        raise CheckpointError(f"model input shape {shape} is not a fixed (H, W, C) image")
    return tuple(int(v) for v in shape[1:])


@dataclass
class Inputs:
    """Images to predict on: ``ids``, ``(N, H, W, 3) uint8`` BGR ``images``, optional true codes.

    For an ANN/CNN baseline run ``images`` holds the model's float32 features instead
    (``(N, n_samples)`` waveforms or ``(N, n_mels, frames, 1)`` spectrograms).
    """

    ids: list[str]
    sources: list[str]
    images: np.ndarray
    y_true: np.ndarray | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)


def collect_inputs(source: str | Path, size: tuple[int, int], spec_cfg: SpectrogramConfig, resize: bool = False,
                   progress: bool = True) -> Inputs:
    """Gather images from a ``*_final.pickle``, a PNG/audio file, or a folder of them.

    Audio is rendered with ``spec_cfg`` at the model's ``size``; unreadable or
    silent audio is skipped and counted.

    Args:
        source: ``test_final.pickle``, one ``.wav``/``.png``, or a folder (searched recursively).
        size: ``(H, W)`` the model expects.
        spec_cfg: spectrogram parameters for audio input.
        resize: resize images of another size instead of raising.

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: no usable input, or an image size differs from ``size`` and ``resize`` is off.
    """
    import cv2
    from tqdm import tqdm

    from .features import audio_to_image, read_png

    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"input {source} not found")
    h, w = size
    if source.is_file() and source.suffix.lower() in (".pickle", ".pkl"):
        table = load_image_table(source)
        images = table["path"]
        if images.shape[1:3] != (h, w):
            if not resize:
                raise ValueError(f"{source}: images are {images.shape[2]}x{images.shape[1]} (WxH) but the model "
                                 f"takes {w}x{h}; re-run the spectrogram stage with image_size [{h}, {w}] "
                                 "or pass --resize")
            images = np.stack([cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR) for im in images])
        y = np.asarray(table["emotion"], dtype=int) if len(table["emotion"]) else None
        return Inputs(list(table["id"]), [str(source)] * len(images), images, y)

    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS + IMAGE_EXTENSIONS)
    cfg = replace(spec_cfg, image_size=[h, w])
    ids, sources, images, skipped = [], [], [], {}
    for p in tqdm(files, desc="inputs", unit="file", disable=not progress or len(files) < 2):
        suffix = p.suffix.lower()
        try:
            if suffix in AUDIO_EXTENSIONS:
                image = audio_to_image(p, cfg)
            elif suffix in IMAGE_EXTENSIONS:
                image = read_png(p)
                if image.shape[:2] != (h, w):
                    if not resize:
                        raise ValueError(f"{p}: image is {image.shape[1]}x{image.shape[0]} (WxH) but the model "
                                         f"takes {w}x{h}; pass --resize to resize it")
                    image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
            else:
                raise ValueError(f"{p}: unsupported input type {suffix!r} (use .wav, .png or a *_final.pickle)")
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(p))
            log.warning("skipped %s", exc)
            continue
        ids.append(p.stem)
        sources.append(str(p))
        images.append(image)
    if not images:
        raise ValueError(f"no usable input under {source} (skipped: {skipped or 'no .wav/.png files'})")
    return Inputs(ids, sources, np.stack(images), None, skipped)


def predict(
    model_paths: Sequence[str | Path],
    source: str | Path,
    out_dir: str | Path | None = None,
    labels: Sequence[str] | str | Path | None = None,
    config: str | Path | None = None,
    resize: bool = False,
    batch_size: int = 16,
    progress: bool = True,
) -> dict:
    """Predict emotions with one checkpoint or the average of several.

    Args:
        model_paths: ``.h5`` checkpoints (several: class probabilities are averaged).
        source: see :func:`collect_inputs`.
        out_dir: where ``predictions.csv`` (and, when the true labels are known,
            ``metrics.json`` and ``confusion_matrix.png``) go; default: beside
            the first checkpoint's run, in ``predictions/``.
        labels: label names, or a ``labels.json``; default: the run's ``labels.json``
            found above the checkpoint.
        config: pipeline config for rendering audio; default: the run's ``config.json``.
            A baseline run (``baseline_config.json`` beside ``labels.json``, see
            :mod:`cnnrnn.baselines`) is fed its own features instead: the raw waveform (ANN)
            or the scaled spectrogram (CNN) of each audio file.
        resize: resize images whose size differs from the model input.
        batch_size: prediction batch size.

    Returns:
        ``{'predictions': DataFrame, 'metrics': dict | None, 'files': {...}}``.

    Raises:
        CheckpointError: a checkpoint does not load, the checkpoints disagree on
            input size or class count, or the class count differs from the labels.
    """
    import pandas as pd

    from .training import predict_proba

    if not model_paths:
        raise ValueError("no checkpoint given")
    run_dir = find_run_dir(model_paths[0])
    if labels is None and run_dir is not None:
        labels = run_dir / LABELS_FILE
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    from .baselines import find_baseline_config

    baseline_cfg = find_baseline_config(run_dir)  # ANN/CNN baseline runs take waveform/spectrogram features
    if config is None and run_dir is not None and (run_dir / CONFIG_FILE).is_file():
        config = run_dir / CONFIG_FILE
    spec_cfg = load_config(config).spectrogram if baseline_cfg is None else None
    models = [load_model(p) for p in model_paths]
    sizes = {input_size(m) if baseline_cfg is None else tuple(m.input_shape[1:]) for m in models}
    classes = {int(m.output_shape[-1]) for m in models}
    if len(sizes) != 1 or len(classes) != 1:
        raise CheckpointError(f"checkpoints disagree: input sizes {sorted(sizes)}, class counts {sorted(classes)}")
    shape, n_classes = sizes.pop(), classes.pop()
    if labels is None:
        log.warning("no labels.json found; naming classes class_0..class_%d", n_classes - 1)
        labels = [f"class_{i}" for i in range(n_classes)]
    labels = list(labels)
    if len(labels) != n_classes:
        raise CheckpointError(f"{model_paths[0]} predicts {n_classes} classes but the labels list has "
                              f"{len(labels)} ({labels}); use the labels.json of the run that trained it")

    if baseline_cfg is None:
        inputs = collect_inputs(source, shape[:2], spec_cfg, resize=resize, progress=progress)
    else:
        from . import baselines

        inputs = baselines.collect_inputs(source, baseline_cfg, shape, progress=progress)
        predict_proba = baselines.predict_proba  # noqa: F811  (float32 features, not uint8 images)
    tf_log = logging.getLogger("tensorflow")  # one predict trace per model is expected, not a retracing bug
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        proba = np.mean([predict_proba(m, inputs.images, batch_size) for m in models], axis=0)
    finally:
        tf_log.setLevel(level)
    pred = proba.argmax(axis=1)
    df = pd.DataFrame({"id": inputs.ids, "source": inputs.sources, "predicted": [labels[i] for i in pred],
                       "predicted_index": pred, "confidence": proba.max(axis=1)})
    if inputs.y_true is not None:
        df.insert(2, "true", [labels[i] if 0 <= i < n_classes else str(i) for i in inputs.y_true])
    for i, name in enumerate(labels):
        df[f"p_{name}"] = proba[:, i]

    out_dir = Path(out_dir) if out_dir else (run_dir or Path(model_paths[0]).parent) / "predictions"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"predictions": str(atomic_write_bytes(out_dir / "predictions.csv",
                                                   df.to_csv(index=False).encode("utf-8")))}
    metrics = None
    if inputs.y_true is not None:
        from .evaluation import classification_metrics
        from .plots import plot_confusion_matrix

        metrics = classification_metrics(inputs.y_true, pred, n_classes)
        metrics.update({"labels": labels, "models": [str(p) for p in model_paths], "source": str(source)})
        files["metrics"] = str(save_json(metrics, out_dir / "metrics.json"))
        files["confusion_matrix"] = str(plot_confusion_matrix(
            metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png",
            title=f"UA {metrics['ua']:.1%}  WA {metrics['wa']:.1%}  ({len(models)} model(s))"))
    return {"predictions": df, "metrics": metrics, "files": files, "skipped": inputs.skipped}
