"""Convert Whisper weights (CTranslate2 ``model.bin`` or a Hugging Face folder) for :mod:`cnnrnn.models.whisper`.

Sources, all read locally (nothing is downloaded):

* ``--ct2 model.bin``: the CTranslate2 format of Systran's ``faster-whisper-*`` (tiny, base, small, ...; the
  multilingual base's two registry parts concatenated). Read with ``struct`` and numpy (:func:`read_ct2`): a header
  (uint32 version, spec name, uint32 revision, uint32 count) and one record per variable (name, rank, dims, dtype,
  bytes); ``ctranslate2`` itself returns only the last layer.
* ``--hf DIR``: an ``openai/whisper-*`` folder with ``config.json`` and ``model.safetensors``.

Outputs: ``W.weights.h5``, the whole encoder's Keras weights (:func:`~cnnrnn.models.whisper.build_whisper_encoder`,
stem, every block and the final layer norm), with ``W.json`` beside it (the encoder's sizes, the source and its
sha256); and, with ``hf_out``, an HF-format folder (``config.json`` + ``model.safetensors`` of the encoder) that
transformers' ``TFWhisperEncoder`` loads for the ``hf`` family.

The parity check (:func:`parity_ct2`) runs ``ctranslate2``'s ``Whisper.encode`` (the reference) and the Keras encoder
on the same log-mel of real speech and reports the largest absolute difference of the final layer.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path

import numpy as np

from ..artifacts import atomic_write_bytes, h5_float16, is_temporary, save_json
from .whisper import WhisperSizes, build_whisper_encoder, sizes_path

_CT2_DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


class WhisperFileError(ValueError):
    """The file or folder is not a Whisper model this converter reads (or is damaged)."""


# --------------------------------------------------------------------------- CTranslate2
def read_ct2(path: str | Path) -> tuple[str, dict[str, np.ndarray]]:
    """Read every variable of a CTranslate2 ``model.bin``.

    Returns:
        ``(spec_name, {name: array})``; float16 arrays stay float16, scalars are 0-d arrays.

    Raises:
        FileNotFoundError: no such file.
        WhisperFileError: not a CTranslate2 file, or truncated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CTranslate2 model file {path} does not exist")
    data = path.read_bytes()
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(data):
            raise WhisperFileError(f"{path} is truncated: it ends at byte {len(data):,} inside a record that "
                                   f"needs {pos + n:,} bytes")
        chunk = data[pos:pos + n]
        pos += n
        return chunk

    def u32() -> int:
        return struct.unpack("<I", take(4))[0]

    def string() -> str:
        n = struct.unpack("<H", take(2))[0]
        try:
            return take(n).rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError as exc:
            raise WhisperFileError(f"{path} is not a CTranslate2 model (unreadable name)") from exc

    version = u32() if len(data) >= 4 else None
    if version is None or not 1 <= version <= 20:
        raise WhisperFileError(f"{path} is not a CTranslate2 model.bin (header version {version})")
    spec = string()
    u32()  # revision
    count = u32()
    if count > 100_000:
        raise WhisperFileError(f"{path} is not a CTranslate2 model.bin ({count} variables)")
    variables = {}
    for _ in range(count):
        name = string()
        rank = take(1)[0]
        dims = struct.unpack(f"<{rank}I", take(4 * rank)) if rank else ()
        dtype = _CT2_DTYPES.get(take(1)[0])
        nbytes = u32()
        raw = take(nbytes)
        if dtype is None:
            raise WhisperFileError(f"{path}: variable {name} has an unknown dtype")
        if nbytes != int(np.prod(dims, dtype=np.int64)) * np.dtype(dtype).itemsize:
            raise WhisperFileError(f"{path}: variable {name} holds {nbytes} bytes for shape {dims}")
        variables[name] = np.frombuffer(raw, dtype=dtype).reshape(dims)
    return spec, variables


