"""Speaker normalisation of feature vectors (and of log-mel frames): z-scores per speaker, utterance or corpus.

Speaker variability (vocal tract, pitch range, recording channel) is the largest nuisance factor in
speech emotion recognition across speakers. Standardising every feature dimension with the mean and standard
deviation of *the same speaker's* speech, computed without labels, removes much of it. It is standard practice
in the field: the INTERSPEECH Computational Paralinguistics challenges (Schuller et al., "The INTERSPEECH 2009
Emotion Challenge" onwards) report speaker-wise standardisation of the openSMILE functionals as a baseline
option, and Busso, Mariooryad, Metallinou & Narayanan, "Iterative feature normalization scheme for automatic
emotion detection from speech", IEEE Trans. Affective Computing 4(4), 2013, normalise each speaker's features
with statistics of that speaker's (neutral) speech. On ``emodb-535`` (leave-one-speaker-out, openSMILE
eGeMAPSv02 + RBF SVM) it was worth about 12 points of UA (``../shared/DESIGN.md``).

Modes (:data:`MODES`):

* ``speaker``: each dimension standardised with the mean and standard deviation of its speaker's rows, computed
  from that speaker's own items only, never from labels. A speaker with fewer than ``min_items`` items (one
  utterance: the standard deviation of one vector is zero) and an item without a speaker fall back to the
  ``global`` statistics; the speakers that fell back are counted (:attr:`NormStats.fallback`).
* ``utterance``: each dimension standardised over the rows of the item itself (cepstral mean and variance
  normalisation, for an item of several frames; a single feature vector cannot be normalised this way).
* ``global``: the statistics of the reference (training) items.
* ``none``: unchanged.

The unit is a *row*: a feature vector ``(D,)``. An item (utterance) holds one row (openSMILE functionals,
``(D,)``) or several (log-mel frames: pass a spectrogram ``(n_mels, frames)`` transposed, ``(frames, n_mels)``,
so that the statistics are per mel band over every frame of the speaker). Statistics are computed in float64
(two passes: mean, then squared deviations) and stored as plain lists, so a run keeps them in JSON
(:meth:`NormStats.to_dict`). A standard deviation below :data:`STD_FLOOR` (a constant dimension) is stored as 1,
so that dimension is only centred.

Using the held-out speaker's unlabelled audio to compute their statistics is a transductive choice: report
figures with and without it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

log = logging.getLogger("cnnrnn.normalize")

MODES = ("speaker", "utterance", "global", "none")
#: Fewest items a speaker needs for their own statistics; fewer fall back to the global statistics.
MIN_SPEAKER_ITEMS = 2
#: A standard deviation below this is stored as 1 (the dimension is constant: centre it only).
STD_FLOOR = 1e-8

#: What :func:`norm_source` says about one item: its own speaker's statistics; the global ones because its
#: speaker had fewer than ``min_items`` items, because it has no speaker, or because the statistics do not know
#: its speaker; its own rows; the global ones by choice; or nothing.
SOURCES = ("speaker", "global_fallback_single", "global_fallback_no_speaker", "global_fallback_unseen", "utterance",
           "global", "none")


class NormalizationError(ValueError):
    """Statistics cannot be computed or applied: unknown mode, no rows, a dimension mismatch, or utterance
    normalisation of an item of a single row."""


@dataclass
class Moments:
    """Mean and standard deviation per dimension of a group of rows.

    Attributes:
        mean, std: ``(D,) float64``; ``std`` is floored (:data:`STD_FLOOR` → 1).
        n_items: items (utterances) the rows came from; ``n_rows``: rows.
    """

    mean: np.ndarray
    std: np.ndarray
    n_items: int
    n_rows: int

    def to_dict(self) -> dict[str, Any]:
        """The moments as JSON (``mean``, ``std`` per band, ``n_items``, ``n_rows``)."""
        return {"mean": self.mean.tolist(), "std": self.std.tolist(), "n_items": int(self.n_items),
                "n_rows": int(self.n_rows)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Moments":
        """Moments from :meth:`to_dict`'s dict (``float32`` arrays)."""
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["std"], np.float64),
                   int(data["n_items"]), int(data["n_rows"]))


