"""Run notebooks/01_cnnrnn_pipeline.ipynb headless (tiny preset) and check what it wrote."""
from __future__ import annotations

import json
import os
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
PIPELINE_NOTEBOOK = NOTEBOOK_DIR / "01_cnnrnn_pipeline.ipynb"


def _run_notebook(path: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=600, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def test_pipeline_notebook_runs_on_tiny_config(tmp_path):
    out = tmp_path / "notebook01"
    nb = _run_notebook(PIPELINE_NOTEBOOK, {
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

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no cell displayed an image"
