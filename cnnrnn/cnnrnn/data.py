"""Stages 1–3 of the CNNRNN job: split, spectrograms, pack. Each reads the previous stage's files.

====================  ============================================  ==========================================
stage                 reads                                         writes
====================  ============================================  ==========================================
:func:`split`         the corpus                                    train.json, test.json, train_audio.json,
                                                                    test_audio.json, labels.json, split_report.json
:func:`spectrograms`  \\*_audio.json, labels.json                    spectrograms/<id>.png, data_train.pickle,
                                                                    data_test.pickle, spectrogram_report.json
:func:`pack`          data_\\*.pickle, the PNGs                       train_final.pickle, test_final.pickle
====================  ============================================  ==========================================

The file names are the original CNNRNN code's. Every stage writes the config it ran with to ``config.json``
when it differs from the one there, so a later stage (or ``cnnrnn predict``) renders audio the same way.
Reruns resume: existing PNGs are kept when the audio they were made from is unchanged (its content fingerprint,
``spectrograms/sources.json``), and ``pack`` is skipped when its pickles are newer than their inputs.

Every stage claims the run folder first (:func:`claim_run`: a new or empty folder, or a CNNRNN run) and holds its
own lock while it writes (:func:`cnnrnn.outputs.stage_lock`); temporaries a killed run of the stage left are removed
when it starts again.
"""
from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import artifacts as A
from ..audio import WORKER_DIED, AudioError, map_chunks
from ..corpora.base import CorpusError, Utterance, id_path
from ..features import SpectrogramConfig, read_png
from .config import CnnrnnConfig, load_config
from .speed import COPIES_KEY, FACTORS_KEY, METHOD_KEY, copy_items, copy_stats

log = logging.getLogger("cnnrnn.cnnrnn.data")

NO_SESSION = "all"
#: The kind of folder a CNNRNN run is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "cnnrnn run"
#: The audio fingerprint of every PNG in ``spectrograms/`` (``{id: sha1}``, :func:`cnnrnn.outputs.file_digest`).
SOURCES_FILE = "sources.json"


