"""Output folders that are ours: the folder marker, one lock per writer, leftover temporaries, input fingerprints.

Every command that writes a folder goes through this module (issue 21):

* :func:`claim_folder`: a folder is written only when it is new, empty, or already of the command's own kind.
  The kind is recorded in a marker, ``<folder>/.cnnrnn/folder.json`` (:data:`MARKER`), written when the folder
  is claimed; a folder written before markers existed counts as its kind when it holds that kind's files (as each
  family recognised its runs before). Anything else is refused with :class:`OutputFolderError` (one line, exit 2
  from the CLI) before any file is touched. No flag changes this: ``--force`` keeps its meaning (re-run stages).
* :func:`stage_lock`: one lock per stage and part of a folder (``<folder>/.cnnrnn/locks/<stage>[.<part>].lock``,
  an OS file lock through `filelock <https://py-filelock.readthedocs.io>`_), with ``<stage>[.<part>].json`` beside
  it saying who holds it (host, PID, start time, command). A second writer of the same stage and part is refused
  with :class:`FolderInUseError`: "DIR is in use by host H, PID N (started ...)". The OS releases the lock of a
  process that dies, so a stale lock is taken over (and said). Parts of one stage (the shards and workers of
  later issues) lock apart and never block each other.
* :func:`remove_temporaries`: the temporaries (:func:`cnnrnn.artifacts.is_temporary`) that a killed or failed
  write of a stage left behind, removed (and counted) when the stage starts again under its lock.
* :func:`file_digest` / :func:`digest`: content fingerprints. A stage records the fingerprint of its inputs
  (:func:`record_inputs`, ``<folder>/.cnnrnn/inputs.json``), and a stage whose inputs changed re-does its work
  instead of reusing files made from other audio or labels. Content decides, never paths or times, so the parts
  of one run made on several machines agree.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from .artifacts import NotWritableError, ensure_writable_dir, is_temporary, load_json, save_json

log = logging.getLogger("cnnrnn.outputs")

#: The hidden folder of cnnrnn's own bookkeeping inside an output folder (marker, locks, input fingerprints).
STATE_DIR = ".cnnrnn"
#: The folder marker: ``{"kind", "created", "by"}``.
MARKER = f"{STATE_DIR}/folder.json"
#: The stage fingerprints: ``{stage: {"sha1", ...}}``.
INPUTS_FILE = f"{STATE_DIR}/inputs.json"
#: Files an operating system leaves in any folder: they do not make a folder "not empty".
OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini", ".directory"})
#: Files up to this size are hashed whole; larger ones by their size, first and last :data:`EDGE_BYTES`.
FULL_HASH_BYTES = 4 * 2 ** 20
EDGE_BYTES = 2 ** 20
#: Seconds to wait for a stage's lock that is held by a process that has not said who it is: another process's
#: :func:`holder` probe (it takes the lock for an instant) or a writer in its first instant. A writer says who it is
#: (the lock's ``.json``) as soon as it holds the lock, and is refused at once.
PROBE_WAIT_S = 2.0


class OutputFolderError(ValueError):
    """An output folder is not the command's to write: another kind's, or a folder of someone's files."""


class FolderInUseError(OutputFolderError):
    """Another process holds the lock of the stage (and part) this command would write."""


# --------------------------------------------------------------------------- the folder marker
def folder_kind(folder: str | Path) -> str | None:
    """The kind recorded in ``folder``'s marker (:data:`MARKER`), or ``None`` when it has none (or it is
    unreadable)."""
    try:
        data = load_json(Path(folder) / MARKER)
    except (OSError, ValueError):
        return None
    return data.get("kind") if isinstance(data, dict) else None


def _a(kind: str) -> str:
    """``kind`` with its article: "a cnnrnn run", "an hf run"."""
    return ("an " if kind[:1] in "aeiou" or kind.startswith(("hf", "onnx")) else "a ") + kind


def _of(kind: str) -> str:
    """``kind`` after "of": "a cnnrnn run", but "predictions", "filelists", "resampled audio" (no article)."""
    return kind if kind.endswith(("s", "audio")) else _a(kind)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in OS_LITTER and p.name != STATE_DIR)


