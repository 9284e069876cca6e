"""The family registry: the one place in the package that names the model families.

A family is a subpackage with the same parts (modules): ``config``, ``data``, ``train`` (``train(...)``),
``predict`` (``evaluate(...)``, ``predict_run(...)``) and ``export`` (``plan(...)``, or ``NOT_EXPORTABLE`` with
the reason). The shared core and the facades (:mod:`cnnrnn.predict`, :mod:`cnnrnn.export`) reach a family only
through :func:`module`, by the family's name as it stands in a run manifest (:mod:`cnnrnn.runs`); they never compare
against a family's name (``tests/test_architecture.py`` checks this). Nothing here imports a family: a family's
module is imported when a run needs it.

Each family also declares here the files that identify one of its runs written before run manifests existed
(:data:`LEGACY_MARKERS`); a folder with none of them is a run of :data:`DEFAULT_FAMILY`, the package's main job.
"""
from __future__ import annotations

import importlib
from types import ModuleType

#: Family name (as in ``run.json``'s ``family``) → its package.
PACKAGES: dict[str, str] = {
    "cnnrnn": "cnnrnn.cnnrnn",
    "dcnn": "cnnrnn.dcnn",
    "baselines": "cnnrnn.baselines",
    "hf": "cnnrnn.hf",
    "functionals": "cnnrnn.functionals",
}
#: The family names, in the order the package lists them.
FAMILIES: tuple[str, ...] = tuple(PACKAGES)
#: The family of a run that has no manifest and none of :data:`LEGACY_MARKERS` (the original CNNRNN code's runs).
DEFAULT_FAMILY = "cnnrnn"
#: Files that identify a run from before manifests, per family, checked in this order.
LEGACY_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("baselines", ("baseline_config.json",)),
    ("dcnn", ("blstm_attention.json", "dcnn.json")),
    ("hf", ("hf_model.json",)),
)
#: The parts every family has (``module(family, part)``).
PARTS = ("config", "data", "train", "predict", "export")
#: Parts a family may have: ``saliency`` (``explain(models, audio, manifest, *, method, target)`` for
#: ``cnnrnn spectrogram --explain``, and optionally ``check(models, manifest)``, which refuses a run it cannot
#: explain before anything is predicted). :func:`has_part` says whether it does.
OPTIONAL_PARTS = ("saliency",)


class UnknownFamilyError(ValueError):
    """A family name that is not in :data:`FAMILIES`."""


def check_family(family: str) -> str:
    """``family`` itself when it names a family.

    Raises:
        UnknownFamilyError: not one of :data:`FAMILIES` (the message lists them).
    """
    if family not in PACKAGES:
        raise UnknownFamilyError(f"unknown model family {family!r} (families: {', '.join(FAMILIES)})")
    return family


def module(family: str, part: str) -> ModuleType:
    """The module ``part`` (one of :data:`PARTS` or :data:`OPTIONAL_PARTS`) of ``family``, imported on first use.

    Raises:
        UnknownFamilyError: ``family`` is not a family.
        ValueError: ``part`` is not one of :data:`PARTS`.
    """
    if part not in PARTS + OPTIONAL_PARTS:
        raise ValueError(f"unknown family part {part!r} (parts: {', '.join(PARTS + OPTIONAL_PARTS)})")
    return importlib.import_module(f"{PACKAGES[check_family(family)]}.{part}")


def has_part(family: str, part: str) -> bool:
    """Whether ``family`` has the module ``part`` (one of :data:`OPTIONAL_PARTS`), without importing it.

    Raises:
        UnknownFamilyError: ``family`` is not a family.
    """
    import importlib.util

    return importlib.util.find_spec(f"{PACKAGES[check_family(family)]}.{part}") is not None


def module_name(family: str, part: str) -> str:
    """The dotted name of ``family``'s module ``part``, without importing it (see :func:`module`)."""
    if part not in PARTS:
        raise ValueError(f"unknown family part {part!r} (parts: {', '.join(PARTS)})")
    return f"{PACKAGES[check_family(family)]}.{part}"
