"""Functionals inputs: openSMILE or Whisper features per file (cached), the split, and speaker-normalised matrices.

* :func:`extract`: one audio file → ``(D,) float32`` openSMILE functionals (``opensmile`` package,
  ``FeatureLevel.Functionals``), after :func:`cnnrnn.audio.load_audio` (mono, resampled to ``cfg.sr``);
  openSMILE failing on a file (an exception, or non-finite values, e.g. a clip shorter than its analysis
  window: "Segment too short, filling with NaN") raises :class:`cnnrnn.audio.AudioError` with reason
  ``opensmile_failed``, so callers count the file as skipped;
* for ``feature_set: whisper``, :func:`whisper_blocks`: the clip at 16 kHz → Whisper's log-mel
  (:func:`cnnrnn.whisper_features.whisper_log_mel`, at its own length or padded to ``whisper_pad_seconds``) →
  the frozen encoder (:func:`cnnrnn.models.whisper.pretrained_whisper`, loaded once per process) → the mean and
  std over encoder frames of every block, ``(n_layers + 1, 2 · width) float32``; :func:`extract` keeps the row
  of ``whisper_block`` (all rows when it is ``nested``). A clip over 30 s is a counted skip (``too_long``:
  ``cnnrnn predict`` cuts such files into 30 s windows), one under 20 ms too (``too_short``);
* :func:`cached_features` / :func:`extract_all`: one ``.npy`` per file and feature setting under
  ``<cache_dir>/<feature_set>_<sr>/`` (Whisper: ``whisper_<model>_<weights sha1>_<pad>/``, every block of the
  clip in one file, so the block and the weights file's content are part of the key), keyed by the file's
  content (:func:`cnnrnn.outputs.file_digest`, never its path or time), written
  atomically (:func:`cnnrnn.artifacts.atomic_write_bytes`); a rerun or another fold reads them back;
* :func:`split_items`: the seeded train/test split, made by the core splitters of :mod:`cnnrnn.splits`;
* :func:`normalised`: the feature matrix normalised by :mod:`cnnrnn.normalize`.
"""
from __future__ import annotations

import functools
import io
import logging
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import normalize
from ..artifacts import atomic_write_bytes
from ..audio import WORKER_DIED, AudioError, Clip, ClipTooShortError, load_audio, load_each, map_chunks
from ..splits import SplitError, holdout_split
from .config import NESTED, FunctionalsConfig
from .whisper import (WHISPER_MAX_SECONDS, WHISPER_SR, check_whisper_block, encoder, whisper_identity, whisper_sizes,
                      whisper_weights_path)

log = logging.getLogger("cnnrnn.functionals")

__all__ = ["CACHE_KIND", "SplitError", "cached_features", "cache_folder", "check_whisper_block", "claim_cache",
           "common_rate", "extract", "extract_all", "feature_shape", "is_feature_cache", "normalised", "smile",
           "split_items", "whisper_blocks", "whisper_identity", "whisper_sizes", "whisper_weights_path"]


@functools.lru_cache(maxsize=4)
def smile(feature_set: str):
    """The ``opensmile.Smile`` extractor of a feature set at the functionals level (one per process)."""
    import opensmile

    return opensmile.Smile(feature_set=getattr(opensmile.FeatureSet, feature_set),
                           feature_level=opensmile.FeatureLevel.Functionals)


def feature_names(feature_set: str) -> list[str]:
    """The openSMILE names of the ``D`` functionals, in vector order."""
    return list(smile(feature_set).feature_names)