def _ct2_to_layers(variables: dict, spec: str, source) -> tuple[WhisperSizes, dict[str, list[np.ndarray]]]:
    """Map CTranslate2 encoder variables onto the Keras encoder's layers, checking every shape."""
    if spec != "WhisperSpec" or "encoder/conv1/weight" not in variables:
        raise WhisperFileError(f"{source} is a CTranslate2 model of another kind ({spec!r}), not Whisper "
                               "(Systran faster-whisper-*)")
    n_layers = 0
    while f"encoder/layer_{n_layers}/ffn/linear_0/weight" in variables:
        n_layers += 1
    conv1 = variables["encoder/conv1/weight"]
    width, n_mels = int(conv1.shape[0]), int(conv1.shape[1])
    heads = variables.get("encoder/num_heads")
    n_heads = int(heads) if heads is not None else max(1, width // 64)
    table = variables.get("encoder/position_encodings/encodings")
    n_ctx = int(table.shape[0]) if table is not None else 1500
    sizes = WhisperSizes(n_layers=n_layers, width=width, n_heads=n_heads, n_mels=n_mels, n_ctx=n_ctx,
                         name={4: "tiny", 6: "base", 12: "small", 24: "medium", 32: "large"}.get(n_layers, "whisper"))

    def get(name, shape):
        v = variables.get(f"encoder/{name}")
        if v is None:
            raise WhisperFileError(f"{source}: variable encoder/{name} is missing")
        if tuple(v.shape) != tuple(shape):
            raise WhisperFileError(f"{source}: encoder/{name} has shape {tuple(v.shape)}, but the other tensors "
                                   f"say {tuple(shape)} (width {width}, {n_mels} mels)")
        return v.astype(np.float32)

    def dense(name, n_out, n_in):
        return [get(f"{name}/weight", (n_out, n_in)).T, get(f"{name}/bias", (n_out,))]

    def norm(name):
        return [get(f"{name}/gamma", (width,)), get(f"{name}/beta", (width,))]

    out = {"conv1": [get("conv1/weight", (width, n_mels, 3)).transpose(2, 1, 0), get("conv1/bias", (width,))],
           "conv2": [get("conv2/weight", (width, width, 3)).transpose(2, 1, 0), get("conv2/bias", (width,))],
           "positions": [get("position_encodings/encodings", (n_ctx, width))],
           "final_ln": norm("layer_norm")}
    for i in range(n_layers):
        p = f"layer_{i}"
        out[f"block{i + 1}"] = {
            "attn_ln": norm(f"{p}/self_attention/layer_norm"),
            "attn.qkv": dense(f"{p}/self_attention/linear_0", 3 * width, width),
            "attn.out": dense(f"{p}/self_attention/linear_1", width, width),
            "mlp_ln": norm(f"{p}/ffn/layer_norm"),
            "fc1": dense(f"{p}/ffn/linear_0", 4 * width, width),
            "fc2": dense(f"{p}/ffn/linear_1", width, 4 * width)}
    return sizes, out


# --------------------------------------------------------------------------- Hugging Face
def _hf_to_layers(folder: Path) -> tuple[WhisperSizes, dict]:
    """Map an ``openai/whisper-*`` folder's encoder tensors onto the Keras encoder's layers."""
    from safetensors.numpy import load_file

    cfg_path, st_path = folder / "config.json", folder / "model.safetensors"
    if not cfg_path.is_file() or not st_path.is_file():
        raise WhisperFileError(f"{folder} is not a Hugging Face Whisper folder (config.json and model.safetensors "
                               "needed)")
    try:
        cfg = json.loads(cfg_path.read_text())
    except ValueError as exc:
        raise WhisperFileError(f"{cfg_path} is not JSON ({exc})") from exc
    if cfg.get("model_type") != "whisper":
        raise WhisperFileError(f"{folder} holds a {cfg.get('model_type')!r} model, not Whisper "
                               "(config.json model_type)")
    try:
        tensors = load_file(str(st_path))
    except Exception as exc:  # safetensors raises its own error types
        raise WhisperFileError(f"{st_path} is not a readable safetensors file ({exc})") from exc
    prefix = "model.encoder." if any(k.startswith("model.encoder.") for k in tensors) else "encoder."
    width, n_layers = int(cfg["d_model"]), int(cfg["encoder_layers"])
    sizes = WhisperSizes(n_layers=n_layers, width=width, n_heads=int(cfg["encoder_attention_heads"]),
                         n_mels=int(cfg.get("num_mel_bins", 80)), n_ctx=int(cfg.get("max_source_positions", 1500)),
                         name=str(cfg.get("_name_or_path") or "whisper").split("/")[-1].replace("whisper-", ""))

    def get(name, shape):
        v = tensors.get(prefix + name)
        if v is None:
            raise WhisperFileError(f"{st_path}: tensor {prefix}{name} is missing")
        if tuple(v.shape) != tuple(shape):
            raise WhisperFileError(f"{st_path}: {prefix}{name} has shape {tuple(v.shape)}, expected {tuple(shape)}")
        return np.asarray(v, np.float32)

    def dense(name, n_out, n_in):
        return [get(f"{name}.weight", (n_out, n_in)).T, get(f"{name}.bias", (n_out,))]

    def norm(name):
        return [get(f"{name}.weight", (width,)), get(f"{name}.bias", (width,))]

    out = {"conv1": [get("conv1.weight", (width, sizes.n_mels, 3)).transpose(2, 1, 0), get("conv1.bias", (width,))],
           "conv2": [get("conv2.weight", (width, width, 3)).transpose(2, 1, 0), get("conv2.bias", (width,))],
           "positions": [get("embed_positions.weight", (sizes.n_ctx, width))],
           "final_ln": norm("layer_norm")}
    for i in range(n_layers):
        p = f"layers.{i}"
        q, v = dense(f"{p}.self_attn.q_proj", width, width), dense(f"{p}.self_attn.v_proj", width, width)
        k = get(f"{p}.self_attn.k_proj.weight", (width, width)).T
        out[f"block{i + 1}"] = {
            "attn_ln": norm(f"{p}.self_attn_layer_norm"),
            "attn.qkv": [np.concatenate([q[0], k, v[0]], axis=1),
                         np.concatenate([q[1], np.zeros(width, np.float32), v[1]])],
            "attn.out": dense(f"{p}.self_attn.out_proj", width, width),
            "mlp_ln": norm(f"{p}.final_layer_norm"),
            "fc1": dense(f"{p}.fc1", 4 * width, width),
            "fc2": dense(f"{p}.fc2", width, 4 * width)}
    return sizes, out


# --------------------------------------------------------------------------- Keras model, files
def keras_encoder(sizes: WhisperSizes, layer_weights: dict):
    """:func:`build_whisper_encoder` (all outputs) with ``layer_weights`` set (from :func:`read_source`)."""
    model = build_whisper_encoder(sizes, blocks="all")
    for name, values in layer_weights.items():
        layer = model.get_layer(name)
        if isinstance(values, dict):
            for sub, v in values.items():
                target = layer
                for attr in sub.split("."):
                    target = getattr(target, attr)
                target.set_weights(v)
        else:
            layer.set_weights(values)
    return model


def read_source(*, ct2: str | Path | None = None, hf: str | Path | None = None):
    """Read the encoder of a CTranslate2 ``model.bin`` or a Hugging Face folder.

    Returns:
        ``(sizes, layer_weights, source_description)``.

    Raises:
        FileNotFoundError: the file or folder does not exist.
        WhisperFileError: not a Whisper model, truncated, or tensors whose shapes disagree.
        ValueError: neither or both of ``ct2`` and ``hf``.
    """
    if (ct2 is None) == (hf is None):
        raise ValueError("give exactly one of ct2 (a CTranslate2 model.bin) and hf (a Hugging Face folder)")
    if ct2 is not None:
        path = Path(ct2).expanduser()
        if path.is_dir():
            path = path / "model.bin"
        spec, variables = read_ct2(path)
        sizes, weights = _ct2_to_layers(variables, spec, path)
        return sizes, weights, {"format": "ctranslate2", "path": str(path), "sha256": _sha256(path)}
    folder = Path(hf).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"Hugging Face folder {folder} does not exist")
    sizes, weights = _hf_to_layers(folder)
    return sizes, weights, {"format": "huggingface", "path": str(folder),
                            "sha256": _sha256(folder / "model.safetensors")}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(model, sizes: WhisperSizes, out: str | Path, source: dict | None = None, *,
                 blocks: int | None = None, float16: bool = False) -> Path:
    """Write ``model``'s weights as ``out`` (``NAME.weights.h5``) and its sizes as ``NAME.json``, atomically.

    Args:
        model: the whole encoder (:func:`keras_encoder`).
        sizes: its sizes. source: where it came from (recorded in the JSON).
        blocks: keep the stem and the first ``blocks`` transformer blocks only (no final layer norm): a smaller
            file for models that read a middle block (tiny.en up to block 2: 4.6 M of 8.2 M parameters).
        float16: store the values as float16 (half the size; loaded back into float32 variables). Lossless for
            the CTranslate2 files, whose weights are float16 already (tiny.en: block-2 outputs identical).

    Raises:
        ValueError: ``out`` not ``.weights.h5``, or ``blocks`` outside ``0..n_layers``.
    """
    out = Path(out).expanduser()
    if not out.name.endswith(".weights.h5") or out.name == ".weights.h5":
        raise ValueError(f"the output must be a NAME.weights.h5 file (Keras weights format), got {out}")
    if blocks is not None and not 0 <= blocks <= sizes.n_layers:
        raise ValueError(f"blocks must be 0..{sizes.n_layers}, got {blocks}")
    keep = sizes.n_layers if blocks is None else int(blocks)
    if keep < sizes.n_layers:
        part = build_whisper_encoder(sizes, blocks=list(range(keep + 1)))
        for layer in part.layers:
            if layer.weights:
                layer.set_weights(model.get_layer(layer.name).get_weights())
        model = part
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name[:-len('.weights.h5')]}.tmp.weights.h5")
    assert is_temporary(tmp)
    try:
        model.save_weights(tmp)
        if float16:
            h5_float16(tmp)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    save_json({"model": "whisper-encoder", "sizes": sizes.to_json(), "blocks": keep,
               "final_ln": keep == sizes.n_layers, "dtype": "float16" if float16 else "float32",
               "source": source or {}}, sizes_path(out))
    return out