@dataclass
class NormStats:
    """The statistics a run stores: global ones (of the reference, i.e. training, items) and one set per speaker.

    Attributes:
        dim: ``D``, the row length.
        global_moments: :class:`Moments` of the reference items (``"global"`` in JSON).
        speakers: speaker name → :class:`Moments` of that speaker's items (speakers with at least ``min_items``).
        fallback: speaker name → number of items, for the speakers with fewer than ``min_items`` items; they
            are normalised with the global statistics (issue 11 "Bad input": counted, not failed).
        min_items: the threshold used.
    """

    dim: int
    global_moments: Moments
    speakers: dict[str, Moments] = field(default_factory=dict)
    fallback: dict[str, int] = field(default_factory=dict)
    min_items: int = MIN_SPEAKER_ITEMS

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable: ``{"dim", "min_items", "global": {mean, std, n_items, n_rows}, "speakers": {...},
        "fallback": {...}}``."""
        return {"dim": int(self.dim), "min_items": int(self.min_items), "global": self.global_moments.to_dict(),
                "speakers": {s: m.to_dict() for s, m in sorted(self.speakers.items())},
                "fallback": dict(sorted(self.fallback.items()))}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "NormStats":
        """Read :meth:`to_dict`'s output back.

        Raises:
            NormalizationError: a field is missing or a vector has the wrong length.
        """
        try:
            stats = cls(int(data["dim"]), Moments.from_dict(data["global"]),
                        {str(s): Moments.from_dict(m) for s, m in data.get("speakers", {}).items()},
                        {str(s): int(n) for s, n in data.get("fallback", {}).items()},
                        int(data.get("min_items", MIN_SPEAKER_ITEMS)))
        except (KeyError, TypeError, ValueError) as exc:
            raise NormalizationError(f"normalisation statistics are incomplete or malformed ({exc!r})") from exc
        for name, m in [("global", stats.global_moments), *stats.speakers.items()]:
            if m.mean.shape != (stats.dim,) or m.std.shape != (stats.dim,):
                raise NormalizationError(f"statistics of {name!r} have {m.mean.shape} values, expected ({stats.dim},)")
        return stats


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise NormalizationError(f"unknown normalisation mode {mode!r}; choose one of {MODES}")


def _rows(x: Any) -> np.ndarray:
    """An item as ``(n_rows, D) float64`` (a ``(D,)`` vector is one row)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        return a[None, :]
    if a.ndim != 2:
        raise NormalizationError(f"an item is a (D,) vector or (n_rows, D) rows, got shape {a.shape}")
    return a


def _items(rows_by_item: Any) -> list[np.ndarray]:
    if isinstance(rows_by_item, np.ndarray) and rows_by_item.ndim == 2:
        return [r[None, :].astype(np.float64) for r in rows_by_item]  # (N, D): one row per item
    return [_rows(x) for x in rows_by_item]


def moments(items: Sequence[np.ndarray]) -> Moments:
    """Mean and standard deviation per dimension over every row of ``items`` (two passes, float64).

    Args:
        items: each ``(n_rows, D)`` (see :func:`_rows`); at least one row in total.

    Returns:
        :class:`Moments` (population standard deviation, floored: below :data:`STD_FLOOR` it is 1).

    Raises:
        NormalizationError: no rows, or items of different ``D``.
    """
    items = [_rows(x) for x in items]
    n_rows = sum(len(x) for x in items)
    if not n_rows:
        raise NormalizationError("no rows to compute statistics from")
    dims = {x.shape[1] for x in items}
    if len(dims) != 1:
        raise NormalizationError(f"items of different lengths {sorted(dims)}")
    mean = sum(x.sum(axis=0) for x in items) / n_rows
    var = sum(((x - mean) ** 2).sum(axis=0) for x in items) / n_rows
    std = np.sqrt(var)
    std[~(std >= STD_FLOOR)] = 1.0  # constant (or non-finite) dimensions are only centred
    return Moments(mean, std, len(items), n_rows)


def fit_speakers(rows_by_item: Any, speakers: Sequence[str | None],
                 min_items: int = MIN_SPEAKER_ITEMS) -> tuple[dict[str, Moments], dict[str, int]]:
    """Per-speaker statistics, each from that speaker's own items only (no labels are involved).

    Args:
        rows_by_item: ``N`` items, each ``(D,)`` or ``(n_rows, D)``, or one ``(N, D)`` array (one row per item).
        speakers: ``N`` speaker names; ``None`` or ``""`` = unknown (the item is left out).
        min_items: fewest items for a speaker's own statistics.

    Returns:
        ``(speakers, fallback)``: name → :class:`Moments` for speakers with at least ``min_items`` items, and
        name → number of items for the others.
    """
    items = _items(rows_by_item)
    if len(items) != len(speakers):
        raise NormalizationError(f"{len(items)} items but {len(speakers)} speakers")
    groups: dict[str, list[np.ndarray]] = {}
    for x, s in zip(items, speakers):
        if s is not None and str(s) != "":
            groups.setdefault(str(s), []).append(x)
    out, fallback = {}, {}
    for s, xs in sorted(groups.items()):
        if len(xs) >= min_items:
            out[s] = moments(xs)
        else:
            fallback[s] = len(xs)
    if fallback:
        log.warning("speaker normalisation: %d speaker(s) with fewer than %d items use the global statistics: %s",
                    len(fallback), min_items, ", ".join(f"{s} ({n})" for s, n in fallback.items()))
    return out, fallback


