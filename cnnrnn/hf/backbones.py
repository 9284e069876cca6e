"""Offline loading of Hugging Face TF backbones, tokenizers and feature extractors, and tiny random ones.

Nothing here downloads. ``name_or_path`` is a local folder (``config.json`` plus ``tf_model.h5`` or
``model.safetensors``) or a hub name (``klue/roberta-base``) that is already in the local Hugging Face
cache; anything else fails with :class:`HFModelError` saying which folder to provide. PyTorch-format
``model.safetensors`` load into TF without torch (transformers 4.54.1 detects the format from the file's
metadata); a folder with only ``pytorch_model.bin`` would need torch, so it is refused with a clear error.

Whisper (``model.speech_backbone`` ``whisper``): :func:`load_whisper_encoder` builds only transformers'
``TFWhisperEncoder`` from a Whisper folder's ``config.json`` and sets its weights from ``model.safetensors``
(no decoder is built or read), :func:`whisper_hidden` runs it up to a chosen block on log-mels of any length
(transformers' own ``call`` takes exactly 30 s), :func:`set_whisper_trainable` freezes all but the top blocks,
and :func:`save_whisper_encoder` writes it back in the same format (the checkpoint's ``speech/``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

TF_WEIGHTS = ("tf_model.h5", "model.safetensors", "tf_model.h5.index.json", "model.safetensors.index.json")


class HFModelError(ValueError):
    """A model folder or hub name cannot be used offline (not cached, no ``config.json``, no TF-loadable weights)."""


def resolve_model(name_or_path: str | Path, what: str = "--text-model") -> Path:
    """The local folder holding ``name_or_path``.

    Args:
        name_or_path: a folder, or a hub name looked up in the local HF cache only (``local_files_only``).
        what: the option name, used in error messages.

    Raises:
        HFModelError: the folder has no ``config.json``; the hub name is not cached.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise HFModelError(f"{what} {path}: the folder has no config.json, so it is not a Hugging Face "
                               f"model folder (expected config.json with tf_model.h5 or model.safetensors)")
        return path
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError

    try:
        folder = Path(snapshot_download(str(name_or_path), local_files_only=True))
    except (LocalEntryNotFoundError, HFValidationError, OSError) as exc:
        raise HFModelError(
            f"{what} {name_or_path!r} is neither a local folder nor in the local Hugging Face cache, and "
            f"cnnrnn never downloads. On a machine with internet run `huggingface-cli download {name_or_path} "
            f"--local-dir models/{Path(str(name_or_path)).name}`, copy that folder here and pass "
            f"{what} models/{Path(str(name_or_path)).name}") from exc
    if not (folder / "config.json").is_file():
        raise HFModelError(f"{what} {name_or_path!r}: cached snapshot {folder} has no config.json")
    return folder


def _check_weights(folder: Path, what: str) -> None:
    if not any((folder / name).is_file() for name in TF_WEIGHTS):
        bins = [p.name for p in folder.glob("*.bin")]
        hint = (f" (only {bins}: PyTorch .bin weights need torch; save them as model.safetensors)" if bins else "")
        raise HFModelError(f"{what} {folder}: no tf_model.h5 or model.safetensors{hint}")


def load_text_backbone(name_or_path: str | Path, what: str = "--text-model"):
    """``(TFAutoModel, tokenizer)`` from a folder or a cached hub name (``local_files_only=True``).

    Raises:
        HFModelError: see :func:`resolve_model`; no TF-loadable weights.
    """
    from transformers import AutoTokenizer, TFAutoModel

    folder = resolve_model(name_or_path, what)
    _check_weights(folder, what)
    model = TFAutoModel.from_pretrained(str(folder), local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    return model, tokenizer


def load_speech_backbone(name_or_path: str | Path, what: str = "--speech-model"):
    """``(TFWav2Vec2Model, Wav2Vec2FeatureExtractor)`` from a folder or a cached hub name (``local_files_only``).

    LayerDrop is switched off (``layerdrop=0``): transformers' TF wav2vec2 draws it with ``np.random`` in Python,
    so under ``tf.function`` the draw happens once, at tracing, and would drop the same layers for all of training.

    Raises:
        HFModelError: see :func:`resolve_model`; no TF-loadable weights; not a wav2vec2-style model.
    """
    from transformers import AutoConfig, AutoFeatureExtractor, TFAutoModel

    folder = resolve_model(name_or_path, what)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    if not hasattr(config, "conv_kernel"):
        hint = " (for a Whisper folder use --speech-backbone whisper)" if config.model_type == "whisper" else ""
        raise HFModelError(f"{what} {folder}: {config.model_type} is not a wav2vec2-style speech model{hint}")
    _check_weights(folder, what)
    config.layerdrop = 0.0
    model = TFAutoModel.from_pretrained(str(folder), config=config, local_files_only=True)
    extractor = AutoFeatureExtractor.from_pretrained(str(folder), local_files_only=True)
    return model, extractor


def train_tokenizer(texts: Iterable[str], folder: str | Path, vocab_size: int = 500, max_len: int = 256):
    """Train a small byte-level BPE tokenizer (``tokenizers``) on ``texts`` and save it as a RoBERTa-style
    ``PreTrainedTokenizerFast`` in ``folder`` (special tokens ``<s> <pad> </s> <unk> <mask>`` = ids 0–4, so
    the pad id 1 matches RoBERTa's ``pad_token_id``). Returns the tokenizer."""
    from tokenizers import ByteLevelBPETokenizer, processors
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(texts), vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  pad_token="<pad>", cls_token="<s>", sep_token="</s>", mask_token="<mask>",
                                  model_max_length=max_len)
    tok.save_pretrained(str(folder))
    return tok


