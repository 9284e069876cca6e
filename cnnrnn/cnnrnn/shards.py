"""Sharded spectrograms: ``cnnrnn spectrograms --shard K/N`` renders the K-th of N parts of a run's utterances, so
that N processes or machines (a Slurm array, a Kubernetes indexed job) fill one shared run folder; ``cnnrnn pack``
checks that every part is complete and merges them.

* **Parts.** An utterance belongs to shard ``sha1(id) mod N + 1`` (:func:`shard_of`): the part of an id depends on
  nothing but the id and N, so every machine computes the same parts from the split without talking to the others.
  A speed-perturbed copy goes with its utterance.
* **Statistics.** ``speaker`` and ``global`` normalisation (and the pretrained kinds') need statistics of the whole
  corpus. They are made once, before the shards, by ``cnnrnn spectrograms --stats-only`` (:func:`spectrogram_stats`):
  ``spectrograms/normalization.json``, the same file an unsharded run writes, and :data:`STATS_INPUTS_FILE`, what it
  was made from (settings, split, audio fingerprints). Every shard reads them, and refuses (one line naming the
  command) when they are missing or were made from other audio or settings.
* **What a shard writes.** Only the PNGs of its own utterances and its record, ``spectrograms/shards/K-of-N.json``
  (:data:`SHARDS_DIR`): its ids with their audio fingerprints, the settings and statistics it used, its counts and
  skipped files, and whether it is complete. The files the unsharded stage writes for the whole run (the data
  pickles, the packed arrays, ``packed.json``, ``spectrogram_report.json``, ``sources.json``,
  ``spectrogram_config.json``) are written by ``pack`` when it merges (:func:`merge_shards`), under the stage's
  lock, so the shards never write the same file. Each shard holds its own lock (``spectrograms.shard-K-of-N``):
  two shards run at once, the same shard twice is refused.
* **Resuming.** A rerun of a shard keeps the PNGs it made from the same audio with the same settings and statistics
  and renders the rest.
"""
from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any, Sequence

from .. import artifacts as A
from .config import CnnrnnConfig, load_config
from .render import (NORM_FILE, SPEC_FILE, _audio_sources, _make_stats, _png_settings, _spectrograms, _stage_items,
                     check_no_shard_running, extract_spectrograms, remove_stale_images)
from .run_folder import SOURCES_FILE, claim_run

log = logging.getLogger("cnnrnn.cnnrnn.data")

#: The shards' records, ``K-of-N.json``, in the PNG folder (``spectrograms/shards``).
SHARDS_DIR = "shards"
#: What ``--stats-only`` made ``normalization.json`` from, in the PNG folder.
STATS_INPUTS_FILE = "normalization_inputs.json"
#: ``pack``'s note of the shard records it merged last, in :data:`SHARDS_DIR`.
MERGED_FILE = "merged.json"
_RECORD = re.compile(r"(\d+)-of-(\d+)\.json")


class ShardError(ValueError):
    """A shard cannot run or be merged: a bad ``--shard``, shards of another N in the folder, missing or stale
    statistics, or (at ``pack``) a shard missing, incomplete or made from other audio or settings."""


