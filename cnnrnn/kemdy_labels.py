"""Deprecated import path: the module is :mod:`cnnrnn.corpora.kemdy_labels`; this name stays as an alias of it."""
import importlib
import sys
import warnings

warnings.warn("cnnrnn.kemdy_labels is deprecated: import cnnrnn.corpora.kemdy_labels", DeprecationWarning, stacklevel=2)
sys.modules[__name__] = importlib.import_module("cnnrnn.corpora.kemdy_labels")
