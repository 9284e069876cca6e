"""Offline loading of Hugging Face TF backbones, tokenizers and feature extractors, and tiny random ones.

Nothing here downloads. ``name_or_path`` is a local folder (``config.json`` plus ``tf_model.h5`` or
``model.safetensors``) or a hub name (``klue/roberta-base``) that is already in the local Hugging Face
cache; anything else fails with :class:`HFModelError` saying which folder to provide. PyTorch-format
``model.safetensors`` load into TF without torch (transformers 4.54.1 detects the format from the file's
metadata); a folder with only ``pytorch_model.bin`` would need torch, so it is refused with a clear error.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

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
        raise HFModelError(f"{what} {folder}: {config.model_type} is not a wav2vec2-style speech model")
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
