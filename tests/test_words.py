"""Issue 21, items 1 and 7: ``cnnrnn export`` never replaces what it did not write, and each bad input gets words
that say what is wrong and what to do: stereo channels that cancel, a wav cut short under its header, a zero-byte
model file, a Keras 2.2 Lambda of another Python, labels that repeat.

The inputs are the hostile benchmark's builders (``benchmarks/hostile_cases/words.py``, cases 60-66) on the
bundled sample's real recordings; the one real export is of the benchmark's tiny run (pooling + dense).
"""
import importlib.util
import json
import logging
import struct

import numpy as np
import pytest
import soundfile as sf

from cnnrnn import artifacts as A
from cnnrnn import export as E
from cnnrnn.audio import AudioError, load_audio, missing_seconds
from cnnrnn.cli import main
from cnnrnn.keras2 import EmptyModelFileError, UnsafeModelError, bytecode_python, _raw_bytes

from benchmarks.hostile_cases.words import (PY36_LAMBDA, antiphase_wav, keras22_lambda_h5, quick_onnx,
                                            truncated_wav, unchanged, user_files)

HAS_ONNX = all(importlib.util.find_spec(m) is not None for m in E.EXTRA_MODULES["onnx"])
needs_onnx = pytest.mark.skipif(not HAS_ONNX, reason="needs the export extra (tf2onnx, onnx, onnxruntime)")


# --------------------------------------------------------------------------- item 1: export's --out
def test_export_refuses_a_users_folder_and_files_before_any_work(tmp_path, caplog):
    hashes = user_files(tmp_path)
    for fmt, out, said in (("savedmodel", tmp_path / "mine", "is a folder that is not a SavedModel export"),
                           ("onnx", tmp_path / "mine.onnx", "exists and is not a previous cnnrnn export"),
                           ("onnx", tmp_path / "theirs.onnx", "is not the sidecar of a cnnrnn onnx export")):
        with pytest.raises(E.NotOurOutputError, match=said) as err:
            E.export("no-such-run", fmt, out)  # refused before the model is even looked for
        assert str(out.name) in str(err.value) and "choose another --out" in str(err.value)
        assert "\n" not in str(err.value)
    caplog.clear()
    assert main(["-q", "export", "--model", "emodb", "--format", "savedmodel", "--out", str(tmp_path / "mine")]) == 2
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert unchanged(hashes, tmp_path) == []
    assert not (tmp_path / "theirs.onnx").exists()


def test_check_out_tells_its_own_exports_from_the_users(tmp_path):
    # a one-file export of ours: the model and its sidecar, reading as ours
    own = tmp_path / "m.onnx"
    own.write_bytes(b"onnx")
    A.save_json({"kind": E.SIDECAR_KIND, "format": "onnx", "model": "m.onnx", "labels": ["a", "b"]},
                E.sidecar_path(own))
    E.check_out(own, "onnx")
    E.check_out(tmp_path / "new.onnx", "onnx")                     # nothing there
    A.save_json({"kind": E.SIDECAR_KIND, "format": "tflite", "model": "m.onnx"}, E.sidecar_path(own))
    with pytest.raises(E.NotOurOutputError):                       # a sidecar of another format is not this one's
        E.check_out(own, "onnx")
    # a SavedModel folder of ours, an empty folder, and ours with a user's file added
    folder = tmp_path / "sm"
    (folder / "variables").mkdir(parents=True)
    (folder / "assets").mkdir()
    for name in ("saved_model.pb", "fingerprint.pb", "variables/variables.index",
                 "variables/variables.data-00000-of-00001"):
        (folder / name).write_bytes(b"x")
    A.save_json({"kind": E.SIDECAR_KIND, "format": "savedmodel", "model": "."}, folder / E.SAVEDMODEL_SIDECAR)
    E.check_out(folder, "savedmodel")
    (tmp_path / "empty").mkdir()
    E.check_out(tmp_path / "empty", "savedmodel")
    (folder / "variables" / "my_backup.txt").write_text("mine")
    with pytest.raises(E.NotOurOutputError, match="variables/my_backup.txt"):
        E.check_out(folder, "savedmodel")
    # a folder that only looks empty, a symbolic link, a folder for a file format
    (tmp_path / "hidden").mkdir()
    (tmp_path / "hidden" / ".keep").write_text("")
    with pytest.raises(E.NotOurOutputError, match=r"\.keep"):
        E.check_out(tmp_path / "hidden", "savedmodel")
    (tmp_path / "link.onnx").symlink_to(own)
    with pytest.raises(E.NotOurOutputError, match="symbolic link"):
        E.check_out(tmp_path / "link.onnx", "onnx")
    with pytest.raises(E.ExportError, match="is a folder"):
        E.check_out(tmp_path / "empty", "onnx")


