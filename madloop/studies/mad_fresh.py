"""E3 (SPEC section 4): the fresh data loop converges to a level set by (n_r, n_s, lam), whatever the first model.

Gaussian model, SPEC E1's 2D Gaussian p_r, distance = closed-form W2 between the fitted model G^t and p_r
(``true_w2``: the model as fitted, not its lam-biased samples, and no evaluation sample to add noise).

1. Two first models. The engine trains G^1 on D_r of n_real points, like every later generation's real part.
   A first model fitted to fewer real points is the ``FirstSubset`` algorithm below: standard training,
   except that G^1 sees only the first ``n_first`` points of D_r (an iid draw, so a random subset). Later
   generations train on all their data. With the same seeds, G^1 from 5 points and from all n_r points
   are followed across generations.
2. Effective sample size n_e (SPEC E3), by Monte-Carlo:
   - the real-only curve E[d](n): the expected distance of a model fitted from scratch to n real points
     (generation 1 of a run with n_real = n), on a log grid of n;
   - the loop's limit L: the mean over runs of d_t, averaged over the generations t >= burn (n_r + n_s) / n_r
     (run for twice as many): by then the first model's weight in G^t, (n_s / (n_r + n_s))^t, is below
     e^-burn, and its share of the squared error below e^-2 burn;
   - n_e = the n where the real-only curve, interpolated linearly in log-log coordinates, equals L. Its 95%
     interval inverts L +- t SE (Student t, runs - 1 degrees of freedom), with SE the mean of the
     per-generation standard errors (a bound: the generations of a run are correlated). Values beyond the
     grid are clipped to its ends.
   The phase diagram shows n_e / n_r over (n_r, n_s) for each lam: synthetic data help where it is >= 1.
3. The check against SPEC section 6: with lam = 1 and the mean error as the distance, n_e must be
   n_r (n_r + 2 n_s) / (n_r + n_s).
4. What the loop actually samples. ``true_w2`` measures the fit N(mu_t, Sigma_t); with lam < 1 the loop
   draws its synthetic data, and its output, from N(mu_t, lam Sigma_t). ``sampled_w2`` (SampledW2, one
   metric per lam, registered when the study runs) is the closed-form W2 between that law and p_r, and its
   n_e sits beside the fit's: the real-only size whose from-scratch model, sampled without bias, is as
   close to p_r as the loop's samples are. At lam = 1 the two agree; at lam < 1 even an exact fit
   (Sigma_t = Sigma) is sampled at W2 = (1 - sqrt(lam)) sqrt(tr Sigma), a gap that no amount of data closes.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import TwoSlopeNorm
from scipy import stats

from madloop.algorithms import Standard
from madloop.metrics.base import Evaluation
from madloop.metrics.base import register as register_metric
from madloop.metrics.model import true_w2
from madloop.models.base import Model, ModelSpec
from madloop.registry import ALGOS
from madloop.rng import RunRNG
from madloop.samples import Samples
from madloop.studies import Study, register
from madloop.plots import STUDY_LABELS, curves, save
from madloop.studies.common import columns_first, sweep, write_table

NAME = "mad-fresh"
GAUSSIAN = dict(model="gaussian", data="gaussian", loop="fresh")
COLUMNS = ["part", "lam", "n_real", "n_synth", "n_first", "metric", "gen"]
FIRST_SUBSET = f"{NAME}.first-subset"  # FirstSubset's name, registered when the study runs
SAMPLED = "sampled_w2"  # the table's name for SampledW2 (registered per lam as f"{NAME}.sampled_w2@{lam}")
LABELS = {**STUDY_LABELS, SAMPLED: "$W_2(N(\\mu_t, λ Σ_t), p_r)$, closed form"}


@dataclass(frozen=True)
class FirstSubset:
    """Standard training, except that the first model G^1 is fitted to the first ``n_first`` points of D_r only."""

    n_first: int = 5

    def train(self, spec: ModelSpec, data: Samples, rng: RunRNG, previous: Model | None) -> Model:
        if previous is None:  # generation 1
            if self.n_first > data.n:
                raise ValueError(f"n_first={self.n_first} exceeds the {data.n} points of D_r")
            data = data.take(np.broadcast_to(np.arange(self.n_first), (data.n_runs, self.n_first)))
        return Standard().train(spec, data, rng, previous)


@dataclass(frozen=True)
class SampledW2:
    """Closed-form W2 between p_r and N(mu_t, lam Sigma_t), the law the loop samples from with bias lam."""

    lam: float

    def __call__(self, ev: Evaluation) -> np.ndarray:
        return true_w2(replace(ev, model=Sampled(ev.model, self.lam)))


@dataclass(frozen=True)
class Sampled:
    """A fitted model's moments as it samples them with bias lam: (mu_t, lam Sigma_t)."""

    model: Any
    lam: float

    def moments(self) -> tuple[np.ndarray, np.ndarray]:
        mean, cov = self.model.moments()
        return mean, self.lam * cov


