"""JTES (Japanese Twitter-based Emotional Speech, Takeishi et al., O-COCOSDA 2016) reader.

JTES is distributed on request, and this reader follows its documented naming, which is an assumption
that has not been checked against a distributed copy::

    <root>/<speaker>/<emotion>/<speaker>_<emotion>_<nn>.wav      e.g. f01/joy/f01_joy_07.wav

with speakers ``f01``–``f50`` and ``m01``–``m50``, emotions ``neu``, ``joy``, ``sad``, ``ang`` and sentence
numbers ``01``–``50``. The label is parsed from the file name; the folders must agree with it.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..audio import list_audio
from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, require_dir

#: JTES emotions in the original DCNN-BLSTMWA code's id order (neu 0, joy 1, sad 2, ang 3).
JTES_LABELS = ("neu", "joy", "sad", "ang")

_NAME = re.compile(r"^([fm])(\d{2})_([a-z]+)_(\d{2})$")


def read_jtes(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a JTES folder (wav files searched recursively).

    Skips (counted by reason): names not of the form ``<speaker>_<emotion>_<nn>`` with speaker ``f01``–``f50``
    or ``m01``–``m50`` and sentence 01–50 (``unparsable_name``); an emotion outside :data:`JTES_LABELS`
    (``unknown_emotion``); a file whose parent folders are not ``<speaker>/<emotion>`` as its name says
    (``folder_mismatch``); a second file of the same name (``duplicate_id``,
    :class:`~cnnrnn.corpora.base.UtteranceIds` with ``repeat="skip"``).

    Returns:
        ``(utterances, report)``; ``emotion`` is one of :data:`JTES_LABELS`, ``speaker`` is ``"f01"`` ...,
        ``text`` is the sentence number (``"07"``; JTES sentences are parallel across speakers and emotions),
        ``session`` is ``None``.

    Raises:
        CorpusError: the folder is missing, empty or has no audio.
    """
    root = require_dir(root, "jtes", "expected <speaker>/<emotion>/<speaker>_<emotion>_<nn>.wav")
    files = list_audio(root)
    if not files:
        raise CorpusError(f"jtes: no audio files under {root}")
    report = CorpusReport("jtes", str(root), n_annotated=len(files))
    ids = UtteranceIds(report, "skip")
    out = []
    for p in files:
        m = _NAME.match(p.stem.lower())
        if not m or not 1 <= int(m.group(2)) <= 50 or not 1 <= int(m.group(4)) <= 50:
            report.skip("unparsable_name", p.name)
            continue
        speaker, emotion = m.group(1) + m.group(2), m.group(3)
        if emotion not in JTES_LABELS:
            report.skip("unknown_emotion", p.name)
        elif (p.parent.parent.name.lower(), p.parent.name.lower()) != (speaker, emotion):
            report.skip("folder_mismatch", p.name)
        elif ids.accept(p.stem, str(p.relative_to(root))) is not None:
            out.append(Utterance(id=p.stem, audio_path=str(p.resolve()), text=m.group(4), speaker=speaker,
                                 session=None, emotion=emotion, emotions=[emotion]))
    report.n_kept = len(out)
    return out, report