#: Files only a CNNRNN run holds (not ``train.json`` or ``labels.json``, names a user's folder may hold too).
RUN_FILES = ("split_report.json", A.AUDIO_FILES["train"], A.DATA_FILES["train"], A.DATA_FILES["test"],
             A.FINAL_FILES["train"], "packed.json", "cv_report.json")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a CNNRNN run written before folder markers existed: one of :data:`RUN_FILES`, or a
    ``run.json`` of the cnnrnn family."""
    if any((folder / n).is_file() for n in RUN_FILES):
        return True
    try:
        return A.load_json(folder / "run.json").get("family") == "cnnrnn"
    except (OSError, ValueError, AttributeError):
        return False


def claim_run(out: str | Path, create: bool = True, write: bool = True) -> Path:
    """Claim ``out`` as a CNNRNN run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already.
    ``write=False`` only checks (nothing is created).

    Raises:
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``out`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(out, RUN_KIND, recognise=is_run_folder, create=create, write=write)


def record_config(out: Path, cfg: CnnrnnConfig) -> None:
    """Write ``<out>/config.json`` unless it already holds exactly this config (one write per run)."""
    path = out / A.CONFIG_FILE
    if path.is_file():
        try:
            if A.load_json(path) == cfg.to_dict():
                return
        except ValueError:
            pass
    cfg.save(path)


# --------------------------------------------------------------------------- stage 1: split
@dataclass
class SplitResult:
    """A per-session split.

    Attributes:
        train, test: ``{session: [Utterance, ...]}`` in a stable order.
        labels: label names; the integer code of a label is its index.
        report: counts (per session and set, ties left out, stratified or not).
    """

    train: dict[str, list[Utterance]]
    test: dict[str, list[Utterance]]
    labels: list[str]
    report: dict[str, Any] = field(default_factory=dict)

    def flat(self, part: str) -> list[Utterance]:
        """All utterances of ``part`` (``train`` or ``test``), session by session."""
        return [u for utts in getattr(self, part).values() for u in utts]


def split_per_session(utterances: Sequence[Utterance], test_size: float = 0.2, seed: int = 42,
                      keep_ties: bool = False, labels: Sequence[str] | None = None,
                      corpus: str = "manifest", scheme: str = "session") -> SplitResult:
    """Split the corpus ``1 - test_size : test_size`` into train and test, grouped by session in the result.

    ``scheme="session"`` (the original CNNRNN code's): every session is split 8:2
    (:class:`cnnrnn.splits.PerSessionSplit`), so one speaker's utterances can land in train and in test.
    Utterances without a session count as one session (``"all"``). Inside a session the split is stratified
    by emotion when every label has at least two utterances and the test part can hold one of each;
    otherwise a plain seeded shuffle, and the report says so.

    ``scheme="speaker"``: whole speakers are held out over the corpus (fold 0 of
    :class:`cnnrnn.splits.SpeakerFolds` with ``round(1 / test_size)`` folds, stratified by emotion), so no
    speaker is in both parts: a speaker-independent test set.

    Args:
        utterances: corpus records.
        test_size: test fraction per session (original: 0.2).
        seed: random seed; the same seed gives the same split.
        keep_ties: keep tied annotations (``emotions`` has several labels) with their first label; by
            default they are left out and counted.
        labels: fixed label order; default: the corpus' declared order
            (:func:`cnnrnn.corpora.label_order`), else the sorted label names.
        corpus: the reader name, for the declared label order.
        scheme: ``session`` or ``speaker`` (see above).

    Returns:
        A :class:`SplitResult`.

    Raises:
        ValueError: no utterance is left, a label is outside ``labels``, an unknown scheme, or (``speaker``)
            an utterance without a speaker or too few speakers.
    """
    from ..corpora import label_order
    from ..splits import PerSessionSplit, SpeakerFolds

    ties = [u for u in utterances if u.is_tied]
    kept = list(utterances) if keep_ties else [u for u in utterances if not u.is_tied]
    if not kept:
        raise ValueError("no utterance left to split (all were tied annotations?)")
    present = {u.emotion for u in kept}
    label_list = list(labels) if labels else label_order(corpus, present)
    unknown = sorted(present - set(label_list))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the configured label list {label_list}")

    ordered = sorted(kept, key=lambda u: (u.session or NO_SESSION, u.id))
    sessions = [u.session or NO_SESSION for u in ordered]
    y = [u.emotion for u in ordered]
    if scheme == "session":
        splitter = PerSessionSplit(test_size, seed)
        train_idx, test_idx = next(splitter.split(ordered, y, sessions))
        stratified = splitter.stratified
    elif scheme == "speaker":
        splitter = SpeakerFolds(max(2, round(1 / test_size)), seed)
        train_idx, test_idx = splitter.fold(0, ordered, y, [u.speaker for u in ordered])
        stratified = {s: True for s in set(sessions)}
    else:
        raise ValueError(f"split scheme must be 'session' or 'speaker', got {scheme!r}")
    train: dict[str, list[Utterance]] = defaultdict(list)
    test: dict[str, list[Utterance]] = defaultdict(list)
    for i in train_idx:
        train[sessions[i]].append(ordered[i])
    for i in test_idx:
        test[sessions[i]].append(ordered[i])
    names = sorted(set(sessions))
    train = {s: train.get(s, []) for s in names}
    test = {s: test.get(s, []) for s in names}
    per_session = {s: {"train": len(train[s]), "test": len(test[s]), "stratified": stratified[s]}
                   for s in names}
    report = {
        "n_utterances": len(utterances),
        "n_ties": len(ties),
        "ties": "kept with their first label" if keep_ties else "left out",
        "tied_ids": [u.id for u in ties],
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "sessions": per_session,
        "label_counts": {
            "train": dict(sorted(Counter(u.emotion for v in train.values() for u in v).items())),
            "test": dict(sorted(Counter(u.emotion for v in test.values() for u in v).items())),
        },
        "test_size": test_size,
        "seed": seed,
        "scheme": splitter.spec(),
        "speakers_in_both": sorted({u.speaker for v in train.values() for u in v if u.speaker}
                                   & {u.speaker for v in test.values() for u in v if u.speaker}),
    }
    return SplitResult(train=train, test=test, labels=label_list, report=report)


def split(corpus: str, root: str | Path, out: str | Path, config=None) -> dict[str, Any]:
    """Stage 1: read the corpus and write the per-session 8:2 split.

    Writes ``train.json`` / ``test.json`` (``{session: [Utterance dict, ...]}``),
    ``train_audio.json`` / ``test_audio.json`` (flat records ``{id, audio_path,
    emotion, label, speaker, session, text}``; ``label`` is the int code),
    ``labels.json`` (``{"labels": [...]}``, code = index, in the corpus' declared
    order) and ``split_report.json`` (counts, ties, skipped files).

    Raises:
        CorpusError: the corpus cannot be read or has no usable utterance.
    """
    from ..corpora import load_corpus
    from ..outputs import writing_stage

    from ..outputs import audio_digests, digest

    cfg, out = load_config(config), Path(out)
    claim_run(out, write=False)  # refused before the corpus is read; nothing is written until it is
    utterances, corpus_report = load_corpus(corpus, root)
    result = split_per_session(utterances, cfg.split.test_size, cfg.split.seed, cfg.split.keep_ties,
                               cfg.split.labels, corpus=corpus, scheme=cfg.split.scheme)
    kept = result.flat("train") + result.flat("test")
    sources = audio_digests([u.audio_path for u in kept])
    fingerprint = {"sha1": digest([[u.id, d, u.emotion, u.speaker, u.session] for u, d in zip(kept, sources)]
                                  + [cfg.split.__dict__]), "n": len(kept), "corpus": corpus}
    claim_run(out)
    outputs = [*A.SPLIT_FILES.values(), *A.AUDIO_FILES.values(), A.LABELS_FILE, "split_report.json"]
    with writing_stage(out, "split", [(out, outputs)]):
        return _write_split(out, cfg, result, corpus_report, fingerprint)


def _write_split(out: Path, cfg: CnnrnnConfig, result: SplitResult, corpus_report, fingerprint: dict) -> dict[str, Any]:
    from ..outputs import record_inputs

    code = {lab: i for i, lab in enumerate(result.labels)}
    for part in ("train", "test"):
        grouped = {s: [u.to_dict() for u in utts] for s, utts in getattr(result, part).items()}
        A.save_json(grouped, out / A.SPLIT_FILES[part])
        flat = [{"id": u.id, "audio_path": u.audio_path, "emotion": u.emotion, "label": code[u.emotion],
                 "speaker": u.speaker, "session": u.session, "text": u.text} for u in result.flat(part)]
        A.save_json(flat, out / A.AUDIO_FILES[part])
    A.save_json({"labels": result.labels}, out / A.LABELS_FILE)
    report = {"corpus": corpus_report.to_dict(), "split": result.report, "labels": result.labels}
    A.save_json(report, out / "split_report.json")
    record_config(out, cfg)
    record_inputs(out, "split", fingerprint)
    log.info("split: %d train / %d test; %d tie(s) %s", result.report["n_train"],  # the corpus said its skips
             result.report["n_test"], result.report["n_ties"], result.report["ties"])
    return report


# --------------------------------------------------------------------------- stage 2: spectrograms
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
        return set(self.written) | set(self.existing)

    def to_dict(self) -> dict[str, Any]:
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

    Returns:
        An :class:`ExtractReport`.

    Raises:
        ValueError: ``rows`` not of the length of ``items``.
        OSError: the disk is full (``ENOSPC``): the stage cannot go on.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp"):  # left by an interrupted run (see artifacts.atomic_write)
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

    Raises:
        ValueError: a split (train or test) that has files keeps none of them (every file skipped); the message
            gives the skip counts by reason. The report and the (empty) pickles are written first.
        DiskSpaceError: not enough free disk space for the packed arrays (checked before anything is written).
    """

    from ..outputs import writing_stage

    cfg, out = load_config(config), Path(out)
    claim_run(out, create=False)
    png_dir = out / A.SPECTROGRAM_DIR
    with writing_stage(out, "spectrograms", [(out, _SPECTROGRAM_OUTPUTS), (png_dir, None)]) as n_leftovers:
        return _spectrograms(out, cfg, progress) | {"leftovers_removed": n_leftovers}


#: The files the spectrograms stage writes in the run folder (their temporaries are its own).
_SPECTROGRAM_OUTPUTS = ("train_images.npy", "test_images.npy", "train_speed_copies.npy", "data_train.pickle",
                        "data_test.pickle", "packed.json", "spectrogram_report.json")


def _spectrograms(out: Path, cfg: CnnrnnConfig, progress: bool) -> dict[str, Any]:
    png_dir = out / A.SPECTROGRAM_DIR
    stamp = png_dir / "spectrogram_config.json"
    # what the PNGs depend on: not workers, nor max_audio_seconds (a memory guard: changing it re-renders nothing)
    spec = {k: v for k, v in cfg.spectrogram.__dict__.items() if k != "max_audio_seconds"} | {"workers": None}
    if spec.get("render") == SpectrogramConfig.render:  # the default render: stamps from before it existed match
        del spec["render"]
    overwrite = stamp.is_file() and A.load_json(stamp) != spec
    if overwrite:
        log.warning("spectrogram config changed since the PNGs in %s were made: re-rendering all", png_dir)
    records = {part: A.load_json(out / A.AUDIO_FILES[part]) for part in ("train", "test")}
    all_items = [(r["id"], r["audio_path"], r.get("speaker")) for part in records.values() for r in part]
    reference = [part == "train" for part, recs in records.items() for _ in recs]
    copies = copy_items(records["train"], cfg.train)  # speed-perturbed copies of the train split only
    sources = _audio_sources(all_items + copies)
    layout = _PackLayout(records, [c[0] for c in copies], cfg.spectrogram.image_size,
                         {"spectrogram": spec, "speed_perturb": [list(cfg.train.speed_perturb),
                                                                cfg.train.speed_perturb_method],
                          "sources": [sources.get(r["id"]) for recs in records.values() for r in recs]})
    packed = read_packed_manifest(out)
    current = not overwrite and layout.made(out, packed)
    if not current:
        check_disk_space(out, layout.nbytes, "the packed image arrays (train_images.npy, test_images.npy)")
    _forget_stale_images(png_dir, sources)
    stats = None
    if cfg.spectrogram.uses_stats:
        if (png_dir / NORM_FILE).is_file() and not overwrite and (
                not [i for i in all_items + copies if not (png_dir / f"{i[0]}.png").is_file()]):
            from ..normalize import NormStats

            stats = NormStats.from_dict(A.load_json(png_dir / NORM_FILE))
        else:
            stats = normalization_stats(all_items, cfg.spectrogram, reference, progress)
            if copies and cfg.spectrogram.normalization == "speaker":
                stats = copy_stats(stats, copies, cfg.spectrogram, progress)  # pseudo-speakers of the copies
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
    stale = []
    for uid, sha in current.items():
        if known.get(uid) == sha and sha is not None:
            continue
        try:
            png = id_path(png_dir, uid, ".png")
        except CorpusError:
            continue
        if png.is_file():
            png.unlink()
            stale.append(uid)
    if stale:
        log.warning("spectrograms: %d image(s) in %s were not made from the audio their id names now (other audio, "
                    "or made before audio fingerprints were recorded): rendering them again, e.g. %s", len(stale),
                    png_dir, stale[0])
    png_dir.mkdir(parents=True, exist_ok=True)
    A.save_json({**known, **current}, path)


# --------------------------------------------------------------------------- packed arrays
#: The packed images of each split: ``(N, H, W, 3) uint8`` BGR, the rows of ``data_<split>.pickle`` in order, an
#: ``.npy`` read memory-mapped (written by ``spectrograms`` in the same pass as the PNGs, or by ``pack``).
IMAGES_FILES = {"train": "train_images.npy", "test": "test_images.npy"}
#: The speed-perturbed copies of the train split (``train.speed_perturb``): ``(n_factors, N, H, W, 3) uint8``.
COPIES_FILE = "train_speed_copies.npy"
#: The manifest of the packed arrays: per split its rows' count and ids digest, each file's shape and dtype; and
#: whether ``pack`` writes the ``*_final.pickle`` files (``"pickle"``).
PACKED_FILE = "packed.json"
#: Free disk space left over, in bytes, when the packed arrays are written (:func:`check_disk_space`).
DISK_MARGIN = 64 * 2 ** 20
#: Bytes per ``write`` call when a memory-mapped array is pickled (:class:`_ReleasingWriter`).
_PIECE_BYTES = 8 * 2 ** 20


class PackedArrayError(ValueError):
    """A packed array cannot be used: missing, truncated, or of another shape or dtype than its manifest
    (:data:`PACKED_FILE`) or its split's table records (changed or replaced after it was packed)."""


class DiskSpaceError(OSError):
    """Not enough free disk space to write the packed arrays (or a ``*_final.pickle``); nothing was written."""


def _size(nbytes: float) -> str:
    return f"{nbytes / 2 ** 30:.2f} GiB" if nbytes >= 2 ** 30 else f"{nbytes / 2 ** 20:.1f} MiB"


def check_disk_space(folder: str | Path, nbytes: int, what: str) -> None:
    """Refuse to write ``nbytes`` into ``folder`` unless its file system has them free, and :data:`DISK_MARGIN`
    more (``shutil.disk_usage``).

    Raises:
        DiskSpaceError: ``not enough free disk space in DIR for WHAT: need X GiB (+ 64 MiB margin), Y GiB free``.
    """
    import shutil

    free = shutil.disk_usage(folder).free
    if free < nbytes + DISK_MARGIN:
        raise DiskSpaceError(f"not enough free disk space in {folder} for {what}: need {_size(nbytes)} (+ "
                             f"{_size(DISK_MARGIN)} margin), {_size(free)} free; free some space or use another "
                             "--out (nothing was written)")


def npy_header(path: str | Path) -> tuple[tuple[int, ...], np.dtype, int]:
    """``(shape, dtype, data offset in bytes)`` of an ``.npy`` file, read from its header (nothing is mapped).

    Raises:
        PackedArrayError: not an ``.npy`` file (or a Fortran-ordered one).
        FileNotFoundError: no such file.
    """
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    with open(path, "rb") as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version not in readers:
                raise ValueError(f"format version {version}")
            shape, fortran, dtype = readers[version](fh)
        except ValueError as exc:
            raise PackedArrayError(f"{path}: not an .npy array ({exc})") from None
        if fortran:
            raise PackedArrayError(f"{path}: a Fortran-ordered array; the packed arrays are C-ordered")
        return tuple(int(v) for v in shape), np.dtype(dtype), fh.tell()


def create_rows_file(path: str | Path, shape: Sequence[int]) -> Path:
    """Create an ``.npy`` of ``shape`` uint8 to be filled row by row (``np.lib.format.open_memmap``: the header
    and a sparse file of the full size, no data yet); :func:`extract_spectrograms` writes its rows."""
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=tuple(int(v) for v in shape))
    del array
    return Path(path)


def open_packed(path: str | Path, expect: dict | None = None, *, mode: str = "r") -> np.memmap:
    """Open a packed array memory-mapped (``np.load(mmap_mode=mode)``), after checking it.

    Args:
        path: the ``.npy``.
        expect: ``{"shape": [...], "dtype": "uint8"}`` as :data:`PACKED_FILE` records it, or ``None``.
        mode: ``r`` (read-only) or ``c`` (copy-on-write: writeable in memory, the file never changes).

    Returns:
        The ``np.memmap`` (pages are read from the file when touched; :func:`release_pages` drops them again).

    Raises:
        PackedArrayError: missing, not an ``.npy``, truncated, or of another shape or dtype than ``expect``.
    """
    path = Path(path)
    if not path.is_file():
        raise PackedArrayError(f"{path} not found: run `cnnrnn pack --force` to write the packed arrays again")
    shape, dtype, offset = npy_header(path)
    if expect is not None and (list(shape) != list(expect["shape"]) or str(dtype) != str(expect["dtype"])):
        raise PackedArrayError(f"{path} holds a {shape} {dtype} array but {PACKED_FILE} records "
                               f"{tuple(expect['shape'])} {expect['dtype']}: it was changed or replaced after it was "
                               "packed; run `cnnrnn pack --force`")
    need = offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if path.stat().st_size < need:
        raise PackedArrayError(f"{path} is truncated ({path.stat().st_size} of {need} bytes): run `cnnrnn pack "
                               "--force`")
    return np.load(path, mmap_mode=mode)


