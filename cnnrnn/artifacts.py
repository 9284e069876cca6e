"""File formats shared by the stages: JSON and pickle, written atomically, read safely.

File names are the ones the original CNNRNN code used (``train.json``,
``train_audio.json``, ``data_train.pickle``, ``train_final.pickle``, ...), so
users of that code find their files where they expect them.

Pickles are read through :class:`RestrictedUnpickler`, which admits only
containers, numbers, strings and numpy arrays: a pickle can run arbitrary code
when loaded, and these files are often passed around between labs.
"""
from __future__ import annotations

import errno
import io
import json
import logging
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any, Callable

# Stage file names (the original CNNRNN names).
SPLIT_FILES = {"train": "train.json", "test": "test.json"}
AUDIO_FILES = {"train": "train_audio.json", "test": "test_audio.json"}
DATA_FILES = {"train": "data_train.pickle", "test": "data_test.pickle"}
FINAL_FILES = {"train": "train_final.pickle", "test": "test_final.pickle"}
LABELS_FILE = "labels.json"
CONFIG_FILE = "config.json"
SPECTROGRAM_DIR = "spectrograms"


class PickleFileError(pickle.UnpicklingError, ValueError):
    """A pickle file cannot be used: truncated, corrupt, not a pickle, or refused (:class:`UnsafePickleError`).
    The message names the file. A ``ValueError`` too, so the command line reports it in one line."""


class UnsafePickleError(PickleFileError):
    """A pickle references a global outside the allow-list (it could run code)."""


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str | Path, write: Callable[[io.BufferedWriter], None], fsync: bool = True) -> Path:
    """Write a file atomically: into a temporary file beside it, then ``os.replace``.

    An interrupted write leaves the old file (or no file), never a half-written one.

    Args:
        path: destination path; its parent folders are created.
        write: called with the open binary temporary file.
        fsync: flush the data to disk before the rename (durable across a power
            cut). Without it the rename still guarantees no half-written file
            after an interrupted process; the PNG stage skips it for speed.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual umask permissions
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            if fsync:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path: str | Path, data: bytes, fsync: bool = True) -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda fh: fh.write(data), fsync=fsync)


def save_json(obj: Any, path: str | Path) -> Path:
    """Write ``obj`` as indented UTF-8 JSON (non-ASCII kept), atomically."""
    text = json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def load_json(path: str | Path) -> Any:
    """Read a UTF-8 JSON file. Raises FileNotFoundError with the path if missing."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    return json.loads(path.read_text(encoding="utf-8"))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_pickle(obj: Any, path: str | Path) -> Path:
    """Pickle ``obj`` (highest protocol) to ``path`` atomically."""
    return atomic_write(path, lambda fh: pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL))


# Globals a data pickle may reference: builtin containers and numpy arrays,
# dtypes and scalars (numpy 1.x wrote ``numpy.core``, numpy 2.x ``numpy._core``).
_SAFE_GLOBALS = {
    ("builtins", name)
    for name in ("list", "dict", "tuple", "set", "frozenset", "bytearray", "complex", "int", "float", "str", "bytes", "bool")
} | {
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),  # protocol-2 pickles store bytes as _codecs.encode(str, 'latin1')
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}
for _mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
    _SAFE_GLOBALS |= {(_mod, "_reconstruct"), (_mod, "scalar")}
for _mod in ("numpy.core.numeric", "numpy._core.numeric"):
    _SAFE_GLOBALS.add((_mod, "_frombuffer"))
_SAFE_NUMPY_DTYPES = {"dtype"} | {f"{k}DType" for k in ("Float64", "Float32", "Float16", "Int64", "Int32", "Int16",
                                                          "Int8", "UInt64", "UInt32", "UInt16", "UInt8", "Bool",
                                                          "Str", "Bytes")}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals (containers, numbers, strings, numpy arrays).

    Raises:
        UnsafePickleError: on any other global (functions, classes, ``os.system``,
            pandas objects, ...), naming it.
    """

    def find_class(self, module: str, name: str):  # noqa: D102 - see class docstring
        """Allow only the globals of :data:`_SAFE_GLOBALS` (and numpy dtypes); raise :class:`UnsafePickleError` for
        any other."""
        if (module, name) in _SAFE_GLOBALS or (module == "numpy.dtypes" and name in _SAFE_NUMPY_DTYPES):
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"refusing to unpickle {module}.{name}: only containers, numbers, strings and numpy arrays "
            "are allowed, because a pickle can run code. Re-create the file with cnnrnn, or load it with "
            "pickle.load yourself only if you trust its source."
        )


def load_pickle(path: str | Path) -> Any:
    """Load a pickle through :class:`RestrictedUnpickler`.

    Args:
        path: a ``.pickle`` file such as ``data_train.pickle`` or ``train_final.pickle``.

    Returns:
        The unpickled object (dicts, lists, numbers, strings, numpy arrays).

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafePickleError: the pickle references anything outside the allow-list (the message names the file
            and the global).
        PickleFileError: the file is not a valid pickle (truncated, corrupt, another format); both are
            ``pickle.UnpicklingError`` and ``ValueError``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    with open(path, "rb") as fh:
        try:
            return RestrictedUnpickler(fh).load()
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{path}: {exc}") from None
        except MemoryError:
            raise
        except Exception as exc:  # EOFError (truncated), UnpicklingError, and what a corrupt opcode stream raises
            detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise PickleFileError(f"{path}: not a valid pickle ({detail})") from exc


