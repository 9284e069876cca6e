"""The CNNRNN main job as stages that talk through files in one output folder.

====================  ============================================  ==========================================
stage                 reads                                         writes
====================  ============================================  ==========================================
:func:`split`         the corpus                                    train.json, test.json, train_audio.json,
                                                                    test_audio.json, labels.json, split_report.json
:func:`spectrograms`  \\*_audio.json, labels.json                    spectrograms/<id>.png, data_train.pickle,
                                                                    data_test.pickle, spectrogram_report.json
:func:`pack`          data_\\*.pickle, the PNGs                       train_final.pickle, test_final.pickle
:func:`train`         train_final.pickle, labels.json               models/\\*.h5, history/, logs/, folds/,
                                                                    cv_report.json
:func:`test`          test_final.pickle, models/\\*.h5               test/predictions.csv, test/metrics.json,
                                                                    test/confusion_matrix.png
====================  ============================================  ==========================================

Each stage also writes the pipeline config it ran with to ``config.json``, so
a later stage (or ``cnnrnn predict``) renders audio the same way. Reruns
resume: existing PNGs and finished folds are kept, and ``pack`` is skipped when
its pickles are newer than their inputs.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import artifacts as A
from .config import PipelineConfig, load_config

log = logging.getLogger("cnnrnn.pipeline")

SAMPLE_DIR = Path(__file__).parent / "sample" / "kemdy20"


def _record_config(out: Path, cfg: PipelineConfig) -> None:
    cfg.save(out / A.CONFIG_FILE)


def _labels(out: Path) -> list[str]:
    from .inference import load_labels

    return load_labels(out / A.LABELS_FILE)


def split(corpus: str, root: str | Path, out: str | Path, config=None) -> dict[str, Any]:
    """Stage 1: read the corpus and write the per-session 8:2 split.

    Writes ``train.json`` / ``test.json`` (``{session: [Utterance dict, ...]}``),
    ``train_audio.json`` / ``test_audio.json`` (flat records ``{id, audio_path,
    emotion, label, speaker, session, text}``; ``label`` is the int code),
    ``labels.json`` (``{"labels": [...]}``, code = index) and
    ``split_report.json`` (counts, ties, skipped files).

    Raises:
        CorpusError: the corpus cannot be read or has no usable utterance.
    """
    from .corpora import load_corpus
    from .splits import split_per_session

    cfg, out = load_config(config), Path(out)
    utterances, corpus_report = load_corpus(corpus, root)
    result = split_per_session(utterances, cfg.split.test_size, cfg.split.seed, cfg.split.keep_ties,
                               cfg.split.labels)
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
    _record_config(out, cfg)
    log.info("split: %s; %d train / %d test; %d tie(s) %s", corpus_report.summary(), result.report["n_train"],
             result.report["n_test"], result.report["n_ties"], result.report["ties"])
    return report


def spectrograms(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 2: render ``spectrograms/<id>.png`` and write ``data_train.pickle`` / ``data_test.pickle``.

    The data pickles are dicts of lists ``{'id', 'path', 'emotion', 'speaker',
    'session'}``: ``path`` is the PNG path, ``emotion`` the int code from
    ``labels.json``. Files whose audio is bad are skipped, counted in
    ``spectrogram_report.json`` and left out of the pickles. If the
    spectrogram config changed since the PNGs were made, they are re-rendered.
    """
    from .features import extract_spectrograms

    cfg, out = load_config(config), Path(out)
    png_dir = out / A.SPECTROGRAM_DIR
    stamp = png_dir / "spectrogram_config.json"
    spec = cfg.spectrogram.__dict__ | {"workers": None}
    overwrite = stamp.is_file() and A.load_json(stamp) != spec
    if overwrite:
        log.warning("spectrogram config changed since the PNGs in %s were made: re-rendering all", png_dir)
    records = {part: A.load_json(out / A.AUDIO_FILES[part]) for part in ("train", "test")}
    all_items = [(r["id"], r["audio_path"]) for part in records.values() for r in part]
    report = extract_spectrograms(all_items, png_dir, cfg.spectrogram, overwrite=overwrite, progress=progress)
    A.save_json(spec, stamp)
    ok = report.ok
    summary: dict[str, Any] = {"spectrograms": report.to_dict(), "png_dir": str(png_dir)}
    for part, recs in records.items():
        kept = [r for r in recs if r["id"] in ok]
        table = {
            "id": [r["id"] for r in kept],
            "path": [str((png_dir / f"{r['id']}.png").resolve()) for r in kept],
            "emotion": [int(r["label"]) for r in kept],
            "speaker": [r.get("speaker") for r in kept],
            "session": [r.get("session") for r in kept],
        }
        A.save_pickle(table, out / A.DATA_FILES[part])
        summary[part] = {"n": len(kept), "skipped": len(recs) - len(kept)}
    A.save_json(summary, out / "spectrogram_report.json")
    _record_config(out, cfg)
    return summary


