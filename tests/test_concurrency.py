"""Concurrency: solves, predictions, thread-count changes and registry lookups at once.

Every task runs in several threads at the same time while another thread keeps
changing the number of kernel threads; each result must equal the one computed
single-threaded beforehand. The problems are tiny, so the kernels' serial
threshold is lowered to zero: every product really goes through the shared pool.
"""

from __future__ import annotations

import itertools
import threading
import time
import warnings

import numpy as np
import pytest
from sklearn.datasets import make_blobs

import assignflow as af
from assignflow import _parallel

N_ROUNDS = 3  # times each task runs in each of its threads


@pytest.fixture(scope="module", autouse=True)
def pooled_kernels():
    """Send every kernel product through the pool, and restore the thread count after."""
    old = af.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_parallel, "_MIN_PARALLEL", 0)
        af.set_num_threads(2)
        yield
    af.set_num_threads(old)


@pytest.fixture(scope="module")
def flow():
    rng = np.random.default_rng(0)
    g = af.GridGraph((12, 12))
    w = af.Weights.normalized(g, rng.uniform(0.5, 1.5, g.nnz))
    sim = af.SimilarityOperator(w, rng.random((g.n_nodes, 4)), rho=0.3)
    return af.LinearizedAssignmentFlow(sim, T=2.0)


@pytest.fixture(scope="module")
def labeler():
    X, Y = af.datasets.make_voronoi("lines", 3, (16, 16), noise=0.3, random_state=0)
    Xt, _ = af.datasets.make_voronoi("lines", 2, (16, 16), noise=0.3, random_state=7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = af.ImageLabeler(rho=0.1, T=1.0, max_iter=2, n_prototypes=5, random_state=0)
        model.fit(X, Y)
    return model, Xt


@pytest.fixture(scope="module")
def classifier():
    X, y = make_blobs(80, centers=3, cluster_std=2.0, random_state=0)
    clf = af.AssignmentFlowClassifier(n_neighbors=5).fit(X[:60], y[:60])
    return clf, X[60:]


def _run_at_once(tasks, n_threads_each=3):
    """Run each task in ``n_threads_each`` threads at once, ``N_ROUNDS`` times per thread.

    Returns the results per task name and the exceptions raised.
    """
    jobs = [(name, fn) for name, fn in tasks.items() for _ in range(n_threads_each)]
    barrier = threading.Barrier(len(jobs))
    results = {name: [] for name in tasks}
    errors = []

    def run(name, fn):
        try:
            barrier.wait(30)
            for _ in range(N_ROUNDS):
                results[name].append(fn())
        except BaseException as exc:
            errors.append((name, exc))

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    return results, errors


def test_everything_at_once_gives_the_single_threaded_results(flow, labeler, classifier):
    model, Xt = labeler
    clf, Xc = classifier
    af.set_num_threads(1)
    ref_flow = flow.solve()
    ref_images = model.predict(Xt)
    ref_proba = clf.predict_proba(Xc)
    ref_classes = clf.predict(Xc)
    ref_names = {key: reg.names() for key, reg in af.registry.all_registries().items()}
    af.set_num_threads(2)

    counts = itertools.count()

    def change_threads():
        for _ in range(20):
            af.set_num_threads(1 + next(counts) % 2)
            time.sleep(0)
        return af.get_num_threads()

    def look_up():
        names = {key: reg.names() for key, reg in af.registry.all_registries().items()}
        built = af.registry.integrators.resolve("exponential_krylov", tol=1e-10)
        return names, type(built), af.registry.losses.get("kl")

    results, errors = _run_at_once(
        {
            "solve": flow.solve,
            "image_predict": lambda: model.predict(Xt),
            "classifier_predict": lambda: (clf.predict(Xc), clf.predict_proba(Xc)),
            "set_num_threads": change_threads,
            "registry": look_up,
        }
    )
    assert errors == []
    for res in results["solve"]:
        # the Krylov reductions are summed per chunk: equal up to round-off, labels exactly
        np.testing.assert_allclose(res.V, ref_flow.V, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(res.labels, ref_flow.labels)
    for pred in results["image_predict"]:
        np.testing.assert_array_equal(pred, ref_images)
    for pred, proba in results["classifier_predict"]:
        np.testing.assert_array_equal(pred, ref_classes)
        np.testing.assert_allclose(proba, ref_proba, rtol=1e-10, atol=1e-12)
    assert set(results["set_num_threads"]) <= {1, 2}
    for names, built, kl in results["registry"]:
        assert names == ref_names and built is af.ExponentialKrylov and kl is af.KLLoss


def test_one_flow_shared_by_threads_with_different_thread_counts(flow):
    """The operator's per-thread-count caches stay consistent under concurrent use."""
    x = np.random.default_rng(1).standard_normal(flow.B.size)
    af.set_num_threads(1)
    ref = flow.matvec(x), flow.rmatvec(x)
    af.set_num_threads(2)

    def products():
        return flow.matvec(x), flow.rmatvec(x)

    def toggle():
        for _ in range(20):
            af.set_num_threads(1 if af.get_num_threads() == 2 else 2)
            time.sleep(0)

    results, errors = _run_at_once({"products": products, "toggle": toggle}, n_threads_each=4)
    assert errors == []
    for a, t in results["products"]:
        np.testing.assert_allclose(a, ref[0], rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(t, ref[1], rtol=1e-13, atol=1e-15)
