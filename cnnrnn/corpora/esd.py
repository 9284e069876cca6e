"""ESD (Emotional Speech Dataset, Zhou et al., ICASSP 2021) reader: the English speakers 0011–0020.

Layout (as distributed, https://github.com/HLTSingapore/Emotional-Speech-Data)::

    <root>/<speaker>/<Emotion>/<speaker>_<nnnnnn>.wav     e.g. 0011/Angry/0011_000351.wav
    <root>/<speaker>/<speaker>.txt                         0011_000351<TAB>The nine the eggs.<TAB>Angry

Wav files are searched recursively below the emotion folder, so copies that keep the ``train/``,
``evaluation/`` and ``test/`` subfolders read the same. The label comes from the emotion folder.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..audio import list_audio
from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, read_text, require_dir

#: ESD emotions used by the original DCNN-BLSTMWA code, in its id order (Neutral 0, Happy 1, Sad 2, Angry 3).
ESD_LABELS = ("neutral", "happy", "sad", "angry")
#: ESD emotion left out by the original code (its id 4).
ESD_UNUSED = ("surprise",)
#: English speakers; 0001–0010 are Mandarin and out of scope.
ESD_SPEAKERS = tuple(f"{i:04d}" for i in range(11, 21))

_SPEAKER = re.compile(r"^\d{4}$")
_NAME = re.compile(r"^(\d{4})_(\d{6})$")


def _transcripts(speaker_dir: Path) -> dict[str, str]:
    """``{utterance id: text}`` from ``<speaker>/<speaker>.txt`` (UTF-8 or UTF-16, as real ESD ships both)."""
    raw = read_text(speaker_dir / f"{speaker_dir.name}.txt", ("utf-8-sig", "utf-16"))
    texts = {}
    for line in (raw or "").splitlines():
        fields = line.strip().split("\t")
        if len(fields) >= 2 and fields[0].strip():
            texts[fields[0].strip()] = fields[1].strip()
    return texts


def read_esd(root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read the English part of ESD.

    Skips (counted by reason): Mandarin speakers 0001–0010 (``out_of_scope_speaker``), Surprise
    (``unused_emotion``), other emotion folders (``unknown_emotion``), names other than
    ``<speaker>_<nnnnnn>`` (``unparsable_name``) and files whose name names another speaker
    (``speaker_mismatch``). An utterance missing from the transcript is kept with ``text=None``. A second file
    of the same name (a copy in another subfolder) is a counted skip, ``duplicate_id``
    (:class:`~cnnrnn.corpora.base.UtteranceIds`, ``repeat="skip"``).

    Returns:
        ``(utterances, report)``; ``emotion`` is one of :data:`ESD_LABELS`, ``speaker`` is ``"0011"`` ...,
        ``session`` is ``None``.

    Raises:
        CorpusError: the folder is missing or empty, or holds no speaker folder.
    """
    root = require_dir(root, "esd", "expected speaker folders 0011 ... 0020")
    speakers = sorted(p for p in root.iterdir() if p.is_dir() and _SPEAKER.match(p.name))
    if not speakers:
        raise CorpusError(f"esd: no speaker folder (0011 ... 0020) under {root}")
    report = CorpusReport("esd", str(root))
    ids = UtteranceIds(report, "skip")
    out = []
    for spk in speakers:
        files = list_audio(spk)
        report.n_annotated += len(files)
        if spk.name not in ESD_SPEAKERS:
            for p in files:
                report.skip("out_of_scope_speaker", p.name)
            continue
        texts = _transcripts(spk)
        for p in files:
            emotion = p.relative_to(spk).parts[0].lower() if len(p.relative_to(spk).parts) > 1 else ""
            m = _NAME.match(p.stem)
            if emotion in ESD_UNUSED:
                report.skip("unused_emotion", p.name)
            elif emotion not in ESD_LABELS:
                report.skip("unknown_emotion", p.name)
            elif not m:
                report.skip("unparsable_name", p.name)
            elif m.group(1) != spk.name:
                report.skip("speaker_mismatch", p.name)
            elif ids.accept(p.stem, str(p.relative_to(root))) is not None:
                if p.stem not in texts:
                    report.fix("no_transcript_line")
                out.append(Utterance(id=p.stem, audio_path=str(p.resolve()), text=texts.get(p.stem),
                                     speaker=spk.name, session=None, emotion=emotion, emotions=[emotion]))
    report.n_kept = len(out)
    return out, report
