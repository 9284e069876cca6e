"""The Utterance record every corpus reader returns, and the shared skip bookkeeping.

Also the checks every reader shares, declared once here: the utterance id (:func:`id_problem`,
:class:`UtteranceIds`, :func:`id_path`) and the decoding of a corpus CSV (:func:`read_csv`).

**Id policy.** An utterance id names files (``spectrograms/<id>.png``), so an id that is not one plain,
safe file name (a path separator, ``..`` or another leading ``.``, a NUL or another control character;
:func:`id_problem`) is a counted skip, reason ``unsafe_id``, never sanitised: a rewritten id could meet
another utterance's id, and the row that held it is likely damaged anyway. Ids are unique within a corpus:
a repeated identical row is a counted skip (``duplicate_row``); how other repeats are handled depends on
what the id means (:class:`UtteranceIds`).
"""
from __future__ import annotations

import codecs
import csv
import dataclasses
import io
import logging
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

log = logging.getLogger("cnnrnn.corpora")


class CorpusError(ValueError):
    """A corpus cannot be read at all: missing or empty folder, missing columns, unknown reader."""


@dataclass
class Utterance:
    """One labelled utterance, whatever corpus it came from.

    Attributes:
        id: unique utterance id (KEMDy ``Segment ID``, EmoDB file stem, ...), safe as a file name
            (:func:`id_problem`; the readers skip an unsafe one, see :class:`UtteranceIds`).
        audio_path: absolute path of the audio file.
        text: transcript, or ``None`` when the corpus has none.
        speaker: speaker id (``User002F`` for KEMDy20, ``03`` for EmoDB), or ``None``.
        session: session name (``Session01``), or ``None`` for corpora without sessions.
        emotion: the label (the first one when the annotation is tied).
        emotions: every label of a tied annotation (``['fear', 'neutral']``),
            or just ``[emotion]``.
        valence, arousal: mean ratings (KEMDy: 1–5 scale), or ``None``.
    """

    id: str
    audio_path: str
    text: str | None = None
    speaker: str | None = None
    session: str | None = None
    emotion: str = ""
    emotions: list[str] = field(default_factory=list)
    valence: float | None = None
    arousal: float | None = None

    @property
    def is_tied(self) -> bool:
        """True when the annotation names several labels (a ``;`` tie in KEMDy)."""
        return len(self.emotions) > 1

    def to_dict(self) -> dict[str, Any]:
        """The utterance as a JSON-ready dict (its fields)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Utterance":
        """An utterance from :meth:`to_dict`'s dict."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class CorpusReport:
    """What a reader kept and skipped. ``skipped`` maps a reason to the ids skipped for it."""

    corpus: str
    root: str
    n_annotated: int = 0
    n_kept: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)
    fixed: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str, item: str) -> None:
        """Count ``item`` (a file, an id, a line) as skipped for ``reason``."""
        self.skipped.setdefault(reason, []).append(item)

    def fix(self, what: str) -> None:
        """Count one repair of kind ``what`` (e.g. a renamed duplicate id)."""
        self.fixed[what] = self.fixed.get(what, 0) + 1

    @property
    def n_skipped(self) -> int:
        """How many items were skipped, over every reason."""
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        """One line: kept of annotated, and the skips and fixes by reason."""
        parts = [f"{self.corpus}: {self.n_kept} of {self.n_annotated} utterances kept"]
        for reason, ids in sorted(self.skipped.items()):
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            parts.append(f"skipped {len(ids)} ({reason}: {shown})")
        for what, n in sorted(self.fixed.items()):
            parts.append(f"fixed {n} ({what})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON (counts, skipped items by reason, fixes)."""
        d = dataclasses.asdict(self)
        d["n_skipped"] = self.n_skipped
        return d


def require_dir(root: str | Path, corpus: str, hint: str) -> Path:
    """Return ``root`` as a Path, or raise CorpusError if it is missing or empty."""
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"{corpus}: corpus folder {root} does not exist ({hint})")
    if not any(root.iterdir()):
        raise CorpusError(f"{corpus}: corpus folder {root} is empty ({hint})")
    return root


def split_labels(cell: str) -> list[str]:
    """Split a KEMDy ``Total Evaluation`` cell: ``'fear;neutral'`` → ``['fear', 'neutral']``."""
    return [part.strip().lower() for part in str(cell).split(";") if part.strip()]


