"""DCNN-BLSTMwA in two steps (Zhang et al., Frontiers in Physiology 2021; the DCNN-BLSTMWA code):

* step 1, :func:`finetune`: the DCNN (:mod:`cnnrnn.models.dcnn`) classifies log-mel segments
  (:mod:`cnnrnn.segments`), each carrying its utterance's label. Adam 1e-4, batch 128, 30 epochs,
  learning rate ``lr × 0.695^epoch``. Writes ``<log_root>/<name>/``: ``dcnn.h5``, ``dcnn.json``
  (labels + feature config), ``log_finetune.out``, ``history_finetune.csv``, ``metrics_finetune.json``
  and ``confusion_finetune_segments.png`` / ``confusion_finetune_utterances.png`` (utterance = mean of
  its segments' probabilities).
* step 2, :func:`train`: the fine-tuned DCNN's penultimate-layer features of every segment, in utterance
  order and padded to the longest utterance, train the BiLSTM-attention model
  (:mod:`cnnrnn.models.blstm_attention`). Adam 5e-6, batch 16, 30 epochs, decay 0.59 per epoch. Writes
  ``blstm_attention.h5``, ``blstm_attention.json`` (what :func:`infer` needs: DCNN path, labels, feature
  config), ``log_train.out``, ``history_train.csv``, ``metrics_train.json``, ``confusion_train.png``.
* :func:`infer`: wav files → per-file predictions (CSV).

Configs are JSON files with the sections ``data``, ``model`` and ``train`` (shipped ones in
``cnnrnn/configs/dcnn/``, e.g. ``emodb_finetune``); relative paths in them are relative to the working
directory, like the original scripts. Unusable audio (missing, unreadable, silent, shorter than one
segment) is skipped, counted and reported; an emotion id outside the label set is an error. A rerun
retrains and overwrites the run's files (logs are appended to).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import typing
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .artifacts import atomic_write_bytes, load_json, save_json, save_model_h5
from .audio import AudioError
from .evaluation import classification_metrics
from .filelists import FilelistError, read_filelist
from .segments import FeatureConfig, audio_segments

log = logging.getLogger("cnnrnn.dcnn")
CONFIG_DIR = Path(__file__).resolve().parent / "configs" / "dcnn"
DCNN_FILE, DCNN_META = "dcnn.h5", "dcnn.json"
MODEL_FILE, MODEL_META = "blstm_attention.h5", "blstm_attention.json"
FEATURE_KEYS = tuple(f.name for f in dataclasses.fields(FeatureConfig))


class DcnnConfigError(ValueError):
    """A DCNN config is unknown, malformed, or has unknown keys or values of the wrong type."""


@dataclass
class DataSection(FeatureConfig):
    """``data``: the feature settings of :class:`~cnnrnn.segments.FeatureConfig` plus the inputs.

    Attributes:
        filelist_train, filelist_test: filelists (``wavpath|speaker_id|text|emotion_id|lang_id``).
        labels_file: ``labels.json`` (a list, or ``{"labels": [...]}``); default: a ``labels.json`` in the
            train filelist's folder or the one above it (where ``cnnrnn filelists`` writes it).
        root: folder relative wav paths are resolved against (default: each filelist's folder).
    """

    filelist_train: str = ""
    filelist_test: str = ""
    labels_file: str | None = None
    root: str | None = None

    def features(self) -> FeatureConfig:
        """The feature settings alone."""
        return FeatureConfig(**{k: getattr(self, k) for k in FEATURE_KEYS}).validate()


@dataclass
class ModelSection:
    """``model``: the DCNN (step 1) and BiLSTM-attention (step 2) settings (paper values by default)."""

    backbone: str = "alexnet"
    weights: str = "none"
    width: float = 1.0
    fc_units: int = 4096
    dropout: float = 0.5
    lstm_units: int = 128
    lstm_layers: int = 1
    attention_units: int = 256
    dense1_units: int = 512
    dense2_units: int = 256
    head_dropout: float = 0.1


@dataclass
class TrainSection:
    """``train``: one step's optimisation (step 1: lr 1e-4, batch 128, decay 0.695; step 2: 5e-6, 16, 0.59).

    Attributes:
        name: run name; outputs go to ``<log_root>/<name>/``.
        log_root: output root (``logs``).
        lr, lr_decay: Adam learning rate, multiplied by ``lr_decay ** epoch`` each epoch.
        finetune_name: step 2 only: the step-1 run whose ``dcnn.h5`` gives the features.
    """

    name: str = "dcnn"
    log_root: str = "logs"
    lr: float = 1e-4
    lr_decay: float = 0.695
    batch_size: int = 128
    epochs: int = 30
    seed: int = 0
    finetune_name: str | None = None


@dataclass
class DcnnConfig:
    """A DCNN-BLSTMwA config: ``{"data": {...}, "model": {...}, "train": {...}}``."""

    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)

    @property
    def run_dir(self) -> Path:
        """``<log_root>/<name>``."""
        return Path(self.train.log_root) / self.train.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS = {"data": DataSection, "model": ModelSection, "train": TrainSection}


def nullable_keys() -> set[tuple[str, str]]:
    """``(section, key)`` pairs that a DCNN config may set to ``null``, from the section dataclasses'
    ``X | None`` annotations (``("data", "max_sec")``: keep each clip's length, ``("data", "fmax")``: sr/2,
    ``("data", "labels_file")``, ``("data", "root")``, ``("train", "finetune_name")``)."""
    return {(name, key) for name, cls in SECTIONS.items() for key, hint in typing.get_type_hints(cls).items()
            if type(None) in typing.get_args(hint)}


def _section(cls, values: Any, name: str):
    if not isinstance(values, dict):
        raise DcnnConfigError(f"config section {name!r} must be a JSON object")
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise DcnnConfigError(f"unknown key(s) {sorted(unknown)} in section {name!r}; known: {sorted(hints)}")
    for key, value in values.items():
        types_ = typing.get_args(hints[key]) or (hints[key],)
        allowed = tuple(t for t in types_ if t is not type(None)) + ((int,) if float in types_ else ())
        ok = (value is None and type(None) in types_) or (
            isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool)))
        if not ok:
            raise DcnnConfigError(f"{name}.{key} should be {hints[key]}, got {value!r}")
    return cls(**values)


def load_dcnn_config(source: str | Path | dict) -> DcnnConfig:
    """Load a DCNN config: a shipped name (``emodb_finetune``, see :func:`list_dcnn_configs`), a JSON path
    or a dict.

    Raises:
        DcnnConfigError: unknown name/file, invalid JSON, unknown sections or keys, wrong value types.
    """
    if isinstance(source, dict):
        data = source
    else:
        path = Path(source)
        if not path.is_file() and (CONFIG_DIR / f"{source}.json").is_file():
            path = CONFIG_DIR / f"{source}.json"
        if not path.is_file():
            raise DcnnConfigError(f"DCNN config {str(source)!r} is neither a file nor a shipped config "
                                  f"({', '.join(list_dcnn_configs())})")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise DcnnConfigError(f"{path}: invalid JSON: {exc}") from exc
    if not isinstance(data, dict) or set(data) - set(SECTIONS):
        raise DcnnConfigError(f"a DCNN config is an object with the sections data, model, train; got "
                              f"{sorted(data) if isinstance(data, dict) else type(data).__name__}")
    cfg = DcnnConfig(**{name: _section(cls, data.get(name, {}), name) for name, cls in SECTIONS.items()})
    try:
        cfg.data.features()
    except ValueError as exc:
        raise DcnnConfigError(str(exc)) from exc
    return cfg


def list_dcnn_configs() -> list[str]:
    """Names of the configs shipped in ``cnnrnn/configs/dcnn``."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.json"))


