"""Corpus readers: one per corpus layout, each returning :class:`Utterance` records.

>>> from cnnrnn.corpora import read_corpus
>>> utts = read_corpus("kemdy20", "path/to/KEMDy20")   # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable

from .base import CorpusError, CorpusReport, Utterance, UtteranceIds, check_ids, id_problem, log
from .emodb import EMODB_LABELS, read_emodb, read_manifest
from .esd import ESD_LABELS, read_esd
from .fsdd import FSDD_LABELS, read_fsdd
from .jtes import JTES_LABELS, read_jtes
from .kemdy import KEMDY_LABELS, canonical_label, read_kemdy19, read_kemdy20, read_kemdy_weighted
from .urbansound import URBANSOUND_LABELS, read_urbansound8k
from .vocabulary import CANONICAL, canonical_emotion, match_labels, relabel_by_meaning

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

#: The label set of every corpus that has one, each declared once in its corpus module, in its documented
#: order; that order gives the label codes (label id = index). A CSV manifest has none: its codes are the
#: sorted names of the training labels (:func:`label_order`), recorded in the run manifest.
LABEL_ORDERS: dict[str, tuple[str, ...]] = {
    "esd": ESD_LABELS,
    "jtes": JTES_LABELS,
    "emodb": tuple(EMODB_LABELS.values()),
    "kemdy20": KEMDY_LABELS,
    "kemdy19": KEMDY_LABELS,
    "kemdy-weighted": KEMDY_LABELS,
    "fsdd": FSDD_LABELS,
    "urbansound8k": URBANSOUND_LABELS,
}


def label_order(corpus: str, labels_present: Iterable[str]) -> list[str]:
    """The label names in code order for training on ``corpus``.

    The corpus' declared order (:data:`LABEL_ORDERS`) whenever every label present belongs to it (a subset
    that lacks a label keeps the same codes); otherwise (a manifest, or a folder in a known layout holding
    other classes) the sorted names of the labels present, which the run manifest then records.
    """
    present = set(labels_present)
    declared = LABEL_ORDERS.get(corpus.lower())
    if declared and present <= set(declared):
        return list(declared)
    return sorted(present)


def load_corpus(name: str, root: str | Path) -> tuple[list[Utterance], CorpusReport]:
    """Read a corpus and return ``(utterances, report)``; the report counts every skip.

    Args:
        name: one of :data:`READERS` (``kemdy20``, ``kemdy19``, ``emodb``, ``manifest``).
        root: the corpus folder (for ``manifest``: the CSV file).

    Every id is safe as a file name and unique (the readers' :class:`~cnnrnn.corpora.base.UtteranceIds`
    policy; checked again here by :func:`~cnnrnn.corpora.base.check_ids`).

    Raises:
        CorpusError: unknown reader name, or the corpus cannot be read at all,
            or it holds no usable utterance.
    """
    key = name.lower()
    if key not in READERS:
        raise CorpusError(f"unknown corpus {name!r}; choose from {sorted(READERS)}")
    utterances, report = READERS[key](Path(root))
    check_ids(utterances, name)
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
    "UtteranceIds", "check_ids", "id_problem",
    "load_corpus", "read_corpus", "read_emodb", "read_kemdy19", "read_kemdy20", "read_kemdy_weighted",
    "read_manifest", "read_fsdd", "read_urbansound8k",
    "ESD_LABELS", "JTES_LABELS", "LABEL_ORDERS", "read_esd", "read_jtes", "FSDD_LABELS", "URBANSOUND_LABELS",
    "CANONICAL", "canonical_emotion", "canonical_label", "label_order", "match_labels", "relabel_by_meaning",
]
