"""gaussian-collapse: the fully synthetic Gaussian loop against its exact laws (SPEC section 6).

Model collapse in its simplest form: the ``gaussian`` model refitted by maximum likelihood to n points
drawn from its own previous fit (lam = 1), generation after generation, on the exact path. Per n and
generation t, over all runs, the mean, median and 5-95% band of

    tr Sigma_t / tr Sigma                  law: E = ((n-1)/n)^t
    log det Sigma_t - log det Sigma        law: E = t (sum_{i=1..d} digamma((n-i)/2) + d log(2/n))

The log-determinant is a sum of iid steps, so its mean sits on the law at any t. The trace is a product
of random factors: its mean is carried by ever rarer runs, and once t Var[log factor] nears log(runs) a
Monte-Carlo mean falls below the law (n = 10, around t = 50 for a million runs) while the median has
long collapsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.special import digamma

import madloop
from madloop.measure import sums
from madloop.results import mean_ci
from madloop.runner import build
from madloop.studies import Study, register
from madloop.plots import save
from madloop.studies.common import write_table

NAME = "gaussian-collapse"
LABELS = {"trace": "tr Σ_t / tr Σ", "logdet": "log det Σ_t − log det Σ"}


def laws(n: int, d: int, t: np.ndarray) -> dict[str, np.ndarray]:
    """The exact expectations of both quantities after t fits of n points in d dimensions."""
    step = sum(digamma((n - i) / 2) for i in range(1, d + 1)) + d * np.log(2 / n)
    return {"trace": ((n - 1) / n) ** t, "logdet": t * step}


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean with its standard error and Student-t 95% CI, median and 5% / 95% quantiles over runs."""
    mean, se, half = mean_ci(sums(values, None))
    q05, median, q95 = np.quantile(values, [0.05, 0.5, 0.95])
    return dict(mean=mean, se=se, ci_low=mean - half, ci_high=mean + half, median=median, q05=q05, q95=q95)


def collapse(n: int, runs: int, gens: int, seed: int) -> pd.DataFrame:
    """One row per (n, gen, metric) of one n, from the engine on the exact path."""
    cfg = madloop.resolve(dict(loop="fully_synthetic", path="exact", n_real=n, n_synth=n, gens=gens, runs=runs, seed=seed))
    parts = build(cfg)
    mu, Sigma = parts.data.truth
    rows = []
    for g in madloop.generations(cfg, parts, range(0, runs)):
        values = {"trace": np.trace(g.model.cov, axis1=-2, axis2=-1) / np.trace(Sigma),
                  "logdet": g.model.logdet() - np.linalg.slogdet(Sigma)[1]}
        law = laws(n, len(mu), np.array(g.gen))
        rows += [dict(n=n, gen=g.gen, metric=metric, **summarize(v), law=float(law[metric])) for metric, v in values.items()]
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, runs: int, out: Path) -> list[Path]:
    ns = sorted(table.n.unique())
    fig, axes = plt.subplots(2, len(ns), figsize=(4.2 * len(ns), 7), squeeze=False, sharex=True)
    for j, n in enumerate(ns):
        for i, metric in enumerate(LABELS):
            ax = axes[i, j]
            wide = table[(table.n == n) & (table.metric == metric)].set_index("gen")
            ax.fill_between(wide.index, wide.q05, wide.q95, color="C0", alpha=0.2, linewidth=0, label="5–95% of runs")
            ax.plot(wide.index, wide["mean"], color="C0", label="mean over runs")
            ax.plot(wide.index, wide["median"], color="C1", linestyle="--", label="median")
            ax.plot(wide.index, wide.law, color="k", linestyle=":", linewidth=1.6, label="exact law of the mean")
            ax.set_yscale("log" if metric == "trace" else "linear")
            last = wide.iloc[-1]
            if last["mean"] < last.law - 4 * last.se:
                ax.text(0.03, 0.03, f"the mean falls below its law: it is carried\nby runs rarer than 1 in {runs:,}",
                        transform=ax.transAxes, fontsize=8, color="C0")
            ax.set_title(f"n = {n}: {LABELS[metric]}", fontsize=10)
            ax.grid(alpha=0.3)
        axes[-1, j].set_xlabel("generation t")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=4, frameon=False, fontsize=9)
    fig.suptitle(f"Fully synthetic Gaussian loop, 2D, maximum-likelihood fit, {runs:,} runs (exact path)", y=0.945, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save(fig, out, NAME)


def make(params: Mapping, out: Path, jobs: int) -> list[Path]:
    parts = Parallel(n_jobs=min(jobs, len(params["ns"])))(
        delayed(collapse)(n, params["runs"], params["gens"], params["seed"]) for n in params["ns"])
    table = pd.concat(parts, ignore_index=True)
    return [write_table(table, out, NAME), *plot(table, params["runs"], out)]


register(Study(
    name=NAME,
    description="fully synthetic Gaussian collapse of trace and log-determinant vs the exact laws",
    scales={
        "ci": dict(ns=(10, 100, 1000), runs=2_000, gens=20, seed=0),
        "cpu": dict(ns=(10, 100, 1000), runs=1_000_000, gens=100, seed=0),
        "gpu": dict(ns=(10, 100, 1000), runs=10_000_000, gens=100, seed=0),
    },
    make=make,
))
