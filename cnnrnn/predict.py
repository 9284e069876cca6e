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

from .artifacts import ensure_writable_dir
from .runs import FAMILIES, find_manifest, read_manifest

#: Family → the module with its ``predict_run(models, source, out_dir, *, manifest, progress, **options)``.
FAMILY_MODULES = {
    "cnnrnn": "cnnrnn.cnnrnn.predict",
    "dcnn": "cnnrnn.dcnn.predict",
    "baselines": "cnnrnn.baselines.predict",
    "hf": "cnnrnn.hf.predict",
    "functionals": "cnnrnn.functionals.predict",
}

#: Models shipped inside the package, one run folder each (``cnnrnn predict --model emodb``); see each folder's
#: ``MODEL_CARD.md``. Built by ``benchmarks/build_shipped_model.py``.
PRETRAINED_DIR = Path(__file__).resolve().parent / "pretrained"


def shipped_models() -> list[str]:
    """Names of the models shipped in the package (folders of :data:`PRETRAINED_DIR` with a ``run.json``)."""
    if not PRETRAINED_DIR.is_dir():
        return []
    return sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / "run.json").is_file())


def resolve_model(model: str | Path) -> Path:
    """A path as given when it exists, else the shipped model of that name (:func:`shipped_models`).

    Raises:
        FileNotFoundError: neither a path nor a shipped model's name (the message lists the shipped names).
    """
    path = Path(model)
    if path.exists():
        return path
    if str(model) in shipped_models():
        return PRETRAINED_DIR / str(model)
    names = ", ".join(shipped_models()) or "none"
    raise FileNotFoundError(f"model {model} not found (neither a path nor a shipped model: {names})")


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
    model = resolve_model(model)
    path = find_manifest(model)
    if path is None:
        return _legacy_family(model), None
    manifest = read_manifest(path, families=[f for f in FAMILIES if f in FAMILY_MODULES])
    return manifest.family, manifest


def predict(models: str | Path | Sequence[str | Path], source: str | Path, out_dir: str | Path | None = None, *,
            progress: bool = True, fuse: bool = False, **options: Any) -> dict:
    """Predict ``source`` with a trained run of any family, or fuse several runs.

    Args:
        models: a checkpoint, a run folder, a shipped model's name (:func:`shipped_models`: ``emodb``), or
            several. Without ``fuse`` all must be of one family (the CNNRNN
            folds average their probabilities). With ``fuse``, each run (family and run folder) predicts on its
            own into ``<out>/<family>_<k>/``, and the runs' class probabilities are averaged (late fusion,
            :func:`fuse_predictions`).
        source: what the families predict on (audio files or folders; CNNRNN also PNGs and
            ``*_final.pickle``; HF a ``new_data.csv``).
        out_dir: output folder (default ``<run>/predictions``; ``./predictions`` for a shipped model).
        fuse: late fusion of the runs given.
        options: ``labels``, ``config``, ``resize``, ``batch_size``, ``speaker``: passed to the families, which
            ignore what does not apply; ``images`` (a folder of audio and images gives its images, not its
            audio): CNNRNN runs only; ``render`` (``fast``/``specshow``), ``pixel_range`` (``0-255``/``0-1``),
            ``trust_code`` (load ``Lambda`` layers): CNNRNN runs and checkpoints, Keras 2 ones included
            (:func:`cnnrnn.cnnrnn.predict.predict`).

    Returns:
        ``{"predictions": DataFrame, "metrics": dict | None, "files": {...}, "skipped": {...}, "family": str}``
        (``family`` is ``fusion`` for a fusion, with ``"runs"``: each run's own result).

    Raises:
        ValueError: models of different families without ``fuse``; runs whose classes cannot be matched;
            ``images`` for a family that does not predict images; whatever a family raises for bad input.
        cnnrnn.artifacts.NotWritableError: ``out_dir`` cannot be written (checked before any work; a family
            checks its default output folder the same way).
    """
    paths = [resolve_model(models)] if isinstance(models, (str, Path)) else [resolve_model(m) for m in models]
    if not paths:
        raise ValueError("no model given")
    if out_dir is None and any(p.resolve().is_relative_to(PRETRAINED_DIR) for p in paths):
        out_dir = Path("predictions")  # never write into the installed package
    if out_dir is not None:
        ensure_writable_dir(out_dir)
    resolved = [resolve_family(p) for p in paths]
    families = {family for family, _ in resolved}
    if options.get("images") and families != {"cnnrnn"}:
        raise ValueError(f"--images: only CNNRNN runs predict on spectrogram images, not "
                         f"{', '.join(sorted(families - {'cnnrnn'}))} runs")
    if fuse:
        return _fuse(paths, resolved, source, out_dir, progress, options)
    if len(families) != 1:
        raise ValueError(f"the models are of different families {sorted(families)}; predict with one at a time, "
                         "or average their probabilities with --fuse")
    family, manifest = resolved[0]
    module = importlib.import_module(FAMILY_MODULES[family])
    result = module.predict_run(paths, source, out_dir, manifest=manifest, progress=progress, **options)
    return {**result, "family": family}


