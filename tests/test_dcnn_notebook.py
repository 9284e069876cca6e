"""Run notebooks/02_dcnn_blstm_attention.ipynb headless (tiny configs) and check what it wrote."""
from __future__ import annotations

import json
from pathlib import Path

from conftest import notebook_outputs, run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "02_dcnn_blstm_attention.ipynb"


def test_dcnn_notebook_runs_on_tiny_configs(tmp_path):
    out = tmp_path / "notebook02"
    nb = run_notebook(NOTEBOOK, {"DCNN_NOTEBOOK_CONFIG": "tiny", "DCNN_NOTEBOOK_OUT": str(out),
                                 "TF_CPP_MIN_LOG_LEVEL": "2"})

    for name in ("filelists/labels.json", "channels.png", "segments.png", "logs/tiny_finetune/dcnn.h5",
                 "logs/tiny_finetune/confusion_finetune_utterances.png", "logs/tiny_train/blstm_attention.h5",
                 "logs/tiny_train/log_train.out", "logs/tiny_train/predictions.csv"):
        assert (out / name).is_file(), f"notebook did not write {name}"
    metrics = json.loads((out / "logs" / "tiny_train" / "metrics_train.json").read_text(encoding="utf-8"))
    assert metrics["utterances"]["n"] > 0 and 0.0 <= metrics["utterances"]["ua"] <= 1.0
    assert len((out / "logs" / "tiny_train" / "predictions.csv").read_text().splitlines()) == 7  # header + 6
    manifest = json.loads((out / "logs" / "tiny_train" / "run.json").read_text(encoding="utf-8"))
    assert manifest["family"] == "dcnn" and manifest["extra"]["step"] == "train"
    # the filelists of `prepare_filelists(..., folds=2, folds_by="speaker")`: fold 1 is fold 0 of the manifest
    assert {k: manifest["split"][k] for k in ("scheme", "folds", "fold", "seed")} == {
        "scheme": "speaker", "folds": 2, "fold": 0, "seed": 42}

    outputs = notebook_outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4   # channels, segments, 2 confusions
