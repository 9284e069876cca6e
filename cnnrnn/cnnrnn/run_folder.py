"""A CNNRNN run folder: what makes a folder a run (its marker, or the files of a run written before markers
existed), claiming it for a stage, and the config every stage records in it."""
from __future__ import annotations

import logging
from pathlib import Path

from .. import artifacts as A
from .config import CnnrnnConfig

log = logging.getLogger("cnnrnn.cnnrnn.data")


NO_SESSION = "all"
#: The kind of folder a CNNRNN run is (:func:`cnnrnn.outputs.claim_folder`).
RUN_KIND = "cnnrnn run"
#: The audio fingerprint of every PNG in ``spectrograms/`` (``{id: sha1}``, :func:`cnnrnn.outputs.file_digest`).
SOURCES_FILE = "sources.json"


#: Files only a CNNRNN run holds (not ``train.json`` or ``labels.json``, names a user's folder may hold too).
RUN_FILES = ("split_report.json", A.AUDIO_FILES["train"], A.DATA_FILES["train"], A.DATA_FILES["test"],
             A.FINAL_FILES["train"], "packed.json", "cv_report.json")


def is_run_folder(folder: Path) -> bool:
    """Whether ``folder`` holds a CNNRNN run written before folder markers existed: one of :data:`RUN_FILES`, or a
    ``run.json`` of the cnnrnn family."""
    if any((folder / n).is_file() for n in RUN_FILES):
        return True
    try:
        return A.load_json(folder / "run.json").get("family") == "cnnrnn"
    except (OSError, ValueError, AttributeError):
        return False


def claim_run(out: str | Path, create: bool = True, write: bool = True) -> Path:
    """Claim ``out`` as a CNNRNN run folder (:func:`cnnrnn.outputs.claim_folder`): new, empty, or a run already.
    ``write=False`` only checks (nothing is created).

    Raises:
        cnnrnn.outputs.OutputFolderError: ``out`` holds other files, or is another command's output folder.
        cnnrnn.artifacts.NotWritableError: ``out`` cannot be written.
    """
    from ..outputs import claim_folder

    return claim_folder(out, RUN_KIND, recognise=is_run_folder, create=create, write=write)


def record_config(out: Path, cfg: CnnrnnConfig) -> None:
    """Write ``<out>/config.json`` unless it already holds exactly this config (one write per run)."""
    path = out / A.CONFIG_FILE
    if path.is_file():
        try:
            if A.load_json(path) == cfg.to_dict():
                return
        except ValueError:
            pass
    cfg.save(path)
