"""One splitter interface for every family, in the style of scikit-learn.

Every splitter has ``split(X, y=None, groups=None)`` that yields ``(train_idx, test_idx)`` pairs of int
arrays and ``get_n_splits(X, y, groups)``; a splitter carries its own seed (``seed``), so callers never
rebuild a split by hand: a training run records the scheme, the number of folds and the seed in its run
manifest, and prediction rebuilds the very same splitter with :func:`make_splitter`.

============================  ==========================================================================
scheme (:data:`SCHEMES`)      splitter
============================  ==========================================================================
``session``                   :class:`PerSessionSplit`: one 8:2 split inside every session (``groups`` =
                              session), stratified by label where the counts allow (the original CNNRNN
                              code split each KEMDy session CSV 8:2)
``stratified``                :class:`StratifiedFolds`: k folds stratified by label (plain k-fold when a
                              label has fewer than k items)
``speaker``                   :class:`SpeakerFolds`: k speaker-disjoint folds, stratified by label
                              (``StratifiedGroupKFold``, ``groups`` = speaker)
``contiguous``                :class:`ContiguousFolds`: k consecutive, non-overlapping blocks in record order
                              (etri_multimodal's 5 × 20 % folds)
``loso``                      :class:`LeaveOneSpeakerOut`: one fold per speaker, sorted by speaker name
============================  ==========================================================================

``X`` is only used for its length. Folds are numbered in the order ``split`` yields them.

The config words of a split are the same in every family: ``scheme`` (the hold-out train/test split,
:data:`HOLDOUT_SCHEMES`, made by :func:`holdout_indices`), ``test_size`` (its test fraction), ``holdout_speaker``
(one speaker held out), ``seed``; ``folds`` and ``fold_scheme`` (k cross-validation folds, :data:`FOLD_SCHEMES`) and
``fold`` (the fold a single run tests on). CNNRNN keeps the hold-out words in its ``split`` section and the folds in
``train``; HF its folds in ``train``; the flat baseline and functionals configs hold them at the top. Old names are
read: ``group_by_speaker`` (``true`` = ``fold_scheme: speaker``), ``split`` (= ``scheme``), ``val_size``
(= ``test_size``).
"""
from __future__ import annotations

import logging
import warnings
from collections import Counter
from typing import Any, Iterator, Sequence

import numpy as np

log = logging.getLogger("cnnrnn.splits")

SCHEMES = ("session", "stratified", "speaker", "contiguous", "loso")
#: The schemes of a hold-out (train/test) split, :func:`holdout_indices`: ``random`` is ``session`` over a corpus
#: taken as one session.
HOLDOUT_SCHEMES = ("session", "random", "speaker")
#: The schemes of k cross-validation folds (``train.fold_scheme`` of every family that cuts folds).
FOLD_SCHEMES = ("contiguous", "stratified", "speaker")


def speaker_folds(group_by_speaker: Any) -> str:
    """The fold scheme an old ``group_by_speaker`` flag means: ``true`` → ``speaker``, ``false`` → ``stratified``.

    Raises:
        TypeError: the flag is not a bool.
    """
    if not isinstance(group_by_speaker, bool):
        raise TypeError(f"group_by_speaker must be true or false, got {group_by_speaker!r}")
    return "speaker" if group_by_speaker else "stratified"


class SplitError(ValueError):
    """A split cannot be made: too few items, labels or speakers, or a missing speaker/session."""


def _n(X) -> int:
    return int(X) if isinstance(X, (int, np.integer)) else len(X)


def _groups(groups, n: int, what: str) -> np.ndarray:
    if groups is None:
        raise SplitError(f"this split needs a {what} for every item, and none was given")
    g = np.asarray(["" if v is None else str(v) for v in groups])
    if len(g) != n or (g == "").any():
        raise SplitError(f"this split needs a {what} for every item; {int((g == '').sum())} of {n} have none")
    return g


