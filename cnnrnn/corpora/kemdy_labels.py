"""KEMDy label processing: fix typos, weight the raters, re-vote the emotion, write ``new_data.csv``.

A port of ``prepare_data.py`` from the ETRI emotion-recognition code (-ETRI-Emotion-Recognition):

1. Typos. A ``SessNN_`` prefix that disagrees with its annotation file (``Sess18_…`` in
   ``Sess17_eval.csv``; the seed names Sess12 and Sess17) is fixed by the corpus reader
   (:func:`cnnrnn.corpora.kemdy.read_kemdy_ratings`). The corpus spelling ``disqust`` is
   canonicalised to ``disgust`` (:data:`TYPOS`); ``emotion_raw`` keeps the cell as written.
2. Rater weights. A segment has a *majority label* when more than half of the rater slots
   (more than 5 of the 10 ``EvalNN`` columns; an empty or unknown cell counts as a rater who
   did not agree) gave the same canonical label, following the seed's 과반수 ("more than
   half of the people rated the same label"). A rater's weight is their accuracy against
   that majority label, over the majority segments where the rater gave a valid label.
3. The emotion is re-voted: each label scores the sum of the weights of the raters who
   chose it, and ``emotion_weighted`` is the top-scoring label. Because the weights are
   decimals, the ``a;b`` ties of ``Total Evaluation`` almost all disappear; a remaining
   exact tie (equal scores) is still written ``a;b``.

Bad cells never stop the run: an empty or unknown rater cell is an ignored vote, and a
missing or undecodable transcript gives an empty ``text``; both are counted in the report. The reader's
checks hold here too (:func:`cnnrnn.corpora.kemdy.read_kemdy20`): an unsafe or repeated Segment ID is a
counted skip, and a file without its header cells, or with one Segment ID in two differing rows, an error.
"""
from __future__ import annotations

import csv
import io
import logging
import math
from collections import Counter, defaultdict
from typing import Any

from ..artifacts import atomic_write_bytes, save_json
from .base import CorpusError, CorpusReport, split_labels
from .kemdy import (KEMDY_LABELS, LABEL_ALIASES, WEIGHTED_COLUMNS, RatedSegment, canonical_label,
                            read_kemdy_ratings)

log = logging.getLogger(__name__)

#: The canonical label set and the known misspellings are the KEMDy corpus module's (declared once there).
LABELS = KEMDY_LABELS
TYPOS = LABEL_ALIASES
MAJORITY_RULE = ("a label chosen by more than half of the rater slots of the segment "
                 "(empty or unknown cells count as raters who did not agree)")
#: How many example ids the report lists per ignored-vote reason.
N_EXAMPLES = 10


def majority_label(votes: list[str | None]) -> str | None:
    """The label more than half of ``votes`` (one per rater slot, ``None`` = no valid vote) agree on, else ``None``."""
    counts = Counter(v for v in votes if v)
    if not counts:
        return None
    label, n = counts.most_common(1)[0]
    return label if 2 * n > len(votes) else None


def rater_weights(votes: list[dict[str, str | None]]) -> tuple[dict[str, float], dict[str, dict[str, int]], int]:
    """Per-rater weight: accuracy against the majority label over the majority segments.

    Args:
        votes: per segment, rater slot → canonical label or ``None`` (no valid vote).

    Returns:
        ``(weights, stats, n_majority)``: ``weights[rater]`` in [0, 1] (0 for a rater who
        never voted on a majority segment); ``stats[rater]`` has ``n_majority`` (majority
        segments the rater voted on) and ``n_agree``; ``n_majority`` counts majority segments.
    """
    raters = sorted({r for seg in votes for r in seg})
    stats = {r: {"n_majority": 0, "n_agree": 0} for r in raters}
    n_majority = 0
    for seg in votes:
        majority = majority_label([seg.get(r) for r in raters])
        if majority is None:
            continue
        n_majority += 1
        for rater, label in seg.items():
            if label is not None:
                stats[rater]["n_majority"] += 1
                stats[rater]["n_agree"] += label == majority
    weights = {r: s["n_agree"] / s["n_majority"] if s["n_majority"] else 0.0 for r, s in stats.items()}
    return weights, stats, n_majority


