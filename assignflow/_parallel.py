"""Row-chunked multithreading for the matrix-free kernels.

The sparse products of scipy and numpy's ufuncs release the GIL, so splitting
the rows of ``Ω V`` (and the row-wise replicator fused with it) over a small
thread pool uses both cores of a laptop without any compiled code of our own.
Small problems run serially: below ``_MIN_PARALLEL`` entries the thread hand-off
costs more than it saves.

The number of threads is ``ASSIGNFLOW_NUM_THREADS`` if set, else the number of
CPUs available to the process (at most 8); :func:`set_num_threads` changes it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

__all__ = ["blas_single_thread", "get_num_threads", "row_chunks", "run_chunks", "set_num_threads"]

_MIN_PARALLEL = 200_000  # entries (rows × columns) below which we stay serial
_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_num_threads: int | None = None
_controller = None


def _default_threads() -> int:
    env = os.environ.get("ASSIGNFLOW_NUM_THREADS")
    if env:
        try:
            return max(1, int(env))
        except ValueError:
            raise ValueError(
                f"ASSIGNFLOW_NUM_THREADS must be a positive integer, got {env!r}"
            ) from None
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(8, n))


def get_num_threads() -> int:
    """Number of threads the kernels use."""
    global _num_threads
    if _num_threads is None:
        _num_threads = _default_threads()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads used by the matrix-free kernels (``n >= 1``)."""
    global _num_threads, _pool
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    with _lock:
        _num_threads = n
        if _pool is not None:
            _pool.shutdown(wait=False)
            _pool = None


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(get_num_threads(), thread_name_prefix="assignflow")
        return _pool


def row_chunks(n_rows: int, n_chunks: int) -> list[tuple[int, int]]:
    """Split ``range(n_rows)`` into at most ``n_chunks`` contiguous ``(start, stop)`` pieces."""
    n_chunks = max(1, min(n_chunks, n_rows))
    bounds = [round(k * n_rows / n_chunks) for k in range(n_chunks + 1)]
    return [(a, c) for a, c in itertools.pairwise(bounds) if c > a]


def n_chunks_for(size: int) -> int:
    """How many chunks to cut a problem of ``size`` entries into."""
    nt = get_num_threads()
    return 1 if (nt == 1 or size < _MIN_PARALLEL) else nt


def run_chunks(func: Callable[[int], None], n: int) -> None:
    """Call ``func(k)`` for ``k in range(n)``, in the thread pool when ``n > 1``."""
    if n == 1:
        func(0)
        return
    # list() propagates the first exception raised in a worker
    list(_get_pool().map(func, range(n)))


def _blas_controller():
    global _controller
    if _controller is None:
        try:
            from threadpoolctl import ThreadpoolController

            _controller = ThreadpoolController()
        except Exception:  # threadpoolctl missing or failing: run with BLAS as it is
            _controller = False
    return _controller or None


@contextlib.contextmanager
def blas_single_thread() -> Iterator[None]:
    """Run BLAS single-threaded inside the block.

    The Krylov kernels issue many memory-bound BLAS-2 calls (dots, gemv) and do
    their own threading over chunks; OpenBLAS's thread wake-ups cost far more
    than such calls on small machines (measured: a 131k-element dot takes 7.8 ms
    with 2 OpenBLAS threads, 42 µs with one).
    """
    ctl = _blas_controller()
    if ctl is None:
        yield
        return
    with ctl.limit(limits=1, user_api="blas"):
        yield
