"""Several machines training one model: the cluster settings of ``tf.distribute.MultiWorkerMirroredStrategy``.

* :func:`parse_tf_config`: the standard ``TF_CONFIG`` JSON (``{"cluster": {"worker": ["host:port", ...]}, "task":
  {"type": "worker", "index": i}}``) read and checked;
* :func:`cluster_from_flags`: the same from ``--workers host:port,... --worker-index I``;
* :func:`resolve`: the flags, else ``TF_CONFIG``, else ``None`` (one machine), checked before any work;
* :func:`apply`: ``os.environ["TF_CONFIG"]`` set from a :class:`Cluster`, before TensorFlow starts its runtime;
* :class:`Watchdog`: ends the process with a clear message when the workers have not all joined within a timeout
  (TensorFlow's collective timeout covers a worker lost later, not the first rendezvous);
* :func:`add_arguments` and :func:`cluster_from_args`: the four command-line flags (``--distribute``, ``--workers``,
  ``--worker-index``, ``--timeout``) of every family's train command, and their checks;
* what a family's training step needs to run on every worker while the chief alone writes: :func:`worker_is_chief`
  and :func:`in_scratch` (a non-chief's run in a scratch folder, removed after); what needs TensorFlow
  (:func:`cnnrnn.training.predict_here`, :func:`cnnrnn.training.barrier`) is in :mod:`cnnrnn.training`.

Pure Python: TensorFlow is not imported here. Every bad setting raises :class:`ClusterError` (a ``ValueError``,
which the command line prints as one line) before any work.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar


#: The task types a process of the cluster may have: ``worker`` (index 0 is the chief) or a separate ``chief``.
TASK_TYPES = ("worker", "chief")
#: The environment variable TensorFlow reads the cluster from.
TF_CONFIG = "TF_CONFIG"
#: Seconds a worker waits for the others (to join, or in a collective) before it ends with an error.
DEFAULT_TIMEOUT_S = 300.0

_ADDRESS = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


class ClusterError(ValueError):
    """A cluster setting that cannot be used (malformed ``TF_CONFIG``, a repeated address, an index outside the
    cluster, an unknown task type, a flag without its partner, a malformed ``host:port``)."""


@dataclass(frozen=True)
class Cluster:
    """One process's place in a training cluster.

    Attributes:
        cluster: ``{task type: ["host:port", ...]}`` (``worker``, optionally ``chief`` with one address).
        task_type: this process's type, one of :data:`TASK_TYPES`.
        index: this process's index among the tasks of its type (0-based).
    """

    cluster: dict
    task_type: str
    index: int

    @property
    def n_workers(self) -> int:
        """The number of processes that train (``chief`` and ``worker`` tasks together)."""
        return sum(len(self.cluster.get(t, [])) for t in TASK_TYPES)

    def is_chief(self) -> bool:
        """Whether this process writes the run's files: the ``chief`` task, or worker 0 when there is no chief."""
        return is_chief(self)

    def tf_config(self) -> str:
        """The ``TF_CONFIG`` JSON of this process (str)."""
        return json.dumps({"cluster": self.cluster, "task": {"type": self.task_type, "index": self.index}})


def check_address(address: str, where: str = "worker address") -> str:
    """``address`` as ``host:port`` (port 1..65535), stripped.

    Raises:
        ClusterError: not a ``host:port``.
    """
    text = str(address).strip()
    m = _ADDRESS.match(text)
    if not m or not 0 < int(m.group(2)) < 65536:
        raise ClusterError(f"{where} {address!r} is not host:port (e.g. 10.0.0.1:12345)")
    return text


