"""Figures from stored tables (never from re-running anything): metric and MAD ratio vs generation.

Every curve is a mean over runs with its 95% confidence band; the dotted line of the same colour is
the real-data floor (generation 0: a real sample of the same size measured the same way). The band of
a quantity whose values are never negative (a distance, a trace) is the interval of the log of the mean,
mean x exp(+-half / mean) (delta method), so that with few runs it never dips below zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from madloop import store  # noqa: E402
from madloop.errors import MadloopError  # noqa: E402
from madloop.results import Result, is_distance, load  # noqa: E402

METRIC_LABELS = {
    "w2": "W2 to the reference (exact OT)", "sliced_w2": "sliced W2", "gauss_w2": "Gaussian-fit W2",
    "mean_err": "mean error", "cov_err": "covariance error (Frobenius)", "model_trace": "tr Σ_t",
    "model_logdet": "log det Σ_t", "true_w2": "W2(G^t, p_r), closed form", "true_kl": "KL(p_r ‖ G^t)",
    "true_kl_rev": "KL(G^t ‖ p_r)", "true_mean_err": "‖μ_t − μ‖", "true_cov_err": "‖Σ_t − Σ‖_F",
    "precision": "precision (k-NN)", "recall": "recall (k-NN)",
}


def describe(result: Result) -> str:
    c = result.config
    extra = f", λ={c.lam:g}" if c.lam != 1 else ""
    return f"{c.loop} · {c.model} · {c.algo}{omega(result)}{extra} (n_synth={c.n_synth}, {c.runs} runs)"


def short(result: Result) -> str:
    """A run's label among several: its directory's name (and ω for SIMS)."""
    return result.path.name + omega(result)


def omega(result: Result) -> str:
    """", ω=3" for a SIMS run (its guidance strength), "" otherwise."""
    c = result.config
    return f", ω={c.algo_options['omega']:g}" if c.algo == "sims" and "omega" in c.algo_options else ""


def band(mean, half, positive: bool):
    """The 95% band mean +- half, or for a positive quantity the band of its log, mean x exp(+-half / mean)."""
    if not positive:
        return mean - half, mean + half
    with np.errstate(divide="ignore", invalid="ignore"):
        spread = np.exp(half / mean)
    return mean / spread, mean * spread


def plot(*runs: str | Path | Result, out: str | Path = "figures", labels: Sequence[str] | None = None,
         metrics: Sequence[str] | None = None, name: str = "summary", logy: bool = False) -> list[Path]:
    """Overlay runs (run directories, sweep folders, Results) in one figure, ``out/name.png`` and ``.pdf``.

    A sweep folder stands for all its points, labelled by their swept settings. ``metrics`` default to
    those every run has; ``logy`` puts positive quantities on a log scale. What `madloop plot` does.
    """
    results, names = [], []
    for run in runs:
        opened = load(run) if isinstance(run, (str, Path)) else run
        if isinstance(opened, Result):
            results.append(opened)
            names.append(short(opened))
        else:  # a SweepResult
            results += opened.results
            names += [", ".join(f"{k}={v}" for k, v in point.items()) for point in opened.points]
    if not results:
        raise MadloopError("nothing to plot: give at least one run directory")
    if labels is not None and len(labels) != len(results):
        raise MadloopError(f"--labels gives {len(labels)} labels for {len(results)} runs")
    return plot_runs(results, out, labels or (names if len(results) > 1 else None), metrics, name, logy)


def plot_runs(results: Sequence[Result], out: str | Path, labels: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None, name: str = "summary", logy: bool = False) -> list[Path]:
    """``figure`` of the runs, written to ``out/name.png`` and ``.pdf`` (each atomically)."""
    fig = figure(results, labels, metrics, logy)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    try:
        for p in paths:
            store.atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=150, format=p.suffix[1:]))
    finally:
        plt.close(fig)
    return paths


def figure(results: Sequence[Result], labels: Sequence[str] | None = None, metrics: Sequence[str] | None = None,
           logy: bool = False) -> plt.Figure:
    """Metric (top row) and MAD ratio (bottom row) vs generation for several runs overlaid.

    Checks everything before it draws: a metric some run lacks, runs that share none, or a metric with
    no finite value (NaN at every generation) fails with a MadloopError.
    """
    labels = list(labels) if labels else [describe(r) if len(results) == 1 else short(r) for r in results]
    summaries = [r.summary() for r in results]
    for r, s in zip(results, summaries):
        if not len(s):
            raise MadloopError(f"nothing to plot: {r.path} has no finished generation")
    if metrics is None:
        metrics = [m for m in results[0].config.metrics if all(m in set(s.metric) for s in summaries)]
        if not metrics:
            have = "; ".join(f"{r.path}: {', '.join(sorted(set(s.metric)))}" for r, s in zip(results, summaries))
            raise MadloopError(f"the runs share no metric to plot ({have}); plot them separately")
    for r, s in zip(results, summaries):
        missing = sorted(set(metrics) - set(s.metric))
        if missing:
            raise MadloopError(f"{r.path} has no metric {', '.join(missing)}; it has {', '.join(sorted(set(s.metric)))}")
        empty = [m for m in metrics if not np.isfinite(s["mean"][(s.metric == m) & (s.gen >= 1)]).any()]
        if empty:
            raise MadloopError(f"no figure: every run's {' and '.join(empty)} in {r.path} is NaN or infinite at every "
                               "generation (see its table.parquet)")
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 6.4), squeeze=False, sharex="col")
    for i, metric in enumerate(metrics):
        top, bottom = axes[0, i], axes[1, i]
        values = [r.table.value[r.table.metric == metric] for r in results]
        positive = all((v.dropna() >= 0).all() for v in values)  # never below zero: log bands
        for j, (s, label) in enumerate(zip(summaries, labels)):
            color = f"C{j}"
            df = s[s.metric == metric].sort_values("gen")
            gens = df[df.gen >= 1]
            top.plot(gens.gen, gens["mean"], color=color, label=label)
            top.fill_between(gens.gen, *band(gens["mean"], gens.ci_high - gens["mean"], positive), color=color, alpha=0.25,
                             linewidth=0)
            floor = df[df.gen == 0]
            if len(floor):
                top.axhline(float(floor["mean"].iloc[0]), color=color, linestyle=":", linewidth=1.2)
            if is_distance(metric):
                bottom.plot(gens.gen, gens.mad_ratio, color=color)
                bottom.fill_between(gens.gen, *band(gens.mad_ratio, gens.mad_ratio_high - gens.mad_ratio, positive),
                                    color=color, alpha=0.25, linewidth=0)
            elif "median" in gens:
                bottom.plot(gens.gen, gens["median"], color=color)
                bottom.fill_between(gens.gen, gens.q05, gens.q95, color=color, alpha=0.15, linewidth=0)
        top.set_title(METRIC_LABELS.get(metric, metric))
        if is_distance(metric):
            bottom.axhline(1.0, color="0.5", linewidth=0.8)
            bottom.set_ylabel("MAD ratio  E[d_t] / E[d_1]" if i == 0 else "MAD ratio")
        else:
            bottom.set_ylabel("median, 5–95% of runs")
        if logy and all((v.dropna() > 0).all() for v in values):
            top.set_yscale("log")
            bottom.set_yscale("log")
        bottom.set_xlabel("generation t")
        bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    has_floor = any((s.gen == 0).any() for s in summaries)
    axes[0, 0].set_ylabel("mean over runs (95% CI)" + ("\n··· real-data floor" if has_floor else ""))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 3), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return fig