class _Splitter:
    scheme = ""

    def get_n_splits(self, X=None, y=None, groups=None) -> int:
        return sum(1 for _ in self.split(X, y, groups))

    def spec(self) -> dict[str, Any]:
        """What a run manifest records to rebuild this splitter with :func:`make_splitter`."""
        return {"scheme": self.scheme, "folds": getattr(self, "n_splits", None), "seed": getattr(self, "seed", None)}

    def fold(self, k: int, X, y=None, groups=None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k``-th (0-based) ``(train_idx, test_idx)`` pair.

        Raises:
            SplitError: ``k`` is not a fold of this split.
        """
        for i, pair in enumerate(self.split(X, y, groups)):
            if i == k:
                return pair
        raise SplitError(f"fold {k} does not exist: the {self.scheme} split has {self.get_n_splits(X, y, groups)} "
                         "fold(s), numbered from 0")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.spec().items() if k != 'scheme')})"


class PerSessionSplit(_Splitter):
    """One train/test split made inside every session (``groups`` = session; ``None`` = one session).

    Inside a session the split is ``train_test_split(test_size, random_state=seed)`` (scikit-learn),
    stratified by ``y`` when every label has at least two items and the test part can hold one of each;
    otherwise a plain seeded shuffle. A session of one item goes to train. ``stratified`` (after ``split``)
    maps each session to whether it was stratified.
    """

    scheme = "session"

    def __init__(self, test_size: float = 0.2, seed: int = 42):
        if not 0.0 < test_size < 1.0:
            raise SplitError(f"test_size must be in (0, 1), got {test_size}")
        self.test_size, self.seed, self.n_splits = float(test_size), int(seed), 1
        self.stratified: dict[str, bool] = {}

    def spec(self) -> dict[str, Any]:
        """What the run manifest records of this splitter: scheme, test size, seed, one fold."""
        return {"scheme": self.scheme, "test_size": self.test_size, "seed": self.seed, "folds": 1}

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One ``(train_idx, test_idx)``: each session split 8:2 (stratified by label when it can be)."""
        from sklearn.model_selection import train_test_split

        n = _n(X)
        y = np.zeros(n, int) if y is None else np.asarray(y)
        g = np.asarray(["all" if v is None else str(v) for v in groups]) if groups is not None else np.full(n, "all")
        train, test = [], []
        self.stratified = {}
        for session in sorted(set(g.tolist())):
            idx = np.flatnonzero(g == session)
            if len(idx) < 2:
                train.append(idx)
                self.stratified[session] = False
                continue
            counts = Counter(y[idx].tolist())
            n_test = int(np.ceil(self.test_size * len(idx)))
            stratify = y[idx] if min(counts.values()) >= 2 and n_test >= len(counts) else None
            tr, te = train_test_split(idx, test_size=self.test_size, random_state=self.seed, shuffle=True,
                                      stratify=stratify)
            train.append(tr)
            test.append(te)
            self.stratified[session] = stratify is not None
        yield (np.concatenate(train) if train else np.zeros(0, int), np.concatenate(test) if test else np.zeros(0, int))


class StratifiedFolds(_Splitter):
    """``n_splits`` folds stratified by ``y`` (``StratifiedKFold(shuffle=True, random_state=seed)``); a plain
    shuffled ``KFold`` when a label has fewer than ``n_splits`` items (logged)."""

    scheme = "stratified"

    def __init__(self, n_splits: int = 5, seed: int = 42):
        self.n_splits, self.seed = int(n_splits), int(seed)

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``folds`` pairs of ``(train_idx, test_idx)``, stratified by label (scikit-learn's StratifiedKFold)."""
        from sklearn.model_selection import KFold, StratifiedKFold

        n = _n(X)
        if n < self.n_splits:
            raise SplitError(f"cannot make {self.n_splits} folds from {n} items")
        idx = np.arange(n)
        if y is not None and min(Counter(np.asarray(y).tolist()).values()) >= self.n_splits:
            yield from StratifiedKFold(self.n_splits, shuffle=True, random_state=self.seed).split(idx, np.asarray(y))
            return
        if y is not None:
            log.warning("a label has fewer than %d items: folds are not stratified", self.n_splits)
        yield from KFold(self.n_splits, shuffle=True, random_state=self.seed).split(idx)


class SpeakerFolds(_Splitter):
    """``n_splits`` speaker-disjoint folds, stratified by ``y`` (``StratifiedGroupKFold``, ``groups`` = speaker)."""

    scheme = "speaker"

    def __init__(self, n_splits: int = 5, seed: int = 42):
        self.n_splits, self.seed = int(n_splits), int(seed)

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``folds`` pairs of ``(train_idx, test_idx)`` whose test parts are whole speakers (scikit-learn's
        StratifiedGroupKFold)."""
        from sklearn.model_selection import StratifiedGroupKFold

        n = _n(X)
        g = _groups(groups, n, "speaker")
        n_groups = len(set(g.tolist()))
        if n_groups < self.n_splits:
            raise SplitError(f"speaker-disjoint folds need at least {self.n_splits} speakers, found {n_groups}")
        y = np.zeros(n, int) if y is None else np.asarray(y)
        splitter = StratifiedGroupKFold(n_splits=self.n_splits, shuffle=True, random_state=self.seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            pairs = list(splitter.split(np.arange(n), y, g))
        yield from pairs


class ContiguousFolds(_Splitter):
    """``n_splits`` consecutive, non-overlapping blocks in record order: fold k tests on items
    ``[k n / n_splits, (k + 1) n / n_splits)`` (etri_multimodal ``train.py``: 5 × 20 %). No seed is used."""

    scheme = "contiguous"

    def __init__(self, n_splits: int = 5, seed: int | None = None):
        self.n_splits, self.seed = int(n_splits), seed

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``folds`` pairs of ``(train_idx, test_idx)``, each test part a contiguous block of about ``n / folds``
        items in order, as the original's unshuffled KFold cut them."""
        n = _n(X)
        if n < self.n_splits:
            raise SplitError(f"cannot make {self.n_splits} folds from {n} items")
        bounds = [round(k * n / self.n_splits) for k in range(self.n_splits + 1)]
        idx = np.arange(n)
        for k in range(self.n_splits):
            test = idx[bounds[k]:bounds[k + 1]]
            yield np.setdiff1d(idx, test), test


class LeaveOneSpeakerOut(_Splitter):
    """One fold per speaker (sorted by name): that speaker's items are the test part (LOSO).
    ``speakers(groups)`` gives the speaker of each fold, in fold order."""

    scheme = "loso"
    seed = None

    def speakers(self, groups) -> list[str]:
        """The speakers of ``groups``, sorted: fold ``k`` holds out the k-th."""
        return sorted(set(_groups(groups, len(groups), "speaker").tolist()))

    def spec(self) -> dict[str, Any]:
        """What the run manifest records of this splitter: scheme, the number of folds (speakers), seed."""
        return {"scheme": self.scheme, "folds": None, "seed": None}

    def split(self, X, y=None, groups=None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """One ``(train_idx, test_idx)`` per speaker, the speaker's items as the test part."""
        g = _groups(groups, _n(X), "speaker")
        if len(set(g.tolist())) < 2:
            raise SplitError("leave-one-speaker-out needs at least 2 speakers")
        for speaker in sorted(set(g.tolist())):
            yield np.flatnonzero(g != speaker), np.flatnonzero(g == speaker)


def make_splitter(scheme: str, folds: int | None = 5, seed: int | None = 42, test_size: float = 0.2) -> _Splitter:
    """The splitter of a scheme of :data:`SCHEMES` (what a run manifest's ``spec()`` records).

    Raises:
        SplitError: unknown scheme.
    """
    if scheme == "session":
        return PerSessionSplit(test_size, 42 if seed is None else seed)
    if scheme == "stratified":
        return StratifiedFolds(folds or 5, 42 if seed is None else seed)
    if scheme == "speaker":
        return SpeakerFolds(folds or 5, 42 if seed is None else seed)
    if scheme == "contiguous":
        return ContiguousFolds(folds or 5)
    if scheme == "loso":
        return LeaveOneSpeakerOut()
    raise SplitError(f"unknown split scheme {scheme!r}; choose one of {SCHEMES}")


def holdout_indices(y: Sequence, groups: Sequence | None = None, sessions: Sequence | None = None, *,
                    scheme: str = "random", holdout_speaker: str = "", test_size: float = 0.2,
                    seed: int = 42) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, bool]]:
    """The hold-out rule of every family: one seeded train/test split of a corpus (:data:`HOLDOUT_SCHEMES`).

    * ``session``: :class:`PerSessionSplit` ``(test_size, seed)`` inside every session of ``sessions`` (``None`` =
      one session), stratified by ``y`` where the counts allow (the original CNNRNN code);
    * ``random``: the same without sessions, i.e. scikit-learn's ``train_test_split`` of the whole corpus;
    * ``speaker`` with ``holdout_speaker``: that speaker's fold of :class:`LeaveOneSpeakerOut`;
    * ``speaker`` without: fold 0 of :class:`SpeakerFolds` ``(max(2, round(1 / test_size)), seed)``: whole
      speakers held out, stratified by ``y``.

    Args:
        y: ``N`` labels (codes or names). groups: ``N`` speakers (a speaker split needs them all).
        sessions: ``N`` sessions (``session`` only). scheme: one of :data:`HOLDOUT_SCHEMES`.
        holdout_speaker: the speaker to hold out, or ``""``. test_size: the test fraction, in (0, 1). seed: the seed.

    Returns:
        ``(train_idx, test_idx, spec, stratified)``: int arrays in the splitter's order (for ``session``: session by
        session), the splitter's ``spec()`` (plus ``fold`` and ``holdout_speaker`` for a held-out speaker), and for
        each session (``"all"`` without sessions) whether its split was stratified (a speaker split: ``{}``).

    Raises:
        SplitError: unknown scheme, a speaker split without a speaker for every item, an unknown
            ``holdout_speaker``, too few speakers, a ``test_size`` outside (0, 1).
    """
    y = np.asarray(y)
    n = len(y)
    if scheme in ("session", "random"):
        splitter = PerSessionSplit(test_size, seed)
        train, test = splitter.fold(0, n, y, sessions if scheme == "session" else None)
        return train, test, splitter.spec(), dict(splitter.stratified)
    if scheme != "speaker":
        raise SplitError(f"the hold-out scheme must be one of {HOLDOUT_SCHEMES}, got {scheme!r}")
    g = _groups(groups, n, "speaker")
    if holdout_speaker:
        loso = LeaveOneSpeakerOut()
        speakers = loso.speakers(g)
        if holdout_speaker not in speakers:
            raise SplitError(f"holdout_speaker {holdout_speaker!r} is not in the corpus; speakers: {speakers}")
        fold = speakers.index(holdout_speaker)
        train, test = loso.fold(fold, n, y, g)
        return train, test, {**loso.spec(), "fold": fold, "holdout_speaker": holdout_speaker}, {}
    splitter = SpeakerFolds(max(2, round(1 / test_size)), seed)
    train, test = splitter.fold(0, n, y, g)
    return train, test, splitter.spec(), {}


def holdout_split(y: Sequence, groups: Sequence | None = None, *, scheme: str = "random", holdout_speaker: str = "",
                  test_size: float = 0.2, seed: int = 42) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """One seeded train/test split of a corpus without sessions, as a single-run family makes it (baselines,
    functionals): :func:`holdout_indices` with ``scheme`` ``random`` or ``speaker``, sorted, neither part empty.

    Args:
        y: ``N`` class codes. groups: ``N`` speakers (``None`` = unknown; a speaker split needs them all).
        scheme: ``random`` or ``speaker``. holdout_speaker: the speaker to hold out, or ``""``.
        test_size: the test fraction. seed: the seed.

    Returns:
        ``(train_idx, test_idx, spec)``: sorted int arrays and what a run manifest records (``scheme``,
        ``folds``, ``fold``, ``seed``, ``holdout_speaker``, ``stratified``).

    Raises:
        SplitError: unknown scheme, a speaker split without a speaker for every item, an unknown
            ``holdout_speaker``, too few speakers, or an empty part.
    """
    if scheme not in ("random", "speaker"):
        raise SplitError(f"split must be 'random' or 'speaker', got {scheme!r}")
    train, test, spec, stratified = holdout_indices(y, groups, scheme=scheme, holdout_speaker=holdout_speaker,
                                                    test_size=test_size, seed=seed)
    spec = {**spec, "fold": spec.get("fold", 0)}
    if scheme == "random":
        spec["stratified"] = stratified.get("all", False)
    if not len(train) or not len(test):
        raise SplitError(f"the split left {len(train)} training and {len(test)} test items")
    return np.sort(train), np.sort(test), spec


def inner_split(train_idx: Sequence[int], y: Sequence[int], groups: Sequence[str | None] | None,
                seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split a fold's training part into ``(fit_idx, select_idx)`` for honest epoch selection: the epoch (or
    early-stopping point) is chosen on ``select_idx``, never on the fold that is scored.

    With a speaker for every training item and at least two speakers, one training speaker (a seeded choice
    among the sorted names) is held out; otherwise one fifth of the training part, stratified by label
    (:class:`StratifiedFolds` ``(5, seed)``, fold 0).

    Args:
        train_idx: the fold's training indices (into ``y`` and ``groups``).
        y: ``(N,)`` label codes of all items.
        groups: ``N`` speakers (``None`` or ``""`` = unknown), or ``None``.
        seed: seed of the choice.

    Returns:
        ``(fit_idx, select_idx)``: int arrays, a partition of ``train_idx`` (in its order).

    Raises:
        SplitError: fewer than 5 training items for the stratified fallback (:class:`StratifiedFolds`).
    """
    train_idx = np.asarray(train_idx, dtype=np.int64)
    y = np.asarray(y)
    speakers = None if groups is None else np.asarray([str(g) if g not in (None, "") else None for g in groups],
                                                       object)
    if speakers is not None and all(s is not None for s in speakers[train_idx]):
        names = sorted(set(speakers[train_idx].tolist()))
        if len(names) >= 2:
            held = names[np.random.default_rng(seed).integers(len(names))]
            mask = speakers[train_idx] == held
            return train_idx[~mask], train_idx[mask]
    fit, sel = StratifiedFolds(5, seed).fold(0, len(train_idx), y[train_idx])
    return train_idx[fit], train_idx[sel]


def kfold_indices(y: Sequence[int], n_folds: int = 5, seed: int = 42,
                  groups: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The folds of :class:`SpeakerFolds` (when ``groups`` is given) or :class:`StratifiedFolds`, as a list.

    Raises:
        SplitError: fewer items (or speakers) than folds.
    """
    splitter = SpeakerFolds(n_folds, seed) if groups is not None else StratifiedFolds(n_folds, seed)
    return list(splitter.split(len(y), y, groups))


def loso_indices(groups: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-speaker-out folds with their speaker: ``[(speaker, train_idx, test_idx), ...]``."""
    splitter = LeaveOneSpeakerOut()
    return [(s, tr, te) for s, (tr, te) in zip(splitter.speakers(groups), splitter.split(len(groups), None, groups))]