def make_cluster(cluster: Mapping, task_type: str, index) -> Cluster:
    """A checked :class:`Cluster`.

    Args:
        cluster: ``{task type: [addresses]}``; other task types (``ps``, ``evaluator``) are refused.
        task_type: this process's type.
        index: this process's index (an int, or a string of digits).

    Raises:
        ClusterError: no worker, an unknown task type, a malformed or repeated address, more than one chief, or an
            index outside the tasks of its type.
    """
    if not isinstance(cluster, Mapping) or not cluster:
        raise ClusterError("the cluster must map task types to lists of host:port, e.g. "
                           '{"worker": ["10.0.0.1:12345", "10.0.0.2:12345"]}')
    unknown = sorted(set(cluster) - set(TASK_TYPES))
    if unknown:
        raise ClusterError(f"cluster task type {unknown[0]!r} is not supported: only {' and '.join(TASK_TYPES)} "
                           "(MultiWorkerMirroredStrategy)")
    checked, seen = {}, {}
    for kind in TASK_TYPES:
        if kind not in cluster:
            continue
        addresses = cluster[kind]
        if isinstance(addresses, str) or not isinstance(addresses, Sequence):
            raise ClusterError(f"cluster {kind!r} must be a list of host:port, got {addresses!r}")
        checked[kind] = [check_address(a, f"{kind} address") for a in addresses]
        for i, a in enumerate(checked[kind]):
            if a in seen:
                raise ClusterError(f"cluster names {a} twice ({seen[a]} and {kind} {i}): each process needs its own "
                                   "host:port")
            seen[a] = f"{kind} {i}"
    if not checked.get("worker") and not checked.get("chief"):
        raise ClusterError("the cluster names no worker")
    if len(checked.get("chief", [])) > 1:
        raise ClusterError(f"the cluster names {len(checked['chief'])} chiefs: at most one")
    if task_type not in TASK_TYPES:
        raise ClusterError(f"task type {task_type!r} is not supported: only {' or '.join(TASK_TYPES)}")
    try:
        index = int(index)
        if isinstance(index, bool):
            raise TypeError
    except (TypeError, ValueError):
        raise ClusterError(f"task index {index!r} is not an integer") from None
    n = len(checked.get(task_type, []))
    if not 0 <= index < n:
        raise ClusterError(f"task index {index} is outside the cluster: {n} {task_type} task(s), indices 0..{n - 1}"
                           if n else f"task index {index} is outside the cluster: it has no {task_type} task")
    return Cluster(checked, task_type, index)


def parse_tf_config(text: str) -> Cluster:
    """The :class:`Cluster` of a ``TF_CONFIG`` JSON string.

    Raises:
        ClusterError: not JSON, not an object with ``cluster`` and ``task`` (``type``, ``index``), or what
            :func:`make_cluster` refuses.
    """
    try:
        spec = json.loads(text)
    except (TypeError, ValueError) as exc:
        raise ClusterError(f"TF_CONFIG is not JSON ({exc})") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or \
            not isinstance(spec.get("task"), dict):
        raise ClusterError('TF_CONFIG must be a JSON object with "cluster" and "task", e.g. {"cluster": {"worker": '
                           '["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}')
    task = spec["task"]
    if "type" not in task or "index" not in task:
        raise ClusterError('TF_CONFIG "task" needs "type" and "index"')
    return make_cluster(spec["cluster"], task["type"], task["index"])


def cluster_from_flags(workers: str | Sequence[str], index) -> Cluster:
    """The :class:`Cluster` of ``--workers host:port,... --worker-index I`` (every process a ``worker``).

    Raises:
        ClusterError: an empty list, or what :func:`make_cluster` refuses.
    """
    items = workers.split(",") if isinstance(workers, str) else list(workers)
    items = [w.strip() for w in items if w.strip()]
    if not items:
        raise ClusterError("--workers names no host:port")
    return make_cluster({"worker": items}, "worker", index)