def claim_folder(folder: str | Path, kind: str, *, recognise: Callable[[Path], bool] | None = None,
                 command: str = "", create: bool = True, write: bool = True) -> Path:
    """Make ``folder`` the output folder of a command of ``kind``, or refuse before anything is touched.

    ``folder`` is taken when it does not exist (created), is empty (OS litter such as ``.DS_Store`` aside), has
    the marker of ``kind``, or has no marker and ``recognise(folder)`` says it holds a ``kind`` output written
    before markers existed. The marker (:data:`MARKER`) is then written if missing. It is also checked that a
    file can be written there (:func:`cnnrnn.artifacts.ensure_writable_dir`).

    Args:
        folder: the output folder (``--out``).
        kind: what the folder holds, e.g. ``"cnnrnn run"``, ``"predictions"`` (said in messages).
        recognise: tells a pre-marker output of this kind by its files (e.g. a run's ``labels.json``).
        command: the command, for the marker and messages (e.g. ``"cnnrnn split"``).
        create: create a missing folder; ``False``: a missing folder is returned as it is (the stage that needs
            an earlier stage's files reports it).
        write: ``False``: only check (nothing is created or written; a command that reads its inputs before it
            writes checks first, then claims).

    Returns:
        ``folder`` as a :class:`~pathlib.Path`.

    Raises:
        OutputFolderError: ``folder`` is another kind's output, or holds files that are not a ``kind`` output
            (the message names some of them); nothing was written.
        cnnrnn.artifacts.NotWritableError: ``folder`` is a file, or cannot be created or written.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotWritableError(f"output folder {folder} is a file, not a folder")
    if not folder.exists() and not create:
        return folder
    if folder.is_dir():
        marked = folder_kind(folder)
        if marked is not None and marked != kind:
            raise OutputFolderError(f"{folder} is the output folder of {_of(marked)}, not of {_of(kind)}: choose "
                                    "another folder for this command")
        if marked is None:
            try:
                entries = _entries(folder)
            except OSError as exc:
                raise NotWritableError(f"cannot read the output folder {folder}: {exc.strerror or exc}") from exc
            if entries and not (recognise is not None and recognise(folder)):
                shown = ", ".join(entries[:4]) + (f" and {len(entries) - 4} more" if len(entries) > 4 else "")
                raise OutputFolderError(f"{folder} is not empty and is not {_a(kind)} folder (it holds {shown}): "
                                        "nothing was written; give a new or empty folder")
    if not write:
        return folder
    ensure_writable_dir(folder)
    if folder_kind(folder) is None:
        save_json({"kind": kind, "created": _now(), "by": command or _command()}, folder / MARKER)
    return folder


def has_any(*names: str) -> Callable[[Path], bool]:
    """A ``recognise`` for :func:`claim_folder`: the folder holds at least one of ``names`` (files or folders)."""
    return lambda folder: any((folder / n).exists() for n in names)


# --------------------------------------------------------------------------- locks
def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _command() -> str:
    argv = list(sys.argv)
    name = Path(argv[0]).name if argv else "python"
    program = __package__ or "python"  # the console script and ``python -m`` both show as the program's name
    return " ".join([program if name in (program, "__main__.py") else name, *argv[1:]])[:300]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def lock_name(stage: str, part: str | None = None) -> str:
    """The lock's file stem: ``stage`` or ``stage.part`` (e.g. ``spectrograms.shard-2-of-3``)."""
    for text in (stage, part or "x"):
        if not text or any(c in text for c in "/\\\0") or text.startswith("."):
            raise ValueError(f"lock name {text!r}: not a plain name")
    return stage if part is None else f"{stage}.{part}"


def holder(folder: str | Path, stage: str, part: str | None = None) -> dict[str, Any] | None:
    """Who holds the lock of ``stage`` (and ``part``) of ``folder``: ``{"host", "pid", "started", "command"}``,
    or ``None`` when nobody does (the lock is tried and released at once; nothing is created)."""
    from filelock import FileLock

    lock_file = Path(folder) / STATE_DIR / "locks" / f"{lock_name(stage, part)}.lock"
    if not lock_file.is_file():
        return None
    lock = FileLock(str(lock_file), timeout=0)
    try:
        if not _acquire(lock, lock_file):
            return _read_holder(lock_file)
    except OSError:  # a read-only folder: nobody can be writing it
        return None
    lock.release()
    return None


def _acquire(lock, lock_file: Path) -> bool:
    """Take ``lock`` (a ``filelock.FileLock``) at once, or within :data:`PROBE_WAIT_S` seconds while whoever holds
    it has not said who it is (two processes probing one lock at once must not see each other as its writer).
    Returns whether it was taken."""
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
        return True
    except Timeout:
        if _read_holder(lock_file):
            return False
    try:
        lock.acquire(timeout=PROBE_WAIT_S)
        return True
    except Timeout:
        return False