def convert(*, ct2=None, hf=None, out=None, hf_out=None, blocks: int | None = None, float16: bool = False) -> dict:
    """Convert a Whisper model's encoder: Keras weights (``out``; ``blocks`` and ``float16`` as
    :func:`save_weights`) and/or an HF-format folder (``hf_out``, always whole and float32).

    Returns:
        ``{"sizes": WhisperSizes, "out": Path | None, "hf_out": Path | None, "source": {...}}``.

    Raises:
        FileNotFoundError, WhisperFileError, ValueError: see :func:`read_source`; ``out`` not ``.weights.h5``.
    """
    if out is None and hf_out is None:
        raise ValueError("nothing to write: give out (NAME.weights.h5) and/or hf_out (a folder)")
    sizes, weights, source = read_source(ct2=ct2, hf=hf)
    result = {"sizes": sizes, "out": None, "hf_out": None, "source": source}
    if out is not None:
        result["out"] = save_weights(keras_encoder(sizes, weights), sizes, out, source, blocks=blocks,
                                     float16=float16)
    if hf_out is not None:
        result["hf_out"] = write_hf_folder(sizes, weights, hf_out)
    return result


def write_hf_folder(sizes: WhisperSizes, layer_weights: dict, folder: str | Path) -> Path:
    """Write ``config.json`` + ``model.safetensors`` (the encoder's tensors, transformers' names) into ``folder``.

    transformers' ``TFWhisperEncoder`` (through ``TFWhisperModel.from_pretrained(folder)``) loads it; the decoder is
    absent, so only the encoder is meaningful.
    """
    from safetensors.numpy import save

    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    w = sizes.width
    t = {"model.encoder.conv1.weight": layer_weights["conv1"][0].transpose(2, 1, 0),
         "model.encoder.conv1.bias": layer_weights["conv1"][1],
         "model.encoder.conv2.weight": layer_weights["conv2"][0].transpose(2, 1, 0),
         "model.encoder.conv2.bias": layer_weights["conv2"][1],
         "model.encoder.embed_positions.weight": layer_weights["positions"][0],
         "model.encoder.layer_norm.weight": layer_weights["final_ln"][0],
         "model.encoder.layer_norm.bias": layer_weights["final_ln"][1]}
    for i in range(sizes.n_layers):
        b, p = layer_weights[f"block{i + 1}"], f"model.encoder.layers.{i}"
        qkv_k, qkv_b = b["attn.qkv"]
        for j, proj in enumerate(("q_proj", "k_proj", "v_proj")):
            t[f"{p}.self_attn.{proj}.weight"] = qkv_k[:, j * w:(j + 1) * w].T
            if proj != "k_proj":
                t[f"{p}.self_attn.{proj}.bias"] = qkv_b[j * w:(j + 1) * w]
        for ours, theirs in (("attn.out", "self_attn.out_proj"), ("fc1", "fc1"), ("fc2", "fc2")):
            t[f"{p}.{theirs}.weight"], t[f"{p}.{theirs}.bias"] = b[ours][0].T, b[ours][1]
        for ours, theirs in (("attn_ln", "self_attn_layer_norm"), ("mlp_ln", "final_layer_norm")):
            t[f"{p}.{theirs}.weight"], t[f"{p}.{theirs}.bias"] = b[ours]
    t = {k: np.ascontiguousarray(v, np.float32) for k, v in t.items()}
    config = {"model_type": "whisper", "architectures": ["WhisperModel"], "_name_or_path": f"whisper-{sizes.name}",
              "d_model": w, "encoder_layers": sizes.n_layers, "encoder_attention_heads": sizes.n_heads,
              "encoder_ffn_dim": 4 * w, "decoder_layers": 1, "decoder_attention_heads": sizes.n_heads,
              "decoder_ffn_dim": 4 * w, "num_mel_bins": sizes.n_mels, "max_source_positions": sizes.n_ctx,
              "max_target_positions": 448, "vocab_size": 51864, "activation_function": "gelu",
              "scale_embedding": False, "encoder_layerdrop": 0.0, "decoder_layerdrop": 0.0}
    atomic_write_bytes(folder / "model.safetensors", save(t, metadata={"format": "pt"}))
    save_json(config, folder / "config.json")
    return folder


