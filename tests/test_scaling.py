"""Training over many images in parallel: joblib processes and joblib's dask backend."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import assignflow as af


def _fit(**kw):
    X, Y = af.datasets.make_voronoi("lines", 4, (20, 20), noise=0.3, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return af.ImageLabeler(max_iter=3, random_state=0, **kw).fit(X, Y)


def _same_model(a, b):
    for pa, pb in zip(a.predictors_, b.predictors_, strict=True):
        for key, value in pa.params().items():
            np.testing.assert_allclose(value, pb.params()[key], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(a.rho_, b.rho_, rtol=1e-12)
    np.testing.assert_allclose(a.history_["loss"], b.history_["loss"], rtol=1e-12)


def test_n_jobs_gives_the_same_weights():
    _same_model(_fit(n_jobs=1), _fit(n_jobs=2))


def test_dask_backend_gives_the_same_weights():
    pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    from joblib import parallel_config

    serial = _fit(n_jobs=1)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster),
        parallel_config(backend="dask"),
    ):
        on_dask = _fit(n_jobs=-1)
    _same_model(serial, on_dask)
