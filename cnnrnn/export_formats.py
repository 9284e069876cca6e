"""Exported model files (``cnnrnn export``): what a family gives for export (:class:`ExportPlan`), the graph
helpers the families build it with, writing ONNX / TFLite / SavedModel, loading the written file with its own
runtime (:class:`ExportedModel`), and the parity check on real audio.

**Formats** (:data:`cnnrnn.export_sidecar.FORMATS`), through the converters Keras 3's ``Model.export`` drives:
``onnx`` (``tf2onnx.convert.from_function``, captured constants stored as initializers), ``tflite`` (the LiteRT
converter; recurrent layers unrolled, :func:`unrolled`) and ``savedmodel`` (``tf_saved_model``, a folder). A Keras
2 checkpoint loaded with ``tf_keras`` (:func:`library_of`) is converted with ``tf_keras``' own exporter.

Nothing here imports TensorFlow at import time; loading an ONNX file (:func:`load_exported`) imports onnxruntime
only.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .artifacts import LABELS_FILE, _UMASK, load_labels
from .export_sidecar import (EXTRA, EXTRA_MODULES, FORMATS, SUFFIXES, ExportError, MissingExtraError, check_out,
                             export_part, model_inputs)

#: Recordings of the parity check by default (the first ones of the bundled sample, sorted).
PARITY_FILES = 8
SAMPLE_AUDIO = Path(__file__).resolve().parent / "sample" / "kemdy20" / "wav"
_RNN_CLASSES = ("LSTM", "GRU", "SimpleRNN")


# --------------------------------------------------------------------------- what a run gives
@dataclass
class ExportPlan:
    """What a family gives for export (its ``export`` module's ``plan(...)``, called by
    :func:`cnnrnn.export.plan_export`).

    Attributes:
        family: the run's family.
        source: the run folder or checkpoint given.
        checkpoints: the Keras checkpoints, averaged when several.
        labels: class names in output order.
        build: ``build(unroll) -> keras.Model``, the graph to export (RNNs unrolled for TFLite).
        input_name: name of the graph's input.
        reference: ``reference(x) -> (N, n_classes) float32``, the family's own Keras prediction.
        preprocessing: the sidecar's ``preprocessing`` (:func:`cnnrnn.export_sidecar.preprocessing_of`).
        run: provenance for the sidecar (run folder, manifest fields).
    """

    family: str
    source: Path
    checkpoints: list[Path]
    labels: list[str]
    build: Callable[[bool], Any]
    input_name: str
    reference: Callable[[np.ndarray], np.ndarray]
    preprocessing: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)

def config_source(config, run_dir: Path | None, manifest, file_name: str | None, what: str):
    """The config a run was trained with: ``config`` (the user's), else the manifest's (``manifest.config``), else
    the run's own file ``run_dir / file_name``; ``what`` names the run in the message.

    Raises:
        ExportError: none of them (the message says to give ``--config``).
    """
    if config is not None:
        return config
    if manifest is not None:
        return manifest.config
    if run_dir is not None and file_name and (run_dir / file_name).is_file():
        return run_dir / file_name
    raise ExportError(f"{what}: no run.json or {file_name or 'config'} at or above it, so the preprocessing it was "
                      "trained with is unknown; name its config with --config (a preset name or the run's JSON)")


def run_labels(labels, manifest, run_dir: Path | None, what: str) -> list[str]:
    """A run's class names: ``labels`` (names, or a ``labels.json`` path), else the manifest's, else the run's
    ``labels.json``; ``what`` names the run in the message.

    Raises:
        ExportError: none of them (the message says to give ``--labels``).
    """
    if isinstance(labels, (str, Path)):
        return load_labels(labels)
    if labels is not None:
        return list(labels)
    if manifest is not None:
        return list(manifest.labels)
    if run_dir is not None and (run_dir / LABELS_FILE).is_file():
        return load_labels(run_dir / LABELS_FILE)
    raise ExportError(f"{what}: no run.json or {LABELS_FILE} at or above it, so its class names are unknown; give "
                      "them with --labels LABELS_JSON")


def library_of(models: Sequence[Any]):
    """The Keras library of loaded models: ``keras`` (Keras 3), or ``tf_keras`` for a Keras 2 checkpoint that
    :func:`cnnrnn.artifacts.load_model` loaded with it (:mod:`cnnrnn.keras2`); the export graph is built with it.

    Raises:
        ExportError: the checkpoints mix the two.
    """
    names = {type(m).__module__.split(".")[0] for m in models}
    if "tf_keras" in names:
        if len(names) > 1:
            raise ExportError("the checkpoints mix Keras 3 and Keras 2 (tf_keras) models; export them one at a time")
        import tf_keras

        return tf_keras
    import keras

    return keras


def ops_of(lib):
    """``concatenate``, ``reshape`` and ``mean`` on the symbolic tensors of ``lib`` (:func:`library_of`):
    ``keras.ops`` for Keras 3, TensorFlow ops for ``tf_keras`` (which wraps them in layers)."""
    if lib.__name__ != "tf_keras":
        from keras import ops

        return ops
    import types

    import tensorflow as tf

    return types.SimpleNamespace(concatenate=lambda xs, axis: tf.concat(xs, axis), reshape=tf.reshape,
                                 mean=lambda x, axis: tf.reduce_mean(x, axis=axis))


def average_outputs(outputs: list, lib):
    """The mean of the checkpoints' outputs (a ``keras.layers.Average`` named ``average_checkpoints``), or the one
    output itself; ``lib`` is the models' Keras library (:func:`library_of`)."""
    return outputs[0] if len(outputs) == 1 else lib.layers.Average(name="average_checkpoints")(outputs)


def _rename(model, name: str) -> None:
    try:
        model.name = name
    except AttributeError:  # tf_keras: a read-only property
        model._name = name


def load_named(paths: Sequence[Path], labels: list[str] | None, trust_code: bool = False):
    """``(models, input_shape, labels)`` of :func:`cnnrnn.artifacts.load_checkpoints`, the models renamed
    ``checkpoint_1``, ``checkpoint_2``, ... (checkpoints of one run share a model name; one Keras graph needs
    unique ones). Raises what ``load_checkpoints`` raises."""
    from .artifacts import load_checkpoints

    models, shape, labels = load_checkpoints(list(paths), labels, trust_code=trust_code)
    for k, m in enumerate(models):  # checkpoints of one run share a model name: Keras needs unique ones
        _rename(m, f"checkpoint_{k + 1}")
    return models, shape, labels



# --------------------------------------------------------------------------- converting
def _set_unroll(obj: Any) -> Any:
    """Walk a serialised Keras config, setting ``unroll: True`` on every recurrent layer; returns the count."""
    count = 0
    if isinstance(obj, dict):
        if obj.get("class_name") in _RNN_CLASSES and isinstance(obj.get("config"), dict):
            obj["config"]["unroll"] = True
            count += 1
        for value in obj.values():
            count += _set_unroll(value)
    elif isinstance(obj, list):
        for value in obj:
            count += _set_unroll(value)
    return count


def unrolled(model, input_shape: Sequence[int] | None = None):
    """``model`` with every ``LSTM``, ``GRU`` and ``SimpleRNN`` (also inside ``Bidirectional``,
    ``TimeDistributed`` and nested models) rebuilt with ``unroll=True`` and the same weights.

    The TFLite converter cannot lower the ``TensorListReserve`` of a Keras 3 recurrent loop; an unrolled one is
    plain ops for the model's fixed number of time steps (measured: same probabilities within 1.5e-8).

    Args:
        model: a functional Keras model.
        input_shape: the input shape without the batch axis, for a model whose input has a free time axis (the
            DCNN-BLSTMwA head takes any number of segments): the clone's input is fixed to it.

    Returns:
        The model itself when it has no recurrent layer, else a new model.

    Raises:
        ExportError: the model cannot be rebuilt from its config.
    """
    import json

    lib = library_of([model])
    config = json.loads(model.to_json())
    if not _set_unroll(config):
        return model
    if input_shape is not None:
        for layer in config.get("config", {}).get("layers", []):
            if layer.get("class_name") == "InputLayer":
                layer["config"]["batch_shape"] = [None, *[int(v) for v in input_shape]]
    try:
        clone = lib.models.model_from_json(json.dumps(config))
        clone.set_weights(model.get_weights())
    except Exception as exc:
        raise ExportError(f"cannot rebuild {model.name} with unrolled recurrent layers for TFLite "
                          f"({type(exc).__name__}: {exc})") from exc
    _rename(clone, model.name)
    return clone


def require_extra(fmt: str) -> None:
    """Check that the converter and runtime of ``fmt`` are installed.

    Raises:
        MissingExtraError: a module of :data:`EXTRA_MODULES` is missing; the message names the ``export`` extra
            and the modules.
    """
    import importlib.util

    missing = [m for m in EXTRA_MODULES.get(fmt, ()) if importlib.util.find_spec(m) is None]
    if missing:
        raise MissingExtraError(f"{fmt} export needs {', '.join(EXTRA_MODULES[fmt])} (missing: {', '.join(missing)}): "
                                f"pip install 'cnnrnn[{EXTRA}]'")


def _temporary(out: Path, fmt: str) -> Path:
    """A new temporary path beside ``out`` that :func:`cnnrnn.artifacts.is_temporary` recognises
    (``.<stem>.XXXX.tmp.onnx``; a folder ``.<name>.XXXX.tmp`` for a SavedModel), created empty: a name of its own,
    so that no file already there is overwritten or removed."""
    import tempfile

    suffix = SUFFIXES[fmt]
    stem = out.name[:-len(suffix)] if suffix and out.name.lower().endswith(suffix) else out.name
    if fmt == "savedmodel":
        path = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=out.parent))
        os.chmod(path, 0o777 & ~_UMASK)  # mkdtemp makes 0700: the usual permissions once it is moved into place
        return path
    fd, name = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=out.parent)
    os.close(fd)
    os.chmod(name, 0o666 & ~_UMASK)  # mkstemp makes 0600
    return Path(name)


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished export into place; a SavedModel folder replaces a previous export of ours (checked by
    :func:`check_out` just before), moved aside first under a temporary name of its own, then removed."""
    if tmp.is_dir():
        old = None
        if out.exists():
            import tempfile

            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", suffix=".tmp", dir=out.parent))
            os.replace(out, old)  # onto the empty folder just made
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


@contextlib.contextmanager
def quiet_loggers(names: Sequence[str] = ("tf2onnx", "absl", "tensorflow")):
    """The Python loggers ``names`` at ERROR for the block (tf2onnx's INFO lines, Keras' retracing notes)."""
    levels = {n: logging.getLogger(n).level for n in names}
    for n in names:
        logging.getLogger(n).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for n, level in levels.items():
            logging.getLogger(n).setLevel(level)


@contextlib.contextmanager
def _quiet_converters():
    """The converters' chatter off the terminal: Python loggers at ERROR, their stdout prints dropped, and the
    native lines the TFLite converter writes to descriptor 2 (``Reading SavedModel``, ``Ignored output_format``)
    held back, and replayed only when the conversion fails (:func:`cnnrnn.quiet.stderr_redirected`)."""
    import io

    from .quiet import stderr_redirected

    with quiet_loggers(), contextlib.redirect_stdout(io.StringIO()), stderr_redirected():
        yield


#: The output name of an exported ONNX graph.
ONNX_OUTPUT = "probabilities"


def _write_onnx(graph, path: Path) -> None:
    """``graph`` → ONNX with ``tf2onnx.convert.from_function``, as Keras' ``export(format="onnx")`` does, plus two
    fixes: tensors a layer made eagerly and the traced function captures (e.g. ``Normalization(mean=...)``: the
    ImageNet means of a ResNet50 or DCNN input) would become extra graph inputs; they are stored as initializers.
    The output is named :data:`ONNX_OUTPUT`."""
    import onnx
    import tensorflow as tf
    import tf2onnx
    from onnx import numpy_helper

    import warnings

    try:  # tf2onnx 1.17 still uses names numpy 2 removed; Keras' exporter patches them the same way
        from keras.src.export.tf2onnx_lib import patch_tf2onnx

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # the patch's own probe of np.object
            patch_tf2onnx()
    except ImportError:  # pragma: no cover  (a Keras without the patch)
        pass
    name = graph.inputs[0].name.split(":")[0]
    spec = [tf.TensorSpec((None, *graph.input_shape[1:]), tf.float32, name=name)]
    fn = tf.function(lambda x: graph(x, training=False), input_signature=spec)
    captured = {}
    for outer, inner in fn.get_concrete_function(*spec).graph.captures:
        if outer.dtype != tf.resource and hasattr(outer, "numpy"):
            captured[inner.name] = outer.numpy()
    proto, _ = tf2onnx.convert.from_function(fn, input_signature=spec)
    used = {i for node in proto.graph.node for i in node.input}
    inputs = [i for i in proto.graph.input if i.name not in captured]
    for key, value in captured.items():
        if key in used:
            proto.graph.initializer.append(numpy_helper.from_array(np.asarray(value), key))
    del proto.graph.input[:]
    proto.graph.input.extend(inputs)
    old = proto.graph.output[0].name
    for node in proto.graph.node:
        node.output[:] = [ONNX_OUTPUT if o == old else o for o in node.output]
        node.input[:] = [ONNX_OUTPUT if i == old else i for i in node.input]
    proto.graph.output[0].name = ONNX_OUTPUT
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


def write_model(graph, out: str | Path, fmt: str) -> Path:
    """Export a Keras graph to ``out`` in ``fmt`` (written beside it under a temporary name of its own, then
    moved into place). An existing ``out`` is replaced only when it is a previous export of ours
    (:func:`check_out`, checked before converting and again before the move).

    Raises:
        MissingExtraError: ``onnx`` without the ``export`` extra. ExportError: the converter failed.
        NotOurOutputError: ``out`` (or its sidecar path) is not ours; nothing was written.
    """
    out = Path(out)
    require_extra(fmt)
    check_out(out, fmt)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(out, fmt)
    keras_format = {"onnx": "onnx", "tflite": "litert", "savedmodel": "tf_saved_model"}[fmt]
    try:
        with _quiet_converters():
            if fmt == "onnx":
                _write_onnx(graph, tmp)
            elif library_of([graph]).__name__ != "tf_keras":
                graph.export(str(tmp), format=keras_format, verbose=False)
            elif fmt == "savedmodel":  # a Keras 2 checkpoint loaded by tf_keras: its own exporter
                graph.export(str(tmp))
            else:
                import tensorflow as tf

                tmp.write_bytes(tf.lite.TFLiteConverter.from_keras_model(graph).convert())
    except Exception as exc:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise ExportError(f"the {fmt} converter failed on {graph.name} ({type(exc).__name__}: "
                          f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc!r})") from exc
    try:
        check_out(out, fmt)  # again: the conversion took a while
    except ExportError:
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        raise
    _replace(tmp, out)
    return out


# --------------------------------------------------------------------------- running an exported model
class ExportedModel:
    """An exported model loaded by its own runtime: ``predict(x) -> (N, n_classes) float32``.

    ONNX runs with ``onnxruntime`` alone (no TensorFlow is imported); TFLite with ``ai_edge_litert`` when it is
    installed, else ``tf.lite.Interpreter``; a SavedModel with ``tf.saved_model.load`` (its ``serving_default``
    signature).

    Attributes:
        format: one of :data:`FORMATS`. path: the file or folder. runtime: the runtime and its version.
        input_name, input_shape, output_name: as the runtime reports them (``None`` for a free axis).
        output_width: the number of output columns (classes) the runtime reports, ``None`` when it does not say.
    """

    def __init__(self, path: str | Path, fmt: str | None = None):
        self.path = Path(path)
        self.format = fmt or guess_format(self.path)
        if self.format == "onnx":
            from .quiet import import_onnxruntime

            require_extra("onnx")
            ort = import_onnxruntime()

            self._session = ort.InferenceSession(str(self.path), providers=["CPUExecutionProvider"])
            i, o = self._session.get_inputs()[0], self._session.get_outputs()[0]
            self.input_name, self.output_name = i.name, o.name
            self.input_shape = [d if isinstance(d, int) else None for d in i.shape]
            self.output_width = o.shape[-1] if o.shape and isinstance(o.shape[-1], int) else None
            self.runtime = f"onnxruntime {ort.__version__}"
        elif self.format == "tflite":
            self._interpreter, self.runtime = _tflite_interpreter(self.path)
            detail = self._interpreter.get_input_details()[0]
            self.input_name = detail["name"]
            output = self._interpreter.get_output_details()[0]
            self.output_name = output["name"]
            self.input_shape = [None if int(d) < 0 else int(d) for d in detail["shape_signature"]]
            width = int(output["shape_signature"][-1]) if len(output["shape_signature"]) else -1
            self.output_width = width if width > 0 else None
        elif self.format == "savedmodel":
            import tensorflow as tf

            self._loaded = tf.saved_model.load(str(self.path))
            self._fn = self._loaded.signatures["serving_default"]
            spec = list(self._fn.structured_input_signature[1].values())[0]
            self.input_name = spec.name
            self.input_shape = [None if d is None else int(d) for d in spec.shape]
            self.output_name = list(self._fn.structured_outputs)[0]
            width = self._fn.structured_outputs[self.output_name].shape[-1]
            self.output_width = None if width is None else int(width)
            self.runtime = f"tensorflow {tf.__version__} (saved_model.load)"
        else:
            raise ExportError(f"unknown export format {self.format!r}; choose one of {FORMATS}")

    def predict(self, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Class probabilities ``(N, n_classes) float32`` of model inputs ``x`` ``(N, ...) float32``."""
        x = np.asarray(x, np.float32)
        out = [self._run(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        if self.format == "onnx":
            return self._session.run(None, {self.input_name: x})[0]
        if self.format == "tflite":
            from .quiet import stderr_redirected

            it = self._interpreter
            index = it.get_input_details()[0]["index"]
            with stderr_redirected():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                it.resize_tensor_input(index, list(x.shape))
                it.allocate_tensors()
                it.set_tensor(index, x)
                it.invoke()
            return it.get_tensor(it.get_output_details()[0]["index"]).copy()
        import tensorflow as tf

        return self._fn(tf.constant(x))[self.output_name].numpy()


def _tflite_interpreter(path: Path):
    try:
        from ai_edge_litert.interpreter import Interpreter  # the successor of tf.lite.Interpreter
        from importlib.metadata import version

        return Interpreter(model_path=str(path)), f"ai-edge-litert {version('ai-edge-litert')}"
    except ImportError:
        import warnings

        import tensorflow as tf

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated": ai-edge-litert is its successor
            return tf.lite.Interpreter(model_path=str(path)), f"tensorflow {tf.__version__} (tf.lite.Interpreter)"


def guess_format(path: str | Path) -> str:
    """The format of an exported model from its path: ``.onnx``, ``.tflite``, or a folder (SavedModel).

    Raises:
        ExportError: none of these.
    """
    path = Path(path)
    if path.is_dir():
        return "savedmodel"
    for fmt, suffix in SUFFIXES.items():
        if suffix and path.suffix.lower() == suffix:
            return fmt
    raise ExportError(f"{path}: not an exported model (.onnx, .tflite or a SavedModel folder)")


def load_exported(path: str | Path, fmt: str | None = None) -> ExportedModel:
    """Load an exported model with its runtime (:class:`ExportedModel`); ``fmt`` default: from the path."""
    return ExportedModel(path, fmt)


# --------------------------------------------------------------------------- parity
def parity_audio(audio: str | Path | Sequence[str | Path] | None = None, limit: int = PARITY_FILES) -> list[Path]:
    """The recordings of the parity check: audio files, or the first ``limit`` (sorted) under a folder; default
    the bundled sample's.

    Raises:
        FileNotFoundError: a path does not exist. ExportError: no audio file found.
    """
    from .audio import AUDIO_EXTENSIONS, list_audio

    sources = [SAMPLE_AUDIO] if audio is None else [audio] if isinstance(audio, (str, Path)) else list(audio)
    files: list[Path] = []
    for s in map(Path, sources):
        if not s.exists():
            raise FileNotFoundError(f"parity audio {s} not found")
        files += list_audio(s)[:limit] if s.is_dir() else [s] if s.suffix.lower() in AUDIO_EXTENSIONS else []
    if not files:
        raise ExportError(f"no audio file ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, sources))} for the "
                          "parity check")
    return files


def check_parity(plan: ExportPlan, runner: ExportedModel, files: Sequence[Path], tolerance: float,
                 batch_size: int = 16) -> dict[str, Any]:
    """Compare the exported model with the family's Keras prediction on model inputs made from ``files``.

    The inputs come from the sidecar's description (:func:`cnnrnn.export_sidecar.model_inputs` of
    ``plan.preprocessing``), so the check covers the sidecar too; files without a speaker use utterance
    normalisation in a ``speaker`` run (the warnings of the family's ``export`` module's ``LOGGERS`` are held
    below ERROR meanwhile).

    Returns:
        ``{"files": n, "audio": [paths used], "skipped": {...}, "normalization": [...], "max_abs_diff": float,
        "mean_abs_diff": float, "tolerance": float, "passed": bool, "same_predictions": bool (same top class),
        "runtime": str, "reference": str}``.

    Raises:
        ValueError: no usable audio among ``files``.
    """
    # "no speaker: utterance normalisation" is what the parity check means to use: the family's loggers that say so
    with quiet_loggers(getattr(export_part(plan.family), "LOGGERS", ())):
        inputs = model_inputs(plan.preprocessing, files)
    x = inputs.x
    expected = np.asarray(plan.reference(x), np.float32)
    got = runner.predict(x, batch_size)
    if got.shape != expected.shape:
        raise ExportError(f"the exported model gives outputs of shape {got.shape}, the Keras model {expected.shape}")
    diff = np.abs(got.astype(np.float64) - expected)
    worst = float(diff.max())
    return {"files": len(inputs.ids), "audio": inputs.sources, "skipped": inputs.skipped,
            "normalization": sorted(set(inputs.normalization)) if inputs.normalization else None,
            "max_abs_diff": worst,
            "mean_abs_diff": float(diff.mean()), "tolerance": tolerance, "passed": bool(worst <= tolerance),
            "same_predictions": bool((got.argmax(1) == expected.argmax(1)).all()), "runtime": runner.runtime,
            "reference": f"cnnrnn.{plan.family} Keras prediction (as cnnrnn predict)"}