def fit(rows_by_item: Any, speakers: Sequence[str | None], *, reference: Sequence[bool] | None = None,
        min_items: int = MIN_SPEAKER_ITEMS) -> NormStats:
    """Statistics for every mode: global ones from the ``reference`` items, one set per speaker.

    Per-speaker statistics use every item of that speaker given here (for a held-out speaker: their unlabelled
    test items, a transductive choice); global statistics use only the ``reference`` (training) items.

    Args:
        rows_by_item: ``N`` items, each a ``(D,)`` feature vector (openSMILE functionals) or ``(n_rows, D)`` rows
            (log-mel: ``(frames, n_mels)``), or one ``(N, D)`` array; any float dtype.
        speakers: ``N`` speaker names (``None`` = unknown).
        reference: ``N`` booleans, the items of the global statistics (default: all).
        min_items: fewest items for a speaker's own statistics (default 2: one utterance falls back).

    Returns:
        :class:`NormStats`.

    Raises:
        NormalizationError: no reference rows, or rows of different lengths.
    """
    items = _items(rows_by_item)
    ref = np.ones(len(items), bool) if reference is None else np.asarray(reference, bool)
    if len(ref) != len(items):
        raise NormalizationError(f"{len(items)} items but {len(ref)} reference flags")
    global_m = moments([x for x, r in zip(items, ref) if r])
    per_speaker, fallback = fit_speakers(items, speakers, min_items)
    return NormStats(global_m.mean.shape[0], global_m, per_speaker, fallback, min_items)


def with_speakers(stats: NormStats, rows_by_item: Any, speakers: Sequence[str | None]) -> NormStats:
    """``stats`` with the statistics of the speakers of new items (at prediction time) added.

    A speaker with at least ``stats.min_items`` new items gets statistics from those items (replacing any stored
    ones); a speaker with fewer keeps the statistics the run stored for that name, if any, and otherwise falls
    back to the global ones (counted in ``fallback``).

    Args:
        stats: the run's statistics.
        rows_by_item, speakers: as for :func:`fit_speakers`.

    Returns:
        A new :class:`NormStats` (``stats`` is not changed).
    """
    new, few = fit_speakers(rows_by_item, speakers, stats.min_items)
    merged = {**stats.speakers, **new}
    fallback = {s: n for s, n in few.items() if s not in merged}
    return NormStats(stats.dim, stats.global_moments, merged, fallback, stats.min_items)


#: ``--speaker-from`` value: each input file's speaker is the name of the folder it is in.
SPEAKER_FROM_FOLDER = "<folder>"


def unknown_speaker_mode(stats: NormStats | None) -> str:
    """The normalisation of a file whose speaker is unknown, for a speaker-normalised model: ``global`` (the training
    data's global statistics, which the run stores) when there are statistics, else ``utterance``.

    A speaker-normalised model collapsed to chance on per-utterance z-scores (the old fallback: CNNRNN ``best`` on
    EmoDB speakers 03 and 09, UA 0.252); the global statistics keep the speaker's own offset, which for a pretrained
    front end (``whisper``, ``yamnet`` kinds) is the raw log-mel it was trained on.
    """
    return "global" if stats is not None else "utterance"


def norm_source(speaker: str | None, stats: NormStats | None, mode: str) -> str:
    """Which statistics :func:`apply` uses for an item of ``speaker`` (one of :data:`SOURCES`)."""
    _check_mode(mode)
    if mode != "speaker":
        return mode
    if speaker is None or str(speaker) == "":
        return "global_fallback_no_speaker"
    if stats is not None and str(speaker) in stats.speakers:
        return "speaker"
    if stats is not None and str(speaker) in stats.fallback:
        return "global_fallback_single"
    return "global_fallback_unseen"


