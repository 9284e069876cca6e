"""Stage 1 of the CNNRNN job, ``split``: the corpus → ``train.json``, ``test.json``, ``train_audio.json``,
``test_audio.json``, ``labels.json``, ``split_report.json`` (the per-session 8:2 split of the original code)."""
from __future__ import annotations

import logging
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .. import artifacts as A
from ..corpora.base import Utterance
from .config import CnnrnnConfig, load_config
from .run_folder import NO_SESSION, claim_run, record_config

log = logging.getLogger("cnnrnn.cnnrnn.data")


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


def split_per_session(utterances: Sequence[Utterance], test_size: float = 0.2, seed: int = 42,
                      keep_ties: bool = False, labels: Sequence[str] | None = None,
                      corpus: str = "manifest", scheme: str = "session") -> SplitResult:
    """Split the corpus ``1 - test_size : test_size`` into train and test, grouped by session in the result, by the
    hold-out rule every family shares (:func:`cnnrnn.splits.holdout_indices`).

    ``scheme="session"`` (the original CNNRNN code's): every session is split 8:2
    (:class:`cnnrnn.splits.PerSessionSplit`), so one speaker's utterances can land in train and in test.
    Utterances without a session count as one session (``"all"``). Inside a session the split is stratified
    by emotion when every label has at least two utterances and the test part can hold one of each;
    otherwise a plain seeded shuffle, and the report says so.

    ``scheme="speaker"``: whole speakers are held out over the corpus (fold 0 of
    :class:`cnnrnn.splits.SpeakerFolds` with ``round(1 / test_size)`` folds, stratified by emotion), so no
    speaker is in both parts: a speaker-independent test set.

    Args:
        utterances: corpus records.
        test_size: test fraction per session (original: 0.2).
        seed: random seed; the same seed gives the same split.
        keep_ties: keep tied annotations (``emotions`` has several labels) with their first label; by
            default they are left out and counted.
        labels: fixed label order; default: the corpus' declared order
            (:func:`cnnrnn.corpora.label_order`), else the sorted label names.
        corpus: the reader name, for the declared label order.
        scheme: ``session`` or ``speaker`` (see above).

    Returns:
        A :class:`SplitResult`.

    Raises:
        ValueError: no utterance is left, a label is outside ``labels``, an unknown scheme, or (``speaker``)
            an utterance without a speaker or too few speakers.
    """
    from ..corpora import label_order
    from ..splits import holdout_indices

    ties = [u for u in utterances if u.is_tied]
    kept = list(utterances) if keep_ties else [u for u in utterances if not u.is_tied]
    if not kept:
        raise ValueError("no utterance left to split (all were tied annotations?)")
    present = {u.emotion for u in kept}
    label_list = list(labels) if labels else label_order(corpus, present)
    unknown = sorted(present - set(label_list))
    if unknown:
        raise ValueError(f"labels {unknown} are not in the configured label list {label_list}")

    ordered = sorted(kept, key=lambda u: (u.session or NO_SESSION, u.id))
    sessions = [u.session or NO_SESSION for u in ordered]
    y = [u.emotion for u in ordered]
    if scheme not in ("session", "speaker"):
        raise ValueError(f"split scheme must be 'session' or 'speaker', got {scheme!r}")
    train_idx, test_idx, spec, stratified = holdout_indices(
        y, [u.speaker for u in ordered], sessions, scheme=scheme, test_size=test_size, seed=seed)
    if scheme == "speaker":
        stratified = {s: True for s in set(sessions)}
    train: dict[str, list[Utterance]] = defaultdict(list)
    test: dict[str, list[Utterance]] = defaultdict(list)
    for i in train_idx:
        train[sessions[i]].append(ordered[i])
    for i in test_idx:
        test[sessions[i]].append(ordered[i])
    names = sorted(set(sessions))
    train = {s: train.get(s, []) for s in names}
    test = {s: test.get(s, []) for s in names}
    per_session = {s: {"train": len(train[s]), "test": len(test[s]), "stratified": stratified[s]}
                   for s in names}
    report = {
        "n_utterances": len(utterances),
        "n_ties": len(ties),
        "ties": "kept with their first label" if keep_ties else "left out",
        "tied_ids": [u.id for u in ties],
        "n_train": len(train_idx),
        "n_test": len(test_idx),
        "sessions": per_session,
        "label_counts": {
            "train": dict(sorted(Counter(u.emotion for v in train.values() for u in v).items())),
            "test": dict(sorted(Counter(u.emotion for v in test.values() for u in v).items())),
        },
        "test_size": test_size,
        "seed": seed,
        "scheme": spec,
        "speakers_in_both": sorted({u.speaker for v in train.values() for u in v if u.speaker}
                                   & {u.speaker for v in test.values() for u in v if u.speaker}),
    }
    return SplitResult(train=train, test=test, labels=label_list, report=report)