def weighted_vote(votes: dict[str, str | None], weights: dict[str, float]) -> list[str]:
    """Labels with the highest summed rater weight (several only on an exact tie), in :data:`LABELS` order.

    Returns ``[]`` when no rater gave a valid label.
    """
    scores: dict[str, float] = defaultdict(float)
    for rater, label in votes.items():
        if label is not None:
            scores[label] += weights.get(rater, 0.0)
    if not scores:
        return []
    best = max(scores.values())
    return [lab for lab in LABELS if lab in scores and math.isclose(scores[lab], best, rel_tol=1e-9, abs_tol=1e-12)]


def _counted_label(cell: str, report: CorpusReport, where: str) -> str | None:
    """:func:`canonical_label`, counting a corrected typo in ``report.fixed`` (``typo:disqust->disgust (rater)``)."""
    label = canonical_label(cell)
    if label is not None and cell.strip().lower() != label:
        report.fix(f"typo:{cell.strip().lower()}->{label} ({where})")
    return label


def _canonical_votes(seg: RatedSegment, report: CorpusReport, ignored: dict[str, list[str]]) -> dict[str, str | None]:
    votes = {}
    for rater, cell in seg.ratings.items():
        label = votes[rater] = _counted_label(cell, report, "rater")
        if label is None:
            reason = "empty" if not cell.strip() else "unknown_label"
            ignored[reason].append(f"{seg.utterance.id}:{rater}={cell.strip()!r}")
    return votes