def apply(x: Any, speaker: str | None, stats: NormStats | None, mode: str) -> np.ndarray:
    """Normalise one item.

    Args:
        x: ``(D,)`` or ``(n_rows, D)`` features.
        speaker: the item's speaker (``None`` = unknown); used by ``speaker`` mode only.
        stats: from :func:`fit` (not needed for ``utterance`` and ``none``).
        mode: one of :data:`MODES`; ``speaker`` uses the speaker's statistics when ``stats`` has them and the
            global ones otherwise (:func:`norm_source` says which).

    Returns:
        ``x`` standardised, ``float32``, same shape.

    Raises:
        NormalizationError: unknown mode, missing statistics, wrong ``D``, or ``utterance`` mode on an item of
            one row.
    """
    _check_mode(mode)
    a = np.asarray(x, dtype=np.float64)
    if mode == "none":
        return a.astype(np.float32)
    if mode == "utterance":
        rows = _rows(a)
        if len(rows) < 2:
            raise NormalizationError("utterance normalisation needs an item of several rows (frames); a single "
                                     "feature vector has no spread of its own")
        m = moments([rows])
        return ((a - m.mean) / m.std).astype(np.float32)
    if stats is None:
        raise NormalizationError(f"{mode} normalisation needs statistics (normalize.fit)")
    if a.shape[-1] != stats.dim:
        raise NormalizationError(f"features have {a.shape[-1]} dimensions, the statistics {stats.dim}")
    m = stats.speakers.get(str(speaker)) if mode == "speaker" and speaker is not None else None
    m = m or stats.global_moments
    return ((a - m.mean) / m.std).astype(np.float32)


def to_global_range(z: Any, stats: NormStats | None, what: str = "features") -> np.ndarray:
    """Map z-scores back to the reference data's range: ``z * std + mean`` with the global statistics, per
    dimension.

    For a pretrained network that expects features in their usual range (YAMNet's log-mel): each speaker's (or
    utterance's) own offset and spread per dimension is removed by :func:`apply`, then the training data's global
    ones are put back, so ``global`` normalisation followed by this is the identity.

    Args:
        z: ``(..., D)`` z-scores from :func:`apply`.
        stats: the run's statistics (their :attr:`NormStats.global_moments`).
        what: named in the error.

    Returns:
        ``float32`` of ``z``'s shape, in the units of the features the statistics were computed from.

    Raises:
        NormalizationError: no statistics, or statistics of another dimension.
    """
    if stats is None:
        raise NormalizationError(f"normalisation of {what} needs the training data's global statistics to map the "
                                 "z-scores back to (the run's normalization.json)")
    a = np.asarray(z, dtype=np.float64)
    if a.shape[-1] != stats.dim:
        raise NormalizationError(f"features have {a.shape[-1]} dimensions, the statistics {stats.dim}")
    return (a * stats.global_moments.std + stats.global_moments.mean).astype(np.float32)


def apply_all(rows_by_item: Any, speakers: Sequence[str | None], stats: NormStats | None,
              mode: str) -> tuple[list[np.ndarray] | np.ndarray, list[str]]:
    """:func:`apply` to every item: ``(normalised, sources)``.

    Args:
        rows_by_item: ``N`` items, or one ``(N, D)`` array (then the result is an ``(N, D) float32`` array).
        speakers: ``N`` speaker names (``None`` = unknown).

    Returns:
        The normalised items (a list, or an ``(N, D)`` array) and the ``N`` :func:`norm_source` values.
    """
    speakers = list(speakers)
    sources = [norm_source(s, stats, mode) for s in speakers]
    if isinstance(rows_by_item, np.ndarray) and rows_by_item.ndim == 2:
        if len(rows_by_item) != len(speakers):
            raise NormalizationError(f"{len(rows_by_item)} items but {len(speakers)} speakers")
        out = np.stack([apply(x, s, stats, mode) for x, s in zip(rows_by_item, speakers)]) if len(speakers) \
            else np.zeros((0, rows_by_item.shape[1]), np.float32)
        return out, sources
    items = list(rows_by_item)
    if len(items) != len(speakers):
        raise NormalizationError(f"{len(items)} items but {len(speakers)} speakers")
    return [apply(x, s, stats, mode) for x, s in zip(items, speakers)], sources


def count_sources(sources: Iterable[str]) -> dict[str, int]:
    """``{source: n}`` of :func:`norm_source` values (what a report records)."""
    out: dict[str, int] = {}
    for s in sources:
        out[s] = out.get(s, 0) + 1
    return out
