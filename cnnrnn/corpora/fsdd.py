"""Free Spoken Digit Dataset (FSDD) reader: ``{digit}_{speaker}_{take}.wav``, 10 classes."""
from __future__ import annotations

from pathlib import Path

from ..audio import list_audio
from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, require_dir

#: The ten classes, the spoken digits, in code order.
FSDD_LABELS = tuple("0123456789")


def read_fsdd(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a folder of FSDD recordings (searched recursively).

    ``7_jackson_32.wav`` is digit ``7`` (the class, stored in ``Utterance.emotion``),
    speaker ``jackson``, take ``32`` (Jakobovski/free-spoken-digit-dataset: 6 speakers
    × 10 digits × 50 takes, 8 kHz mono). The speaker is the group of a
    speaker-independent split; there are no sessions.

    Returns:
        ``(utterances, report)`` sorted by file path; names that do not parse
        are skipped and counted as ``unparsable_name``; a second file of the same name
        (a copy elsewhere under ``root``) as ``duplicate_id``
        (:class:`~cnnrnn.corpora.base.UtteranceIds`, ``repeat="skip"``).

    Raises:
        CorpusError: the folder is missing, empty or holds no audio.
    """
    root = require_dir(root, "fsdd", "expected FSDD wav files such as 7_jackson_32.wav")
    files = list_audio(root)
    if not files:
        raise CorpusError(f"fsdd: no audio files under {root}")
    report = CorpusReport("fsdd", str(root), n_annotated=len(files))
    ids = UtteranceIds(report, "skip")
    out = []
    for p in files:
        parts = p.stem.split("_")
        if len(parts) != 3 or not parts[0].isdigit() or len(parts[0]) != 1 or not parts[1] or not parts[2].isdigit():
            report.skip("unparsable_name", p.name)
            continue
        if ids.accept(p.stem, str(p.relative_to(root))) is None:
            continue
        digit, speaker, _take = parts
        out.append(Utterance(id=p.stem, audio_path=str(p.resolve()), speaker=speaker, session=None,
                             emotion=digit, emotions=[digit]))
    report.n_kept = len(out)
    return out, report
