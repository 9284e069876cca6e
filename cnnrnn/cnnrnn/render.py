"""Stage 2 of the CNNRNN job, ``spectrograms``: every utterance's audio → ``spectrograms/<id>.png`` (in parallel
worker processes, resumably, keyed by the audio's content fingerprint), the data pickles, and in the same pass the
packed image arrays (:mod:`cnnrnn.cnnrnn.packed`)."""
from __future__ import annotations

import logging
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import artifacts as A
from ..audio import WORKER_DIED, AudioError, map_chunks
from ..corpora.base import CorpusError, id_path
from ..features import SpectrogramConfig, read_png
from .config import CnnrnnConfig, load_config
from .packed import PACKED_FILE, _PackLayout, check_disk_space, npy_header, read_packed_manifest
from .run_folder import SOURCES_FILE, claim_run, record_config
from .speed import COPIES_KEY, FACTORS_KEY, METHOD_KEY, copy_items, copy_stats

log = logging.getLogger("cnnrnn.cnnrnn.data")


@dataclass
class ExtractReport:
    """Outcome of :func:`extract_spectrograms`.

    Attributes:
        written: ids rendered in this run.
        existing: ids whose PNG was already there (resumed run).
        failed: reason → ids skipped (``unreadable``, ``empty``, ``silent``, ...).
    """

    written: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    failed: dict[str, list[str]] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> set[str]:
        """The ids whose PNG exists now: written by this run or kept from an earlier one."""
        return set(self.written) | set(self.existing)

    def to_dict(self) -> dict[str, Any]:
        """The counts (written, existing, failed), the failed ids by reason and each failure's message, as JSON."""
        return {
            "n_written": len(self.written), "n_existing": len(self.existing),
            "n_failed": sum(len(v) for v in self.failed.values()),
            "failed": self.failed, "errors": self.errors,
        }


class _RowWriter:
    """Writes images into rows of ``.npy`` files made by :func:`create_rows_file`, with ``os.pwrite``: no memory
    map, so the rows written do not stay in this process' memory. A row of an ``(..., H, W, 3)`` file is one
    ``(H, W, 3)`` image; the leading axes are flattened (row ``c * N + i`` of an ``(F, N, H, W, 3)`` file)."""

    def __init__(self):
        self._files: dict[str, tuple[int, int, tuple[int, ...], int]] = {}

    def _open(self, path: str) -> tuple[int, int, tuple[int, ...], int]:
        if path not in self._files:
            shape, _, offset = npy_header(path)
            fd = os.open(path, os.O_WRONLY)
            self._files[path] = (fd, offset, tuple(shape[-3:]), int(np.prod(shape[:-3], dtype=np.int64)))
        return self._files[path]

    def row_shape(self, path: str) -> tuple[int, ...]:
        return self._open(path)[2]

    def put(self, target: tuple[str, int], image: np.ndarray) -> None:
        path, row = target
        fd, offset, shape, n_rows = self._open(path)
        if image.shape != shape or image.dtype != np.uint8 or not 0 <= row < n_rows:
            raise ValueError(f"{path}: cannot put a {image.dtype} image of shape {image.shape} in row {row} of "
                             f"{n_rows} rows of {shape} uint8")
        data = memoryview(np.ascontiguousarray(image)).cast("B")
        pos = offset + row * len(data)
        while len(data):
            written = os.pwrite(fd, data, pos)
            data, pos = data[written:], pos + written

    def close(self) -> None:
        for fd, *_ in self._files.values():
            os.close(fd)
        self._files.clear()


def _raise_if_disk_full(exc: BaseException) -> None:
    """A full disk stops the stage (it is no property of one file): re-raise ``ENOSPC``/``EDQUOT``."""
    import errno

    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise exc


