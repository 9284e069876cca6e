"""The hostile-input cases of issue 12, each reproduced through the ``cnnrnn`` CLI (see :mod:`._common`).

``CASES`` maps each case number to its :class:`~._common.Case` (title, hostile input, expected outcome, and the
function that runs it in an empty folder). ``benchmarks/hostile.py`` runs them.
"""
from . import config, config_types, corpora, families, folders, predict, speech, stages, words  # noqa: F401 - importing registers the cases
from ._common import CASES, Case

__all__ = ["CASES", "Case", "config", "config_types", "corpora", "families", "folders", "predict", "speech", "stages", "words"]
