"""What every benchmark script shares: results written with repository-relative paths, and the machine's facts.

Results are committed, so they must not hold this machine's absolute paths: :func:`save_result` rewrites every
path under the repository as relative to its root (``benchmarks/work/...``) and every path beside it as
``../shared/...``, wherever it stands in a string.
"""
from __future__ import annotations

import os
import re
import platform
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def relative_paths(obj: Any) -> Any:
    """``obj`` (JSON-like) with absolute paths under the repository (or its parent folder) made relative to the
    repository root; other values unchanged."""
    if isinstance(obj, dict):
        return {k: relative_paths(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [relative_paths(v) for v in obj]
    if isinstance(obj, Path):
        obj = str(obj)
    if isinstance(obj, str):
        # only where an absolute path starts, never inside a relative one whose folder names repeat the parent's
        start = r"(?<![\w.\-/])"
        obj = re.sub(start + re.escape(f"{REPO}{os.sep}"), "", obj)
        obj = re.sub(start + re.escape(str(REPO)) + r"(?![\w.\-])", ".", obj)
        return re.sub(start + re.escape(f"{REPO.parent}{os.sep}"), f"..{os.sep}", obj)
    return obj


def save_result(result: dict, path: str | Path) -> Path:
    """Write a benchmark result as JSON (atomically, :func:`cnnrnn.artifacts.save_json`) with relative paths."""
    from cnnrnn.artifacts import save_json

    return save_json(relative_paths(result), path)


def machine() -> dict:
    """CPU model, core count, platform and Python version of this machine."""
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
