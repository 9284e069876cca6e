"""Baseline inputs: fixed-length waveforms, the scaled spectrogram, the feature cache, and the split.

* :func:`waveform`: the ANN input, a clip at ``sr`` made exactly ``duration`` long (reflect-padded and
  repeated, or cut), as the Korean PyTorch tutorial "디지털사운드 ANN과 CNN을 활용하여 음성 분류 인공지능 제작"
  does (UrbanSound8K practice problem: 4 s at 44.1 kHz = 176,400 samples);
* :func:`spectrogram_image`: the CNN input, a log-mel spectrogram standardised (mean 0, std 1), min-max
  scaled to [0, 1] and multiplied by 255, as the tutorial does; with a ``normalization`` (not in the
  tutorial) the cache holds the plain dB log-mel and :func:`normalized_image` makes the input as batches are
  read (:func:`normalizer`), so that ``global`` / ``speaker`` statistics can depend on the split;
* :class:`FeatureCache` / :func:`build_cache` / :func:`cache_dataset`: every clip is decoded and resampled
  **once** into one ``.npy`` file per corpus content and feature setting (written atomically, reused by a rerun
  or another fold of the same audio) and training streams batches from it through ``tf.data``; rows are read with ``os.pread``,
  not a memory map, so the process never holds more than a few batches (the 5,435 × 176,400 float32
  waveforms of the tutorial would be 3.8 GB);
* :func:`split_rows`: the seeded train/validation split, made by the core splitters of :mod:`cnnrnn.splits`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..artifacts import atomic_write, load_json, save_json
from ..audio import AudioError, pad_or_trim
from ..corpora import Utterance
from ..features import load_clip, log_mel
from ..splits import SplitError, holdout_split
from .config import BaselineConfig

log = logging.getLogger("cnnrnn.baselines")

#: int16 full scale: the ANN cache stores waveforms as 16-bit PCM (the corpora are 16-bit PCM too).
PCM_SCALE = 32767.0

__all__ = ["CACHE_KIND", "PCM_SCALE", "FeatureCache", "SplitError", "build_cache", "cache_dataset", "claim_cache",
           "clip_features", "corpus_arrays", "is_feature_cache", "normalization_stats", "normalized_image", "normalizer",
           "spectrogram_image", "split_rows", "waveform"]


# --------------------------------------------------------------------------- features
def waveform(path: str | Path, cfg: BaselineConfig) -> np.ndarray:
    """Load a clip at ``cfg.sr`` and make it exactly ``cfg.n_samples`` long.

    Shorter clips are reflect-padded, repeated as often as needed, then cut (the tutorial's README: copy by
    ``reflect``, then slice to ``4 * sr``) with ``pad_or_trim(mode="reflect")``, which appends the reversed
    clip, then the clip, ... at the end; longer clips are cut.

    Returns:
        ``(n_samples,) float32`` in [-1, 1].

    Raises:
        AudioError: missing, unreadable, empty, silent, non-finite or too long audio, or shorter than one STFT
            frame (``too_short``; :func:`cnnrnn.features.load_clip`).
    """
    return pad_or_trim(load_clip(path, cfg), cfg.n_samples, mode="reflect")


def spectrogram_image(y: np.ndarray, cfg: BaselineConfig, eps: float = 1e-6) -> np.ndarray:
    """The CNN input of a fixed-length waveform: a standardised, min-max scaled spectrogram × 255.

    The tutorial's README says only "spectrogram" at 22,050 Hz (its code is shown as screenshots: a
    spectrogram function, standardisation to mean 0 / std 1, and ``sklearn.preprocessing.MinMaxScaler`` to
    [0, 1], then × 255). Its STFT/mel parameters are not recoverable, so this uses the package's log-mel
    (:func:`cnnrnn.features.log_mel` with the config's ``n_fft``, ``hop_length``, ``n_mels``, ``fmin``,
    ``fmax`` and ``power_to_db(ref=np.max, top_db)``; librosa's defaults 2048 / 512 / 128 / 80 dB),
    standardised over the whole clip, then min-max scaled over the whole clip (not per column as a
    ``MinMaxScaler`` fitted on the matrix would) and multiplied by 255.

    Args:
        y: ``(cfg.n_samples,) float32`` waveform at ``cfg.sr`` Hz.
        cfg: the feature settings (a :class:`~cnnrnn.features.LogMelConfig`).

    Returns:
        ``(n_mels, 1 + n_samples // hop_length) float32`` in [0, 255]; all zeros for a constant spectrogram.
    """
    db = log_mel(y, cfg)
    z = (db - db.mean()) / (db.std() + eps)
    span = float(z.max() - z.min())
    return (255.0 * (z - z.min()) / max(span, eps)).astype(np.float32)


def normalized_image(db: np.ndarray, cfg: BaselineConfig, speaker: str | None = None, stats=None,
                     mode: str | None = None) -> np.ndarray:
    """The CNN input of a log-mel under ``cfg.normalization`` (or ``mode``) other than ``none``: z-scores per mel
    band (:func:`cnnrnn.normalize.apply`: over the clip, with the run's global statistics, or its speaker's),
    ``[-norm_range, norm_range]`` mapped linearly to [0, 255], clipped.

    Args:
        db: ``(n_mels, frames)`` dB (:func:`cnnrnn.features.log_mel`).
        speaker, stats: the clip's speaker and the run's :class:`cnnrnn.normalize.NormStats` (``global`` /
            ``speaker``; a speaker the statistics lack uses the global ones).

    Returns:
        ``(n_mels, frames) float32`` in [0, 255].

    Raises:
        NormalizationError: ``global``/``speaker`` without statistics.
    """
    from ..normalize import apply

    z = apply(db.T, speaker, stats, mode or cfg.normalization).T
    return (255.0 * np.clip((z + cfg.norm_range) / (2 * cfg.norm_range), 0.0, 1.0)).astype(np.float32)


def clip_features(path: str | Path, cfg: BaselineConfig) -> np.ndarray:
    """What the cache holds for one audio file: ``cfg.input_shape`` float32: the ANN's waveform, the CNN's
    :func:`spectrogram_image` ``(n_mels, frames, 1)``, or with a ``normalization`` the plain dB log-mel
    ``(n_mels, frames, 1)`` (made into the input by :func:`normalizer`).

    Raises:
        AudioError: missing, unreadable, empty, silent or non-finite audio.
    """
    y = waveform(path, cfg)
    if cfg.model == "ann":
        return y
    return (spectrogram_image(y, cfg) if cfg.normalization == "none" else log_mel(y, cfg))[..., None]


def normalization_stats(cache: "FeatureCache", rows: Sequence[int], speakers: Sequence[str | None],
                        reference: Sequence[bool], cfg: BaselineConfig):
    """``global`` / ``speaker`` statistics of the cached log-mels of ``rows``: global ones from the ``reference``
    (training) rows, per speaker from all of that speaker's rows (:func:`cnnrnn.normalize.fit`).

    Args:
        cache: a cache of plain log-mels (a ``normalization`` other than ``none``). rows: the usable rows.
        speakers, reference: one per row of ``rows``.

    Returns:
        :class:`cnnrnn.normalize.NormStats`, or ``None`` for the modes that need none.
    """
    from ..normalize import fit

    if cfg.model != "cnn" or cfg.normalization not in ("speaker", "global"):
        return None
    return fit([cache.read([r])[0, ..., 0].T for r in rows], list(speakers), reference=list(reference))


def normalizer(cfg: BaselineConfig, stats=None, speakers: Sequence[str | None] | None = None):
    """The ``transform(rows, x)`` of :func:`cache_dataset` that makes the CNN input of cached log-mels
    (:func:`normalized_image`, each row with its speaker ``speakers[row]``), or ``None`` without a
    ``normalization`` (the cache then holds the input itself)."""
    if cfg.model != "cnn" or cfg.normalization == "none":
        return None

    def transform(rows: np.ndarray, x: np.ndarray) -> np.ndarray:
        who = [speakers[int(r)] if speakers is not None else None for r in rows]
        return np.stack([normalized_image(x[i, ..., 0], cfg, who[i], stats)[..., None] for i in range(len(x))])

    return transform


# --------------------------------------------------------------------------- feature cache
class FeatureCache:
    """Fixed-shape feature rows in one ``.npy`` file, read by row with ``os.pread``.

    Reading does not map the file, so a read of a batch of rows costs the process only that batch (a memory
    map would keep every page it touched resident and count in the RSS). ANN rows are int16 PCM (scaled back
    by 1/32767 on read), CNN rows float32.

    Raises:
        ValueError: a Fortran-ordered file.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open(self.path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            fmt = np.lib.format
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
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
    """The cache file's key: the feature settings and every clip's content fingerprint
    (:func:`cnnrnn.outputs.file_digest`; ``None`` for a missing or unreadable file), in row order. Paths and
    modification times play no part: other audio under the same names (a corpus replaced in place, its times kept)
    gets a new cache file, never the features of the old one."""
    from ..outputs import audio_digests

    params: dict[str, Any] = {"model": cfg.model, "sr": cfg.sr, "duration": cfg.duration}
    if cfg.model == "cnn":
        params.update(n_fft=cfg.n_fft, hop_length=cfg.hop_length, n_mels=cfg.n_mels, top_db=cfg.top_db)
        if (cfg.fmin, cfg.fmax) != (0.0, None):  # the full band keeps the keys of caches written before fmin/fmax
            params.update(fmin=cfg.fmin, fmax=cfg.fmax)
        if cfg.normalization != "none":  # the plain log-mel, normalised when read
            params.update(plain_log_mel=True)
    files = audio_digests([u.audio_path for u in utterances])
    blob = json.dumps([params, files, "content"], sort_keys=True).encode("utf-8")
    return hashlib.sha1(blob).hexdigest()[:12]


#: The kind of a baseline feature cache folder (:func:`cnnrnn.outputs.claim_folder`): ``<out>/cache`` or
#: ``--cache-dir``.
CACHE_KIND = "baselines feature cache"
_CACHE_FILE = re.compile(r"(ann|cnn)_[0-9a-f]{12}\.(npy|json)")


def is_feature_cache(folder: Path) -> bool:
    """Whether ``folder`` holds a baseline feature cache written before folder markers existed: an
    ``ann_<key>.npy`` / ``cnn_<key>.npy`` (or its ``.json`` index)."""
    try:
        return folder.is_dir() and any(_CACHE_FILE.fullmatch(p.name) for p in folder.iterdir())
    except OSError:
        return False


def claim_cache(cache_dir: str | Path, write: bool = True) -> Path:
    """Claim ``cache_dir`` as a baseline feature cache (:func:`cnnrnn.outputs.claim_folder`, kind
    :data:`CACHE_KIND`): new, empty, or a baseline feature cache already; with ``write`` false only check it
    (nothing is created or written).

    Raises:
        cnnrnn.outputs.OutputFolderError: ``cache_dir`` holds other files, or is another command's folder.
        cnnrnn.artifacts.NotWritableError: ``cache_dir`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(cache_dir, CACHE_KIND, recognise=is_feature_cache, write=write)


def build_cache(utterances: Sequence[Utterance], cfg: BaselineConfig, cache_dir: str | Path,
                progress: bool = True) -> tuple[FeatureCache, dict[str, Any]]:
    """Decode and resample every clip once into ``<cache_dir>/<model>_<key>.npy`` (+ ``.json`` index).

    The key hashes the feature settings and every file's content (:func:`_cache_key`), so a rerun (or another
    fold) with the same clips reuses the file and other audio rebuilds it. ``cache_dir`` is claimed first
    (:func:`cnnrnn.outputs.claim_folder`, kind :data:`CACHE_KIND`): a new or empty folder, or a baseline feature
    cache. The ``.npy`` is streamed to disk row by row and renamed into place when complete
    (:func:`cnnrnn.artifacts.atomic_write`), then the index is written.

    Args:
        utterances: row ``i`` of the cache is ``utterances[i]``.
        cfg: feature settings (``model``, ``sr``, ``duration``, spectrogram parameters).
        cache_dir: folder of the cache files.

    Returns:
        ``(cache, index)``; ``index`` has ``ids``, ``ok`` (one bool per row: unusable clips are zero rows with
        ``ok`` false), ``skipped`` (``{reason: [id, ...]}``, e.g. ``empty``), ``file``, ``reused`` and
        ``seconds``.

    Raises:
        cnnrnn.outputs.OutputFolderError: ``cache_dir`` holds other files, or is another command's folder.
    """
    from tqdm import tqdm

    claim_cache(cache_dir)
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
                  batch_size: int = 32, shuffle: bool = False, seed: int = 0, transform=None):
    """A ``tf.data`` pipeline that reads batches of cache rows (``tf.numpy_function`` + ``os.pread``).

    ``transform(rows, x)`` (e.g. :func:`normalizer`), if given, maps each batch read to the model input (same
    shape, float32).

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

    def read(batch_rows):
        x = cache.read(batch_rows)
        return x if transform is None else transform(batch_rows, x).astype(np.float32)

    def load(batch_rows, batch_y):
        x = tf.ensure_shape(tf.numpy_function(read, [batch_rows], tf.float32), shape)
        return x if y is None else (x, batch_y)

    return ds.batch(batch_size).map(load, num_parallel_calls=tf.data.AUTOTUNE).prefetch(2)


def corpus_arrays(utterances: Sequence[Utterance], labels: Sequence[str]) -> tuple[np.ndarray, list, list]:
    """``(y, speakers, ids)`` of the utterances: ``(N,) int32`` codes (index in ``labels``), speaker names
    (``None`` when unknown) and ids.

    Raises:
        KeyError: an utterance's class is not in ``labels``.
    """
    code = {name: i for i, name in enumerate(labels)}
    return (np.asarray([code[u.emotion] for u in utterances], dtype=np.int32),
            [u.speaker for u in utterances], [u.id for u in utterances])


# --------------------------------------------------------------------------- split
def split_rows(y: np.ndarray, groups: Sequence[str | None], rows: np.ndarray, labels: Sequence[str],
               cfg: BaselineConfig) -> dict[str, Any]:
    """Seeded train/validation split of the usable cache ``rows``, by the core splitters.

    * ``random``: :class:`cnnrnn.splits.PerSessionSplit` ``(val_size, seed)`` without groups, i.e.
      ``train_test_split(test_size=val_size, random_state=seed, stratify=y)`` (scikit-learn), a plain seeded
      shuffle when a class has fewer than 2 clips or the validation part cannot hold one of each;
    * ``speaker`` with ``holdout_speaker``: that speaker's fold of :class:`cnnrnn.splits.LeaveOneSpeakerOut`
      (their clips are the validation set);
    * ``speaker`` without: fold 0 of :class:`cnnrnn.splits.SpeakerFolds` ``(round(1 / val_size), seed)``
      (speaker-disjoint, stratified by class).

    A validation clip whose class has no training clip cannot be learnt: it is dropped from the validation
    set and counted in ``dropped`` (``{label: n}``), and a warning is logged.

    Args:
        y: ``(N,) int`` class codes of every cache row; ``groups``: the ``N`` speakers (``None`` = unknown).
        rows: the usable rows (indices into ``y``).
        labels: class names in code order.
        cfg: gives ``split``, ``holdout_speaker``, ``val_size`` and ``seed``.

    Returns:
        ``{'train': rows, 'val': rows, 'dropped': {...}, 'stratified': bool, 'val_speakers': [...],
        'spec': {scheme, folds, fold, seed, ...}}`` (``spec`` is what the run manifest records).

    Raises:
        SplitError: speaker split without a speaker for every clip, unknown ``holdout_speaker``, too few
            speakers, or an empty train or validation part.
    """
    rows = np.asarray(rows, dtype=np.int64)
    y = np.asarray(y)
    tr_i, va_i, spec = holdout_split(y[rows], [groups[r] for r in rows], scheme=cfg.split,
                                     holdout_speaker=cfg.holdout_speaker, test_size=cfg.val_size, seed=cfg.seed)
    stratified = spec.pop("stratified", False)
    tr, va = rows[tr_i], rows[va_i]
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
            "val_speakers": val_speakers, "spec": spec}
