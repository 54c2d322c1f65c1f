"""Running the writers' tasks: in this process, or in single-threaded worker processes that exit with their
parent, with a progress bar."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from typing import Any, Callable

import numpy as np

_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


@contextlib.contextmanager
def progress_bar(total: int, unit: str, enabled: bool) -> Iterator[Any]:
    from tqdm.auto import tqdm

    with tqdm(total=total, unit=unit, disable=not enabled, dynamic_ncols=True, smoothing=0.05) as bar:
        yield bar


@contextlib.contextmanager
def _single_threaded_children() -> Iterator[None]:
    """Child processes started inside this block use one thread each for OpenMP/BLAS/numba (unless set)."""
    added = [k for k in _THREAD_ENV if k not in os.environ]
    os.environ.update({k: "1" for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _init_worker(parent: int) -> None:
    import signal

    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is handled by the parent, which cancels the queue
    _exit_with_parent(parent)


def _exit_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when the process that started it dies (Linux ``PR_SET_PDEATHSIG``), so a
    killed ``vqsa corrupt`` leaves no workers behind; elsewhere a watcher thread polls the parent."""
    import signal
    import threading

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) == 0:  # 1 = PR_SET_PDEATHSIG
            if os.getppid() != parent:  # the parent died before the call
                os._exit(1)
            return
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


def run_tasks(fn: Callable[..., Any], tasks: Sequence[tuple], jobs: int) -> Iterator[tuple[int, Any]]:
    """Yield ``(task index, fn(*task))`` in completion order, in this process (jobs=1) or in ``jobs`` processes.

    Worker processes are started with ``spawn`` (safe after threads, same on every OS), one thread each. The first
    exception cancels what is still queued and propagates.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, (int, np.integer)) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    if jobs == 1 or len(tasks) <= 1:
        for i, task in enumerate(tasks):
            yield i, fn(*task)
        return
    with _single_threaded_children():
        executor: Executor = ProcessPoolExecutor(
            max_workers=min(jobs, len(tasks)), mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker, initargs=(os.getpid(),),
        )
        try:
            futures: dict[Future, int] = {executor.submit(fn, *task): i for i, task in enumerate(tasks)}
            for fut in as_completed(futures):
                yield futures[fut], fut.result()
        finally:
            executor.shutdown(wait=True, cancel_futures=True)