def _render_chunk(chunk: list[tuple], cfg: SpectrogramConfig, stats=None) -> list[tuple[str, str | None, str]]:
    """The work of :func:`extract_spectrograms` on one chunk of files, in a pool worker (or in-process).

    Every item is ``(id, audio, png, speaker, speed, speed_method, read, row)``: ``read`` items already have their
    PNG, which is read into ``row`` (rendered again when it is unreadable or of another size); the others are
    loaded and cut to ``cfg.duration``, their log-mels computed in one batch (:func:`cnnrnn.features.log_mels`), and
    each image written as its PNG and, when ``row`` (``(npy path, row)``) is given, into that packed row. Returns
    ``(id, None or skip reason, message)`` per item, in order. A full disk is raised, never counted as a skip.
    """
    from ..audio import change_speed, pad_or_trim
    from ..features import image_of_log_mel, load_clip, log_mels, write_png

    results: list[tuple[str, str | None, str] | None] = [None] * len(chunk)
    clips: list[tuple[int, np.ndarray]] = []
    writer = _RowWriter()
    try:
        for i, (uid, audio, png, speaker, speed, speed_method, read, row) in enumerate(chunk):
            try:
                if read:
                    image = _readable_png(png, writer.row_shape(row[0]))
                    if image is not None:
                        writer.put(row, image)
                        results[i] = (uid, None, "")
                        continue
                    if audio is None:
                        results[i] = (uid, "unreadable_image", f"{png}: not a readable image of the run's size")
                        continue
                y = load_clip(audio, cfg)
                if speed != 1.0:
                    y = change_speed(y, cfg.sr, speed, speed_method)
                clips.append((i, pad_or_trim(y, cfg.n_samples)))
            except AudioError as exc:
                results[i] = (uid, exc.reason, str(exc))
            except Exception as exc:  # keep the batch alive; report what broke
                _raise_if_disk_full(exc)
                results[i] = (uid, "error", f"{audio}: {type(exc).__name__}: {exc}")
        if clips:
            for (i, _), db in zip(clips, log_mels(np.stack([y for _, y in clips]), cfg)):
                uid, audio, png, speaker, _, _, _, row = chunk[i]
                try:
                    image = image_of_log_mel(db, cfg, speaker, stats)
                    write_png(image, png)
                    if row is not None:
                        writer.put(row, image)
                    results[i] = (uid, None, "")
                except Exception as exc:
                    _raise_if_disk_full(exc)
                    results[i] = (uid, "error", f"{audio}: {type(exc).__name__}: {exc}")
    finally:
        writer.close()
    return results  # type: ignore[return-value]


def _readable_png(png: str, shape: tuple[int, ...]) -> np.ndarray | None:
    """The PNG as ``(H, W, 3) uint8``, or ``None`` when it is missing, unreadable or not of ``shape``."""
    try:
        image = read_png(png)
    except ValueError:
        return None
    return image if image.shape == tuple(shape) else None


