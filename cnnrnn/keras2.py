"""Checkpoints written by Keras 2 (Keras 2.2–2.15, ``tf.keras`` 2.x, ``tf_keras``): read, refuse code, load.

The original CNNRNN code saved its models with ``tf.keras`` 2.9 (``CNN_RNN_fold_epoch60_e4.h5``: ResNet50 +
LSTM); users also bring Keras 2.2 files. :func:`load_keras_model` (behind :func:`cnnrnn.artifacts.load_model`)
loads them in three steps:

1. The saved architecture is read from the file without building anything (:func:`saved_config`). A layer
   that carries Python code (a ``Lambda`` layer, whose function Keras 2 stores as marshalled bytecode, or a
   Keras 3 ``__lambda__``) is refused (:class:`UnsafeModelError`) unless the caller trusts the file
   (``trust_code``, ``cnnrnn predict --trust-code``): building such a model runs that code.
2. Keras 3 loads it (``keras.models.load_model(compile=False)``): every file this package writes, and the
   Keras 2 files whose layers Keras 3 reads and computes the same way (a plain ``Sequential`` of ``Dense`` or
   ``Conv2D`` layers).
3. A Keras 2 file that Keras 3 cannot read, or would read with another meaning, is loaded by ``tf_keras``,
   the Keras 2 line that the Keras team maintains for TensorFlow 2.16 and later, and predicts through it
   (the model keeps the Keras API used here: ``input_shape``, ``output_shape``, ``predict``). Two cases are
   recognised from the config, without building the model in Keras 3 first: the RNN layers of ``tf.keras``
   2.x, whose ``time_major`` argument Keras 3 refuses (:func:`keras3_refuses`), and ``hard_sigmoid`` (Keras 2:
   ``clip(0.2 x + 0.5, 0, 1)``, the default recurrent activation of Keras 2.2's LSTM and GRU), which Keras 3
   reads without an error as ``clip(x / 6 + 0.5, 0, 1)`` (:func:`keras3_differences`). Any other Keras 3 failure
   on a Keras 2 file (a class name it cannot locate, a nested model it cannot connect) also falls back.

Why ``tf_keras`` rather than converting the weights into an equivalent Keras 3 model: a Keras 2 model's numbers are
those of Keras 2's layers, and ``tf_keras`` *is* those layers, with its own reader of every Keras 2 ``.h5`` layout
(``preprocess_weights_for_loading`` converts Keras 1 weights and ``CuDNNLSTM``/``CuDNNGRU`` kernels, wrappers and
nested models included). A converter would re-implement each difference and could be silently wrong where
``tf_keras`` is right by construction. Measured on this machine (``tf_keras`` 2.21 files): with ``time_major``
stripped, Keras 3 loads a ``hard_sigmoid`` GRU whose probabilities differ from ``tf_keras``' by 4.7e-3, and cannot
connect a nested ResNet50 at all; through ``tf_keras`` the probabilities are ``tf_keras``' own.

A Keras 2 file records nothing about input scaling or the image rendering its model was trained on; see
:mod:`cnnrnn.cnnrnn.predict` for what CNNRNN prediction feeds such a model.
"""
from __future__ import annotations

import json
import logging
import zipfile
from pathlib import Path
from typing import Any, Iterator

log = logging.getLogger("cnnrnn.keras2")

#: The requirement that makes ``tf_keras`` available (it must match the TensorFlow minor version).
TF_KERAS_REQUIREMENT = "tf-keras==2.21.0"


class UnsafeModelError(ValueError):
    """A model file holds Python code (a ``Lambda`` layer) and the caller did not trust it; nothing ran."""


class Keras2Error(ValueError):
    """A Keras 2 model file that neither Keras 3 nor ``tf_keras`` can load (the message gives both reasons)."""


class EmptyModelFileError(Keras2Error):
    """A model file of 0 bytes (an interrupted copy or download): nothing to load."""


