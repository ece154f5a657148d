"""Linearized assignment flows on 3-D grids (volumes) against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg as sla
import scipy.sparse as sp

import assignflow as af
from assignflow import (
    DenseFrechet,
    ExponentialKrylov,
    Graph,
    GridGraph,
    KLLoss,
    LinearizedAssignmentFlow,
    SimilarityOperator,
    Weights,
)


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def dense_laf_V(om: np.ndarray, D: np.ndarray, rho: float, T: float, W0=None) -> np.ndarray:
    """V(T) from ``expm`` of the dense augmented matrix, built from the definitions.

    ``A = R_{W0} R_{S0} (Ω ⊗ I_J) diag(1/W0)`` and ``b = R_{W0} S0`` with
    ``S0 = softmax(Ω(log W0 − D/ρ))``; ``V(T)`` is the last column of
    ``expm([[T A, T b], [0, 0]])`` without its last entry.
    """
    I, J = D.shape
    W0 = np.full((I, J), 1.0 / J) if W0 is None else W0
    S0 = _softmax(om @ (np.log(W0) - D / rho))

    def R(p):
        return sla.block_diag(*[np.diag(q) - np.outer(q, q) for q in p])

    A = R(W0) @ R(S0) @ np.kron(om, np.eye(J)) @ np.diag(1.0 / W0.ravel())
    b = R(W0) @ S0.ravel()
    n = I * J
    aug = np.zeros((n + 1, n + 1))
    aug[:n, :n] = T * A
    aug[:n, n] = T * b
    return sla.expm(aug)[:n, n].reshape(I, J)


def _problem(shape, radius=1, J=3, seed=0):
    rng = np.random.default_rng(seed)
    g = GridGraph(shape, radius)
    om = Weights.normalized(g, rng.uniform(0.05, 1.0, g.nnz))
    D = rng.uniform(0.0, 1.0, (g.n_nodes, J))
    return g, om, D


@pytest.mark.parametrize(
    ("shape", "radius"),
    [
        ((3, 4, 5), 1),
        ((3, 4, 5), 2),
        ((2, 3, 4), 3),
        ((1, 3, 4), 1),
        ((4, 1, 1), 1),
        ((2, 2, 2), 1),
    ],
)
def test_volume_laf_matches_dense_expm(shape, radius):
    _, om, D = _problem(shape, radius)
    rho, T = 0.5, 1.5
    ref = dense_laf_V(om.to_csr().toarray(), D, rho, T)
    flow = LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=rho), T=T)
    res = flow.solve(ExponentialKrylov(krylov_dim=30, tol=1e-12))
    np.testing.assert_allclose(res.V, ref, rtol=1e-9, atol=1e-11)
    np.testing.assert_array_equal(res.labels, np.argmax(ref, axis=1))
    # float32: single precision throughout, same solution to ~1e-6
    flow32 = LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=rho, dtype="float32"), T=T)
    res32 = flow32.solve(ExponentialKrylov(krylov_dim=30, tol=1e-6))
    assert res32.V.dtype == np.float32
    np.testing.assert_allclose(res32.V, ref, rtol=1e-4, atol=1e-5)


def test_volume_laf_away_from_the_barycenter():
    _, om, D = _problem((3, 4, 5), seed=1)
    W0 = _softmax(np.random.default_rng(2).normal(size=D.shape))
    ref = dense_laf_V(om.to_csr().toarray(), D, 0.4, 1.0, W0=W0)
    flow = LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=0.4), T=1.0, W0=W0)
    res = flow.solve(ExponentialKrylov(krylov_dim=30, tol=1e-12))
    np.testing.assert_allclose(res.V, ref, rtol=1e-9, atol=1e-11)


def test_volume_operators_match_dense_A():
    """The flow's A and Aᵀ on a volume equal the dense matrix (grid kernels, both dtypes)."""
    _, om, D = _problem((3, 4, 5), seed=3)
    flow = LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=0.3))
    n = flow.size
    A = np.column_stack([flow.matvec(e) for e in np.eye(n)])
    J = D.shape[1]
    S0 = _softmax(-om.to_csr().toarray() @ D / 0.3)
    R = sla.block_diag(*[np.diag(s) - np.outer(s, s) for s in S0])
    np.testing.assert_allclose(A, R @ np.kron(om.to_csr().toarray(), np.eye(J)), atol=1e-14)
    x = np.random.default_rng(4).normal(size=n)
    np.testing.assert_allclose(flow.rmatvec(x), A.T @ x, rtol=1e-12, atol=1e-13)