def release_pages(array) -> None:
    """Drop the pages of the memory map behind ``array`` (an ``np.memmap`` or a view of one) from this process'
    resident memory (``madvise(MADV_DONTNEED)``): the data stays in the file and the page cache, and is read again
    when touched. Reading a whole memory-mapped array once thus costs no more resident memory than a few pages. No
    effect on in-memory arrays, or where ``madvise`` is missing."""
    import mmap

    base = array
    while base is not None and not isinstance(base, mmap.mmap):
        base = getattr(base, "base", None)
    if base is not None and hasattr(base, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        base.madvise(mmap.MADV_DONTNEED)


class _ReleasingWriter:
    """The file object given to ``pickle.dump`` for a table holding memory-mapped arrays: large buffers (the arrays,
    pickled out of band of the frame as protocol-5 buffers) are written :data:`_PIECE_BYTES` at a time and the maps'
    pages released after each piece, so that pickling a memory map never holds it whole in memory."""

    def __init__(self, fh, arrays: Sequence[np.ndarray]):
        self.fh, self.arrays = fh, list(arrays)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), _PIECE_BYTES):
            self.fh.write(view[start:start + _PIECE_BYTES])
            if len(view) > _PIECE_BYTES:
                for array in self.arrays:
                    release_pages(array)
        return len(view)


