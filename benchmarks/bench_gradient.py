"""Time and peak memory of the weight gradient: closed form (low rank) vs autodiff.

For each image size (default 128², 256², 512², 1024² pixels; J = 10 labels,
3×3 window, random weights, T = 2, ρ = 0.1), measures side by side in one run:

* ``forward``         one forward solve, ``flow.solve(af.ExponentialKrylov(krylov_dim=10))``;
* ``gradient``        ``af.ClosedFormLowRank(krylov_dim=10, rank=1).value_and_gradient``
  (the paper's method);
* ``gradient_lowmem`` the same with ``low_memory=True``;
* ``torch_euler``     PyTorch autodiff through explicit Euler (step 0.1: 20 steps for T = 2);
* ``torch_krylov``    PyTorch autodiff through the Krylov exponential integrator (m = 10);

(see ``benchmarks/autodiff_torch.py``), and 20 iterations of
``af.riemannian_gradient_descent(flow, loss, "closed_form_low_rank", max_iter=20)``
at the sizes of ``--descent-sizes``.

Method. Every (method, size) runs in a **fresh subprocess** (the script re-invokes
itself with ``--worker METHOD SIZE``), so that numpy and torch are measured alike:
the worker builds the problem, warms up with the same method on a 32×32 problem
(imports, thread pools), and then, for each of ``--repeat`` runs, builds fresh
weights/flow objects (so the cached ``S0`` and ``Ω`` kernels are rebuilt inside the
timed call, as torch rebuilds its graph), releases the allocator's free memory
(``malloc_trim``), resets the peak-RSS counter ``VmHWM`` (writing ``5`` to
``/proc/self/clear_refs``), reads ``VmRSS`` and times the call. The peak memory of
a call is ``VmHWM`` after it minus ``VmRSS`` before it: everything the call
allocated, numpy buffers, torch tensors and the autograd graph alike. Times are
medians and peaks maxima over the repeats. If the kernel does not reset ``VmHWM``
the peak is only reported when the call raised it (else ``nan``).

The torch baselines at a size are skipped (with a note) when their estimated peak
exceeds ``--torch-max-gb`` (default 16 GB); the estimate (:func:`estimate_torch_mb`)
counts the ``I×J`` arrays autograd keeps per Euler step / Krylov dimension
(calibrated on this benchmark) times an allocator-overhead factor.

Notes. Peak RSS depends on the allocator: with glibc's defaults, arrays below
32 MB come from the heap, where autograd's interleaved saved/temporary tensors
(padded and unpadded sizes) fragment memory, so torch's RSS peak can be ~2.5x its
live peak at 256²–512²; ``--mmap-threshold 65536`` makes every large array an
``mmap`` returned to the OS on free, so the peak is that of live memory (for numpy
and torch alike; timings then include more page faults). ``--threads`` sets the
threads of assignflow, torch (OpenMP) and BLAS in every worker: on a machine where
other processes use the CPUs, torch's OpenMP with as many threads as CPUs slows
down by up to 10x (every operation waits for the descheduled thread), so compare
with ``--threads 1`` there.

Usage::

    python benchmarks/bench_gradient.py [--sizes 128 256 512 1024] [--labels 10]
        [--T 2] [--repeat 3] [--descent-sizes 512] [--json results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import assignflow as af

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from autodiff_torch import make_problem  # noqa: E402 - torch itself is imported lazily

METHODS = (
    "forward",
    "forward_f32",
    "gradient",
    "gradient_f32",
    "gradient_lowmem",
    "gradient_lowmem_f32",
    "torch_euler",
    "torch_krylov",
)
LARGE_METHODS = ("forward_f32", "gradient_f32", "gradient_lowmem_f32")
TORCH_METHODS = ("torch_euler", "torch_krylov")
GRADIENT_METHODS = (
    "gradient",
    "gradient_f32",
    "gradient_lowmem",
    "gradient_lowmem_f32",
    "torch_euler",
    "torch_krylov",
)
DESCENT_METHODS = ("descent_f32", "descent")
VOLUME_METHODS = ("volume_forward", "volume_gradient")
EULER_STEP = 0.1
RHO = 0.1
WARMUP_SIZE = 32
# Live peak of the torch baselines in units of one I×J float64 array, measured on this
# benchmark at 128² and 256² (with --mmap-threshold): about 3.5 per Euler step and
# 8.7 per Krylov dimension; rounded up, plus a constant.
_TORCH_ARRAYS_PER_STEP = {"torch_euler": 4.0, "torch_krylov": 10.0}
_TORCH_ARRAYS_CONST = 12.0


# --------------------------------------------------------------------------- memory
def _status_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0]) / 1024.0  # kB -> MB
    return out


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _reset_peak() -> bool:
    """Free what can be freed and reset VmHWM; return whether VmHWM was reset."""
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    st = _status_mb()
    return st["VmHWM"] <= st["VmRSS"] + 1.0


# --------------------------------------------------------------------------- worker
def _dtype_of(method: str) -> str:
    return "float32" if method.endswith("_f32") else "float64"


def _fresh_flow(problem: dict, T: float, dtype: str = "float64"):
    """A flow with new Weights/SimilarityOperator objects: no cached S0 or Ω kernels."""
    weights = af.Weights(problem["graph"], problem["values"])
    sim = af.SimilarityOperator(weights, problem["D"], rho=problem["rho"], dtype=dtype)
    return af.LinearizedAssignmentFlow(sim, T=T)


def _make_call(method: str, problem: dict, args):
    """Return ``setup()``; ``setup()`` builds fresh objects and returns the call to time."""
    T, m, loss = problem["T"], args.krylov_dim, problem["loss"]
    integ = af.ExponentialKrylov(krylov_dim=m, **problem.get("integrator_options", {}))
    if method == "torch_euler":
        from autodiff_torch import torch_value_and_grad_euler

        return lambda: lambda: torch_value_and_grad_euler(problem, step_size=EULER_STEP)
    if method == "torch_krylov":
        from autodiff_torch import torch_value_and_grad_krylov

        return lambda: lambda: torch_value_and_grad_krylov(problem, krylov_dim=m)
    base = method.removesuffix("_f32").removeprefix("volume_")
    if base == "forward":

        def run(flow):
            return flow.solve(integ)
    elif base in ("gradient", "gradient_lowmem"):
        est = af.ClosedFormLowRank(krylov_dim=m, rank=1, low_memory=base == "gradient_lowmem")

        def run(flow):
            return est.value_and_gradient(flow, loss, integrator=integ)
    elif base == "descent":

        def run(flow):
            return af.riemannian_gradient_descent(
                flow, loss, "closed_form_low_rank", max_iter=args.descent_iter, integrator=integ
            )
    else:
        raise ValueError(f"unknown method {method!r}")
    dtype = "float32" if method.startswith("volume_") else _dtype_of(method)

    def setup():
        flow = _fresh_flow(problem, T, dtype)
        return lambda: run(flow)

    return setup


def _info(method: str, out) -> dict:
    """Small diagnostics of a call's output (and the gradient, to save)."""
    if method.startswith(("forward", "volume_forward")):
        s = out.stats
        return {"substeps": s.n_steps, "matvecs": s.n_matvecs, "err_est": s.error_estimate}
    if method.startswith("descent"):
        h = out.history
        return {
            "n_iter": int(out.n_iter),
            "loss_first": float(h["loss"][0]),
            "loss_last": float(h["loss"][-1]),
            "error_first": float(h["error"][0]),
            "error_last": float(h["error"][-1]),
        }
    value, _ = out
    return {"value": float(value)}


