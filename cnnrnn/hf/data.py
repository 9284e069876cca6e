"""Records, label targets, folds and model inputs for the Hugging Face models.

Input is either ``new_data.csv`` (written by ``cnnrnn kemdy-labels``: columns ``segment_id, session, speaker,
text, wav_path, emotion_raw, emotion_weighted, valence, arousal``) or a corpus read with
:func:`cnnrnn.corpora.load_corpus`. Both become :class:`HFRecord` rows.

Conventions from the original KEMDy code (``etri_multimodal``, ``-ETRI-Emotion-Recognition``):

* the 7 KEMDy emotions of :data:`cnnrnn.corpora.kemdy.KEMDY_LABELS`, in that code order (the corpus's
  ``disqust`` read as ``disgust``); a tied annotation ``a;b`` is a multi-label target, otherwise one label;
* valence / arousal on the raters' 1–5 scale (regression targets, not rescaled);
* 5 contiguous, non-overlapping 20 % folds (0–20 %, 20–40 %, …), or stratified or speaker-disjoint folds,
  all cut by the splitters of :mod:`cnnrnn.splits` (:func:`fold_split`);
* text: static padding to ``max_len`` tokens (256), truncating longer transcripts;
* speech: 16 kHz, at most 5 s (longer audio is cut), dynamic padding per batch with an attention mask.
  Audio shorter than the wav2vec2 receptive field (400 samples = 25 ms for wav2vec2-base) yields no output
  frame at all, so such clips are skipped and counted (``too_short``), never padded: a 25 ms clip carries
  no emotion, and padding it would only train the model on silence;
* Whisper speech (``model.speech_backbone`` ``whisper``): Whisper's log-mel of the clip cut and zero-padded to
  ``max_seconds`` (:func:`load_whisper_speech`), so every clip has the same number of frames; clips under 20 ms
  are skipped (``too_short``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..corpora import CorpusReport, load_corpus
from ..corpora.base import csv_records, read_csv, split_labels, to_float
from ..corpora.kemdy import CSV_ENCODINGS, canonical_label
from ..splits import make_splitter
from .config import DataConfig, TrainConfig

NEW_DATA_COLUMNS = ("segment_id", "session", "speaker", "text", "wav_path", "emotion_raw",
                    "emotion_weighted", "valence", "arousal")


class HFDataError(ValueError):
    """The input table or corpus cannot be used (missing columns, no input given)."""


@dataclass
class HFRecord:
    """One utterance as the HF models see it.

    Attributes:
        id: segment id. text: transcript (``None`` if absent). audio_path: absolute wav path.
        labels: KEMDy emotions (several for a tie; the first is the primary label).
        valence, arousal: 1–5 ratings or ``None``. speaker, session: for grouping.
    """

    id: str
    text: str | None
    audio_path: str
    labels: list[str] = field(default_factory=list)
    valence: float | None = None
    arousal: float | None = None
    speaker: str | None = None
    session: str | None = None


def canonical_labels(cell: str) -> list[str | None]:
    """``'Fear;disqust'`` → ``['fear', 'disgust']`` (order kept; ``None`` for a label outside
    :data:`~cnnrnn.corpora.kemdy.KEMDY_LABELS`)."""
    return [canonical_label(lab) for lab in split_labels(cell)]


def read_new_data(path: str | Path, label_column: str | None = None,
                  keep_unlabelled: bool = False) -> tuple[list[HFRecord], CorpusReport]:
    """Read ``new_data.csv`` (UTF-8, or cp949, or as its byte-order mark says) into records.

    Args:
        path: the CSV written by ``cnnrnn kemdy-labels``; a relative ``wav_path`` is taken relative to it.
        label_column: ``emotion_weighted`` (the rater-weighted vote) or ``emotion_raw`` (the corpus's vote);
            default :attr:`DataConfig.label_column`.
        keep_unlabelled: keep rows with an empty label cell (``labels == []``; for prediction of new data).

    Returns:
        ``(records, report)``; rows with an unknown label (and, unless ``keep_unlabelled``, an empty one)
        are skipped and counted.

    Raises:
        HFDataError: a required column is missing. FileNotFoundError: no such file.
        CorpusError: the file cannot be decoded or is not CSV (naming the file).
    """
    path = Path(path)
    label_column = label_column or DataConfig.label_column
    if not path.is_file():
        raise FileNotFoundError(f"{path}: input table not found (write it with `cnnrnn kemdy-labels`)")
    report = CorpusReport("new_data", str(path))
    header, lines = csv_records(read_csv(path, CSV_ENCODINGS, report))  # UTF-8, then cp949; names the file
    rows = [row for _, row in lines]
    needed = {"segment_id", "text", "wav_path", "valence", "arousal", label_column}
    missing = sorted(needed - set(header))
    if missing:
        raise HFDataError(f"{path}: missing column(s) {missing}; expected {list(NEW_DATA_COLUMNS)}")
    records = []
    for row in rows:
        report.n_annotated += 1
        seg_id = row["segment_id"].strip()
        labels = canonical_labels(row[label_column])
        if (not labels and not keep_unlabelled) or None in labels:
            report.skip("unknown_label" if labels else "no_label", seg_id)
            continue
        wav = Path(row["wav_path"])
        records.append(HFRecord(
            id=seg_id, text=row["text"] or None,
            audio_path=str(wav if wav.is_absolute() else (path.parent / wav).resolve()),
            labels=labels, valence=to_float(row["valence"]), arousal=to_float(row["arousal"]),
            speaker=row.get("speaker") or None, session=row.get("session") or None,
        ))
    report.n_kept = len(records)
    return records, report


def read_records(input_csv: str | Path | None = None, root: str | Path | None = None,
                 data: DataConfig | None = None, keep_unlabelled: bool = False) -> tuple[list[HFRecord], CorpusReport]:
    """Records from ``new_data.csv`` when ``input_csv`` is given, else from the corpus reader ``data.corpus``
    (``kemdy20`` or ``kemdy19``) at ``root``. ``data`` (default :class:`DataConfig`) also names the label column
    of ``new_data.csv``; ``keep_unlabelled`` see :func:`read_new_data`.

    Raises:
        HFDataError: neither an input table nor a corpus root was given.
        CorpusError: the corpus cannot be read (see :func:`cnnrnn.corpora.load_corpus`).
    """
    data = data or DataConfig()
    if input_csv is not None:
        return read_new_data(input_csv, data.label_column, keep_unlabelled)
    if root is None:
        raise HFDataError("give --input new_data.csv or a corpus folder (--root)")
    utts, report = load_corpus(data.corpus, root)
    records = [HFRecord(id=u.id, text=u.text, audio_path=u.audio_path,
                        labels=[canonical_label(lab) for lab in u.emotions or [u.emotion]],
                        valence=u.valence, arousal=u.arousal, speaker=u.speaker, session=u.session) for u in utts]
    return records, report


def split_spec(train: TrainConfig) -> dict[str, Any]:
    """The split a training config asks for, as the run manifest records it: ``{"scheme", "folds", "fold",
    "seed"}`` (:meth:`cnnrnn.splits.make_splitter`'s ``spec()`` plus the 0-based fold; ``seed`` is ``None``
    for the seedless contiguous folds)."""
    return {**make_splitter(train.fold_scheme, train.folds, train.seed).spec(), "fold": train.fold}


def fold_split(records: Sequence[HFRecord], split: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, test_idx)`` int arrays of fold ``split["fold"]`` over ``records`` in their order.

    Args:
        records: every record, in the order the folds are cut from (the input's order).
        split: ``{"scheme", "folds", "fold", "seed"}`` (:func:`split_spec`, or a run manifest's ``split``).
            ``contiguous``: the k-th of ``folds`` consecutive blocks (etri_multimodal's 0–20 %, 20–40 %, …);
            ``stratified``: stratified by each record's first label; ``speaker``: speaker-disjoint.

    Raises:
        SplitError: unknown scheme, a fold that does not exist, too few records or speakers.
    """
    splitter = make_splitter(split["scheme"], split.get("folds"), split.get("seed"))
    primary = [r.labels[0] if r.labels else "" for r in records]
    speakers = [r.speaker for r in records] if split["scheme"] == "speaker" else None
    return splitter.fold(int(split["fold"]), len(records), primary, speakers)


def label_targets(records: Sequence[HFRecord], labels: Sequence[str]) -> np.ndarray:
    """Multi-hot targets ``(N, len(labels)) float32``: 1 for every label of a record (ties give several)."""
    index = {lab: i for i, lab in enumerate(labels)}
    y = np.zeros((len(records), len(labels)), dtype=np.float32)
    for i, rec in enumerate(records):
        for lab in rec.labels:
            y[i, index[lab]] = 1.0
    return y


def va_targets(records: Sequence[HFRecord]) -> np.ndarray:
    """Valence and arousal ``(N, 2) float32`` on the 1–5 scale (records without them must be dropped first)."""
    return np.array([[r.valence, r.arousal] for r in records], dtype=np.float32)


def encode_texts(tokenizer, texts: Sequence[str], max_len: int) -> dict[str, np.ndarray]:
    """Tokenise with static padding: ``input_ids`` and ``attention_mask``, each ``(N, max_len) int32``.

    Longer transcripts are truncated to ``max_len`` tokens (never an error), as the original did.
    """
    enc = tokenizer(list(texts), padding="max_length", truncation=True, max_length=max_len, return_tensors="np")
    return {"input_ids": enc["input_ids"].astype(np.int32), "attention_mask": enc["attention_mask"].astype(np.int32)}


def receptive_field(config) -> int:
    """Samples that one wav2vec2 output frame sees: ``conv_kernel``/``conv_stride`` of the CNN feature encoder
    (400 for wav2vec2-base: 10 + 2·5 + 2·10 + 2·20 + 2·40 + 1·80 + 1·160). Shorter audio gives no frame."""
    field_, jump = 1, 1
    for kernel, stride in zip(config.conv_kernel, config.conv_stride):
        field_ += (kernel - 1) * jump
        jump *= stride
    return field_


def load_speech(path: str | Path, feature_extractor, min_samples: int, max_seconds: float) -> np.ndarray:
    """Load a clip as wav2vec2 input: mono, resampled to the feature extractor's rate, cut to ``max_seconds``,
    then normalised by the feature extractor (zero mean, unit variance when it has ``do_normalize``).

    Returns:
        ``(samples,) float32`` with ``min_samples <= samples <= sr * max_seconds``.

    Raises:
        AudioError: unreadable/empty/silent audio (:func:`cnnrnn.audio.load_audio`), or reason ``too_short``
            when the clip is shorter than ``min_samples`` (the receptive field).
    """
    from ..audio import AudioError, load_audio

    sr = int(feature_extractor.sampling_rate)
    y, _ = load_audio(path, sr)
    y = y[: int(round(sr * max_seconds))]
    if y.shape[0] < min_samples:
        raise AudioError(f"{path}: {y.shape[0]} samples is shorter than the wav2vec2 receptive field "
                         f"({min_samples} samples at {sr} Hz)", "too_short")
    return np.asarray(feature_extractor(y, sampling_rate=sr)["input_values"][0], dtype=np.float32)


def load_whisper_speech(path: str | Path, max_seconds: float, n_mels: int = 80) -> tuple[np.ndarray, int]:
    """Load a clip as Whisper encoder input: mono 16 kHz, cut to ``max_seconds``, zero-padded to ``max_seconds``
    (Whisper's own padding, there to 30 s) and turned into Whisper's log-mel
    (:func:`cnnrnn.whisper_features.whisper_log_mel`).

    Returns:
        ``(features, n_frames)``: ``(round(16000 · max_seconds) // 160, n_mels) float32`` log-mel frames (10 ms
        each, the same count for every clip) and how many of them hold the clip (the rest is padding).

    Raises:
        AudioError: unreadable/empty/silent audio (:func:`cnnrnn.audio.load_audio`), or reason ``too_short``
            when the clip is shorter than one Whisper frame pair (320 samples, 20 ms).
    """
    from ..audio import AudioError, load_audio
    from ..whisper_features import MIN_SAMPLES, SR, whisper_frames, whisper_log_mel

    y, _ = load_audio(path, SR)
    y = y[: int(round(SR * max_seconds))]
    if y.shape[0] < MIN_SAMPLES:
        raise AudioError(f"{path}: {y.shape[0]} samples is shorter than one Whisper frame pair ({MIN_SAMPLES} "
                         f"samples at {SR} Hz)", "too_short")
    features = whisper_log_mel(y, n_mels=n_mels, pad_to_seconds=max_seconds)
    return features, whisper_frames(y.shape[0])
