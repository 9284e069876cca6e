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
Reruns resume: existing PNGs are kept, and ``pack`` is skipped when its pickles are newer than their inputs.
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
from ..features import SpectrogramConfig, read_png, render_file
from .config import CnnrnnConfig, load_config
from .speed import COPIES_KEY, FACTORS_KEY, METHOD_KEY, copy_items, copy_stats

log = logging.getLogger("cnnrnn.cnnrnn.data")

NO_SESSION = "all"


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

    cfg, out = load_config(config), Path(out)
    utterances, corpus_report = load_corpus(corpus, root)
    result = split_per_session(utterances, cfg.split.test_size, cfg.split.seed, cfg.split.keep_ties,
                               cfg.split.labels, corpus=corpus, scheme=cfg.split.scheme)
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
    log.info("split: %s; %d train / %d test; %d tie(s) %s", corpus_report.summary(), result.report["n_train"],
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


def _render_chunk(chunk: list[tuple[str, str, str, str | None, float, str]], cfg: SpectrogramConfig,
                  stats=None) -> list[tuple[str, str | None, str]]:
    out = []
    for uid, audio, png, speaker, speed, speed_method in chunk:
        try:
            render_file(audio, png, cfg, speaker, stats, speed=speed, speed_method=speed_method)
            out.append((uid, None, ""))
        except AudioError as exc:
            out.append((uid, exc.reason, str(exc)))
        except Exception as exc:  # keep the batch alive; report what broke
            out.append((uid, "error", f"{audio}: {type(exc).__name__}: {exc}"))
    return out


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
) -> ExtractReport:
    """Render ``<out_dir>/<id>.png`` for every ``(id, audio_path)``, in parallel, resumably.

    PNGs that already exist are kept (a rerun resumes an interrupted one);
    every PNG is written atomically, so none is ever half-written, and temp
    files an interrupted run left behind are removed. Bad audio
    is skipped and counted by reason, never fatal. The workers run in :func:`cnnrnn.audio.map_chunks`: they exit
    when this process dies, and a file whose worker dies (killed by the out-of-memory killer, a crash) is
    retried alone, then skipped with reason ``worker_died``. An id whose PNG would not be a plain file inside
    ``out_dir`` (:func:`cnnrnn.corpora.base.id_path`) is skipped with reason ``unsafe_id``; nothing is written.

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
        chunk_size: files per task sent to a worker.

    Returns:
        An :class:`ExtractReport`.
    """
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".*.tmp"):  # left by an interrupted run (see artifacts.atomic_write)
        stale.unlink(missing_ok=True)
    report = ExtractReport()
    todo = []
    for item in items:
        item = tuple(item)
        uid, audio, speaker, speed, speed_method = item + (None, 1.0, "speed")[len(item) - 2:]
        try:
            png = id_path(out_dir, uid, ".png")  # never a path outside out_dir (readers skip such ids already)
        except CorpusError as exc:
            report.failed.setdefault("unsafe_id", []).append(uid)
            report.errors[uid] = str(exc)
            continue
        if png.is_file() and not overwrite:
            report.existing.append(uid)
        else:
            todo.append((uid, str(audio), str(png), speaker, speed, speed_method))
    requested = workers or cfg.workers or os.cpu_count() or 1
    chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
    bar = tqdm(total=len(todo), desc="spectrograms", unit="file", disable=not progress or not todo)

    def collect(results):
        for uid, reason, message in results:
            if reason is None:
                report.written.append(uid)
            else:
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
    """Per-speaker and global log-mel statistics (per mel band) for ``cfg.normalization`` ``speaker``/``global``.

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

    if cfg.normalization not in ("speaker", "global"):
        return None
    kept, mels, _ = load_each([a for _, a, _ in items], lambda p: audio_log_mel(p, cfg), desc="statistics",
                              progress=progress)
    return fit([m.T for m in mels], [items[i][2] for i in kept], reference=[reference[i] for i in kept])


def spectrograms(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 2: render ``spectrograms/<id>.png`` and write ``data_train.pickle`` / ``data_test.pickle``.

    The data pickles are dicts of lists ``{'id', 'path', 'emotion', 'speaker',
    'session'}``: ``path`` is the PNG path, ``emotion`` the int code from
    ``labels.json``. Files whose audio is bad are skipped, counted in
    ``spectrogram_report.json`` and left out of the pickles. If the
    spectrogram config changed since the PNGs were made, they are re-rendered.

    With ``train.speed_perturb``, every *train* utterance also gets ``spectrograms/<id>__speed0.9.png`` (one
    per factor, :mod:`cnnrnn.cnnrnn.speed`), listed per factor under ``speed_copies`` in
    ``data_train.pickle`` (with ``speed_factors`` and ``speed_method``); the test split gets none.

    Raises:
        ValueError: a split (train or test) that has files keeps none of them (every file skipped); the message
            gives the skip counts by reason. The report and the (empty) pickles are written first.
    """

    cfg, out = load_config(config), Path(out)
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
    stats = None
    if cfg.spectrogram.normalization in ("speaker", "global"):
        if (png_dir / NORM_FILE).is_file() and not overwrite and (
                not [i for i in all_items + copies if not (png_dir / f"{i[0]}.png").is_file()]):
            from ..normalize import NormStats

            stats = NormStats.from_dict(A.load_json(png_dir / NORM_FILE))
        else:
            stats = normalization_stats(all_items, cfg.spectrogram, reference, progress)
            if copies and cfg.spectrogram.normalization == "speaker":
                stats = copy_stats(stats, copies, cfg.spectrogram, progress)  # pseudo-speakers of the copies
            overwrite = True  # statistics made now: every image must use them
            A.save_json(stats.to_dict(), png_dir / NORM_FILE)
    report = extract_spectrograms(all_items + copies, png_dir, cfg.spectrogram, stats=stats, overwrite=overwrite,
                                  progress=progress)
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
    A.save_json(summary, out / "spectrogram_report.json")
    empty = [part for part, recs in records.items() if recs and not summary[part]["n"]]
    if empty:
        raise ValueError("spectrograms: no usable audio left in the " + " and the ".join(
            f"{part} split (0 of {len(records[part])} file(s); skipped: "
            + ", ".join(f"{k} {v}" for k, v in summary[part]["skipped_by_reason"].items()) + ")" for part in empty)
            + f"; see {out / 'spectrogram_report.json'}")
    record_config(out, cfg)
    return summary


