r"""
Paper Fig. 2: training with the closed-form gradient
====================================================

The weights :math:`\Omega` of one image are learned by Riemannian gradient
descent (paper, eq. 3.7),
:math:`\Omega \leftarrow \operatorname{Exp}_\Omega(-h\,R_\Omega\,\partial\mathcal{L}(\Omega))`,
on the loss :math:`\mathcal{L}(\Omega) = f_{\mathcal{L}}(V_T(\Omega))`, the KL
divergence between the ground truth and the labeling :math:`\exp_{\mathbb{1}}(V_T)`
of the linearized assignment flow (eq. 3.4), starting from uniform weights.

The paper's Fig. 2 compares three ways to compute the gradient
:math:`\partial\mathcal{L}(\Omega)` on the "colors" scenario, (a) noisy and (b)
noise-free: its closed form (Theorem 3.8) with the rank-1 Krylov approximation
(eq. 3.46, :class:`assignflow.ClosedFormLowRank`, :math:`m = 10`) and PyTorch
automatic differentiation through two integrators of the LAF (Sect. 3.4), explicit
Euler with step :math:`h = 0.1` and the exponential Krylov integrator. The
training curves (% wrongly labeled pixels per iteration) nearly coincide.

Here the closed form is compared with the **exact** gradient of the LAF,
:class:`assignflow.AdjointQuadrature` (the adjoint state integrated with 8
Gauss–Legendre nodes; at these sizes it agrees with 24 nodes to 1e-15), which
needs no PyTorch. The two autodiff curves are added **only when PyTorch is
importable** (``pip install "assignflow[bench]"``); the documentation built on CI
does not install it. For reference, ``python benchmarks/figures.py --quick``
(the same 32×32 scenes and 8 iterations) measured on the development machine,
2026-11-22: noisy, closed form 3.91 → 0.00 % wrong (loss 0.9787 → 0.3330),
autodiff Euler 4.10 → 0.00 % (0.9942 → 0.3457), autodiff Krylov 3.91 → 0.00 %
(0.9787 → 0.3331); noise-free, 0.29 → 0.00 % for all three. Euler deviates most
because it integrates a slightly different forward map.

The lower panels show the loss and its largest relative deviation from the
closed-form curve. The figure is drawn by ``make_fig2`` of
``benchmarks/figures.py``; the paper's setting is ``python
benchmarks/figures.py --only fig2`` (64×64 pixels, 15 iterations).
"""

import matplotlib.pyplot as plt

from benchmarks.figures import fig2_methods, make_fig2, torch_available

with_torch = torch_available()
print(f"PyTorch autodiff baselines: {'included' if with_torch else 'omitted (not installed)'}")
methods = fig2_methods(autodiff=with_torch, reference=True, ref_nodes=8)
fig, summary = make_fig2(size=32, n_iter=8, methods=methods)
print(summary)
plt.show()
