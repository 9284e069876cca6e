"""Train/test splits and cross-validation folds (scikit-learn underneath).

* :func:`split_per_session`: the CNNRNN split, 8:2 inside every session
  (the original code split each KEMDy ``Session`` CSV 8:2), stratified by
  emotion where the counts allow.
* :func:`kfold_indices`: k folds, stratified, optionally speaker-disjoint.
* :func:`loso_indices`: leave one speaker out (LOSO).
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .corpora.base import Utterance

log = logging.getLogger("cnnrnn.splits")

NO_SESSION = "all"


@dataclass
class SplitResult:
    """A per-session split.

    Attributes:
        train, test: ``{session: [Utterance, ...]}`` in a stable order.
        labels: label names; the integer code of a label is its index.
        report: counts (per session and set, ties left out, stratified or not).
    """

    train: dict[str, list[Utterance]]
    test: dict[str, list[Utterance]]
    labels: list[str]
    report: dict[str, Any] = field(default_factory=dict)

    def flat(self, part: str) -> list[Utterance]:
        """All utterances of ``part`` (``train`` or ``test``), session by session."""
        return [u for utts in getattr(self, part).values() for u in utts]


def split_per_session(
    utterances: Sequence[Utterance],
    test_size: float = 0.2,
    seed: int = 42,
    keep_ties: bool = False,
    labels: Sequence[str] | None = None,
) -> SplitResult:
    """Split every session ``1 - test_size : test_size`` into train and test.

    Utterances without a session count as one session (``"all"``). Inside a
    session the split is stratified by emotion when every label has at least
    two utterances and the test part can hold one of each; otherwise it is a
    plain seeded shuffle, and the report says so.

    Args:
        utterances: corpus records.
        test_size: test fraction per session (original: 0.2).
        seed: random seed; the same seed gives the same split.
        keep_ties: keep tied annotations (``emotions`` has several labels) with
            their first label; by default they are left out and counted.
        labels: fixed label order; default: sorted labels present.

    Returns:
        A :class:`SplitResult`.

    Raises:
        ValueError: no utterance is left, or a label is outside ``labels``.
    """
    from sklearn.model_selection import train_test_split

    ties = [u for u in utterances if u.is_tied]
    kept = list(utterances) if keep_ties else [u for u in utterances if not u.is_tied]
    if not kept:
        raise ValueError("no utterance left to split (all were tied annotations?)")
    present = sorted({u.emotion for u in kept})
    label_list = list(labels) if labels else present
    unknown = sorted(set(present) - set(label_list))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the configured label list {label_list}")

    by_session: dict[str, list[Utterance]] = defaultdict(list)
    for u in kept:
        by_session[u.session or NO_SESSION].append(u)

    train: dict[str, list[Utterance]] = {}
    test: dict[str, list[Utterance]] = {}
    per_session = {}
    for session in sorted(by_session):
        utts = sorted(by_session[session], key=lambda u: u.id)
        if len(utts) < 2:
            train[session], test[session] = utts, []
            per_session[session] = {"train": len(utts), "test": 0, "stratified": False}
            continue
        y = [u.emotion for u in utts]
        counts = Counter(y)
        n_test = int(np.ceil(test_size * len(utts)))
        stratify = y if min(counts.values()) >= 2 and n_test >= len(counts) else None
        tr, te = train_test_split(utts, test_size=test_size, random_state=seed, shuffle=True, stratify=stratify)
        train[session], test[session] = tr, te
        per_session[session] = {"train": len(tr), "test": len(te), "stratified": stratify is not None}
        if stratify is None:
            log.info("session %s: too few utterances per label to stratify; plain seeded split", session)

    report = {
        "n_utterances": len(utterances),
        "n_ties": len(ties),
        "ties": "kept with their first label" if keep_ties else "left out",
        "tied_ids": [u.id for u in ties],
        "n_train": sum(len(v) for v in train.values()),
        "n_test": sum(len(v) for v in test.values()),
        "sessions": per_session,
        "label_counts": {
            "train": dict(sorted(Counter(u.emotion for v in train.values() for u in v).items())),
            "test": dict(sorted(Counter(u.emotion for v in test.values() for u in v).items())),
        },
        "test_size": test_size,
        "seed": seed,
    }
    return SplitResult(train=train, test=test, labels=label_list, report=report)


def kfold_indices(
    y: Sequence[int],
    n_folds: int = 5,
    seed: int = 42,
    groups: Sequence[str] | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cross-validation folds over ``len(y)`` items.

    Args:
        y: integer labels ``(N,)``.
        n_folds: number of folds.
        seed: shuffling seed; the same seed gives the same folds.
        groups: optional group (speaker) per item: folds are then group-disjoint
            (``StratifiedGroupKFold``), so no speaker is in both parts of a fold.

    Returns:
        ``n_folds`` pairs ``(train_idx, val_idx)`` of int arrays.

    Raises:
        ValueError: fewer items (or groups) than folds.
    """
    from sklearn.model_selection import KFold, StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    idx = np.arange(len(y))
    if len(y) < n_folds:
        raise ValueError(f"cannot make {n_folds} folds from {len(y)} items")
    if groups is not None:
        groups = np.asarray([str(g) for g in groups])
        n_groups = len(set(groups))
        if n_groups < n_folds:
            raise ValueError(f"speaker-disjoint folds need at least {n_folds} speakers, found {n_groups}")
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return [(tr, va) for tr, va in splitter.split(idx, y, groups)]
    if min(Counter(y.tolist()).values()) >= n_folds:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in splitter.split(idx, y)]
    log.warning("a label has fewer than %d items: folds are not stratified", n_folds)
    return [(tr, va) for tr, va in KFold(n_splits=n_folds, shuffle=True, random_state=seed).split(idx)]


def loso_indices(groups: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-speaker-out folds: ``[(speaker, train_idx, test_idx), ...]`` sorted by speaker."""
    groups = np.asarray([str(g) for g in groups])
    return [(g, np.flatnonzero(groups != g), np.flatnonzero(groups == g)) for g in sorted(set(groups))]