def _read_holder(lock_file: Path) -> dict[str, Any]:
    try:
        info = load_json(lock_file.with_suffix(".json"))
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def in_use_message(folder: Path, stage: str, info: dict[str, Any]) -> str:
    """The one line of :class:`FolderInUseError`."""
    who = f"host {info.get('host', '?')}, PID {info.get('pid', '?')}"
    started = info.get("started")
    what = info.get("command")
    return (f"{folder} is in use by {who} (started {started or 'at an unknown time'}"
            + (f", `{what}`" if what else "") + f"): its {stage} stage is being written; wait for that command to "
            "end, or stop it")


@contextmanager
def stage_lock(folder: str | Path, stage: str, part: str | None = None) -> Iterator[Path]:
    """Hold the lock of ``stage`` (and ``part``) of ``folder`` for the ``with`` block; yields the lock file.

    Raises:
        FolderInUseError: another process holds it (names its host, PID, start time and command); nothing was
            written.
    """
    from filelock import FileLock

    folder = Path(folder)
    locks = folder / STATE_DIR / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    lock_file = locks / f"{lock_name(stage, part)}.lock"
    lock = FileLock(str(lock_file), timeout=0)
    if not _acquire(lock, lock_file):
        raise FolderInUseError(in_use_message(folder, stage, _read_holder(lock_file)))
    try:
        before = _read_holder(lock_file)
        host = socket.gethostname()
        if before.get("host") == host and isinstance(before.get("pid"), int) and before["pid"] != os.getpid() \
                and not _pid_alive(before["pid"]):
            log.warning("%s: took over the %s lock of PID %s, which is no longer running", folder, stage,
                        before["pid"])
        save_json({"host": host, "pid": os.getpid(), "started": _now(), "command": _command()},
                  lock_file.with_suffix(".json"))
        yield lock_file
    finally:
        lock_file.with_suffix(".json").unlink(missing_ok=True)
        lock.release()


def check_not_locked(folder: str | Path, stage: str, doing: str) -> None:
    """Refuse to ``doing`` (e.g. "predict with this run") while another process writes ``stage`` of ``folder``.

    Raises:
        FolderInUseError: the stage's lock is held.
    """
    info = holder(folder, stage)
    if info is not None:
        raise FolderInUseError(f"cannot {doing}: " + in_use_message(Path(folder), stage, info))


# --------------------------------------------------------------------------- leftovers
def _temporary_of(name: str, finals: Sequence[str] | None) -> bool:
    if finals is None:
        return True
    return any(name.startswith(f".{f}.") or name.startswith(f".{Path(f).stem}.tmp") for f in finals)


def remove_temporaries(folders: Iterable[str | Path], stage: str, of: Sequence[str] | None = None) -> int:
    """Remove the temporaries (:func:`cnnrnn.artifacts.is_temporary`: ``.name.XXXX.tmp``, ``.name.tmp.h5``) that a
    killed or failed write left in ``folders``; call it under the stage's lock, when the stage starts.

    Args:
        folders: the folders the stage writes (not recursive).
        stage: its name, for the log line.
        of: the final file names whose temporaries are the stage's (``.train_images.npy.XXXX.tmp`` is one of
            ``train_images.npy``); ``None``: every temporary in ``folders`` (a folder only this stage writes).

    Returns:
        How many files were removed (logged with their total size).
    """
    removed, nbytes = 0, 0
    for folder in map(Path, folders):
        if not folder.is_dir():
            continue
        for path in folder.glob(".*"):
            if not is_temporary(path) or not _temporary_of(path.name, of) or not path.is_file():
                continue
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                continue
            removed, nbytes = removed + 1, nbytes + size
    if removed:
        log.info("%s: removed %d temporary file(s) (%.1f MB) left by an interrupted or failed run", stage, removed,
                 nbytes / 1e6)
    return removed


# --------------------------------------------------------------------------- fingerprints
def file_digest(path: str | Path) -> str:
    """A content fingerprint of a file (hex SHA-1): the whole file up to :data:`FULL_HASH_BYTES`; above it, the
    size with the first and last :data:`EDGE_BYTES`. Paths and modification times play no part.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: fh.read(2 ** 20), b""):
                h.update(block)
        else:
            h.update(f"size={size};".encode())
            h.update(fh.read(EDGE_BYTES))
            fh.seek(size - EDGE_BYTES)
            h.update(fh.read(EDGE_BYTES))
    return h.hexdigest()


def audio_digests(paths: Sequence[str | Path]) -> list[str | None]:
    """:func:`file_digest` of each audio file, ``None`` for one that cannot be read (the stage skips it); a path
    listed several times (an utterance and its speed-perturbed copies) is read once."""
    known: dict[str, str | None] = {}
    for p in map(str, paths):
        if p not in known:
            try:
                known[p] = file_digest(p)
            except OSError:
                known[p] = None
    return [known[str(p)] for p in paths]


def digest(obj: Any) -> str:
    """The hex SHA-1 of ``obj``'s canonical JSON (keys sorted; values JSON cannot hold as their ``str``)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()


