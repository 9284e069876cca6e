"""UrbanSound8K practice-problem layout: ``train.csv`` (``ID,Class``) and ``Train/<ID>.wav``."""
from __future__ import annotations

from pathlib import Path

from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, csv_records, read_csv, require_dir

#: The ten UrbanSound8K classes (Salamon et al., ACM MM 2014), sorted: the codes the tutorial's
#: ``df["Class"].astype("category").cat.codes`` gives them.
URBANSOUND_LABELS = ("air_conditioner", "car_horn", "children_playing", "dog_bark", "drilling", "engine_idling",
                     "gun_shot", "jackhammer", "siren", "street_music")

CSV_NAME = "train.csv"
AUDIO_DIR = "Train"


def read_urbansound8k(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read an UrbanSound8K-style folder: ``<root>/train.csv`` with columns ``ID,Class``
    and the audio of row ``ID`` at ``<root>/Train/<ID>.wav``.

    This is the layout of the "Urban Sound Classification" practice problem the ANN/CNN
    baseline tutorial used (5,435 labelled clips, 10 classes). Column names match
    case-insensitively; other columns are ignored. Speakers and sessions are unknown (``None``).

    Returns:
        ``(utterances, report)`` in CSV order. Rows with an empty ``ID`` or ``Class``
        (``empty_cell``) or whose wav file does not exist (``missing_audio``) are
        skipped and counted; so are an ``ID`` that is not a safe file name (``unsafe_id``)
        and a repeated identical row (``duplicate_row``; :class:`~cnnrnn.corpora.base.UtteranceIds`,
        ``repeat="error"``). Every other row is kept.

    Raises:
        CorpusError: the folder or ``train.csv`` is missing, the CSV cannot be decoded (UTF-8) or
            lacks the ``ID`` or ``Class`` column; an ``ID`` appears twice with different classes.
    """
    root = require_dir(root, "urbansound8k", f"expected {CSV_NAME} and {AUDIO_DIR}/<ID>.wav")
    csv_path = root / CSV_NAME
    if not csv_path.is_file():
        raise CorpusError(f"urbansound8k: {csv_path} not found (expected {CSV_NAME} with columns ID,Class)")
    report = CorpusReport("urbansound8k", str(root))
    header, rows = csv_records(read_csv(csv_path, ("utf-8",), report))
    cols = {c.lower(): c for c in header if c}
    missing = [name for name in ("ID", "Class") if name.lower() not in cols]
    if missing:
        raise CorpusError(f"urbansound8k: {csv_path} lacks column(s) {missing}; found {header}")
    report.n_annotated = len(rows)
    ids = UtteranceIds(report, "error")
    out = []
    for line, row in rows:
        uid = (row.get(cols["id"]) or "").strip()
        label = (row.get(cols["class"]) or "").strip()
        if not uid or not label:
            report.skip("empty_cell", f"line {line}")
            continue
        uid = ids.accept(uid, f"{CSV_NAME} line {line}", label)
        if uid is None:
            continue
        audio = root / AUDIO_DIR / f"{uid}.wav"
        if not audio.is_file():
            report.skip("missing_audio", f"{AUDIO_DIR}/{uid}.wav")
            continue
        out.append(Utterance(id=uid, audio_path=str(audio.resolve()), emotion=label, emotions=[label]))
    report.n_kept = len(out)
    return out, report
