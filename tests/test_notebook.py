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