def read_inputs(folder: str | Path) -> dict[str, Any]:
    """The stage fingerprints recorded in ``folder`` (:data:`INPUTS_FILE`); ``{}`` when none."""
    try:
        data = load_json(Path(folder) / INPUTS_FILE)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record_inputs(folder: str | Path, stage: str, fingerprint: dict[str, Any]) -> None:
    """Record ``stage``'s input fingerprint (``{"sha1": ..., ...}``) in :data:`INPUTS_FILE`."""
    data = read_inputs(folder)
    data[stage] = fingerprint
    save_json(data, Path(folder) / INPUTS_FILE)


@contextmanager
def writing_stage(folder: str | Path, stage: str, temporaries: Sequence[tuple[str | Path, Sequence[str] | None]],
                  part: str | None = None) -> Iterator[int]:
    """Write ``stage`` (and ``part``) of ``folder``: hold its lock (:func:`stage_lock`), remove the temporaries a
    killed or failed earlier run of it left (:func:`remove_temporaries`), and remove this run's own when the block
    ends, whether it ends well, fails (a full disk) or is interrupted (Ctrl-C, SIGTERM). Yields the number of
    leftovers removed at the start.

    Args:
        folder: the output folder. stage, part: what is locked.
        temporaries: ``(folder, of)`` pairs, the folders the stage writes and its final file names in each
            (``None``: every temporary in a folder only this stage writes).

    Raises:
        FolderInUseError: see :func:`stage_lock`.
    """
    with stage_lock(folder, stage, part):
        n = sum(remove_temporaries([where], stage, of) for where, of in temporaries)
        try:
            yield n
        finally:
            for where, of in temporaries:
                remove_temporaries([where], stage, of)


# --------------------------------------------------------------------------- predictions folders
#: The kind of folder ``predict`` and the families' ``evaluate`` write (``predictions.csv``, ``metrics.json``, ...).
PREDICTIONS_KIND = "predictions"


def is_predictions_folder(folder: Path) -> bool:
    """Whether ``folder`` holds predictions written before folder markers existed: a ``metrics.json`` naming a
    family, or a ``predictions.csv`` / ``timeline.csv`` with a ``p_<label>`` column, and no run manifest (a user's
    CSV of another shape does not count)."""
    import csv

    from .runs import FAMILIES, MANIFEST_FILE

    if (folder / MANIFEST_FILE).exists():
        return False
    try:
        metrics = load_json(folder / "metrics.json")
        if isinstance(metrics, dict) and metrics.get("family") in FAMILIES:
            return True
    except (OSError, ValueError):
        pass
    for name in ("predictions.csv", "timeline.csv"):
        try:
            with open(folder / name, newline="", encoding="utf-8") as fh:
                header = next(csv.reader(fh), [])
        except (OSError, UnicodeDecodeError, csv.Error):
            continue
        if "id" in header and any(h.startswith("p_") for h in header):
            return True
    return False


def claim_predictions(folder: str | Path) -> Path:
    """Claim ``folder`` as a predictions folder (:func:`claim_folder`, kind :data:`PREDICTIONS_KIND`): new, empty,
    or predictions already (:func:`is_predictions_folder`).

    Raises:
        OutputFolderError: ``folder`` holds other files (a run's, a corpus', the user's), or is another command's
            output folder; nothing was written.
        cnnrnn.artifacts.NotWritableError: ``folder`` cannot be written.
    """
    return claim_folder(folder, PREDICTIONS_KIND, recognise=is_predictions_folder)


def check_not_training(model: str | Path) -> None:
    """Refuse to predict with a run that another process is training: the nearest folder at or above ``model``
    that holds cnnrnn's bookkeeping (:data:`STATE_DIR`) must not have its ``train`` (or DCNN ``finetune``) lock
    held.

    Raises:
        FolderInUseError: the run is being trained (names the host, PID and start time).
    """
    p = Path(model).resolve()
    for folder in ([p] if p.is_dir() else []) + list(p.parents)[:4]:
        if (folder / STATE_DIR / "locks").is_dir():
            for stage in ("train", "finetune"):
                check_not_locked(folder, stage, f"predict with {model}")
            return
