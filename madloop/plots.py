"""Figures from stored tables (never from re-running anything): metric and MAD ratio vs generation.

Every curve is a mean over runs with its 95% confidence band (``curve``); the dotted line of the same
colour is the real-data floor (generation 0: a real sample of the same size measured the same way). In
`madloop plot`'s figure the band of a quantity whose values are never negative (a distance, a trace) is
the interval of the log of the mean, mean x exp(+-half / mean) (delta method), so that with few runs it
never dips below zero. The studies (madloop/studies) draw their figures with the same pieces: ``curves``,
``top_legend``, ``save`` (PNG and PDF).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt  # the backend is the user's: a notebook keeps its inline figures
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

from madloop import store
from madloop.errors import MadloopError
from madloop.results import Result, no_ratio
from madloop.sweeps import open_any

METRIC_LABELS = {
    "w2": "W2 to the reference (exact OT)", "sliced_w2": "sliced W2", "gauss_w2": "Gaussian-fit W2",
    "mean_err": "mean error", "cov_err": "covariance error (Frobenius)", "model_trace": "tr Σ_t",
    "model_logdet": "log det Σ_t", "true_w2": "W2(G^t, p_r), closed form", "true_kl": "KL(p_r ‖ G^t)",
    "true_kl_rev": "KL(G^t ‖ p_r)", "true_mean_err": "‖μ_t − μ‖", "true_cov_err": "‖Σ_t − Σ‖_F",
    "precision": "precision (k-NN)", "recall": "recall (k-NN)",
    "fid": "FID (domain feature network)", "kid": "KID (domain feature network)",
    "classes": "effective number of classes", "accepted": "curation: accepted share of the candidates",
}
LOOP_LABELS = {"fully_synthetic": "fully synthetic loop", "augmentation": "synthetic augmentation loop",
               "fresh": "fresh data loop"}
# The studies' figures name a few metrics their own way (mathtext, and the k of the k-NN manifolds).
STUDY_LABELS = {**METRIC_LABELS, "precision": "precision (k-NN, k = 3)", "recall": "recall (k-NN, k = 3)",
                "true_w2": "$W_2(G^t, p_r)$, closed form", "true_mean_err": r"$\|\mu_t - \mu\|$"}


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


def curve(ax, rows: pd.DataFrame, color: str, label: str | None = None, value: str = "mean",
          positive: bool = False) -> None:
    """One metric's mean over runs (``value="mean"``) or MAD ratio (``"mad_ratio"``) vs generation with its
    95% band (``band``), from summary rows; the real-data floor of the mean (generation 0, where the rows
    have one) is a dotted line of its colour."""
    rows = rows.sort_values("gen")
    gens = rows[rows.gen >= 1]
    high = "ci_high" if value == "mean" else f"{value}_high"
    ax.plot(gens.gen, gens[value], color=color, label=label)
    ax.fill_between(gens.gen, *band(gens[value], gens[high] - gens[value], positive), color=color, alpha=0.25,
                    linewidth=0)
    floor = rows[rows.gen == 0]
    if value == "mean" and len(floor):
        ax.axhline(float(floor["mean"].iloc[0]), color=color, linestyle=":", linewidth=1.2)


def curves(ax, summary: pd.DataFrame, hue: str, label: Callable[[Any], str] = str, value: str = "mean") -> None:
    """``curve`` for each value of the column ``hue`` of one metric's summary rows, in colours C0, C1, ..."""
    for i, (key, rows) in enumerate(summary.groupby(hue, sort=False)):
        curve(ax, rows, f"C{i}", label(key), value)
    ax.set_xlabel("generation t")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # generations are whole numbers
    ax.grid(alpha=0.3)


def floor_note(summary: pd.DataFrame) -> str:
    """A title's note for the dotted floor lines, where the summary has any."""
    return "  ··· real-data floor (generation 0)" if (summary.gen == 0).any() else ""


