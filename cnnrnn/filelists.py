"""Filelists of the DCNN-BLSTMwA flow: one utterance per line, ``wavpath|speaker_id|text|emotion_id|lang_id``.

This is the format of the original DCNN-BLSTMWA code (PyTorch, JTES/ESD), e.g.::

    data/ESD/0011/Angry/0011_000351.wav|0011|The nine the eggs.|3|0

Relative ``wavpath`` values are resolved against the filelist's folder, unless ``root`` is given.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from .artifacts import atomic_write_bytes
from .corpora.base import CorpusReport

N_FIELDS = 5


class FilelistError(ValueError):
    """A filelist cannot be used: a malformed line, or an emotion id outside the label set."""


@dataclass(frozen=True)
class FilelistEntry:
    """One filelist line.

    Attributes:
        wavpath: audio path as written in the file (resolved by :func:`read_filelist`).
        speaker_id: speaker id (``0011`` for ESD, ``03`` for EmoDB).
        text: transcript (may be empty; must not contain ``|``).
        emotion_id: integer emotion code, an index into the label list.
        lang_id: integer language code (0 in the original single-language runs).
    """

    wavpath: str
    speaker_id: str
    text: str
    emotion_id: int
    lang_id: int = 0

    def to_line(self) -> str:
        """The entry as one filelist line, without the newline. Raises FilelistError if a field holds ``|``."""
        fields = [self.wavpath, self.speaker_id, self.text, str(self.emotion_id), str(self.lang_id)]
        if any("|" in f or "\n" in f for f in fields):
            raise FilelistError(f"a filelist field may not contain '|' or a newline: {fields}")
        return "|".join(fields)


def parse_line(line: str, where: str = "<line>", n_labels: int | None = None) -> FilelistEntry:
    """Parse one ``wavpath|speaker_id|text|emotion_id|lang_id`` line.

    Raises:
        FilelistError: wrong number of fields, a non-integer id, or (when ``n_labels`` is given) an
            emotion id outside ``range(n_labels)``. The message names ``where`` (``file:line``).
    """
    fields = line.rstrip("\r\n").split("|")
    if len(fields) != N_FIELDS:
        raise FilelistError(f"{where}: expected {N_FIELDS} '|'-separated fields "
                            f"(wavpath|speaker_id|text|emotion_id|lang_id), got {len(fields)}: {line.strip()!r}")
    wavpath, speaker, text, emotion, lang = fields
    try:
        emotion_id, lang_id = int(emotion), int(lang)
    except ValueError:
        raise FilelistError(f"{where}: emotion_id and lang_id must be integers, got {emotion!r} and {lang!r}") from None
    if n_labels is not None and not 0 <= emotion_id < n_labels:
        raise FilelistError(f"{where}: emotion id {emotion_id} is outside the label set 0..{n_labels - 1}")
    if not wavpath.strip():
        raise FilelistError(f"{where}: empty wavpath")
    return FilelistEntry(wavpath.strip(), speaker.strip(), text, emotion_id, lang_id)


def read_filelist(path: str | Path, labels: Sequence[str] | None = None, root: str | Path | None = None,
                  check_audio: bool = True) -> tuple[list[FilelistEntry], CorpusReport]:
    """Read a filelist; entries come back with absolute ``wavpath``.

    Blank lines and lines starting with ``#`` are ignored. A line whose audio file does not exist is a
    counted skip (reason ``missing_audio`` in the report) when ``check_audio`` is true.

    Args:
        path: the filelist (UTF-8 text).
        labels: the label names; when given, emotion ids are checked against ``range(len(labels))``.
        root: folder that relative wav paths are resolved against (default: the filelist's folder).
        check_audio: skip (and count) entries whose audio is missing.

    Returns:
        ``(entries, report)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FilelistError: a malformed line or an emotion id outside the label set (with ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filelist {path} does not exist")
    base = Path(root) if root is not None else path.parent
    report = CorpusReport(corpus="filelist", root=str(path))
    entries = []
    n_labels = len(labels) if labels is not None else None
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        report.n_annotated += 1
        e = parse_line(line, f"{path}:{i}", n_labels)
        wav = Path(e.wavpath)
        wav = wav if wav.is_absolute() else base / wav
        if check_audio and not wav.is_file():
            report.skip("missing_audio", e.wavpath)
            continue
        entries.append(FilelistEntry(str(wav), e.speaker_id, e.text, e.emotion_id, e.lang_id))
    report.n_kept = len(entries)
    return entries, report


def write_filelist(path: str | Path, entries: Iterable[FilelistEntry]) -> Path:
    """Write entries as a filelist, atomically (UTF-8, one line each). Returns ``path``."""
    text = "".join(e.to_line() + "\n" for e in entries)
    return atomic_write_bytes(path, text.encode("utf-8"))