@needs_onnx
def test_export_replaces_its_own_previous_export_and_keeps_the_rest(tmp_path, sample_dir):
    from benchmarks.hostile_cases.predict import make_run

    run = make_run(tmp_path / "run")
    wav = sorted((sample_dir / "wav").rglob("*.wav"))[0]
    exports = tmp_path / "exports"
    exports.mkdir()
    (exports / "keep.txt").write_text("mine")
    out = exports / "run.onnx"
    first = E.export(run, "onnx", out, audio=wav)
    stamp = json.loads(first["sidecar"].read_text())["created"]
    E.export(run, "onnx", out, audio=wav)                          # over its own: allowed
    assert json.loads(E.sidecar_path(out).read_text())["kind"] == E.SIDECAR_KIND and stamp
    assert sorted(p.name for p in exports.iterdir()) == ["keep.txt", "run.onnx", "run.onnx.json"]
    assert (exports / "keep.txt").read_text() == "mine"
    E.read_sidecar(out)


# --------------------------------------------------------------------------- item 7: the words
def test_stereo_channels_that_cancel_are_skipped_with_their_own_reason(tmp_path, real_wav):
    anti = antiphase_wav(tmp_path / "anti.wav", real_wav)
    with pytest.raises(AudioError) as err:
        load_audio(anti, 16000)
    assert err.value.reason == "channels_cancel"
    assert "cancel out in the mono mix" in str(err.value) and "one channel" in str(err.value)
    y, sr = sf.read(real_wav, dtype="float32")
    y = np.clip(y, -0.99, 0.99)
    noisy = np.stack([y, -y + np.random.default_rng(0).normal(0, 1e-4, len(y)).astype(np.float32)], axis=1)
    sf.write(tmp_path / "nearly.wav", noisy, sr, subtype="FLOAT")
    with pytest.raises(AudioError, match="dB quieter") as err:
        load_audio(tmp_path / "nearly.wav")
    assert err.value.reason == "channels_cancel"
    sf.write(tmp_path / "stereo.wav", np.stack([y, 0.5 * y], axis=1), sr, subtype="PCM_16")
    assert load_audio(tmp_path / "stereo.wav")[0].shape == y.shape    # an ordinary stereo file
    sf.write(tmp_path / "quiet.wav", np.zeros((sr, 2), np.float32), sr, subtype="PCM_16")
    with pytest.raises(AudioError) as err:
        load_audio(tmp_path / "quiet.wav")
    assert err.value.reason == "silent"                                # silent channels stay "silent"


def test_a_truncated_wav_is_decoded_with_one_warning_naming_the_seconds_missing(tmp_path, real_wav, caplog):
    cut, missing = truncated_wav(tmp_path / "cut.wav", real_wav)
    caplog.set_level(logging.WARNING, "cnnrnn.audio")
    y, sr = load_audio(cut)
    warned = [r.getMessage() for r in caplog.records if "truncated" in r.getMessage()]
    assert len(warned) == 1 and str(cut) in warned[0] and f"{missing:.2f} s missing" in warned[0]
    assert len(y) == sf.info(str(cut)).frames
    caplog.clear()
    load_audio(real_wav)                                               # intact: nothing said
    data = bytearray(real_wav.read_bytes())                            # a streaming writer's placeholder size
    at = data.find(b"data")
    data[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFFF)
    (tmp_path / "streamed.wav").write_bytes(bytes(data))
    load_audio(tmp_path / "streamed.wav")
    assert not [r for r in caplog.records if "truncated" in r.getMessage()]
    info = sf.info(str(cut))
    assert missing_seconds(info, info.frames) == pytest.approx(missing, abs=1e-3)


