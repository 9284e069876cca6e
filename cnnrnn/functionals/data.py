"""Functionals inputs: openSMILE features per file (cached), the split, and speaker-normalised matrices.

* :func:`extract`: one audio file → ``(D,) float32`` openSMILE functionals (``opensmile`` package,
  ``FeatureLevel.Functionals``), after :func:`cnnrnn.audio.load_audio` (mono, resampled to ``cfg.sr``);
  openSMILE failing on a file (an exception, or non-finite values, e.g. a clip shorter than its analysis
  window: "Segment too short, filling with NaN") raises :class:`cnnrnn.audio.AudioError` with reason
  ``opensmile_failed``, so callers count the file as skipped;
* :func:`cached_features` / :func:`extract_all`: one ``.npy`` per file and feature setting under
  ``<cache_dir>/<feature_set>_<sr>/``, keyed by the file's resolved path, size and modification time, written
  atomically (:func:`cnnrnn.artifacts.atomic_write_bytes`); a rerun or another fold reads them back;
* :func:`split_items`: the seeded train/test split, made by the core splitters of :mod:`cnnrnn.splits`;
* :func:`normalised`: the feature matrix normalised by :mod:`cnnrnn.normalize`.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import normalize
from ..artifacts import atomic_write_bytes
from ..audio import WORKER_DIED, AudioError, Clip, load_audio, load_each, map_chunks
from ..splits import SplitError, holdout_split
from .config import FunctionalsConfig

log = logging.getLogger("cnnrnn.functionals")

__all__ = ["SplitError", "cached_features", "cache_folder", "common_rate", "extract", "extract_all", "normalised",
           "smile", "split_items"]


@functools.lru_cache(maxsize=4)
def smile(feature_set: str):
    """The ``opensmile.Smile`` extractor of a feature set at the functionals level (one per process)."""
    import opensmile

    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                           feature_level=opensmile.FeatureLevel.Functionals)


def feature_names(feature_set: str) -> list[str]:
    """The openSMILE names of the ``D`` functionals, in vector order."""
    return list(smile(feature_set).feature_names)


def extract(path: str | Path, cfg: FunctionalsConfig) -> np.ndarray:
    """The openSMILE functionals of one audio file.

    Args:
        path: an audio file (:data:`cnnrnn.audio.AUDIO_EXTENSIONS`), or a :class:`cnnrnn.audio.Clip`.
        cfg: gives ``feature_set`` and ``sr`` (``None``: the file's own rate).

    Returns:
        ``(cfg.n_features,) float32``.

    Raises:
        AudioError: missing, unreadable, empty, silent or non-finite audio (reasons of
            :func:`cnnrnn.audio.load_audio`), or ``opensmile_failed``: openSMILE raised or returned non-finite
            values (a clip too short for its analysis windows).
    """
    y, sr = load_audio(path, sr=cfg.sr)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Segment too short, filling with NaN." -> checked below
            values = smile(cfg.feature_set).process_signal(y, sr).to_numpy(dtype=np.float32)
    except Exception as exc:  # openSMILE's own errors (RuntimeError, OpenSmileException, ...)
        raise AudioError(f"{path}: openSMILE failed ({exc})", "opensmile_failed") from exc
    if values.shape != (1, cfg.n_features) or not np.all(np.isfinite(values)):
        n_bad = int((~np.isfinite(values)).sum()) if values.size else cfg.n_features
        raise AudioError(f"{path}: openSMILE gave {values.shape} features, {n_bad} not finite "
                         f"({len(y) / sr:.3f} s of audio: too short for its analysis windows?)", "opensmile_failed")
    return values[0]


def common_rate(paths: Sequence[str | Path]) -> int | None:
    """The sample rate (Hz) shared by every readable file of ``paths`` (from the headers,
    ``soundfile.info``), or ``None`` when they differ or none is readable."""
    import soundfile as sf

    rates = set()
    for p in paths:
        try:
            rates.add(int(sf.info(str(p)).samplerate))
        except Exception:  # unreadable files are skipped later, by the extraction
            continue
    return rates.pop() if len(rates) == 1 else None


def cache_folder(cache_dir: str | Path, cfg: FunctionalsConfig) -> Path:
    """``<cache_dir>/<feature_set>_<sr or native>``: the folder of one feature setting's files."""
    return Path(cache_dir) / f"{cfg.feature_set}_{cfg.sr or 'native'}"


def _cache_path(path: Path, folder: Path) -> Path:
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode("utf-8")).hexdigest()[:20]
    return folder / f"{path.stem[:40]}_{key}.npy"


