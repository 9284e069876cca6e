"""The Utterance record every corpus reader returns, and the shared skip bookkeeping."""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("cnnrnn.corpora")


class CorpusError(ValueError):
    """A corpus cannot be read at all: missing or empty folder, missing columns, unknown reader."""


@dataclass
class Utterance:
    """One labelled utterance, whatever corpus it came from.

    Attributes:
        id: unique utterance id (KEMDy ``Segment ID``, EmoDB file stem, ...).
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
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Utterance":
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
        self.skipped.setdefault(reason, []).append(item)

    def fix(self, what: str) -> None:
        self.fixed[what] = self.fixed.get(what, 0) + 1

    @property
    def n_skipped(self) -> int:
        return sum(len(v) for v in self.skipped.values())

    def summary(self) -> str:
        parts = [f"{self.corpus}: {self.n_kept} of {self.n_annotated} utterances kept"]
        for reason, ids in sorted(self.skipped.items()):
            shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
            parts.append(f"skipped {len(ids)} ({reason}: {shown})")
        for what, n in sorted(self.fixed.items()):
            parts.append(f"fixed {n} ({what})")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
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
    return dict(sorted(Counter(u.emotion for u in utterances).items()))
