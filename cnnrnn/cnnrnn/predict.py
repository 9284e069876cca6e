"""Stage 5 of the CNNRNN job and CNNRNN prediction: ``.h5`` checkpoints on pickles, PNGs or audio.

Checkpoints saved by this package and by the original CNNRNN code (Keras 2 / ``tf.keras`` 2.x ``.h5``)
load through :func:`cnnrnn.artifacts.load_model`. The input size is read from the model; audio is rendered
to that size with the run's spectrogram config, except for a model trained on random time crops
(``train.crop_width``): its images have the run's ``image_size`` and are cut into segments whose probabilities
are averaged (:func:`cnnrnn.cnnrnn.train.predict_proba`). Several checkpoints (the CV folds) average their class
probabilities. Reports are written by :func:`cnnrnn.reports.write_report`.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import artifacts as A
from ..artifacts import CheckpointError, is_temporary, load_checkpoints, load_image_table, load_labels
from ..audio import AUDIO_EXTENSIONS
from ..features import SpectrogramConfig
from .config import load_config

log = logging.getLogger("cnnrnn.cnnrnn.predict")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")


def find_run_dir(model_path: str | Path) -> Path | None:
    """The nearest folder at or above the checkpoint that holds ``labels.json``, or None."""
    for folder in Path(model_path).resolve().parents:
        if (folder / A.LABELS_FILE).is_file():
            return folder
    return None


@dataclass
class Inputs:
    """Images to predict on: ``ids``, ``(N, H, W, 3) uint8`` BGR ``images``, optional true codes."""

    ids: list[str]
    sources: list[str]
    images: np.ndarray
    y_true: np.ndarray | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    normalization: list[str] | None = None


def collect_inputs(source: str | Path, size: tuple[int, int], spec_cfg: SpectrogramConfig, resize: bool = False,
                   progress: bool = True, speaker: str | None = None, stats=None) -> Inputs:
    """Gather images from a ``*_final.pickle``, a PNG/audio file, or a folder of them.

    Audio is rendered with ``spec_cfg`` at the model's ``size``; unreadable or
    silent audio is skipped and counted. With ``spec_cfg.normalization`` ``speaker``, every audio file is taken to
    be ``speaker``'s: that speaker's statistics come from all the audio given (no labels,
    :func:`cnnrnn.normalize.with_speakers`), or from the run's ``stats`` when it knows the speaker and the
    files are too few; without a speaker, each file falls back to ``utterance`` normalisation.
    ``Inputs.normalization`` says what each file got.

    Args:
        source: ``test_final.pickle``, one ``.wav``/``.png``, or a folder (searched recursively).
        size: ``(H, W)`` of the images: the model's input, or the run's ``image_size`` for a model trained on
            time crops.
        spec_cfg: spectrogram parameters for audio input.
        resize: resize images of another size instead of raising.
        speaker: the speaker of every audio input (``--speaker``), or ``None``.
        stats: the run's :class:`cnnrnn.normalize.NormStats` (``global`` / ``speaker`` modes).

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: no usable input, or an image size differs from ``size`` and ``resize`` is off.
    """
    import cv2

    from ..audio import list_audio, load_each
    from ..features import audio_log_mel, image_of_log_mel, read_png
    from ..normalize import norm_source, with_speakers

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

    files = [source] if source.is_file() else list_audio(source, AUDIO_EXTENSIONS + IMAGE_EXTENSIONS)
    cfg = replace(spec_cfg, image_size=[h, w])

    def load(p: Path):
        suffix = p.suffix.lower()
        if suffix in AUDIO_EXTENSIONS:
            return audio_log_mel(p, cfg)
        if suffix not in IMAGE_EXTENSIONS:
            raise ValueError(f"{p}: unsupported input type {suffix!r} (use .wav, .png or a *_final.pickle)")
        image = read_png(p)
        if image.shape[:2] != (h, w):
            if not resize:
                raise ValueError(f"{p}: image is {image.shape[1]}x{image.shape[0]} (WxH) but the model "
                                 f"takes {w}x{h}; pass --resize to resize it")
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return image

    kept, loaded, skipped = load_each(files, load, desc="inputs", progress=progress)
    if not loaded:
        raise ValueError(f"no usable input under {source} (skipped: {skipped or 'no .wav/.png files'})")
    mels = [x for x in loaded if x.ndim == 2]
    mode = cfg.normalization
    if mode == "speaker" and speaker and mels and stats is not None:
        stats = with_speakers(stats, [m.T for m in mels], [speaker] * len(mels))
    images, normalization = [], []
    for x in loaded:
        if x.ndim == 3:  # an image: rendered as it was
            images.append(x)
            normalization.append("as_image")
            continue
        used = mode if mode != "speaker" or (speaker and stats is not None) else "utterance"
        if used == "global" and stats is None:
            used = "utterance"
        images.append(image_of_log_mel(x, cfg, speaker, stats, used))
        normalization.append(norm_source(speaker, stats, used) if used == "speaker" else used)
    if mode == "speaker" and "utterance" in normalization:
        log.warning("speaker normalisation: %d file(s) without a speaker (give --speaker NAME) use utterance "
                    "normalisation instead", normalization.count("utterance"))
    ids, sources = [files[i].stem for i in kept], [str(files[i]) for i in kept]
    return Inputs(ids, sources, np.stack(images), None, skipped, normalization)



def predict(
    model_paths: Sequence[str | Path],
    source: str | Path,
    out_dir: str | Path | None = None,
    labels: Sequence[str] | str | Path | None = None,
    config: str | Path | None = None,
    resize: bool = False,
    batch_size: int = 16,
    progress: bool = True,
    speaker: str | None = None,
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
        config: CNNRNN config for rendering audio and cutting segments (``train.crop_width``, ``crop_hop``);
            default: the run's ``config.json``.
        resize: resize images whose size differs from the model input.
        batch_size: prediction batch size.
        speaker: the speaker of every audio input, for a run with ``spectrogram.normalization: speaker`` (see
            :func:`collect_inputs`).

    Returns:
        ``{'predictions': DataFrame, 'metrics': dict | None, 'files': {...}, 'skipped': {...}}``.

    Raises:
        CheckpointError: a checkpoint does not load, the checkpoints disagree on
            input size or class count, or the class count differs from the labels.
    """
    from ..reports import write_report
    from .train import predict_proba

    if not model_paths:
        raise ValueError("no checkpoint given")
    run_dir = find_run_dir(model_paths[0])
    if labels is None and run_dir is not None:
        labels = run_dir / A.LABELS_FILE
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    if config is None and run_dir is not None and (run_dir / A.CONFIG_FILE).is_file():
        config = run_dir / A.CONFIG_FILE
    run_cfg = load_config(config)
    spec_cfg = run_cfg.spectrogram
    models, shape, labels = load_checkpoints(model_paths, labels)
    if len(shape) != 3 or None in shape:
        raise CheckpointError(f"model input shape {shape} is not a fixed (H, W, C) image")
    size = tuple(shape[:2])
    if run_cfg.train.crop_width and shape[1] == run_cfg.train.crop_width:  # whole images, cut into segments
        size = (shape[0], spec_cfg.image_size[1])
    stats = None
    norm_file = None if run_dir is None else run_dir / A.SPECTROGRAM_DIR / "normalization.json"
    if spec_cfg.normalization in ("speaker", "global") and norm_file is not None and norm_file.is_file():
        from ..normalize import NormStats

        stats = NormStats.from_dict(A.load_json(norm_file))
    inputs = collect_inputs(source, size, spec_cfg, resize=resize, progress=progress, speaker=speaker,
                            stats=stats)
    tf_log = logging.getLogger("tensorflow")  # one predict trace per model is expected, not a retracing bug
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        proba = np.mean([predict_proba(m, inputs.images, batch_size, run_cfg.train.crop_hop) for m in models],
                        axis=0)
    finally:
        tf_log.setLevel(level)
    out_dir = Path(out_dir) if out_dir else (run_dir or Path(model_paths[0]).parent) / "predictions"
    columns = {"normalization": inputs.normalization} if inputs.normalization else None
    result = write_report(out_dir, proba, labels, inputs.ids, inputs.y_true, family="cnnrnn", sources=inputs.sources,
                          columns=columns,
                          extra={"models": [str(p) for p in model_paths], "source": str(source)},
                          title="UA {ua:.1%}  WA {wa:.1%}  " + f"({len(models)} model(s))")
    return {**result, "skipped": inputs.skipped}


