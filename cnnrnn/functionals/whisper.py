"""The Whisper weights of the ``whisper`` feature set: the file (checked, with one clear error), its sizes, its
identity (sha1 of its bytes, for the cache key and the run manifest) and the frozen encoder (built once per process).

The weights are the ``.weights.h5`` + ``.json`` sizes written by ``cnnrnn whisper-convert``
(:mod:`cnnrnn.models.whisper_convert`) from a local CTranslate2 ``model.bin`` or Hugging Face folder; nothing is
downloaded. Every function takes a :class:`~cnnrnn.functionals.config.FunctionalsConfig` (its ``whisper_weights``
and ``whisper_block``); this module imports no other module of the family.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

WHISPER_SR = 16000          # Hz: Whisper's front end
WHISPER_MAX_SECONDS = 30.0  # the encoder's position table

__all__ = ["WHISPER_MAX_SECONDS", "WHISPER_SR", "check_whisper_block", "encoder", "whisper_identity",
           "whisper_sizes", "whisper_weights_path"]


def whisper_weights_path(cfg) -> Path:
    """The resolved ``whisper_weights`` file, checked to exist with its sizes JSON beside it.

    Raises:
        cnnrnn.models.blocks.WeightsError: the file or its ``.json`` is missing (one line, naming
            ``cnnrnn whisper-convert``).
    """
    from ..models.blocks import WeightsError
    from ..models.whisper import sizes_path

    path = Path(cfg.whisper_weights).expanduser().resolve()
    if not path.is_file() or not sizes_path(path).is_file():
        what = "does not exist" if not path.is_file() else f"has no sizes file {sizes_path(path).name} beside it"
        raise WeightsError(f"Whisper weights {path} {what}: convert a local Whisper model once with `cnnrnn "
                           f"whisper-convert --ct2 PATH/model.bin --out {cfg.whisper_weights}` (or --hf DIR), or "
                           "set whisper_weights in the config; nothing is downloaded")
    return path


@functools.lru_cache(maxsize=8)
def _sizes(path: str, size: int, mtime_ns: int):
    from ..models.whisper import read_sizes

    return read_sizes(path)


def whisper_sizes(cfg):
    """The :class:`cnnrnn.models.whisper.WhisperSizes` of ``cfg.whisper_weights`` (read once per file version).

    Raises:
        cnnrnn.models.blocks.WeightsError: missing or unreadable weights or sizes.
    """
    path = whisper_weights_path(cfg)
    st = path.stat()
    return _sizes(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _identity(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def whisper_identity(cfg) -> dict[str, Any]:
    """The weights file's identity, for the run manifest and the cache key: ``{"path" (resolved), "sha1" (of its
    bytes), "bytes", "model" (its sizes' name), "n_layers", "width"}``.

    Raises:
        cnnrnn.models.blocks.WeightsError: missing or unreadable weights or sizes.
    """
    path = whisper_weights_path(cfg)
    st = path.stat()
    sizes = whisper_sizes(cfg)
    return {"path": str(path), "sha1": _identity(str(path), st.st_size, st.st_mtime_ns), "bytes": st.st_size,
            "model": sizes.name, "n_layers": sizes.n_layers, "width": sizes.width}


@functools.lru_cache(maxsize=2)
def _encoder(path: str, sha1: str):
    from ..models.whisper import pretrained_whisper

    return pretrained_whisper(path, block="all")


def encoder(identity: dict[str, Any]):
    """The frozen encoder of :func:`whisper_identity`'s file, every block an output
    (:func:`cnnrnn.models.whisper.pretrained_whisper` ``block="all"``), built once per process and file content.

    Returns:
        A ``keras.Model``: ``(1, frames, 80) float32`` log-mel → ``n_layers + 1`` outputs ``(1, ceil(frames / 2),
        width)``.
    """
    return _encoder(identity["path"], identity["sha1"])


def check_whisper_block(cfg) -> None:
    """Check ``whisper_block`` against the weights' blocks (``0..n_layers`` or ``nested``).

    Raises:
        ValueError: a block the encoder does not have (cnnrnn.models.blocks.WeightsError: missing weights).
    """
    from ..models.whisper import check_block

    if cfg.whisper_block != "nested":
        check_block(cfg.whisper_block, whisper_sizes(cfg))