class ForeignBytecodeError(Keras2Error):
    """A trusted ``Lambda`` layer whose function is Python bytecode marshalled by another Python version, which
    this Python cannot read (and so cannot run): the layer cannot be built here. Nothing ran."""


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def saved_config(path: str | Path) -> dict | None:
    """The architecture saved in a Keras model file, as the JSON dict Keras wrote, without building it.

    Args:
        path: an ``.h5`` file (its ``model_config`` attribute) or a Keras 3 ``.keras`` archive (its
            ``config.json``).

    Returns:
        ``{"class_name": ..., "config": {...}}``, or ``None`` for a file without one (weights only, another
        format).
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return json.loads(archive.read("config.json")) if "config.json" in archive.namelist() else None
        import h5py

        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("model_config")
            return None if raw is None else json.loads(_text(raw))
    except (OSError, KeyError, ValueError):
        return None


def saved_keras_version(path: str | Path) -> str | None:
    """The Keras version that wrote a model file (``"2.9.0"``, ``"2.2.4"``, ``"3.15.1"``), or ``None`` when the
    file does not say (h5 attribute ``keras_version``; ``metadata.json`` of a ``.keras`` archive)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return None
                version = json.loads(archive.read("metadata.json")).get("keras_version")
                return None if version is None else str(version)
        import h5py

        with h5py.File(path, "r") as h5:
            raw = h5.attrs.get("keras_version")
            return None if raw is None else _text(raw)
    except (OSError, KeyError, ValueError):
        return None


def is_keras2(path: str | Path) -> bool:
    """Whether a model file was written by Keras 1 or 2 (``tf.keras`` 2.x and ``tf_keras`` included)."""
    version = saved_keras_version(path)
    try:
        return version is not None and int(version.split(".")[0]) < 3
    except ValueError:
        return False


def _walk(node: Any, layer: str | None = None) -> Iterator[tuple[Any, str | None]]:
    """Every value of a saved config, with the name of the layer it belongs to."""
    if isinstance(node, dict):
        config = node.get("config")
        if "class_name" in node and isinstance(config, dict) and isinstance(config.get("name"), str):
            layer = config["name"]
        yield node, layer
        for value in node.values():
            yield from _walk(value, layer)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value, layer)
    else:
        yield node, layer


def code_layers(config: dict | None) -> list[str]:
    """Names of the layers of a saved config that carry Python code, nested models and wrappers
    (``TimeDistributed``, ``Bidirectional``) included: ``Lambda`` layers (Keras 2 stores their function as
    marshalled bytecode), and Keras 3 ``__lambda__`` objects. Building the model would run that code."""
    found = []
    for node, layer in _walk(config):
        if isinstance(node, dict) and node.get("class_name") in ("Lambda", "__lambda__"):
            found.append(layer or node.get("class_name"))
    return list(dict.fromkeys(found))


#: Keras 2 names that Keras 3 reads without an error but computes differently, and how.
KERAS3_DIFFERENT = {"hard_sigmoid": "Keras 2: clip(0.2 x + 0.5, 0, 1); Keras 3: clip(x / 6 + 0.5, 0, 1)"}


def keras3_differences(config: dict | None) -> list[str]:
    """What Keras 3 would compute differently from the Keras 2 that saved ``config`` (:data:`KERAS3_DIFFERENT`),
    as ``"<layer>: <name> (<how>)"`` lines; empty when nothing differs."""
    found = []
    for node, layer in _walk(config):
        if isinstance(node, str) and node in KERAS3_DIFFERENT:
            found.append(f"{layer}: {node} ({KERAS3_DIFFERENT[node]})")
    return list(dict.fromkeys(found))


def keras3_refuses(config: dict | None) -> list[str]:
    """What Keras 3 is known to refuse in a Keras 2 config, found without building the model (so that a
    ResNet50 is not built only to fail at its LSTM): the ``time_major`` argument of ``tf.keras`` 2.x RNN layers.
    Empty when nothing known stands in the way."""
    found = []
    for node, layer in _walk(config):
        if isinstance(node, dict) and "time_major" in node and "units" in node:
            found.append(f"{layer}: time_major")
    return list(dict.fromkeys(found))


def saved_backend(path: str | Path) -> str | None:
    """The backend a Keras 2 ``.h5`` file was saved with (its ``backend`` attribute: ``tensorflow``, ``theano``),
    or ``None`` when the file does not say."""
    try:
        import h5py

        with h5py.File(Path(path), "r") as h5:
            raw = h5.attrs.get("backend")
            return None if raw is None else _text(raw)
    except (OSError, KeyError, ValueError):
        return None