def load_image_table(path: str | Path) -> dict[str, Any]:
    """Load a ``*_final.pickle`` (or ``data_*.pickle``) and check its shape.

    Returns:
        ``{'id': [str], 'path': ..., 'emotion': [int], ...}``. For a final pickle
        ``path`` is a uint8 array ``(N, H, W, 3)`` (BGR channel order, as
        ``cv2.imread`` gives, like the original code).

    Raises:
        ValueError: keys missing, lengths differ, or ``path`` holds something
            other than uint8 images of one size.
    """
    import numpy as np

    table = load_pickle(path)
    if not isinstance(table, dict) or not {"id", "path", "emotion"} <= set(table):
        raise ValueError(f"{path}: expected a dict with keys 'id', 'path', 'emotion'")
    n = len(table["id"])
    if len(table["path"]) != n or len(table["emotion"]) != n:
        raise ValueError(f"{path}: 'id', 'path' and 'emotion' have different lengths")
    images = table["path"]
    if n and not isinstance(images, np.ndarray):
        if not all(isinstance(im, np.ndarray) for im in images):
            bad = next(type(im).__name__ for im in images if not isinstance(im, np.ndarray))
            raise ValueError(f"{path}: 'path' must hold image arrays, found a {bad}")
        shapes = {im.shape for im in images}
        if len(shapes) != 1:
            raise ValueError(f"{path}: images have different sizes {sorted(shapes)}")
        images = np.stack(images)
    if n and (images.ndim != 4 or images.shape[-1] != 3):
        raise ValueError(f"{path}: images must be (N, H, W, 3), got {images.shape}")
    table["path"] = np.asarray(images, dtype=np.uint8) if n else np.zeros((0, 1, 1, 3), np.uint8)
    return table


