"""Losses of :mod:`assignflow.losses`: values and gradients against references, bad input.

Bad input raises a ``ValueError``/``TypeError`` naming the argument (see
``tests/helpers.py``); legitimate degenerate input (one node, one label, isolated
nodes) gives the values of the definitions.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    BAD,
    INF,
    NAN,
    bool_array,
    case,
    complex_array,
    disconnected_graph,
    inf_array,
    nan_array,
    random_weights,
    small_laf,
    str_array,
)
from strategies import ref_softmax

import assignflow as af
from assignflow import CompositeLoss, KLLoss, TangentSpaceRegularizer
from assignflow._simplex import log_softmax as _log_softmax


def test_kl_loss_value_and_gradient():
    rng = np.random.default_rng(0)
    I, J = 7, 4
    V = rng.standard_normal((I, J))
    y = rng.integers(0, J, I)
    loss = af.KLLoss(y)
    W = np.exp(_log_softmax(J * V))
    ref = -np.mean(np.log(W[np.arange(I), y]))
    assert loss.data_value(V) == pytest.approx(ref, rel=1e-13)
    # the KL form: KL(W*||W) with one-hot W* is -log W_y
    grad = loss.data_gradient(V)
    np.testing.assert_allclose(grad, J * (W - af.losses.labels_to_one_hot(y, J)) / I, atol=1e-15)
    fd = np.zeros_like(V)
    for i in range(I):
        for j in range(J):
            E = np.zeros_like(V)
            E[i, j] = 1e-6
            fd[i, j] = (loss.data_value(V + E) - loss.data_value(V - E)) / 2e-6
    np.testing.assert_allclose(grad, fd, atol=1e-8)


def test_kl_loss_sample_weights():
    rng = np.random.default_rng(1)
    V = rng.standard_normal((5, 3))
    y = np.array([0, 1, 2, 1, 0])
    w = np.array([1.0, 2.0, 0.0, 1.0, 1.0])
    loss = af.KLLoss(y, sample_weight=w)
    per = -_log_softmax(3 * V)[np.arange(5), y]
    assert loss.data_value(V) == pytest.approx(np.sum(w * per) / w.sum())
    with pytest.raises(ValueError, match="sample_weight"):
        af.KLLoss(y, sample_weight=[1.0, -1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="sample_weight"):
        af.KLLoss(y, sample_weight=[1.0, 1.0])


def test_tangent_regularizer_value_and_gradient():
    rng = np.random.default_rng(2)
    g = af.GridGraph((3, 4))
    om = af.Weights.normalized(g, rng.uniform(0.1, 1, g.nnz))
    reg = af.TangentSpaceRegularizer(tau=0.3)
    # value: (τ/2) Σ_i ||Π0 log ω_i||²
    ref = 0.0
    for i in range(g.n_nodes):
        lw = np.log(om.values[g.indptr[i] : g.indptr[i + 1]])
        ref += np.sum((lw - lw.mean()) ** 2)
    assert reg.reg_value(om) == pytest.approx(0.15 * ref)
    assert reg.reg_value(af.Weights.uniform(g)) == pytest.approx(0.0, abs=1e-25)
    grad = reg.reg_gradient(om)
    fd = np.empty(g.nnz)

    def at(e: int, d: float) -> float:
        v = om.values.copy()
        v[e] += d
        return reg.reg_value(af.Weights._unchecked(g, v))

    h = 3e-5
    for e in range(g.nnz):
        # fourth-order central differences: truncation ~h⁴|f⁽⁵⁾| and rounding ~eps|f|/h
        # both near 1e-11 (second order cannot get below ~4e-9 here: |f'''| ~ 1/ω³ with
        # ω down to 0.04)
        fd[e] = (8 * (at(e, h) - at(e, -h)) - (at(e, 2 * h) - at(e, -2 * h))) / (12 * h)
    np.testing.assert_allclose(grad, fd, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="tau"):
        af.TangentSpaceRegularizer(tau=-1)


def test_composite_loss():
    y = np.array([0, 1, 1])
    loss = af.KLLoss(y) + af.TangentSpaceRegularizer(0.1) + af.TangentSpaceRegularizer(0.2)
    assert isinstance(loss, af.CompositeLoss) and len(loss.terms) == 3
    assert loss.has_data_term
    assert not af.TangentSpaceRegularizer(0.1).has_data_term
    g = af.GridGraph((1, 3))
    om = af.Weights.normalized(g, np.arange(1, g.nnz + 1.0))
    V = np.array([[0.1, -0.1], [0.0, 0.0], [-0.2, 0.2]])
    expected = af.KLLoss(y).data_value(V) + af.TangentSpaceRegularizer(0.3).reg_value(om)
    assert loss.value(V, om) == pytest.approx(expected)
    with pytest.raises(TypeError):
        af.CompositeLoss((af.KLLoss(y), "l2"))
    assert af.registry.losses.get("kl") is af.KLLoss
    assert af.registry.losses.get("tangent_space") is af.TangentSpaceRegularizer


def test_kl_loss_bad_labels():
    with pytest.raises(BAD, match="labels"):
        af.KLLoss(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="labels"):
        af.KLLoss(np.array([-1, 0]))
    with pytest.raises(ValueError, match="labels"):
        af.KLLoss(np.array([], dtype=int))
    # float labels with integral values are accepted
    assert af.KLLoss(np.array([0.0, 2.0])).labels.tolist() == [0, 2]


# ===== bad input (moved from test_bad_input_*.py)
_Y9 = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2])
_KL9 = KLLoss(_Y9)
_OM9 = af.Weights.uniform(af.GridGraph((3, 3)))


def _kl_flow_check(labels, J=3):
    return KLLoss(labels).check(small_laf(J=J))


LOSS_CASES = [
    case("labels-negative", lambda: KLLoss([-1, 0, 1]), ValueError, "labels"),
    case("labels-float", lambda: KLLoss([0.5, 1.0]), BAD, "labels"),
    case("labels-nan", lambda: KLLoss([NAN, 1.0]), BAD, "labels"),
    case("labels-inf", lambda: KLLoss([INF, 1.0]), BAD, "labels"),
    case("labels-str", lambda: KLLoss(["a", "b"]), BAD, "labels"),
    case("labels-numeric-str", lambda: KLLoss(["0", "1"]), BAD, "labels"),
    case("labels-bool", lambda: KLLoss([True, False]), BAD, "labels"),
    case("labels-complex", lambda: KLLoss([1 + 0j]), BAD, "labels"),
    case("labels-None", lambda: KLLoss(None), BAD, "labels"),
    case("labels-object", lambda: KLLoss(np.array([1, None], dtype=object)), BAD, "labels"),
    case("labels-empty", lambda: KLLoss([]), ValueError, "labels"),
    case("labels-empty-int", lambda: KLLoss(np.zeros(0, int)), ValueError, "labels"),
    case("labels-too-large", lambda: _kl_flow_check(np.full(9, 3)), ValueError, "labels"),
    case("labels-count", lambda: _kl_flow_check(np.zeros(8, int)), ValueError, "labels"),
    case("labels-one-label", lambda: _kl_flow_check(np.arange(9) % 2, J=1), ValueError, "labels"),
    case(
        "sw-negative",
        lambda: KLLoss(_Y9, sample_weight=-np.ones(9)),
        ValueError,
        "sample_weight",
    ),
    case("sw-nan", lambda: KLLoss(_Y9, sample_weight=nan_array(9)), ValueError, "sample_weight"),
    case("sw-inf", lambda: KLLoss(_Y9, sample_weight=inf_array(9)), ValueError, "sample_weight"),
    case("sw-shape", lambda: KLLoss(_Y9, sample_weight=np.ones(8)), ValueError, "sample_weight"),
    case(
        "sw-zero-sum",
        lambda: KLLoss(_Y9, sample_weight=np.zeros(9)),
        ValueError,
        "sample_weight",
    ),
    case("sw-str", lambda: KLLoss(_Y9, sample_weight=str_array(9)), BAD, "sample_weight"),
    case("sw-words", lambda: KLLoss(_Y9, sample_weight="heavy"), BAD, "sample_weight"),
    case("sw-complex", lambda: KLLoss(_Y9, sample_weight=complex_array(9)), BAD, "sample_weight"),
    case("sw-bool", lambda: KLLoss(_Y9, sample_weight=bool_array(9)), BAD, "sample_weight"),
    case("data_value-V-shape", lambda: _KL9.data_value(np.zeros((8, 3))), ValueError, "V"),
    case("data_value-V-1d", lambda: _KL9.data_value(np.zeros(27)), ValueError, "V"),
    case("data_value-labels>=J", lambda: _KL9.data_value(np.zeros((9, 2))), ValueError, "labels"),
    case("data_grad-V-shape", lambda: _KL9.data_gradient(np.zeros((9, 3, 1))), ValueError, "V"),
    case("data_grad-V-nan", lambda: _KL9.data_gradient(nan_array((9, 3))), ValueError, "V"),
    case("data_value-V-str", lambda: _KL9.data_value(str_array((9, 3))), BAD, "V"),
    case("tau-negative", lambda: TangentSpaceRegularizer(tau=-1.0), ValueError, "tau"),
    case("tau-nan", lambda: TangentSpaceRegularizer(tau=NAN), ValueError, "tau"),
    case("tau-inf", lambda: TangentSpaceRegularizer(tau=INF), ValueError, "tau"),
    case("tau-str", lambda: TangentSpaceRegularizer(tau="0.1"), BAD, "tau"),
    case("tau-bool", lambda: TangentSpaceRegularizer(tau=True), BAD, "tau"),
    case("tau-None", lambda: TangentSpaceRegularizer(tau=None), BAD, "tau"),
    case("reg-weights-str", lambda: TangentSpaceRegularizer().reg_value("w"), BAD, "weights"),
    case(
        "reg-grad-array",
        lambda: TangentSpaceRegularizer().reg_gradient(_OM9.values),
        BAD,
        "weights",
    ),
    case("composite-term", lambda: CompositeLoss([_KL9, 5]), BAD, "terms"),
    case("composite-int", lambda: CompositeLoss(5), BAD, "terms"),
    case("composite-str", lambda: CompositeLoss("kl"), BAD, "terms"),
    # Python's own error for an unsupported operand: no argument to name
    case("add-int", lambda: _KL9 + 5, TypeError, None),
]


@pytest.mark.parametrize(("fn", "exc", "match"), LOSS_CASES)
def test_losses_reject(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def test_kl_loss_legit_variants():
    y = np.array([0.0, 1.0, 2.0] * 3)
    yc = y.copy()
    assert KLLoss(y).labels.tolist() == _Y9.tolist()  # integral floats are fine
    np.testing.assert_array_equal(y, yc)
    img = _Y9.reshape(3, 3)
    assert KLLoss(img).labels.tolist() == _Y9.tolist()  # label images are flattened
    sw = np.arange(1.0, 10.0)
    swc = sw.copy()
    loss = KLLoss(_Y9, sample_weight=sw)
    np.testing.assert_array_equal(sw, swc)
    V = np.random.default_rng(0).standard_normal((9, 3))
    Vc = V.copy()
    p = ref_softmax(3 * V)
    ref = -(sw * np.log(p[np.arange(9), _Y9])).sum() / sw.sum()
    np.testing.assert_allclose(loss.data_value(V), ref, rtol=1e-13)
    np.testing.assert_array_equal(V, Vc)


@pytest.mark.parametrize(("I", "J"), [(1, 1), (1, 3), (4, 1)], ids=lambda v: str(v))
def test_kl_loss_degenerate_sizes(I, J):
    y = np.arange(I) % J
    loss = KLLoss(y)
    V = np.random.default_rng(1).standard_normal((I, J))
    V -= V.mean(axis=1, keepdims=True)
    p = ref_softmax(J * V)
    np.testing.assert_allclose(loss.data_value(V), -np.log(p[np.arange(I), y]).mean(), rtol=1e-13)
    onehot = np.eye(J)[y]
    np.testing.assert_allclose(loss.data_gradient(V), J * (p - onehot) / I, atol=1e-15)
    if J == 1:
        assert loss.data_value(V) == 0.0


def test_tangent_regularizer_isolated_nodes():
    g = disconnected_graph()
    om = random_weights(g)
    reg = TangentSpaceRegularizer(tau=0.3)
    ref_val, ref_grad = 0.0, np.zeros(g.nnz)
    for i in range(g.n_nodes):
        sl = slice(g.indptr[i], g.indptr[i + 1])
        c = np.log(om.values[sl]) - np.log(om.values[sl]).mean()
        ref_val += 0.15 * c @ c
        ref_grad[sl] = 0.3 * c / om.values[sl]
    np.testing.assert_allclose(reg.reg_value(om), ref_val, rtol=1e-13)
    np.testing.assert_allclose(reg.reg_gradient(om), ref_grad, rtol=1e-13, atol=1e-15)
    iso = g.indptr[np.flatnonzero(g.degrees == 1)]
    np.testing.assert_array_equal(reg.reg_gradient(om)[iso], 0.0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("I", [40, 50_000])  # the large one runs in threaded row blocks
def test_fused_value_and_gradient_equal_the_two_calls(dtype, weighted, I):
    # gradient estimators evaluate the data term once, from one softmax
    rng = np.random.default_rng(4)
    J = 5
    V = (rng.normal(size=(I, J)) * 3).astype(dtype)
    sw = rng.uniform(0.1, 2.0, I) if weighted else None
    loss = KLLoss(labels=rng.integers(0, J, I), sample_weight=sw)
    value, grad = loss.data_value_and_gradient(V)
    assert grad.dtype == dtype and grad.shape == (I, J)
    tight = dtype == np.float64
    np.testing.assert_allclose(value, loss.data_value(V), rtol=1e-12 if tight else 1e-6)
    np.testing.assert_allclose(grad, loss.data_gradient(V), rtol=1e-10 if tight else 1e-5,
                               atol=1e-15 if tight else 1e-8)  # fmt: skip
    # against the definition, in double precision from the same (rounded) V
    ref = -np.mean(np.log(ref_softmax(J * V.astype(np.float64)))[np.arange(I), loss.labels]
                   * (1.0 if sw is None else sw / sw.mean()))  # fmt: skip
    np.testing.assert_allclose(value, ref, rtol=1e-12 if tight else 1e-6)
    w = np.full(I, 1.0 / I) if sw is None else sw / sw.sum()
    onehot = np.eye(J)[loss.labels]
    ref_grad = J * w[:, None] * (ref_softmax(J * V.astype(np.float64)) - onehot)
    atol = (1e-15 if tight else 1e-7) * np.abs(ref_grad).max()
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-10 if tight else 1e-5, atol=atol)
    composite = loss + TangentSpaceRegularizer(0.1) + loss
    cv, cg = composite.data_value_and_gradient(V)
    np.testing.assert_allclose(cv, 2 * value, rtol=1e-12)
    np.testing.assert_allclose(cg, 2 * grad, rtol=1e-6)


def test_has_regularizer():
    kl = KLLoss(labels=[0, 1])
    assert not kl.has_regularizer and kl.has_data_term
    reg = TangentSpaceRegularizer(0.1)
    assert reg.has_regularizer and not reg.has_data_term
    assert (kl + reg).has_regularizer and not (kl + kl).has_regularizer
    # a regulariser-only composite has no data term: value 0, zero gradient
    v, g = (reg + reg).data_value_and_gradient(np.zeros((2, 2)))
    assert v == 0.0 and not g.any()
