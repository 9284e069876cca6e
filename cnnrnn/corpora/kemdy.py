"""KEMDy20 and KEMDy19 (ETRI Korean multimodal emotion datasets) readers.

Both annotation formats have two header rows; the ``Total Evaluation``
emotion is the raters' majority vote, with ties written as labels joined by
``;``. The label set is the corpus's own, including its spelling ``disqust``.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

from .base import CorpusError, CorpusReport, Utterance, read_text, require_dir, split_labels, to_float

KEMDY_LABELS = ("angry", "disqust", "fear", "happy", "neutral", "sad", "surprise")

_SESS20 = re.compile(r"Sess(\d+)_eval\.csv$", re.IGNORECASE)
_SESS19 = re.compile(r"Session(\d+)_([FM])_res\.csv$", re.IGNORECASE)
_ID_PREFIX = re.compile(r"^Sess(\d+)_")
_USER = re.compile(r"(User\d+[MF]?)")


def _rows(path: Path) -> list[list[str]]:
    """CSV data rows after the two header rows (UTF-8, BOM tolerated)."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = list(csv.reader(fh))
    if len(rows) < 2:
        raise CorpusError(f"{path}: expected two header rows, found {len(rows)} line(s)")
    return [r for r in rows[2:] if any(cell.strip() for cell in r)]


def _labels_or_skip(cell: str, seg_id: str, report: CorpusReport) -> list[str] | None:
    labels = split_labels(cell)
    if not labels:
        report.skip("no_label", seg_id)
        return None
    unknown = [lab for lab in labels if lab not in KEMDY_LABELS]
    if unknown:
        report.skip(f"unknown_label:{unknown[0]}", seg_id)
        return None
    return labels


def read_kemdy20(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a KEMDy20 folder.

    Layout: ``annotation/SessNN_eval.csv`` (columns: 0 Numb, 1–2 Wav start/end,
    3 Segment ID, 4–6 Total Evaluation Emotion/Valence/Arousal, 7–36 ten raters),
    audio ``wav/SessionNN/<Segment ID>.wav``, transcript ``<Segment ID>.txt`` in cp949.

    Quirks handled: a Segment ID whose ``SessNN_`` prefix disagrees with its
    annotation file (``Sess18_…`` in ``Sess17_eval.csv``) is corrected to the
    file's session and counted under ``fixed``; segments without audio or with
    an unknown label are skipped and counted.

    Returns:
        ``(utterances, report)``; ``speaker`` is the ``UserNNN[MF]`` part of the id.

    Raises:
        CorpusError: the folder is missing or empty, or has no ``annotation/Sess*_eval.csv``.
    """
    root = require_dir(root, "kemdy20", "expected annotation/SessNN_eval.csv and wav/SessionNN/")
    files = sorted(p for p in (root / "annotation").glob("*.csv") if _SESS20.search(p.name))
    if not files:
        raise CorpusError(f"kemdy20: no annotation/SessNN_eval.csv under {root}")
    report = CorpusReport("kemdy20", str(root))
    out: list[Utterance] = []
    for path in files:
        num = int(_SESS20.search(path.name).group(1))
        for row in _rows(path):
            if len(row) < 7:
                report.skip("short_row", f"{path.name}:{row[:1]}")
                continue
            report.n_annotated += 1
            seg_id = row[3].strip()
            m = _ID_PREFIX.match(seg_id)
            if m and int(m.group(1)) != num:
                seg_id = f"Sess{num:02d}_" + seg_id[m.end():]
                report.fix("session_prefix")
            labels = _labels_or_skip(row[4], seg_id, report)
            if labels is None:
                continue
            wav = root / "wav" / f"Session{num:02d}" / f"{seg_id}.wav"
            if not wav.is_file():
                report.skip("missing_audio", seg_id)
                continue
            user = _USER.search(seg_id)
            out.append(Utterance(
                id=seg_id, audio_path=str(wav.resolve()),
                text=read_text(wav.with_suffix(".txt"), ("cp949", "utf-8")),
                speaker=user.group(1) if user else None, session=f"Session{num:02d}",
                emotion=labels[0], emotions=labels,
                valence=to_float(row[5]), arousal=to_float(row[6]),
            ))
    report.n_kept = len(out)
    return out, report


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

    Returns:
        ``(utterances, report)``; ``speaker`` is ``SessionNN_F`` or ``SessionNN_M``.

    Raises:
        CorpusError: the folder is missing or empty, or has no annotation files.
    """
    root = require_dir(root, "kemdy19", "expected annotation/SessionNN_[FM]_res.csv and wav/SessionNN/")
    files = sorted(p for p in (root / "annotation").glob("*.csv") if _SESS19.search(p.name))
    if not files:
        raise CorpusError(f"kemdy19: no annotation/SessionNN_F_res.csv / _M_res.csv under {root}")
    report = CorpusReport("kemdy19", str(root))
    out: list[Utterance] = []
    for path in files:
        m = _SESS19.search(path.name)
        num, letter = int(m.group(1)), m.group(2).upper()
        for row in _rows(path):
            if len(row) < 13:
                report.skip("short_row", f"{path.name}:{row[:1]}")
                continue
            seg_id = row[9].strip()
            speaker_letter = seg_id.rsplit("_", 1)[-1][:1].upper()
            if speaker_letter != letter:
                continue  # the other speaker's row; read from its own file
            report.n_annotated += 1
            labels = _labels_or_skip(row[10], seg_id, report)
            if labels is None:
                continue
            dialogue = seg_id.rsplit("_", 1)[0]
            wav = root / "wav" / f"Session{num:02d}" / dialogue / f"{seg_id}.wav"
            if not wav.is_file():
                report.skip("missing_audio", seg_id)
                continue
            out.append(Utterance(
                id=seg_id, audio_path=str(wav.resolve()),
                text=read_text(wav.with_suffix(".txt"), ("utf-8", "cp949")),
                speaker=f"Session{num:02d}_{letter}", session=f"Session{num:02d}",
                emotion=labels[0], emotions=labels,
                valence=to_float(row[11]), arousal=to_float(row[12]),
            ))
    report.n_kept = len(out)
    return out, report
