"""How low can the error of a synthetic task go? A reference far above the 5-image setting.

The quality benchmark gives every method five training images. This script estimates
what is *achievable* on the synthetic tasks (``blobs``, ``lines``, ``colors``) by a
model that sees unlimited data from the task's own generator: a fully convolutional
network (a context-aggregation network of dilated 3×3 convolutions, Yu & Koltun 2016)
trained on fresh images every step (seeds disjoint from the benchmark's training and
test seeds), then scored on the benchmark's test images. Its error is an estimate
from above of the Bayes error of the task (how much of the remaining error is noise no
labeling can undo) — a yardstick for the benchmark's targets, not a competitor: it
needs thousands of images where the benchmark's methods get five.

The schedule is fixed (``--steps``, ``--batch``, Adam 1e-3 then 1e-4 for the last
fifth); nothing is tuned on the test images.

Needs PyTorch (``pip install "assignflow[bench]"``; with the local wheel
``pip install torch==2.13.0``)::

    python benchmarks/headroom.py [--tasks blobs lines] [--steps 1500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import baselines as bl
import tasks

# training images come from these seeds on (the benchmark's are 7001..8301 + offsets)
SEED_BASE = 10_000_000


def network(torch, c_in: int, n_labels: int, width: int):
    nn = torch.nn
    layers, c = [], c_in
    for d in (1, 1, 2, 4, 8, 16, 1):  # receptive field 67 pixels
        layers += [nn.Conv2d(c, width, 3, padding=d, dilation=d), nn.ReLU()]
        c = width
    layers.append(nn.Conv2d(c, n_labels, 1))
    return nn.Sequential(*layers)


def as_batch(torch, X: np.ndarray):
    X = X[..., None] if X.ndim == 3 else X
    return torch.from_numpy(np.ascontiguousarray(X.transpose(0, 3, 1, 2), dtype=np.float32))


def run(name: str, args) -> dict:
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    task = tasks.make_task(name)
    make = tasks.synthetic_generator(name)[0]
    c_in = 1 if task.X_train.ndim == 3 else task.X_train.shape[-1]
    net = network(torch, c_in, task.n_labels, args.width)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    t0 = time.perf_counter()
    for step in range(args.steps):
        if step == int(0.8 * args.steps):
            for g in opt.param_groups:
                g["lr"] = 1e-4
        X, y, _ = make(args.batch, SEED_BASE + step)
        logits = net(as_batch(torch, X))
        loss = loss_fn(logits, torch.from_numpy(np.asarray(y, dtype=np.int64)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            print(f"  {name} step {step:5d} loss {loss.item():.4f} "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
    net.eval()
    with torch.no_grad():
        pred = net(as_batch(torch, task.X_test)).argmax(1).numpy()
    errs = [bl.error(p, y) for p, y in zip(pred, task.y_test, strict=True)]
    out = {
        "task": name,
        "steps": args.steps,
        "batch": args.batch,
        "training_images": args.steps * args.batch,
        "seconds": time.perf_counter() - t0,
        "test_error": float(np.mean(errs)),
    }
    if task.recall:
        recs = [bl.recall0(p, y) for p, y in zip(pred, task.y_test, strict=True)]
        out["boundary_recall"] = float(np.mean(recs))
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", default=["blobs", "lines"])
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", metavar="PATH")
    args = p.parse_args(argv)
    for name, hi in (("steps", 1_000_000), ("batch", 1024), ("width", 1024), ("threads", 256)):
        if not 1 <= getattr(args, name) <= hi:
            p.error(f"--{name} must lie in [1, {hi}]")
    results = []
    for name in args.tasks:
        r = run(name, args)
        results.append(r)
        extra = f", boundary recall {r['boundary_recall']:.3f}" if "boundary_recall" in r else ""
        print(
            f"{name}: {100 * r['test_error']:.2f} % wrong on the test images after "
            f"{r['training_images']} training images ({r['seconds']:.0f} s){extra}",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
