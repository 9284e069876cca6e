"""What every hostile-input case shares: the case registry, the CLI call, the file listing, the bundled sample.

A case is a function ``case_N(tmp: Path) -> {"observed": str, "passed": bool, "outside_writes": [paths]}``,
registered with :func:`case` (its number, a short title, the hostile input and the expected outcome, one line
each). It prepares its inputs in the empty folder ``tmp``, runs the CLI through :func:`cli` (in-process,
``cnnrnn.cli.main``), checks the exit code, the message and the files, and lists in ``outside_writes`` every file
that appeared under ``tmp`` outside the commands' output folders and the inputs it wrote itself
(:func:`outside`). A case that gives a command a folder of the user's files lists in ``data_loss`` every one of
them that was changed or deleted (:func:`snapshot`, :func:`lost`).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path
from typing import Callable, NamedTuple


class Case(NamedTuple):
    number: int
    title: str
    input: str
    expected: str
    run: Callable[[Path], dict]


CASES: dict[int, Case] = {}


def case(number: int, title: str, input: str, expected: str):
    """Register the decorated ``case_N(tmp)`` as hostile case ``number`` of issue 12."""
    def register(fn: Callable[[Path], dict]) -> Callable[[Path], dict]:
        CASES[number] = Case(number, title, input, expected, fn)
        return fn
    return register


class Outcome(NamedTuple):
    """What one ``cnnrnn`` command did: its exit code (``"traceback: Type: message"`` if an exception escaped
    ``main``, ``"exit N"`` on ``SystemExit``), what it printed, and its log records (``LEVEL name: message``)."""
    code: int | str
    stdout: str
    logs: str


def cli(*argv) -> Outcome:
    """Run ``cnnrnn -q ARGV`` in-process (``cnnrnn.cli.main``) and capture its outcome; never raises."""
    from cnnrnn import cli as cnnrnn_cli

    logs, stdout = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(logs)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with contextlib.redirect_stdout(stdout):
            code: int | str = cnnrnn_cli.main(["-q", *map(str, argv)])
    except SystemExit as exc:
        code = f"exit {exc.code}"
    except BaseException as exc:  # noqa: BLE001 - a traceback is what the benchmark counts
        code = f"traceback: {type(exc).__name__}: {exc}"
    finally:
        root.removeHandler(handler)
    return Outcome(code, stdout.getvalue(), logs.getvalue())


def errors(log_text: str) -> list[str]:
    """The ERROR lines of a log."""
    return [line for line in log_text.splitlines() if line.startswith("ERROR")]


def error_text(log_text: str) -> str:
    """The ERROR lines of a log, on one line."""
    return " | ".join(errors(log_text))


def files(root: Path) -> set[Path]:
    """Every file under ``root``."""
    return {p for p in root.rglob("*") if p.is_file()}


def outside(before: set[Path], root: Path, *allowed: Path) -> list[str]:
    """The files under ``root`` that are not in ``before`` and not under any of the ``allowed`` folders."""
    return sorted(str(p) for p in files(root) - before if not any(p.is_relative_to(a) for a in allowed))


def snapshot(root: Path) -> dict[Path, bytes]:
    """Every file under ``root`` with its bytes (a folder of the user's files, before a command)."""
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def lost(before: dict[Path, bytes]) -> list[str]:
    """The files of a :func:`snapshot` that were since deleted or changed."""
    return sorted(str(p) for p, data in before.items() if not p.is_file() or p.read_bytes() != data)


def read_json(path: Path, key: str | None = None) -> dict:
    """The JSON object in ``path`` (its ``key`` entry if given); ``{}`` if the file does not exist."""
    if not path.is_file():
        return {}
    data = json.loads(path.read_text(encoding="utf-8"))
    return data.get(key, {}) if key else data


def write_json(path: Path, data: dict) -> Path:
    """Write ``data`` to ``path`` (NaN / inf as JSON's extension, as a hostile config would hold them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def sample() -> Path:
    """The bundled KEMDy20-shaped sample corpus (real EmoDB audio)."""
    import cnnrnn

    return Path(cnnrnn.__file__).parent / "sample" / "kemdy20"


def sample_wavs(n: int) -> list[Path]:
    """The sample's first ``n`` wav files, sorted by path (Session01 first)."""
    return sorted((sample() / "wav").rglob("*.wav"))[:n]


def write_wav(path: Path, y, sr: int) -> Path:
    """Write samples ``y`` (floats in [-1, 1]) at ``sr`` Hz as 16-bit PCM."""
    import numpy as np
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.asarray(y, np.float32), sr, subtype="PCM_16")
    return path
