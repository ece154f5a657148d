"""
Labeling a point cloud
======================

Nothing in the flows is specific to images. Here the nodes are points in the
plane and the neighbourhoods come from a k-nearest-neighbour graph
(:meth:`assignflow.Graph.knn`).

1. **Denoising labels on a graph** — every point carries a noisy measurement
   of its class; the linearized assignment flow with uniform weights on the kNN
   graph regularises the labeling (:func:`assignflow.label_graph`).
2. **Classification** — :class:`assignflow.AssignmentFlowClassifier` is a
   scikit-learn classifier: training points are label sources on a kNN graph and
   each query point is linked to its nearest training points.
"""

import matplotlib.pyplot as plt
import numpy as np
from sklearn.datasets import make_moons

import assignflow as af

rng = np.random.default_rng(0)

# %%
# Noisy measurements on a point cloud
# -----------------------------------
# Three clusters of points; each point observes its cluster's grey value
# (0, 0.5 or 1) with heavy noise.
centres = np.array([[0.0, 0.0], [3.0, 0.5], [1.5, 2.5]])
truth = rng.integers(0, 3, 600)
X = centres[truth] + rng.normal(scale=0.7, size=(600, 2))
prototypes = np.array([0.0, 0.5, 1.0])
features = prototypes[truth] + rng.normal(scale=0.3, size=600)

graph = af.Graph.knn(X, n_neighbors=10)
res = af.label_graph(graph, features, prototypes, rho=0.1, T=3.0)
nearest = np.abs(features[:, None] - prototypes[None, :]).argmin(axis=1)
print(f"kNN graph: {graph.n_nodes} nodes, {graph.nnz} edges (self loops included)")
print(f"nearest prototype error {np.mean(nearest != truth):.1%}")
print(f"assignment flow error   {np.mean(res.labels != truth):.1%}")

fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), sharex=True, sharey=True)
for ax, lab, title in zip(
    axes,
    (truth, nearest, res.labels),
    ("ground truth", "nearest prototype", "linearized assignment flow"),
    strict=False,
):
    ax.scatter(X[:, 0], X[:, 1], c=lab, cmap="viridis", s=8, vmin=0, vmax=2)
    ax.set_title(f"{title}\nerror {np.mean(lab != truth):.1%}")
    ax.set_aspect("equal")
fig.tight_layout()

# %%
# A scikit-learn classifier
# -------------------------
# Two interleaving moons; the classifier is fitted on 200 points and predicts
# the classes on a grid.
X_moons, y_moons = make_moons(n_samples=300, noise=0.15, random_state=0)
X_train, y_train = X_moons[:200], y_moons[:200]
X_test, y_test = X_moons[200:], y_moons[200:]

clf = af.AssignmentFlowClassifier(n_neighbors=8, T=2.0).fit(X_train, y_train)
print(f"test accuracy {clf.score(X_test, y_test):.1%}")

xx, yy = np.meshgrid(np.linspace(-1.5, 2.5, 80), np.linspace(-1.0, 1.5, 60))
proba = clf.predict_proba(np.c_[xx.ravel(), yy.ravel()])[:, 1].reshape(xx.shape)

fig, ax = plt.subplots(figsize=(6, 4))
ax.contourf(xx, yy, proba, levels=20, cmap="RdBu_r", alpha=0.7)
ax.scatter(X_train[:, 0], X_train[:, 1], c=y_train, cmap="RdBu_r", edgecolor="k", s=15)
ax.set_title("AssignmentFlowClassifier: $W(T)$ of class 1")
fig.tight_layout()
plt.show()