def _fuse(paths, resolved, source, out_dir, progress: bool, options: dict) -> dict:
    groups: dict[tuple, list[Path]] = {}
    for path, (family, manifest) in zip(paths, resolved):
        key = (family, str(manifest.folder) if manifest is not None else str(path.resolve()))
        groups.setdefault(key, []).append(path)
    if len(groups) < 2:
        raise ValueError("--fuse needs at least two runs (of any families)")
    out = Path(out_dir) if out_dir else paths[0].resolve().parent / "fusion"
    runs = []
    for k, ((family, _), members) in enumerate(groups.items(), start=1):
        manifest = next(m for p, (f, m) in zip(paths, resolved) if p in members)
        module = importlib.import_module(FAMILY_MODULES[family])
        result = module.predict_run(members, source, out / f"{family}_{k}", manifest=manifest, progress=progress,
                                    **options)
        runs.append({**result, "family": family})
    return {**fuse_predictions([r["predictions"] for r in runs], out), "family": "fusion", "runs": runs,
            "notes": [n for r in runs for n in r.get("notes") or ()],
            "skipped": {f"{r['family']}:{reason}": items for r in runs for reason, items in r["skipped"].items()}}


def fuse_predictions(tables: Sequence, out_dir: str | Path) -> dict:
    """Late fusion: the mean of several runs' class probabilities, item by item.

    The classes are matched by meaning across corpora (:func:`cnnrnn.corpora.match_labels`: ``angry`` =
    ``anger``), in the first run's label order; a class that another run lacks is averaged over the runs that
    have it. Items are matched by ``id``; only the items every run predicted are fused. The true label, when
    the first table has one, is kept and scored.

    Args:
        tables: each run's ``predictions.csv`` as a DataFrame (``id``, ``p_<label>`` columns, optional
            ``true``, ``source``).
        out_dir: where the fused report goes (:func:`cnnrnn.reports.write_report`).

    Returns:
        What :func:`cnnrnn.reports.write_report` returns.

    Raises:
        ValueError: no item common to every run, or a run none of whose classes match the first run's.
    """
    import numpy as np

    from .corpora import match_labels
    from .reports import write_report

    def labels_of(df):
        return [c[2:] for c in df.columns if c.startswith("p_")]

    base = labels_of(tables[0])
    common = set(tables[0]["id"])
    for df in tables[1:]:
        common &= set(df["id"])
    ids = [i for i in tables[0]["id"] if i in common]
    if not ids:
        raise ValueError("the runs predicted no item in common: nothing to fuse")
    total = np.zeros((len(ids), len(base)))
    count = np.zeros(len(base))
    for df in tables:
        match = match_labels(labels_of(df), base)
        if not any(match.values()):
            raise ValueError(f"no class of {labels_of(df)} matches {base}")
        rows = df.drop_duplicates("id").set_index("id").loc[ids]
        for label, target in match.items():
            if target is not None:
                j = base.index(target)
                total[:, j] += rows[f"p_{label}"].to_numpy(float)
                count[j] += 1
    proba = total / np.maximum(count, 1)
    proba = proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)
    first = tables[0].drop_duplicates("id").set_index("id").loc[ids]
    y_true = None
    if "true" in first and first["true"].notna().all() and set(first["true"]) <= set(base):
        y_true = [base.index(t) for t in first["true"]]
    sources = first["source"].tolist() if "source" in first else None
    return write_report(out_dir, proba.astype(np.float32), base, ids, y_true, family="fusion", sources=sources,
                        extra={"runs": len(tables)})