def checkpoints_in(paths: Sequence[str | Path]) -> list[Path]:
    """Checkpoint files of ``paths``: a file as is, a folder's ``*.h5`` (sorted; temporary files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.glob("*.h5") if not is_temporary(f)) if p.is_dir() else [p]
    return out


def predict_run(models: Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest=None, progress: bool = True, **options: Any) -> dict:
    """``cnnrnn predict`` for a CNNRNN run (the family contract of :mod:`cnnrnn.predict`).

    Args:
        models: checkpoints, a ``models/`` folder or the run folder (its ``run.json`` lists the checkpoints).
        source: a ``*_final.pickle``, a ``.wav``/``.png`` file, or a folder of them.
        out_dir: output folder (default ``<run>/predictions``).
        manifest: the run's :class:`cnnrnn.runs.RunManifest`, or ``None`` for a run from before manifests.
        options: ``labels``, ``config``, ``resize``, ``batch_size`` (``None`` = the run's).

    Raises:
        ValueError: no checkpoint found.
    """
    paths = [Path(m) for m in models]
    if manifest is not None and any(p.is_dir() and (p / "run.json").is_file() for p in paths):
        paths = manifest.checkpoint_paths()
    files = checkpoints_in(paths)
    if not files:
        raise ValueError(f"no .h5 checkpoint in {', '.join(map(str, models))}")
    labels = options.get("labels") or (manifest.labels if manifest is not None else None)
    return predict(files, source, out_dir, labels=labels, config=options.get("config"),
                   resize=bool(options.get("resize")), batch_size=options.get("batch_size") or 16, progress=progress,
                   speaker=options.get("speaker"))


def test(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 5: predict ``test_final.pickle`` with the average of the fold checkpoints.

    Writes ``test/predictions.csv``, ``test/metrics.json`` and ``test/confusion_matrix.png``.

    Raises:
        FileNotFoundError: a fold checkpoint is missing.
    """
    from .train import checkpoint_path

    cfg, out = load_config(config), Path(out)
    models = [checkpoint_path(out, cfg.train, k) for k in range(1, cfg.train.folds + 1)]
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoints missing (run the train stage first): {missing}")
    return predict(models, out / A.FINAL_FILES["test"], out / "test", labels=out / A.LABELS_FILE,
                   config=out / A.CONFIG_FILE, batch_size=cfg.train.batch_size, progress=progress)
