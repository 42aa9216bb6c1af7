"""Figures from stored tables (never from re-running anything): metric and MAD ratio vs generation.

Every curve is a mean over runs with its 95% confidence band; the dotted line of the same colour is
the real-data floor (generation 0: a real sample of the same size measured the same way).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from madloop.registry import METRICS  # noqa: E402
from madloop.results import Result  # noqa: E402

METRIC_LABELS = {
    "w2": "W2 to the reference (exact OT)", "sliced_w2": "sliced W2", "gauss_w2": "Gaussian-fit W2",
    "mean_err": "mean error", "cov_err": "covariance error (Frobenius)", "model_trace": "tr Σ_t",
    "model_logdet": "log det Σ_t", "true_w2": "W2(G^t, p_r), closed form", "true_kl": "KL(p_r ‖ G^t)",
    "true_kl_rev": "KL(G^t ‖ p_r)", "true_mean_err": "‖μ_t − μ‖", "true_cov_err": "‖Σ_t − Σ‖_F",
    "precision": "precision (k-NN)", "recall": "recall (k-NN)",
}


def is_distance(metric: str) -> bool:
    return getattr(METRICS[metric], "distance", True) if metric in METRICS else True


def describe(result: Result) -> str:
    c = result.config
    extra = f", λ={c.lam:g}" if c.lam != 1 else ""
    return f"{c.loop} · {c.model} · {c.algo}{extra} (n_synth={c.n_synth}, {c.runs} runs)"


def plot_runs(results: Sequence[Result], out: str | Path, labels: Sequence[str] | None = None,
              metrics: Sequence[str] | None = None, name: str = "summary") -> list[Path]:
    """Metric (top row) and MAD ratio (bottom row) vs generation for several runs overlaid; PNG and PDF."""
    labels = list(labels) if labels else [describe(r) if len(results) == 1 else r.path.name for r in results]
    summaries = [r.summary() for r in results]
    if metrics is None:
        metrics = [m for m in results[0].config.metrics if all(m in set(s.metric) for s in summaries)]
    fig, axes = plt.subplots(2, len(metrics), figsize=(4.2 * len(metrics), 6.4), squeeze=False, sharex="col")
    for i, metric in enumerate(metrics):
        top, bottom = axes[0, i], axes[1, i]
        for j, (s, label) in enumerate(zip(summaries, labels)):
            color = f"C{j}"
            df = s[s.metric == metric].sort_values("gen")
            gens = df[df.gen >= 1]
            top.plot(gens.gen, gens["mean"], color=color, label=label)
            top.fill_between(gens.gen, gens.ci_low, gens.ci_high, color=color, alpha=0.25, linewidth=0)
            floor = df[df.gen == 0]
            if len(floor):
                top.axhline(float(floor["mean"].iloc[0]), color=color, linestyle=":", linewidth=1.2)
            if is_distance(metric):
                bottom.plot(gens.gen, gens.mad_ratio, color=color)
                bottom.fill_between(gens.gen, gens.mad_ratio_low, gens.mad_ratio_high, color=color, alpha=0.25, linewidth=0)
            elif "median" in gens:
                bottom.plot(gens.gen, gens["median"], color=color)
                bottom.fill_between(gens.gen, gens.q05, gens.q95, color=color, alpha=0.15, linewidth=0)
        top.set_title(METRIC_LABELS.get(metric, metric))
        if is_distance(metric):
            bottom.axhline(1.0, color="0.5", linewidth=0.8)
            bottom.set_ylabel("MAD ratio  E[d_t] / E[d_1]" if i == 0 else "MAD ratio")
        else:
            bottom.set_ylabel("median, 5–95% of runs")
        bottom.set_xlabel("generation t")
        top.grid(alpha=0.3)
        bottom.grid(alpha=0.3)
    has_floor = any((s.gen == 0).any() for s in summaries)
    axes[0, 0].set_ylabel("mean over runs (95% CI)" + ("\n··· real-data floor" if has_floor else ""))
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="upper center", ncol=min(len(names), 3), frameon=False, fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p, dpi=150)
    plt.close(fig)
    return paths


def headline_text(headline: pd.DataFrame) -> str:
    return headline.to_string(index=False, float_format=lambda v: f"{v:.4g}")
