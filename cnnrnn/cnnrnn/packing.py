"""Stage 3 of the CNNRNN job, ``pack``: the packed arrays checked (or made again from the PNGs) and the original's
``train_final.pickle`` / ``test_final.pickle``."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import artifacts as A
from ..audio import WORKER_DIED, map_chunks
from .config import CnnrnnConfig, load_config
from .packed import (COPIES_FILE, IMAGES_FILES, PACKED_FILE, _digest, _entry_arrays_open, _ReleasingWriter,
                     _temporary, check_disk_space, create_rows_file, open_packed, read_packed_manifest)
from .render import _SPECTROGRAM_OUTPUTS, _render_chunk
from .run_folder import claim_run
from .shards import merge_shards
from .speed import COPIES_KEY

log = logging.getLogger("cnnrnn.cnnrnn.data")


def pack(out: str | Path, config=None, progress: bool = True, force: bool = False,
         pickle: bool | None = None) -> dict[str, Any]:
    """Stage 3: the packed arrays of every split, and ``train_final.pickle`` / ``test_final.pickle``.

    The arrays (:data:`IMAGES_FILES`, ``(N, H, W, 3) uint8`` BGR in the rows of the data pickle, read
    memory-mapped by ``train``) are normally written by ``spectrograms`` already; ``pack`` checks them against
    :data:`PACKED_FILE` and the data pickles, and makes them from the PNGs (in parallel, row by row, never holding
    them in memory) when they are missing or stale, or with ``force``. When the run was rendered in shards
    (``cnnrnn spectrograms --shard K/N``), ``pack`` first checks that every shard is there and complete and merges
    them (:func:`cnnrnn.cnnrnn.shards.merge_shards`: the data pickles and arrays an unsharded run writes).

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
        cnnrnn.cnnrnn.shards.ShardError: a shard missing, incomplete or stale, or shards of different N (one line
            naming them and the command to run).
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
        merged = merge_shards(out, cfg, progress)
        summary = _pack(out, cfg, progress, force, pickle) | {"leftovers_removed": n_leftovers}
        return summary | ({"shards": merged["shards"]} if merged else {})


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
