"""
Labeling a noisy Voronoi image with uniform weights
===================================================

The simplest use of assignflow: label a noisy image with 8 colour prototypes
using uniform weights :math:`\\omega_{ik} = 1/|\\mathcal{N}_i|` on 3×3
neighbourhoods, once with the linearized assignment flow (LAF, one exponential
Krylov step) and once with the nonlinear assignment flow (geometric Euler).
"""

import matplotlib.pyplot as plt
import numpy as np

import assignflow as af

# %%
# A random Voronoi scene (paper, Sect. 4.1, scenario "colors") with Gaussian noise.
shape = (64, 64)
images, truth, prototypes = af.datasets.make_voronoi(
    "colors", shape=shape, noise=0.5, random_state=0, return_prototypes=True
)
image, truth = images[0], truth[0]

# %%
# Distances to the prototypes, uniform weights on the grid, the similarity map.
D = af.distance_matrix(image, prototypes)
graph = af.GridGraph(shape, radius=1)
S = af.SimilarityOperator(af.Weights.uniform(graph), D, rho=0.3)

pixelwise = D.argmin(axis=1).reshape(shape)
laf = af.LinearizedAssignmentFlow(S, T=3.0).solve(af.ExponentialKrylov(krylov_dim=10))
nonlinear = af.AssignmentFlow(S).solve(af.GeometricEuler(step_size=0.5))

panels = {
    "pixelwise nearest prototype": pixelwise,
    "linearized flow (T=3)": laf.labels.reshape(shape),
    "assignment flow": nonlinear.labels.reshape(shape),
}
for name, lab in panels.items():
    print(f"{name:<30} error {np.mean(lab != truth):6.1%}")
print(laf.stats)

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.3))
axes[0].imshow(np.clip(image, 0, 1))
axes[0].set_title("noisy input")
for ax, (name, lab) in zip(axes[1:], panels.items(), strict=False):
    ax.imshow(prototypes[lab])
    ax.set_title(f"{name}\nerror {np.mean(lab != truth):.1%}", fontsize=9)
for ax in axes:
    ax.set_axis_off()
fig.tight_layout()
plt.show()
