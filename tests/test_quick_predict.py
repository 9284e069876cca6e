"""Quick predict (issue 14, item 3): an exported ONNX model predicts without TensorFlow, each fold model is loaded
once and predicts in batches, batched prediction equals per-file prediction, and decoding needs no librosa.

The ONNX model here is built with ``onnx.helper`` (no TensorFlow, no converter): the mean colour of the image
through a linear layer and a softmax, with the sidecar :func:`cnnrnn.export.preprocessing_of` writes, so that the
test checks the prediction path, not the converter (``tests/test_export.py`` checks the converter). Speed targets
are measured in ``benchmarks/predict_latency.py``, not here.
"""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import artifacts as A
from cnnrnn import export as E

REPO = Path(__file__).resolve().parents[1]
LABELS = ["anger", "happiness", "neutral", "sadness"]
SPECTROGRAM = {"n_mels": 32, "n_fft": 512, "hop_length": 256, "duration": 2.0, "image_size": [32, 64],
               "colormap": "magma"}
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs onnx and onnxruntime (the export extra)")


@pytest.fixture(scope="module")
def wavs(sample_dir):
    return sorted((sample_dir / "wav").rglob("*.wav"))[:6]


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    """``model.onnx`` + ``model.onnx.json``: mean BGR colour → 3×4 linear → softmax, for 32×64 images."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cnnrnn.cnnrnn.config import load_config

    folder = tmp_path_factory.mktemp("onnx_model")
    weights = np.random.default_rng(0).normal(size=(3, len(LABELS))).astype(np.float32) / 20
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], [E.ONNX_OUTPUT], axis=-1)],
        "quick", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 32, 64, 3])],
        [helper.make_tensor_value_info(E.ONNX_OUTPUT, TensorProto.FLOAT, [None, len(LABELS)])],
        initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    spec = load_config({"spectrogram": SPECTROGRAM}).spectrogram
    A.save_json({"kind": E.SIDECAR_KIND, "schema_version": E.SIDECAR_SCHEMA, "format": "onnx", "family": "cnnrnn",
                 "labels": LABELS, "preprocessing": E.preprocessing_of("cnnrnn", spec, image=(32, 64))},
                E.sidecar_path(path))
    return path


@needs_onnx
def test_an_onnx_model_predicts_without_importing_tensorflow(onnx_model, wavs, tmp_path):
    probe = ("import runpy, sys\nsys.argv = ['cnnrnn'] + sys.argv[1:]\ntry:\n"
             "    runpy.run_module('cnnrnn', run_name='__main__')\nexcept SystemExit as exc:\n    code = exc.code\n"
             "else:\n    code = 0\n"
             "print('@@', code, sorted(m for m in ('tensorflow', 'keras', 'tf_keras', 'librosa', 'numba') "
             "if m in sys.modules))")
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-c", probe, "-q", "predict", "--model", str(onnx_model), "--input",
                           str(wavs[0].parent), "--out", str(out)], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    code, imported = done.stdout.rsplit("@@", 1)[1].split(" ", 2)[1:]
    assert code.strip() == "0" and imported.strip() == "[]", done.stdout[-500:]
    table = (out / "predictions.csv").read_text().splitlines()
    assert table[0].startswith("id,source,predicted") and len(table) == 1 + len(list(wavs[0].parent.glob("*.wav")))


@needs_onnx
def test_onnx_batched_equals_per_file_and_long_recordings_are_windowed(onnx_model, wavs, tmp_path):
    import soundfile as sf

    from cnnrnn.predict import EXPORTED, predict, resolve_family

    assert resolve_family(onnx_model) == (EXPORTED, None)
    folder = tmp_path / "in"
    folder.mkdir()
    for w in wavs:
        (folder / w.name).symlink_to(w)
    batched = predict(onnx_model, folder, tmp_path / "batched", progress=False, batch_size=4)["predictions"]
    single = [predict(onnx_model, w, tmp_path / f"one{k}", progress=False, batch_size=1)["predictions"]
              for k, w in enumerate(wavs)]
    cols = [f"p_{label}" for label in LABELS]
    np.testing.assert_allclose(batched[cols].to_numpy(), np.concatenate([s[cols].to_numpy() for s in single]),
                               rtol=1e-5, atol=1e-6)
    # a 5 s recording: windows of the model's 2 s clip (read from the sidecar), one row per file
    y = np.concatenate([sf.read(w, dtype="float32")[0] for w in wavs[:3]])[: 5 * 16000]
    sf.write(tmp_path / "long.wav", y, 16000)
    result = predict(onnx_model, tmp_path / "long.wav", tmp_path / "long", progress=False)
    assert result["windows"]["clip_s"] == 2.0 and len(result["predictions"]) == 1
    assert (tmp_path / "long" / "timeline.csv").is_file()
    (tmp_path / "image.png").write_bytes(b"not audio")
    with pytest.raises(ValueError, match="exported model predicts audio"):
        predict(onnx_model, tmp_path / "image.png", tmp_path / "png", progress=False)


@pytest.fixture(scope="module")
def fold_run(tmp_path_factory):
    """A CNNRNN run with 3 fold checkpoints (compact backbone, 32×64 images) and a 7-image ``test_final.pickle``."""
    import keras

    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.train import checkpoint_path
    from cnnrnn.models.cnnrnn import build_cnnrnn

    run = tmp_path_factory.mktemp("fold_run")
    cfg = load_config({"spectrogram": SPECTROGRAM, "train": {"folds": 3, "batch_size": 3, "backbone": "compact",
                                                             "filters": [4, 8], "lstm_units": 4}})
    for k in range(1, 4):
        keras.utils.set_random_seed(k)
        A.save_model_h5(build_cnnrnn((32, 64, 3), len(LABELS), "none", **cfg.train.model_options()),
                        checkpoint_path(run, cfg.train, k))
    A.save_json(cfg.to_dict(), run / A.CONFIG_FILE)
    A.save_json(LABELS, run / A.LABELS_FILE)
    images = np.random.default_rng(1).integers(0, 256, (7, 32, 64, 3), dtype=np.uint8)
    A.save_pickle({"id": [f"u{i}" for i in range(7)], "path": images, "emotion": [i % 4 for i in range(7)]},
                  run / A.FINAL_FILES["test"])
    return run


def test_the_test_stage_loads_each_fold_model_once_and_predicts_in_batches(fold_run, monkeypatch):
    from cnnrnn.cnnrnn import batches as T
    from cnnrnn.cnnrnn import predict as P

    loads, calls = [], []
    real_load, real_predictor = A.load_model, T.batch_predictor
    monkeypatch.setattr(A, "load_model", lambda path, **kw: loads.append(Path(path).name) or real_load(path, **kw))

    def counting(model, n_batches):
        run = real_predictor(model, n_batches)
        return lambda x: calls.append((model.name, len(x))) or run(x)

    monkeypatch.setattr(T, "batch_predictor", counting)
    result = P.evaluate(fold_run, fold_run / A.CONFIG_FILE, progress=False)
    assert sorted(loads) == sorted(p.name for p in (fold_run / "models").glob("*.h5")) and len(loads) == 3
    assert len(calls) == 3 * 3 and sorted({n for _, n in calls}) == [1, 3]  # 7 images in batches of 3, per model
    assert result["metrics"]["n"] == 7


def test_batched_prediction_equals_per_file_prediction(fold_run, wavs, tmp_path):
    from cnnrnn.cnnrnn.predict import predict
    from cnnrnn.cnnrnn.train import EAGER_BATCHES, predict_proba

    models = sorted((fold_run / "models").glob("*.h5"))
    batched = predict(models, wavs[0].parent, tmp_path / "b", batch_size=4, progress=False)["predictions"]
    per_file = [predict(models, w, tmp_path / f"f{k}", batch_size=1, progress=False)["predictions"]
                for k, w in enumerate(wavs)]
    cols = [f"p_{label}" for label in LABELS]
    by_id = batched.set_index("id")
    for frame in per_file:
        np.testing.assert_allclose(by_id.loc[frame["id"], cols].to_numpy(), frame[cols].to_numpy(), rtol=1e-5,
                                   atol=1e-6)
    # the traced graph (more than EAGER_BATCHES batches) gives what the eager calls give
    model = A.load_model(models[0])
    images = A.load_image_table(fold_run / A.FINAL_FILES["test"])["path"]
    eager = predict_proba(model, images, batch_size=len(images))
    traced = predict_proba(model, images, batch_size=1)
    assert len(images) > EAGER_BATCHES
    np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.predict(images.astype(np.float32), verbose=0), eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("orig_sr", [8000, 22050, 44100, 48000, 16001])
def test_resample_equals_librosa_soxr_hq(orig_sr):
    import librosa

    from cnnrnn.audio import resample

    y = np.random.default_rng(orig_sr).normal(size=orig_sr // 3 + 17).astype(np.float32) * 0.1
    ours = resample(y, orig_sr, 16000)
    theirs = librosa.resample(y, orig_sr=orig_sr, target_sr=16000, res_type="soxr_hq")
    assert ours.dtype == np.float32 and ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)


def test_stereo_files_are_averaged_as_librosa_does(tmp_path):
    import librosa
    import soundfile as sf

    from cnnrnn.audio import load_audio

    y = np.random.default_rng(3).normal(size=(22050, 2)).astype(np.float32) * 0.1
    sf.write(tmp_path / "stereo.wav", y, 22050, subtype="FLOAT")
    ours, sr = load_audio(tmp_path / "stereo.wav", 16000)
    data, _ = sf.read(tmp_path / "stereo.wav", dtype="float32")  # what librosa.load does, without audioread
    theirs = librosa.resample(librosa.to_mono(data.T), orig_sr=22050, target_sr=16000, res_type="soxr_hq")
    assert sr == 16000
    np.testing.assert_array_equal(ours, theirs)
