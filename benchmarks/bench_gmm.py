"""madloop's batched EM for Gaussian mixtures against scikit-learn's GaussianMixture fitted run by run (issue 13).

    pip install -e .                            # scikit-learn is a dependency
    python benchmarks/bench_gmm.py              # writes benchmarks/RESULTS_gmm.md (about a minute)
    python benchmarks/bench_gmm.py --quick      # one repeat; prints only

Data: the ``mixture`` source's ring of 8 Gaussians (radius 4, std 0.5), 750 points per run, 32 runs (and 1),
the same points for every row. Every model has k = 8 full covariances, reg_covar 1e-6 and scikit-learn's
stopping rule (tol = 1e-3 on the change of the mean log-likelihood per point, at most 100 iterations). Rows:
- madloop fit: GMM(k=8).fit on all runs at once: k-means++ seeds, Lloyd's k-means, then EM with each run
  leaving the batch when it converges;
- madloop EM: the EM alone (models.gmm.em), from the start that madloop's fit computes;
- scikit-learn EM: GaussianMixture, one run at a time, from that same start (weights_init, means_init,
  precisions_init), so that both take the same EM steps to the same log-likelihood;
- scikit-learn fit: GaussianMixture as users call it, one run at a time: its own k-means start (KMeans
  with k-means++ seeds, n_init=1; random_state = the run), then EM. Its start is drawn from other random
  numbers than madloop's, so its log-likelihood differs run by run (local optima), not on average;
- madloop, 100 iterations: GMM(k=8, iters=100, tol=0), the fixed 100 EM iterations madloop ran before
  it stopped at convergence (now from the k-means start).
Times are wall clock, the best of REPEATS tries taken in turns, everything on one thread (threadpoolctl: BLAS
and OpenMP), the way each of the runner's workers gets its share of the cores. log-lik is the mean over runs of the
mean log-density per training point of the fitted mixture; iterations are EM iterations per run.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from madloop.data import MixtureData
from madloop.models.gmm import GMM, columns, e_step, em, initial_params, seeding_draws
from madloop.rng import RunRNG

RING, K, N, RUNS, REPEATS = MixtureData(layout="ring", k=8), 8, 750, (32, 1), 5
SPEC = GMM(k=K)
FITS = {"fit": "madloop fit", "em": "madloop EM, from madloop's start",
        "sklearn em": "scikit-learn EM, from madloop's start",
        "sklearn fit": "scikit-learn fit (its own k-means start)",
        "fixed": "madloop fit, 100 iterations (tol = 0)"}
OUT = Path(__file__).with_name("RESULTS_gmm.md")


def sklearn_fits(x: np.ndarray, start=None) -> list[GaussianMixture]:
    """One GaussianMixture per run, from ``start`` (madloop's initial parameters) or from its own k-means."""
    fits = []
    for r in range(len(x)):
        options = dict(random_state=r)
        if start is not None:
            w, mean, cov = np.exp(start[0][r]), start[1][r], start[2][r]
            options = dict(init_params="random_from_data", random_state=0, weights_init=w / w.sum(), means_init=mean,
                           precisions_init=np.linalg.inv(cov))
        fits.append(GaussianMixture(K, covariance_type="full", tol=SPEC.tol, max_iter=SPEC.iters, reg_covar=SPEC.reg,
                                    **options).fit(x[r]))
    return fits


def measure(runs: int, repeats: int) -> dict[str, dict]:
    """Every fit of FITS on the same ``runs`` runs: the best of ``repeats`` times, taken in turns (a burst of load
    on a shared machine then slows all fits alike), its log-likelihood and its iterations."""
    data = RING.sample(N, RunRNG(0, range(0, runs), 0, "real"))
    x, xt, rng = data.x, columns(data.x), lambda: RunRNG(0, range(0, runs), 1, "train")
    start = initial_params(xt, seeding_draws(rng(), K), SPEC.reg)

    def madloop_fit(spec):
        def fit():
            model = spec.fit(data, rng())
            return np.log(model.weights), model.mean, model.cov, model.iters
        return fit

    fits = {"fit": madloop_fit(SPEC), "em": lambda: em(xt, *start, SPEC.reg, SPEC.tol, SPEC.iters),
            "sklearn em": lambda: sklearn_fits(x, start), "sklearn fit": lambda: sklearn_fits(x),
            "fixed": madloop_fit(GMM(k=K, iters=100, tol=0.0))}
    times, out = {name: [] for name in fits}, {}
    for _ in range(repeats):
        for name, fit in fits.items():
            begin = time.perf_counter()
            out[name] = fit()
            times[name].append(time.perf_counter() - begin)
    rows = {}
    for name, result in out.items():
        if name.startswith("sklearn"):
            ll, iters = [f.score(x[r]) for r, f in enumerate(result)], [f.n_iter_ for f in result]
        else:
            ll, iters = e_step(xt, *result[:3])[0], result[3]
        rows[name] = dict(runs=runs, seconds=min(times[name]), ll=np.mean(ll), iters=np.asarray(iters))
    return rows


def table(results: dict[int, dict[str, dict]]) -> list[str]:
    """Markdown rows; time ratios against madloop's fit on the same runs."""
    lines = ["| runs | fit | seconds | ms per run | x madloop fit | log-lik | iterations mean (max) |",
             "|---:|---|---:|---:|---:|---:|---|"]
    for runs, rows in results.items():
        for name, r in rows.items():
            lines.append(f"| {runs} | {FITS[name]} | {r['seconds']:.3f} | {1000 * r['seconds'] / runs:.1f} | "
                         f"{r['seconds'] / rows['fit']['seconds']:.2f} | {r['ll']:.6f} | "
                         f"{r['iters'].mean():.1f} ({r['iters'].max()}) |")
    return lines


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, numpy {np.__version__}, "
            f"scikit-learn {sklearn.__version__}")


