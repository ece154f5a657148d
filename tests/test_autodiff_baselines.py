"""The PyTorch autodiff baselines of benchmarks/autodiff_torch.py against the library.

Skipped when torch is not installed (CI does not install it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import autodiff_torch as adt  # noqa: E402

import assignflow as af  # noqa: E402

EULER_STEP = 5e-3  # 300 steps for T = 1.5: O(h) error ~1e-3 in the gradient


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture(scope="module")
def problem():
    return adt.make_problem((6, 5), 3, rho=0.1, T=1.5, seed=0)


@pytest.fixture(scope="module")
def reference(problem):
    # a tight forward: the default one stops at the dimension its tolerance (1e-8) needs
    tight = af.ExponentialKrylov(krylov_dim=30, tol=1e-14)
    return af.AdjointQuadrature().value_and_gradient(
        problem["flow"], problem["loss"], integrator=tight
    )


@pytest.fixture(scope="module")
def torch_krylov(problem):
    return adt.torch_value_and_grad_krylov(problem, krylov_dim=10)


def test_make_problem(problem):
    g, w = problem["graph"], problem["weights"]
    assert problem["D"].shape == (30, 3) and problem["y"].shape == (30,)
    assert np.all(w.values > 0)
    np.testing.assert_allclose(np.add.reduceat(w.values, g.indptr[:-1]), 1.0, atol=1e-12)
    np.testing.assert_array_equal(g.patches_to_values(problem["patches"]), w.values)
    # the mask is zero exactly where the window leaves the image
    assert problem["mask"].sum() == g.nnz
    assert np.all(problem["patches"][problem["mask"] == 0] == 0)


def test_torch_forward_matches_library(problem):
    flow = problem["flow"]
    V_euler = flow.solve(af.Euler(step_size=0.1)).V
    np.testing.assert_allclose(adt.torch_forward_euler(problem, 0.1), V_euler, atol=1e-13)
    V_exact = flow.solve(af.ExponentialKrylov(krylov_dim=30, tol=1e-14)).V
    V_kry = adt.torch_forward_krylov(problem, krylov_dim=10)
    assert _rel(V_kry, V_exact) < 1e-10


def test_euler_gradient(problem, reference):
    value, grad = adt.torch_value_and_grad_euler(problem, step_size=EULER_STEP)
    assert grad.shape == (problem["graph"].nnz,)
    V = problem["flow"].solve(af.Euler(step_size=EULER_STEP)).V
    expected = problem["loss"].data_value(V)
    assert abs(value - expected) <= 1e-10 * abs(expected)
    assert _rel(grad, reference[1]) < 1e-2


def test_euler_gradient_is_first_order(problem, reference):
    # dividing the step by ten divides the error about tenfold (O(h) convergence)
    err_coarse = _rel(adt.torch_value_and_grad_euler(problem, step_size=0.1)[1], reference[1])
    err_fine = _rel(adt.torch_value_and_grad_euler(problem, step_size=0.01)[1], reference[1])
    assert 5.0 < err_coarse / err_fine < 20.0


def test_krylov_gradient(problem, reference, torch_krylov):
    value, grad = torch_krylov
    assert grad.shape == (problem["graph"].nnz,)
    assert abs(value - reference[0]) <= 1e-10 * abs(reference[0])
    assert _rel(grad, reference[1]) < 1e-6


def test_krylov_gradient_matches_closed_form(problem, torch_krylov):
    flow, loss = problem["flow"], problem["loss"]
    # torch runs all 10 Arnoldi steps; a tolerance of 1e-12 takes ours there too
    tight = af.ExponentialKrylov(krylov_dim=10, tol=1e-12)
    value, grad = af.ClosedFormLowRank(krylov_dim=10, rank=10).value_and_gradient(
        flow, loss, integrator=tight
    )
    assert abs(value - torch_krylov[0]) <= 1e-10 * abs(value)
    assert _rel(torch_krylov[1], grad) < 1e-6
    # the paper's rank-1 gradient is close too (docs/math.md §8: about 1e-2 relative error)
    g1 = af.ClosedFormLowRank(krylov_dim=10, rank=1).gradient(flow, loss)
    assert _rel(g1, torch_krylov[1]) < 5e-2
    assert g1 @ torch_krylov[1] / (np.linalg.norm(g1) * np.linalg.norm(torch_krylov[1])) > 0.999


def test_masked_entries_get_no_gradient(problem):
    # the leaf's out-of-image entries are multiplied by the 0/1 mask: zero gradient
    P = torch.tensor(problem["patches"], dtype=torch.float64, requires_grad=True)
    model = adt._LAF(problem, P)
    V = adt._krylov(model, problem["T"], 5)
    y = torch.as_tensor(problem["y"], dtype=torch.int64)
    adt._loss(V, y, problem["n_labels"]).backward()
    g = P.grad.numpy()
    assert np.all(g[problem["mask"] == 0] == 0)
    assert np.count_nonzero(g) == problem["graph"].nnz
