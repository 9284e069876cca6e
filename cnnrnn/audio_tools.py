"""Folder-to-folder audio tools of the DCNN-BLSTMwA flow: resample and peak-normalise a corpus.

These are the original code's ``resample.py`` and ``amp_normalize.py`` (step -1 of its README: "resample, and amp
normalize datasets"). Both walk every audio file under a source folder (:data:`cnnrnn.audio.AUDIO_EXTENSIONS`)
and write a mono 16-bit PCM ``.wav`` at the same relative path under the destination folder, so the corpus's
folder tree (speaker/emotion folders) is kept and its readers work on the copy.

* Outputs are written atomically (a temporary file beside the target, then a rename).
* A rerun resumes: an output made from its source's current content (the content fingerprint of each source,
  :func:`cnnrnn.outputs.file_digest`, is recorded in the destination's ``.cnnrnn/inputs.json``) and, for
  resampling, already at the target rate is left alone and counted as ``up_to_date``; other audio under the same
  name is converted again, whatever its modification time (a corpus restored from an archive keeps old times). An
  output with no recorded fingerprint (written before they were recorded) is kept when it is newer than its source.
* Unreadable, empty or non-finite files are skipped and counted by reason; nothing else is lost.
* The destination may not be the source folder, nor inside it (nor the source inside it): the tool would
  read its own outputs or overwrite the corpus.
* The destination is claimed first (:func:`cnnrnn.outputs.claim_folder`, kinds :data:`RESAMPLED_KIND` and
  :data:`NORMALISED_KIND`): a new or empty folder, or this tool's own output (one written before folder markers
  existed counts when every file in it is a mono 16-bit wav named after a source file); anything else is refused
  before a file is written. Each tool writes under its own lock (a second run into the same destination is
  refused while the first runs) and removes the temporaries a killed run left there (counted in ``leftovers_removed``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np

from .artifacts import atomic_write, atomic_write_bytes, is_temporary
from .audio import AUDIO_EXTENSIONS, AudioError, check_waveform, list_audio, load_audio

log = logging.getLogger("cnnrnn.audio_tools")

#: Output encoding (the original tools wrote 16-bit PCM wav files).
SUBTYPE = "PCM_16"
#: The kinds of destination folder of :func:`resample_tree` and :func:`amp_normalize_tree`
#: (:func:`cnnrnn.outputs.claim_folder`); the stage (lock) names are ``resample`` and ``amp-normalize``.
RESAMPLED_KIND = "resampled audio"
NORMALISED_KIND = "peak-normalised audio"


class SameFolderError(ValueError):
    """The destination folder is the source folder, or one of them lies inside the other."""


def _made_from(src: Path):
    """The ``recognise`` of a destination written before folder markers existed: it holds at least one file, and
    every file in it is a mono 16-bit PCM wav (or a byte copy of a silent source) at the relative path of a source
    audio file under ``src`` (a folder of someone's audio under other names is not one)."""
    from .outputs import OS_LITTER, STATE_DIR

    def recognise(dst: Path) -> bool:
        import soundfile as sf

        found = False
        for path in dst.rglob("*"):
            rel = path.relative_to(dst)
            if STATE_DIR in rel.parts or not path.is_file() or is_temporary(path) or path.name in OS_LITTER:
                continue
            if not any((src / rel).with_suffix(ext).is_file() for ext in AUDIO_EXTENSIONS):
                return False
            copy = src / rel
            if not (copy.is_file() and copy.stat().st_size == path.stat().st_size):
                try:
                    info = sf.info(str(path))
                except Exception:  # noqa: BLE001 - not audio this tool wrote
                    return False
                if info.channels != 1 or info.subtype != SUBTYPE:
                    return False
            found = True
        return found

    return recognise


def _check_folders(src_dir: str | Path, dst_dir: str | Path, kind: str) -> tuple[Path, Path]:
    """Resolve and check the two folders, then claim the destination (:func:`cnnrnn.outputs.claim_folder`).

    Raises:
        FileNotFoundError: no source folder.
        SameFolderError: the destination is the source, or one lies inside the other.
        cnnrnn.outputs.OutputFolderError: the destination holds other files, or is another command's folder.
        cnnrnn.artifacts.NotWritableError: the destination cannot be written.
    """
    from .outputs import claim_folder

    src, dst = Path(src_dir).resolve(), Path(dst_dir).resolve()
    if not src.is_dir():
        raise FileNotFoundError(f"source folder {src} does not exist")
    if src == dst or src in dst.parents or dst in src.parents:
        raise SameFolderError(f"destination {dst} must be a separate folder: it is the source folder {src}, "
                              "or one lies inside the other (outputs would mix with, or overwrite, the sources)")
    claim_folder(dst, kind, recognise=_made_from(src))  # before any work: a refused or read-only one fails at once
    return src, dst


def _write_wav(path: Path, y: np.ndarray, sr: int) -> None:
    import soundfile as sf

    atomic_write(path, lambda fh: sf.write(fh, y, sr, format="WAV", subtype=SUBTYPE))


def _is_current(src: Path, out: Path, sr: int | None, made_from: str | None = None,
                source: str | None = None) -> bool:
    """True when ``out`` exists, was made from ``src``'s current content (``made_from``, the fingerprint recorded
    when it was written, equals ``source``, the fingerprint now) and (if ``sr`` is given) has that sample rate.
    An output without a recorded fingerprint counts as made from ``src`` when it is newer than ``src``."""
    import soundfile as sf

    if not out.is_file():
        return False
    if made_from is not None:
        if made_from != source:
            return False
    elif out.stat().st_mtime < src.stat().st_mtime:
        return False
    if sr is None:
        return True
    try:
        return sf.info(str(out)).samplerate == sr
    except Exception:  # a damaged output is rewritten
        return False


def _process_tree(src_dir: str | Path, dst_dir: str | Path, convert: Callable[[Path, Path], str | None],
                  sr: int | None, desc: str, progress: bool, kind: str, stage: str) -> dict:
    """Run ``convert(src_file, out_file)`` on every audio file under ``src_dir`` and count what happened.

    ``convert`` writes ``out_file`` (returning ``None``), or returns a note such as ``"copied_silent"`` for a
    file it handled specially; it raises :class:`AudioError` for a file to skip. The destination is claimed as
    ``kind`` and written under the lock of ``stage``; each output's source fingerprint is recorded (also when the
    run is interrupted) so that a rerun knows what every output was made from.
    """
    from .outputs import writing_stage

    src, dst = _check_folders(src_dir, dst_dir, kind)
    files = list_audio(src)
    outputs: dict[Path, list[str]] = {}  # per destination folder, the names this run may write (their temporaries)
    for path in files:
        rel = path.relative_to(src)
        outputs.setdefault(dst / rel.parent, []).extend({rel.with_suffix(".wav").name, rel.name})
    with writing_stage(dst, stage, sorted(outputs.items())) as n_leftovers:
        return _convert_all(src, dst, files, convert, sr, desc, progress, stage) | {"leftovers_removed": n_leftovers}


def _convert_all(src: Path, dst: Path, files: list[Path], convert: Callable[[Path, Path], str | None],
                 sr: int | None, desc: str, progress: bool, stage: str) -> dict:
    from tqdm.auto import tqdm

    from .outputs import digest, read_inputs, record_inputs

    summary = {"src": str(src), "dst": str(dst), "n_files": len(files), "written": 0, "up_to_date": 0,
               "notes": {}, "skipped": {}}
    made_from = dict((read_inputs(dst).get(stage) or {}).get("files") or {})  # {output: source sha1}
    seen: set[Path] = set()
    try:
        for path, source in zip(tqdm(files, desc=desc, unit="file", disable=not progress), _digests(files)):
            rel = path.relative_to(src)
            out = dst / rel.with_suffix(".wav")
            key = out.relative_to(dst).as_posix()
            if out in seen:  # a.wav and a.flac in one folder would write the same output
                summary["skipped"].setdefault("name_clash", []).append(str(rel))
                continue
            seen.add(out)
            if _is_current(path, out, sr, made_from.get(key), source):
                summary["up_to_date"] += 1
                made_from[key] = source
                continue
            made_from[key] = ""  # replaced or skipped from here on: not made from the recorded source (nor any)
            try:
                note = convert(path, out)
            except AudioError as exc:
                summary["skipped"].setdefault(exc.reason, []).append(str(rel))
                log.warning("skipped %s", exc)
                continue
            made_from[key] = source or ""
            if note:
                summary["notes"].setdefault(note, []).append(str(rel))
            summary["written"] += 1
    finally:
        record_inputs(dst, stage, {"sha1": digest([sr, sorted(made_from.items())]), "sr": sr, "files": made_from})
    summary["n_skipped"] = sum(len(v) for v in summary["skipped"].values())
    return summary


def _digests(files: list[Path]):
    """Each file's content fingerprint (:func:`cnnrnn.outputs.file_digest`; ``None``: unreadable), as needed."""
    from .outputs import audio_digests

    for path in files:
        yield audio_digests([path])[0]


def _load_checked(path: Path) -> tuple[np.ndarray, int]:
    """Mono float32 audio at the file's rate; silent audio is allowed, empty or NaN audio raises AudioError."""
    y, sr = load_audio(path, check=False)
    check_waveform(y, path, silence_peak=0.0)
    return y, sr


def _clip(y: np.ndarray) -> tuple[np.ndarray, bool]:
    """Clip to [-1, 1] (16-bit PCM cannot hold more); returns the clipped array and whether anything was cut."""
    clipped = bool(np.max(np.abs(y)) > 1.0)
    return (np.clip(y, -1.0, 1.0) if clipped else y), clipped


def resample_tree(src_dir: str | Path, dst_dir: str | Path, sr: int, progress: bool = True) -> dict:
    """Resample every audio file under ``src_dir`` to ``sr`` Hz into ``dst_dir`` (the original ``resample.py``).

    Each file is read mono (stereo averaged) and resampled with ``librosa.resample`` (``soxr_hq``), as
    ``librosa.load(path, sr=sr)`` does, then written as a 16-bit PCM wav at the same relative path (suffix
    ``.wav``). Samples pushed beyond ±1 by the resampler's ringing are clipped and the file is noted
    (``clipped``). Silent files are resampled like any other.

    Args:
        src_dir: corpus folder (searched recursively).
        dst_dir: output folder, created if needed; must not be ``src_dir`` or inside it.
        sr: target sample rate in Hz (> 0).
        progress: show a tqdm bar.

    Returns:
        Summary dict: ``n_files``, ``written``, ``up_to_date`` (kept from an earlier run), ``notes``
        (``{note: [relative paths]}``), ``skipped`` (``{reason: [relative paths]}``, reasons ``unreadable``,
        ``empty``, ``not_finite``, ``name_clash``), ``n_skipped`` and ``leftovers_removed`` (temporaries of a
        killed run).

    Raises:
        SameFolderError: ``dst_dir`` is ``src_dir``, or one contains the other.
        FileNotFoundError: ``src_dir`` does not exist.
        ValueError: ``sr`` is not a positive integer.
        cnnrnn.outputs.OutputFolderError: ``dst_dir`` holds other files, or is another command's output folder
            (nothing was written).
        cnnrnn.outputs.FolderInUseError: another process writes ``dst_dir`` with this tool.
    """
    import librosa

    if int(sr) != sr or sr <= 0:
        raise ValueError(f"sample rate must be a positive integer in Hz, got {sr!r}")
    sr = int(sr)

    def convert(path: Path, out: Path) -> str | None:
        y, file_sr = _load_checked(path)
        if file_sr != sr:
            y = librosa.resample(y, orig_sr=file_sr, target_sr=sr, res_type="soxr_hq")
        y, clipped = _clip(y)
        _write_wav(out, y, sr)
        return "clipped" if clipped else None

    return _process_tree(src_dir, dst_dir, convert, sr, f"resample to {sr} Hz", progress, RESAMPLED_KIND, "resample")


def amp_normalize_tree(src_dir: str | Path, dst_dir: str | Path, progress: bool = True) -> dict:
    """Peak-normalise every audio file under ``src_dir`` into ``dst_dir`` (the original ``amp_normalize.py``).

    Each file is read mono at its own rate and scaled by ``librosa.util.normalize(y)`` (``norm=inf``: the
    largest absolute sample becomes 1.0, so the amplitude spans [0, 1]), then written as a 16-bit PCM wav at
    the same relative path. A silent (all-zero) file cannot be scaled: it is copied byte for byte, not divided
    by zero, and noted as ``copied_silent``.

    Returns:
        Summary dict as :func:`resample_tree` returns (notes: ``copied_silent``).

    Raises:
        SameFolderError: ``dst_dir`` is ``src_dir``, or one contains the other.
        FileNotFoundError: ``src_dir`` does not exist.
        cnnrnn.outputs.OutputFolderError: ``dst_dir`` holds other files, or is another command's output folder.
        cnnrnn.outputs.FolderInUseError: another process writes ``dst_dir`` with this tool.
    """
    import librosa

    def convert(path: Path, out: Path) -> str | None:
        y, sr = _load_checked(path)
        if not np.any(y):
            atomic_write_bytes(out.with_suffix(path.suffix), path.read_bytes())
            return "copied_silent"
        _write_wav(out, librosa.util.normalize(y), sr)
        return None

    return _process_tree(src_dir, dst_dir, convert, None, "amp-normalize", progress, NORMALISED_KIND,
                         "amp-normalize")


def format_summary(summary: dict) -> str:
    """A few lines for the terminal: counts written, kept, noted and skipped by reason (with examples)."""
    lines = [f"{summary['n_files']} audio files under {summary['src']} -> {summary['dst']}: "
             f"{summary['written']} written, {summary['up_to_date']} up to date (kept), "
             f"{summary['n_skipped']} skipped"]
    for kind in ("notes", "skipped"):
        for reason, items in sorted(summary[kind].items()):
            shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
            lines.append(f"  {'noted' if kind == 'notes' else 'skipped'} {len(items)} ({reason}): {shown}")
    return "\n".join(lines)
