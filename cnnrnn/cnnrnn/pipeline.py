"""The whole CNNRNN job: split → spectrograms → pack → train → test, in one call (``cnnrnn run`` / ``demo``).

Each stage lives in its module (:mod:`~cnnrnn.cnnrnn.data`, :mod:`~cnnrnn.cnnrnn.train`,
:mod:`~cnnrnn.cnnrnn.predict`) and talks to the next through files in one output folder, so a notebook
cell, a subcommand or a test can start from any stage.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from .. import artifacts as A
from .config import load_config
from .data import pack, spectrograms, split
from .predict import test
from .train import train

log = logging.getLogger("cnnrnn.cnnrnn.pipeline")

#: The bundled KEMDy20-layout sample (real EmoDB speech) that ``cnnrnn demo`` runs on.
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample" / "kemdy20"


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
        "cv_optimistic": results["train"]["optimistic"],
        "test_metrics": {k: v for k, v in (results["test"]["metrics"] or {}).items()
                         if k in ("n", "ua", "wa", "f1_macro", "f1_micro", "f1_weighted")},
        "files": _list_outputs(out),
        "split_scheme": results["split"]["split"]["scheme"]["scheme"],
        "speakers_in_both": results["split"]["split"]["speakers_in_both"],
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
             "cv_report.json", "config.json", "run.json"]
    files = {n: str(out / n) for n in names if (out / n).is_file()}
    files["spectrograms/"] = str(out / A.SPECTROGRAM_DIR)
    files["models/"] = str(out / "models")
    files["history/"] = str(out / "history")
    files["logs/ (TensorBoard)"] = str(out / "logs")
    for n in ("predictions.csv", "metrics.json", "confusion_matrix.png"):
        if (out / "test" / n).is_file():
            files[f"test/{n}"] = str(out / "test" / n)
    return files