def save_model_h5(model, path: str | Path) -> Path:
    """Save a Keras model as ``.h5`` atomically (temp file beside ``path``, then rename).

    The ``.h5`` format is deliberate (the original code and its users load ``.h5``), so Keras'
    "legacy format" notice from absl is silenced for the call. A save that fails (a full disk) or is interrupted
    removes its temporary file. Returns ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp.h5")
    absl = logging.getLogger("absl")
    level = absl.level
    absl.setLevel(logging.ERROR)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            raise OSError(errno.ENOSPC, f"no space left on the device to save {path} (its temporary file was "
                                        "removed): free some space and rerun the same command to resume") from exc
        raise
    finally:
        absl.setLevel(level)
    return path


class CheckpointError(ValueError):
    """A checkpoint cannot be used: unreadable, or incompatible with the labels or inputs."""


#: Files that an interrupted atomic write leaves behind; readers of model folders skip them.
def h5_float16(path: str | Path, min_size: int = 0) -> Path:
    """Rewrite an HDF5 weights file (a Keras ``.weights.h5`` or a legacy ``.h5`` model) with its float32 datasets of at
    least ``min_size`` values stored as float16; Keras casts them back to its float32 variables on loading. The file
    is copied into a new one (HDF5 keeps the space of deleted datasets), then put in place. Returns ``path``.

    Half the size; lossless for weights that were float16 to begin with (Whisper's CTranslate2 files); ``min_size``
    keeps small layers (a classifier head) exact."""
    import h5py
    import numpy as np

    path = Path(path)
    half = path.with_name(path.name + ".f16")
    with h5py.File(path, "r") as src, h5py.File(half, "w") as dst:
        def copy(name, obj):
            if isinstance(obj, h5py.Group):
                dst.require_group(name).attrs.update(dict(obj.attrs))
            else:
                value = obj[()]
                big = isinstance(value, np.ndarray) and value.dtype == np.float32 and value.size >= min_size
                dst.create_dataset(name, data=value.astype(np.float16) if big else value)
                dst[name].attrs.update(dict(obj.attrs))
        dst.attrs.update(dict(src.attrs))
        src.visititems(copy)
    os.replace(half, path)
    return path


def is_temporary(path: str | Path) -> bool:
    """Whether ``path`` is a temporary file of an atomic write (``.name.tmp.h5``, ``.name.XXXX.tmp``)."""
    name = Path(path).name
    return name.startswith(".") and (name.endswith(".tmp") or ".tmp." in name)


def remove_temporary_files(folder: str | Path) -> list[Path]:
    """Delete the temporary files (:func:`is_temporary`) that a killed atomic write left in ``folder``.

    Only a stage that writes ``folder`` calls this, when it starts (a training run on its own ``models/``);
    commands that only read a folder skip such files and delete nothing. Not recursive.

    Returns:
        The files removed (none when ``folder`` does not exist).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = [p for p in sorted(folder.iterdir()) if is_temporary(p) and p.is_file()]
    for stale in removed:
        stale.unlink(missing_ok=True)
    if removed:
        logging.getLogger("cnnrnn.artifacts").info("removed %d temporary file(s) of an interrupted save in %s: %s",
                                                   len(removed), folder, ", ".join(p.name for p in removed))
    return removed


class NotWritableError(PermissionError):
    """An output folder cannot be created or written to (read-only, not a folder, no permission)."""


def ensure_writable_dir(path: str | Path, create: bool = True) -> Path:
    """Create the output folder ``path`` if needed and check that a file can be written in it, before a
    command does any work (so that a read-only ``--out`` fails at once, not after the work).

    The check writes and removes a temporary file (:func:`is_temporary`) inside ``path``: ``os.access``
    alone is wrong for root and for read-only mounts.

    Args:
        path: the output folder.
        create: create a missing folder; ``False`` (a stage whose folder must hold the previous stage's
            files): a missing folder is not checked, and left for the stage to report.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        NotWritableError: ``path`` (or a folder above it) is a file, or it cannot be created or written
            (the message names the folder and the reason).
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotWritableError(f"output folder {path} is a file, not a folder")
    if not create and not path.exists():
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-check.", suffix=".tmp", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise NotWritableError(f"cannot write to the output folder {path}: {reason}") from exc
    return path


def load_model(path: str | Path, *, trust_code: bool = False):
    """Load an ``.h5`` (or ``.keras``) Keras model for prediction, without its optimizer.

    Works for files written by Keras 3 (this package) and by Keras 2.2–2.15 / ``tf.keras`` 2.x / ``tf_keras``
    (the original CNNRNN code): Keras 3 first, ``tf_keras`` for the Keras 2 files Keras 3 cannot read or would
    read differently (:func:`cnnrnn.keras2.load_keras_model`). Loading uses ``compile=False`` (Keras 3 cannot
    restore a Keras 2 optimizer; prediction does not need one). The package's custom layers are registered
    first. A file with a ``Lambda`` layer (Python code) is refused unless ``trust_code``.

    Raises:
        FileNotFoundError: no such file.
        cnnrnn.keras2.UnsafeModelError: a ``Lambda`` layer and no ``trust_code`` (nothing ran).
        CheckpointError: the file is not a loadable Keras model.
    """
    from . import keras2
    from .models import register_layers

    register_layers()

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if is_temporary(path):
        raise CheckpointError(f"{path} is the temporary file of an interrupted save, not a checkpoint")
    try:
        return keras2.load_keras_model(path, trust_code=trust_code)
    except keras2.UnsafeModelError:
        raise
    except keras2.Keras2Error as exc:
        raise CheckpointError(str(exc)) from exc
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot load as a Keras model ({type(exc).__name__}: {exc})") from exc


def load_checkpoints(paths, labels=None, *, trust_code: bool = False):
    """Load one checkpoint or several that must agree (a fold ensemble), and name their classes.

    Args:
        paths: checkpoint files (see :func:`load_model`).
        labels: class names in code order, or ``None`` (then ``class_0`` … with a warning).
        trust_code: load files with ``Lambda`` layers (see :func:`load_model`).

    Returns:
        ``(models, input_shape, labels)``: the Keras models, their common input shape without the batch
        axis (a tuple; ``None`` for a free axis), the label list.

    Raises:
        FileNotFoundError: a checkpoint is missing.
        CheckpointError: a checkpoint does not load; the checkpoints disagree on input shape or class count;
            the class count differs from ``labels``.
    """
    if not paths:
        raise CheckpointError("no checkpoint given")
    models = [load_model(p, trust_code=trust_code) for p in paths]

    def shape_of(model):
        shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
        return tuple(None if v is None else int(v) for v in shape[1:])

    shapes = {shape_of(m) for m in models}
    classes = {int(m.output_shape[-1]) for m in models}
    if len(shapes) != 1 or len(classes) != 1:
        raise CheckpointError(f"checkpoints disagree: input shapes {sorted(map(str, shapes))}, class counts "
                              f"{sorted(classes)}")
    n_classes = classes.pop()
    if labels is None:
        logging.getLogger("cnnrnn.artifacts").warning("no labels found; naming classes class_0..class_%d",
                                                      n_classes - 1)
        labels = [f"class_{i}" for i in range(n_classes)]
    labels = list(labels)
    if len(labels) != n_classes:
        raise CheckpointError(f"{paths[0]} predicts {n_classes} classes but the labels list has {len(labels)} "
                              f"({labels}); use the labels of the run that trained it")
    return models, shapes.pop(), labels


#: How far model outputs may stray from [0, 1] and from rows summing to 1 and still be read as probabilities.
PROBABILITY_TOLERANCE = 1e-3


def as_probabilities(outputs, source: str | Path, tolerance: float = PROBABILITY_TOLERANCE):
    """The outputs of a single-label classifier as class probabilities, checked.

    Outputs in [0, 1] whose rows sum to 1 (within ``tolerance``) are returned unchanged. Outputs outside
    [0, 1] are taken to be logits (a model saved without its softmax) and get a softmax; outputs in [0, 1]
    whose rows do not sum to 1 (independent sigmoids) are divided by their row sums (a zero row becomes
    uniform). Either repair is logged once per call, as a warning naming ``source``. Not for multi-label
    heads (the Hugging Face family's sigmoid outputs), whose rows need not sum to 1.

    Args:
        outputs: ``(N, n_classes)`` model outputs (any float dtype).
        source: the checkpoint (or run) they come from, for the messages.
        tolerance: see :data:`PROBABILITY_TOLERANCE`.

    Returns:
        ``(N, n_classes) float32`` probabilities.

    Raises:
        CheckpointError: not a 2-D array, or NaN/inf outputs (the model is broken, e.g. trained with a
            learning rate that diverged).
    """
    import numpy as np

    x = np.asarray(outputs, dtype=np.float64)
    if x.ndim != 2:
        raise CheckpointError(f"{source}: expected (items, classes) outputs, got shape {x.shape}")
    if x.size == 0:
        return x.astype(np.float32)
    bad = ~np.isfinite(x)
    if bad.any():
        raise CheckpointError(f"{source}: the model gives non-finite outputs (NaN or inf) for "
                              f"{int(bad.any(axis=1).sum())} of {len(x)} item(s); it cannot be used (was it "
                              "trained with a learning rate that diverged?)")
    sums = x.sum(axis=1)
    lo, hi = float(x.min()), float(x.max())
    if lo >= -tolerance and hi <= 1 + tolerance and np.all(np.abs(sums - 1) <= tolerance):
        return np.clip(x, 0.0, 1.0).astype(np.float32)
    seen = (f"outputs from {lo:.4g} to {hi:.4g}, rows summing to {float(sums.min()):.4g}..{float(sums.max()):.4g}")
    if lo < -tolerance or hi > 1 + tolerance:
        z = np.exp(x - x.max(axis=1, keepdims=True))
        proba, how = z / z.sum(axis=1, keepdims=True), "applied a softmax (a model saved without its softmax layer?)"
    else:
        x = np.clip(x, 0.0, 1.0)
        total = x.sum(axis=1, keepdims=True)
        proba = np.where(total > 0, x / np.where(total > 0, total, 1), 1.0 / x.shape[1])
        how = "divided each row by its sum (independent sigmoid outputs?)"
    logging.getLogger("cnnrnn.artifacts").warning("%s: the model's outputs are not class probabilities (%s); %s",
                                                  source, seen, how)
    return proba.astype(np.float32)


def load_labels(path: str | Path) -> list[str]:
    """Label names from a ``labels.json`` (``{"labels": [...]}`` or a plain list), in code order.

    KEMDy's misspelling ``disqust`` in an old file is read as ``disgust``
    (:data:`cnnrnn.corpora.kemdy.LABEL_ALIASES`).

    Raises:
        FileNotFoundError: no such file. ValueError: not a list of names.
    """
    from .corpora.kemdy import LABEL_ALIASES

    data = load_json(path)
    labels = data["labels"] if isinstance(data, dict) and "labels" in data else data
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ValueError(f"{path}: expected a list of label names")
    return [LABEL_ALIASES.get(x, x) for x in labels]
