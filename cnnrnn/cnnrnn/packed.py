"""The packed image arrays of a CNNRNN run: ``train_images.npy`` / ``test_images.npy`` (``(N, H, W, 3) uint8`` BGR,
the rows of ``data_<split>.pickle``), the speed-perturbed copies, their manifest ``packed.json``, and the ``.npy``
storage they are written and read with (row files written with ``pwrite``, read memory-mapped)."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import artifacts as A
from .speed import COPIES_KEY

log = logging.getLogger("cnnrnn.cnnrnn.data")


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

def _entry_arrays_open(out: Path, entry: dict) -> bool:
    """Whether every array a :data:`PACKED_FILE` entry names (images, speed copies) opens and matches it."""
    try:
        for key in ("images", "copies"):
            if entry.get(key):
                open_packed(out / entry[key]["file"], entry[key])
    except (PackedArrayError, OSError):
        return False
    return True