def test_volume_grid_equals_the_same_pattern_as_a_plain_graph():
    """DIA kernels (grid) and CSR kernels (plain graph) give the same flow on a larger volume."""
    g, om, D = _problem((10, 12, 14), J=4, seed=5)
    plain = Graph(g.indptr, g.indices)
    om_plain = Weights(plain, om.values)
    integ = ExponentialKrylov(krylov_dim=20, tol=1e-10)
    for dtype, rtol in [("float64", 1e-10), ("float32", 1e-4)]:
        a = LinearizedAssignmentFlow(SimilarityOperator(om, D, 0.2, dtype=dtype), T=2.0)
        b = LinearizedAssignmentFlow(SimilarityOperator(om_plain, D, 0.2, dtype=dtype), T=2.0)
        va, vb = a.solve(integ).V, b.solve(integ).V
        assert va.dtype == np.dtype(dtype)
        np.testing.assert_allclose(va, vb, rtol=rtol, atol=rtol * np.abs(vb).max())


def test_volume_weight_patches_build_the_flow():
    g = GridGraph((3, 4, 5))
    rng = np.random.default_rng(6)
    patches = rng.uniform(0.1, 1.0, (3, 4, 5, 27))
    om = Weights.from_patches(g, patches, normalize=True)
    assert om.patches.shape == (3, 4, 5, 27)
    mask = g.valid.reshape(3, 4, 5, 27)
    want = np.where(mask, patches, 0.0)
    want /= want.sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(om.patches, want)
    # entry (z, y, x, o) is the weight on the edge to (z, y, x) + offsets[o]
    dense = om.to_csr().toarray()
    z, y, x, o = 1, 2, 3, 5
    dz, dy, dx = g.offsets[o]
    assert om.patches[z, y, x, o] == pytest.approx(
        dense[(z * 4 + y) * 5 + x, ((z + dz) * 4 + y + dy) * 5 + x + dx]
    )


def _dense_kl(g, values, D, rho, T, labels):
    om = sp.csr_matrix((values, g.indices, g.indptr), shape=(g.n_nodes,) * 2).toarray()
    V = dense_laf_V(om, D, rho, T)
    J = D.shape[1]
    return -np.log(_softmax(J * V)[np.arange(len(labels)), labels]).mean()


def test_volume_weight_gradient_against_finite_differences_of_dense_expm():
    g, om, D = _problem((2, 3, 3), J=2, seed=7)
    labels = np.random.default_rng(8).integers(0, 2, g.n_nodes)
    rho, T = 0.5, 1.0
    flow = LinearizedAssignmentFlow(SimilarityOperator(om, D, rho=rho), T=T)
    loss = KLLoss(labels)
    grad = DenseFrechet().estimate(flow, loss).gradient
    low = af.ClosedFormLowRank(rank=4, krylov_dim=30).estimate(flow, loss).gradient
    edges = np.random.default_rng(9).choice(g.nnz, 25, replace=False)
    h = 1e-6
    for e in edges:
        up, dn = om.values.copy(), om.values.copy()
        up[e] += h
        dn[e] -= h
        fd = (_dense_kl(g, up, D, rho, T, labels) - _dense_kl(g, dn, D, rho, T, labels)) / (2 * h)
        assert grad[e] == pytest.approx(fd, rel=1e-5, abs=1e-8)
    np.testing.assert_allclose(low, grad, rtol=1e-4, atol=1e-6 * np.abs(grad).max())


def test_label_a_noisy_volume_end_to_end():
    """Three blobs in a 16³ volume plus noise: the LAF denoises the nearest-label map."""
    rng = np.random.default_rng(10)
    z, y, x = np.meshgrid(*[np.arange(16)] * 3, indexing="ij")
    seeds = rng.uniform(0, 16, (6, 3))
    d = [(z - s[0]) ** 2 + (y - s[1]) ** 2 + (x - s[2]) ** 2 for s in seeds]
    truth = np.argmin(np.stack(d), axis=0) % 3
    protos = np.array([0.0, 0.5, 1.0])
    noisy = (protos[truth] + rng.normal(0, 0.35, truth.shape)).astype(np.float32)
    D = af.distance_matrix(noisy.reshape(-1, 1), protos[:, None]).astype(np.float32)
    g = af.registry.graphs.resolve("grid", X=noisy[..., None], radius=1)
    sim = SimilarityOperator(Weights.uniform(g), D, rho=af.estimate_rho(D))
    res = LinearizedAssignmentFlow(sim, T=4.0).solve()
    assert res.V.dtype == np.float32
    acc_nearest = np.mean(np.argmin(D, axis=1) == truth.ravel())
    acc_laf = np.mean(res.labels == truth.ravel())
    assert acc_nearest < 0.8 and acc_laf > 0.9