# ---------------------------------------------------------------------------------------------- data
@dataclass
class SegmentSet:
    """Segments of the usable utterances of a filelist, in filelist order.

    Attributes:
        paths: wav paths ``(N,)``; labels: ``(N,) int``; segments: N arrays
            ``(n_segments_i, n_mels, segment_frames, 3) float32``; skipped: ``{reason: [path, ...]}``.
    """

    paths: list[str]
    labels: np.ndarray
    segments: list[np.ndarray]
    skipped: dict[str, list[str]]

    @property
    def counts(self) -> np.ndarray:
        """Segments per utterance ``(N,) int``."""
        return np.array([len(s) for s in self.segments], dtype=int)

    def subset(self, indices: Sequence[int]) -> "SegmentSet":
        """The utterances at ``indices`` (e.g. a fold of a whole-corpus set), with no skips."""
        return SegmentSet([self.paths[i] for i in indices], self.labels[np.asarray(indices, dtype=int)],
                          [self.segments[i] for i in indices], {})


def resolve_labels(cfg: DcnnConfig) -> list[str]:
    """Label names of ``cfg.data.labels_file`` (or the ``labels.json`` found beside the train filelist).

    Raises:
        FileNotFoundError: no labels file.
    """
    from .inference import load_labels

    if cfg.data.labels_file:
        return load_labels(cfg.data.labels_file)
    folder = Path(cfg.data.filelist_train).parent
    for candidate in (folder / "labels.json", folder.parent / "labels.json"):
        if candidate.is_file():
            return load_labels(candidate)
    raise FileNotFoundError(f"no labels_file in the config and no labels.json beside {cfg.data.filelist_train}")