def _marshalled_code(node: dict) -> list[str]:
    """The marshalled functions (base64 text) that a ``Lambda`` or ``__lambda__`` config node carries: Keras 2
    stores a lambda's function (and a lambda ``output_shape``) as ``[code, defaults, closure]`` or as the code
    alone, Keras 3 a ``__lambda__`` object's as its ``value``."""
    config = node.get("config") if isinstance(node.get("config"), dict) else {}
    found = []
    if node.get("class_name") == "Lambda":
        pairs = (("function", "function_type"), ("output_shape", "output_shape_type"))
        values = [config.get(key) for key, kind in pairs if config.get(kind) == "lambda"]
    else:  # __lambda__
        values = [config.get("value"), config.get("code")]
    for value in values:
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], str):
            found.append(value[0])
        elif isinstance(value, str):
            found.append(value)
    return found


def _raw_bytes(code: str) -> bytes:
    """The bytes of a marshalled function's text, as Keras' ``func_load`` reads them: base64, else raw."""
    import binascii
    import codecs

    try:
        return codecs.decode(code.encode("ascii"), "base64")
    except (UnicodeEncodeError, binascii.Error):
        return code.encode("raw_unicode_escape")


def bytecode_python(raw: bytes) -> str | None:
    """The Python versions whose ``marshal`` layout a code object's bytes have, from the number of 32-bit
    integers before its bytecode (Python 2: 4; Python 3.0–3.7: 5; 3.8–3.10: 6; 3.11 and later: 5 again, told
    apart from 3.0–3.7 by what the integers hold), or ``None`` when the bytes are not a code object. A guess, for
    the message about bytes that this Python failed to read."""
    import struct

    if not raw or raw[0] & 0x7F != ord("c"):
        return None
    for ints in (4, 5, 6):
        at = 1 + 4 * ints
        if len(raw) > at + 4 and raw[at] & 0x7F == ord("s") and struct.unpack("<I", raw[at + 1:at + 5])[0] < len(raw):
            if ints == 4:
                return "Python 2"
            if ints == 6:
                return "Python 3.8-3.10"
            first = struct.unpack("<5I", raw[1:21])
            # Python 3.0-3.7: argcount, kwonlyargcount, nlocals (>= the arguments), stacksize, flags (CO_NOFREE,
            # 0x40, until 3.9); 3.11+: argcount, posonlyargcount, kwonlyargcount, stacksize, flags
            old = bool(first[4] & 0x40) or (first[2] >= first[0] + first[1] and first[2] > 0)
            return "Python 3.0-3.7" if old else "Python 3.11 or later"
    return None


