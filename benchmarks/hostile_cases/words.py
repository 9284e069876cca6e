"""Hostile-input cases 60-66 of issue 21 (items 1 and 7): exact words for bad input, and ``cnnrnn export`` never
replacing what it did not write (see :mod:`._common`).

The inputs are built here from the bundled sample's real EmoDB recordings: a stereo file of a recording and its
negation, a wav cut short under its full-length header, a zero-byte ``.keras``, a Keras 2.2 ``.h5`` whose
``Lambda`` holds Python 3.6 bytecode, an ONNX model whose sidecar repeats a label, and folders of a user's files.
The builders are shared with ``tests/test_words.py``.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import struct
import warnings
from pathlib import Path

from ._common import case, cli, error_text, errors, files, lost, outside, sample_wavs, snapshot

#: ``marshal.dumps((lambda t: t * 2).__code__)`` as Python 3.6.15 writes it, base64 as Keras 2.2 stores a Lambda's
#: function (``func_dump``): the bytecode of a Keras 2.2.4 file saved under Python 3.6.
PY36_LAMBDA = ("4wEAAAAAAAAAAQAAAAIAAABDAAAAcwgAAAB8AGQBFABTACkCTukCAAAAqQApAdoBdHICAAAAcgIA\n"
               "AADaCDxzdHJpbmc+2gg8bGFtYmRhPgIAAABzAAAAAA==\n")
QUICK_LABELS = ["anger", "happiness", "neutral", "sadness"]
QUICK_SPECTROGRAM = {"n_mels": 32, "n_fft": 512, "hop_length": 256, "duration": 2.0, "image_size": [32, 64],
                     "colormap": "magma"}


# --------------------------------------------------------------------------- builders (shared with the tests)
def antiphase_wav(path: Path, source: Path | None = None) -> Path:
    """A 16-bit stereo wav whose right channel is the left one negated (a real recording): the mono mix is 0."""
    import numpy as np
    import soundfile as sf

    y, sr = sf.read(str(source or sample_wavs(1)[0]), dtype="float32")
    y = np.clip(y, -0.99, 0.99)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.stack([y, -y], axis=1), sr, subtype="PCM_16")
    return path


def truncated_wav(path: Path, source: Path | None = None, keep: float = 0.5) -> tuple[Path, float]:
    """A copy of a real wav cut to ``keep`` of its data, its header unchanged (it still promises the whole
    recording), as an interrupted copy leaves it. Returns ``(path, seconds missing)``."""
    import soundfile as sf

    source = source or sample_wavs(1)[0]
    data = source.read_bytes()
    at = data.find(b"data")
    size = struct.unpack("<I", data[at + 4:at + 8])[0]
    info = sf.info(str(source))
    block = info.channels * 2  # 16-bit PCM
    kept = int(size * keep) // block * block
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:at + 8 + kept])
    return path, (size - kept) / block / info.samplerate


def keras22_lambda_h5(path: Path) -> Path:
    """A Keras 2 ``.h5`` (32x64x3 image → Lambda → 4-way softmax) whose Lambda's function is Python 3.6 bytecode
    (:data:`PY36_LAMBDA`) and whose attributes say Keras 2.2.4, as a Keras 2.2 file saved under Python 3.6 is.
    Written by ``tf_keras``, then its ``model_config`` edited (no Python 3.6 here to write a real one)."""
    import h5py
    import tf_keras

    L = tf_keras.layers
    inputs = L.Input((32, 64, 3))
    x = L.Lambda(lambda t: t * 2)(inputs)
    x = L.GlobalAveragePooling2D()(x)
    model = tf_keras.Model(inputs, L.Dense(len(QUICK_LABELS), activation="softmax")(x))
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():  # the legacy HDF5 format is the point
        warnings.simplefilter("ignore", UserWarning)
        model.save(str(path))
    with h5py.File(path, "r+") as h5:
        config = json.loads(h5.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "Lambda":
                layer["config"]["function"] = [PY36_LAMBDA, None, None]
                layer["config"].pop("module", None)
        h5.attrs["model_config"] = json.dumps(config)
        h5.attrs["keras_version"] = "2.2.4"
        h5.attrs["backend"] = "tensorflow"
    return path


def quick_onnx(folder: Path, labels: list[str]) -> Path:
    """``model.onnx`` (mean BGR colour → 3×4 linear → softmax for 32×64 images, built with ``onnx.helper``) and its
    sidecar ``model.onnx.json`` with ``labels`` as written, repeats and all."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from cnnrnn import artifacts as A
    from cnnrnn import export as E
    from cnnrnn.cnnrnn.config import load_config

    weights = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32) / 20
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], [E.ONNX_OUTPUT], axis=-1)],
        "quick", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 32, 64, 3])],
        [helper.make_tensor_value_info(E.ONNX_OUTPUT, TensorProto.FLOAT, [None, 4])],
        initializer=[numpy_helper.from_array(weights, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    spec = load_config({"spectrogram": QUICK_SPECTROGRAM}).spectrogram
    A.save_json({"kind": E.SIDECAR_KIND, "schema_version": E.SIDECAR_SCHEMA, "format": "onnx", "model": path.name,
                 "family": "cnnrnn", "labels": list(labels),
                 "model_output": {"name": E.ONNX_OUTPUT, "shape": [None, 4], "dtype": "float32"},
                 "preprocessing": E.preprocessing_of("cnnrnn", spec, image=(32, 64))}, E.sidecar_path(path))
    return path


def user_files(root: Path) -> dict[Path, str]:
    """A folder of a user's files (notes, a recording, a nested folder, a hidden file) under ``root/mine``, a
    user's ``mine.onnx`` with no sidecar, and a user's ``theirs.onnx.json`` that is not a sidecar. Returns
    ``{path: sha256}`` of every file, to check them afterwards (:func:`unchanged`)."""
    folder = root / "mine"
    (folder / "drafts").mkdir(parents=True)
    (folder / "notes.txt").write_text("my notes\n", encoding="utf-8")
    (folder / ".settings").write_text("{}\n", encoding="utf-8")
    (folder / "drafts" / "v1.txt").write_text("draft\n", encoding="utf-8")
    shutil.copy(sample_wavs(1)[0], folder / "take1.wav")
    (root / "mine.onnx").write_bytes(b"not an export of cnnrnn")
    (root / "theirs.onnx.json").write_text(json.dumps({"labels": ["a", "b"], "note": "my own JSON"}),
                                           encoding="utf-8")
    return {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files(root)}


def unchanged(hashes: dict[Path, str], root: Path) -> list[str]:
    """What changed since :func:`user_files`: files gone, altered or added under ``root`` (names relative to it)."""
    now = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files(root)}
    changed = [f"gone: {p.relative_to(root)}" for p in hashes if p not in now]
    changed += [f"altered: {p.relative_to(root)}" for p in hashes if p in now and now[p] != hashes[p]]
    changed += [f"added: {p.relative_to(root)}" for p in now if p not in hashes]
    return sorted(changed)


def _audio(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for w in sample_wavs(n):
        shutil.copy(w, folder / w.name)
    return folder


# --------------------------------------------------------------------------- the cases
@case(60, "`export` onto a user's folder or file",
      "`export --model emodb --format savedmodel --out DIR` on a folder of the user's files; `--format onnx --out` "
      "a user's `.onnx` (no sidecar); an `--out` whose sidecar path is a user's JSON",
      "exit 2 each, one line naming the path (choose another --out or remove it); every user file still there, "
      "byte-identical; nothing written")
def case_60(tmp: Path) -> dict:
    """Export onto a user's folder, a user's .onnx and a user's JSON at the sidecar path: refused, nothing
    touched."""
    hashes = user_files(tmp)
    before = snapshot(tmp)
    runs = [("savedmodel", tmp / "mine"), ("onnx", tmp / "mine.onnx"), ("onnx", tmp / "theirs.onnx")]
    observed, ok = [], True
    for fmt, out in runs:
        code, _, logs = cli("export", "--model", "emodb", "--format", fmt, "--out", out)
        lines = errors(logs)
        observed.append(f"{out.name}: exit {code}; {lines[0] if lines else 'no error line'}")
        ok &= code == 2 and len(lines) == 1 and str(out.name) in lines[0] and "choose another --out" in lines[0]
    changed = unchanged(hashes, tmp)
    ok &= not changed and not (tmp / "theirs.onnx").exists()
    observed.append(f"user files unchanged: {not changed} {changed if changed else ''}".strip())
    return {"observed": " | ".join(observed), "passed": bool(ok), "data_loss": lost(before),
            "outside_writes": outside(set(before), tmp)}


@case(61, "Stereo channels that cancel",
      "`predict` a folder of a real recording and a stereo file of that recording and its negation (mono mix 0)",
      "the stereo file skipped as `channels_cancel`, its line saying the channels cancel and to use one channel; "
      "the other file predicted")
def case_61(tmp: Path) -> dict:
    """A stereo file whose channels are in antiphase: skipped with its own reason and words, not 'silent'."""
    from .predict import make_run

    run = make_run(tmp / "run")
    folder = _audio(tmp / "in", 1)
    antiphase_wav(folder / "antiphase.wav")
    before, out = files(tmp), tmp / "out"
    code, stdout, logs = cli("predict", "--model", run, "--input", folder, "--out", out)
    line = next((x for x in logs.splitlines() if "antiphase.wav" in x), "")
    table = out / "predictions.csv"
    rows = table.read_text(encoding="utf-8").count("\n") - 1 if table.is_file() else 0
    ok = (code == 0 and rows == 1 and '"channels_cancel"' in stdout and "cancel out in the mono mix" in line
          and "one channel" in line and "silent (peak" not in line)
    return {"observed": f"exit {code}; {rows} row(s); {line}", "passed": bool(ok),
            "outside_writes": outside(before, tmp, out)}


@case(62, "A wav cut short under its header",
      "`predict` a copy of a real wav cut to half its data, its header still promising the whole recording",
      "predicted from the audio it holds, with one warning naming the file and the seconds missing")
def case_62(tmp: Path) -> dict:
    """A truncated wav: decoded as far as it goes, one warning with the seconds missing."""
    from .predict import make_run

    run = make_run(tmp / "run")
    wav, missing = truncated_wav(tmp / "in" / "cut.wav")
    before, out = files(tmp), tmp / "out"
    code, _, logs = cli("predict", "--model", run, "--input", wav.parent, "--out", out)
    warned = [x for x in logs.splitlines() if "truncated" in x and "cut.wav" in x]
    table = out / "predictions.csv"
    rows = table.read_text(encoding="utf-8").count("\n") - 1 if table.is_file() else 0
    ok = code == 0 and rows == 1 and len(warned) == 1 and f"{missing:.2f} s missing" in warned[0]
    return {"observed": f"exit {code}; {rows} row(s); {len(warned)} warning: {warned[0] if warned else ''}",
            "passed": bool(ok), "outside_writes": outside(before, tmp, out)}


@case(63, "A zero-byte `.keras` model",
      "`predict --model empty.keras` (0 bytes, an interrupted download)",
      "exit 2, one line: the file is empty (0 bytes), probably an interrupted copy or download")
def case_63(tmp: Path) -> dict:
    """A zero-byte .keras: 'empty (0 bytes)', not 'not found'."""
    model = tmp / "empty.keras"
    model.write_bytes(b"")
    audio = _audio(tmp / "in", 1)
    before, out = files(tmp), tmp / "out"
    code, _, logs = cli("predict", "--model", model, "--input", audio, "--out", out)
    lines = errors(logs)
    ok = (code == 2 and len(lines) == 1 and "empty (0 bytes)" in lines[0] and "interrupted" in lines[0]
          and "not found" not in lines[0])
    return {"observed": f"exit {code}; {error_text(logs)}", "passed": bool(ok),
            "outside_writes": outside(before, tmp, out)}


@case(64, "A Keras 2.2 Lambda of another Python",
      "`predict --trust-code --model` a Keras 2.2.4 `.h5` whose Lambda holds Python 3.6 bytecode",
      "exit 2, one line: the Lambda holds bytecode of another Python version (3.0-3.7 by its layout, Keras 2.2.4), "
      "cannot run here; rebuild the layer in code or re-save without it; no EOFError")
def case_64(tmp: Path) -> dict:
    """Python 3.6 bytecode in a trusted Lambda: named, instead of a bare EOFError."""
    model = keras22_lambda_h5(tmp / "old" / "lambda22.h5")
    audio = _audio(tmp / "in", 1)
    before, out = files(tmp), tmp / "out"
    code, _, logs = cli("predict", "--trust-code", "--model", model, "--input", audio, "--out", out)
    lines = errors(logs)
    ok = (code == 2 and len(lines) == 1 and "another Python version" in lines[0] and "Python 3.0-3.7" in lines[0]
          and "Keras 2.2.4" in lines[0] and "Rebuild that layer" in lines[0])
    return {"observed": f"exit {code}; {error_text(logs)}", "passed": bool(ok),
            "outside_writes": outside(before, tmp, out)}


@case(65, "Labels that repeat",
      "`predict --model model.onnx` whose sidecar's labels are anger, happiness, happiness, sadness; `export` of a "
      "run whose labels.json repeats a label",
      "exit 2 each, one line naming the sidecar (the run) and the repeated label; no predictions, no export written")
def case_65(tmp: Path) -> dict:
    """A sidecar (and a run) whose labels repeat: refused with the repeated label named; export writes nothing."""
    from cnnrnn import artifacts as A

    from .predict import make_run

    model = quick_onnx(tmp / "exported", ["anger", "happiness", "happiness", "sadness"])
    audio = _audio(tmp / "in", 1)
    run = make_run(tmp / "run")
    labels = ["angry", "happy", "happy", "sad"]
    A.save_json({"labels": labels}, run / A.LABELS_FILE)
    manifest = json.loads((run / "run.json").read_text(encoding="utf-8"))
    manifest["labels"] = labels
    (run / "run.json").write_text(json.dumps(manifest), encoding="utf-8")
    before, out, export_out = files(tmp), tmp / "out", tmp / "export" / "run.onnx"
    observed, ok = [], True
    code, _, logs = cli("predict", "--model", model, "--input", audio, "--out", out)
    lines = errors(logs)
    observed.append(f"predict: exit {code}; {lines[0] if lines else 'no error line'}")
    ok &= code == 2 and len(lines) == 1 and "model.onnx.json" in lines[0] and "'happiness'" in lines[0]
    ok &= not (out / "predictions.csv").exists()
    code, _, logs = cli("export", "--model", run, "--format", "onnx", "--out", export_out, "--audio", audio)
    lines = errors(logs)
    observed.append(f"export: exit {code}; {lines[0] if lines else 'no error line'}")
    ok &= code == 2 and len(lines) == 1 and "'happy'" in lines[0] and "repeat" in lines[0]
    ok &= not export_out.parent.exists() or not any(export_out.parent.iterdir())
    return {"observed": " | ".join(observed), "passed": bool(ok),
            "outside_writes": outside(before, tmp, out, export_out.parent)}


@case(66, "`export` over its own previous export",
      "`export --format onnx` twice to one `--out`, and `--format savedmodel` into an empty folder and again over it",
      "each run exits 0 and replaces the previous export of ours; the folder beside holds only the exports")
def case_66(tmp: Path) -> dict:
    """The other side of case 60: a previous export of ours (its sidecar beside it) and an empty folder are
    written."""
    from .predict import make_run

    run = make_run(tmp / "run")
    audio = sample_wavs(1)[0]
    exports = tmp / "exports"
    (exports / "sm").mkdir(parents=True)  # an empty folder: fine
    before = files(tmp)
    observed, ok = [], True
    for fmt, out in (("onnx", exports / "run.onnx"), ("onnx", exports / "run.onnx"), ("savedmodel", exports / "sm"),
                     ("savedmodel", exports / "sm")):
        code, _, logs = cli("export", "--model", run, "--format", fmt, "--out", out, "--audio", audio)
        observed.append(f"{fmt} {out.name}: exit {code} {error_text(logs)}".strip())
        ok &= code == 0
    names = sorted(p.name for p in exports.iterdir())
    ok &= names == ["run.onnx", "run.onnx.json", "sm"]
    ok &= json.loads((exports / "sm" / "export.json").read_text(encoding="utf-8"))["format"] == "savedmodel"
    observed.append(f"left: {', '.join(names)}")
    return {"observed": " | ".join(observed), "passed": bool(ok), "outside_writes": outside(before, tmp, exports)}
