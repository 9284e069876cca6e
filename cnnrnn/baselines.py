"""ANN (raw waveform) and CNN (spectrogram) baselines: config, features, feature cache, training, evaluation.

A port to Keras of the two baselines of a PyTorch audio-classification tutorial (seed ``002``:
the UrbanSound8K practice problem, ``train.csv`` with ``ID,Class``, 5,435 clips, 10 classes,
a random 8:2 split; 18.86% validation accuracy for the ANN, 91.21% for the CNN):

* **ANN**: the raw waveform at 44.1 kHz, exactly 4 s (176,400 samples): a shorter clip is
  extended by reflection, repeated as needed, then cut; a longer one is cut. Two hidden ReLU
  ``Dense`` layers, 10 outputs, Adam lr 1e-3, cross-entropy, batch 32, 5 epochs.
* **CNN**: a spectrogram of the 4 s clip at 22,050 Hz, standardised (mean 0, std 1), min-max
  scaled to [0, 1] and multiplied by 255 (see :func:`spectrogram_image`); three Conv2D + ReLU +
  MaxPool blocks, a ReLU ``Dense``, the outputs; Adam, batch 32.

Every clip is decoded and resampled **once** into a feature cache (one ``.npy`` file per corpus
and feature setting, written atomically, reused by a rerun or by another fold), and training
streams batches from it through ``tf.data``; rows are read with ``os.pread``, not a memory map,
so the process never holds more than a few batches (the 5,435 × 176,400 float32 waveforms of
the tutorial would be 3.8 GB).

A run folder (``train``) holds:

* ``baseline_config.json`` (:class:`BaselineConfig`), ``labels.json`` (class names, sorted:
  the codes ``pandas`` ``cat.codes`` gives), ``corpus_report.json``, ``split.json``;
* ``cache/<model>_<key>.npy`` + ``.json``: the features, one row per utterance;
* ``model.h5`` (last epoch, no optimizer state), ``history.csv``, ``curves.png``;
* ``metrics.json`` (validation accuracy, UA, F1-macro, ... and every skip or drop),
  ``confusion_matrix.png``, ``predictions.csv``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .artifacts import LABELS_FILE, atomic_write, atomic_write_bytes, load_json, save_json, save_model_h5
from .audio import AUDIO_EXTENSIONS, AudioError, load_audio, pad_or_trim
from .config import PRESET_DIR, ConfigError, SpectrogramConfig, _section_from_dict
from .corpora import Utterance, load_corpus
from .evaluation import classification_metrics
from .inference import Inputs, load_labels, load_model

log = logging.getLogger("cnnrnn.baselines")

BASELINE_CONFIG_FILE = "baseline_config.json"
BASELINE_PRESET_DIR = PRESET_DIR / "baseline"
MODEL_FILE = "model.h5"
MODELS = ("ann", "cnn")
SPLITS = ("random", "speaker")
#: int16 full scale: the ANN cache stores waveforms as 16-bit PCM (the corpora are 16-bit PCM too).
PCM_SCALE = 32767.0


class BaselineConfigError(ConfigError):
    """A baseline config is invalid: unknown key, wrong type or value, unknown preset."""


class SplitError(ValueError):
    """The train/validation split cannot be made (no speakers, unknown speaker, empty part)."""


@dataclass
class BaselineConfig:
    """Hyper-parameters of one baseline run (JSON presets in ``cnnrnn/configs/baseline/``).

    Attributes:
        model: ``ann`` (raw waveform) or ``cnn`` (spectrogram).
        sr: sample rate in Hz the audio is resampled to (tutorial: 44,100 ANN, 22,050 CNN).
        duration: fixed clip length in seconds (tutorial: 4.0); shorter clips are
            reflect-padded (repeated), longer ones cut.
        n_fft, hop_length, n_mels, top_db: CNN spectrogram (FFT size and hop in samples,
            mel bands, dB range kept below the clip's peak).
        hidden_units: ANN hidden layer widths (tutorial: two hidden layers).
        filters, kernel_size, dense_units: CNN convolution blocks and ReLU ``Dense`` width.
        epochs, batch_size, learning_rate: Adam training (tutorial: 5, 32, 1e-3).
        seed: seed of the split, weight init and shuffling.
        val_size: validation fraction (tutorial: 0.2, a random 8:2 split).
        split: ``random`` (stratified, the tutorial's protocol) or ``speaker`` (speaker-
            independent: no speaker in both parts).
        holdout_speaker: with ``split: speaker``, the speaker whose clips are the validation
            set (one fold of leave-one-speaker-out); ``""`` makes a speaker-disjoint split of
            about ``val_size`` instead.
    """

    model: str = "ann"
    sr: int = 44100
    duration: float = 4.0
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    top_db: float = 80.0
    hidden_units: list[int] = field(default_factory=lambda: [256, 128])
    filters: list[int] = field(default_factory=lambda: [16, 32, 64])
    kernel_size: int = 3
    dense_units: int = 128
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 42
    val_size: float = 0.2
    split: str = "random"
    holdout_speaker: str = ""

    def validate(self) -> "BaselineConfig":
        if self.model not in MODELS:
            raise BaselineConfigError(f"model must be one of {MODELS}, got {self.model!r}")
        if self.split not in SPLITS:
            raise BaselineConfigError(f"split must be one of {SPLITS}, got {self.split!r}")
        positive = ("sr", "n_fft", "hop_length", "n_mels", "epochs", "batch_size", "kernel_size", "dense_units")
        for name in positive:
            if getattr(self, name) <= 0:
                raise BaselineConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.duration <= 0 or self.learning_rate <= 0 or self.top_db <= 0:
            raise BaselineConfigError("duration, learning_rate and top_db must be positive")
        if not 0.0 < self.val_size < 1.0:
            raise BaselineConfigError(f"val_size must be in (0, 1), got {self.val_size}")
        units = list(self.hidden_units) + list(self.filters)
        if not self.hidden_units or not self.filters or not all(isinstance(v, int) and v > 0 for v in units):
            raise BaselineConfigError("hidden_units and filters must be non-empty lists of positive ints")
        return self

    @property
    def n_samples(self) -> int:
        """Fixed clip length in samples (``round(duration * sr)``; tutorial ANN: 176,400)."""
        return int(round(self.duration * self.sr))

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Model input per clip: ``(n_samples,)`` for the ANN, ``(n_mels, frames, 1)`` for the CNN."""
        if self.model == "ann":
            return (self.n_samples,)
        return (self.n_mels, 1 + self.n_samples // self.hop_length, 1)

    def spectrogram_config(self) -> SpectrogramConfig:
        """The package's :class:`SpectrogramConfig` with this run's STFT/mel settings."""
        return SpectrogramConfig(sr=self.sr, n_fft=self.n_fft, hop_length=self.hop_length, n_mels=self.n_mels,
                                 top_db=self.top_db, duration=self.duration)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_baseline_config(source: str | Path | dict | BaselineConfig | None = None, model: str | None = None,
                         **overrides: Any) -> BaselineConfig:
    """Load a baseline config.

    Args:
        source: a preset name (``ann``, ``cnn``, ``tiny_ann``, ``tiny_cnn``), a JSON file, a dict
            or a config; ``None`` takes the preset named ``model`` (default ``ann``).
        model: ``ann`` or ``cnn``; must agree with the config's ``model`` when both are given.
        **overrides: values that replace the loaded ones (``epochs=1``); ``None`` values are ignored.

    Raises:
        BaselineConfigError: unknown preset or file, invalid JSON, unknown key, wrong type or
            value, or ``model`` disagrees with the config.
    """
    if isinstance(source, BaselineConfig):
        data = source.to_dict()
    elif isinstance(source, dict):
        data = dict(source)
    else:
        name = (model or "ann") if source is None else source
        path = Path(name)
        if not path.is_file() and (BASELINE_PRESET_DIR / f"{name}.json").is_file():
            path = BASELINE_PRESET_DIR / f"{name}.json"
        if not path.is_file():
            presets = ", ".join(sorted(p.stem for p in BASELINE_PRESET_DIR.glob("*.json")))
            raise BaselineConfigError(f"baseline config {str(name)!r} is neither a file nor a preset ({presets})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise BaselineConfigError(f"{path}: invalid JSON: {exc}") from exc
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = _section_from_dict(BaselineConfig, data, "baseline")
    except ConfigError as exc:
        raise BaselineConfigError(str(exc)) from exc
    if model is not None and cfg.model != model:
        raise BaselineConfigError(f"the config is for model {cfg.model!r} but model {model!r} was asked for")
    return cfg.validate()


# --------------------------------------------------------------------------- features
def waveform(path: str | Path, cfg: BaselineConfig) -> np.ndarray:
    """Load a clip at ``cfg.sr`` and make it exactly ``cfg.n_samples`` long.

    Shorter clips are reflect-padded, repeated as often as needed, then cut (the tutorial's README:
    copy by ``reflect``, then slice to ``4 * sr``) with ``pad_or_trim(mode="reflect")``, which appends
    the reversed clip, then the clip, ... at the end; longer clips are cut.

    Returns:
        ``(n_samples,) float32`` in [-1, 1].

    Raises:
        AudioError: missing, unreadable, empty, silent or non-finite audio.
    """
    y, _ = load_audio(path, sr=cfg.sr)
    return pad_or_trim(y, cfg.n_samples, mode="reflect")


def spectrogram_image(y: np.ndarray, cfg: BaselineConfig, eps: float = 1e-6) -> np.ndarray:
    """The CNN input of a fixed-length waveform: a standardised, min-max scaled spectrogram × 255.

    The tutorial's README (seed ``002``) says only "spectrogram" at 22,050 Hz (its code is shown
    as screenshots: a spectrogram function, standardisation to mean 0 / std 1, and
    ``sklearn.preprocessing.MinMaxScaler`` to [0, 1], then × 255). Its STFT/mel parameters are not
    recoverable from the README, so this uses the package's log-mel (:func:`cnnrnn.features.log_mel`:
    ``librosa.feature.melspectrogram`` with ``n_fft``, ``hop_length``, ``n_mels`` then
    ``power_to_db(ref=np.max, top_db)``, librosa's defaults 2048 / 512 / 128 / 80 dB), standardised
    over the whole clip, then min-max scaled over the whole clip (not per column as a
    ``MinMaxScaler`` fitted on the matrix would) and multiplied by 255.

    Args:
        y: ``(cfg.n_samples,) float32`` waveform at ``cfg.sr`` Hz.
        cfg: gives ``sr``, ``n_fft``, ``hop_length``, ``n_mels``, ``top_db``.

    Returns:
        ``(n_mels, 1 + n_samples // hop_length) float32`` in [0, 255]; all zeros for a constant spectrogram.
    """
    from .features import log_mel

    db = log_mel(y, cfg.spectrogram_config())
    z = (db - db.mean()) / (db.std() + eps)
    span = float(z.max() - z.min())
    return (255.0 * (z - z.min()) / max(span, eps)).astype(np.float32)


def clip_features(path: str | Path, cfg: BaselineConfig) -> np.ndarray:
    """The model input of one audio file: ``cfg.input_shape`` float32 (waveform or spectrogram).

    Raises:
        AudioError: missing, unreadable, empty, silent or non-finite audio.
    """
    y = waveform(path, cfg)
    return y if cfg.model == "ann" else spectrogram_image(y, cfg)[..., None]


# --------------------------------------------------------------------------- feature cache
class FeatureCache:
    """Fixed-shape feature rows in one ``.npy`` file, read by row with ``os.pread``.

    Reading does not map the file, so a read of a batch of rows costs the process only that
    batch (a memory map would keep every page it touched resident and count in the RSS).
    ANN rows are int16 PCM (scaled back by 1/32767 on read), CNN rows float32.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{self.path}: Fortran-ordered cache files are not supported")
        self.n_rows, self.row_shape, self.dtype = shape[0], tuple(shape[1:]), np.dtype(dtype)
        self.row_bytes = int(np.prod(self.row_shape)) * self.dtype.itemsize
        self.scale = 1.0 / PCM_SCALE if self.dtype == np.int16 else 1.0
        self._fd = os.open(self.path, os.O_RDONLY)

    def read(self, rows: Sequence[int]) -> np.ndarray:
        """Rows as ``(len(rows), *row_shape) float32`` (int16 rows scaled to [-1, 1])."""
        out = np.empty((len(rows),) + self.row_shape, np.float32)
        for i, row in enumerate(np.asarray(rows, dtype=np.int64)):
            raw = os.pread(self._fd, self.row_bytes, self.offset + int(row) * self.row_bytes)
            out[i] = np.frombuffer(raw, self.dtype).reshape(self.row_shape)
        if self.scale != 1.0:
            out *= self.scale
        return out

    def close(self) -> None:
        """Close the file (idempotent)."""
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    __del__ = close


def _cache_key(utterances: Sequence[Utterance], cfg: BaselineConfig) -> str:
    params = {"model": cfg.model, "sr": cfg.sr, "duration": cfg.duration}
    if cfg.model == "cnn":
        params.update(n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, top_db=cfg.top_db)
    files = []
    for u in utterances:
        st = Path(u.audio_path).stat() if Path(u.audio_path).is_file() else None
        files.append([u.audio_path, st.st_size if st else -1, st.st_mtime_ns if st else -1])
    blob = json.dumps([params, files], sort_keys=True).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:12]


def build_cache(utterances: Sequence[Utterance], cfg: BaselineConfig, cache_dir: str | Path,
                progress: bool = True) -> tuple[FeatureCache, dict[str, Any]]:
    """Decode and resample every clip once into ``<cache_dir>/<model>_<key>.npy`` (+ ``.json`` index).

    The key hashes the feature settings and every file's path, size and modification time,
    so a rerun (or another fold) with the same clips reuses the file and a change rebuilds it.
    The ``.npy`` is streamed to disk row by row and renamed into place when complete
    (:func:`cnnrnn.artifacts.atomic_write`), then the index is written.

    Args:
        utterances: row ``i`` of the cache is ``utterances[i]``.
        cfg: feature settings (``model``, ``sr``, ``duration``, spectrogram parameters).
        cache_dir: folder of the cache files.

    Returns:
        ``(cache, index)``; ``index`` has ``ids``, ``ok`` (one bool per row: unusable clips
        are zero rows with ``ok`` false), ``skipped`` (``{reason: [id, ...]}``, e.g. ``empty``),
        ``file``, ``reused`` and ``seconds``.
    """
    from tqdm import tqdm

    key = _cache_key(utterances, cfg)
    path = Path(cache_dir) / f"{cfg.model}_{key}.npy"
    index_path = path.with_suffix(".json")
    if path.is_file() and index_path.is_file():
        index = load_json(index_path)
        if index.get("ids") == [u.id for u in utterances]:
            log.info("reusing feature cache %s", path)
            return FeatureCache(path), {**index, "reused": True}
    dtype = np.dtype(np.int16 if cfg.model == "ann" else np.float32)
    shape = cfg.input_shape
    ok, skipped = [], {}
    started = time.perf_counter()

    def write(fh) -> None:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                  "shape": (len(utterances),) + shape}
        np.lib.format.write_array_header_1_0(fh, header)
        blank = np.zeros(shape, dtype).tobytes()
        for u in tqdm(utterances, desc=f"{cfg.model} features", unit="clip", disable=not progress):
            try:
                x = clip_features(u.audio_path, cfg)
            except AudioError as exc:
                skipped.setdefault(exc.reason, []).append(u.id)
                log.warning("skipped %s", exc)
                ok.append(False)
                fh.write(blank)
                continue
            if dtype == np.int16:
                x = np.round(np.clip(x, -1.0, 1.0) * PCM_SCALE)
            fh.write(np.ascontiguousarray(x, dtype).tobytes())
            ok.append(True)

    atomic_write(path, write, fsync=False)
    index = {"ids": [u.id for u in utterances], "ok": ok, "skipped": skipped, "shape": list(shape),
             "dtype": dtype.name, "file": str(path), "seconds": round(time.perf_counter() - started, 2)}
    save_json(index, index_path)
    return FeatureCache(path), {**index, "reused": False}


def cache_dataset(cache: FeatureCache, rows: Sequence[int], y: Sequence[int] | None = None,
                  batch_size: int = 32, shuffle: bool = False, seed: int = 0):
    """A ``tf.data`` pipeline that reads batches of cache rows (``tf.numpy_function`` + ``os.pread``).

    Returns:
        A dataset of ``(batch, *row_shape) float32`` (with ``(batch,) int32`` labels when ``y`` is given).
    """
    import tensorflow as tf

    rows = np.asarray(rows, dtype=np.int64)
    labels = np.zeros(len(rows), np.int32) if y is None else np.asarray(y, dtype=np.int32)
    ds = tf.data.Dataset.from_tensor_slices((rows, labels))
    if shuffle:
        ds = ds.shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
    shape = (None,) + cache.row_shape

    def load(batch_rows, batch_y):
        x = tf.ensure_shape(tf.numpy_function(cache.read, [batch_rows], tf.float32), shape)
        return x if y is None else (x, batch_y)

    return ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


# --------------------------------------------------------------------------- split
def split_rows(y: np.ndarray, groups: Sequence[str | None], rows: np.ndarray, labels: Sequence[str],
               cfg: BaselineConfig) -> dict[str, Any]:
    """Seeded train/validation split of the usable cache ``rows``.

    ``random``: ``train_test_split(test_size=val_size, stratify=y)`` (scikit-learn), plain
    seeded shuffle when a class has fewer than 2 clips. ``speaker``: the ``holdout_speaker``'s
    clips, or the first fold of :func:`cnnrnn.splits.kfold_indices` over speakers
    (``round(1 / val_size)`` speaker-disjoint folds).

    A validation clip whose class has no training clip cannot be learnt: it is dropped from
    the validation set and counted in ``dropped`` (``{label: n}``), and a warning is logged.

    Returns:
        ``{'train': rows, 'val': rows, 'dropped': {...}, 'stratified': bool, 'val_speakers': [...]}``.

    Raises:
        SplitError: speaker split without a speaker for every clip, unknown ``holdout_speaker``,
            too few speakers, or an empty train or validation part.
    """
    from sklearn.model_selection import train_test_split

    from .splits import kfold_indices

    rows = np.asarray(rows, dtype=np.int64)
    y_rows = np.asarray(y)[rows]
    stratified = False
    if cfg.split == "random":
        counts = np.bincount(y_rows)
        n_val = int(np.ceil(cfg.val_size * len(rows)))
        stratified = bool(counts[counts > 0].min() >= 2 and n_val >= (counts > 0).sum())
        tr, va = train_test_split(rows, test_size=cfg.val_size, random_state=cfg.seed, shuffle=True,
                                  stratify=y_rows if stratified else None)
    else:
        g = np.asarray([str(groups[r]) if groups[r] is not None else "" for r in rows])
        if (g == "").any():
            raise SplitError("a speaker split needs a speaker for every clip; this corpus has none "
                             "(use split 'random')")
        if cfg.holdout_speaker:
            if cfg.holdout_speaker not in set(g):
                raise SplitError(f"holdout_speaker {cfg.holdout_speaker!r} is not in the corpus; "
                                 f"speakers: {sorted(set(g))}")
            tr, va = rows[g != cfg.holdout_speaker], rows[g == cfg.holdout_speaker]
        else:
            try:
                tr_i, va_i = kfold_indices(y_rows, max(2, round(1 / cfg.val_size)), cfg.seed, groups=g)[0]
            except ValueError as exc:
                raise SplitError(str(exc)) from exc
            tr, va = rows[tr_i], rows[va_i]
    y = np.asarray(y)
    seen = set(y[tr].tolist())
    dropped: dict[str, int] = {}
    for code in y[va].tolist():
        if code not in seen:
            dropped[labels[code]] = dropped.get(labels[code], 0) + 1
    if dropped:
        log.warning("validation clips of classes absent from training dropped: %s", dropped)
        va = np.asarray([r for r in va if y[r] in seen], dtype=np.int64)
    if len(tr) == 0 or len(va) == 0:
        raise SplitError(f"the split left {len(tr)} training and {len(va)} validation clips "
                         f"(dropped from validation: {dropped})")
    val_speakers = sorted({str(groups[r]) for r in va if groups[r] is not None})
    return {"train": np.sort(tr), "val": np.sort(va), "dropped": dropped, "stratified": stratified,
            "val_speakers": val_speakers}


# --------------------------------------------------------------------------- model, scoring
def build_model(cfg: BaselineConfig, n_classes: int):
    """The uncompiled ANN or CNN for ``cfg`` (see :mod:`cnnrnn.models.baselines`)."""
    from .models.baselines import build_ann, build_cnn

    if cfg.model == "ann":
        return build_ann(cfg.n_samples, n_classes, cfg.hidden_units)
    return build_cnn(cfg.input_shape, n_classes, cfg.filters, cfg.kernel_size, cfg.dense_units)


def predict_proba(model, x, batch_size: int = 32) -> np.ndarray:
    """Class probabilities ``(N, n_classes) float32`` for a feature array or a batched ``tf.data`` dataset."""
    kwargs = {"batch_size": batch_size} if isinstance(x, np.ndarray) else {}
    return np.asarray(model.predict(x, verbose=0, **kwargs), np.float32)


def _score(model, cache: FeatureCache, rows: np.ndarray, y: np.ndarray, ids: Sequence[str], labels: Sequence[str],
           out_dir: Path, batch_size: int, title: str) -> dict[str, Any]:
    """Predict ``rows`` of the cache; write metrics.json, confusion_matrix.png and predictions.csv."""
    import pandas as pd

    from .plots import plot_confusion_matrix

    proba = predict_proba(model, cache_dataset(cache, rows, batch_size=batch_size))
    pred = proba.argmax(axis=1)
    y_true = np.asarray(y)[rows]
    metrics = classification_metrics(y_true, pred, len(labels))
    df = pd.DataFrame({"id": [ids[r] for r in rows], "true": [labels[i] for i in y_true],
                       "predicted": [labels[i] for i in pred], "confidence": proba.max(axis=1)})
    atomic_write_bytes(out_dir / "predictions.csv", df.to_csv(index=False).encode("utf-8"))
    plot_confusion_matrix(metrics["confusion_matrix"], labels, out_dir / "confusion_matrix.png",
                          title=f"{title}: acc {metrics['accuracy']:.1%}  UA {metrics['ua']:.1%}")
    return metrics



def _corpus_arrays(utterances: Sequence[Utterance], labels: Sequence[str]) -> tuple[np.ndarray, list, list]:
    code = {name: i for i, name in enumerate(labels)}
    return (np.asarray([code[u.emotion] for u in utterances], dtype=np.int32),
            [u.speaker for u in utterances], [u.id for u in utterances])


# --------------------------------------------------------------------------- train / evaluate
def train(corpus: str, root: str | Path, out: str | Path, config: Any = None, model: str | None = None,
          cache_dir: str | Path | None = None, progress: bool = True, verbose: int | str = "auto",
          **overrides: Any) -> dict[str, Any]:
    """Train one baseline on a corpus and score it on the validation split.

    Args:
        corpus, root: a reader of :data:`cnnrnn.corpora.READERS` (``fsdd``, ``urbansound8k``, ...)
            and its folder.
        out: run folder (see the module docstring for what is written).
        config: baseline config (preset name, JSON path, dict); default: the ``model`` preset.
        model: ``ann`` or ``cnn``.
        cache_dir: feature cache folder (default ``<out>/cache``); share it between runs
            (folds) on the same corpus to decode the audio once.
        verbose: Keras ``fit`` verbosity.
        **overrides: config values to replace (``epochs=1``, ``split="speaker"``, ...).

    Returns:
        The ``metrics.json`` report: validation ``accuracy``, ``ua``, ``f1_macro``, ... plus
        ``n_train``, ``n_val``, the skips and drops, ``train_seconds`` and ``train_clips_per_s``.

    Raises:
        BaselineConfigError, SplitError, CorpusError: bad config, split or corpus.
    """
    import keras
    import pandas as pd

    from .plots import plot_history

    cfg = load_baseline_config(config, model, **overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    utterances, corpus_report = load_corpus(corpus, root)
    labels = sorted({u.emotion for u in utterances})  # pandas cat.codes: categories in sorted order
    y, groups, ids = _corpus_arrays(utterances, labels)
    cache, index = build_cache(utterances, cfg, cache_dir or out / "cache", progress)
    split = split_rows(y, groups, np.flatnonzero(index["ok"]), labels, cfg)
    save_json(cfg.to_dict(), out / BASELINE_CONFIG_FILE)
    save_json({"labels": labels}, out / LABELS_FILE)
    save_json(corpus_report.to_dict(), out / "corpus_report.json")
    save_json({"method": cfg.split, "seed": cfg.seed, "val_size": cfg.val_size, "stratified": split["stratified"],
               "val_speakers": split["val_speakers"], "dropped_from_val": split["dropped"],
               "train": [ids[r] for r in split["train"]], "val": [ids[r] for r in split["val"]]},
              out / "split.json")

    keras.utils.set_random_seed(cfg.seed)
    net = build_model(cfg, len(labels))
    net.compile(optimizer=keras.optimizers.Adam(learning_rate=cfg.learning_rate),
                loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    net.fit(cache_dataset(cache, split["train"], y[split["train"]], cfg.batch_size, shuffle=True, seed=cfg.seed),
            validation_data=cache_dataset(cache, split["val"], y[split["val"]], cfg.batch_size),
            epochs=cfg.epochs, verbose=verbose, shuffle=False,  # tf.data shuffles
            callbacks=[keras.callbacks.CSVLogger(str(out / "history.csv"))])
    train_seconds = time.perf_counter() - started
    save_model_h5(net, out / MODEL_FILE)
    plot_history({cfg.model: pd.read_csv(out / "history.csv")}, out / "curves.png")

    metrics = _score(net, cache, split["val"], y, ids, labels, out, cfg.batch_size,
                     f"{cfg.model.upper()} on {corpus} (validation)")
    report = {
        **metrics, "model": cfg.model, "corpus": corpus, "root": str(root), "labels": labels,
        "split": cfg.split, "val_speakers": split["val_speakers"],
        "n_train": int(len(split["train"])), "n_val": int(len(split["val"])),
        "dropped_from_val": split["dropped"], "skipped_corpus": corpus_report.skipped,
        "skipped_audio": index["skipped"], "cache": {k: index[k] for k in ("file", "reused", "seconds")},
        "epochs": cfg.epochs, "train_seconds": round(train_seconds, 2),
        "train_clips_per_s": round(len(split["train"]) * cfg.epochs / train_seconds, 2),
        "checkpoint": str(out / MODEL_FILE),
    }
    save_json(report, out / "metrics.json")
    cache.close()
    return report


def evaluate(run: str | Path, corpus: str | None = None, root: str | Path | None = None,
             out: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Score a trained run again: on its own validation split, or on every clip of another corpus folder.

    Args:
        run: a run folder written by :func:`train` (``model.h5``, ``baseline_config.json``,
            ``labels.json``, ``split.json``).
        corpus, root: another corpus to score (both or neither). Its classes are matched to
            the run's labels by name; clips of unknown classes are skipped and counted.
        out: output folder (default ``<run>/evaluation`` or ``<run>/evaluation_<corpus>``).

    Returns:
        The ``metrics.json`` report written to ``out``.

    Raises:
        FileNotFoundError: the run lacks one of its files.
        ValueError: only one of ``corpus`` / ``root``, or nothing left to score.
    """
    if (corpus is None) != (root is None):
        raise ValueError("give both corpus and root to evaluate on another corpus, or neither")
    run = Path(run)
    cfg = load_baseline_config(run / BASELINE_CONFIG_FILE)
    labels = load_labels(run / LABELS_FILE)
    net = load_model(run / MODEL_FILE)
    if corpus is None:
        run_report = load_json(run / "metrics.json")
        corpus, root = run_report["corpus"], run_report["root"]
        wanted = set(load_json(run / "split.json")["val"])
        cache_dir = Path(run_report["cache"]["file"]).parent  # the training cache, reused
        out = Path(out) if out else run / "evaluation"
    else:
        wanted = None
        out = Path(out) if out else run / f"evaluation_{corpus}"
        cache_dir = out / "cache"
    utterances, corpus_report = load_corpus(corpus, root)
    skipped_labels: dict[str, list[str]] = {}
    for u in utterances:
        if u.emotion not in labels:
            skipped_labels.setdefault(u.emotion, []).append(u.id)
    utterances = [u for u in utterances if u.emotion in labels]
    if not utterances:
        raise ValueError(f"nothing to score in {root}: no clip of the run's classes {labels}")
    y, _, ids = _corpus_arrays(utterances, labels)
    cache, index = build_cache(utterances, cfg, cache_dir, progress)
    rows = np.asarray([r for r in np.flatnonzero(index["ok"]) if wanted is None or ids[r] in wanted], np.int64)
    if not len(rows):
        raise ValueError(f"no usable audio to score in {root} (skipped: {index['skipped']})")
    out.mkdir(parents=True, exist_ok=True)
    metrics = _score(net, cache, rows, y, ids, labels, out, cfg.batch_size, f"{cfg.model.upper()} on {corpus}")
    report = {**metrics, "model": cfg.model, "run": str(run), "corpus": corpus, "root": str(root),
              "labels": labels, "skipped_corpus": corpus_report.skipped, "skipped_audio": index["skipped"],
              "skipped_unknown_label": skipped_labels}
    save_json(report, out / "metrics.json")
    cache.close()
    return report


# --------------------------------------------------------------------------- prediction (cnnrnn.inference)
def collect_inputs(source: str | Path, cfg: BaselineConfig, input_shape: Sequence[int],
                   progress: bool = True) -> Inputs:
    """Features of one audio file or a folder of them (searched recursively), for :func:`cnnrnn.inference.predict`.

    Args:
        source: a ``.wav`` (or other audio) file, or a folder.
        cfg: the run's baseline config (feature settings).
        input_shape: the model's input shape without the batch axis; must equal ``cfg.input_shape``.

    Returns:
        :class:`cnnrnn.inference.Inputs` whose ``images`` are ``(N, *input_shape) float32`` features;
        unusable audio (empty, silent, unreadable) is skipped and counted in ``skipped``.

    Raises:
        FileNotFoundError: ``source`` does not exist.
        ValueError: the model does not take this config's features, or no usable audio.
    """
    from tqdm import tqdm

    if tuple(int(v) for v in input_shape) != cfg.input_shape:
        raise ValueError(f"the model takes {tuple(input_shape)} but its run config gives {cfg.input_shape} features")
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"input {source} not found")
    files = [source] if source.is_file() else sorted(
        p for p in source.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    ids, sources, feats, skipped = [], [], [], {}
    for p in tqdm(files, desc="inputs", unit="file", disable=not progress or len(files) < 2):
        try:
            feats.append(clip_features(p, cfg))
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(p))
            log.warning("skipped %s", exc)
            continue
        ids.append(p.stem)
        sources.append(str(p))
    if not feats:
        raise ValueError(f"no usable audio under {source} (skipped: {skipped or 'no audio files'})")
    return Inputs(ids, sources, np.stack(feats), None, skipped)


def find_baseline_config(run_dir: str | Path | None) -> BaselineConfig | None:
    """The baseline config of a run folder, or ``None`` when the run is not a baseline run."""
    if run_dir is None or not (Path(run_dir) / BASELINE_CONFIG_FILE).is_file():
        return None
    return load_baseline_config(Path(run_dir) / BASELINE_CONFIG_FILE)
