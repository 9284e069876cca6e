"""Shared fixtures. Real audio comes from the bundled sample (always present) and, where it
exists, from ../shared/data (tests that need it skip when it is absent)."""
import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
TFLITE = SHARED_DATA / "pretrained" / "yamnet" / "yamnet.tflite"
WHISPER_CT2 = SHARED_DATA / "pretrained" / "whisper-tiny.en" / "model.bin"


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
    from cnnrnn.models.yamnet_convert import convert

    return convert(TFLITE, tmp_path_factory.mktemp("yamnet") / "yamnet.weights.h5")


@pytest.fixture(scope="session")
def whisper_weights(tmp_path_factory) -> Path:
    """Whisper tiny.en's encoder converted once per session from ``../shared/data``'s CTranslate2 ``model.bin``
    (``cnnrnn whisper-convert``; a few seconds); skips where the file is absent."""
    if not WHISPER_CT2.is_file():
        pytest.skip("../shared/data/pretrained/whisper-tiny.en is absent")
    from cnnrnn.models.whisper_convert import convert

    return convert(ct2=WHISPER_CT2, out=tmp_path_factory.mktemp("whisper") / "whisper-tiny.en.weights.h5")["out"]


def write_ct2_whisper(path: Path, *, n_layers=2, width=64, n_heads=2, n_mels=80, n_ctx=1500, seed=0,
                      spec="WhisperSpec") -> Path:
    """A random-weight Whisper encoder in the CTranslate2 ``model.bin`` format (float16, as Systran's files)."""
    import struct

    rng = np.random.default_rng(seed)

    def s(text):
        b = text.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    tensors = {"encoder/conv1/weight": (width, n_mels, 3), "encoder/conv1/bias": (width,),
               "encoder/conv2/weight": (width, width, 3), "encoder/conv2/bias": (width,),
               "encoder/position_encodings/encodings": (n_ctx, width),
               "encoder/layer_norm/gamma": (width,), "encoder/layer_norm/beta": (width,)}
    for i in range(n_layers):
        p = f"encoder/layer_{i}"
        for part in ("self_attention", "ffn"):
            tensors[f"{p}/{part}/layer_norm/gamma"] = (width,)
            tensors[f"{p}/{part}/layer_norm/beta"] = (width,)
        tensors.update({f"{p}/self_attention/linear_0/weight": (3 * width, width),
                        f"{p}/self_attention/linear_0/bias": (3 * width,),
                        f"{p}/self_attention/linear_1/weight": (width, width),
                        f"{p}/self_attention/linear_1/bias": (width,),
                        f"{p}/ffn/linear_0/weight": (4 * width, width), f"{p}/ffn/linear_0/bias": (4 * width,),
                        f"{p}/ffn/linear_1/weight": (width, 4 * width), f"{p}/ffn/linear_1/bias": (width,)})
    out = [struct.pack("<I", 6), s(spec), struct.pack("<II", 3, len(tensors) + 1)]
    for name, shape in tensors.items():
        scale = 1.0 if name.endswith("gamma") else 1.0 / np.sqrt(shape[-1])
        value = (1.0 + 0.1 * rng.standard_normal(shape)) if name.endswith("gamma") else \
            scale * rng.standard_normal(shape)
        raw = value.astype(np.float16).tobytes()
        out += [s(name), bytes([len(shape)]), struct.pack(f"<{len(shape)}I", *shape), bytes([4]),
                struct.pack("<I", len(raw)), raw]
    out += [s("encoder/num_heads"), bytes([0]), bytes([2]), struct.pack("<I", 2), struct.pack("<h", n_heads)]
    out.append(struct.pack("<I", 0))  # no aliases
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(out))
    return path


@pytest.fixture(scope="session")
def whisper_random_weights(tmp_path_factory) -> Path:
    """A small random-weight Whisper encoder (2 blocks, width 64, 2 heads) converted from a CTranslate2-format
    file written here: for tests of options, in seconds, without the real weights."""
    from cnnrnn.models.whisper_convert import convert

    folder = tmp_path_factory.mktemp("whisper_random")
    ct2 = write_ct2_whisper(folder / "ct2" / "model.bin")
    return convert(ct2=ct2, out=folder / "whisper-test.weights.h5")["out"]


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


@pytest.fixture
def figures(monkeypatch):
    """Every figure :mod:`cnnrnn.plots` saves, kept for inspection (and still written)."""
    from cnnrnn import plots

    kept = []
    save = plots._save

    def keep(fig, path):
        kept.append(fig)
        return save(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return kept



@contextmanager
def eager_keras_steps():
    """Keras' train and predict steps run eagerly inside (``tf.config.run_functions_eagerly``), then as before."""
    import tensorflow as tf

    before = tf.config.functions_run_eagerly()
    tf.config.run_functions_eagerly(True)
    try:
        yield
    finally:
        tf.config.run_functions_eagerly(before)


@pytest.fixture(scope="module", autouse=True)
def eager_module(request):
    """Keras steps run eagerly in a test module that sets ``EAGER_KERAS = True``: for its tiny models, tracing each
    ``fit`` and ``predict`` as a ``tf.function`` costs more than the steps (the same computation). The traced steps
    are tested by the other modules, the notebooks and the multi-worker test's processes."""
    if not getattr(request.module, "EAGER_KERAS", False):
        yield
        return
    with eager_keras_steps():
        yield


@pytest.fixture
def eager():
    """Keras steps run eagerly for one test (:func:`eager_keras_steps`)."""
    with eager_keras_steps():
        yield