def to_float(cell: Any) -> float | None:
    """A CSV cell as a float, or ``None`` when it is empty or not a number."""
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return None if value != value else value  # NaN → None


def read_text(path: Path, encodings: tuple[str, ...]) -> str | None:
    """Read a one-line transcript trying ``encodings`` in order; ``None`` if missing or undecodable."""
    if not path.is_file():
        return None
    raw = path.read_bytes()
    for enc in encodings:
        try:
            return raw.decode(enc).strip()
        except UnicodeDecodeError:
            continue
    return None


def label_counts(utterances: list[Utterance]) -> dict[str, int]:
    """``{emotion: count}`` of ``utterances``, sorted by emotion."""
    return dict(sorted(Counter(u.emotion for u in utterances).items()))


# --------------------------------------------------------------------------- ids
#: Longest utterance id in UTF-8 bytes: ``<id>.png`` and the temporary name of its atomic write
#: (``.<id>.png.XXXXXXXX.tmp``) must fit the usual 255-byte limit of a file name.
MAX_ID_BYTES = 200
#: What a repeated id means to a reader (see :class:`UtteranceIds`).
REPEAT_POLICIES = ("error", "skip", "rename")


def id_problem(uid: str) -> str | None:
    """Why ``uid`` cannot be an utterance id, or ``None`` when it can.

    Every id names files inside an output folder (``spectrograms/<id>.png``), so it must be one plain file
    name: not empty; no path separator (``/`` or ``\\``); no leading ``.`` (``.``, ``..``, hidden and
    temporary names); no NUL or other control character (Unicode category Cc, line and paragraph
    separators); no lone surrogate (what an undecodable file name becomes); at most :data:`MAX_ID_BYTES`
    bytes in UTF-8.

    Returns:
        A short reason (``"a path separator '/'"``), or ``None``.
    """
    if not isinstance(uid, str) or not uid:
        return "an empty id"
    for ch in uid:
        if ch in "/\\":
            return f"a path separator {ch!r}"
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp"):
            return f"a control character {ch!r}"
        if category == "Cs":
            return "an undecodable character"
    if uid.startswith("."):
        return "a leading '.'"
    if len(uid.encode("utf-8")) > MAX_ID_BYTES:
        return f"more than {MAX_ID_BYTES} bytes"
    return None


def _difference(first: Any, other: Any) -> str:
    if isinstance(first, dict) and isinstance(other, dict):
        keys = [k for k in dict.fromkeys([*first, *other]) if first.get(k) != other.get(k)]
        shown = "; ".join(f"{k}: {first.get(k)!r} vs {other.get(k)!r}" for k in keys[:3])
        return f" (they differ in {shown}{'; ...' if len(keys) > 3 else ''})"
    return f" ({first!r} vs {other!r})"