def load_segments(filelist: str | Path, labels: Sequence[str], features: FeatureConfig, root: str | None = None,
                  progress: bool = True) -> SegmentSet:
    """Read a filelist and compute every utterance's segments (:func:`cnnrnn.segments.audio_segments`).

    Missing wavs and unusable audio (unreadable, silent, shorter than one segment) are skipped and counted.

    Raises:
        FileNotFoundError: no filelist.
        FilelistError: a malformed line or an emotion id outside ``labels``.
        ValueError: no usable utterance.
    """
    from tqdm import tqdm

    if not str(filelist):
        raise DcnnConfigError("no filelist given: set data.filelist_train / data.filelist_test in the config "
                              "or pass --filelist-train / --filelist-test")
    entries, report = read_filelist(filelist, labels, root=root)
    skipped = {reason: list(ids) for reason, ids in report.skipped.items()}
    paths, ys, segs = [], [], []
    for e in tqdm(entries, desc=f"segments {Path(filelist).name}", unit="file", disable=not progress):
        try:
            segs.append(audio_segments(e.wavpath, features))
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(e.wavpath)
            continue
        paths.append(e.wavpath)
        ys.append(e.emotion_id)
    if skipped:
        log.warning("%s: skipped %s", filelist, {k: len(v) for k, v in skipped.items()})
    if not segs:
        raise ValueError(f"{filelist}: no usable utterance (skipped: {skipped})")
    return SegmentSet(paths, np.array(ys, dtype=int), segs, skipped)


def merged_skips(sets) -> dict[str, list[str]]:
    """The skips of several :class:`SegmentSet` together: ``{reason: [path, ...]}``."""
    out: dict[str, list[str]] = {}
    for s in sets:
        for reason, paths in s.skipped.items():
            out.setdefault(reason, []).extend(paths)
    return out