# --------------------------------------------------------------------------- parity with ctranslate2
def _ct2_whisper(ctranslate2, path: Path):
    """``ctranslate2.models.Whisper`` of a ``model.bin`` (or its folder). A carrier package may ship the file without
    its vocabulary, which ctranslate2 requires to load but ``encode`` never reads: a placeholder with the decoder's
    number of tokens is then laid beside links to the file in a temporary folder."""
    import tempfile

    model_bin = path / "model.bin" if path.is_dir() else path
    folder = model_bin.parent
    if any((folder / f"vocabulary.{ext}").is_file() for ext in ("json", "txt")) and model_bin.name == "model.bin":
        return ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="float32")
    tmp = Path(tempfile.mkdtemp(prefix="cnnrnn-ct2-"))
    (tmp / "model.bin").symlink_to(model_bin.resolve())
    if (folder / "config.json").is_file():
        (tmp / "config.json").symlink_to((folder / "config.json").resolve())
    _, variables = read_ct2(model_bin)
    n_tokens = int(variables["decoder/embeddings/weight"].shape[0]) if "decoder/embeddings/weight" in variables else 51865
    (tmp / "vocabulary.txt").write_text("".join(f"<|token{i}|>\n" for i in range(n_tokens)))
    return ctranslate2.models.Whisper(str(tmp), device="cpu", compute_type="float32")