def top_legend(fig, ax, under_title: bool = False, columns: int | None = None, fontsize: float | None = None) -> None:
    """One legend of ``ax``'s lines across the top of the figure (under its title), in at most ``columns``
    columns (default: one row), and the axes laid out below it."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.955) if under_title else None,
               ncol=min(len(labels), columns or len(labels)), frameon=False, fontsize=fontsize)
    fig.tight_layout(rect=(0, 0, 1, 0.92 if under_title else 0.93))


def save(fig, out: str | Path, name: str, tight: bool = True) -> list[Path]:
    """The figure as ``out/name.png`` and ``.pdf`` (each written atomically), then closed; ``tight``: cropped
    to what is drawn."""
    out = Path(out)
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for p in paths:
            store.atomic_write(p, lambda tmp: fig.savefig(tmp, dpi=150, format=p.suffix[1:],
                                                          bbox_inches="tight" if tight else None))
    except OSError as err:  # a read-only folder, a name too long
        raise store.refused(err.filename or out, err) from None
    finally:
        plt.close(fig)
    return paths


def plot(*runs: str | Path | Result, out: str | Path = "figures", labels: Sequence[str] | None = None,
         metrics: Sequence[str] | None = None, name: str = "summary", logy: bool = False) -> list[Path]:
    """Overlay runs (run directories, sweep folders, Results) in one figure, ``out/name.png`` and ``.pdf``.

    A sweep folder stands for all its points, labelled by their swept settings. ``metrics`` default to
    those every run has; ``logy`` puts positive quantities on a log scale. What `madloop plot` does.
    """
    results, names = [], []
    for run in runs:
        opened = open_any(run) if isinstance(run, (str, Path)) else run
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
    return save(figure(results, labels, metrics, logy), out, name, tight=False)


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
        ratio = no_ratio(metric) is None  # a MAD ratio panel only where the ratio means something (not KID)
        for j, (s, label) in enumerate(zip(summaries, labels)):
            color, rows = f"C{j}", s[s.metric == metric]
            curve(top, rows, color, label, positive=positive)
            gens = rows[rows.gen >= 1].sort_values("gen")
            if ratio:
                curve(bottom, rows, color, value="mad_ratio", positive=positive)
            elif "median" in gens:
                bottom.plot(gens.gen, gens["median"], color=color)
                bottom.fill_between(gens.gen, gens.q05, gens.q95, color=color, alpha=0.15, linewidth=0)
        top.set_title(METRIC_LABELS.get(metric, metric))
        if ratio:
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
    top_legend(fig, axes[0, 0], columns=3, fontsize=9)
    return fig


def loops_by_metric(table: pd.DataFrame, metrics: Sequence[str], lam_label: Callable[[float], str], title: str,
                    out: str | Path, name: str, cell: tuple[float, float] = (4.3, 3.4)) -> list[Path]:
    """A study's summary rows as a grid: a row per loop, a column per metric, a line per lam (mean and 95% band,
    the real-data floor dotted); ``title`` goes above the legend."""
    loops = list(dict.fromkeys(table.loop))
    fig, axes = plt.subplots(len(loops), len(metrics), figsize=(cell[0] * len(metrics), cell[1] * len(loops)),
                             squeeze=False, sharex=True)
    for i, loop in enumerate(loops):
        for j, metric in enumerate(metrics):
            ax = axes[i, j]
            curves(ax, table[(table.loop == loop) & (table.metric == metric)], "lam", lam_label)
            ax.set_title(f"{STUDY_LABELS.get(metric, metric)}\n{LOOP_LABELS[loop]}", fontsize=10)
            if metric in ("precision", "recall"):
                ax.set_ylim(-0.03, 1.03)
    for ax in axes[:-1].flat:
        ax.set_xlabel("")
    fig.suptitle(f"{title}{floor_note(table)}", fontsize=11)
    top_legend(fig, axes[0, 0], under_title=True)
    return save(fig, out, name)

def grid_figure(run: str | Path, gens: Sequence[int] | None = None, runs: Sequence[int] = (0,), out: str | Path | None = None,
                name: str = "grid") -> list[Path]:
    """The stored sample grids of an image loop side by side: a column per generation, a row per run
    (``out/name.png`` and ``.pdf``; ``out`` defaults to the run's figures folder). What `madloop grid` does.
    ``gens`` defaults to up to five stored generations, evenly spaced."""
    from madloop import grids

    path = Path(run)
    if not store.is_run_dir(path):
        raise MadloopError(f"{path} is not a madloop run directory")
    have = grids.stored(path, runs[0]) if runs else []
    if not have:
        raise MadloopError(f"{path} holds no sample grids of run {runs[0] if runs else '?'} (grids are kept for the image "
                           f"loops' runs 0..{grids.GRID_RUNS - 1})")
    if gens is None:
        gens = sorted({have[round(i)] for i in np.linspace(0, len(have) - 1, min(5, len(have)))})
    missing = [(g, r) for g in gens for r in runs if grids.read(path, g, r) is None]
    if missing:
        raise MadloopError(f"{path} has no grid of generation {missing[0][0]}, run {missing[0][1]}; "
                           f"stored generations: {', '.join(map(str, have))}")
    pictures = [[grids.read(path, g, r) for g in gens] for r in runs]
    h, w = pictures[0][0].shape[:2]
    fig, axes = plt.subplots(len(runs), len(gens), figsize=(1.2 + 2.2 * len(gens) * w / max(h, w), 0.4 + 2.2 * len(runs) * h / max(h, w)),
                             squeeze=False)
    for i, r in enumerate(runs):
        for j, g in enumerate(gens):
            ax = axes[i][j]
            ax.imshow(pictures[i][j], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title("real (t = 0)" if g == 0 else f"generation {g}", fontsize=9)
            if j == 0 and len(runs) > 1:
                ax.set_ylabel(f"run {r}", fontsize=9)
    fig.suptitle(describe(open_any(path)), fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return save(fig, out if out is not None else path / "figures", name)