def _csv_bytes(rows: list[dict[str, Any]]) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=WEIGHTED_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def process_labels(corpus: str, root, out_csv, report_json=None) -> dict:
    """Fix typos, weight raters, write new_data.csv (+ a JSON report). Returns the report dict.

    Args:
        corpus: ``kemdy20`` or ``kemdy19`` (the folder layout; see :mod:`cnnrnn.corpora.kemdy`).
        root: the corpus folder.
        out_csv: the CSV to write (atomically), columns :data:`~cnnrnn.corpora.kemdy.WEIGHTED_COLUMNS`:
            ``segment_id``, ``session`` (``Session01``), ``speaker``, ``text`` (empty when the
            transcript is missing or undecodable), ``wav_path`` (absolute), ``emotion_raw`` (the
            ``Total Evaluation`` cell as written, ``disqust`` and ties included),
            ``emotion_weighted`` (canonical labels, ``a;b`` only on an exact tie), ``valence``
            and ``arousal`` (the ``Total Evaluation`` means, 1–5).
        report_json: where to write the report as JSON (atomically); ``None`` writes none.

    Returns:
        The report: ``rater_weights`` (slot → weight in [0, 1]), ``rater_stats``,
        ``n_majority_segments``, ``majority_rule``, ``ties_before`` / ``ties_after`` (rows
        whose ``emotion_raw`` / ``emotion_weighted`` holds several labels), ``n_changed``
        (rows whose single raw label differs from the weighted one), ``ignored_votes``
        (``empty`` / ``unknown_label`` counts and examples), ``text`` (ids whose transcript
        is ``missing`` / ``undecodable`` / ``not_cp949`` …), ``weighted_from_total`` (ids
        without any valid rater vote, whose label falls back to the canonical
        ``Total Evaluation``), ``label_counts``, and the reader's ``skipped`` / ``fixed``
        (``session_prefix``, ``typo:disqust->disgust``), ``n_annotated``, ``n_written``.

    Raises:
        CorpusError: the corpus cannot be read (see :func:`~cnnrnn.corpora.kemdy.read_kemdy_ratings`: no
            annotation file, an undecodable one, a missing header cell, a Segment ID in two differing rows)
            or no segment is left to write.
    """
    segments, creport = read_kemdy_ratings(corpus, root)
    ignored: dict[str, list[str]] = {"empty": [], "unknown_label": []}
    votes = [_canonical_votes(seg, creport, ignored) for seg in segments]
    weights, stats, n_majority = rater_weights(votes)

    rows, text_issues, fallback = [], defaultdict(list), []
    for seg, seg_votes in zip(segments, votes):
        utt = seg.utterance
        raw = [_counted_label(cell, creport, "total") for cell in split_labels(seg.total)]
        labels = weighted_vote(seg_votes, weights)
        if not labels:
            labels = [lab for lab in LABELS if lab in raw]
            if not labels:
                creport.skip("no_label", utt.id)
                continue
            fallback.append(utt.id)
        if seg.text_status != "ok":
            text_issues[seg.text_status].append(utt.id)
        rows.append({"segment_id": utt.id, "session": utt.session, "speaker": utt.speaker, "text": utt.text or "",
                     "wav_path": utt.audio_path, "emotion_raw": seg.total, "emotion_weighted": ";".join(labels),
                     "valence": utt.valence, "arousal": utt.arousal})
    if not rows:
        raise CorpusError(f"kemdy-labels: no segment left to write from {root} ({creport.summary()})")
    creport.n_kept = len(rows)

    def n_ties(column: str) -> int:
        return sum(len(split_labels(r[column])) > 1 for r in rows)

    report = {
        "corpus": corpus, "root": str(root), "out_csv": str(out_csv),
        "n_annotated": creport.n_annotated, "n_written": len(rows),
        "labels": list(LABELS), "typos": TYPOS, "majority_rule": MAJORITY_RULE,
        "n_majority_segments": n_majority,
        "rater_weights": {r: round(w, 6) for r, w in weights.items()},
        "rater_stats": stats,
        "ties_before": n_ties("emotion_raw"), "ties_after": n_ties("emotion_weighted"),
        "n_changed": sum(canonical_label(r["emotion_raw"]) not in (None, r["emotion_weighted"]) for r in rows),
        "ignored_votes": {reason: {"n": len(items), "examples": items[:N_EXAMPLES]}
                          for reason, items in ignored.items()},
        "text": dict(text_issues),
        "weighted_from_total": fallback,
        "label_counts": dict(sorted(Counter(r["emotion_weighted"] for r in rows).items())),
        "skipped": creport.skipped, "fixed": creport.fixed,
    }
    atomic_write_bytes(out_csv, _csv_bytes(rows))
    if report_json is not None:
        save_json(report, report_json)
    log.info("kemdy-labels: %d rows written to %s; ties %d -> %d", len(rows), out_csv, report["ties_before"],
             report["ties_after"])
    return report


def summary(report: dict) -> str:
    """A short human-readable summary of a :func:`process_labels` report (weights, ties, skips)."""
    weights = ", ".join(f"{r} {w:.2f}" for r, w in report["rater_weights"].items())
    ignored = ", ".join(f"{v['n']} {k}" for k, v in report["ignored_votes"].items())
    skipped = ", ".join(f"{len(ids)} {reason}" for reason, ids in sorted(report["skipped"].items())) or "none"
    text = ", ".join(f"{len(ids)} {status}" for status, ids in sorted(report["text"].items())) or "all ok"
    fixed = ", ".join(f"{n} {what}" for what, n in sorted(report["fixed"].items())) or "none"
    return (f"{report['n_written']} of {report['n_annotated']} segments written to {report['out_csv']}\n"
            f"rater weights ({report['n_majority_segments']} majority segments): {weights}\n"
            f"ties before {report['ties_before']}, after {report['ties_after']}; "
            f"{report['n_changed']} labels changed by the weighted vote\n"
            f"ignored rater votes: {ignored}; transcripts: {text}\n"
            f"skipped: {skipped}; fixed: {fixed}")
