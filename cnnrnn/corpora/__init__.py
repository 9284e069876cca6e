"""Corpus readers: one per corpus layout, each returning :class:`Utterance` records.

>>> from cnnrnn.corpora import read_corpus
>>> utts = read_corpus("kemdy20", "path/to/KEMDy20")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from .base import CorpusError, CorpusReport, Utterance, log
from .emodb import EMODB_LABELS, read_emodb, read_manifest
from .esd import ESD_LABELS, read_esd
from .fsdd import read_fsdd
from .jtes import JTES_LABELS, read_jtes
from .kemdy import KEMDY_LABELS, read_kemdy19, read_kemdy20, read_kemdy_weighted
from .urbansound import read_urbansound8k

READERS: dict[str, Callable[[Path], tuple[list[Utterance], CorpusReport]]] = {
    "kemdy20": read_kemdy20,
    "kemdy19": read_kemdy19,
    "emodb": read_emodb,
    "manifest": read_manifest,
    "fsdd": read_fsdd,  # {digit}_{speaker}_{take}.wav
    "urbansound8k": read_urbansound8k,  # train.csv (ID,Class) + Train/<ID>.wav
    "kemdy-weighted": read_kemdy_weighted,  # new_data.csv from `cnnrnn kemdy-labels`
    "esd": read_esd,  # <speaker>/<Emotion>/<speaker>_<nnnnnn>.wav + <speaker>/<speaker>.txt
    "jtes": read_jtes,  # <speaker>/<emotion>/<speaker>_<emotion>_<nn>.wav
}

#: Fixed label orders (label id = index) of corpora that have one, so that emotion ids match the original
#: code's; other corpora use their sorted label names.
LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    "esd": ESD_LABELS,
    "jtes": JTES_LABELS,
    "emodb": tuple(EMODB_LABELS.values()),
    "kemdy20": KEMDY_LABELS,
    "kemdy19": KEMDY_LABELS,
}


def load_corpus(name: str, root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a corpus and return ``(utterances, report)``; the report counts every skip.

    Args:
        name: one of :data:`READERS` (``kemdy20``, ``kemdy19``, ``emodb``, ``manifest``).
        root: the corpus folder (for ``manifest``: the CSV file).

    Raises:
        CorpusError: unknown reader name, or the corpus cannot be read at all,
            or it holds no usable utterance.
    """
    key = name.lower()
    if key not in READERS:
        raise CorpusError(f"unknown corpus {name!r}; choose from {sorted(READERS)}")
    utterances, report = READERS[key](Path(root))
    if report.n_skipped:
        log.warning(report.summary())
    if not utterances:
        raise CorpusError(f"{name}: no usable utterance under {root} ({report.summary()})")
    return utterances, report


def read_corpus(name: str, root: str | Path) -> list[Utterance]:
    """Read a corpus into Utterance records; skips are logged (see :func:`load_corpus`)."""
    return load_corpus(name, root)[0]


__all__ = [
    "CorpusError", "CorpusReport", "Utterance", "READERS", "EMODB_LABELS", "KEMDY_LABELS",
    "load_corpus", "read_corpus", "read_emodb", "read_kemdy19", "read_kemdy20", "read_kemdy_weighted",
    "read_manifest", "read_fsdd", "read_urbansound8k",
    "ESD_LABELS", "JTES_LABELS", "LABEL_ORDERS", "read_esd", "read_jtes",
]
