"""Run notebooks/01_cnnrnn_pipeline.ipynb headless (tiny preset) and check what it wrote."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import notebook_outputs, run_notebook

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
PIPELINE_NOTEBOOK = NOTEBOOK_DIR / "01_cnnrnn_pipeline.ipynb"


def test_pipeline_notebook_runs_on_tiny_config(tmp_path):
    out = tmp_path / "notebook01"
    nb = run_notebook(PIPELINE_NOTEBOOK, {
        "CNNRNN_NOTEBOOK_CONFIG": "tiny",
        "CNNRNN_NOTEBOOK_OUT": str(out),
        "CNNRNN_NOTEBOOK_RECIPE_EPOCHS": "2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })

    for name in ("train_final.pickle", "test_final.pickle", "cv_report.json", "history/curves.png",
                 "test/metrics.json", "test/confusion_matrix.png"):
        assert (out / name).is_file(), f"notebook did not write {name}"
    cv_report = json.loads((out / "cv_report.json").read_text(encoding="utf-8"))
    assert len(cv_report["folds"]) == 2  # the tiny preset has folds=2
    metrics = json.loads((out / "test" / "metrics.json").read_text(encoding="utf-8"))
    assert {"ua", "wa", "f1_macro"} <= set(metrics)

    outputs = notebook_outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no cell displayed an image"

    # section 8: the best preset on unseen speakers of the sample, and the shipped model
    recipe = out / "recipe_best"
    summary = json.loads((recipe / "run_summary.json").read_text(encoding="utf-8"))
    assert summary["split_scheme"] == "speaker" and summary["speakers_in_both"] == []
    assert json.loads((recipe / "config.json").read_text())["train"]["backbone"] == "whisper"   # best: Whisper inside
    assert (recipe / "test" / "confusion_matrix.png").is_file()
    shipped = (out / "shipped_predictions" / "predictions.csv").read_text(encoding="utf-8")
    assert "speaker" in shipped and "p_anger" in shipped
    # one saliency figure per emotion of the sample (cnnrnn spectrogram --explain with the shipped model)
    from cnnrnn.corpora import load_corpus
    from cnnrnn.cnnrnn.pipeline import SAMPLE_DIR

    emotions = sorted({u.emotion for u in load_corpus("kemdy20", SAMPLE_DIR)[0] if not u.is_tied})
    assert sorted(p.name.split("_")[0] for p in (out / "explain").glob("*.png")) == emotions and len(emotions) >= 6

