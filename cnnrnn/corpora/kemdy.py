"""KEMDy20 and KEMDy19 (ETRI Korean multimodal emotion datasets) readers.

Both annotation formats have two header rows; the ``Total Evaluation``
emotion is the raters' majority vote, with ties written as labels joined by
``;``. The KEMDy label set is declared here, once (:data:`KEMDY_LABELS`, in its
documented order, which gives the label codes). The corpus files spell one label
``disqust``; it is read as an alias of ``disgust`` everywhere (:data:`LABEL_ALIASES`,
:func:`canonical_label`): in annotation cells, configs and old ``labels.json`` files.

Besides the utterance readers, :func:`read_kemdy_ratings` returns every
rater's raw emotion cell per segment (for :mod:`cnnrnn.corpora.kemdy_labels`), and
:func:`read_kemdy_weighted` reads the ``new_data.csv`` that module writes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from .base import (CorpusError, CorpusReport, Utterance, UtteranceIds, csv_records, read_csv, read_text, require_dir,
                   split_labels, to_float)

#: The seven KEMDy emotions, canonical spelling, in code order (KEMDy19/KEMDy20, ETRI).
KEMDY_LABELS = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
#: Spellings found in the KEMDy files → canonical label.
LABEL_ALIASES = {"disqust": "disgust"}


def canonical_label(cell: str) -> str | None:
    """``' Disqust '`` → ``'disgust'``; ``None`` for an empty cell or a label outside :data:`KEMDY_LABELS`."""
    label = str(cell).strip().lower()
    label = LABEL_ALIASES.get(label, label)
    return label if label in KEMDY_LABELS else None

_SESS20 = re.compile(r"Sess(\d+)_eval\.csv$", re.IGNORECASE)
_SESS19 = re.compile(r"Session(\d+)_([FM])_res\.csv$", re.IGNORECASE)
_ID_PREFIX = re.compile(r"^Sess(\d+)_")
_USER = re.compile(r"(User\d+[MF]?)")
_RATER = re.compile(r"^(Eval\d+)", re.IGNORECASE)

#: Columns of the ``new_data.csv`` that :mod:`cnnrnn.corpora.kemdy_labels` writes, read by :func:`read_kemdy_weighted`.
WEIGHTED_COLUMNS = ("segment_id", "session", "speaker", "text", "wav_path", "emotion_raw", "emotion_weighted",
                    "valence", "arousal")


#: The header cells an annotation file must have, matched by name (case and spacing aside): the id column and
#: the ``Total Evaluation`` group in the first header row, its three columns in the second.
ID_HEADER = "Segment ID"
TOTAL_HEADER = "Total Evaluation"
TOTAL_COLUMNS = ("Emotion", "Valence", "Arousal")
#: Encodings tried for a KEMDy CSV without a byte-order mark, in order.
CSV_ENCODINGS = ("utf-8", "cp949")
_EXPECTED_HEADER = ("'Numb,Wav,,Segment ID,Total Evaluation,,,Eval01F,...' "
                    "then ',start,end,,Emotion,Valence,Arousal,...'")


def _norm(cell: str) -> str:
    return " ".join(str(cell).split()).lower()


@dataclass
class _Table:
    """An annotation file: its first header row, column names, the found columns and its data rows."""

    path: Path
    header: list[str]
    names: list[str]
    id_col: int
    col: int
    rows: list[tuple[int, list[str]]]


def _read_table(path: Path, report: CorpusReport) -> _Table:
    """Read an annotation CSV with its two header rows, checked by name (see :data:`ID_HEADER`).

    UTF-8 or cp949 (:data:`CSV_ENCODINGS`), or whatever a byte-order mark says. The data rows keep their
    line numbers; blank rows are left out.

    Raises:
        CorpusError: undecodable; a header row or the ``Segment ID`` / ``Total Evaluation`` column
            (``Emotion, Valence, Arousal`` below it) missing; the message names the file and the column.
    """
    rows = read_csv(path, CSV_ENCODINGS, report)
    if len(rows) < 2:
        raise CorpusError(f"{path}: expected two header rows ({_EXPECTED_HEADER}), found {len(rows)} row(s)")
    first, second = rows[0][1], rows[1][1]
    found = [_norm(c) for c in first]
    cols = {}
    for name in (ID_HEADER, TOTAL_HEADER):
        if _norm(name) not in found:
            raise CorpusError(f"{path}: no {name!r} column in the first header row (expected two header rows: "
                              f"{_EXPECTED_HEADER}); found {','.join(c.strip() for c in first[:6])},...")
        cols[name] = found.index(_norm(name))
    col = cols[TOTAL_HEADER]
    below = [_norm(c) for c in second[col:col + 3]]
    if below != [_norm(c) for c in TOTAL_COLUMNS]:
        raise CorpusError(f"{path}: the second header row has {below} under {TOTAL_HEADER!r}, expected "
                          f"{list(TOTAL_COLUMNS)} (expected two header rows: {_EXPECTED_HEADER})")
    names, group = [], ""
    for i in range(max(len(first), len(second))):
        top = first[i].strip() if i < len(first) else ""
        sub = second[i].strip() if i < len(second) else ""
        group = top or group
        names.append(" ".join(x for x in (group, sub) if x) or f"column {i + 1}")
    data = [(line, r) for line, r in rows[2:] if any(cell.strip() for cell in r)]
    return _Table(path, first, names, cols[ID_HEADER], col, data)


def _row_content(table: _Table, row: list[str]) -> dict[str, str]:
    """What a row says, compared when its Segment ID repeats: every cell but the running number and the id."""
    return {(table.names[i] if i < len(table.names) else f"column {i + 1}"): cell.strip()
            for i, cell in enumerate(row) if i not in (0, table.id_col)}


def _labels_or_skip(cell: str, seg_id: str, report: CorpusReport) -> list[str] | None:
    labels = split_labels(cell)
    if not labels:
        report.skip("no_label", seg_id)
        return None
    unknown = [lab for lab in labels if canonical_label(lab) is None]
    if unknown:
        report.skip(f"unknown_label:{unknown[0]}", seg_id)
        return None
    if any(lab in LABEL_ALIASES for lab in labels):
        report.fix("alias:disqust->disgust")
    return [canonical_label(lab) for lab in labels]


@dataclass
class _Segment:
    """One annotated row: ``col`` is its Total Evaluation Emotion column (Valence and Arousal follow)."""

    id: str
    row: list[str]
    header: list[str]
    col: int
    wav: Path
    session: str
    speaker: str | None
    encodings: tuple[str, ...]

    def utterance(self, labels: list[str], text: str | None) -> Utterance:
        return Utterance(
            id=self.id, audio_path=str(self.wav.resolve()), text=text, speaker=self.speaker,
            session=self.session, emotion=labels[0] if labels else "", emotions=labels,
            valence=to_float(self.row[self.col + 1]), arousal=to_float(self.row[self.col + 2]),
        )


def _annotation_files(root: Path, pattern: re.Pattern, corpus: str, hint: str) -> list[Path]:
    files = sorted(p for p in (root / "annotation").glob("*.csv") if pattern.search(p.name))
    if not files:
        raise CorpusError(f"{corpus}: no {hint} under {root}")
    return files


def _kemdy20_segments(root: Path, report: CorpusReport) -> Iterator[_Segment]:
    """KEMDy20 rows (counted in ``report.n_annotated``) with the ``SessNN_`` prefix fixed; see :func:`read_kemdy20`.

    Each id is checked (:class:`~cnnrnn.corpora.base.UtteranceIds`, ``repeat="error"``) after the prefix fix,
    before it names an audio file."""
    ids = UtteranceIds(report, "error")
    for path in _annotation_files(root, _SESS20, "kemdy20", "annotation/SessNN_eval.csv"):
        num = int(_SESS20.search(path.name).group(1))
        table = _read_table(path, report)
        for line, row in table.rows:
            if len(row) < max(table.id_col, table.col + 2) + 1:
                report.skip("short_row", f"{path.name} line {line}")
                continue
            report.n_annotated += 1
            seg_id = row[table.id_col].strip()
            m = _ID_PREFIX.match(seg_id)
            if m and int(m.group(1)) != num:
                seg_id = f"Sess{num:02d}_" + seg_id[m.end():]
                report.fix("session_prefix")
            seg_id = ids.accept(seg_id, f"{path.name} line {line}", _row_content(table, row))
            if seg_id is None:
                continue
            user = _USER.search(seg_id)
            yield _Segment(seg_id, row, table.header, table.col,
                           root / "wav" / f"Session{num:02d}" / f"{seg_id}.wav",
                           f"Session{num:02d}", user.group(1) if user else None, ("cp949", "utf-8"))


def _kemdy19_segments(root: Path, report: CorpusReport) -> Iterator[_Segment]:
    """KEMDy19 rows of each segment's own speaker file (counted in ``report.n_annotated``); see :func:`read_kemdy19`."""
    files = _annotation_files(root, _SESS19, "kemdy19", "annotation/SessionNN_F_res.csv / _M_res.csv")
    ids = UtteranceIds(report, "error")
    for path in files:
        m = _SESS19.search(path.name)
        num, letter = int(m.group(1)), m.group(2).upper()
        table = _read_table(path, report)
        for line, row in table.rows:
            if len(row) < max(table.id_col, table.col + 2) + 1:
                report.skip("short_row", f"{path.name} line {line}")
                continue
            seg_id = row[table.id_col].strip()
            speaker_letter = seg_id.rsplit("_", 1)[-1][:1].upper()
            if speaker_letter != letter:
                continue  # the other speaker's row; read from its own file
            report.n_annotated += 1
            seg_id = ids.accept(seg_id, f"{path.name} line {line}", _row_content(table, row))
            if seg_id is None:
                continue
            dialogue = seg_id.rsplit("_", 1)[0]
            yield _Segment(seg_id, row, table.header, table.col,
                           root / "wav" / f"Session{num:02d}" / dialogue / f"{seg_id}.wav",
                           f"Session{num:02d}", f"Session{num:02d}_{letter}", ("utf-8", "cp949"))