def segment_dataset(segments: np.ndarray, labels: np.ndarray | None, image_size, batch_size: int,
                    shuffle: bool = False, seed: int = 0):
    """``tf.data`` over ``(N, n_mels, frames, 3) float32`` segments, resized and ImageNet-normalised per batch.

    Returns:
        batches of ``(batch, H, W, 3) float32`` (with ``(batch,) int32`` labels unless ``labels`` is None).
    """
    import tensorflow as tf

    from .segments import to_backbone_input

    ds = tf.data.Dataset.from_tensor_slices(np.arange(len(segments)))
    if shuffle:
        ds = ds.shuffle(len(segments), seed=seed, reshuffle_each_iteration=True)
    shape = (None,) + segments.shape[1:]
    y_all = None if labels is None else np.asarray(labels, np.int32)

    def gather(idx):
        x = tf.ensure_shape(tf.numpy_function(lambda i: segments[i], [idx], tf.float32), shape)
        x = to_backbone_input(x, image_size)
        if y_all is None:
            return x
        return x, tf.ensure_shape(tf.numpy_function(lambda i: y_all[i], [idx], tf.int32), (None,))

    return ds.batch(batch_size).map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def utterance_features(extractor, segments: Sequence[np.ndarray], image_size, batch_size: int = 64) -> np.ndarray:
    """DCNN penultimate features of every utterance, padded to the longest one.

    Args:
        extractor: :func:`cnnrnn.models.dcnn.feature_extractor` of the fine-tuned DCNN.
        segments: per utterance ``(n_segments_i, n_mels, frames, 3) float32``.

    Returns:
        ``(N, max_i n_segments_i, feat_dim) float32``, padded with
        :data:`cnnrnn.models.blstm_attention.PAD_VALUE` (-1) after each utterance's last segment.
    """
    from .models.blstm_attention import PAD_VALUE

    counts = [len(s) for s in segments]
    flat = np.concatenate(segments).astype(np.float32)
    feats = extractor.predict(segment_dataset(flat, None, image_size, batch_size), verbose=0)
    out = np.full((len(segments), max(counts), feats.shape[1]), PAD_VALUE, np.float32)
    for i, (start, n) in enumerate(zip(np.cumsum([0] + counts[:-1]), counts)):
        out[i, :n] = feats[start:start + n]
    return out


# ----------------------------------------------------------------------------------------- training
@contextmanager
def _run_log(path: Path):
    """Yield ``say(msg, *args)``: logs to ``path`` (appended) and to the ``cnnrnn.dcnn`` logger."""
    file_log = logging.getLogger(f"cnnrnn.dcnn.file.{path}")
    file_log.propagate = False
    file_log.setLevel(logging.INFO)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    file_log.addHandler(handler)

    def say(msg: str, *args) -> None:
        file_log.info(msg, *args)
        log.info(msg, *args)

    try:
        yield say
    finally:
        file_log.removeHandler(handler)
        handler.close()


def _callbacks(cfg: DcnnConfig, history_csv: Path, say):
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            values = " ".join(f"{k} {v:.4f}" for k, v in (logs or {}).items() if k != "learning_rate")
            say("epoch %d/%d lr %.3g %s", epoch + 1, cfg.train.epochs, float(self.model.optimizer.learning_rate),
                values)

    lr, decay = cfg.train.lr, cfg.train.lr_decay
    return [keras.callbacks.LearningRateScheduler(lambda epoch: lr * decay ** epoch),
            keras.callbacks.CSVLogger(str(history_csv)), EpochLog()]


def _compile(model, lr: float):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])



def _report(run_dir: Path, step: str, labels: Sequence[str], results: dict[str, tuple], say) -> dict:
    """Metrics + confusion PNG per ``{level: (y_true, y_pred)}``; writes ``metrics_<step>.json``."""
    from .plots import plot_confusion_matrix

    out = {}
    for level, (y_true, y_pred) in results.items():
        m = classification_metrics(y_true, y_pred, len(labels))
        png = run_dir / (f"confusion_{step}_{level}.png" if len(results) > 1 else f"confusion_{step}.png")
        plot_confusion_matrix(m["confusion_matrix"], labels, png, title=f"{run_dir.name} {step} ({level})")
        say("%s %s: UA %.4f WA %.4f F1-macro %.4f (n %d)", step, level, m["ua"], m["wa"], m["f1_macro"], m["n"])
        out[level] = {**m, "confusion_png": str(png)}
    save_json(out, run_dir / f"metrics_{step}.json")
    return out