def parity_ct2(ct2_path: str | Path, weights: str | Path, clips, *, seconds: float | None = None) -> dict:
    """The Keras encoder (``weights``) against ``ctranslate2``'s ``Whisper.encode`` on the same log-mels.

    Args:
        ct2_path: the CTranslate2 ``model.bin`` (its folder, with ``config.json``, is what ctranslate2 loads).
        weights: the converted ``.weights.h5``.
        clips: ``(samples,)`` 16 kHz waveforms.
        seconds: pad or cut every clip to this length (``None``: 30 s, the length ctranslate2 requires).

    Returns:
        ``{"clips": n, "max_abs_diff": x, "mean_abs_diff": x, "reference": "ctranslate2 <version>"}`` over the
        final layer's outputs.

    Raises:
        ImportError: ``ctranslate2`` is not installed (``pip install ctranslate2``).
    """
    import ctranslate2

    from ..whisper_features import whisper_log_mel
    from .whisper import pretrained_whisper

    ref_model = _ct2_whisper(ctranslate2, Path(ct2_path).expanduser())
    ours = pretrained_whisper(weights, block="final")
    seconds = 30.0 if seconds is None else seconds
    worst, total, count = 0.0, 0.0, 0
    for y in clips:
        y = np.asarray(y, np.float32)[: int(seconds * 16000)]
        mel = whisper_log_mel(y, pad_to_seconds=seconds)
        ref = np.asarray(ref_model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel.T[None]))))
        got = np.asarray(ours(mel[None], training=False))
        diff = np.abs(ref - got)
        worst, total, count = max(worst, float(diff.max())), total + float(diff.sum()), count + diff.size
    return {"clips": len(clips) if hasattr(clips, "__len__") else None, "max_abs_diff": worst,
            "mean_abs_diff": total / max(count, 1), "reference": f"ctranslate2 {ctranslate2.__version__}"}
