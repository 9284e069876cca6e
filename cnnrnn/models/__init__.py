"""Keras builders and layers of every family; each name is imported from its module on first use (PEP 562).

Importing this package is cheap: a tool that lives here (``yamnet_convert``, ``whisper_convert``) loads without
TensorFlow. :func:`register_layers` imports every module that declares custom layers, so that a saved model that
uses them loads (:func:`cnnrnn.artifacts.load_model` calls it first).
"""
from __future__ import annotations

import importlib

#: Public name → the submodule that defines it.
_WHERE = {
    "PaddingMask": "attention", "SelfAttentionPooling": "attention", "SpecAugment": "augment",
    "build_blstm_attention": "blstm_attention", "build_cnnrnn": "cnnrnn", "resolve_backbone_weights": "cnnrnn",
    "build_dcnn": "dcnn", "feature_extractor": "dcnn",
    "MeanStdPooling": "whisper", "Standardize": "whisper", "WeightedBlockSum": "whisper",
    "WhisperAttention": "whisper", "WhisperBlock": "whisper", "WhisperPositions": "whisper",
    "build_whisper_encoder": "whisper", "pretrained_whisper": "whisper",
    "Int8Rounding": "yamnet", "build_yamnet": "yamnet", "yamnet_backbone": "yamnet",
}
#: The submodules that register custom Keras layers when imported.
LAYER_MODULES = ("attention", "augment", "blstm_attention", "cnnrnn", "dcnn", "whisper", "yamnet")

__all__ = sorted(_WHERE)


def register_layers() -> None:
    """Import every module of :data:`LAYER_MODULES`, which registers the package's custom Keras layers."""
    for name in LAYER_MODULES:
        importlib.import_module(f"{__name__}.{name}")


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