def _seed(seed: int) -> None:
    import keras

    keras.utils.set_random_seed(seed)


def finetune(cfg: DcnnConfig, progress: bool = True, verbose: int = 2,
             sets: dict[str, SegmentSet] | None = None) -> dict:
    """Step 1: fine-tune the DCNN on segments; see the module docstring for the files written.

    Args:
        sets: ``{'train': SegmentSet, 'test': SegmentSet}`` already computed (benchmarks reuse one
            corpus-wide set across folds); default: :func:`load_segments` of the config's filelists.

    Returns:
        ``{'run_dir', 'checkpoint', 'metrics': {'segments': {...}, 'utterances': {...}}, 'skipped',
        'n_segments'}``.

    Raises:
        FileNotFoundError, FilelistError, DcnnConfigError, WeightsError: bad inputs (see the helpers).
    """
    from .models.dcnn import build_dcnn

    run_dir = cfg.run_dir
    features = cfg.data.features()
    labels = resolve_labels(cfg)
    with _run_log(run_dir / "log_finetune.out") as say:
        say("step 1 (fine-tune DCNN) %s: config %s", cfg.train.name, json.dumps(cfg.to_dict()))
        sets = sets or _load_sets(cfg, labels, features, progress)
        train, test = sets["train"], sets["test"]
        x_train, y_train = np.concatenate(train.segments), np.repeat(train.labels, train.counts)
        x_test, y_test = np.concatenate(test.segments), np.repeat(test.labels, test.counts)
        skipped = merged_skips(sets.values())
        say("train %d utterances / %d segments, test %d / %d, skipped %s", len(train.paths), len(x_train),
            len(test.paths), len(x_test), {k: len(v) for k, v in skipped.items()})
        _seed(cfg.train.seed)
        m = cfg.model
        model = build_dcnn((*features.image_size, 3), len(labels), m.backbone, m.weights, m.width, m.fc_units,
                           m.dropout)
        _compile(model, cfg.train.lr)
        size, bs = features.image_size, cfg.train.batch_size
        model.fit(segment_dataset(x_train, y_train, size, bs, shuffle=True, seed=cfg.train.seed),
                  validation_data=segment_dataset(x_test, y_test, size, bs), epochs=cfg.train.epochs, shuffle=False,
                  callbacks=_callbacks(cfg, run_dir / "history_finetune.csv", say), verbose=verbose)
        checkpoint = save_model_h5(model, run_dir / DCNN_FILE)
        save_json({"labels": labels, "features": dataclasses.asdict(features), "config": cfg.to_dict()},
                  run_dir / DCNN_META)
        proba = model.predict(segment_dataset(x_test, None, size, bs), verbose=0)
        starts = np.cumsum([0] + list(test.counts[:-1]))
        utt_proba = np.add.reduceat(proba, starts, axis=0) / test.counts[:, None]
        metrics = _report(run_dir, "finetune", labels, {"segments": (y_test, proba.argmax(1)),
                                                        "utterances": (test.labels, utt_proba.argmax(1))}, say)
        say("saved %s", checkpoint)
    return {"run_dir": str(run_dir), "checkpoint": str(checkpoint), "metrics": metrics,
            "skipped": skipped, "n_segments": {"train": len(x_train), "test": len(x_test)}}


def _load_sets(cfg: DcnnConfig, labels: Sequence[str], features: FeatureConfig, progress: bool) -> dict:
    return {split: load_segments(getattr(cfg.data, f"filelist_{split}"), labels, features, cfg.data.root, progress)
            for split in ("train", "test")}