def cached_features(path: str | Path, cfg: FunctionalsConfig, cache_dir: str | Path | None) -> tuple[np.ndarray, bool]:
    """:func:`extract`, read from or written to the per-file cache.

    Args:
        path: an audio file, or a :class:`cnnrnn.audio.Clip` (never cached).
        cfg: feature settings.
        cache_dir: cache root (``None``: no cache).

    Returns:
        ``((D,) float32, reused)``.

    Raises:
        AudioError: as :func:`extract` (failures are not cached: a rerun tries the file again).
    """
    if isinstance(path, Clip):  # a waveform in memory: nothing to key a cache entry on
        return extract(path, cfg), False
    path = Path(path)
    if cache_dir is None or not path.is_file():
        return extract(path, cfg), False
    target = _cache_path(path, cache_folder(cache_dir, cfg))
    if target.is_file():
        try:
            x = np.load(target, allow_pickle=False)
            if x.shape == (cfg.n_features,) and x.dtype == np.float32:
                return x, True
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache file %s (%s)", target, exc)
    x = extract(path, cfg)
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue(), fsync=False)
    return x, False


def opensmile_unsafe_here() -> bool:
    """Whether openSMILE would crash in this process: its native library, loaded after TensorFlow's, corrupts the
    heap (``malloc(): invalid size``, then a segmentation fault; measured with opensmile 2.6 and TensorFlow 2.21).
    Loaded first, it works, TensorFlow or not."""
    import sys

    return "tensorflow" in sys.modules and "opensmile" not in sys.modules


def extract_all(paths: Sequence[str | Path], cfg: FunctionalsConfig, cache_dir: str | Path | None,
                progress: bool = True) -> tuple[list[int], np.ndarray, dict[str, list[str]], dict[str, Any]]:
    """Functionals of many files, each read from or written to the cache; unusable files are counted skips.

    In a process that has already loaded TensorFlow (a notebook, a fusion with a Keras model), the extraction
    runs in a fresh child process instead (:func:`opensmile_unsafe_here`), through
    :func:`cnnrnn.audio.map_chunks`: the child exits with this process, and a file whose child dies (a crash in
    openSMILE, the out-of-memory killer) is skipped with reason ``worker_died``.

    Returns:
        ``(kept, X, skipped, info)``: indices into ``paths`` of the usable files, their ``(len(kept), D)
        float32`` features, ``{reason: [path, ...]}`` (``unreadable``, ``empty``, ``silent``,
        ``opensmile_failed``, ...), and ``{"reused", "extracted", "seconds", "cache"}``.
    """
    if opensmile_unsafe_here():
        return _extract_in_child(paths, cfg, cache_dir)
    reused = [0]

    def one(p: Path) -> np.ndarray:
        x, hit = cached_features(p, cfg, cache_dir)
        reused[0] += hit
        return x

    started = time.perf_counter()
    kept, feats, skipped = load_each(list(paths), one, desc=f"{cfg.feature_set} functionals", progress=progress)
    X = np.stack(feats).astype(np.float32) if feats else np.zeros((0, cfg.n_features), np.float32)
    info = {"reused": reused[0], "extracted": len(kept) - reused[0], "seconds": round(time.perf_counter() - started, 2),
            "cache": str(cache_folder(cache_dir, cfg)) if cache_dir is not None else None}
    return kept, X, skipped, info


def _extract_chunk(chunk: list[tuple[int, str]], cfg: FunctionalsConfig, cache_dir) -> list[tuple]:
    """:func:`extract_all` of ``(index, path)`` items in a worker: ``[(global kept indices, X, skipped, info)]``."""
    kept, X, skipped, info = extract_all([p for _, p in chunk], cfg, cache_dir, progress=False)
    return [([chunk[i][0] for i in kept], X, skipped, info)]


