"""Filelists of the DCNN-BLSTMwA flow: one utterance per line, ``wavpath|speaker_id|text|emotion_id|lang_id``.

This is the format of the original DCNN-BLSTMWA code (PyTorch, JTES/ESD), e.g.::

    data/ESD/0011/Angry/0011_000351.wav|0011|The nine the eggs.|3|0

Relative ``wavpath`` values are resolved against the filelist's folder, unless ``root`` is given.

:func:`prepare_filelists` writes a corpus's k-fold and leave-one-speaker-out (LOSO) filelists, as the
original ``011_prep_mydata_[dname].py`` scripts did, with the core splitters (:mod:`cnnrnn.splits`) and the
corpus' declared label order (:func:`cnnrnn.corpora.label_order`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from ..artifacts import LABELS_FILE, atomic_write_bytes, save_json
from ..corpora import label_order, load_corpus
from ..corpora.base import CorpusReport
from ..splits import LeaveOneSpeakerOut, make_splitter

N_FIELDS = 5
#: The kind of folder ``cnnrnn filelists`` writes (:func:`cnnrnn.outputs.claim_folder`), and its lock's stage.
FILELISTS_KIND, FILELISTS_STAGE = "filelists", "filelists"
REPORT_FILE = "prepare_report.json"


def is_filelists_folder(folder: Path) -> bool:
    """Whether ``folder`` holds filelists written before folder markers existed: its ``prepare_report.json``, or its
    ``labels.json`` with a ``kfold/`` or ``loso/`` folder."""
    return (folder / REPORT_FILE).is_file() or (
        (folder / LABELS_FILE).is_file() and ((folder / "kfold").is_dir() or (folder / "loso").is_dir()))


class FilelistError(ValueError):
    """A filelist cannot be used: a malformed line, or an emotion id outside the label set."""


@dataclass(frozen=True)
class FilelistEntry:
    """One filelist line.

    Attributes:
        wavpath: audio path as written in the file (resolved by :func:`read_filelist`).
        speaker_id: speaker id (``0011`` for ESD, ``03`` for EmoDB).
        text: transcript (may be empty; must not contain ``|``).
        emotion_id: integer emotion code, an index into the label list.
        lang_id: integer language code (0 in the original single-language runs).
    """

    wavpath: str
    speaker_id: str
    text: str
    emotion_id: int
    lang_id: int = 0

    def to_line(self) -> str:
        """The entry as one filelist line, without the newline. Raises FilelistError if a field holds ``|``."""
        fields = [self.wavpath, self.speaker_id, self.text, str(self.emotion_id), str(self.lang_id)]
        if any("|" in f or "\n" in f for f in fields):
            raise FilelistError(f"a filelist field may not contain '|' or a newline: {fields}")
        return "|".join(fields)


def parse_line(line: str, where: str = "<line>", n_labels: int | None = None) -> FilelistEntry:
    """Parse one ``wavpath|speaker_id|text|emotion_id|lang_id`` line.

    Raises:
        FilelistError: wrong number of fields, a non-integer id, or (when ``n_labels`` is given) an
            emotion id outside ``range(n_labels)``. The message names ``where`` (``file:line``).
    """
    fields = line.rstrip("\r\n").split("|")
    if len(fields) != N_FIELDS:
        raise FilelistError(f"{where}: expected {N_FIELDS} '|'-separated fields "
                            f"(wavpath|speaker_id|text|emotion_id|lang_id), got {len(fields)}: {line.strip()!r}")
    wavpath, speaker, text, emotion, lang = fields
    try:
        emotion_id, lang_id = int(emotion), int(lang)
    except ValueError:
        raise FilelistError(f"{where}: emotion_id and lang_id must be integers, got {emotion!r} and {lang!r}") from None
    if n_labels is not None and not 0 <= emotion_id < n_labels:
        raise FilelistError(f"{where}: emotion id {emotion_id} is outside the label set 0..{n_labels - 1}")
    if not wavpath.strip():
        raise FilelistError(f"{where}: empty wavpath")
    return FilelistEntry(wavpath.strip(), speaker.strip(), text, emotion_id, lang_id)


def read_filelist(path: str | Path, labels: Sequence[str] | None = None, root: str | Path | None = None,
                  check_audio: bool = True) -> tuple[list[FilelistEntry], CorpusReport]:
    """Read a filelist; entries come back with absolute ``wavpath``.

    Blank lines and lines starting with ``#`` are ignored. A line whose audio file does not exist is a
    counted skip (reason ``missing_audio`` in the report) when ``check_audio`` is true.

    Args:
        path: the filelist (UTF-8 text).
        labels: the label names; when given, emotion ids are checked against ``range(len(labels))``.
        root: folder that relative wav paths are resolved against (default: the filelist's folder).
        check_audio: skip (and count) entries whose audio is missing.

    Returns:
        ``(entries, report)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        FilelistError: a malformed line or an emotion id outside the label set (with ``file:line``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"filelist {path} does not exist")
    base = Path(root) if root is not None else path.parent
    report = CorpusReport(corpus="filelist", root=str(path))
    entries = []
    n_labels = len(labels) if labels is not None else None
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        report.n_annotated += 1
        e = parse_line(line, f"{path}:{i}", n_labels)
        wav = Path(e.wavpath)
        wav = wav if wav.is_absolute() else base / wav
        if check_audio and not wav.is_file():
            report.skip("missing_audio", e.wavpath)
            continue
        entries.append(FilelistEntry(str(wav), e.speaker_id, e.text, e.emotion_id, e.lang_id))
    report.n_kept = len(entries)
    return entries, report


def write_filelist(path: str | Path, entries: Iterable[FilelistEntry]) -> Path:
    """Write entries as a filelist, atomically (UTF-8, one line each). Returns ``path``."""
    text = "".join(e.to_line() + "\n" for e in entries)
    return atomic_write_bytes(path, text.encode("utf-8"))


#: How :func:`prepare_filelists` makes k folds: ``auto`` is ``speaker`` when there are at least as many
#: speakers as folds, else ``stratified``.
FOLDS_BY = ("auto", "speaker", "stratified")


def prepare_filelists(corpus: str, root: str | Path, out_dir: str | Path, folds: int = 5, seed: int = 42,
                      loso: bool = True, labels: Sequence[str] | None = None, lang_id: int = 0,
                      folds_by: str = "auto", *, n_folds: int | None = None) -> dict:
    """Write a corpus's filelists for k-fold cross-validation and leave-one-speaker-out (LOSO).

    Writes, under ``out_dir``:

    * ``labels.json``: ``{"labels": [...]}``, emotion id = index;
    * ``kfold/fold{k}_train.txt`` and ``kfold/fold{k}_test.txt`` for ``k = 1 .. folds`` (stratified by
      emotion, :class:`cnnrnn.splits.StratifiedFolds`; speaker-disjoint with ``folds_by`` ``speaker``,
      :class:`cnnrnn.splits.SpeakerFolds`, see :data:`FOLDS_BY`);
    * ``loso/{speaker}_train.txt`` and ``loso/{speaker}_test.txt`` per speaker
      (:class:`cnnrnn.splits.LeaveOneSpeakerOut`; unless ``loso`` is false or there are fewer than two
      speakers);
    * ``prepare_report.json``: the label counts, the folds' sizes and speakers, and every skip.

    ``out_dir`` is claimed first (kind :data:`FILELISTS_KIND`: a new or empty folder, or filelists already; anything
    else is refused before the corpus is read) and written under its ``filelists`` lock. A rerun rewrites the
    lists; the fold or speaker lists an earlier run wrote (its report's ``files``) that this one does not are
    removed (listed in the report's ``removed_stale``); no other file is removed.

    Lines are ``wavpath|speaker_id|text|emotion_id|lang_id`` with absolute wav paths; a missing transcript is
    an empty text, and ``|`` or line breaks inside a transcript become spaces (counted in the report).

    Args:
        corpus: a reader name of :data:`cnnrnn.corpora.READERS` (``esd``, ``jtes``, ``emodb``, ...).
        root: the corpus folder, read with :func:`cnnrnn.corpora.load_corpus`.
        out_dir: output folder.
        folds: number of k-fold folds (``n_folds``, the old name, is still taken).
        seed: fold shuffling seed.
        loso: also write the LOSO filelists.
        labels: label names in id order; default: :func:`cnnrnn.corpora.label_order`, the corpus' declared
            order (:data:`cnnrnn.corpora.LABEL_ORDERS`, the original code's ids), else the sorted labels present.
            Utterances whose label is not in the list are skipped (``label_not_in_set``), so a subset such
            as ``["neutral", "happiness", "sadness", "anger"]`` selects four EmoDB classes.
        lang_id: language id written on every line (0 in the original single-language runs).
        folds_by: ``auto``, ``speaker`` or ``stratified``.

    Returns:
        The report written to ``prepare_report.json``.

    Raises:
        cnnrnn.corpora.CorpusError: the corpus cannot be read or has no usable utterance.
        ValueError: unknown ``folds_by``; speaker folds with fewer speakers than folds, or with a label
            that has fewer utterances than folds; fewer utterances than folds; no utterance left.
        cnnrnn.outputs.OutputFolderError: ``out_dir`` holds other files or is another command's (nothing written).
        cnnrnn.outputs.FolderInUseError: another process writes these filelists.
    """
    from ..outputs import claim_folder, writing_stage

    folds = folds if n_folds is None else n_folds
    if folds_by not in FOLDS_BY:
        raise ValueError(f"folds_by must be one of {FOLDS_BY}, got {folds_by!r}")
    out = claim_folder(out_dir, FILELISTS_KIND, recognise=is_filelists_folder)
    parts = [(out, [LABELS_FILE, REPORT_FILE]), (out / "kfold", None), (out / "loso", None)]
    with writing_stage(out, FILELISTS_STAGE, parts):
        return _prepare(corpus, root, out, folds, seed, loso, labels, lang_id, folds_by)


def _written_before(out: Path) -> set[Path]:
    """The fold and speaker lists the earlier run's report says it wrote (``files``: ``kfold/<name>_<part>``)."""
    from ..artifacts import load_json

    try:
        report = load_json(out / REPORT_FILE)
    except (OSError, ValueError):
        return set()
    files = report.get("files") if isinstance(report, dict) else None
    return {out / f"{key}.txt" for key in (files or {})
            if isinstance(key, str) and key.split("/")[0] in ("kfold", "loso") and "/" in key and ".." not in key}


def _prepare(corpus: str, root: str | Path, out: Path, folds: int, seed: int, loso: bool,
             labels: Sequence[str] | None, lang_id: int, folds_by: str) -> dict:
    earlier = _written_before(out)
    utterances, corpus_report = load_corpus(corpus, root)
    label_list = list(labels) if labels else label_order(corpus, {u.emotion for u in utterances if not u.is_tied})
    code = {lab: i for i, lab in enumerate(label_list)}
    skipped: dict[str, list[str]] = {}
    n_text_fixed = 0
    entries = []
    for u in utterances:
        reason = ("tied_label" if u.is_tied else "label_not_in_set" if u.emotion not in code
                  else "missing_audio" if not Path(u.audio_path).is_file() else None)
        if reason:
            skipped.setdefault(reason, []).append(u.id)
            continue
        text = u.text or ""
        clean = re.sub(r"\s*[|\r\n]+\s*", " ", text)
        n_text_fixed += clean != text
        entries.append(FilelistEntry(str(Path(u.audio_path).resolve()), u.speaker or "unknown", clean,
                                     code[u.emotion], lang_id))
    if not entries:
        raise ValueError(f"{corpus}: no utterance left for labels {label_list} (skipped: "
                         f"{ {k: len(v) for k, v in skipped.items()} })")

    speakers = [e.speaker_id for e in entries]
    n_speakers = len(set(speakers))
    by_speaker = folds_by == "speaker" or (folds_by == "auto" and n_speakers >= folds)
    counts: dict[str, int] = {lab: 0 for lab in label_list}
    for e in entries:
        counts[label_list[e.emotion_id]] += 1
    rare = {lab: n for lab, n in counts.items() if 0 < n < folds}
    if by_speaker and rare:
        raise ValueError(f"{corpus}: speaker-disjoint stratified folds need at least {folds} utterances per label; "
                         f"{rare} have fewer: use fewer folds or folds_by='stratified'")
    splitter = make_splitter("speaker" if by_speaker else "stratified", folds, seed)
    fold_pairs = splitter.split(len(entries), [e.emotion_id for e in entries], speakers if by_speaker else None)
    files = {"labels": str(save_json({"labels": label_list}, out / LABELS_FILE))}

    def write_pair(folder: str, name: str, train_idx, test_idx) -> dict:
        for part, idx in (("train", train_idx), ("test", test_idx)):
            files[f"{folder}/{name}_{part}"] = str(write_filelist(out / folder / f"{name}_{part}.txt",
                                                                  [entries[i] for i in idx]))
        return {"name": name, "n_train": len(train_idx), "n_test": len(test_idx),
                "test_speakers": sorted({speakers[i] for i in test_idx})}

    fold_info = [write_pair("kfold", f"fold{k}", tr, te) for k, (tr, te) in enumerate(fold_pairs, start=1)]
    do_loso = loso and n_speakers >= 2
    loso_info = []
    if do_loso:
        by_speaker_out = LeaveOneSpeakerOut()
        pairs = by_speaker_out.split(len(entries), None, speakers)
        loso_info = [write_pair("loso", spk, tr, te)
                     for spk, (tr, te) in zip(by_speaker_out.speakers(speakers), pairs)]
    written = {Path(f) for f in files.values()}
    # lists of an earlier run (more folds, other speakers) would be mistaken for this one's; only those it wrote go
    stale = [str(f) for f in sorted(earlier - written) if f.is_file()]
    for f in stale:
        Path(f).unlink()
    report = {
        "corpus": corpus_report.to_dict(), "labels": label_list, "label_counts": counts,
        "n_entries": len(entries), "n_speakers": n_speakers, "skipped": skipped,
        "n_skipped": sum(len(v) for v in skipped.values()), "n_text_fixed": int(n_text_fixed),
        "kfold": {"n_folds": folds, "seed": seed, "by_speaker": by_speaker, "folds": fold_info},
        "loso": loso_info, "loso_note": "left out: fewer than 2 speakers" if loso and not do_loso else None,
        "lang_id": lang_id, "files": files, "removed_stale": stale,
    }
    save_json(report, out / REPORT_FILE)
    return report