def pack(out: str | Path, config=None, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Stage 3: read every PNG back into ``train_final.pickle`` / ``test_final.pickle``.

    Same keys as the data pickles; ``path`` holds one ``(N, H, W, 3) uint8``
    array (BGR, as ``cv2.imread`` gives). Skipped when the final pickle is
    newer than its data pickle, unless ``force``.
    """
    from .features import load_images

    cfg, out = load_config(config), Path(out)
    summary = {}
    for part in ("train", "test"):
        src, dst = out / A.DATA_FILES[part], out / A.FINAL_FILES[part]
        if not force and dst.is_file() and dst.stat().st_mtime >= src.stat().st_mtime:
            summary[part] = {"skipped": "up to date", "file": str(dst)}
            continue
        table = A.load_pickle(src)
        images = load_images([Path(p) for p in table["path"]], cfg.spectrogram.image_size, progress=progress)
        A.save_pickle({**table, "path": images}, dst)
        summary[part] = {"n": int(len(images)), "shape": list(images.shape), "file": str(dst)}
    return summary


def train(out: str | Path, config=None, verbose: int | str = "auto") -> dict[str, Any]:
    """Stage 4–5: k-fold CV on ``train_final.pickle``; ``.h5`` checkpoints per fold (see :mod:`cnnrnn.training`)."""
    from .training import cross_validate

    cfg, out = load_config(config), Path(out)
    table = A.load_image_table(out / A.FINAL_FILES["train"])
    labels = _labels(out)
    _record_config(out, cfg)
    return cross_validate(table["path"], np.asarray(table["emotion"]), labels, out, cfg.train,
                          groups=table.get("speaker"), verbose=verbose)


def test(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 6: predict ``test_final.pickle`` with the average of the fold checkpoints.

    Writes ``test/predictions.csv``, ``test/metrics.json`` and ``test/confusion_matrix.png``.
    """
    from .inference import predict
    from .training import checkpoint_path

    cfg, out = load_config(config), Path(out)
    models = [checkpoint_path(out, cfg.train, k) for k in range(1, cfg.train.folds + 1)]
    missing = [str(m) for m in models if not m.is_file()]
    if missing:
        raise FileNotFoundError(f"checkpoints missing (run the train stage first): {missing}")
    return predict(models, out / A.FINAL_FILES["test"], out / "test", labels=out / A.LABELS_FILE,
                   config=out / A.CONFIG_FILE, batch_size=cfg.train.batch_size, progress=progress)


def run(corpus: str, root: str | Path, out: str | Path, config=None, progress: bool = True,
        verbose: int | str = "auto") -> dict[str, Any]:
    """All stages in order: split → spectrograms → pack → train → test. Returns a summary with timings."""
    cfg, out = load_config(config), Path(out)
    timings, results = {}, {}
    for name, call in (
        ("split", lambda: split(corpus, root, out, cfg)),
        ("spectrograms", lambda: spectrograms(out, cfg, progress)),
        ("pack", lambda: pack(out, cfg, progress)),
        ("train", lambda: train(out, cfg, verbose)),
        ("test", lambda: test(out, cfg, progress)),
    ):
        start = time.perf_counter()
        log.info("stage %s ...", name)
        results[name] = call()
        timings[name] = round(time.perf_counter() - start, 2)
    summary = {
        "out": str(Path(out).resolve()), "seconds": timings,
        "cv_mean": results["train"]["mean"], "cv_folds": results["train"]["folds"],
        "test_metrics": {k: v for k, v in (results["test"]["metrics"] or {}).items()
                         if k in ("n", "ua", "wa", "f1_macro", "f1_micro", "f1_weighted")},
        "files": _list_outputs(out),
        "skipped": {"corpus": results["split"]["corpus"]["n_skipped"],
                    "ties": results["split"]["split"]["n_ties"],
                    "spectrograms": results["spectrograms"]["spectrograms"]["n_failed"]},
    }
    A.save_json(summary, out / "run_summary.json")
    return summary


def demo(out: str | Path = "artifacts/demo", config="demo", progress: bool = True,
         verbose: int | str = "auto") -> dict[str, Any]:
    """Run the whole job on the bundled KEMDy20-layout sample (real EmoDB speech) with a small config."""
    return run("kemdy20", SAMPLE_DIR, out, config, progress, verbose)


def _list_outputs(out: Path) -> dict[str, str]:
    names = ["train.json", "test.json", "train_audio.json", "test_audio.json", "labels.json",
             "data_train.pickle", "data_test.pickle", "train_final.pickle", "test_final.pickle",
             "cv_report.json", "config.json"]
    files = {n: str(out / n) for n in names if (out / n).is_file()}
    files["spectrograms/"] = str(out / A.SPECTROGRAM_DIR)
    files["models/"] = str(out / "models")
    files["history/"] = str(out / "history")
    files["logs/ (TensorBoard)"] = str(out / "logs")
    for n in ("predictions.csv", "metrics.json", "confusion_matrix.png"):
        if (out / "test" / n).is_file():
            files[f"test/{n}"] = str(out / "test" / n)
    return files
