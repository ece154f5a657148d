r"""
Paper Fig. 1: the two labeling scenarios
========================================

The experiments of the paper (Sect. 4.1) use random Voronoi images with Gaussian
noise; the ground truth is the noise-free image.

* **Scenario 1, "lines"** (top row): separate the cell boundaries (thin black
  lines, one label) from the cell interiors (white, the other label), noise
  :math:`\sigma = 0.3`. The difficulty is to keep the thin lines: the linearized
  assignment flow (LAF) with uniform weights
  :math:`\omega_{ik} = 1/|\mathcal{N}_i|` on 3×3 neighbourhoods averages many of
  them away (the paper's Fig. 1c).
* **Scenario 2, "colors"** (bottom row): label the cells by their colour, 8
  labels, with noise chosen such that pixelwise rounding to the nearest prototype
  is about 50 % wrong (the paper's Fig. 1d). The LAF with uniform weights, i.e.
  :math:`V_T = T\varphi(TA(\Omega))B` at the barycenter and the labels
  :math:`\arg\max_j V_{T,ij}`, removes most of these errors.

Each row shows the noisy input, the ground truth, the LAF with uniform weights
(:math:`\rho = 0.1, T = 1` for "lines", :math:`\rho = 0.3, T = 3` for "colors",
one exponential Krylov step with :math:`m = 10`) and pixelwise rounding, with the
percentage of wrongly labeled pixels.

The figure is drawn by ``make_fig1`` of ``benchmarks/figures.py``, the script that
regenerates all figures of the paper (``python benchmarks/figures.py`` from the
repository root); this example runs it at the paper's size, 128×128 pixels.
"""

import matplotlib.pyplot as plt

from benchmarks.figures import make_fig1

fig, summary = make_fig1(size=128)
print(summary)
plt.show()
