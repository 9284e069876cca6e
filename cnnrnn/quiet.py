"""Quiet start-up: TensorFlow's native start-up lines are kept off the terminal.

Importing TensorFlow 2.21 writes, from C++, straight to file descriptor 2: twice the pair ``WARNING: All log
messages before absl::InitializeLog() is called are written to STDERR`` + ``I0000 ... port.cc] oneDNN custom
operations are on ...`` (+ ``cudart_stub.cc] Could not find cuda drivers``, ``cpu_feature_guard.cc] This
TensorFlow binary is optimized ...``), and the first use of a device adds ``E0000 ... cuda_platform.cc] failed
call to cuInit`` on a machine without a GPU. ``TF_CPP_MIN_LOG_LEVEL`` does not remove them: they are written
before absl logging reads it. Python's ``sys.stderr`` cannot catch them either; only redirecting the file
descriptor around the import does.

:func:`quiet_tensorflow_import` installs an import hook (a :data:`sys.meta_path` finder) that does this the
first time anything imports ``tensorflow``, so a command that never needs TensorFlow (``--help``) does not pay
for importing it. The import runs with descriptor 2 pointed at a temporary file, and the devices are listed once
inside the same window (that is when ``cuInit`` reports); if the import fails, what it wrote is replayed to
stderr before the exception propagates, so no error is lost. ``cnnrnn --verbose`` skips the hook.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import os
import sys
import tempfile

#: The module whose import is silenced.
QUIET_MODULE = "tensorflow"


@contextlib.contextmanager
def stderr_redirected():
    """Point file descriptor 2 at a temporary file for the ``with`` block; on an exception, copy what was
    written there to the real stderr before re-raising. Yields the temporary file (binary)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield sink
        except BaseException:
            sys.stderr.flush()
            os.dup2(saved, 2)
            sink.seek(0)
            os.write(2, sink.read())
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    """Wraps the real loader of ``tensorflow``: executes the module (and lists the devices) with descriptor 2
    redirected, then puts the real loader back on the module."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        with stderr_redirected():
            self._loader.exec_module(module)
            module.config.list_physical_devices("GPU")  # the cuInit line comes with the first device query
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != QUIET_MODULE:
            return None
        _remove_hook()
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def _remove_hook() -> None:
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]


def quiet_tensorflow_import() -> bool:
    """Silence TensorFlow's native start-up lines (see the module docstring) for this process.

    Call it before anything imports TensorFlow (``cnnrnn.cli.main`` does, unless ``--verbose``). It imports
    nothing itself. Idempotent.

    Returns:
        ``True`` when the hook is in place, ``False`` when TensorFlow was already imported (too late to help).
    """
    if QUIET_MODULE in sys.modules:
        return False
    if not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())
    return True


#: onnxruntime's switch for Microsoft's telemetry: set to ``1`` (unless the environment already says otherwise)
#: before onnxruntime's first import in a process, since it is read then.
ORT_TELEMETRY_ENV = "ORT_DISABLE_TELEMETRY"


def onnxruntime_telemetry_off() -> None:
    """Set :data:`ORT_TELEMETRY_ENV` to ``1`` unless the environment already sets it. onnxruntime 1.32 otherwise
    starts its telemetry on import: a session file (``.ses``) in the system temporary folder, a database under
    ``~/.cache/Microsoft/DeveloperTools`` and events it tries to upload, none of which an offline package may do."""
    os.environ.setdefault(ORT_TELEMETRY_ENV, "1")


def import_onnxruntime():
    """``onnxruntime``, imported with its telemetry off (:func:`onnxruntime_telemetry_off`) and its telemetry
    events disabled.

    Raises:
        ImportError: onnxruntime is not installed.
    """
    onnxruntime_telemetry_off()
    import onnxruntime

    if hasattr(onnxruntime, "disable_telemetry_events"):
        onnxruntime.disable_telemetry_events()
    return onnxruntime
