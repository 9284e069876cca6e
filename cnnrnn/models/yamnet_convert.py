"""Convert YAMNet's TFLite file into weights for the Keras YAMNet (:func:`cnnrnn.models.yamnet.build_yamnet`).

YAMNet (``tensorflow/models`` ``research/audioset/yamnet``) is MobileNetV1 (Howard et al. 2017,
arXiv:1704.04861) trained by Google on AudioSet (Gemmeke et al. 2017; the recipe of Hershey et al. 2017).
The only copy of its weights available here is a TFLite file with dynamic-range quantisation: int8
weights with one scale per tensor (or per channel), batch norm folded into the convolutions. This tool
reads it with ``tf.lite.Interpreter``, checks that it is that model (inputs, outputs, the op sequence and
every weight's shape), dequantises each weight (``(q - zero_point) · scale``), transposes it to the Keras
layout and writes a ``.weights.h5`` (atomically). The package never ships nor downloads the file: a config
names a local copy.

It also measures how well the Keras model agrees with the interpreter (:func:`agreement`): the plain
interpreter (no XNNPACK delegate) is the reference; the Keras model with
``int8_rounding=True`` reproduces the interpreter's run-time rounding of activations, the float model
(what fine-tuning uses) agrees less closely.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from ..artifacts import is_temporary

# Keras, TensorFlow and the audio stack are imported inside the functions: the CLI imports this module to
# build its parser.

INPUT_TENSOR = "input_1"
SCORES_TENSOR = "Identity"
LOG_MEL_TENSOR = "Identity_1"
EMBEDDING_TENSOR = "yamnet_frames/global_average_pooling2d/Mean"
WINDOW_SAMPLES = 15600          # 0.975 s at 16 kHz: one 96-frame patch
WINDOW_HOP = 7680               # 0.48 s, YAMNet's patch hop
N_DFT_OPS = 3                   # FULLY_CONNECTED ops of the front end: real DFT, imaginary DFT, mel matrix
#: Real speech bundled with the package (EmoDB utterances at 16 kHz in KEMDy20 layout), for the check.
SAMPLE_WAVS = Path(__file__).resolve().parents[1] / "sample" / "kemdy20" / "wav"


class YamnetFileError(ValueError):
    """The file is not the YAMNet TFLite model this converter expects (or not a TFLite file at all)."""


def _error(path, why: str) -> YamnetFileError:
    return YamnetFileError(f"{path} is not the YAMNet TFLite model (yamnet.tflite of research/audioset/yamnet, "
                           f"input 'input_1' (1, 15600) float32 waveform): {why}")


def open_interpreter(tflite_path: str | Path):
    """The plain TFLite interpreter of ``tflite_path`` (no XNNPACK delegate, all tensors kept), allocated.

    The plain kernels are the reference: XNNPACK rounds differently. ``experimental_preserve_all_tensors``
    lets the embedding (an intermediate tensor) be read after ``invoke``.

    Raises:
        FileNotFoundError: no such file.
        YamnetFileError: not a TFLite flatbuffer.
    """
    import tensorflow as tf

    path = Path(tflite_path)
    if not path.is_file():
        raise FileNotFoundError(f"YAMNet TFLite file {path} does not exist")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated" (still the TF 2.21 interpreter)
        try:
            interpreter = tf.lite.Interpreter(
                model_path=str(path), experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise _error(path, f"TFLite cannot read it ({str(exc).strip().splitlines()[0]})") from exc
    return interpreter


def _dequantize(interpreter, index: int, details: dict) -> np.ndarray:
    """A constant tensor as float32: ``(q - zero_point) · scale`` per tensor or per channel."""
    d = details[index]
    value = interpreter.get_tensor(index)
    if d["dtype"] == np.float32:
        return value.astype(np.float32)
    q = d["quantization_parameters"]
    scales, zeros = np.asarray(q["scales"], np.float32), np.asarray(q["zero_points"], np.float32)
    if scales.size == 0:
        raise ValueError(f"tensor {d['name']!r} is {d['dtype'].__name__} without quantisation parameters")
    if scales.size > 1:  # per channel along quantized_dimension
        shape = [1] * value.ndim
        shape[q["quantized_dimension"]] = scales.size
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return ((value.astype(np.float32) - zeros) * scales).astype(np.float32)


def _expected_shapes() -> list[tuple[str, str, tuple, tuple]]:
    """``(keras layer, kind, tflite weight shape, bias shape)`` of every weighted op after the front end."""
    from .yamnet import EMBEDDING_SIZE, NUM_CLASSES, YAMNET_LAYERS

    out, channels = [], 1
    for k, (kind, _, filters) in enumerate(YAMNET_LAYERS, start=1):
        if kind == "conv":
            out.append((f"layer{k}_conv", "CONV_2D", (filters, 3, 3, channels), (filters,)))
        else:
            out.append((f"layer{k}_depthwise", "DEPTHWISE_CONV_2D", (1, 3, 3, channels), (channels,)))
            out.append((f"layer{k}_pointwise", "CONV_2D", (filters, 1, 1, channels), (filters,)))
        channels = filters
    out.append(("logits", "FULLY_CONNECTED", (NUM_CLASSES, EMBEDDING_SIZE), (NUM_CLASSES,)))
    return out


def _check_io(interpreter, path) -> dict:
    from .yamnet import EMBEDDING_SIZE, NUM_CLASSES, PATCH_BANDS, PATCH_FRAMES

    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    by_name = {d["name"]: d for d in details.values()}
    want = {INPUT_TENSOR: (1, WINDOW_SAMPLES), SCORES_TENSOR: (1, NUM_CLASSES),
            LOG_MEL_TENSOR: (PATCH_FRAMES, PATCH_BANDS), EMBEDDING_TENSOR: (1, EMBEDDING_SIZE)}
    for name, shape in want.items():
        if name not in by_name:
            raise _error(path, f"it has no tensor {name!r}")
        got = tuple(int(v) for v in by_name[name]["shape"])
        if got != shape or by_name[name]["dtype"] != np.float32:
            raise _error(path, f"tensor {name!r} is {got} {by_name[name]['dtype'].__name__}, expected {shape} "
                               "float32")
    inputs = [d["name"] for d in interpreter.get_input_details()]
    outputs = sorted(d["name"] for d in interpreter.get_output_details())
    if inputs != [INPUT_TENSOR] or outputs != sorted([SCORES_TENSOR, LOG_MEL_TENSOR]):
        raise _error(path, f"inputs {inputs} and outputs {outputs}, expected ['input_1'] and "
                           "['Identity', 'Identity_1']")
    return details


def read_weights(interpreter, path: str | Path = "<interpreter>") -> dict[str, list[np.ndarray]]:
    """The Keras YAMNet's weights from an allocated YAMNet interpreter, dequantised, in Keras layout.

    The weighted ops are taken in graph order (3 ``FULLY_CONNECTED`` of the log-mel front end, skipped;
    ``CONV_2D``; 13 × (``DEPTHWISE_CONV_2D``, ``CONV_2D``); ``FULLY_CONNECTED`` head). A depthwise kernel
    stored in int8 reaches its op through a ``DEQUANTIZE`` op, which is followed back to the int8 tensor.
    Layouts: ``CONV_2D`` ``(out, kh, kw, in)`` → ``(kh, kw, in, out)``; ``DEPTHWISE_CONV_2D`` ``(1, kh, kw,
    C)`` → ``(kh, kw, C, 1)``; ``FULLY_CONNECTED`` ``(out, in)`` → ``(in, out)``.

    Returns:
        ``{keras layer name: [kernel, bias]}`` float32, for every weighted layer of
        ``build_yamnet(include_top=True)``.

    Raises:
        YamnetFileError: a tensor or op is missing, or a shape or weight name differs from YAMNet's.
    """
    details = _check_io(interpreter, path)
    ops = interpreter._get_ops_details()  # noqa: SLF001 - the only Python view of the graph's ops
    produced_by = {int(o): op for op in ops for o in op["outputs"]}
    weighted = [op for op in ops if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")]
    expected = _expected_shapes()
    kinds = [op["op_name"] for op in weighted]
    want_kinds = ["FULLY_CONNECTED"] * N_DFT_OPS + [e[1] for e in expected]
    if kinds != want_kinds:
        raise _error(path, f"{len(kinds)} weighted ops {_summary(kinds)}, expected {len(want_kinds)}: "
                           f"{_summary(want_kinds)}")
    out = {}
    for op, (layer, kind, w_shape, b_shape) in zip(weighted[N_DFT_OPS:], expected):
        inputs = [int(i) for i in op["inputs"]]
        if len(inputs) < 3 or inputs[2] < 0:
            raise _error(path, f"the {kind} op of {layer} has no bias")
        w_index, b_index = inputs[1], inputs[2]
        source = produced_by.get(w_index)
        if source is not None:  # a kernel computed at run time: only DEQUANTIZE of a constant is expected
            if source["op_name"] != "DEQUANTIZE":
                raise _error(path, f"the kernel of {layer} comes from a {source['op_name']} op")
            w_index = int(source["inputs"][0])
        name = details[w_index]["name"]
        number = layer.split("_")[0]
        if (f"{number}/" if layer != "logits" else "dense/") not in name:
            raise _error(path, f"the kernel of {layer} is tensor {name!r}, expected a name with "
                               f"{'dense/' if layer == 'logits' else number + '/'}")
        for index, shape, what in ((w_index, w_shape, "kernel"), (b_index, b_shape, "bias")):
            got = tuple(int(v) for v in details[index]["shape"])
            if got != shape:
                raise _error(path, f"the {what} of {layer} ({details[index]['name']!r}) is {got}, expected {shape}")
        try:
            kernel = _dequantize(interpreter, w_index, details)
            bias = _dequantize(interpreter, b_index, details)
        except ValueError as exc:
            raise _error(path, str(exc)) from exc
        if kind == "FULLY_CONNECTED":
            kernel = kernel.T
        else:  # (out, kh, kw, in) -> (kh, kw, in, out); depthwise (1, kh, kw, C) -> (kh, kw, C, 1)
            kernel = np.transpose(kernel, (1, 2, 3, 0))
        out[layer] = [np.ascontiguousarray(kernel, np.float32), bias.astype(np.float32)]
    return out


def _summary(kinds: list[str]) -> str:
    """``FULLY_CONNECTED×3, CONV_2D, ...`` (runs collapsed)."""
    parts, prev, count = [], None, 0
    for k in kinds + [None]:
        if k == prev:
            count += 1
            continue
        if prev is not None:
            parts.append(prev + (f"×{count}" if count > 1 else ""))
        prev, count = k, 1
    return ", ".join(parts[:8]) + (", ..." if len(parts) > 8 else "")


def keras_model_from_tflite(tflite_path: str | Path, *, int8_rounding: bool = False, interpreter=None):
    """``build_yamnet(include_top=True, int8_rounding=...)`` with the weights of ``tflite_path``.

    Raises:
        FileNotFoundError, YamnetFileError: as :func:`open_interpreter` and :func:`read_weights`.
    """
    from .yamnet import build_yamnet

    interpreter = interpreter or open_interpreter(tflite_path)
    weights = read_weights(interpreter, tflite_path)
    model = build_yamnet(include_top=True, int8_rounding=int8_rounding)
    for layer, values in weights.items():
        model.get_layer(layer).set_weights(values)
    return model


def convert(tflite_path: str | Path, out_path: str | Path) -> Path:
    """Write the Keras YAMNet's weights, read from YAMNet's TFLite file, as ``out_path`` (``.weights.h5``).

    The file holds ``build_yamnet(include_top=True)``'s weights (backbone and AudioSet head); load it with
    ``model.load_weights(path)`` into a :func:`~cnnrnn.models.yamnet.build_yamnet` model, with or without
    the head or the int8 rounding. Written atomically (a temporary ``.NAME.tmp.weights.h5`` beside it, then
    ``os.replace``).

    Args:
        tflite_path: ``yamnet.tflite`` (research/audioset/yamnet's TFLite export, 4,078,224 bytes).
        out_path: destination; must end in ``.weights.h5`` (Keras' weights format).

    Returns:
        ``Path(out_path)``.

    Raises:
        ValueError: ``out_path`` does not end in ``.weights.h5``.
        FileNotFoundError: no ``tflite_path``.
        YamnetFileError (a ValueError): not the expected YAMNet model (wrong tensors or shapes).
    """
    out = Path(out_path)
    if not out.name.endswith(".weights.h5") or out.name == ".weights.h5":
        raise ValueError(f"the output must be a NAME.weights.h5 file (Keras weights format), got {out}")
    model = keras_model_from_tflite(tflite_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name[:-len('.weights.h5')]}.tmp.weights.h5")
    assert is_temporary(tmp)
    try:
        model.save_weights(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


# --------------------------------------------------------------------------- agreement with the interpreter
def windows(y: np.ndarray, *, max_windows: int | None = None) -> np.ndarray:
    """0.975 s windows of a 16 kHz waveform every 0.48 s (the interpreter's fixed input), zero-padding the
    end of a clip shorter than one window.

    Returns:
        ``(n, 15600) float32``, ``n >= 1`` (at most ``max_windows``).
    """
    y = np.asarray(y, np.float32).reshape(-1)
    if len(y) < WINDOW_SAMPLES:
        y = np.pad(y, (0, WINDOW_SAMPLES - len(y)))
    starts = np.arange(0, len(y) - WINDOW_SAMPLES + 1, WINDOW_HOP)[:max_windows]
    return np.stack([y[s:s + WINDOW_SAMPLES] for s in starts])


def run_interpreter(interpreter, waves: np.ndarray) -> dict[str, np.ndarray]:
    """Run the interpreter on each ``(15600,)`` window of ``waves`` ``(n, 15600)`` float32 (16 kHz).

    Returns:
        ``{"embedding": (n, 1024), "scores": (n, 521), "log_mel": (n, 96, 64)}`` float32.
    """
    details = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    input_index = interpreter.get_input_details()[0]["index"]
    out = {"embedding": [], "scores": [], "log_mel": []}
    for w in np.asarray(waves, np.float32):
        interpreter.set_tensor(input_index, w.reshape(1, WINDOW_SAMPLES))
        interpreter.invoke()
        out["embedding"].append(interpreter.get_tensor(details[EMBEDDING_TENSOR])[0].copy())
        out["scores"].append(interpreter.get_tensor(details[SCORES_TENSOR])[0].copy())
        out["log_mel"].append(interpreter.get_tensor(details[LOG_MEL_TENSOR]).copy())
    return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.where(norm > 0, norm, 1.0)


def _stats(c: np.ndarray) -> dict:
    return {"median": float(np.median(c)), "min": float(np.min(c)), "mean": float(np.mean(c))}


def agreement(tflite_path: str | Path, waveforms, weights_path: str | Path | None = None, *,
              max_windows: int | None = 2) -> dict:
    """How well the Keras YAMNet reproduces the plain TFLite interpreter on the same 0.975 s windows.

    For each window, the reference is the interpreter's embedding (tensor
    ``yamnet_frames/global_average_pooling2d/Mean``). The Keras model, fed the interpreter's own log-mel
    (``Identity_1``), gives ``int8`` (``int8_rounding=True``) and ``float`` (no rounding) embeddings;
    ``float_own_front_end`` feeds it :func:`cnnrnn.features.yamnet_log_mel` instead (the pipeline that
    fine-tuning uses), and ``int8_own_front_end`` feeds the int8 model ``yamnet_log_mel(...,
    int8_rounding=True)`` (the whole interpreter emulated from the waveform). Cosine similarities of the
    1024-d embeddings are summarised per variant.

    Args:
        tflite_path: the YAMNet TFLite file.
        waveforms: iterable of ``(samples,)`` float waveforms at 16 kHz.
        weights_path: a ``.weights.h5`` from :func:`convert` to test; ``None``: the weights read from
            ``tflite_path`` directly.
        max_windows: windows per clip (every 0.48 s from the start); ``None`` for all.

    Returns:
        ``{"windows": n, "int8": {"median", "min", "mean"}, "float": {...}, "float_own_front_end": {...},
        "int8_own_front_end": {...}, "log_mel_max_abs_diff": {"float": x, "int8": x},
        "log_mel_mean_abs_diff": {...}, "scores_max_abs_diff_int8": x}``: cosines; the largest and mean
        absolute difference between our log-mel (float, or with int8 rounding) and the interpreter's, in
        natural-log units; the largest difference of the 521 class scores (int8 model vs interpreter).

    Raises:
        FileNotFoundError, YamnetFileError: as :func:`open_interpreter`.
    """
    from ..features import yamnet_log_mel
    from .yamnet import build_yamnet

    interpreter = open_interpreter(tflite_path)
    waves = np.concatenate([windows(y, max_windows=max_windows) for y in waveforms])
    ref = run_interpreter(interpreter, waves)
    quantised = build_yamnet(include_top=True, int8_rounding=True)
    plain = build_yamnet(include_top=True)
    if weights_path is not None:
        quantised.load_weights(weights_path)
        plain.load_weights(weights_path)
    else:
        for layer, values in read_weights(interpreter, tflite_path).items():
            quantised.get_layer(layer).set_weights(values)
            plain.get_layer(layer).set_weights(values)
    patches = ref["log_mel"][..., None]
    ours_float = np.stack([yamnet_log_mel(w) for w in waves])
    ours_int8 = np.stack([yamnet_log_mel(w, int8_rounding=True) for w in waves])
    emb_q, scores_q = quantised.predict(patches, batch_size=32, verbose=0)
    emb_f, _ = plain.predict(patches, batch_size=32, verbose=0)
    emb_own, _ = plain.predict(ours_float[..., None], batch_size=32, verbose=0)
    emb_own_q, _ = quantised.predict(ours_int8[..., None], batch_size=32, verbose=0)
    return {"windows": int(len(waves)),
            "int8": _stats(_cosines(emb_q, ref["embedding"])),
            "float": _stats(_cosines(emb_f, ref["embedding"])),
            "float_own_front_end": _stats(_cosines(emb_own, ref["embedding"])),
            "int8_own_front_end": _stats(_cosines(emb_own_q, ref["embedding"])),
            "log_mel_max_abs_diff": {"float": float(np.max(np.abs(ours_float - ref["log_mel"]))),
                                     "int8": float(np.max(np.abs(ours_int8 - ref["log_mel"])))},
            "log_mel_mean_abs_diff": {"float": float(np.mean(np.abs(ours_float - ref["log_mel"]))),
                                      "int8": float(np.mean(np.abs(ours_int8 - ref["log_mel"])))},
            "scores_max_abs_diff_int8": float(np.max(np.abs(scores_q - ref["scores"])))}


def agreement_on_files(tflite_path: str | Path, audio=SAMPLE_WAVS, weights_path: str | Path | None = None, *,
                       clips: int | None = 10, max_windows: int | None = None) -> dict:
    """:func:`agreement` on audio files: ``clips`` files spread evenly over the sorted list, loaded at 16 kHz.

    Args:
        tflite_path: the YAMNet TFLite file.
        audio: a folder (searched recursively for audio files), a file, or a list of files; default the
            bundled sample (:data:`SAMPLE_WAVS`).
        weights_path, max_windows: as :func:`agreement`.
        clips: how many files to use (``None``: all).

    Returns:
        :func:`agreement`'s result plus ``"files"``: the files used.

    Raises:
        ValueError: no audio file found. FileNotFoundError, YamnetFileError: as :func:`agreement`;
        cnnrnn.audio.AudioError: an unreadable file.
    """
    from ..audio import list_audio, load_audio
    from ..features import YAMNET_SR

    items = [audio] if isinstance(audio, (str, Path)) else list(audio)
    files = []
    for item in map(Path, items):
        files += list_audio(item) if item.is_dir() else [item]
    files = sorted(files)
    if not files:
        raise ValueError(f"no audio files in {audio}")
    if clips is not None and clips < len(files):
        files = [files[i] for i in np.linspace(0, len(files) - 1, clips).round().astype(int)]
    result = agreement(tflite_path, [load_audio(f, YAMNET_SR)[0] for f in files], weights_path,
                       max_windows=max_windows)
    return {**result, "files": [str(f) for f in files]}


def format_agreement(result: dict) -> str:
    """A few lines of text for :func:`agreement`'s result."""
    clips = f" of {len(result['files'])} clips" if "files" in result else ""
    lines = [f"agreement with the plain TFLite interpreter on {result['windows']} windows of 0.975 s{clips} "
             "(cosine of 1024-d embeddings):"]
    for key, what in (("int8", "Keras, int8 activation rounding, interpreter's log-mel"),
                      ("float", "Keras, float (fine-tuning), interpreter's log-mel"),
                      ("float_own_front_end", "Keras, float, cnnrnn.features.yamnet_log_mel"),
                      ("int8_own_front_end", "Keras, int8, yamnet_log_mel(int8_rounding=True)")):
        s = result[key]
        lines.append(f"  {what}: median {s['median']:.6f}, min {s['min']:.6f}, mean {s['mean']:.6f}")
    d, m = result["log_mel_max_abs_diff"], result["log_mel_mean_abs_diff"]
    lines.append(f"  log-mel |yamnet_log_mel - interpreter's Identity_1| (natural log units): float max "
                 f"{d['float']:.4g} mean {m['float']:.4g}; int8-emulated max {d['int8']:.4g} mean {m['int8']:.4g}")
    lines.append(f"  class scores max |Keras int8 - interpreter|: {result['scores_max_abs_diff_int8']:.4g}")
    return "\n".join(lines)
