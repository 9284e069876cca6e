"""The run manifest (run.json), the shared report writer, and `cnnrnn predict` refusing runs it cannot use."""
import json

import numpy as np
import pandas as pd
import pytest

from cnnrnn import cli
from cnnrnn.runs import SCHEMA_VERSION, ManifestError, find_manifest, read_manifest, write_manifest


def _manifest(folder, **changes):
    path = write_manifest(folder, "cnnrnn", {"train": {"epochs": 1}}, ["angry", "sad"],
                          split={"scheme": "stratified", "folds": 2, "fold": None, "seed": 7},
                          input_spec={"sr": 16000, "duration": 2.0, "image_size": [32, 64]},
                          checkpoints=[folder / "models" / "a.h5"])
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


def test_manifest_round_trip_and_lookup(tmp_path):
    path = _manifest(tmp_path)
    (tmp_path / "models").mkdir()
    m = read_manifest(tmp_path)
    assert (m.family, m.labels, m.schema_version) == ("cnnrnn", ["angry", "sad"], SCHEMA_VERSION)
    assert m.split == {"scheme": "stratified", "folds": 2, "fold": None, "seed": 7} and m.fold is None
    assert m.checkpoints == ["models/a.h5"] and m.checkpoint_paths() == [tmp_path / "models" / "a.h5"]
    assert {"cnnrnn", "tensorflow", "keras", "librosa"} == set(m.versions) and m.created
    assert find_manifest(tmp_path / "models") == path and find_manifest(tmp_path) == path
    assert find_manifest(tmp_path / "models" / "a.h5") == path


def test_other_package_versions_load(tmp_path):
    _manifest(tmp_path, versions={"cnnrnn": "0.0.1", "tensorflow": "2.9.0", "keras": "2.9.0", "librosa": "0.9"})
    assert read_manifest(tmp_path).versions["tensorflow"] == "2.9.0"


@pytest.mark.parametrize("change, field", [
    ({"schema_version": SCHEMA_VERSION + 1}, "'schema_version' is"),
    ({"schema_version": "one"}, "'schema_version' is missing or not an integer"),
    ({"family": "xvector"}, "'family' is 'xvector'"),
])
def test_unusable_manifests_are_refused_naming_the_field(tmp_path, caplog, change, field):
    _manifest(tmp_path, **change)
    with pytest.raises(ManifestError, match=field):
        read_manifest(tmp_path, families=["cnnrnn", "dcnn", "baselines", "hf", "functionals"])
    wav = tmp_path / "x.wav"
    wav.write_bytes(b"")
    assert cli.main(["-q", "predict", "--model", str(tmp_path), "--input", str(wav)]) == 2
    assert field.split(" is")[0] in caplog.text
    assert not (tmp_path / "predictions").exists()


def test_missing_field_and_bad_json(tmp_path):
    path = _manifest(tmp_path)
    data = json.loads(path.read_text())
    del data["labels"]
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError, match="'labels' is missing"):
        read_manifest(path)
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        read_manifest(path)
    with pytest.raises(ManifestError, match="family"):
        write_manifest(tmp_path, "nope", {}, [])


def test_one_report_writer(tmp_path):
    from cnnrnn.reports import write_report

    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], np.float32)
    result = write_report(tmp_path, proba, ["angry", "sad"], ["a", "b", "c"], [0, 1, 1], family="x",
                          sources=["a.wav", "b.wav", "c.wav"], extra={"fold": 3})
    df = pd.read_csv(tmp_path / "predictions.csv")
    assert list(df.columns) == ["id", "source", "true", "predicted", "predicted_index", "confidence",
                                "p_angry", "p_sad"]
    assert list(df["predicted"]) == ["angry", "sad", "angry"] and list(df["true"]) == ["angry", "sad", "sad"]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["ua"] == pytest.approx(0.75) and metrics["wa"] == pytest.approx(2 / 3)
    assert (metrics["labels"], metrics["family"], metrics["fold"]) == (["angry", "sad"], "x", 3)
    assert metrics["confusion_matrix"] == [[1, 0], [1, 1]]
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"
    assert result["files"]["metrics"].endswith("metrics.json")
    only = write_report(tmp_path / "u", proba, ["angry", "sad"], ["a", "b", "c"], files={"predictions": "p.csv"})
    assert only["metrics"] is None and sorted(p.name for p in (tmp_path / "u").iterdir()) == ["p.csv"]
    with pytest.raises(ValueError, match="probabilities"):
        write_report(tmp_path, proba, ["angry"], ["a", "b", "c"])


def test_fusion_matches_classes_by_meaning(tmp_path):
    from cnnrnn.predict import fuse_predictions

    a = pd.DataFrame({"id": ["x", "y"], "true": ["anger", "sadness"], "p_anger": [0.8, 0.2],
                      "p_sadness": [0.2, 0.8]})
    b = pd.DataFrame({"id": ["y", "x", "z"], "p_sad": [0.4, 0.0, 1.0], "p_angry": [0.6, 1.0, 0.0]})
    result = fuse_predictions([a, b], tmp_path)
    df = result["predictions"].set_index("id")
    assert list(df.index) == ["x", "y"]  # only the items both runs predicted
    np.testing.assert_allclose(df.loc["x", ["p_anger", "p_sadness"]].to_numpy(float), [0.9, 0.1], atol=1e-6)
    np.testing.assert_allclose(df.loc["y", ["p_anger", "p_sadness"]].to_numpy(float), [0.4, 0.6], atol=1e-6)
    assert result["metrics"]["ua"] == pytest.approx(1.0) and result["metrics"]["family"] == "fusion"
    with pytest.raises(ValueError, match="no item in common"):
        fuse_predictions([a, b.assign(id=["p", "q", "r"])], tmp_path)
