"""EmoDB (Berlin Database of Emotional Speech) and CSV-manifest readers."""
from __future__ import annotations

from pathlib import Path

from ..audio import list_audio
from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, csv_records, read_csv, require_dir

#: EmoDB emotion letter (6th character of the file name) → English label
#: (Burkhardt et al., Interspeech 2005).
EMODB_LABELS = {
    "W": "anger", "L": "boredom", "E": "disgust", "A": "fear",
    "F": "happiness", "T": "sadness", "N": "neutral",
}


def read_emodb(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a folder of EmoDB wav files (searched recursively).

    ``03a01Fa.wav`` is speaker ``03``, text ``a01``, emotion letter ``F``
    (always the 6th character of the name), take ``a``. The corpus has no
    sessions (``session`` is ``None``, so a split treats it as one session).
    The id is the file stem; a second file of the same name elsewhere under
    ``root`` (a copy) is a counted skip, ``duplicate_id``
    (:class:`~cnnrnn.corpora.base.UtteranceIds`, ``repeat="skip"``).

    Returns:
        ``(utterances, report)``; names that do not parse are skipped and counted.

    Raises:
        CorpusError: the folder is missing, empty or has no audio.
    """
    root = require_dir(root, "emodb", "expected EmoDB wav files such as 03a01Fa.wav")
    files = list_audio(root)
    if not files:
        raise CorpusError(f"emodb: no audio files under {root}")
    report = CorpusReport("emodb", str(root), n_annotated=len(files))
    ids = UtteranceIds(report, "skip")
    out = []
    for p in files:
        stem = p.stem
        if len(stem) < 6 or not stem[:2].isdigit() or stem[5] not in EMODB_LABELS:
            report.skip("unparsable_name", p.name)
            continue
        if ids.accept(stem, str(p.relative_to(root))) is None:
            continue
        label = EMODB_LABELS[stem[5]]
        out.append(Utterance(id=stem, audio_path=str(p.resolve()), text=stem[2:5], speaker=stem[:2],
                             session=None, emotion=label, emotions=[label]))
    report.n_kept = len(out)
    return out, report


def read_manifest(csv_path: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read any corpus described by a CSV with columns ``path,label`` and optional ``speaker,session,text``.

    Relative paths are resolved against the CSV's folder. The CSV is UTF-8 (or as its byte-order mark says).
    The id is the file stem, checked and made unique by :class:`~cnnrnn.corpora.base.UtteranceIds`
    (``repeat="rename"``): a stem that is not a safe file name is a counted skip (``unsafe_id``); the same
    row twice a counted skip (``duplicate_row``); the same audio file with another label an error; another
    file with a stem already used gets ``<stem>_<line>`` (``_2``, ... appended while that is taken by any
    other row's id), counted under ``fixed`` (``renamed_duplicate_id``).

    Raises:
        CorpusError: the CSV is missing, cannot be decoded, or lacks the ``path`` or ``label`` column; one
            audio file is listed twice with different labels (naming both lines).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"manifest: {csv_path} is not a CSV file (pass the CSV itself as --root)")
    report = CorpusReport("manifest", str(csv_path))
    header, rows = csv_records(read_csv(csv_path, ("utf-8",), report))
    cols = {c.lower(): c for c in header}
    missing = {"path", "label"} - set(cols)
    if missing:
        raise CorpusError(f"manifest: {csv_path} lacks column(s) {sorted(missing)}; found {header}")
    report.n_annotated = len(rows)
    out = []

    def get(row, key):
        value = (row.get(cols[key]) or "").strip() if key in cols else ""
        return value or None

    def audio_of(row):
        path = Path(get(row, "path") or "")
        return path if path.is_absolute() else csv_path.parent / path

    ids = UtteranceIds(report, "rename")
    ids.reserve(audio_of(row).stem for _, row in rows if get(row, "path"))
    for i, row in rows:
        path, label = get(row, "path"), get(row, "label")
        if not path or not label:
            report.skip("empty_cell", f"line {i}")
            continue
        audio = audio_of(row)
        if not audio.is_file():
            report.skip("missing_audio", path)
            continue
        resolved = str(audio.resolve())
        text, speaker, session = get(row, "text"), get(row, "speaker"), get(row, "session")
        uid = ids.accept(audio.stem, f"{csv_path.name} line {i} ({path})",
                         {"audio": resolved, "label": label, "speaker": speaker, "session": session, "text": text},
                         audio=resolved, suffix=str(i))
        if uid is None:
            continue
        out.append(Utterance(id=uid, audio_path=resolved, text=text, speaker=speaker, session=session,
                             emotion=label, emotions=[label]))
    report.n_kept = len(out)
    return out, report
