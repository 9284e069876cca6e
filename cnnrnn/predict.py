"""``cnnrnn predict --model X``: prediction with a trained run of any family.

The run's manifest (``run.json``, :mod:`cnnrnn.runs`) found at or above ``X`` names its family; the run is
handed to that family's ``predict.predict_run`` (:data:`FAMILY_MODULES`). A run written before manifests
existed is recognised by its own files, as before: ``baseline_config.json`` → baselines,
``blstm_attention.json`` or ``dcnn.json`` → DCNN-BLSTMwA, ``hf_model.json`` → Hugging Face, otherwise
CNNRNN. This module sits above the families: it imports them only by name, when a run needs one.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

from .runs import FAMILIES, find_manifest, read_manifest

#: Family → the module with its ``predict_run(models, source, out_dir, *, manifest, progress, **options)``.
FAMILY_MODULES = {
    "cnnrnn": "cnnrnn.cnnrnn.predict",
    "dcnn": "cnnrnn.dcnn.predict",
    "baselines": "cnnrnn.baselines.predict",
    "hf": "cnnrnn.hf.predict",
    "functionals": "cnnrnn.functionals.predict",
}

#: Files that identify a run from before manifests, per family (checked in this order).
_LEGACY_MARKERS = (("baselines", ("baseline_config.json",)), ("dcnn", ("blstm_attention.json", "dcnn.json")),
                   ("hf", ("hf_model.json",)))


def _legacy_family(model: Path) -> str:
    p = model.resolve()
    for folder in ([p] if p.is_dir() else []) + list(p.parents)[:3]:
        for family, markers in _LEGACY_MARKERS:
            if any((folder / m).is_file() for m in markers):
                return family
    return "cnnrnn"


def resolve_family(model: str | Path):
    """``(family, manifest or None)`` of a checkpoint or run folder.

    Raises:
        FileNotFoundError: ``model`` does not exist.
        cnnrnn.runs.ManifestError: the manifest is unreadable, newer than this package, or of a family that
            ``cnnrnn predict`` cannot use.
    """
    model = Path(model)
    if not model.exists():
        raise FileNotFoundError(f"model {model} not found")
    path = find_manifest(model)
    if path is None:
        return _legacy_family(model), None
    manifest = read_manifest(path, families=[f for f in FAMILIES if f in FAMILY_MODULES])
    return manifest.family, manifest


def predict(models: str | Path | Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
            progress: bool = True, **options: Any) -> dict:
    """Predict ``source`` with a trained run of any family.

    Args:
        models: a checkpoint, a run folder, or several (the CNNRNN folds average their probabilities); all
            must be of one family.
        source: what the family predicts on (audio files or folders; CNNRNN also PNGs and
            ``*_final.pickle``; HF a ``new_data.csv``).
        out_dir: output folder (default ``<run>/predictions``).
        options: ``labels``, ``config``, ``resize``, ``batch_size``, ``speaker``: passed to the family, which
            ignores what does not apply.

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {...}, "skipped": {...}, "family": str}``.

    Raises:
        ValueError: models of different families; whatever the family raises for bad input.
    """
    paths = [Path(models)] if isinstance(models, (str, Path)) else [Path(m) for m in models]
    if not paths:
        raise ValueError("no model given")
    resolved = [resolve_family(p) for p in paths]
    families = {family for family, _ in resolved}
    if len(families) != 1:
        raise ValueError(f"the models are of different families {sorted(families)}; predict with one at a time")
    family, manifest = resolved[0]
    module = importlib.import_module(FAMILY_MODULES[family])
    result = module.predict_run(paths, source, out_dir, manifest=manifest, progress=progress, **options)
    return {**result, "family": family}
