"""The one process pool of the package: :func:`map_chunks` runs per-file work in worker processes.

Its workers exit when their parent dies, ignore Ctrl-C (the parent stops them, so an interrupt prints no worker
tracebacks), and a worker that dies (the out-of-memory killer, a crash in a native library) costs only the file it was
processing (reason :data:`WORKER_DIED`), never the batch. Pool workers read :data:`FAULT_KILL_WORKER_ENV`
(fault injection for tests).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")
R = TypeVar("R")
#: Fault injection for tests: a pool worker that opens an audio file of this name kills itself with SIGKILL,
#: as the out-of-memory killer would. Read only in pool workers (:func:`pool_worker_init`).
FAULT_KILL_WORKER_ENV = "CNNRNN_FAULT_KILL_WORKER"
_fault_kill_name: str | None = None  # set in pool workers only


def die_if_fault_target(name: str) -> None:
    """Fault injection: in a pool worker, SIGKILL this process when ``name`` is the file name that
    :data:`FAULT_KILL_WORKER_ENV` names (as the out-of-memory killer would); anywhere else, nothing."""
    if _fault_kill_name is not None and name == _fault_kill_name:
        import signal

        os.kill(os.getpid(), signal.SIGKILL)


def _exit_with_parent(parent: int) -> None:
    """Make this process die when ``parent`` does: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux, and on every
    platform a daemon thread that polls ``os.getppid()`` once a second."""
    import signal
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc symbol: the thread below still watches
            pass
    if os.getppid() != parent:  # the parent died before the watch began
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="cnnrnn-parent-watch", daemon=True).start()


def _stop_workers(pool) -> None:
    """Kill a :class:`~concurrent.futures.ProcessPoolExecutor`'s workers and wait for them, so that nothing writes
    after an interrupted stage cleans up (their temporaries are the stage's to remove)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for proc in processes:
        try:
            proc.kill()
        except (OSError, ValueError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        try:
            proc.join(5)
        except (OSError, ValueError, AssertionError):
            pass


def pool_worker_init(parent: int) -> None:
    """Initializer of every pool worker (:func:`map_chunks`): exit when the parent process ``parent`` dies, one
    BLAS/FFT thread (the workers already fill the cores), and read :data:`FAULT_KILL_WORKER_ENV`. Ctrl-C (SIGINT,
    sent to the whole process group) is the parent's to handle: a worker ignores it, and is stopped by the parent
    (:func:`map_chunks`), so an interrupt prints no worker tracebacks."""
    import signal

    global _fault_kill_name
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _exit_with_parent(parent)
    _fault_kill_name = os.environ.get(FAULT_KILL_WORKER_ENV) or None
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def pool_context():
    """The multiprocessing context of the pool: ``fork`` on Linux while TensorFlow is not loaded (cheap, librosa
    already imported), else ``spawn`` (fork is unsafe once TensorFlow has started threads)."""
    import multiprocessing

    if sys.platform.startswith("linux") and "tensorflow" not in sys.modules:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


#: Pools broken this many times in a row, with no work finished in between, stop :func:`map_chunks`.
MAX_DEATHS_IN_A_ROW = 5
#: The skip reason, and the message, of an item whose worker process died while processing it alone.
WORKER_DIED = "worker_died"
WORKER_DIED_MESSAGE = ("the worker process died while processing it alone (killed, e.g. by the out-of-memory killer, "
                       "or crashed)")


def map_chunks(fn: Callable[..., list[R]], chunks: Sequence[Sequence[T]], *, workers: int,
               on_result: Callable[[list[R]], None], on_died: Callable[[T, str], None],
               args: tuple = (), mp_context=None, isolate: bool = False) -> None:
    """Run ``fn(chunk, *args)`` for every chunk in worker processes, and survive workers that die.

    At most ``workers`` chunks are in flight at once, so when a worker dies (killed by the out-of-memory killer,
    a crash in a native library) and the pool breaks (``BrokenProcessPool``), only those chunks are suspect: the
    chunks not yet started go on in a fresh pool; then the suspect chunks' items are run again one at a time in a
    one-worker pool (a fresh one after each death), and an item whose worker dies while it runs alone is reported
    to ``on_died`` and left out. A file that always kills its worker thus costs itself only, on every rerun.

    The workers exit when this process dies (:func:`pool_worker_init`). ``workers`` 1 runs in this process
    (a crash ends the command, as any crash would), unless ``isolate``.

    Args:
        fn: a picklable function ``fn(chunk, *args) -> list of results`` (one per item, in any form).
        chunks: lists of items (picklable).
        workers: processes (>= 1).
        on_result: called in this process with each finished chunk's results, in completion order.
        on_died: called with ``(item, WORKER_DIED_MESSAGE)`` for each item whose worker died processing it
            alone (count it as a skip with reason :data:`WORKER_DIED`).
        args: further arguments of ``fn``.
        mp_context: a multiprocessing context; default :func:`pool_context`.
        isolate: run in worker processes even with one worker (for work that must not run in this process).

    Raises:
        ChildProcessError: pools broke :data:`MAX_DEATHS_IN_A_ROW` times in a row without finishing any chunk
            (every worker dies: no memory at all, a broken installation); an ``OSError``, so the CLI prints one line.
    """
    import logging
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    log = logging.getLogger("cnnrnn.audio")
    if workers <= 1 and not isolate:
        for chunk in chunks:
            on_result(fn(list(chunk), *args))
        return
    context = mp_context or pool_context()

    def run(todo: list[list[T]], width: int) -> list[list[T]]:
        """Run ``todo``; return the chunks that were in flight when a worker died (pools restart after each)."""
        suspects: list[list[T]] = []
        todo = list(todo)
        deaths = 0  # pools broken since the last finished chunk
        while todo:
            broken = False
            with ProcessPoolExecutor(max_workers=min(width, len(todo)), mp_context=context,
                                     initializer=pool_worker_init, initargs=(os.getpid(),)) as pool:
                running: dict[Any, list[T]] = {}
                try:
                    while (todo or running) and not broken:
                        while todo and len(running) < width:
                            chunk = todo.pop(0)
                            running[pool.submit(fn, chunk, *args)] = chunk
                        done, _ = wait(running, return_when=FIRST_COMPLETED)
                        for fut in done:
                            try:
                                results = fut.result()
                            except BrokenProcessPool:
                                broken = True
                                continue
                            on_result(results)
                            del running[fut]
                            deaths = 0
                except BaseException:  # interrupted (Ctrl-C, SIGTERM) or failed: stop the workers now
                    _stop_workers(pool)
                    raise
                if broken:
                    suspects.extend(running.values())  # the in-flight chunks: one of them killed its worker
                    deaths += 1
                    if deaths >= MAX_DEATHS_IN_A_ROW:
                        raise ChildProcessError(
                            f"worker processes died {deaths} times in a row without finishing any work (out of "
                            "memory? a broken installation?); stopped")
        return suspects

    suspects = run([list(c) for c in chunks], max(1, workers))
    if not suspects:
        return
    items = [item for chunk in suspects for item in chunk]
    log.warning("a worker process died (out of memory? a crash?): retrying the %d item(s) it may have held, "
                "one at a time", len(items))
    for [item] in run([[item] for item in items], 1):
        on_died(item, WORKER_DIED_MESSAGE)