def test_a_zero_byte_model_file_is_called_empty(tmp_path, real_wav, caplog):
    for name in ("empty.keras", "empty.h5"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(A.CheckpointError, match=r"is empty \(0 bytes\), probably an interrupted copy"):
            A.load_model(tmp_path / name)
    from cnnrnn import keras2

    with pytest.raises(EmptyModelFileError):
        keras2.load_keras_model(tmp_path / "empty.keras")
    caplog.clear()
    assert main(["-q", "predict", "--model", str(tmp_path / "empty.keras"), "--input", str(real_wav),
                 "--out", str(tmp_path / "out")]) == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 1 and "empty (0 bytes)" in lines[0] and "not found" not in lines[0]


def test_a_keras22_lambda_of_another_python_is_named_not_an_eoferror(tmp_path):
    pytest.importorskip("tf_keras")
    path = keras22_lambda_h5(tmp_path / "lambda22.h5")
    with pytest.raises(UnsafeModelError):                              # untrusted: refused as before
        A.load_model(path)
    with pytest.raises(A.CheckpointError) as err:
        A.load_model(path, trust_code=True)
    text = str(err.value)
    assert "another Python version" in text and "Keras 2.2.4" in text and "Python 3.0-3.7" in text
    assert "Rebuild that layer in code" in text and "re-save the model without the Lambda layer" in text
    assert "\n" not in text
    assert bytecode_python(_raw_bytes(PY36_LAMBDA)) == "Python 3.0-3.7"
    py27 = ("YwEAAAABAAAAAgAAAEMAAABzCAAAAHwAAGQBABRTKAIAAABOaQIAAAAoAAAAACgBAAAAdAEAAAB0\nKAAAAAAoAAAAAHMIAAAAPHN0"
            "cmluZz50CAAAADxsYW1iZGE+AgAAAHQAAAAA\n")
    py38 = ("4wEAAAAAAAAAAAAAAAEAAAACAAAAQwAAAHMIAAAAfABkARQAUwApAk7pAgAAAKkAKQHaAXRyAgAA\nAHICAAAA2gg8c3RyaW5nPtoIPGxh"
            "bWJkYT4CAAAA8wAAAAA=\n")
    assert bytecode_python(_raw_bytes(py27)) == "Python 2"
    assert bytecode_python(_raw_bytes(py38)) == "Python 3.8-3.10"


@pytest.mark.skipif(importlib.util.find_spec("onnxruntime") is None, reason="needs onnx and onnxruntime")
def test_labels_that_repeat_are_refused_naming_them(tmp_path, real_wav, caplog):
    model = quick_onnx(tmp_path / "exported", ["anger", "happiness", "happiness", "sadness"])
    with pytest.raises(E.LabelsError, match=r"model\.onnx\.json: the labels repeat \('happiness' at columns 1, 2\)"):
        E.read_sidecar(model)
    caplog.clear()
    out = tmp_path / "out"
    assert main(["-q", "predict", "--model", str(model), "--input", str(real_wav), "--out", str(out)]) == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 1 and "'happiness'" in lines[0] and not (out / "predictions.csv").exists()
    # the user's own labels stand in for the sidecar's, checked against the model's 4 columns
    A.save_json(["a", "b", "c", "d"], tmp_path / "labels.json")
    assert main(["-q", "predict", "--model", str(model), "--input", str(real_wav), "--out", str(out),
                 "--labels", str(tmp_path / "labels.json")]) == 0
    A.save_json(["a", "b", "c"], tmp_path / "three.json")
    with pytest.raises(E.LabelsError, match="3 label"):
        E.predict_run([model], real_wav, out, labels=str(tmp_path / "three.json"), progress=False)
    # a sidecar with 3 labels for 4 columns
    short = quick_onnx(tmp_path / "short", ["anger", "happiness", "sadness"])
    with pytest.raises(E.LabelsError, match="3 label.*4 output column"):
        E.read_sidecar(short)
    assert E.check_labels(["a", "b"], "x", 2) == ["a", "b"]


def test_export_never_writes_a_sidecar_whose_labels_repeat(tmp_path, real_wav):
    from benchmarks.hostile_cases.predict import make_run

    run = make_run(tmp_path / "run")
    labels = ["angry", "happy", "happy", "sad"]
    A.save_json({"labels": labels}, run / A.LABELS_FILE)
    manifest = json.loads((run / "run.json").read_text())
    manifest["labels"] = labels
    (run / "run.json").write_text(json.dumps(manifest))
    out = tmp_path / "export" / "run_savedmodel"
    with pytest.raises(E.LabelsError, match="'happy' at columns 1, 2"):
        E.export(run, "savedmodel", out, audio=real_wav)
    assert not out.exists()