def check_bytecode(path: str | Path, config: dict | None) -> None:
    """Check that every marshalled function of the ``Lambda`` layers of ``config`` (a file's saved config) can be
    read by this Python, before a trusted model is built: Keras would fail inside ``marshal.loads`` with a bare
    ``EOFError`` or ``ValueError`` on bytecode that another Python version wrote (a Keras 2.2 file of Python 3.6).
    Reading the bytes runs nothing.

    Raises:
        ForeignBytecodeError: one line naming the file, the layer, what the file says of its origin (Keras
            version, backend, the Python the bytecode's layout points to) and what to do.
    """
    import marshal
    import platform

    for node, layer in _walk(config):
        if not (isinstance(node, dict) and node.get("class_name") in ("Lambda", "__lambda__")):
            continue
        for code in _marshalled_code(node):
            raw = _raw_bytes(code)
            try:
                marshal.loads(raw)
            except Exception as exc:  # EOFError, ValueError ("bad marshal data"), TypeError ...
                python = bytecode_python(raw)
                origin = [f"saved by Keras {v}" for v in [saved_keras_version(path)] if v]
                origin += [f"backend {b}" for b in [saved_backend(path)] if b]
                origin += [f"its code object laid out as {python}'s" if python else
                           "a marshal layout this Python does not know"]
                raise ForeignBytecodeError(
                    f"{path}: Lambda layer {layer or '(unnamed)'!r} holds Python bytecode written by another Python "
                    f"version ({', '.join(origin)}; marshal.loads: {_first_line(exc)}), which this Python "
                    f"{platform.python_version()} cannot read or run, so the model cannot be built here even with "
                    "--trust-code. Rebuild that layer in code and load the file's weights into it "
                    "(model.load_weights), or load the file in the Python version that saved it and re-save the "
                    "model without the Lambda layer") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def load_keras_model(path: str | Path, *, trust_code: bool = False):
    """Load a Keras model file for prediction (no optimizer): Keras 3 first, ``tf_keras`` for the Keras 2 files
    Keras 3 cannot read or would read differently (see the module docstring).

    Args:
        path: an ``.h5`` file written by Keras 2.2–2.15, ``tf.keras`` 2.x, ``tf_keras`` or Keras 3, or a Keras 3
            ``.keras`` archive.
        trust_code: build models whose layers carry Python code (``Lambda``): that code runs. Only for files
            from a trusted source.

    Returns:
        A ``keras.Model``, or a ``tf_keras.Model`` for a Keras 2 file loaded by ``tf_keras``; both have
        ``input_shape``, ``output_shape`` and ``predict``.

    Raises:
        UnsafeModelError: the file has a ``Lambda`` layer and ``trust_code`` is off (nothing was built, no code
            ran); the message names the layers and the flag.
        EmptyModelFileError: the file is empty (0 bytes).
        ForeignBytecodeError: with ``trust_code``, a ``Lambda`` layer's bytecode was written by another Python
            version and cannot be read here (:func:`check_bytecode`; nothing ran).
        Keras2Error: a Keras 2 file that Keras 3 cannot load and ``tf_keras`` is not installed (the message gives
            the requirement) or cannot load either.
        Exception: what Keras 3 raises for a file that is not a Keras 2 model file.
    """
    import keras

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise EmptyModelFileError(f"{path} is empty (0 bytes), probably an interrupted copy or download; copy or "
                                  "download the model file again")
    config = saved_config(path)
    risky = code_layers(config)
    if risky and not trust_code:
        raise UnsafeModelError(
            f"{path}: refusing to load: layer(s) {', '.join(risky)} hold Python code (a Lambda layer's function is "
            "stored as marshalled bytecode), which building the model would run. Nothing was run. If you trust the "
            "file's source, pass --trust-code (Python: trust_code=True)")
    if risky:
        check_bytecode(path, config)
    version = saved_keras_version(path)
    differs = keras3_differences(config) if is_keras2(path) else []
    refused = keras3_refuses(config) if is_keras2(path) else []
    # a file that says nothing of its version (Keras 1 and some converters) may be Keras 2 too
    legacy = is_keras2(path) or (version is None and config is not None)
    if differs:
        reason = "Keras 3 would compute differently: " + "; ".join(differs)
    elif refused:
        reason = "Keras 3 refuses " + "; ".join(refused)
    else:
        try:
            return keras.models.load_model(path, compile=False, safe_mode=not trust_code)
        except Exception as exc:
            if not legacy:
                raise
            reason = _first_line(exc)
    try:
        import tf_keras
    except ImportError:
        raise Keras2Error(f"{path} was saved by Keras {version or '(unknown version)'} and Keras 3 cannot load it as "
                          f"saved ({reason}); install tf_keras to load it: pip install '{TF_KERAS_REQUIREMENT}'"
                          ) from None
    try:
        model = tf_keras.models.load_model(path, compile=False, safe_mode=not trust_code)
        log.info("%s: saved by Keras %s; loaded with tf_keras %s (%s)", path, version or "(unknown version)",
                 tf_keras.__version__, reason)
        return model
    except Exception as exc:
        raise Keras2Error(f"{path} (saved by Keras {version or '(unknown version)'}): Keras 3 cannot load it "
                          f"({reason}) and neither can tf_keras ({_first_line(exc)})") from exc


def with_input_scale(model, scale: float):
    """``model`` with its inputs multiplied by ``scale`` first (e.g. ``1 / 255`` for a model trained on 0–1
    pixels fed 0–255 images): a ``Rescaling`` layer in front, built by the library the model comes from
    (Keras 3 or ``tf_keras``). ``scale == 1`` returns ``model`` itself."""
    if scale == 1:
        return model
    if type(model).__module__.startswith("tf_keras"):
        import tf_keras as lib
    else:
        import keras as lib
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    inputs = lib.Input(shape=tuple(shape[1:]))
    return lib.Model(inputs, model(lib.layers.Rescaling(float(scale))(inputs)), name=f"{model.name}_scaled")
