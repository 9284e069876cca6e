"""EmoDB (Berlin Database of Emotional Speech) and CSV-manifest readers."""
from __future__ import annotations

import csv
from pathlib import Path

from ..audio import list_audio
from .base import CorpusError, CorpusReport, Utterance, require_dir

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
    out = []
    for p in files:
        stem = p.stem
        if len(stem) < 6 or not stem[:2].isdigit() or stem[5] not in EMODB_LABELS:
            report.skip("unparsable_name", p.name)
            continue
        label = EMODB_LABELS[stem[5]]
        out.append(Utterance(id=stem, audio_path=str(p.resolve()), text=stem[2:5], speaker=stem[:2],
                             session=None, emotion=label, emotions=[label]))
    report.n_kept = len(out)
    return out, report


def read_manifest(csv_path: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read any corpus described by a CSV with columns ``path,label`` and optional ``speaker,session,text``.

    Relative paths are resolved against the CSV's folder. The id is the file stem
    (made unique with the row number if stems repeat).

    Raises:
        CorpusError: the CSV is missing or lacks the ``path`` or ``label`` column.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"manifest: {csv_path} is not a CSV file (pass the CSV itself as --root)")
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        missing = {"path", "label"} - set(cols)
        if missing:
            raise CorpusError(f"manifest: {csv_path} lacks column(s) {sorted(missing)}; found {reader.fieldnames}")
        rows = list(reader)
    report = CorpusReport("manifest", str(csv_path), n_annotated=len(rows))
    out, seen = [], set()

    def get(row, key):
        value = (row.get(cols[key]) or "").strip() if key in cols else ""
        return value or None

    for i, row in enumerate(rows, start=2):
        path, label = get(row, "path"), get(row, "label")
        if not path or not label:
            report.skip("empty_cell", f"line {i}")
            continue
        audio = Path(path) if Path(path).is_absolute() else csv_path.parent / path
        if not audio.is_file():
            report.skip("missing_audio", path)
            continue
        uid = audio.stem if audio.stem not in seen else f"{audio.stem}_{i}"
        seen.add(uid)
        out.append(Utterance(id=uid, audio_path=str(audio.resolve()), text=get(row, "text"),
                             speaker=get(row, "speaker"), session=get(row, "session"),
                             emotion=label, emotions=[label]))
    report.n_kept = len(out)
    return out, report
