"""``cnnrnn export``: ONNX / TFLite / SavedModel files of tiny runs, their sidecars, and parity on real audio.

The runs are built directly (random weights, the output layer set so that the probabilities vary from recording
to recording and a wrong graph would show, :func:`_calibrate`) and written as training writes them (checkpoints,
``run.json``, ``config.json``, ``labels.json``, normalisation statistics), once per module. The ONNX tests need the
``export`` extra (tf2onnx, onnx, onnxruntime) and skip without it.
"""
import importlib.util
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from cnnrnn import export as E
from cnnrnn.cli import main

REPO = Path(__file__).resolve().parents[1]
LABELS = ["anger", "happiness", "neutral", "sadness"]
HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in E.EXTRA_MODULES["onnx"])
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="ONNX export needs the export extra (tf2onnx, onnx, "
                                                      "onnxruntime): pip install 'cnnrnn[export]'")
#: Native TensorFlow start-up lines that must not reach a normal run's stderr.
BANNERS = ("absl::InitializeLog", "oneDNN custom operations", "cudart_stub", "cpu_feature_guard", "cuInit")


def _calibrate(model, x: np.ndarray, scale: float = 2.0, seed: int = 0):
    """Set the softmax layer so that its logits are standardised penultimate features times a random matrix:
    random-init models give (nearly) the same class to every input, which would hide a wrong graph."""
    last = model.layers[-1]
    h = np.asarray(E.library_of([model]).Model(model.input, last.input)(x, training=False), np.float64)
    mean, std = h.mean(axis=0), h.std(axis=0) + 1e-3
    r = np.random.default_rng(seed).normal(size=(h.shape[1], len(LABELS))) * scale
    last.set_weights([(r / std[:, None]).astype(np.float32), (-(mean / std) @ r).astype(np.float32)])
    return model


