"""Run notebooks/04_kemdy_labels_and_transformers.ipynb headless (tiny models, a few records) and check its files."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from conftest import notebook_outputs, run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_kemdy_labels_and_transformers.ipynb"


def test_kemdy_labels_and_transformers_notebook_runs(tmp_path, sample_dir):
    out = tmp_path / "notebook04"
    nb = run_notebook(NOTEBOOK, {
        "CNNRNN_HF_NOTEBOOK_DATA": str(sample_dir),
        "CNNRNN_HF_NOTEBOOK_OUT": str(out),
        "CNNRNN_HF_NOTEBOOK_RECORDS": "20",
        "CNNRNN_HF_NOTEBOOK_EPOCHS": "1",
        "CNNRNN_HF_NOTEBOOK_EAGER": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })

    table = pd.read_csv(out / "new_data.csv")
    assert len(table) == 105 and {"emotion_raw", "emotion_weighted"} <= set(table.columns)
    report = json.loads((out / "label_report.json").read_text(encoding="utf-8"))
    assert report["ties_after"] <= report["ties_before"]
    for run in ("text_classification", "speech_regression", "multimodal_total_concat"):
        assert (out / run / "checkpoint" / "head.h5").is_file()
        metrics = json.loads((out / run / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["n"] == 4 and metrics["n_train"] == 16  # fold 4 of 5 over 20 records
    assert len(pd.read_csv(out / "predict" / "predictions.csv")) == 8

    outputs = notebook_outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no cell displayed an image"
    text = "".join(o.get("text", "") for o in outputs)
    assert "refused:" in text and "ties before / after" in text
