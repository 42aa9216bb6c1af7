"""Gaussian loops: the exact sufficient-statistics path against materialised samples (issue 6).

    python benchmarks/bench_gaussian.py            # the full table; writes benchmarks/RESULTS_gaussian.md
    python benchmarks/bench_gaussian.py --quick    # small sizes, to check that it runs

Every row is the fully synthetic loop in 2D with p_r = SPEC E1's N(0, [[2, 1], [1, 2]]): the real draw D^1,
then for t = 1..gens a fit G^t and a synthetic draw S^t of n points, for all runs at once. Times are wall
clock, the best of ``repeat`` tries (one try for the million-run rows). Rows:
- exact (functions): models/exact.py's draw_stats / ExactGaussian, written out as the recursion;
- exact (engine): madloop.generations with path="exact" (adds the engine's stream keys and bookkeeping);
- points float32 numpy / torch: the best a sample path could do, every point materialised in float32 with
  batched matmuls (one generator, no per-run streams; torch on one thread, which is faster here);
- normals only: the random numbers of the torch row alone, the floor of any loop that materialises points;
- points madloop: madloop's own sample path (float64, per-run streams, path="samples").
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections import deque
from pathlib import Path

import numpy as np
import torch

import madloop
from madloop.data import GaussianData
from madloop.metrics import Evaluation
from madloop.models.exact import ExactGaussian, StatsData
from madloop.rng import RunRNG
from madloop.runner import build
from madloop.metrics import model as truth_metrics

E1 = GaussianData()
RESULTS = Path(__file__).with_name("RESULTS_gaussian.md")


def exact_functions(n: int, gens: int, runs: int, seed: int = 0):
    """The loop on statistics: D^1 = stats of n real points, then G^t = fit(D^t), D^(t+1) = stats of S^t."""
    data, spec, runs = StatsData(E1), ExactGaussian(), range(0, runs)
    train = data.sample(n, RunRNG(seed, runs, 0, "real"))
    for t in range(1, gens + 1):
        model = spec.fit(train, RunRNG(seed, runs, t, "train"))
        train = model.sample(n, RunRNG(seed, runs, t, "synth"))
    return model


def engine(path: str):
    def loop(n: int, gens: int, runs: int, seed: int = 0):
        cfg = madloop.resolve(dict(loop="fully_synthetic", path=path, n_real=n, n_synth=n, gens=gens, runs=runs, seed=seed))
        deque(madloop.generations(cfg, build(cfg), range(0, runs)), maxlen=0)

    return loop


def points_numpy(n: int, gens: int, runs: int, seed: int = 0):
    """Materialised float32 points as the columns of x (runs, 2, n): x = mu + L z, then the ML fit.

    Points as columns (not rows) make every batched product and the mean run along contiguous memory:
    twice as fast as (runs, n, 2).
    """
    g = np.random.default_rng(seed)
    mu, Sigma = (a.astype(np.float32) for a in E1.truth)
    mean, L = np.broadcast_to(mu[:, None], (runs, 2, 1)), np.broadcast_to(np.linalg.cholesky(Sigma), (runs, 2, 2))
    for _ in range(gens):
        x = mean + L @ g.standard_normal((runs, 2, n), dtype=np.float32)
        mean = x.mean(2, keepdims=True)
        xc = x - mean
        L = np.linalg.cholesky(xc @ np.swapaxes(xc, 1, 2) / n)
    return L


def points_torch(n: int, gens: int, runs: int, seed: int = 0):
    """The same as points_numpy with torch, on one thread (its intra-op threads slow these small products)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(seed)
    mu, Sigma = (torch.as_tensor(a, dtype=torch.float32) for a in E1.truth)
    mean, L = mu[:, None].expand(runs, 2, 1), torch.linalg.cholesky(Sigma).expand(runs, 2, 2)
    for _ in range(gens):
        x = torch.baddbmm(mean, L, torch.randn(runs, 2, n, generator=g))
        mean = x.mean(2, keepdim=True)
        xc = x - mean
        L = torch.linalg.cholesky(torch.bmm(xc, xc.transpose(1, 2)) / n)
    torch.set_num_threads(threads)
    return L


