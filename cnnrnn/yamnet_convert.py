"""Deprecated import path: the module is :mod:`cnnrnn.models.yamnet_convert`; this name stays as an alias of it."""
import importlib
import sys
import warnings

warnings.warn("cnnrnn.yamnet_convert is deprecated: import cnnrnn.models.yamnet_convert", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("cnnrnn.models.yamnet_convert")