class UtteranceIds:
    """The ids of one corpus read, each checked once, where the reader derives it: safe and unique.

    An unsafe id (:func:`id_problem`) is a counted skip, reason ``unsafe_id``, listed with its place and
    its ``repr``; it is never sanitised. A repeated id is handled as ``repeat`` says:

    * ``"error"``: the id names one annotated item (a KEMDy ``Segment ID``, an UrbanSound8K ``ID``, a
      ``new_data.csv`` ``segment_id``). A repeat whose content equals an earlier one is a counted skip,
      ``duplicate_row``; any other repeat is a :class:`CorpusError` naming both rows.
    * ``"skip"``: the id is an audio file's name in a layout where the name says everything (EmoDB, FSDD,
      ESD, JTES): a second file of that name elsewhere under the folder (a copy) is a counted skip,
      ``duplicate_id``.
    * ``"rename"``: the id is a file stem in a manifest, where different files may share a stem. A repeat
      with the same content is a counted skip (``duplicate_row``), the same audio with other content a
      :class:`CorpusError`; other audio gets ``<id>_<suffix>`` (``<id>_<suffix>_2``, ... if taken), unique
      among every id accepted and every id reserved (:meth:`reserve`), counted under ``fixed``
      (``renamed_duplicate_id``).

    Args:
        report: the read's report; skips and renames are counted there.
        repeat: one of :data:`REPEAT_POLICIES`.
    """

    def __init__(self, report: CorpusReport, repeat: str = "error"):
        if repeat not in REPEAT_POLICIES:
            raise ValueError(f"repeat must be one of {REPEAT_POLICIES}, got {repeat!r}")
        self.report, self.repeat = report, repeat
        self._seen: dict[str, list[tuple[str, Any, str | None]]] = {}
        self._used: set[str] = set()
        self._reserved: set[str] = set()

    def reserve(self, ids: Iterable[str]) -> None:
        """Keep ``ids`` (a manifest's stems, read before its rows) free: no renamed id takes one of them."""
        self._reserved.update(ids)

    def accept(self, uid: str, where: str, content: Any = None, audio: str | None = None,
               suffix: str | None = None) -> str | None:
        """The id to give the record at ``where``, or ``None`` when the record is skipped (counted).

        Args:
            uid: the id as the reader derived it.
            where: the record's place, for messages (``Sess01_eval.csv line 5``, ``d1/a.wav``).
            content: what the record says, compared when the id repeats (a dict names the differing keys
                in the error).
            audio: the record's audio file (``rename``: other audio gets a new id).
            suffix: appended to a renamed id (``rename``; the manifest's line number).

        Raises:
            CorpusError: a repeated id whose content differs (``error``; ``rename`` with the same audio).
        """
        problem = id_problem(uid)
        if problem:
            self.report.skip("unsafe_id", f"{where}: {uid!r} has {problem}")
            return None
        earlier = self._seen.get(uid)
        if earlier is None and uid not in self._used:
            self._seen[uid] = [(where, content, audio)]
            self._used.add(uid)
            return uid
        earlier = earlier or []
        if self.repeat == "skip":
            self.report.skip("duplicate_id", f"{where} (id {uid!r} already read from {earlier[0][0]})")
            return None
        for first_where, first_content, first_audio in earlier:
            if content == first_content:
                self.report.skip("duplicate_row", f"{where} (repeats {first_where})")
                return None
        clash = [e for e in earlier if self.repeat == "error" or e[2] == audio]
        if clash:
            first_where, first_content, _ = clash[0]
            raise CorpusError(f"{self.report.corpus}: id {uid!r} is annotated twice, differently, in {first_where} "
                              f"and {where}{_difference(first_content, content)}; keep one of the two rows")
        base = f"{uid}_{suffix if suffix is not None else len(earlier) + 1}"
        new, k = base, 2
        while new in self._used or new in self._reserved:
            new, k = f"{base}_{k}", k + 1
        problem = id_problem(new)
        if problem:
            self.report.skip("unsafe_id", f"{where}: {new!r} has {problem}")
            return None
        earlier.append((where, content, audio))
        self._seen[uid] = earlier
        self._used.add(new)
        self.report.fix("renamed_duplicate_id")
        return new


def check_ids(utterances: Sequence[Utterance], corpus: str) -> None:
    """Raise :class:`CorpusError` unless every id is safe (:func:`id_problem`) and unique.

    What every reader guarantees through :class:`UtteranceIds`; :func:`cnnrnn.corpora.load_corpus` checks it
    again, so a reader that forgot cannot pass an unsafe or repeated id on.
    """
    seen: set[str] = set()
    for u in utterances:
        problem = id_problem(u.id)
        if problem:
            raise CorpusError(f"{corpus}: utterance id {u.id!r} ({u.audio_path}) has {problem}")
        if u.id in seen:
            raise CorpusError(f"{corpus}: utterance id {u.id!r} is given to two utterances (one is {u.audio_path})")
        seen.add(u.id)


def id_path(folder: str | Path, uid: str, suffix: str) -> Path:
    """The file ``<folder>/<uid><suffix>`` of one utterance, checked to stay inside ``folder``.

    The writers' own check (defence in depth: readers already skip unsafe ids).

    Raises:
        CorpusError: ``uid`` is unsafe (:func:`id_problem`), or the path resolves outside ``folder``
            (through a symbolic link).
    """
    folder = Path(folder)
    problem = id_problem(uid)
    if problem:
        raise CorpusError(f"refusing to write the file of id {uid!r} in {folder}: the id has {problem}")
    path = folder / f"{uid}{suffix}"
    if path.resolve().parent != folder.resolve():
        raise CorpusError(f"refusing to write {path}: it resolves to {path.resolve()}, outside {folder}")
    return path