def check_shard(k: int, n: int) -> tuple[int, int]:
    """``(k, n)`` when ``1 <= k <= n``.

    Raises:
        ShardError: ``n < 1`` or ``k`` outside ``1..n``.
    """
    if n < 1:
        raise ShardError(f"--shard {k}/{n}: the number of shards N must be at least 1")
    if not 1 <= k <= n:
        raise ShardError(f"--shard {k}/{n}: the shard K must be between 1 and N={n}")
    return k, n


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` → ``(K, N)``: the K-th of N shards, counted from 1.

    Raises:
        ShardError: not of the form ``K/N`` (two whole numbers), ``N < 1``, or ``K`` outside ``1..N``.
    """
    match = re.fullmatch(r"\s*([+-]?\d+)\s*/\s*([+-]?\d+)\s*", str(text))
    if not match:
        raise ShardError(f"--shard {text!r}: expected K/N, the K-th of N shards counted from 1 (e.g. --shard 2/8)")
    return check_shard(int(match.group(1)), int(match.group(2)))


def shard_of(uid: str, n: int) -> int:
    """The shard (``1..n``) of utterance id ``uid``: the first 8 bytes of ``sha1(uid)`` (UTF-8) as a big-endian
    integer, mod ``n``, plus 1. The same on every machine and Python version, whatever other ids exist."""
    return int.from_bytes(hashlib.sha1(str(uid).encode("utf-8")).digest()[:8], "big") % int(n) + 1


def shard_part(k: int, n: int) -> str:
    """The lock part of shard ``k`` of ``n`` (:func:`cnnrnn.outputs.stage_lock`): ``shard-K-of-N``."""
    return f"shard-{k}-of-{n}"


def _command(out: Path, k: int, n: int) -> str:
    return f"`cnnrnn spectrograms --out {out} --shard {k}/{n}`"


def _stats_command(out: Path) -> str:
    return f"`cnnrnn spectrograms --out {out} --stats-only`"


def read_records(out: str | Path) -> dict[tuple[int, int], dict[str, Any]]:
    """The shard records of a run folder, ``{(K, N): record}`` (an unreadable record counts as incomplete)."""
    folder = Path(out) / A.SPECTROGRAM_DIR / SHARDS_DIR
    records = {}
    for path in sorted(folder.glob("*-of-*.json")) if folder.is_dir() else ():
        match = _RECORD.fullmatch(path.name)
        if not match:
            continue
        try:
            data = A.load_json(path)
        except (OSError, ValueError):
            data = {}
        records[(int(match.group(1)), int(match.group(2)))] = data if isinstance(data, dict) else {}
    return records


def _check_one_n(out: Path, n: int, records: dict[tuple[int, int], dict]) -> None:
    others = sorted({m for _, m in records if m != n})
    if others:
        raise ShardError(f"{out / A.SPECTROGRAM_DIR / SHARDS_DIR} holds shards of N={', '.join(map(str, others))}, "
                         f"not N={n}: every shard of a run uses the same N; use N={others[0]}, or remove that folder "
                         f"to start the shards again with N={n}")


def _items_digest(all_items: Sequence[tuple], reference: Sequence[bool], copies: Sequence[tuple]) -> str:
    from ..outputs import digest

    return digest([[i[0], i[2], r] for i, r in zip(all_items, reference)] + [[c[0], c[2]] for c in copies])


def spectrogram_stats(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """``cnnrnn spectrograms --stats-only``: the normalisation statistics of the whole run, made once before the
    shards (``spectrograms/normalization.json``, as the unsharded stage makes them) and what they were made from
    (:data:`STATS_INPUTS_FILE`: the settings, the split's ids, speakers and train flags, every audio fingerprint).
    Kept when those are unchanged. Runs under the unsharded stage's lock, refused while a shard runs.

    Returns:
        ``{"normalization", "file" (or None when the config needs no statistics), "made" (bool), "speakers"}``.

    Raises:
        cnnrnn.outputs.FolderInUseError: the stage or a shard of the folder is running.
    """
    from ..normalize import NormStats
    from ..outputs import file_digest, stage_lock

    cfg, out = load_config(config), Path(out)
    claim_run(out, create=False)
    mode = cfg.spectrogram.normalization
    if not cfg.spectrogram.uses_stats:
        return {"normalization": mode, "file": None, "made": False, "speakers": [],
                "note": f"spectrogram.normalization {mode!r} needs no statistics: run the shards directly"}
    png_dir = out / A.SPECTROGRAM_DIR
    norm, inputs_file = png_dir / NORM_FILE, png_dir / STATS_INPUTS_FILE
    with stage_lock(out, "spectrograms"):
        check_no_shard_running(out, "make the statistics")
        records, all_items, reference, copies = _stage_items(out, cfg)
        inputs = {"settings": _png_settings(cfg)[1], "items_sha1": _items_digest(all_items, reference, copies),
                  "sources": _audio_sources(all_items + copies)}
        known = _load_dict(inputs_file)
        made = not (norm.is_file() and {k: known.get(k) for k in inputs} == inputs
                    and known.get("stats_sha1") == file_digest(norm))
        if made:
            png_dir.mkdir(parents=True, exist_ok=True)
            A.save_json(_make_stats(all_items, copies, reference, cfg, progress).to_dict(), norm)
            A.save_json(inputs | {"stats_sha1": file_digest(norm)}, inputs_file)
        stats = NormStats.from_dict(A.load_json(norm))
    return {"normalization": mode, "file": str(norm), "made": made, "speakers": sorted(stats.speakers)}


def _load_dict(path: Path) -> dict[str, Any]:
    try:
        data = A.load_json(path) if path.is_file() else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def _shard_items(records: dict[str, list[dict]], all_items: list[tuple], copies: list[tuple], k: int,
                 n: int) -> list[tuple]:
    """The items (and speed copies, with their utterance) of shard ``k`` of ``n``, in the stage's order."""
    mine = [item for item in all_items if shard_of(item[0], n) == k]
    train_ids = [r["id"] for r in records["train"]]
    if copies:  # factor-major: copies[c * n_train + j] are record j's
        mine += [c for i, c in enumerate(copies) if shard_of(train_ids[i % len(train_ids)], n) == k]
    return mine


def _shard_stats(out: Path, cfg: CnnrnnConfig, sources: dict[str, str | None], items_sha1: str, k: int, n: int):
    """``(NormStats or None, sha1 of normalization.json or None)`` for a shard: the statistics ``--stats-only``
    made from this split (``items_sha1``, :func:`_items_digest`), this very audio (``sources``, the shard's) and
    these settings. Raises :class:`ShardError` naming the command otherwise."""
    from ..normalize import NormStats
    from ..outputs import file_digest

    if not cfg.spectrogram.uses_stats:
        return None, None
    png_dir = out / A.SPECTROGRAM_DIR
    norm, mode = png_dir / NORM_FILE, cfg.spectrogram.normalization
    head = f"--shard {k}/{n}: spectrogram.normalization {mode!r} needs the statistics of the whole corpus ({norm})"
    if not norm.is_file():
        raise ShardError(f"{head}, which are not there: make them once, before the shards, with {_stats_command(out)}")
    inputs = _load_dict(png_dir / STATS_INPUTS_FILE)
    sha1 = file_digest(norm)
    if inputs.get("stats_sha1") != sha1 or inputs.get("settings") != _png_settings(cfg)[1]:
        raise ShardError(f"{head}, but they were not made by --stats-only with these settings: make them again "
                         f"with {_stats_command(out)}")
    made_from = inputs.get("sources") or {}
    changed = [uid for uid, fp in sources.items() if made_from.get(uid) != fp]
    if inputs.get("items_sha1") != items_sha1 or changed:
        raise ShardError(f"{head}, but they were made from another split or other audio"
                         + (f" (e.g. {changed[0]})" if changed else "")
                         + f": make them again with {_stats_command(out)}")
    return NormStats.from_dict(A.load_json(norm)), sha1


def render_shard(out: str | Path, k: int, n: int, config=None, progress: bool = True) -> dict[str, Any]:
    """``cnnrnn spectrograms --shard K/N``: render the PNGs of shard ``k`` of ``n`` (:func:`shard_of`) into the run's
    ``spectrograms/``, and its record ``spectrograms/shards/K-of-N.json`` (written incomplete first, complete at
    the end). Nothing else of the run is written; ``pack`` merges complete shards (:func:`merge_shards`).

    A rerun resumes: PNGs made from the same audio (fingerprint) with the same settings and statistics are kept.
    With ``speaker``/``global`` normalisation the statistics of ``--stats-only`` are read (:func:`spectrogram_stats`).

    Returns:
        ``{"shard": "K/N", "n_items", "n_written", "n_existing", "n_failed", "failed" (reason → ids),
        "re_rendered" (PNGs removed as made from other audio or settings), "record" (its path),
        "leftovers_removed"}``.

    Raises:
        ShardError: ``k``/``n`` out of range (before any work), records of another N in the folder, or statistics
            missing or made from other audio or settings (one line naming the command that makes them).
        cnnrnn.outputs.FolderInUseError: this shard, the unsharded stage or ``pack`` is running on the folder.
    """
    from ..outputs import check_not_locked, writing_stage

    k, n = check_shard(int(k), int(n))
    cfg, out = load_config(config), Path(out)
    claim_run(out, create=False)
    png_dir = out / A.SPECTROGRAM_DIR
    shards_dir = png_dir / SHARDS_DIR
    _check_one_n(out, n, read_records(out))
    check_not_locked(out, "spectrograms", f"render shard {k}/{n}")
    records, all_items, reference, copies = _stage_items(out, cfg)
    mine = _shard_items(records, all_items, copies, k, n)
    record_file = shards_dir / f"{k}-of-{n}.json"
    own_pngs = [f"{item[0]}.png" for item in mine]
    with writing_stage(out, "spectrograms", [(png_dir, own_pngs), (shards_dir, [record_file.name])],
                       part=shard_part(k, n)) as n_leftovers:
        sources = _audio_sources(mine)
        stats, stats_sha1 = _shard_stats(out, cfg, sources, _items_digest(all_items, reference, copies), k, n)
        settings = _png_settings(cfg)[1]
        previous = _load_dict(record_file)
        if previous:
            known = previous.get("sources") or {}
            overwrite = previous.get("settings") != settings or previous.get("stats_sha1") != stats_sha1
        else:  # PNGs there were made by an unsharded run: its settings stamp and fingerprints tell
            known = _load_dict(png_dir / SOURCES_FILE)
            stamp = _load_dict(png_dir / SPEC_FILE)
            overwrite = stats is not None or bool(stamp) and stamp != settings["spectrogram"]
        removed = _remove_stale(png_dir, sources, known, overwrite)
        base = {"shard": k, "n_shards": n, "settings": settings, "stats_sha1": stats_sha1, "sources": sources}
        shards_dir.mkdir(parents=True, exist_ok=True)
        A.save_json(base | {"complete": False}, record_file)  # what every PNG there now is made from
        report = extract_spectrograms(mine, png_dir, cfg.spectrogram, stats=stats, progress=progress, clean=False)
        A.save_json(base | {"complete": True, "report": report.to_dict()}, record_file)
    counts = report.to_dict()
    del counts["errors"]
    return {"shard": f"{k}/{n}", "n_items": len(mine), **counts, "re_rendered": removed, "record": str(record_file),
            "leftovers_removed": n_leftovers}


def _remove_stale(png_dir: Path, current: dict[str, str | None], known: dict, everything: bool) -> int:
    """Remove the shard's PNGs not made from their id's audio now (or all of them, ``everything``); count them."""
    removed = len(remove_stale_images(png_dir, current, known, everything))
    if removed:
        log.warning("spectrograms: %d image(s) in %s were made from other audio or settings: rendering them again",
                    removed, png_dir)
    return removed


def _records_digest(records: dict[tuple[int, int], dict]) -> str:
    from ..outputs import digest

    return digest([[k, n, rec] for (k, n), rec in sorted(records.items())])


def _pending(out: Path, records: dict[tuple[int, int], dict]) -> bool:
    """Whether ``pack`` has shards to merge: records that are not the ones merged last (:data:`MERGED_FILE`), and
    some newer than the whole-run files (an unsharded run after the shards made those; its files are kept)."""
    whole = [out / name for name in (*A.DATA_FILES.values(), "packed.json")]
    if not all(p.is_file() for p in whole):
        return True
    if _load_dict(out / A.SPECTROGRAM_DIR / SHARDS_DIR / MERGED_FILE).get("records_sha1") == _records_digest(records):
        return False
    folder = out / A.SPECTROGRAM_DIR / SHARDS_DIR
    newest = max((folder / f"{k}-of-{n}.json").stat().st_mtime_ns for k, n in records)
    return newest > min(p.stat().st_mtime_ns for p in whole)


def shards_pending(out: str | Path) -> bool:
    """Whether the run folder holds shard records that ``pack`` has still to merge (:func:`merge_shards`)."""
    records = read_records(out)
    return bool(records) and _pending(Path(out), records)


def merge_shards(out: str | Path, cfg: CnnrnnConfig, progress: bool = True) -> dict[str, Any] | None:
    """``pack``'s first step when the run was rendered in shards: check that shards ``1..N`` are all there,
    complete, made for this split with these settings and statistics and from the audio the files hold now, then
    write what the unsharded stage writes for the whole run (the data pickles, the packed arrays from the PNGs,
    ``packed.json``, ``spectrogram_report.json`` with the shards' counts, ``sources.json``, the settings stamp and
    ``config.json``), exactly as an unsharded run would. Call it under the ``spectrograms`` lock.

    Returns:
        ``None`` when the folder has no shard records, or the ones merged last (:data:`MERGED_FILE`) are unchanged;
        else the spectrograms summary with ``shards``.

    Raises:
        ShardError: shards of different N; shards missing, incomplete, or made for another split, other settings,
            statistics or audio (one line naming them and the command to run).
        cnnrnn.outputs.FolderInUseError: a shard is running.
    """
    from ..normalize import NormStats
    from ..outputs import file_digest

    out = Path(out)
    records = read_records(out)
    if not records:
        return None
    ns = sorted({m for _, m in records})
    if len(ns) > 1:
        raise ShardError(f"{out / A.SPECTROGRAM_DIR / SHARDS_DIR} holds shards of different N "
                         f"({', '.join(map(str, ns))}): a run is rendered with one N; remove that folder and run the "
                         "shards again")
    n = ns[0]
    check_no_shard_running(out, "pack")
    if not _pending(out, records):
        return None
    run_records, all_items, reference, copies = _stage_items(out, cfg)
    settings = _png_settings(cfg)[1]
    png_dir = out / A.SPECTROGRAM_DIR
    stats_sha1 = file_digest(png_dir / NORM_FILE) if cfg.spectrogram.uses_stats and (png_dir / NORM_FILE).is_file() \
        else None
    expected: dict[int, list[str]] = {k: [] for k in range(1, n + 1)}
    for item in _all_with_copies(run_records, all_items, copies, n):
        expected[item[1]].append(item[0])
    problems, bad = [], []
    for k in range(1, n + 1):
        rec = records.get((k, n))
        why = ("is missing" if rec is None else "is incomplete (interrupted, or still running elsewhere)"
               if not rec.get("complete") else "was made with other spectrogram settings than this config (give "
               "pack the shards' --config)" if rec.get("settings") != settings else "was made for another split"
               if sorted(rec.get("sources") or {}) != sorted(expected[k]) else
               "was made with other normalisation statistics" if rec.get("stats_sha1") != stats_sha1 else None)
        if why:
            problems.append(f"shard {k}/{n} {why}")
            bad.append(k)
    if not bad:
        sources = _audio_sources(all_items + copies)
        for k in range(1, n + 1):
            changed = [uid for uid, fp in records[(k, n)]["sources"].items() if sources.get(uid) != fp]
            if changed:
                problems.append(f"shard {k}/{n} was made from other audio than its files hold now (e.g. {changed[0]})")
                bad.append(k)
    if bad:
        shown = ", ".join(f"--shard {k}/{n}" for k in bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        first = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ShardError(f"pack: {first}: run `cnnrnn spectrograms --out {out}` with {shown} (same --config), then "
                         "`cnnrnn pack` again")
    A.save_json(_load_dict(png_dir / SOURCES_FILE) | sources, png_dir / SOURCES_FILE)
    A.save_json(settings["spectrogram"], png_dir / SPEC_FILE)
    stats = NormStats.from_dict(A.load_json(png_dir / NORM_FILE)) if stats_sha1 else None
    summary = _spectrograms(out, cfg, progress, stats=stats, sources=sources)
    summary["shards"] = {"n": n, **{f"{k}/{n}": {key: records[(k, n)].get("report", {}).get(key)
                                                 for key in ("n_written", "n_existing", "n_failed")}
                                    for k in range(1, n + 1)}}
    A.save_json(summary, out / "spectrogram_report.json")
    A.save_json({"records_sha1": _records_digest(records), "n": n}, png_dir / SHARDS_DIR / MERGED_FILE)
    return summary


def _all_with_copies(records: dict[str, list[dict]], all_items: list[tuple], copies: list[tuple],
                     n: int) -> list[tuple[str, int]]:
    """``(id, shard)`` of every item and copy (a copy in its utterance's shard)."""
    out = [(item[0], shard_of(item[0], n)) for item in all_items]
    train_ids = [r["id"] for r in records["train"]]
    return out + [(c[0], shard_of(train_ids[i % len(train_ids)], n)) for i, c in enumerate(copies)]
