"""Row-chunked multithreading for the matrix-free kernels.

The sparse products of scipy and numpy's ufuncs release the GIL, so splitting
the rows of ``Ω V`` (and the row-wise replicator fused with it) over a small
thread pool uses several cores without any compiled code of our own. Small
problems run serially: below ``_MIN_PARALLEL`` entries the thread hand-off
costs more than it saves.

Number of threads
-----------------
Let ``n_cpus`` be the number of CPUs available to the process. The default is
``min(8, n_cpus)``; every setting is bounded by ``max_threads() = min(64,
4 * n_cpus)`` (the kernels are memory-bound: beyond a few threads per core
they only add overhead, and an unbounded value would start threads until the
process dies).

* ``ASSIGNFLOW_NUM_THREADS``, read on first use, sets the number: a positive
  integer (surrounding blanks allowed) is taken and clipped to
  ``max_threads()``; anything else (``0``, ``-3``, ``"x"``) is ignored. Both
  cases emit a ``RuntimeWarning`` naming the variable; an empty value means
  the default.
* :func:`set_num_threads` takes any integral ``n >= 1`` (``int``,
  ``numpy.int64``, ...): ``n < 1`` is a ``ValueError``, a non-integral value a
  ``TypeError``, and ``n > max_threads()`` is clipped with a
  ``RuntimeWarning``.

Thread safety
-------------
The kernels may run in several threads at once, and :func:`set_num_threads`
may be called while they run: a running computation keeps the pool it
started with (the old pool is shut down when its last user is done), new
computations get the new one. BLAS is limited to one thread while any
:func:`blas_single_thread` block is active, in any thread.
"""

from __future__ import annotations

import contextlib
import itertools
import operator
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait

__all__ = [
    "blas_single_thread",
    "get_num_threads",
    "max_threads",
    "row_chunks",
    "run_chunks",
    "set_num_threads",
]

_MIN_PARALLEL = 200_000  # entries (rows × columns) below which we stay serial
_DEFAULT_MAX = 8  # default: at most this many threads
_HARD_MAX = 64  # bound: at most this many threads ...
_PER_CPU = 4  # ... and at most this many per CPU
_ENV = "ASSIGNFLOW_NUM_THREADS"

_lock = threading.RLock()
_num_threads: int | None = None
_pool: _Pool | None = None
_controller = None
_blas_users = 0
_blas_limiter = None


class _Pool:
    """A thread pool and the number of computations using it."""

    def __init__(self, n_threads: int) -> None:
        self.executor = ThreadPoolExecutor(n_threads, thread_name_prefix="assignflow")
        self.users = 0
        self.retired = False


def _n_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def max_threads() -> int:
    """The bound of every thread-count setting: ``min(64, 4 * n_cpus)``.

    Returns
    -------
    int
        The largest number of threads :func:`set_num_threads` and
        ``ASSIGNFLOW_NUM_THREADS`` can set.
    """
    return max(1, min(_HARD_MAX, _PER_CPU * _n_cpus()))


def _from_environment() -> int:
    default = max(1, min(_DEFAULT_MAX, _n_cpus()))
    value = os.environ.get(_ENV, "").strip()
    if not value:
        return default
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        warnings.warn(
            f"{_ENV}={value!r} is not a positive integer: ignored, using the default "
            f"of {default} threads",
            RuntimeWarning,
            stacklevel=3,
        )
        return default
    if n > max_threads():
        warnings.warn(
            f"{_ENV}={value} exceeds the bound of {max_threads()} threads "
            f"(min(64, 4 × {_n_cpus()} CPUs)): using {max_threads()}",
            RuntimeWarning,
            stacklevel=3,
        )
        return max_threads()
    return n


def get_num_threads() -> int:
    """Number of threads the kernels use.

    Returns
    -------
    int
        The last :func:`set_num_threads`, else ``ASSIGNFLOW_NUM_THREADS``
        (read on first use; a value that is not a positive integer is ignored
        with a ``RuntimeWarning``), else ``min(8, n_cpus)``; at most
        ``min(64, 4 * n_cpus)``, where ``n_cpus`` is the number of CPUs
        available to the process.
    """
    global _num_threads
    if _num_threads is None:
        with _lock:
            if _num_threads is None:
                _num_threads = _from_environment()
    return _num_threads