def make_volume_problem(size: int, n_labels: int, T: float, seed: int = 0) -> dict:
    """bench_volume.py's problem (a noisy Voronoi volume, 3×3×3 windows, uniform weights).

    The distances to the grey levels, ``ρ`` (:func:`assignflow.estimate_rho`) and the
    graph are set-up; the timed calls build the flow (``S0``, ``Ω``'s diagonals) and
    solve it, or take the KL loss against the noise-free partition and its gradient.
    """
    from bench_volume import make_volume

    truth, noisy, levels = make_volume(size, n_labels, 60, 0.25, seed=seed)
    D = af.distance_matrix(noisy.reshape(-1, 1), levels[:, None]).astype(np.float32)
    graph = af.GridGraph(noisy.shape, radius=1)
    weights = af.Weights.uniform(graph)
    return {
        "shape": noisy.shape,
        "n_labels": n_labels,
        "rho": af.estimate_rho(D),
        "T": float(T),
        "D": D,
        "graph": graph,
        "values": np.array(weights.values),
        "loss": af.KLLoss(labels=truth.ravel()),
        "integrator_options": {"tol": 1e-6},
    }


def run_worker(method: str, size: int, args) -> dict:
    if method.startswith("volume_"):
        small = make_volume_problem(16, args.volume_labels, args.volume_T, seed=1)
        problem_of = lambda: make_volume_problem(size, args.volume_labels, args.volume_T)  # noqa: E731
    else:
        small = make_problem((WARMUP_SIZE,) * 2, args.labels, rho=RHO, T=args.T, seed=1)
        problem_of = lambda: make_problem((size, size), args.labels, rho=RHO, T=args.T, seed=0)  # noqa: E731
    _make_call(method, small, args)()()  # warm-up: imports, thread pools, torch initialisation
    del small
    problem = problem_of()
    if method not in TORCH_METHODS:  # the torch leaf's arrays: not part of the numpy problem
        for key in ("patches", "mask", "flow", "weights"):
            problem.pop(key, None)
        gc.collect()
    setup = _make_call(method, problem, args)
    repeat = args.repeat
    if method.startswith("descent"):
        repeat = max(1, min(args.repeat, args.descent_repeat))
    elif size in args.large_sizes or method.startswith("volume_"):
        repeat = max(1, min(args.repeat, args.large_repeat))
    times, peaks, totals, resets, rss0 = [], [], [], [], []
    info: dict = {}
    for r in range(repeat):
        call = setup()
        reset = _reset_peak()
        st0 = _status_mb()
        t0 = time.perf_counter()
        out = call()
        dt = time.perf_counter() - t0
        st1 = _status_mb()
        del call
        if reset or st1["VmHWM"] > st0["VmHWM"]:
            peaks.append(st1["VmHWM"] - st0["VmRSS"])
        else:
            peaks.append(float("nan"))
        totals.append(st1["VmHWM"])
        times.append(dt)
        resets.append(reset)
        rss0.append(st0["VmRSS"])
        if r == repeat - 1:
            info = _info(method, out)
            if args.save_grad and method in GRADIENT_METHODS:
                np.save(args.save_grad, np.asarray(out[1]))
        del out
    return {
        "method": method,
        "size": size,
        "pixels": int(np.prod(problem["shape"])),
        "n": int(np.prod(problem["shape"])) * problem["n_labels"],
        "repeat": repeat,
        "time_s": statistics.median(times),
        "times_s": times,
        "peak_mb": max(peaks),
        "peaks_mb": peaks,
        "process_peak_mb": max(totals),
        "rss_before_mb": rss0[-1],
        "hwm_reset": all(resets),
        "threads": af.get_num_threads(),
        "torch_threads": sys.modules["torch"].get_num_threads() if "torch" in sys.modules else None,
        **info,
    }