def resolve(workers: str | None = None, worker_index=None, environ: Mapping[str, str] | None = None) -> Cluster | None:
    """This process's cluster: from the flags when given, else from ``TF_CONFIG``, else ``None``.

    Args:
        workers: ``--workers`` (comma-separated ``host:port``), or ``None``.
        worker_index: ``--worker-index``, or ``None``.
        environ: the environment (default ``os.environ``).

    Raises:
        ClusterError: one flag without the other, or a bad cluster (:func:`cluster_from_flags`,
            :func:`parse_tf_config`).
    """
    if (workers is None) != (worker_index is None):
        raise ClusterError("--workers and --worker-index go together: give both (or neither, with TF_CONFIG set)")
    if workers is not None:
        return cluster_from_flags(workers, worker_index)
    text = (os.environ if environ is None else environ).get(TF_CONFIG)
    return parse_tf_config(text) if text and text.strip() else None


def is_chief(cluster: Cluster | None = None) -> bool:
    """Whether this process writes the run's files: ``True`` for one machine (``cluster`` ``None`` and no
    ``TF_CONFIG``), the ``chief`` task, or worker 0 of a cluster without a chief.

    Raises:
        ClusterError: ``cluster`` is ``None`` and ``TF_CONFIG`` is set but bad.
    """
    cluster = resolve() if cluster is None else cluster
    if cluster is None:
        return True
    if cluster.task_type == "chief":
        return True
    return cluster.index == 0 and not cluster.cluster.get("chief")


def apply(cluster: Cluster) -> None:
    """Set ``os.environ["TF_CONFIG"]`` to ``cluster``'s JSON (TensorFlow reads it when the strategy is made; set it
    before TensorFlow initialises its runtime)."""
    os.environ[TF_CONFIG] = cluster.tf_config()


_WATCHER = """
import os, select, signal, sys
parent, timeout, message = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ready, _, _ = select.select([sys.stdin], [], [], timeout)
if not ready:
    sys.stderr.write(message + "\\n")
    sys.stderr.flush()
    os.kill(parent, signal.SIGKILL)
"""


class Watchdog:
    """Ends this process with a one-line message on stderr when :meth:`disarm` was not called within ``timeout_s``
    seconds of :meth:`arm`: a worker that never joins would otherwise leave the others waiting for it without end
    in TensorFlow's cluster registration.

    The countdown runs in a small child process, not a thread: TensorFlow waits for the cluster inside C++ without
    releasing Python's lock, so no thread of this process could act, and it catches ``SIGTERM`` (preemption); the
    child sends ``SIGKILL`` (exit status -9 / 137).

    Args:
        timeout_s: seconds to wait (> 0).
        what: what is awaited, for the message.

    Raises:
        ValueError: ``timeout_s`` is not positive.
    """

    def __init__(self, timeout_s: float, what: str = "the other workers to join"):
        if not timeout_s or timeout_s <= 0:
            raise ValueError(f"the timeout must be > 0 seconds, got {timeout_s}")
        self.timeout_s, self.what = float(timeout_s), what
        self._child = None

    @property
    def message(self) -> str:
        """The line written to stderr when the time is up."""
        return (f"error: multi-worker training: timed out after {self.timeout_s:g} s waiting for {self.what} (a "
                "worker died or never started; check every address of the cluster)")

    def arm(self) -> "Watchdog":
        """Start the countdown (once); returns ``self``."""
        import subprocess

        if self._child is None:
            self._child = subprocess.Popen([sys.executable, "-c", _WATCHER, str(os.getpid()), str(self.timeout_s),
                                            self.message], stdin=subprocess.PIPE)
        return self

    def disarm(self) -> None:
        """Stop the countdown: what was awaited has happened."""
        if self._child is not None:
            try:
                self._child.stdin.write(b"joined\n")
                self._child.stdin.close()
            except OSError:
                pass
            self._child.wait()


# --------------------------------------------------------------------------- command-line flags
#: The values of ``--distribute``.
DISTRIBUTE_CHOICES = ("multi-worker",)


