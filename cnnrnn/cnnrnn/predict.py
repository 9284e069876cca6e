"""Stage 5 of the CNNRNN job and CNNRNN prediction: ``.h5`` checkpoints on pickles, PNGs or audio.

Checkpoints saved by this package and by the original CNNRNN code (Keras 2 / ``tf.keras`` 2.x ``.h5``) load through
:func:`cnnrnn.artifacts.load_model` (Keras 2 files that Keras 3 cannot read through ``tf_keras``,
:mod:`cnnrnn.keras2`); a Keras 2 checkpoint without a run config gets audio drawn the original's way (``render:
specshow``) and 0–255 BGR pixels (or grayscale for a 1-channel input; ``pixel_range``). The input size is read from
the model; audio is rendered to that size with the run's spectrogram config, except for a model trained on random
time crops (``train.crop_width``): its images have the run's ``image_size`` and are cut into segments whose
probabilities are averaged (:func:`cnnrnn.cnnrnn.train.predict_proba`). Several checkpoints (the CV folds) average
their class probabilities. Reports are written by :func:`cnnrnn.reports.write_report`.
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
from ..outputs import claim_predictions
from ..runs import find_run
from .config import CnnrnnConfig, load_config

log = logging.getLogger("cnnrnn.cnnrnn.predict")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

# What the prediction facade (:func:`cnnrnn.predict.predict`) reads of this family, by the registry
# (:func:`cnnrnn.families.module`):
#: The options of ``cnnrnn predict`` that :func:`predict_run` takes; the facade passes only these and refuses any
#: other that is given (not ``None`` or ``False``) with :class:`cnnrnn.predict.OptionError`.
PREDICT_OPTIONS = frozenset({"labels", "config", "resize", "batch_size", "speaker", "images", "render", "pixel_range",
                             "trust_code"})
#: Whether an input's speaker may be the name of its folder (``speaker`` =
#: :data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`, ``--speaker-from folder``).
FOLDER_SPEAKERS = True
#: Whether the facade's speech check (:mod:`cnnrnn.speech`) applies: the family predicts audio.
SPEECH_CHECK = True
#: Whether the facade may cut long recordings into windows (:mod:`cnnrnn.timeline`) for this family.
WINDOWS = True


def find_run_dir(model_path: str | Path) -> Path | None:
    """The nearest folder at or above the checkpoint that holds ``labels.json``, or None
    (:func:`cnnrnn.runs.find_run`)."""
    return find_run(model_path, (A.LABELS_FILE,))


@dataclass
class Inputs:
    """Images to predict on: ``ids``, ``(N, H, W, 3) uint8`` BGR ``images``, optional true codes (a pickle's), or
    optional true label names (a CSV's ``label`` column, ``None`` where a row has none)."""

    ids: list[str]
    sources: list[str]
    images: np.ndarray
    y_true: np.ndarray | None = None
    skipped: dict[str, list[str]] = field(default_factory=dict)
    normalization: list[str] | None = None
    notes: list[str] = field(default_factory=list)
    true_names: list[str | None] | None = None


def unsupported_message(path: Path) -> str:
    """What to say of an input file CNNRNN prediction cannot read: the types it takes (the audio extensions that
    :func:`cnnrnn.audio.load_audio` reads, :data:`cnnrnn.audio.AUDIO_EXTENSIONS`; images; pickles; a CSV) and how
    to convert other audio."""
    return (f"{path}: unsupported input type {path.suffix.lower() or '(no extension)'!r}: CNNRNN predicts audio "
            f"({', '.join(AUDIO_EXTENSIONS)}), spectrogram images ({', '.join(IMAGE_EXTENSIONS)}), a *_final.pickle "
            f"or a CSV of path[,speaker,label]; convert other audio first, e.g. "
            f"ffmpeg -i {path.name} {path.stem or 'audio'}.wav")


def folder_contents(folder: Path) -> dict[str, Any]:
    """What a folder holds besides inputs, for the error of a folder with nothing to predict: ``{"unsupported":
    {suffix: count}, "dangling_links": [(link, target)], "temporary": count}`` (recursive; a link whose target is
    missing is a dangling link; :func:`cnnrnn.artifacts.is_temporary` files are interrupted writes)."""
    import os

    out: dict[str, Any] = {"unsupported": {}, "dangling_links": [], "temporary": 0}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() and not p.exists():
            out["dangling_links"].append((str(p), os.readlink(p)))
        elif p.is_file() and is_temporary(p):
            out["temporary"] += 1
        elif p.is_file():
            suffix = p.suffix.lower() or "(no extension)"
            out["unsupported"][suffix] = out["unsupported"].get(suffix, 0) + 1
    return out


def nothing_usable(folder: Path) -> str:
    """The one-line error for a folder without a file CNNRNN prediction can use: what was found and skipped, per
    reason (unsupported type, dangling link, temporary file), and what it takes."""
    found = folder_contents(folder)
    parts = []
    if found["unsupported"]:
        n = sum(found["unsupported"].values())
        kinds = ", ".join(f"{suffix} {count}" for suffix, count in sorted(found["unsupported"].items()))
        parts.append(f"{n} file(s) of an unsupported type ({kinds})")
    if found["dangling_links"]:
        links = ", ".join(f"{Path(link).name} -> {target}" for link, target in found["dangling_links"][:3])
        more = ", ..." if len(found["dangling_links"]) > 3 else ""
        parts.append(f"{len(found['dangling_links'])} dangling link(s) whose target is missing ({links}{more})")
    if found["temporary"]:
        parts.append(f"{found['temporary']} temporary file(s) of an interrupted write")
    what = ("skipped " + "; ".join(parts)) if parts else "the folder holds no file"
    return (f"nothing to predict under {folder}: {what}. CNNRNN predicts audio ({', '.join(AUDIO_EXTENSIONS)}), "
            f"spectrogram images ({', '.join(IMAGE_EXTENSIONS)}), a *_final.pickle or a CSV of path[,speaker,label];"
            " convert other audio first, e.g. ffmpeg -i in.m4a out.wav")


def input_files(folder: Path, images: bool = False) -> tuple[list[Path], list[str]]:
    """The files of ``folder`` (recursive) to predict on, and a note on what was taken.

    A folder holding both audio and images (a run folder with its ``spectrograms/*.png``) would predict every
    utterance twice: its audio is taken, and its images left out with a note, unless ``images`` asks for the
    images (then its audio is left out). A folder of one kind gives that kind.

    Raises:
        ValueError: ``images`` and no image under ``folder``.
    """
    from ..audio import list_audio

    audio, pictures = list_audio(folder, AUDIO_EXTENSIONS), list_audio(folder, IMAGE_EXTENSIONS)
    kinds = "/".join(IMAGE_EXTENSIONS)
    if images:
        if not pictures:
            raise ValueError(f"--images: no image ({kinds}) under {folder}")
        note = f"took the {len(pictures)} image(s) under {folder}" + (
            f" and left out its {len(audio)} audio file(s) (--images)" if audio else "")
        return pictures, [note] if audio else []
    if audio and pictures:
        return audio, [f"took the {len(audio)} audio file(s) under {folder} and left out its {len(pictures)} "
                       f"image(s) ({kinds}), which would predict the same utterances again; pass --images to "
                       "predict the images instead"]
    return audio or pictures, []


def collect_inputs(source: str | Path, size: tuple[int, int], spec_cfg: SpectrogramConfig, resize: bool = False,
                   progress: bool = True, speaker: str | None = None, stats=None, images: bool = False) -> Inputs:
    """Gather images from a ``*_final.pickle``, a PNG/audio file, or a folder of them.

    Audio is rendered with ``spec_cfg`` at the model's ``size``; unreadable or
    silent audio is skipped and counted, and so are unreadable images (``unreadable_image``) and images of
    another size than ``size`` when ``resize`` is off (``image_size``). A folder of audio and images gives its
    audio only, unless ``images`` (:func:`input_files`; ``Inputs.notes`` says what was taken).
    With ``spec_cfg.normalization`` ``speaker``, every audio file is taken to
    be ``speaker``'s: that speaker's statistics come from all the audio given (no labels,
    :func:`cnnrnn.normalize.with_speakers`), or from the run's ``stats`` when it knows the speaker and the
    files are too few; ``speaker`` ``"folder"`` (:data:`cnnrnn.normalize.SPEAKER_FROM_FOLDER`) takes each file's
    folder name as its speaker; without a speaker, a file falls back to the training data's global statistics
    (:func:`cnnrnn.normalize.unknown_speaker_mode`).
    ``Inputs.normalization`` says what each file got.

    A CSV (:func:`cnnrnn.corpora.base.read_input_csv`: column ``path``, relative to the CSV's folder, and
    optional ``speaker`` and ``label``) gives audio files with their speakers (unless ``speaker`` is given) and
    true labels (``Inputs.true_names``, scored by :func:`predict`).

    Args:
        source: ``test_final.pickle``, one ``.wav``/``.png``, a CSV, a folder (searched recursively), or a list of
            :class:`cnnrnn.audio.Clip` (waveforms in memory: the windows of a long recording) and audio files.
        size: ``(H, W)`` of the images: the model's input, or the run's ``image_size`` for a model trained on
            time crops.
        spec_cfg: spectrogram parameters for audio input.
        resize: resize images of another size instead of skipping them (a pickle's images: instead of raising).
        speaker: the speaker of every audio input (``--speaker``), or ``None``.
        stats: the run's :class:`cnnrnn.normalize.NormStats` (``global`` / ``speaker`` modes).
        images: a folder of audio and images gives its images, not its audio.

    Raises:
        FileNotFoundError: the source does not exist.
        ValueError: no usable input (a folder with nothing to predict: :func:`nothing_usable`); a file of a type
            it does not take (:func:`unsupported_message`); a pickle's image size differs from ``size`` and
            ``resize`` is off; ``images`` with an audio file or a folder without images.
        cnnrnn.artifacts.PickleFileError: an unreadable or refused pickle.
    """
    import cv2

    from ..audio import AudioError, Clip, input_id, input_source, load_each
    from ..features import audio_log_mel, image_of_log_mel, read_png
    from ..normalize import SPEAKER_FROM_FOLDER, norm_source, unknown_speaker_mode, with_speakers

    clips = list(source) if isinstance(source, (list, tuple)) else None
    if clips is not None:
        clips = [Path(c) if isinstance(c, (str, Path)) else c for c in clips]
        if not all(isinstance(c, Clip) or (isinstance(c, Path) and c.suffix.lower() in AUDIO_EXTENSIONS)
                   for c in clips):
            raise ValueError("a list input must hold cnnrnn.audio.Clip waveforms or audio files (give images as a "
                             "file or folder)")
    source = Path(source) if clips is None else None
    if clips is None and not source.exists():
        raise FileNotFoundError(f"input {source} not found")
    h, w = size
    if clips is None and source.is_file() and source.suffix.lower() in (".pickle", ".pkl"):
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

    listed: dict[str, list] = {}  # a CSV's speakers and labels, per file
    skipped_before: dict[str, list[str]] = {}
    if clips is not None:
        files, notes = clips, []
    elif source.is_file() and source.suffix.lower() == ".csv" and not images:
        from ..corpora.base import read_input_csv

        table = read_input_csv(source)
        files, notes, skipped_before = list(table.paths), [], dict(table.skipped)
        listed = {"speakers": table.speakers, "labels": table.labels}
        for f in files:
            if f.suffix.lower() not in AUDIO_EXTENSIONS:
                raise ValueError(unsupported_message(f) + f" (listed in {source})")
    elif source.is_file():
        if images and source.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(f"--images: {source} is not an image ({'/'.join(IMAGE_EXTENSIONS)})")
        if source.suffix.lower() not in AUDIO_EXTENSIONS + IMAGE_EXTENSIONS:
            raise ValueError(unsupported_message(source))
        files, notes = [source], []
    else:
        files, notes = input_files(source, images)
        if not files:
            raise ValueError(nothing_usable(source))
    for note in notes:
        log.info("%s", note)
    cfg = replace(spec_cfg, image_size=[h, w])

    def load(p: Path):
        if isinstance(p, Clip) or p.suffix.lower() in AUDIO_EXTENSIONS:
            return audio_log_mel(p, cfg)
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            raise ValueError(unsupported_message(p))
        try:
            image = read_png(p)
        except ValueError as exc:  # not an image, truncated, empty: a counted skip, as unusable audio is
            raise AudioError(str(exc), "unreadable_image") from exc
        if image.shape[:2] != (h, w):
            if not resize:
                raise AudioError(f"{p}: image is {image.shape[1]}x{image.shape[0]} (WxH) but the model takes "
                                 f"{w}x{h}; pass --resize to resize it", "image_size")
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
        return image

    kept, loaded, skipped = load_each(files, load, desc="inputs", progress=progress)
    for reason, items in skipped_before.items():
        skipped.setdefault(reason, []).extend(items)
    if not loaded:
        raise ValueError(f"no usable input under {source or 'the clips'} "
                         f"(skipped: {skipped or 'no .wav/.png files'})")
    # --speaker-from folder: each file's speaker is its folder's name (windows of a long file: the file's folder)
    def speaker_of(i: int) -> str | None:
        if speaker == SPEAKER_FROM_FOLDER:
            return Path(getattr(files[i], "source", files[i])).parent.name or None
        return speaker or (listed["speakers"][i] if listed else None)  # --speaker, else a CSV's column

    speakers = [speaker_of(i) for i in kept]
    mode = cfg.normalization
    audio = [j for j, x in enumerate(loaded) if x.ndim == 2]
    if mode == "speaker" and stats is not None and any(speakers[j] for j in audio):
        with_spk = [j for j in audio if speakers[j]]
        stats = with_speakers(stats, [loaded[j].T for j in with_spk], [speakers[j] for j in with_spk])
    images, normalization = [], []
    for x, spk in zip(loaded, speakers):
        if x.ndim == 3:  # an image: rendered as it was
            images.append(x)
            normalization.append("as_image")
            continue
        used = mode if mode != "speaker" or (spk and stats is not None) else unknown_speaker_mode(stats)
        if used == "global" and stats is None:
            used = "utterance"
        images.append(image_of_log_mel(x, cfg, spk, stats, used))
        normalization.append(norm_source(spk, stats, used) if used == "speaker" else used)
    unknown = sum(1 for j in audio if not speakers[j])
    if mode == "speaker" and unknown:
        log.warning("speaker normalisation: %d file(s) without a speaker (give --speaker NAME, or --speaker-from "
                    "folder for one speaker per folder) use the training data's %s statistics instead", unknown,
                    "global" if stats is not None else "utterance")
    ids, sources = [input_id(files[i]) for i in kept], [input_source(files[i]) for i in kept]
    true_names = [listed["labels"][i] for i in kept] if listed else None
    return Inputs(ids, sources, np.stack(images), None, skipped, normalization, notes, true_names)


def scored_inputs(inputs: Inputs, labels: Sequence[str]) -> Inputs:
    """``inputs`` with true codes from their true label names (a CSV's ``label`` column), matched to the model's
    ``labels`` by meaning (:func:`cnnrnn.corpora.match_labels`: ``angry`` = ``anger``); a file without a label, or
    with one the model lacks, is left out and counted (reason ``unknown_label``), as the functionals family does.

    Raises:
        ValueError: no file has one of the model's labels.
    """
    from ..corpora import match_labels

    names = inputs.true_names or []
    match = match_labels(sorted({t for t in names if t is not None}), labels)
    rows = [i for i, t in enumerate(names) if t is not None and match[t] is not None]
    skipped = {k: list(v) for k, v in inputs.skipped.items()}
    for i, t in enumerate(names):
        if t is None or match[t] is None:
            skipped.setdefault("unknown_label", []).append(inputs.sources[i])
    if not rows:
        raise ValueError(f"no input has one of the model's labels {list(labels)} (labels found: "
                         f"{sorted({t for t in names if t is not None}) or 'none'})")
    return Inputs([inputs.ids[i] for i in rows], [inputs.sources[i] for i in rows], inputs.images[rows],
                  np.array([list(labels).index(match[names[i]]) for i in rows]), skipped,
                  [inputs.normalization[i] for i in rows] if inputs.normalization else None, inputs.notes,
                  [names[i] for i in rows])


#: The pixel values a model may take, and the factor from the 0–255 images to them (``pixel_range``).
PIXEL_RANGES = {"0-255": 1.0, "0-1": 1.0 / 255.0}


def image_input(shape: tuple, source: str | Path) -> tuple[int, int, int]:
    """Check that a model's input (``shape`` without the batch axis) is a fixed-size image CNNRNN prediction can
    feed: ``(H, W, 3)`` BGR or ``(H, W, 1)`` grayscale.

    Returns:
        ``(H, W, C)``.

    Raises:
        CheckpointError: anything else, saying what the model expects (e.g. ``(None, 130, 187)``: a sequence of
            130 steps of 187 features).
    """
    if len(shape) == 3 and None not in shape and shape[2] in (1, 3):
        return tuple(int(v) for v in shape)
    expects = "(None, " + ", ".join("None" if v is None else str(v) for v in shape) + ")"
    if len(shape) == 2:
        kind = f"a sequence of {shape[0] or 'any number of'} steps of {shape[1] or 'any number of'} features"
    elif len(shape) == 3 and None not in shape:
        kind = f"images with {shape[2]} channels"
    else:
        kind = f"a {len(shape)}-D input" + (" of free size" if None in shape else "")
    raise CheckpointError(f"{source}: the model expects inputs of shape {expects} (batch first), {kind}, not a "
                          "spectrogram image; CNNRNN prediction feeds fixed-size images of shape (height, width, 3) "
                          "BGR or (height, width, 1) grayscale")


def grayscale(images: np.ndarray) -> np.ndarray:
    """``(N, H, W, 3) uint8`` BGR images → ``(N, H, W, 1) uint8``, each as ``cv2.imread(png, cv2.IMREAD_GRAYSCALE)``
    reads it from its PNG (libpng's conversion, which differs from ``cv2.cvtColor``'s by one level on about half
    the pixels): what a model trained on grayscale PNGs read that way saw."""
    import cv2

    def one(image):
        _, png = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        return cv2.imdecode(png, cv2.IMREAD_GRAYSCALE)

    return np.stack([one(im) for im in images])[..., None] if len(images) else images[..., :1]


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
    images: bool = False,
    render: str | None = None,
    pixel_range: str | None = None,
    trust_code: bool = False,
) -> dict:
    """Predict emotions with one checkpoint or the average of several.

    A model whose input has 1 channel gets grayscale images (:func:`grayscale`), one with 3 the BGR images. A
    Keras 2 checkpoint (the original CNNRNN code's, :mod:`cnnrnn.keras2`) records neither its input scaling nor
    its rendering: it is fed 0–255 BGR pixels as the original's ``cv2.imread`` gave them (``pixel_range``
    ``0-1`` divides by 255), and, without a run config, audio drawn the original's way (``render``
    ``specshow``, :func:`cnnrnn.features.specshow_image`) with the default spectrogram settings; a note says
    so.

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
        images: a folder of audio and images gives its images (:func:`input_files`).
        render: ``fast`` or ``specshow`` (:data:`cnnrnn.features.RENDERS`): how audio becomes images; default:
            the run's ``spectrogram.render``, or ``specshow`` for a Keras 2 checkpoint without a run config.
        pixel_range: the pixel values the model takes (:data:`PIXEL_RANGES`): ``0-255`` (default) or ``0-1``.
        trust_code: load checkpoints with ``Lambda`` layers (Python code; :func:`cnnrnn.artifacts.load_model`).

    Returns:
        ``{'predictions': DataFrame, 'metrics': dict | None, 'files': {...}, 'skipped': {...}, 'notes': [...]}``.
        A model whose outputs are not probabilities (no softmax) gets a softmax, with a warning
        (:func:`cnnrnn.artifacts.as_probabilities`).

    Raises:
        CheckpointError: a checkpoint does not load, the checkpoints disagree on
            input size or class count, the class count differs from the labels, a model outputs NaN, or its
            input is not an image (:func:`image_input`).
        cnnrnn.keras2.UnsafeModelError: a checkpoint has a ``Lambda`` layer and ``trust_code`` is off.
        ValueError: an unknown ``render`` or ``pixel_range``.
        NotWritableError: ``out_dir`` cannot be written (checked before any work).
    """
    from ..features import check_render
    from ..keras2 import is_keras2, with_input_scale
    from ..reports import write_report
    from .batches import predict_proba

    if not model_paths:
        raise ValueError("no checkpoint given")
    if pixel_range is not None and pixel_range not in PIXEL_RANGES:
        raise ValueError(f"pixel_range must be one of {sorted(PIXEL_RANGES)}, got {pixel_range!r}")
    run_dir = find_run_dir(model_paths[0])
    out_dir = claim_predictions(out_dir or (run_dir or Path(model_paths[0]).parent) / "predictions")
    if labels is None and run_dir is not None:
        labels = run_dir / A.LABELS_FILE
    if isinstance(labels, (str, Path)):
        labels = load_labels(labels)
    if config is None and run_dir is not None and (run_dir / A.CONFIG_FILE).is_file():
        config = run_dir / A.CONFIG_FILE
    run_cfg = load_config(config)
    spec_cfg, notes = run_cfg.spectrogram, []
    if render is not None:
        check_render(render, spec_cfg.colormap)
        spec_cfg = replace(spec_cfg, render=render)
    models, shape, labels = load_checkpoints(model_paths, labels, trust_code=trust_code)
    shape = image_input(shape, model_paths[0])
    specshow_default = render is None and config is None and any(is_keras2(p) for p in model_paths)
    if specshow_default:  # trained on the original's images
        spec_cfg = replace(spec_cfg, render="specshow")
    models = [with_input_scale(m, PIXEL_RANGES[pixel_range or "0-255"]) for m in models]
    size, stats = run_image_input(run_dir, run_cfg, spec_cfg, shape)
    inputs = collect_inputs(source, size, spec_cfg, resize=resize, progress=progress, speaker=speaker,
                            stats=stats, images=images)
    if inputs.true_names is not None and any(t is not None for t in inputs.true_names):
        inputs = scored_inputs(inputs, labels)
    if shape[2] == 1:
        inputs.images = grayscale(inputs.images)
    if specshow_default and any(n != "as_image" for n in inputs.normalization or ()):
        notes.append(f"{Path(model_paths[0]).name} was saved by Keras 2 and has no run config: its audio is drawn as "
                     "the original CNNRNN code drew it (matplotlib specshow, render specshow) with the default "
                     f"spectrogram settings, and fed as {pixel_range or '0-255'} "
                     f"{'grayscale' if shape[2] == 1 else 'BGR'} pixels; --render fast, --config and --pixel-range "
                     "change that")
    tf_log = logging.getLogger("tensorflow")  # one predict trace per model is expected, not a retracing bug
    level = tf_log.level
    tf_log.setLevel(logging.ERROR)
    try:
        proba = np.mean([A.as_probabilities(predict_proba(m, inputs.images, batch_size, run_cfg.train.crop_hop), path)
                         for m, path in zip(models, model_paths)], axis=0)
    finally:
        tf_log.setLevel(level)
    columns = {"normalization": inputs.normalization} if inputs.normalization else None
    result = write_report(out_dir, proba, labels, inputs.ids, inputs.y_true, family="cnnrnn", sources=inputs.sources,
                          columns=columns,
                          extra={"models": [str(p) for p in model_paths], "source": str(source)},
                          title="UA {ua:.1%}  WA {wa:.1%}  " + f"({len(models)} model(s))")
    return {**result, "skipped": inputs.skipped, "notes": notes + inputs.notes}


def run_image_input(run_dir: Path | None, run_cfg: CnnrnnConfig, spec_cfg: SpectrogramConfig,
                    shape: tuple[int, int, int]):
    """``(size, stats)``: the ``(height, width)`` image a run's models are given for one clip, and the run's
    normalisation statistics (:class:`cnnrnn.normalize.NormStats`, from ``spectrograms/normalization.json``) or
    ``None`` when its spectrograms use none or the file is absent.

    ``shape`` is the models' ``(H, W, C)`` input; a model trained on time crops (``train.crop_width`` = ``W``)
    is given the whole clip's image (``spec_cfg.image_size``'s width), cut into segments when predicted.
    """
    size = tuple(shape[:2])
    if run_cfg.train.crop_width and shape[1] == run_cfg.train.crop_width:  # whole images, cut into segments
        size = (shape[0], spec_cfg.image_size[1])
    norm_file = None if run_dir is None else run_dir / A.SPECTROGRAM_DIR / "normalization.json"
    if not (spec_cfg.uses_stats and norm_file is not None and norm_file.is_file()):
        return size, None
    from ..normalize import NormStats

    return size, NormStats.from_dict(A.load_json(norm_file))


def checkpoints_in(paths: Sequence[str | Path]) -> list[Path]:
    """Checkpoint files of ``paths``: a file as is, a folder's ``*.h5`` (sorted; temporary files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        out += sorted(f for f in p.glob("*.h5") if not is_temporary(f)) if p.is_dir() else [p]
    return out


def clip_spec(models: Sequence[str | Path], manifest=None, *, config: str | Path | None = None,
              **_: Any) -> dict[str, Any]:
    """``{"sr": Hz, "duration": seconds}``: the clips a CNNRNN model takes, for long-recording prediction
    (:func:`cnnrnn.predict.predict`): its run's ``input``, or for a checkpoint without a ``run.json`` the
    spectrogram settings of ``config``, of the ``config.json`` of the run above it, or the default config (the
    original CNNRNN code's checkpoints)."""
    if manifest is not None and manifest.input.get("duration"):
        return {"sr": manifest.input.get("sr"), "duration": manifest.input["duration"]}
    files = checkpoints_in(models)
    run_dir = find_run_dir(files[0]) if files else None
    if config is None and run_dir is not None and (run_dir / A.CONFIG_FILE).is_file():
        config = run_dir / A.CONFIG_FILE
    spec = load_config(config).spectrogram
    return {"sr": spec.sr, "duration": spec.duration}


def predict_run(models: Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
                manifest=None, progress: bool = True, **options: Any) -> dict:
    """``cnnrnn predict`` for a CNNRNN run (the family contract of :mod:`cnnrnn.predict`).

    Args:
        models: checkpoints, a ``models/`` folder or the run folder (its ``run.json`` lists the checkpoints).
        source: a ``*_final.pickle``, a ``.wav``/``.png`` file, a folder of them, a CSV of ``path[,speaker,label]``
            (scored when it has labels), or a list of :class:`cnnrnn.audio.Clip` (waveforms in memory).
        out_dir: output folder (default ``<run>/predictions``).
        manifest: the run's :class:`cnnrnn.runs.RunManifest`, or ``None`` for a run from before manifests.
        options: ``labels``, ``config``, ``resize``, ``batch_size`` (``None`` = the run's), ``speaker``,
            ``images`` (a folder of audio and images gives its images), ``render``, ``pixel_range``,
            ``trust_code`` (see :func:`predict`).

    Raises:
        ValueError: no checkpoint found (temporary files of an interrupted save are never taken).
    """
    paths = [Path(m) for m in models]
    if manifest is not None and any(p.is_dir() and (p / "run.json").is_file() for p in paths):
        paths = manifest.checkpoint_paths()
    files = checkpoints_in(paths)
    if not files:
        stale = [f.name for p in paths if p.is_dir() for f in p.glob("*.h5") if is_temporary(f)]
        raise ValueError(f"no .h5 checkpoint in {', '.join(map(str, models))}" + (
            f" (only the temporary file(s) of an interrupted save: {', '.join(stale)})" if stale else ""))
    labels = options.get("labels") or (manifest.labels if manifest is not None else None)
    return predict(files, source, out_dir, labels=labels, config=options.get("config"),
                   resize=bool(options.get("resize")), batch_size=options.get("batch_size") or 16, progress=progress,
                   speaker=options.get("speaker"), images=bool(options.get("images")), render=options.get("render"),
                   pixel_range=options.get("pixel_range"), trust_code=bool(options.get("trust_code")))


def evaluate(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 5: score the run's test set, ``test_final.pickle``, with the average of the fold checkpoints.

    Writes ``test/predictions.csv``, ``test/metrics.json`` and ``test/confusion_matrix.png``
    (:func:`cnnrnn.reports.write_report`).

    Args:
        out: the run folder. config: the run's config; ``None`` = the run's own ``config.json`` (the folds and
            checkpoint names it was trained with), else the defaults.
        progress: show progress bars.

    Returns:
        What :func:`predict` returns: ``{"predictions": DataFrame, "metrics": dict, "files": {kind: path},
        "skipped": {reason: [items]}, ...}``.

    Raises:
        FileNotFoundError: a fold checkpoint is missing.
    """
    from .train import checkpoint_path

    out = Path(out)
    if config is None and (out / A.CONFIG_FILE).is_file():
        config = out / A.CONFIG_FILE
    cfg = load_config(config)
    models = [checkpoint_path(out, cfg.train, k) for k in range(1, cfg.train.folds + 1)]
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoints missing (run the train stage first): {missing}")
    return predict(models, out / A.FINAL_FILES["test"], out / "test", labels=out / A.LABELS_FILE,
                   config=out / A.CONFIG_FILE, batch_size=cfg.train.batch_size, progress=progress)


def test(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Deprecated name of :func:`evaluate` (every family's scoring entry point is ``predict.evaluate``): warns
    with a ``DeprecationWarning`` and calls it with the same arguments."""
    import warnings

    warnings.warn("cnnrnn.cnnrnn.predict.test is deprecated; use cnnrnn.cnnrnn.predict.evaluate", DeprecationWarning,
                  stacklevel=2)
    return evaluate(out, config, progress)
