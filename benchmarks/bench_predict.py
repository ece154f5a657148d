"""Prediction on one large image: time and peak memory of ``ImageLabeler.predict``.

A default ``af.ImageLabeler(dtype=...)`` (2-layer deep LAF with edge predictors) is
fitted once on small "colors" Voronoi scenes (``--train-size``, ``--max-iter``: the
memory of prediction does not depend on how long the model was trained) and saved.
Each dtype then runs in a **fresh subprocess**, which loads the model, builds one
``--size``² test scene, warms up on a 64² scene, and measures, side by side:

* ``predict``: ``model.predict(image)`` -- features, the predicted weights of every
  layer, the layers' LAF solves and the labels;
* ``laf_solve``: one uniform-weight LAF solve of the same image in the same dtype, at
  the model's first scale ``rho_[0]``, its whole horizon ``sum(T_)`` and ``radius_``,
  with the estimator's integrator (distances, graph, weights and the solve): the
  reference of "predict within 1.3x of the LAF solve's own peak".

As in ``bench_gradient.py`` the peak of a call is the peak-RSS increment over the
process before it (free memory returned with ``malloc_trim``, ``VmHWM`` reset through
``/proc/self/clear_refs``).

Usage::

    python benchmarks/bench_predict.py [--size 1024] [--dtypes float32 float64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import assignflow as af
from assignflow.estimators import AUTO_KRYLOV_DIM

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_gradient import _reset_peak, _status_mb  # noqa: E402


def _scene(size: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X, y, P = af.datasets.make_voronoi(
        "colors", 1, (size, size), noise=0.3, random_state=seed, return_prototypes=True
    )
    return X[0], y[0], P


def _measure(call) -> tuple[float, float, object]:
    reset = _reset_peak()
    st0 = _status_mb()
    t0 = time.perf_counter()
    out = call()
    dt = time.perf_counter() - t0
    st1 = _status_mb()
    return dt, (st1["VmHWM"] - st0["VmRSS"]) if reset else float("nan"), out


def _laf_solve(model, image: np.ndarray, P: np.ndarray, dtype: str) -> np.ndarray:
    # one LAF over the model's whole horizon, at its first layer's scale, with the
    # estimator's own integrator (integrator="auto"): the solve every layer runs
    h, w = image.shape[:2]
    D = af.distance_matrix(image, P).astype(dtype)
    graph = af.GridGraph((h, w), radius=int(model.radius_))
    rho, T = float(model.rho_[0]), float(np.sum(model.T_))
    sim = af.SimilarityOperator(af.Weights.uniform(graph), D, rho=rho, dtype=dtype)
    integrator = af.ExponentialKrylov(krylov_dim=AUTO_KRYLOV_DIM)
    return af.LinearizedAssignmentFlow(sim, T=T).solve(integrator).labels


def run_worker(args) -> dict:
    dtype = args.worker
    model = af.load(args.model)
    image, truth, P = _scene(args.size, seed=100)
    small, _, _ = _scene(64, seed=101)
    model.predict(small)  # warm-up: imports, thread pools
    _laf_solve(model, small, P, dtype)
    out = {"dtype": dtype, "size": args.size, "threads": af.get_num_threads()}
    rows = {}
    for name, call in (
        ("predict", lambda: model.predict(image)),
        ("laf_solve", lambda: _laf_solve(model, image, P, dtype)),
    ):
        runs = [_measure(call) for _ in range(args.repeat)]
        labels = runs[-1][2].reshape(truth.shape)
        rows[name] = {
            "time_s": min(r[0] for r in runs),
            "peak_mb": max(r[1] for r in runs),
            "error_pct": float(100 * np.mean(labels != truth)),
        }
        del runs, labels
    out.update(rows)
    out["rss_mb"] = _status_mb()["VmRSS"]
    return out


def _spawn(dtype: str, args, model_path: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", dtype, "--model", model_path]
    cmd += ["--size", str(args.size), "--repeat", str(args.repeat)]
    env = dict(os.environ)
    root = str(Path(af.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"dtype": dtype, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    p.add_argument("--train-size", type=int, default=64)
    p.add_argument("--max-iter", type=int, default=5)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--model", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print("RESULT " + json.dumps(run_worker(a)), flush=True)
        return
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        X, y, P = af.datasets.make_voronoi(
            "colors", 3, (a.train_size, a.train_size), noise=0.3, random_state=0,
            return_prototypes=True,
        )  # fmt: skip
        for dtype in a.dtypes:
            model = af.ImageLabeler(
                prototypes=P, dtype=dtype, max_iter=a.max_iter, random_state=0
            ).fit(X, y)
            path = os.path.join(tmp, f"model-{dtype}.afm")
            af.save(model, path)
            res = _spawn(dtype, a, path)
            results.append(res)
            if "error" in res:
                print(f"{dtype}: {res['error']}")
                continue
            pr, ls = res["predict"], res["laf_solve"]
            print(
                f"{a.size}^2 {dtype}: predict {pr['time_s']:.2f} s, peak +{pr['peak_mb']:.0f} MB"
                f" ({pr['error_pct']:.2f} % wrong) | uniform LAF solve {ls['time_s']:.2f} s, "
                f"peak +{ls['peak_mb']:.0f} MB ({ls['error_pct']:.2f} % wrong) | "
                f"predict/solve peak {pr['peak_mb'] / ls['peak_mb']:.2f}x",
                flush=True,
            )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
