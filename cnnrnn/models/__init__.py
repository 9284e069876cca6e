"""Model families. Import a family's module to register its custom layers before loading."""
from .cnnrnn import build_cnnrnn, resolve_backbone_weights

__all__ = ["build_cnnrnn", "resolve_backbone_weights"]