# --------------------------------------------------------------------------- parent
def _torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def estimate_torch_mb(method: str, size: int, args) -> float:
    """Estimated peak RSS of a torch baseline (MB); see the module docstring."""
    arr_mb = size * size * args.labels * 8 / 2**20
    steps = (
        max(1, math.ceil(args.T / EULER_STEP - 1e-9))
        if method == "torch_euler"
        else args.krylov_dim
    )
    live = arr_mb * (_TORCH_ARRAYS_PER_STEP[method] * steps + _TORCH_ARRAYS_CONST)
    # glibc serves blocks below its largest dynamic mmap threshold (32 MB) from the
    # heap, which autograd's allocation pattern fragments: RSS peaks up to ~2.5x the
    # live peak were measured there; larger blocks are mmapped and returned at once
    heap = arr_mb < 32 and not args.mmap_threshold
    return live * (3.0 if heap else 1.25)


def _spawn(method: str, size: int, args, grad_path: str | None) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        method,
        str(size),
        "--labels",
        str(args.labels),
        "--T",
        repr(args.T),
        "--repeat",
        str(args.repeat),
        "--krylov-dim",
        str(args.krylov_dim),
        "--descent-iter",
        str(args.descent_iter),
        "--descent-repeat",
        str(args.descent_repeat),
        "--large-repeat",
        str(args.large_repeat),
        "--volume-labels",
        str(args.volume_labels),
        "--volume-T",
        repr(args.volume_T),
        "--large-sizes",
        *[str(x) for x in args.large_sizes],
    ]
    if grad_path:
        cmd += ["--save-grad", grad_path]
    env = dict(os.environ)
    # the worker imports the same assignflow as this process (not another installed copy)
    root = str(Path(af.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    nt = str(args.torch_threads if method in TORCH_METHODS else args.threads)
    env.update(
        ASSIGNFLOW_NUM_THREADS=nt, OMP_NUM_THREADS=nt, OPENBLAS_NUM_THREADS=nt, MKL_NUM_THREADS=nt
    )
    if args.mmap_threshold:
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res = json.loads(line[len("RESULT ") :])
            res["wall_s"] = wall
            res["load_before"] = load
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"method": method, "size": size, "error": f"exit {proc.returncode}: " + " | ".join(tail)}


def _pixel_cosines(graph, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ip = graph.indptr[:-1]
    dot = np.add.reduceat(a * b, ip)
    na = np.sqrt(np.add.reduceat(a * a, ip))
    nb = np.sqrt(np.add.reduceat(b * b, ip))
    with np.errstate(invalid="ignore", divide="ignore"):
        return dot / (na * nb)


def _compare(graph, g: np.ndarray, ref: np.ndarray) -> dict:
    cos = _pixel_cosines(graph, g, ref)
    return {
        "rel_err": float(np.linalg.norm(g - ref) / np.linalg.norm(ref)),
        "cosine": float(g @ ref / (np.linalg.norm(g) * np.linalg.norm(ref))),
        "pixels_cos_ge_0.9": float(np.mean(cos[np.isfinite(cos)] >= 0.9)),
    }


def _compare_gradients(size: int, paths: dict[str, str]) -> dict:
    """Relative errors and cosines of the gradients against two references.

    ``exact``: autodiff through Krylov (the exact gradient of the same forward map),
    for every closed-form gradient (the rank-1 truncation error); ``float64``: the
    float64 closed-form gradient, for the float32 ones (the error of single precision).
    """
    grads = {k: np.load(p) for k, p in paths.items() if os.path.exists(p)}
    graph = af.GridGraph((size, size))
    out: dict = {}
    if "torch_krylov" in grads:
        ref = grads["torch_krylov"]
        out["vs_torch_krylov"] = {
            k: _compare(graph, g, ref) for k, g in grads.items() if k != "torch_krylov"
        }
    if "gradient" in grads:
        ref = grads["gradient"]
        out["vs_float64"] = {
            k: _compare(graph, g, ref)
            for k, g in grads.items()
            if k.endswith("_f32") or k == "gradient_lowmem"
        }
    return out


def _fmt(x, spec: str, width: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return f"{'-':>{width}}"
    return f"{x:>{width}{spec}}"


def _measure(method: str, size: int, args, tmp: str, row: dict, paths: dict, notes: list) -> None:
    if method in TORCH_METHODS:
        est = estimate_torch_mb(method, size, args)
        if not _torch_available():
            row[method] = {"skipped": "torch not installed", "estimated_mb": est}
            return
        if est > args.torch_max_gb * 1024:
            msg = (
                f"{method} at {size}^2 not run: estimated peak {est / 1024:.1f} GB "
                f"> --torch-max-gb {args.torch_max_gb:g}"
            )
            notes.append(msg)
            print("  " + msg, flush=True)
            row[method] = {"skipped": msg, "estimated_mb": est}
            return
    path = os.path.join(tmp, f"{method}_{size}.npy")
    res = _spawn(method, size, args, path if method in GRADIENT_METHODS else None)
    if method in GRADIENT_METHODS and "error" not in res:
        paths[method] = path
    row[method] = res
    if "error" in res:
        print(f"  {method} {size} FAILED: {res['error']}", flush=True)
    else:
        print(
            f"  {method:>19} {size:>5}: {res['time_s']:8.3f} s, peak +{res['peak_mb']:7.0f} MB "
            f"(process {res['process_peak_mb']:7.0f} MB), load {res['load_before']:.2f}",
            flush=True,
        )


def run(args) -> dict:
    have_torch = _torch_available()
    descent_sizes = [s for s in (args.descent_sizes or []) if s > 0]
    print(
        f"J = {args.labels}, m = {args.krylov_dim}, rank 1, T = {args.T}, rho = {RHO}, "
        f"Euler step {EULER_STEP}; "
        f"repeat {args.repeat} (median time, max peak); one subprocess per (method, size)",
        flush=True,
    )
    load, ncpu = os.getloadavg()[0], os.cpu_count() or 1
    print(
        f"threads per worker: assignflow and BLAS {args.threads}, torch baselines "
        f"{args.torch_threads}; CPUs {ncpu}; "
        f"load average {load:.2f}"
        + (f"  (mmap threshold {args.mmap_threshold} B)" if args.mmap_threshold else ""),
        flush=True,
    )
    if load > 0.5 and args.threads >= ncpu:
        print(
            "WARNING: other processes are using the CPUs; multi-threaded timings (torch's "
            "OpenMP in particular) degrade badly on a shared machine; consider --threads 1",
            flush=True,
        )
    rows, notes, comparisons = [], [], {}
    if not have_torch and any(m in TORCH_METHODS for m in args.methods):
        notes.append(
            "torch is not installed: the autodiff baselines are skipped (pip install torch)"
        )
        print("NOTE: " + notes[-1], flush=True)
    plan = [(size, list(args.methods)) for size in args.sizes]
    plan += [(size, list(LARGE_METHODS) + list(TORCH_METHODS)) for size in args.large_sizes]
    with tempfile.TemporaryDirectory() as tmp:
        for size, methods in plan:
            row: dict = {"size": size, "pixels": size * size}
            paths: dict[str, str] = {}
            for method in methods:
                _measure(method, size, args, tmp, row, paths, notes)
            if len(paths) > 1:
                comparisons[size] = _compare_gradients(size, paths)
            rows.append(row)
        descent = []
        for size in descent_sizes:
            for method in args.descent_methods:
                res = _spawn(method, size, args, None)
                descent.append(res)
                if "error" in res:
                    print(f"  {method} {size}^2 FAILED: {res['error']}", flush=True)
                else:
                    print(f"  {method} {size}^2: {res['time_s']:.2f} s", flush=True)
        volume: dict = {}
        if args.volume_size > 0:
            for method in VOLUME_METHODS:
                _measure(method, args.volume_size, args, tmp, volume, {}, notes)
    _print_table(rows, descent, volume, comparisons, notes, args)
    return {
        "config": {
            "sizes": args.sizes,
            "large_sizes": args.large_sizes,
            "labels": args.labels,
            "krylov_dim": args.krylov_dim,
            "rank": 1,
            "T": args.T,
            "rho": RHO,
            "euler_step": EULER_STEP,
            "repeat": args.repeat,
            "descent_sizes": descent_sizes,
            "descent_iter": args.descent_iter,
            "volume_size": args.volume_size,
            "volume_labels": args.volume_labels,
            "volume_T": args.volume_T,
            "threads": args.threads,
            "torch_threads": args.torch_threads,
            "mmap_threshold": args.mmap_threshold,
            "methods": args.methods,
            "torch": have_torch,
            "load_average_start": load,
            "load_average_end": os.getloadavg()[0],
        },
        "results": rows,
        "descent": descent,
        "volume": volume,
        "gradient_comparison": {str(k): v for k, v in comparisons.items()},
        "notes": notes,
    }


def _get(row: dict, method: str, key: str):
    r = row.get(method, {})
    return r.get(key) if isinstance(r, dict) else None


def _ratio(a, b):
    return a / b if (a is not None and b is not None and b > 0) else None


def _print_table(rows, descent, volume, comparisons, notes, args) -> None:
    print()
    print(
        "times in s (median); MB = peak-RSS increment of the call (max); "
        "x = best autodiff baseline / closed-form gradient (time and memory)"
    )
    cols = [
        ("forward", "fwd64"),
        ("forward_f32", "fwd32"),
        ("gradient", "grad64"),
        ("gradient_f32", "grad32"),
        ("gradient_lowmem", "low64"),
        ("gradient_lowmem_f32", "low32"),
        ("torch_euler", "Euler"),
        ("torch_krylov", "Krylov"),
    ]
    hdr = f"{'size':>6} " + " ".join(f"{lab + ' s':>9} {lab + ' MB':>10}" for _, lab in cols)
    print(hdr)
    print("-" * len(hdr))
    for row in rows:
        cells = []
        for key, _ in cols:
            t, mb = _get(row, key, "time_s"), _get(row, key, "peak_mb")
            est = _get(row, key, "estimated_mb")
            mb_cell = (
                _fmt(mb, ".0f", 10)
                if mb is not None
                else (f"{'~' + format(est, '.0f'):>10}" if est is not None else _fmt(None, "", 10))
            )
            cells.append(f"{_fmt(t, '.3f', 9)} {mb_cell}")
        print(f"{row['size']:>4}^2 " + " ".join(cells))
    print("\nratios (same run)")
    for row in rows:
        fw64, fw32 = _get(row, "forward", "time_s"), _get(row, "forward_f32", "time_s")
        torch_t = [_get(row, k, "time_s") for k in TORCH_METHODS]
        torch_m = [_get(row, k, "peak_mb") for k in TORCH_METHODS]
        best_t = min((t for t in torch_t if t is not None), default=None)
        best_m = min((m for m in torch_m if m is not None), default=None)
        for key in ("gradient", "gradient_f32", "gradient_lowmem", "gradient_lowmem_f32"):
            t, mb = _get(row, key, "time_s"), _get(row, key, "peak_mb")
            if t is None:
                continue
            fw = fw32 if key.endswith("_f32") else fw64
            print(
                f"  {row['size']:>4}^2 {key:>19}: {_fmt(_ratio(t, fw), '.2f', 5)}x its forward "
                f"solve; autodiff/closed form: time {_fmt(_ratio(best_t, t), '.1f', 5)}x, "
                f"memory {_fmt(_ratio(best_m, mb), '.1f', 5)}x; process peak "
                f"{_fmt(_get(row, key, 'process_peak_mb'), '.0f', 6)} MB"
            )
    if not any(
        "hwm_reset" in v and v["hwm_reset"] for r in rows for v in r.values() if isinstance(v, dict)
    ):
        print(
            "NOTE: VmHWM could not be reset on this kernel; peaks are only reported where "
            "the measured call raised the process peak."
        )
    for n in notes:
        print("NOTE: " + n)
    for size, comp in comparisons.items():
        for ref, table in comp.items():
            for k, v in table.items():
                print(
                    f"  {size}^2 {k:>19} {ref}: rel. error {v['rel_err']:.2e}, "
                    f"cosine {v['cosine']:.7f}, pixels with cosine >= 0.9: "
                    f"{100 * v['pixels_cos_ge_0.9']:.2f} %"
                )
    if descent:
        print(
            f"\nRiemannian gradient descent, {args.descent_iter} iterations, "
            "closed_form_low_rank (m = 10, rank 1)"
        )
        for d in descent:
            if "error" in d:
                print(f"  {d.get('size')}: FAILED ({d['error']})")
                continue
            print(
                f"  {d['method']:>12} {d['size']}^2: {d['time_s']:.2f} s "
                f"({d['time_s'] / d['n_iter']:.2f} s/iter, median of {d['repeat']}), peak "
                f"+{d['peak_mb']:.0f} MB, loss {d['loss_first']:.4f} -> {d['loss_last']:.4f}, "
                f"wrong {100 * d['error_first']:.1f} % -> {100 * d['error_last']:.1f} %"
            )
    if volume:
        print(
            f"\n3-D volume {args.volume_size}^3 x {args.volume_labels} labels (bench_volume's "
            f"problem), float32, T = {args.volume_T}, 3x3x3 windows"
        )
        for key, v in volume.items():
            if not isinstance(v, dict) or "time_s" not in v:
                continue
            print(
                f"  {key:>16}: {v['time_s']:.2f} s, peak +{v['peak_mb']:.0f} MB "
                f"(process {v['process_peak_mb']:.0f} MB)"
            )


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[512])
    p.add_argument(
        "--large-sizes",
        type=int,
        nargs="*",
        default=[2048],
        help="sizes measured with the float32 methods only, autodiff estimated "
        "(default 2048; nothing: skip)",
    )
    p.add_argument("--large-repeat", type=int, default=1, help="repeats at the large sizes")
    p.add_argument("--labels", type=int, default=10)
    p.add_argument("--krylov-dim", type=int, default=10)
    p.add_argument("--T", type=float, default=2.0)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument(
        "--descent-sizes",
        type=int,
        nargs="*",
        default=[512],
        help="sizes for the descent timing (default 512; nothing: skip)",
    )
    p.add_argument(
        "--descent-methods", nargs="*", default=list(DESCENT_METHODS), choices=DESCENT_METHODS
    )
    p.add_argument("--descent-iter", type=int, default=20)
    p.add_argument(
        "--descent-repeat",
        type=int,
        default=1,
        help="repeats of the (long) descent run, at most --repeat (default 1)",
    )
    p.add_argument("--volume-size", type=int, default=128, help="side of the 3-D volume (0: skip)")
    p.add_argument("--volume-labels", type=int, default=5)
    p.add_argument("--volume-T", type=float, default=4.0)
    p.add_argument(
        "--torch-max-gb",
        type=float,
        default=16.0,
        help="do not run a torch baseline whose estimated peak exceeds this (GB)",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        choices=METHODS,
        help="methods to measure at --sizes (default: all)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=af.get_num_threads(),
        help="threads of assignflow, torch and BLAS in every worker "
        "(default: assignflow's default, the number of CPUs up to 8)",
    )
    p.add_argument(
        "--torch-threads",
        type=int,
        default=1,
        help="threads of the torch baselines (OpenMP, BLAS); default 1: on a shared 2-core "
        "machine torch's OpenMP with 2 threads was measured 8-10x slower than with one",
    )
    p.add_argument(
        "--mmap-threshold",
        type=int,
        default=0,
        help="run the workers with MALLOC_MMAP_THRESHOLD_ set to this many bytes, "
        "so that freed arrays go back to the OS at once and the RSS peak "
        "is the peak of live memory (default 0: glibc's default allocator)",
    )
    p.add_argument("--json", type=str, default=None, help="write the results to this file")
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "SIZE"), help=argparse.SUPPRESS)
    p.add_argument("--save-grad", type=str, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        res = run_worker(a.worker[0], int(a.worker[1]), a)
        print("RESULT " + json.dumps(res), flush=True)
        return
    results = run(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nresults written to {a.json}")


if __name__ == "__main__":
    main()
