r"""
Paper Fig. 4: Krylov dimension, rank and time horizon
=====================================================

Three parameters of the gradient approximation, on the noisy "colors" scene of
Fig. 2:

* **Krylov dimension** :math:`m` (left, the paper's Fig. 4a): relative error
  :math:`\|\widehat{\partial\mathcal{L}} - \partial\mathcal{L}\| / \|\partial\mathcal{L}\|`
  of the rank-1 gradient against the exact gradient
  (:class:`assignflow.AdjointQuadrature`), for the scenario's :math:`T = 3` and a
  long horizon :math:`T = 10`. Unlike the paper's single Krylov step, the
  estimator integrates the adjoint with error control: a small :math:`m` needs
  many short steps (the operator applications are counted at the end of this
  example), on each of which the rank-1 factorisation is nearly exact. So the
  error *grows* with :math:`m` until one step suffices and then stays at the
  one-step rank-1 truncation error (the rank-1 value of the middle panel), while
  the cost falls: an :math:`m` that needs a single step (about 8–10 here) is the
  economical choice, with an error far below what training needs.
* **Rank** :math:`r` (middle, Fig. 4b): keeping :math:`r` singular triples of the
  small Van Loan block :math:`X` (eq. 3.47) with :math:`m = 10`. The rank-1 error
  is already small enough for training (the paper's training curves for
  different ranks coincide); higher ranks converge to the exact gradient.
* **Time horizon** :math:`T` (right, Fig. 4c): training curves of Riemannian
  gradient descent with the rank-1 gradient for several :math:`T`. The paper
  finds similar rates for small :math:`T` and slower training for large
  :math:`T`, presumably because the LAF is then close to an integral labeling,
  whose errors are harder to correct; here :math:`T = 10` is by far the slowest.

The paper shows error and training curves; here panels (a) and (b) plot the
gradient error directly. Sizes: 32×32 pixels, 8 iterations,
:math:`m \in \{2, 4, \ldots, 12\}`, :math:`T \in \{0.5, 1, 3, 10\}` (the
``--quick`` sizes of ``benchmarks/figures.py``; ``python benchmarks/figures.py
--only fig4`` runs 64×64 pixels, 25 iterations, :math:`m = 2 \ldots 12` and six
values of :math:`T`).
"""

import matplotlib.pyplot as plt

import assignflow as af
from benchmarks.figures import PARAMS, QUICK, make_fig4

fig, summary = make_fig4(**QUICK["fig4"], ref_nodes=8)
print(summary)

# %%
# The cost behind panel (a): operator applications of the rank-1 gradient per
# Krylov dimension, at :math:`T = 3` on a noisy "colors" scene of the same size.
images, labels, prototypes = af.datasets.make_voronoi(
    "colors", 1, (32, 32), 0.6, random_state=0, return_prototypes=True
)
similarity = af.SimilarityOperator(
    af.Weights.uniform(af.GridGraph((32, 32))),
    af.distance_matrix(images[0], prototypes),
    rho=PARAMS["colors"]["rho"],
)
flow = af.LinearizedAssignmentFlow(similarity, T=3.0)
loss = af.KLLoss(labels=labels[0].ravel())
for m in QUICK["fig4"]["dims"]:
    result = af.ClosedFormLowRank(krylov_dim=m, rank=1).estimate(flow, loss)
    print(f"m = {m:2d}: {result.n_matvecs:5d} operator applications")
plt.show()