def _dcnn_meta(dcnn_path: Path) -> dict:
    meta_path = dcnn_path.with_name(DCNN_META)
    if not meta_path.is_file():
        raise FileNotFoundError(f"{meta_path} not found: the fine-tuned DCNN's labels and feature config "
                                f"(written by `cnnrnn dcnn finetune` beside {dcnn_path.name})")
    return load_json(meta_path)


def dcnn_checkpoint(cfg: DcnnConfig) -> Path:
    """The step-1 checkpoint step 2 uses: ``<log_root>/<finetune_name>/dcnn.h5``.

    Raises:
        DcnnConfigError: ``train.finetune_name`` is not set.
    """
    if not cfg.train.finetune_name:
        raise DcnnConfigError("train.finetune_name is not set: name the step-1 run (or pass --dcnn)")
    return Path(cfg.train.log_root) / cfg.train.finetune_name / DCNN_FILE


def train(cfg: DcnnConfig, dcnn_path: str | Path | None = None, progress: bool = True, verbose: int = 2,
          sets: dict[str, SegmentSet] | None = None) -> dict:
    """Step 2: BiLSTM-attention on the fine-tuned DCNN's segment features; see the module docstring.

    Args:
        dcnn_path: the step-1 ``dcnn.h5`` (default :func:`dcnn_checkpoint`); its ``dcnn.json`` gives the
            labels and the feature config, which must match ``cfg.data``.
        sets: precomputed segments, as for :func:`finetune`.

    Returns:
        ``{'run_dir', 'checkpoint', 'metrics': {'utterances': {...}}, 'skipped', 'max_segments'}``.

    Raises:
        DcnnConfigError: the feature settings differ from the DCNN's.
        FileNotFoundError, FilelistError, CheckpointError: bad inputs.
    """
    from .inference import load_model
    from .models.blstm_attention import build_blstm_attention
    from .models.dcnn import feature_extractor

    dcnn_path = Path(dcnn_path) if dcnn_path else dcnn_checkpoint(cfg)
    meta = _dcnn_meta(dcnn_path)
    features, labels = FeatureConfig(**meta["features"]), meta["labels"]
    differ = {k: (getattr(cfg.data, k), v) for k, v in meta["features"].items() if getattr(cfg.data, k) != v}
    if differ:
        raise DcnnConfigError(f"feature settings differ from the fine-tuned DCNN {dcnn_path} "
                              f"(key: (this config, DCNN)): {differ}")
    run_dir = cfg.run_dir
    with _run_log(run_dir / "log_train.out") as say:
        say("step 2 (BLSTM + attention) %s on %s: config %s", cfg.train.name, dcnn_path, json.dumps(cfg.to_dict()))
        extractor = feature_extractor(load_model(dcnn_path))
        sets = sets or _load_sets(cfg, labels, features, progress)
        x = {split: utterance_features(extractor, s.segments, features.image_size) for split, s in sets.items()}
        skipped = merged_skips(sets.values())
        say("features: train %s, test %s (utterances, max segments, dim); skipped %s", x["train"].shape,
            x["test"].shape, {k: len(v) for k, v in skipped.items()})
        _seed(cfg.train.seed)
        m = cfg.model
        model = build_blstm_attention(x["train"].shape[2], len(labels), m.lstm_units, m.lstm_layers,
                                      m.attention_units, m.dense1_units, m.dense2_units, m.head_dropout)
        _compile(model, cfg.train.lr)
        model.fit(x["train"], sets["train"].labels, batch_size=cfg.train.batch_size, epochs=cfg.train.epochs,
                  validation_data=(x["test"], sets["test"].labels), shuffle=True,
                  callbacks=_callbacks(cfg, run_dir / "history_train.csv", say), verbose=verbose)
        checkpoint = save_model_h5(model, run_dir / MODEL_FILE)
        save_json({"labels": labels, "features": meta["features"],
                   "dcnn_checkpoint": os.path.relpath(dcnn_path.resolve(), run_dir.resolve()),
                   "config": cfg.to_dict()}, run_dir / MODEL_META)
        pred = model.predict(x["test"], batch_size=cfg.train.batch_size, verbose=0).argmax(1)
        metrics = _report(run_dir, "train", labels, {"utterances": (sets["test"].labels, pred)}, say)
        say("saved %s", checkpoint)
    return {"run_dir": str(run_dir), "checkpoint": str(checkpoint), "metrics": metrics,
            "skipped": skipped,
            "max_segments": int(max(v.shape[1] for v in x.values()))}