def verdict(rows: dict[str, dict]) -> str:
    fit, em_, sk_fit, sk_em = (rows[name] for name in ("fit", "em", "sklearn fit", "sklearn em"))
    return (f"Target (issue 13): no slower than scikit-learn run by run, at the same log-likelihood. "
            f"At {fit['runs']} runs madloop's fit takes {fit['seconds'] / sk_fit['seconds']:.2f}x scikit-learn's time "
            f"({'met' if fit['seconds'] <= sk_fit['seconds'] else 'MISSED'}), log-likelihood {fit['ll']:.4f} against "
            f"{sk_fit['ll']:.4f} (different random starts); from the same start its EM takes "
            f"{em_['seconds'] / sk_em['seconds']:.2f}x scikit-learn's time, to a log-likelihood "
            f"{abs(em_['ll'] - sk_em['ll']):.0e} apart, in the same number of iterations"
            f"{'' if (em_['iters'] == sk_em['iters']).all() else ' (NOT: iterations differ)'}.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat; prints only")
    args = parser.parse_args()
    warnings.simplefilter("ignore", ConvergenceWarning)
    print(machine())
    load = [os.getloadavg()[0]]
    with threadpool_limits(limits=1):
        results = {runs: measure(runs, 1 if args.quick else REPEATS) for runs in RUNS}
    load.append(os.getloadavg()[0])
    lines = table(results)
    print("\n".join(lines), "", verdict(results[RUNS[0]]), sep="\n")
    if args.quick:
        return
    text = ["# Gaussian-mixture EM: madloop (batched) vs scikit-learn (run by run)", "",
            f"Written by `python benchmarks/bench_gmm.py`. Machine: {machine()}.",
            f"Load average (1 min) {load[0]:.1f} at the start, {load[1]:.1f} at the end (above the core count, other",
            "work shared the CPU and the times are upper bounds; the fits were timed in turns, so their ratios hold",
            "better).", "",
            f"Ring of 8 Gaussians, {N} points per run, k = {K} full covariances, tol = {SPEC.tol:g} on the mean",
            f"log-likelihood per point, at most {SPEC.iters} iterations, reg {SPEC.reg:g}; one thread; best of "
            f"{REPEATS} tries in turns.",
            "The rows are described in the script's docstring.", "", *lines, "", verdict(results[RUNS[0]])]
    OUT.write_text("\n".join(text) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
