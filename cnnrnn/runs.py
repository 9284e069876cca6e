"""The run manifest (``run.json``): what every training command writes so that any run can be used later.

A manifest records, for one trained run (a CNNRNN run folder, a DCNN step, a baseline run, an HF fold):

* ``schema_version`` (:data:`SCHEMA_VERSION`) and ``family`` (:data:`FAMILIES`);
* ``config``: the family config the run trained with (current key names);
* ``labels``: the class names in code order (index = the model's output unit);
* ``split``: the fold scheme (:data:`cnnrnn.splits.SCHEMES`), the number of folds, the fold index (0-based,
  ``None`` for a run that trains every fold) and the seed, so that prediction can rebuild the test part;
* ``input``: what the model takes (``sr`` in Hz, ``duration`` in seconds, image size, feature settings);
* ``checkpoints``: model files relative to the manifest's folder;
* ``inputs``: the content fingerprint of each stage's inputs (:func:`cnnrnn.outputs.record_inputs`), so that a
  rerun never reuses files made from other audio or labels;
* ``versions``: of cnnrnn, TensorFlow, Keras and librosa that wrote it (read from the installed
  distributions, nothing is imported);
* ``created``: UTC time (ISO 8601).

``cnnrnn predict --model X`` finds the manifest at or above ``X`` (:func:`find_manifest`) and hands the run
to its family. A manifest with a newer schema than this package knows, or of a family that the command
cannot use, is refused with a :class:`ManifestError` naming the field. Other package versions load.
Runs written before manifests existed have none; :func:`find_manifest` returns ``None`` and
:func:`legacy_family` recognises the family by its own files (:data:`cnnrnn.families.LEGACY_MARKERS`). Every
search upwards from a model for its run goes through :func:`find_run`.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .artifacts import load_json, save_json
from .families import DEFAULT_FAMILY, FAMILIES, LEGACY_MARKERS

MANIFEST_FILE = "run.json"
SCHEMA_VERSION = 1
_VERSIONED = ("cnnrnn", "tensorflow", "keras", "librosa")  # distributions: "cnnrnn" is this package, not a family


class ManifestError(ValueError):
    """A run manifest cannot be used: unreadable, a newer schema, a missing field, or another family."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of cnnrnn, TensorFlow, Keras and librosa (``None`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


@dataclass
class RunManifest:
    """The parsed ``run.json`` (see the module docstring). ``folder`` is where it was read from."""

    family: str
    config: dict[str, Any]
    labels: list[str]
    split: dict[str, Any] = field(default_factory=dict)
    input: dict[str, Any] = field(default_factory=dict)
    checkpoints: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    schema_version: int = SCHEMA_VERSION
    folder: Path | None = None

    @property
    def fold(self) -> int | None:
        """The 0-based fold this run tested on, or ``None``."""
        return self.split.get("fold")

    def checkpoint_paths(self) -> list[Path]:
        """The checkpoints as paths (relative ones are taken relative to the manifest's folder)."""
        base = self.folder or Path(".")
        return [p if p.is_absolute() else base / p for p in map(Path, self.checkpoints)]

    def to_dict(self) -> dict[str, Any]:
        """The manifest as written to ``run.json`` (``schema_version`` and ``family`` first; no ``folder``)."""
        d = dataclasses.asdict(self)
        d.pop("folder")
        return {"schema_version": d.pop("schema_version"), "family": d.pop("family"), **d}


