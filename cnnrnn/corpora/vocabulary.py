"""One cross-corpus emotion vocabulary: every corpus' label names mapped to canonical emotion names.

Corpora name the same emotion differently: EmoDB ``anger``, KEMDy and ESD ``angry``, JTES ``ang``;
KEMDy's files even spell ``disgust`` as ``disqust``. :func:`canonical_emotion` maps each to one canonical
name, so that a model trained on one corpus can be scored on another's files, and the class probabilities
of models trained on different corpora can be fused, by meaning rather than by spelling.

Canonical names (:data:`CANONICAL`) are the nouns of the basic-emotion literature: ``anger``, ``boredom``,
``disgust``, ``fear``, ``happiness``, ``neutral``, ``sadness``, ``surprise``. A name that is not an
emotion (an FSDD digit, an UrbanSound8K class) maps to itself, lower-cased.
"""
from __future__ import annotations

from typing import Iterable, Sequence

CANONICAL = ("anger", "boredom", "disgust", "fear", "happiness", "neutral", "sadness", "surprise")

#: Corpus spellings → canonical name (EmoDB, KEMDy19/20, ESD, JTES, and common variants).
SYNONYMS = {
    "angry": "anger", "ang": "anger", "anger": "anger",
    "bored": "boredom", "boredom": "boredom",
    "disgust": "disgust", "disqust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear",
    "happy": "happiness", "happiness": "happiness", "joy": "happiness",
    "neutral": "neutral", "neu": "neutral",
    "sad": "sadness", "sadness": "sadness",
    "surprise": "surprise", "surprised": "surprise",
}


def canonical_emotion(name: str) -> str:
    """``'Angry'`` → ``'anger'``, ``'joy'`` → ``'happiness'``, ``'disqust'`` → ``'disgust'``; a name
    outside :data:`SYNONYMS` comes back stripped and lower-cased."""
    key = str(name).strip().lower()
    return SYNONYMS.get(key, key)


def match_labels(source: Sequence[str], target: Iterable[str]) -> dict[str, str | None]:
    """For each label of ``source`` (e.g. a corpus being scored), the label of ``target`` (e.g. a model's
    classes) with the same canonical emotion, or ``None`` when the model has no such class.

    Raises:
        ValueError: two target labels share one canonical emotion (the match would be ambiguous).
    """
    by_meaning: dict[str, str] = {}
    for label in target:
        meaning = canonical_emotion(label)
        if meaning in by_meaning and by_meaning[meaning] != label:
            raise ValueError(f"labels {by_meaning[meaning]!r} and {label!r} both mean {meaning!r}")
        by_meaning[meaning] = label
    return {label: by_meaning.get(canonical_emotion(label)) for label in source}


def relabel_by_meaning(utterances: Sequence, labels: Sequence[str]) -> tuple[list, dict[str, list[str]]]:
    """Utterances of another corpus, relabelled with a model's class names by meaning (:func:`match_labels`).

    Args:
        utterances: :class:`cnnrnn.corpora.Utterance` records (``emotion`` in their corpus' spelling).
        labels: the model's class names.

    Returns:
        ``(kept, skipped)``: the utterances whose emotion the model has, with ``emotion`` set to the model's
        name for it; and ``{corpus label: [utterance id, ...]}`` of the others.
    """
    import dataclasses

    match = match_labels(sorted({u.emotion for u in utterances}), labels)
    skipped: dict[str, list[str]] = {}
    kept = []
    for u in utterances:
        if match[u.emotion] is None:
            skipped.setdefault(u.emotion, []).append(u.id)
        else:
            kept.append(dataclasses.replace(u, emotion=match[u.emotion]))
    return kept, skipped
