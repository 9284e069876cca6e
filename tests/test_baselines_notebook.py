"""Run notebooks/03_ann_cnn_baselines.ipynb headless with the tiny baseline presets and check what it wrote."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import SHARED_DATA, notebook_outputs, run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "03_ann_cnn_baselines.ipynb"


def test_baselines_notebook_runs_on_tiny_configs(tmp_path):
    # FSDD (a few real clips copied from ../shared/data) when present, else the bundled-sample UrbanSound8K folder
    fsdd = "none"
    if (SHARED_DATA / "fsdd").is_dir():
        fsdd = tmp_path / "fsdd"
        fsdd.mkdir()
        for digit in range(10):
            for name in (f"{digit}_george_0.wav", f"{digit}_george_1.wav", f"{digit}_lucas_0.wav"):
                shutil.copy(SHARED_DATA / "fsdd" / name, fsdd / name)
    out = tmp_path / "notebook03"
    nb = run_notebook(NOTEBOOK, {
        "CNNRNN_BASELINE_ANN_CONFIG": "tiny_ann",
        "CNNRNN_BASELINE_CNN_CONFIG": "tiny_cnn",
        "CNNRNN_BASELINE_FSDD": str(fsdd),
        "CNNRNN_NOTEBOOK_OUT": str(out),
        "TF_CPP_MIN_LOG_LEVEL": "2",
    })

    for model in ("ann", "cnn"):
        for name in ("model.h5", "labels.json", "metrics.json", "confusion_matrix.png", "curves.png",
                     "predict_folder/predictions.csv", "evaluation/metrics.json"):
            assert (out / model / name).is_file(), f"notebook did not write {model}/{name}"
        metrics = json.loads((out / model / "metrics.json").read_text(encoding="utf-8"))
        assert metrics["corpus"] == ("fsdd" if fsdd != "none" else "urbansound8k")
        assert {"accuracy", "ua", "f1_macro"} <= set(metrics) and metrics["n_val"] > 0
    assert (out / "waveform.png").is_file() and (out / "spectrogram.png").is_file()

    outputs = notebook_outputs(nb)
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 6  # waveform, spectrogram, 2 curves, 2 matrices


def test_baselines_notebook_falls_back_to_the_bundled_sample(tmp_path, monkeypatch):
    """Without FSDD the notebook builds an UrbanSound8K-layout folder from the bundled sample (checked without
    training: the first cells only)."""
    import logging

    import nbformat

    nb = nbformat.read(str(NOTEBOOK), as_version=4)
    source = "\n".join([c.source for c in nb.cells if c.cell_type == "code"][:2])
    monkeypatch.setenv("CNNRNN_BASELINE_FSDD", "none")
    monkeypatch.setenv("CNNRNN_NOTEBOOK_OUT", str(tmp_path))
    monkeypatch.setenv("CNNRNN_BASELINE_ANN_CONFIG", "tiny_ann")
    monkeypatch.setenv("CNNRNN_BASELINE_CNN_CONFIG", "tiny_cnn")
    scope: dict = {}
    root_handlers, root_level = list(logging.root.handlers), logging.root.level
    try:
        exec(compile(source, str(NOTEBOOK), "exec"), scope)
    finally:  # the notebook's logging.basicConfig(force=True) must not leak into the test session
        logging.root.handlers[:] = root_handlers
        logging.root.setLevel(root_level)
    assert scope["CORPUS"] == "urbansound8k"
    assert (tmp_path / "urbansound8k_sample" / "train.csv").is_file()
    assert len(scope["utterances"]) >= 100 and scope["report"].n_skipped == 0