@pytest.fixture(scope="module")
def wavs(sample_dir):
    return sorted((sample_dir / "wav").rglob("*.wav"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, wavs):
    """Tiny runs of every exportable family: a CNNRNN run (2 folds, time crops, global normalisation), an ANN and a
    CNN baseline, and a DCNN-BLSTMwA step 1 + step 2."""
    import keras

    from cnnrnn.artifacts import save_json, save_model_h5
    from cnnrnn.baselines.config import load_baseline_config
    from cnnrnn.cnnrnn.config import load_config
    from cnnrnn.cnnrnn.train import input_spec
    from cnnrnn.dcnn.config import feature_config
    from cnnrnn.features import audio_log_mel, to_backbone_input
    from cnnrnn.models import build_cnnrnn
    from cnnrnn.models.baselines import build_ann, build_cnn
    from cnnrnn.models.blstm_attention import build_blstm_attention
    from cnnrnn.models.dcnn import build_dcnn, feature_extractor
    from cnnrnn.normalize import fit
    from cnnrnn.runs import write_manifest

    root = tmp_path_factory.mktemp("export_runs")
    out = {}

    run = root / "cnnrnn_run"
    cfg = load_config({"spectrogram": {"n_mels": 32, "n_fft": 512, "hop_length": 256, "duration": 2.0,
                                       "image_size": [32, 64], "colormap": "magma", "normalization": "global"},
                       "train": {"folds": 2, "backbone": "compact", "filters": [8, 16], "lstm_units": 4,
                                 "crop_width": 32, "crop_hop": 16}})
    (run / "models").mkdir(parents=True)
    stats = fit([audio_log_mel(w, cfg.spectrogram).T for w in wavs[:6]], [None] * 6)
    images = E.model_inputs(E.preprocessing_of("cnnrnn", cfg.spectrogram, stats=stats, image=(32, 64)), wavs[:16]).x
    crops = np.concatenate([images[:, :, :32], images[:, :, 32:]])
    checkpoints = []
    for k in (1, 2):
        keras.utils.set_random_seed(k)
        model = build_cnnrnn((32, 32, 3), len(LABELS), backbone="compact", filters=(8, 16), lstm_units=4)
        checkpoints.append(save_model_h5(_calibrate(model, crops, seed=k),
                                         run / "models" / f"CNN_RNN_fold{k}_epoch1_e4.h5"))
    save_json(stats.to_dict(), run / "spectrograms" / "normalization.json")
    save_json(cfg.to_dict(), run / "config.json")
    save_json(LABELS, run / "labels.json")
    write_manifest(run, "cnnrnn", cfg.to_dict(), LABELS, split={"scheme": "stratified", "folds": 2, "fold": None},
                   input_spec=input_spec(cfg), checkpoints=checkpoints)
    out["cnnrnn"], out["images"] = run, images

    for kind, shape_cfg in (("ann", {"model": "ann", "sr": 8000, "duration": 1.0, "hidden_units": [16]}),
                            ("cnn", {"model": "cnn", "sr": 16000, "duration": 1.0, "n_mels": 32, "n_fft": 512,
                                     "hop_length": 256, "filters": [4, 8], "dense_units": 8})):
        run = root / f"baseline_{kind}"
        run.mkdir()
        bcfg = load_baseline_config(shape_cfg)
        keras.utils.set_random_seed(3)
        model = (build_ann(bcfg.n_samples, len(LABELS), bcfg.hidden_units) if kind == "ann" else
                 build_cnn(bcfg.input_shape, len(LABELS), bcfg.filters, dense_units=bcfg.dense_units))
        x = E.model_inputs(E.preprocessing_of("baselines", bcfg), wavs[:16]).x
        ckpt = save_model_h5(_calibrate(model, x), run / "model.h5")
        write_manifest(run, "baselines", bcfg.to_dict(), LABELS, input_spec=bcfg.input_spec(), checkpoints=[ckpt])
        out[f"baseline_{kind}"] = run

    features = feature_config({"sr": 16000, "n_mels": 32, "fmin": 20.0, "max_sec": 1.0, "segment_frames": 32,
                               "segment_hop": 16, "image_size": [32, 32]})
    step1, step2 = root / "dcnn" / "finetune", root / "dcnn" / "train"
    step1.mkdir(parents=True)
    step2.mkdir(parents=True)
    keras.utils.set_random_seed(4)
    segments = E.model_inputs(E.preprocessing_of("dcnn", features), wavs[:16]).x  # (16, 5, 32, 32, 3)
    flat = to_backbone_input(segments.reshape(-1, 32, 32, 3), [32, 32]).numpy()
    dcnn = build_dcnn((32, 32, 3), len(LABELS), backbone="compact", filters=(8, 16), fc_units=16, dropout=0.1)
    save_model_h5(_calibrate(dcnn, flat), step1 / "dcnn.h5")
    save_json({"labels": LABELS, "features": features.settings()}, step1 / "dcnn.json")
    head = build_blstm_attention(16, len(LABELS), lstm_units=4, attention_units=8, dense1_units=8, dense2_units=8)
    feats = np.asarray(feature_extractor(dcnn)(flat, training=False)).reshape(16, 5, 16)
    save_model_h5(_calibrate(head, feats), step2 / "blstm_attention.h5")
    save_json({"labels": LABELS, "features": features.settings(), "dcnn_checkpoint": "../finetune/dcnn.h5"},
              step2 / "blstm_attention.json")
    out["dcnn1"], out["dcnn2"] = step1, step2
    return out


@pytest.fixture(scope="module")
def ann_onnx(runs, wavs, tmp_path_factory):
    """The ANN baseline exported to ONNX (skips without the export extra)."""
    if not HAS_ONNX:
        pytest.skip("ONNX export needs the export extra (tf2onnx, onnx, onnxruntime): pip install 'cnnrnn[export]'")
    out = tmp_path_factory.mktemp("ann_onnx") / "ann.onnx"
    return E.export(runs["baseline_ann"], "onnx", out, audio=wavs[:4])


def _sidecar_ok(side: dict, fmt: str, family: str, files: int = 4):
    assert side["kind"] == E.SIDECAR_KIND and side["format"] == fmt and side["family"] == family
    assert side["labels"] == LABELS
    parity = side["parity"]
    assert parity["passed"] and parity["max_abs_diff"] <= E.TOLERANCES[fmt] and parity["files"] == files
    assert parity["same_predictions"]
    assert side["model_output"]["shape"] == [None, len(LABELS)]
    return side["preprocessing"]


@needs_onnx
def test_cnnrnn_onnx_matches_cnnrnn_predict_from_the_sidecar_alone(runs, wavs, tmp_path):
    run = runs["cnnrnn"]
    out = tmp_path / "cnnrnn.onnx"
    result = E.export(run, "onnx", out, audio=wavs[:4])
    assert out.is_file() and result["sidecar"] == tmp_path / "cnnrnn.onnx.json"
    side = json.loads(result["sidecar"].read_text())
    prep = _sidecar_ok(side, "onnx", "cnnrnn")
    assert result["parity"] == side["parity"] and side["parity"]["max_abs_diff"] < 1e-5
    # the preprocessing the issue lists, with the normalisation statistics
    assert (prep["audio"]["sr"], prep["audio"]["duration"], prep["audio"]["n_samples"]) == (16000, 2.0, 32000)
    f = prep["features"]
    assert (f["n_fft"], f["hop_length"], f["n_mels"], f["fmin"], f["fmax_hz"], f["top_db"]) == (512, 256, 32, 0.0,
                                                                                                8000.0, 80.0)
    assert prep["normalization"]["mode"] == "global" and len(prep["normalization"]["stats"]["global"]["mean"]) == 32
    assert prep["image"]["size"] == [32, 64] and prep["image"]["colormap"] == "magma"
    assert "0-255" in prep["input_scaling"] and prep["image"]["channel_order"].startswith("BGR")
    assert prep["segments"]["starts"] == [0, 16, 32] and prep["segments"]["width"] == 32
    assert side["model_input"]["shape"] == [None, 32, 64, 3]

    # what cnnrnn predict gives on the run == the ONNX file fed from the sidecar's description alone
    inputs = tmp_path / "in"
    inputs.mkdir()
    for w in wavs[10:14]:
        (inputs / w.name).symlink_to(w)
    assert main(["-q", "predict", "--model", str(run), "--input", str(inputs), "--out", str(tmp_path / "pred")]) == 0
    import pandas as pd

    table = pd.read_csv(tmp_path / "pred" / "predictions.csv").set_index("id")
    got = E.model_inputs(E.read_sidecar(out)["preprocessing"], inputs)
    proba = E.load_exported(out).predict(got.x)
    expected = table.loc[got.ids, [f"p_{label}" for label in LABELS]].to_numpy(float)
    assert proba.shape == (4, len(LABELS)) and np.abs(proba - expected).max() < 1e-4
    assert np.ptp(proba, axis=0).max() > 0.05, "the test models' outputs are too uniform to tell graphs apart"


def test_tflite_of_a_keras2_checkpoint_unrolls_its_lstm(runs, wavs, tmp_path):
    """An original-style run (a Keras 2 .h5 beside config.json and labels.json, no run.json), loaded by tf_keras:
    the TFLite converter needs its Bidirectional LSTM unrolled."""
    tf_keras = pytest.importorskip("tf_keras", reason="Keras 2 checkpoints load with tf_keras")
    from cnnrnn.artifacts import load_model, save_json

    model = load_model(next((runs["cnnrnn"] / "models").glob("*.h5")))  # the Keras 3 unroll, directly
    flat = E.unrolled(model)
    assert flat is not model and flat.get_layer("lstm").unroll and not model.get_layer("lstm").unroll
    x = np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    assert np.abs(np.asarray(flat(x, training=False)) - np.asarray(model(x, training=False))).max() < 1e-6

    run = tmp_path / "original_run"
    (run / "models").mkdir(parents=True)
    cfg = json.loads((runs["cnnrnn"] / "config.json").read_text())
    cfg["train"].update(crop_width=None, crop_hop=None)
    save_json(cfg, run / "config.json")
    save_json(LABELS, run / "labels.json")
    layers = tf_keras.layers
    tf_keras.utils.set_random_seed(5)
    inp = tf_keras.Input((32, 64, 3))
    h = layers.Conv2D(4, 3, strides=2, activation="relu")(layers.Rescaling(1 / 255.0)(inp))
    h = layers.Reshape((15, -1))(layers.Permute((2, 1, 3))(h))
    h = layers.Bidirectional(layers.LSTM(4))(h)
    keras2 = tf_keras.Model(inp, layers.Dense(len(LABELS), activation="softmax")(h))
    _calibrate(keras2, runs["images"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "HDF5 ... is considered legacy": the original's format
        keras2.save(run / "models" / "CNN_RNN_fold1_epoch60_e4.h5")
    assert type(load_model(run / "models" / "CNN_RNN_fold1_epoch60_e4.h5")).__module__.startswith("tf_keras")

    out = tmp_path / "original.tflite"
    result = E.export(run / "models" / "CNN_RNN_fold1_epoch60_e4.h5", "tflite", out, audio=wavs[:4])
    side = json.loads(E.sidecar_path(out).read_text())
    assert side["unrolled_rnn"] is True and side["preprocessing"]["segments"] is None
    assert side["parity"]["passed"] and result["parity"]["max_abs_diff"] < 1e-4 and side["labels"] == LABELS


def test_export_cli_in_a_subprocess_is_quiet(runs, wavs, tmp_path):
    """One real `python -m cnnrnn` run: a SavedModel export, its parity line, and no TensorFlow banner."""
    out = tmp_path / "sm"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    proc = subprocess.run([sys.executable, "-m", "cnnrnn", "export", "--model", str(runs["baseline_cnn"]),
                           "--format", "savedmodel", "--out", str(out), "--audio", str(wavs[0]), "--audio",
                           str(wavs[1])], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    banner = [line for line in proc.stderr.splitlines() if any(b in line for b in BANNERS)]
    assert banner == [], f"TensorFlow start-up lines on stderr: {banner}"
    assert "parity on" in proc.stdout and "passed" in proc.stdout
    side = json.loads((out / E.SAVEDMODEL_SIDECAR).read_text())
    prep = _sidecar_ok(side, "savedmodel", "baselines", files=2)
    assert prep["features"]["n_mels"] == 32 and prep["normalization"]["mode"] == "none"
    assert "clip" in prep["normalization"] and side["model_input"]["shape"] == [None, 32, 63, 1]


@needs_onnx
def test_baseline_ann_and_dcnn_export(runs, wavs, ann_onnx, tmp_path):
    prep = _sidecar_ok(json.loads(ann_onnx["sidecar"].read_text()), "onnx", "baselines")
    assert prep["features"] == {"kind": "waveform"} and prep["audio"]["n_samples"] == 8000
    assert "reflect" in prep["audio"]["pad_or_trim"]

    step2 = E.export(runs["dcnn2"], "tflite", tmp_path / "dcnn2.tflite", audio=wavs[:4])
    side = json.loads(step2["sidecar"].read_text())
    prep = _sidecar_ok(side, "tflite", "dcnn")  # the BiLSTM unrolled through Bidirectional
    assert prep["segments"]["count"] == 5 and prep["segments"]["step"] == "train"
    assert side["model_input"]["shape"] == [None, 5, 32, 32, 3] and prep["image"]["size"] == [32, 32]
    step1 = E.export(runs["dcnn1"], "onnx", tmp_path / "dcnn1.onnx", audio=wavs[:4])
    assert step1["parity"]["passed"] and step1["parity"]["max_abs_diff"] < 1e-5


def test_onnx_runs_without_tensorflow(runs, wavs, ann_onnx, tmp_path):
    """What issue 14 will do: sidecar + onnxruntime, and TensorFlow is never imported."""
    out = ann_onnx["out"]
    code = ("import json, sys; from cnnrnn.export import read_sidecar, load_exported, model_inputs; "
            f"m = load_exported({str(out)!r}); x = model_inputs(read_sidecar({str(out)!r})['preprocessing'], "
            f"{str(wavs[5])!r}).x; p = m.predict(x); "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'; "
            "print(json.dumps(p.tolist()))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    from cnnrnn.artifacts import load_model
    from cnnrnn.baselines.config import load_baseline_config
    from cnnrnn.baselines.predict import collect_inputs

    cfg = load_baseline_config(json.loads((runs["baseline_ann"] / "run.json").read_text())["config"])
    keras_model = load_model(runs["baseline_ann"] / "model.h5")  # the run's own features and model, in Keras
    expected = keras_model.predict(collect_inputs(wavs[5], cfg, progress=False).features, verbose=0)
    got = np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert got.shape == (1, len(LABELS)) and np.abs(got - expected).max() < 1e-5


def test_unknown_preprocessing_is_a_clear_error_and_a_parity_failure_fails(runs, wavs, tmp_path, caplog,
                                                                           monkeypatch):
    import shutil

    from cnnrnn.artifacts import save_json

    bare = tmp_path / "bare" / "model.h5"
    bare.parent.mkdir()
    shutil.copyfile(runs["baseline_ann"] / "model.h5", bare)
    out = tmp_path / "bare_sm"
    args = ["-q", "export", "--model", str(bare), "--family", "baselines", "--format", "savedmodel",
            "--out", str(out), "--audio", str(wavs[0]), "--audio", str(wavs[1])]
    assert main(args) == 2
    assert "preprocessing it was trained with is unknown" in caplog.text and "--config" in caplog.text
    assert not out.exists()
    # named config and labels: it exports; a parity over the tolerance fails the command and keeps the files
    config = save_json(json.loads((runs["baseline_ann"] / "run.json").read_text())["config"], tmp_path / "c.json")
    labels = save_json(LABELS, tmp_path / "labels.json")
    monkeypatch.setitem(E.TOLERANCES, "savedmodel", -1.0)  # nothing can pass
    caplog.clear()
    assert main(args + ["--config", str(config), "--labels", str(labels)]) == 2
    assert "over the savedmodel tolerance" in caplog.text
    side = E.read_sidecar(out)
    assert side["labels"] == LABELS and side["parity"]["passed"] is False and side["parity"]["files"] == 2
    assert side["parity"]["max_abs_diff"] == 0.0  # a SavedModel computes what Keras computes


def test_refusals_are_clear(runs, tmp_path, monkeypatch):
    from cnnrnn.runs import write_manifest

    hf = tmp_path / "hf_run"
    write_manifest(hf, "hf", {}, LABELS)
    with pytest.raises(E.ExportError, match="Hugging Face"):
        E.export(hf, "savedmodel", tmp_path / "x")
    fn = tmp_path / "functionals_run"
    write_manifest(fn, "functionals", {}, LABELS)
    with pytest.raises(E.ExportError, match="scikit-learn"):
        E.export(fn, "savedmodel", tmp_path / "y")
    with pytest.raises(E.ExportError, match="is the tflite format"):
        E.export(runs["baseline_ann"], "onnx", tmp_path / "model.tflite")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a))
    with pytest.raises(E.MissingExtraError, match=r"pip install 'cnnrnn\[export\]'"):
        E.export(runs["baseline_ann"], "onnx", tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()


def test_quiet_stderr_is_replayed_only_on_failure(capfd):
    from cnnrnn.quiet import stderr_redirected

    with stderr_redirected():
        os.write(2, b"native chatter\n")
    with pytest.raises(RuntimeError):
        with stderr_redirected():
            os.write(2, b"native error detail\n")
            raise RuntimeError("conversion failed")
    err = capfd.readouterr().err
    assert "native chatter" not in err and "native error detail" in err