def build_tiny_backbones(folder: str | Path, texts: Iterable[str], hidden_size: int = 32, layers: int = 2,
                         heads: int = 2, max_len: int = 256, seed: int = 0) -> tuple[Path, Path]:
    """Save a tiny random RoBERTa (with a tokenizer trained on ``texts``) and a tiny random wav2vec2 (the real
    7-layer conv stack of wav2vec2-base with 16 channels, so the receptive field stays 400 samples; ``layerdrop=0``)
    under ``folder/text`` and ``folder/speech``, loadable by path like a real checkpoint.

    For tests, notebooks and benchmarks; they are untrained. Returns ``(text_folder, speech_folder)``.
    """
    import tensorflow as tf
    from transformers import RobertaConfig, TFRobertaModel, TFWav2Vec2Model, Wav2Vec2Config, Wav2Vec2FeatureExtractor

    folder = Path(folder)
    tf.random.set_seed(seed)
    tok = train_tokenizer(texts, folder / "text", max_len=max_len)
    text_cfg = RobertaConfig(vocab_size=len(tok), hidden_size=hidden_size, num_hidden_layers=layers,
                             num_attention_heads=heads, intermediate_size=2 * hidden_size,
                             max_position_embeddings=max_len + 2, pad_token_id=tok.pad_token_id,
                             bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    text = TFRobertaModel(text_cfg)
    text(text.dummy_inputs)
    text.save_pretrained(str(folder / "text"))
    speech_cfg = Wav2Vec2Config(hidden_size=hidden_size, num_hidden_layers=layers, num_attention_heads=heads,
                                intermediate_size=2 * hidden_size, conv_dim=(16,) * 7, num_conv_pos_embeddings=16,
                                num_conv_pos_embedding_groups=2, feat_extract_norm="layer", do_stable_layer_norm=True,
                                layerdrop=0.0, mask_time_prob=0.0, vocab_size=32)
    speech = TFWav2Vec2Model(speech_cfg)
    speech(tf.zeros((1, 800)))
    speech.save_pretrained(str(folder / "speech"))
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(str(folder / "speech"))
    return folder / "text", folder / "speech"


# --------------------------------------------------------------------------- Whisper encoder
#: The file a Whisper folder's weights are read from and written to (``cnnrnn whisper-convert --hf-out``).
WHISPER_WEIGHTS = "model.safetensors"


def _whisper_tensors(encoder) -> list[tuple[str, object, str]]:
    """``(transformers name, tf variable, layout)`` of every weight of a built ``TFWhisperEncoder``.

    Names are PyTorch's (``model.encoder.layers.0.fc1.weight``: the names of ``openai/whisper-*`` and of
    ``cnnrnn whisper-convert --hf-out``); layout says how the PyTorch array maps onto the TF variable: ``conv``
    ``(out, in, k)`` → ``(k, in, out)``, ``dense`` ``(out, in)`` → ``(in, out)``, ``same`` as it is. The key
    projection has no bias, as in Whisper.
    """
    p = "model.encoder."
    out = [(p + "conv1.weight", encoder.conv1.kernel, "conv"), (p + "conv1.bias", encoder.conv1.bias, "same"),
           (p + "conv2.weight", encoder.conv2.kernel, "conv"), (p + "conv2.bias", encoder.conv2.bias, "same"),
           (p + "embed_positions.weight", encoder.embed_positions.weight, "same"),
           (p + "layer_norm.weight", encoder.layer_norm.gamma, "same"),
           (p + "layer_norm.bias", encoder.layer_norm.beta, "same")]
    for i, layer in enumerate(encoder.encoder_layers):
        q = f"{p}layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            dense = getattr(layer.self_attn, name)
            out.append((f"{q}self_attn.{name}.weight", dense.kernel, "dense"))
            if dense.bias is not None:
                out.append((f"{q}self_attn.{name}.bias", dense.bias, "same"))
        for name in ("fc1", "fc2"):
            dense = getattr(layer, name)
            out += [(f"{q}{name}.weight", dense.kernel, "dense"), (f"{q}{name}.bias", dense.bias, "same")]
        for name in ("self_attn_layer_norm", "final_layer_norm"):
            norm = getattr(layer, name)
            out += [(f"{q}{name}.weight", norm.gamma, "same"), (f"{q}{name}.bias", norm.beta, "same")]
    return out


#: PyTorch layout → TF layout (and back: each is its own inverse).
_TO_TF = {"conv": lambda a: a.transpose(2, 1, 0), "dense": lambda a: a.T, "same": lambda a: a}


def whisper_config(name_or_path: str | Path, what: str = "--speech-model"):
    """``(folder, WhisperConfig)`` of a Whisper folder, checked to be Whisper with ``model.safetensors``.

    Raises:
        HFModelError: no such folder (with how to make one), no ``config.json``, a model that is not Whisper,
            no ``model.safetensors``.
    """
    from transformers import AutoConfig

    hint = ("write one from the CTranslate2 weights of faster-whisper with `cnnrnn whisper-convert --ct2 "
            "model.bin --hf-out DIR`, or pass a local openai/whisper-* folder")
    try:
        folder = resolve_model(name_or_path, what)
    except HFModelError as exc:
        if Path(name_or_path).expanduser().is_dir():
            raise HFModelError(f"{exc}; for the Whisper speech backbone {hint}") from None
        raise HFModelError(f"{what} {str(name_or_path)!r} is neither a local folder nor in the local Hugging Face "
                           f"cache, and cnnrnn never downloads: {hint} (e.g. `cnnrnn whisper-convert --ct2 "
                           f"../shared/data/pretrained/whisper-tiny.en/model.bin --hf-out {name_or_path}`)") from None
    try:
        config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except (ValueError, OSError, KeyError) as exc:
        raise HFModelError(f"{what} {folder}: config.json is not a readable Hugging Face config ({exc})") from None
    if config.model_type != "whisper":
        raise HFModelError(f"{what} {folder} holds a {config.model_type!r} model, not Whisper (config.json "
                           f"model_type), so it cannot be the Whisper speech backbone (model.speech_backbone "
                           f"whisper); {hint}, or use --speech-backbone wav2vec2 for a wav2vec2-style model")
    if not (folder / WHISPER_WEIGHTS).is_file():
        raise HFModelError(f"{what} {folder}: no {WHISPER_WEIGHTS} (the Whisper backbone reads safetensors only)")
    return folder, config


def load_whisper_encoder(name_or_path: str | Path, what: str = "--speech-model"):
    """Only the encoder of a Whisper folder: a built transformers ``TFWhisperEncoder`` (tf_keras layer) with the
    folder's encoder weights; no decoder is built, initialised or read.

    The folder is what ``cnnrnn whisper-convert --hf-out`` writes (``config.json`` with ``model_type`` whisper and
    ``model.safetensors`` holding only ``model.encoder.*``), or an ``openai/whisper-*`` folder (its decoder
    tensors are ignored; ``encoder.*`` names without the ``model.`` prefix are read too). The layer keeps
    ``config`` (the ``WhisperConfig``: ``d_model`` width, ``encoder_layers``, ``num_mel_bins``,
    ``max_source_positions``). Encoder LayerDrop is switched off (transformers draws it in Python, once at tracing).

    Raises:
        HFModelError: see :func:`whisper_config`; a tensor missing or of the wrong shape.
    """
    import tensorflow as tf
    from safetensors import safe_open
    from transformers.models.whisper.modeling_tf_whisper import TFWhisperEncoder

    folder, config = whisper_config(name_or_path, what)
    config.encoder_layerdrop = 0.0
    encoder = TFWhisperEncoder(config, name="whisper_encoder")
    encoder.build(None)
    source = folder / WHISPER_WEIGHTS
    try:
        with safe_open(str(source), framework="np") as f:
            names = set(f.keys())
            prefix = "model." if any(k.startswith("model.encoder.") for k in names) else ""
            values = []
            for name, var, layout in _whisper_tensors(encoder):
                key = prefix + name[len("model."):]
                if key not in names:
                    raise HFModelError(f"{what} {source}: tensor {key} is missing (encoder_layers "
                                       f"{config.encoder_layers} in config.json)")
                value = _TO_TF[layout](np.asarray(f.get_tensor(key), np.float32))
                if tuple(value.shape) != tuple(var.shape):
                    raise HFModelError(f"{what} {source}: {key} has shape {tuple(value.shape)} after conversion, "
                                       f"the encoder of config.json needs {tuple(var.shape)}")
                values.append((var, value))
    except HFModelError:
        raise
    except Exception as exc:  # safetensors raises its own error types
        raise HFModelError(f"{what} {source} is not a readable safetensors file ({exc})") from None
    for var, value in values:
        var.assign(tf.constant(value))
    return encoder


def save_whisper_encoder(encoder, folder: str | Path) -> Path:
    """Write ``encoder`` (a ``TFWhisperEncoder``) as a Whisper folder that :func:`load_whisper_encoder` (and
    ``TFWhisperModel.from_pretrained``) reads: ``config.json`` and ``model.safetensors`` with the encoder's
    tensors under transformers' PyTorch names (``model.encoder.*``, float32), as ``cnnrnn whisper-convert --hf-out``.
    Returns the folder."""
    from safetensors.numpy import save

    from ..artifacts import atomic_write_bytes

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {name: np.ascontiguousarray(_TO_TF[layout](var.numpy()), np.float32)  # each layout is its own inverse
               for name, var, layout in _whisper_tensors(encoder)}
    atomic_write_bytes(folder / WHISPER_WEIGHTS, save(tensors, metadata={"format": "pt"}))
    encoder.config.save_pretrained(str(folder))
    return folder


def whisper_hidden(encoder, features, block: int, training: bool = False):
    """The encoder's hidden state after ``block`` blocks, for log-mels of any length up to 30 s.

    transformers' ``TFWhisperEncoder.call`` adds the whole position table (``max_source_positions`` = 1500 rows)
    to the conv output, so in 4.54.1 it accepts exactly 3000 log-mel frames (30 s) and fails on a broadcast for
    any other length. This runs the same layers (conv1 + GELU, conv2 stride 2 + GELU, + positions, the encoder
    layers, the final layer norm after the last one) with the table cut to the input's length, and stops after
    ``block``: on 3000 frames it equals ``encoder(x, output_hidden_states=True).hidden_states[block]``.

    Args:
        encoder: from :func:`load_whisper_encoder`.
        features: ``(B, T, n_mels) float32`` log-mel frames (10 ms each;
            :func:`cnnrnn.whisper_features.whisper_log_mel`), ``T <= 2 · max_source_positions``.
        block: ``0`` (stem + positions) … ``encoder_layers`` (last block, after the final layer norm).

    Returns:
        ``(B, ceil(T / 2), d_model) float32`` (20 ms per frame).
    """
    import tensorflow as tf
    import tf_keras as keras

    x = tf.pad(features, [[0, 0], [1, 1], [0, 0]])
    x = keras.activations.gelu(encoder.conv1(x))
    x = tf.pad(x, [[0, 0], [1, 1], [0, 0]])
    x = keras.activations.gelu(encoder.conv2(x))
    x = x + encoder.embed_positions.weight[: tf.shape(x)[1]]
    x = encoder.dropout(x, training=training)
    for layer in encoder.encoder_layers[:block]:
        x, _ = layer(x, None, layer_head_mask=None, training=training)
    if block == len(encoder.encoder_layers):
        x = encoder.layer_norm(x)
    return x


def set_whisper_trainable(encoder, block: int, finetune_blocks: int) -> list[str]:
    """Freeze the encoder except its top ``finetune_blocks`` used parts, counted down from ``block`` (part 0 is
    the conv stem; the final layer norm goes with the last block when ``block`` is the last). Blocks above
    ``block`` (never run) and the position table are frozen. Returns the trained parts' names (``stem``,
    ``block1`` …), for logs and tests."""
    n_layers = len(encoder.encoder_layers)
    chosen = set(range(block - finetune_blocks + 1, block + 1)) if finetune_blocks else set()
    encoder.embed_positions.trainable = False
    encoder.conv1.trainable = encoder.conv2.trainable = 0 in chosen
    for i, layer in enumerate(encoder.encoder_layers, start=1):
        layer.trainable = i in chosen
    encoder.layer_norm.trainable = block == n_layers and n_layers in chosen and n_layers > 0
    return [("stem" if i == 0 else f"block{i}") for i in sorted(chosen)]