def extract_spectrograms(
    items: Iterable[tuple],
    out_dir: str | Path,
    cfg: SpectrogramConfig,
    *,
    stats=None,
    overwrite: bool = False,
    workers: int | None = None,
    progress: bool = True,
    chunk_size: int = 16,
    rows: Sequence[tuple[str | Path, int]] | None = None,
    clean: bool = True,
) -> ExtractReport:
    """Render ``<out_dir>/<id>.png`` for every ``(id, audio_path)``, in parallel, resumably.

    PNGs that already exist are kept (a rerun resumes an interrupted one);
    every PNG is written atomically, so none is ever half-written, and temp
    files an interrupted run left behind are removed. Bad audio
    is skipped and counted by reason, never fatal. The workers run in :func:`cnnrnn.audio.map_chunks`: they exit
    when this process dies, and a file whose worker dies (killed by the out-of-memory killer, a crash) is
    retried alone, then skipped with reason ``worker_died``. An id whose PNG would not be a plain file inside
    ``out_dir`` (:func:`cnnrnn.corpora.base.id_path`) is skipped with reason ``unsafe_id``; nothing is written.

    Each worker takes ``chunk_size`` files at a time: it loads them, computes their log-mels in one batch
    (:func:`cnnrnn.features.log_mels`) and writes the images; with ``rows`` it also writes each image into its row
    of a packed array, so that nothing has to decode the PNGs again (the ``pack`` stage's arrays).

    Args:
        items: ``(id, audio_path)`` pairs, ``(id, audio_path, speaker)`` triples, or
            ``(id, audio_path, speaker, speed, speed_method)`` for speed-perturbed copies
            (:func:`cnnrnn.cnnrnn.speed.copy_items`).
        out_dir: folder of the PNGs (created).
        cfg: spectrogram parameters.
        stats: :class:`cnnrnn.normalize.NormStats` for ``cfg.normalization`` ``global`` / ``speaker``
            (see :func:`normalization_stats`).
        overwrite: re-render existing PNGs (use when the config changed).
        workers: processes; default ``cfg.workers`` or one per core. 1 runs in-process; more, in a pool
            (:func:`cnnrnn.audio.map_chunks`) of at most one worker per chunk.
        progress: show a tqdm progress bar.
        chunk_size: files per task sent to a worker (and per log-mel batch).
        rows: one ``(npy path, row)`` per item: where its ``(H, W, 3) uint8`` image also goes, in an ``.npy`` made
            by :func:`create_rows_file` (a row of an ``(F, N, H, W, 3)`` file is ``c * N + i``). An existing PNG
            is then read into its row (and rendered again if it is unreadable or of another size). ``None``: PNGs
            only.
        clean: remove the temporaries an interrupted run left in ``out_dir`` first; ``False`` where other
            processes write ``out_dir`` at the same time (the shards, :mod:`cnnrnn.cnnrnn.shards`).

    Returns:
        An :class:`ExtractReport`.

    Raises:
        ValueError: ``rows`` not of the length of ``items``.
        OSError: the disk is full (``ENOSPC``): the stage cannot go on.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp") if clean else ():  # left by an interrupted run (artifacts.atomic_write)
        stale.unlink(missing_ok=True)
    items = [tuple(item) for item in items]
    if rows is not None and len(rows) != len(items):
        raise ValueError(f"rows: {len(rows)} targets for {len(items)} items")
    report = ExtractReport()
    todo = []
    for k, item in enumerate(items):
        uid, audio, speaker, speed, speed_method = item + (None, 1.0, "speed")[len(item) - 2:]
        row = None if rows is None else (str(rows[k][0]), int(rows[k][1]))
        try:
            png = id_path(out_dir, uid, ".png")  # never a path outside out_dir (readers skip such ids already)
        except CorpusError as exc:
            report.failed.setdefault("unsafe_id", []).append(uid)
            report.errors[uid] = str(exc)
            continue
        existing = png.is_file() and not overwrite
        if existing:
            report.existing.append(uid)
        if not existing or row is not None:
            todo.append((uid, str(audio), str(png), speaker, speed, speed_method, existing, row))
    requested = workers or cfg.workers or os.cpu_count() or 1
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    bar = tqdm(total=len(todo), desc="spectrograms", unit="file", disable=not progress or not todo)
    existing_ids = set(report.existing)

    def collect(results):
        for uid, reason, message in results:
            if reason is None:
                if uid not in existing_ids:
                    report.written.append(uid)
                continue
            if uid in existing_ids:  # its PNG was unreadable and rendering it again failed
                report.existing.remove(uid)
            report.failed.setdefault(reason, []).append(uid)
            report.errors[uid] = message
        bar.update(len(results))

    def died(item, message):
        uid, audio = item[0], item[1]
        collect([(uid, WORKER_DIED, f"{audio}: {message}")])

    # more than one worker asked for: a pool even for one chunk, so a file that kills its worker (a rerun that
    # resumes with that file alone) never takes this process with it
    map_chunks(_render_chunk, chunks, workers=max(1, min(requested, len(chunks))), isolate=requested > 1,
               on_result=collect, on_died=died, args=(cfg, stats))
    bar.close()
    n_failed = sum(len(v) for v in report.failed.values())
    if n_failed:
        log.warning("spectrograms: skipped %d file(s): %s", n_failed,
                    {k: len(v) for k, v in report.failed.items()})
    return report


def load_images(paths: Sequence[str | Path], size: Sequence[int] | None = None, progress: bool = True) -> np.ndarray:
    """Read PNGs into one ``(N, H, W, 3) uint8`` BGR array.

    Args:
        paths: image files.
        size: expected ``[H, W]``; default: the first image's size.
        progress: show a tqdm progress bar.

    Raises:
        ValueError: an image is unreadable or its size differs from ``size``.
    """
    from tqdm import tqdm

    if not paths:
        h, w = size or (1, 1)
        return np.zeros((0, h, w, 3), np.uint8)
    first = read_png(paths[0])
    h, w = (int(size[0]), int(size[1])) if size else first.shape[:2]
    out = np.empty((len(paths), h, w, 3), np.uint8)
    for i, p in enumerate(tqdm(paths, desc="pack", unit="img", disable=not progress)):
        image = first if i == 0 else read_png(p)
        if image.shape[:2] != (h, w):
            raise ValueError(f"{p}: image is {image.shape[1]}x{image.shape[0]} (WxH), expected {w}x{h}")
        out[i] = image
    return out


NORM_FILE = "normalization.json"


def normalization_stats(items: Sequence[tuple], cfg: SpectrogramConfig, reference: Sequence[bool],
                        progress: bool = True):
    """Per-speaker and global log-mel statistics (per mel band) for ``cfg.normalization`` ``speaker``/``global``
    (and ``utterance`` for ``kind: yamnet``, whose z-scores are mapped back to the global statistics).

    Every item's log-mel (:func:`cnnrnn.features.audio_log_mel`) is computed once; a speaker's statistics use
    all of that speaker's items, test speakers included (their unlabelled audio: a transductive choice that the
    run reports), and the global ones only the ``reference`` (training) items (:func:`cnnrnn.normalize.fit`).
    Unusable audio is left out here and skipped again, counted, when rendering.

    Args:
        items: ``(id, audio_path, speaker)`` triples. reference: one flag per item.

    Returns:
        :class:`cnnrnn.normalize.NormStats`, or ``None`` for the modes that need none.
    """
    from ..audio import load_each
    from ..features import audio_log_mel
    from ..normalize import fit

    if not cfg.uses_stats:
        return None
    kept, mels, _ = load_each([a for _, a, _ in items], lambda p: audio_log_mel(p, cfg), desc="statistics",
                              progress=progress)
    return fit([m.T for m in mels], [items[i][2] for i in kept], reference=[reference[i] for i in kept])


def spectrograms(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 2: render ``spectrograms/<id>.png``, write ``data_train.pickle`` / ``data_test.pickle`` and, in the
    same pass, the packed image arrays (``train_images.npy`` / ``test_images.npy``, :data:`IMAGES_FILES`).

    The data pickles are dicts of lists ``{'id', 'path', 'emotion', 'speaker',
    'session'}``: ``path`` is the PNG path, ``emotion`` the int code from
    ``labels.json``. Files whose audio is bad are skipped, counted in
    ``spectrogram_report.json`` and left out of the pickles. If the
    spectrogram config changed since the PNGs were made, they are re-rendered.

    Every image also goes into its row of the split's packed array (``(N, H, W, 3) uint8``, the rows of the data
    pickle, read memory-mapped by ``train``; :data:`PACKED_FILE` records their shapes), so ``pack`` never decodes a
    PNG again. The rows are written into temporary files and renamed when complete; a rerun whose PNGs all exist and
    whose arrays are current writes none.

    With ``train.speed_perturb``, every *train* utterance also gets ``spectrograms/<id>__speed0.9.png`` (one
    per factor, :mod:`cnnrnn.cnnrnn.speed`), listed per factor under ``speed_copies`` in
    ``data_train.pickle`` (with ``speed_factors`` and ``speed_method``), and packed in :data:`COPIES_FILE`
    ``(n_factors, N, H, W, 3)``; the test split gets none.

    The stage in N parts (``cnnrnn spectrograms --shard K/N``) is :func:`cnnrnn.cnnrnn.shards.render_shard`.

    Raises:
        ValueError: a split (train or test) that has files keeps none of them (every file skipped); the message
            gives the skip counts by reason. The report and the (empty) pickles are written first.
        cnnrnn.outputs.FolderInUseError: the stage, or a shard of it (:func:`check_no_shard_running`), is running.
        DiskSpaceError: not enough free disk space for the packed arrays (checked before anything is written).
    """
    from ..outputs import writing_stage

    cfg, out = load_config(config), Path(out)
    claim_run(out, create=False)
    check_no_shard_running(out, "render the spectrograms unsharded")
    png_dir = out / A.SPECTROGRAM_DIR
    with writing_stage(out, "spectrograms", [(out, _SPECTROGRAM_OUTPUTS), (png_dir, None)]) as n_leftovers:
        return _spectrograms(out, cfg, progress) | {"leftovers_removed": n_leftovers}