def normals_only(n: int, gens: int, runs: int, seed: int = 0):
    """The random numbers alone of points_torch (on all threads): the floor of any materialised loop."""
    g = torch.Generator().manual_seed(seed)
    for _ in range(gens):
        torch.randn(runs, 2, n, generator=g)


def best_time(fn, *args, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return min(times)


def loop_rows(runs: int, big: int, gens: int, repeat: int, targets: bool) -> list[dict]:
    plan = [("exact (functions)", exact_functions, n, runs, 1.0) for n in (10, 100, 10_000)]
    plan += [("exact (engine)", engine("exact"), n, runs, None) for n in (10, 100, 10_000)]
    plan += [("points float32 numpy", points_numpy, 100, runs, 3.0), ("points float32 torch", points_torch, 100, runs, 3.0),
             ("normals only, float32 torch", normals_only, 100, runs, None),
             ("points madloop (float64)", engine("samples"), 100, runs, None),
             ("exact (functions)", exact_functions, 100, big, 60.0), ("exact (engine)", engine("exact"), 100, big, None)]
    rows = []
    for name, fn, n, r, target in plan:
        seconds = best_time(fn, n, gens, r, repeat=1 if r == big else repeat)
        rows.append(dict(path=name, runs=r, gens=gens, n=n, seconds=seconds, target=target if targets else None))
        print(format_row(rows[-1]), flush=True)
    return rows


def metric_rows(runs: int, repeat: int) -> list[dict]:
    """Each truth metric on one generation of ``runs`` fitted 2D models."""
    model = exact_functions(100, 3, runs)
    ev = Evaluation(None, None, model, truth=E1.truth)
    rows = []
    for name in ("true_w2", "true_kl", "true_kl_rev", "true_mean_err", "true_cov_err"):
        seconds = best_time(getattr(truth_metrics, name), ev, repeat=repeat)
        rows.append(dict(metric=name, runs=runs, seconds=seconds))
        print(f"{name:16s} {runs:>9,d} runs  {seconds * 1000:8.1f} ms", flush=True)
    return rows


def format_row(row: dict) -> str:
    target = "" if row["target"] is None else f"<= {row['target']:g} s: {'met' if row['seconds'] <= row['target'] else 'MISSED'}"
    return f"{row['path']:26s} {row['runs']:>9,d} x {row['gens']} gens  n={row['n']:<6d} {row['seconds']:8.2f} s  {target}"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
            f"torch {torch.__version__} ({torch.get_num_threads()} threads)")


def write(loops: list[dict], metrics: list[dict], load: tuple[float, float]) -> None:
    lines = ["# Gaussian loops: exact path vs materialised samples", "",
             "Written by `python benchmarks/bench_gaussian.py`. Fully synthetic loop, 2D, p_r = N(0, [[2, 1], [1, 2]]);",
             "wall-clock seconds, best of the tries (one try at a million runs).", "",
             f"Machine: {machine()}. Load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end"
             " (above the core count, other work shared the CPU and the times are upper bounds).", "",
             "| path | runs | gens | n | seconds | target |", "|---|---:|---:|---:|---:|---|"]
    for r in loops:
        target = "" if r["target"] is None else f"<= {r['target']:g} s: {'met' if r['seconds'] <= r['target'] else 'missed'}"
        lines.append(f"| {r['path']} | {r['runs']:,} | {r['gens']} | {r['n']:,} | {r['seconds']:.2f} | {target} |")
    lines += ["", "Closed-form distances to the truth (madloop/metrics/model.py), one generation, 2D:", "",
              "| metric | runs | ms |", "|---|---:|---:|"]
    lines += [f"| {r['metric']} | {r['runs']:,} | {r['seconds'] * 1000:.1f} |" for r in metrics]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; prints only")
    args = parser.parse_args()
    runs, big, gens, repeat = (1000, 5000, 5, 1) if args.quick else (10_000, 1_000_000, 100, 3)
    print(machine())
    start_load = os.getloadavg()[0]
    loops, metrics = loop_rows(runs, big, gens, repeat, not args.quick), metric_rows(big, 1 if args.quick else 5)
    if not args.quick:
        write(loops, metrics, (start_load, os.getloadavg()[0]))


if __name__ == "__main__":
    main()