def _digest(values: Sequence) -> str:
    import hashlib
    import json

    return hashlib.sha1(json.dumps(list(values), sort_keys=True, default=str).encode("utf-8")).hexdigest()


def _copy_rows(src: Path, dst: Path, rows: Sequence[int]) -> None:
    """Row ``k`` of ``dst`` = row ``rows[k]`` of ``src`` (both ``.npy`` files of rows of one shape; ``pread`` and
    ``pwrite``, nothing mapped)."""
    s_shape, _, s_off = npy_header(src)
    _, _, d_off = npy_header(dst)
    nbytes = int(np.prod(s_shape[-3:], dtype=np.int64))
    fin, fout = os.open(src, os.O_RDONLY), os.open(dst, os.O_WRONLY)
    try:
        for k, r in enumerate(rows):
            data = memoryview(os.pread(fin, nbytes, s_off + int(r) * nbytes))
            pos = d_off + k * nbytes
            while len(data):
                written = os.pwrite(fout, data, pos)
                data, pos = data[written:], pos + written
    finally:
        os.close(fin)
        os.close(fout)


def _temporary(out: Path, name: str) -> Path:
    """A fresh temporary path ``<out>/.<name>.XXXXXXXX.tmp`` (:func:`cnnrnn.artifacts.is_temporary`), not created:
    the file made there gets the usual permissions."""
    import secrets

    while True:
        path = Path(out) / f".{name}.{secrets.token_hex(4)}.tmp"
        if not path.exists():
            return path


