"""Tests for :mod:`assignflow._parallel`: the thread-count rule, the pool and the BLAS limit."""

from __future__ import annotations

import itertools
import threading
import time
import types
import warnings

import numpy as np
import pytest

import assignflow as af
from assignflow import _parallel

ENV = "ASSIGNFLOW_NUM_THREADS"


@pytest.fixture(autouse=True)
def restore_threads():
    """Every test leaves the thread count as it found it."""
    old = _parallel._num_threads
    yield
    if old is None:
        _parallel._num_threads = None
    else:
        af.set_num_threads(old)


@pytest.fixture
def cpus(monkeypatch):
    """Pretend the process has ``n`` CPUs; returns a setter."""

    def set_cpus(n):
        monkeypatch.setattr(_parallel, "_n_cpus", lambda: n)

    return set_cpus


def _from_env(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    monkeypatch.setattr(_parallel, "_num_threads", None)
    return af.get_num_threads()


# --------------------------------------------------------------------------- the rule
@pytest.mark.parametrize(("n_cpus", "default", "bound"), [(1, 1, 4), (2, 2, 8), (12, 8, 48)])
def test_default_and_bound_follow_the_cpu_count(monkeypatch, cpus, n_cpus, default, bound):
    cpus(n_cpus)
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.setattr(_parallel, "_num_threads", None)
    assert af.get_num_threads() == default
    assert _parallel.max_threads() == bound
    cpus(64)
    assert _parallel.max_threads() == 64  # never more than 64


@pytest.mark.parametrize(("value", "expected"), [("3", 3), (" 2 ", 2), ("1", 1), ("", 2)])
def test_environment_positive_integers_are_taken(monkeypatch, cpus, value, expected):
    cpus(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _from_env(monkeypatch, value) == expected


@pytest.mark.parametrize("value", ["0", "-3", "x", "2.5", "1e3", "two"])
def test_environment_bad_values_warn_and_use_the_default(monkeypatch, cpus, value):
    cpus(2)
    with pytest.warns(RuntimeWarning, match=ENV):
        assert _from_env(monkeypatch, value) == 2  # the default, not 1


@pytest.mark.parametrize("value", ["9", "100000", str(10**30)])
def test_environment_huge_values_are_clipped(monkeypatch, cpus, value):
    cpus(2)
    with pytest.warns(RuntimeWarning, match=ENV):
        assert _from_env(monkeypatch, value) == 8


@pytest.mark.parametrize("n", [1, 2, np.int64(3), np.int32(2), np.uint8(1), np.array(2)])
def test_set_num_threads_accepts_integral_types(cpus, n):
    cpus(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        af.set_num_threads(n)
    assert af.get_num_threads() == int(n) and type(af.get_num_threads()) is int


@pytest.mark.parametrize(
    ("n", "exc"),
    [
        (0, ValueError),
        (-3, ValueError),
        (np.int64(0), ValueError),
        (2.0, TypeError),
        ("2", TypeError),
        (None, TypeError),
        (True, TypeError),
        (np.float64(2), TypeError),
        (np.ones(2, int), TypeError),
    ],
)
def test_set_num_threads_rejects(n, exc):
    before = af.get_num_threads()
    with pytest.raises(exc, match="n must be"):
        af.set_num_threads(n)
    assert af.get_num_threads() == before


def test_set_num_threads_clips_huge_values(cpus):
    cpus(2)
    for n in (9, 10**6, np.int64(10**18)):
        with pytest.warns(RuntimeWarning, match="n="):
            af.set_num_threads(n)
        assert af.get_num_threads() == 8


# --------------------------------------------------------------------------- the pool
def test_run_chunks_runs_every_chunk():
    af.set_num_threads(2)
    out = np.zeros(7)

    def work(k):
        out[k] = k + 1

    _parallel.run_chunks(work, 7)
    np.testing.assert_array_equal(out, np.arange(1, 8))


def test_run_chunks_waits_for_every_chunk_before_raising():
    af.set_num_threads(2)
    release = threading.Event()
    finished = []

    def work(k):
        if k == 0:
            raise ZeroDivisionError("chunk 0")
        release.wait(10)
        finished.append(k)

    timer = threading.Timer(0.05, release.set)
    timer.start()
    with pytest.raises(ZeroDivisionError, match="chunk 0"):
        _parallel.run_chunks(work, 4)
    assert sorted(finished) == [1, 2, 3]  # no chunk runs on after the error is raised
    timer.join()


def test_set_num_threads_during_run_chunks_in_other_threads():
    """The race of issue 12: replacing the pool must not kill running computations."""
    af.set_num_threads(2)
    errors, counts, done = [], [0, 0, 0], threading.Event()

    def compute(i):
        out = np.zeros(4)

        def work(k):
            out[k] = k

        try:
            while not done.is_set():
                _parallel.run_chunks(work, 4)
                assert out.tolist() == [0, 1, 2, 3]
                counts[i] += 1
        except BaseException as exc:
            errors.append(exc)
            done.set()

    workers = [threading.Thread(target=compute, args=(i,)) for i in range(len(counts))]
    for t in workers:
        t.start()
    i = 0
    while min(counts) < 50 and not done.is_set():  # each computation overlaps many changes
        af.set_num_threads(1 + i % 2)
        i += 1
        time.sleep(0)  # let the computations run
    done.set()
    for t in workers:
        t.join(30)
    assert errors == []


def test_retired_pool_is_shut_down_by_its_last_user():
    af.set_num_threads(2)
    with _parallel._borrow_pool() as executor:
        af.set_num_threads(1)  # retires the pool in use: it must keep working
        assert executor.submit(lambda: 7).result() == 7
    with pytest.raises(RuntimeError, match="shutdown"):
        executor.submit(lambda: 0)


# --------------------------------------------------------------------------- BLAS
class _FakeController:
    """Records the BLAS limit as threadpoolctl's controller would set it."""

    def __init__(self):
        self.threads, self.calls = 4, []

    def limit(self, limits, user_api):
        assert user_api == "blas"
        original, self.threads = self.threads, limits
        self.calls.append(limits)
        return types.SimpleNamespace(
            restore_original_limits=lambda: setattr(self, "threads", original)
        )


def test_blas_limit_is_shared_by_overlapping_threads(monkeypatch):
    """The first block to enter sets the limit, the last to leave restores it."""
    ctl = _FakeController()
    monkeypatch.setattr(_parallel, "_controller", ctl)
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with _parallel.blas_single_thread():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b():
        a_in.wait(10)
        with _parallel.blas_single_thread():
            b_in.set()
            a_out.wait(10)
            seen["b_after_a"] = ctl.threads  # a has left, b is still inside

    threads = [threading.Thread(target=a), threading.Thread(target=b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert seen["b_after_a"] == 1
    assert ctl.threads == 4 and ctl.calls == [1]
    with _parallel.blas_single_thread():
        assert ctl.threads == 1
    assert ctl.threads == 4


def test_blas_single_thread_without_threadpoolctl(monkeypatch):
    monkeypatch.setattr(_parallel, "_controller", False)
    with _parallel.blas_single_thread():
        pass
    assert _parallel._blas_users == 0


@pytest.mark.parametrize(
    ("n_rows", "row_cost", "block"),
    [(1, 10, 1 << 16), (7, 3, 4), (50_000, 10, 1 << 16), (123_457, 9, 1000)],
)
def test_row_blocks_cover_every_row_once_in_order(n_rows, row_cost, block):
    blocks = _parallel.row_blocks(n_rows, row_cost, block)
    flat = [b for per_thread in blocks for b in per_thread]
    assert flat[0][0] == 0 and flat[-1][1] == n_rows
    assert all(a < c for a, c in flat)
    assert all(c == a2 for (_, c), (a2, _) in itertools.pairwise(flat))
    assert all(c - a <= max(1, block // row_cost) for a, c in flat)
    assert len(blocks) == _parallel.n_chunks_for(n_rows * row_cost)
