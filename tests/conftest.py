"""Shared fixtures. Real audio comes from the bundled sample (always present) and, where it
exists, from ../shared/data (tests that need it skip when it is absent)."""
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
TFLITE = SHARED_DATA / "pretrained" / "yamnet" / "yamnet.tflite"


@pytest.fixture(scope="session")
def sample_dir() -> Path:
    import cnnrnn

    return Path(cnnrnn.__file__).parent / "sample" / "kemdy20"


@pytest.fixture(scope="session")
def real_wav(sample_dir) -> Path:
    """A real 16 kHz mono EmoDB recording from the bundled sample."""
    return sorted((sample_dir / "wav" / "Session01").glob("*.wav"))[0]


@pytest.fixture(scope="session")
def real_waveform(real_wav):
    import soundfile as sf

    y, sr = sf.read(real_wav, dtype="float32")
    return y, sr


@pytest.fixture(scope="session")
def yamnet_weights(tmp_path_factory) -> Path:
    """YAMNet's AudioSet weights converted once per session from ``../shared/data``'s ``yamnet.tflite``
    (``cnnrnn yamnet-convert``; about 10 s); skips where the file is absent."""
    if not TFLITE.is_file():
        pytest.skip("../shared/data/pretrained/yamnet is absent")
    from cnnrnn.yamnet_convert import convert

    return convert(TFLITE, tmp_path_factory.mktemp("yamnet") / "yamnet.weights.h5")


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


def write_wav(path: Path, y: np.ndarray, sr: int, subtype: str = "PCM_16") -> Path:
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, y, sr, subtype=subtype)
    return path


def run_notebook(path: Path, env: dict[str, str], timeout: int = 600):
    """Execute a notebook headless with ``env`` added to the kernel's environment; returns the executed
    notebook (nbformat node). A cell error raises ``nbclient.exceptions.CellExecutionError``."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(str(path), as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits this process's environment
    try:
        NotebookClient(nb, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(path.parent)}}).execute()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


def notebook_outputs(nb) -> list:
    """Every output of every code cell of an executed notebook."""
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