def _keep_rows(out: Path, stage: Path, final: Path, rows: Sequence[int], shape: tuple[int, ...]) -> None:
    """Make ``final`` (``shape``) from the staged rows ``rows`` of ``stage``: a rename when every row is kept in
    order, else a copy of the kept rows into a new file (then renamed). ``stage`` is gone afterwards."""
    n_stage = int(np.prod(npy_header(stage)[0][:-3], dtype=np.int64))
    if list(rows) == list(range(n_stage)):
        os.replace(stage, final)
        return
    check_disk_space(out, int(np.prod(shape, dtype=np.int64)), final.name)
    tmp = _temporary(out, final.name)
    try:
        _copy_rows(stage, create_rows_file(tmp, shape), rows)
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        stage.unlink(missing_ok=True)


class _PackLayout:
    """The packed arrays of a run: which item of ``spectrograms`` goes to which row of which file.

    Items are the train records, the test records, then the copies (factor-major, :func:`copy_items`), as
    :func:`spectrograms` renders them.
    """

    def __init__(self, records: dict[str, list[dict]], copy_ids: Sequence[str], image_size: Sequence[int],
                 settings: dict):
        self.records, self._copy_ids = records, list(copy_ids)
        self.parts = [p for p, recs in records.items() if recs]
        self.row_shape = (int(image_size[0]), int(image_size[1]), 3)
        self.n_train = len(records["train"])
        self.n_factors = len(self._copy_ids) // self.n_train if self.n_train else 0
        n_rows = sum(len(r) for r in records.values()) + self.n_factors * self.n_train
        self.nbytes = n_rows * int(np.prod(self.row_shape))
        self.signature = {p: _digest([settings, [r["id"] for r in recs]]) for p, recs in records.items()}
        self._stage: dict[str, Path] = {}

    def kept(self, ok: set[str]) -> dict[str, list[int]]:
        """Per split, the records kept: their image and every copy's were made."""
        out = {}
        for part, recs in self.records.items():
            keep = []
            for j, r in enumerate(recs):
                if r["id"] not in ok:
                    continue
                if part == "train" and self.n_factors and not all(
                        self._copy_ids[c * self.n_train + j] in ok for c in range(self.n_factors)):
                    continue
                keep.append(j)
            out[part] = keep
        return out

    def kept_digests(self, ok: set[str]) -> dict[str, str]:
        """The ids digest of each split's kept records (what :data:`PACKED_FILE` records), splits with any."""
        return {part: _digest([self.records[part][j]["id"] for j in keep])
                for part, keep in self.kept(ok).items() if keep}

    def made(self, out: Path, packed: dict) -> bool:
        """Whether :data:`PACKED_FILE` vouches for arrays made from these records with these settings, and they
        are there."""
        for part in self.parts:
            entry = packed.get(part)
            if entry is None or entry.get("records_sha1") != self.signature[part]:
                return False
            if bool(entry.get("copies")) != (part == "train" and self.n_factors > 0):
                return False
            if not _entry_arrays_open(out, entry):
                return False
        return True

    def staging(self, out: Path):
        """A context: the temporary ``.npy`` files the rows go to; yields one ``(path, row)`` per item. Whatever
        :meth:`finish` did not rename is removed on the way out."""
        import contextlib

        @contextlib.contextmanager
        def context():
            for stale in out.glob(".*.npy.*.tmp"):  # an interrupted run's
                stale.unlink(missing_ok=True)
            try:
                rows: list[tuple[str, int]] = []
                for part, recs in self.records.items():
                    if recs:
                        self._stage[part] = create_rows_file(_temporary(out, IMAGES_FILES[part]),
                                                             (len(recs),) + self.row_shape)
                        rows += [(str(self._stage[part]), j) for j in range(len(recs))]
                if self.n_factors and self.n_train:
                    self._stage["copies"] = create_rows_file(_temporary(out, COPIES_FILE),
                                                             (self.n_factors, self.n_train) + self.row_shape)
                    rows += [(str(self._stage["copies"]), k) for k in range(self.n_factors * self.n_train)]
                yield rows
            finally:
                for path in self._stage.values():
                    path.unlink(missing_ok=True)
                self._stage.clear()

        return context()

    def finish(self, out: Path, ok: set[str]) -> dict[str, Any]:
        """Rename (or compact) the staged files into :data:`IMAGES_FILES` / :data:`COPIES_FILE` with the kept rows;
        a split that keeps nothing loses its old array. Returns the :data:`PACKED_FILE` entries."""
        entries: dict[str, Any] = {}
        for part, keep in self.kept(ok).items():
            final = out / IMAGES_FILES[part]
            if not keep:
                final.unlink(missing_ok=True)
                if part == "train":
                    (out / COPIES_FILE).unlink(missing_ok=True)
                continue
            shape = (len(keep),) + self.row_shape
            _keep_rows(out, self._stage.pop(part), final, keep, shape)
            entry = {"n": len(keep), "ids_sha1": _digest([self.records[part][j]["id"] for j in keep]),
                     "records_sha1": self.signature[part],
                     "images": {"file": final.name, "shape": list(shape), "dtype": "uint8"}}
            if part == "train" and self.n_factors:
                shape = (self.n_factors, len(keep)) + self.row_shape
                _keep_rows(out, self._stage.pop("copies"), out / COPIES_FILE,
                           [c * self.n_train + j for c in range(self.n_factors) for j in keep], shape)
                entry["copies"] = {"file": COPIES_FILE, "shape": list(shape), "dtype": "uint8"}
            elif part == "train":
                (out / COPIES_FILE).unlink(missing_ok=True)
            entries[part] = entry
        return entries