def split(corpus: str, root: str | Path, out: str | Path, config=None) -> dict[str, Any]:
    """Stage 1: read the corpus and write the per-session 8:2 split.

    Writes ``train.json`` / ``test.json`` (``{session: [Utterance dict, ...]}``),
    ``train_audio.json`` / ``test_audio.json`` (flat records ``{id, audio_path,
    emotion, label, speaker, session, text}``; ``label`` is the int code),
    ``labels.json`` (``{"labels": [...]}``, code = index, in the corpus' declared
    order) and ``split_report.json`` (counts, ties, skipped files).

    Raises:
        CorpusError: the corpus cannot be read or has no usable utterance.
    """
    from ..corpora import load_corpus
    from ..outputs import writing_stage

    from ..outputs import audio_digests, digest

    cfg, out = load_config(config), Path(out)
    claim_run(out, write=False)  # refused before the corpus is read; nothing is written until it is
    utterances, corpus_report = load_corpus(corpus, root)
    result = split_per_session(utterances, cfg.split.test_size, cfg.split.seed, cfg.split.keep_ties,
                               cfg.split.labels, corpus=corpus, scheme=cfg.split.scheme)
    kept = result.flat("train") + result.flat("test")
    sources = audio_digests([u.audio_path for u in kept])
    fingerprint = {"sha1": digest([[u.id, d, u.emotion, u.speaker, u.session] for u, d in zip(kept, sources)]
                                  + [cfg.split.__dict__]), "n": len(kept), "corpus": corpus}
    claim_run(out)
    outputs = [*A.SPLIT_FILES.values(), *A.AUDIO_FILES.values(), A.LABELS_FILE, "split_report.json"]
    with writing_stage(out, "split", [(out, outputs)]):
        return _write_split(out, cfg, result, corpus_report, fingerprint)


def _write_split(out: Path, cfg: CnnrnnConfig, result: SplitResult, corpus_report, fingerprint: dict) -> dict[str, Any]:
    from ..outputs import record_inputs

    code = {lab: i for i, lab in enumerate(result.labels)}
    for part in ("train", "test"):
        grouped = {s: [u.to_dict() for u in utts] for s, utts in getattr(result, part).items()}
        A.save_json(grouped, out / A.SPLIT_FILES[part])
        flat = [{"id": u.id, "audio_path": u.audio_path, "emotion": u.emotion, "label": code[u.emotion],
                 "speaker": u.speaker, "session": u.session, "text": u.text} for u in result.flat(part)]
        A.save_json(flat, out / A.AUDIO_FILES[part])
    A.save_json({"labels": result.labels}, out / A.LABELS_FILE)
    report = {"corpus": corpus_report.to_dict(), "split": result.report, "labels": result.labels}
    A.save_json(report, out / "split_report.json")
    record_config(out, cfg)
    record_inputs(out, "split", fingerprint)
    log.info("split: %d train / %d test; %d tie(s) %s", result.report["n_train"],  # the corpus said its skips
             result.report["n_test"], result.report["n_ties"], result.report["ties"])
    return report
