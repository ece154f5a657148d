"""Single-precision operation: float32 in, float32 all the way, half the memory.

References are the float64 computations of the same library (themselves checked
against dense ``expm`` in test_flows.py / test_krylov.py) and, on tiny problems,
dense ``scipy.linalg.expm`` of the augmented matrix directly.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import scipy.linalg

import assignflow as af
from assignflow._krylov import arnoldi, solve_linear_ode
from assignflow.datasets import make_voronoi


def _problem(shape=(12, 10), J=4, seed=0, grid=True):
    rng = np.random.default_rng(seed)
    if grid:
        g = af.GridGraph(shape, radius=1)
    else:
        g = af.Graph.knn(rng.random((int(np.prod(shape)), 2)), n_neighbors=5)
    om = af.Weights.normalized(g, rng.random(g.nnz) + 0.1)
    D = rng.random((g.n_nodes, J))
    return g, om, D


def _dense_laf(flow64: af.LinearizedAssignmentFlow) -> np.ndarray:
    """``V(T)`` from ``expm`` of the dense augmented matrix (tiny problems only)."""
    n = flow64.size
    A = np.column_stack([flow64.matvec(e) for e in np.eye(n)])
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = flow64.T * A
    aug[:n, n] = flow64.T * flow64.B.ravel()
    return scipy.linalg.expm(aug)[:n, n].reshape(flow64.shape)


# --------------------------------------------------------------------------- operators
@pytest.mark.parametrize("grid", [True, False], ids=["diagonal", "csr"])
@pytest.mark.parametrize("transpose", [False, True], ids=["omega", "omega_T"])
def test_weight_operator_keeps_float32(grid, transpose):
    _, om, _ = _problem(grid=grid)
    x = np.random.default_rng(1).standard_normal((om.n_nodes, 3))
    op = om.operator
    f = op.apply_transpose if transpose else op.apply
    y64 = f(x)
    y32 = f(x.astype(np.float32))
    assert y64.dtype == np.float64 and y32.dtype == np.float32
    ref = (om.to_csr().T if transpose else om.to_csr()) @ x
    np.testing.assert_allclose(y64, ref, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(y32, ref, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- similarity
def test_similarity_dtype_follows_distances():
    _, om, D = _problem()
    assert af.SimilarityOperator(om, D).dtype == np.float64
    assert af.SimilarityOperator(om, D.astype(np.float32)).dtype == np.float32
    S = af.SimilarityOperator(om, D, rho=0.5, dtype="float32")
    assert S.dtype == np.float32 and S.distances.dtype == np.float32
    assert S.S0.dtype == np.float32
    assert "float32" in repr(S)
    # ints are data, not a precision request
    assert af.SimilarityOperator(om, np.ones(D.shape, dtype=np.int32)).dtype == np.float64


def test_similarity_astype_round_trip_and_S0():
    _, om, D = _problem()
    S64 = af.SimilarityOperator(om, D, rho=0.3)
    S32 = S64.astype(np.float32)
    assert S64.astype("float64") is S64
    assert S32.astype(np.float32) is S32
    np.testing.assert_allclose(S32.S0, S64.S0, rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(S32.S0.sum(axis=1), 1.0, atol=1e-6)
    assert S32.astype(np.float64).distances.dtype == np.float64


@pytest.mark.parametrize("bad", ["float16", np.int32, "complex128", "nope", 3])
def test_similarity_rejects_other_dtypes(bad):
    _, om, D = _problem()
    with pytest.raises(ValueError, match="dtype must be None, 'float32' or 'float64'"):
        af.SimilarityOperator(om, D, dtype=bad)


def test_float32_distances_out_of_range_are_rejected():
    _, om, D = _problem()
    D = D.copy()
    D[0, 0] = 1e39  # finite in float64, inf in float32
    with pytest.raises(ValueError, match="distances must fit the float32 range"):
        af.SimilarityOperator(om, D, dtype=np.float32)


# --------------------------------------------------------------------------- the LAF
@pytest.mark.parametrize("grid", [True, False], ids=["grid", "knn"])
@pytest.mark.parametrize("at_w0", [False, True], ids=["barycenter", "W0"])
def test_laf_float32_matches_dense_expm(grid, at_w0):
    g, om, D = _problem(shape=(5, 6), J=3, grid=grid)
    W0 = None
    if at_w0:
        W0 = af.AssignmentManifold(g.n_nodes, 3).random_point(np.random.default_rng(3))
    flow64 = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=0.2), T=4.0, W0=W0)
    flow32 = flow64.astype(np.float32)
    assert flow32.dtype == np.float32 and flow32.B.dtype == np.float32
    ref = _dense_laf(flow64)
    res = flow32.solve(af.ExponentialKrylov(krylov_dim=10))
    assert res.V.dtype == np.float32 and res.W.dtype == np.float32
    rel = np.abs(res.V - ref).max() / np.abs(ref).max()
    assert rel < 1e-5
    # the float64 solve is far more accurate (at a float64 tolerance): the gap is
    # rounding, not truncation
    res64 = flow64.solve(af.ExponentialKrylov(krylov_dim=10, tol=1e-11))
    assert np.abs(res64.V - ref).max() / np.abs(ref).max() < 1e-9
    np.testing.assert_allclose(res.W.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(res.W > 0)


def test_laf_float32_euler_matches_float64():
    _, om, D = _problem()
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=0.2), T=2.0)
    r64 = flow.solve(af.Euler(step_size=0.05))
    r32 = flow.astype("float32").solve(af.Euler(step_size=0.05))
    assert r32.V.dtype == np.float32
    np.testing.assert_allclose(r32.V, r64.V, rtol=0, atol=1e-5 * np.abs(r64.V).max())


def test_laf_float32_operators_stay_in_T0():
    _, om, D = _problem()
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=0.2, dtype="float32"))
    V = np.random.default_rng(2).standard_normal(flow.shape).astype(np.float32)
    V -= V.mean(axis=1, keepdims=True)
    AV = flow.matvec(V.ravel()).reshape(flow.shape)
    assert AV.dtype == np.float32
    np.testing.assert_allclose(AV.sum(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(AV, flow.astype("float64").A(V), rtol=1e-5, atol=1e-6)
    assert flow.aslinearoperator().dtype == np.float32


def test_long_horizon_float32_substeps_without_collapse():
    # A long horizon needs sub-steps; the tolerance is floored at a few ulps of
    # float32, so the step control never chases rounding noise.
    _, om, D = _problem(shape=(16, 16), J=5)
    flow = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, 3 * D, rho=0.05), T=200.0)
    r32 = flow.astype("float32").solve(af.ExponentialKrylov(krylov_dim=6, tol=1e-12))
    r64 = flow.solve(af.ExponentialKrylov(krylov_dim=6, tol=1e-12))
    assert r32.stats.n_steps > 1
    assert np.all(np.isfinite(r32.V))
    scale = np.abs(r64.V).max()
    assert np.abs(r32.V - r64.V).max() < 1e-4 * scale


def test_voronoi_labels_agree_with_float64():
    imgs, labels, protos = make_voronoi(
        scenario="colors",
        n_images=1,
        shape=(64, 64),
        noise=0.3,
        random_state=0,
        return_prototypes=True,
    )
    g = af.GridGraph((64, 64), radius=1)
    D = af.distance_matrix(imgs[0], protos)
    flow = af.LinearizedAssignmentFlow(
        af.SimilarityOperator(af.Weights.uniform(g), D, rho=0.3), T=3.0
    )
    l64 = flow.solve().labels
    l32 = flow.astype(np.float32).solve().labels
    assert np.mean(l64 == l32) > 0.999
    assert np.mean(l32 == labels[0].ravel()) > 0.9


# --------------------------------------------------------------------------- Krylov kernel
def test_arnoldi_float32_basis_is_orthonormal():
    rng = np.random.default_rng(0)
    M = rng.standard_normal((300, 300)) / 20
    res = arnoldi(lambda x: (M @ x).astype(x.dtype), rng.standard_normal(300).astype("f4"), 12)
    assert res.Q.dtype == np.float32 and res.H.dtype == np.float64
    Q = res.Q.astype(np.float64)
    assert np.abs(Q @ Q.T - np.eye(Q.shape[0])).max() < 1e-5
    # the Arnoldi relation A Q_k^T = Q_{k+1}^T H holds to float32 rounding
    lhs = M @ Q[: res.k].T
    assert np.abs(lhs - Q.T @ res.H).max() < 1e-5


def test_solve_linear_ode_float32_against_expm():
    rng = np.random.default_rng(1)
    n = 40
    M = rng.standard_normal((n, n)) / 4
    b = rng.standard_normal(n)
    x0 = rng.standard_normal(n)
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = 2.0 * M
    aug[:n, n] = 2.0 * b
    ref = scipy.linalg.expm(aug) @ np.append(x0, 1.0)
    x, _ = solve_linear_ode(
        lambda v: (M @ v).astype(v.dtype), b.astype("f4"), 2.0, x0.astype("f4"), m=8
    )
    assert x.dtype == np.float32
    assert np.abs(x - ref[:n]).max() / np.abs(ref[:n]).max() < 1e-5
    assert b.dtype == np.float64  # inputs untouched


# --------------------------------------------------------------------------- memory
def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_float32_halves_the_memory_of_a_solve():
    # numpy reports its buffers to tracemalloc, so this counts the Krylov basis,
    # S0, B and all work arrays, deterministically (no timing, no RSS noise).
    h = w = 96
    J = 10
    rng = np.random.default_rng(0)
    g = af.GridGraph((h, w))
    om = af.Weights.uniform(g)
    D = rng.random((h * w, J))
    peaks = {}
    for dt in ("float64", "float32"):

        def run(dt=dt):
            S = af.SimilarityOperator(om, D, rho=0.2, dtype=dt)
            af.LinearizedAssignmentFlow(S, T=3.0).solve(af.ExponentialKrylov(krylov_dim=10))

        run()  # warm caches (the operator's blocks) outside the measurement
        peaks[dt] = _peak_bytes(run)
    basis64 = 11 * h * w * J * 8
    assert peaks["float64"] > basis64  # the measurement sees the basis
    assert peaks["float32"] < 0.55 * peaks["float64"]


# --------------------------------------------------------------------------- entry points
def test_label_graph_float32():
    rng = np.random.default_rng(0)
    X = np.r_[rng.normal(0, 0.3, (40, 2)), rng.normal(2, 0.3, (40, 2))]
    g = af.Graph.knn(X, n_neighbors=6)
    r64 = af.label_graph(g, X, [[0, 0], [2, 2]], rho=0.5)
    r32 = af.label_graph(g, X, [[0, 0], [2, 2]], rho=0.5, dtype="float32")
    assert r32.W.dtype == np.float32
    np.testing.assert_array_equal(r32.labels, r64.labels)
    np.testing.assert_allclose(r32.W, r64.W, atol=1e-5)
    with pytest.raises(ValueError, match="dtype must be"):
        af.label_graph(g, X, [[0, 0], [2, 2]], dtype="float16")


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_image_labeler_predicts_in_float32():
    from sklearn.base import clone

    X, y = make_voronoi("colors", 3, (20, 20), 0.3, random_state=1)
    lab = af.ImageLabeler(max_iter=2, n_prototypes=5, random_state=0).fit(X[:2], y[:2])
    p64 = lab.predict_proba(X[2:])
    lab.set_params(dtype="float32")
    p32 = lab.predict_proba(X[2:])
    assert p32.dtype == np.float32
    np.testing.assert_allclose(p32, p64, atol=1e-5)
    assert clone(lab).get_params()["dtype"] == "float32"
    with pytest.raises(ValueError, match="dtype"):
        af.ImageLabeler(dtype="half").fit(X[:2], y[:2])


def test_cli_label_float32(tmp_path, capsys):
    from assignflow.cli import main

    X, _ = make_voronoi("colors", 1, (16, 16), 0.2, random_state=2)
    np.save(tmp_path / "img.npy", X[0])
    outs = {}
    for dt in ("float64", "float32"):
        stem = tmp_path / f"out-{dt}"
        code = main(
            [
                "label",
                str(tmp_path / "img.npy"),
                "--n-labels",
                "3",
                "--dtype",
                dt,
                "--output",
                str(stem),
            ]
        )
        assert code == 0
        outs[dt] = np.load(f"{stem}.npy")
    np.testing.assert_array_equal(outs["float32"], outs["float64"])


def test_gradients_of_a_float32_flow_agree_with_float64():
    _, om, D = _problem(shape=(6, 6), J=3)
    y = np.random.default_rng(4).integers(0, 3, om.n_nodes)
    flow64 = af.LinearizedAssignmentFlow(af.SimilarityOperator(om, D, rho=0.3), T=2.0)
    flow32 = flow64.astype("float32")
    loss = af.KLLoss(y)
    for est in (af.ClosedFormLowRank(rank=2), af.AdjointQuadrature()):
        r32 = est.estimate(flow32, loss)
        r64 = est.estimate(flow64, loss)
        assert r32.gradient.dtype == np.float64
        # the same up to the float32 rounding of D (relative 6e-8)
        scale = np.abs(r64.gradient).max()
        np.testing.assert_allclose(r32.gradient, r64.gradient, rtol=0, atol=1e-6 * scale)
        assert r32.value == pytest.approx(r64.value, rel=1e-6)
