"""Time and memory of the linearized assignment flow at image sizes.

For each size (default 128², 256², 512², 1024² pixels; J = 10 labels, 3×3 window,
random weights), measures in one run:

* one application of ``A`` (the internal flat ``matvec``, fused replicator),
* one application of ``Ω`` alone and of ``Aᵀ``,
* one ExponentialKrylov solve with m = 10 (a single step: ``T`` is chosen so that
  no sub-stepping is needed, as in the paper's experiments) for both
  reorthogonalisation modes "always" (CGS2) and "auto" (DGKS),
* the peak memory of the solve (``tracemalloc``: numpy buffers) against the size
  of the Krylov basis itself, ``(m + 1)·I·J`` floats,

each in double and in single precision (``--dtypes float64 float32``) side by side;
for float32 also the relative deviation of :math:`V(T)` from the float64 solve and
the fraction of pixels whose label agrees.

Times are the median of ``--repeat`` runs. Usage::

    python benchmarks/bench_laf.py [--sizes 128 256 512 1024] [--labels 10] [--repeat 5]
                                   [--dtypes float64 float32]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import tracemalloc

import numpy as np

import assignflow as af


def _median_time(fn, repeat: int) -> float:
    fn()  # warm up (builds cached operators)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _peak_mb(fn) -> float:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def make_flow(
    size: int, n_labels: int, T: float, seed: int = 0, dtype: str = "float64"
) -> af.LinearizedAssignmentFlow:
    rng = np.random.default_rng(seed)
    g = af.GridGraph((size, size), radius=1)
    om = af.Weights.normalized(g, rng.uniform(0.1, 1.0, g.nnz))
    D = rng.random((g.n_nodes, n_labels))
    S = af.SimilarityOperator(om, D, rho=0.1, dtype=dtype)
    return af.LinearizedAssignmentFlow(S, T=T)


def run(sizes, n_labels: int, m: int, T: float, repeat: int, dtypes=("float64",)) -> list[dict]:
    rows = []
    print(f"threads: {af.get_num_threads()}, J = {n_labels}, m = {m}, T = {T}")
    hdr = (
        f"{'pixels':>9} {'dtype':>7} {'n=I*J':>10} {'Omega ms':>9} {'A ms':>8} {'AT ms':>8} "
        f"{'solve s':>8} {'solve(auto) s':>13} {'basis MB':>9} {'peak MB':>8} {'peak/basis':>10}"
    )
    print(hdr)
    for s, dtype in itertools.product(sizes, dtypes):
        flow = make_flow(s, n_labels, T, dtype=dtype)
        n = flow.size
        x = np.random.default_rng(1).standard_normal(n).astype(dtype)
        X = x.reshape(flow.shape)
        flow.matvec(x)  # builds S0 and the operator blocks
        t_om = _median_time(lambda X=X, flow=flow: flow.weights.operator.apply(X), repeat)
        t_a = _median_time(lambda x=x, flow=flow: flow.matvec(x), repeat)
        t_at = _median_time(lambda x=x, flow=flow: flow.rmatvec(x), repeat)
        kr = af.ExponentialKrylov(krylov_dim=m, tol=1e-6)
        kr_auto = af.ExponentialKrylov(krylov_dim=m, tol=1e-6, reorthogonalize="auto")
        nrep = max(1, repeat // 2)
        t_solve = _median_time(lambda flow=flow, kr=kr: flow.solve(kr), nrep)
        t_auto = _median_time(lambda flow=flow, kr=kr_auto: flow.solve(kr), nrep)
        res = flow.solve(kr)
        peak = _peak_mb(lambda flow=flow, kr=kr: flow.solve(kr))
        basis = (m + 1) * n * np.dtype(dtype).itemsize / 2**20
        extra = ""
        if dtype != "float64":
            ref = flow.astype("float64").solve(kr)
            dev = float(np.abs(res.V - ref.V).max() / np.abs(ref.V).max())
            agree = float(np.mean(res.labels == ref.labels))
            extra = f", vs float64: rel. dev {dev:.1e}, labels agree {100 * agree:.3f} %"
        row = dict(
            pixels=s * s,
            dtype=dtype,
            n=n,
            omega_ms=1e3 * t_om,
            A_ms=1e3 * t_a,
            AT_ms=1e3 * t_at,
            solve_s=t_solve,
            solve_auto_s=t_auto,
            basis_mb=basis,
            peak_mb=peak,
            substeps=res.stats.n_steps,
            err=res.stats.error_estimate,
        )
        rows.append(row)
        print(
            f"{s:>5}^2 {dtype:>7} {n:>10} {row['omega_ms']:>9.1f} {row['A_ms']:>8.1f} "
            f"{row['AT_ms']:>8.1f} "
            f"{t_solve:>8.3f} {t_auto:>13.3f} {basis:>9.0f} {peak:>8.0f} {peak / basis:>10.2f}"
            f"   (substeps {res.stats.n_steps}, est. err {res.stats.error_estimate:.1e}{extra})"
        )
    for dtype in dtypes:
        sel = [r for r in rows if r["dtype"] == dtype]
        if len(sel) < 2:
            continue
        print(f"\n{dtype}: growth per size step (ideal: x4 per doubling of the side)")
        for a, b in itertools.pairwise(sel):
            print(
                f"  {int(a['pixels'] ** 0.5)}^2 -> {int(b['pixels'] ** 0.5)}^2: "
                f"A x{b['A_ms'] / a['A_ms']:.2f}, solve x{b['solve_s'] / a['solve_s']:.2f}, "
                f"peak x{b['peak_mb'] / a['peak_mb']:.2f}"
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512, 1024])
    p.add_argument("--labels", type=int, default=10)
    p.add_argument("--krylov-dim", type=int, default=10)
    p.add_argument("--T", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    a = p.parse_args()
    run(a.sizes, a.labels, a.krylov_dim, a.T, a.repeat, tuple(a.dtypes))


if __name__ == "__main__":
    main()
