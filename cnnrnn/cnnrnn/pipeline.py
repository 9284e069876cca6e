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
from .config import STAGES, StageConfigError, check_earlier_stages, earlier_stage_changes, load_config
from .data import claim_run, pack, spectrograms, split
from .predict import evaluate
from .train import check_backbone_weights, train

log = logging.getLogger("cnnrnn.cnnrnn.pipeline")

#: The bundled KEMDy20-layout sample (real EmoDB speech) that ``cnnrnn demo`` runs on.
SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample" / "kemdy20"


def run(corpus: str, root: str | Path, out: str | Path, config=None, progress: bool = True,
        verbose: int | str = "auto") -> dict[str, Any]:
    """All stages in order: split → spectrograms → pack → train → test. Returns a summary with timings.

    Raises:
        cnnrnn.models.blocks.WeightsError: the backbone's weights are not on this machine (checked first,
            :func:`cnnrnn.cnnrnn.train.check_backbone_weights`); and what each stage raises.
    """
    cfg, out = load_config(config), Path(out)
    check_backbone_weights(cfg.train)
    claim_run(out, write=False)  # a folder of someone's files is refused before anything is written
    timings, results = {}, {}
    for name, call in (
        ("split", lambda: split(corpus, root, out, cfg)),
        ("spectrograms", lambda: spectrograms(out, cfg, progress)),
        ("pack", lambda: pack(out, cfg, progress)),
        ("train", lambda: train(out, cfg, verbose)),
        ("test", lambda: test_stage(out, cfg, progress)),
    ):
        start = time.perf_counter()
        log.info("stage %s ...", name)
        results[name] = call()
        timings[name] = round(time.perf_counter() - start, 2)
    summary = {
        "out": str(Path(out).resolve()), "seconds": timings,
        "cv_mean": results["train"]["mean"], "cv_folds": results["train"]["folds"],
        "cv_optimistic": results["train"]["optimistic"], "labels": results["train"]["labels"],
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


def test_stage(out: str | Path, config=None, progress: bool = True) -> dict[str, Any]:
    """Stage 5: :func:`cnnrnn.cnnrnn.predict.evaluate` under the run's ``test`` lock, refused while another
    process trains the run (:class:`cnnrnn.outputs.FolderInUseError`)."""
    from ..outputs import check_not_locked, stage_lock

    out = claim_run(out, create=False)
    check_not_locked(out, "train", "test the run")
    with stage_lock(out, "test"):
        return evaluate(out, config, progress)


def rerun_earlier_stages(out: str | Path, config, stage: str, force: bool = False, progress: bool = True) -> list[str]:
    """Make sure the files of the stages before ``stage`` in ``out`` were made with ``config``'s settings.

    Nothing to do when the run's ``config.json`` holds the same settings for them (or there is none yet).
    Otherwise, without ``force``, refuse; with ``force``, re-run with ``config`` every stage from the first whose
    settings changed up to the one before ``stage`` (``split`` reads the corpus again, from the ``corpus`` and
    ``root`` of ``split_report.json``), and forget the finished folds of ``train`` (``folds/fold*.json``), which
    were trained on the old files.

    Args:
        out: the run folder. config: anything :func:`load_config` takes. stage: ``spectrograms``, ``pack`` or
            ``train``. force: re-run instead of refusing. progress: progress bars.

    Returns:
        The stages re-run, in order (empty when none was needed).

    Raises:
        StageConfigError: the settings differ and ``force`` is not set (names every differing key).
    """
    cfg, out = load_config(config), Path(out)
    changes = earlier_stage_changes(out, cfg, stage)
    if not changes:
        return []
    if not force:
        check_earlier_stages(out, cfg, stage)
    names = list(STAGES)
    todo = names[names.index(next(iter(changes))):names.index(stage)]
    log.warning("--force: re-running %s with the new settings (%s)", ", ".join(todo),
                "; ".join(d for ds in changes.values() for d in ds))
    for name in todo:
        if name == "split":
            report = out / "split_report.json"
            corpus = A.load_json(report).get("corpus", {}) if report.is_file() else {}
            if not {"corpus", "root"} <= set(corpus):
                raise StageConfigError(f"--force cannot re-run split: {report} does not name the corpus; run "
                                       "`cnnrnn split` (or `cnnrnn run`) with the new config instead")
            split(corpus["corpus"], corpus["root"], out, cfg)
        elif name == "spectrograms":
            spectrograms(out, cfg, progress)
        elif name == "pack":  # spectrograms, just re-run, wrote the arrays: pack writes the final pickles
            pack(out, cfg, progress)
    for marker in (out / "folds").glob("fold*.json"):  # trained on the old files: retrain, never resume
        marker.unlink()
    return todo


def demo(out: str | Path = "artifacts/demo", config="demo", progress: bool = True,
         verbose: int | str = "auto") -> dict[str, Any]:
    """Run the whole job on the bundled KEMDy20-layout sample (real EmoDB speech) with the ``demo`` preset (the
    Whisper recipe with the weights that ship in the package). The sample leaves out 3 of its annotated recordings
    on purpose (the KEMDy20 layout's missing files): they are counted in the summary, not warned about."""
    corpora_log = logging.getLogger("cnnrnn.corpora")
    level = corpora_log.level
    corpora_log.setLevel(logging.ERROR)
    try:
        summary = run("kemdy20", SAMPLE_DIR, out, config, progress, verbose)
    finally:
        corpora_log.setLevel(level)
    summary["demo"] = True
    return summary


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