#: The files the spectrograms stage writes in the run folder (their temporaries are its own).
_SPECTROGRAM_OUTPUTS = ("train_images.npy", "test_images.npy", "train_speed_copies.npy", "data_train.pickle",
                        "data_test.pickle", "packed.json", "spectrogram_report.json")


def check_no_shard_running(out: str | Path, doing: str) -> None:
    """Refuse to ``doing`` while a shard of ``out`` runs (``cnnrnn spectrograms --shard K/N`` holds the lock
    ``spectrograms.shard-K-of-N``, :func:`cnnrnn.outputs.stage_lock`).

    Raises:
        cnnrnn.outputs.FolderInUseError: a shard's lock is held (names it, its host and PID).
    """
    from ..outputs import STATE_DIR, FolderInUseError, holder

    locks = Path(out) / STATE_DIR / "locks"
    for lock in sorted(locks.glob("spectrograms.shard-*.lock")) if locks.is_dir() else ():
        info = holder(out, "spectrograms", lock.stem.split(".", 1)[1])
        if info is not None:
            raise FolderInUseError(f"cannot {doing}: a shard of {out} is running ({lock.stem.split('.', 1)[1]} on "
                                   f"host {info.get('host', '?')}, PID {info.get('pid', '?')}); wait for it to end")