def read_packed_manifest(out: str | Path) -> dict[str, Any]:
    """The run's :data:`PACKED_FILE` (``{}`` when there is none or it cannot be read: the arrays are then made
    again)."""
    path = Path(out) / PACKED_FILE
    try:
        data = A.load_json(path)
    except (FileNotFoundError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_packed(out: str | Path, part: str, image_size: Sequence[int] | None = None) -> dict[str, Any]:
    """The packed table of a split, its images memory-mapped: what ``train`` (and the test stage) read.

    Args:
        out: the run folder. part: ``train`` or ``test``.
        image_size: ``[H, W]`` the images must have (the run's ``spectrogram.image_size``), or ``None``.

    Returns:
        The keys of ``data_<part>.pickle`` (``id``, ``emotion``, ``speaker``, ...), with ``path`` the images
        ``(N, H, W, 3) uint8`` BGR as a read-only ``np.memmap`` and, for speed-perturbed copies, ``speed_copies``
        ``(n_factors, N, H, W, 3)`` likewise. A run packed before the arrays existed (no :data:`PACKED_FILE` entry,
        no array) gives its ``*_final.pickle`` (:func:`cnnrnn.artifacts.load_image_table`, in memory).

    Raises:
        PackedArrayError: an array missing, truncated, or of another shape or dtype than :data:`PACKED_FILE` records;
            the data pickle lists other utterances than were packed; images of another size than ``image_size``.
        FileNotFoundError: neither arrays nor a ``*_final.pickle``.
    """
    out = Path(out)
    entry = read_packed_manifest(out).get(part)
    npy = out / IMAGES_FILES[part]
    if entry is None:
        if npy.is_file():
            raise PackedArrayError(f"{npy} has no entry in {out / PACKED_FILE}: its shape cannot be checked; run "
                                   "`cnnrnn pack --force`")
        return A.load_image_table(out / A.FINAL_FILES[part])
    table = A.load_pickle(out / A.DATA_FILES[part])
    if _digest(list(table["id"])) != entry.get("ids_sha1"):
        raise PackedArrayError(f"{out / A.DATA_FILES[part]} lists other utterances ({len(table['id'])}) than "
                               f"{npy.name} was packed from ({entry.get('n')}): run `cnnrnn pack`")
    images = open_packed(out / entry["images"]["file"], entry["images"])
    if len(images) != len(table["id"]):
        raise PackedArrayError(f"{npy} holds {len(images)} rows for {len(table['id'])} utterances: run "
                               "`cnnrnn pack --force`")
    if image_size is not None and tuple(images.shape[1:3]) != tuple(int(v) for v in image_size):
        raise PackedArrayError(f"{npy} holds {images.shape[2]}x{images.shape[1]} (WxH) images but the run's "
                               f"spectrogram.image_size is {list(image_size)}: run the spectrograms stage again")
    table["path"] = images
    if entry.get("copies"):
        table[COPIES_KEY] = open_packed(out / entry["copies"]["file"], entry["copies"])
    return table


# --------------------------------------------------------------------------- stage 3: pack
def pack(out: str | Path, config=None, progress: bool = True, force: bool = False,
         pickle: bool | None = None) -> dict[str, Any]:
    """Stage 3: the packed arrays of every split, and ``train_final.pickle`` / ``test_final.pickle``.

    The arrays (:data:`IMAGES_FILES`, ``(N, H, W, 3) uint8`` BGR in the rows of the data pickle, read
    memory-mapped by ``train``) are normally written by ``spectrograms`` already; ``pack`` checks them against
    :data:`PACKED_FILE` and the data pickles, and makes them from the PNGs (in parallel, row by row, never holding
    them in memory) when they are missing or stale, or with ``force``.

    The final pickles have the original's layout: the data pickle's keys, ``path`` holding one
    ``(N, H, W, 3) uint8`` array (BGR, as ``cv2.imread`` gives; the speed copies under ``speed_copies``). They are
    written from the memory maps a piece at a time (bounded memory); a final pickle newer than its data pickle and
    arrays is kept, unless ``force``. ``pickle=False`` (``cnnrnn pack --no-pickle``) skips them for large corpora
    (``train`` needs only the arrays) and removes stale ones; the choice is recorded in :data:`PACKED_FILE`, and
    ``None`` keeps the recorded one (default: written).

    Returns:
        Per split: ``n``, ``shape``, ``images`` (the array), ``file`` (the final pickle or ``None``), ``pickle``
        (``written``, ``up to date``, ``skipped``).

    Raises:
        ValueError: a data pickle holds no utterance (every file of its split was skipped); a PNG cannot be read
            as an image of the run's ``image_size``.
        DiskSpaceError: not enough free disk space for the arrays or a final pickle (nothing was written).
    """
    from ..outputs import stage_lock, writing_stage

    cfg, out = load_config(config), Path(out)
    claim_run(out, create=False)
    # pack also holds the spectrograms lock: both stages write the packed arrays
    with stage_lock(out, "spectrograms"), \
            writing_stage(out, "pack", [(out, [*_SPECTROGRAM_OUTPUTS, *A.FINAL_FILES.values()])]) as n_leftovers:
        return _pack(out, cfg, progress, force, pickle) | {"leftovers_removed": n_leftovers}


def _pack(out: Path, cfg: CnnrnnConfig, progress: bool, force: bool, pickle: bool | None) -> dict[str, Any]:
    packed = read_packed_manifest(out)
    write_pickle = packed.get("pickle", True) if pickle is None else bool(pickle)
    summary: dict[str, Any] = {}
    for part in ("train", "test"):
        src, dst = out / A.DATA_FILES[part], out / A.FINAL_FILES[part]
        table = A.load_pickle(src)
        if not len(table["id"]):
            raise ValueError(f"pack: {src} holds no utterance: every file of the {part} split was skipped by "
                             f"`cnnrnn spectrograms` (see {out / 'spectrogram_report.json'})")
        entry = packed.get(part)
        if force or not _arrays_current(out, table, entry):
            entry = packed[part] = _pack_from_pngs(out, part, table, cfg, progress)
            A.save_json(packed, out / PACKED_FILE)
        files = [out / entry[k]["file"] for k in ("images", "copies") if entry.get(k)]
        newest = max(p.stat().st_mtime for p in [src, *files])
        fresh = dst.is_file() and dst.stat().st_mtime >= newest
        if write_pickle and (force or not fresh):
            _write_final_pickle(out, table, entry, dst)
            state = "written"
        elif write_pickle:
            state = "up to date"
        else:
            if dst.is_file() and not fresh:
                log.warning("pack --no-pickle: removing %s, older than the arrays it would contradict", dst)
                dst.unlink()
            state = "skipped"
        summary[part] = {"n": int(entry["n"]), "shape": entry["images"]["shape"], "images": str(files[0]),
                         "file": str(dst) if dst.is_file() else None, "pickle": state}
    A.save_json({**packed, "pickle": write_pickle}, out / PACKED_FILE)
    return summary


def _arrays_current(out: Path, table: dict, entry: dict | None) -> bool:
    """Whether a :data:`PACKED_FILE` entry's arrays exist, match it and hold ``table``'s rows."""
    if not entry or entry.get("ids_sha1") != _digest(list(table["id"])):
        return False
    if bool(entry.get("copies")) != (table.get(COPIES_KEY) is not None):
        return False
    return _entry_arrays_open(out, entry)


def _entry_arrays_open(out: Path, entry: dict) -> bool:
    """Whether every array a :data:`PACKED_FILE` entry names (images, speed copies) opens and matches it."""
    try:
        for key in ("images", "copies"):
            if entry.get(key):
                open_packed(out / entry[key]["file"], entry[key])
    except (PackedArrayError, OSError):
        return False
    return True


def _pack_from_pngs(out: Path, part: str, table: dict, cfg: CnnrnnConfig, progress: bool) -> dict[str, Any]:
    """Read a split's PNGs (and its copies') into its packed arrays, in parallel (:func:`cnnrnn.audio.map_chunks`,
    rows written with ``pwrite``); returns its :data:`PACKED_FILE` entry. Raises ValueError when a PNG is not a
    readable image of the run's ``image_size``."""
    from tqdm import tqdm

    height, width = (int(v) for v in cfg.spectrogram.image_size)
    row_shape = (height, width, 3)
    n = len(table["id"])
    copies = table.get(COPIES_KEY)
    n_factors = len(copies) if copies is not None else 0
    check_disk_space(out, n * (1 + n_factors) * height * width * 3, f"the packed {part} images")
    finals = {"images": out / IMAGES_FILES[part], "copies": out / COPIES_FILE}
    shapes = {"images": (n,) + row_shape, "copies": (n_factors, n) + row_shape}
    stage: dict[str, Path] = {}
    try:
        items = []
        for key, paths in (("images", [table["path"]]), ("copies", copies or [])):
            if not paths:
                continue
            stage[key] = create_rows_file(_temporary(out, finals[key].name), shapes[key])
            items += [(table["id"][j], None, str(p), None, 1.0, "speed", True, (str(stage[key]), c * n + j))
                      for c, col in enumerate(paths) for j, p in enumerate(col)]
        bad: list[str] = []
        bar = tqdm(total=len(items), desc="pack", unit="img", disable=not progress)

        def collect(results):
            bad.extend(f"{uid} ({message})" for uid, reason, message in results if reason is not None)
            bar.update(len(results))

        requested = cfg.spectrogram.workers or os.cpu_count() or 1
        chunks = [items[i:i + 64] for i in range(0, len(items), 64)]
        map_chunks(_render_chunk, chunks, workers=max(1, min(requested, len(chunks))), isolate=requested > 1,
                   on_result=collect, on_died=lambda item, message: collect([(item[0], WORKER_DIED, message)]),
                   args=(cfg.spectrogram, None))
        bar.close()
        if bad:
            raise ValueError(f"pack: {len(bad)} PNG(s) of the {part} split are not readable {width}x{height} (WxH) "
                             f"images, e.g. {bad[0]}: run `cnnrnn spectrograms` again")
        for key, path in stage.items():
            os.replace(path, finals[key])
        if part == "train" and not copies:
            finals["copies"].unlink(missing_ok=True)
    finally:
        for path in stage.values():
            path.unlink(missing_ok=True)
    entry = {"n": n, "ids_sha1": _digest(list(table["id"])), "records_sha1": None,
             "images": {"file": finals["images"].name, "shape": list(shapes["images"]), "dtype": "uint8"}}
    if copies:
        entry["copies"] = {"file": COPIES_FILE, "shape": list(shapes["copies"]), "dtype": "uint8"}
    return entry


def _write_final_pickle(out: Path, table: dict, entry: dict, dst: Path) -> None:
    """``*_final.pickle`` (the data pickle's keys, ``path`` the images) from the memory-mapped arrays, written a
    piece at a time (:class:`_ReleasingWriter`) and atomically."""
    import pickle as _pickle

    # copy-on-write maps: writeable arrays, so the pickle loads writeable arrays, as the original's did
    images = open_packed(out / entry["images"]["file"], entry["images"], mode="c")
    obj = {**table, "path": images.view(np.ndarray)}
    arrays = [images]
    if entry.get("copies"):
        copies = open_packed(out / entry["copies"]["file"], entry["copies"], mode="c")
        obj[COPIES_KEY] = copies.view(np.ndarray)
        arrays.append(copies)
    check_disk_space(out, sum(a.nbytes for a in arrays), dst.name)
    A.atomic_write(dst, lambda fh: _pickle.dump(obj, _ReleasingWriter(fh, arrays), protocol=_pickle.HIGHEST_PROTOCOL))