# --------------------------------------------------------------------------- CSV files
#: Byte-order marks, longest first (the UTF-32-LE mark starts with the UTF-16-LE one).
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def decode_text(path: str | Path, encodings: Sequence[str] = ("utf-8",)) -> tuple[str, str]:
    """The text of a file and the encoding that decoded it.

    A byte-order mark decides (UTF-8, UTF-16 or UTF-32); without one, each of ``encodings`` is tried in
    order, strictly.

    Raises:
        CorpusError: no encoding decodes the file (the message names the file, the encodings tried and the
            first byte the first one could not decode), or the file looks like UTF-16/32 without a
            byte-order mark (more than a quarter of its bytes are NUL).
    """
    path = Path(path)
    raw = path.read_bytes()
    marked = next((enc for bom, enc in _BOMS if raw.startswith(bom)), None)
    tried = (marked,) if marked else tuple(encodings)
    if marked is None and raw.count(0) > len(raw) // 4:  # UTF-16/32 without a mark: ASCII decodes, with NULs
        raise CorpusError(f"{path}: looks like UTF-16 or UTF-32 text without a byte-order mark; save the file as UTF-8")
    first: UnicodeDecodeError | None = None
    for enc in tried:
        try:
            return raw.decode(enc), enc
        except UnicodeDecodeError as exc:
            first = first or exc
    assert first is not None
    line = raw.count(b"\n", 0, first.start) + 1
    raise CorpusError(f"{path}: not {' or '.join(tried)} text (line {line}: byte 0x{raw[first.start]:02x} at offset "
                      f"{first.start} is not {tried[0]}); save the file as UTF-8")


def read_csv(path: str | Path, encodings: Sequence[str] = ("utf-8",),
             report: CorpusReport | None = None) -> list[tuple[int, list[str]]]:
    """Every non-blank row of a CSV file as ``(line, cells)``; ``line`` is the 1-based line the row starts on.

    Args:
        path: the CSV file.
        encodings: tried in order when the file has no byte-order mark (:func:`decode_text`).
        report: if given, a file decoded as something other than UTF-8 is counted under ``fixed``
            (``csv_encoding:cp949``).

    Raises:
        CorpusError: the file cannot be decoded, or is not CSV (a row the ``csv`` module refuses, e.g. a
            field over its size limit); the message names the file and the line.
    """
    path = Path(path)
    text, enc = decode_text(path, encodings)
    if report is not None and enc not in ("utf-8", "utf-8-sig"):
        report.fix(f"csv_encoding:{enc}")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, start = [], 1
    try:
        for cells in reader:
            if cells:
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as exc:
        raise CorpusError(f"{path} line {reader.line_num}: not a CSV row ({exc})") from None
    return rows


def csv_records(rows: list[tuple[int, list[str]]]) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """Split :func:`read_csv` rows into the header (cell names stripped) and ``(line, {name: cell})`` records;
    a missing cell reads as ``""``. ``([], [])`` for an empty file."""
    if not rows:
        return [], []
    header = [name.strip() for name in rows[0][1]]
    return header, [(line, {name: cells[i] if i < len(cells) else "" for i, name in enumerate(header)})
                    for line, cells in rows[1:]]


# --------------------------------------------------------------------------- input lists
@dataclass
class Inputs:
    """The files (or :class:`cnnrnn.audio.Clip` s) to predict on, with their speaker (``None`` = unknown) and
    true label (``None`` = unknown): what the families predict on."""

    paths: list[Any]  # Path or cnnrnn.audio.Clip
    speakers: list[str | None]
    labels: list[str | None]
    skipped: dict[str, list[str]] = field(default_factory=dict)


def read_input_csv(path: str | Path) -> Inputs:
    """A CSV of inputs: column ``path`` (relative paths are taken from the CSV's folder), optional ``speaker``
    and ``label``. Rows without a path are skipped (``empty_cell``), missing files too (``missing_audio``).

    Raises:
        ValueError: no ``path`` column.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "path" not in cols:
            raise ValueError(f"{path}: an input CSV needs a 'path' column (and optionally 'speaker', 'label'); "
                             f"found {reader.fieldnames}")
        rows = list(reader)
    out = Inputs([], [], [])

    def get(row, key):
        value = (row.get(cols[key]) or "").strip() if key in cols else ""
        return value or None

    for i, row in enumerate(rows, start=2):
        p = get(row, "path")
        if not p:
            out.skipped.setdefault("empty_cell", []).append(f"{path.name} line {i}")
            continue
        audio = Path(p) if Path(p).is_absolute() else path.parent / p
        if not audio.is_file():
            out.skipped.setdefault("missing_audio", []).append(str(audio))
            continue
        out.paths.append(audio)
        out.speakers.append(get(row, "speaker"))
        out.labels.append(get(row, "label"))
    return out