# --------------------------------------------------------------------------- Whisper
def whisper_blocks(path: str | Path | Clip, cfg: FunctionalsConfig) -> np.ndarray:
    """The frozen Whisper encoder's mean + std pooled block outputs of one clip.

    The clip is read at 16 kHz (:func:`cnnrnn.audio.load_audio`, soxr resampling), turned into Whisper's log-mel
    at its own length (or zero-padded to ``cfg.whisper_pad_seconds``) and encoded once; every block's output
    ``(frames / 2, width)`` is pooled to its mean then its standard deviation over frames.

    Args:
        path: an audio file or a :class:`cnnrnn.audio.Clip`.
        cfg: gives ``whisper_weights`` and ``whisper_pad_seconds``.

    Returns:
        ``(n_layers + 1, 2 · width) float32``: row 0 the convolutional stem, row k transformer block k.

    Raises:
        AudioError: as :func:`cnnrnn.audio.load_audio`; ``too_long``: over 30 s (Whisper's position table);
            ``too_short``: under 20 ms (one frame pair).
        cnnrnn.models.blocks.WeightsError: missing or broken weights (not a per-file skip).
    """
    from ..whisper_features import MIN_SAMPLES, mean_std, whisper_log_mel

    identity = whisper_identity(cfg)
    y, _ = load_audio(path, sr=WHISPER_SR)
    seconds = len(y) / WHISPER_SR
    if seconds > WHISPER_MAX_SECONDS:
        raise AudioError(f"{path}: {seconds:.1f} s is longer than Whisper's {WHISPER_MAX_SECONDS:.0f} s (its "
                         "position table): cut it first (cnnrnn predict cuts such files into 30 s windows)",
                         "too_long")
    if len(y) < MIN_SAMPLES:
        raise ClipTooShortError(f"{path}: {seconds * 1000:.1f} ms is shorter than one Whisper frame pair (20 ms)")
    mel = whisper_log_mel(y, pad_to_seconds=cfg.whisper_pad_seconds)
    outs = encoder(identity)(mel[None], training=False)
    return np.stack([mean_std(np.asarray(o)[0]) for o in outs]).astype(np.float32)


def feature_shape(cfg: FunctionalsConfig) -> tuple[int, ...]:
    """The shape of one file's features from :func:`extract`: ``(D,)``, or with a nested Whisper block
    ``(n_layers + 1, 2 · width)`` (every block)."""
    if cfg.is_whisper:
        sizes = whisper_sizes(cfg)
        return (sizes.n_layers + 1, 2 * sizes.width) if cfg.whisper_block == NESTED else (2 * sizes.width,)
    return (cfg.n_features,)


def _stored_shape(cfg: FunctionalsConfig) -> tuple[int, ...]:
    """The shape of one cache file: every Whisper block, or the openSMILE vector."""
    if cfg.is_whisper:
        sizes = whisper_sizes(cfg)
        return (sizes.n_layers + 1, 2 * sizes.width)
    return (cfg.n_features,)


def _select(x: np.ndarray, cfg: FunctionalsConfig) -> np.ndarray:
    """One file's stored features → what :func:`extract` returns (a Whisper block's row, or all of them)."""
    if cfg.is_whisper and cfg.whisper_block != NESTED:
        return x[int(cfg.whisper_block)]
    return x


def extract(path: str | Path, cfg: FunctionalsConfig) -> np.ndarray:
    """The openSMILE functionals (or the Whisper block features, :func:`whisper_blocks`) of one audio file.

    Args:
        path: an audio file (:data:`cnnrnn.audio.AUDIO_EXTENSIONS`), or a :class:`cnnrnn.audio.Clip`.
        cfg: gives ``feature_set`` and ``sr`` (``None``: the file's own rate), and the ``whisper_*`` keys.

    Returns:
        ``(cfg.n_features,) float32``; Whisper with ``whisper_block: nested``: ``(n_layers + 1, 2 · width)``.

    Raises:
        AudioError: missing, unreadable, empty, silent or non-finite audio (reasons of
            :func:`cnnrnn.audio.load_audio`), or ``opensmile_failed``: openSMILE raised or returned non-finite
            values (a clip too short for its analysis windows); Whisper: ``too_long`` / ``too_short``.
        cnnrnn.models.blocks.WeightsError: Whisper weights missing or broken.
    """
    if cfg.is_whisper:
        return _select(whisper_blocks(path, cfg), cfg)
    return _smile_features(path, cfg)


def _smile_features(path: str | Path, cfg: FunctionalsConfig) -> np.ndarray:
    """:func:`extract` of an openSMILE set."""
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
    """``<cache_dir>/<feature_set>_<sr or native>``: the folder of one feature setting's files; for Whisper
    ``<cache_dir>/whisper_<model>_<first 12 hex of the weights' sha1>_<pad seconds or native>``."""
    if cfg.is_whisper:
        ident = whisper_identity(cfg)
        pad = f"pad{cfg.whisper_pad_seconds:g}" if cfg.whisper_pad_seconds else "native"
        return Path(cache_dir) / f"whisper_{ident['model']}_{ident['sha1'][:12]}_{pad}"
    return Path(cache_dir) / f"{cfg.feature_set}_{cfg.sr or 'native'}"