def sampled_w2(lam: float) -> str:
    """Register SampledW2 for ``lam`` (when the study runs: importing it registers nothing) and return its name."""
    name = f"{NAME}.{SAMPLED}@{lam:g}"
    register_metric(name, batched=True, model=True, replace=True)(SampledW2(lam))
    return name


def first_models(p: Mapping[str, Any], jobs: int) -> pd.DataFrame:
    """The fresh loop from two first models (G^1 on ``n_first`` or on all n_real points), for each lam.

    Configs name their algorithm, so FirstSubset is registered, under the study's own name, when this runs
    (importing the study registers nothing).
    """
    c = p["convergence"]
    sizes = {k: c[k] for k in ("n_real", "n_synth", "gens", "runs")}
    ALGOS.register(FIRST_SUBSET, replace=True)(FirstSubset)
    summary = sweep({"lam": p["lams"], "n_first": (c["n_first"], c["n_real"])}, jobs, **GAUSSIAN, **sizes,
                    algo=FIRST_SUBSET, metrics=("true_w2",)).summary()
    return summary.assign(part="convergence", n_real=c["n_real"], n_synth=c["n_synth"])


def real_only(p: Mapping[str, Any], jobs: int, extra: tuple[int, ...] = ()) -> pd.DataFrame:
    """E[d](n) of a model fitted from scratch to n real points: generation 1 for each n of a log grid, of
    the loops' n_r and of ``extra``."""
    grid = np.concatenate([np.round(np.geomspace(*p["curve_range"], p["curve_points"])), p["n_reals"], extra])
    grid = np.unique(grid).astype(int)
    summary = sweep({"n_real": [int(n) for n in grid]}, jobs, **GAUSSIAN, n_synth=1, gens=1, runs=p["curve_runs"],
                    metrics=p["metrics"]).summary()
    return summary[summary.gen == 1].assign(part="real-only")