def add_arguments(parser) -> None:
    """Add ``--distribute multi-worker``, ``--workers HOST:PORT,...``, ``--worker-index I`` and ``--timeout SECONDS``
    to an ``argparse`` parser (a family's train command); :func:`cluster_from_args` checks them."""
    parser.add_argument("--distribute", choices=list(DISTRIBUTE_CHOICES),
                        help="train on several machines (tf.distribute.MultiWorkerMirroredStrategy): every worker runs "
                             "the same command with the same output folder on shared storage; the cluster comes from "
                             "TF_CONFIG or --workers and --worker-index; worker 0 (or the chief task) alone writes "
                             "(docs/distributed.md)")
    parser.add_argument("--workers", metavar="HOST:PORT,...",
                        help="with --distribute multi-worker: every worker's host:port, in the same order on all of "
                             "them")
    parser.add_argument("--worker-index", type=int, metavar="I",
                        help="this worker's position in --workers (0 = chief)")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="with --distribute multi-worker: end with an error when a worker has not joined, or a "
                             f"collective has waited, this long (default {DEFAULT_TIMEOUT_S:g})")


def cluster_from_args(args) -> Cluster | None:
    """The cluster of the flags of :func:`add_arguments` (``args.distribute``, ``args.workers``,
    ``args.worker_index``, ``args.timeout``), checked, and ``TF_CONFIG`` set from it (:func:`apply`) before
    TensorFlow starts; ``None`` without ``--distribute`` (one machine).

    Raises:
        ClusterError: ``--workers``, ``--worker-index`` or ``--timeout`` without ``--distribute multi-worker``;
            ``--timeout <= 0``; ``--distribute multi-worker`` without a cluster (no flags, no ``TF_CONFIG``); or a
            bad cluster (:func:`resolve`).
    """
    if args.distribute is None and (args.workers is not None or args.worker_index is not None or args.timeout):
        raise ClusterError("--workers, --worker-index and --timeout need --distribute multi-worker")
    if args.timeout is not None and args.timeout <= 0:
        raise ClusterError(f"--timeout must be > 0 seconds, got {args.timeout:g}")
    if args.distribute != "multi-worker":
        return None
    cluster = resolve(args.workers, args.worker_index)
    if cluster is None:
        raise ClusterError("--distribute multi-worker needs the cluster: set TF_CONFIG, or give --workers "
                           "host:port,... and --worker-index I")
    apply(cluster)
    return cluster


# --------------------------------------------------------------------------- a family's step on every worker
T = TypeVar("T")


def worker_is_chief(distribute: str | None) -> bool:
    """Whether this process writes a training step's files: always on one machine (``distribute`` not
    ``multi-worker``), else :func:`is_chief` of ``TF_CONFIG``.

    Raises:
        ClusterError: ``multi-worker`` and ``TF_CONFIG`` is set but bad.
    """
    return distribute != "multi-worker" or is_chief()


def relocate(value: Any, old: str | Path, new: str | Path) -> Any:
    """``value`` (nested dicts, lists and tuples) with every string that is the path ``old``, or a path under it,
    moved to ``new`` (e.g. a non-chief's report, made in a scratch folder, naming the run folder's files)."""
    old, new = str(old), str(new)
    if isinstance(value, str):
        if value == old:
            return new
        return new + value[len(old):] if value.startswith(old + os.sep) else value
    if isinstance(value, dict):
        return {k: relocate(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(relocate(v, old, new) for v in value)
    return value


def in_scratch(run_dir: str | Path, work: Callable[[Path], T]) -> T:
    """``work(folder)`` for a worker that must not write ``run_dir``: ``folder`` is a new ``<scratch>/<run_dir
    name>`` in a temporary folder (created empty), which is removed afterwards, whatever happens; the result is
    moved from ``folder`` to ``run_dir`` (:func:`relocate`), so that it names the files the chief writes."""
    scratch = Path(tempfile.mkdtemp(prefix="cnnrnn-worker-"))
    try:
        folder = scratch / (Path(run_dir).name or "run")
        folder.mkdir()
        return relocate(work(folder), folder, run_dir)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