_LAYOUTS = {
    "kemdy20": (_kemdy20_segments, "expected annotation/SessNN_eval.csv and wav/SessionNN/"),
    "kemdy19": (_kemdy19_segments, "expected annotation/SessionNN_[FM]_res.csv and wav/SessionNN/"),
}


def _read_utterances(corpus: str, root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    segments, hint = _LAYOUTS[corpus]
    root = require_dir(root, corpus, hint)
    report = CorpusReport(corpus, str(root))
    out: list[Utterance] = []
    for seg in segments(root, report):
        labels = _labels_or_skip(seg.row[seg.col], seg.id, report)
        if labels is None:
            continue
        if not seg.wav.is_file():
            report.skip("missing_audio", seg.id)
            continue
        out.append(seg.utterance(labels, read_text(seg.wav.with_suffix(".txt"), seg.encodings)))
    report.n_kept = len(out)
    return out, report


def read_kemdy20(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a KEMDy20 folder.

    Layout: ``annotation/SessNN_eval.csv`` (columns: 0 Numb, 1–2 Wav start/end,
    3 Segment ID, 4–6 Total Evaluation Emotion/Valence/Arousal, 7–36 ten raters),
    audio ``wav/SessionNN/<Segment ID>.wav``, transcript ``<Segment ID>.txt`` in cp949.

    Quirks handled: a Segment ID whose ``SessNN_`` prefix disagrees with its
    annotation file (``Sess18_…`` in ``Sess17_eval.csv``) is corrected to the
    file's session and counted under ``fixed``; segments without audio or with
    an unknown label are skipped and counted.

    The header cells are checked by name (``Segment ID`` and ``Total Evaluation`` in the first row,
    ``Emotion, Valence, Arousal`` below it; :func:`_read_table`), so a file that lacks them is an error
    rather than a rater's column read in their place. A CSV is read as UTF-8, then cp949 (or as its
    byte-order mark says). Ids follow :class:`~cnnrnn.corpora.base.UtteranceIds` (``repeat="error"``): an
    unsafe Segment ID (a path separator, a leading ``.``, a control character) is a counted skip
    (``unsafe_id``), a repeated identical row (the running number aside) a counted skip (``duplicate_row``),
    also when the prefix fix makes the repeat.

    Returns:
        ``(utterances, report)``; ``speaker`` is the ``UserNNN[MF]`` part of the id.

    Raises:
        CorpusError: the folder is missing or empty, or has no ``annotation/Sess*_eval.csv``; an annotation
            file cannot be decoded or lacks a header row or column (naming the file and the column); a
            Segment ID appears in two rows that differ (naming both rows).
    """
    return _read_utterances("kemdy20", root)


def read_kemdy19(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a KEMDy19 folder.

    Layout: ``annotation/SessionNN_F_res.csv`` and ``SessionNN_M_res.csv``
    (columns: 0 Numb, 1–2 Wav, 3–4 ECG, 5–6 E4-EDA, 7–8 E4-TEMP start/end,
    9 Segment ID, 10–12 Total Evaluation Emotion/Valence/Arousal, 13–42 ten
    raters), audio ``wav/SessionNN/<dialogue>/<Segment ID>.wav`` with a UTF-8
    ``.txt`` beside it. Segment IDs look like ``Sess01_impro01_F001``.

    Both files of a session list every segment of the session; a row is kept
    only from the file whose letter (``F``/``M``) matches the speaker letter of
    the id, so each segment appears once, rated from its own speaker's file.
    Headers, encodings and ids are checked as in :func:`read_kemdy20`.

    Returns:
        ``(utterances, report)``; ``speaker`` is ``SessionNN_F`` or ``SessionNN_M``.

    Raises:
        CorpusError: the folder is missing or empty, or has no annotation files; as :func:`read_kemdy20`.
    """
    return _read_utterances("kemdy19", root)


@dataclass
class RatedSegment:
    """One annotated segment with every rater's raw emotion cell.

    Attributes:
        utterance: the segment; ``emotions`` are the ``Total Evaluation`` labels as
            written (lower-cased, unvalidated, possibly empty), ``text`` is ``None``
            when the transcript is missing or undecodable.
        total: the raw ``Total Evaluation`` Emotion cell.
        ratings: rater slot (``Eval01`` … ``Eval10``) → that rater's raw Emotion cell.
        text_status: ``ok``, ``missing``, ``undecodable`` (no listed encoding decodes it)
            or ``not_<encoding>`` (decoded by the fallback encoding, e.g. ``not_cp949``).
    """

    utterance: Utterance
    total: str
    ratings: dict[str, str] = field(default_factory=dict)
    text_status: str = "ok"


def _transcript(path: Path, encodings: tuple[str, ...]) -> tuple[str | None, str]:
    if not path.is_file():
        return None, "missing"
    text = read_text(path, encodings)
    if text is None:
        return None, "undecodable"
    if read_text(path, encodings[:1]) is None:
        return text, f"not_{encodings[0]}"
    return text, "ok"


def _rater_columns(header: list[str]) -> dict[str, int]:
    """Rater slot → its Emotion column, from the first header row (``Eval01F``, ``Eval02M``, … or ``Eval01``…)."""
    slots = {}
    for i, name in enumerate(header):
        m = _RATER.match(name.strip())
        if m:
            slots[m.group(1).capitalize()] = i
    return slots


def read_kemdy_ratings(corpus: str, root: str | Path) -> tuple[list[RatedSegment], CorpusReport]:
    """Read every annotated segment of a KEMDy20 or KEMDy19 folder with its raters' emotion cells.

    The rows, ids, sessions, speakers and audio paths are those of :func:`read_kemdy20` /
    :func:`read_kemdy19` (the ``SessNN_`` prefix fix included). Unlike those readers, a
    segment is kept whatever its ``Total Evaluation`` says (the raters' cells are what
    counts here); only a segment without audio, or a short row, is skipped and counted.
    Raters are identified by their column slot (``Eval01`` … ``Eval10``, the gender letter
    of ``Eval01F`` dropped), so the same slot in every annotation file is one rater, as in
    the original ``prepare_data.py`` (-ETRI-Emotion-Recognition), which speaks of ten raters.

    Args:
        corpus: ``kemdy20`` or ``kemdy19``.
        root: the corpus folder.

    Returns:
        ``(segments, report)``.

    Raises:
        CorpusError: unknown corpus, the folder is missing or empty, has no annotation files,
            or an annotation file has no ``EvalNN`` rater columns; as :func:`read_kemdy20` (headers,
            encodings, repeated Segment IDs).
    """
    if corpus not in _LAYOUTS:
        raise CorpusError(f"rater labels: unknown corpus {corpus!r}; choose from {sorted(_LAYOUTS)}")
    segments, hint = _LAYOUTS[corpus]
    root = require_dir(root, corpus, hint)
    report = CorpusReport(corpus, str(root))
    out: list[RatedSegment] = []
    for seg in segments(root, report):
        slots = _rater_columns(seg.header)
        if not slots:
            raise CorpusError(f"{corpus}: no EvalNN rater columns in the header of an annotation file under {root}")
        if not seg.wav.is_file():
            report.skip("missing_audio", seg.id)
            continue
        text, status = _transcript(seg.wav.with_suffix(".txt"), seg.encodings)
        ratings = {slot: seg.row[i].strip() if i < len(seg.row) else "" for slot, i in slots.items()}
        out.append(RatedSegment(seg.utterance(split_labels(seg.row[seg.col]), text), seg.row[seg.col].strip(),
                                ratings, status))
    report.n_kept = len(out)
    return out, report


def read_kemdy_weighted(csv_path: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read the ``new_data.csv`` written by ``cnnrnn kemdy-labels`` (columns :data:`WEIGHTED_COLUMNS`).

    The label is ``emotion_weighted`` (the rater-weighted vote; a remaining tie is
    ``a;b``, so ``emotions`` holds both). A relative ``wav_path`` is resolved against
    the CSV's folder; an empty ``text`` becomes ``None``. The CSV is read as UTF-8, then cp949
    (a copy saved by a Korean Excel), or as its byte-order mark says. Ids follow
    :class:`~cnnrnn.corpora.base.UtteranceIds` (``repeat="error"``): an unsafe ``segment_id`` is a counted
    skip (``unsafe_id``), a repeated identical row a counted skip (``duplicate_row``).

    Returns:
        ``(utterances, report)``; rows without a label or without audio are skipped and counted.

    Raises:
        CorpusError: the CSV is missing, cannot be decoded or lacks one of :data:`WEIGHTED_COLUMNS`; a
            ``segment_id`` appears in two rows that differ (naming both lines).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"kemdy-weighted: {csv_path} is not a CSV file (pass new_data.csv itself as --root)")
    report = CorpusReport("kemdy-weighted", str(csv_path))
    header, rows = csv_records(read_csv(csv_path, CSV_ENCODINGS, report))
    missing = [c for c in WEIGHTED_COLUMNS if c not in header]
    if missing:
        raise CorpusError(f"kemdy-weighted: {csv_path} lacks column(s) {missing}; "
                          "write it with `cnnrnn kemdy-labels`")
    report.n_annotated = len(rows)
    ids = UtteranceIds(report, "error")
    out = []
    for line, row in rows:
        seg_id = ids.accept(row["segment_id"].strip(), f"{csv_path.name} line {line}",
                            {k: v.strip() for k, v in row.items() if k != "segment_id"})
        if seg_id is None:
            continue
        labels = _labels_or_skip(row["emotion_weighted"], seg_id, report)
        if labels is None:
            continue
        wav = Path(row["wav_path"])
        wav = wav if wav.is_absolute() else csv_path.parent / wav
        if not wav.is_file():
            report.skip("missing_audio", seg_id)
            continue
        out.append(Utterance(id=seg_id, audio_path=str(wav.resolve()), text=row["text"] or None,
                             speaker=row["speaker"] or None, session=row["session"] or None,
                             emotion=labels[0], emotions=labels,
                             valence=to_float(row["valence"]), arousal=to_float(row["arousal"])))
    report.n_kept = len(out)
    return out, report