def loop_limits(p: Mapping[str, Any], jobs: int) -> pd.DataFrame:
    """Every (lam, n_r, n_s) of the grid, each run long enough to reach its limit (see ``limit_start``)."""
    points = []
    for lam, n_r, n_s in itertools.product(p["lams"], p["n_reals"], p["n_synths"]):
        start = limit_start(n_r, n_s, p["burn"])
        gens, every = max(2 * start, start + 20), max(1, start // 20)
        sampled = (sampled_w2(lam),) if "true_w2" in p["metrics"] else ()  # its n_e reads true_w2's curve
        points.append(dict(lam=lam, n_real=n_r, n_synth=n_s, gens=gens, every=every, metrics=(*p["metrics"], *sampled)))
    summary = sweep(points, jobs, **GAUSSIAN, runs=p["runs"]).summary()
    summary["metric"] = summary.metric.where(~summary.metric.str.startswith(f"{NAME}.{SAMPLED}@"), SAMPLED)
    window = summary.gen >= [limit_start(r, s, p["burn"]) for r, s in zip(summary.n_real, summary.n_synth)]
    return summary[window].drop(columns=["gens", "every", "metrics"], errors="ignore").assign(part="loop")


def limit_start(n_r: int, n_s: int, burn: float) -> int:
    """The first generation of the limit window: the first model's weight (n_s / (n_r + n_s))^t is below e^-burn."""
    return math.ceil(burn * (n_r + n_s) / n_r)


def effective_size(n: np.ndarray, dist: np.ndarray, level: np.ndarray) -> np.ndarray:
    """The n at which the real-only curve E[d](n) equals ``level`` (log-log interpolation, clipped to the grid)."""
    order = np.argsort(n)
    # The curve is decreasing in n; a Monte-Carlo wiggle must not make the inverse multivalued.
    log_d = np.log(np.minimum.accumulate(dist[order]))[::-1]
    return np.exp(np.interp(np.log(level), log_d, np.log(n[order])[::-1]))


def effective_sizes(curve: pd.DataFrame, loops: pd.DataFrame) -> pd.DataFrame:
    """n_e with its 95% interval for every loop point and metric, from the real-only curve (for ``sampled_w2``,
    the curve of ``true_w2``: a from-scratch model sampled without bias)."""
    rows = []
    for (metric, lam, n_r, n_s), df in loops.groupby(["metric", "lam", "n_real", "n_synth"], sort=False):
        c = curve[curve.metric == ("true_w2" if metric == SAMPLED else metric)]
        level, se, t = df["mean"].mean(), df["sem"].mean(), stats.t.ppf(0.975, df.n.min() - 1)
        levels = np.array([level + t * se, level, level - t * se])
        low, mid, high = effective_size(c.n_real.to_numpy(float), c["mean"].to_numpy(), levels)
        rows.append(dict(part="n_e", lam=lam, n_real=n_r, n_synth=n_s, metric=metric, mean=mid, ci_low=low,
                         ci_high=high))
    return pd.DataFrame(rows)


def closed_form_mean(n_r, n_s):
    """SPEC section 6: n_eff of the fresh loop's mean (lam = 1)."""
    return n_r * (n_r + 2 * n_s) / (n_r + n_s)


def plot_convergence(table: pd.DataFrame, out: Path) -> list[Path]:
    conv, curve = table[table.part == "convergence"], table[(table.part == "real-only") & (table.metric == "true_w2")]
    n_r, n_s = int(conv.n_real.iloc[0]), int(conv.n_synth.iloc[0])
    lams = list(dict.fromkeys(conv.lam))
    fig, axes = plt.subplots(1, len(lams), figsize=(4.3 * len(lams), 3.6), squeeze=False, sharey=True)
    for ax, lam in zip(axes[0], lams):
        curves(ax, conv[conv.lam == lam], "n_first", lambda v: f"$G^1$ fitted to {int(v)} real points")
        for n, style in ((n_r, "--"), (n_r + n_s, "-.")):
            level = curve.loc[curve.n_real == n, "mean"]
            if len(level):
                ax.axhline(float(level.iloc[0]), color="0.4", linestyle=style, linewidth=1,
                           label=f"model fitted from scratch to {n} real points")
        ax.set_title(f"λ = {lam:g}", fontsize=10)
        ax.set_yscale("log")
    axes[0, 0].set_ylabel(f"{STUDY_LABELS['true_w2']}\nmean over runs (95% CI)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, frameon=False, fontsize=9)
    fig.suptitle(f"Fresh data loop, Gaussian model: n_r = {n_r}, n_s = {n_s}, {int(conv.n.iloc[0])} runs; "
                 "the limit does not depend on the first model", fontsize=11)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    return save(fig, out, f"{NAME}-convergence")


def plot_phase(table: pd.DataFrame, out: Path, metric: str = "true_w2", name: str = "phase") -> list[Path]:
    """n_e / n_r over (n_r, n_s), one panel per lam; blue cells (>= 1): the synthetic data help."""
    ne = table[(table.part == "n_e") & (table.metric == metric)]
    grid_ends = table.loc[(table.part == "real-only") & (table.metric == "true_w2"), "n_real"].agg(["min", "max"])
    lams = list(dict.fromkeys(ne.lam))
    n_rs, n_ss = sorted(set(ne.n_real.astype(int))), sorted(set(ne.n_synth.astype(int)))
    norm = TwoSlopeNorm(vmin=-2.0, vcenter=0.0, vmax=np.log10(2.0))
    fig, axes = plt.subplots(1, len(lams), figsize=(4.2 * len(lams) + 1, 4.2), squeeze=False)
    for ax, lam in zip(axes[0], lams):
        cell = ne[ne.lam == lam].set_index(["n_synth", "n_real"])
        ratio = np.array([[cell.loc[(s, r), "mean"] / r for r in n_rs] for s in n_ss])
        mesh = ax.pcolormesh(np.log10(np.clip(ratio, 1e-2, None)), cmap="RdBu", norm=norm)
        for i, s in enumerate(n_ss):
            for j, r in enumerate(n_rs):
                n_e = cell.loc[(s, r), "mean"]
                bound = "≤" if n_e <= grid_ends["min"] else "≥" if n_e >= grid_ends["max"] else ""
                ax.text(j + 0.5, i + 0.5, f"{bound}{ratio[i, j]:.2g}", ha="center", va="center", fontsize=7)
        if min(ratio.shape) > 1 and ratio.min() < 1 < ratio.max():
            ax.contour(np.arange(len(n_rs)) + 0.5, np.arange(len(n_ss)) + 0.5, ratio, levels=[1.0], colors="k",
                       linewidths=1.5)
        ax.set_xticks(np.arange(len(n_rs)) + 0.5, [str(r) for r in n_rs])
        ax.set_yticks(np.arange(len(n_ss)) + 0.5, [str(s) for s in n_ss])
        ax.set_xlabel("n_r (real points per generation)")
        ax.set_title(f"λ = {lam:g}", fontsize=10)
    axes[0, 0].set_ylabel("n_s (synthetic points per generation)")
    bar = fig.colorbar(mesh, ax=axes[0].tolist(), shrink=0.9)
    ticks = [0.01, 0.03, 0.1, 0.3, 1, 2]
    bar.set_ticks(np.log10(ticks), labels=[f"{t:g}" for t in ticks])
    bar.set_label("n_e / n_r   (black line: n_e = n_r)")
    fig.suptitle(f"Fresh data loop, Gaussian model: effective sample size n_e / n_r (distance {LABELS[metric]}; "
                 f"{int(table.loc[table.part == 'loop', 'n'].iloc[0])} runs per cell)", fontsize=11, y=1.03)
    return save(fig, out, f"{NAME}-{name}")


def plot_check(table: pd.DataFrame, out: Path) -> list[Path]:
    """Left: the real-only curves E[d](n); right: n_e from the mean error (lam = 1) vs SPEC section 6."""
    curve = table[table.part == "real-only"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9.5, 3.9))
    for i, (metric, df) in enumerate(curve.groupby("metric", sort=False)):
        left.plot(df.n_real, df["mean"], color=f"C{i}", marker=".", label=STUDY_LABELS.get(metric, metric))
        left.fill_between(df.n_real, df.ci_low, df.ci_high, color=f"C{i}", alpha=0.25, linewidth=0)
    left.set(xscale="log", yscale="log", xlabel="n (real points, model fitted from scratch)",
             ylabel="E[d(G, p_r)] (95% CI)", title=f"Real-only curves ({int(curve.n.iloc[0])} runs per n)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3, which="both")
    ne = table[(table.part == "n_e") & (table.metric == "true_mean_err") & (table.lam == 1.0)]
    theory = closed_form_mean(ne.n_real, ne.n_synth) / ne.n_real
    mc = ne["mean"] / ne.n_real
    right.errorbar(theory, mc, yerr=[mc - ne.ci_low / ne.n_real, ne.ci_high / ne.n_real - mc], fmt="o", ms=3, capsize=2,
                   label="Monte-Carlo (mean error, λ = 1)")
    span = np.array([1.0, 2.0])
    right.plot(span, span, color="0.4", linestyle="--", label="y = x")
    right.set(xlabel="closed form  (n_r + 2 n_s) / (n_r + n_s)", ylabel="n_e / n_r (95% CI)",
              title="n_e of the mean vs SPEC section 6")
    right.legend(fontsize=8)
    right.grid(alpha=0.3)
    fig.tight_layout()
    return save(fig, out, f"{NAME}-check")


def make(params: Mapping[str, Any], out: Path, jobs: int) -> list[Path]:
    c = params["convergence"]
    curve = real_only(params, jobs, extra=(c["n_real"], c["n_real"] + c["n_synth"]))  # the convergence figure's levels
    loops = loop_limits(params, jobs)
    table = pd.concat([first_models(params, jobs), curve, loops, effective_sizes(curve, loops)], ignore_index=True)
    table = columns_first(table, COLUMNS)
    figures = plot_convergence(table, out) + plot_phase(table, out) + plot_check(table, out)
    figures += plot_phase(table, out, SAMPLED, "phase-sampled")  # the same n_e, of what the loop samples
    return [write_table(table, out, NAME), *figures]


METRICS = ("true_w2", "true_mean_err")
register(Study(
    name=NAME,
    description="E3: fresh data loop (Gaussian): convergence from two first models, effective sample size "
                "n_e / n_r over (n_r, n_s)",
    scales={
        "ci": dict(lams=(1.0,), n_reals=(10, 100), n_synths=(10, 100), runs=250, burn=1, metrics=METRICS,
                   curve_range=(2, 400), curve_points=5, curve_runs=250,
                   convergence=dict(n_real=20, n_synth=40, n_first=5, gens=4, runs=20)),
        "cpu": dict(lams=(1.0, 0.9, 0.7), n_reals=(10, 20, 50, 100, 200, 500, 1000),
                    n_synths=(10, 20, 50, 100, 200, 500, 1000), runs=2000, burn=3, metrics=METRICS,
                    curve_range=(2, 4000), curve_points=34, curve_runs=20000,
                    convergence=dict(n_real=50, n_synth=200, n_first=5, gens=60, runs=1000)),
        "gpu": dict(lams=(1.0, 0.9, 0.8, 0.7), n_reals=(10, 20, 50, 100, 200, 500, 1000, 2000),
                    n_synths=(10, 20, 50, 100, 200, 500, 1000, 2000), runs=20000, burn=4, metrics=METRICS,
                    curve_range=(2, 8000), curve_points=60, curve_runs=200000,
                    convergence=dict(n_real=50, n_synth=200, n_first=5, gens=100, runs=10000)),
    },
    make=make,
))
