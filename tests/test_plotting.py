"""Tests for :mod:`assignflow.plotting` (Agg backend, no display)."""

from __future__ import annotations

import subprocess
import sys

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt

import assignflow as af
from assignflow.plotting import label_image_to_rgb, plot_history, plot_labelings


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_public_namespace():
    assert af.plotting is sys.modules["assignflow.plotting"]
    assert "plotting" in af.__all__
    assert set(af.plotting.__all__) == {"label_image_to_rgb", "plot_history", "plot_labelings"}


def test_import_does_not_load_matplotlib():
    code = "import sys, assignflow as af; af.plotting; print('matplotlib' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


# -- label_image_to_rgb -------------------------------------------------------


def test_label_image_to_rgb_colours_each_pixel_by_its_prototype():
    protos = np.array([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0]])
    lab = np.array([[0, 1], [1, 0]])
    rgb = label_image_to_rgb(lab, protos)
    assert rgb.shape == (2, 2, 3)
    np.testing.assert_array_equal(rgb[0, 1], protos[1])
    np.testing.assert_array_equal(rgb[1, 1], protos[0])


def test_label_image_to_rgb_grey_prototypes_and_clipping():
    rgb = label_image_to_rgb(np.array([0, 1, 2]), np.array([-0.5, 0.25, 2.0]))
    np.testing.assert_array_equal(rgb, [[0, 0, 0], [0.25, 0.25, 0.25], [1, 1, 1]])


@pytest.mark.parametrize(
    ("labels", "protos", "exc", "match"),
    [
        (np.array([0.0, 1.0]), np.array([0.0, 1.0]), TypeError, "labels"),
        (np.array([0, 2]), np.array([0.0, 1.0]), ValueError, "labels"),
        (np.array([-1, 0]), np.array([0.0, 1.0]), ValueError, "labels"),
        (np.array([0]), np.zeros((1, 1, 3)), ValueError, "prototypes"),
        (np.array([0]), np.zeros((0, 3)), ValueError, "prototypes"),
    ],
)
def test_label_image_to_rgb_bad_input(labels, protos, exc, match):
    with pytest.raises(exc, match=match):
        label_image_to_rgb(labels, protos)


# -- plot_labelings -------------------------------------------------------------


def test_plot_labelings_panels_titles_and_file(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.random((8, 8, 3))
    protos = np.eye(3)
    panels = {"a": rng.integers(0, 3, (8, 8)), "b": np.zeros((8, 8), dtype=int)}
    n_open = len(plt.get_fignums())
    path = tmp_path / "labelings.png"
    fig = plot_labelings(image, panels, protos, errors={"a": 0.125}, path=str(path), ncols=2)
    assert path.stat().st_size > 0
    assert len(plt.get_fignums()) == n_open  # written without pyplot: nothing left open
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[:3] == ["input", "a\n12.5% wrong", "b"]
    assert len(fig.axes) == 4  # 2x2 grid for 3 panels
    # the label panel shows the prototype colours
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), np.tile(protos[0], (8, 8, 1)))


def test_plot_labelings_without_path_is_a_pyplot_figure():
    fig = plot_labelings(np.zeros((4, 4)), {"x": np.ones((4, 4), dtype=int)}, np.array([0.0, 1.0]))
    assert fig.number in plt.get_fignums()
    assert [ax.get_title() for ax in fig.axes] == ["input", "x"]


@pytest.mark.parametrize("ncols", [0, -1, 1.5, True])
def test_plot_labelings_bad_ncols(ncols):
    with pytest.raises(ValueError, match="ncols"):
        plot_labelings(np.zeros((2, 2)), {}, np.array([0.0]), ncols=ncols)


# -- plot_history -----------------------------------------------------------------


def test_plot_history_loss_and_errors():
    hist = {
        "loss": np.array([2.0, 1.0, 0.5]),
        "error": np.array([0.5, 0.25, 0.125]),
        "val_error": np.array([0.5, 0.3, 0.2]),
        "time": np.array([0.0, 1.0, 2.0]),
    }
    ax = plot_history(hist, best_iter=2)
    assert ax.get_xlabel() == "iteration"
    (loss_line,) = [ln for ln in ax.get_lines() if ln.get_label() == "training loss"]
    np.testing.assert_array_equal(loss_line.get_xdata(), [0, 1, 2])
    np.testing.assert_array_equal(loss_line.get_ydata(), hist["loss"])
    right = ax.right_ax
    ys = {ln.get_label(): ln.get_ydata() for ln in right.get_lines()}
    np.testing.assert_allclose(ys["training error"], [50, 25, 12.5])
    np.testing.assert_allclose(ys["validation error"], [50, 30, 20])
    assert right.get_ylabel() == "wrongly labeled (%)"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["training loss", "training error", "validation error", "best (2)"]


def test_plot_history_skips_all_nan_series_and_uses_given_axes():
    fig, ax = plt.subplots()
    out = plot_history({"loss": [1.0, 0.9], "error": [np.nan, np.nan]}, ax)
    assert out is ax
    assert not hasattr(ax, "right_ax")  # no error axis for an all-NaN error series
    assert [ln.get_label() for ln in ax.get_lines()] == ["training loss"]
    assert len(fig.axes) == 1


def test_plot_history_of_a_descent_result():
    g = af.GridGraph((6, 6))
    rng = np.random.default_rng(1)
    D = rng.random((36, 3))
    flow = af.LinearizedAssignmentFlow(
        af.SimilarityOperator(af.Weights.uniform(g), D, rho=0.3), T=1.0
    )
    loss = af.KLLoss(labels=rng.integers(0, 3, 36))
    res = af.riemannian_gradient_descent(flow, loss, max_iter=3)
    ax = plot_history(res.history)
    (line,) = [ln for ln in ax.get_lines() if ln.get_label() == "training loss"]
    np.testing.assert_array_equal(line.get_ydata(), res.history["loss"])
    assert len(ax.right_ax.get_lines()) == 1  # the training error


@pytest.mark.parametrize(
    ("history", "kwargs", "exc", "match"),
    [
        ([1.0, 2.0], {}, TypeError, "history"),
        ({"time": [0.0, 1.0]}, {}, ValueError, "history"),
        ({"loss": [[1.0, 2.0]]}, {}, ValueError, "loss"),
        ({"loss": [1.0]}, {"best_iter": -1}, ValueError, "best_iter"),
        ({"loss": [1.0]}, {"best_iter": 1.5}, ValueError, "best_iter"),
    ],
)
def test_plot_history_bad_input(history, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        plot_history(history, **kwargs)