def infer(model_h5: str | Path, wavs: Sequence[str | Path], dcnn_h5: str | Path | None = None,
          out_csv: str | Path | None = None, progress: bool = True):
    """Predict the emotion of wav files with a step-2 model.

    Args:
        model_h5: ``blstm_attention.h5``; its ``blstm_attention.json`` names the DCNN, labels and features.
        wavs: audio files.
        dcnn_h5: the fine-tuned DCNN (default: the one recorded in the JSON, relative to it).
        out_csv: where to write the predictions (default ``predictions.csv`` beside the model).

    Returns:
        ``(DataFrame, skipped)``: one row per usable file (``path``, ``predicted``, ``confidence``,
        ``n_segments`` and one probability column per label); ``skipped`` ``{reason: [path, ...]}``.

    Raises:
        FileNotFoundError: model, its JSON or the DCNN missing. ValueError: no usable wav.
    """
    import pandas as pd
    from tqdm import tqdm

    from .inference import CheckpointError, load_model
    from .models.dcnn import feature_extractor

    model_h5 = Path(model_h5)
    meta_path = model_h5.with_name(MODEL_META)
    if not model_h5.is_file() or not meta_path.is_file():
        raise FileNotFoundError(f"need {model_h5} and {meta_path} (written by `cnnrnn dcnn train`)")
    meta = load_json(meta_path)
    dcnn_h5 = Path(dcnn_h5) if dcnn_h5 else (meta_path.parent / meta["dcnn_checkpoint"])
    labels, features = meta["labels"], FeatureConfig(**meta["features"])
    model = load_model(model_h5)
    if int(model.output_shape[-1]) != len(labels):
        raise CheckpointError(f"{model_h5} predicts {model.output_shape[-1]} classes, {meta_path} lists {labels}")
    extractor = feature_extractor(load_model(dcnn_h5))
    paths, segs, skipped = [], [], {}
    for wav in tqdm(wavs, desc="segments", unit="file", disable=not progress or len(wavs) < 2):
        try:
            segs.append(audio_segments(wav, features))
            paths.append(str(wav))
        except AudioError as exc:
            skipped.setdefault(exc.reason, []).append(str(wav))
            log.warning("skipped %s", exc)
    if not segs:
        raise ValueError(f"no usable audio among {len(wavs)} file(s) (skipped: {skipped})")
    proba = model.predict(utterance_features(extractor, segs, features.image_size), verbose=0)
    df = pd.DataFrame({"path": paths, "predicted": [labels[i] for i in proba.argmax(1)],
                       "confidence": proba.max(1), "n_segments": [len(s) for s in segs]})
    for i, name in enumerate(labels):
        df[f"p_{name}"] = proba[:, i]
    out_csv = Path(out_csv) if out_csv else model_h5.with_name("predictions.csv")
    atomic_write_bytes(out_csv, df.to_csv(index=False).encode("utf-8"))
    return df, skipped


__all__ = ["DcnnConfig", "DcnnConfigError", "FilelistError", "load_dcnn_config", "list_dcnn_configs",
           "load_segments", "merged_skips", "segment_dataset", "utterance_features", "finetune", "train", "infer",
           "dcnn_checkpoint", "resolve_labels"]