def _cache_path(path: Path, folder: Path) -> Path:
    """The cache file of ``path``: its stem and its content fingerprint (:func:`cnnrnn.outputs.file_digest`), so
    other audio under the same name (a corpus replaced in place, its times kept) never reads another clip's
    features, and a moved corpus reads its own."""
    from ..outputs import file_digest

    return folder / f"{path.stem[:40]}_{file_digest(path)[:20]}.npy"


#: The kind of a functionals feature cache folder (:func:`cnnrnn.outputs.claim_folder`): ``<out>/cache`` or
#: ``--cache-dir``.
CACHE_KIND = "functionals feature cache"


def is_feature_cache(folder: Path) -> bool:
    """Whether ``folder`` holds a functionals feature cache written before folder markers existed: a folder of one
    feature setting (``<feature_set>_<sr>``, ``whisper_<model>_<sha1>_<pad>``, :func:`cache_folder`)."""
    from .config import FEATURE_SETS

    try:
        return folder.is_dir() and any(p.is_dir() and any(p.name.startswith(f"{s}_") for s in FEATURE_SETS)
                                       for p in folder.iterdir())
    except OSError:
        return False


def claim_cache(cache_dir: str | Path) -> Path:
    """Claim ``cache_dir`` as a functionals feature cache root (:func:`cnnrnn.outputs.claim_folder`, kind
    :data:`CACHE_KIND`): new, empty, or a functionals feature cache already.

    Raises:
        cnnrnn.outputs.OutputFolderError: ``cache_dir`` holds other files, or is another command's folder.
        cnnrnn.artifacts.NotWritableError: ``cache_dir`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(cache_dir, CACHE_KIND, recognise=is_feature_cache)


def cached_features(path: str | Path, cfg: FunctionalsConfig, cache_dir: str | Path | None) -> tuple[np.ndarray, bool]:
    """:func:`extract`, read from or written to the per-file cache.

    Args:
        path: an audio file, or a :class:`cnnrnn.audio.Clip` (never cached).
        cfg: feature settings.
        cache_dir: cache root (``None``: no cache).

    Returns:
        ``(features, reused)``: ``(D,) float32`` (:func:`feature_shape`). A Whisper cache file holds every block
        of the clip; the block is taken from it.

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
            if x.shape == _stored_shape(cfg) and x.dtype == np.float32:
                return _select(x, cfg), True
        except (OSError, ValueError) as exc:
            log.warning("ignoring unreadable cache file %s (%s)", target, exc)
    x = whisper_blocks(path, cfg) if cfg.is_whisper else _smile_features(path, cfg)
    buf = io.BytesIO()
    np.save(buf, x, allow_pickle=False)
    atomic_write_bytes(target, buf.getvalue(), fsync=False)
    return _select(x, cfg), False


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
        float32`` features (Whisper with ``whisper_block: nested``: ``(len(kept), n_layers + 1, 2 · width)``),
        ``{reason: [path, ...]}`` (``unreadable``, ``empty``, ``silent``, ``opensmile_failed``, ``too_long``,
        ...), and ``{"reused", "extracted", "seconds", "cache"}``.

    Raises:
        cnnrnn.models.blocks.WeightsError: Whisper weights missing or broken (checked before any file).
        cnnrnn.outputs.OutputFolderError: ``cache_dir`` holds other files or is another command's folder (it is
            claimed first, kind :data:`CACHE_KIND`).
    """
    if cache_dir is not None:
        claim_cache(cache_dir)
    if cfg.is_whisper:
        whisper_identity(cfg)  # a missing weights file is one clear error, not a skip per file
    elif opensmile_unsafe_here():
        return _extract_in_child(paths, cfg, cache_dir)
    reused = [0]

    def one(p: Path) -> np.ndarray:
        x, hit = cached_features(p, cfg, cache_dir)
        reused[0] += hit
        return x

    started = time.perf_counter()
    desc = "Whisper features" if cfg.is_whisper else f"{cfg.feature_set} functionals"
    kept, feats, skipped = load_each(list(paths), one, desc=desc, progress=progress)
    X = np.stack(feats).astype(np.float32) if feats else np.zeros((0, *feature_shape(cfg)), np.float32)
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