# --------------------------------------------------------------------------- stage 3: pack
def pack(out: str | Path, config=None, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Stage 3: read every PNG back into ``train_final.pickle`` / ``test_final.pickle``.

    Same keys as the data pickles; ``path`` holds one ``(N, H, W, 3) uint8``
    array (BGR, as ``cv2.imread`` gives). Skipped when the final pickle is
    newer than its data pickle, unless ``force``.

    Raises:
        ValueError: a data pickle holds no utterance (every file of its split was skipped).
    """
    cfg, out = load_config(config), Path(out)
    summary = {}
    for part in ("train", "test"):
        src, dst = out / A.DATA_FILES[part], out / A.FINAL_FILES[part]
        if not force and dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            summary[part] = {"skipped": "up to date", "file": str(dst)}
            continue
        table = A.load_pickle(src)
        if not len(table["id"]):
            raise ValueError(f"pack: {src} holds no utterance: every file of the {part} split was skipped by "
                             f"`cnnrnn spectrograms` (see {out / 'spectrogram_report.json'})")
        images = load_images([Path(p) for p in table["path"]], cfg.spectrogram.image_size, progress=progress)
        if table.get(COPIES_KEY):  # speed-perturbed copies, per factor, aligned with the images
            table[COPIES_KEY] = np.stack([load_images([Path(p) for p in paths], cfg.spectrogram.image_size,
                                                      progress=progress) for paths in table[COPIES_KEY]])
        A.save_pickle({**table, "path": images}, dst)
        summary[part] = {"n": int(len(images)), "shape": list(images.shape), "file": str(dst)}
    return summary