def write_manifest(folder: str | Path, family: str, config: dict[str, Any], labels: Sequence[str], *,
                   split: dict[str, Any] | None = None, input_spec: dict[str, Any] | None = None,
                   checkpoints: Sequence[str | Path] = (), extra: dict[str, Any] | None = None,
                   inputs: dict[str, Any] | None = None) -> Path:
    """Write ``<folder>/run.json`` atomically. Checkpoint paths are stored relative to ``folder`` when
    they lie inside it.

    Args:
        folder: the run folder.
        family: one of :data:`FAMILIES`.
        config: the family config as a dict (:func:`cnnrnn.config.to_dict`).
        labels: class names in code order.
        split: ``{"scheme", "folds", "fold", "seed", ...}`` (see :mod:`cnnrnn.splits`).
        input_spec: ``{"sr", "duration", "image_size", ...}``.
        checkpoints: model files of the run.
        extra: anything else the family wants to keep.
        inputs: ``{stage: {"sha1", ...}}``, the fingerprints of the stages' inputs.

    Returns:
        The manifest path.

    Raises:
        ManifestError: unknown family.
    """
    if family not in FAMILIES:
        raise ManifestError(f"family {family!r} is not one of {FAMILIES}")
    folder = Path(folder)
    rel = []
    for c in checkpoints:
        c = Path(c)
        try:
            rel.append(str(c.resolve().relative_to(folder.resolve())))
        except ValueError:
            rel.append(str(c.resolve()))
    manifest = RunManifest(family=family, config=dict(config), labels=list(labels), split=dict(split or {}),
                           input=dict(input_spec or {}), checkpoints=rel, extra=dict(extra or {}),
                           inputs=dict(inputs or {}),
                           versions=package_versions(),
                           created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    return save_json(manifest.to_dict(), folder / MANIFEST_FILE)


def read_manifest(path: str | Path, families: Sequence[str] | None = None) -> RunManifest:
    """Read a ``run.json`` (or the one in a folder).

    Args:
        path: the manifest or its folder.
        families: families the caller can use; another family is refused.

    Raises:
        FileNotFoundError: no manifest there.
        ManifestError: not a JSON object, a newer ``schema_version``, a missing field, or a ``family``
            outside ``families``; the message names the field.
    """
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_FILE
    try:
        data = load_json(path)
    except ValueError as exc:  # json.JSONDecodeError
        raise ManifestError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path}: a run manifest is a JSON object")
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ManifestError(f"{path}: field 'schema_version' is missing or not an integer ({version!r})")
    if version > SCHEMA_VERSION:
        raise ManifestError(f"{path}: field 'schema_version' is {version}, but this cnnrnn reads up to "
                            f"{SCHEMA_VERSION}; upgrade cnnrnn to use this run")
    for key in ("family", "config", "labels"):
        if key not in data:
            raise ManifestError(f"{path}: field {key!r} is missing")
    if families is not None and data["family"] not in families:
        raise ManifestError(f"{path}: field 'family' is {data['family']!r}, but this command takes "
                            f"{' or '.join(map(repr, families))} runs")
    known = {f.name for f in dataclasses.fields(RunManifest)} - {"folder"}
    manifest = RunManifest(**{k: v for k, v in data.items() if k in known})
    manifest.folder = path.parent
    return manifest


def find_run(path: str | Path, markers: Sequence[str], levels: int | None = None) -> Path | None:
    """The nearest folder at or above ``path`` that holds one of the files ``markers``, or ``None``.

    The search starts at ``path`` itself when it is a folder, else at its parent, and goes up through at most
    ``levels`` parents (``None``: up to the file system's root). The path is resolved first (symlinks, ``..``).
    This is the one upward walk of the package: run manifests (:func:`find_manifest`), runs from before manifests
    (:func:`legacy_family`) and the families' own run files (``labels.json``, ``baseline_config.json``) are
    found with it.
    """
    p = Path(path).resolve()
    parents = list(p.parents)
    folders = ([p] if p.is_dir() else []) + (parents if levels is None else parents[:levels])
    for folder in folders:
        if any((folder / name).is_file() for name in markers):
            return folder
    return None


def find_manifest(model_path: str | Path) -> Path | None:
    """The ``run.json`` in ``model_path`` (a folder) or in the nearest folder above it, or ``None``."""
    folder = find_run(model_path, (MANIFEST_FILE,))
    return folder / MANIFEST_FILE if folder is not None else None


#: How many folders above a model a run from before manifests is looked for (:func:`legacy_family`): a
#: checkpoint sits at most this deep in its run (``<run>/models/<fold>.h5``, ``<run>/<step>/<model>.h5``).
LEGACY_LEVELS = 3


def legacy_family(model_path: str | Path) -> str:
    """The family of a run written before manifests, by its own files (:data:`cnnrnn.families.LEGACY_MARKERS`,
    checked in order, in ``model_path`` when it is a folder and in up to :data:`LEGACY_LEVELS` folders above it);
    :data:`cnnrnn.families.DEFAULT_FAMILY` when none is there."""
    folder = find_run(model_path, [m for _, markers in LEGACY_MARKERS for m in markers], levels=LEGACY_LEVELS)
    if folder is not None:  # the nearest folder with a marker; of its markers, the first family's
        for family, markers in LEGACY_MARKERS:
            if any((folder / m).is_file() for m in markers):
                return family
    return DEFAULT_FAMILY