def set_num_threads(n: int) -> None:
    """Set the number of threads used by the matrix-free kernels.

    Safe to call while other threads compute: they finish with the threads
    they started with.

    Parameters
    ----------
    n : int
        Any integral number ``>= 1`` (``int``, ``numpy.int64``, ...); values
        above ``min(64, 4 * n_cpus)`` (``n_cpus``: the CPUs available to the
        process) are clipped to that bound with a ``RuntimeWarning``.

    Raises
    ------
    TypeError
        If ``n`` is not integral (a float, a string, a bool).
    ValueError
        If ``n < 1``.
    """
    global _num_threads, _pool
    try:  # int, numpy integers, anything with __index__; not bool
        if isinstance(n, bool):
            raise TypeError
        n = operator.index(n)
    except TypeError:
        raise TypeError(f"n must be an integer, got {type(n).__name__} {n!r}") from None
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    if n > max_threads():
        warnings.warn(
            f"n={n} exceeds the bound of {max_threads()} threads "
            f"(min(64, 4 × {_n_cpus()} CPUs)): using {max_threads()}",
            RuntimeWarning,
            stacklevel=2,
        )
        n = max_threads()
    with _lock:
        _num_threads = n
        old, _pool = _pool, None
        if old is not None:
            old.retired = True
            if old.users == 0:
                old.executor.shutdown(wait=False)


@contextlib.contextmanager
def _borrow_pool() -> Iterator[ThreadPoolExecutor]:
    """The current pool, kept alive until the block ends (even if the pool is replaced)."""
    global _pool
    with _lock:
        if _pool is None:
            _pool = _Pool(get_num_threads())
        pool = _pool
        pool.users += 1
    try:
        yield pool.executor
    finally:
        with _lock:
            pool.users -= 1
            if pool.retired and pool.users == 0:
                pool.executor.shutdown(wait=False)


def row_chunks(n_rows: int, n_chunks: int) -> list[tuple[int, int]]:
    """Split ``range(n_rows)`` into at most ``n_chunks`` contiguous ``(start, stop)`` pieces."""
    n_chunks = max(1, min(n_chunks, n_rows))
    bounds = [round(k * n_rows / n_chunks) for k in range(n_chunks + 1)]
    return [(a, c) for a, c in itertools.pairwise(bounds) if c > a]


def row_blocks(n_rows: int, row_cost: int, block: int = 1 << 16) -> list[list[tuple[int, int]]]:
    """Per thread chunk of :func:`row_chunks`, its rows cut into blocks of about ``block``
    entries (``row_cost`` per row), small enough that a few passes over one stay in cache."""
    step = max(1, block // max(1, row_cost))
    return [
        [(s, min(c, s + step)) for s in range(a, c, step)]
        for a, c in row_chunks(n_rows, n_chunks_for(n_rows * row_cost))
    ]


def n_chunks_for(size: int) -> int:
    """How many chunks to cut a problem of ``size`` entries into."""
    nt = get_num_threads()
    return 1 if (nt == 1 or size < _MIN_PARALLEL) else nt


def run_chunks(func: Callable[[int], None], n: int) -> None:
    """Call ``func(k)`` for ``k in range(n)``, in the thread pool when ``n > 1``.

    Returns when every call has ended; then re-raises the first exception, if any
    (so no chunk still writes into the caller's arrays when it sees the error).
    """
    if n == 1:
        func(0)
        return
    with _borrow_pool() as executor:
        futures = [executor.submit(func, k) for k in range(n)]
        wait(futures)
    for future in futures:
        future.result()


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
    with 2 OpenBLAS threads, 42 µs with one). The limit is process-wide, so
    overlapping blocks of several threads share it: the first sets it, the
    last restores the original.
    """
    global _blas_users, _blas_limiter
    ctl = _blas_controller()
    if ctl is None:
        yield
        return
    with _lock:
        if _blas_users == 0:
            _blas_limiter = ctl.limit(limits=1, user_api="blas")
        _blas_users += 1
    try:
        yield
    finally:
        with _lock:
            _blas_users -= 1
            if _blas_users == 0:
                _blas_limiter.restore_original_limits()
                _blas_limiter = None
