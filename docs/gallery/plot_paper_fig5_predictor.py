r"""
Paper Fig. 5: predicting the weights of unseen images
=====================================================

Weights learned on one image do not carry over to another, so the paper
(Sect. 4.4) trains a predictor of the weight patch
:math:`\widehat{\Omega}_i` from the features :math:`f_i` (the raw 3×3 window) at
pixel :math:`i`:

.. math::
    s_{ij} = e^{-\sigma\|f_i - p_j\|},\qquad
    \widehat{\Omega}_i = \exp_{\mathbb{1}}\Big(\sum_{j\in[N]}
    \frac{s_{ij}}{\sum_{l} s_{il}}\,\nu_j\Big)

with prototypes :math:`p_j`, tangent vectors :math:`\nu_j` and a scale
:math:`\sigma`, trained through the closed-form gradient of the LAF
(:class:`assignflow.ImageLabeler`, :math:`N = 20` here, 50 in the paper), on the
"lines" scenario (:math:`\sigma_{\rm noise} = 0.3, \rho = 0.1, T = 1`).

* Top left (the paper's Fig. 5c): % wrongly labeled pixels on the training and
  the validation images during training; the dotted line marks the iteration
  with the best validation loss, whose parameters are kept.
* Top right (Fig. 5d, e): 3×3 weight patches at a few pixels of an unseen image
  (on a line, next to a line, in a cell interior, at a junction): estimated by
  gradient descent with that image's ground truth (top) and predicted from its
  noisy data (bottom).
* Bottom rows (Fig. 5f and last row): unseen noisy images labeled by pixelwise
  rounding, by the LAF with uniform weights (compare Fig. 1) and by the LAF with
  the predicted weights, which keeps the lines.

Sizes: 48×48 pixels, 4 scenes (2 training, 2 validation), 10 iterations, 2 unseen
scenes. ``python benchmarks/figures.py --only fig5`` runs 64×64 pixels, 10 scenes
and 40 iterations (the paper: 128×128, 5 + 5 scenes, 100 iterations).
"""

import matplotlib.pyplot as plt

from benchmarks.figures import make_fig5

fig, summary = make_fig5(size=48, n_train=4, n_test=2, max_iter=10, n_desc=15)
print(summary)
plt.show()