#: The stamp of the settings the PNGs were made with (:func:`_png_settings`), in the PNG folder.
SPEC_FILE = "spectrogram_config.json"


def _png_settings(cfg: CnnrnnConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(spec, settings)``: what the PNGs depend on (the spectrogram settings but ``workers`` and
    ``max_audio_seconds``, a memory guard: changing it re-renders nothing), and that with the speed perturbation."""
    spec = {k: v for k, v in cfg.spectrogram.__dict__.items() if k != "max_audio_seconds"} | {"workers": None}
    if spec.get("render") == SpectrogramConfig.render:  # the default render: stamps from before it existed match
        del spec["render"]
    return spec, {"spectrogram": spec, "speed_perturb": [list(cfg.train.speed_perturb),
                                                         cfg.train.speed_perturb_method]}


def _stage_items(out: Path, cfg: CnnrnnConfig) -> tuple[dict[str, list[dict]], list[tuple], list[bool], list[tuple]]:
    """``(records, items, reference, copies)`` of the split in ``out``: the train and test records of
    ``*_audio.json``, their ``(id, audio_path, speaker)`` items (train first), one flag per item (a train one), and
    the speed-perturbed copies of the train split (:func:`cnnrnn.cnnrnn.speed.copy_items`, factor-major)."""
    records = {part: A.load_json(out / A.AUDIO_FILES[part]) for part in ("train", "test")}
    all_items = [(r["id"], r["audio_path"], r.get("speaker")) for part in records.values() for r in part]
    reference = [part == "train" for part, recs in records.items() for _ in recs]
    return records, all_items, reference, copy_items(records["train"], cfg.train)


def _make_stats(all_items: list[tuple], copies: list[tuple], reference: list[bool], cfg: CnnrnnConfig,
                progress: bool):
    """The run's :class:`cnnrnn.normalize.NormStats` (:func:`normalization_stats`, with the copies' pseudo-speakers
    for ``speaker`` normalisation)."""
    stats = normalization_stats(all_items, cfg.spectrogram, reference, progress)
    if copies and cfg.spectrogram.normalization == "speaker":
        stats = copy_stats(stats, copies, cfg.spectrogram, progress)  # pseudo-speakers of the copies
    return stats


def _spectrograms(out: Path, cfg: CnnrnnConfig, progress: bool, *, stats=None,
                  sources: dict[str, str | None] | None = None) -> dict[str, Any]:
    """The work of :func:`spectrograms`; ``pack`` calls it to merge complete shards, with the statistics the shards
    used (``stats``, never made again here) and the audio fingerprints it has just read (``sources``)."""
    png_dir = out / A.SPECTROGRAM_DIR
    stamp = png_dir / SPEC_FILE
    spec, settings = _png_settings(cfg)
    overwrite = stamp.is_file() and A.load_json(stamp) != spec
    if overwrite:
        log.warning("spectrogram config changed since the PNGs in %s were made: re-rendering all", png_dir)
    records, all_items, reference, copies = _stage_items(out, cfg)
    sources = _audio_sources(all_items + copies) if sources is None else sources
    layout = _PackLayout(records, [c[0] for c in copies], cfg.spectrogram.image_size,
                         settings | {"sources": [sources.get(r["id"]) for recs in records.values() for r in recs]})
    packed = read_packed_manifest(out)
    current = not overwrite and layout.made(out, packed)
    if not current:
        check_disk_space(out, layout.nbytes, "the packed image arrays (train_images.npy, test_images.npy)")
    _forget_stale_images(png_dir, sources)
    if stats is None and cfg.spectrogram.uses_stats:
        if (png_dir / NORM_FILE).is_file() and not overwrite and (
                not [i for i in all_items + copies if not (png_dir / f"{i[0]}.png").is_file()]):
            from ..normalize import NormStats

            stats = NormStats.from_dict(A.load_json(png_dir / NORM_FILE))
        else:
            stats = _make_stats(all_items, copies, reference, cfg, progress)
            overwrite = True  # statistics made now: every image must use them
            current = False
            A.save_json(stats.to_dict(), png_dir / NORM_FILE)
    report = first = None
    if current:  # the arrays hold every PNG: render what is missing (files skipped before) without them
        report = first = extract_spectrograms(all_items + copies, png_dir, cfg.spectrogram, stats=stats,
                                              progress=progress)
        if report.written or layout.kept_digests(report.ok) != {p: packed[p]["ids_sha1"] for p in layout.parts
                                                                 if packed.get(p)}:
            current = False  # something new: the arrays are made again (the PNGs read back)
    if not current:
        check_disk_space(out, layout.nbytes, "the packed image arrays (train_images.npy, test_images.npy)")
        (out / PACKED_FILE).unlink(missing_ok=True)  # the arrays are about to change
        with layout.staging(out) as rows:
            report = extract_spectrograms(all_items + copies, png_dir, cfg.spectrogram, stats=stats,
                                          overwrite=overwrite, progress=progress, rows=rows)
            packed = {"pickle": packed.get("pickle", True), **layout.finish(out, report.ok)}
        if first is not None:  # what the first pass rendered was read back by the second
            new = set(first.written)
            report.written = first.written + report.written
            report.existing = [uid for uid in report.existing if uid not in new]
    A.save_json(spec, stamp)
    ok = report.ok
    summary: dict[str, Any] = {"spectrograms": report.to_dict(), "png_dir": str(png_dir),
                               "normalization": cfg.spectrogram.normalization}
    if stats is not None:
        summary["normalization"] = {"file": str(png_dir / NORM_FILE), "speakers": sorted(stats.speakers),
                                    "fallback_to_global": stats.fallback,
                                    "transductive": cfg.spectrogram.normalization == "speaker"}
    reason_of = {uid: reason for reason, ids in report.failed.items() for uid in ids}
    n_train = len(records["train"])  # copies are factor-major: copies[j::n_train] are record j's
    copy_ids = {r["id"]: [c[0] for c in copies[j::n_train]] for j, r in enumerate(records["train"])}
    for part, recs in records.items():
        kept = [r for r in recs if r["id"] in ok and all(c in ok for c in copy_ids.get(r["id"], ()))]
        table = {
            "id": [r["id"] for r in kept],
            "path": [str((png_dir / f"{r['id']}.png").resolve()) for r in kept],
            "emotion": [int(r["label"]) for r in kept],
            "speaker": [r.get("speaker") for r in kept],
            "session": [r.get("session") for r in kept],
        }
        if part == "train" and copies:
            table[COPIES_KEY] = [[str((png_dir / f"{copy_ids[r['id']][c]}.png").resolve()) for r in kept]
                                 for c in range(len(cfg.train.speed_perturb))]
            table[FACTORS_KEY] = list(cfg.train.speed_perturb)
            table[METHOD_KEY] = cfg.train.speed_perturb_method
            summary["speed_perturb"] = {"factors": table[FACTORS_KEY], "method": table[METHOD_KEY],
                                        "n_copies": len(kept) * len(table[FACTORS_KEY])}
        A.save_pickle(table, out / A.DATA_FILES[part])
        summary[part] = {"n": len(kept), "skipped": len(recs) - len(kept),
                         "skipped_by_reason": dict(sorted(Counter(
                             reason_of[r["id"]] for r in recs if r["id"] in reason_of).items()))}
        if packed.get(part):
            summary[part]["images"] = str(out / packed[part]["images"]["file"])
    A.save_json(packed, out / PACKED_FILE)  # last: it vouches for the arrays and the data pickles together
    A.save_json(summary, out / "spectrogram_report.json")
    empty = [part for part, recs in records.items() if recs and not summary[part]["n"]]
    if empty:
        raise ValueError("spectrograms: no usable audio left in the " + " and the ".join(
            f"{part} split (0 of {len(records[part])} file(s); skipped: "
            + ", ".join(f"{k} {v}" for k, v in summary[part]["skipped_by_reason"].items()) + ")" for part in empty)
            + f"; see {out / 'spectrogram_report.json'}")
    record_config(out, cfg)
    return summary


def _audio_sources(items: Sequence[tuple]) -> dict[str, str | None]:
    """``{id: content fingerprint}`` of the audio of every ``(id, audio_path, ...)`` item
    (:func:`cnnrnn.outputs.file_digest`; ``None``: unreadable)."""
    from ..outputs import audio_digests

    return dict(zip([item[0] for item in items], audio_digests([item[1] for item in items])))


def remove_stale_images(png_dir: Path, current: dict[str, str | None], known: dict,
                        everything: bool = False) -> list[str]:
    """Remove the PNG of every id of ``current`` whose audio fingerprint differs from the one ``known`` records
    (or is unknown, ``None``), or of every id with ``everything``; return the ids whose PNG was removed.

    ``current`` and ``known`` map an utterance id to its audio's content fingerprint
    (:func:`cnnrnn.outputs.file_digest`). An id that is not a safe file name has no PNG and is passed over."""
    stale = []
    for uid, sha in current.items():
        if not everything and sha is not None and known.get(uid) == sha:
            continue
        try:
            png = id_path(png_dir, uid, ".png")
        except CorpusError:
            continue
        if png.is_file():
            png.unlink()
            stale.append(uid)
    return stale


def _forget_stale_images(png_dir: Path, current: dict[str, str | None]) -> None:
    """Remove the PNGs not made from the audio their id names now, and record ``current``.

    A PNG is kept only when ``spectrograms/sources.json`` (:data:`SOURCES_FILE`) records the same content
    fingerprint for its id as its audio has now (``current``, :func:`_audio_sources`); any other PNG (other audio
    under the same id, or one made before fingerprints were recorded) is removed, so it is rendered again. The new
    fingerprints are recorded before anything is rendered."""
    path = png_dir / SOURCES_FILE
    try:
        known = A.load_json(path) if path.is_file() else {}
    except ValueError:
        known = {}
    known = known if isinstance(known, dict) else {}
    stale = remove_stale_images(png_dir, current, known)
    if stale:
        log.warning("spectrograms: %d image(s) in %s were not made from the audio their id names now (other audio, "
                    "or made before audio fingerprints were recorded): rendering them again, e.g. %s", len(stale),
                    png_dir, stale[0])
    png_dir.mkdir(parents=True, exist_ok=True)
    A.save_json({**known, **current}, path)