def _extract_in_child(paths: Sequence[str | Path], cfg: FunctionalsConfig,
                      cache_dir) -> tuple[list[int], np.ndarray, dict[str, list[str]], dict[str, Any]]:
    """:func:`extract_all` in a spawned child process (a fresh one after a crash), chunk by chunk; same returns."""
    import multiprocessing

    started = time.perf_counter()
    items = [(i, p if isinstance(p, Clip) else str(p)) for i, p in enumerate(paths)]
    parts: list[tuple] = []
    died: dict[str, list[str]] = {}
    map_chunks(_extract_chunk, [items[i:i + 64] for i in range(0, len(items), 64)], workers=1, isolate=True,
               mp_context=multiprocessing.get_context("spawn"), on_result=parts.extend,
               on_died=lambda item, message: died.setdefault(WORKER_DIED, []).append(str(item[1])),
               args=(cfg, cache_dir))
    kept = [i for part in parts for i in part[0]]
    order = np.argsort(kept, kind="stable")
    X = np.concatenate([part[1] for part in parts] or [np.zeros((0, cfg.n_features), np.float32)])[order]
    skipped: dict[str, list[str]] = {}
    for part in parts + [((), None, died, {})]:
        for reason, files in part[2].items():
            skipped.setdefault(reason, []).extend(files)
    reused = sum(part[3]["reused"] for part in parts)
    info = {"reused": reused, "extracted": len(kept) - reused, "seconds": round(time.perf_counter() - started, 2),
            "cache": str(cache_folder(cache_dir, cfg)) if cache_dir is not None else None}
    return sorted(kept), X.astype(np.float32), skipped, info


def split_items(y: np.ndarray, groups: Sequence[str | None], cfg: FunctionalsConfig) -> dict[str, Any]:
    """Seeded train/test split of the usable items, by the core splitters.

    * ``random``: :class:`cnnrnn.splits.PerSessionSplit` ``(test_size, seed)`` without groups (stratified by
      class where the counts allow);
    * ``speaker`` with ``holdout_speaker``: that speaker's fold of :class:`cnnrnn.splits.LeaveOneSpeakerOut`;
    * ``speaker`` without: fold 0 of :class:`cnnrnn.splits.SpeakerFolds` ``(round(1 / test_size), seed)``.

    Args:
        y: ``(N,) int`` class codes; ``groups``: the ``N`` speakers (``None`` = unknown).
        cfg: gives ``split``, ``holdout_speaker``, ``test_size`` and ``seed``.

    Returns:
        ``{"train": idx, "test": idx, "spec": {scheme, folds, fold, seed, ...}, "test_speakers": [...]}``.

    Raises:
        SplitError: a speaker split without a speaker for every item, an unknown ``holdout_speaker``, too few
            speakers, or an empty part.
    """
    y = np.asarray(y)
    train, test, spec = holdout_split(y, groups, scheme=cfg.split, holdout_speaker=cfg.holdout_speaker,
                                      test_size=cfg.test_size, seed=cfg.seed)
    unseen = sorted(set(y[test].tolist()) - set(y[train].tolist()))
    if unseen:
        log.warning("test clips of %d class(es) without a training clip: they cannot be predicted right", len(unseen))
    test_speakers = sorted({str(groups[i]) for i in test if groups[i] is not None})
    return {"train": np.sort(train), "test": np.sort(test), "spec": spec, "test_speakers": test_speakers,
            "classes_without_training_clips": unseen}


def normalised(X: np.ndarray, speakers: Sequence[str | None], stats: normalize.NormStats | None,
               mode: str) -> tuple[np.ndarray, list[str]]:
    """``(N, D) float32`` features normalised by :func:`cnnrnn.normalize.apply_all`, and each row's source
    (:data:`cnnrnn.normalize.SOURCES`)."""
    out, sources = normalize.apply_all(np.asarray(X, np.float32), list(speakers), stats, mode)
    return np.asarray(out, np.float32), sources
