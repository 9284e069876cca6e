"""Model families. Import a family's module to register its custom layers before loading."""
from .attention import PaddingMask, SelfAttentionPooling
from .augment import SpecAugment
from .blstm_attention import build_blstm_attention
from .cnnrnn import build_cnnrnn, resolve_backbone_weights
from .dcnn import build_dcnn, feature_extractor
from .whisper import (MeanStdPooling, Standardize, WeightedBlockSum, WhisperAttention, WhisperBlock, WhisperPositions,
                      build_whisper_encoder, pretrained_whisper)
from .yamnet import Int8Rounding, build_yamnet, yamnet_backbone

__all__ = ["build_cnnrnn", "resolve_backbone_weights", "PaddingMask", "SelfAttentionPooling", "build_blstm_attention",
           "build_dcnn", "feature_extractor", "SpecAugment",
           "build_yamnet", "yamnet_backbone", "Int8Rounding", "build_whisper_encoder", "pretrained_whisper",
           "WhisperPositions", "WhisperAttention", "WhisperBlock", "WeightedBlockSum", "MeanStdPooling", "Standardize"]
