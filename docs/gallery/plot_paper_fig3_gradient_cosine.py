r"""
Paper Fig. 3: accuracy of the rank-1 gradient at every pixel
============================================================

The paper's gradient (eq. 3.47, :class:`assignflow.ClosedFormLowRank`) approximates
the exact gradient of Theorem 3.8 with two Krylov subspaces of dimension
:math:`m = 10` and keeps only the largest singular triple (rank 1, eq. 3.46).
How good is that, pixel by pixel? For every pixel :math:`i` we compare the two
gradients restricted to its weight patch
:math:`(\partial\mathcal{L}/\partial\omega_{ik})_{k\in\mathcal{N}_i}` by their
cosine similarity: 1 means the same direction, 0 orthogonal, −1 opposite.

* Middle column (the paper's Fig. 3a): histogram of the per-pixel cosine at the
  first training step (uniform weights). The paper reports more than 99 % of the
  pixels at 0.9 or more (an angle of at most 26°). Pixels whose reference gradient
  is numerically zero have no direction and are left out.
* Right column (Fig. 3b): the per-pixel gradient norm
  :math:`\|(\partial\mathcal{L}/\partial\omega_{ik})_{k\in\mathcal{N}_i}\|`,
  where the weights adapt. On the noise-free image (bottom) it is non-zero only
  near the cell boundaries: with uniform initial weights nothing needs to adapt
  inside a homogeneous Voronoi cell. With noise (top) the cells are no longer
  homogeneous and the gradient spreads over the whole image. The title gives the
  share of the squared norm on the pixels within 2 pixels of a label edge.

Differences from the paper: the reference here is the exact gradient of the LAF,
:class:`assignflow.AdjointQuadrature` (the paper used autodiff through explicit
Euler with a very small step as a proxy), and the scene is the "colors" scenario,
noisy (top) and noise-free (bottom), at 48×48 pixels instead of 128×128
(``python benchmarks/figures.py --only fig3`` draws the full size).
"""

import matplotlib.pyplot as plt

from benchmarks.figures import make_fig3

fig, summary = make_fig3(size=48, ref_nodes=8)
print(summary)
plt.show()
